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

/// The longest value, in UTF-8 bytes, each typed field may hold. Enforced at ingest (422
/// naming the field and the limit) and on what a plugin hands back (a contract error), so both
/// stores take every event that passed: PostgreSQL refuses btree index entries over 2 704 bytes,
/// and these fields are indexed, compared or used as labels. Free-form data belongs in
/// `metadata`. docs/INGEST.md lists the same table.
pub const FIELD_LIMITS: [(&str, usize); 13] = [
    ("event_type", 128),
    ("actor.type", 64),
    ("actor.id", 512),
    ("agent_id", 256),
    ("server_name", 256),
    ("tool_name", 256),
    ("outcome", 256),
    ("reason", 4096),
    ("request_id", 256),
    ("correlation_id", 256),
    ("source_ip", 64),
    ("source", 128),
    // Not a field: the longest object key in `metadata`, at any depth.
    ("metadata key", 256),
];

/// The limit of `field` in [`FIELD_LIMITS`].
pub fn field_limit(field: &str) -> usize {
    FIELD_LIMITS
        .iter()
        .find(|(f, _)| *f == field)
        .map_or(usize::MAX, |(_, limit)| *limit)
}

/// The length of `s` in UTF-8 bytes once [`Event::normalize`] has run on it: each U+0000 (one
/// byte) becomes U+FFFD (three). What a plugin hands back is checked on this length, so a value
/// that passes a stage's check still fits its limit when the chain finishes the event.
pub fn normalized_len(s: &str) -> usize {
    s.len() + 2 * s.bytes().filter(|&b| b == 0).count()
}

impl Event {
    /// The first typed field longer than its [`FIELD_LIMITS`] entry (or metadata key longer
    /// than `metadata key`), with that limit.
    pub fn oversized_field(&self) -> Option<(&'static str, usize)> {
        self.oversized_typed_field().or_else(|| {
            let key_limit = field_limit("metadata key");
            longest_key(&self.metadata)
                .filter(|&n| n > key_limit)
                .map(|_| ("metadata key", key_limit))
        })
    }

    /// [`oversized_field`](Self::oversized_field) of the typed fields only.
    pub fn oversized_typed_field(&self) -> Option<(&'static str, usize)> {
        let fields: [(&'static str, Option<&str>); 12] = [
            ("event_type", Some(self.event_type.as_str())),
            ("actor.type", self.actor_type()),
            ("actor.id", self.actor_id()),
            ("agent_id", self.agent_id.as_deref()),
            ("server_name", self.server_name.as_deref()),
            ("tool_name", self.tool_name.as_deref()),
            ("outcome", self.outcome.as_deref()),
            ("reason", self.reason.as_deref()),
            ("request_id", self.request_id.as_deref()),
            ("correlation_id", self.correlation_id.as_deref()),
            ("source_ip", self.source_ip.as_deref()),
            ("source", Some(self.source.as_str())),
        ];
        fields.into_iter().find_map(|(field, value)| {
            let limit = field_limit(field);
            value.is_some_and(|v| v.len() > limit).then_some((field, limit))
        })
    }

    /// Make the event storable the same way on every store: U+0000 in any string (typed fields,
    /// metadata values and keys) becomes U+FFFD, and a metadata number `-0.0` becomes `0.0`.
    /// PostgreSQL's `text` and `jsonb` can hold neither; ingest does this before the pipeline, so
    /// both stores keep (and the redactor sees) exactly the same text. Cheap when there is
    /// nothing to do: one byte search per string.
    pub fn normalize(&mut self) {
        self.normalize_typed();
        if needs_fixing(&self.metadata) {
            let metadata = std::mem::take(&mut self.metadata);
            self.metadata = fix_object(metadata);
        }
    }

    /// [`normalize`](Self::normalize) the typed fields only (the metadata is known to be
    /// normalized already).
    pub fn normalize_typed(&mut self) {
        for_each_text(self, fix_string);
    }

    /// Whether [`normalize`](Self::normalize) would change anything.
    pub fn needs_normalizing(&self) -> bool {
        let mut found = false;
        let text = [
            Some(self.event_type.as_str()),
            Some(self.source.as_str()),
            self.actor_type(),
            self.actor_id(),
            self.agent_id.as_deref(),
            self.server_name.as_deref(),
            self.tool_name.as_deref(),
            self.outcome.as_deref(),
            self.reason.as_deref(),
            self.request_id.as_deref(),
            self.correlation_id.as_deref(),
            self.source_ip.as_deref(),
        ];
        for s in text.into_iter().flatten() {
            found |= s.contains('\0');
        }
        found || needs_fixing(&self.metadata)
    }

    /// This event as every store keeps it ([`normalize`](Self::normalize)d), borrowed when
    /// nothing changes.
    pub fn normalized(&self) -> std::borrow::Cow<'_, Event> {
        if self.needs_normalizing() {
            let mut e = self.clone();
            e.normalize();
            std::borrow::Cow::Owned(e)
        } else {
            std::borrow::Cow::Borrowed(self)
        }
    }
}

/// Apply `f` to every typed text field.
fn for_each_text(e: &mut Event, mut f: impl FnMut(&mut String)) {
    f(&mut e.event_type);
    f(&mut e.source);
    if let Some(actor) = &mut e.actor {
        actor.kind.iter_mut().for_each(&mut f);
        actor.id.iter_mut().for_each(&mut f);
    }
    for field in [
        &mut e.agent_id,
        &mut e.server_name,
        &mut e.tool_name,
        &mut e.outcome,
        &mut e.reason,
        &mut e.request_id,
        &mut e.correlation_id,
        &mut e.source_ip,
    ] {
        field.iter_mut().for_each(&mut f);
    }
}

/// The longest object key in `map`, at any depth (0 for none).
fn longest_key(map: &Map<String, Value>) -> Option<usize> {
    fn walk(v: &Value, max: &mut usize) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    *max = (*max).max(k.len());
                    walk(v, max);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, max)),
            _ => {}
        }
    }
    let mut max = 0;
    for (k, v) in map {
        max = max.max(k.len());
        walk(v, &mut max);
    }
    Some(max)
}

fn fix_string(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{fffd}");
    }
}

/// Whether any string or key under `map` holds U+0000 or any number is `-0.0`.
fn needs_fixing(map: &Map<String, Value>) -> bool {
    fn value(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Number(n) => is_negative_zero(n),
            Value::Array(items) => items.iter().any(value),
            Value::Object(m) => needs_fixing(m),
            Value::Null | Value::Bool(_) => false,
        }
    }
    map.iter().any(|(k, v)| k.contains('\0') || value(v))
}

fn is_negative_zero(n: &serde_json::Number) -> bool {
    n.is_f64() && n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative())
}

fn fix_object(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .map(|(mut k, v)| {
            fix_string(&mut k);
            (k, fix_value(v))
        })
        .collect()
}

fn fix_value(v: Value) -> Value {
    match v {
        Value::String(mut s) => {
            fix_string(&mut s);
            Value::String(s)
        }
        Value::Number(n) if is_negative_zero(&n) => Value::Number(serde_json::Number::from_f64(0.0).unwrap_or(n)),
        Value::Array(items) => Value::Array(items.into_iter().map(fix_value).collect()),
        Value::Object(m) => Value::Object(fix_object(m)),
        other => other,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Event {
        Event {
            event_id: Uuid::now_v7(),
            event_type: "tool_invoke".into(),
            timestamp: Utc::now(),
            actor: Some(Actor {
                kind: Some("user".into()),
                id: Some("alice".into()),
            }),
            agent_id: None,
            server_name: None,
            tool_name: None,
            decision: None,
            outcome: None,
            reason: None,
            request_id: None,
            correlation_id: None,
            source_ip: None,
            source: "test".into(),
            metadata: json!({"s": "-0.0 and \\u0000", "n": 0, "f": -1.5})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    #[test]
    fn nul_and_negative_zero_are_normalized_everything_else_is_untouched() {
        let e = event();
        assert!(
            !e.needs_normalizing(),
            "text that merely looks like the patterns is left alone"
        );
        assert!(matches!(e.normalized(), std::borrow::Cow::Borrowed(_)));

        let mut e = event();
        e.reason = Some("a\0b".into());
        e.actor = Some(Actor {
            kind: None,
            id: Some("x\0".into()),
        });
        e.metadata = json!({"k\0": ["x\0", -0.0, 0, -1.5, {"z": -0.0}]})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(e.needs_normalizing());
        let fixed = e.normalized().into_owned();
        assert_eq!(fixed.reason.as_deref(), Some("a\u{fffd}b"));
        assert_eq!(fixed.actor_id(), Some("x\u{fffd}"));
        assert_eq!(
            Value::Object(fixed.metadata.clone()),
            json!({"k\u{fffd}": ["x\u{fffd}", 0.0, 0, -1.5, {"z": 0.0}]})
        );
        assert!(!fixed.needs_normalizing());
    }

    #[test]
    fn oversized_fields_are_named_with_their_limit() {
        let mut e = event();
        assert_eq!(e.oversized_field(), None);
        e.request_id = Some("r".repeat(256));
        assert_eq!(e.oversized_field(), None, "the limit itself is allowed");
        e.request_id = Some("r".repeat(2800));
        assert_eq!(e.oversized_field(), Some(("request_id", 256)));
        e.request_id = None;
        e.metadata = json!({"ok": {("k".repeat(300)): 1}})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(e.oversized_field(), Some(("metadata key", 256)));
        // Bytes, not characters: 100 four-byte characters are 400 bytes.
        e.metadata = Map::new();
        e.event_type = "😀".repeat(40);
        assert_eq!(e.oversized_field(), Some(("event_type", 128)));
    }
}
