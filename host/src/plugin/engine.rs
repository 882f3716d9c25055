//! The process-wide wasmtime `Engine` and the loading of plugin components.
//!
//! Components are compiled once per process (and cached on disk by wasmtime's compilation
//! cache when it is available), linked once, and shared by every instance of a stage.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::PluginError;
use super::bindings::{CONTRACT_PACKAGE, CONTRACT_VERSION, transform};
use super::host::HostState;

/// How often the epoch advances. Guests yield to the executor at each tick, which keeps tokio
/// responsive and lets a wall-clock timeout cancel a call that loops forever.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine, the linker every plugin is instantiated with, and the epoch ticker.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    fuel: bool,
    epochs: bool,
    pooling: bool,
    linker: Linker<HostState>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// How to size the engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Meter fuel (needed by any stage that sets `fuel`).
    pub fuel: bool,
    /// Largest linear memory any instance may grow to.
    pub max_memory_bytes: usize,
    /// Component instances the pooling allocator holds at once.
    pub instance_slots: u32,
    /// Check the epoch at every loop back-edge and function entry, so a call can yield and its
    /// wall-clock timeout can stop it. Always on in the server and the CLI: without it a plugin
    /// that loops forever holds its thread. Only the redact benchmark turns it off, to measure
    /// what the checks cost.
    pub epoch_interruption: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            fuel: false,
            max_memory_bytes: 256 << 20,
            instance_slots: 64,
            epoch_interruption: true,
        }
    }
}

/// Which contract world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldKind {
    /// Contract 1.0 `stage`: whole typed events in and out.
    Transform,
    /// Contract 1.1 `batch-stage`: the fields a stage asks for, packed; patches back.
    BatchTransform,
    Formatter,
}

/// A compiled plugin component, ready to be pre-linked for a stage.
#[derive(Clone)]
pub struct LoadedComponent {
    /// What the config named (`redact`, or a path).
    pub name: String,
    pub component: Component,
    pub world: WorldKind,
}

impl PluginEngine {
    /// An engine with default options (no fuel metering; the timeout bounds every call).
    pub fn new() -> Result<PluginEngine, PluginError> {
        Self::with_options(EngineOptions::default())
    }

    /// An engine sized for `config`: fuel metering only when some stage asks for it, pooled
    /// memories as large as the largest stage's `max_memory_mb`, enough instance slots for
    /// every stage's pool twice over (a hot reload builds the new pipeline beside the old),
    /// plus each sink's formatter instance (sinks are not reloaded).
    pub fn for_config(config: &crate::config::Config) -> Result<PluginEngine, PluginError> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let stage_instances: usize = config.stages.iter().map(|s| s.instances.unwrap_or(cores)).sum();
        let instances = 2 * stage_instances + config.sinks.len();
        Self::with_options(EngineOptions {
            fuel: config.stages.iter().any(|s| s.fuel.is_some()),
            max_memory_bytes: config
                .stages
                .iter()
                .map(|s| (s.max_memory_mb as usize) << 20)
                .max()
                .unwrap_or(256 << 20),
            instance_slots: (instances + 16).max(64) as u32,
            epoch_interruption: true,
        })
    }

    pub fn with_options(options: EngineOptions) -> Result<PluginEngine, PluginError> {
        let err = |message: String| PluginError::Load {
            plugin: "(engine)".into(),
            message,
        };
        // The pooling allocator makes fresh instances (after a trap, on reload) cheap, but
        // reserves a lot of address space up front; where the host cannot reserve it, fall
        // back to on-demand allocation rather than refuse to start.
        match Engine::new(&Self::wasmtime_config(&options, true)) {
            Ok(engine) => Self::finish(engine, &options, true),
            Err(e) => {
                tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand instance allocation");
                let engine = Engine::new(&Self::wasmtime_config(&options, false)).map_err(|e| err(e.to_string()))?;
                Self::finish(engine, &options, false)
            }
        }
    }

    fn wasmtime_config(options: &EngineOptions, pooling: bool) -> Config {
        let mut config = Config::new();
        config.epoch_interruption(options.epoch_interruption);
        config.wasm_component_model(true);
        // A plugin that recurses without bound must trap, not overflow the host's stack.
        config.max_wasm_stack(1 << 20);
        config.consume_fuel(options.fuel);
        // `perf` can name the functions of JIT-compiled plugins from /tmp/perf-PID.map.
        if std::env::var("AUDITFLOW_WASM_PROFILER").is_ok_and(|v| v == "perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Ok(cache) = wasmtime::Cache::from_file(None) {
            config.cache(Some(cache));
        }
        if pooling {
            let mut pool = PoolingAllocationConfig::default();
            let slots = options.instance_slots;
            pool.total_component_instances(slots)
                // A Rust guest is a few core instances and one memory per component.
                .total_core_instances(slots * 4)
                .total_memories(slots * 2)
                .total_tables(slots * 4)
                .total_stacks(slots)
                .max_memory_size(options.max_memory_bytes);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        config
    }

    fn finish(engine: Engine, options: &EngineOptions, pooling: bool) -> Result<PluginEngine, PluginError> {
        let err = |message: String| PluginError::Load {
            plugin: "(engine)".into(),
            message,
        };

        let mut linker = Linker::new(&engine);
        // Rust wasm32-wasip2 guests import WASI even when they never use it; link it against
        // an empty context so those imports resolve and grant nothing.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| err(e.to_string()))?;
        transform::Transform::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| err(e.to_string()))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.weak();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .map_err(|e| err(e.to_string()))?;
        }
        Ok(PluginEngine {
            inner: Arc::new(Inner {
                engine,
                fuel: options.fuel,
                epochs: options.epoch_interruption,
                pooling,
                linker,
                ticker_stop,
            }),
        })
    }

    /// Whether instances come from the pooling allocator (false: on-demand fallback).
    pub fn pooling(&self) -> bool {
        self.inner.pooling
    }

    pub fn fuel_enabled(&self) -> bool {
        self.inner.fuel
    }

    /// Whether calls check the epoch (see [`EngineOptions::epoch_interruption`]).
    pub fn epochs_enabled(&self) -> bool {
        self.inner.epochs
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn linker(&self) -> &Linker<HostState> {
        &self.inner.linker
    }

    /// Load a plugin named in config: a built-in name (`redact`, `enrich`, …) or a path to a
    /// `.wasm` component, relative to `base_dir`.
    pub fn load(&self, plugin: &str, base_dir: &Path) -> Result<LoadedComponent, PluginError> {
        let err = |message: String| PluginError::Load {
            plugin: plugin.to_owned(),
            message,
        };
        let component = if let Some(bytes) = auditflow_artifacts::builtin(plugin) {
            Component::from_binary(&self.inner.engine, bytes).map_err(|e| err(format!("{e:#}")))?
        } else if plugin.ends_with(".wasm") {
            let path = base_dir.join(plugin);
            if !path.is_file() {
                return Err(err(format!("file not found: {}", path.display())));
            }
            Component::from_file(&self.inner.engine, &path)
                .map_err(|e| err(format!("{} is not a loadable component: {e:#}", path.display())))?
        } else {
            let builtins: Vec<_> = auditflow_artifacts::builtin_names().collect();
            return Err(err(format!(
                "not a built-in plugin ({}) and not a path to a .wasm file",
                builtins.join(", ")
            )));
        };
        let world = self.world_of(&component).map_err(err)?;
        Ok(LoadedComponent {
            name: plugin.to_owned(),
            component,
            world,
        })
    }

    /// Find which contract interface the component exports (preferring 1.1's `batch-stage`
    /// when it has several), and refuse an incompatible major version with a message naming
    /// both versions.
    fn world_of(&self, component: &Component) -> Result<WorldKind, String> {
        let ty = component.component_type();
        let mut found = Vec::new();
        let mut best: Option<WorldKind> = None;
        for (name, _) in ty.exports(&self.inner.engine) {
            let Some(rest) = name.strip_prefix(CONTRACT_PACKAGE).and_then(|r| r.strip_prefix('/')) else {
                continue;
            };
            let (iface, version) = rest.split_once('@').unwrap_or((rest, "0.0.0"));
            found.push(format!("{iface}@{version}"));
            let kind = match iface {
                "batch-stage" => WorldKind::BatchTransform,
                "stage" => WorldKind::Transform,
                "format" => WorldKind::Formatter,
                _ => continue,
            };
            let major = |v: &str| v.split('.').next().unwrap_or("").to_owned();
            if major(version) != major(CONTRACT_VERSION) {
                return Err(format!(
                    "built for {CONTRACT_PACKAGE}@{version}, but this auditflow implements \
                     {CONTRACT_PACKAGE}@{CONTRACT_VERSION} (major versions must match)"
                ));
            }
            if best != Some(WorldKind::BatchTransform) {
                best = Some(kind);
            }
        }
        best.ok_or_else(|| {
            if found.is_empty() {
                format!("exports no {CONTRACT_PACKAGE} interface: not an auditflow plugin")
            } else {
                format!(
                    "exports {} but none of `batch-stage`, `stage` or `format`",
                    found.join(", ")
                )
            }
        })
    }
}
