//! The PostgreSQL store: connecting, migrating, the background partition maintenance, and the
//! [`Store`] implementation, which delegates to the write path (`append.rs`), the read path
//! (`read.rs`), the quarantine table (`quarantine.rs`) and the monthly partitions
//! (`partitions.rs`). [`copy`] encodes rows for `COPY … (FORMAT binary)`; it is public so the
//! benchmark's raw-COPY ceiling uses exactly the writer's encoding.
//!
//! Durability: each batch is one transaction committed with the server's defaults
//! (`synchronous_commit = on`: the WAL is flushed before the commit returns), so an acknowledged
//! event survives a crash of auditflow or of PostgreSQL.
//!
//! Replicas: any number of auditflow processes may share one database. Every write of the chain
//! (appends, checkpoints, partition changes) runs under one transaction-scoped advisory lock
//! ([`WRITER_LOCK`]), so `seq` stays gapless and the chain linear across processes.
//!
//! Outages: the pool reconnects by itself. While the database is unreachable every operation
//! fails within [`ACQUIRE_TIMEOUT`] with [`StoreError::Unavailable`], which ingest answers with
//! 503 + `Retry-After`.

mod append;
pub mod copy;
mod partitions;
mod quarantine;
mod read;
mod retention;
mod sinks;

use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::chain::ChainedEvent;
use super::checkpoint::{Checkpoint, Checkpointing};
use super::{Appended, EventQuery, QuarantineRecord, Quarantined, Store, StoreError};
use super::{DeadLetter, DeadLetterQuery, DeadLettered, SinkLease};
use crate::event::{Event, StoredEvent};

/// The key of the transaction-scoped advisory lock every chain write takes
/// (`pg_advisory_xact_lock`): the ASCII bytes of "auditflw". Released by commit or rollback,
/// so a writer that dies (even `kill -9`) never leaves it held.
pub const WRITER_LOCK: i64 = 0x6175_6469_7466_6c77;

/// How long an operation waits for a connection (including reconnecting to a database that is
/// down) before failing as unavailable. Short: ingest should answer 503 promptly rather than
/// hold the client.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Connections: one for the writer, the rest for reads (queries, sinks, health, verify).
const MAX_CONNECTIONS: u32 = 8;

/// How often the partitions ahead of time are checked and created.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(3600);

/// The PostgreSQL backend. Cheap to share behind an `Arc`.
pub struct PostgresStore {
    pool: PgPool,
    /// The writer's memory between appends (chain tip, duplicate strategy); the lock also
    /// serialises this process's appends.
    writer: Mutex<append::WriterState>,
    /// Set by [`Store::enable_checkpoints`].
    checkpointing: RwLock<Option<Arc<Checkpointing>>>,
    /// The hourly partition maintenance; stopped when the store is dropped.
    maintenance: JoinHandle<()>,
}

impl PostgresStore {
    /// Connect to the database a `postgres://` URL names (it must exist), migrate it, and create
    /// the monthly partitions around the current month.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        // The parse error may quote the URL, which may hold a password: do not pass it on.
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| {
                StoreError::Unsupported("invalid postgres url (expected postgres://user@host:port/database)".into())
            })?
            .application_name("auditflow");
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to postgres: {}", message(map_err(e)))))?;

        sqlx::migrate!("../migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;

        // A failure here is not fatal: the DEFAULT partition takes every event meanwhile, and the
        // hourly maintenance tries again.
        if let Err(e) = partitions::maintain(&pool, Utc::now()).await {
            tracing::warn!(error = %e, "partition maintenance failed at open; events go to the default partition meanwhile");
        }
        let maintenance = tokio::spawn(partitions::run_periodically(pool.clone(), MAINTENANCE_INTERVAL));

        let last_seq = read::max_seq(&pool).await?;
        tracing::info!(last_seq, "postgres store open");
        Ok(PostgresStore {
            pool,
            writer: Mutex::default(),
            checkpointing: RwLock::new(None),
            maintenance,
        })
    }

    /// The connection pool, for tools and tests that need plain SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Create the monthly partitions around `now` (what the hourly task does).
    pub async fn maintain_partitions(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        partitions::maintain(&self.pool, now).await
    }

    fn checkpointing(&self) -> Option<Arc<Checkpointing>> {
        // A poisoned lock only means a panic while replacing an Arc; the value is still whole.
        self.checkpointing.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.maintenance.abort();
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn append(&self, batch: &[Event], received_at: DateTime<Utc>) -> Result<Vec<Appended>, StoreError> {
        append::append(
            &self.pool,
            &self.writer,
            self.checkpointing().as_deref(),
            batch,
            received_at,
        )
        .await
    }

    async fn query(&self, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        read::query(&self.pool, q).await
    }

    async fn chain(&self, after_seq: i64, limit: i64) -> Result<Vec<ChainedEvent>, StoreError> {
        read::chain(&self.pool, after_seq, limit).await
    }

    async fn count(&self) -> Result<i64, StoreError> {
        read::count(&self.pool).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        read::ping(&self.pool).await
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn quarantine(&self, entries: &[QuarantineRecord]) -> Result<(), StoreError> {
        quarantine::insert(&self.pool, entries).await
    }

    async fn quarantined(&self, limit: i64) -> Result<Vec<Quarantined>, StoreError> {
        quarantine::newest(&self.pool, limit).await
    }

    fn enable_checkpoints(&self, checkpointing: Arc<Checkpointing>) -> Result<(), StoreError> {
        *self.checkpointing.write().unwrap_or_else(|e| e.into_inner()) = Some(checkpointing);
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        match self.checkpointing() {
            Some(c) => append::checkpoint_now(&self.pool, &c).await,
            None => Ok(None),
        }
    }

    async fn checkpoints(&self, after_seq: i64, limit: i64) -> Result<Vec<Checkpoint>, StoreError> {
        read::checkpoints(&self.pool, after_seq, limit).await
    }

    async fn last_seq(&self) -> Result<i64, StoreError> {
        sinks::last_seq(&self.pool).await
    }

    async fn sink_cursor(&self, sink: &str) -> Result<i64, StoreError> {
        sinks::cursor(&self.pool, sink).await
    }

    async fn advance_sink_cursor(&self, sink: &str, seq: i64) -> Result<(), StoreError> {
        sinks::advance(&self.pool, sink, seq).await
    }

    async fn add_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StoreError> {
        sinks::add_dead_letters(&self.pool, letters).await
    }

    async fn dead_letters(&self, q: &DeadLetterQuery) -> Result<Vec<DeadLettered>, StoreError> {
        sinks::dead_letters(&self.pool, q).await
    }

    async fn mark_dead_letters_replayed(&self, sink: &str, seqs: &[i64]) -> Result<(), StoreError> {
        sinks::mark_replayed(&self.pool, sink, seqs).await
    }

    async fn apply_retention(
        &self,
        request: crate::store::retention::RetentionRequest,
        signer: &crate::store::checkpoint::CheckpointSigner,
    ) -> Result<crate::store::retention::RetentionOutcome, StoreError> {
        retention::apply(&self.pool, &self.writer, request, signer).await
    }

    async fn retention_records(&self) -> Result<Vec<crate::store::retention::RetentionRecord>, StoreError> {
        retention::records(&self.pool).await
    }

    async fn lock_sink(&self, sink: &str) -> Result<Option<Box<dyn SinkLease>>, StoreError> {
        sinks::lock(&self.pool, sink).await
    }
}

/// Classify a driver error. Connection-level trouble (refused, reset, pool timeout, the server
/// shutting down or out of resources, serialization failures) is `Unavailable`, so clients get
/// a 503 and retry; anything else is a `Database` error. Only the SQLSTATE and PostgreSQL's
/// primary message are kept: the message names constraints and types, never values (those are
/// in the DETAIL field, which is dropped).
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.get(..2) {
                // Classes: 08 connection exception, 53 insufficient resources, 57 operator
                // intervention (shutdown, cancel), 58 system error (I/O), 40 transaction
                // rollback (serialization failure, deadlock): all worth retrying.
                Some("08" | "53" | "57" | "58" | "40") => {
                    StoreError::Unavailable(format!("postgres {code}: {}", db.message()))
                }
                // 22 data exception, 54 program limit exceeded (an index row too large): the
                // events themselves. Their primary message may quote a value (22P02 does), so
                // only the code and a fixed description are kept.
                Some("22" | "54") => StoreError::Rejected(format!("postgres {code}: {}", rejected_reason(&code))),
                _ => StoreError::Database(format!("postgres {code}: {}", db.message())),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        other => StoreError::Database(other.to_string()),
    }
}

/// What a content-related SQLSTATE means, in words that carry no value.
fn rejected_reason(code: &str) -> &'static str {
    match code {
        "54000" => "a value is too large for an index",
        "22001" => "a value is too long for its column",
        "22021" => "a string is not valid in the database encoding",
        "22P05" => "a string holds a character the database cannot store",
        "22003" => "a number is out of range",
        "22007" | "22008" => "a time is out of range",
        c if c.starts_with("54") => "a value exceeds a database limit",
        _ => "a value the database cannot store",
    }
}

/// The message inside a [`StoreError`], without its prefix, for wrapping it in another.
fn message(e: StoreError) -> String {
    match e {
        StoreError::Unavailable(m)
        | StoreError::Database(m)
        | StoreError::Rejected(m)
        | StoreError::Unsupported(m)
        | StoreError::Migrate(m) => m,
    }
}

#[cfg(test)]
mod tests;
