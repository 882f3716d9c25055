//! The embedded SQLite store: opening the database, its connections and settings, and the
//! [`Store`] implementation that delegates to the write path (`append.rs`) and the read path
//! (`read.rs`).
//!
//! Durability: WAL journal with `synchronous = FULL`, so a committed (and therefore
//! acknowledged) batch survives power loss, not just a process crash. One writer connection
//! (SQLite allows one writer at a time anyway, and [`GroupCommit`](super::GroupCommit) is
//! the only caller of `append`), plus a small pool of read-only connections that WAL lets run
//! alongside the writer.

mod append;
mod read;
mod retention;
mod side_tables;
mod sinks;

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::Mutex;

use super::chain::{ChainHead, ChainedEvent};
use super::checkpoint::{Checkpoint, Checkpointing};
use super::{Appended, EventQuery, QuarantineRecord, Quarantined, Store, StoreError};
use super::{DeadLetter, DeadLetterQuery, DeadLettered};
use crate::event::{Event, StoredEvent};

/// How long a connection waits for a lock held by another connection (e.g. a checkpoint, or a
/// second process on the same file) before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page cache of each connection, KiB (`PRAGMA cache_size = -N`).
pub const CACHE_KIB: u64 = 32 * 1024;

/// Page cache of each read connection, KiB: readers mostly read what was just written.
const READ_CACHE_KIB: u64 = 4 * 1024;

/// How much of the database file connections read through mmap (`PRAGMA mmap_size`).
pub const MMAP_BYTES: u64 = 256 << 20;

/// Read connections: queries, the readiness ping, sink cursors. Small: SQLite readers are cheap
/// and this is the embedded backend.
const READ_CONNECTIONS: u32 = 4;

/// The SQLite backend. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    /// Exactly one connection: every append runs on it.
    writer: SqlitePool,
    /// Read-only connections (`query_only`). For an in-memory database this is the writer pool
    /// itself, because separate connections to a shared-cache memory database would contend
    /// on table locks instead of using WAL snapshots.
    reader: SqlitePool,
    /// The chain tip after the last commit, `None` when unknown (at open it is read from the
    /// table; after a failed append it is re-read, because the transaction rolled back and
    /// the tip in memory may be ahead of the table). The lock also serialises appends.
    head: Mutex<Option<ChainHead>>,
    /// Set by [`Store::enable_checkpoints`]: appends then sign checkpoints when due.
    checkpointing: RwLock<Option<Arc<Checkpointing>>>,
}

impl SqliteStore {
    /// Open (creating if missing) and migrate the database a `sqlite:` URL names.
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let memory = is_memory(url);
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unsupported(format!("invalid sqlite url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Eight indexes, two of them on random ids, touch pages all over the file: with
            // SQLite's default 2 MiB page cache most of them are re-read from the OS on every
            // batch (a third of the writer's time went to copying pages in and out of the
            // kernel). A bigger cache and reads through mmap keep them close; durability is
            // unchanged (WAL, synchronous = FULL: writes still go through the WAL and fsync).
            .pragma("cache_size", format!("-{}", CACHE_KIB))
            .pragma("mmap_size", MMAP_BYTES.to_string());

        if !memory {
            create_parent_dir(options.get_filename())?;
        }

        // A pool of one rather than a bare connection: the pool reconnects if the connection
        // breaks. No idle timeout or lifetime: closing the last connection to an in-memory
        // database would drop the database.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open sqlite database: {e}")))?;

        sqlx::migrate!("../migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;

        let reader = if memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READ_CONNECTIONS)
                .connect_with(
                    options
                        .pragma("query_only", "ON")
                        .pragma("cache_size", format!("-{}", READ_CACHE_KIB)),
                )
                .await
                .map_err(|e| StoreError::Unavailable(format!("cannot open sqlite database for reading: {e}")))?
        };

        let head = read::chain_head(&writer).await?;
        tracing::info!(last_seq = head.seq, memory, "sqlite store open");
        Ok(SqliteStore {
            writer,
            reader,
            head: Mutex::new(Some(head)),
            checkpointing: RwLock::new(None),
        })
    }

    fn checkpointing(&self) -> Option<Arc<Checkpointing>> {
        // A poisoned lock only means a panic while replacing an Arc; the value is still whole.
        self.checkpointing.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(&self, batch: &[Event], received_at: DateTime<Utc>) -> Result<Vec<Appended>, StoreError> {
        append::append(
            &self.writer,
            &self.head,
            self.checkpointing().as_deref(),
            batch,
            received_at,
        )
        .await
    }

    async fn query(&self, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        read::query(&self.reader, q).await
    }

    async fn chain(&self, after_seq: i64, limit: i64) -> Result<Vec<ChainedEvent>, StoreError> {
        read::chain(&self.reader, after_seq, limit).await
    }

    async fn count(&self) -> Result<i64, StoreError> {
        read::count(&self.reader).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        read::ping(&self.reader).await
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn quarantine(&self, entries: &[QuarantineRecord]) -> Result<(), StoreError> {
        side_tables::quarantine(&self.writer, entries).await
    }

    async fn quarantined(&self, limit: i64) -> Result<Vec<Quarantined>, StoreError> {
        side_tables::quarantined(&self.reader, limit).await
    }

    fn enable_checkpoints(&self, checkpointing: Arc<Checkpointing>) -> Result<(), StoreError> {
        *self.checkpointing.write().unwrap_or_else(|e| e.into_inner()) = Some(checkpointing);
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        match self.checkpointing() {
            Some(c) => side_tables::checkpoint_now(&self.writer, &self.head, &c).await,
            None => Ok(None),
        }
    }

    async fn checkpoints(&self, after_seq: i64, limit: i64) -> Result<Vec<Checkpoint>, StoreError> {
        side_tables::checkpoints(&self.reader, after_seq, limit).await
    }

    async fn last_seq(&self) -> Result<i64, StoreError> {
        sinks::last_seq(&self.reader).await
    }

    async fn sink_cursor(&self, sink: &str) -> Result<i64, StoreError> {
        sinks::cursor(&self.reader, sink).await
    }

    async fn advance_sink_cursor(&self, sink: &str, seq: i64) -> Result<(), StoreError> {
        sinks::advance(&self.writer, sink, seq).await
    }

    async fn add_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StoreError> {
        sinks::add_dead_letters(&self.writer, letters).await
    }

    async fn dead_letters(&self, q: &DeadLetterQuery) -> Result<Vec<DeadLettered>, StoreError> {
        sinks::dead_letters(&self.reader, q).await
    }

    async fn mark_dead_letters_replayed(&self, sink: &str, seqs: &[i64]) -> Result<(), StoreError> {
        sinks::mark_replayed(&self.writer, sink, seqs).await
    }

    async fn apply_retention(
        &self,
        request: crate::store::retention::RetentionRequest,
        signer: &crate::store::checkpoint::CheckpointSigner,
    ) -> Result<crate::store::retention::RetentionOutcome, StoreError> {
        retention::apply(&self.writer, &self.head, request, signer).await
    }

    async fn retention_records(&self) -> Result<Vec<crate::store::retention::RetentionRecord>, StoreError> {
        retention::records(&self.reader).await
    }
}

/// `sqlite::memory:`, `sqlite://:memory:` or `?mode=memory`: nothing on disk.
/// The database file a `sqlite:` URL names (None for an in-memory database).
pub fn database_file(url: &str) -> Option<std::path::PathBuf> {
    if is_memory(url) {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_owned())
}

fn is_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    path == ":memory:" || params.split('&').any(|p| p == "mode=memory")
}

fn create_parent_dir(file: &Path) -> Result<(), StoreError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create directory {}: {e}", dir.display()))),
        _ => Ok(()),
    }
}

/// Classify a driver error. Transient conditions (locked, I/O, disk full, read-only, cannot
/// open, pool exhausted) are `Unavailable` so clients get a 503 and retry; anything else is a
/// `Database` error. SQLite's messages name constraints and columns, never bound values, so
/// they are safe to pass on.
pub(super) fn map_err(e: sqlx::Error) -> StoreError {
    // Primary result codes (the low byte of an extended code), from sqlite3.h.
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    const TOOBIG: i32 = 18;
    const MISMATCH: i32 = 20;
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
            let msg = format!("sqlite code {code}: {}", db.message());
            match code & 0xff {
                BUSY | LOCKED | READONLY | IOERR | FULL | CANTOPEN => StoreError::Unavailable(msg),
                // The events themselves: a string or blob too big, a value of the wrong type.
                TOOBIG | MISMATCH => {
                    StoreError::Rejected(format!("sqlite code {code}: a value the database cannot store"))
                }
                _ => StoreError::Database(msg),
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Database(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
