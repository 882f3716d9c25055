//! Reading a request body under the server's time and memory bounds, so one slow or large
//! sender cannot hold connections or memory that the others need:
//!
//! - size: more than `max_body_bytes` (as declared, or as read) → 413;
//! - time: the body must arrive within `body_timeout_ms`, extended by one second for every
//!   `min_body_rate` bytes received (Apache's `mod_reqtimeout` rule): a client trickling a few
//!   bytes now and then gets 408 instead of holding the request open for minutes;
//! - memory: every request in flight holds, from a server-wide [`BodyBudget`] of
//!   `max_in_flight_body_bytes`, its body as sent, again as inflated from gzip, and
//!   [`PARSED_EVENTS_FACTOR`] times its JSON bytes for the events parsed from it, until it is
//!   answered. A request that does not fit gets 503 + `Retry-After`, so what ingest holds before
//!   the writer's queue is bounded by configuration, not by what clients send.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use crate::config::Limits;

/// Parsed events take this many times the bytes of the JSON they came from (measured on the
/// dev set: 4.06×, `cargo run --release -p auditflow-bench --bin parsed_size`).
pub const PARSED_EVENTS_FACTOR: usize = 4;

/// The bytes of request bodies the server holds at once (`max_in_flight_body_bytes`).
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    limit: usize,
}

/// Bytes held from the [`BodyBudget`] by one request; returned when dropped.
pub struct BudgetHold {
    budget: BodyBudget,
    permits: Option<OwnedSemaphorePermit>,
}

impl BodyBudget {
    pub fn new(limit: usize) -> BodyBudget {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// An empty hold to add to.
    pub fn hold(&self) -> BudgetHold {
        BudgetHold {
            budget: self.clone(),
            permits: None,
        }
    }

    /// Bytes held now by all requests.
    pub fn in_use(&self) -> usize {
        self.limit - self.bytes.available_permits()
    }
}

impl BudgetHold {
    /// Hold `n` more bytes; 503 when the budget cannot take them now.
    pub fn take(&mut self, n: usize) -> Result<(), ApiError> {
        if n == 0 {
            return Ok(());
        }
        let permits = u32::try_from(n)
            .ok()
            .and_then(|n| self.budget.bytes.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| {
                let mut e = ApiError::unavailable(1);
                e.error = format!(
                    "the server holds max_in_flight_body_bytes ({} bytes) of request bodies; retry after 1 s",
                    self.budget.limit
                );
                e
            })?;
        match &mut self.permits {
            Some(held) => held.merge(permits),
            None => self.permits = Some(permits),
        }
        Ok(())
    }
}

/// Read the whole body within the size, time and memory bounds above. The returned hold keeps
/// the body's bytes counted until it is dropped (when the request is answered).
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: &Limits,
    budget: &BodyBudget,
) -> Result<(Bytes, BudgetHold), ApiError> {
    let too_large = || {
        ApiError::too_large(format!(
            "request body exceeds max_body_bytes ({} bytes)",
            limits.max_body_bytes
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Err(too_large());
    }
    let mut hold = budget.hold();
    // A declared length is held up front; a chunked body as it arrives. A body the budget
    // cannot hold is still read to its end, into nothing, before the 503 goes out: an HTTP/1.1
    // client still sending its body would otherwise see a reset instead of the answer.
    let mut refused = match declared {
        Some(n) => hold.take(n).err(),
        None => None,
    };
    let started = tokio::time::Instant::now();
    let base = Duration::from_millis(limits.body_timeout_ms);
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(16 * 1024).min(limits.max_body_bytes));
    let mut body = body;
    let mut received = 0usize;
    loop {
        // One more second for every `min_body_rate` bytes received.
        let earned = Duration::from_secs_f64(received as f64 / limits.min_body_rate as f64);
        let frame = match tokio::time::timeout_at(started + base + earned, body.frame()).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "request body arrived too slowly: body_timeout_ms ({}) plus 1 s per min_body_rate ({} bytes) received",
                        limits.body_timeout_ms, limits.min_body_rate
                    ),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(ApiError::bad_request("could not read the request body")),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(chunk) = frame.into_data() else { continue };
        received += chunk.len();
        if received > limits.max_body_bytes {
            return Err(too_large());
        }
        if refused.is_none() && declared.is_none() {
            refused = hold.take(chunk.len()).err();
        }
        // Once refused, what arrives is counted (for the size limit and the rate), not kept.
        if refused.is_none() {
            buf.extend_from_slice(&chunk);
        }
    }
    match refused {
        Some(error) => Err(error),
        None => Ok((buf.freeze(), hold)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_past_its_limit_and_returns_bytes_when_dropped() {
        let budget = BodyBudget::new(100);
        let mut a = budget.hold();
        a.take(60).unwrap();
        a.take(30).unwrap();
        assert_eq!(budget.in_use(), 90);
        let mut b = budget.hold();
        let e = b.take(20).unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.error.contains("max_in_flight_body_bytes"), "{e}");
        drop(a);
        assert_eq!(budget.in_use(), 0);
        b.take(100).unwrap();
    }
}
