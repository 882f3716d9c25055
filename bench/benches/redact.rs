//! The redact stage's cost per event: the reference redactor as a Wasm component called
//! through the plugin host, next to the same redaction code compiled natively, on the same
//! batch of 256 dev-set events, in one run. `wasm_passthrough` is the floor under the Wasm
//! figure: a plugin that keeps every event unchanged (tests/plugins/drop-marker), i.e. what
//! moving the batch across the boundary and back costs under the current contract.
//!
//!   cargo bench -p auditflow-bench --bench redact

use std::collections::BTreeMap;

use auditflow::plugin::bindings::to_wit;
use auditflow::plugin::host::StageContext;
use auditflow::plugin::{InstanceLimits, PluginEngine, TransformPool};
use auditflow_bench::{dev_events, to_sdk};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 256;

fn config() -> serde_json::Value {
    serde_json::json!({ "fields": { "actor.id": "hash" }, "hash_key": "bench-key" })
}

fn redact(c: &mut Criterion) {
    let events = dev_events(BATCH);
    let wit: Vec<_> = events.iter().map(to_wit).collect();
    let sdk: Vec<_> = wit.iter().map(to_sdk).collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = PluginEngine::new().unwrap();
    let component = engine.load("redact", std::path::Path::new(".")).unwrap();
    let pool = rt
        .block_on(TransformPool::new(
            &engine,
            &component,
            StageContext {
                stage: "redact".into(),
                lookups: BTreeMap::new(),
            },
            config().to_string(),
            InstanceLimits {
                instances: 1,
                ..InstanceLimits::default()
            },
        ))
        .unwrap();
    let native = redact::Redactor::from_config(&config()).unwrap();
    let marker = auditflow_artifacts::path("drop-marker").display().to_string();
    let passthrough = engine.load(&marker, std::path::Path::new(".")).unwrap();
    let passthrough = rt
        .block_on(TransformPool::new(
            &engine,
            &passthrough,
            StageContext {
                stage: "passthrough".into(),
                lookups: BTreeMap::new(),
            },
            "{}".into(),
            InstanceLimits {
                instances: 1,
                ..InstanceLimits::default()
            },
        ))
        .unwrap();

    let mut group = c.benchmark_group("redact_batch_256");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("native", |b| b.iter(|| native.redact_batch(sdk.clone())));
    group.bench_function("wasm", |b| b.to_async(&rt).iter(|| pool.process(&wit)));
    group.bench_function("wasm_passthrough", |b| {
        b.to_async(&rt).iter(|| passthrough.process(&wit))
    });
    group.finish();
}

criterion_group!(benches, redact);
criterion_main!(benches);
