//! The PostgreSQL store's side of the SIEM sinks: cursors (`sink_cursors`), dead letters
//! (`dead_letters`) and the lease that lets exactly one replica drive each sink, see
//! [`crate::store::sink_state`].
//!
//! The lease is a session-level advisory lock (`pg_try_advisory_lock`) keyed by the sink's
//! name, taken on a connection opened for it alone (not borrowed from the pool, where it would
//! be reused by other queries and could be closed by the pool's idle handling). PostgreSQL
//! releases the lock when that session ends: a clean stop, a crash or `kill -9` of the
//! process (the kernel closes its socket), so a standby replica takes over at its next
//! attempt. A holder notices a broken connection at its next [`SinkLease::held`] check and
//! stops sending.

use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Row};
use uuid::Uuid;

use super::map_err;
use crate::store::{DeadLetter, DeadLetterQuery, DeadLettered, SinkLease, StoreError};

/// How long a lease check may take before the lease counts as lost.
const LEASE_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) async fn last_seq(pool: &PgPool) -> Result<i64, StoreError> {
    // event_ids is unpartitioned and `seq` is UNIQUE there: one index probe.
    let max: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM event_ids")
        .fetch_one(pool)
        .await
        .map_err(map_err)?;
    Ok(max.unwrap_or(0))
}

pub(super) async fn cursor(pool: &PgPool, sink: &str) -> Result<i64, StoreError> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM sink_cursors WHERE sink = $1")
        .bind(sink)
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
    Ok(seq.unwrap_or(0))
}

pub(super) async fn advance(pool: &PgPool, sink: &str, seq: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sink_cursors (sink, seq) VALUES ($1, $2) \
         ON CONFLICT (sink) DO UPDATE SET seq = GREATEST(sink_cursors.seq, excluded.seq), updated_at = now()",
    )
    .bind(sink)
    .bind(seq.max(0))
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(super) async fn add_dead_letters(pool: &PgPool, letters: &[DeadLetter]) -> Result<(), StoreError> {
    if letters.is_empty() {
        return Ok(());
    }
    // `text` cannot hold U+0000; details come from us, but stay defensive.
    let text = |s: &str| s.replace('\0', "\u{fffd}");
    let sinks: Vec<String> = letters.iter().map(|l| text(&l.sink)).collect();
    let ids: Vec<Uuid> = letters.iter().map(|l| l.event_id).collect();
    let seqs: Vec<i64> = letters.iter().map(|l| l.seq).collect();
    let reasons: Vec<String> = letters.iter().map(|l| text(&l.reason)).collect();
    let details: Vec<String> = letters.iter().map(|l| text(&l.detail)).collect();
    // DISTINCT ON: one statement cannot touch the same row twice in ON CONFLICT DO UPDATE.
    sqlx::query(
        "INSERT INTO dead_letters (sink, event_id, seq, reason, detail) \
         SELECT DISTINCT ON (sink, seq) * FROM UNNEST($1::text[], $2::uuid[], $3::bigint[], $4::text[], $5::text[]) \
         AS t (sink, event_id, seq, reason, detail) \
         ON CONFLICT (sink, seq) DO UPDATE SET reason = excluded.reason, detail = excluded.detail, \
         created_at = CASE WHEN dead_letters.replayed_at IS NULL THEN dead_letters.created_at ELSE now() END, \
         replayed_at = NULL",
    )
    .bind(&sinks)
    .bind(&ids)
    .bind(&seqs)
    .bind(&reasons)
    .bind(&details)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(super) async fn dead_letters(pool: &PgPool, q: &DeadLetterQuery) -> Result<Vec<DeadLettered>, StoreError> {
    if q.limit <= 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT id, sink, event_id, seq, reason, detail, created_at, replayed_at FROM dead_letters \
         WHERE ($1::text IS NULL OR sink = $1) AND ($2 OR replayed_at IS NULL) \
         ORDER BY seq, sink LIMIT $3",
    )
    .bind(q.sink.as_deref())
    .bind(q.include_replayed)
    .bind(q.limit)
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|row| {
            Ok(DeadLettered {
                id: row.try_get("id").map_err(map_err)?,
                letter: DeadLetter {
                    sink: row.try_get("sink").map_err(map_err)?,
                    event_id: row.try_get("event_id").map_err(map_err)?,
                    seq: row.try_get("seq").map_err(map_err)?,
                    reason: row.try_get("reason").map_err(map_err)?,
                    detail: row.try_get("detail").map_err(map_err)?,
                },
                created_at: row.try_get("created_at").map_err(map_err)?,
                replayed_at: row.try_get("replayed_at").map_err(map_err)?,
            })
        })
        .collect()
}

pub(super) async fn mark_replayed(pool: &PgPool, sink: &str, seqs: &[i64]) -> Result<(), StoreError> {
    if seqs.is_empty() {
        return Ok(());
    }
    sqlx::query("UPDATE dead_letters SET replayed_at = now() WHERE sink = $1 AND seq = ANY($2)")
        .bind(sink)
        .bind(seqs)
        .execute(pool)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// The advisory-lock key of a sink: the first 8 bytes of SHA-256 over a fixed prefix and the
/// name, so sinks do not collide with each other or with the writer's lock.
pub(super) fn lock_key(sink: &str) -> i64 {
    let digest = Sha256::digest(format!("auditflow sink\0{sink}").as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(key)
}

/// See [`Store::lock_sink`](crate::store::Store::lock_sink).
pub(super) async fn lock(pool: &PgPool, sink: &str) -> Result<Option<Box<dyn SinkLease>>, StoreError> {
    let options = pool.connect_options();
    let mut conn = PgConnection::connect_with(&options).await.map_err(map_err)?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock_key(sink))
        .fetch_one(&mut conn)
        .await
        .map_err(map_err)?;
    if !got {
        // Closing the session is all the cleanup there is: it holds nothing.
        let _ = conn.close().await;
        return Ok(None);
    }
    Ok(Some(Box::new(AdvisoryLease { conn: Some(conn) })))
}

/// A held advisory lock and the session that holds it.
struct AdvisoryLease {
    /// `None` once the session failed: the lock is gone with it.
    conn: Option<PgConnection>,
}

#[async_trait]
impl SinkLease for AdvisoryLease {
    async fn held(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else { return false };
        let alive = matches!(tokio::time::timeout(LEASE_CHECK_TIMEOUT, conn.ping()).await, Ok(Ok(())));
        if !alive {
            // Drop the session: if it was only slow, closing it releases the lock for the
            // replica that will take over, instead of leaving both believing they hold it.
            self.conn = None;
        }
        alive
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::TestDb;
    use crate::store::{DeadLetter, DeadLetterQuery, Store};
    use uuid::Uuid;

    #[tokio::test]
    async fn one_replica_at_a_time_holds_a_sink_and_the_other_takes_over() {
        let db = TestDb::create("unit").await;
        let (a, b) = (db.open().await, db.open().await);
        let mut lease = a
            .lock_sink("splunk")
            .await
            .unwrap()
            .expect("first replica gets the lease");
        assert!(
            b.lock_sink("splunk").await.unwrap().is_none(),
            "second replica must wait"
        );
        // Another sink is independent.
        assert!(b.lock_sink("datadog").await.unwrap().is_some());
        assert!(lease.held().await);
        drop(lease);
        // Dropping the lease closes its session; PostgreSQL releases the lock right after.
        let mut taken = None;
        for _ in 0..50 {
            taken = b.lock_sink("splunk").await.unwrap();
            if taken.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(taken.is_some(), "the standby never took over");
    }

    #[tokio::test]
    async fn cursors_and_dead_letters_round_trip() {
        let db = TestDb::create("unit").await;
        let store = db.open().await;
        store.advance_sink_cursor("s", 5).await.unwrap();
        store.advance_sink_cursor("s", 3).await.unwrap();
        assert_eq!(store.sink_cursor("s").await.unwrap(), 5);
        let id = Uuid::now_v7();
        let letter = DeadLetter {
            sink: "s".into(),
            event_id: id,
            seq: 4,
            reason: "hec_code_6".into(),
            detail: "d".into(),
        };
        store.add_dead_letters(&[letter.clone(), letter]).await.unwrap();
        let q = DeadLetterQuery {
            sink: None,
            include_replayed: false,
            limit: 10,
        };
        assert_eq!(store.dead_letters(&q).await.unwrap().len(), 1);
        store.mark_dead_letters_replayed("s", &[4]).await.unwrap();
        assert!(store.dead_letters(&q).await.unwrap().is_empty());
    }
}
