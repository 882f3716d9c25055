//! Wires a config into a running server: store, group commit, plugin engine, pipeline, routes;
//! and shuts it down gracefully (stop accepting, finish in-flight requests, flush the writer).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;

use crate::config::Config;
use crate::health::{self, HealthState};
use crate::ingest::{self, IngestState, auth};
use crate::pipeline::{BuildError, Pipeline};
use crate::plugin::{PluginEngine, PluginError};
use crate::store::{self, GroupCommit, GroupCommitConfig, Store, StoreError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("auth: {0}")]
    Auth(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("plugins: {0}")]
    Plugin(#[from] PluginError),
    #[error("{0}")]
    Pipeline(#[from] BuildError),
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
}

impl Server {
    /// Build every component from the config. Fails before listening if anything is wrong.
    pub async fn build(config: &Config) -> Result<Server, ServerError> {
        let tokens = auth::load(&config.auth.tokens, &config.base_dir).map_err(ServerError::Auth)?;
        let store = store::open(&storage_url(config)).await?;
        let engine = PluginEngine::for_config(config)?;
        let pipeline = Arc::new(Pipeline::build(config, &engine).await?);
        let (commit, writer) = GroupCommit::start(
            store.clone(),
            GroupCommitConfig {
                queue_capacity: config.storage.queue_capacity,
                max_batch_events: config.storage.max_batch_events,
                max_wait: Duration::from_millis(config.storage.max_wait_ms),
            },
        );
        let ingest_state = Arc::new(IngestState {
            tokens,
            limits: config.server.limits.clone(),
            pipeline,
            commit: commit.clone(),
        });
        let health_state = Arc::new(HealthState { store: store.clone() });
        let router = Router::new()
            .route("/v1/events", post(ingest::post_events))
            .route("/api/v1/gateway/audit", post(ingest::post_sark))
            // Ingest enforces its own, configurable body limit with a JSON 413.
            .layer(DefaultBodyLimit::disable())
            .with_state(ingest_state)
            .merge(health::router(health_state));
        Ok(Server { router, store, commit, writer })
    }

    /// Listen until `shutdown` resolves, then finish in-flight requests and flush the writer.
    pub async fn run(self, addr: &str, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Listen { addr: addr.to_owned(), source })?;
        let local: SocketAddr = listener.local_addr()?;
        tracing::info!(%local, store = self.store.kind(), "auditflow listening");
        let Server { router, store: _, commit, writer } = self;
        axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
        // The router (and its clones of the commit handle) is gone: closing ours lets the
        // writer drain what is queued and exit.
        drop(commit);
        if writer.await.is_err() {
            tracing::error!("store writer task panicked during shutdown");
        }
        tracing::info!("auditflow stopped");
        Ok(())
    }
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
