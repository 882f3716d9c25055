//! The host's lifting and checking of what a plugin stage hands back for an event it keeps:
//! contract 1.0's whole record (`check_keep`, with `oversized_field`, then applied) and
//! contract 1.1's per-field patches (`check_patch` for each, then applied), then the event
//! finished as the chain leaves it (metadata parsed, normalised, field limits checked). It
//! goes through `auditflow::pipeline::fuzzing`, which calls the pipeline's own private steps.
//!
//! Properties: no panic; an answer the stage's check accepts is one the chain can finish (if
//! the check passes and the finish fails, the stage's error policy is bypassed and the whole
//! request is rejected instead); a finished event is storable as is (field limits, normalised
//! text), keeps its event id and authenticated source whatever the plugin said, and holds the
//! values the plugin set.
#![no_main]

use auditflow::event::Event;
use auditflow::pipeline::fuzzing::{Refused, lift_patches, lift_whole, to_wit};
use auditflow::plugin::bindings::Patchable;
use auditflow::store::contract;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Start from the event with every field set, or the sparse one.
    full: bool,
    answer: Answer,
}

#[derive(Arbitrary, Debug)]
enum Answer {
    Whole(Whole),
    /// (index into [`PATCHABLE`], value).
    Patches(Vec<(u8, Option<String>)>),
}

/// A 1.0 record; `None` in `event_id` and `metadata` keeps what the stage was given.
#[derive(Arbitrary, Debug)]
struct Whole {
    event_id: Option<String>,
    event_type: String,
    timestamp_us: i64,
    actor_type: Option<String>,
    actor_id: Option<String>,
    agent_id: Option<String>,
    server_name: Option<String>,
    tool_name: Option<String>,
    decision: Option<String>,
    outcome: Option<String>,
    reason: Option<String>,
    request_id: Option<String>,
    correlation_id: Option<String>,
    source_ip: Option<String>,
    source: String,
    metadata: Option<String>,
}

const PATCHABLE: [Patchable; 14] = [
    Patchable::EventType,
    Patchable::TimestampUs,
    Patchable::ActorType,
    Patchable::ActorId,
    Patchable::AgentId,
    Patchable::ServerName,
    Patchable::ToolName,
    Patchable::Decision,
    Patchable::Outcome,
    Patchable::Reason,
    Patchable::RequestId,
    Patchable::CorrelationId,
    Patchable::SourceIp,
    Patchable::Metadata,
];

fuzz_target!(|input: Input| {
    let original = if input.full {
        contract::full_event(7)
    } else {
        contract::event(7)
    };
    match input.answer {
        Answer::Whole(w) => {
            let mut after = to_wit(&original);
            if let Some(id) = w.event_id {
                after.event_id = id;
            }
            after.event_type = w.event_type;
            after.timestamp_us = w.timestamp_us;
            after.actor_type = w.actor_type;
            after.actor_id = w.actor_id;
            after.agent_id = w.agent_id;
            after.server_name = w.server_name;
            after.tool_name = w.tool_name;
            after.decision = w.decision;
            after.outcome = w.outcome;
            after.reason = w.reason;
            after.request_id = w.request_id;
            after.correlation_id = w.correlation_id;
            after.source_ip = w.source_ip;
            after.source = w.source;
            if let Some(m) = w.metadata {
                after.metadata = m;
            }
            let expected = [
                (Patchable::EventType, Some(after.event_type.clone())),
                (Patchable::TimestampUs, Some(after.timestamp_us.to_string())),
                (Patchable::ActorType, after.actor_type.clone()),
                (Patchable::ActorId, after.actor_id.clone()),
                (Patchable::AgentId, after.agent_id.clone()),
                (Patchable::ServerName, after.server_name.clone()),
                (Patchable::ToolName, after.tool_name.clone()),
                (Patchable::Decision, after.decision.clone()),
                (Patchable::Outcome, after.outcome.clone()),
                (Patchable::Reason, after.reason.clone()),
                (Patchable::RequestId, after.request_id.clone()),
                (Patchable::CorrelationId, after.correlation_id.clone()),
                (Patchable::SourceIp, after.source_ip.clone()),
            ];
            check(&original, lift_whole(original.clone(), after), &expected);
        }
        Answer::Patches(raw) => {
            let patches: Vec<(Patchable, Option<String>)> = raw
                .into_iter()
                .map(|(i, v)| (PATCHABLE[usize::from(i) % PATCHABLE.len()], v))
                .collect();
            // The last patch of a field wins.
            let mut expected: Vec<(Patchable, Option<String>)> = Vec::new();
            for (field, value) in patches.iter().rev() {
                if *field != Patchable::Metadata && !expected.iter().any(|(f, _)| f == field) {
                    expected.push((*field, value.clone()));
                }
            }
            check(&original, lift_patches(original.clone(), patches), &expected);
        }
    }
});

fn check(original: &Event, lifted: Result<Event, Refused>, expected: &[(Patchable, Option<String>)]) {
    let event = match lifted {
        Ok(event) => event,
        Err(Refused::Stage(_)) => return,
        Err(Refused::Chain(message)) => panic!("the stage's check passed an answer the chain cannot finish: {message}"),
    };
    assert_eq!(event.event_id, original.event_id, "a plugin changed the event id");
    assert_eq!(
        event.source, original.source,
        "a plugin changed the authenticated source"
    );
    assert!(!event.event_type.is_empty(), "an empty event_type got through");
    assert_eq!(event.oversized_field(), None, "an oversized field got through");
    assert!(!event.needs_normalizing(), "an unnormalised event got through");
    for (field, value) in expected {
        if *field == Patchable::TimestampUs {
            // Any spelling of the integer (`+7`, `007`) is the same time.
            let set = value.as_deref().and_then(|v| v.parse::<i64>().ok());
            assert_eq!(
                Some(event.timestamp.timestamp_micros()),
                set,
                "the timestamp is not what the plugin set"
            );
            continue;
        }
        let value = value.as_deref().map(|v| v.replace('\0', "\u{FFFD}"));
        assert_eq!(text(&event, *field), value, "{field:?} is not what the plugin set");
    }
}

/// A field of `event` as the text a plugin sets it with.
fn text(e: &Event, field: Patchable) -> Option<String> {
    let owned = |s: Option<&str>| s.map(str::to_owned);
    match field {
        Patchable::EventType => Some(e.event_type.clone()),
        Patchable::ActorType => owned(e.actor_type()),
        Patchable::ActorId => owned(e.actor_id()),
        Patchable::AgentId => e.agent_id.clone(),
        Patchable::ServerName => e.server_name.clone(),
        Patchable::ToolName => e.tool_name.clone(),
        Patchable::Decision => e.decision.map(|d| d.as_str().to_owned()),
        Patchable::Outcome => e.outcome.clone(),
        Patchable::Reason => e.reason.clone(),
        Patchable::RequestId => e.request_id.clone(),
        Patchable::CorrelationId => e.correlation_id.clone(),
        Patchable::SourceIp => e.source_ip.clone(),
        Patchable::TimestampUs | Patchable::Metadata => None,
    }
}
