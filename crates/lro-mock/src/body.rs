//! The response body type shared by both servers: bytes, optionally followed by streamed padding.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// Padding is streamed in chunks of this size, all borrowed from one static buffer.
const CHUNK: usize = 64 * 1024;
static PADDING: [u8; CHUNK] = [b' '; CHUNK];

/// A response body: `head`, then `padding` bytes of JSON whitespace, streamed in 64 KiB chunks
/// (so a 32 MiB body never exists in memory at once). Trailing whitespace keeps JSON valid.
#[derive(Debug, Default)]
pub(crate) struct MockBody {
    head: Option<Bytes>,
    padding: u64,
    /// A stream of chunks (server-sent events) after the head, until the sender is dropped.
    events: Option<tokio::sync::mpsc::Receiver<Bytes>>,
}

impl MockBody {
    pub(crate) fn new(head: impl Into<Bytes>) -> Self {
        Self { head: Some(head.into()), padding: 0, events: None }
    }

    pub(crate) fn padded(head: impl Into<Bytes>, padding: u64) -> Self {
        Self { head: Some(head.into()), padding, events: None }
    }

    /// A body that streams whatever `events` receives, until its sender is dropped.
    pub(crate) fn streaming(events: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        Self { head: None, padding: 0, events: Some(events) }
    }

    fn head_len(&self) -> u64 {
        self.head.as_ref().map_or(0, |head| head.len() as u64)
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(head) = self.head.take() {
            if !head.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(head))));
            }
        }
        if self.padding > 0 {
            let n = usize::try_from(self.padding).map_or(CHUNK, |left| left.min(CHUNK));
            self.padding -= n as u64;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&PADDING[..n])))));
        }
        if let Some(events) = self.events.as_mut() {
            return events.poll_recv(cx).map(|event| event.map(|bytes| Ok(Frame::data(bytes))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.head_len() == 0 && self.padding == 0 && self.events.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.events.is_some() {
            return SizeHint::default();
        }
        SizeHint::with_exact(self.head_len().saturating_add(self.padding))
    }
}
