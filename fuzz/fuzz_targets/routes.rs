//! Each ingest route's payload as its handler reads it (`host/src/ingest/mod.rs`), from the
//! request headers and body on: `POST /v1/events` (Content-Type → JSON or NDJSON,
//! Content-Encoding, decode, parse) and SARK's `POST /api/v1/gateway/audit` (Content-Encoding,
//! decode, SARK's `GatewayAuditEvent` mapped onto the canonical event).
//!
//! Input: one mode byte (bit 0 the SARK route, bit 1 the tight limits, bit 2 gzip the body and
//! send `Content-Encoding: gzip`), then the Content-Type and Content-Encoding header values
//! each up to a newline, then the body as sent.
//!
//! Properties: no panic; a refusal is a 4xx repeating nothing from the body (the header values
//! an unaccepted Content-Type or Content-Encoding 415 names are allowed); accepted events
//! are storable as is, and a SARK event always has what SARK's model requires (decision,
//! reason, gateway_request_id → request_id).
#![no_main]

use auditflow::config::Limits;
use auditflow::event::Event;
use auditflow::ingest::{ApiError, body, parse, sark};
use auditflow_fuzz::{SOURCE, assert_client_error, assert_no_echo_besides, assert_storable, gzip, tight_limits};
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let sark_route = mode & 1 != 0;
    let limits = if mode & 2 != 0 {
        tight_limits()
    } else {
        Limits::default()
    };
    let (content_type, rest) = line(rest);
    let (content_encoding, raw) = line(rest);

    let mut headers = HeaderMap::new();
    let wrapped;
    let raw = if mode & 4 != 0 {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        wrapped = gzip(raw);
        &wrapped[..]
    } else {
        if let Ok(v) = HeaderValue::from_bytes(content_encoding) {
            headers.insert(header::CONTENT_ENCODING, v);
        }
        raw
    };
    if let Ok(v) = HeaderValue::from_bytes(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }

    let result = if sark_route {
        post_sark(&headers, raw, &limits)
    } else {
        post_events(&headers, raw, &limits)
    };
    match result {
        Ok(events) => {
            assert_storable(&events, &limits);
            if sark_route {
                for e in &events {
                    assert!(e.decision.is_some(), "a SARK event without its required decision");
                    assert!(e.reason.is_some(), "a SARK event without its required reason");
                    assert!(e.request_id.is_some(), "a SARK event without its gateway_request_id");
                }
            }
        }
        Err(e) => {
            assert_client_error(&e);
            // The body as parsed (inflated when it was gzip); the header values the 415s name
            // may be repeated.
            let sent = [content_type, content_encoding];
            match body::decode(raw, body::content_encoding(&headers).ok().flatten(), &limits) {
                Ok(decoded) => assert_no_echo_besides(&decoded, &sent, &e),
                Err(_) => assert_no_echo_besides(raw, &sent, &e),
            }
        }
    }
});

/// The bytes up to the first newline, and the rest after it.
fn line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// `post_events` from its headers to its events (the steps before the pipeline).
fn post_events(headers: &HeaderMap, raw: &[u8], limits: &Limits) -> Result<Vec<Event>, ApiError> {
    let format = body::BodyFormat::from_headers(headers)?;
    let encoding = body::content_encoding(headers)?;
    let decoded = body::decode(raw, encoding, limits)?;
    parse::parse_events(&decoded, format, limits, SOURCE)
}

/// `post_sark` likewise: SARK's route reads no Content-Type.
fn post_sark(headers: &HeaderMap, raw: &[u8], limits: &Limits) -> Result<Vec<Event>, ApiError> {
    let encoding = body::content_encoding(headers)?;
    let decoded = body::decode(raw, encoding, limits)?;
    sark::parse_sark(&decoded, limits, SOURCE)
}
