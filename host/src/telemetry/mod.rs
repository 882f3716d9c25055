//! Telemetry: auditflow's own logs, metrics and traces.
//!
//! - Logging (this file): human-readable text (default) or JSON lines on stderr, filtered by
//!   `RUST_LOG` (default `info`), and optionally exported as OTLP traces
//!   (`[telemetry] otlp_endpoint`). auditflow's own log lines carry event ids, stage names and
//!   counts, never event contents.
//! - [`metrics`]: every metric auditflow emits, decided once (listed in `docs/METRICS.md`).
//! - [`http`]: the layer every HTTP request passes through (request id, span, HTTP metrics)
//!   and the `/metrics` handler.

pub mod http;
pub mod metrics;

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use metrics::metrics;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Trace export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint: {0}")]
pub struct TelemetryError(String);

/// Keeps trace export running; [`TelemetryGuard::shutdown`] flushes the spans not yet sent.
#[derive(Debug, Default)]
#[must_use = "dropping the guard without shutdown() may lose the last spans"]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flush and stop trace export. Call outside the async runtime (the exporter blocks).
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: flushing OTLP traces failed: {e}");
        }
    }
}

/// Install the global subscriber without trace export; later calls are no-ops.
pub fn init_logging(format: LogFormat) {
    // Without an endpoint nothing can fail.
    let _ = init(format, None);
}

/// Install the global subscriber: logs in `format` and, when `otlp_endpoint` is set (the full
/// OTLP/HTTP traces URL, e.g. `http://collector:4318/v1/traces`), every span exported as OTLP
/// protobuf in batches. Later calls are no-ops.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let tracer_provider = otlp_endpoint.map(otlp_tracer_provider).transpose()?;
    let otel_layer = tracer_provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("auditflow"))
            .with_filter(not_the_exporter())
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match format {
        // Colours only for a terminal, not for files, journald or container logs.
        LogFormat::Text => registry.with(fmt.with_ansi(std::io::stderr().is_terminal())).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
    Ok(TelemetryGuard { tracer_provider })
}

/// Spans of the exporter's own HTTP stack are not exported: exporting them would create more.
fn not_the_exporter() -> Targets {
    let mut targets = Targets::new().with_default(LevelFilter::TRACE);
    for crate_name in ["opentelemetry", "reqwest", "hyper", "hyper_util", "h2", "tower"] {
        targets = targets.with_target(crate_name, LevelFilter::OFF);
    }
    targets
}

fn otlp_tracer_provider(endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(TelemetryError(
            "must be an http:// or https:// URL (OTLP over HTTP, protobuf)".into(),
        ));
    }
    if endpoint.starts_with("https://") {
        // The exporter is built without a TLS stack; say so instead of failing on every export.
        return Err(TelemetryError(
            "https is not supported by this build; send to a local collector over http".into(),
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("auditflow")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
