//! The wasmtime plugin host.
//!
//! - [`engine`]: one `Engine` per process (epoch ticker, compilation cache) and loading of
//!   components, built-in or from disk, with the contract-version check.
//! - [`bindings`]: the WIT bindings and conversions between [`crate::event::Event`] and the
//!   WIT `event` record.
//! - [`host`]: what plugins may import (logging, lookup tables) and the empty WASI context.
//! - [`lookup`]: the lookup tables a stage is granted (inline, read-only files, `pipeline`).
//! - [`pool`]: warm instances per stage, one `Store` each, discarded after any trap.
//!
//! This module knows events and config, nothing of HTTP, stores or sinks.

pub mod bindings;
pub mod engine;
pub mod host;
pub mod lookup;
pub mod pool;

pub use engine::{EngineOptions, LoadedComponent, PluginEngine};
pub use pool::{BatchPool, FormatterPool, InstanceLimits, TransformPool};

/// Everything that can go wrong with a plugin. Messages never contain event contents.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{plugin}`: {message}")]
    Load { plugin: String, message: String },
    #[error("stage `{stage}`: init rejected the config: {message}")]
    Init { stage: String, message: String },
    #[error("stage `{stage}`: plugin trapped: {message}")]
    Trap { stage: String, message: String },
    #[error("stage `{stage}`: plugin call exceeded its {timeout_ms} ms timeout")]
    Timeout { stage: String, timeout_ms: u64 },
    #[error("stage `{stage}`: plugin broke the contract: {message}")]
    Contract { stage: String, message: String },
}
