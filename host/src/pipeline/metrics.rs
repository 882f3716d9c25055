//! Per-stage metrics: what each stage's plugin calls cost and what the stage did with each
//! event. Every record goes two ways: into in-memory counters (read by `/health/detailed`)
//! and into the Prometheus instruments of [`crate::telemetry::metrics`], labelled with the
//! stage's name and role from the config:
//!
//! - `auditflow_stage_call_duration_seconds{stage, role}`: one sample per plugin call (a batch);
//! - `auditflow_stage_events_total{stage, role, outcome}`: `kept`, `dropped` (on purpose by
//!   the plugin), `error` (the stage failed on the event and its policy is reject, drop or
//!   skip) or `quarantined` (failed, policy quarantine); the four partition the events the
//!   stage finished with;
//! - `auditflow_stage_call_failures_total{stage, role, kind}`: calls that failed as a whole,
//!   `trap`, `timeout` or `contract` (the plugin broke the WIT contract).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;

use crate::config::StageRole;
use crate::plugin::PluginError;
use crate::telemetry::metrics;

/// The `outcome` label values, in [`StageMetrics::outcome_labels`] order.
pub const OUTCOMES: [&str; 4] = ["kept", "dropped", "error", "quarantined"];
/// The `kind` label values, in [`StageMetrics::failure_labels`] order.
pub const FAILURE_KINDS: [&str; 3] = ["trap", "timeout", "contract"];

/// The `role` label value of a stage role.
pub fn role_label(role: StageRole) -> &'static str {
    match role {
        StageRole::Redaction => "redaction",
        StageRole::Enrichment => "enrichment",
        StageRole::Custom => "custom",
    }
}

/// One stage's counters and label sets.
#[derive(Debug)]
pub struct StageMetrics {
    pub stage: String,
    pub role: StageRole,
    /// Plugin calls (batches), failed ones included.
    pub calls: AtomicU64,
    /// Total time spent in plugin calls, in microseconds.
    pub call_micros: AtomicU64,
    /// Events passed on.
    pub kept: AtomicU64,
    /// Events the plugin dropped on purpose.
    pub dropped: AtomicU64,
    /// Events the stage failed on whose policy is reject, drop or skip.
    pub errors: AtomicU64,
    /// Events the stage failed on whose policy is quarantine.
    pub quarantined: AtomicU64,
    /// Calls that trapped.
    pub traps: AtomicU64,
    /// Calls cancelled at `timeout_ms`.
    pub timeouts: AtomicU64,
    /// Calls whose result broke the contract.
    pub contract_breaches: AtomicU64,
    /// `{stage, role}`.
    labels: [KeyValue; 2],
    /// `{stage, role, outcome}` per [`OUTCOMES`].
    outcome_labels: [[KeyValue; 3]; 4],
    /// `{stage, role, kind}` per [`FAILURE_KINDS`].
    failure_labels: [[KeyValue; 3]; 3],
}

impl StageMetrics {
    /// Counters for stage `stage`; creates its outcome and failure series at zero.
    pub fn new(stage: &str, role: StageRole) -> StageMetrics {
        let stage_kv = KeyValue::new("stage", stage.to_owned());
        let role_kv = KeyValue::new("role", role_label(role));
        let with =
            |key: &'static str, value: &'static str| [stage_kv.clone(), role_kv.clone(), KeyValue::new(key, value)];
        let m = StageMetrics {
            stage: stage.to_owned(),
            role,
            calls: AtomicU64::new(0),
            call_micros: AtomicU64::new(0),
            kept: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            quarantined: AtomicU64::new(0),
            traps: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            contract_breaches: AtomicU64::new(0),
            outcome_labels: OUTCOMES.map(|o| with("outcome", o)),
            failure_labels: FAILURE_KINDS.map(|k| with("kind", k)),
            labels: [stage_kv.clone(), role_kv.clone()],
        };
        let instruments = &metrics().stage;
        for labels in &m.outcome_labels {
            instruments.events.add(0, labels);
        }
        for labels in &m.failure_labels {
            instruments.failures.add(0, labels);
        }
        m
    }

    pub fn record_call(&self, elapsed: Duration, _events: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.call_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        metrics()
            .stage
            .call_duration
            .record(elapsed.as_secs_f64(), &self.labels);
    }

    /// `tally.errors` counts every failed event, quarantined ones included; the `error` outcome
    /// is the failed events that were not quarantined.
    pub fn record_outcomes(&self, tally: &super::Tally) {
        let errors = tally.errors.saturating_sub(tally.quarantined);
        let counts = [tally.kept, tally.dropped, errors, tally.quarantined];
        let atomics = [&self.kept, &self.dropped, &self.errors, &self.quarantined];
        let instruments = &metrics().stage;
        for ((n, atomic), labels) in counts.into_iter().zip(atomics).zip(&self.outcome_labels) {
            if n > 0 {
                atomic.fetch_add(n as u64, Ordering::Relaxed);
                instruments.events.add(n as u64, labels);
            }
        }
    }

    pub fn record_failure(&self, e: &PluginError) {
        let (atomic, kind) = match e {
            PluginError::Timeout { .. } => (&self.timeouts, 1),
            PluginError::Contract { .. } => (&self.contract_breaches, 2),
            _ => (&self.traps, 0),
        };
        atomic.fetch_add(1, Ordering::Relaxed);
        metrics().stage.failures.add(1, &self.failure_labels[kind]);
    }

    /// The counters as JSON, for `/health/detailed`.
    pub fn snapshot(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "calls": get(&self.calls),
            "call_seconds_total": get(&self.call_micros) as f64 / 1e6,
            "events": {
                "kept": get(&self.kept),
                "dropped": get(&self.dropped),
                "error": get(&self.errors),
                "quarantined": get(&self.quarantined),
            },
            "call_failures": {
                "trap": get(&self.traps),
                "timeout": get(&self.timeouts),
                "contract": get(&self.contract_breaches),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Tally;

    #[test]
    fn quarantined_events_are_not_also_counted_as_errors() {
        let m = StageMetrics::new("unit-test-stage", StageRole::Custom);
        m.record_outcomes(&Tally {
            kept: 5,
            dropped: 2,
            errors: 3,
            quarantined: 1,
        });
        let s = m.snapshot();
        assert_eq!(
            s["events"],
            serde_json::json!({"kept": 5, "dropped": 2, "error": 2, "quarantined": 1})
        );
        let text = metrics().render().unwrap();
        assert!(
            text.contains(r#"auditflow_stage_events_total{outcome="error",role="custom",stage="unit-test-stage"} 2"#),
            "{text}"
        );
        // Created at zero before anything failed.
        assert!(
            text.contains(
                r#"auditflow_stage_call_failures_total{kind="timeout",role="custom",stage="unit-test-stage"} 0"#
            ),
            "{text}"
        );
    }
}
