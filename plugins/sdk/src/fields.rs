//! Typed event fields addressed by the names operators write in config (`actor.id`,
//! `agent_id`, …), so a plugin's config can say which typed fields it applies to.

use crate::Event;

/// Config names of the optional typed string fields, in a stable order.
pub const TEXT_FIELDS: &[&str] = &[
    "actor.type",
    "actor.id",
    "agent_id",
    "server_name",
    "tool_name",
    "decision",
    "outcome",
    "reason",
    "request_id",
    "correlation_id",
    "source_ip",
];

/// The optional typed string field named `name`, or `None` for an unknown name.
/// `event_id`, `event_type`, `timestamp` and `source` are not addressable: plugins must not
/// rewrite the idempotency key or the authenticated source.
pub fn text_field_mut<'a>(event: &'a mut Event, name: &str) -> Option<&'a mut Option<String>> {
    Some(match name {
        "actor.type" => &mut event.actor_type,
        "actor.id" => &mut event.actor_id,
        "agent_id" => &mut event.agent_id,
        "server_name" => &mut event.server_name,
        "tool_name" => &mut event.tool_name,
        "decision" => &mut event.decision,
        "outcome" => &mut event.outcome,
        "reason" => &mut event.reason,
        "request_id" => &mut event.request_id,
        "correlation_id" => &mut event.correlation_id,
        "source_ip" => &mut event.source_ip,
        _ => return None,
    })
}

/// Read-only twin of [`text_field_mut`]; also answers `event_id`, `event_type` and `source`.
pub fn text_field<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    match name {
        "event_id" => Some(&event.event_id),
        "event_type" => Some(&event.event_type),
        "source" => Some(&event.source),
        "actor.type" => event.actor_type.as_deref(),
        "actor.id" => event.actor_id.as_deref(),
        "agent_id" => event.agent_id.as_deref(),
        "server_name" => event.server_name.as_deref(),
        "tool_name" => event.tool_name.as_deref(),
        "decision" => event.decision.as_deref(),
        "outcome" => event.outcome.as_deref(),
        "reason" => event.reason.as_deref(),
        "request_id" => event.request_id.as_deref(),
        "correlation_id" => event.correlation_id.as_deref(),
        "source_ip" => event.source_ip.as_deref(),
        _ => None,
    }
}
