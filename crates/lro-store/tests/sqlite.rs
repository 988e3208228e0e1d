//! The store behaviour suite against SQLite: in memory, and in a file shared by two handles (as
//! two processes would share it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use lro_store::{OperationStore, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_passes_the_store_suite() {
    let store: Arc<dyn OperationStore> = Arc::new(SqliteStore::open(":memory:").await.unwrap());
    support::suite(store, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_opened_twice_passes_the_suite_and_both_see_one_store() {
    let dir = std::env::temp_dir().join(format!("lro-store-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ops.db");
    let _ = std::fs::remove_file(&path);
    let url = format!("sqlite:{}", path.display());
    let first: Arc<dyn OperationStore> = Arc::from(lro_store::open(&url).await.unwrap());
    support::suite(Arc::clone(&first), "").await;
    let second = lro_store::open(&url).await.unwrap();
    let seen = second.list(10_000).await.unwrap();
    assert!(seen.len() > 200, "the second handle sees what the first wrote");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unknown_store_url_is_refused() {
    let error = lro_store::open("mysql://x").await.err().expect("refused");
    assert!(error.to_string().contains("sqlite:PATH"), "{error}");
}
