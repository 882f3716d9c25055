//! Durable storage of audit events: the [`Store`] contract and how to open one.
//!
//! - [`Store`] (this file): what every backend promises: atomic, idempotent batch appends with a
//!   gapless `seq` and a hash chain; filtered reads; a cheap reachability check.
//! - [`sqlite`]: the embedded default backend. PostgreSQL implements the same trait later and
//!   must pass the same [`contract`] suite.
//! - [`group_commit`]: the single writer task that merges concurrent requests into one
//!   transaction and answers each after the commit ([`GroupCommit`]).
//! - [`chain`]: the canonical bytes of an event and the hash link between events.
//! - [`query`]: [`EventQuery`], the read filter.
//!
//! Ingest never calls [`Store::append`] directly: it goes through [`GroupCommit`], which is
//! the only writer.

pub mod chain;
#[doc(hidden)]
pub mod contract;
pub mod group_commit;
pub mod query;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::event::{Event, StoredEvent};

pub use chain::ChainedEvent;
pub use group_commit::{CommitError, CommitReceipt, GroupCommit, GroupCommitConfig};
pub use query::EventQuery;
pub use sqlite::SqliteStore;

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
    /// Store a batch in one transaction, stamped with `received_at`.
    ///
    /// `event_id` is the idempotency key: an event whose id is already stored, or that repeats
    /// an id earlier in this batch, is skipped and reported as [`Appended::Duplicate`]. New
    /// events get consecutive `seq`s (store-wide, no gaps) and hash-chain links, in batch
    /// order. Returns one [`Appended`] per input event, in order. Nothing is visible to
    /// readers before the commit; on error nothing of the batch is stored.
    async fn append(&self, batch: Vec<Event>, received_at: DateTime<Utc>) -> Result<Vec<Appended>, StoreError>;

    /// Stored events matching `q`, ordered by `seq` ascending.
    async fn query(&self, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;

    /// Up to `limit` events with `seq > after_seq`, in `seq` order, with their chain links:
    /// what `auditflow verify` walks.
    async fn chain(&self, after_seq: i64, limit: i64) -> Result<Vec<ChainedEvent>, StoreError>;

    /// The number of stored events.
    async fn count(&self) -> Result<i64, StoreError>;

    /// Succeeds when the database answers a trivial query (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// The backend's name for logs and `/health/detailed`: `"sqlite"`, `"postgres"`.
    fn kind(&self) -> &'static str;
}

/// Open the store a storage URL names, creating and migrating the database as needed.
///
/// - `sqlite://path`, `sqlite:path`, `sqlite::memory:`: the embedded SQLite store (the file and
///   its parent directory are created when missing).
/// - `postgres://…`, `postgresql://…`: not yet available ([`StoreError::Unsupported`]).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        let store = SqliteStore::open(url).await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(StoreError::Unsupported(
            "storage url `postgres://…`: the PostgreSQL store lands with the store issue; use sqlite: for now".into(),
        ));
    }
    // Name only the scheme: the rest of a URL may hold a password.
    let scheme = url.split_once(':').map_or("(none)", |(s, _)| s);
    Err(StoreError::Unsupported(format!(
        "storage url scheme `{scheme}` is not supported (use sqlite: or postgres://)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn postgres_url_is_refused_as_not_yet_supported() {
        let err = open("postgres://user:secret@localhost/audit").await.err();
        match err {
            Some(StoreError::Unsupported(msg)) => {
                assert!(msg.contains("PostgreSQL"), "{msg}");
                assert!(!msg.contains("secret"), "message leaks the URL: {msg}");
            }
            other => panic!("expected Unsupported, got {other:?}"),
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
