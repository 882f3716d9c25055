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
//! - [`config`]: TOML → typed config; [`telemetry`]: logs and metrics; [`health`].
//!
//! `event` and `config` are the ground floor; `main.rs` wires the rest together.

pub mod config;
pub mod event;
pub mod health;
pub mod ingest;
pub mod pipeline;
pub mod plugin;
pub mod server;
pub mod store;
pub mod telemetry;
