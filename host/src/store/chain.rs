//! The hash chain: the canonical byte encoding of a stored event and the link function.
//!
//! Every stored event carries `prev_hash` and `hash = SHA-256(prev_hash ‖ canonical_bytes)`,
//! in `seq` order; the first event's `prev_hash` is [`GENESIS`] (32 zero bytes). Changing,
//! inserting or removing a row breaks every later link, which `auditflow verify` detects.
//!
//! Everything here is a pure function of the event, so every store backend (SQLite now,
//! PostgreSQL later) and the verifier produce the same bytes from their own rows: they decode a
//! row into a [`StoredEvent`] and call [`canonical_bytes`]. Nothing depends on how a database
//! prints JSON or times.
//!
//! # `canonical_bytes` format (version 1)
//!
//! A concatenation, with no separators, of:
//!
//! | field            | encoding                                                        |
//! |------------------|-----------------------------------------------------------------|
//! | format tag       | `str("auditflow.event.v1")`                                     |
//! | `seq`            | `i64`                                                           |
//! | `received_at`    | `i64`, microseconds since the Unix epoch                        |
//! | `event_id`       | 16 raw bytes of the UUID (RFC 9562 byte order)                  |
//! | `event_type`     | `str`                                                           |
//! | `timestamp`      | `i64`, microseconds since the Unix epoch                        |
//! | `actor.type`     | `opt(str)`                                                      |
//! | `actor.id`       | `opt(str)`                                                      |
//! | `agent_id`       | `opt(str)`                                                      |
//! | `server_name`    | `opt(str)`                                                      |
//! | `tool_name`      | `opt(str)`                                                      |
//! | `decision`       | `opt(str)`: `"allow"` or `"deny"`                               |
//! | `outcome`        | `opt(str)`                                                      |
//! | `reason`         | `opt(str)`                                                      |
//! | `request_id`     | `opt(str)`                                                      |
//! | `correlation_id` | `opt(str)`                                                      |
//! | `source_ip`      | `opt(str)`                                                      |
//! | `source`         | `str`                                                           |
//! | `metadata`       | `str(canonical JSON of the object)`                             |
//!
//! - `i64`: 8 bytes, big-endian two's complement.
//! - `str(s)`: the UTF-8 length as a `u64` big-endian, then the UTF-8 bytes. The length prefix
//!   makes field boundaries unambiguous (`"ab" + ""` differs from `"a" + "b"`).
//! - `opt(x)`: `0x00` for absent; `0x01` followed by `x` when present (so absent differs from
//!   the empty string).
//! - An actor that is absent and an actor whose type and id are both absent encode the same
//!   (the store keeps the two columns, not the wrapper).
//! - Times are truncated to whole microseconds (what both stores keep).
//!
//! Canonical JSON ([`canonical_json`]): no whitespace; object keys sorted by their UTF-8 bytes,
//! recursively; arrays in order; strings escaped as `serde_json` 1.x escapes them (`"` `\` and
//! control characters; everything else verbatim UTF-8); numbers as `serde_json` 1.x prints a
//! `serde_json::Number` (integers in decimal, floats in the shortest form that round-trips, e.g.
//! `1.0`, `1e300`). A store must therefore decode its metadata column into a
//! `serde_json::Value` and re-encode it, never hash the database's own JSON text.
//!
//! Changing any of this is a new format version (a new tag), never an edit of version 1: old
//! chains must keep verifying.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::event::{Event, StoredEvent};

/// The `prev_hash` of the first event in a store.
pub const GENESIS: [u8; 32] = [0; 32];

/// Names the encoding below; part of the hashed bytes so a future version can never collide.
const FORMAT_TAG: &str = "auditflow.event.v1";

/// The tip of a chain: the last stored `seq` and its `hash` (`seq` 0 and [`GENESIS`] when the
/// store is empty). The writer keeps one and extends it for every row it inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: [u8; 32],
}

impl ChainHead {
    /// The head of an empty store.
    pub const EMPTY: ChainHead = ChainHead { seq: 0, hash: GENESIS };
}

/// A stored event together with its chain link, as `auditflow verify` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainedEvent {
    pub event: StoredEvent,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

impl ChainedEvent {
    /// Whether `hash` is the link of `prev_hash` and this event's canonical bytes.
    pub fn link_is_valid(&self) -> bool {
        link(&self.prev_hash, &canonical_bytes(&self.event)) == self.hash
    }
}

/// `SHA-256(prev ‖ bytes)`: the hash of the event whose canonical bytes are `bytes`.
pub fn link(prev: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(bytes);
    hasher.finalize().into()
}

/// The canonical bytes of a stored event (format in the module docs).
pub fn canonical_bytes(stored: &StoredEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical_bytes(stored, &mut out);
    out
}

/// [`canonical_bytes`] appended to `out`, so the writer can reuse one buffer for a batch.
pub fn write_canonical_bytes(stored: &StoredEvent, out: &mut Vec<u8>) {
    let metadata = canonical_json(&stored.event.metadata);
    write_canonical_parts(stored.seq, stored.received_at, &stored.event, &metadata, out);
}

/// [`write_canonical_bytes`] from the parts of a [`StoredEvent`], for a writer that has not
/// assembled one and also stores the canonical metadata JSON (so it is computed once per
/// event). `canonical_metadata` must be [`canonical_json`]`(&e.metadata)`: anything else
/// yields bytes no verifier will reproduce.
pub fn write_canonical_parts(
    seq: i64,
    received_at: DateTime<Utc>,
    e: &Event,
    canonical_metadata: &str,
    out: &mut Vec<u8>,
) {
    put_str(out, FORMAT_TAG);
    put_i64(out, seq);
    put_i64(out, micros(received_at));
    out.extend_from_slice(e.event_id.as_bytes());
    put_str(out, &e.event_type);
    put_i64(out, micros(e.timestamp));
    put_opt(out, e.actor_type());
    put_opt(out, e.actor_id());
    put_opt(out, e.agent_id.as_deref());
    put_opt(out, e.server_name.as_deref());
    put_opt(out, e.tool_name.as_deref());
    put_opt(out, e.decision.map(|d| d.as_str()));
    put_opt(out, e.outcome.as_deref());
    put_opt(out, e.reason.as_deref());
    put_opt(out, e.request_id.as_deref());
    put_opt(out, e.correlation_id.as_deref());
    put_opt(out, e.source_ip.as_deref());
    put_str(out, &e.source);
    put_str(out, canonical_metadata);
}

/// The canonical JSON text of a metadata object (rules in the module docs). The SQLite store
/// also stores exactly this text, so the column is deterministic too.
pub fn canonical_json(object: &Map<String, Value>) -> String {
    let mut out = Vec::with_capacity(64);
    write_object(&mut out, object);
    // Every byte written is either ASCII punctuation or copied from a `str` / serde_json's
    // UTF-8 output, so the buffer is valid UTF-8; the lossy path is unreachable.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // u64 rather than u32 so no length can be truncated into an ambiguous prefix.
    out.extend_from_slice(&(s.len() as u64).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    // Sort explicitly: serde_json's map is ordered only without its `preserve_order` feature,
    // which any crate in the build could switch on.
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail: serde_json only errors on I/O or on
    // non-string map keys, neither of which can happen here.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, Decision, Event};
    use chrono::TimeZone;
    use serde_json::json;
    use uuid::Uuid;

    fn full_event() -> StoredEvent {
        let metadata = json!({
            "z": 1, "a": [3, 2.5, "x", null, true], "m": {"b": false, "a": "é\n\"q\""}
        });
        StoredEvent {
            seq: 42,
            received_at: Utc.timestamp_opt(1_700_000_100, 123_456_000).single().unwrap(),
            event: Event {
                event_id: Uuid::parse_str("0191d4c2-7a3b-7c4d-8e5f-0123456789ab").unwrap(),
                event_type: "tool.call".into(),
                timestamp: Utc.timestamp_opt(1_700_000_000, 654_321_000).single().unwrap(),
                actor: Some(Actor {
                    kind: Some("user".into()),
                    id: Some("alice".into()),
                }),
                agent_id: Some("agent-7".into()),
                server_name: Some("files".into()),
                tool_name: Some("read_file".into()),
                decision: Some(Decision::Allow),
                outcome: Some("success".into()),
                reason: Some("policy p1".into()),
                request_id: Some("req-1".into()),
                correlation_id: Some("corr-1".into()),
                source_ip: Some("10.0.0.1".into()),
                source: "gateway".into(),
                metadata: metadata.as_object().unwrap().clone(),
            },
        }
    }

    fn minimal_event() -> StoredEvent {
        StoredEvent {
            seq: 1,
            received_at: Utc.timestamp_opt(0, 2_000).single().unwrap(),
            event: Event {
                event_id: Uuid::from_bytes([0xab; 16]),
                event_type: "t".into(),
                timestamp: Utc.timestamp_opt(0, 1_000).single().unwrap(),
                actor: None,
                agent_id: None,
                server_name: None,
                tool_name: None,
                decision: None,
                outcome: None,
                reason: None,
                request_id: None,
                correlation_id: None,
                source_ip: None,
                source: "s".into(),
                metadata: Map::new(),
            },
        }
    }

    fn hash_of(e: &StoredEvent) -> [u8; 32] {
        link(&GENESIS, &canonical_bytes(e))
    }

    /// The documented layout, written out by hand, so the format cannot drift unnoticed.
    #[test]
    fn canonical_bytes_follow_the_documented_layout() {
        let mut expected = Vec::new();
        expected.extend_from_slice(&18u64.to_be_bytes());
        expected.extend_from_slice(b"auditflow.event.v1");
        expected.extend_from_slice(&1i64.to_be_bytes()); // seq
        expected.extend_from_slice(&2i64.to_be_bytes()); // received_at µs
        expected.extend_from_slice(&[0xab; 16]); // event_id
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(b"t"); // event_type
        expected.extend_from_slice(&1i64.to_be_bytes()); // timestamp µs
        expected.extend_from_slice(&[0; 11]); // 11 absent optional fields
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(b"s"); // source
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(b"{}"); // metadata
        assert_eq!(canonical_bytes(&minimal_event()), expected);
    }

    /// A golden hash: if this changes, every existing chain stops verifying. The value was
    /// computed by an independent implementation of the documented format (a short Python
    /// script using struct + hashlib), not by this code.
    #[test]
    fn hash_of_a_fixed_event_is_stable() {
        assert_eq!(
            hex::encode(hash_of(&full_event())),
            "59243185a3294b1f6899467e38e936d2e5010f868a0dd6aff61e3a1bd35264ba"
        );
    }

    #[test]
    fn link_is_sha256_of_prev_then_bytes() {
        // SHA-256 of 32 zero bytes followed by "abc", computed independently (sha256sum).
        assert_eq!(
            hex::encode(link(&GENESIS, b"abc")),
            "365aa7d8f7f9402c4b9434502b4cc89ddb09fe50d7cd95b493b834c62d5a5370"
        );
        assert_ne!(link(&GENESIS, b"abc"), link(&[1; 32], b"abc"));
    }

    #[test]
    fn every_field_changes_the_hash() {
        type Edit = fn(&mut StoredEvent);
        let edits: &[(&str, Edit)] = &[
            ("seq", |e| e.seq += 1),
            ("received_at", |e| e.received_at += chrono::Duration::microseconds(1)),
            ("event_id", |e| e.event.event_id = Uuid::nil()),
            ("event_type", |e| e.event.event_type.push('x')),
            ("timestamp", |e| e.event.timestamp += chrono::Duration::microseconds(1)),
            ("actor.type", |e| {
                e.event.actor.as_mut().unwrap().kind = Some("svc".into())
            }),
            ("actor.id", |e| e.event.actor.as_mut().unwrap().id = Some("bob".into())),
            ("agent_id", |e| e.event.agent_id = None),
            ("server_name", |e| e.event.server_name = Some(String::new())),
            ("tool_name", |e| e.event.tool_name.as_mut().unwrap().push('x')),
            ("decision", |e| e.event.decision = Some(Decision::Deny)),
            ("outcome", |e| e.event.outcome = None),
            ("reason", |e| e.event.reason = Some("other".into())),
            ("request_id", |e| e.event.request_id = Some("req-2".into())),
            ("correlation_id", |e| e.event.correlation_id = None),
            ("source_ip", |e| e.event.source_ip = Some("10.0.0.2".into())),
            ("source", |e| e.event.source.push('x')),
            ("metadata value", |e| {
                e.event.metadata.insert("z".into(), json!(2));
            }),
            ("metadata nested", |e| {
                e.event.metadata.insert("m".into(), json!({"b": false, "a": "e"}));
            }),
            ("metadata number type", |e| {
                e.event.metadata.insert("z".into(), json!(1.0));
            }),
        ];
        let base = hash_of(&full_event());
        let mut seen = std::collections::HashSet::from([base]);
        for (name, edit) in edits {
            let mut e = full_event();
            edit(&mut e);
            assert!(seen.insert(hash_of(&e)), "changing {name} did not produce a new hash");
        }
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let mut a = minimal_event();
        a.event.agent_id = Some("ab".into());
        a.event.server_name = Some(String::new());
        let mut b = minimal_event();
        b.event.agent_id = Some("a".into());
        b.event.server_name = Some("b".into());
        let mut c = minimal_event();
        c.event.agent_id = Some("ab".into());
        assert_ne!(canonical_bytes(&a), canonical_bytes(&b));
        assert_ne!(canonical_bytes(&a), canonical_bytes(&c), "absent and empty must differ");
    }

    #[test]
    fn metadata_key_order_does_not_change_the_hash() {
        let one: Value = serde_json::from_str(r#"{"b":{"y":1,"x":[{"d":1,"c":2}]},"a":"v"}"#).unwrap();
        let two: Value = serde_json::from_str(r#"{"a":"v","b":{"x":[{"c":2,"d":1}],"y":1}}"#).unwrap();
        let mut e1 = minimal_event();
        e1.event.metadata = one.as_object().unwrap().clone();
        let mut e2 = minimal_event();
        e2.event.metadata = two.as_object().unwrap().clone();
        assert_eq!(hash_of(&e1), hash_of(&e2));
        assert_eq!(
            canonical_json(&e1.event.metadata),
            r#"{"a":"v","b":{"x":[{"c":2,"d":1}],"y":1}}"#
        );
    }

    #[test]
    fn canonical_json_survives_a_text_round_trip() {
        // What a store does on read: parse its stored text and re-encode.
        let e = full_event();
        let text = canonical_json(&e.event.metadata);
        let back: Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(canonical_json(&back), text);
        assert_eq!(
            text,
            r#"{"a":[3,2.5,"x",null,true],"m":{"a":"é\n\"q\"","b":false},"z":1}"#
        );
    }

    #[test]
    fn empty_actor_encodes_like_absent_actor() {
        let a = minimal_event();
        let mut b = minimal_event();
        b.event.actor = Some(Actor { kind: None, id: None });
        assert_eq!(canonical_bytes(&a), canonical_bytes(&b));
    }

    #[test]
    fn sub_microsecond_time_is_ignored() {
        let a = minimal_event();
        let mut b = minimal_event();
        b.event.timestamp += chrono::Duration::nanoseconds(999);
        assert_eq!(canonical_bytes(&a), canonical_bytes(&b));
    }
}
