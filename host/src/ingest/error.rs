//! The one error type every ingest step answers with, and its HTTP shape.
//!
//! A refused request gets a JSON body `{"error": "...", "index": N, "field": "...", "line": L,
//! "column": C}`; members that do not apply are omitted. `index` is the 0-based position of the
//! offending event in the request, `field` its top-level field (or `actor.id`-style path),
//! `line`/`column` the 1-based position of a JSON syntax error in the (decompressed) body.
//!
//! Messages name fields, indexes, positions and limits — **never values from the body**. This is
//! an audit pipeline whose redaction stages run after ingest: an error message echoed into a
//! client log or our own trace must not carry the secrets the redactor would have removed.

use std::fmt;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A refused request: status, message, and where in the body the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Human-readable message; names fields and limits, never event contents.
    pub error: String,
    /// 0-based index of the offending event in the request.
    pub index: Option<usize>,
    /// The offending field (top-level name, or a dotted path such as `actor.id`).
    pub field: Option<String>,
    /// 1-based line of a JSON syntax error in the decompressed body.
    pub line: Option<usize>,
    /// 1-based column (in bytes) of a JSON syntax error.
    pub column: Option<usize>,
    /// Seconds for the `Retry-After` header (503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// Any status with a message; the named constructors below are the usual way in.
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            index: None,
            field: None,
            line: None,
            column: None,
            retry_after: None,
        }
    }

    /// 400: the body cannot be read as events at all (malformed JSON, corrupt gzip, empty).
    pub fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error)
    }

    /// 422: event `index` is well-formed JSON but not a valid event; `field` names what is
    /// wrong (None when the event as a whole is, e.g. not an object).
    pub fn unprocessable(index: usize, field: Option<&str>, error: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error);
        e.index = Some(index);
        e.field = field.map(str::to_owned);
        e
    }

    /// 413: a size or count limit was exceeded; the message names the limit.
    pub fn too_large(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, error)
    }

    /// 415: Content-Type or Content-Encoding we do not accept; the message lists what we do.
    pub fn unsupported_media_type(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, error)
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid bearer token")
    }

    /// 503 with `Retry-After: retry_after_secs`: the store cannot take events right now.
    pub fn unavailable(retry_after_secs: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("temporarily unable to accept events; retry after {retry_after_secs} s"),
        );
        e.retry_after = Some(retry_after_secs);
        e
    }

    /// 500: our fault. The message must not carry event contents either.
    pub fn internal(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error)
    }

    /// The event this error is about.
    pub fn with_index(mut self, index: usize) -> ApiError {
        self.index = Some(index);
        self
    }

    /// The field this error is about.
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// Where in the body a syntax error is (1-based line and column).
    pub fn at(mut self, line: usize, column: usize) -> ApiError {
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.error)
    }
}

impl std::error::Error for ApiError {}

/// The JSON body of an error response.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.error,
            index: self.index,
            field: self.field.as_deref(),
            line: self.line,
            column: self.column,
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    async fn body_json(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn unprocessable_body_names_index_and_field_and_omits_the_rest() {
        let response = ApiError::unprocessable(3, Some("timestamp"), "event 3: bad timestamp").into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        assert_eq!(
            body_json(response).await,
            json!({"error": "event 3: bad timestamp", "index": 3, "field": "timestamp"})
        );
    }

    #[tokio::test]
    async fn syntax_error_body_carries_line_and_column() {
        let response = ApiError::bad_request("malformed JSON").at(2, 7).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body_json(response).await,
            json!({"error": "malformed JSON", "line": 2, "column": 7})
        );
    }

    #[tokio::test]
    async fn unavailable_sets_retry_after() {
        let response = ApiError::unavailable(5).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "5");
        let body = body_json(response).await;
        assert!(body.get("retry_after").is_none(), "{body}");
    }

    #[tokio::test]
    async fn unauthorized_asks_for_a_bearer_token() {
        let response = ApiError::unauthorized().into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers().get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn other_statuses_do_not_ask_for_credentials() {
        let response = ApiError::too_large("body exceeds max_body_bytes").into_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn display_shows_status_code_and_message() {
        let e = ApiError::unsupported_media_type("Content-Type `text/plain` is not accepted");
        assert_eq!(e.to_string(), "415 Content-Type `text/plain` is not accepted");
    }
}
