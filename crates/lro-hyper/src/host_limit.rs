//! A cap on requests in flight per host (scheme, host and port): with HTTP/1.1, the number of
//! connections the pool opens to it. hyper-util's pool caps only idle connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use http::Uri;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The semaphores of the hosts with requests in flight or waiting; a host's entry goes away
/// with its last request, so the map never outgrows the hosts in use.
#[derive(Debug)]
pub(crate) struct HostLimit {
    max: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A request's place among its host's `max`; frees it when dropped.
#[derive(Debug)]
pub(crate) struct HostPermit {
    limit: Arc<HostLimit>,
    host: String,
    permit: Option<OwnedSemaphorePermit>,
}

impl HostLimit {
    /// At most `max` (at least 1) requests in flight per host.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(HostLimit { max: max.max(1), hosts: Mutex::new(HashMap::new()) })
    }

    /// Waits for a place among the requests to `uri`'s host.
    pub(crate) async fn acquire(self: &Arc<Self>, uri: &Uri) -> HostPermit {
        let host = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map_or("", |a| a.as_str())
        );
        let semaphore = {
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                hosts.entry(host.clone()).or_insert_with(|| Arc::new(Semaphore::new(self.max))),
            )
        };
        // Never closed: an error cannot happen; without a permit the request simply goes on.
        let permit = semaphore.acquire_owned().await.ok();
        HostPermit { limit: Arc::clone(self), host, permit }
    }

    #[cfg(test)]
    fn hosts(&self) -> usize {
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for HostPermit {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut hosts = self.limit.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the map holds it: no request in flight nor waiting for this host.
        if hosts.get(&self.host).is_some_and(|s| Arc::strong_count(s) == 1) {
            hosts.remove(&self.host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_host_gets_at_most_max_places_and_its_entry_goes_with_the_last() {
        let limit = HostLimit::new(2);
        let a: Uri = "http://a.example/op".parse().unwrap_or_default();
        let b: Uri = "http://b.example:8080/op".parse().unwrap_or_default();
        let first = limit.acquire(&a).await;
        let second = limit.acquire(&a).await;
        let other = limit.acquire(&b).await; // another host is not held back
        let third = limit.acquire(&a);
        tokio::pin!(third);
        let waited = tokio::time::timeout(std::time::Duration::ZERO, &mut third).await;
        assert!(waited.is_err(), "a third place for a.example while two are taken");
        drop(first);
        let third = third.await;
        assert_eq!(limit.hosts(), 2);
        drop((second, third, other));
        assert_eq!(limit.hosts(), 0, "no entry outlives its host's last request");
    }
}
