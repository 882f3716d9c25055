//! The quality bar on the labelled dev set: with the reference config, no labelled PII value
//! may survive anywhere in an output event, and every labelled decoy (UUIDs, version strings,
//! non-Luhn order numbers) must survive unchanged (100 %; it was ≥ 99.5 % before the
//! detectors of issue 17, and all of them still hold).

use std::collections::HashMap;

use auditflow_sdk::{Event, Outcome};
use redact::Redactor;
use serde_json::{Value, json};

const EVENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/events-dev.ndjson.gz");
const LABELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/labels-dev.ndjson.gz");

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// The wire JSON of one event as the typed `Event` the plugin sees.
fn to_event(v: &Value) -> Event {
    let actor = v.get("actor");
    Event {
        event_id: text(v, "event_id").expect("event_id"),
        event_type: text(v, "event_type").expect("event_type"),
        timestamp_us: 0,
        actor_type: actor.and_then(|a| text(a, "type")),
        actor_id: actor.and_then(|a| text(a, "id")),
        agent_id: text(v, "agent_id"),
        server_name: text(v, "server_name"),
        tool_name: text(v, "tool_name"),
        decision: text(v, "decision"),
        outcome: text(v, "outcome"),
        reason: text(v, "reason"),
        request_id: text(v, "request_id"),
        correlation_id: text(v, "correlation_id"),
        source_ip: text(v, "source_ip"),
        source: "dev".to_owned(),
        metadata: v.get("metadata").map_or_else(|| "{}".to_owned(), Value::to_string),
    }
}

/// Every string of the event, metadata included both as text and as its parsed strings (so a
/// value is found even if serialisation escaped it).
fn haystacks(e: &Event) -> Vec<String> {
    let mut all: Vec<String> = [&e.event_id, &e.event_type, &e.source, &e.metadata]
        .into_iter()
        .cloned()
        .collect();
    all.extend(
        [
            &e.actor_type,
            &e.actor_id,
            &e.agent_id,
            &e.server_name,
            &e.tool_name,
            &e.decision,
            &e.outcome,
            &e.reason,
            &e.request_id,
            &e.correlation_id,
            &e.source_ip,
        ]
        .into_iter()
        .flatten()
        .cloned(),
    );
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.iter().for_each(|(k, x)| {
                out.push(k.clone());
                strings(x, out)
            }),
            _ => {}
        }
    }
    strings(
        &serde_json::from_str(&e.metadata).expect("metadata stays JSON"),
        &mut all,
    );
    all
}

fn read_lines(path: &str) -> Vec<Value> {
    use std::io::Read;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut data = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut data)
        .unwrap_or_else(|e| panic!("gunzip {path}: {e}"));
    data.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("ndjson line"))
        .collect()
}

#[test]
fn dev_set_pii_is_gone_and_decoys_survive() {
    let events = read_lines(EVENTS);
    let labels: HashMap<String, Value> = read_lines(LABELS)
        .into_iter()
        .map(|l| (text(&l, "event_id").expect("label event_id"), l))
        .collect();
    assert_eq!(events.len(), labels.len(), "one label line per event");

    let redactor =
        Redactor::from_config(&json!({"fields": {"actor.id": "hash"}, "hash_key": "test-key"})).expect("config");
    let inputs: Vec<Event> = events.iter().map(to_event).collect();
    // In batches of 256 like the pipeline's, whose reused buffers must not carry anything
    // over: each event must come out exactly as when redacted on its own.
    let outcomes: Vec<Outcome> = inputs
        .chunks(256)
        .flat_map(|batch| redactor.redact_batch(batch.to_vec()))
        .collect();
    assert_eq!(outcomes.len(), inputs.len());
    for (input, outcome) in inputs.iter().zip(&outcomes) {
        let mut alone = input.clone();
        redactor.redact(&mut alone).expect("redacts");
        assert_eq!(
            format!("{:?}", Outcome::Keep(alone)),
            format!("{outcome:?}"),
            "batch and single results differ"
        );
    }

    let (mut pii_total, mut decoy_total, mut decoys_kept) = (0usize, 0usize, 0usize);
    let mut leaks = Vec::new();
    let mut lost = Vec::new();
    for (input, outcome) in inputs.iter().zip(outcomes) {
        let Outcome::Keep(output) = outcome else {
            panic!("event {} was not kept: {outcome:?}", input.event_id)
        };
        assert_eq!(output.event_id, input.event_id, "event_id must never change");
        let label = &labels[&input.event_id];
        let hay = haystacks(&output);
        let list = |key: &str| -> Vec<String> {
            label[key]
                .as_array()
                .expect("label list")
                .iter()
                .map(|v| v.as_str().expect("label string").to_owned())
                .collect()
        };
        for pii in list("pii") {
            pii_total += 1;
            if hay.iter().any(|h| h.contains(&pii)) {
                leaks.push(format!("{}: {pii:?}", input.event_id));
            }
        }
        for decoy in list("decoys") {
            decoy_total += 1;
            if hay.iter().any(|h| h.contains(&decoy)) {
                decoys_kept += 1;
            } else {
                lost.push(format!("{}: {decoy:?}", input.event_id));
            }
        }
    }
    let decoy_rate = decoys_kept as f64 / decoy_total as f64;
    eprintln!(
        "dev set: {} events, {pii_total} PII values, {} leaked; {decoy_total} decoys, {decoys_kept} kept ({:.2}%)",
        inputs.len(),
        leaks.len(),
        decoy_rate * 100.0
    );
    assert!(pii_total > 0 && decoy_total > 0, "the labels are empty");
    assert!(
        leaks.is_empty(),
        "{} PII values survived, e.g. {:?}",
        leaks.len(),
        &leaks[..leaks.len().min(10)]
    );
    assert!(
        lost.is_empty(),
        "only {:.2}% of decoys survived; lost e.g. {:?}",
        decoy_rate * 100.0,
        &lost[..lost.len().min(10)]
    );
}
