//! The canonical audit event: the one shape every part of auditflow agrees on.
//!
//! Ingest turns whatever a sender posted into [`Event`]s (parsing and validation live in
//! `ingest::parse`), plugins see them through the WIT `event` record, the store writes them
//! column by column. Times are UTC with microsecond precision (what PostgreSQL keeps).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Who acted: a user, a service, an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Allow or deny: the gateway's authorization decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Decision> {
        match s {
            "allow" => Some(Decision::Allow),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

/// One audit event in canonical form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Idempotency key: from the sender, or a UUIDv7 generated at ingest.
    pub event_id: Uuid,
    pub event_type: String,
    /// Event time, UTC, truncated to microseconds.
    pub timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// Name of the ingest token that authenticated the sender (set by ingest, never by the
    /// sender).
    pub source: String,
    /// Free-form JSON object.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl Event {
    /// The actor's type, if any.
    pub fn actor_type(&self) -> Option<&str> {
        self.actor.as_ref().and_then(|a| a.kind.as_deref())
    }

    /// The actor's id, if any.
    pub fn actor_id(&self) -> Option<&str> {
        self.actor.as_ref().and_then(|a| a.id.as_deref())
    }
}

/// Truncate a time to the microsecond precision auditflow stores.
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// A stored event: the canonical event plus what the store assigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Store-wide sequence number, gapless, in commit order.
    pub seq: i64,
    pub received_at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
}
