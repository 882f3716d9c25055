//! The redact stage's cost per event: the reference redactor as a Wasm component called
//! through the plugin host, next to the same redaction code compiled natively, on the same
//! batch of 256 dev-set events, in one run. `wasm_passthrough` is the floor under the Wasm
//! figure: a plugin that keeps every event unchanged (tests/plugins/drop-marker), i.e. what
//! moving the batch across the boundary and back costs under the current contract.
//! `wasm_inbound_only` runs that plugin on the same batch with every event marked `drop_me`,
//! so every outcome is a bare `drop` and nothing is lifted back: what moving the batch *in*
//! costs, i.e. the floor of any contract that still lowers every typed field (a contract with
//! per-field patch outcomes, say) when no event is changed.
//! `native_mask`/`wasm_mask` mask the actor instead of hashing it, to show what the keyed
//! HMAC-SHA256 costs on each side. `wasm_no_epoch` runs the same Wasm redactor on an engine
//! without epoch checks: what the sandbox's interruptibility costs. It is a measurement only;
//! auditflow itself never runs plugins that way (a looping plugin could not be stopped).
//!
//!   cargo bench -p auditflow-bench --bench redact

use std::collections::BTreeMap;

use auditflow::plugin::bindings::to_wit;
use auditflow::plugin::host::StageContext;
use auditflow::plugin::{EngineOptions, InstanceLimits, PluginEngine, TransformPool};
use auditflow_bench::{dev_events, to_sdk};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 256;

/// The quick start's redaction: the actor pseudonymised with keyed HMAC-SHA256.
fn config() -> serde_json::Value {
    serde_json::json!({ "fields": { "actor.id": "hash" }, "hash_key": "bench-key" })
}

/// The same with the actor masked: no hashing, to show what HMAC-SHA256 costs on each side
/// (native SHA-256 uses the CPU's SHA instructions where it has them; Wasm cannot).
fn mask_config() -> serde_json::Value {
    serde_json::json!({ "fields": { "actor.id": "mask" } })
}

/// A warm single-instance pool of `plugin` (built-in name or path) initialised with `config`.
fn pool(rt: &tokio::runtime::Runtime, engine: &PluginEngine, plugin: &str, config: String) -> TransformPool {
    let component = engine.load(plugin, std::path::Path::new(".")).unwrap();
    let context = StageContext {
        stage: "bench".into(),
        lookups: BTreeMap::new(),
    };
    let limits = InstanceLimits {
        instances: 1,
        ..InstanceLimits::default()
    };
    rt.block_on(TransformPool::new(engine, &component, context, config, limits))
        .unwrap()
}

fn redact(c: &mut Criterion) {
    let events = dev_events(BATCH);
    let wit: Vec<_> = events.iter().map(to_wit).collect();
    let sdk: Vec<_> = wit.iter().map(to_sdk).collect();
    // Same batch, every event marked for the passthrough plugin to drop ("drop_me" is 4 bytes
    // shorter than the dev set's "tool_invoke"; one short string of ~12 per event).
    let marked: Vec<_> = wit
        .iter()
        .cloned()
        .map(|mut e| {
            e.event_type = "drop_me".into();
            e
        })
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = PluginEngine::new().unwrap();
    let wasm = pool(&rt, &engine, "redact", config().to_string());
    let native = redact::Redactor::from_config(&config()).unwrap();
    let wasm_mask = pool(&rt, &engine, "redact", mask_config().to_string());
    let native_mask = redact::Redactor::from_config(&mask_config()).unwrap();
    let marker = auditflow_artifacts::path("drop-marker").display().to_string();
    let passthrough = pool(&rt, &engine, &marker, "{}".into());
    let unchecked = PluginEngine::with_options(EngineOptions {
        epoch_interruption: false,
        ..EngineOptions::default()
    })
    .unwrap();
    let wasm_no_epoch = pool(&rt, &unchecked, "redact", config().to_string());

    let mut group = c.benchmark_group("redact_batch_256");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("native", |b| b.iter(|| native.redact_batch(sdk.clone())));
    group.bench_function("wasm", |b| b.to_async(&rt).iter(|| wasm.process(&wit)));
    group.bench_function("wasm_passthrough", |b| {
        b.to_async(&rt).iter(|| passthrough.process(&wit))
    });
    group.bench_function("wasm_inbound_only", |b| {
        b.to_async(&rt).iter(|| passthrough.process(&marked))
    });
    group.bench_function("native_mask", |b| b.iter(|| native_mask.redact_batch(sdk.clone())));
    group.bench_function("wasm_mask", |b| b.to_async(&rt).iter(|| wasm_mask.process(&wit)));
    group.bench_function("wasm_no_epoch", |b| {
        b.to_async(&rt).iter(|| wasm_no_epoch.process(&wit))
    });
    group.finish();
}

criterion_group!(benches, redact);
criterion_main!(benches);
