//! The SQLite write path: one batch, one transaction: find duplicates, assign `seq`s, link the
//! hash chain, insert in multi-row chunks, commit.
//!
//! This is the hot path. Per batch it costs one `BEGIN IMMEDIATE`, one duplicate lookup (all
//! ids bound as a single JSON array), one `INSERT` per chunk of up to [`MAX_CHUNK`] rows, and
//! one `COMMIT` (the only fsync). Chunk sizes are powers of two, so the connection's statement
//! cache holds at most nine prepared `INSERT`s, each reused for every batch.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, Row, SqliteConnection};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{map_err, read, side_tables};
use crate::event::{Event, to_micros};
use crate::store::chain::{self, ChainHead};
use crate::store::checkpoint::{self, Checkpointing};
use crate::store::{Appended, StoreError};

/// Rows per `INSERT` statement at most. 256 rows × 20 columns = 5120 bound parameters, far
/// below SQLite's limit (32766) while already amortising the per-statement round trip to the
/// driver's worker thread.
const MAX_CHUNK: usize = 256;

const COLUMNS: &str = "seq, event_id, event_type, ts_us, actor_type, actor_id, agent_id, server_name, \
     tool_name, decision, outcome, reason, request_id, correlation_id, source_ip, source, metadata, \
     received_us, prev_hash, hash";
const COLUMN_COUNT: usize = 20;

/// `INSERT … VALUES (…), (…)` for 1, 2, 4, … [`MAX_CHUNK`] rows, built once. Indexed by
/// `log2(rows)`.
static INSERT_SQL: LazyLock<Vec<Arc<str>>> = LazyLock::new(|| {
    let row = format!("({})", vec!["?"; COLUMN_COUNT].join(","));
    let mut sizes = Vec::new();
    let mut rows = 1;
    while rows <= MAX_CHUNK {
        let values = vec![row.as_str(); rows].join(",");
        sizes.push(Arc::from(format!(
            "INSERT INTO audit_events ({COLUMNS}) VALUES {values}"
        )));
        rows *= 2;
    }
    sizes
});

/// A new row: the ([normalized](Event::normalized)) event with its `seq`, its canonical
/// metadata JSON and its chain link, ready to insert.
struct LinkedRow<'a> {
    seq: i64,
    event: Cow<'a, Event>,
    metadata: String,
    prev_hash: [u8; 32],
    hash: [u8; 32],
}

/// See [`Store::append`](crate::store::Store::append).
pub(super) async fn append(
    writer: &SqlitePool,
    head: &Mutex<Option<ChainHead>>,
    checkpointing: Option<&Checkpointing>,
    batch: &[Event],
    received_at: DateTime<Utc>,
) -> Result<Vec<Appended>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let received_at = to_micros(received_at);

    // Held until the end: appends are serialised, and the cached head stays `None` (unknown)
    // unless this append commits. If the future is dropped half-way the next append re-reads
    // the head from the table, which the rolled-back transaction did not change.
    let mut head_slot = head.lock().await;
    let cached = head_slot.take();

    // IMMEDIATE takes the write lock now, so the duplicate check and the inserts see the same
    // table even if another process opened the file.
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    let start = match cached {
        Some(h) => h,
        None => read::chain_head(&mut *tx).await?,
    };

    let stored_ids = existing_ids(&mut tx, batch).await?;
    let (results, rows, end) = link_batch(batch, &stored_ids, start, received_at)?;

    for chunk in chunks(rows) {
        insert_chunk(&mut tx, &chunk, received_at).await?;
    }
    // A signed checkpoint in the same transaction when one is due (store/checkpoint.rs).
    let mut signed = None;
    if let Some(c) = checkpointing {
        let last = side_tables::last_checkpoint(&mut tx).await?;
        if c.due(end.seq, last, Utc::now()) {
            let cp = c.signer.sign(end, Utc::now());
            side_tables::insert_checkpoint(&mut tx, &cp).await?;
            signed = Some(cp);
        }
    }
    tx.commit().await.map_err(map_err)?;

    *head_slot = Some(end);
    if let Some(cp) = &signed {
        checkpoint::log_checkpoint(cp);
    }
    Ok(results)
}

/// The `(source, event_id)` keys of `batch` that are already stored.
async fn existing_ids(conn: &mut SqliteConnection, batch: &[Event]) -> Result<HashSet<(String, Uuid)>, StoreError> {
    // One statement whatever the batch size: the ids travel as one JSON array and the index on
    // event_id answers the IN; the source is compared here.
    let ids: Vec<String> = batch.iter().map(|e| e.event_id.to_string()).collect();
    let ids = serde_json::to_string(&ids).map_err(|e| StoreError::Database(format!("encoding ids: {e}")))?;
    let rows =
        sqlx::query("SELECT source, event_id FROM audit_events WHERE event_id IN (SELECT value FROM json_each(?1))")
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
    rows.iter()
        .map(|row| {
            let source: String = row.try_get(0).map_err(map_err)?;
            let id: String = row.try_get(1).map_err(map_err)?;
            let id =
                Uuid::parse_str(&id).map_err(|_| StoreError::Database("a stored event_id is not a UUID".into()))?;
            Ok((source, id))
        })
        .collect()
}

/// Decide stored/duplicate for each event, give the new ones consecutive `seq`s from `start`,
/// and link each to the previous one. Returns the per-event results, the rows to insert and
/// the new chain head.
fn link_batch<'a>(
    batch: &'a [Event],
    stored_ids: &HashSet<(String, Uuid)>,
    start: ChainHead,
    received_at: DateTime<Utc>,
) -> Result<(Vec<Appended>, Vec<LinkedRow<'a>>, ChainHead), StoreError> {
    let mut results = Vec::with_capacity(batch.len());
    let mut rows = Vec::with_capacity(batch.len());
    let mut seen = HashSet::with_capacity(batch.len());
    let mut head = start;
    let mut scratch = Vec::with_capacity(512);
    for event in batch {
        let event = event.normalized();
        let key = (event.source.clone(), event.event_id);
        if stored_ids.contains(&key) || !seen.insert(key) {
            results.push(Appended::Duplicate);
            continue;
        }
        let seq = head
            .seq
            .checked_add(1)
            .ok_or_else(|| StoreError::Database("sequence number exhausted".into()))?;
        let metadata = chain::canonical_json(&event.metadata);
        scratch.clear();
        chain::write_canonical_parts(seq, received_at, &event, &metadata, &mut scratch);
        let hash = chain::link(&head.hash, &scratch);
        rows.push(LinkedRow {
            seq,
            event,
            metadata,
            prev_hash: head.hash,
            hash,
        });
        head = ChainHead { seq, hash };
        results.push(Appended::Stored { seq });
    }
    Ok((results, rows, head))
}

/// Chunk sizes for `n` rows: powers of two, largest first, at most [`MAX_CHUNK`]
/// (e.g. 600 → 256, 256, 64, 16, 8).
fn chunk_sizes(mut n: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    while n > 0 {
        let size = if n >= MAX_CHUNK { MAX_CHUNK } else { 1 << n.ilog2() };
        sizes.push(size);
        n -= size;
    }
    sizes
}

fn chunks(rows: Vec<LinkedRow<'_>>) -> Vec<Vec<LinkedRow<'_>>> {
    let sizes = chunk_sizes(rows.len());
    let mut rest = rows.into_iter();
    sizes
        .into_iter()
        .map(|size| rest.by_ref().take(size).collect())
        .collect()
}

async fn insert_chunk(
    conn: &mut SqliteConnection,
    rows: &[LinkedRow<'_>],
    received_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(sql) = INSERT_SQL.get(rows.len().ilog2() as usize) else {
        return Err(StoreError::Database(format!(
            "no insert statement for {} rows",
            rows.len()
        )));
    };
    let mut q = sqlx::query(AssertSqlSafe(Arc::clone(sql)));
    for row in rows {
        // Borrowed strings go into the arguments without copying their bytes.
        let e = &*row.event;
        q = q
            .bind(row.seq)
            .bind(e.event_id.to_string())
            .bind(e.event_type.as_str())
            .bind(e.timestamp.timestamp_micros())
            .bind(e.actor_type())
            .bind(e.actor_id())
            .bind(e.agent_id.as_deref())
            .bind(e.server_name.as_deref())
            .bind(e.tool_name.as_deref())
            .bind(e.decision.map(|d| d.as_str()))
            .bind(e.outcome.as_deref())
            .bind(e.reason.as_deref())
            .bind(e.request_id.as_deref())
            .bind(e.correlation_id.as_deref())
            .bind(e.source_ip.as_deref())
            .bind(e.source.as_str())
            .bind(row.metadata.as_str())
            .bind(received_at.timestamp_micros())
            .bind(&row.prev_hash[..])
            .bind(&row.hash[..]);
    }
    q.execute(&mut *conn).await.map_err(map_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statements_have_one_placeholder_per_column_and_row() {
        for (i, sql) in INSERT_SQL.iter().enumerate() {
            assert_eq!(sql.matches('?').count(), COLUMN_COUNT << i);
        }
        assert_eq!(COLUMNS.split(',').count(), COLUMN_COUNT);
        assert_eq!(INSERT_SQL.len(), MAX_CHUNK.ilog2() as usize + 1);
    }

    #[test]
    fn chunk_sizes_are_powers_of_two_covering_every_row() {
        assert_eq!(chunk_sizes(600), vec![256, 256, 64, 16, 8]);
        assert_eq!(chunk_sizes(0), Vec::<usize>::new());
        for n in [1, 2, 3, 255, 256, 257, 5000] {
            let sizes = chunk_sizes(n);
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= MAX_CHUNK));
        }
    }
}
