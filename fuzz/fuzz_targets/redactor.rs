//! The redactor (`plugins/redact`, run natively: the same code the Wasm stage runs).
//!
//! Input: one mode byte, then the text. Bits 0-1 pick the config (defaults with `mask`; every
//! detector with `hash`; `drop` for key-name secrets; a short context window), bit 7 adds the
//! linear-time check. The text goes into a scanned typed field (`reason`) and, JSON-encoded,
//! into metadata under a plain key and under a secret-ish one.
//!
//! Properties:
//! - no panic, and the metadata handed back is still a JSON object;
//! - the output contains no value the detectors matched in the input: each matched value is
//!   gone from the redacted field, unless the input also holds it somewhere no match covers;
//! - linear time: with bit 7, the text repeated to 16 KiB is redacted within a CPU-time budget
//!   per byte (a quadratic scan of 16 KiB takes a second past it); libFuzzer's `-timeout`
//!   catches anything slower still.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use auditflow_sdk::Event;
use libfuzzer_sys::fuzz_target;
use redact::Redactor;
use serde_json::{Value, json};

/// Bytes the linear-time check redacts.
const BIG: usize = 16 * 1024;
/// CPU time allowed per byte of that text: 25x what the instrumented build needs (0.2 µs).
const BUDGET_PER_BYTE: Duration = Duration::from_nanos(5_000);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let redactor = &redactors()[usize::from(mode & 3)];

    let matches = redactor.typed_field_matches(&text);
    let mut event = event(&text);
    redactor
        .redact(&mut event)
        .expect("metadata built by serde_json is JSON");
    let metadata: Value = serde_json::from_str(&event.metadata).expect("redacted metadata is JSON");
    assert!(metadata.is_object(), "redacted metadata is not an object");
    if let Some(out) = &event.reason {
        assert_no_leak(&text, &matches, out);
    }

    if mode & 0x80 != 0 && !text.is_empty() {
        let big = text.repeat(BIG.div_ceil(text.len()));
        let mut e = event_with_reason(&big);
        let started = thread_cpu_time();
        redactor.redact(&mut e).expect("no metadata to fail on");
        let spent = thread_cpu_time().saturating_sub(started);
        let budget = BUDGET_PER_BYTE * u32::try_from(big.len()).expect("16 KiB and a bit");
        assert!(
            spent <= budget,
            "redacting {} bytes took {spent:?} of CPU (budget {budget:?})",
            big.len()
        );
    }
});

/// No value a detector matched in `input` is in `output`, except where the input has it
/// outside every match too (a kept word that a match also contains) or it is inside one of
/// the redactor's own replacement tokens.
fn assert_no_leak(input: &str, matches: &[(usize, usize, &'static str)], output: &str) {
    let covered = |at: usize, len: usize| matches.iter().any(|&(s, e, _)| s <= at && at + len <= e);
    let pieces: Vec<&str> = split_tokens(output);
    for &(start, end, detector) in matches {
        let value = &input[start..end];
        if value.trim().is_empty() {
            continue;
        }
        let elsewhere = input.match_indices(value).any(|(at, _)| !covered(at, value.len()));
        if elsewhere {
            continue;
        }
        assert!(
            !pieces.iter().any(|p| p.contains(value)),
            "a value the `{detector}` detector matched survived redaction"
        );
    }
}

/// `output` without the redactor's tokens (`[REDACTED:…]`, `[HASH:…:…]`), as the pieces
/// between them.
fn split_tokens(output: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = output;
    loop {
        let next = ["[REDACTED:", "[HASH:"].iter().filter_map(|t| rest.find(t)).min();
        let Some(at) = next else {
            pieces.push(rest);
            return pieces;
        };
        pieces.push(&rest[..at]);
        match rest[at..].find(']') {
            Some(close) => rest = &rest[at + close + 1..],
            None => return pieces,
        }
    }
}

/// The four configs the mode byte picks from, compiled once.
fn redactors() -> &'static [Redactor; 4] {
    static R: OnceLock<[Redactor; 4]> = OnceLock::new();
    R.get_or_init(|| {
        [
            json!({}),
            json!({"default_action": "hash", "secret_key_action": "hash", "hash_key": "fuzz-key"}),
            json!({"secret_key_action": "drop", "extra_secret_keys": ["note"]}),
            json!({"context_window": 4, "generic_secret_entropy": 0}),
        ]
        .map(|config| Redactor::from_config(&config).expect("a valid config"))
    })
}

fn event(text: &str) -> Event {
    let mut e = event_with_reason(text);
    e.metadata = json!({"note": text, "api_key": text, "nested": {"password": [text]}}).to_string();
    e
}

fn event_with_reason(text: &str) -> Event {
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
        reason: Some(text.to_owned()),
        request_id: None,
        correlation_id: None,
        source_ip: None,
        source: "fuzz".into(),
        metadata: String::new(),
    }
}

/// CPU time this thread has used: what the budget counts, so a busy machine does not fail it.
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for clock_gettime to write.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}
