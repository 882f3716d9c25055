//! The HTTP plumbing every sink shares: one `reqwest` client per sink (kept-alive connections,
//! a per-request timeout, no redirects: a POST must not silently turn into a GET elsewhere),
//! and the answer reduced to what [`super::retry`] looks at (status, `Retry-After`, a bounded
//! body). Network errors are described without the URL's query string or any body.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Client, Url};

use super::retry::parse_retry_after;

/// The most of an answer's body kept for classification: vendors answer with a few dozen
/// bytes of JSON; anything longer is not needed and not stored.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One request body, framed for the protocol and possibly gzipped.
#[derive(Debug, Clone)]
pub struct RequestBody {
    pub bytes: Bytes,
    /// Size before compression (what the vendors' limits count).
    pub uncompressed: usize,
    pub gzip: bool,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// `Retry-After`, capped at the sink's `retry.max_retry_after_secs`.
    pub retry_after: Option<Duration>,
    /// At most [`MAX_ANSWER_BYTES`] of the body.
    pub body: Bytes,
}

/// A request that got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("request timed out")]
    Timeout,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("network error: {0}")]
    Other(String),
}

/// The outcome of one request.
pub type Attempt = Result<Response, NetworkError>;

/// A sink's HTTP client and fixed headers.
pub struct Transport {
    client: Client,
    headers: HeaderMap,
    max_retry_after: Duration,
}

impl Transport {
    pub fn new(headers: HeaderMap, timeout: Duration, max_retry_after: Duration) -> Result<Transport, String> {
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("auditflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", describe(&e)))?;
        Ok(Transport {
            client,
            headers,
            max_retry_after,
        })
    }

    /// POST `body` to `url` with the sink's headers, `Content-Type` and, for a gzipped body,
    /// `Content-Encoding: gzip`.
    pub async fn post(&self, url: &Url, content_type: &'static str, body: &RequestBody) -> Attempt {
        let mut request = self
            .client
            .post(url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
            .body(body.bytes.clone());
        if body.gzip {
            request = request.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        self.finish(request.send().await).await
    }

    /// POST a small JSON document (Splunk's ack poll), uncompressed.
    pub async fn post_json(&self, url: &Url, json: Vec<u8>) -> Attempt {
        let request = self
            .client
            .post(url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(json);
        self.finish(request.send().await).await
    }

    async fn finish(&self, sent: Result<reqwest::Response, reqwest::Error>) -> Attempt {
        let resp = sent.map_err(network_error)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now(), self.max_retry_after));
        let mut body = Vec::new();
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(network_error)? {
            let room = MAX_ANSWER_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        Ok(Response {
            status,
            retry_after,
            body: body.into(),
        })
    }
}

fn network_error(e: reqwest::Error) -> NetworkError {
    if e.is_timeout() {
        NetworkError::Timeout
    } else if e.is_connect() {
        NetworkError::Connect(describe(&e))
    } else {
        NetworkError::Other(describe(&e))
    }
}

/// The error and its causes, without the URL.
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut out = e.to_string();
    if let Some(url) = e.url() {
        out = out.replace(url.as_str(), "<endpoint>");
    }
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
