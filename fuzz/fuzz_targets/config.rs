//! Config parsing: TOML text → the validated [`Config`] (`Config::parse`, what `Config::load`
//! and every reload run on the file's text).
//!
//! Properties: no panic, whatever the text; a syntax error never repeats a string from the
//! text (the parser's own message quotes the offending line, which may hold an inline secret,
//! so only its position and reason may be reported); a config that parses keeps the rules the
//! rest of the host relies on (nonzero limits, a depth serde_json can reach, an in-flight
//! budget that holds one largest request, unique stage and sink names).
#![no_main]

use std::collections::HashSet;

use auditflow::config::Config;
use auditflow::ingest::ApiError;
use auditflow_fuzz::assert_no_echo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Ok(config) => {
            let l = &config.server.limits;
            assert!((1..=127).contains(&l.max_depth), "max_depth out of range");
            for value in [
                l.max_body_bytes,
                l.max_decompressed_bytes,
                l.max_events,
                l.max_event_bytes,
            ] {
                assert!(value > 0, "a zero size limit was accepted");
            }
            assert!(
                l.max_in_flight_body_bytes
                    >= l.max_body_bytes
                        .saturating_add(l.max_decompressed_bytes.saturating_mul(5)),
                "an in-flight budget smaller than one request was accepted"
            );
            assert!(config.pipeline.batch_size > 0, "a zero batch size was accepted");
            let mut stages = HashSet::new();
            assert!(
                config
                    .stages
                    .iter()
                    .all(|s| !s.name.is_empty() && stages.insert(&s.name)),
                "an empty or repeated stage name was accepted"
            );
            let mut sinks = HashSet::new();
            assert!(
                config.sinks.iter().all(|s| sinks.insert(&s.name)),
                "a repeated sink name was accepted"
            );
        }
        Err((key, message)) => {
            if key == "(syntax)" {
                let mut e = ApiError::bad_request(message);
                e.field = Some(key);
                assert_no_echo(data, &e);
            }
        }
    }
});
