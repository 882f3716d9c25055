//! Durable storage of audit events: the [`Store`] contract and how to open one.
//!
//! - [`Store`] (this file): what every backend promises: atomic, idempotent batch appends with a
//!   gapless `seq` and a hash chain; filtered reads; a cheap reachability check.
//! - [`sqlite`]: the embedded default backend; [`postgres`]: the production backend. Both pass
//!   the same [`contract`] suite.
//! - [`group_commit`]: the single writer task that merges concurrent requests into one
//!   transaction and answers each after the commit ([`GroupCommit`]).
//! - [`chain`]: the canonical bytes of an event and the hash link between events.
//! - [`checkpoint`]: signed checkpoints of the chain head; [`verify`]: `auditflow verify`.
//! - [`retention`]: removing old events with a signed record that `verify` accepts.
//! - [`query`]: [`EventQuery`], the read filter.
//! - [`sink_state`]: what the SIEM sinks keep here: cursors, dead letters, leases.
//!
//! Ingest never calls [`Store::append`] directly: it goes through [`GroupCommit`], which is
//! the only writer.

pub mod chain;
pub mod checkpoint;
#[doc(hidden)]
pub mod contract;
pub mod group_commit;
pub mod postgres;
pub mod query;
pub mod retention;
pub mod sink_state;
pub mod sqlite;
pub mod verify;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::event::{Event, StoredEvent};

pub use chain::ChainedEvent;
pub use checkpoint::{Checkpoint, Checkpointing};
pub use group_commit::{CommitError, CommitReceipt, GroupCommit, GroupCommitConfig};
pub use postgres::PostgresStore;
pub use query::EventQuery;
pub use sink_state::{DeadLetter, DeadLetterQuery, DeadLettered, LocalLease, SinkLease};
pub use sqlite::SqliteStore;

/// An event a pipeline stage failed on under its `quarantine` error policy: stored instead of
/// the event, without its payload (which may hold what the stage should have removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    /// The authenticated source of the event (with `event_id`, its identity).
    pub source: String,
    pub event_id: Uuid,
    /// The stage's name from the config.
    pub stage: String,
    /// Why the stage failed. Must not carry event contents.
    pub error: String,
}

/// A stored [`QuarantineRecord`] with the time it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Empty for records stored before sources were recorded.
    pub source: String,
    pub event_id: Uuid,
    pub stage: String,
    pub error: String,
    pub quarantined_at: DateTime<Utc>,
}

/// What happened to one event of an appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Newly stored under this sequence number.
    Stored { seq: i64 },
    /// Its `event_id` was already stored, or appeared earlier in the same batch: nothing
    /// was written for it.
    Duplicate,
}

/// Why a store operation failed. Messages carry ids, counts and database diagnostics, never
/// event contents (they end up in logs and HTTP error bodies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached, opened or written right now (down, locked, disk full).
    /// Callers answer 503 and the client retries.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused the operation or returned something unexpected.
    #[error("database error: {0}")]
    Database(String),
    /// The database refused the batch for what it holds (a value too large for an index, a
    /// value its type cannot hold): sending the same events again fails the same way, while
    /// other events would go through. The message names the database's reason (SQLSTATE and a
    /// fixed description), never a value.
    #[error("the database refused the events: {0}")]
    Rejected(String),
    /// The storage URL names a backend or option this build does not provide.
    #[error("{0}")]
    Unsupported(String),
    /// The schema migrations failed at open.
    #[error("migrations failed: {0}")]
    Migrate(String),
}

/// The storage contract every backend implements (tested by [`contract`]).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Store a batch in one transaction, stamped with `received_at`. Events are stored
    /// [normalized](Event::normalize) (U+0000 → U+FFFD, `-0.0` → `0.0`), the same on every
    /// backend.
    ///
    /// `(source, event_id)` is the idempotency key: an event whose id is already stored for its
    /// source, or that repeats a key earlier in this batch, is skipped and reported as
    /// [`Appended::Duplicate`]. The same id from two sources is two events. New
    /// events get consecutive `seq`s (store-wide, no gaps) and hash-chain links, in batch
    /// order. Returns one [`Appended`] per input event, in order. Nothing is visible to
    /// readers before the commit; on error nothing of the batch is stored.
    async fn append(&self, batch: &[Event], received_at: DateTime<Utc>) -> Result<Vec<Appended>, StoreError>;

    /// Stored events matching `q`, ordered by `seq` ascending.
    async fn query(&self, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;

    /// Up to `limit` events with `seq > after_seq`, in `seq` order, with their chain links:
    /// what `auditflow verify` walks. A backend whose schema cannot make `seq` unique by itself
    /// (PostgreSQL's partitioned table) never ends a page between two rows of the same `seq`,
    /// so a forged duplicate is always seen next to the original.
    async fn chain(&self, after_seq: i64, limit: i64) -> Result<Vec<ChainedEvent>, StoreError>;

    /// The number of stored events.
    async fn count(&self) -> Result<i64, StoreError>;

    /// Succeeds when the database answers a trivial query (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// The backend's name for logs and `/health/detailed`: `"sqlite"`, `"postgres"`.
    fn kind(&self) -> &'static str;

    /// Store quarantine records in one transaction. Idempotent per `(source, event_id, stage)`:
    /// a record already stored is skipped (the first one wins), so a resent request that fails
    /// the same way again is not counted twice.
    async fn quarantine(&self, entries: &[QuarantineRecord]) -> Result<(), StoreError> {
        let _ = entries;
        Err(StoreError::Unsupported(format!(
            "the {} store keeps no quarantine",
            self.kind()
        )))
    }

    /// The newest `limit` quarantine records, newest first.
    async fn quarantined(&self, limit: i64) -> Result<Vec<Quarantined>, StoreError> {
        let _ = limit;
        Err(StoreError::Unsupported(format!(
            "the {} store keeps no quarantine",
            self.kind()
        )))
    }

    /// Sign chain checkpoints with `checkpointing` from now on: [`append`](Self::append)
    /// writes one in the same transaction whenever [`Checkpointing::due`] says so.
    fn enable_checkpoints(&self, checkpointing: Arc<Checkpointing>) -> Result<(), StoreError> {
        let _ = checkpointing;
        Err(StoreError::Unsupported(format!(
            "the {} store keeps no checkpoints",
            self.kind()
        )))
    }

    /// Sign the current chain head now if checkpoints are enabled and events were stored since
    /// the newest checkpoint; returns the new checkpoint, or `None` when there was nothing to
    /// sign. Called by the idle timer ([`checkpoint::spawn_timer`]) and at shutdown.
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        Ok(None)
    }

    /// Up to `limit` checkpoints with `seq > after_seq`, in `seq` order (what `auditflow
    /// verify` checks).
    async fn checkpoints(&self, after_seq: i64, limit: i64) -> Result<Vec<Checkpoint>, StoreError> {
        let _ = (after_seq, limit);
        Ok(Vec::new())
    }

    /// Remove the events `request` names, with a retention record signed by `signer` in the
    /// same transaction ([`retention`]); a dry run only reports.
    async fn apply_retention(
        &self,
        request: retention::RetentionRequest,
        signer: &checkpoint::CheckpointSigner,
    ) -> Result<retention::RetentionOutcome, StoreError> {
        let _ = (request, signer);
        Err(StoreError::Unsupported(format!(
            "the {} store has no retention",
            self.kind()
        )))
    }

    /// Every retention record, oldest first (what `auditflow verify` checks).
    async fn retention_records(&self) -> Result<Vec<retention::RetentionRecord>, StoreError> {
        Ok(Vec::new())
    }

    // --- SIEM sinks (see [`sink_state`]) ---------------------------------------------------

    /// The highest stored `seq` (0 when the store is empty). With a gapless `seq`, a sink's
    /// backlog is this minus its cursor.
    async fn last_seq(&self) -> Result<i64, StoreError> {
        Err(StoreError::Unsupported(format!(
            "the {} store keeps no sink state",
            self.kind()
        )))
    }

    /// The sink's cursor: the highest `seq` it has finished with (delivered or dead-lettered);
    /// 0 for a sink that never ran.
    async fn sink_cursor(&self, sink: &str) -> Result<i64, StoreError> {
        let _ = sink;
        Err(StoreError::Unsupported(format!(
            "the {} store keeps no sink state",
            self.kind()
        )))
    }

    /// Move the sink's cursor forward to `seq`. Never backwards: a lower value is ignored, so a
    /// replica that lost its lease mid-batch cannot undo the new holder's progress.
    async fn advance_sink_cursor(&self, sink: &str, seq: i64) -> Result<(), StoreError> {
        let _ = (sink, seq);
        Err(StoreError::Unsupported(format!(
            "the {} store keeps no sink state",
            self.kind()
        )))
    }

    /// Store dead letters in one transaction. Idempotent per `(sink, seq)`: a letter for a
    /// pair already stored updates its reason (and, if it had been replayed, makes it pending
    /// again), so a batch resent after a crash does not park an event twice.
    async fn add_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StoreError> {
        let _ = letters;
        Err(StoreError::Unsupported(format!(
            "the {} store keeps no sink state",
            self.kind()
        )))
    }

    /// Dead letters matching `q`, by `seq`.
    async fn dead_letters(&self, q: &DeadLetterQuery) -> Result<Vec<DeadLettered>, StoreError> {
        let _ = q;
        Err(StoreError::Unsupported(format!(
            "the {} store keeps no sink state",
            self.kind()
        )))
    }

    /// Mark the sink's dead letters of the events with these `seq`s as replayed (delivered by
    /// `dlq replay`).
    async fn mark_dead_letters_replayed(&self, sink: &str, seqs: &[i64]) -> Result<(), StoreError> {
        let _ = (sink, seqs);
        Err(StoreError::Unsupported(format!(
            "the {} store keeps no sink state",
            self.kind()
        )))
    }

    /// Try to take the right to drive `sink`; `None` while another process holds it.
    async fn lock_sink(&self, sink: &str) -> Result<Option<Box<dyn SinkLease>>, StoreError> {
        let _ = sink;
        Ok(Some(Box::new(LocalLease)))
    }
}

/// Open the store a storage URL names, creating and migrating the database as needed.
///
/// - `sqlite://path`, `sqlite:path`, `sqlite::memory:`: the embedded SQLite store (the file and
///   its parent directory are created when missing).
/// - `postgres://…`, `postgresql://…`: the PostgreSQL store (the database must exist; the
///   schema is migrated and the monthly partitions are created).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        let store = SqliteStore::open(url).await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresStore::open(url).await?;
        return Ok(Arc::new(store));
    }
    // Name only the scheme: the rest of a URL may hold a password.
    let scheme = url.split_once(':').map_or("(none)", |(s, _)| s);
    Err(StoreError::Unsupported(format!(
        "storage url scheme `{scheme}` is not supported (use sqlite: or postgres://)"
    )))
}

/// Open a store that must exist already (what the reading tools do: `query`, `verify`,
/// `quarantine`, `dlq`): a SQLite file that is not there is an error naming the path, instead
/// of a new empty database left behind.
pub async fn open_existing(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:")
        && let Some(file) = sqlite::database_file(url)
        && !file.exists()
    {
        return Err(StoreError::Unavailable(format!(
            "no SQLite database at {} (nothing stored there yet, or a wrong storage url)",
            file.display()
        )));
    }
    open(url).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opening_an_existing_store_never_creates_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("missing.db");
        let url = format!("sqlite://{}", file.display());
        let err = open_existing(&url).await.err().expect("refused");
        assert!(err.to_string().contains("missing.db"), "{err}");
        assert!(!file.exists(), "the tool created the database");
        open(&url).await.expect("open creates it");
        open_existing(&url).await.expect("now it exists");
    }

    #[tokio::test]
    async fn unreachable_postgres_is_unavailable_without_echoing_the_password() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let err = open("postgres://user:secret@127.0.0.1:1/audit").await.err();
        match err {
            Some(StoreError::Unavailable(msg)) => assert!(!msg.contains("secret"), "message leaks the URL: {msg}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unknown_scheme_is_refused_without_echoing_the_url() {
        match open("mysql://root:hunter2@db/audit").await.err() {
            Some(StoreError::Unsupported(msg)) => {
                assert!(msg.contains("`mysql`"), "{msg}");
                assert!(!msg.contains("hunter2"), "{msg}");
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn memory_url_opens_a_working_sqlite_store() {
        let store = open("sqlite::memory:").await.expect("open");
        assert_eq!(store.kind(), "sqlite");
        store.ping().await.expect("ping");
        assert_eq!(store.count().await.expect("count"), 0);
    }
}
