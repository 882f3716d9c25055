//! Hot reload: re-read the config file, build and initialise the new pipeline, credentials
//! and certificates beside the old ones, and swap them in together. In-flight requests finish
//! on the pipeline and credentials they started with; a config that does not load, whose
//! plugins do not initialise, whose tokens cannot be read or whose certificate files do not
//! load is refused as a whole and everything in service stays. Triggered by SIGHUP or by the
//! authenticated `POST /admin/reload` (what `auditflow reload` calls).
//!
//! What is reloaded: `[[stages]]` and `[pipeline]`; `[auth]` (tokens added, removed or
//! rotated, client-certificate mappings); the files of `[server.tls]` and `[telemetry.tls]`
//! (certificate rotation, client CAs). Switching a listener between HTTP and HTTPS, and
//! `[server] listen` or `[storage]`, take a restart: a reload that turns TLS on or off is
//! refused, the others are logged as needing a restart.
//!
//! Every reload's outcome is counted in `auditflow_reloads_total{result}` and the last one is
//! shown in `/health/detailed` (`reload`: when, applied or refused, and why).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use super::tls::TlsListener;
use crate::config::Config;
use crate::health::Reloads;
use crate::ingest::auth::{self, Auth};
use crate::pipeline::{Pipeline, PipelineSlot};
use crate::plugin::PluginEngine;
use crate::slot::Slot;

/// What a reload replaces in the running server.
pub struct Reloadable {
    pub pipeline: Arc<PipelineSlot>,
    pub auth: Arc<Slot<Auth>>,
    /// The ingest listener's TLS, when it serves HTTPS.
    pub tls: Option<Arc<TlsListener>>,
    /// The metrics listener's TLS, when it has its own and serves HTTPS.
    pub metrics_tls: Option<Arc<TlsListener>>,
}

/// Rebuilds the pipeline, credentials and certificates from the config file on request.
pub struct Reloader {
    config_path: PathBuf,
    /// What was loaded at start: sections that need a restart are compared against it.
    started_with: Config,
    target: Reloadable,
    /// One reload at a time.
    running: Mutex<()>,
    /// The last outcome, for `/health/detailed`.
    history: Arc<Reloads>,
}

impl Reloader {
    pub fn new(config_path: PathBuf, started_with: Config, target: Reloadable, history: Arc<Reloads>) -> Reloader {
        Reloader {
            config_path,
            started_with,
            target,
            running: Mutex::new(()),
            history,
        }
    }

    /// Reload; on success returns the names of the new stages. Everything is built and checked
    /// before anything is swapped, so a refused reload changes nothing. The outcome is counted
    /// and kept for `/health/detailed`.
    pub async fn reload(&self) -> Result<Vec<String>, String> {
        let _one = self.running.lock().await;
        let result = self.rebuild().await;
        crate::telemetry::metrics().server.reloaded(result.is_ok());
        self.history.record(result.as_ref().map(|_| ()).map_err(Clone::clone));
        result
    }

    async fn rebuild(&self) -> Result<Vec<String>, String> {
        let config = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        let old = &self.started_with;
        if config.server.tls.is_some() != old.server.tls.is_some()
            || config.telemetry.tls.is_some() != old.telemetry.tls.is_some()
        {
            return Err(
                "server.tls or telemetry.tls was added or removed: switching a listener between HTTP and HTTPS takes a restart"
                    .into(),
            );
        }
        if config.server.listen != old.server.listen
            || config.storage.url != old.storage.url
            || config.telemetry.metrics_listen != old.telemetry.metrics_listen
        {
            tracing::warn!("reload: listen addresses and [storage] changes take effect only after a restart");
        }
        let auth = Auth::load(&config)?;
        // Build every new TLS config before swapping any, so a bad file refuses the reload.
        let tls = reload_tls(&self.target.tls, config.server.tls.as_ref(), &config)?;
        let metrics_tls = reload_tls(&self.target.metrics_tls, config.telemetry.tls.as_ref(), &config)?;
        let engine = PluginEngine::for_config(&config).map_err(|e| e.to_string())?;
        let pipeline = Pipeline::build(&config, &engine).await.map_err(|e| e.to_string())?;
        let stages = pipeline.stages().iter().map(|s| s.name.clone()).collect();
        self.target.pipeline.swap(pipeline);
        self.target.auth.swap(auth);
        crate::telemetry::metrics().configure(&config.telemetry.event_type_labels);
        for swap in [tls, metrics_tls].into_iter().flatten() {
            swap();
        }
        Ok(stages)
    }

    /// Reload and log the result (the SIGHUP path).
    pub async fn reload_logged(&self) {
        match self.reload().await {
            Ok(stages) => tracing::info!(stages = %stages.join(" → "), "reload: new pipeline in service"),
            Err(e) => tracing::error!(error = %e, "reload refused; the old pipeline keeps running"),
        }
    }
}

/// The new TLS config of `listener` from `tls`, loaded and checked, as a swap to run once the
/// whole reload is known to succeed. `None` when the listener serves plain HTTP.
fn reload_tls<'a>(
    listener: &'a Option<Arc<TlsListener>>,
    tls: Option<&crate::config::TlsConfig>,
    config: &Config,
) -> Result<Option<impl FnOnce() + 'a>, String> {
    let (Some(listener), Some(tls)) = (listener, tls) else {
        return Ok(None);
    };
    let loaded = listener.prepare(tls, config)?;
    Ok(Some(move || listener.install(loaded)))
}

/// Reload on every SIGHUP until the process ends.
pub async fn on_sighup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload only through the admin endpoint");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            reloader.reload_logged().await;
        }
    }
    #[cfg(not(unix))]
    let _ = reloader;
}

struct AdminState {
    reloader: Arc<Reloader>,
    token_digest: [u8; 32],
}

/// `POST /admin/reload`, bearer-authenticated with the admin token.
pub fn admin_router(reloader: Arc<Reloader>, token: &[u8]) -> Router {
    let state = Arc::new(AdminState {
        reloader,
        token_digest: Sha256::digest(token).into(),
    });
    Router::new()
        .route("/admin/reload", post(reload_handler))
        .with_state(state)
}

async fn reload_handler(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let presented: [u8; 32] = Sha256::digest(auth::bearer(&headers).unwrap_or_default()).into();
    if !bool::from(presented.ct_eq(&state.token_digest)) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "missing or wrong admin token" })),
        );
    }
    match state.reloader.reload().await {
        Ok(stages) => {
            tracing::info!(stages = %stages.join(" → "), "admin reload: new pipeline in service");
            (StatusCode::OK, Json(json!({ "reloaded": true, "stages": stages })))
        }
        Err(e) => {
            tracing::error!(error = %e, "admin reload refused; the old pipeline keeps running");
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "reloaded": false, "error": e })),
            )
        }
    }
}

/// Read the admin token named by `[admin]`, if any.
pub fn admin_token(config: &Config) -> Result<Option<Vec<u8>>, String> {
    let admin = &config.admin;
    if admin.token_env.is_none() && admin.token_file.is_none() {
        return Ok(None);
    }
    config
        .read_secret_bytes(admin.token_env.as_deref(), admin.token_file.as_deref())
        .map(Some)
        .map_err(|e| format!("admin token: {e}"))
}
