//! [`collect_body`]: a response body read whole under a cap, as every async transport reads it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Body;

use crate::transport::TransportError;

/// Room made ahead for a declared body: no more, so that a length declared but never sent
/// does not make a transport hold megabytes.
const ROOM_AHEAD: usize = 64 * 1024;

/// Reads the whole of `body`, failing with [`TransportError::body_too_large`] as soon as it is
/// known to be larger than `max` bytes: before reading when its size hint (the declared
/// `Content-Length`) says so, else at the chunk that crosses the cap — the rest is never read.
/// Trailers are dropped; a chunk's error becomes what `error` makes of it.
///
/// A body that comes in one chunk is that chunk, not a copy (as `http_body_util`'s `collect`):
/// it may be a slice of the transport's read buffer, so what is kept for long is copied by its
/// keeper (lro-core copies what it keeps of a response). Bodies of several chunks are gathered
/// in one buffer.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use lro_core::{TransportErrorKind, collect_body};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let body = Full::new(Bytes::from_static(br#"{"status":"Running"}"#));
/// assert_eq!(collect_body(body, 1024, |e| match e {}).await?, r#"{"status":"Running"}"#);
/// let large = Full::new(Bytes::from_static(b"0123456789"));
/// let refused = collect_body(large, 4, |e| match e {}).await.unwrap_err();
/// assert_eq!(refused.kind(), TransportErrorKind::BodyTooLarge);
/// # Ok::<(), lro_core::TransportError>(()) }).unwrap();
/// ```
pub async fn collect_body<B: Body>(
    body: B,
    max: usize,
    error: impl Fn(B::Error) -> TransportError,
) -> Result<Bytes, TransportError> {
    let mut body = std::pin::pin!(body);
    let declared = body.size_hint().lower();
    if declared > max as u64 {
        return Err(TransportError::body_too_large(max));
    }
    // The first chunk as it came; a buffer only once a second one does.
    let mut first: Option<Bytes> = None;
    let mut gathered: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let Ok(mut data) = frame.map_err(&error)?.into_data() else { continue };
        len = len.saturating_add(data.remaining());
        if len > max {
            return Err(TransportError::body_too_large(max));
        }
        match (&mut gathered, first.take()) {
            (Some(buffer), _) => buffer.put(data),
            (None, None) => first = Some(data.copy_to_bytes(data.remaining())),
            (None, Some(earlier)) => {
                let room = usize::try_from(declared).unwrap_or(max).clamp(len, ROOM_AHEAD.max(len));
                let mut buffer = BytesMut::with_capacity(room);
                buffer.put(earlier);
                buffer.put(data);
                gathered = Some(buffer);
            }
        }
    }
    Ok(match (gathered, first) {
        (Some(buffer), _) => buffer.freeze(),
        (None, first) => first.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportErrorKind;
    use http_body_util::StreamBody;
    use std::convert::Infallible;

    fn chunks(parts: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = Infallible> {
        let frames = parts.iter().map(|p| Ok(http_body::Frame::data(Bytes::from_static(p))));
        StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>()))
    }

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
    }

    #[test]
    fn chunks_are_gathered_up_to_the_cap_and_refused_past_it() {
        let whole = run(collect_body(chunks(&[b"ab", b"cd"]), 4, |e| match e {}));
        assert_eq!(whole.unwrap(), "abcd");
        let over = run(collect_body(chunks(&[b"ab", b"cd", b"e"]), 4, |e| match e {}));
        assert_eq!(over.unwrap_err().kind(), TransportErrorKind::BodyTooLarge);
    }

    #[test]
    fn a_body_of_one_chunk_is_that_chunk_not_a_copy() {
        static CHUNK: &[u8] = br#"{"status":"Running"}"#;
        let whole = run(collect_body(chunks(&[CHUNK]), 1024, |e| match e {})).unwrap();
        assert_eq!(whole.as_ptr(), CHUNK.as_ptr());
        assert_eq!(whole, CHUNK);
    }

    #[test]
    fn an_empty_body_and_one_of_a_single_empty_chunk_are_empty() {
        assert!(run(collect_body(chunks(&[]), 4, |e| match e {})).unwrap().is_empty());
        assert!(run(collect_body(chunks(&[b""]), 4, |e| match e {})).unwrap().is_empty());
    }

    #[test]
    fn many_chunks_are_gathered_in_order_past_the_room_made_ahead() {
        let big: &'static [u8] = Box::leak(vec![b'x'; ROOM_AHEAD].into_boxed_slice());
        let whole = run(collect_body(chunks(&[b"<", big, b">"]), ROOM_AHEAD + 2, |e| match e {}));
        let whole = whole.unwrap();
        assert_eq!(whole.len(), ROOM_AHEAD + 2);
        assert!(whole.starts_with(b"<x") && whole.ends_with(b"x>"));
    }

    /// A body that declares ten bytes and fails the test if it is ever read.
    struct Declared;

    impl Body for Declared {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            panic!("read although its declared length is over the cap")
        }

        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(10)
        }
    }

    #[test]
    fn a_declared_length_over_the_cap_is_refused_before_any_read() {
        let refused = run(collect_body(Declared, 4, |e| match e {}));
        assert_eq!(refused.unwrap_err().kind(), TransportErrorKind::BodyTooLarge);
    }

    #[test]
    fn a_chunk_error_is_mapped_by_the_caller() {
        let frames = vec![Ok(http_body::Frame::data(Bytes::from_static(b"a"))), Err("reset")];
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let failed = run(collect_body(body, 4, |e: &str| TransportError::other(e.to_owned())));
        let error = failed.unwrap_err();
        assert_eq!(error.kind(), TransportErrorKind::Other);
        let cause = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
        assert_eq!(cause, "reset");
    }
}
