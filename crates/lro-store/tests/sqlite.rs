//! The store behaviour suite against SQLite: in memory, and in a file shared by two handles (as
//! two processes would share it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use lro_store::{OperationStore, SqliteStore};

/// A directory of the test's own (`lro-store-NAME-PID`) and the URL of a new database file in
/// it.
fn fresh_database(name: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("lro-store-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ops.db");
    let _ = std::fs::remove_file(&path);
    let url = format!("sqlite:{}", path.display());
    (dir, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_passes_the_store_suite() {
    let store: Arc<dyn OperationStore> = Arc::new(SqliteStore::open(":memory:").await.unwrap());
    support::suite(store, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_opened_twice_passes_the_suite_and_both_see_one_store() {
    let (dir, url) = fresh_database("test");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_of_one_file_opened_at_once_migrate_once_and_never_share_a_claim() {
    let (dir, url) = fresh_database("handles");
    // Four handles (four connections, as four processes would have) open a new file at once.
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = url.clone();
        opening.spawn(async move { lro_store::open(&url).await });
    }
    let mut stores: Vec<Arc<dyn OperationStore>> = Vec::new();
    while let Some(opened) = opening.join_next().await {
        stores.push(Arc::from(opened.unwrap().expect("every handle migrates or finds it done")));
    }
    for i in 0..300 {
        let op = lro_store::NewOperation::new(format!("op-{i:03}"), "t", serde_json::json!({}));
        stores[i % 4].submit(op).await.unwrap();
    }
    let mut claiming = tokio::task::JoinSet::new();
    for (n, store) in stores.iter().enumerate() {
        let store = Arc::clone(store);
        claiming.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim(&format!("w{n}"), 9, std::time::Duration::from_secs(600))
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| c.lease.key));
            }
        });
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(claimed) = claiming.join_next().await {
        for key in claimed.unwrap() {
            assert!(seen.insert(key.clone()), "{key} was handed out twice");
        }
    }
    assert_eq!(seen.len(), 300);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_the_wrong_type_or_size_are_handed_out_to_be_ended_and_never_fail_the_claim() {
    let (dir, url) = fresh_database("corrupt");
    let path = dir.join("ops.db");
    let store = lro_store::open(&url).await.unwrap();
    for key in ["blob-spec", "bad-utf8", "huge-nul-token", "text-polls", "blob-key", "good"] {
        let op = lro_store::NewOperation::new(key, "t", serde_json::json!({"flavour": "arm"}));
        store.submit(op).await.unwrap();
    }
    // What a hand edit or a broken tool could leave: the table is not STRICT.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "UPDATE lro_operations SET spec = X'7b7d' WHERE key = 'blob-spec';
         UPDATE lro_operations SET token = CAST(X'66FF' AS TEXT) WHERE key = 'bad-utf8';
         UPDATE lro_operations SET token = CAST(zeroblob(20000000) AS TEXT)
           WHERE key = 'huge-nul-token';
         UPDATE lro_operations SET polls = 'many' WHERE key = 'text-polls';
         UPDATE lro_operations SET key = X'00' WHERE key = 'blob-key';",
    )
    .unwrap();
    drop(conn);
    let claimed = store.claim("w1", 100, std::time::Duration::from_secs(600)).await.unwrap();
    let get = |key: &str| claimed.iter().find(|c| c.lease.key == key).expect(key);
    assert_eq!(get("good").token, "t");
    assert_eq!(get("good").spec, serde_json::json!({"flavour": "arm"}));
    assert_eq!(get("blob-spec").spec, serde_json::Value::Null, "a spec that is no text");
    assert_eq!(get("bad-utf8").token, "", "a token that is not UTF-8");
    // SQLite's length() of text stops at the first NUL: the cap counts bytes.
    assert_eq!(get("huge-nul-token").token, "", "a token over the cap, whatever it holds");
    assert_eq!(get("text-polls").polls, 0);
    assert_eq!(claimed.len(), 5, "the row whose key is no text cannot be handed out");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The permission bits of `path`, if it exists.
#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_sqlite_file_and_its_wal_and_shm_are_readable_by_the_owner_only() {
    let (dir, url) = fresh_database("mode");
    let path = dir.join("ops.db");
    let store = lro_store::open(&url).await.unwrap();
    // A row (its token keeps a SAS query string) goes through the WAL.
    let op = lro_store::NewOperation::new("op", "https://x/op?sig=s3cr3t", serde_json::json!({}));
    store.submit(op).await.unwrap();
    let wal = dir.join("ops.db-wal");
    let shm = dir.join("ops.db-shm");
    assert!(mode_of(&wal).is_some(), "the store is in WAL mode and has written to it");
    for file in [&path, &wal, &shm] {
        if let Some(mode) = mode_of(file) {
            assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", file.display());
        }
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[tokio::test]
async fn an_existing_sqlite_file_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, url) = fresh_database("kept-mode");
    let path = dir.join("ops.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let store = lro_store::open(&url).await.unwrap();
    assert_eq!(mode_of(&path), Some(0o640), "the owner chose this mode");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Another process in the middle of a write (or frozen there: SIGSTOP, a debugger) holds the
/// file's write lock. A worker starting meanwhile still opens a migrated store, since only
/// reading is needed to see that nothing is left to migrate; its writes wait for the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_file_opens_while_another_connection_holds_the_write_lock() {
    let (dir, url) = fresh_database("locked");
    let first = lro_store::open(&url).await.unwrap();
    let writer = rusqlite::Connection::open(dir.join("ops.db")).unwrap();
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = std::time::Instant::now();
    let second = lro_store::open(&url).await.expect("opened while the lock is held");
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "without waiting for the lock");
    assert_eq!(second.running().await.unwrap(), 0, "and it reads");
    writer.execute_batch("ROLLBACK").unwrap();
    let op = lro_store::NewOperation::new("op", "t", serde_json::json!({}));
    second.submit(op).await.expect("writes once the lock is free");
    assert_eq!(first.running().await.unwrap(), 1);
    drop((first, second, writer));
    let _ = std::fs::remove_dir_all(&dir);
}
