//! What a reader asks the store for: [`EventQuery`], the filters of `auditflow query`, the
//! query API and the sinks' "events after my cursor" read.
//!
//! Backends translate it to SQL themselves; the meaning of each filter is defined here, once,
//! and checked by the contract suite (`store::contract`).

use chrono::{DateTime, Utc};

use crate::event::Decision;

/// A filter over stored events. Results are ordered by `seq` ascending; every filter that is
/// set must match (AND).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Event time (`timestamp`) at or after this instant (inclusive).
    pub since: Option<DateTime<Utc>>,
    /// Event time strictly before this instant (exclusive), so consecutive windows do not
    /// overlap.
    pub until: Option<DateTime<Utc>>,
    /// The actor's id, exactly.
    pub actor: Option<String>,
    /// Matches an event whose `request_id` *or* `correlation_id` equals this value: one id
    /// finds every event of a request, whichever field the sender put it in.
    pub request_id: Option<String>,
    pub decision: Option<Decision>,
    /// At most this many events; zero or negative returns none.
    pub limit: i64,
    /// Only events with `seq` greater than this (a cursor for paging and for sinks).
    pub after_seq: Option<i64>,
}

impl EventQuery {
    /// The number of events a query returns when the caller does not say.
    pub const DEFAULT_LIMIT: i64 = 1000;
}

impl Default for EventQuery {
    fn default() -> Self {
        EventQuery {
            since: None,
            until: None,
            actor: None,
            request_id: None,
            decision: None,
            limit: Self::DEFAULT_LIMIT,
            after_seq: None,
        }
    }
}
