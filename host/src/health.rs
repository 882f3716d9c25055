//! Health endpoints, for load balancers, orchestrators and people:
//!
//! - `GET /health`: the process is up and serving HTTP (always 200 while it answers).
//! - `GET /health/ready`: 200 when events can be taken: the store answers its ping within
//!   [`READY_PING_TIMEOUT`], every plugin is initialised, and the server is not draining;
//!   503 otherwise, with the reason. Plugins are initialised before the listener opens (a
//!   stage whose `init` fails stops start-up, and a failed hot reload keeps the old chain),
//!   so a serving process always has them; the answer still names the stage count.
//! - `GET /health/detailed`: JSON for people and dashboards: readiness, build version, the
//!   store (kind, reachable, writer queue), and each stage of the pipeline in service (name,
//!   role, error policy, instances and its counters since it was loaded), and each SIEM sink
//!   (state, breaker, cursor, backlog, counters, last error; see
//!   [`SinkStatus::snapshot`](crate::sink::status::SinkStatus::snapshot)), and the last config
//!   reload ([`Reloads`]: when, whether it was applied or refused, and why). Always 200: the
//!   body says what is wrong.
//!
//! [`Draining`] is the flag the server sets when shutdown begins, so readiness turns 503
//! while in-flight requests finish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::config::ErrorPolicy;
use crate::pipeline::PipelineSlot;
use crate::pipeline::metrics::role_label;
use crate::store::{GroupCommit, Store};

/// How long readiness waits for the store's ping before calling it unreachable.
pub const READY_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Set once shutdown begins; never cleared.
#[derive(Debug, Default)]
pub struct Draining(AtomicBool);

impl Draining {
    pub fn begin(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The outcome of the last config reload (SIGHUP or `POST /admin/reload`), written by the
/// reloader. A refused reload changes nothing in service, so without this it would show only
/// in the log.
#[derive(Debug, Default)]
pub struct Reloads(Mutex<Option<LastReload>>);

#[derive(Debug, Clone)]
struct LastReload {
    at: DateTime<Utc>,
    /// `Err` holds why it was refused (the config error: a key and position, never a secret).
    result: Result<(), String>,
}

impl Reloads {
    pub fn record(&self, result: Result<(), String>) {
        let last = LastReload { at: Utc::now(), result };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(last);
    }

    /// `{"at", "result": "applied" | "refused", "error"}`, or `null` before the first reload.
    pub fn snapshot(&self) -> Value {
        let last = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match last {
            None => Value::Null,
            Some(LastReload { at, result }) => json!({
                "at": at.to_rfc3339_opts(SecondsFormat::Secs, true),
                "result": if result.is_ok() { "applied" } else { "refused" },
                "error": result.err(),
            }),
        }
    }
}

/// What the health routes look at.
pub struct HealthState {
    pub store: Arc<dyn Store>,
    pub pipeline: Arc<PipelineSlot>,
    pub commit: GroupCommit,
    pub draining: Arc<Draining>,
    /// Writer queue size (`storage.queue_capacity`), for `/health/detailed`.
    pub queue_capacity: usize,
    pub started: Instant,
    /// The SIEM sinks' live state.
    pub sinks: Vec<Arc<crate::sink::status::SinkStatus>>,
    /// The last config reload.
    pub reloads: Arc<Reloads>,
}

pub fn router(state: Arc<HealthState>) -> Router {
    Router::new()
        .route("/health", get(live))
        .route("/health/ready", get(ready))
        .route("/health/detailed", get(detailed))
        .with_state(state)
}

async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The store's answer to a ping, bounded by [`READY_PING_TIMEOUT`].
async fn store_reachable(store: &dyn Store) -> Result<(), String> {
    match tokio::time::timeout(READY_PING_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", READY_PING_TIMEOUT.as_millis())),
    }
}

async fn ready(State(state): State<Arc<HealthState>>) -> (StatusCode, Json<Value>) {
    let stages = state.pipeline.current().stages().len();
    if state.draining.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining", "store": "not checked", "stages": stages })),
        );
    }
    match store_reachable(state.store.as_ref()).await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "store": "ok", "stages": stages })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "store": "unreachable", "stages": stages })),
            )
        }
    }
}

async fn detailed(State(state): State<Arc<HealthState>>) -> Json<Value> {
    let reachable = store_reachable(state.store.as_ref()).await;
    let status = match (&reachable, state.draining.is_draining()) {
        (_, true) => "draining",
        (Ok(()), false) => "ready",
        (Err(_), false) => "unavailable",
    };
    let pipeline = state.pipeline.current();
    let stages: Vec<Value> = pipeline
        .stages()
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "role": role_label(s.role),
                "on_error": policy_label(s.on_error),
                "instances": s.instances,
                "metrics": s.metrics().snapshot(),
            })
        })
        .collect();
    Json(json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "store": {
            "kind": state.store.kind(),
            "reachable": reachable.is_ok(),
            "error": reachable.err(),
            "queue_depth": state.commit.queue_depth(),
            "queue_capacity": state.queue_capacity,
        },
        "stages": stages,
        "sinks": state.sinks.iter().map(|s| s.snapshot()).collect::<Vec<_>>(),
        "reload": state.reloads.snapshot(),
    }))
}

fn policy_label(policy: ErrorPolicy) -> &'static str {
    match policy {
        ErrorPolicy::Reject => "reject",
        ErrorPolicy::Drop => "drop",
        ErrorPolicy::Quarantine => "quarantine",
        ErrorPolicy::Skip => "skip",
    }
}
