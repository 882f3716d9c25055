//! The SQLite store's tables beside the chain: signed checkpoints (`chain_checkpoints`) and
//! quarantine records (`quarantine`). Same meaning as on PostgreSQL; times are INTEGER
//! microseconds since the Unix epoch.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqlitePool;
use sqlx::{Row, SqliteConnection};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{map_err, read};
use crate::store::chain::ChainHead;
use crate::store::checkpoint::{self, Checkpoint, Checkpointing};
use crate::store::{QuarantineRecord, Quarantined, StoreError};

/// The newest checkpoint's `seq` and time.
pub(super) async fn last_checkpoint(conn: &mut SqliteConnection) -> Result<Option<(i64, DateTime<Utc>)>, StoreError> {
    let row = sqlx::query("SELECT seq, created_us FROM chain_checkpoints ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?;
    let Some(row) = row else { return Ok(None) };
    let seq: i64 = row.try_get("seq").map_err(map_err)?;
    let at = micros_to_time(row.try_get("created_us").map_err(map_err)?)
        .ok_or_else(|| StoreError::Database(format!("checkpoint seq {seq}: created_us out of range")))?;
    Ok(Some((seq, at)))
}

pub(super) async fn insert_checkpoint(conn: &mut SqliteConnection, cp: &Checkpoint) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO chain_checkpoints (seq, head_hash, created_us, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(cp.seq)
    .bind(&cp.head_hash)
    .bind(cp.created_at.timestamp_micros())
    .bind(&cp.key_id)
    .bind(&cp.signature)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// See [`Store::checkpoint`](crate::store::Store::checkpoint). Takes the writer's head lock, so
/// it never interleaves with an append.
pub(super) async fn checkpoint_now(
    writer: &SqlitePool,
    head: &Mutex<Option<ChainHead>>,
    checkpointing: &Checkpointing,
) -> Result<Option<Checkpoint>, StoreError> {
    let head_slot = head.lock().await;
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    let current = match *head_slot {
        Some(h) => h,
        None => read::chain_head(&mut *tx).await?,
    };
    let last_seq = last_checkpoint(&mut tx).await?.map_or(0, |(seq, _)| seq);
    if current.seq <= last_seq {
        return Ok(None);
    }
    let cp = checkpointing.signer.sign(current, Utc::now());
    insert_checkpoint(&mut tx, &cp).await?;
    tx.commit().await.map_err(map_err)?;
    checkpoint::log_checkpoint(&cp);
    Ok(Some(cp))
}

/// See [`Store::checkpoints`](crate::store::Store::checkpoints).
pub(super) async fn checkpoints(
    reader: &SqlitePool,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<Checkpoint>, StoreError> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT seq, head_hash, created_us, key_id, signature FROM chain_checkpoints WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )
    .bind(after_seq)
    .bind(limit)
    .fetch_all(reader)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|row| {
            let seq: i64 = row.try_get("seq").map_err(map_err)?;
            Ok(Checkpoint {
                seq,
                head_hash: row.try_get("head_hash").map_err(map_err)?,
                created_at: micros_to_time(row.try_get("created_us").map_err(map_err)?)
                    .ok_or_else(|| StoreError::Database(format!("checkpoint seq {seq}: created_us out of range")))?,
                key_id: row.try_get("key_id").map_err(map_err)?,
                signature: row.try_get("signature").map_err(map_err)?,
            })
        })
        .collect()
}

/// See [`Store::quarantine`](crate::store::Store::quarantine): one transaction, idempotent per
/// `(source, event_id, stage)`.
pub(super) async fn quarantine(writer: &SqlitePool, entries: &[QuarantineRecord]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let now = Utc::now().timestamp_micros();
    let mut tx = writer.begin().await.map_err(map_err)?;
    for e in entries {
        sqlx::query(
            "INSERT INTO quarantine (source, event_id, stage, error, quarantined_us) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (source, event_id, stage) DO NOTHING",
        )
        .bind(&e.source)
        .bind(e.event_id.to_string())
        .bind(&e.stage)
        .bind(&e.error)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)?;
    Ok(())
}

/// See [`Store::quarantined`](crate::store::Store::quarantined).
pub(super) async fn quarantined(reader: &SqlitePool, limit: i64) -> Result<Vec<Quarantined>, StoreError> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT source, event_id, stage, error, quarantined_us FROM quarantine \
         ORDER BY quarantined_us DESC, event_id, stage LIMIT ?1",
    )
    .bind(limit)
    .fetch_all(reader)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("event_id").map_err(map_err)?;
            let event_id = Uuid::parse_str(&id)
                .map_err(|_| StoreError::Database("a quarantined event_id is not a UUID".into()))?;
            Ok(Quarantined {
                source: row.try_get("source").map_err(map_err)?,
                event_id,
                stage: row.try_get("stage").map_err(map_err)?,
                error: row.try_get("error").map_err(map_err)?,
                quarantined_at: micros_to_time(row.try_get("quarantined_us").map_err(map_err)?)
                    .ok_or_else(|| StoreError::Database("quarantined_us out of range".into()))?,
            })
        })
        .collect()
}

fn micros_to_time(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}
