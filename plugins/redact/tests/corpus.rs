//! Measured recall and decoy survival per detector on the labeled corpus
//! (tests/corpus/corpus.ndjson.gz, made by tests/corpus/gen_corpus.py with a fixed seed).
//!
//! Prints the per-detector table recorded in docs/REDACTION.md:
//!
//! ```sh
//! cargo test -p redact --release --test corpus -- --nocapture
//! ```
//!
//! A positive counts as found when none of its values survives anywhere in the output and
//! the output carries its detector's label (`[REDACTED:<name>]`); a decoy survives when all
//! its values are still there. Floors: recall and decoy survival ≥ 99.5 % overall and ≥ 98 %
//! per detector and per decoy class; and disabling any one detector must break its floor.

use std::collections::BTreeMap;
use std::io::Read;

use auditflow_sdk::Event;
use redact::Redactor;
use serde_json::{Value, json};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/corpus.ndjson.gz");
const GENERATOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/gen_corpus.py");

fn corpus_text() -> String {
    let file = std::fs::File::open(CORPUS).unwrap_or_else(|e| panic!("read {CORPUS}: {e}"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("gunzip {CORPUS}: {e}"));
    text
}

struct Case {
    kind: String,
    label: String,
    metadata: String,
    values: Vec<String>,
}

fn cases() -> Vec<Case> {
    corpus_text()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("corpus line");
            let kind = v["kind"].as_str().expect("kind").to_owned();
            let label = v[if kind == "positive" { "detector" } else { "class" }]
                .as_str()
                .expect("label")
                .to_owned();
            Case {
                kind,
                label,
                metadata: v["metadata"].to_string(),
                values: v["values"]
                    .as_array()
                    .expect("values")
                    .iter()
                    .map(|x| x.as_str().expect("value").to_owned())
                    .collect(),
            }
        })
        .collect()
}

fn event(metadata: String) -> Event {
    Event {
        event_id: "7eed8d14-f06d-4fef-b019-66a0c381e88f".into(),
        event_type: "tool_invoke".into(),
        timestamp_us: 0,
        actor_type: None,
        actor_id: None,
        agent_id: None,
        server_name: None,
        tool_name: None,
        decision: None,
        outcome: None,
        reason: None,
        request_id: None,
        correlation_id: None,
        source_ip: None,
        source: "corpus".into(),
        metadata,
    }
}

/// The output text and every string (and key) in it, decoded.
fn haystack(metadata: &str) -> Vec<String> {
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
    let mut all = vec![metadata.to_owned()];
    strings(&serde_json::from_str(metadata).expect("output is JSON"), &mut all);
    all
}

#[derive(Default, Clone)]
struct Row {
    positives: usize,
    /// Values gone and the detector's label present.
    found: usize,
    /// Values gone (whatever the label).
    removed: usize,
    /// Decoys lost with this detector's label in the output.
    false_positives: usize,
}

#[derive(Default)]
struct Report {
    rows: BTreeMap<String, Row>,
    /// Decoy class → (cases, survived).
    decoys: BTreeMap<String, (usize, usize)>,
    lost: Vec<String>,
    missed: Vec<String>,
}

fn measure(redactor: &Redactor, cases: &[Case]) -> Report {
    let mut report = Report::default();
    for case in cases {
        let mut e = event(case.metadata.clone());
        redactor.redact(&mut e).expect("corpus metadata is JSON");
        let hay = haystack(&e.metadata);
        let present = |v: &String| hay.iter().any(|h| h.contains(v.as_str()));
        if case.kind == "positive" {
            let row = report.rows.entry(case.label.clone()).or_default();
            row.positives += 1;
            let gone = !case.values.iter().any(present);
            let labelled = e.metadata.contains(&format!("[REDACTED:{}]", case.label));
            row.removed += usize::from(gone);
            row.found += usize::from(gone && labelled);
            if !(gone && labelled) {
                report
                    .missed
                    .push(format!("{}: {} -> {}", case.label, case.metadata, e.metadata));
            }
        } else {
            let entry = report.decoys.entry(case.label.clone()).or_default();
            entry.0 += 1;
            if case.values.iter().all(present) {
                entry.1 += 1;
            } else {
                report
                    .lost
                    .push(format!("{}: {} -> {}", case.label, case.metadata, e.metadata));
                for label in labels(&e.metadata) {
                    report.rows.entry(label).or_default().false_positives += 1;
                }
            }
        }
    }
    report
}

/// The detector names in `[REDACTED:<name>]` labels of `text`.
fn labels(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .match_indices("[REDACTED:")
        .filter_map(|(i, m)| {
            let rest = &text[i + m.len()..];
            rest.find(']').map(|e| rest[..e].to_owned())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn pct(n: usize, d: usize) -> f64 {
    if d == 0 { 100.0 } else { 100.0 * n as f64 / d as f64 }
}

const FLOOR_OVERALL: f64 = 99.5;
const FLOOR_EACH: f64 = 98.0;

/// The floors this report breaks, as messages.
fn broken(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let (p, f) = report
        .rows
        .values()
        .fold((0, 0), |(p, f), r| (p + r.positives, f + r.found));
    if pct(f, p) < FLOOR_OVERALL {
        out.push(format!("overall recall {:.2}% < {FLOOR_OVERALL}%", pct(f, p)));
    }
    for (name, r) in &report.rows {
        if r.positives > 0 && pct(r.found, r.positives) < FLOOR_EACH {
            out.push(format!(
                "{name}: recall {:.2}% < {FLOOR_EACH}%",
                pct(r.found, r.positives)
            ));
        }
    }
    let (d, s) = report.decoys.values().fold((0, 0), |(d, s), (n, k)| (d + n, s + k));
    if pct(s, d) < FLOOR_OVERALL {
        out.push(format!("overall decoy survival {:.2}% < {FLOOR_OVERALL}%", pct(s, d)));
    }
    for (class, (n, k)) in &report.decoys {
        if pct(*k, *n) < FLOOR_EACH {
            out.push(format!("decoys {class}: survival {:.2}% < {FLOOR_EACH}%", pct(*k, *n)));
        }
    }
    out
}

fn default_redactor() -> Redactor {
    Redactor::from_config(&json!({})).expect("default config")
}

#[test]
fn recall_and_decoy_survival_meet_the_floors() {
    let cases = cases();
    let report = measure(&default_redactor(), &cases);
    let (p, f, r) = report
        .rows
        .values()
        .fold((0, 0, 0), |(p, f, r), x| (p + x.positives, f + x.found, r + x.removed));
    let (d, s) = report.decoys.values().fold((0, 0), |(d, s), (n, k)| (d + n, s + k));
    println!("| detector | positives | recall (labelled) | removed | false positives on decoys | precision |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, row) in &report.rows {
        if row.positives == 0 {
            continue;
        }
        println!(
            "| `{name}` | {} | {:.1}% | {:.1}% | {} | {:.1}% |",
            row.positives,
            pct(row.found, row.positives),
            pct(row.removed, row.positives),
            row.false_positives,
            pct(row.found, row.found + row.false_positives)
        );
    }
    println!(
        "| **all** | {p} | **{:.2}%** | {:.2}% | {} | |",
        pct(f, p),
        pct(r, p),
        d - s
    );
    println!();
    println!("| decoy class | cases | survived |");
    println!("|---|---:|---:|");
    for (class, (n, k)) in &report.decoys {
        println!("| {class} | {n} | {:.1}% |", pct(*k, *n));
    }
    println!("| **all** | {d} | **{:.2}%** |", pct(s, d));
    for m in report.missed.iter().take(200) {
        println!("missed: {m}");
    }
    for l in report.lost.iter().take(200) {
        println!("lost: {l}");
    }
    let broken = broken(&report);
    assert!(broken.is_empty(), "floors broken:\n{}", broken.join("\n"));
}

#[test]
fn disabling_any_detector_breaks_its_floor() {
    let cases = cases();
    let names: Vec<String> = {
        let mut seen: Vec<String> = cases
            .iter()
            .filter(|c| c.kind == "positive")
            .map(|c| c.label.clone())
            .collect();
        seen.sort();
        seen.dedup();
        seen
    };
    let all: Vec<&str> = names.iter().map(String::as_str).filter(|n| *n != "secret").collect();
    let mut not_broken = Vec::new();
    for name in &all {
        let enabled: Vec<&str> = all.iter().copied().filter(|n| n != name).collect();
        let config = json!({ "detectors": enabled });
        let redactor = Redactor::from_config(&config).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mine: Vec<Case> = cases
            .iter()
            .filter(|c| c.kind == "positive" && c.label == *name)
            .map(|c| Case {
                kind: c.kind.clone(),
                label: c.label.clone(),
                metadata: c.metadata.clone(),
                values: c.values.clone(),
            })
            .collect();
        let report = measure(&redactor, &mine);
        let row = &report.rows[*name];
        println!(
            "without {name}: recall {:.1}%, still removed by other detectors {:.1}%",
            pct(row.found, row.positives),
            pct(row.removed, row.positives)
        );
        if broken(&report).is_empty() {
            not_broken.push(name.to_string());
        }
    }
    assert!(
        not_broken.is_empty(),
        "still meets its floor when disabled: {not_broken:?}"
    );
    // Key-name secrets are switched off with `secret_keys = []`.
    let redactor = Redactor::from_config(&json!({"secret_keys": []})).expect("config");
    let secrets: Vec<Case> = cases
        .iter()
        .filter(|c| c.kind == "positive" && c.label == "secret")
        .map(|c| Case {
            kind: c.kind.clone(),
            label: c.label.clone(),
            metadata: c.metadata.clone(),
            values: c.values.clone(),
        })
        .collect();
    assert!(
        !broken(&measure(&redactor, &secrets)).is_empty(),
        "secret still meets its floor"
    );
}

#[test]
fn generator_reproduces_the_checked_in_corpus() {
    let out = std::process::Command::new("python3")
        .arg(GENERATOR)
        .arg("--stdout")
        .output()
        .expect("python3 runs the corpus generator");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let generated = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        generated == corpus_text(),
        "tests/corpus/corpus.ndjson.gz is not what gen_corpus.py makes: run it and commit the result"
    );
}
