//! Contract 1.1 for plugin authors: a [`Stage`] says which fields it reads, and sees each event
//! of a batch as an [`EventPatch`]: it reads fields with [`EventPatch::get`] (or the named
//! accessors), changes them with [`EventPatch::set`], or drops or fails the event. Only the
//! fields it asked for cross the boundary, and only what it changed comes back.
//!
//! The packing (`packed-events`, `verdicts` in `wit/plugin.wit`) stays inside the SDK: the
//! export macro [`export_stage!`](crate::export_stage) unpacks each batch into `EventPatch`es
//! that borrow from the host's buffer, and collects their patches.
//!
//! ```ignore
//! use auditflow_sdk::{Config, EventPatch, Field, Patchable, Stage};
//! struct Upper;
//! impl Stage for Upper {
//!     fn init(_config: Config) -> Result<Self, String> { Ok(Upper) }
//!     fn reads(&self) -> Vec<Field> { vec![Field::ToolName] }
//!     fn process(&mut self, event: &mut EventPatch<'_>) {
//!         if let Some(tool) = event.tool_name() {
//!             let upper = tool.to_uppercase();
//!             event.set(Patchable::ToolName, Some(upper));
//!         }
//!     }
//! }
//! auditflow_sdk::export_stage!(Upper);
//! ```
//!
//! ## What a stage cannot change
//!
//! `event-id` and `source` can be read but not patched: [`Patchable`] has no such variants, so
//! a stage that tries does not compile.
//!
//! ```compile_fail
//! fn rewrite(event: &mut auditflow_sdk::EventPatch<'_>) {
//!     event.set(auditflow_sdk::Patchable::EventId, Some("forged".into()));
//! }
//! ```
//!
//! ```compile_fail
//! fn rewrite(event: &mut auditflow_sdk::EventPatch<'_>) {
//!     event.set(auditflow_sdk::Patchable::Source, Some("forged".into()));
//! }
//! ```
//!
//! The same with a field that can be patched compiles:
//!
//! ```
//! fn rewrite(event: &mut auditflow_sdk::EventPatch<'_>) {
//!     event.set(auditflow_sdk::Patchable::ToolName, Some("renamed".into()));
//! }
//! ```

pub use crate::batch_bindings::exports::auditflow::plugin::batch_stage::{
    Field, PackedEvents, Patch, Patchable, Verdicts,
};
use crate::{Config, Event};

/// Every field, in WIT order (their discriminants index [`EventPatch`]'s values).
pub const ALL_FIELDS: [Field; 16] = [
    Field::EventId,
    Field::EventType,
    Field::TimestampUs,
    Field::ActorType,
    Field::ActorId,
    Field::AgentId,
    Field::ServerName,
    Field::ToolName,
    Field::Decision,
    Field::Outcome,
    Field::Reason,
    Field::RequestId,
    Field::CorrelationId,
    Field::SourceIp,
    Field::Source,
    Field::Metadata,
];

/// The length that marks an absent field in `packed-events`.
pub const ABSENT: u32 = u32::MAX;

/// A contract 1.1 stage (redaction, enrichment, custom).
pub trait Stage: Sized + 'static {
    /// Build the stage from its config; an error rejects the config.
    fn init(config: Config) -> Result<Self, String>;

    /// The fields this stage reads; only they are sent (a field not asked for reads as absent).
    fn reads(&self) -> Vec<Field>;

    /// Process one event: read it, patch it, or drop or fail it.
    fn process(&mut self, event: &mut EventPatch<'_>);

    /// Process a batch, in order. Override for batch-level work.
    fn process_batch(&mut self, events: &mut [EventPatch<'_>]) {
        for event in events {
            self.process(event);
        }
    }
}

/// The config name a [`Patchable`] field is the same as.
pub fn field_of(p: Patchable) -> Field {
    match p {
        Patchable::EventType => Field::EventType,
        Patchable::TimestampUs => Field::TimestampUs,
        Patchable::ActorType => Field::ActorType,
        Patchable::ActorId => Field::ActorId,
        Patchable::AgentId => Field::AgentId,
        Patchable::ServerName => Field::ServerName,
        Patchable::ToolName => Field::ToolName,
        Patchable::Decision => Field::Decision,
        Patchable::Outcome => Field::Outcome,
        Patchable::Reason => Field::Reason,
        Patchable::RequestId => Field::RequestId,
        Patchable::CorrelationId => Field::CorrelationId,
        Patchable::SourceIp => Field::SourceIp,
        Patchable::Metadata => Field::Metadata,
    }
}

/// The patchable twin of `f`; `None` for `event-id` and `source`, which cannot be changed.
pub fn patchable(f: Field) -> Option<Patchable> {
    Some(match f {
        Field::EventId | Field::Source => return None,
        Field::EventType => Patchable::EventType,
        Field::TimestampUs => Patchable::TimestampUs,
        Field::ActorType => Patchable::ActorType,
        Field::ActorId => Patchable::ActorId,
        Field::AgentId => Patchable::AgentId,
        Field::ServerName => Patchable::ServerName,
        Field::ToolName => Patchable::ToolName,
        Field::Decision => Patchable::Decision,
        Field::Outcome => Patchable::Outcome,
        Field::Reason => Patchable::Reason,
        Field::RequestId => Patchable::RequestId,
        Field::CorrelationId => Patchable::CorrelationId,
        Field::SourceIp => Patchable::SourceIp,
        Field::Metadata => Patchable::Metadata,
    })
}

/// What a stage decided about one event besides its patches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verdict {
    #[default]
    Keep,
    /// Dropped on purpose (counted, not an error).
    Drop,
    /// Not processed; the stage's error policy decides. The message may be logged by the host
    /// at debug level only: it may quote the event.
    Fail(String),
}

/// One event of a batch as a stage sees it: the fields it asked for, borrowed, and what it
/// changed.
#[derive(Debug, Clone)]
pub struct EventPatch<'a> {
    values: [Option<&'a str>; 16],
    /// The fields set so far, each once, in the order first set (empty, and no allocation,
    /// for the events a stage leaves alone).
    patched: Vec<(Patchable, Option<String>)>,
    verdict: Verdict,
}

impl<'a> EventPatch<'a> {
    /// An event with the given fields (the rest absent).
    pub fn new(values: impl IntoIterator<Item = (Field, Option<&'a str>)>) -> EventPatch<'a> {
        let mut patch = EventPatch {
            values: [None; 16],
            patched: Vec::new(),
            verdict: Verdict::Keep,
        };
        for (f, v) in values {
            patch.values[f as usize] = v;
        }
        patch
    }

    /// The value of `field`: the patched one if this stage set it, else what the host sent.
    pub fn get(&self, field: Field) -> Option<&str> {
        let patched = patchable(field).and_then(|p| self.patched.iter().find(|(f, _)| *f == p));
        match patched {
            Some((_, new)) => new.as_deref(),
            None => self.values[field as usize],
        }
    }

    /// Set `field` to `value` (`None` makes an optional field absent).
    pub fn set(&mut self, field: Patchable, value: Option<String>) {
        match self.patched.iter_mut().find(|(f, _)| *f == field) {
            Some((_, old)) => *old = value,
            None => self.patched.push((field, value)),
        }
    }

    /// Drop the event on purpose.
    pub fn drop_event(&mut self) {
        self.verdict = Verdict::Drop;
    }

    /// Fail the event: the stage's error policy decides what happens to it.
    pub fn fail(&mut self, why: impl Into<String>) {
        self.verdict = Verdict::Fail(why.into());
    }

    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// Move the patches out (owned), leaving none: what a host applies.
    pub fn take_patches(&mut self) -> Vec<(Patchable, Option<String>)> {
        std::mem::take(&mut self.patched)
    }

    /// The fields this stage set, with their new values, in the order first set.
    pub fn patches(&self) -> impl Iterator<Item = (Patchable, Option<&str>)> + '_ {
        self.patched.iter().map(|(p, v)| (*p, v.as_deref()))
    }

    pub fn event_id(&self) -> Option<&str> {
        self.get(Field::EventId)
    }
    pub fn event_type(&self) -> Option<&str> {
        self.get(Field::EventType)
    }
    pub fn actor_type(&self) -> Option<&str> {
        self.get(Field::ActorType)
    }
    pub fn actor_id(&self) -> Option<&str> {
        self.get(Field::ActorId)
    }
    pub fn agent_id(&self) -> Option<&str> {
        self.get(Field::AgentId)
    }
    pub fn server_name(&self) -> Option<&str> {
        self.get(Field::ServerName)
    }
    pub fn tool_name(&self) -> Option<&str> {
        self.get(Field::ToolName)
    }
    pub fn decision(&self) -> Option<&str> {
        self.get(Field::Decision)
    }
    pub fn source(&self) -> Option<&str> {
        self.get(Field::Source)
    }
    /// The metadata object as JSON text.
    pub fn metadata(&self) -> Option<&str> {
        self.get(Field::Metadata)
    }
}

/// The text of every field of a whole [`Event`] (the 1.0 record), for running a [`Stage`]
/// natively in tests and benchmarks. `timestamp-us` is the decimal text of `timestamp`.
pub struct EventFields {
    timestamp: String,
}

impl EventFields {
    pub fn of(event: &Event) -> EventFields {
        EventFields {
            timestamp: event.timestamp_us.to_string(),
        }
    }

    /// `event` as an [`EventPatch`] holding every field.
    pub fn patch<'a>(&'a self, event: &'a Event) -> EventPatch<'a> {
        EventPatch::new(ALL_FIELDS.iter().map(|&f| (f, field_text(event, f, &self.timestamp))))
    }
}

fn field_text<'a>(e: &'a Event, f: Field, timestamp: &'a str) -> Option<&'a str> {
    match f {
        Field::EventId => Some(&e.event_id),
        Field::EventType => Some(&e.event_type),
        Field::TimestampUs => Some(timestamp),
        Field::ActorType => e.actor_type.as_deref(),
        Field::ActorId => e.actor_id.as_deref(),
        Field::AgentId => e.agent_id.as_deref(),
        Field::ServerName => e.server_name.as_deref(),
        Field::ToolName => e.tool_name.as_deref(),
        Field::Decision => e.decision.as_deref(),
        Field::Outcome => e.outcome.as_deref(),
        Field::Reason => e.reason.as_deref(),
        Field::RequestId => e.request_id.as_deref(),
        Field::CorrelationId => e.correlation_id.as_deref(),
        Field::SourceIp => e.source_ip.as_deref(),
        Field::Source => Some(&e.source),
        Field::Metadata => Some(&e.metadata),
    }
}

/// Apply `patches` (from [`EventPatch::take_patches`]) to a whole [`Event`] (what the host
/// does, for native tests): `false` when a patch cannot apply (a required field made absent, a
/// timestamp that is not a number).
pub fn apply(patches: Vec<(Patchable, Option<String>)>, event: &mut Event) -> bool {
    for (p, v) in patches {
        let slot = match p {
            Patchable::EventType => match v {
                Some(v) => {
                    event.event_type = v;
                    continue;
                }
                None => return false,
            },
            Patchable::TimestampUs => match v.and_then(|v| v.parse().ok()) {
                Some(us) => {
                    event.timestamp_us = us;
                    continue;
                }
                None => return false,
            },
            Patchable::Metadata => {
                event.metadata = v.unwrap_or_else(|| "{}".into());
                continue;
            }
            Patchable::ActorType => &mut event.actor_type,
            Patchable::ActorId => &mut event.actor_id,
            Patchable::AgentId => &mut event.agent_id,
            Patchable::ServerName => &mut event.server_name,
            Patchable::ToolName => &mut event.tool_name,
            Patchable::Decision => &mut event.decision,
            Patchable::Outcome => &mut event.outcome,
            Patchable::Reason => &mut event.reason,
            Patchable::RequestId => &mut event.request_id,
            Patchable::CorrelationId => &mut event.correlation_id,
            Patchable::SourceIp => &mut event.source_ip,
        };
        *slot = v;
    }
    true
}

/// Pack whole events the way the host does (`fields` of each, in order): for running a
/// [`Stage`] natively in tests and benchmarks exactly as it runs in the host.
pub fn pack(events: &[Event], fields: &[Field]) -> PackedEvents {
    let mut data = Vec::new();
    let mut offsets = Vec::with_capacity(2 * events.len() * fields.len());
    for e in events {
        let timestamp = e.timestamp_us.to_string();
        for &f in fields {
            match field_text(e, f, &timestamp) {
                Some(text) => {
                    offsets.push(data.len() as u32);
                    offsets.push(text.len() as u32);
                    data.extend_from_slice(text.as_bytes());
                }
                None => {
                    offsets.push(0);
                    offsets.push(ABSENT);
                }
            }
        }
    }
    PackedEvents {
        count: events.len() as u32,
        fields: fields.to_vec(),
        data,
        offsets,
    }
}

/// Unpack `batch`, run `stage` on it, and collect the verdicts (what [`export_stage!`] does).
///
/// [`export_stage!`]: crate::export_stage
pub fn run<S: Stage>(stage: &mut S, batch: &PackedEvents) -> Verdicts {
    let mut events = unpack(batch);
    stage.process_batch(&mut events);
    verdicts(&events)
}

/// The events of a packed batch, borrowing from it. A malformed batch (offsets out of range,
/// text that is not UTF-8) makes the affected fields absent rather than panicking.
pub fn unpack(batch: &PackedEvents) -> Vec<EventPatch<'_>> {
    let n = batch.fields.len();
    (0..batch.count as usize)
        .map(|e| {
            EventPatch::new(batch.fields.iter().enumerate().map(|(i, &f)| {
                let at = 2 * (e * n + i);
                let value = match (batch.offsets.get(at), batch.offsets.get(at + 1)) {
                    (Some(&start), Some(&len)) if len != ABSENT => batch
                        .data
                        .get(start as usize..(start as usize).saturating_add(len as usize))
                        .and_then(|b| std::str::from_utf8(b).ok()),
                    _ => None,
                };
                (f, value)
            }))
        })
        .collect()
}

/// What a batch of processed events answers.
pub fn verdicts(events: &[EventPatch<'_>]) -> Verdicts {
    let mut out = Verdicts {
        patches: Vec::new(),
        dropped: Vec::new(),
        failed: Vec::new(),
    };
    for (i, e) in events.iter().enumerate() {
        let i = i as u32;
        match &e.verdict {
            Verdict::Drop => out.dropped.push(i),
            Verdict::Fail(why) => out.failed.push((i, why.clone())),
            Verdict::Keep => out.patches.extend(e.patches().map(|(field, value)| Patch {
                event: i,
                field,
                value: value.map(str::to_owned),
            })),
        }
    }
    out
}
