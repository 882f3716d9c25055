//! Warm plugin instances for one stage.
//!
//! Each instance has its own `Store` (never one store for the chain: a trap poisons the whole
//! store, and limits are per store). An instance is created from the stage's pre-linked
//! `InstancePre`, initialised with the stage config, reused across calls, and discarded after
//! any trap, timeout or contract breach; the next call gets a fresh one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::component::InstancePre;
use wasmtime::{Store, UpdateDeadline};

use super::PluginError;
use super::bindings::{Field, PackedEvents, Verdicts, WitEvent, WitOutcome, batch_transform, formatter, transform};
use super::engine::{LoadedComponent, PluginEngine, WorldKind};
use super::host::{HostState, StageContext};

/// Per-call limits of one stage.
#[derive(Debug, Clone, Copy)]
pub struct InstanceLimits {
    /// Wall-clock budget of one plugin call (and of `init`).
    pub timeout: Duration,
    /// Linear memory an instance may grow to; a failed grow traps.
    pub max_memory_bytes: usize,
    /// Warm instances kept (and the most calls running at once).
    pub instances: usize,
    /// Instruction budget per call; needs an engine built with fuel enabled.
    pub fuel: Option<u64>,
}

impl Default for InstanceLimits {
    fn default() -> Self {
        InstanceLimits {
            timeout: Duration::from_secs(5),
            max_memory_bytes: 256 << 20,
            instances: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            fuel: None,
        }
    }
}

/// A contract world the pool can drive: how to instantiate and initialise it.
pub trait PluginWorld: Sized + Send + 'static {
    type Pre: Clone + Send + Sync + 'static;
    const KIND: WorldKind;
    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Self>> + Send;
    /// Initialise with the stage config; `Ok` holds the fields the stage reads (contract 1.1;
    /// empty for the 1.0 worlds, which are handed whole events).
    fn init(
        &self,
        store: &mut Store<HostState>,
        config_json: &str,
    ) -> impl Future<Output = wasmtime::Result<Result<Vec<Field>, String>>> + Send;
}

impl PluginWorld for transform::Transform {
    type Pre = transform::TransformPre<HostState>;
    const KIND: WorldKind = WorldKind::Transform;
    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        transform::TransformPre::new(pre)
    }
    async fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        pre.instantiate_async(store).await
    }
    async fn init(
        &self,
        store: &mut Store<HostState>,
        config_json: &str,
    ) -> wasmtime::Result<Result<Vec<Field>, String>> {
        Ok(self
            .auditflow_plugin_stage()
            .call_init(store, config_json)
            .await?
            .map(|()| Vec::new()))
    }
}

impl PluginWorld for batch_transform::BatchTransform {
    type Pre = batch_transform::BatchTransformPre<HostState>;
    const KIND: WorldKind = WorldKind::BatchTransform;
    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        batch_transform::BatchTransformPre::new(pre)
    }
    async fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        pre.instantiate_async(store).await
    }
    async fn init(
        &self,
        store: &mut Store<HostState>,
        config_json: &str,
    ) -> wasmtime::Result<Result<Vec<Field>, String>> {
        self.auditflow_plugin_batch_stage().call_init(store, config_json).await
    }
}

impl PluginWorld for formatter::Formatter {
    type Pre = formatter::FormatterPre<HostState>;
    const KIND: WorldKind = WorldKind::Formatter;
    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        formatter::FormatterPre::new(pre)
    }
    async fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        pre.instantiate_async(store).await
    }
    async fn init(
        &self,
        store: &mut Store<HostState>,
        config_json: &str,
    ) -> wasmtime::Result<Result<Vec<Field>, String>> {
        Ok(self
            .auditflow_plugin_format()
            .call_init(store, config_json)
            .await?
            .map(|()| Vec::new()))
    }
}

struct Instance<W> {
    store: Store<HostState>,
    bindings: W,
}

/// The warm instances of one stage's plugin.
pub struct Pool<W: PluginWorld> {
    stage: String,
    engine: PluginEngine,
    pre: W::Pre,
    context: Arc<StageContext>,
    config_json: String,
    limits: InstanceLimits,
    idle: Mutex<Vec<Instance<W>>>,
    permits: Semaphore,
    /// The fields the stage reads (contract 1.1), from its first `init`.
    reads: Vec<Field>,
}

pub type TransformPool = Pool<transform::Transform>;
pub type BatchPool = Pool<batch_transform::BatchTransform>;
pub type FormatterPool = Pool<formatter::Formatter>;

impl<W: PluginWorld> Pool<W> {
    /// Pre-link the component and create (and initialise) one instance, so a bad config or a
    /// broken plugin is refused at start-up, not on the first event.
    pub async fn new(
        engine: &PluginEngine,
        component: &LoadedComponent,
        context: StageContext,
        config_json: String,
        limits: InstanceLimits,
    ) -> Result<Self, PluginError> {
        let stage = context.stage.clone();
        if limits.fuel.is_some() && !engine.fuel_enabled() {
            return Err(PluginError::Load {
                plugin: component.name.clone(),
                message: "stage sets `fuel` but the engine was built without fuel metering".into(),
            });
        }
        if component.world != W::KIND {
            return Err(PluginError::Load {
                plugin: component.name.clone(),
                message: format!(
                    "implements the {:?} world, but stage `{stage}` needs {:?}",
                    component.world,
                    W::KIND
                ),
            });
        }
        let load_err = |e: wasmtime::Error| PluginError::Load {
            plugin: component.name.clone(),
            message: format!("{e:#}"),
        };
        let pre = engine
            .linker()
            .instantiate_pre(&component.component)
            .map_err(load_err)?;
        let pre = W::pre(pre).map_err(load_err)?;
        let pool = Pool {
            stage,
            engine: engine.clone(),
            pre,
            context: Arc::new(context),
            config_json,
            limits,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(limits.instances.max(1)),
            reads: Vec::new(),
        };
        let (first, reads) = pool.fresh_instance().await?;
        let pool = Pool { reads, ..pool };
        pool.put_back(first);
        Ok(pool)
    }

    /// The fields the stage reads (contract 1.1 stages; empty otherwise).
    pub fn reads(&self) -> &[Field] {
        &self.reads
    }

    pub fn stage(&self) -> &str {
        &self.stage
    }

    async fn fresh_instance(&self) -> Result<(Instance<W>, Vec<Field>), PluginError> {
        let mut store = Store::new(
            self.engine.engine(),
            HostState::new(self.context.clone(), self.limits.max_memory_bytes),
        );
        store.limiter(|s| &mut s.limits);
        // Yield to the executor at every epoch tick, so a long call neither starves tokio nor
        // escapes the wall-clock timeout that wraps every call.
        if self.engine.epochs_enabled() {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        }
        self.refuel(&mut store);
        let started = Instant::now();
        let run = async {
            let bindings = W::instantiate(&self.pre, &mut store).await?;
            let init = bindings.init(&mut store, &self.config_json).await?;
            wasmtime::Result::Ok((bindings, init))
        };
        match tokio::time::timeout(self.limits.timeout, run).await {
            Err(_) => Err(PluginError::Timeout {
                stage: self.stage.clone(),
                timeout_ms: self.limits.timeout.as_millis() as u64,
            }),
            Ok(Err(e)) => Err(PluginError::Trap {
                stage: self.stage.clone(),
                message: trap_message(&e),
            }),
            Ok(Ok((_, Err(message)))) => Err(PluginError::Init {
                stage: self.stage.clone(),
                message,
            }),
            Ok(Ok((bindings, Ok(reads)))) => {
                tracing::debug!(stage = %self.stage, elapsed_us = started.elapsed().as_micros() as u64, "plugin instance ready");
                Ok((Instance { store, bindings }, reads))
            }
        }
    }

    /// Give the store its per-call fuel budget (unlimited when the stage sets none).
    fn refuel(&self, store: &mut Store<HostState>) {
        if self.engine.fuel_enabled() {
            // Cannot fail: fuel is enabled on this engine.
            let _ = store.set_fuel(self.limits.fuel.unwrap_or(u64::MAX));
        }
    }

    fn put_back(&self, instance: Instance<W>) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(instance);
        }
    }

    /// Run `call` on a warm instance. The instance is returned to the pool only when the call
    /// succeeded; after a trap or timeout it is dropped with its store.
    async fn with_instance<R>(
        &self,
        call: impl AsyncFnOnce(&W, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let _permit = self.permits.acquire().await.map_err(|_| PluginError::Contract {
            stage: self.stage.clone(),
            message: "stage is shut down".into(),
        })?;
        let warm = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut instance = match warm {
            Some(i) => i,
            None => self.fresh_instance().await?.0,
        };
        self.refuel(&mut instance.store);
        match tokio::time::timeout(self.limits.timeout, call(&instance.bindings, &mut instance.store)).await {
            Ok(Ok(result)) => {
                self.put_back(instance);
                Ok(result)
            }
            Ok(Err(e)) => Err(PluginError::Trap {
                stage: self.stage.clone(),
                message: trap_message(&e),
            }),
            Err(_) => Err(PluginError::Timeout {
                stage: self.stage.clone(),
                timeout_ms: self.limits.timeout.as_millis() as u64,
            }),
        }
    }
}

impl TransformPool {
    /// Run the stage on a batch; exactly one outcome per event, in order.
    pub async fn process(&self, events: &[WitEvent]) -> Result<Vec<WitOutcome>, PluginError> {
        let outcomes = self
            .with_instance(async |b: &transform::Transform, store: &mut Store<HostState>| {
                b.auditflow_plugin_stage().call_process(store, events).await
            })
            .await?;
        if outcomes.len() != events.len() {
            return Err(PluginError::Contract {
                stage: self.stage.clone(),
                message: format!("returned {} outcomes for {} events", outcomes.len(), events.len()),
            });
        }
        Ok(outcomes)
    }
}

impl BatchPool {
    /// Run the stage on a packed batch. Indexes in the verdicts are checked against the batch.
    pub async fn process(&self, events: &PackedEvents) -> Result<Verdicts, PluginError> {
        let count = events.count;
        let verdicts = self
            .with_instance(
                async |b: &batch_transform::BatchTransform, store: &mut Store<HostState>| {
                    b.auditflow_plugin_batch_stage().call_process(store, events).await
                },
            )
            .await?;
        let out_of_range = verdicts
            .patches
            .iter()
            .map(|p| p.event)
            .chain(verdicts.dropped.iter().copied())
            .chain(verdicts.failed.iter().map(|f| f.0))
            .find(|&i| i >= count);
        if let Some(i) = out_of_range {
            return Err(PluginError::Contract {
                stage: self.stage.clone(),
                message: format!("answered for event {i} of a batch of {count}"),
            });
        }
        Ok(verdicts)
    }
}

impl FormatterPool {
    /// Format a batch; exactly one result per event, in order.
    pub async fn format(&self, events: &[WitEvent]) -> Result<Vec<Result<String, String>>, PluginError> {
        let out = self
            .with_instance(async |b: &formatter::Formatter, store: &mut Store<HostState>| {
                b.auditflow_plugin_format().call_format(store, events).await
            })
            .await?;
        if out.len() != events.len() {
            return Err(PluginError::Contract {
                stage: self.stage.clone(),
                message: format!("returned {} documents for {} events", out.len(), events.len()),
            });
        }
        Ok(out)
    }
}

/// A trap's message without the wasm backtrace noise; never includes event data (traps carry
/// code locations, not values).
fn trap_message(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{e}"),
    }
}
