//! Helpers the fuzz targets share: the properties every parsed event must have, comparing
//! two parses of the same events, gzip, and a runtime for the async store API.
//!
//! The targets themselves are in `fuzz_targets/`; `fuzz/run` builds and runs them.

use std::io::Write;
use std::sync::OnceLock;

use auditflow::config::Limits;
use auditflow::event::Event;
use auditflow::ingest::ApiError;

/// The `source` every target's events are authenticated as.
pub const SOURCE: &str = "fuzz-sender";

/// Limits small enough for short fuzz inputs to reach every limit check: a handful of
/// events, short events, shallow nesting, a small inflated size.
pub fn tight_limits() -> Limits {
    Limits {
        max_body_bytes: 4096,
        max_decompressed_bytes: 8192,
        max_events: 4,
        max_event_bytes: 512,
        max_depth: 4,
        ..Limits::default()
    }
}

/// What every event ingest hands on must be: storable as is on both stores.
pub fn assert_storable(events: &[Event], limits: &Limits) {
    assert!(!events.is_empty(), "a body with no events was accepted");
    assert!(events.len() <= limits.max_events, "more than max_events accepted");
    for event in events {
        assert_eq!(event.source, SOURCE, "the source is not the authenticated one");
        assert!(!event.event_type.is_empty(), "empty event_type accepted");
        assert_eq!(event.oversized_field(), None, "an oversized field was accepted");
        assert!(!event.needs_normalizing(), "an event was handed on unnormalised");
        assert!(
            (1970..=9999).contains(&chrono::Datelike::year(&event.timestamp)),
            "timestamp out of the stored range"
        );
        assert_eq!(
            event.timestamp.timestamp_subsec_nanos() % 1000,
            0,
            "timestamp not truncated to microseconds"
        );
    }
}

/// A refusal of a body must be a client error (400, 413, 415 or 422), never a server error.
pub fn assert_client_error(e: &ApiError) {
    assert!(e.status.is_client_error(), "body refused with {}", e.status);
}

/// Two parses of the same events agree on everything but generated event ids (a UUIDv7 is
/// drawn for every event that has none, so two parses differ there by design).
pub fn assert_same_events(a: &[Event], b: &[Event]) {
    assert_eq!(a.len(), b.len(), "the two parses found different numbers of events");
    for (x, y) in a.iter().zip(b) {
        let mut y = y.clone();
        y.event_id = x.event_id;
        assert!(*x == y, "the two parses disagree on an event");
    }
}

/// Two outcomes of parsing the same body two ways: both events (the same ones) or both
/// refused with the same status.
pub fn assert_same_outcome(a: &Result<Vec<Event>, ApiError>, b: &Result<Vec<Event>, ApiError>) {
    match (a, b) {
        (Ok(x), Ok(y)) => assert_same_events(x, y),
        (Err(x), Err(y)) => assert_eq!(x.status, y.status, "refused with different statuses"),
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => panic!("one parse accepted, the other refused with {}", e.status),
    }
}

/// `data` as one gzip member.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// One current-thread runtime per process, for the async store API.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// A refusal names fields, indexes, positions and limits, never a value or a sender-chosen
/// key from the body (docs/SECURITY.md): no string in `body` that could not come from the
/// message's own fixed text appears in the message or the field. Candidates are the string
/// literals of the body of at least 8 bytes with a character no message template has (one of
/// `@$%&~^|`), so a message can never match one by chance: libFuzzer's comparison tracing
/// copies the messages' own words into bodies, so letters alone would not do.
pub fn assert_no_echo(body: &[u8], e: &ApiError) {
    assert_no_echo_besides(body, &[], e);
}

/// [`assert_no_echo`] for a request whose header values (`headers`) may be repeated: an
/// unaccepted Content-Type is named in the 415, by design (lowercased), and a body string
/// that also appears in one, in any case, is not counted.
pub fn assert_no_echo_besides(body: &[u8], headers: &[&[u8]], e: &ApiError) {
    for literal in string_literals(body) {
        let Ok(text) = std::str::from_utf8(literal) else {
            continue;
        };
        if text.len() < 8 || !text.chars().any(|c| "@$%&~^|".contains(c)) {
            continue;
        }
        // Compared without case: a 415 names the Content-Type lowercased.
        if headers
            .iter()
            .any(|h| h.windows(literal.len()).any(|w| w.eq_ignore_ascii_case(literal)))
        {
            continue;
        }
        assert!(
            !e.error.contains(text),
            "an error message repeats a string from the body"
        );
        assert!(
            !e.field.as_deref().unwrap_or("").contains(text),
            "an error's field repeats a string from the body"
        );
    }
}

/// The raw contents of the `"…"` literals in `body` that have no escapes.
fn string_literals(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = body;
    std::iter::from_fn(move || {
        loop {
            let open = rest.iter().position(|&b| b == b'"')?;
            let after = &rest[open + 1..];
            let close = after.iter().position(|&b| b == b'"' || b == b'\\')?;
            let (literal, escaped) = (&after[..close], after[close] == b'\\');
            rest = &after[close + 1..];
            if !escaped {
                return Some(literal);
            }
        }
    })
}
