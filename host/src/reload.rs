//! Hot reload: re-read the config file, build and initialise the new pipeline beside the old
//! one, and swap it in atomically. In-flight requests finish on the pipeline they started
//! with; a config that does not load, or whose plugins do not initialise, is refused and the
//! old pipeline keeps running. Triggered by SIGHUP or by the authenticated
//! `POST /admin/reload` (what `auditflow reload` calls).

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

use crate::config::Config;
use crate::ingest::auth;
use crate::pipeline::{Pipeline, PipelineSlot};
use crate::plugin::PluginEngine;

/// Rebuilds the pipeline from the config file on request.
pub struct Reloader {
    config_path: PathBuf,
    /// What was loaded at start: sections that need a restart are compared against it.
    started_with: Config,
    slot: Arc<PipelineSlot>,
    /// One reload at a time.
    running: Mutex<()>,
}

impl Reloader {
    pub fn new(config_path: PathBuf, started_with: Config, slot: Arc<PipelineSlot>) -> Reloader {
        Reloader {
            config_path,
            started_with,
            slot,
            running: Mutex::new(()),
        }
    }

    /// Reload; on success returns the names of the new stages.
    pub async fn reload(&self) -> Result<Vec<String>, String> {
        let _one = self.running.lock().await;
        let config = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        if config.server.listen != self.started_with.server.listen
            || config.storage.url != self.started_with.storage.url
        {
            tracing::warn!("reload: [server] and [storage] changes take effect only after a restart");
        }
        let engine = PluginEngine::for_config(&config).map_err(|e| e.to_string())?;
        let pipeline = Pipeline::build(&config, &engine).await.map_err(|e| e.to_string())?;
        let stages = pipeline.stages().iter().map(|s| s.name.clone()).collect();
        self.slot.swap(pipeline);
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
