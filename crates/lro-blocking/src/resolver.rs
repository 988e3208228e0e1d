//! Host resolution for the blocking transport: an IP address in the URL needs no lookup.
//!
//! ureq resolves the host before every request, pooled connection or not, and with a timeout
//! set (ours always is) its default resolver does each lookup on a thread of its own, so that
//! a stuck lookup can be abandoned: a thread started and ended for every poll. A URL whose host
//! is an IP address (a loopback service, a private endpoint) is answered here instead, with no
//! thread and no lookup; a name still goes to ureq's resolver, timeout and all.
//!
//! ureq's resolver interface is outside its semver promise (`ureq::unversioned`): the
//! workspace pins ureq to the 3.5 line, and a newer line is taken on purpose, with this file
//! checked.

use std::net::{IpAddr, SocketAddr};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// IP addresses at once; names through ureq's [`DefaultResolver`].
#[derive(Debug, Default)]
pub(crate) struct AddressesFirst(DefaultResolver);

impl Resolver for AddressesFirst {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        match address(uri) {
            Some(address) => {
                let mut addresses = self.empty();
                addresses.push(address);
                Ok(addresses)
            }
            // Within the time left of the request (a lookup with a deadline runs on a thread
            // of its own, which is abandoned at the deadline).
            None => self.0.resolve(uri, config, crate::deadline::bounded(timeout)),
        }
    }
}

/// The socket address of `uri` when its host is an IP address (`127.0.0.1`, `[::1]`).
fn address(uri: &Uri) -> Option<SocketAddr> {
    let host = uri.host()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let ip: IpAddr = host.parse().ok()?;
    let port = uri.port_u16().or(match uri.scheme_str()? {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(url: &str) -> Option<SocketAddr> {
        address(&url.parse().ok()?)
    }

    #[test]
    fn ip_hosts_are_addresses_with_their_scheme_port() {
        assert_eq!(of("http://127.0.0.1:8080/op"), "127.0.0.1:8080".parse().ok());
        assert_eq!(of("https://10.0.0.7/op"), "10.0.0.7:443".parse().ok());
        assert_eq!(of("http://[::1]/op"), "[::1]:80".parse().ok());
    }

    #[test]
    fn names_are_left_to_the_resolver() {
        assert_eq!(of("https://management.azure.com/op"), None);
        assert_eq!(of("http://localhost:8080/op"), None);
        assert_eq!(of("ftp://127.0.0.1/op"), None);
    }
}
