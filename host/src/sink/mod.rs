//! SIEM forwarding: every `[[sinks]]` entry forwards every committed event to one
//! destination, formatted by its formatter plugin, from its own durable cursor.
//!
//! The store is the outbox: a sink reads committed events after its cursor, and the cursor
//! moves only after the destination accepted them, so a restart, a crash or an outage never
//! loses an event (delivery is at-least-once; `event_id` travels with every copy so the SIEM
//! can dedupe). With replicas on one PostgreSQL, each sink is driven by one process at a time.
//!
//! - [`Sink`] (this file): what a destination protocol provides: framing, a document check,
//!   sending, and its one retry decision function. Implementations: [`splunk_hec`],
//!   [`datadog`], [`http`].
//! - [`driver`]: the task per sink: lease, cursor, read, format, batch, deliver, advance.
//! - [`batch`]: the buffer of formatted events, when a batch is cut, framing and gzip.
//! - [`delivery`]: sending one batch: retry with backoff, split, dead-letter, Splunk's indexer
//!   acknowledgement, the breaker.
//! - [`retry`]: the per-sink `classify` functions (answer → decision) and the backoff.
//! - [`breaker`]: the circuit breaker.
//! - [`transport`]: the shared HTTP client and answer.
//! - [`status`], [`metrics`]: what `/health/detailed` and `/metrics` show per sink.
//! - [`dlq`]: `auditflow dlq list|replay`.
//!
//! This module reads from `store` and formats through `plugin`; it knows nothing of ingest.
//! Logs and errors carry sink names, event ids, sequence numbers and status codes, never event
//! contents.

pub mod batch;
pub mod breaker;
pub mod datadog;
pub mod delivery;
pub mod dlq;
pub mod driver;
pub mod http;
pub mod metrics;
pub mod retry;
pub mod splunk_hec;
pub mod status;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use crate::shutdown::{Shutdown, ShutdownTrigger};
use async_trait::async_trait;
use reqwest::Url;
use reqwest::header::HeaderValue;
use tokio::task::JoinHandle;

use crate::config::{Config, SinkCompression, SinkConfig, SinkKind};
use crate::event::StoredEvent;
use crate::plugin::host::StageContext;
use crate::plugin::{FormatterPool, InstanceLimits, PluginEngine, PluginError};
use crate::store::{Store, StoreError};

use batch::{BatchLimits, Framing};
use breaker::Breaker;
use delivery::{Delivery, Policy};
use driver::SinkDriver;
use retry::{Backoff, Decision};
use status::SinkStatus;
use transport::{Attempt, RequestBody, TlsOptions, Transport};

/// Wall-clock budget of one formatter call.
const FORMATTER_TIMEOUT: Duration = Duration::from_secs(10);

/// One destination protocol.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    fn kind(&self) -> SinkKind;

    /// How documents are joined into one request body.
    fn framing(&self) -> Framing;

    /// Check a formatter's document for this protocol and return what goes into the request
    /// (possibly wrapped); an error dead-letters the event (`format_error`).
    fn prepare(&self, doc: String, event: &StoredEvent) -> Result<String, String>;

    /// Send one request body.
    async fn send(&self, body: &RequestBody) -> Attempt;

    /// The sink's one retry decision: what to do after `attempt`.
    fn classify(&self, attempt: &Attempt) -> Decision;

    /// Indexer acknowledgement settings, when the sink waits for acks.
    fn ack(&self) -> Option<AckSettings> {
        None
    }

    /// Whether the destination has acknowledged `ack_id`.
    async fn acked(&self, ack_id: u64) -> Result<bool, String> {
        let _ = ack_id;
        Err("this sink has no acknowledgements".into())
    }
}

/// Splunk indexer acknowledgement: how often to poll, and when to give up and resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckSettings {
    pub poll: Duration,
    pub timeout: Duration,
}

impl AckSettings {
    fn from_config(c: &SinkConfig) -> AckSettings {
        AckSettings {
            poll: Duration::from_millis(c.ack_poll_ms),
            timeout: Duration::from_millis(c.ack_timeout_ms),
        }
    }
}

/// Why sinks could not be built or a dead-letter command failed. Never carries secrets.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink `{sink}`: {message}")]
    Config { sink: String, message: String },
    #[error("{0}")]
    Plugin(#[from] PluginError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The endpoint as a URL; `default_path` when it has none.
fn endpoint_url(endpoint: &str, default_path: &str) -> Result<Url, String> {
    let mut url = Url::parse(endpoint).map_err(|e| format!("endpoint is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("endpoint must be http:// or https://".into());
    }
    if (url.path().is_empty() || url.path() == "/") && !default_path.is_empty() {
        url.set_path(default_path);
    }
    Ok(url)
}

/// A header value holding a secret: marked sensitive, so it never shows in debug output.
fn secret_header(value: &str) -> Result<HeaderValue, String> {
    let mut v =
        HeaderValue::from_str(value).map_err(|_| "the token contains characters not allowed in a header".to_owned())?;
    v.set_sensitive(true);
    Ok(v)
}

/// The protocol side of a configured sink.
pub fn build_sink(config: &Config, sc: &SinkConfig) -> Result<Arc<dyn Sink>, SinkError> {
    let err = |message: String| SinkError::Config {
        sink: sc.name.clone(),
        message,
    };
    let token = sc
        .token
        .as_ref()
        .map(|t| config.read_secret(t))
        .transpose()
        .map_err(|m| err(format!("token: {m}")))?;
    let timeout = Duration::from_millis(sc.request_timeout_ms);
    let max_retry_after = Duration::from_secs(sc.retry.max_retry_after_secs);
    let tls = TlsOptions::load(config, sc).map_err(err)?;
    let transport = |headers| Transport::new(headers, timeout, max_retry_after, &tls);
    let required = || token.clone().ok_or_else(|| err("token: required".into()));
    let sink: Arc<dyn Sink> = match sc.kind {
        SinkKind::SplunkHec => Arc::new(splunk_hec::SplunkHec::new(sc, &required()?, transport).map_err(err)?),
        SinkKind::DatadogLogs => Arc::new(datadog::DatadogLogs::new(sc, &required()?, transport).map_err(err)?),
        SinkKind::Http => Arc::new(http::HttpNdjson::new(sc, token.as_deref(), transport).map_err(err)?),
    };
    Ok(sink)
}

/// The sink's formatter plugin, initialised with its `formatter_config` (a bad config fails
/// here, at start-up).
pub async fn build_formatter(
    config: &Config,
    sc: &SinkConfig,
    engine: &PluginEngine,
) -> Result<FormatterPool, SinkError> {
    let component = engine.load(sc.formatter(), &config.base_dir)?;
    let context = StageContext {
        stage: format!("sink {}", sc.name),
        lookups: Default::default(),
    };
    let limits = InstanceLimits {
        timeout: FORMATTER_TIMEOUT,
        instances: 1,
        ..InstanceLimits::default()
    };
    Ok(FormatterPool::new(engine, &component, context, sc.formatter_config.to_string(), limits).await?)
}

/// How the sink delivers, from its config.
fn delivery_policy(sc: &SinkConfig, sink: &dyn Sink) -> Policy {
    Policy {
        framing: sink.framing(),
        gzip: sc.compression == SinkCompression::Gzip,
        max_bytes: sc.max_bytes(),
        backoff: Backoff {
            initial: Duration::from_millis(sc.retry.initial_backoff_ms),
            max: Duration::from_millis(sc.retry.max_backoff_ms),
        },
        auth_probe: Duration::from_secs(sc.breaker.auth_probe_secs),
        max_attempts: None,
    }
}

/// Every configured sink, built and checked, not yet running.
pub struct SinkSet {
    sinks: Vec<BuiltSink>,
}

struct BuiltSink {
    config: SinkConfig,
    sink: Arc<dyn Sink>,
    formatter: Arc<FormatterPool>,
    status: Arc<SinkStatus>,
}

impl SinkSet {
    /// Build every sink of `config`: tokens read, URLs checked, formatters loaded and
    /// initialised. Fails before anything is sent.
    pub async fn build(config: &Config, engine: &PluginEngine) -> Result<SinkSet, SinkError> {
        let mut sinks = Vec::with_capacity(config.sinks.len());
        for sc in &config.sinks {
            let sink = build_sink(config, sc)?;
            let formatter = Arc::new(build_formatter(config, sc, engine).await?);
            let status = Arc::new(SinkStatus::new(&sc.name, sc.kind));
            sinks.push(BuiltSink {
                config: sc.clone(),
                sink,
                formatter,
                status,
            });
        }
        Ok(SinkSet { sinks })
    }

    /// No sinks configured.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// The live state of each sink, for `/health/detailed`.
    pub fn statuses(&self) -> Vec<Arc<SinkStatus>> {
        self.sinks.iter().map(|s| s.status.clone()).collect()
    }

    /// Start one driver task per sink.
    pub fn start(self, store: Arc<dyn Store>) -> RunningSinks {
        let (trigger, shutdown) = Shutdown::new();
        let tasks: Vec<JoinHandle<()>> = self
            .sinks
            .into_iter()
            .flat_map(|b| {
                let metrics = Arc::new(metrics::SinkMetrics::new(&b.config.name));
                let policy = delivery_policy(&b.config, b.sink.as_ref());
                let delivery = Delivery {
                    sink: b.sink.clone(),
                    policy,
                    breaker: Breaker::new(b.config.breaker.failure_threshold, Duration::from_millis(b.config.breaker.open_ms)),
                    status: b.status.clone(),
                    metrics: metrics.clone(),
                    shutdown: shutdown.clone(),
                };
                let driver = SinkDriver {
                    name: b.config.name.clone(),
                    sink: b.sink,
                    formatter: b.formatter,
                    store: store.clone(),
                    limits: BatchLimits {
                        max_events: b.config.max_events(),
                        max_bytes: b.config.max_bytes(),
                        max_wait: Duration::from_millis(b.config.max_wait_ms()),
                    },
                    delivery,
                    status: b.status,
                    metrics,
                    shutdown: shutdown.clone(),
                };
                tracing::info!(sink = %b.config.name, kind = b.config.kind.as_str(), formatter = b.config.formatter(), "sink starting");
                let reporter = driver::report_backlog(b.config.name.clone(), store.clone(), driver.status.clone(), driver.metrics.clone(), shutdown.clone());
                [tokio::spawn(driver.run()), tokio::spawn(reporter)]
            })
            .collect();
        RunningSinks { trigger, tasks }
    }
}

/// The running sink drivers.
pub struct RunningSinks {
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSinks {
    /// Tell every driver to stop and wait up to `grace` for them (a request in flight may
    /// finish; its batch is resent after the restart if its cursor was not stored). Drivers
    /// still running after `grace` are aborted.
    pub async fn shutdown(self, grace: Duration) {
        self.trigger.fire();
        let deadline = tokio::time::Instant::now() + grace;
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_gets_the_vendor_path_only_when_it_has_none() {
        assert_eq!(
            endpoint_url("http://127.0.0.1:8088", "/services/collector/event")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8088/services/collector/event"
        );
        assert_eq!(
            endpoint_url("https://hec.example/custom", "/services/collector/event")
                .unwrap()
                .path(),
            "/custom"
        );
        assert!(endpoint_url("ftp://x", "").is_err());
    }
}
