//! Body framing and parsing, as `POST /v1/events` does it: Content-Encoding (identity or
//! gzip), then JSON (object, array, concatenated objects) or NDJSON, into canonical events.
//!
//! The first input byte picks the framing: bit 0 NDJSON, bit 1 gzip-wrap the rest, bit 2 the
//! tight limits (so every limit check is reachable by short inputs), bit 3 treat the rest as
//! an already-compressed gzip body (corrupt or truncated members, concatenated members).
//!
//! Properties: no panic; a refusal is a 4xx that repeats nothing from the body
//! ([`auditflow_fuzz::assert_no_echo`]); accepted events are storable as is
//! ([`auditflow_fuzz::assert_storable`]); a gzip-wrapped body parses exactly like the plain
//! one; a body accepted as NDJSON is accepted as JSON with the same events (a JSON body may
//! be concatenated objects, which NDJSON lines are).
#![no_main]

use auditflow::config::Limits;
use auditflow::ingest::body::{self, BodyFormat};
use auditflow::ingest::parse;
use auditflow_fuzz::{
    SOURCE, assert_client_error, assert_no_echo, assert_same_outcome, assert_storable, gzip, tight_limits,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let format = if mode & 1 != 0 {
        BodyFormat::Ndjson
    } else {
        BodyFormat::Json
    };
    let limits = if mode & 4 != 0 {
        tight_limits()
    } else {
        Limits::default()
    };

    if mode & 8 != 0 {
        // Raw gzip bytes as sent: whatever they hold, decoding answers, within the limit.
        match body::decode(rest, Some("gzip"), &limits) {
            Ok(inflated) => {
                assert!(
                    inflated.len() <= limits.max_decompressed_bytes,
                    "inflated past the limit"
                );
                let _ = parse_and_check(&inflated, format, &limits);
            }
            Err(e) => assert_client_error(&e),
        }
        return;
    }

    let plain = parse_and_check(rest, format, &limits);
    if mode & 2 != 0 {
        let wrapped = gzip(rest);
        let gz = body::decode(&wrapped, Some("gzip"), &limits).and_then(|inflated| {
            assert_eq!(&*inflated, rest, "gzip did not round-trip");
            parse::parse_events(&inflated, format, &limits, SOURCE)
        });
        if wrapped.len() <= limits.max_body_bytes && rest.len() <= limits.max_decompressed_bytes {
            assert_same_outcome(&plain, &gz);
        }
    }
    if format == BodyFormat::Ndjson
        && let Ok(ndjson) = &plain
    {
        let json = parse::parse_events(rest, BodyFormat::Json, &limits, SOURCE);
        assert_same_outcome(&Ok(ndjson.clone()), &json);
    }
});

/// Parse a decoded body and check what came out.
fn parse_and_check(
    decoded: &[u8],
    format: BodyFormat,
    limits: &Limits,
) -> Result<Vec<auditflow::event::Event>, auditflow::ingest::ApiError> {
    let parsed = body::decode(decoded, None, limits).and_then(|d| parse::parse_events(&d, format, limits, SOURCE));
    match &parsed {
        Ok(events) => assert_storable(events, limits),
        Err(e) => {
            assert_client_error(e);
            assert_no_echo(decoded, e);
        }
    }
    parsed
}
