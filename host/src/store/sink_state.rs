//! What the store keeps for the SIEM sinks (`crate::sink`), the types of the
//! [`Store`](super::Store) methods that read and write it:
//!
//! - **cursors** (`sink_cursors`): per sink, the highest `seq` it has finished with. The store
//!   is the sinks' outbox: a sink reads the committed events after its cursor and moves the
//!   cursor only after the destination accepted them, so a restart or an outage loses nothing.
//! - **dead letters** ([`DeadLetter`], `dead_letters`): events a destination refused for their
//!   content. Only ids, the reason and a detail, never the payload: the event itself stays in
//!   the store, and a replay re-reads and re-formats it from there.
//! - **leases** ([`SinkLease`]): the right to drive one sink, so that replicas sharing a
//!   database never both forward it (PostgreSQL: a session advisory lock on a connection of
//!   its own; SQLite: one process per database, always held).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// An event a sink parks instead of delivering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub sink: String,
    pub event_id: Uuid,
    pub seq: i64,
    /// Short machine-readable code: `hec_code_6`, `http_400`, `too_large`, `format_error`, …
    pub reason: String,
    /// For people: status, vendor code and its meaning. Never event contents.
    pub detail: String,
}

/// A stored [`DeadLetter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLettered {
    /// Row id, in insertion order.
    pub id: i64,
    pub letter: DeadLetter,
    pub created_at: DateTime<Utc>,
    /// Set once `auditflow dlq replay` delivered it.
    pub replayed_at: Option<DateTime<Utc>>,
}

/// Which dead letters to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterQuery {
    /// Only this sink's.
    pub sink: Option<String>,
    /// Also those already replayed.
    pub include_replayed: bool,
    /// At most this many, oldest (`seq`) first.
    pub limit: i64,
}

/// The right to drive one sink, held until dropped (or until its connection is lost).
#[async_trait]
pub trait SinkLease: Send + Sync {
    /// Whether the lease is still held; a sink stops sending as soon as this says no.
    async fn held(&mut self) -> bool;
}

/// The lease of a store with one process per database (SQLite): always held.
#[derive(Debug, Default)]
pub struct LocalLease;

#[async_trait]
impl SinkLease for LocalLease {
    async fn held(&mut self) -> bool {
        true
    }
}
