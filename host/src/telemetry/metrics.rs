//! Every metric auditflow emits: names, types, units, labels and bucket boundaries are decided
//! once, here. `docs/METRICS.md` lists the same set, and `tests/observability.rs` scrapes a
//! running server and fails when the two differ.
//!
//! The instruments are OpenTelemetry instruments on one process-wide meter provider whose only
//! reader is the Prometheus exporter (`opentelemetry-prometheus`, which fills a `prometheus`
//! crate registry); `GET /metrics` encodes that registry as Prometheus text. The exporter is
//! told not to rewrite names, so the names below are exactly what Prometheus sees: they carry
//! their unit (`_seconds`, `_bytes`) and counters their `_total` themselves, and no
//! `otel_scope_*` labels or `target_info` family are added.
//!
//! Labels are bounded sets only: route templates, status codes, stage names and roles from the
//! config, fixed outcome/kind/reason/result sets, `decision` (`allow`, `deny`, `none`) and
//! `event_type`, whose values come from the operator's allow-list `[telemetry]
//! event_type_labels` (every other type is counted as `other`). No user, request or event id
//! and no event content is ever a label.
//!
//! Series whose label sets are known up front (per-stage outcomes and failure kinds, auth
//! failure reasons, store results and errors) are created at zero, so `rate()` and alert rules
//! see them before the first occurrence.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, MeterProvider, UpDownCounter};
use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::event::{Decision, Event};

/// The `event_type` label value for every type not on the allow-list.
pub const OTHER_EVENT_TYPE: &str = "other";

/// Seconds, for request and ack latency: 1 ms … 10 s.
const HTTP_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Seconds, for plugin calls: 100 µs … 5 s (a call past its `timeout_ms` is cancelled).
const STAGE_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Seconds, for store commits (one fsync each): 500 µs … 5 s.
const COMMIT_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Events in one commit: 1 … 10 000.
const COMMIT_EVENTS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];
/// Request body sizes: 256 B … 16 MiB, ×4.
const BODY_BYTES: &[f64] = &[
    256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// The metrics registry and every instrument. One per process: see [`metrics`].
pub struct Metrics {
    registry: prometheus::Registry,
    /// Kept alive: dropping the last provider handle shuts the pipeline down.
    _provider: SdkMeterProvider,
    pub http: HttpMetrics,
    pub ingest: IngestMetrics,
    pub stage: StageInstruments,
    pub store: StoreMetrics,
    pub sink: SinkInstruments,
    pub server: ServerMetrics,
}

/// The process-wide metrics, created on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_units()
            .without_counter_suffixes()
            .without_target_info()
            .scope_info_enabled(false)
            .build();
        let provider = match exporter {
            Ok(exporter) => SdkMeterProvider::builder().with_reader(exporter).build(),
            Err(e) => {
                // Only a name clash inside our own fresh registry can get here; run without
                // metrics rather than refuse to serve audit events.
                tracing::error!(error = %e, "cannot set up the Prometheus exporter; /metrics stays empty");
                SdkMeterProvider::builder().build()
            }
        };
        let meter = provider.meter("auditflow");
        let build_info = meter
            .u64_gauge("auditflow_build_info")
            .with_description("Always 1; the `version` label is the running auditflow version.")
            .build();
        build_info.record(1, &[KeyValue::new("version", env!("CARGO_PKG_VERSION"))]);
        Metrics {
            http: HttpMetrics::new(&meter),
            ingest: IngestMetrics::new(&meter),
            stage: StageInstruments::new(&meter),
            store: StoreMetrics::new(&meter),
            sink: SinkInstruments::new(&meter),
            server: ServerMetrics::new(&meter),
            registry,
            _provider: provider,
        }
    }

    /// Apply the `[telemetry]` settings that shape labels.
    /// The `event_type` values counted under their own label (`[telemetry]
    /// event_type_labels`); replaces the previous list.
    pub fn configure(&self, event_type_labels: &[String]) {
        self.ingest.event_types.allow(event_type_labels);
    }

    /// Everything, as Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

fn seconds_histogram(meter: &Meter, name: &'static str, description: &'static str, bounds: &[f64]) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_description(description)
        .with_unit("s")
        .with_boundaries(bounds.to_vec())
        .build()
}

fn counter(meter: &Meter, name: &'static str, description: &'static str) -> Counter<u64> {
    meter.u64_counter(name).with_description(description).build()
}

/// Every HTTP request, recorded by the request layer ([`super::http`]).
pub struct HttpMetrics {
    requests: Counter<u64>,
    duration: Histogram<f64>,
}

impl HttpMetrics {
    fn new(meter: &Meter) -> HttpMetrics {
        HttpMetrics {
            requests: counter(
                meter,
                "auditflow_http_requests_total",
                "HTTP requests answered, by route template and status code.",
            ),
            duration: seconds_histogram(
                meter,
                "auditflow_http_request_duration_seconds",
                "Time from receiving a request to sending its response (for ingest routes with a 2xx status: the ack latency, commit included).",
                HTTP_SECONDS,
            ),
        }
    }

    /// One answered request. `route` is the matched route template (or `unmatched`).
    pub fn record(&self, route: &str, status: u16, elapsed: Duration) {
        let route = KeyValue::new("route", route.to_owned());
        self.requests
            .add(1, &[route.clone(), KeyValue::new("status", status.to_string())]);
        self.duration.record(
            elapsed.as_secs_f64(),
            &[route, KeyValue::new("status_class", status_class(status))],
        );
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Why an ingest request failed authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token was presented.
    Missing,
    /// A token was presented and matched none.
    Invalid,
}

impl AuthFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
        }
    }
}

/// What ingest sees: bodies, events, auth failures.
pub struct IngestMetrics {
    body_bytes: Histogram<u64>,
    events: Counter<u64>,
    auth_failures: Counter<u64>,
    connections_closed: Counter<u64>,
    event_types: EventTypeLabels,
}

/// Why the server closed a connection before or between requests (the `reason` label of
/// `auditflow_connections_closed_total`).
const CONNECTION_CLOSE_REASONS: [&str; 3] = ["limit", "timeout", "tls_handshake"];

impl IngestMetrics {
    fn new(meter: &Meter) -> IngestMetrics {
        IngestMetrics {
            body_bytes: meter
                .u64_histogram("auditflow_ingest_request_body_bytes")
                .with_description(
                    "Size of ingest request bodies as sent (compressed, if gzip), for bodies read in full.",
                )
                .with_unit("By")
                .with_boundaries(BODY_BYTES.to_vec())
                .build(),
            events: counter(
                meter,
                "auditflow_ingest_events_total",
                "Events received in authenticated, well-formed ingest requests, before the pipeline; by route, event_type (capped) and decision.",
            ),
            auth_failures: counter(
                meter,
                "auditflow_ingest_auth_failures_total",
                "Ingest requests refused with 401, by route and reason (missing or invalid token).",
            ),
            connections_closed: counter(
                meter,
                "auditflow_connections_closed_total",
                "Connections the server closed on its own, by reason: limit (server.max_connections reached), timeout (no request head within server.header_timeout_ms, or idle past server.idle_timeout_ms), tls_handshake (failed or timed out).",
            ),
            event_types: EventTypeLabels::default(),
        }
    }

    /// Create the auth-failure series of an ingest route at zero.
    pub fn init_route(&self, route: &'static str) {
        for reason in [AuthFailure::Missing, AuthFailure::Invalid] {
            self.auth_failures.add(
                0,
                &[KeyValue::new("route", route), KeyValue::new("reason", reason.as_str())],
            );
        }
    }

    /// Create the connection series at zero.
    pub fn init_connections(&self) {
        for reason in CONNECTION_CLOSE_REASONS {
            self.connections_closed.add(0, &[KeyValue::new("reason", reason)]);
        }
    }

    /// A connection refused because `server.max_connections` are open.
    pub fn connection_refused(&self) {
        self.connections_closed.add(1, &[KeyValue::new("reason", "limit")]);
    }

    /// A connection closed for sending nothing in time.
    pub fn connection_timed_out(&self) {
        self.connections_closed.add(1, &[KeyValue::new("reason", "timeout")]);
    }

    /// A TLS handshake that failed or timed out.
    pub fn tls_handshake_failed(&self) {
        self.connections_closed
            .add(1, &[KeyValue::new("reason", "tls_handshake")]);
    }

    pub fn auth_failed(&self, route: &'static str, reason: AuthFailure) {
        self.auth_failures.add(
            1,
            &[KeyValue::new("route", route), KeyValue::new("reason", reason.as_str())],
        );
    }

    pub fn body_received(&self, route: &'static str, bytes: usize) {
        self.body_bytes.record(bytes as u64, &[KeyValue::new("route", route)]);
    }

    /// Count a request's events by (bounded) event type and decision.
    pub fn events_received(&self, route: &'static str, events: &[Event]) {
        let mut counts: HashMap<(&str, &'static str), u64> = HashMap::new();
        for e in events {
            *counts
                .entry((e.event_type.as_str(), decision_label(e.decision)))
                .or_default() += 1;
        }
        for ((event_type, decision), n) in counts {
            self.events.add(
                n,
                &[
                    KeyValue::new("route", route),
                    KeyValue::new("event_type", self.event_types.label(event_type)),
                    KeyValue::new("decision", decision),
                ],
            );
        }
    }
}

fn decision_label(decision: Option<Decision>) -> &'static str {
    decision.map_or("none", Decision::as_str)
}

/// The `event_type` label: only values on the operator's allow-list get their own series;
/// every other value, whatever it looks like, is counted as [`OTHER_EVENT_TYPE`]. A sender
/// therefore cannot put event contents into a label, nor use up the label space.
#[derive(Default)]
struct EventTypeLabels {
    allowed: RwLock<HashSet<Arc<str>>>,
}

static OTHER: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(OTHER_EVENT_TYPE));

impl EventTypeLabels {
    fn allow(&self, values: &[String]) {
        *self.allowed.write().unwrap_or_else(PoisonError::into_inner) =
            values.iter().map(|v| Arc::from(v.as_str())).collect();
    }

    fn label(&self, event_type: &str) -> Arc<str> {
        match self
            .allowed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(event_type)
        {
            Some(v) => v.clone(),
            None => OTHER.clone(),
        }
    }
}

/// The per-stage instruments. Each stage records through its own
/// [`StageMetrics`](crate::pipeline::StageMetrics), which holds the stage's label values.
pub struct StageInstruments {
    pub call_duration: Histogram<f64>,
    pub events: Counter<u64>,
    pub failures: Counter<u64>,
}

impl StageInstruments {
    fn new(meter: &Meter) -> StageInstruments {
        StageInstruments {
            call_duration: seconds_histogram(
                meter,
                "auditflow_stage_call_duration_seconds",
                "Duration of one plugin call (a batch of events), failed calls included, by stage and role.",
                STAGE_SECONDS,
            ),
            events: counter(
                meter,
                "auditflow_stage_events_total",
                "Events a stage finished with, by stage, role and outcome (kept, dropped, error, quarantined).",
            ),
            failures: counter(
                meter,
                "auditflow_stage_call_failures_total",
                "Plugin calls that failed as a whole, by stage, role and kind (trap, timeout, contract); the instance is replaced.",
            ),
        }
    }
}

/// The store writer: commits, their size and duration, results, queue.
pub struct StoreMetrics {
    commit_duration: Histogram<f64>,
    commit_events: Histogram<u64>,
    commit_errors: Counter<u64>,
    events: Counter<u64>,
    queue_depth: UpDownCounter<i64>,
    queue_capacity: Gauge<u64>,
}

impl StoreMetrics {
    fn new(meter: &Meter) -> StoreMetrics {
        let m = StoreMetrics {
            commit_duration: seconds_histogram(
                meter,
                "auditflow_store_commit_duration_seconds",
                "Duration of one successful group commit (one transaction, one fsync).",
                COMMIT_SECONDS,
            ),
            commit_events: meter
                .u64_histogram("auditflow_store_commit_events")
                .with_description("Events in one successful group commit.")
                .with_unit("{event}")
                .with_boundaries(COMMIT_EVENTS.to_vec())
                .build(),
            commit_errors: counter(
                meter,
                "auditflow_store_commit_errors_total",
                "Group commits that failed; every request in them was refused (503) and nothing of them was stored.",
            ),
            events: counter(
                meter,
                "auditflow_store_events_total",
                "Events the store writer finished with, by result: stored (new), duplicate (event_id already stored) or rejected (refused by the database for their content; their request got 422).",
            ),
            queue_depth: meter
                .i64_up_down_counter("auditflow_store_queue_depth")
                .with_description(
                    "Events accepted by the store writer and not yet answered (queued or being committed).",
                )
                .with_unit("{event}")
                .build(),
            queue_capacity: meter
                .u64_gauge("auditflow_store_queue_capacity")
                .with_description("Most events the store writer holds; beyond it ingest answers 503.")
                .with_unit("{event}")
                .build(),
        };
        m.commit_errors.add(0, &[]);
        for result in ["stored", "duplicate", "rejected"] {
            m.events.add(0, &[KeyValue::new("result", result)]);
        }
        m.queue_depth.add(0, &[]);
        m
    }

    /// A writer started with this queue capacity.
    pub fn writer_started(&self, capacity: usize) {
        self.queue_capacity.record(capacity as u64, &[]);
    }

    pub fn committed(&self, elapsed: Duration, stored: usize, duplicates: usize) {
        self.commit_duration.record(elapsed.as_secs_f64(), &[]);
        self.commit_events.record((stored + duplicates) as u64, &[]);
        self.events.add(stored as u64, &[KeyValue::new("result", "stored")]);
        self.events
            .add(duplicates as u64, &[KeyValue::new("result", "duplicate")]);
    }

    pub fn commit_failed(&self) {
        self.commit_errors.add(1, &[]);
    }

    /// `events` of one request the store refused for their content (committed apart from their
    /// group; not stored).
    pub fn rejected(&self, events: usize) {
        self.events.add(events as u64, &[KeyValue::new("result", "rejected")]);
    }

    /// `delta` events entered (positive) or left (negative) the writer's queue.
    pub fn queue_changed(&self, delta: i64) {
        self.queue_depth.add(delta, &[]);
    }
}

/// Seconds, for requests to a SIEM: 5 ms … 30 s (the default request timeout).
const SINK_SECONDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The SIEM sinks' instruments; each sink records through
/// [`SinkMetrics`](crate::sink::metrics::SinkMetrics), which holds its `sink` label and creates
/// its series at zero when the sink starts.
pub struct SinkInstruments {
    pub events_sent: Counter<u64>,
    pub requests: Counter<u64>,
    pub request_duration: Histogram<f64>,
    pub retries: Counter<u64>,
    pub backlog: Gauge<u64>,
    pub breaker_state: Gauge<u64>,
    pub dead_letters: Counter<u64>,
    pub stopped: Gauge<u64>,
    pub active: Gauge<u64>,
}

impl SinkInstruments {
    fn new(meter: &Meter) -> SinkInstruments {
        SinkInstruments {
            events_sent: counter(
                meter,
                "auditflow_sink_events_sent_total",
                "Events delivered to the SIEM (the destination accepted, or with Splunk indexer ack: acknowledged, the request carrying them), by sink.",
            ),
            requests: counter(
                meter,
                "auditflow_sink_requests_total",
                "Requests sent to the SIEM, by sink and answer: 2xx, 3xx, 4xx, 5xx or network (no answer).",
            ),
            request_duration: seconds_histogram(
                meter,
                "auditflow_sink_request_duration_seconds",
                "Duration of one request to the SIEM, failed ones included, by sink.",
                SINK_SECONDS,
            ),
            retries: counter(
                meter,
                "auditflow_sink_retries_total",
                "Requests retried after a network error, 408, 429, 5xx or a missing indexer acknowledgement, by sink.",
            ),
            backlog: meter
                .u64_gauge("auditflow_sink_backlog_events")
                .with_description("Committed events behind the sink's cursor (not yet delivered), by sink.")
                .with_unit("{event}")
                .build(),
            breaker_state: meter
                .u64_gauge("auditflow_sink_breaker_state")
                .with_description("The sink's circuit breaker: 0 closed, 1 half-open, 2 open.")
                .build(),
            dead_letters: counter(
                meter,
                "auditflow_sink_dead_letters_total",
                "Events parked in the dead-letter table because the destination refused them (or the formatter failed), by sink.",
            ),
            stopped: meter
                .u64_gauge("auditflow_sink_stopped")
                .with_description(
                    "1 while the sink is stopped because the destination refused its credentials (401/403), else 0.",
                )
                .build(),
            active: meter
                .u64_gauge("auditflow_sink_active")
                .with_description(
                    "1 while this process drives the sink (holds its lease), 0 while another replica does.",
                )
                .build(),
        }
    }
}

/// The server as a whole: config reloads.
pub struct ServerMetrics {
    reloads: Counter<u64>,
}

impl ServerMetrics {
    fn new(meter: &Meter) -> ServerMetrics {
        let m = ServerMetrics {
            reloads: counter(
                meter,
                "auditflow_reloads_total",
                "Config reloads (SIGHUP or POST /admin/reload), by result: applied, or refused (the config did not load and everything in service was kept; /health/detailed says why).",
            ),
        };
        // Both series exist from the start, so an alert on refusals has a zero to rise from.
        for result in ["applied", "refused"] {
            m.reloads.add(0, &[KeyValue::new("result", result)]);
        }
        m
    }

    pub fn reloaded(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.reloads.add(1, &[KeyValue::new("result", result)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allow_listed_event_types_become_labels() {
        let labels = EventTypeLabels::default();
        labels.allow(&["tool_invoke".into(), "discovery".into()]);
        assert_eq!(&*labels.label("tool_invoke"), "tool_invoke");
        assert_eq!(&*labels.label("discovery"), "discovery");
        // Anything else, however name-like, is `other`: a secret sent as an event type never
        // becomes a label, and the first values seen cannot use up the label space.
        assert_eq!(&*labels.label("sk_live_51HkQ2eLx0TESTSECRET"), OTHER_EVENT_TYPE);
        assert_eq!(&*labels.label("a2a_communication"), OTHER_EVENT_TYPE);
        assert_eq!(&*labels.label(""), OTHER_EVENT_TYPE);
        labels.allow(&[]);
        assert_eq!(&*labels.label("tool_invoke"), OTHER_EVENT_TYPE);
    }

    #[test]
    fn rendered_names_are_the_instrument_names() {
        let m = metrics();
        m.http.record("/test-route", 200, Duration::from_millis(3));
        m.store.committed(Duration::from_millis(2), 3, 1);
        let text = m.render().expect("render");
        assert!(text.contains("# TYPE auditflow_http_requests_total counter"), "{text}");
        assert!(
            text.contains("# TYPE auditflow_http_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(text.contains("auditflow_build_info{version=\""), "{text}");
        assert!(
            text.contains("auditflow_store_events_total{result=\"duplicate\"}"),
            "{text}"
        );
        assert!(!text.contains("otel_scope"), "{text}");
        assert!(!text.contains("target_info"), "{text}");
        // The configured buckets, not the SDK's defaults.
        assert!(text.contains("auditflow_http_request_duration_seconds_bucket{route=\"/test-route\",status_class=\"2xx\",le=\"0.0025\"}"), "{text}");
    }
}
