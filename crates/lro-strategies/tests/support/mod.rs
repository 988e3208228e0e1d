//! What the scenario-driven tests share: the table's URL names.
#![allow(dead_code, unreachable_pub, clippy::panic)]

/// The URL of the initial request in every scenario and token case.
pub const ORIGINAL: &str = "http://host/resource";

/// The table's URL names and the URLs they stand for.
pub const URLS: [(&str, &str); 7] = [
    ("operation-location", "http://host/op"),
    ("location", "http://host/loc"),
    ("location-2", "http://host/loc2"),
    ("azure-async-operation", "http://host/async"),
    ("resource-location", "http://host/resloc"),
    ("original-uri", ORIGINAL),
    ("other-origin", "http://other.example/op"),
];

/// The URL a name stands for (panics on an unknown name: the table is test input).
pub fn url_of(name: &str) -> &'static str {
    URLS.iter()
        .find(|(n, _)| *n == name)
        .map_or_else(|| panic!("unknown URL name {name:?}"), |(_, url)| url)
}

/// The name of a URL, or the URL itself when it has none.
pub fn name_of(url: &str) -> String {
    URLS.iter()
        .find(|(_, u)| *u == url)
        .map_or_else(|| url.to_owned(), |(name, _)| (*name).to_owned())
}
