//! What a stage costs the server per event, on one batch of 256 dev-set events, in one run:
//! each Wasm case is a one-stage [`Pipeline`] run on a copy of the batch (`Pipeline::run`:
//! handing the events to the plugin in its contract's form, the guest's work, checking and
//! applying what came back, the end-of-chain checks), exactly the path a request takes.
//!
//! - `clone_only`: copying the batch, which every case below includes (the floor).
//! - `native`: the reference redactor compiled natively, on a copy of the batch.
//! - `wasm`: the same redactor as the built-in Wasm stage (contract 1.1: the fields it reads
//!   packed into one buffer, patches back).
//! - `wasm_v10`: the same redactor code exported on contract 1.0 (whole records in and out),
//!   so the two contracts are compared on the same work.
//! - `wasm10_passthrough`: a 1.0 plugin that keeps every event unchanged (drop-marker): the
//!   floor of any 1.0 stage.
//! - `wasm11_touch_two`: a 1.1 plugin that reads two fields and changes one per event
//!   (touch-two): the boundary target of the performance issue.
//! - `native_mask`/`wasm_mask`: the actor masked instead of hashed, to show what the keyed
//!   HMAC-SHA256 costs on each side.
//! - `wasm_no_epoch`: the Wasm redactor on an engine without epoch checks: what the sandbox's
//!   interruptibility costs. A measurement only; auditflow never runs plugins that way.
//! - `wasm_baseline`: only when `BENCH_REDACT_BASELINE` names a redact component built from an
//!   older commit (either contract): the same stage as it was, in the same run, to compare a
//!   change's cost (docs/BENCHMARKS.md says how it was built).
//!
//!
//! `redact_240k` runs the Wasm redactor (and the baseline, when given) on one event whose
//! metadata holds one ≈ 240 KB string of each adversarial shape of the hardening issue
//! (`AccountKey=` repeated, `%40` repeated) and of plain words, for the cost per byte of each.
//!
//!   cargo bench -p auditflow-bench --bench redact [-- redact_240k]

use auditflow::config::Config;
use auditflow::event::Event;
use auditflow::pipeline::Pipeline;
use auditflow::plugin::bindings::to_wit;
use auditflow::plugin::{EngineOptions, PluginEngine};
use auditflow_bench::{dev_events, to_sdk};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 256;

/// A pipeline of one stage running `plugin` (built-in name or path) with `config` (TOML).
fn pipeline(rt: &tokio::runtime::Runtime, engine: &PluginEngine, plugin: &str, config: &str) -> Pipeline {
    let text = format!(
        "[storage]\nurl = \"sqlite://unused.db\"\n\n[pipeline]\nbatch_size = {BATCH}\n\n\
         [[stages]]\nname = \"bench\"\nplugin = {plugin:?}\ninstances = 1\n\n[stages.config]\n{config}\n"
    );
    let config = Config::parse(&text).unwrap_or_else(|e| panic!("bench config: {e:?}"));
    let pipeline = rt.block_on(Pipeline::build(&config, engine)).unwrap();
    assert_eq!(pipeline.stages().len(), 1);
    pipeline
}

/// The quick start's redaction: the actor pseudonymised with keyed HMAC-SHA256.
const HASH: &str = "fields = { \"actor.id\" = \"hash\" }\nhash_key = \"bench-key\"";
const HASH_JSON: &str = r#"{"fields": {"actor.id": "hash"}, "hash_key": "bench-key"}"#;
/// The same with the actor masked: no hashing.
const MASK: &str = "fields = { \"actor.id\" = \"mask\" }";
const MASK_JSON: &str = r#"{"fields": {"actor.id": "mask"}}"#;

fn run(rt: &tokio::runtime::Runtime, p: &Pipeline, events: &[Event]) -> usize {
    let out = rt.block_on(p.run(events.to_vec())).expect("bench batch passes");
    assert_eq!(out.kept.len(), events.len());
    out.kept.len()
}

fn redact(c: &mut Criterion) {
    let events = dev_events(BATCH);
    let sdk: Vec<_> = events.iter().map(|e| to_sdk(&to_wit(e))).collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = PluginEngine::new().unwrap();
    let path = |name: &str| auditflow_artifacts::path(name).display().to_string();
    let wasm = pipeline(&rt, &engine, "redact", HASH);
    assert_eq!(wasm.stages()[0].contract(), "1.1");
    let wasm_v10 = pipeline(&rt, &engine, &path("redact-v10"), HASH);
    assert_eq!(wasm_v10.stages()[0].contract(), "1.0");
    let native = redact::Redactor::from_config(&serde_json::from_str(HASH_JSON).unwrap()).unwrap();
    let wasm_mask = pipeline(&rt, &engine, "redact", MASK);
    let native_mask = redact::Redactor::from_config(&serde_json::from_str(MASK_JSON).unwrap()).unwrap();
    let passthrough = pipeline(&rt, &engine, &path("drop-marker"), "");
    let touch_two = pipeline(&rt, &engine, &path("touch-two"), "");
    assert_eq!(touch_two.stages()[0].contract(), "1.1");
    let unchecked = PluginEngine::with_options(EngineOptions {
        epoch_interruption: false,
        ..EngineOptions::default()
    })
    .unwrap();
    let wasm_no_epoch = pipeline(&rt, &unchecked, "redact", HASH);

    let mut group = c.benchmark_group("redact_batch_256");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("clone_only", |b| b.iter(|| events.to_vec()));
    group.bench_function("native", |b| b.iter(|| native.redact_batch(sdk.clone())));
    group.bench_function("wasm", |b| b.iter(|| run(&rt, &wasm, &events)));
    group.bench_function("wasm_v10", |b| b.iter(|| run(&rt, &wasm_v10, &events)));
    group.bench_function("wasm10_passthrough", |b| b.iter(|| run(&rt, &passthrough, &events)));
    group.bench_function("wasm11_touch_two", |b| b.iter(|| run(&rt, &touch_two, &events)));
    group.bench_function("native_mask", |b| b.iter(|| native_mask.redact_batch(sdk.clone())));
    group.bench_function("wasm_mask", |b| b.iter(|| run(&rt, &wasm_mask, &events)));
    group.bench_function("wasm_no_epoch", |b| b.iter(|| run(&rt, &wasm_no_epoch, &events)));
    let baseline = std::env::var_os("BENCH_REDACT_BASELINE")
        .map(|baseline| pipeline(&rt, &engine, &baseline.to_string_lossy(), HASH));
    if let Some(baseline) = &baseline {
        group.bench_function("wasm_baseline", |b| b.iter(|| run(&rt, baseline, &events)));
    }
    group.finish();

    let mut group = c.benchmark_group("redact_240k");
    for (shape, text) in [
        ("account_key", "AccountKey=".repeat(21_800)),
        ("percent_40", "%40".repeat(80_000)),
        ("words", "lorem ipsum dolor ".repeat(13_300)),
    ] {
        let mut event = events[0].clone();
        event.metadata = serde_json::Map::from_iter([("x".to_string(), serde_json::Value::String(text.clone()))]);
        let one = [event];
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("wasm/{shape}"), |b| b.iter(|| run(&rt, &wasm, &one)));
        if let Some(baseline) = &baseline {
            group.bench_function(format!("wasm_baseline/{shape}"), |b| {
                b.iter(|| run(&rt, baseline, &one))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, redact);
criterion_main!(benches);
