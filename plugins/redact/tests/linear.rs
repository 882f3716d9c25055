//! Every scanner must be linear in its input: an event of adversarial shape (a detector's
//! prefix repeated, separator runs, escape runs, key=value runs, digit runs, deep or wide JSON)
//! must cost per byte at 256 KB about what it costs at 1 KB. A scanner that re-scans from each
//! candidate to the end of the string is ~256× worse per byte at 256 KB; the bound here is 5×.
//!
//! Each shape is redacted through the public [`Redactor`] as the value of `metadata.x` (or as
//! the metadata document itself for the JSON shapes), at 1 KB, 16 KB and 256 KB. Every
//! measurement processes the same 256 KB in all (256 events of 1 KB, 16 of 16 KB, one of
//! 256 KB), and the best of several measurements is kept, so timer resolution and scheduling
//! noise do not decide the ratio.

use std::time::{Duration, Instant};

use auditflow_sdk::Event;
use redact::Redactor;
use serde_json::json;

const SIZES: [usize; 3] = [1 << 10, 16 << 10, 256 << 10];
const TOTAL: usize = 256 << 10;
const BOUND: f64 = 5.0;

/// How a shape becomes a metadata document of about `size` bytes.
enum Doc {
    /// `{"x": "<unit repeated>"}`; the unit is raw text, JSON-escaped here.
    Text(&'static str),
    /// `{"x": "<unit repeated>"}`; the unit is already JSON string content (escapes).
    Escaped(&'static str),
    /// `{"x": [<unit>, <unit>, …]}`; the unit is a JSON value.
    Array(&'static str),
    /// `{<entry>, <entry>, …}`; `{}` in the entry is replaced by the entry's index.
    Keys(&'static str),
}

fn document(doc: &Doc, size: usize) -> String {
    let repeat = |unit: &str, sep: &str| -> String {
        let mut body = String::new();
        while body.len() + unit.len() + 16 < size {
            if !body.is_empty() {
                body.push_str(sep);
            }
            body.push_str(unit);
        }
        body
    };
    match doc {
        Doc::Text(unit) => json!({ "x": repeat(unit, "") }).to_string(),
        Doc::Escaped(unit) => format!("{{\"x\": \"{}\"}}", repeat(unit, "")),
        Doc::Array(unit) => format!("{{\"x\": [{}]}}", repeat(unit, ",")),
        Doc::Keys(entry) => {
            let mut body = String::new();
            let mut i = 0;
            while body.len() + entry.len() + 24 < size {
                if !body.is_empty() {
                    body.push(',');
                }
                body.push_str(&entry.replace("{}", &i.to_string()));
                i += 1;
            }
            format!("{{{body}}}")
        }
    }
}

fn shapes() -> Vec<(String, Doc)> {
    let mut shapes: Vec<(String, Doc)> = Vec::new();
    let mut text = |unit: &'static str| shapes.push((format!("{unit:?} repeated"), Doc::Text(unit)));
    // The literal prefixes of every token detector, alone and with a little of a body.
    for unit in [
        "AccountKey=",
        "AccountKey=a",
        "%40",
        "a%40",
        "@",
        "a@",
        "a@b.",
        "eyJ",
        "eyJ.",
        "eyJhbGciOi.",
        "ghp_",
        "gho_",
        "github_pat_",
        "glpat-",
        "GR1348941",
        "xoxb-",
        "xoxe.xoxp-",
        "xapp-",
        "hooks.slack.com/services/",
        "sk_live_",
        "whsec_",
        "AIza",
        "sk-",
        "sk-proj-",
        "sk-ant-",
        "SK",
        "SG.",
        "npm_",
        "hf_",
        "pypi-AgEIcHlwaS5vcmc",
        "shpat_",
        "dop_v1_",
        "AKIA",
        "A3T",
        "-----BEGIN ",
        "-----BEGIN PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----\n-----END",
        "Bearer ",
        "Bearer a1",
        "bearer x-",
        "Authorization: Bearer ",
        // Separators and punctuation runs.
        ".",
        ":",
        "-",
        " ",
        "_",
        "/",
        "=",
        "&",
        "%",
        "+",
        "(",
        "::",
        "a:",
        "ff:",
        "a::b:",
        "://",
        "x://a:",
        "é",
        "\u{200b}",
        "＠",
        // key=value runs.
        "a=b&",
        "password=",
        "password=x",
        "token: ",
        "secret = ",
        "api_key=\"",
        "pwd='",
        "Authorization: ",
        "a: b, ",
        // Digit runs with separators.
        "1",
        "1-",
        "12-",
        "123-45-",
        "1.",
        "1.1.1.",
        "1 ",
        "4111 ",
        "4111-",
        "(1)",
        "(474) ",
        "+1 ",
        "+",
        "1:",
        "1/",
        "0x1f",
    ] {
        text(unit);
    }
    // JSON string escapes (raw string content).
    for unit in [
        "\\u00e9",
        "\\u0040",
        "a\\u0040",
        "\\\"",
        "\\\\",
        "\\n",
        "\\ud83d\\ude00",
        "\\u200b",
    ] {
        shapes.push((format!("escape {unit:?} repeated"), Doc::Escaped(unit)));
    }
    // Wide and nested JSON.
    for unit in [
        r#""s""#,
        r#""bob@x.io""#,
        r#"{"a":"b","c":["d",{"e":"f"}]}"#,
        r#"{"password":"x","n":{"token":["y"]}}"#,
        r#"[[[[[[[[[[[[[[[["s"]]]]]]]]]]]]]]]]"#,
        r#"{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":"x@y.io"}}}}}}}}"#,
        "4111111111111111",
    ] {
        shapes.push((format!("JSON {unit} repeated in an array"), Doc::Array(unit)));
    }
    for entry in [
        r#""k{}":"v""#,
        r#""a{}@b.co":1"#,
        r#""password{}":"x""#,
        r#""391-55-0476 {}":"x""#,
    ] {
        shapes.push((format!("object with many keys {entry}"), Doc::Keys(entry)));
    }
    shapes
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
        source: "linear".into(),
        metadata,
    }
}

/// Best time per byte, in nanoseconds, of redacting `events` (all of one size).
fn per_byte(redactor: &Redactor, events: &[Event]) -> f64 {
    let bytes: usize = events.iter().map(|e| e.metadata.len()).sum();
    let mut best = Duration::MAX;
    let started = Instant::now();
    for run in 0..9 {
        // A quadratic case takes seconds per run: stop early, the first run already tells.
        if run >= 2 && started.elapsed() > Duration::from_secs(2) {
            break;
        }
        let mut batch = events.to_vec();
        let t = Instant::now();
        for e in &mut batch {
            redactor.redact(e).expect("valid metadata");
        }
        best = best.min(t.elapsed());
        drop(batch);
    }
    best.as_nanos() as f64 / bytes as f64
}

#[test]
fn every_scanner_is_linear() {
    let redactor = Redactor::from_config(&json!({})).expect("default config");
    let mut failures = Vec::new();
    eprintln!(
        "{:<60} {:>9} {:>9} {:>9} {:>7}",
        "shape", "ns/B 1K", "16K", "256K", "ratio"
    );
    for (name, doc) in shapes() {
        let mut figures = Vec::new();
        for size in SIZES {
            let text = document(&doc, size);
            // The metadata must be valid JSON for the measurement to mean anything.
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let events = vec![event(text); TOTAL / size];
            figures.push(per_byte(&redactor, &events));
            // Already over the bound at 16 KB: a quadratic scanner would take seconds (a
            // cubic one minutes) at 256 KB, so it fails here.
            if figures[figures.len() - 1] / figures[0] >= BOUND {
                break;
            }
        }
        let ratio = figures[figures.len() - 1] / figures[0];
        let at = ["1 KB", "16 KB", "256 KB"][figures.len() - 1];
        figures.resize(3, f64::NAN);
        eprintln!(
            "{name:<60} {:>9.2} {:>9.2} {:>9.2} {ratio:>6.2}x",
            figures[0], figures[1], figures[2]
        );
        if ratio >= BOUND {
            failures.push(format!(
                "{name}: {:.2} ns/byte at {at} vs {:.2} at 1 KB ({ratio:.1}x, bound {BOUND}x)",
                figures[figures.iter().rposition(|f| !f.is_nan()).unwrap_or(0)],
                figures[0]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "time per byte grows with the input (a scanner is not linear):\n{}",
        failures.join("\n")
    );
}
