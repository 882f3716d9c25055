//! Shared pieces of the benchmarks and the load generator: loading the dev-set events and
//! turning them into the shapes each side of a comparison needs.

pub mod synth;

use std::io::Read;
use std::path::{Path, PathBuf};

use auditflow::config::Limits;
use auditflow::event::Event;
use auditflow::ingest::body::BodyFormat;
use auditflow::ingest::parse::parse_events;
use auditflow::plugin::bindings::WitEvent;

/// The `p`th percentile (nearest rank) of latencies in microseconds, sorted ascending, in
/// milliseconds; 0 for no samples. Shared by the load generators so their figures compare.
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted_us.len() - 1) as f64).round() as usize;
    sorted_us[i.min(sorted_us.len() - 1)] as f64 / 1000.0
}

/// The labeled dev set in the repository (`tests/data/events-dev.ndjson.gz`).
pub fn dev_set() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/events-dev.ndjson.gz")
}

/// The text of an NDJSON file, gunzipped when its name ends in `.gz`.
pub fn read_ndjson(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if path.extension().is_none_or(|x| x != "gz") {
        return String::from_utf8(bytes).map_err(|e| format!("{}: {e}", path.display()));
    }
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .map_err(|e| format!("gunzipping {}: {e}", path.display()))?;
    Ok(text)
}

/// The first `n` events of the dev set, parsed exactly as ingest parses them.
pub fn dev_events(n: usize) -> Vec<Event> {
    let text = read_ndjson(&dev_set()).expect("dev set");
    let body: String = text.lines().take(n).collect::<Vec<_>>().join("\n");
    let limits = Limits {
        max_events: usize::MAX,
        ..Limits::default()
    };
    parse_events(body.as_bytes(), BodyFormat::Ndjson, &limits, "bench").expect("dev set parses")
}

/// The host's WIT record → the guest SDK's record (same fields, different generated type), so
/// the native run sees exactly the data the Wasm run receives.
pub fn to_sdk(e: &WitEvent) -> auditflow_sdk::Event {
    auditflow_sdk::Event {
        event_id: e.event_id.clone(),
        event_type: e.event_type.clone(),
        timestamp_us: e.timestamp_us,
        actor_type: e.actor_type.clone(),
        actor_id: e.actor_id.clone(),
        agent_id: e.agent_id.clone(),
        server_name: e.server_name.clone(),
        tool_name: e.tool_name.clone(),
        decision: e.decision.clone(),
        outcome: e.outcome.clone(),
        reason: e.reason.clone(),
        request_id: e.request_id.clone(),
        correlation_id: e.correlation_id.clone(),
        source_ip: e.source_ip.clone(),
        source: e.source.clone(),
        metadata: e.metadata.clone(),
    }
}
