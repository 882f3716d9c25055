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
    text_field_index(name).map(|index| text_field_at_mut(event, index))
}

/// The position of `name` in [`TEXT_FIELDS`]. A plugin that touches the same fields of every
/// event resolves their names once with this and then uses [`text_field_at_mut`], instead of
/// matching names per event.
pub fn text_field_index(name: &str) -> Option<usize> {
    TEXT_FIELDS.iter().position(|&field| field == name)
}

/// The optional typed string field at `index` in [`TEXT_FIELDS`].
///
/// # Panics
/// If `index` is not below `TEXT_FIELDS.len()`.
pub fn text_field_at_mut(event: &mut Event, index: usize) -> &mut Option<String> {
    match index {
        0 => &mut event.actor_type,
        1 => &mut event.actor_id,
        2 => &mut event.agent_id,
        3 => &mut event.server_name,
        4 => &mut event.tool_name,
        5 => &mut event.decision,
        6 => &mut event.outcome,
        7 => &mut event.reason,
        8 => &mut event.request_id,
        9 => &mut event.correlation_id,
        10 => &mut event.source_ip,
        _ => panic!(
            "text field index {index} out of range (TEXT_FIELDS has {})",
            TEXT_FIELDS.len()
        ),
    }
}

/// The contract 1.1 [`Field`](crate::Field) a config name (`actor.id`, `agent_id`, …, also
/// `event_id`, `event_type`, `source`) stands for.
pub fn field_named(name: &str) -> Option<crate::Field> {
    use crate::Field;
    Some(match name {
        "event_id" => Field::EventId,
        "event_type" => Field::EventType,
        "source" => Field::Source,
        "actor.type" => Field::ActorType,
        "actor.id" => Field::ActorId,
        "agent_id" => Field::AgentId,
        "server_name" => Field::ServerName,
        "tool_name" => Field::ToolName,
        "decision" => Field::Decision,
        "outcome" => Field::Outcome,
        "reason" => Field::Reason,
        "request_id" => Field::RequestId,
        "correlation_id" => Field::CorrelationId,
        "source_ip" => Field::SourceIp,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Index and name address the same field, which the read-only accessor reads back.
    #[test]
    fn indexes_and_names_agree() {
        let mut event = Event {
            event_id: String::new(),
            event_type: String::new(),
            timestamp_us: 0,
            actor_type: None,
            actor_id: None,
            agent_id: None,
            server_name: None,
            tool_name: None,
            decision: None,
            outcome: None,
            reason: None,
            request_id: None,
            correlation_id: None,
            source_ip: None,
            source: String::new(),
            metadata: String::new(),
        };
        for (index, &name) in TEXT_FIELDS.iter().enumerate() {
            assert_eq!(text_field_index(name), Some(index));
            *text_field_at_mut(&mut event, index) = Some(format!("value of {name}"));
        }
        for &name in TEXT_FIELDS {
            let expected = format!("value of {name}");
            assert_eq!(text_field(&event, name), Some(expected.as_str()));
            assert_eq!(
                text_field_mut(&mut event, name).unwrap().as_deref(),
                Some(expected.as_str())
            );
        }
        assert_eq!(text_field_index("event_id"), None);
        assert!(text_field_mut(&mut event, "source").is_none());
    }
}
