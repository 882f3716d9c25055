//! auditflow: an audit-event pipeline.
//!
//! The data path reads top to bottom, one module per step:
//!
//! - [`ingest`]: HTTP routes (`POST /v1/events`, SARK's `/api/v1/gateway/audit`), auth,
//!   body limits, parsing into canonical [`event::Event`]s.
//! - [`pipeline`]: the chain of Wasm stages from the config, with per-stage error policies.
//! - [`plugin`]: the wasmtime engine: compiled components, warm instance pools, host imports.
//! - [`store`]: the `Store` trait, SQLite (embedded default) and PostgreSQL, group commit and
//!   the hash chain.
//! - [`sink`]: SIEM forwarding (Splunk HEC, Datadog Logs, HTTP) from the store as outbox,
//!   each sink with its formatter plugin, durable cursor, retries, breaker and dead letters.
//! - [`server`]: wiring, the listeners (TCP, TLS, HTTP/1.1 and HTTP/2), hot reload (SIGHUP,
//!   `POST /admin/reload`).
//! - [`shutdown`]: the one signal every long-running task stops on.
//! - [`config`]: TOML → typed config; [`telemetry`]: logs, metrics (`/metrics`), traces and
//!   the per-request layer; [`health`]: `/health`, `/health/ready`, `/health/detailed`.
//!
//! `event` and `config` are the ground floor; `main.rs` wires the rest together.

pub mod config;
pub mod event;
pub mod health;
pub mod ingest;
pub mod pipeline;
pub mod plugin;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod slot;
pub mod store;
pub mod telemetry;
