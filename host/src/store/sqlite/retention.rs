//! Retention on SQLite ([`crate::store::retention`]): the rows older than the cut-off go, with a
//! signed record of them, in one `BEGIN IMMEDIATE` transaction that also holds the writer's lock.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use tokio::sync::Mutex;

use super::{map_err, read};
use crate::store::StoreError;
use crate::store::chain::ChainHead;
use crate::store::checkpoint::CheckpointSigner;
use crate::store::retention::{
    RetentionOutcome, RetentionRecord, RetentionRequest, RunBuilder, decode_runs, encode_runs,
};

pub(super) async fn apply(
    writer: &SqlitePool,
    head: &Mutex<Option<ChainHead>>,
    request: RetentionRequest,
    signer: &CheckpointSigner,
) -> Result<RetentionOutcome, StoreError> {
    // Serialised with appends; the head row is never removed, so the cached head stays right.
    let _appends = head.lock().await;
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    let chain_head = read::chain_head(&mut *tx).await?;
    let cutoff = request.cutoff.timestamp_micros();
    // Never the newest event (the chain continues from it), never what a sink still owes.
    let limit = request.keep_after_seq.min(chain_head.seq - 1);
    let mut kept = Vec::new();
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE ts_us < ?1 AND seq > ?2")
        .bind(cutoff)
        .bind(limit)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
    if held > 0 {
        kept.push(format!(
            "{held} events older than the cut-off are kept: they are the newest event or not yet delivered by every sink (seq above {limit})"
        ));
    }
    let mut runs = RunBuilder::default();
    {
        let mut rows = sqlx::query("SELECT seq, hash FROM audit_events WHERE ts_us < ?1 AND seq <= ?2 ORDER BY seq")
            .bind(cutoff)
            .bind(limit)
            .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await.map_err(map_err)? {
            let seq: i64 = row.try_get(0).map_err(map_err)?;
            let hash: Vec<u8> = row.try_get(1).map_err(map_err)?;
            let hash = <[u8; 32]>::try_from(hash.as_slice())
                .map_err(|_| StoreError::Database(format!("row {seq} has a hash that is not 32 bytes")))?;
            runs.push(seq, hash);
        }
    }
    let removed = runs.count();
    let runs = runs.finish();
    if request.dry_run || removed == 0 {
        return Ok(RetentionOutcome {
            removed,
            runs,
            kept,
            record: None,
        });
    }
    let record = RetentionRecord::sign(signer, request.cutoff, chain_head, removed, runs.clone(), Utc::now());
    sqlx::query(
        "INSERT INTO retention_records (cutoff_us, head_seq, head_hash, created_us, removed, runs, key_id, signature) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(record.cutoff.timestamp_micros())
    .bind(record.head_seq)
    .bind(&record.head_hash)
    .bind(record.created_at.timestamp_micros())
    .bind(record.removed)
    .bind(encode_runs(&record.runs))
    .bind(&record.key_id)
    .bind(&record.signature)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    sqlx::query("DELETE FROM audit_events WHERE ts_us < ?1 AND seq <= ?2")
        .bind(cutoff)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(RetentionOutcome {
        removed,
        runs,
        kept,
        record: Some(record),
    })
}

pub(super) async fn records(reader: &SqlitePool) -> Result<Vec<RetentionRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT cutoff_us, head_seq, head_hash, created_us, removed, runs, key_id, signature \
         FROM retention_records ORDER BY id",
    )
    .fetch_all(reader)
    .await
    .map_err(map_err)?;
    let time = |us: i64| {
        DateTime::from_timestamp_micros(us)
            .ok_or_else(|| StoreError::Database("a retention time is out of range".into()))
    };
    rows.iter()
        .map(|row| {
            let runs: Vec<u8> = row.try_get("runs").map_err(map_err)?;
            Ok(RetentionRecord {
                cutoff: time(row.try_get("cutoff_us").map_err(map_err)?)?,
                head_seq: row.try_get("head_seq").map_err(map_err)?,
                head_hash: row.try_get("head_hash").map_err(map_err)?,
                created_at: time(row.try_get("created_us").map_err(map_err)?)?,
                removed: row.try_get("removed").map_err(map_err)?,
                // Runs that do not decode verify as none: the record's signature then fails.
                runs: decode_runs(&runs).unwrap_or_default(),
                key_id: row.try_get("key_id").map_err(map_err)?,
                signature: row.try_get("signature").map_err(map_err)?,
            })
        })
        .collect()
}
