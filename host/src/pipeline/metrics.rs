//! Per-stage counters. Issue 5 exports them to Prometheus; until then they are kept in
//! memory and logged by nobody.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::plugin::PluginError;

#[derive(Debug, Default)]
pub struct StageMetrics {
    pub stage: String,
    pub calls: AtomicU64,
    pub call_micros: AtomicU64,
    pub kept: AtomicU64,
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
    pub quarantined: AtomicU64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
}

impl StageMetrics {
    pub fn new(stage: &str) -> StageMetrics {
        StageMetrics { stage: stage.to_owned(), ..Default::default() }
    }

    pub fn record_call(&self, elapsed: Duration, _events: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.call_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn record_outcomes(&self, tally: &super::Tally) {
        self.kept.fetch_add(tally.kept as u64, Ordering::Relaxed);
        self.dropped.fetch_add(tally.dropped as u64, Ordering::Relaxed);
        self.errors.fetch_add(tally.errors as u64, Ordering::Relaxed);
        self.quarantined.fetch_add(tally.quarantined as u64, Ordering::Relaxed);
    }

    pub fn record_failure(&self, e: &PluginError) {
        match e {
            PluginError::Timeout { .. } => self.timeouts.fetch_add(1, Ordering::Relaxed),
            _ => self.traps.fetch_add(1, Ordering::Relaxed),
        };
    }
}
