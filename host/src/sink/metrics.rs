//! One sink's metrics: the instruments of [`crate::telemetry::metrics`] with this sink's
//! `sink` label (its name from the config; bounded, never event data). Every series the sink
//! emits is created when it starts (counters at zero, gauges at their initial value), so
//! `rate()` and alert rules see a sink before its first request.
//!
//! - `auditflow_sink_events_sent_total{sink}`, `auditflow_sink_retries_total{sink}`,
//!   `auditflow_sink_dead_letters_total{sink}`
//! - `auditflow_sink_requests_total{sink, status_class}`: `2xx` … `5xx`, or `network`
//! - `auditflow_sink_request_duration_seconds{sink}`
//! - `auditflow_sink_backlog_events{sink}`, `auditflow_sink_breaker_state{sink}` (0 closed,
//!   1 half-open, 2 open), `auditflow_sink_stopped{sink}` (1 after a 401/403: alert on it),
//!   `auditflow_sink_active{sink}` (1 while this replica drives the sink)

use std::time::Duration;

use opentelemetry::KeyValue;

use super::breaker::BreakerState;
use super::transport::Attempt;
use crate::telemetry::metrics;

/// The `status_class` values.
pub const STATUS_CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "network"];

#[derive(Debug)]
pub struct SinkMetrics {
    sink: [KeyValue; 1],
    by_class: [[KeyValue; 2]; 5],
}

impl SinkMetrics {
    pub fn new(sink: &str) -> SinkMetrics {
        let kv = KeyValue::new("sink", sink.to_owned());
        let m = SinkMetrics {
            by_class: STATUS_CLASSES.map(|c| [kv.clone(), KeyValue::new("status_class", c)]),
            sink: [kv],
        };
        let i = &metrics().sink;
        i.events_sent.add(0, &m.sink);
        i.retries.add(0, &m.sink);
        i.dead_letters.add(0, &m.sink);
        for labels in &m.by_class {
            i.requests.add(0, labels);
        }
        i.backlog.record(0, &m.sink);
        i.breaker_state.record(0, &m.sink);
        i.stopped.record(0, &m.sink);
        i.active.record(0, &m.sink);
        m
    }

    pub fn sent(&self, n: usize) {
        metrics().sink.events_sent.add(n as u64, &self.sink);
    }

    pub fn request(&self, attempt: &Attempt, elapsed: Duration) {
        let class = match attempt {
            Err(_) => 4,
            Ok(r) => match r.status {
                200..=299 => 0,
                300..=399 => 1,
                400..=499 => 2,
                _ => 3,
            },
        };
        let i = &metrics().sink;
        i.requests.add(1, &self.by_class[class]);
        i.request_duration.record(elapsed.as_secs_f64(), &self.sink);
    }

    pub fn retried(&self) {
        metrics().sink.retries.add(1, &self.sink);
    }

    pub fn dead_lettered(&self, n: usize) {
        metrics().sink.dead_letters.add(n as u64, &self.sink);
    }

    pub fn backlog(&self, events: i64) {
        metrics().sink.backlog.record(events.max(0) as u64, &self.sink);
    }

    pub fn breaker(&self, state: BreakerState) {
        metrics().sink.breaker_state.record(state as u64, &self.sink);
    }

    pub fn stopped(&self, stopped: bool) {
        metrics().sink.stopped.record(u64::from(stopped), &self.sink);
    }

    pub fn active(&self, active: bool) {
        metrics().sink.active.record(u64::from(active), &self.sink);
    }
}
