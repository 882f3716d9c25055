//! TOML → typed config. Every key is documented here, next to its default: these doc comments
//! are the config reference (`docs/CONFIG.md` is checked against them by a test).
//!
//! Unknown keys are errors, and every error names the key path (`stages[0].timeout_ms`), so a
//! typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listener and request limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Who may post events.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Where events are stored.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Name and version stamped on events by stages that ask for them.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The plugin stages, run in order on every event.
    #[serde(default)]
    pub stages: Vec<StageConfig>,
    /// The admin endpoint (`POST /admin/reload`); off unless a token is configured.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Metrics, trace export and the labels they use.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// SIEM destinations (`[[sinks]]`): each forwards every committed event from its own
    /// durable cursor.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// Directory of the config file; relative paths in the config are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server listens on. Default `127.0.0.1:8080`.
    pub listen: String,
    /// Request limits.
    pub limits: Limits,
    /// On SIGTERM, keep serving this long with `/health/ready` answering 503 before the
    /// listener stops accepting, so load balancers take the instance out of rotation first.
    /// In milliseconds. Default 0.
    pub shutdown_drain_ms: u64,
    /// Serve HTTPS instead of plain HTTP (`[server.tls]`). Unset: plain HTTP, and a warning at
    /// start when `listen` is not a loopback address.
    pub tls: Option<TlsConfig>,
    /// A new connection must complete its TLS handshake and send its first request head
    /// within this time, and every later request head must arrive within it once started;
    /// otherwise the connection is closed. In milliseconds. Default 10 000.
    pub header_timeout_ms: u64,
    /// A connection with no request in flight is closed this long after its last answer
    /// (HTTP/1.1 keep-alive and HTTP/2 alike). In milliseconds. Default 60 000.
    pub idle_timeout_ms: u64,
    /// Most connections open at once on this listener; one more is closed at once (counted in
    /// `auditflow_connections_closed_total{reason="limit"}`). Default 1024.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            limits: Limits::default(),
            shutdown_drain_ms: 0,
            tls: None,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
        }
    }
}

/// `[server.tls]` and `[telemetry.tls]`: HTTPS with rustls. TLS 1.2 and 1.3 only, HTTP/1.1 and
/// HTTP/2 chosen by ALPN. The files are read at start and again on every reload (SIGHUP,
/// `auditflow reload`), so certificates rotate without a restart: new connections get the new
/// ones, open connections finish on the old. A reload whose files do not load is refused and the
/// certificates in service stay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file holding the server certificate followed by its intermediate CA certificates
    /// (the full chain, leaf first), relative to the config file.
    pub cert_file: PathBuf,
    /// PEM file holding the certificate's private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
    /// PEM file of the CA certificates that sign client certificates (mutual TLS). A client
    /// certificate is then verified against them (chain and validity period) and can stand in
    /// for a bearer token through `[[auth.clients]]`. Unset: no client certificate is asked for.
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: refuse every handshake that does not present a valid client
    /// certificate. Default false: a client without a certificate may still use a bearer token
    /// (a certificate it does present must still be valid).
    #[serde(default)]
    pub require_client_cert: bool,
}

/// `[telemetry]`: where metrics and traces go. `/metrics` and the health routes are always on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Serve `GET /metrics` (and the health routes) on this separate address instead of on
    /// `server.listen`, e.g. to keep metrics off the ingest port. Default: unset, `/metrics` is
    /// served on `server.listen`.
    pub metrics_listen: Option<String>,
    /// Export traces (one per HTTP request, with the pipeline's spans) as OTLP/HTTP protobuf
    /// to this URL, the collector's full traces endpoint (e.g.
    /// `http://127.0.0.1:4318/v1/traces`; plain http only). Default: unset, no export.
    pub otlp_endpoint: Option<String>,
    /// The `event_type` values counted under their own metric label
    /// (`auditflow_ingest_events_total{event_type}`); every other type is counted as `other`,
    /// so no label value ever comes from event content the operator did not list. Default:
    /// SARK's gateway types `tool_invoke`, `a2a_communication`, `discovery`. Reloaded with the
    /// pipeline.
    pub event_type_labels: Vec<String>,
    /// Deprecated and ignored (the first values seen used to become labels; a sender could put
    /// event contents into them): list the types in `event_type_labels`. Accepted so an older
    /// config still loads; a warning says so.
    pub event_type_label_limit: Option<usize>,
    /// Serve `metrics_listen` over HTTPS (`[telemetry.tls]`, the same keys as `[server.tls]`;
    /// with `client_ca_file` and `require_client_cert`, only scrapers holding a client
    /// certificate from that CA get in). Default: unset, plain HTTP.
    pub tls: Option<TlsConfig>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            metrics_listen: None,
            otlp_endpoint: None,
            event_type_labels: ["tool_invoke", "a2a_communication", "discovery"]
                .map(String::from)
                .to_vec(),
            event_type_label_limit: None,
            tls: None,
        }
    }
}

/// `[server.limits]`: what one request may contain. Exceeding a byte limit answers 413,
/// exceeding the nesting depth answers 422.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body as sent (compressed, if gzip). Default 10 MiB.
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression; inflating stops as soon as it is exceeded, so a
    /// gzip bomb costs no more than this. Default 32 MiB.
    pub max_decompressed_bytes: usize,
    /// Most events in one request. Default 10 000.
    pub max_events: usize,
    /// Largest single event, as serialised JSON. Default 256 KiB.
    pub max_event_bytes: usize,
    /// Deepest nesting of objects/arrays inside one event (the event object itself is depth
    /// 1). Default 32.
    pub max_depth: usize,
    /// A request body must arrive within this time, extended by one second for every
    /// `min_body_rate` bytes received; a slower one is answered 408. In milliseconds. Default
    /// 10 000.
    pub body_timeout_ms: u64,
    /// Bytes per second a body must keep up on average past `body_timeout_ms`. Default 1024.
    pub min_body_rate: u64,
    /// Memory for requests in flight, across all requests: each holds its body as sent, again
    /// as inflated from gzip, and 4 times its JSON bytes for the events parsed from it, until it
    /// is answered; a request that does not fit gets 503 + `Retry-After`. Must hold one largest
    /// request (`max_body_bytes` + 5 × `max_decompressed_bytes`). Default 256 MiB.
    pub max_in_flight_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 10 * 1024 * 1024,
            max_decompressed_bytes: 32 * 1024 * 1024,
            max_events: 10_000,
            max_event_bytes: 256 * 1024,
            max_depth: 32,
            body_timeout_ms: 10_000,
            min_body_rate: 1024,
            max_in_flight_body_bytes: 256 * 1024 * 1024,
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Ingest tokens. The token's `name` is recorded on each event it sends as `source`.
    /// With no tokens and no clients configured every ingest request is refused (401).
    pub tokens: Vec<TokenConfig>,
    /// Client certificates (mutual TLS, `server.tls.client_ca_file`) that authenticate without
    /// a token: each maps one certificate property to a source name. A request whose verified
    /// certificate matches an entry is that source, whatever token it carries; one that matches
    /// none needs a token.
    pub clients: Vec<ClientCertConfig>,
}

/// `[[auth.clients]]`: a verified client certificate → a source name. Set exactly one of
/// `subject_cn`, `san_dns` or `san_uri`; entries are tried in order, the first match wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertConfig {
    /// Name recorded as the events' `source`, as a token's name is.
    pub name: String,
    /// Matches a certificate whose subject common name (CN) is exactly this.
    pub subject_cn: Option<String>,
    /// Matches a certificate with this DNS name among its subject alternative names (ASCII
    /// case ignored).
    pub san_dns: Option<String>,
    /// Matches a certificate with exactly this URI among its subject alternative names (e.g. a
    /// SPIFFE id `spiffe://example.org/ns/audit/sa/gateway`).
    pub san_uri: Option<String>,
}

/// `[[auth.tokens]]`: one bearer token. The value comes from `env` or `file`, never from the
/// TOML itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Name recorded as the events' `source` (e.g. `sark-gateway`).
    pub name: String,
    /// Environment variable holding the token.
    pub env: Option<String>,
    /// File holding the token (surrounding whitespace is ignored).
    pub file: Option<PathBuf>,
}

/// `[admin]`: the token for `POST /admin/reload` (used by `auditflow reload`), read from `env`
/// or `file`, never from the TOML. Without it the admin endpoint is not served.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Environment variable holding the admin token.
    pub token_env: Option<String>,
    /// File holding the admin token.
    pub token_file: Option<PathBuf>,
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://path/to/file.db` (embedded default) or `postgres://user@host/db`.
    /// A relative SQLite path is resolved against the config file's directory.
    /// Default `sqlite://auditflow.db`.
    pub url: String,
    /// Most events waiting for the writer; beyond it ingest answers 503. Default 50 000.
    pub queue_capacity: usize,
    /// Most events written in one transaction. Default 5 000.
    pub max_batch_events: usize,
    /// How long the writer waits to gather more requests into one commit, in
    /// milliseconds. Default 2.
    pub max_wait_ms: u64,
    /// Signed checkpoints of the hash chain (`[storage.chain]`).
    pub chain: ChainConfig,
    /// Removing old events (`[storage.retention]`).
    pub retention: RetentionConfig,
}

/// `[storage.retention]`: `auditflow retention apply` removes the events older than `keep_days`
/// (PostgreSQL: whole months once all of a month is older; SQLite: the rows), writing a
/// retention record signed with `storage.chain.signing_key` in the same transaction, so
/// `auditflow verify` still passes on what remains and reports what was removed. Events a
/// configured sink has not delivered yet, and the newest event, are never removed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Keep events whose event time is at most this many days old. Unset: no retention
    /// (`retention apply` refuses to run).
    pub keep_days: Option<u64>,
}

/// `[storage.chain]`: signed checkpoints of the hash chain. Every `checkpoint_every_events`
/// events or `checkpoint_every_secs` seconds the writer signs the chain head (sequence number
/// and hash) with an Ed25519 key; `auditflow verify` checks the signatures and that the chain
/// still reaches every checkpoint. `auditflow keygen` prints a new key pair.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    /// The Ed25519 private key (32-byte seed, hex or base64) that signs checkpoints, from
    /// `{ env = "VAR" }` or `{ file = "path" }`, never inline. Unset: no checkpoints are
    /// written (the chain itself is still kept and verifiable).
    pub signing_key: Option<SecretSource>,
    /// The Ed25519 public key (hex or base64) `auditflow verify` checks checkpoint signatures
    /// with. Unset: derived from `signing_key`.
    pub public_key: Option<String>,
    /// More public keys `verify` trusts, e.g. the keys that signed before a key rotation
    /// (`auditflow keygen` explains the rotation). A checkpoint or retention record signed by a
    /// key in none of `public_key`, `public_keys` or `signing_key` fails verification.
    pub public_keys: Vec<String>,
    /// Sign a checkpoint once this many events were stored since the last one. Default 10 000.
    pub checkpoint_every_events: u64,
    /// Sign a checkpoint once this many seconds passed since the last one and events were
    /// stored since (also while idle). Default 10.
    pub checkpoint_every_secs: u64,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            signing_key: None,
            public_key: None,
            public_keys: Vec::new(),
            checkpoint_every_events: 10_000,
            checkpoint_every_secs: 10,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: "sqlite://auditflow.db".into(),
            queue_capacity: 50_000,
            max_batch_events: 5_000,
            max_wait_ms: 2,
            chain: ChainConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

/// `[pipeline]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Pipeline name, offered to stages (the enrich plugin stamps it). Default `auditflow`.
    pub name: String,
    /// Pipeline version, likewise. Default `1`.
    pub version: String,
    /// Most events per plugin call; larger requests are cut into batches of this size.
    /// Default 256.
    pub batch_size: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            name: "auditflow".into(),
            version: "1".into(),
            batch_size: 256,
        }
    }
}

/// What a stage does with an event it failed on (a plugin `error` outcome, or a call that
/// trapped, timed out or broke the contract; a failed call is re-run event by event first,
/// so only the events that fail on their own get the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorPolicy {
    /// Fail the whole request (422 naming the event, 500 if the plugin itself failed); nothing
    /// from it is stored.
    Reject,
    /// Drop the event (counted).
    Drop,
    /// Store a quarantine record (event id, stage, error — not the payload) instead of the
    /// event (counted).
    Quarantine,
    /// Pass the event on unchanged, as if the stage were not there. Refused on redaction
    /// stages: a failed redaction must never let the unredacted event through.
    Skip,
}

/// What a stage is for. `redaction` stages fail closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageRole {
    Redaction,
    Enrichment,
    #[default]
    Custom,
}

/// `[[stages]]`: one Wasm component in the chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Stage name: unique, used in metrics labels and logs.
    pub name: String,
    /// A built-in plugin name (`redact`, `enrich`) or a path to a `.wasm` component, relative
    /// to the config file.
    pub plugin: String,
    /// `redaction`, `enrichment` or `custom` (default).
    #[serde(default)]
    pub role: StageRole,
    /// `reject` (default) or `drop`.
    #[serde(default = "default_on_error")]
    pub on_error: ErrorPolicy,
    /// Warm instances kept for this stage. Default: the number of CPU cores.
    pub instances: Option<usize>,
    /// Wall-clock budget of one plugin call, in milliseconds. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Memory one plugin instance may grow to, in MiB; a failed grow traps. Default 256.
    #[serde(default = "default_max_memory_mb")]
    pub max_memory_mb: u64,
    /// Optional deterministic budget of Wasm instructions ("fuel") per call. Unset by default:
    /// fuel costs speed, the timeout already bounds every call.
    pub fuel: Option<u64>,
    /// Passed to the plugin's `init` as JSON.
    #[serde(default = "empty_table")]
    pub config: Value,
    /// Secret values merged into `config` before `init`, each read from `{ env = "VAR" }` or
    /// `{ file = "path" }`, so secrets never sit in the TOML.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Lookup tables the plugin may read through the host's `lookup` import: table name →
    /// inline `{ key = "value" }` map.
    #[serde(default)]
    pub lookups: BTreeMap<String, BTreeMap<String, String>>,
    /// Read-only lookup files granted to the plugin, served through the same `lookup` import:
    /// table name → `{ path = "teams.csv", key = "agent_id", value = "team" }`. The host reads
    /// the file when the pipeline is built (at start and on every reload); the plugin never gets
    /// a file handle.
    #[serde(default)]
    pub lookup_files: BTreeMap<String, LookupFile>,
}

/// `[stages.lookup_files.TABLE]`: a read-only table loaded from a CSV or JSON file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupFile {
    /// The file, relative to the config file. `.csv`: a header row, then one row per key.
    /// `.json`: one object whose values are strings.
    pub path: PathBuf,
    /// CSV only: the header of the key column. Default: the first column.
    pub key: Option<String>,
    /// CSV only: the header of the value column. Default: the second column.
    pub value: Option<String>,
}

fn default_on_error() -> ErrorPolicy {
    ErrorPolicy::Reject
}

fn default_timeout_ms() -> u64 {
    5_000
}

fn default_max_memory_mb() -> u64 {
    256
}

fn empty_table() -> Value {
    Value::Object(Default::default())
}

/// Where a secret value comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// What a `[[sinks]]` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Splunk HTTP Event Collector: stacked JSON envelopes, `Authorization: Splunk <token>`.
    SplunkHec,
    /// Datadog Logs intake v2: a JSON array, `DD-API-KEY`.
    DatadogLogs,
    /// Any HTTP endpoint: newline-delimited JSON, optional bearer token.
    Http,
}

impl SinkKind {
    /// The config spelling, also used in logs and `/health/detailed`.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::SplunkHec => "splunk_hec",
            SinkKind::DatadogLogs => "datadog_logs",
            SinkKind::Http => "http",
        }
    }

    /// The built-in formatter used when a sink names none.
    pub fn default_formatter(self) -> &'static str {
        match self {
            SinkKind::SplunkHec => "format-splunk",
            SinkKind::DatadogLogs => "format-datadog",
            SinkKind::Http => "format-ocsf",
        }
    }
}

/// How a sink compresses request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkCompression {
    /// `Content-Encoding: gzip` (flate2).
    #[default]
    Gzip,
    /// Uncompressed.
    None,
}

/// `[[sinks]]`: one SIEM destination. Every sink forwards every committed event, in store
/// order, from its own durable cursor: the store is the outbox, so a restart or an outage
/// loses nothing, and the cursor advances only after the destination accepted a batch
/// (at-least-once; `event_id` travels with every copy). Sinks are not hot-reloaded: a change
/// takes a restart.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Sink name: unique, 1–64 characters of `A-Z a-z 0-9 _ - .`. It keys the sink's cursor
    /// and dead letters in the store (renaming a sink starts it again from the first stored
    /// event) and is the `sink` label of its metrics.
    pub name: String,
    /// `splunk_hec`, `datadog_logs` or `http` (the TOML key is `type`).
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// Where to send. For `splunk_hec` the HEC base URL (`https://splunk:8088`; the path
    /// defaults to `/services/collector/event`), for `datadog_logs` the intake base URL
    /// (`https://http-intake.logs.datadoghq.com`; the path defaults to `/api/v2/logs`), for
    /// `http` the full URL. A URL with its own path is used as is.
    pub endpoint: String,
    /// The formatter plugin: a built-in name (`format-splunk`, `format-datadog`, `format-ocsf`)
    /// or a path to a `.wasm` component implementing the `formatter` world. Default:
    /// `format-splunk` for `splunk_hec`, `format-datadog` for `datadog_logs`, `format-ocsf`
    /// for `http`.
    pub formatter: Option<String>,
    /// Passed to the formatter's `init` as JSON (e.g. `index`, `sourcetype` for
    /// `format-splunk`). Default: empty.
    #[serde(default = "empty_table")]
    pub formatter_config: Value,
    /// The HEC token (`splunk_hec`, required), the API key (`datadog_logs`, required) or a
    /// bearer token (`http`, optional), from `{ env = "VAR" }` or `{ file = "path" }`.
    pub token: Option<SecretSource>,
    /// `gzip` (default) or `none`.
    #[serde(default)]
    pub compression: SinkCompression,
    /// How events are grouped into requests (`[sinks.batch]`).
    #[serde(default)]
    pub batch: SinkBatchConfig,
    /// Wall-clock budget of one request, in milliseconds. Default 30 000.
    #[serde(default = "default_sink_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Backoff between retries (`[sinks.retry]`).
    #[serde(default)]
    pub retry: SinkRetryConfig,
    /// The circuit breaker (`[sinks.breaker]`).
    #[serde(default)]
    pub breaker: SinkBreakerConfig,
    /// `splunk_hec` only: use indexer acknowledgement. Requests carry the channel header, the
    /// `ackId` of each accepted batch is polled at `/services/collector/ack`, and the cursor
    /// advances only once Splunk says the batch is indexed. Default false.
    #[serde(default)]
    pub ack: bool,
    /// With `ack`: how often to poll for acknowledgement, in milliseconds. Default 1000.
    #[serde(default = "default_sink_ack_poll_ms")]
    pub ack_poll_ms: u64,
    /// With `ack`: resend a batch not acknowledged within this many milliseconds. Default
    /// 60 000.
    #[serde(default = "default_sink_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// `splunk_hec`: the `X-Splunk-Request-Channel` GUID. Default: a random one per process
    /// start (sent only with `ack`).
    pub channel: Option<String>,
    /// PEM file of CA certificates trusted for an `https://` endpoint's certificate, in
    /// addition to the public (webpki) roots, e.g. an on-premises Splunk signed by an internal
    /// CA. Default: unset, public roots only.
    pub tls_ca_file: Option<PathBuf>,
    /// Trust only `tls_ca_file`, not the public roots. Default false.
    #[serde(default)]
    pub tls_only_custom_ca: bool,
    /// PEM file of the client certificate (leaf first, then intermediates) presented to an
    /// endpoint that requires mutual TLS; set together with `tls_client_key_file`.
    pub tls_client_cert_file: Option<PathBuf>,
    /// PEM file of the private key of `tls_client_cert_file`.
    pub tls_client_key_file: Option<PathBuf>,
}

/// `[sinks.batch]`: a request is sent when it holds `max_events` events or `max_bytes`
/// bytes, or when its oldest event has waited `max_wait_ms`. Bytes are counted uncompressed,
/// as the vendors' limits are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkBatchConfig {
    /// Most events in one request. Default 1000 (Datadog refuses more than 1000).
    pub max_events: Option<usize>,
    /// Most bytes in one request body before compression. Default 1 000 000 for `splunk_hec`
    /// (HEC's classic `max_content_length`), 5 000 000 for `datadog_logs` (its limit; larger
    /// is refused) and for `http`.
    pub max_bytes: Option<usize>,
    /// Longest an event waits for its batch to fill, in milliseconds. Default 1000.
    pub max_wait_ms: Option<u64>,
}

/// `[sinks.retry]`: exponential backoff with full jitter after a network error, 408, 429 or
/// 5xx: the n-th retry waits a random time up to `min(max_backoff_ms, initial_backoff_ms ×
/// 2ⁿ)`, or the `Retry-After` the destination sent. Retries never give up: the events stay
/// in the store until the destination takes them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkRetryConfig {
    /// First backoff ceiling, in milliseconds. Default 500.
    pub initial_backoff_ms: u64,
    /// Largest backoff, in milliseconds. Default 60 000.
    pub max_backoff_ms: u64,
    /// Largest `Retry-After` honoured, in seconds; a longer one is cut to this. Default 600.
    pub max_retry_after_secs: u64,
}

impl Default for SinkRetryConfig {
    fn default() -> Self {
        SinkRetryConfig {
            initial_backoff_ms: 500,
            max_backoff_ms: 60_000,
            max_retry_after_secs: 600,
        }
    }
}

/// `[sinks.breaker]`: after `failure_threshold` consecutive failed requests the breaker opens
/// and nothing is sent for `open_ms`; then one probe request goes out (half-open): success
/// closes it, failure opens it again. A 401/403 stops the sink at once (breaker open, events
/// kept) and it probes again only every `auth_probe_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkBreakerConfig {
    /// Consecutive failures that open the breaker. Default 5.
    pub failure_threshold: u32,
    /// How long the breaker stays open before a probe, in milliseconds. Default 30 000.
    pub open_ms: u64,
    /// After a 401/403, how long the sink stays stopped before one probe, in seconds.
    /// Default 300.
    pub auth_probe_secs: u64,
}

impl Default for SinkBreakerConfig {
    fn default() -> Self {
        SinkBreakerConfig {
            failure_threshold: 5,
            open_ms: 30_000,
            auth_probe_secs: 300,
        }
    }
}

fn default_sink_request_timeout_ms() -> u64 {
    30_000
}

fn default_sink_ack_poll_ms() -> u64 {
    1_000
}

fn default_sink_ack_timeout_ms() -> u64 {
    60_000
}

/// Datadog's documented limits per request.
pub const DATADOG_MAX_EVENTS: usize = 1000;
pub const DATADOG_MAX_BYTES: usize = 5_000_000;

impl SinkConfig {
    /// `max_events` with the type's default.
    pub fn max_events(&self) -> usize {
        self.batch.max_events.unwrap_or(1000)
    }

    /// `max_bytes` with the type's default.
    pub fn max_bytes(&self) -> usize {
        self.batch.max_bytes.unwrap_or(match self.kind {
            SinkKind::SplunkHec => 1_000_000,
            SinkKind::DatadogLogs | SinkKind::Http => DATADOG_MAX_BYTES,
        })
    }

    /// `max_wait_ms` with its default.
    pub fn max_wait_ms(&self) -> u64 {
        self.batch.max_wait_ms.unwrap_or(1000)
    }

    /// The formatter plugin, with the type's default.
    pub fn formatter(&self) -> &str {
        self.formatter.as_deref().unwrap_or(self.kind.default_formatter())
    }

    /// Rules serde cannot express; errors name the key under `sinks[i]`.
    fn check(&self, key: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
        let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(name_ok) {
            return Err((key("name"), "must be 1-64 characters of A-Z a-z 0-9 _ - .".into()));
        }
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err((key("endpoint"), "must be an http:// or https:// URL".into()));
        }
        match &self.token {
            Some(t) if t.env.is_some() == t.file.is_some() => {
                return Err((key("token"), "set exactly one of `env` or `file`".into()));
            }
            None if self.kind != SinkKind::Http => {
                return Err((key("token"), format!("required for a {} sink", self.kind.as_str())));
            }
            _ => {}
        }
        if !self.formatter_config.is_object() {
            return Err((key("formatter_config"), "must be a table".into()));
        }
        if self.max_events() == 0 {
            return Err((key("batch.max_events"), "must be at least 1".into()));
        }
        if self.max_bytes() < 1024 {
            return Err((key("batch.max_bytes"), "must be at least 1024".into()));
        }
        if self.kind == SinkKind::DatadogLogs {
            if self.max_events() > DATADOG_MAX_EVENTS {
                return Err((
                    key("batch.max_events"),
                    format!("Datadog takes at most {DATADOG_MAX_EVENTS} items per request"),
                ));
            }
            if self.max_bytes() > DATADOG_MAX_BYTES {
                return Err((
                    key("batch.max_bytes"),
                    format!("Datadog takes at most {DATADOG_MAX_BYTES} bytes per request"),
                ));
            }
        }
        if self.request_timeout_ms == 0 {
            return Err((key("request_timeout_ms"), "must be at least 1".into()));
        }
        let retry = &self.retry;
        if retry.initial_backoff_ms == 0 || retry.initial_backoff_ms > retry.max_backoff_ms {
            return Err((
                key("retry.initial_backoff_ms"),
                "must be at least 1 and at most retry.max_backoff_ms".into(),
            ));
        }
        if self.breaker.failure_threshold == 0 {
            return Err((key("breaker.failure_threshold"), "must be at least 1".into()));
        }
        if self.breaker.auth_probe_secs == 0 {
            return Err((key("breaker.auth_probe_secs"), "must be at least 1".into()));
        }
        if self.kind != SinkKind::SplunkHec && (self.ack || self.channel.is_some()) {
            return Err((
                key(if self.ack { "ack" } else { "channel" }),
                "only applies to splunk_hec sinks".into(),
            ));
        }
        if self.tls_only_custom_ca && self.tls_ca_file.is_none() {
            return Err((key("tls_only_custom_ca"), "needs tls_ca_file".into()));
        }
        if self.tls_client_cert_file.is_some() != self.tls_client_key_file.is_some() {
            return Err((
                key("tls_client_cert_file"),
                "set tls_client_cert_file and tls_client_key_file together".into(),
            ));
        }
        let tls_set = self.tls_ca_file.is_some() || self.tls_client_cert_file.is_some();
        if tls_set && !self.endpoint.starts_with("https://") {
            return Err((
                key("endpoint"),
                "tls_* settings apply to https:// endpoints; this one is plain http".into(),
            ));
        }
        if self.ack && (self.ack_poll_ms == 0 || self.ack_timeout_ms < self.ack_poll_ms) {
            return Err((
                key("ack_timeout_ms"),
                "ack_poll_ms must be at least 1 and ack_timeout_ms at least ack_poll_ms".into(),
            ));
        }
        if let Some(channel) = &self.channel
            && uuid::Uuid::parse_str(channel).is_err()
        {
            return Err((key("channel"), "must be a GUID".into()));
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The largest PEM file read (certificates, keys, CA bundles are a few KiB to a few hundred
/// KiB).
pub const MAX_PEM_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The bytes of a file named in the config: only a regular file (not a FIFO, a device or a
/// directory, so a symlink to `/dev/zero` or a pipe cannot hang or flood the reader), and at most
/// `max_bytes`, counted as read (a file that grows while it is read is still cut off). Errors
/// name the file and the limit, never its contents.
pub fn read_file_bounded(path: &Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    // Checked before opening too: opening a FIFO for reading blocks until a writer comes.
    let is_file = |meta: std::io::Result<std::fs::Metadata>| -> Result<(), String> {
        let meta = meta.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.is_file() {
            Ok(())
        } else {
            Err(format!("{} is not a regular file", path.display()))
        }
    };
    is_file(std::fs::metadata(path))?;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    is_file(file.metadata())?;
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!("{} is larger than {max_bytes} bytes", path.display()));
    }
    Ok(bytes)
}

/// A config that could not be loaded; the message names the key path or the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|(key, message)| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        })?;
        config.base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok(config)
    }

    /// Parse config text; on error returns (key path, message).
    pub fn parse(text: &str) -> Result<Config, (String, String)> {
        // The error's own text quotes the offending line, which may hold a secret (an inline
        // `hash_key`): report its position and the parser's message only.
        let deserializer = toml::Deserializer::parse(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |span| line_column(text, span.start));
            (
                "(syntax)".to_owned(),
                format!("line {line}, column {column}: {}", e.message().trim()),
            )
        })?;
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().message().to_owned();
            (key, message)
        })?;
        config.check()?;
        Ok(config)
    }

    /// Rules serde cannot express.
    #[allow(clippy::too_many_lines)]
    fn check(&self) -> Result<(), (String, String)> {
        let mut names = std::collections::HashSet::new();
        for (i, stage) in self.stages.iter().enumerate() {
            let key = |k: &str| format!("stages[{i}].{k}");
            if stage.name.is_empty() {
                return Err((key("name"), "must not be empty".into()));
            }
            if !names.insert(stage.name.as_str()) {
                return Err((key("name"), format!("duplicate stage name `{}`", stage.name)));
            }
            if !stage.config.is_object() {
                return Err((key("config"), "must be a table".into()));
            }
            for (name, source) in &stage.secrets {
                if source.env.is_some() == source.file.is_some() {
                    return Err((
                        key(&format!("secrets.{name}")),
                        "set exactly one of `env` or `file`".into(),
                    ));
                }
                if stage.config.get(name).is_some() {
                    return Err((
                        key(&format!("secrets.{name}")),
                        "also set in `config`; set it in one place".into(),
                    ));
                }
            }
            if stage.role == StageRole::Redaction && stage.on_error == ErrorPolicy::Skip {
                return Err((
                    key("on_error"),
                    "`skip` is not allowed on a redaction stage: a failed redaction would pass the \
                     event on unredacted (use reject, drop or quarantine)"
                        .into(),
                ));
            }
            for (table, file) in &stage.lookup_files {
                let at = key(&format!("lookup_files.{table}"));
                if table == crate::plugin::lookup::PIPELINE_TABLE || stage.lookups.contains_key(table) {
                    return Err((at, format!("table `{table}` is already defined (inline or built in)")));
                }
                crate::plugin::lookup::check_file_options(file).map_err(|message| (at, message))?;
            }
            if stage.lookups.contains_key(crate::plugin::lookup::PIPELINE_TABLE) {
                return Err((
                    key("lookups.pipeline"),
                    "`pipeline` is the built-in table (name, version); pick another name".into(),
                ));
            }
            if stage.timeout_ms == 0 {
                return Err((key("timeout_ms"), "must be at least 1".into()));
            }
            if stage.max_memory_mb == 0 || stage.max_memory_mb > 4096 {
                return Err((key("max_memory_mb"), "must be between 1 and 4096".into()));
            }
            if stage.fuel == Some(0) {
                return Err((key("fuel"), "must be at least 1".into()));
            }
            if stage.instances == Some(0) {
                return Err((key("instances"), "must be at least 1".into()));
            }
        }
        for (i, token) in self.auth.tokens.iter().enumerate() {
            if token.env.is_some() == token.file.is_some() {
                return Err((format!("auth.tokens[{i}]"), "set exactly one of `env` or `file`".into()));
            }
        }
        for (i, client) in self.auth.clients.iter().enumerate() {
            if client.name.is_empty() {
                return Err((format!("auth.clients[{i}].name"), "must not be empty".into()));
            }
            let matchers = [&client.subject_cn, &client.san_dns, &client.san_uri];
            if matchers.iter().filter(|m| m.is_some()).count() != 1 {
                return Err((
                    format!("auth.clients[{i}]"),
                    "set exactly one of `subject_cn`, `san_dns` or `san_uri`".into(),
                ));
            }
        }
        let client_cas = self.server.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
        if !self.auth.clients.is_empty() && !client_cas {
            return Err((
                "auth.clients".into(),
                "needs server.tls.client_ca_file: client certificates are verified against it".into(),
            ));
        }
        for (key, tls) in [("server.tls", &self.server.tls), ("telemetry.tls", &self.telemetry.tls)] {
            if let Some(tls) = tls
                && tls.require_client_cert
                && tls.client_ca_file.is_none()
            {
                return Err((
                    format!("{key}.require_client_cert"),
                    "needs client_ca_file to verify client certificates against".into(),
                ));
            }
        }
        if self.telemetry.tls.is_some() && self.telemetry.metrics_listen.is_none() {
            return Err((
                "telemetry.tls".into(),
                "applies to telemetry.metrics_listen, which is not set (metrics share server.listen and its server.tls)".into(),
            ));
        }
        for (i, value) in self.telemetry.event_type_labels.iter().enumerate() {
            let name_like = !value.is_empty()
                && value.len() <= 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/'));
            if !name_like || value == "other" {
                return Err((
                    format!("telemetry.event_type_labels[{i}]"),
                    "must be 1-64 characters of A-Z a-z 0-9 _ - . : / and not `other`".into(),
                ));
            }
        }
        for (key, value) in [
            ("server.header_timeout_ms", self.server.header_timeout_ms),
            ("server.idle_timeout_ms", self.server.idle_timeout_ms),
            ("server.max_connections", self.server.max_connections as u64),
        ] {
            if value == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        if self.admin.token_env.is_some() && self.admin.token_file.is_some() {
            return Err(("admin".into(), "set at most one of `token_env` or `token_file`".into()));
        }
        // serde_json refuses nesting past 128 levels whatever we say; keep the limit meaningful.
        let limits = &self.server.limits;
        if !(1..=127).contains(&limits.max_depth) {
            return Err(("server.limits.max_depth".into(), "must be between 1 and 127".into()));
        }
        // A zero here would refuse every request (or, for the queue, every event): say so at
        // start instead of clamping or failing later.
        for (key, value) in [
            ("server.limits.max_body_bytes", limits.max_body_bytes as u64),
            (
                "server.limits.max_decompressed_bytes",
                limits.max_decompressed_bytes as u64,
            ),
            ("server.limits.max_events", limits.max_events as u64),
            ("server.limits.max_event_bytes", limits.max_event_bytes as u64),
            ("server.limits.body_timeout_ms", limits.body_timeout_ms),
            ("server.limits.min_body_rate", limits.min_body_rate),
            ("storage.queue_capacity", self.storage.queue_capacity as u64),
            ("storage.max_batch_events", self.storage.max_batch_events as u64),
        ] {
            if value == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        let largest = limits
            .max_body_bytes
            .saturating_add(limits.max_decompressed_bytes.saturating_mul(5));
        if limits.max_in_flight_body_bytes < largest {
            return Err((
                "server.limits.max_in_flight_body_bytes".into(),
                format!(
                    "must hold one largest request: at least max_body_bytes + 5 × max_decompressed_bytes ({largest})"
                ),
            ));
        }
        let chain = &self.storage.chain;
        if let Some(source) = &chain.signing_key
            && source.env.is_some() == source.file.is_some()
        {
            return Err((
                "storage.chain.signing_key".into(),
                "set exactly one of `env` or `file`".into(),
            ));
        }
        if self.storage.retention.keep_days == Some(0) {
            return Err(("storage.retention.keep_days".into(), "must be at least 1".into()));
        }
        if chain.checkpoint_every_events == 0 {
            return Err((
                "storage.chain.checkpoint_every_events".into(),
                "must be at least 1".into(),
            ));
        }
        if chain.checkpoint_every_secs == 0 {
            return Err((
                "storage.chain.checkpoint_every_secs".into(),
                "must be at least 1".into(),
            ));
        }
        let mut sink_names = std::collections::HashSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            sink.check(&|k: &str| format!("sinks[{i}].{k}"))?;
            if !sink_names.insert(sink.name.as_str()) {
                return Err((
                    format!("sinks[{i}].name"),
                    format!("duplicate sink name `{}`", sink.name),
                ));
            }
        }
        if self.pipeline.batch_size == 0 {
            return Err(("pipeline.batch_size".into(), "must be at least 1".into()));
        }
        Ok(())
    }

    /// Read a secret from `{ env = "VAR" }` or `{ file = "path" }` (relative to the config
    /// file), trimmed, as text. The error names the variable or file, never the value.
    pub fn read_secret(&self, source: &SecretSource) -> Result<String, String> {
        let bytes = self.read_secret_bytes(source.env.as_deref(), source.file.as_deref())?;
        String::from_utf8(bytes).map_err(|_| "the secret is not valid UTF-8".into())
    }

    /// The one reader of secrets (stage secrets, sink tokens, ingest and admin tokens, the
    /// chain signing key): the bytes of environment variable `env` or of `file` (relative to the
    /// config file), trimmed of surrounding ASCII whitespace. Exactly one of the two must be
    /// given. Errors name the variable or file, never the value.
    pub fn read_secret_bytes(&self, env: Option<&str>, file: Option<&Path>) -> Result<Vec<u8>, String> {
        let (bytes, origin) = match (env, file) {
            (Some(var), None) => {
                let value = std::env::var_os(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
                (value.into_encoded_bytes(), format!("environment variable {var}"))
            }
            (None, Some(file)) => {
                let path = self.resolve_path(file);
                let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                (bytes, format!("file {}", path.display()))
            }
            _ => return Err("set exactly one of `env` or `file`".into()),
        };
        let secret = bytes.trim_ascii();
        if secret.is_empty() {
            return Err(format!("{origin} is empty"));
        }
        Ok(secret.to_vec())
    }

    /// Resolve a path from the config against the config file's directory.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_trimmed_and_errors_name_the_source_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::parse("").unwrap();
        c.base_dir = dir.path().to_owned();
        std::fs::write(dir.path().join("key"), b"  s3cret\n").unwrap();
        std::fs::write(dir.path().join("blank"), b" \n").unwrap();
        std::fs::write(dir.path().join("binary"), b"\xff\xfe").unwrap();
        let read = |file: &str| c.read_secret_bytes(None, Some(Path::new(file)));
        assert_eq!(read("key").unwrap(), b"s3cret");
        let err = read("blank").unwrap_err();
        assert!(err.starts_with("file ") && err.ends_with("blank is empty"), "{err}");
        assert!(read("missing").unwrap_err().starts_with("cannot read"));
        assert_eq!(read("binary").unwrap(), b"\xff\xfe", "tokens are bytes");
        let binary = SecretSource {
            env: None,
            file: Some("binary".into()),
        };
        assert_eq!(c.read_secret(&binary).unwrap_err(), "the secret is not valid UTF-8");
        let unset = c
            .read_secret_bytes(Some("AUDITFLOW_TEST_SURELY_UNSET_VAR"), None)
            .unwrap_err();
        assert_eq!(unset, "environment variable AUDITFLOW_TEST_SURELY_UNSET_VAR is not set");
        let both = c.read_secret_bytes(Some("X"), Some(Path::new("key"))).unwrap_err();
        assert_eq!(both, "set exactly one of `env` or `file`");
    }

    #[test]
    fn a_syntax_error_names_the_position_not_the_line() {
        let err =
            Config::parse("[[stages]]\nname = \"r\"\n[stages.config]\nhash_key = \"s3cret-key-value\n").unwrap_err();
        assert_eq!(err.0, "(syntax)");
        assert!(err.1.starts_with("line 4, column "), "{}", err.1);
        assert!(!err.1.contains("s3cret"), "the message quotes the line: {}", err.1);
    }

    #[test]
    fn zero_limits_are_refused_naming_the_key() {
        for (table, key) in [
            ("server.limits", "max_events"),
            ("server.limits", "max_body_bytes"),
            ("storage", "queue_capacity"),
        ] {
            let err = Config::parse(&format!("[{table}]\n{key} = 0\n")).unwrap_err();
            assert_eq!(err.0, format!("{table}.{key}"));
        }
    }

    #[test]
    fn files_are_read_only_when_regular_and_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_file_bounded(&file, 10).unwrap().len(), 10);
        assert!(read_file_bounded(&file, 9).unwrap_err().contains("larger than 9 bytes"));
        // A device that never ends is refused without reading it.
        assert!(
            read_file_bounded(Path::new("/dev/zero"), 1 << 30)
                .unwrap_err()
                .contains("not a regular file")
        );
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(
            read_file_bounded(&link, 1 << 30)
                .unwrap_err()
                .contains("not a regular file")
        );
        assert!(read_file_bounded(dir.path(), 10).is_err(), "a directory");
        // A FIFO would block the open until a writer came: refused up front.
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert!(read_file_bounded(&fifo, 10).unwrap_err().contains("not a regular file"));
    }

    #[test]
    fn typo_in_a_stage_key_names_the_key_path() {
        let err = Config::parse("[[stages]]\nname = \"redact\"\nplugin = \"redact\"\ntimout_ms = 5\n").unwrap_err();
        assert_eq!(err.0, "stages[0].timout_ms");
        assert!(err.1.contains("unknown field"), "{}", err.1);
    }

    #[test]
    fn defaults_apply_when_sections_are_missing() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.storage.url, "sqlite://auditflow.db");
        assert_eq!(c.server.limits.max_depth, 32);
    }

    #[test]
    fn skip_is_refused_on_a_redaction_stage() {
        let err =
            Config::parse("[[stages]]\nname = \"r\"\nplugin = \"redact\"\nrole = \"redaction\"\non_error = \"skip\"\n")
                .unwrap_err();
        assert_eq!(err.0, "stages[0].on_error");
        assert!(err.1.contains("not allowed on a redaction stage"), "{}", err.1);
        // The same policy on a custom stage is fine.
        Config::parse("[[stages]]\nname = \"c\"\nplugin = \"x.wasm\"\non_error = \"skip\"\n").unwrap();
    }

    #[test]
    fn secret_set_twice_is_refused() {
        let err = Config::parse(
            "[[stages]]\nname = \"r\"\nplugin = \"redact\"\n[stages.config]\nhash_key = \"x\"\n[stages.secrets]\nhash_key = { env = \"K\" }\n",
        )
        .unwrap_err();
        assert_eq!(err.0, "stages[0].secrets.hash_key");
    }

    #[test]
    fn sinks_get_vendor_defaults_and_checked_limits() {
        let c = Config::parse(
            "[[sinks]]\nname = \"splunk\"\ntype = \"splunk_hec\"\nendpoint = \"http://127.0.0.1:8088\"\ntoken = { env = \"T\" }\n\
             [[sinks]]\nname = \"dd\"\ntype = \"datadog_logs\"\nendpoint = \"http://127.0.0.1:8089\"\ntoken = { env = \"K\" }\n\
             [[sinks]]\nname = \"lake\"\ntype = \"http\"\nendpoint = \"http://127.0.0.1:9000/ingest\"\n",
        )
        .unwrap();
        assert_eq!(c.sinks[0].max_bytes(), 1_000_000);
        assert_eq!(c.sinks[0].formatter(), "format-splunk");
        assert_eq!(c.sinks[1].max_bytes(), 5_000_000);
        assert_eq!(c.sinks[1].max_events(), 1000);
        assert_eq!(c.sinks[2].formatter(), "format-ocsf");
        assert_eq!(c.sinks[0].compression, SinkCompression::Gzip);

        let over = "[[sinks]]\nname = \"dd\"\ntype = \"datadog_logs\"\nendpoint = \"http://x\"\ntoken = { env = \"K\" }\n[sinks.batch]\nmax_events = 5000\n";
        assert_eq!(Config::parse(over).unwrap_err().0, "sinks[0].batch.max_events");
        let no_token = "[[sinks]]\nname = \"s\"\ntype = \"splunk_hec\"\nendpoint = \"http://x\"\n";
        assert_eq!(Config::parse(no_token).unwrap_err().0, "sinks[0].token");
        let ack_on_http = "[[sinks]]\nname = \"h\"\ntype = \"http\"\nendpoint = \"http://x\"\nack = true\n";
        assert_eq!(Config::parse(ack_on_http).unwrap_err().0, "sinks[0].ack");
        let bad_name = "[[sinks]]\nname = \"a b\"\ntype = \"http\"\nendpoint = \"http://x\"\n";
        assert_eq!(Config::parse(bad_name).unwrap_err().0, "sinks[0].name");
        let typo = "[[sinks]]\nname = \"h\"\ntype = \"http\"\nendpoint = \"http://x\"\n[sinks.batch]\nmax_event = 3\n";
        assert_eq!(Config::parse(typo).unwrap_err().0, "sinks[0].batch.max_event");
    }
}

#[cfg(test)]
mod doc_tests {
    /// docs/CONFIG.md is written by hand from the doc comments above; this keeps the two from
    /// drifting: every deserialised field of this file must appear in the reference.
    #[test]
    fn every_config_key_is_documented_in_config_md() {
        let source = include_str!("config.rs");
        let doc = include_str!("../../docs/CONFIG.md");
        let mut missing = Vec::new();
        let mut skip_next = false;
        for line in source.lines().map(str::trim) {
            if line.starts_with("#[cfg(test)]") {
                break;
            }
            if line.starts_with("#[serde(skip)]") {
                skip_next = true;
                continue;
            }
            let Some(rest) = line.strip_prefix("pub ") else {
                continue;
            };
            let Some((name, _)) = rest.split_once(':') else {
                continue;
            };
            if name.contains(' ') || name.contains('(') {
                continue;
            }
            if std::mem::take(&mut skip_next) {
                continue;
            }
            if !doc.contains(&format!("`{name}`")) && !doc.contains(&format!("{name}]")) {
                missing.push(name.to_owned());
            }
        }
        assert!(missing.is_empty(), "keys missing from docs/CONFIG.md: {missing:?}");
    }
}
