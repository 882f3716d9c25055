//! Host-side WIT bindings (`wit/plugin.wit`) and the conversions between the canonical
//! [`Event`] and the WIT `event` record.
//!
//! Plugins may change every field except the idempotency key and the authenticated source;
//! what they hand back is checked here before it re-enters the pipeline.

use chrono::DateTime;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::{Actor, Decision, Event};

pub mod transform {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "auditflow:plugin/transform",
        exports: { default: async },
    });
}

pub mod formatter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "auditflow:plugin/formatter",
        exports: { default: async },
        with: {
            "auditflow:plugin/types": super::transform::auditflow::plugin::types,
            "auditflow:plugin/host": super::transform::auditflow::plugin::host,
        },
    });
}

pub mod batch_transform {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "auditflow:plugin/batch-transform",
        exports: { default: async },
        with: {
            "auditflow:plugin/types": super::transform::auditflow::plugin::types,
            "auditflow:plugin/host": super::transform::auditflow::plugin::host,
        },
    });
}

pub use batch_transform::exports::auditflow::plugin::batch_stage::{Field, PackedEvents, Patch, Patchable, Verdicts};
pub use transform::auditflow::plugin::types::{Event as WitEvent, Level, Outcome as WitOutcome};

/// The WIT contract version this host implements (it loads plugins of every 1.x up to it):
/// the `package` line of wit/plugin.wit, read by build.rs.
pub const CONTRACT_PACKAGE: &str = "auditflow:plugin";
pub const CONTRACT_VERSION: &str = env!("AUDITFLOW_CONTRACT_VERSION");

/// Canonical event → WIT record.
pub fn to_wit(event: &Event) -> WitEvent {
    // Serialising a map with string keys cannot fail.
    let metadata = serde_json::to_string(&event.metadata).unwrap_or_else(|_| "{}".into());
    to_wit_with_metadata(event, metadata)
}

/// Canonical event → WIT record, with `metadata` already as JSON text (the pipeline keeps it
/// between stages).
pub fn to_wit_with_metadata(event: &Event, metadata: String) -> WitEvent {
    WitEvent {
        event_id: event.event_id.to_string(),
        event_type: event.event_type.clone(),
        timestamp_us: event.timestamp.timestamp_micros(),
        actor_type: event.actor.as_ref().and_then(|a| a.kind.clone()),
        actor_id: event.actor.as_ref().and_then(|a| a.id.clone()),
        agent_id: event.agent_id.clone(),
        server_name: event.server_name.clone(),
        tool_name: event.tool_name.clone(),
        decision: event.decision.map(|d| d.as_str().to_owned()),
        outcome: event.outcome.clone(),
        reason: event.reason.clone(),
        request_id: event.request_id.clone(),
        correlation_id: event.correlation_id.clone(),
        source_ip: event.source_ip.clone(),
        source: event.source.clone(),
        metadata,
    }
}

/// WIT record handed back by a plugin → canonical event, checked against the original.
/// The error names the broken field, never its value.
pub fn from_wit(wit: WitEvent, original: &Event) -> Result<Event, String> {
    let event_id = Uuid::parse_str(&wit.event_id).map_err(|_| "event-id is not a UUID".to_owned())?;
    if event_id != original.event_id {
        return Err("plugin changed event-id".into());
    }
    let timestamp =
        DateTime::from_timestamp_micros(wit.timestamp_us).ok_or_else(|| "timestamp-us is out of range".to_owned())?;
    let decision = match wit.decision.as_deref() {
        None => None,
        Some(d) => Some(Decision::parse(d).ok_or_else(|| "decision must be allow or deny".to_owned())?),
    };
    let metadata = parse_metadata(&wit.metadata)?;
    let actor = match (wit.actor_type, wit.actor_id) {
        (None, None) => None,
        (kind, id) => Some(Actor { kind, id }),
    };
    if wit.event_type.is_empty() {
        return Err("event-type is empty".into());
    }
    let mut event = Event {
        event_id,
        event_type: wit.event_type,
        timestamp,
        actor,
        agent_id: wit.agent_id,
        server_name: wit.server_name,
        tool_name: wit.tool_name,
        decision,
        outcome: wit.outcome,
        reason: wit.reason,
        request_id: wit.request_id,
        correlation_id: wit.correlation_id,
        source_ip: wit.source_ip,
        // The authenticated source is the host's to set, whatever the plugin says.
        source: original.source.clone(),
        metadata,
    };
    // The same rules as at ingest, so what a plugin hands back is storable on every store.
    event.normalize();
    if let Some((field, limit)) = event.oversized_field() {
        return Err(format!("{field} is longer than its limit of {limit} bytes"));
    }
    Ok(event)
}

/// The first typed field of a WIT event longer than its limit in
/// [`FIELD_LIMITS`](crate::event::FIELD_LIMITS), with that limit (metadata keys are checked
/// when the metadata is parsed, in [`from_wit`]).
pub fn oversized_field(e: &WitEvent) -> Option<(&'static str, usize)> {
    let fields: [(&'static str, Option<&str>); 11] = [
        ("event_type", Some(e.event_type.as_str())),
        ("actor.type", e.actor_type.as_deref()),
        ("actor.id", e.actor_id.as_deref()),
        ("agent_id", e.agent_id.as_deref()),
        ("server_name", e.server_name.as_deref()),
        ("tool_name", e.tool_name.as_deref()),
        ("outcome", e.outcome.as_deref()),
        ("reason", e.reason.as_deref()),
        ("request_id", e.request_id.as_deref()),
        ("correlation_id", e.correlation_id.as_deref()),
        ("source_ip", e.source_ip.as_deref()),
    ];
    fields.into_iter().find_map(|(field, value)| {
        let limit = crate::event::field_limit(field);
        // Measured as stored (normalised), as the chain checks it at its end.
        value
            .is_some_and(|v| crate::event::normalized_len(v) > limit)
            .then_some((field, limit))
    })
}

fn parse_metadata(text: &str) -> Result<Map<String, Value>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        Event {
            event_id: Uuid::now_v7(),
            event_type: "tool_invoke".into(),
            timestamp: DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap(),
            actor: Some(Actor {
                kind: Some("user".into()),
                id: Some("u1".into()),
            }),
            agent_id: Some("agent-1".into()),
            server_name: None,
            tool_name: Some("query".into()),
            decision: Some(Decision::Deny),
            outcome: None,
            reason: Some("r".into()),
            request_id: Some("req".into()),
            correlation_id: None,
            source_ip: None,
            source: "gw".into(),
            metadata: serde_json::json!({"a": {"b": [1, "x"]}}).as_object().unwrap().clone(),
        }
    }

    #[test]
    fn event_round_trips_through_the_wit_record() {
        let e = sample();
        assert_eq!(from_wit(to_wit(&e), &e).unwrap(), e);
    }

    #[test]
    fn plugin_cannot_change_the_event_id_or_source() {
        let e = sample();
        let mut w = to_wit(&e);
        w.source = "forged".into();
        assert_eq!(from_wit(w, &e).unwrap().source, "gw");
        let mut w = to_wit(&e);
        w.event_id = Uuid::now_v7().to_string();
        assert!(from_wit(w, &e).unwrap_err().contains("event-id"));
    }

    #[test]
    fn non_object_metadata_is_a_contract_error() {
        let e = sample();
        let mut w = to_wit(&e);
        w.metadata = "[1]".into();
        assert!(from_wit(w, &e).is_err());
        let mut w = to_wit(&e);
        w.metadata = "{nope".into();
        assert!(from_wit(w, &e).unwrap_err().contains("not valid JSON"));
    }
}
