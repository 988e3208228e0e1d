//! The behaviour every [`OperationStore`] must have, run against each implementation
//! (`tests/sqlite.rs`, `tests/postgres.rs`). Leases of zero run out at once, so nothing sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lro_store::{Checkpoint, Completion, NewOperation, OperationState, OperationStore, StoreError};
use serde_json::json;

const LONG: Duration = Duration::from_secs(600);
const EXPIRED: Duration = Duration::ZERO;

fn op(key: &str) -> NewOperation {
    NewOperation::new(key, format!("token-of-{key}"), json!({"flavour": "arm"})).status("Accepted")
}

/// Every check, on a store that starts empty. `prefix` keeps keys apart on shared databases.
pub async fn suite(store: Arc<dyn OperationStore>, prefix: &str) {
    submit_then_claim_hands_out_the_token_and_spec_once(&*store, prefix).await;
    a_duplicate_key_is_refused(&*store, prefix).await;
    an_expired_lease_is_claimed_again_with_a_newer_fence_and_the_old_one_is_fenced_off(
        &*store, prefix,
    )
    .await;
    renew_keeps_live_leases_and_reports_lost_ones(&*store, prefix).await;
    complete_records_the_outcome_and_result_exactly_and_ends_the_lease(&*store, prefix).await;
    release_makes_an_operation_claimable_at_once(&*store, prefix).await;
    abandon_stops_tracking_and_fences_the_holder_off(&*store, prefix).await;
    a_row_that_cannot_be_used_is_handed_out_to_be_ended_not_left_to_block_claims(&*store, prefix)
        .await;
    concurrent_claims_never_hand_out_an_operation_twice(Arc::clone(&store), prefix).await;
}

async fn a_row_that_cannot_be_used_is_handed_out_to_be_ended_not_left_to_block_claims(
    store: &dyn OperationStore,
    p: &str,
) {
    let (bad, good) = (format!("{p}huge-spec"), format!("{p}fine"));
    // Over the cap in bytes, not in characters: the cap counts bytes.
    let huge = json!({"pad": "é".repeat(lro_store::MAX_SPEC_BYTES / 2)});
    store.submit(NewOperation::new(&bad, "t", huge)).await.unwrap();
    store.submit(op(&good)).await.unwrap();
    let claimed = claim_all(store, "w1", LONG).await;
    let bad = claimed.iter().find(|c| c.lease.key == bad).expect("handed out");
    assert_eq!(bad.spec, serde_json::Value::Null, "a spec over the cap is not read");
    assert!(claimed.iter().any(|c| c.lease.key == good), "the others are claimed too");
    let ended = Completion::new(OperationState::Error, "", 0, json!({"error": "unusable row"}));
    store.complete(&bad.lease, ended).await.unwrap();
}

async fn claim_all(
    store: &dyn OperationStore,
    worker: &str,
    lease: Duration,
) -> Vec<lro_store::Claimed> {
    store.claim(worker, 1_000, lease).await.unwrap()
}

async fn submit_then_claim_hands_out_the_token_and_spec_once(store: &dyn OperationStore, p: &str) {
    let key = format!("{p}a");
    store.submit(op(&key)).await.unwrap();
    let claimed: Vec<_> =
        claim_all(store, "w1", LONG).await.into_iter().filter(|c| c.lease.key == key).collect();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].token, format!("token-of-{key}"));
    assert_eq!(claimed[0].spec, json!({"flavour": "arm"}));
    assert_eq!(claimed[0].lease.fence, 1);
    let again = claim_all(store, "w2", LONG).await;
    assert!(again.iter().all(|c| c.lease.key != key), "a live lease is not handed out again");
    let record = store.get(&key).await.unwrap().expect("stored");
    assert_eq!(record.state, OperationState::Running);
    assert_eq!(record.owner.as_deref(), Some("w1"));
    assert_eq!(record.status, "Accepted");
    assert_eq!(record.claims, 1);
}

async fn a_duplicate_key_is_refused(store: &dyn OperationStore, p: &str) {
    let key = format!("{p}dup");
    store.submit(op(&key)).await.unwrap();
    let error = store.submit(op(&key)).await.unwrap_err();
    assert!(matches!(error, StoreError::Duplicate(k) if k == key));
}

async fn an_expired_lease_is_claimed_again_with_a_newer_fence_and_the_old_one_is_fenced_off(
    store: &dyn OperationStore,
    p: &str,
) {
    let key = format!("{p}b");
    store.submit(op(&key)).await.unwrap();
    let first = claim_all(store, "w1", EXPIRED).await;
    let old = first.into_iter().find(|c| c.lease.key == key).expect("claimed").lease;
    store.checkpoint(&old, Checkpoint::new("t1", "Running", 1)).await.unwrap();
    let second = claim_all(store, "w2", LONG).await;
    let new = second.into_iter().find(|c| c.lease.key == key).expect("claimed again");
    assert_eq!(new.token, "t1", "the last checkpoint");
    assert_eq!(new.polls, 1);
    assert!(new.lease.fence > old.fence);
    let stale = store.checkpoint(&old, Checkpoint::new("t-stale", "Running", 2)).await;
    assert!(matches!(stale, Err(StoreError::LeaseLost { .. })), "{stale:?}");
    let stale = store
        .complete(&old, Completion::new(OperationState::Succeeded, "Succeeded", 2, json!({})))
        .await;
    assert!(matches!(stale, Err(StoreError::LeaseLost { .. })), "{stale:?}");
    store.checkpoint(&new.lease, Checkpoint::new("t2", "Running", 2)).await.unwrap();
    let record = store.get(&key).await.unwrap().unwrap();
    assert_eq!(record.token.as_deref(), Some("t2"), "the stale holder wrote nothing");
    assert_eq!(record.owner.as_deref(), Some("w2"));
    assert_eq!(record.claims, 2);
}

async fn renew_keeps_live_leases_and_reports_lost_ones(store: &dyn OperationStore, p: &str) {
    let (k1, k2) = (format!("{p}r1"), format!("{p}r2"));
    store.submit(op(&k1)).await.unwrap();
    let claimed = claim_all(store, "w1", LONG).await;
    let l1 = claimed.into_iter().find(|c| c.lease.key == k1).expect("k1").lease;
    store.submit(op(&k2)).await.unwrap();
    let claimed = claim_all(store, "w1", EXPIRED).await;
    let l2 = claimed.into_iter().find(|c| c.lease.key == k2).expect("k2").lease;
    let leases = vec![l1, l2];
    // w2 takes k2 over (its lease ran out); w1 renews both.
    let taken = claim_all(store, "w2", LONG).await;
    assert!(taken.iter().any(|c| c.lease.key == k2));
    let held = store.renew("w1", &leases, LONG).await.unwrap();
    let held: Vec<&str> = held.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(held, [k1.as_str()], "k2 is w2's now; k1 was not claimed again");
    // k1 is renewed: nobody else can take it.
    assert!(claim_all(store, "w3", LONG).await.iter().all(|c| c.lease.key != k1));
}

async fn complete_records_the_outcome_and_result_exactly_and_ends_the_lease(
    store: &dyn OperationStore,
    p: &str,
) {
    let key = format!("{p}c");
    store.submit(op(&key)).await.unwrap();
    let lease =
        claim_all(store, "w1", LONG).await.into_iter().find(|c| c.lease.key == key).unwrap().lease;
    let body = Bytes::from_static(b"{\"name\": \"w\",  \"odd spacing\": true}\n\x00\xff");
    let outcome = json!({"outcome": "succeeded", "status": "Succeeded"});
    let completion = Completion::new(OperationState::Succeeded, "Succeeded", 7, outcome.clone())
        .result(body.clone());
    store.complete(&lease, completion).await.unwrap();
    let record = store.get(&key).await.unwrap().unwrap();
    assert_eq!(record.state, OperationState::Succeeded);
    assert_eq!(record.result, Some(body), "byte-exact");
    assert_eq!(record.outcome, Some(outcome));
    assert_eq!(record.polls, 7);
    assert_eq!(record.token, None);
    assert_eq!(record.owner, None);
    assert!(claim_all(store, "w2", EXPIRED).await.iter().all(|c| c.lease.key != key));
    let twice = store
        .complete(&lease, Completion::new(OperationState::Failed, "Failed", 8, json!({})))
        .await;
    assert!(matches!(twice, Err(StoreError::LeaseLost { .. })), "completed once only");
}

async fn release_makes_an_operation_claimable_at_once(store: &dyn OperationStore, p: &str) {
    let key = format!("{p}rel");
    store.submit(op(&key)).await.unwrap();
    let lease =
        claim_all(store, "w1", LONG).await.into_iter().find(|c| c.lease.key == key).unwrap().lease;
    store.release(&lease).await.unwrap();
    let again = claim_all(store, "w2", LONG).await;
    assert!(again.iter().any(|c| c.lease.key == key));
    let stale = store.checkpoint(&lease, Checkpoint::new("x", "Running", 1)).await;
    assert!(matches!(stale, Err(StoreError::LeaseLost { .. })));
}

async fn abandon_stops_tracking_and_fences_the_holder_off(store: &dyn OperationStore, p: &str) {
    let key = format!("{p}ab");
    store.submit(op(&key)).await.unwrap();
    let lease =
        claim_all(store, "w1", LONG).await.into_iter().find(|c| c.lease.key == key).unwrap().lease;
    assert!(store.abandon(&key).await.unwrap());
    assert!(!store.abandon(&key).await.unwrap(), "only a running operation");
    let stale = store.checkpoint(&lease, Checkpoint::new("x", "Running", 1)).await;
    assert!(matches!(stale, Err(StoreError::LeaseLost { .. })));
    assert_eq!(store.get(&key).await.unwrap().unwrap().state, OperationState::Abandoned);
    assert!(store.renew("w1", &[lease], LONG).await.unwrap().is_empty());
}

async fn concurrent_claims_never_hand_out_an_operation_twice(
    store: Arc<dyn OperationStore>,
    p: &str,
) {
    let keys: Vec<String> = (0..200).map(|i| format!("{p}many-{i:03}")).collect();
    for key in &keys {
        store.submit(op(key)).await.unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store.claim(&format!("w{worker}"), 7, LONG).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| c.lease.key));
            }
        });
    }
    let mut seen = HashSet::new();
    while let Some(claimed) = tasks.join_next().await {
        for key in claimed.unwrap() {
            assert!(seen.insert(key.clone()), "{key} was handed out twice");
        }
    }
    for key in &keys {
        assert!(seen.contains(key), "{key} was never handed out");
    }
}
