//! The PostgreSQL write path: one batch, one transaction, a fixed number of round trips
//! whatever the batch size.
//!
//! 1. `BEGIN; SELECT pg_advisory_xact_lock(WRITER_LOCK)` in one round trip: one chain writer
//!    at a time across every auditflow process on this database.
//! 2. Read the chain state: the highest `seq` (from `event_ids`, an index-only lookup) and the
//!    newest checkpoint. The head hash comes from this process's cache when the highest `seq`
//!    is the one it committed last, else from the row.
//! 3. Duplicates: ids repeated inside the batch are dropped in memory (the first copy wins).
//!    Ids stored before are found either by one `SELECT … WHERE event_id = ANY($1)` against
//!    `event_ids`, or, optimistically, by the `event_ids` primary key in step 4 (see
//!    [`append`]).
//! 4. One binary `COPY` into `event_ids` (`event_id`, `seq`), then one into `audit_events`,
//!    streamed in pieces while the next rows are hashed, linked and encoded.
//! 5. A signed checkpoint row when one is due; `COMMIT` (the one WAL flush).
//!
//! Checking ids before inserting is race-free because every writer holds the advisory lock from
//! before the check until its commit: in READ COMMITTED each statement sees every transaction
//! committed before it started, including the previous lock holder's. The primary key of
//! `event_ids` is the backstop either way: an event is never stored twice.

use std::borrow::Cow;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Postgres, Transaction};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::copy::{COPY_AUDIT_EVENTS, COPY_EVENT_IDS, CopyBuffer, event_ids_payload};
use super::{map_err, read};
use crate::event::{Event, to_micros};
use crate::store::chain::{self, ChainHead};
use crate::store::checkpoint::{self, Checkpoint, Checkpointing};
use crate::store::{Appended, StoreError};

/// Wall time between the steps of one append, for the debug log line `postgres batch
/// appended`: `lock_us` (begin, lock, chain state, duplicate lookup if any), `copy_us` (both
/// `COPY`s, with the hashing and encoding that overlaps them), `commit_us` (the checkpoint if
/// due, and the WAL flush). docs/BENCHMARKS.md reads them.
struct Laps(std::time::Instant);

impl Laps {
    fn start() -> Laps {
        Laps(std::time::Instant::now())
    }

    /// Microseconds since the previous lap.
    fn lap(&mut self) -> u64 {
        let now = std::time::Instant::now();
        let us = now.duration_since(self.0).as_micros() as u64;
        self.0 = now;
        us
    }
}

/// What the writer needs to know about the stored chain, read under the lock.
pub(super) struct ChainState {
    /// The highest stored `seq`, 0 when empty.
    pub(super) max_seq: i64,
    /// The newest checkpoint's `seq` and time.
    last_checkpoint: Option<(i64, DateTime<Utc>)>,
}

/// Rows per `COPY` message: the writer hashes and encodes the next piece while PostgreSQL
/// inserts the previous one.
const COPY_PIECE_ROWS: usize = 512;

/// After a batch turned out to hold already stored events, this many following batches look
/// their ids up before inserting (a client resending after an outage sends many).
const CAREFUL_BATCHES: u32 = 16;

/// The writer's memory between appends. Behind a mutex that also serialises this process's
/// appends.
#[derive(Debug, Default)]
pub(super) struct WriterState {
    /// The chain tip after this process's last commit, `None` when unknown. Checked against
    /// the database under the advisory lock (another replica may have appended), so it only
    /// saves reading the head row.
    head: Option<ChainHead>,
    /// Batches left that skip the optimistic path (see [`append`]).
    careful: u32,
}

/// How one attempt at a batch ended.
enum Attempt {
    Committed {
        end: ChainHead,
        signed: Option<Checkpoint>,
    },
    /// The optimistic attempt found an id already stored: rolled back, nothing written.
    FoundDuplicates,
}

/// See [`Store::append`](crate::store::Store::append).
///
/// Optimistic by default: most batches hold only new events, so the duplicate lookup is
/// skipped and the `event_ids` primary key is the check. `event_ids` is copied first, so a
/// stored id fails the transaction before the events are sent; the batch is then retried with
/// the lookup, and so are the next [`CAREFUL_BATCHES`] batches.
pub(super) async fn append(
    pool: &PgPool,
    writer: &Mutex<WriterState>,
    checkpointing: Option<&Checkpointing>,
    batch: &[Event],
    received_at: DateTime<Utc>,
) -> Result<Vec<Appended>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let received_at = to_micros(received_at);
    let candidates = Candidates::new(batch);

    let mut state = writer.lock().await;
    // `None` (unknown) unless an attempt commits: a failed or dropped append leaves no stale tip.
    let cached = state.head.take();
    let mut look_up = state.careful > 0;
    state.careful = state.careful.saturating_sub(1);
    loop {
        let (results, attempt) = attempt(pool, cached, checkpointing, &candidates, received_at, look_up).await?;
        match attempt {
            Attempt::Committed { end, signed } => {
                state.head = Some(end);
                if let Some(cp) = &signed {
                    checkpoint::log_checkpoint(cp);
                }
                return Ok(results);
            }
            Attempt::FoundDuplicates => {
                look_up = true;
                state.careful = CAREFUL_BATCHES;
            }
        }
    }
}

/// One transaction for the batch; with `look_up`, ids already stored are found first,
/// without, they make the attempt fail ([`Attempt::FoundDuplicates`]).
async fn attempt(
    pool: &PgPool,
    cached: Option<ChainHead>,
    checkpointing: Option<&Checkpointing>,
    candidates: &Candidates<'_>,
    received_at: DateTime<Utc>,
    look_up: bool,
) -> Result<(Vec<Appended>, Attempt), StoreError> {
    let mut clock = Laps::start();
    let mut tx = begin_locked(pool).await?;
    let state = chain_state(&mut tx).await?;
    let start = match cached {
        Some(h) if h.seq == state.max_seq => h,
        _ => read::head_at(&mut tx, state.max_seq).await?,
    };
    let stored: HashSet<(String, Uuid)> = if look_up {
        let sources: Vec<&str> = candidates.events.iter().map(|e| e.source.as_str()).collect();
        let ids: Vec<Uuid> = candidates.events.iter().map(|e| e.event_id).collect();
        sqlx::query_as(
            "SELECT source, event_id FROM event_ids \
             WHERE (source, event_id) IN (SELECT * FROM UNNEST($1::text[], $2::uuid[]))",
        )
        .bind(&sources)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?
        .into_iter()
        .collect()
    } else {
        HashSet::new()
    };
    let plan = candidates.plan(&stored, start.seq)?;
    let lock_us = clock.lap();

    let mut end = start;
    if !plan.new.is_empty() {
        let keys = plan.new.iter().map(|&i| {
            let e = &candidates.events[i];
            (e.source.as_str(), e.event_id)
        });
        let mut copy = tx.copy_in_raw(COPY_EVENT_IDS).await.map_err(map_err)?;
        copy.send(event_ids_payload(keys, &plan.seqs)).await.map_err(map_err)?;
        match copy.finish().await {
            Ok(_) => {}
            // 23505 unique_violation: an id is already stored. Dropping `tx` rolls back.
            Err(sqlx::Error::Database(db)) if !look_up && db.code().as_deref() == Some("23505") => {
                return Ok((Vec::new(), Attempt::FoundDuplicates));
            }
            Err(e) => return Err(map_err(e)),
        }
        end = copy_events(&mut tx, candidates, &plan, start, received_at).await?;
    }
    let copy_us = clock.lap();

    let mut signed = None;
    if let Some(c) = checkpointing
        && c.due(end.seq, state.last_checkpoint, Utc::now())
    {
        let cp = c.signer.sign(end, Utc::now());
        insert_checkpoint(&mut tx, &cp).await?;
        signed = Some(cp);
    }
    tx.commit().await.map_err(map_err)?;
    tracing::debug!(
        events = plan.results.len(),
        new = plan.new.len(),
        looked_up = look_up,
        lock_us,
        copy_us,
        commit_us = clock.lap(),
        "postgres batch appended"
    );
    Ok((plan.results, Attempt::Committed { end, signed }))
}

/// Hash, link and encode the new events in order and stream them into `audit_events`, one
/// piece at a time. Returns the new chain head.
async fn copy_events(
    conn: &mut PgConnection,
    candidates: &Candidates<'_>,
    plan: &Plan,
    start: ChainHead,
    received_at: DateTime<Utc>,
) -> Result<ChainHead, StoreError> {
    let mut copy = conn.copy_in_raw(COPY_AUDIT_EVENTS).await.map_err(map_err)?;
    let mut rows = CopyBuffer::with_capacity(COPY_PIECE_ROWS);
    let mut head = start;
    let mut scratch = Vec::with_capacity(1024);
    for (k, (&i, &seq)) in plan.new.iter().zip(&plan.seqs).enumerate() {
        let event = &candidates.events[i];
        let metadata = chain::canonical_json(&event.metadata);
        scratch.clear();
        chain::write_canonical_parts(seq, received_at, event, &metadata, &mut scratch);
        let hash = chain::link(&head.hash, &scratch);
        rows.push(seq, received_at, event, &metadata, &head.hash, &hash);
        head = ChainHead { seq, hash };
        if (k + 1) % COPY_PIECE_ROWS == 0 {
            copy.send(rows.take()).await.map_err(map_err)?;
        }
    }
    copy.send(rows.finish()).await.map_err(map_err)?;
    copy.finish().await.map_err(map_err)?;
    Ok(head)
}

/// A batch without its repeats (the same `(source, event_id)`, the idempotency key): the events
/// that may be new, in order and [normalized](Event::normalized), and for each input position
/// the candidate it is (`None`: it repeats an earlier event of the batch, whose first copy
/// wins).
struct Candidates<'a> {
    events: Vec<Cow<'a, Event>>,
    positions: Vec<Option<usize>>,
}

/// What an attempt writes: the result per input position, and the candidates that are new
/// with their `seq`s.
struct Plan {
    results: Vec<Appended>,
    new: Vec<usize>,
    seqs: Vec<i64>,
}

impl<'a> Candidates<'a> {
    fn new(batch: &'a [Event]) -> Candidates<'a> {
        let mut seen = HashSet::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        let mut positions = Vec::with_capacity(batch.len());
        for event in batch {
            if seen.insert((event.source.as_str(), event.event_id)) {
                positions.push(Some(events.len()));
                events.push(event.normalized());
            } else {
                positions.push(None);
            }
        }
        Candidates { events, positions }
    }

    /// Skip the candidates in `stored` (`(source, event_id)` keys), number the rest from
    /// `last_seq + 1`.
    fn plan(&self, stored: &HashSet<(String, Uuid)>, last_seq: i64) -> Result<Plan, StoreError> {
        let mut seq_of = vec![None; self.events.len()];
        let mut new = Vec::with_capacity(self.events.len());
        let mut seqs = Vec::with_capacity(self.events.len());
        let mut seq = last_seq;
        for (i, event) in self.events.iter().enumerate() {
            if stored.contains(&(event.source.clone(), event.event_id)) {
                continue;
            }
            seq = seq
                .checked_add(1)
                .ok_or_else(|| StoreError::Database("sequence number exhausted".into()))?;
            seq_of[i] = Some(seq);
            new.push(i);
            seqs.push(seq);
        }
        let results = self
            .positions
            .iter()
            .map(|p| match p.and_then(|i| seq_of[i]) {
                Some(seq) => Appended::Stored { seq },
                None => Appended::Duplicate,
            })
            .collect();
        Ok(Plan { results, new, seqs })
    }
}

/// See [`Store::checkpoint`](crate::store::Store::checkpoint): sign the stored head if it moved
/// past the newest checkpoint.
pub(super) async fn checkpoint_now(
    pool: &PgPool,
    checkpointing: &Checkpointing,
) -> Result<Option<Checkpoint>, StoreError> {
    let mut tx = begin_locked(pool).await?;
    let state = chain_state(&mut tx).await?;
    if state.max_seq <= state.last_checkpoint.map_or(0, |(seq, _)| seq) {
        return Ok(None);
    }
    let head = read::head_at(&mut tx, state.max_seq).await?;
    let cp = checkpointing.signer.sign(head, Utc::now());
    insert_checkpoint(&mut tx, &cp).await?;
    tx.commit().await.map_err(map_err)?;
    checkpoint::log_checkpoint(&cp);
    Ok(Some(cp))
}

/// `BEGIN` and the chain writer's lock ([`WRITER_LOCK`](super::WRITER_LOCK)) in one round
/// trip: a simple query of two statements, so the lock is taken inside the new transaction and
/// held until its end.
const BEGIN_LOCKED: &str = "BEGIN; SELECT pg_advisory_xact_lock(7022629598041369719)";

/// A transaction holding the chain writer's lock.
pub(super) async fn begin_locked(pool: &PgPool) -> Result<Transaction<'static, Postgres>, StoreError> {
    pool.begin_with(BEGIN_LOCKED).await.map_err(map_err)
}

pub(super) async fn chain_state(conn: &mut PgConnection) -> Result<ChainState, StoreError> {
    let row = sqlx::query(
        "SELECT (SELECT max(seq) FROM event_ids) AS max_seq, cp.seq AS cp_seq, cp.created_at AS cp_at \
         FROM (SELECT 1) AS one \
         LEFT JOIN LATERAL (SELECT seq, created_at FROM chain_checkpoints ORDER BY seq DESC LIMIT 1) AS cp ON true",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err)?;
    let max_seq: Option<i64> = row.try_get("max_seq").map_err(map_err)?;
    let cp_seq: Option<i64> = row.try_get("cp_seq").map_err(map_err)?;
    let cp_at: Option<DateTime<Utc>> = row.try_get("cp_at").map_err(map_err)?;
    Ok(ChainState {
        max_seq: max_seq.unwrap_or(0),
        last_checkpoint: cp_seq.zip(cp_at),
    })
}

async fn insert_checkpoint(conn: &mut PgConnection, cp: &Checkpoint) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO chain_checkpoints (seq, head_hash, created_at, key_id, signature) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(cp.seq)
    .bind(&cp.head_hash)
    .bind(cp.created_at)
    .bind(&cp.key_id)
    .bind(&cp.signature)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[test]
    fn the_begin_statement_takes_the_writer_lock() {
        assert!(BEGIN_LOCKED.ends_with(&format!("pg_advisory_xact_lock({})", super::super::WRITER_LOCK)));
    }

    #[test]
    fn duplicates_do_not_consume_a_seq() {
        let batch = vec![
            contract::event(1),
            contract::event(2),
            contract::event(1),
            contract::event(3),
        ];
        let candidates = Candidates::new(&batch);
        assert_eq!(candidates.events.len(), 3, "the repeat of event 1 is not a candidate");
        let plan = candidates
            .plan(
                &HashSet::from([(contract::event(2).source, contract::event(2).event_id)]),
                10,
            )
            .expect("plan");
        assert_eq!(
            plan.results,
            vec![
                Appended::Stored { seq: 11 },
                Appended::Duplicate,
                Appended::Duplicate,
                Appended::Stored { seq: 12 }
            ]
        );
        assert_eq!(plan.new, vec![0, 2]);
        assert_eq!(plan.seqs, vec![11, 12]);
        // Without the lookup (the optimistic attempt) every candidate is new.
        let plan = candidates.plan(&HashSet::new(), 0).expect("plan");
        assert_eq!(plan.seqs, vec![1, 2, 3]);
    }
}
