//! The stage chain: runs every event of a request through the configured Wasm stages, in
//! order, in batches, and applies each stage's error policy.
//!
//! A stage is a contract 1.0 plugin (whole WIT records in and out) or a 1.1 plugin (the fields
//! it asked for packed into one buffer, per-field patches back); the host prefers 1.1. Between
//! stages the event stays canonical ([`flowing`]); metadata a stage sent back is parsed once, at
//! the end of the chain.

use std::time::{Duration, Instant};

use crate::config::{Config, ErrorPolicy, StageConfig, StageRole};
use crate::event::Event;
use crate::plugin::bindings::{Patchable, Verdicts, WitEvent, WitOutcome};
use crate::plugin::engine::WorldKind;
use crate::plugin::host::StageContext;
use crate::plugin::{BatchPool, InstanceLimits, PluginEngine, PluginError, TransformPool};

pub(crate) mod flowing;
pub mod metrics;
use flowing::{Change, Flowing, check_object_text, check_patch, pack};
pub use metrics::StageMetrics;

/// One configured stage.
pub struct Stage {
    pub name: String,
    pub role: StageRole,
    pub on_error: ErrorPolicy,
    /// Warm plugin instances kept for this stage.
    pub instances: usize,
    /// Wall-clock budget of one call (`timeout_ms`).
    pub timeout: Duration,
    pool: StagePool,
    metrics: StageMetrics,
}

/// How a stage's plugin is called.
enum StagePool {
    /// Contract 1.0: whole records.
    Whole(TransformPool),
    /// Contract 1.1: packed fields, patches back.
    Packed(BatchPool),
}

/// What a stage did to one event, as `auditflow plugin test` shows it.
// Only `plugin test` builds these, one per event it prints: not worth a box per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum StageOutcome {
    /// Kept, as it now is.
    Keep(Event),
    Drop,
    /// The stage failed on it (reported, trapped, timed out, broke the contract).
    Error(String),
}

impl Stage {
    /// Run this stage alone on `events`, with no error policy and no re-runs (`auditflow plugin
    /// test`): what it did to each event.
    pub async fn process_events(&self, events: Vec<Event>) -> Result<Vec<StageOutcome>, PluginError> {
        let mut live: Vec<(usize, Flowing)> = events.into_iter().map(Flowing::new).enumerate().collect();
        let input = self.input(&mut live);
        let raw = self.call(&input).await?;
        let results = self.results(&input, &live, raw);
        Ok(live
            .into_iter()
            .zip(results)
            .map(|((_, mut f), r)| match r {
                EventResult::Keep(change) => {
                    f.apply(change);
                    match f.finish() {
                        Ok(e) => StageOutcome::Keep(e),
                        Err(m) => StageOutcome::Error(m),
                    }
                }
                EventResult::Drop => StageOutcome::Drop,
                EventResult::Failed(failure) => StageOutcome::Error(failure.summary),
            })
            .collect())
    }

    /// Which contract the stage's plugin speaks: `1.0` or `1.1`.
    pub fn contract(&self) -> &'static str {
        match self.pool {
            StagePool::Whole(_) => "1.0",
            StagePool::Packed(_) => "1.1",
        }
    }

    /// This stage's counters (`/health/detailed`).
    pub fn metrics(&self) -> &StageMetrics {
        &self.metrics
    }
}

/// The chain of stages built from a config.
pub struct Pipeline {
    stages: Vec<Stage>,
    batch_size: usize,
}

/// The pipeline in service, swappable at run time (hot reload). A request takes the current
/// pipeline once and finishes on it, so a swap never changes a request half-way.
pub type PipelineSlot = crate::slot::Slot<Pipeline>;

/// What the chain made of a request's events.
#[derive(Debug, Default)]
pub struct PipelineOutput {
    /// Events to store, in input order.
    pub kept: Vec<Event>,
    /// Events a stage dropped on purpose.
    pub dropped: usize,
    /// Events removed by a stage's `drop` error policy.
    pub failed: usize,
    /// Events a stage failed on whose policy is `quarantine`: recorded, not stored.
    pub quarantined: Vec<QuarantineEntry>,
}

/// What is kept of a quarantined event: which event, where and why — never its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineEntry {
    pub event_id: uuid::Uuid,
    pub stage: String,
    pub error: String,
}

/// The request must fail: a stage with the `reject` policy failed. Carries no event data.
#[derive(Debug, thiserror::Error)]
#[error("stage `{stage}` failed and its policy is reject: {message}")]
pub struct Rejected {
    pub stage: String,
    pub message: String,
    /// Index of the failing event in the request, when one event (not the call) failed.
    pub index: Option<usize>,
    /// How the stage failed.
    pub kind: FailureKind,
}

/// How a stage failed on an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The plugin answered `error` for the event.
    Reported,
    /// The call on this event alone ran past the stage's `timeout_ms` (or the request's
    /// re-run budget was spent before the event could be tried alone).
    Timeout { timeout_ms: u64 },
    /// The plugin trapped, or broke the contract, on this event alone.
    Fault,
}

/// A config the pipeline cannot be built from.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    // Not `source`: the message already carries the plugin error, and a source would print it
    // twice in an error chain.
    #[error("stages[{index}] (`{stage}`): {error}")]
    Plugin {
        index: usize,
        stage: String,
        error: PluginError,
    },
    #[error("stages[{index}].secrets.{name}: {message}")]
    Secret {
        index: usize,
        name: String,
        message: String,
    },
    #[error("stages[{index}].lookup_files.{table}: {message}")]
    Lookup {
        index: usize,
        table: String,
        message: String,
    },
}

impl Pipeline {
    /// Load, link and initialise every stage of `config`.
    pub async fn build(config: &Config, engine: &PluginEngine) -> Result<Pipeline, BuildError> {
        let mut stages = Vec::with_capacity(config.stages.len());
        for (index, sc) in config.stages.iter().enumerate() {
            stages.push(Self::build_stage(config, engine, index, sc).await?);
        }
        Ok(Pipeline {
            stages,
            batch_size: config.pipeline.batch_size,
        })
    }

    async fn build_stage(
        config: &Config,
        engine: &PluginEngine,
        index: usize,
        sc: &StageConfig,
    ) -> Result<Stage, BuildError> {
        let plugin_err = |error| BuildError::Plugin {
            index,
            stage: sc.name.clone(),
            error,
        };
        let component = engine.load(&sc.plugin, &config.base_dir).map_err(plugin_err)?;
        let mut stage_config = sc.config.clone();
        for (name, source) in &sc.secrets {
            let value = config.read_secret(source).map_err(|message| BuildError::Secret {
                index,
                name: name.clone(),
                message,
            })?;
            if let Some(obj) = stage_config.as_object_mut() {
                obj.insert(name.clone(), serde_json::Value::String(value));
            }
        }
        let lookups = crate::plugin::lookup::stage_tables(config, sc)
            .map_err(|(table, message)| BuildError::Lookup { index, table, message })?;
        let mut limits = InstanceLimits {
            timeout: std::time::Duration::from_millis(sc.timeout_ms),
            max_memory_bytes: (sc.max_memory_mb as usize) << 20,
            fuel: sc.fuel,
            ..InstanceLimits::default()
        };
        if let Some(n) = sc.instances {
            limits.instances = n;
        }
        let context = StageContext {
            stage: sc.name.clone(),
            lookups,
        };
        let config_json = stage_config.to_string();
        let pool = match component.world {
            WorldKind::BatchTransform => StagePool::Packed(
                BatchPool::new(engine, &component, context, config_json, limits)
                    .await
                    .map_err(plugin_err)?,
            ),
            _ => StagePool::Whole(
                TransformPool::new(engine, &component, context, config_json, limits)
                    .await
                    .map_err(plugin_err)?,
            ),
        };
        Ok(Stage {
            name: sc.name.clone(),
            role: sc.role,
            on_error: sc.on_error,
            pool,
            instances: limits.instances,
            timeout: limits.timeout,
            metrics: StageMetrics::new(&sc.name, sc.role),
        })
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Run every event through the chain. A request's re-runs of a stage's failed batches,
    /// event by event, share one budget of two of that stage's timeouts, so a request of many
    /// slow events costs a bounded time, not one timeout per slow event.
    pub async fn run(&self, events: Vec<Event>) -> Result<PipelineOutput, Rejected> {
        let mut out = PipelineOutput {
            kept: Vec::with_capacity(events.len()),
            ..Default::default()
        };
        if self.stages.is_empty() {
            out.kept = events;
            return Ok(out);
        }
        let mut offset = 0;
        let mut events = events.into_iter();
        let mut budgets: Vec<RerunBudget> = self.stages.iter().map(|s| RerunBudget::new(2 * s.timeout)).collect();
        loop {
            let originals: Vec<Event> = events.by_ref().take(self.batch_size).collect();
            if originals.is_empty() {
                break;
            }
            let n = originals.len();
            self.run_batch(offset, originals, &mut out, &mut budgets).await?;
            offset += n;
        }
        Ok(out)
    }

    async fn run_batch(
        &self,
        offset: usize,
        originals: Vec<Event>,
        out: &mut PipelineOutput,
        budgets: &mut [RerunBudget],
    ) -> Result<(), Rejected> {
        // (index in the batch, the event as the chain has it so far)
        let mut live: Vec<(usize, Flowing)> = originals.into_iter().map(Flowing::new).enumerate().collect();
        for (stage, budget) in self.stages.iter().zip(budgets.iter_mut()) {
            if live.is_empty() {
                break;
            }
            let results = stage.process_isolating(&mut live, budget).await;
            let mut tally = Tally::default();
            // In place: a kept event does not move (an event is a few hundred bytes; a batch
            // rebuilt per stage was a measurable share of a cheap stage's cost).
            let mut results = results.into_iter();
            let mut rejected = None;
            live.retain_mut(|(i, flowing)| {
                let failure = match results.next() {
                    // Under `reject` the results may stop at the failing event.
                    None => return true,
                    Some(EventResult::Keep(change)) => {
                        tally.kept += 1;
                        flowing.apply(change);
                        return true;
                    }
                    Some(EventResult::Drop) => {
                        tally.dropped += 1;
                        out.dropped += 1;
                        return false;
                    }
                    Some(EventResult::Failed(failure)) => failure,
                };
                tally.errors += 1;
                let event_id = flowing.event.event_id;
                match stage.on_error {
                    ErrorPolicy::Reject => {
                        if rejected.is_none() {
                            tracing::warn!(stage = %stage.name, %event_id, error = %failure.summary, "stage failed on event; rejecting request");
                            rejected = Some(Rejected {
                                stage: stage.name.clone(),
                                message: failure.summary,
                                // Every failure here is this event's alone: the call failed on
                                // it on its own, or the plugin reported it.
                                index: Some(offset + *i),
                                kind: failure.kind,
                            });
                        }
                        true
                    }
                    ErrorPolicy::Drop => {
                        tracing::warn!(stage = %stage.name, %event_id, error = %failure.summary, "stage failed on event; dropped by policy");
                        out.failed += 1;
                        false
                    }
                    ErrorPolicy::Quarantine => {
                        tally.quarantined += 1;
                        tracing::warn!(stage = %stage.name, %event_id, error = %failure.summary, "stage failed on event; quarantined");
                        out.quarantined.push(QuarantineEntry {
                            event_id,
                            stage: stage.name.clone(),
                            error: failure.summary,
                        });
                        false
                    }
                    ErrorPolicy::Skip => {
                        tracing::warn!(stage = %stage.name, %event_id, error = %failure.summary, "stage failed on event; passed on unchanged by policy");
                        true
                    }
                }
            });
            stage.metrics.record_outcomes(&tally);
            if let Some(rejected) = rejected {
                return Err(rejected);
            }
        }
        for (i, flowing) in live {
            let event_id = flowing.event.event_id;
            match flowing.finish() {
                Ok(e) => out.kept.push(e),
                Err(message) => {
                    // Which stage broke it is unknown here; the chain as a whole failed.
                    return Err(Rejected {
                        stage: "(chain)".into(),
                        message: format!("event {event_id}: {message}"),
                        index: Some(offset + i),
                        kind: FailureKind::Fault,
                    });
                }
            }
        }
        // Keep input order among kept events across batches (they are appended per batch).
        Ok(())
    }
}

/// What a stage may not do to an event it keeps. Metadata is validated without building a
/// value, and not at all when the stage left it byte-for-byte unchanged.
fn check_keep(before: &WitEvent, after: &WitEvent) -> Result<(), String> {
    if after.event_id != before.event_id {
        return Err("changed event-id".into());
    }
    if let Some(d) = after.decision.as_deref()
        && d != "allow"
        && d != "deny"
    {
        return Err("decision must be allow or deny".into());
    }
    if after.event_type.is_empty() {
        return Err("event-type is empty".into());
    }
    if let Some((field, limit)) = crate::plugin::bindings::oversized_field(after) {
        return Err(format!("{field} is longer than its limit of {limit} bytes"));
    }
    if chrono::DateTime::from_timestamp_micros(after.timestamp_us).is_none() {
        return Err("timestamp-us is out of range".into());
    }
    if after.metadata != before.metadata {
        check_object_text(&after.metadata)?;
    }
    Ok(())
}

/// Per-stage outcome counts of one batch.
#[derive(Debug, Default)]
pub struct Tally {
    pub kept: usize,
    pub dropped: usize,
    pub errors: usize,
    pub quarantined: usize,
}

/// Why a stage failed on one event. `summary` is safe to log and store: it names the stage's
/// failure (trap, timeout, contract breach, or that the plugin reported an error), never the
/// event's contents. What a plugin said in its `error` outcome may quote the event, so it is
/// logged at debug level only.
#[derive(Debug)]
struct Failure {
    summary: String,
    kind: FailureKind,
}

impl Failure {
    fn of(e: &PluginError) -> Failure {
        let kind = match e {
            PluginError::Timeout { timeout_ms, .. } => FailureKind::Timeout {
                timeout_ms: *timeout_ms,
            },
            _ => FailureKind::Fault,
        };
        Failure {
            summary: e.to_string(),
            kind,
        }
    }
}

/// How long one request may spend re-running one stage's failed batches event by event,
/// across all its batches; counted from the first re-run.
struct RerunBudget {
    allowed: Duration,
    deadline: Option<Instant>,
}

impl RerunBudget {
    fn new(allowed: Duration) -> RerunBudget {
        RerunBudget {
            allowed,
            deadline: None,
        }
    }

    /// Start counting (at the first re-run); true while time is left.
    fn left(&mut self) -> bool {
        let deadline = *self.deadline.get_or_insert_with(|| Instant::now() + self.allowed);
        Instant::now() < deadline
    }
}

enum EventResult {
    Keep(Change),
    Drop,
    Failed(Failure),
}

/// A stage's input for one call.
enum StageInput {
    Whole(Vec<WitEvent>),
    Packed(crate::plugin::bindings::PackedEvents),
}

/// A stage's answer to one call.
enum RawOutcomes {
    Whole(Vec<WitOutcome>),
    Packed(Verdicts),
}

impl Stage {
    /// Run the stage on the live events of a batch. When the call itself fails (trap,
    /// timeout, contract breach), re-run the batch event by event — the failed instance is
    /// already discarded, so each retry gets a healthy one — and only the events that fail
    /// alone are failures.
    ///
    /// The re-runs draw on the request's `budget`: once it is spent, the events not yet tried
    /// alone go in one more call together, and if that fails too they all fail as timeouts, so
    /// many slow events cannot each cost a full timeout while one slow event still costs its
    /// batch nothing. Under `reject`, the re-run stops at the first event that fails alone: the
    /// request fails anyway.
    async fn process_isolating(&self, live: &mut [(usize, Flowing)], budget: &mut RerunBudget) -> Vec<EventResult> {
        let input = self.input(live);
        let e = match self.call(&input).await {
            Ok(raw) => return self.results(&input, live, raw),
            Err(e) if live.len() == 1 => return vec![EventResult::Failed(Failure::of(&e))],
            Err(e) => e,
        };
        drop(input);
        tracing::warn!(stage = %self.name, events = live.len(), error = %e, "stage call failed; re-running its batch event by event");
        let mut results = Vec::with_capacity(live.len());
        for i in 0..live.len() {
            if !budget.left() {
                results.extend(self.process_rest(&mut live[i..]).await);
                break;
            }
            let one = &mut live[i..=i];
            let input = self.input(one);
            let result = match self.call(&input).await {
                Ok(raw) => self.results(&input, one, raw).pop().unwrap_or_else(|| {
                    EventResult::Failed(Failure {
                        summary: format!("stage `{}` returned no outcome", self.name),
                        kind: FailureKind::Fault,
                    })
                }),
                Err(e) => EventResult::Failed(Failure::of(&e)),
            };
            let stop = self.on_error == ErrorPolicy::Reject && matches!(result, EventResult::Failed(_));
            results.push(result);
            if stop {
                break;
            }
        }
        results
    }

    /// The events a spent re-run budget did not reach, in one call; if it fails they all fail.
    async fn process_rest(&self, rest: &mut [(usize, Flowing)]) -> Vec<EventResult> {
        let input = self.input(rest);
        match self.call(&input).await {
            Ok(raw) => self.results(&input, rest, raw),
            Err(e) => {
                tracing::warn!(stage = %self.name, events = rest.len(), error = %e, "re-run budget spent and the remaining events failed together");
                rest.iter()
                    .map(|_| {
                        EventResult::Failed(Failure {
                            summary: format!(
                                "stage `{}`: failed together with other events after the request spent its re-run budget ({} ms): {e}",
                                self.name,
                                self.timeout.as_millis() * 2
                            ),
                            kind: Failure::of(&e).kind,
                        })
                    })
                    .collect()
            }
        }
    }

    /// What the plugin is handed for `live`.
    fn input(&self, live: &mut [(usize, Flowing)]) -> StageInput {
        match &self.pool {
            StagePool::Whole(_) => StageInput::Whole(live.iter_mut().map(|(_, f)| f.wit_record()).collect()),
            StagePool::Packed(pool) => StageInput::Packed(pack(live.iter_mut().map(|(_, f)| f), pool.reads())),
        }
    }

    async fn call(&self, input: &StageInput) -> Result<RawOutcomes, PluginError> {
        let started = Instant::now();
        let result = match (&self.pool, input) {
            (StagePool::Whole(pool), StageInput::Whole(events)) => pool.process(events).await.map(RawOutcomes::Whole),
            (StagePool::Packed(pool), StageInput::Packed(events)) => {
                pool.process(events).await.map(RawOutcomes::Packed)
            }
            _ => Err(PluginError::Contract {
                stage: self.name.clone(),
                message: "input of the wrong contract version".into(),
            }),
        };
        let events = match input {
            StageInput::Whole(e) => e.len(),
            StageInput::Packed(p) => p.count as usize,
        };
        self.metrics.record_call(started.elapsed(), events);
        if let Err(e) = &result {
            self.metrics.record_failure(e);
        }
        result
    }

    /// One result per event of a successful call, each checked against the contract.
    fn results(&self, input: &StageInput, live: &[(usize, Flowing)], raw: RawOutcomes) -> Vec<EventResult> {
        match (input, raw) {
            (StageInput::Whole(before), RawOutcomes::Whole(outcomes)) => before
                .iter()
                .zip(outcomes)
                .map(|(before, o)| self.event_result(before, o))
                .collect(),
            (_, RawOutcomes::Packed(verdicts)) => self.verdict_results(live.len(), verdicts),
            _ => live
                .iter()
                .map(|_| {
                    EventResult::Failed(Failure {
                        summary: format!("stage `{}`: answer of the wrong contract version", self.name),
                        kind: FailureKind::Fault,
                    })
                })
                .collect(),
        }
    }

    /// A 1.1 stage's verdicts as one result per event: patches checked, drops and failures.
    fn verdict_results(&self, count: usize, verdicts: Verdicts) -> Vec<EventResult> {
        let mut patches: Vec<Vec<(Patchable, Option<String>)>> = (0..count).map(|_| Vec::new()).collect();
        for p in verdicts.patches {
            patches[p.event as usize].push((p.field, p.value));
        }
        let mut results: Vec<EventResult> = Vec::with_capacity(count);
        for event_patches in patches {
            let checked = event_patches
                .iter()
                .try_for_each(|(field, value)| check_patch(*field, value.as_deref()));
            results.push(match checked {
                Ok(()) => EventResult::Keep(Change::Patches(event_patches)),
                Err(message) => self.contract_breach(message),
            });
        }
        for i in verdicts.dropped {
            results[i as usize] = EventResult::Drop;
        }
        for (i, message) in verdicts.failed {
            tracing::debug!(stage = %self.name, plugin_message = %message, "plugin reported an event error");
            results[i as usize] = EventResult::Failed(Failure {
                summary: format!("stage `{}` reported an error for this event", self.name),
                kind: FailureKind::Reported,
            });
        }
        results
    }

    fn contract_breach(&self, message: String) -> EventResult {
        self.metrics.record_failure(&PluginError::Contract {
            stage: self.name.clone(),
            message: message.clone(),
        });
        EventResult::Failed(Failure {
            summary: format!("stage `{}` broke the contract: {message}", self.name),
            kind: FailureKind::Fault,
        })
    }

    /// One 1.0 outcome, checked against the event the stage was given: a `keep` that breaks
    /// the contract is this stage's failure on this event, so the stage's policy applies to it
    /// alone (not a rejection of the whole request at the end of the chain).
    fn event_result(&self, before: &WitEvent, outcome: WitOutcome) -> EventResult {
        match outcome {
            WitOutcome::Keep(e) => match check_keep(before, &e) {
                Ok(()) => EventResult::Keep(Change::Whole(Box::new(e))),
                Err(message) => self.contract_breach(message),
            },
            WitOutcome::Drop => EventResult::Drop,
            WitOutcome::Error(message) => {
                tracing::debug!(stage = %self.name, plugin_message = %message, "plugin reported an event error");
                EventResult::Failed(Failure {
                    summary: format!("stage `{}` reported an error for this event", self.name),
                    kind: FailureKind::Reported,
                })
            }
        }
    }
}

/// Entry points for the fuzz targets (`fuzz/fuzz_targets/plugin_output.rs`) into the checks
/// this module keeps private: how a stage's answer for one event is checked and lifted back
/// into the chain. Not an API; nothing but `fuzz/` calls it.
#[doc(hidden)]
pub mod fuzzing {
    use super::flowing::{Change, Flowing, check_patch};
    use super::{Patchable, WitEvent, check_keep};
    use crate::event::Event;

    /// Why a stage's answer did not make it into the chain.
    #[derive(Debug)]
    pub enum Refused {
        /// The stage broke the contract: its error policy applies to this event alone.
        Stage(String),
        /// The chain as a whole failed at its end (the request is rejected).
        Chain(String),
    }

    /// The contract 1.0 record a stage is given for `event`.
    pub fn to_wit(event: &Event) -> WitEvent {
        Flowing::new(event.clone()).wit_record()
    }

    /// A 1.0 stage kept `event` and handed back `after`: checked against what it was given,
    /// applied and finished, as the pipeline does.
    pub fn lift_whole(event: Event, after: WitEvent) -> Result<Event, Refused> {
        let mut flowing = Flowing::new(event);
        let before = flowing.wit_record();
        check_keep(&before, &after).map_err(Refused::Stage)?;
        flowing.apply(Change::Whole(Box::new(after)));
        flowing.finish().map_err(Refused::Chain)
    }

    /// A 1.1 stage sent `patches` for `event`: each checked, then applied and finished.
    pub fn lift_patches(event: Event, patches: Vec<(Patchable, Option<String>)>) -> Result<Event, Refused> {
        patches
            .iter()
            .try_for_each(|(field, value)| check_patch(*field, value.as_deref()))
            .map_err(Refused::Stage)?;
        let mut flowing = Flowing::new(event);
        flowing.apply(Change::Patches(patches));
        flowing.finish().map_err(Refused::Chain)
    }
}
