//! The PostgreSQL store against the store contract, plus what only PostgreSQL shows: partitions
//! (current month, DEFAULT, rows moved when a month gets its partition), two replicas on one
//! database, byte-identical hashes with SQLite, rollback of a failed batch, the append-only
//! trigger, checkpoints and quarantine.
//!
//! Every test creates its own database on the server named by `AUDITFLOW_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432`) and drops it afterwards, also when the test fails.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;

use super::PostgresStore;
use crate::store::checkpoint::{CheckpointSigner, Checkpointing};
use crate::store::contract::{self, assert_chain_verifies, event, events, read_whole_chain};
use crate::store::{Appended, EventQuery, QuarantineRecord, SqliteStore, Store, StoreError};

// The integration tests' per-test database (created fresh, dropped `WITH (FORCE)` when the
// value is dropped, also while a failed test unwinds), shared rather than written twice.
#[path = "../../../../tests/common/pg.rs"]
mod pg;
pub(crate) use pg::{TestDb, server_url};

impl TestDb {
    pub(crate) async fn open(&self) -> PostgresStore {
        PostgresStore::open(&self.url()).await.expect("open postgres store")
    }
}

/// One test per contract function, each on a fresh database.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod contract_suite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = TestDb::create("unit").await;
                    contract::$name(Arc::new(db.open().await)).await;
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

async fn partition_of(store: &PostgresStore, event_id: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT tableoid::regclass::text FROM audit_events WHERE event_id = $1")
        .bind(event_id)
        .fetch_one(store.pool())
        .await
        .expect("partition of row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_land_in_their_month_or_the_default_partition() {
    let db = TestDb::create("unit").await;
    let store = db.open().await;
    let now = Utc::now();
    let mut current = event(1);
    current.timestamp = now;
    let mut far_future = event(2);
    far_future.timestamp = Utc.with_ymd_and_hms(9000, 1, 1, 0, 0, 0).single().expect("time");
    let mut far_past = event(3);
    far_past.timestamp = Utc.with_ymd_and_hms(1971, 1, 1, 0, 0, 0).single().expect("time");
    store
        .append(&[current.clone(), far_future.clone(), far_past.clone()], now)
        .await
        .expect("append");

    assert_eq!(
        partition_of(&store, current.event_id).await,
        format!("audit_events_p{}", now.format("%Y_%m"))
    );
    assert_eq!(partition_of(&store, far_future.event_id).await, "audit_events_default");
    assert_eq!(partition_of(&store, far_past.event_id).await, "audit_events_default");
    // The next months exist ahead of time.
    let ahead: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_events'::regclass")
        .fetch_one(store.pool())
        .await
        .expect("count partitions");
    assert_eq!(ahead, 7 + 1, "seven monthly partitions and the default one");
    assert_chain_verifies(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_that_gets_its_partition_later_takes_its_rows_from_default() {
    let db = TestDb::create("unit").await;
    let store = db.open().await;
    let later = Utc::now() + Duration::days(31 * 6);
    let mut e = event(1);
    e.timestamp = later;
    store.append(&[e.clone(), event(2)], Utc::now()).await.expect("append");
    assert_eq!(partition_of(&store, e.event_id).await, "audit_events_default");

    // Five months on, that month is inside the window.
    store
        .maintain_partitions(Utc::now() + Duration::days(31 * 5))
        .await
        .expect("maintain");
    assert_eq!(
        partition_of(&store, e.event_id).await,
        format!("audit_events_p{}", later.format("%Y_%m"))
    );
    // Same rows, same hashes, same indexes and trigger on the new partition.
    assert_eq!(assert_chain_verifies(&store).await.len(), 2);
    let q = EventQuery {
        since: Some(later - Duration::seconds(1)),
        ..EventQuery::default()
    };
    assert_eq!(store.query(&q).await.expect("query").len(), 1);
    let update = sqlx::query("UPDATE audit_events SET reason = 'x'")
        .execute(store.pool())
        .await;
    assert!(update.expect_err("update accepted").to_string().contains("append-only"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_keep_one_gapless_chain() {
    let db = TestDb::create("unit").await;
    let a: Arc<dyn Store> = Arc::new(db.open().await);
    let b: Arc<dyn Store> = Arc::new(db.open().await);
    let mut tasks = Vec::new();
    for t in 0..6u32 {
        let store = if t % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        tasks.push(tokio::spawn(async move {
            for round in 0..5u32 {
                let batch: Vec<_> = (0..40).map(|i| event(t * 10_000 + round * 100 + i)).collect();
                store.append(&batch, Utc::now()).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // Both replicas resending the same events store nothing new.
    let again = b
        .append(
            &events(3)
                .into_iter()
                .map(|mut e| {
                    e.event_id = event(0).event_id;
                    e
                })
                .collect::<Vec<_>>(),
            Utc::now(),
        )
        .await
        .expect("append");
    assert_eq!(again, vec![Appended::Duplicate; 3]);
    assert_eq!(assert_chain_verifies(&*a).await.len(), 1200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_are_byte_identical_to_sqlite() {
    let db = TestDb::create("unit").await;
    let pg = db.open().await;
    let sqlite = SqliteStore::open("sqlite::memory:").await.expect("sqlite");
    let mut batch: Vec<_> = (0..20).map(contract::full_event).collect();
    // Awkward metadata: floats, big integers, unicode, nesting, key order.
    batch[3].metadata =
        json!({"f": 1.0, "e": 1e300, "s": 1.5e-7, "u": 18_446_744_073_709_551_615_u64, "n": -9_007_199_254_740_993_i64,
        "z": {"b": [1, {"y": "ü"}], "a": null}, "": "empty key"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let at = contract::base_time();
    pg.append(&batch, at).await.expect("pg append");
    sqlite.append(&batch, at).await.expect("sqlite append");
    let pg_chain = assert_chain_verifies(&pg).await;
    let sqlite_chain = read_whole_chain(&sqlite).await;
    assert_eq!(pg_chain, sqlite_chain, "the stores disagree on rows or hashes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_and_negative_zero_are_stored_and_still_verify() {
    let db = TestDb::create("unit").await;
    let store = db.open().await;
    let mut e = event(1);
    e.reason = Some("before\0after".into());
    e.metadata = json!({"k": "v\0", "z": -0.0}).as_object().cloned().unwrap_or_default();
    store.append(&[e, event(2)], Utc::now()).await.expect("append");
    let rows = store.query(&EventQuery::default()).await.expect("query");
    assert_eq!(rows[0].event.reason.as_deref(), Some("before\u{fffd}after"));
    assert_chain_verifies(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batch_stores_nothing_and_the_chain_continues() {
    let db = TestDb::create("unit").await;
    let store = db.open().await;
    sqlx::raw_sql(
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.event_type = 'poison' THEN RAISE EXCEPTION 'poisoned event'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER poison BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION poison();",
    )
    .execute(store.pool())
    .await
    .expect("trigger");
    store.append(&events(3), Utc::now()).await.expect("first batch");
    let mut batch: Vec<_> = (100..700).map(event).collect();
    batch[550].event_type = "poison".into();
    let err = store
        .append(&batch.clone(), Utc::now())
        .await
        .expect_err("poisoned batch must fail");
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert_eq!(
        store.count().await.expect("count"),
        3,
        "part of a failed batch was stored"
    );
    let ids: i64 = sqlx::query_scalar("SELECT count(*) FROM event_ids")
        .fetch_one(store.pool())
        .await
        .expect("ids");
    assert_eq!(ids, 3);

    batch[550].event_type = "tool.call".into();
    let results = store.append(&batch, Utc::now()).await.expect("retry");
    assert_eq!(results.first(), Some(&Appended::Stored { seq: 4 }));
    assert_eq!(results.last(), Some(&Appended::Stored { seq: 603 }));
    assert_eq!(assert_chain_verifies(&store).await.len(), 603);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_signed_every_n_events_and_when_idle() {
    let db = TestDb::create("unit").await;
    let store = db.open().await;
    let signer = CheckpointSigner::generate().expect("key");
    let key = signer.verifying_key();
    store
        .enable_checkpoints(Arc::new(Checkpointing {
            signer,
            every_events: 100,
            every: std::time::Duration::from_secs(3600),
        }))
        .expect("enable");
    for chunk in events(250).chunks(50) {
        store.append(chunk, Utc::now()).await.expect("append");
    }
    let seqs: Vec<i64> = store
        .checkpoints(0, 100)
        .await
        .expect("checkpoints")
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, vec![50, 150, 250]);
    assert!(store.checkpoint().await.expect("idle").is_none(), "nothing new to sign");
    store.append(&[event(1000)], Utc::now()).await.expect("append");
    let cp = store.checkpoint().await.expect("idle").expect("a tail to sign");
    assert_eq!(cp.seq, 251);
    assert!(cp.signature_is_valid(&key));
    let report = crate::store::verify::verify(&store, &[key]).await.expect("verify");
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.unsigned_tail, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_records_are_kept_once_per_event_and_stage() {
    let db = TestDb::create("unit").await;
    let pg = db.open().await;
    let sqlite = SqliteStore::open("sqlite::memory:").await.expect("sqlite");
    for store in [&pg as &dyn Store, &sqlite] {
        let rec = |n: u32, stage: &str| QuarantineRecord {
            source: "gateway".into(),
            event_id: event(n).event_id,
            stage: stage.into(),
            error: format!("failed {n}"),
        };
        store
            .quarantine(&[rec(1, "redact"), rec(2, "redact"), rec(1, "enrich")])
            .await
            .expect("quarantine");
        store.quarantine(&[rec(1, "redact")]).await.expect("again");
        // The same id from another source is another event.
        let other = QuarantineRecord {
            source: "other".into(),
            ..rec(1, "redact")
        };
        store.quarantine(&[other]).await.expect("other source");
        let got = store.quarantined(10).await.expect("list");
        assert_eq!(got.len(), 4, "{}", store.kind());
        assert!(
            got.iter()
                .any(|q| q.event_id == event(2).event_id && q.stage == "redact" && q.error == "failed 2")
        );
        assert_eq!(store.quarantined(2).await.expect("list").len(), 2);
        assert_eq!(
            store.count().await.expect("count"),
            0,
            "a quarantine record is not an event"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_rows_and_checkpoints_cannot_be_updated() {
    let db = TestDb::create("unit").await;
    let store = db.open().await;
    store.append(&events(1), Utc::now()).await.expect("append");
    let err = sqlx::query("UPDATE audit_events SET reason = 'edited'")
        .execute(store.pool())
        .await
        .expect_err("update");
    assert!(err.to_string().contains("audit_events is append-only"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_does_not_exist_is_unavailable() {
    let url = format!("{}/af_missing_{}", server_url(), std::process::id());
    match PostgresStore::open(&url).await {
        Err(StoreError::Unavailable(msg)) => assert!(msg.contains("does not exist"), "{msg}"),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("opened a missing database"),
    }
}

/// A database written before idempotency was per source (the schema of migrations 0001–0002,
/// rows and `event_ids` as that version wrote them) upgrades on open: `event_ids` learns each
/// row's source, every row keeps its `seq`, the chain verifies; a resend from the same source is
/// a duplicate, the same id from another source a new event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_per_source_idempotency_upgrades_and_verifies() {
    use crate::store::chain::{self, GENESIS};

    let db = TestDb::create("upgrade").await;
    {
        let pool = sqlx::PgPool::connect(&db.url()).await.expect("connect");
        let mut old = sqlx::migrate!("../migrations/postgres");
        old.migrations = old
            .migrations
            .iter()
            .filter(|m| m.version <= 2)
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
                "INSERT INTO audit_events (seq, event_id, event_type, \"timestamp\", source, metadata, received_at, \
                 prev_hash, hash, actor_type, actor_id, decision) \
                 VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12)",
            )
            .bind(seq)
            .bind(e.event_id)
            .bind(&e.event_type)
            .bind(e.timestamp)
            .bind(&e.source)
            .bind(&metadata)
            .bind(received)
            .bind(&prev[..])
            .bind(&hash[..])
            .bind(e.actor_type())
            .bind(e.actor_id())
            .bind(e.decision.map(|d| d.as_str()))
            .execute(&pool)
            .await
            .expect("old row");
            sqlx::query("INSERT INTO event_ids (event_id, seq) VALUES ($1, $2)")
                .bind(e.event_id)
                .bind(seq)
                .execute(&pool)
                .await
                .expect("old id");
            prev = hash;
        }
        pool.close().await;
    }
    let store = db.open().await;
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
