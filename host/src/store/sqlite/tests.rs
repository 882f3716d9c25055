//! The SQLite store against the store contract (in memory and on disk), plus what only SQLite
//! can show: durability settings, reopen, the file layout, and rollback of a failed batch.

use std::sync::Arc;

use sqlx::Row;
use tempfile::TempDir;

use super::SqliteStore;
use crate::store::contract::{self, assert_chain_verifies, event, events};
use crate::store::{Appended, EventQuery, Store, StoreError};

async fn memory_store() -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::open("sqlite::memory:")
            .await
            .expect("open in-memory store"),
    )
}

/// A file-backed store in a fresh temporary directory (kept alive with the store).
async fn file_store() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = SqliteStore::open(&url).await.expect("open file store");
    (Arc::new(store), dir)
}

/// One test per contract function, run both in memory and on disk (where reads go through the
/// separate read-only pool).
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod in_memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    contract::$name(memory_store().await).await;
                }
            )*
        }
        mod on_disk {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _dir) = file_store().await;
                    contract::$name(store).await;
                }
            )*
        }
    };
}

contract_tests!(
    round_trip_preserves_every_field,
    received_at_is_stamped_per_batch,
    resent_event_is_stored_once,
    same_id_from_two_sources_is_two_events,
    repeated_id_within_batch_is_stored_once,
    empty_batch_stores_nothing,
    seq_is_gapless_and_chain_links_verify,
    concurrent_appends_keep_the_chain_consistent,
    query_filters_by_time_window,
    query_filters_by_actor,
    query_matches_request_id_or_correlation_id,
    query_filters_by_decision,
    query_combines_filters,
    query_pages_with_limit_and_after_seq,
    count_and_ping_answer,
);

/// A trigger that aborts the insert of any event of type `poison`: a failure in the middle of
/// a batch, after earlier chunks were already inserted inside the transaction.
async fn install_poison_trigger(store: &SqliteStore) {
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON audit_events WHEN NEW.event_type = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned event'); END",
    )
    .execute(&store.writer)
    .await
    .expect("create trigger");
}

#[tokio::test]
async fn failed_batch_stores_nothing_and_the_chain_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&format!("sqlite:{}", dir.path().join("a.db").display()))
        .await
        .expect("open");
    install_poison_trigger(&store).await;
    store.append(&events(3), chrono::Utc::now()).await.expect("first batch");

    // 600 events: the poisoned one sits in the third insert chunk.
    let mut batch: Vec<_> = (100..700).map(event).collect();
    batch[550].event_type = "poison".into();
    let err = store
        .append(&batch.clone(), chrono::Utc::now())
        .await
        .expect_err("poisoned batch must fail");
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert!(err.to_string().contains("poisoned event"), "{err}");

    assert_eq!(
        store.count().await.expect("count"),
        3,
        "part of a failed batch was stored"
    );
    let after = store
        .query(&EventQuery {
            after_seq: Some(3),
            ..EventQuery::default()
        })
        .await
        .expect("query");
    assert!(after.is_empty());

    // The same events without the poison: nothing of the failed attempt counts as a duplicate,
    // and seqs continue from 4 with a valid chain.
    batch[550].event_type = "tool.call".into();
    let results = store.append(&batch, chrono::Utc::now()).await.expect("retry");
    assert_eq!(results.first(), Some(&Appended::Stored { seq: 4 }));
    assert_eq!(results.last(), Some(&Appended::Stored { seq: 603 }));
    assert!(results.iter().all(|r| matches!(r, Appended::Stored { .. })));
    assert_eq!(assert_chain_verifies(&store).await.len(), 603);
}

#[tokio::test]
async fn readers_never_see_part_of_a_batch() {
    let (store, _dir) = file_store().await;
    let n = 5000;
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.append(&events(n), chrono::Utc::now()).await })
    };
    // Poll while the batch is being inserted (20 chunks); every observation must be all or
    // nothing.
    let mut observed = Vec::new();
    loop {
        let c = store.count().await.expect("count");
        observed.push(c);
        if c == i64::from(n) || writer.is_finished() {
            break;
        }
        tokio::task::yield_now().await;
    }
    writer.await.expect("task").expect("append");
    assert!(
        observed.iter().all(|c| *c == 0 || *c == i64::from(n)),
        "saw a partial batch: {observed:?}"
    );
    assert_eq!(store.count().await.expect("count"), i64::from(n));
}

#[tokio::test]
async fn reopened_store_continues_seq_and_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    {
        let store = SqliteStore::open(&url).await.expect("open");
        store.append(&events(5), chrono::Utc::now()).await.expect("append");
        store.writer.close().await;
        store.reader.close().await;
    }
    let store = SqliteStore::open(&url).await.expect("reopen");
    // Resends across a restart are still duplicates; new events continue the chain.
    let results = store
        .append(&[event(4), event(5)], chrono::Utc::now())
        .await
        .expect("append");
    assert_eq!(results, vec![Appended::Duplicate, Appended::Stored { seq: 6 }]);
    assert_eq!(assert_chain_verifies(&store).await.len(), 6);
}

#[tokio::test]
async fn open_creates_missing_parent_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/deeper/audit.db");
    let store = SqliteStore::open(&format!("sqlite:{}", path.display()))
        .await
        .expect("open");
    store.ping().await.expect("ping");
    assert!(path.exists(), "database file was not created");
}

#[tokio::test]
async fn database_runs_in_wal_mode_with_full_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("a.db").display()))
        .await
        .expect("open");
    for pool in [&store.writer, &store.reader] {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .expect("synchronous");
        assert_eq!(sync, 2, "synchronous must be FULL (2)");
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(pool)
            .await
            .expect("busy_timeout");
        assert!(busy >= 1000, "busy_timeout {busy} ms");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(pool)
            .await
            .expect("foreign_keys");
        assert_eq!(fk, 1);
    }
    // The read pool cannot write, whatever a future caller tries.
    let write = sqlx::query("DELETE FROM audit_events").execute(&store.reader).await;
    assert!(write.is_err(), "the read pool accepted a write");
}

#[tokio::test]
async fn stored_rows_cannot_be_updated() {
    let store = SqliteStore::open("sqlite::memory:").await.expect("open");
    store.append(&events(1), chrono::Utc::now()).await.expect("append");
    let update = sqlx::query("UPDATE audit_events SET reason = 'edited'")
        .execute(&store.writer)
        .await;
    let err = update.expect_err("an update was accepted");
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[tokio::test]
async fn columns_hold_canonical_values() {
    let store = SqliteStore::open("sqlite::memory:").await.expect("open");
    let mut e = contract::full_event(1);
    // Sub-microsecond precision is dropped on the way in.
    e.timestamp += chrono::Duration::nanoseconds(999);
    let ts_us = e.timestamp.timestamp_micros();
    store.append(&[e.clone()], chrono::Utc::now()).await.expect("append");
    let row = sqlx::query("SELECT event_id, ts_us, decision, metadata, length(hash) AS hl FROM audit_events")
        .fetch_one(&store.writer)
        .await
        .expect("row");
    assert_eq!(row.get::<String, _>("event_id"), e.event_id.to_string());
    assert_eq!(row.get::<i64, _>("ts_us"), ts_us);
    assert_eq!(row.get::<String, _>("decision"), "deny");
    assert_eq!(
        row.get::<String, _>("metadata"),
        crate::store::chain::canonical_json(&e.metadata)
    );
    assert_eq!(row.get::<i64, _>("hl"), 32);
}

#[tokio::test]
async fn bad_sqlite_url_is_refused() {
    match SqliteStore::open("sqlite://x.db?mode=bogus").await {
        Err(StoreError::Unsupported(msg)) => assert!(msg.contains("invalid sqlite url"), "{msg}"),
        Err(other) => panic!("expected Unsupported, got {other:?}"),
        Ok(_) => panic!("a bogus mode was accepted"),
    }
}

#[tokio::test]
async fn unopenable_path_is_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory where the database file should be.
    let path = dir.path().join("is-a-dir");
    std::fs::create_dir(&path).expect("mkdir");
    match SqliteStore::open(&format!("sqlite:{}", path.display())).await {
        Err(StoreError::Unavailable(_)) => {}
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("opened a directory as a database"),
    }
}

/// A store written before idempotency was per source (the schema of migrations 0001–0003, with
/// rows linked as that version linked them) upgrades on open: every row keeps its `seq` and
/// the chain still verifies; a resend from the same source is a duplicate, the same id from
/// another source is a new event.
#[tokio::test]
async fn a_store_from_before_per_source_idempotency_upgrades_and_verifies() {
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

    use crate::store::chain::{self, GENESIS};

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    {
        let options = SqliteConnectOptions::from_str(&url)
            .expect("url")
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.expect("connect");
        let mut old = sqlx::migrate!("../migrations/sqlite");
        old.migrations = old
            .migrations
            .iter()
            .filter(|m| m.version <= 3)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        old.run(&pool).await.expect("old schema");
        let received = contract::base_time();
        let mut prev = GENESIS;
        for (i, e) in events(3).iter().enumerate() {
            let seq = i as i64 + 1;
            let metadata = chain::canonical_json(&e.metadata);
            let mut bytes = Vec::new();
            chain::write_canonical_parts(seq, received, e, &metadata, &mut bytes);
            let hash = chain::link(&prev, &bytes);
            sqlx::query(
                "INSERT INTO audit_events (seq, event_id, event_type, ts_us, source, metadata, received_us, \
                 prev_hash, hash, actor_type, actor_id, decision) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .bind(seq)
            .bind(e.event_id.to_string())
            .bind(&e.event_type)
            .bind(e.timestamp.timestamp_micros())
            .bind(&e.source)
            .bind(&metadata)
            .bind(received.timestamp_micros())
            .bind(&prev[..])
            .bind(&hash[..])
            .bind(e.actor_type())
            .bind(e.actor_id())
            .bind(e.decision.map(|d| d.as_str()))
            .execute(&pool)
            .await
            .expect("old row");
            prev = hash;
        }
        pool.close().await;
    }
    let store = SqliteStore::open(&url).await.expect("upgrade");
    assert_eq!(assert_chain_verifies(&store).await.len(), 3);
    let resend = store.append(&events(3), contract::base_time()).await.expect("resend");
    assert_eq!(resend, vec![Appended::Duplicate; 3]);
    let other = crate::event::Event {
        source: "another-sender".into(),
        ..event(0)
    };
    let results = store
        .append(&[other], contract::base_time())
        .await
        .expect("other source");
    assert_eq!(results, vec![Appended::Stored { seq: 4 }]);
    assert_chain_verifies(&store).await;
}
