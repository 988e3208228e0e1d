//! URL handling: relative references resolved with the `url` crate, and the poll-URL hook.

use std::fmt;
use std::sync::Arc;

use http::Uri;
use url::Url;

/// An absolute http(s) URL kept as its text: 16 bytes and the text, where an `http::Uri` takes
/// 88 bytes and a shared buffer. A strategy keeps a few for as long as its operation runs; they
/// are parsed again when a request is built (as a hand-written loop parses its URL string for
/// every request). Its `Debug` output is [`shown`]: a strategy printed with `{:?}` shows no
/// signature.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Link(Box<str>);

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Link({:?})", shown(&self.0))
    }
}

impl Link {
    /// The link to `uri`.
    pub(crate) fn of(uri: &Uri) -> Link {
        Link(uri.to_string().into_boxed_str())
    }

    /// The URL as a `Uri`. A link holds the text of a `Uri`, which parses again, except for
    /// one built from parts beyond the parser's length limit (64 KiB): then the result is the
    /// relative `/`, which the engine refuses to request (a policy error, never a send).
    pub(crate) fn uri(&self) -> Uri {
        self.0.parse().unwrap_or_default()
    }

    /// Whether this is the link to `uri` (its text is what [`Link::of`] makes of `uri`),
    /// compared piece by piece, with no text made.
    pub(crate) fn is(&self, uri: &Uri) -> bool {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return false;
        };
        let rest = self.0.strip_prefix(scheme).and_then(|rest| rest.strip_prefix("://"));
        let rest = rest.and_then(|rest| rest.strip_prefix(authority.as_str()));
        match (rest.and_then(|rest| rest.strip_prefix(uri.path())), uri.query()) {
            (Some(rest), None) => rest.is_empty(),
            (Some(rest), Some(query)) => rest.strip_prefix('?') == Some(query),
            (None, _) => false,
        }
    }

    /// The URL's text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Resolves `reference` (absolute, or relative to `base`) to an absolute http(s) URL.
///
/// `None` when the result is not a valid http or https URL.
pub(crate) fn resolve(base: &Link, reference: &str) -> Option<Link> {
    let reference = reference.trim();
    if already_normal(reference) {
        return Some(Link(reference.into()));
    }
    resolve_fully(base, reference)
}

/// [`resolve`] through the `url` crate, whatever `reference` is. An absolute reference needs
/// no base (as Python's `urljoin` has it): one the `url` crate cannot parse (which a sent
/// request's URL hardly is) fails relative references only.
fn resolve_fully(base: &Link, reference: &str) -> Option<Link> {
    let joined = match Url::parse(base.as_str()) {
        Ok(base) => base.join(reference).ok()?,
        Err(_) => Url::parse(reference).ok()?,
    };
    if !matches!(joined.scheme(), "http" | "https") {
        return None;
    }
    let uri: Uri = joined.as_str().parse().ok()?;
    Some(Link::of(&uri))
}

/// Whether `text` is an absolute http(s) URL that resolving leaves exactly as it is: a URL the
/// `url` crate would not change (lower-case host names or dotted IPv4, no default port, no dot
/// segments, nothing to percent-encode) and that `http::Uri` prints back unchanged. A monitor
/// link from a service is such a URL as a rule: it then needs neither the base nor the `url`
/// crate's parses (some 14,000 instructions an operation). To anything else it says no, and
/// the full resolution decides; the test `the_shortcut_agrees_with_the_url_crate` holds both
/// to the same answer.
fn already_normal(text: &str) -> bool {
    let (rest, default_port) = if let Some(rest) = text.strip_prefix("https://") {
        (rest, "443")
    } else if let Some(rest) = text.strip_prefix("http://") {
        (rest, "80")
    } else {
        return false;
    };
    // An empty path (the `url` crate adds `/`) takes the long way.
    let Some(at) = rest.find('/') else { return false };
    let (authority, path_and_query) = rest.split_at(at);
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let port_kept = port.is_none_or(|port| {
        (1..=5).contains(&port.len())
            && port.bytes().all(|b| b.is_ascii_digit())
            && !port.starts_with('0')
            && port != default_port
            && port.parse::<u32>().is_ok_and(|n| n <= 65_535)
    });
    text.len() <= 4096 && port_kept && plain_host(host) && plain_path_and_query(path_and_query)
}

/// A host the `url` crate keeps as it is: dotted decimal IPv4 in its one spelling, or names of
/// lower-case letters, digits and inner hyphens whose last label does not start with a digit
/// (which would make it an IPv4 address to parse) and none of which is punycode (checked there).
fn plain_host(host: &str) -> bool {
    let labels = || host.split('.');
    let ipv4 = labels().count() == 4
        && labels().all(|l| {
            (1..=3).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_digit())
                && (l == "0" || !l.starts_with('0'))
                && l.parse::<u16>().is_ok_and(|n| n <= 255)
        });
    let name = labels().all(|l| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && !l.contains("--")
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }) && labels()
        .next_back()
        .is_some_and(|last| !last.starts_with(|c: char| c.is_ascii_digit()));
    ipv4 || name
}

/// A path (from its first `/`) and query the `url` crate keeps as they are: characters it never
/// encodes, `%` only before two hex digits and never as an encoded dot, no `.` or `..` segment.
fn plain_path_and_query(text: &str) -> bool {
    let bytes = text.as_bytes();
    let plain = bytes.iter().enumerate().all(|(i, &b)| match b {
        b'%' => match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(h), Some(l)) => {
                h.is_ascii_hexdigit()
                    && l.is_ascii_hexdigit()
                    && !(*h == b'2' && l.eq_ignore_ascii_case(&b'e'))
            }
            _ => false,
        },
        b if b.is_ascii_alphanumeric() => true,
        b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'(' | b')' | b'*' | b'+' | b','
        | b';' | b'=' | b':' | b'@' | b'/' | b'?' => true,
        _ => false,
    });
    let path = text.split('?').next().unwrap_or_default();
    plain && !path.split('/').any(|segment| segment == "." || segment == "..")
}

/// A rewrite applied to every poll and final-GET URL before it is requested (azure-core's
/// `path_format_arguments` / Java's `serviceVersion`, in one hook).
#[derive(Clone)]
pub struct UrlHook(Arc<dyn Fn(Uri) -> Uri + Send + Sync>);

impl UrlHook {
    /// A hook from a function.
    pub fn new(f: impl Fn(Uri) -> Uri + Send + Sync + 'static) -> Self {
        UrlHook(Arc::new(f))
    }

    /// Sets the `api-version` query parameter on every URL (replacing any value the service
    /// put there), as .NET's and Java's Azure cores do.
    ///
    /// ```
    /// use lro_strategies::UrlHook;
    ///
    /// let hook = UrlHook::api_version("2024-05-01");
    /// let url = hook.apply("https://svc/op/1?api-version=2020-01-01&x=1".parse().unwrap());
    /// assert_eq!(url, "https://svc/op/1?x=1&api-version=2024-05-01");
    /// ```
    pub fn api_version(version: &str) -> Self {
        let version = version.to_owned();
        UrlHook::new(move |uri| set_query(&uri, "api-version", &version).unwrap_or(uri))
    }

    /// Applies the hook.
    pub fn apply(&self, uri: Uri) -> Uri {
        (self.0)(uri)
    }
}

impl fmt::Debug for UrlHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UrlHook(..)")
    }
}

fn set_query(uri: &Uri, name: &str, value: &str) -> Option<Uri> {
    let mut url = Url::parse(&uri.to_string()).ok()?;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(kept).append_pair(name, value);
    url.as_str().parse().ok()
}

/// A link from the service as error messages show it: without its query and fragment (which
/// may carry a SAS signature) nor user information, and cut to 200 characters.
pub(crate) fn shown(link: &str) -> String {
    let (head, cut) = match link.find(['?', '#']) {
        Some(at) => (&link[..at], true),
        None => (link, false),
    };
    let head = match (head.find("://"), head.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &head[..scheme + 3], &head[at + 1..])
        }
        _ => head.to_owned(),
    };
    let mut shown: String = head.chars().take(200).collect();
    if cut || shown.len() < head.len() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_links_debug_output_shows_no_query_and_no_user_information() {
        let link = super::Link::of(&"https://u:pw@h/p?sig=SECRET".parse().unwrap());
        assert_eq!(format!("{link:?}"), "Link(\"https://h/p…\")");
    }

    #[test]
    fn links_in_messages_lose_their_query_and_user_information() {
        assert_eq!(super::shown("https://h/p?sig=SECRET"), "https://h/p…");
        assert_eq!(super::shown("https://u:pw@h/p"), "https://h/p");
        assert_eq!(super::shown("not a url"), "not a url");
        assert_eq!(super::shown(&"x".repeat(500)).chars().count(), 201);
    }

    use super::*;

    fn base() -> Link {
        Link::of(&"https://svc.example/widgets/1?api-version=1".parse().unwrap())
    }

    #[test]
    fn a_link_is_the_uri_it_was_made_of_and_no_other() {
        let texts = [
            "https://svc.example/widgets/1?api-version=1",
            "http://svc.example",
            "http://svc.example:8080/a/b",
            "https://svc.example/a?",
            "https://svc.example/a?x=1&y=%20",
            "https://[::1]:443/op",
        ];
        for text in texts {
            let uri: Uri = text.parse().unwrap();
            assert!(Link::of(&uri).is(&uri), "{text}");
            for other in texts.iter().filter(|other| **other != text) {
                let other: Uri = other.parse().unwrap();
                assert!(!Link::of(&uri).is(&other), "{text} is not {other}");
            }
        }
        for (link, other) in [
            ("https://svc.example/a?x", "https://svc.example/a?y"),
            ("https://svc.example/a?x", "https://svc.example/a"),
            ("https://svc.example/a", "http://svc.example/a"),
            ("https://svc.example/a", "https://svc.example:443/a"),
            ("https://svc.example/a", "https://svc.example/a/"),
            ("https://svc.example/a", "https://SVC.example/a"),
        ] {
            let (link, other): (Uri, Uri) = (link.parse().unwrap(), other.parse().unwrap());
            assert!(!Link::of(&link).is(&other), "{link} is not {other}");
        }
        assert!(!Link::of(&"https://svc.example/a".parse().unwrap()).is(&"/a".parse().unwrap()));
    }

    #[test]
    fn relative_references_resolve_against_the_base() {
        for (reference, resolved) in [
            ("/operations/7", "https://svc.example/operations/7"),
            ("status", "https://svc.example/widgets/status"),
            ("//other.example/op", "https://other.example/op"),
            (" http://x.example/a ", "http://x.example/a"),
        ] {
            assert_eq!(resolve(&base(), reference).unwrap().as_str(), resolved);
        }
    }

    #[test]
    fn an_absolute_reference_needs_no_usable_base_and_a_relative_one_does() {
        let unusable = Link("not a url".into());
        for absolute in ["https://svc.example/op/7", "HTTPS://SVC.example/a/../op/7"] {
            let resolved = resolve(&unusable, absolute).map(|link| link.as_str().to_owned());
            assert_eq!(resolved.as_deref(), Some("https://svc.example/op/7"), "{absolute}");
        }
        assert!(resolve(&unusable, "/op/7").is_none());
    }

    #[test]
    fn non_http_or_broken_references_are_refused() {
        assert!(resolve(&base(), "file:///etc/passwd").is_none());
        assert!(resolve(&base(), "javascript:alert(1)").is_none());
        assert!(resolve(&base(), "http://[::1").is_none());
    }

    #[test]
    fn a_service_s_usual_links_take_the_shortcut_and_odd_ones_the_url_crate() {
        for usual in [
            "https://management.azure.com/subscriptions/1/providers/Microsoft.Web/operations/7?api-version=2023-01-01",
            "http://127.0.0.1:44483/operations/7",
            "https://svc-1.example/op/a%2Fb?x=1&y=a:b@c;d,e+f*g(h)!$~",
            "https://10.0.0.255/op",
        ] {
            assert!(already_normal(usual), "{usual}");
            assert_eq!(resolve(&base(), usual).unwrap().as_str(), usual);
        }
        for odd in [
            "https://SVC.example/op",
            "https://svc.example:443/op",
            "http://svc.example:80/op",
            "https://svc.example:0443/op",
            "https://svc.example",
            "https://svc.example?x",
            "https://svc.example/a/./b",
            "https://svc.example/a/%2e%2E/b",
            "https://svc.example/a/..",
            "https://127.0.0.01/op",
            "https://127.1/op",
            "https://0x7f.0.0.1/op",
            "https://svc.123/op",
            "https://xn--nxasmq6b.example/op",
            "https://svc..example/op",
            "https://svc.example./op",
            "https://-svc.example/op",
            "https://u@svc.example/op",
            "https://[::1]/op",
            "https://svc.example/a b",
            "https://svc.example/a\\b",
            "https://svc.example/a'b?c'd",
            "https://svc.example/a#frag",
            "https://svc.example/caf\u{e9}",
            "https://svc.example/100%",
            "HTTPS://svc.example/op",
            "/operations/7",
        ] {
            assert!(!already_normal(odd), "{odd}");
        }
    }

    /// URLs, about half of them plain, the others with what the `url` crate would change.
    fn url_like() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        /// A plain piece six times in seven, else an odd one.
        fn pick(plain: Vec<&'static str>, odd: Vec<&'static str>) -> BoxedStrategy<&'static str> {
            let (plain, odd) = (prop::sample::select(plain), prop::sample::select(odd));
            prop_oneof![6 => plain, 1 => odd].boxed()
        }
        let scheme = pick(vec!["http://", "https://"], vec!["HTTP://", "ftp://", "http:/", ""]);
        let label = pick(
            vec!["svc", "a-b", "x1", "example", "com", "0", "1", "10", "255", "1a"],
            vec!["256", "01", "0x7f", "xn--a", "A", "a_b", "-a", "a-", "a--b", ""],
        );
        let port = pick(
            vec!["", ":1", ":8080", ":65535"],
            vec![":", ":0", ":80", ":443", ":65536", ":080", ":x", ":123456"],
        );
        let piece = pick(
            vec![
                "/", "a", "Z", "0", "~", "-", "_", "@", ":", ";", "=", "&", "+", "!", "$", "(",
                ")", "*", ",", "?", "%41", "%2f", "..a", ".b",
            ],
            vec![
                "//", ".", "..", "/.", "/..", "%2e", "%2E", "%", "%g1", "%4", "'", "\"", "#", "<",
                ">", "\\", " ", "\t", "\u{e9}", "|", "^", "[", "]", "{", "}", "`",
            ],
        );
        let slash = pick(vec!["/"], vec!["", "?"]);
        (
            scheme,
            prop::collection::vec(label, 1..5),
            port,
            slash,
            prop::collection::vec(piece, 0..6),
        )
            .prop_map(|(scheme, labels, port, slash, pieces)| {
                format!("{scheme}{}{port}{slash}{}", labels.join("."), pieces.concat())
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        /// The shortcut says yes only where the `url` crate gives back the same text.
        #[test]
        fn the_shortcut_agrees_with_the_url_crate(text in url_like()) {
            if already_normal(&text) {
                let full = resolve_fully(&base(), &text);
                proptest::prop_assert_eq!(full.as_ref().map(Link::as_str), Some(text.as_str()));
            }
        }
    }

    #[test]
    fn api_version_is_added_or_replaced() {
        let hook = UrlHook::api_version("2");
        assert_eq!(hook.apply("https://s/op".parse().unwrap()), "https://s/op?api-version=2");
        assert_eq!(hook.apply(base().uri()), "https://svc.example/widgets/1?api-version=2");
    }
}
