//! Retention on PostgreSQL ([`crate::store::retention`]): whole monthly partitions entirely
//! older than the cut-off are dropped, and such rows of the DEFAULT partition deleted, with a
//! signed record of every removed row, in one transaction under the writer's advisory lock.
//! A month whose partition still holds the newest event, or an event a sink has not delivered,
//! is kept whole and reported.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::Mutex;

use super::append::{WriterState, begin_locked, chain_state};
use super::{map_err, partitions, read};
use crate::store::StoreError;
use crate::store::checkpoint::CheckpointSigner;
use crate::store::retention::{
    RetentionOutcome, RetentionRecord, RetentionRequest, RunBuilder, decode_runs, encode_runs,
};

pub(super) async fn apply(
    pool: &PgPool,
    writer: &Mutex<WriterState>,
    request: RetentionRequest,
    signer: &CheckpointSigner,
) -> Result<RetentionOutcome, StoreError> {
    let _appends = writer.lock().await;
    let mut tx = begin_locked(pool).await?;
    let state = chain_state(&mut tx).await?;
    let head = read::head_at(&mut tx, state.max_seq).await?;
    // Never the newest event (the chain continues from it), never what a sink still owes.
    let limit = request.keep_after_seq.min(head.seq - 1);
    let mut kept = Vec::new();
    let mut drop = Vec::new();
    for table in partitions::months_before(&mut tx, request.cutoff).await? {
        let newest: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT max(seq) FROM {table}")))
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        match newest {
            Some(seq) if seq > limit => kept.push(format!(
                "partition {table} is kept whole: it holds the newest event or events not yet delivered by every sink (seq above {limit})"
            )),
            Some(_) => drop.push(table),
            None => {}
        }
    }
    let mut runs = RunBuilder::default();
    {
        let mut rows = sqlx::query(
            "SELECT seq, hash FROM audit_events WHERE tableoid::regclass::text = ANY($1) \
             OR (tableoid = 'audit_events_default'::regclass AND \"timestamp\" < $2 AND seq <= $3) ORDER BY seq",
        )
        .bind(&drop)
        .bind(request.cutoff)
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
    let record = RetentionRecord::sign(signer, request.cutoff, head, removed, runs.clone(), Utc::now());
    sqlx::query(
        "INSERT INTO retention_records (cutoff, head_seq, head_hash, created_at, removed, runs, key_id, signature) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(record.cutoff)
    .bind(record.head_seq)
    .bind(&record.head_hash)
    .bind(record.created_at)
    .bind(record.removed)
    .bind(encode_runs(&record.runs))
    .bind(&record.key_id)
    .bind(&record.signature)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    for table in &drop {
        // Names come from `months_before`, which only returns our own partition names.
        sqlx::query(AssertSqlSafe(format!("DROP TABLE {table}")))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    sqlx::query("DELETE FROM audit_events_default WHERE \"timestamp\" < $1 AND seq <= $2")
        .bind(request.cutoff)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    for table in &drop {
        tracing::info!(partition = %table, "retention: partition dropped");
    }
    Ok(RetentionOutcome {
        removed,
        runs,
        kept,
        record: Some(record),
    })
}

pub(super) async fn records(pool: &PgPool) -> Result<Vec<RetentionRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT cutoff, head_seq, head_hash, created_at, removed, runs, key_id, signature \
         FROM retention_records ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|row| {
            let runs: Vec<u8> = row.try_get("runs").map_err(map_err)?;
            let cutoff: DateTime<Utc> = row.try_get("cutoff").map_err(map_err)?;
            Ok(RetentionRecord {
                cutoff,
                head_seq: row.try_get("head_seq").map_err(map_err)?,
                head_hash: row.try_get("head_hash").map_err(map_err)?,
                created_at: row.try_get("created_at").map_err(map_err)?,
                removed: row.try_get("removed").map_err(map_err)?,
                // Runs that do not decode verify as none: the record's signature then fails.
                runs: decode_runs(&runs).unwrap_or_default(),
                key_id: row.try_get("key_id").map_err(map_err)?,
                signature: row.try_get("signature").map_err(map_err)?,
            })
        })
        .collect()
}
