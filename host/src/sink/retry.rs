//! What happens after a request: the one place each sink's answer is turned into a
//! [`Decision`] (retry, split, dead-letter, done or stop), plus the backoff between retries.
//!
//! One `classify` function per sink ([`splunk_hec`], [`datadog_logs`], [`http`]), each a
//! table over the vendor's documented status codes (docs/reference/siem-protocols.md):
//!
//! | answer | decision | why |
//! |---|---|---|
//! | 2xx | done | HEC: with indexer ack, carries the `ackId` |
//! | network error, 408, 429, 5xx | retry | transient; `Retry-After` honoured, else backoff |
//! | 413 | split | the batch is too large; one event alone that is too large is dead-lettered |
//! | HEC 400 code 6 + `invalid-event-number` N | dead-letter event N | events before N were accepted (a blind resend would duplicate them), the rest is resent |
//! | other 400 (HEC codes 5, 6, 12, 13, 15; Datadog; http 400/422) | dead-letter | content refused: the batch is halved until the bad events stand alone |
//! | 401, 403 | stop | token missing, invalid or disabled: stop the sink, keep the events, open the breaker |
//! | HEC 400 codes 7, 10, 11, 14, 16 | stop | configuration (index not allowed, channel, ack disabled, query-string auth): every event would fail the same way |
//! | other 3xx/4xx (404, 405, 415, …) | stop | wrong endpoint or protocol: a configuration error |
//!
//! Retries never give up on their own: the events stay in the store until the destination
//! takes them, while the breaker keeps the request rate bounded.

use std::time::Duration;

use serde::Deserialize;

use super::transport::{Attempt, Response};

/// Why events were refused, for the dead-letter table: a short code and a detail for people.
/// Never event contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `hec_code_6`, `http_400`, `http_413`, `too_large`, `format_error`, …
    pub reason: String,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: impl Into<String>, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// What to do with a batch after one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Accepted. `ack_id`: Splunk's indexer acknowledgement id, when the token uses acks.
    Done { ack_id: Option<u64> },
    /// Send the same batch again after `after` (the destination's `Retry-After`) or, when it
    /// said nothing, after the backoff.
    Retry { after: Option<Duration>, why: String },
    /// Too large: send each half on its own.
    Split { why: Refusal },
    /// Content refused. `first_bad: Some(n)`: event n of the request is bad and those before
    /// it were accepted. `None`: the request as a whole was refused; a batch of one is
    /// dead-lettered, a larger one is halved to find the bad events.
    DeadLetter { first_bad: Option<usize>, why: Refusal },
    /// The sink cannot work as configured (credentials, endpoint): stop sending, keep the
    /// events, open the breaker, alert.
    Stop { why: String },
}

/// The Splunk HEC reply body: `{"text":"…","code":N,"ackId":N,"invalid-event-number":N}`.
#[derive(Debug, Default, Deserialize)]
struct HecReply {
    code: Option<i64>,
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
    #[serde(rename = "invalid-event-number")]
    invalid_event_number: Option<usize>,
}

/// Splunk's meaning of a HEC status code (the vendor's table; our words, never the body).
fn hec_meaning(code: i64) -> &'static str {
    match code {
        0 => "success",
        1 => "token disabled",
        2 => "token is required",
        3 => "invalid authorization",
        4 => "invalid token",
        5 => "no data",
        6 => "invalid data format",
        7 => "incorrect index",
        8 => "internal server error",
        9 => "server is busy",
        10 => "data channel is missing",
        11 => "invalid data channel",
        12 => "event field is required",
        13 => "event field cannot be blank",
        14 => "ACK is disabled",
        15 => "error in handling indexed fields",
        16 => "query string authorization is not enabled",
        17 => "HEC is healthy",
        18..=20 => "HEC is unhealthy",
        23 => "server is shutting down",
        26 | 27 => "queue or ack channel at capacity",
        _ => "unknown code",
    }
}

/// The decision for a Splunk HEC answer.
pub fn splunk_hec(attempt: &Attempt) -> Decision {
    let r = match attempt {
        Err(e) => {
            return Decision::Retry {
                after: None,
                why: e.to_string(),
            };
        }
        Ok(r) => r,
    };
    let reply: HecReply = serde_json::from_slice(&r.body).unwrap_or_default();
    let described = match reply.code {
        Some(code) => format!("HTTP {}, HEC code {code} ({})", r.status, hec_meaning(code)),
        None => format!("HTTP {}", r.status),
    };
    match (r.status, reply.code) {
        (200..=299, _) => Decision::Done { ack_id: reply.ack_id },
        (400, Some(6)) => {
            let why = Refusal::new(
                "hec_code_6",
                match reply.invalid_event_number {
                    Some(n) => format!("{described}, invalid-event-number {n}"),
                    None => described,
                },
            );
            Decision::DeadLetter {
                first_bad: reply.invalid_event_number,
                why,
            }
        }
        (400, Some(code @ (7 | 10 | 11 | 14 | 16))) => Decision::Stop {
            why: format!("{described}: fix the sink's configuration (code {code})"),
        },
        (400, code) => {
            let reason = code.map_or_else(|| "http_400".to_owned(), |c| format!("hec_code_{c}"));
            Decision::DeadLetter {
                first_bad: None,
                why: Refusal::new(reason, described),
            }
        }
        _ => common(r, described),
    }
}

/// The decision for a Datadog Logs intake answer (202 Accepted on success).
pub fn datadog_logs(attempt: &Attempt) -> Decision {
    match attempt {
        Err(e) => Decision::Retry {
            after: None,
            why: e.to_string(),
        },
        Ok(r) => match r.status {
            200..=299 => Decision::Done { ack_id: None },
            400 => Decision::DeadLetter {
                first_bad: None,
                why: Refusal::new("http_400", "HTTP 400 (bad payload)"),
            },
            _ => common(r, format!("HTTP {}", r.status)),
        },
    }
}

/// The decision for a generic HTTP endpoint.
pub fn http(attempt: &Attempt) -> Decision {
    match attempt {
        Err(e) => Decision::Retry {
            after: None,
            why: e.to_string(),
        },
        Ok(r) => match r.status {
            200..=299 => Decision::Done { ack_id: None },
            400 | 422 => Decision::DeadLetter {
                first_bad: None,
                why: Refusal::new(
                    format!("http_{}", r.status),
                    format!("HTTP {} (content refused)", r.status),
                ),
            },
            _ => common(r, format!("HTTP {}", r.status)),
        },
    }
}

/// The rows every vendor shares: auth, size, transient and configuration errors.
fn common(r: &Response, described: String) -> Decision {
    match r.status {
        401 | 403 => Decision::Stop {
            why: format!("{described}: the token or key was refused"),
        },
        413 => Decision::Split {
            why: Refusal::new("http_413", format!("{described}: payload too large")),
        },
        408 | 429 | 500..=599 => Decision::Retry {
            after: r.retry_after,
            why: described,
        },
        _ => Decision::Stop {
            why: format!("{described}: unexpected answer; check the endpoint"),
        },
    }
}

/// Parse `Retry-After`: delay-seconds or an HTTP date, capped at `max`.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>, max: Duration) -> Option<Duration> {
    let value = value.trim();
    let after = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        (when.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(after.min(max))
}

/// Exponential backoff with full jitter: the n-th retry (from 0) waits a uniformly random
/// time in `[0, min(max, initial × 2ⁿ)]`. Full jitter spreads the retries of many clients
/// (or many sinks) after a shared outage instead of synchronising them.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The ceiling of retry `n`.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry `n`.
    pub fn delay(&self, n: u32) -> Duration {
        let ceiling = self.ceiling(n).as_micros() as u64;
        // A failed random read only loses the jitter, not the backoff.
        let r = getrandom::u64().unwrap_or(u64::MAX / 2);
        Duration::from_micros(if ceiling == 0 { 0 } else { r % (ceiling + 1) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::transport::NetworkError;

    fn answer(status: u16, body: &str) -> Attempt {
        Ok(Response {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec().into(),
        })
    }

    #[test]
    fn hec_table() {
        assert_eq!(
            splunk_hec(&answer(200, r#"{"text":"Success","code":0}"#)),
            Decision::Done { ack_id: None }
        );
        assert_eq!(
            splunk_hec(&answer(200, r#"{"text":"Success","code":0,"ackId":7}"#)),
            Decision::Done { ack_id: Some(7) }
        );
        match splunk_hec(&answer(
            400,
            r#"{"text":"Invalid data format","code":6,"invalid-event-number":3}"#,
        )) {
            Decision::DeadLetter {
                first_bad: Some(3),
                why,
            } => assert_eq!(why.reason, "hec_code_6"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            splunk_hec(&answer(400, r#"{"code":6}"#)),
            Decision::DeadLetter { first_bad: None, .. }
        ));
        assert!(matches!(
            splunk_hec(&answer(400, r#"{"code":12}"#)),
            Decision::DeadLetter { first_bad: None, .. }
        ));
        assert!(matches!(
            splunk_hec(&answer(400, r#"{"code":7}"#)),
            Decision::Stop { .. }
        ));
        assert!(matches!(
            splunk_hec(&answer(400, r#"{"code":10}"#)),
            Decision::Stop { .. }
        ));
        assert!(matches!(
            splunk_hec(&answer(401, r#"{"code":2}"#)),
            Decision::Stop { .. }
        ));
        assert!(matches!(
            splunk_hec(&answer(403, r#"{"code":1}"#)),
            Decision::Stop { .. }
        ));
        assert!(matches!(splunk_hec(&answer(413, "")), Decision::Split { .. }));
        for status in [408, 429, 500, 503] {
            assert!(
                matches!(splunk_hec(&answer(status, r#"{"code":9}"#)), Decision::Retry { .. }),
                "{status}"
            );
        }
        assert!(matches!(splunk_hec(&answer(404, "")), Decision::Stop { .. }));
        let network: Attempt = Err(NetworkError::Timeout);
        assert!(matches!(splunk_hec(&network), Decision::Retry { after: None, .. }));
    }

    #[test]
    fn datadog_and_http_tables() {
        assert_eq!(datadog_logs(&answer(202, "{}")), Decision::Done { ack_id: None });
        assert!(matches!(
            datadog_logs(&answer(400, "")),
            Decision::DeadLetter { first_bad: None, .. }
        ));
        assert!(matches!(datadog_logs(&answer(403, "")), Decision::Stop { .. }));
        assert!(matches!(datadog_logs(&answer(413, "")), Decision::Split { .. }));
        let mut throttled = answer(429, "");
        if let Ok(r) = &mut throttled {
            r.retry_after = Some(Duration::from_secs(2));
        }
        assert_eq!(
            datadog_logs(&throttled),
            Decision::Retry {
                after: Some(Duration::from_secs(2)),
                why: "HTTP 429".into()
            }
        );
        assert!(matches!(http(&answer(422, "")), Decision::DeadLetter { .. }));
        assert!(matches!(http(&answer(502, "")), Decision::Retry { .. }));
        assert!(matches!(http(&answer(301, "")), Decision::Stop { .. }));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let cap = Duration::from_secs(600);
        assert_eq!(parse_retry_after("3", now, cap), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now, cap),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("99999", now, cap), Some(cap));
        assert_eq!(parse_retry_after("soon", now, cap), None);
    }

    #[test]
    fn backoff_grows_to_its_cap_with_full_jitter() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(10), Duration::from_secs(2));
        assert_eq!(b.ceiling(200), Duration::from_secs(2));
        for n in 0..20 {
            assert!(b.delay(n) <= b.ceiling(n));
        }
    }
}
