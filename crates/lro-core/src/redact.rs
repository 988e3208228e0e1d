//! What `Debug` output shows of URLs and headers: never a query (a SAS signature, a
//! `code=` key), never user information, never a header value.
//!
//! Engines, actions, initial responses and token states end up in logs through `{:?}`; their
//! URLs are the operation's own (status monitors, resource links), which may carry credentials
//! in the query. These views show where a URL points and which headers there are, no more.

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

/// Whether `uri` carries user information (`user:password@host`).
pub(crate) fn has_user_info(uri: &Uri) -> bool {
    uri.authority().is_some_and(|authority| authority.as_str().contains('@'))
}

/// Writes `scheme://host[:port]/path` of `uri` (only the path if it is relative).
pub(crate) fn write_origin_and_path(out: &mut impl fmt::Write, uri: &Uri) -> fmt::Result {
    if let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) {
        write!(out, "{scheme}://{host}")?;
        if let Some(port) = uri.port_u16() {
            write!(out, ":{port}")?;
        }
    }
    out.write_str(uri.path())
}

/// `scheme://host[:port]/path` of a URL, with `?…` where a query was left out.
pub(crate) struct ShownUri<'a>(pub(crate) &'a Uri);

impl fmt::Display for ShownUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_origin_and_path(f, self.0)?;
        if self.0.query().is_some() {
            f.write_str("?…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ShownUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// A URL kept as text (in a token): shown as [`ShownUri`], or as a placeholder if it does not
/// parse (its text is then shown nowhere).
pub(crate) struct ShownUrl<'a>(pub(crate) &'a str);

impl fmt::Debug for ShownUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.parse::<Uri>() {
            Ok(uri) => fmt::Debug::fmt(&ShownUri(&uri), f),
            Err(_) => f.write_str("<not a URL>"),
        }
    }
}

/// The names of a map's headers, without their values.
pub(crate) struct HeaderNames<'a>(pub(crate) &'a HeaderMap);

impl fmt::Debug for HeaderNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys().map(HeaderName::as_str)).finish()
    }
}

/// The names of some header pairs, without their values.
pub(crate) struct PairNames<'a>(pub(crate) &'a [(HeaderName, HeaderValue)]);

impl fmt::Debug for PairNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter().map(|(name, _)| name.as_str())).finish()
    }
}

/// The names of headers kept as text (in a token), without their values.
pub(crate) struct TextNames<'a, V>(pub(crate) &'a std::collections::BTreeMap<String, V>);

impl<V> fmt::Debug for TextNames<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_url_keeps_scheme_host_port_and_path_and_drops_query_and_user_information() {
        let uri: Uri = "https://user:pw@example.com:8443/ops/1?sig=s3cret&se=2030".parse().unwrap();
        assert_eq!(ShownUri(&uri).to_string(), "https://example.com:8443/ops/1?…");
        assert_eq!(format!("{:?}", ShownUri(&uri)), "\"https://example.com:8443/ops/1?…\"");
        let plain: Uri = "http://example.com/a".parse().unwrap();
        assert_eq!(ShownUri(&plain).to_string(), "http://example.com/a");
        let relative: Uri = "/ops/1?sig=s3cret".parse().unwrap();
        assert_eq!(ShownUri(&relative).to_string(), "/ops/1?…");
    }

    #[test]
    fn a_url_kept_as_text_that_does_not_parse_is_not_shown_at_all() {
        assert_eq!(format!("{:?}", ShownUrl("https://exa mple.com/?sig=s3cret")), "<not a URL>");
        assert_eq!(
            format!("{:?}", ShownUrl("https://example.com/x?sig=s3cret")),
            "\"https://example.com/x?…\""
        );
    }

    #[test]
    fn header_names_are_shown_without_their_values() {
        let mut headers = HeaderMap::new();
        headers.insert("location", "https://example.com/x?sig=s3cret".parse().unwrap());
        assert_eq!(format!("{:?}", HeaderNames(&headers)), "{\"location\"}");
        let pairs: Vec<_> = headers.into_iter().map(|(n, v)| (n.unwrap(), v)).collect();
        assert_eq!(format!("{:?}", PairNames(&pairs)), "{\"location\"}");
        let text = std::collections::BTreeMap::from([("location".to_owned(), "?sig=s3cret")]);
        assert_eq!(format!("{:?}", TextNames(&text)), "{\"location\"}");
    }
}
