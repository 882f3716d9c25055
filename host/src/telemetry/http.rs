//! The per-request layer every HTTP route goes through, and the `/metrics` handler.
//!
//! For each request [`observe`]:
//! - takes the client's `X-Request-Id` when it is a sane token (1–128 characters of
//!   `A-Za-z0-9 _ . : -`), otherwise generates one (UUIDv7), and returns it in the response's
//!   `X-Request-Id` header;
//! - runs the request inside a `request` tracing span carrying that id, the method and the
//!   route template, so every log line the request produces carries the id (and, with OTLP
//!   export on, the request is one trace);
//! - records `auditflow_http_requests_total` and `auditflow_http_request_duration_seconds`;
//! - logs its completion: debug for successes and for health/metrics probes, info for 4xx,
//!   warn for 5xx.
//!
//! Nothing from the request body or query string is logged or becomes a label.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::metrics::metrics;

/// The request id header, read and written.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The `route` label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Request id, span, metrics and completion log for one request (`axum::middleware::from_fn`).
pub async fn observe(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane_request_id(v))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    let probe = route == "/metrics" || route.starts_with("/health");
    // Handlers see the id we settled on, whatever the client sent.
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), route = %route);
    let mut response = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    metrics().http.record(&route, status.as_u16(), elapsed);
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    span.in_scope(|| {
        let status = status.as_u16();
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        if probe || status < 400 {
            tracing::debug!(status, elapsed_ms, "request completed");
        } else if status < 500 {
            tracing::info!(status, elapsed_ms, "request refused");
        } else {
            tracing::warn!(status, elapsed_ms, "request failed");
        }
    });
    response
}

/// A client-supplied id is echoed into logs and headers, so only short token-like ids are taken.
pub fn is_sane_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// `GET /metrics`: Prometheus text exposition format.
pub async fn metrics_handler() -> Response {
    match metrics().render() {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_token_like_request_ids_are_taken() {
        assert!(is_sane_request_id("0191d1e4-7f3a-7c2b-9a51-3f6c2d1e0b9a"));
        assert!(is_sane_request_id("gw:req_42.retry-1"));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id(&"a".repeat(129)));
        assert!(!is_sane_request_id("id with spaces"));
        assert!(!is_sane_request_id("x\ny"));
        assert!(!is_sane_request_id("alice@example.com"));
    }
}
