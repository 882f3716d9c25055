//! What a plugin's store holds and what it may import: logging, the lookup tables its stage
//! was granted, and a WASI context with nothing in it (no files, env, args or network).

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::Level;
use super::bindings::transform::auditflow::plugin::{host, types};

/// Lookup tables granted to one stage: table name → key → value.
pub type LookupTables = BTreeMap<String, BTreeMap<String, String>>;

/// Per-stage facts shared by all of its instances.
#[derive(Debug)]
pub struct StageContext {
    pub stage: String,
    pub lookups: LookupTables,
}

/// The data of one plugin instance's `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    context: Arc<StageContext>,
}

impl HostState {
    pub fn new(context: Arc<StageContext>, max_memory_bytes: usize) -> HostState {
        HostState {
            // The builder's defaults deny everything: stdin closed, stdout/stderr discarded,
            // no env, args or preopened dirs, every socket address refused.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(max_memory_bytes)
                .instances(16)
                .tables(64)
                .memories(16)
                .trap_on_grow_failure(true)
                .build(),
            context,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        // Plugins are told never to log event contents; bound what one line can carry anyway.
        let message: String = message.chars().take(1024).collect();
        let stage = self.context.stage.as_str();
        match level {
            Level::Trace => tracing::trace!(target: "auditflow::plugin", stage, "{message}"),
            Level::Debug => tracing::debug!(target: "auditflow::plugin", stage, "{message}"),
            Level::Info => tracing::info!(target: "auditflow::plugin", stage, "{message}"),
            Level::Warn => tracing::warn!(target: "auditflow::plugin", stage, "{message}"),
            Level::Error => tracing::error!(target: "auditflow::plugin", stage, "{message}"),
        }
    }

    fn lookup(&mut self, table: String, key: String) -> Option<String> {
        self.context.lookups.get(&table)?.get(&key).cloned()
    }
}
