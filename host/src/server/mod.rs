//! Wires a config into a running server: store, group commit, plugin engine, pipeline, routes;
//! and shuts it down gracefully (stop accepting, finish in-flight requests, flush the writer).
//!
//! - [`listener`]: accepting connections (TCP, TLS, HTTP/1.1 and HTTP/2) with their limits.
//! - [`tls`]: HTTPS certificates and mutual TLS identities.
//! - [`reload`]: hot reload of the pipeline, credentials and certificates.

pub mod listener;
pub mod reload;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

use crate::config::Config;
use crate::health::{self, Draining, HealthState, Reloads};
use crate::ingest::{self, IngestState, auth};
use crate::pipeline::{BuildError, Pipeline, PipelineSlot};
use crate::plugin::{PluginEngine, PluginError};
use crate::shutdown::Shutdown;
use crate::sink::{SinkError, SinkSet};
use crate::slot::Slot;
use crate::store::{self, GroupCommit, GroupCommitConfig, Store, StoreError};
use crate::telemetry;
use crate::telemetry::http::{metrics_handler, observe};
use listener::ConnectionLimits;
use reload::{Reloadable, Reloader};
use tls::TlsListener;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("auth: {0}")]
    Auth(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("plugins: {0}")]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Pipeline(#[from] BuildError),
    #[error("sinks: {0}")]
    Sink(#[from] SinkError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Resolve `sqlite://relative/path` against the config file's directory, so a config runs the
/// same from any working directory.
pub fn storage_url(config: &Config) -> String {
    let url = &config.storage.url;
    for prefix in ["sqlite://", "sqlite:"] {
        if let Some(path) = url.strip_prefix(prefix) {
            if path.starts_with(':') || path.starts_with('/') {
                return url.clone();
            }
            let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
            let resolved = config.resolve_path(std::path::Path::new(path));
            return match query {
                Some(q) => format!("sqlite://{}?{q}", resolved.display()),
                None => format!("sqlite://{}", resolved.display()),
            };
        }
    }
    url.clone()
}

/// Everything a running server holds.
pub struct Server {
    pub router: Router,
    pub store: Arc<dyn Store>,
    commit: GroupCommit,
    writer: tokio::task::JoinHandle<()>,
    /// Present when the server was built from a config file it can re-read.
    reloader: Option<Arc<Reloader>>,
    /// `/metrics` on its own listener (`telemetry.metrics_listen`): (address, routes).
    metrics_router: Option<(String, Router)>,
    /// HTTPS on the ingest listener (`server.tls`) and on the metrics listener
    /// (`telemetry.tls`).
    tls: Option<Arc<TlsListener>>,
    metrics_tls: Option<Arc<TlsListener>>,
    /// Connection bounds (`server.header_timeout_ms`, `idle_timeout_ms`, `max_connections`).
    limits: ConnectionLimits,
    /// Set when shutdown begins: `/health/ready` answers 503 from then on.
    draining: Arc<Draining>,
    /// How long to keep serving after shutdown begins (`server.shutdown_drain_ms`).
    drain: Duration,
    /// The SIEM sinks, started with the listener and stopped after the writer drained.
    sinks: SinkSet,
}

/// How long stopping waits for a sink's request in flight before abandoning it (its batch is
/// then resent after the restart).
const SINK_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Server {
    /// Build every component from the config. Fails before listening if anything is wrong.
    /// With `config_path`, the pipeline can be reloaded from that file (SIGHUP, admin route).
    pub async fn build(config: &Config, config_path: Option<&std::path::Path>) -> Result<Server, ServerError> {
        let auth = Arc::new(Slot::new(auth::Auth::load(config).map_err(ServerError::Auth)?));
        let tls = load_tls("server.tls", config.server.tls.as_ref(), config)?;
        let metrics_tls = load_tls("telemetry.tls", config.telemetry.tls.as_ref(), config)?;
        let store = store::open(&storage_url(config)).await?;
        let engine = PluginEngine::for_config(config)?;
        let pipeline = Arc::new(PipelineSlot::new(Pipeline::build(config, &engine).await?));
        let reloads = Arc::new(Reloads::default());
        let reloader = config_path.map(|p| {
            let target = Reloadable {
                pipeline: pipeline.clone(),
                auth: auth.clone(),
                tls: tls.clone(),
                metrics_tls: metrics_tls.clone(),
            };
            Arc::new(Reloader::new(p.to_owned(), config.clone(), target, reloads.clone()))
        });
        let admin_token = reload::admin_token(config).map_err(ServerError::Auth)?;
        let (commit, writer) = GroupCommit::start(
            store.clone(),
            GroupCommitConfig {
                queue_capacity: config.storage.queue_capacity,
                max_batch_events: config.storage.max_batch_events,
                max_wait: Duration::from_millis(config.storage.max_wait_ms),
            },
        );
        let ingest_state = Arc::new(IngestState {
            auth,
            limits: config.server.limits.clone(),
            pipeline,
            commit: commit.clone(),
            store: store.clone(),
            budget: ingest::intake::BodyBudget::new(config.server.limits.max_in_flight_body_bytes),
        });
        let draining = Arc::new(Draining::default());
        let sinks = SinkSet::build(config, &engine).await?;
        let health_state = Arc::new(HealthState {
            store: store.clone(),
            pipeline: ingest_state.pipeline.clone(),
            commit: commit.clone(),
            draining: draining.clone(),
            queue_capacity: config.storage.queue_capacity,
            started: Instant::now(),
            sinks: sinks.statuses(),
            reloads,
        });
        telemetry::metrics().configure(&config.telemetry.event_type_labels);
        if config.telemetry.event_type_label_limit.is_some() {
            tracing::warn!(
                "telemetry.event_type_label_limit is ignored: list the event types to count under their own label in telemetry.event_type_labels"
            );
        }
        telemetry::metrics().ingest.init_route(ingest::EVENTS_ROUTE);
        telemetry::metrics().ingest.init_route(ingest::SARK_ROUTE);
        telemetry::metrics().ingest.init_connections();
        let router = Router::new()
            .route(ingest::EVENTS_ROUTE, post(ingest::post_events))
            .route(ingest::SARK_ROUTE, post(ingest::post_sark))
            // Ingest enforces its own, configurable body limit with a JSON 413.
            .layer(DefaultBodyLimit::disable())
            .with_state(ingest_state)
            .merge(health::router(health_state.clone()));
        let router = match (&reloader, admin_token) {
            (Some(r), Some(token)) => router.merge(reload::admin_router(r.clone(), &token)),
            _ => router,
        };
        let (router, metrics_router) = observed(config, router, health_state);
        let drain = Duration::from_millis(config.server.shutdown_drain_ms);
        let limits = ConnectionLimits {
            header_timeout: Duration::from_millis(config.server.header_timeout_ms),
            idle_timeout: Duration::from_millis(config.server.idle_timeout_ms),
            max_connections: config.server.max_connections,
        };
        Ok(Server {
            router,
            store,
            commit,
            writer,
            reloader,
            metrics_router,
            tls,
            metrics_tls,
            limits,
            draining,
            drain,
            sinks,
        })
    }

    /// Listen until `shutdown` resolves, then finish in-flight requests and flush the writer.
    pub async fn run(self, addr: &str, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let listener = bind(addr, self.tls.is_some()).await?;
        tracing::info!(local = %listener.local_addr()?, store = self.store.kind(), tls = self.tls.is_some(), "auditflow listening");
        let Server {
            router,
            store,
            commit,
            writer,
            reloader,
            metrics_router,
            tls,
            metrics_tls,
            limits,
            draining,
            drain,
            sinks,
        } = self;
        let metrics_server = match metrics_router {
            Some((addr, routes)) => {
                let listener = bind(&addr, metrics_tls.is_some()).await?;
                tracing::info!(local = %listener.local_addr()?, tls = metrics_tls.is_some(), "metrics listening");
                Some((listener, routes))
            }
            None => None,
        };
        let sighup = reloader.map(|r| tokio::spawn(reload::on_sighup(r)));
        let running_sinks = sinks.start(store);
        let stop = drain_then_stop(shutdown, draining, drain);
        let metrics_task = metrics_server.map(|(listener, routes)| {
            tokio::spawn(listener::serve(listener, routes, metrics_tls, limits, stop.clone()))
        });
        listener::serve(listener, router, tls, limits, stop).await;
        if let Some(task) = sighup {
            task.abort();
        }
        if let Some(task) = metrics_task
            && task.await.is_err()
        {
            tracing::error!("metrics listener panicked");
        }
        // The router (and its clones of the commit handle) is gone: closing ours lets the
        // writer drain what is queued and exit.
        drop(commit);
        if writer.await.is_err() {
            tracing::error!("store writer task panicked during shutdown");
        }
        // After the writer: sinks may still forward what the last commits stored.
        running_sinks.shutdown(SINK_SHUTDOWN_GRACE).await;
        tracing::info!("auditflow stopped");
        Ok(())
    }
}

/// The TLS side of a listener whose config has a `tls` table.
fn load_tls(
    key: &'static str,
    tls: Option<&crate::config::TlsConfig>,
    config: &Config,
) -> Result<Option<Arc<TlsListener>>, ServerError> {
    tls.map(|t| TlsListener::load(key, t, config).map(Arc::new))
        .transpose()
        .map_err(ServerError::Tls)
}

/// Bind `addr`; warn when plain HTTP is served beyond loopback, where tokens and unredacted
/// events would cross the network in clear.
async fn bind(addr: &str, tls: bool) -> Result<tokio::net::TcpListener, ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen {
            addr: addr.to_owned(),
            source,
        })?;
    let local: SocketAddr = listener.local_addr()?;
    if !tls && !local.ip().is_loopback() {
        tracing::warn!(
            %local,
            "serving plain HTTP on a non-loopback address: tokens and events cross the network unencrypted; configure [server.tls] (or [telemetry.tls])"
        );
    }
    Ok(listener)
}

/// Mount `/metrics` (on the main routes, or on routes of its own for
/// `telemetry.metrics_listen`, together with the health routes) and put every route behind the
/// request layer: request id, span, HTTP metrics.
fn observed(config: &Config, router: Router, health: Arc<HealthState>) -> (Router, Option<(String, Router)>) {
    let layer = middleware::from_fn(observe);
    match &config.telemetry.metrics_listen {
        None => (router.route("/metrics", get(metrics_handler)).layer(layer), None),
        Some(addr) => {
            let metrics = Router::new()
                .route("/metrics", get(metrics_handler))
                .merge(health::router(health));
            (router.layer(layer.clone()), Some((addr.clone(), metrics.layer(layer))))
        }
    }
}

/// When `shutdown` resolves: mark the server draining (readiness 503), keep serving for
/// `drain`, then tell the listeners to stop.
fn drain_then_stop(
    shutdown: impl Future<Output = ()> + Send + 'static,
    draining: Arc<Draining>,
    drain: Duration,
) -> Shutdown {
    let (trigger, stop) = Shutdown::new();
    tokio::spawn(async move {
        shutdown.await;
        draining.begin();
        if !drain.is_zero() {
            tracing::info!(
                drain_ms = drain.as_millis() as u64,
                "draining: /health/ready answers 503 while still serving"
            );
            tokio::time::sleep(drain).await;
        }
        trigger.fire();
        // Keep the trigger until every listener has seen the signal.
        trigger.closed().await;
    });
    stop
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
