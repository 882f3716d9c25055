//! An event on its way through the chain ([`Flowing`]), and the two ways a stage sees it:
//! whole, as the contract 1.0 WIT record, or packed, as contract 1.1's fields of a batch in one
//! buffer ([`pack`]), with per-field patches coming back ([`check_patch`], [`Flowing::apply`]).
//!
//! The canonical [`Event`] is kept between stages; only `metadata` may lag behind as JSON text
//! a stage sent back, parsed once when the chain is done ([`Flowing::finish`]). A stage that
//! reads metadata gets that text as it is, so two stages in a row do not pay for a parse and a
//! serialisation in between.

use chrono::DateTime;
use serde_json::{Map, Value};

use crate::event::{Decision, Event};
use crate::plugin::bindings::{Field, PackedEvents, Patchable, WitEvent};

/// The length that marks an absent field in `packed-events`.
const ABSENT: u32 = u32::MAX;

/// An event between stages. It enters the chain as ingest left it: normalized and within the
/// field limits ([`Event::normalize`], [`Event::oversized_field`]).
#[derive(Debug)]
pub(crate) struct Flowing {
    pub event: Event,
    /// `metadata` as JSON text, once known: what a stage sent back (then newer than
    /// `event.metadata`: `stale`), or `event.metadata` serialised for a stage that read it.
    meta_text: Option<String>,
    stale: bool,
    /// A stage changed a typed field: [`finish`](Self::finish) normalizes them again.
    touched: bool,
}

/// What a stage changed in an event it kept (already checked against the contract).
#[derive(Debug)]
pub(crate) enum Change {
    /// A 1.0 stage handed back the whole record (boxed: one result per event is kept for a
    /// batch, and the 1.1 variant is a tenth of the size).
    Whole(Box<WitEvent>),
    /// A 1.1 stage sent these patches (possibly none).
    Patches(Vec<(Patchable, Option<String>)>),
}

impl Flowing {
    pub fn new(event: Event) -> Flowing {
        Flowing {
            event,
            meta_text: None,
            stale: false,
            touched: false,
        }
    }

    /// `metadata` as JSON text (serialised once, then kept).
    pub fn metadata_text(&mut self) -> &str {
        let event = &self.event;
        self.meta_text
            .get_or_insert_with(|| serde_json::to_string(&event.metadata).unwrap_or_else(|_| "{}".into()))
    }

    /// The whole event as the contract 1.0 record.
    pub fn wit_record(&mut self) -> WitEvent {
        let metadata = self.metadata_text().to_owned();
        crate::plugin::bindings::to_wit_with_metadata(&self.event, metadata)
    }

    /// Apply a checked change.
    pub fn apply(&mut self, change: Change) {
        if let Change::Patches(patches) = &change
            && patches.is_empty()
        {
            return;
        }
        self.touched = true;
        match change {
            Change::Whole(w) => {
                let w = *w;
                let e = &mut self.event;
                // Checked by `check_keep`: same event id, decision allow/deny, non-empty type.
                e.event_type = w.event_type;
                if let Some(t) = DateTime::from_timestamp_micros(w.timestamp_us) {
                    e.timestamp = t;
                }
                set_actor(e, Some(w.actor_type), Some(w.actor_id));
                e.agent_id = w.agent_id;
                e.server_name = w.server_name;
                e.tool_name = w.tool_name;
                e.decision = w.decision.as_deref().and_then(Decision::parse);
                e.outcome = w.outcome;
                e.reason = w.reason;
                e.request_id = w.request_id;
                e.correlation_id = w.correlation_id;
                e.source_ip = w.source_ip;
                if self.meta_text.as_deref() != Some(w.metadata.as_str()) {
                    self.meta_text = Some(w.metadata);
                    self.stale = true;
                }
            }
            Change::Patches(patches) => {
                for (field, value) in patches {
                    self.set(field, value);
                }
            }
        }
    }

    /// Set one (checked) field.
    fn set(&mut self, field: Patchable, value: Option<String>) {
        let e = &mut self.event;
        match field {
            Patchable::EventType => {
                if let Some(v) = value {
                    e.event_type = v;
                }
            }
            Patchable::TimestampUs => {
                if let Some(t) = value
                    .and_then(|v| v.parse::<i64>().ok())
                    .and_then(DateTime::from_timestamp_micros)
                {
                    e.timestamp = t;
                }
            }
            Patchable::ActorType => set_actor(e, Some(value), None),
            Patchable::ActorId => set_actor(e, None, Some(value)),
            Patchable::AgentId => e.agent_id = value,
            Patchable::ServerName => e.server_name = value,
            Patchable::ToolName => e.tool_name = value,
            Patchable::Decision => e.decision = value.as_deref().and_then(Decision::parse),
            Patchable::Outcome => e.outcome = value,
            Patchable::Reason => e.reason = value,
            Patchable::RequestId => e.request_id = value,
            Patchable::CorrelationId => e.correlation_id = value,
            Patchable::SourceIp => e.source_ip = value,
            Patchable::Metadata => {
                self.meta_text = Some(value.unwrap_or_else(|| "{}".into()));
                self.stale = true;
            }
        }
    }

    /// The event as the chain left it: metadata parsed if a stage changed it, normalised, and
    /// checked against the field limits. Only what a stage changed is looked at again (the rest
    /// is as ingest checked it), so an event no stage changed costs nothing here. The error
    /// names what is wrong, never a value.
    pub fn finish(mut self) -> Result<Event, String> {
        let oversized = if self.stale {
            let text = self.meta_text.take().unwrap_or_default();
            self.event.metadata = parse_object(&text)?;
            self.event.normalize();
            self.event.oversized_field()
        } else if self.touched {
            self.event.normalize_typed();
            self.event.oversized_typed_field()
        } else {
            None
        };
        match oversized {
            Some((field, limit)) => Err(format!("{field} is longer than its limit of {limit} bytes")),
            None => Ok(self.event),
        }
    }
}

/// Set the actor's type and/or id (`None` leaves one as it is); no actor when both are absent.
fn set_actor(e: &mut Event, kind: Option<Option<String>>, id: Option<Option<String>>) {
    let actor = e.actor.get_or_insert(crate::event::Actor { kind: None, id: None });
    if let Some(kind) = kind {
        actor.kind = kind;
    }
    if let Some(id) = id {
        actor.id = id;
    }
    if actor.kind.is_none() && actor.id.is_none() {
        e.actor = None;
    }
}

/// Metadata text as an object; the error says why, never quoting it.
fn parse_object(text: &str) -> Result<Map<String, Value>, String> {
    if text.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("metadata is not a JSON object".into()),
        Err(e) => Err(format!(
            "metadata is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )),
    }
}

/// Check that `text` is a JSON object without building it.
pub(crate) fn check_object_text(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    if !text.trim_start().starts_with('{') {
        return Err("metadata is not a JSON object".into());
    }
    let mut de = serde_json::Deserializer::from_str(text);
    match serde::de::Deserialize::deserialize(&mut de).and_then(|checked: Checked| de.end().map(|()| checked)) {
        Ok(Checked { longest_key }) => {
            let limit = crate::event::field_limit("metadata key");
            if longest_key > limit {
                return Err(format!("metadata key is longer than its limit of {limit} bytes"));
            }
            Ok(())
        }
        Err(e) => Err(format!(
            "metadata is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )),
    }
}

/// A JSON value read the way [`parse_object`] reads it (so every number must fit, as a
/// `Value` needs), without building it: what [`check_object_text`] accepts, the chain can
/// finish. Only the longest object key is kept (its length as stored, normalised), for the
/// `metadata key` limit.
struct Checked {
    longest_key: usize,
}

impl<'de> serde::de::Deserialize<'de> for Checked {
    fn deserialize<D: serde::de::Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked { longest_key: 0 })
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked { longest_key: 0 })
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked { longest_key: 0 })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked { longest_key: 0 })
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked { longest_key: 0 })
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked { longest_key: 0 })
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        let mut longest_key = 0;
        while let Some(Checked { longest_key: k }) = seq.next_element()? {
            longest_key = longest_key.max(k);
        }
        Ok(Checked { longest_key })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut longest_key = 0;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let Checked { longest_key: k } = map.next_value()?;
            longest_key = longest_key.max(k).max(crate::event::normalized_len(&key));
        }
        Ok(Checked { longest_key })
    }
}

/// Check one patch of a 1.1 stage against the contract: the value must be one the field can
/// hold. The error names the field, never the value.
pub(crate) fn check_patch(field: Patchable, value: Option<&str>) -> Result<(), String> {
    let name = patchable_name(field);
    match (field, value) {
        (Patchable::EventType | Patchable::TimestampUs, None) => {
            Err(format!("patched {name} to absent; it is required"))
        }
        (Patchable::EventType, Some("")) => Err("patched event-type to empty".into()),
        (Patchable::TimestampUs, Some(v)) => match v.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros) {
            Some(_) => Ok(()),
            None => Err("patched timestamp-us to something that is not microseconds since the epoch".into()),
        },
        (Patchable::Decision, Some(v)) if Decision::parse(v).is_none() => Err("decision must be allow or deny".into()),
        (Patchable::Metadata, Some(v)) => check_object_text(v),
        (_, Some(v)) => match crate::event::FIELD_LIMITS.iter().find(|(f, _)| *f == limit_name(field)) {
            Some((f, limit)) if crate::event::normalized_len(v) > *limit => {
                Err(format!("{f} is longer than its limit of {limit} bytes"))
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// The WIT name of a patchable field, for messages.
fn patchable_name(field: Patchable) -> &'static str {
    match field {
        Patchable::EventType => "event-type",
        Patchable::TimestampUs => "timestamp-us",
        Patchable::ActorType => "actor-type",
        Patchable::ActorId => "actor-id",
        Patchable::AgentId => "agent-id",
        Patchable::ServerName => "server-name",
        Patchable::ToolName => "tool-name",
        Patchable::Decision => "decision",
        Patchable::Outcome => "outcome",
        Patchable::Reason => "reason",
        Patchable::RequestId => "request-id",
        Patchable::CorrelationId => "correlation-id",
        Patchable::SourceIp => "source-ip",
        Patchable::Metadata => "metadata",
    }
}

/// The name of a patchable field in [`crate::event::FIELD_LIMITS`].
fn limit_name(field: Patchable) -> &'static str {
    match field {
        Patchable::EventType => "event_type",
        Patchable::ActorType => "actor.type",
        Patchable::ActorId => "actor.id",
        Patchable::AgentId => "agent_id",
        Patchable::ServerName => "server_name",
        Patchable::ToolName => "tool_name",
        Patchable::Outcome => "outcome",
        Patchable::Reason => "reason",
        Patchable::RequestId => "request_id",
        Patchable::CorrelationId => "correlation_id",
        Patchable::SourceIp => "source_ip",
        Patchable::TimestampUs | Patchable::Decision | Patchable::Metadata => "",
    }
}

/// The text of a typed field (not `event-id`, `timestamp-us`, `metadata`, which are made).
fn text_of(e: &Event, field: Field) -> Option<&str> {
    match field {
        Field::EventType => Some(&e.event_type),
        Field::ActorType => e.actor_type(),
        Field::ActorId => e.actor_id(),
        Field::AgentId => e.agent_id.as_deref(),
        Field::ServerName => e.server_name.as_deref(),
        Field::ToolName => e.tool_name.as_deref(),
        Field::Decision => e.decision.map(Decision::as_str),
        Field::Outcome => e.outcome.as_deref(),
        Field::Reason => e.reason.as_deref(),
        Field::RequestId => e.request_id.as_deref(),
        Field::CorrelationId => e.correlation_id.as_deref(),
        Field::SourceIp => e.source_ip.as_deref(),
        Field::Source => Some(&e.source),
        Field::EventId | Field::TimestampUs | Field::Metadata => None,
    }
}

/// Pack `fields` of `events` into one buffer with offsets (the layout `packed-events`
/// documents in wit/plugin.wit): two allocations per batch, whatever its size.
pub(crate) fn pack<'a>(events: impl ExactSizeIterator<Item = &'a mut Flowing>, fields: &[Field]) -> PackedEvents {
    let count = events.len();
    let mut data: Vec<u8> = Vec::with_capacity(count * fields.len() * 32);
    let mut offsets: Vec<u32> = Vec::with_capacity(2 * count * fields.len());
    let mut number = itoa::Buffer::new();
    for f in events {
        for &field in fields {
            let start = data.len();
            let present = match field {
                Field::EventId => {
                    let mut buf = uuid::Uuid::encode_buffer();
                    data.extend_from_slice(f.event.event_id.as_hyphenated().encode_lower(&mut buf).as_bytes());
                    true
                }
                Field::TimestampUs => {
                    data.extend_from_slice(number.format(f.event.timestamp.timestamp_micros()).as_bytes());
                    true
                }
                // Serialised once per event and kept for the next stage.
                Field::Metadata => {
                    data.extend_from_slice(f.metadata_text().as_bytes());
                    true
                }
                other => match text_of(&f.event, other) {
                    Some(t) => {
                        data.extend_from_slice(t.as_bytes());
                        true
                    }
                    None => false,
                },
            };
            if present {
                offsets.push(start as u32);
                offsets.push((data.len() - start) as u32);
            } else {
                offsets.push(0);
                offsets.push(ABSENT);
            }
        }
    }
    PackedEvents {
        count: count as u32,
        fields: fields.to_vec(),
        data,
        offsets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    /// The packed layout, read back the way wit/plugin.wit documents it.
    fn read(p: &PackedEvents, event: usize, field: usize) -> Option<&str> {
        let at = 2 * (event * p.fields.len() + field);
        let (start, len) = (p.offsets[at] as usize, p.offsets[at + 1]);
        (len != ABSENT).then(|| std::str::from_utf8(&p.data[start..start + len as usize]).unwrap())
    }

    #[test]
    fn packing_holds_exactly_the_requested_fields_and_marks_absent_ones() {
        let mut full = Flowing::new(contract::full_event(1));
        let mut sparse = Flowing::new(contract::event(2));
        sparse.event.agent_id = None;
        let fields = [
            Field::EventId,
            Field::AgentId,
            Field::TimestampUs,
            Field::Metadata,
            Field::Decision,
        ];
        let packed = pack([&mut full, &mut sparse].into_iter(), &fields);
        assert_eq!(packed.count, 2);
        assert_eq!(read(&packed, 0, 0), Some(full.event.event_id.to_string().as_str()));
        assert_eq!(read(&packed, 1, 1), None, "an absent field is marked absent, not empty");
        assert_eq!(
            read(&packed, 0, 2),
            Some(full.event.timestamp.timestamp_micros().to_string().as_str())
        );
        let meta: Value = serde_json::from_str(read(&packed, 0, 3).unwrap()).unwrap();
        assert_eq!(meta, Value::Object(full.event.metadata.clone()));
        assert_eq!(read(&packed, 0, 4), full.event.decision.map(Decision::as_str));
        assert_eq!(packed.offsets.len(), 2 * 2 * fields.len());
    }

    #[test]
    fn patches_apply_and_metadata_is_parsed_once_at_the_end() {
        let mut f = Flowing::new(contract::full_event(1));
        let id = f.event.event_id;
        f.apply(Change::Patches(vec![
            (Patchable::ActorId, Some("[REDACTED]".into())),
            (Patchable::Reason, None),
            (Patchable::Metadata, Some(r#"{"a":1}"#.into())),
        ]));
        assert!(f.stale);
        let e = f.finish().unwrap();
        assert_eq!(
            (e.event_id, e.actor_id(), e.reason.as_deref()),
            (id, Some("[REDACTED]"), None)
        );
        assert_eq!(Value::Object(e.metadata), serde_json::json!({"a": 1}));
    }

    #[test]
    fn patches_that_break_the_contract_are_named() {
        assert!(
            check_patch(Patchable::EventType, None)
                .unwrap_err()
                .contains("required")
        );
        assert!(check_patch(Patchable::Decision, Some("maybe")).is_err());
        assert!(check_patch(Patchable::TimestampUs, Some("soon")).is_err());
        assert!(
            check_patch(Patchable::Metadata, Some("[1]"))
                .unwrap_err()
                .contains("object")
        );
        assert!(
            check_patch(Patchable::Metadata, Some("{bad"))
                .unwrap_err()
                .contains("valid JSON")
        );
        // The same gap for metadata: text the check passed but the chain could not parse (a
        // number out of range) or finish (a key over its limit).
        assert!(check_patch(Patchable::Metadata, Some(r#"{"a":1e400}"#)).is_err());
        let key = format!(r#"{{"a":[{{"{}":1}}]}}"#, "k".repeat(257));
        assert!(
            check_patch(Patchable::Metadata, Some(&key))
                .unwrap_err()
                .contains("metadata key")
        );
        assert!(check_patch(Patchable::Metadata, Some(r#"{"a":[1,{"b":null}],"c":"\u0000"}"#)).is_ok());
        let long = "x".repeat(300);
        assert!(
            check_patch(Patchable::RequestId, Some(&long))
                .unwrap_err()
                .contains("256 bytes")
        );
        assert!(check_patch(Patchable::ActorId, None).is_ok());
        // Found by fuzz/fuzz_targets/plugin_output.rs: a U+0000 becomes U+FFFD (three bytes)
        // when the chain finishes the event, so a value that fit before normalising passed the
        // stage's check and then failed the whole chain, bypassing the stage's error policy.
        let nul = format!("{}\0", "x".repeat(127));
        assert!(check_patch(Patchable::EventType, Some(&nul)).is_err());
        let mut f = Flowing::new(contract::event(1));
        let mut w = f.wit_record();
        w.event_type = nul;
        assert_eq!(crate::plugin::bindings::oversized_field(&w), Some(("event_type", 128)));
        assert!(check_patch(Patchable::TimestampUs, Some("1700000000000000")).is_ok());
    }
}
