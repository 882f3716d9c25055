//! SARK compatibility: the body SARK's MCP gateway posts to `POST /api/v1/gateway/audit`,
//! mapped onto the canonical [`Event`], so a gateway can point at auditflow unchanged.
//!
//! # The schema we mirror
//! From the SARK project, `apathy-ca/sark`, `src/sark/models/gateway.py` (pydantic v2), read at
//! commits `0d31d336` and `c8a2dc63` (identical model):
//!
//! ```python
//! class GatewayAuditEvent(BaseModel):
//!     event_type: str                 # required: tool_invoke / a2a_communication / discovery
//!     user_id: str | None = None      # if a user request
//!     agent_id: str | None = None     # if an agent request (A2A)
//!     server_name: str | None = None
//!     tool_name: str | None = None
//!     decision: str                   # required: "allow" / "deny"
//!     reason: str                     # required
//!     timestamp: int                  # required: unix timestamp (seconds)
//!     gateway_request_id: str         # required
//!     metadata: dict[str, Any] = {}
//! ```
//!
//! SARK's route (`src/sark/api/routers/gateway.py`, `@router.post("/audit", status_code=201)`
//! under `/api/v1/gateway`) takes **one** event per request, authenticates it with an
//! `X-Gateway-Api-Key` header (not a bearer token; see [`super::auth::gateway_api_key`]) and
//! answers `201 {"audit_id": "...", "status": "logged"}`. Pydantic's default `extra="ignore"`
//! drops unknown fields; SARK's docs (`docs/gateway-integration/API_REFERENCE.md`) show an older
//! shape with an ISO 8601 `timestamp`, which the model refuses.
//!
//! # Mapping
//! | SARK | canonical |
//! |---|---|
//! | `event_type` (required, non-empty) | `event_type` |
//! | `user_id` | `actor = {type: "user", id}` |
//! | `agent_id` | `agent_id`; also `actor = {type: "agent", id}` when there is no `user_id` (an A2A request has no user, and the agent is who acted) |
//! | `server_name`, `tool_name` | same names |
//! | `decision` (required) | `decision`; `allow`/`deny`, case-insensitive; anything else 422 |
//! | `reason` (required) | `reason` |
//! | `timestamp` (required) | `timestamp`: unix seconds as the model says; like the canonical route we also take fractions, milliseconds (≥ 1e11), numeric strings (pydantic's lax `int` does) and RFC 3339 strings (SARK's docs) |
//! | `gateway_request_id` (required) | `request_id` |
//! | `metadata` | `metadata` |
//! | any other field | copied into `metadata` under its own name (we mirror a foreign schema, so extras are kept rather than refused, and rather than dropped as SARK does); a name also present in `metadata` is 422 |
//!
//! `event_id` is generated (UUIDv7): SARK's schema has none, so a gateway's resend is stored
//! twice. Required-ness follows SARK's model, so anything SARK would accept we accept. Errors
//! follow the canonical route's rules (422 naming index and field; limits; never event contents).
//! SARK posts one object; an array (or concatenated objects) is accepted too.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::body::BodyFormat;
use super::error::ApiError;
use super::parse::{
    NumericStrings, field_name, finish, for_each_event_object, invalid, missing, non_empty_string, optional_decision,
    optional_object, optional_string, optional_timestamp,
};
use crate::config::Limits;
use crate::event::{Actor, Event};

/// Parse a (decompressed) SARK `GatewayAuditEvent` body — one object, or an array of them —
/// into canonical events. `source` is the name of the token that authenticated the request.
pub fn parse_sark(body: &[u8], limits: &Limits, source: &str) -> Result<Vec<Event>, ApiError> {
    let mut events = Vec::with_capacity(1);
    for_each_event_object(body, BodyFormat::Json, limits, |index, object| {
        events.push(sark_event(index, object, source)?);
        Ok(())
    })?;
    Ok(events)
}

fn sark_event(index: usize, object: Map<String, Value>, source: &str) -> Result<Event, ApiError> {
    let mut event_type = None;
    let mut user_id = None;
    let mut agent_id = None;
    let mut server_name = None;
    let mut tool_name = None;
    let mut decision = None;
    let mut reason = None;
    let mut timestamp = None;
    let mut gateway_request_id = None;
    let mut metadata = Map::new();
    let mut extras = Vec::new();

    for (key, value) in object {
        let field = key.as_str();
        match field {
            "event_type" => event_type = non_empty_string(index, field, value)?,
            "user_id" => user_id = optional_string(index, field, value)?,
            "agent_id" => agent_id = optional_string(index, field, value)?,
            "server_name" => server_name = optional_string(index, field, value)?,
            "tool_name" => tool_name = optional_string(index, field, value)?,
            "decision" => {
                let lowered = match value {
                    Value::String(s) => Value::String(s.to_ascii_lowercase()),
                    other => other,
                };
                decision = optional_decision(index, field, lowered)?;
            }
            "reason" => reason = optional_string(index, field, value)?,
            "timestamp" => timestamp = optional_timestamp(index, field, &value, NumericStrings::Accept)?,
            "gateway_request_id" => gateway_request_id = optional_string(index, field, value)?,
            "metadata" => metadata = optional_object(index, field, value)?,
            _ => extras.push((key, value)),
        }
    }

    let event_type = event_type.ok_or_else(|| missing(index, "event_type"))?;
    let decision = decision.ok_or_else(|| missing(index, "decision"))?;
    let reason = reason.ok_or_else(|| missing(index, "reason"))?;
    let timestamp = timestamp.ok_or_else(|| missing(index, "timestamp"))?;
    let request_id = gateway_request_id.ok_or_else(|| missing(index, "gateway_request_id"))?;

    for (key, value) in extras {
        if metadata.contains_key(&key) {
            return Err(invalid(
                index,
                &field_name(&key),
                "is both a top-level key and a `metadata` key; send it once (the key is named by the \
                 first 8 hex digits of the SHA-256 of its name)",
            ));
        }
        metadata.insert(key, value);
    }

    let actor = match (&user_id, &agent_id) {
        (Some(_), _) => Some(Actor {
            kind: Some("user".to_owned()),
            id: user_id,
        }),
        (None, Some(agent)) => Some(Actor {
            kind: Some("agent".to_owned()),
            id: Some(agent.clone()),
        }),
        (None, None) => None,
    };

    finish(
        index,
        Event {
            event_id: Uuid::now_v7(),
            event_type,
            timestamp,
            actor,
            agent_id,
            server_name,
            tool_name,
            decision: Some(decision),
            outcome: None,
            reason: Some(reason),
            request_id: Some(request_id),
            correlation_id: None,
            source_ip: None,
            source: source.to_owned(),
            metadata,
        },
    )
    .map_err(|mut e| {
        // Name SARK's own fields, not the canonical ones they became.
        e.field = e.field.map(|f| match f.as_str() {
            "request_id" => "gateway_request_id".to_owned(),
            "actor.id" => "user_id".to_owned(),
            _ => f,
        });
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Decision;
    use axum::http::StatusCode;
    use serde_json::json;

    fn sark_body() -> Value {
        json!({
            "event_type": "tool_invoke",
            "user_id": "user_abc123",
            "agent_id": null,
            "server_name": "postgres-mcp",
            "tool_name": "execute_query",
            "decision": "allow",
            "reason": "Allowed by policy",
            "timestamp": 1_736_937_000,
            "gateway_request_id": "gw_req_42",
            "metadata": {"duration_ms": 45}
        })
    }

    fn parse(body: &Value) -> Result<Vec<Event>, ApiError> {
        parse_sark(body.to_string().as_bytes(), &Limits::default(), "sark-gateway")
    }

    fn without(field: &str) -> Value {
        let mut body = sark_body();
        body.as_object_mut().unwrap().remove(field);
        body
    }

    fn with(field: &str, value: Value) -> Value {
        let mut body = sark_body();
        body[field] = value;
        body
    }

    fn assert_422(e: &ApiError, index: usize, field: &str) {
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(e.index, Some(index), "{e}");
        assert_eq!(e.field.as_deref(), Some(field), "{e}");
    }

    #[test]
    fn sark_gateway_event_maps_onto_the_canonical_event() {
        let e = parse(&sark_body()).unwrap().remove(0);
        assert_eq!(e.event_type, "tool_invoke");
        assert_eq!(
            e.actor,
            Some(Actor {
                kind: Some("user".into()),
                id: Some("user_abc123".into())
            })
        );
        assert_eq!(e.agent_id, None);
        assert_eq!(e.server_name.as_deref(), Some("postgres-mcp"));
        assert_eq!(e.tool_name.as_deref(), Some("execute_query"));
        assert_eq!(e.decision, Some(Decision::Allow));
        assert_eq!(e.reason.as_deref(), Some("Allowed by policy"));
        assert_eq!(e.timestamp.timestamp(), 1_736_937_000);
        assert_eq!(e.request_id.as_deref(), Some("gw_req_42"));
        assert_eq!(Value::Object(e.metadata), json!({"duration_ms": 45}));
        assert_eq!(e.source, "sark-gateway");
        assert_eq!(e.event_id.get_version_num(), 7);
    }

    #[test]
    fn agent_request_without_user_has_the_agent_as_actor() {
        let body = with("agent_id", json!("agent_7"));
        let mut body = body;
        body["user_id"] = Value::Null;
        let e = parse(&body).unwrap().remove(0);
        assert_eq!(
            e.actor,
            Some(Actor {
                kind: Some("agent".into()),
                id: Some("agent_7".into())
            })
        );
        assert_eq!(e.agent_id.as_deref(), Some("agent_7"));
    }

    #[test]
    fn user_and_agent_keep_the_user_as_actor() {
        let e = parse(&with("agent_id", json!("agent_7"))).unwrap().remove(0);
        assert_eq!(e.actor_type(), Some("user"));
        assert_eq!(e.agent_id.as_deref(), Some("agent_7"));
    }

    #[test]
    fn decision_is_case_insensitive_and_other_values_are_422() {
        let e = parse(&with("decision", json!("DENY"))).unwrap().remove(0);
        assert_eq!(e.decision, Some(Decision::Deny));
        assert_422(&parse(&with("decision", json!("maybe"))).unwrap_err(), 0, "decision");
    }

    #[test]
    fn fields_sark_requires_are_required() {
        for field in ["event_type", "decision", "reason", "timestamp", "gateway_request_id"] {
            assert_422(&parse(&without(field)).unwrap_err(), 0, field);
            assert_422(&parse(&with(field, Value::Null)).unwrap_err(), 0, field);
        }
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let mut body = sark_body();
        for field in ["user_id", "agent_id", "server_name", "tool_name", "metadata"] {
            body.as_object_mut().unwrap().remove(field);
        }
        let e = parse(&body).unwrap().remove(0);
        assert_eq!(e.actor, None);
        assert!(e.metadata.is_empty());
    }

    #[test]
    fn wrong_types_are_422_naming_the_field() {
        assert_422(&parse(&with("user_id", json!(42))).unwrap_err(), 0, "user_id");
        assert_422(&parse(&with("metadata", json!("x"))).unwrap_err(), 0, "metadata");
        assert_422(
            &parse(&with("gateway_request_id", json!(1))).unwrap_err(),
            0,
            "gateway_request_id",
        );
        assert_422(&parse(&with("timestamp", json!("soon"))).unwrap_err(), 0, "timestamp");
    }

    #[test]
    fn timestamp_accepts_integer_strings_and_rfc3339() {
        let e = parse(&with("timestamp", json!("1736937000"))).unwrap().remove(0);
        assert_eq!(e.timestamp.timestamp(), 1_736_937_000);
        let e = parse(&with("timestamp", json!("2025-01-15T10:30:00Z")))
            .unwrap()
            .remove(0);
        assert_eq!(e.timestamp.timestamp(), 1_736_937_000);
    }

    #[test]
    fn unknown_fields_are_kept_in_metadata() {
        let e = parse(&with("authorization_decision", json!("allow")))
            .unwrap()
            .remove(0);
        assert_eq!(e.metadata.get("authorization_decision"), Some(&json!("allow")));
        assert_eq!(e.metadata.get("duration_ms"), Some(&json!(45)));
    }

    #[test]
    fn unknown_field_colliding_with_a_metadata_key_is_422_without_naming_it() {
        let e = parse(&with("duration_ms", json!(46))).unwrap_err();
        // sha256("duration_ms") starts with these 8 hex digits; the name itself is not echoed.
        let digest = super::super::parse::field_name("duration_ms");
        assert_422(&e, 0, &digest);
        assert!(!e.error.contains("46") && !e.error.contains("duration"), "{e}");
    }

    #[test]
    fn source_field_in_a_sark_body_is_metadata_not_the_source() {
        let e = parse(&with("source", json!("spoofed"))).unwrap().remove(0);
        assert_eq!(e.source, "sark-gateway");
        assert_eq!(e.metadata.get("source"), Some(&json!("spoofed")));
    }

    #[test]
    fn an_array_of_sark_events_is_accepted_and_errors_name_the_index() {
        let events = parse(&json!([sark_body(), sark_body()])).unwrap();
        assert_eq!(events.len(), 2);
        let e = parse(&json!([sark_body(), without("reason")])).unwrap_err();
        assert_422(&e, 1, "reason");
    }

    #[test]
    fn limits_apply_to_sark_bodies() {
        let limits = Limits {
            max_depth: 2,
            ..Limits::default()
        };
        let body = with("metadata", json!({"a": {"b": 1}})).to_string();
        let e = parse_sark(body.as_bytes(), &limits, "s").unwrap_err();
        assert_422(&e, 0, "metadata");

        let e = parse_sark(b"{\"event_type\": ", &Limits::default(), "s").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.line.is_some());
    }
}
