//! The HTTP plumbing every sink shares: one `reqwest` client per sink (kept-alive connections,
//! a per-request timeout, no redirects: a POST must not silently turn into a GET elsewhere,
//! rustls with the public roots plus the sink's own CA, and its client certificate for mutual
//! TLS), and the answer reduced to what [`super::retry`] looks at (status, `Retry-After`, a
//! bounded body). Network errors are described without the URL's query string or any body.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Client, Url};

use super::retry::parse_retry_after;
use crate::config::{Config, MAX_PEM_FILE_BYTES, SinkConfig, read_file_bounded};

/// A sink's TLS settings, with the PEM files read (at start-up, so a missing file fails there).
#[derive(Default)]
pub struct TlsOptions {
    /// `tls_ca_file`: CA certificates trusted besides (or, with `only_custom_ca`, instead of)
    /// the public roots.
    ca: Option<Vec<reqwest::Certificate>>,
    only_custom_ca: bool,
    /// `tls_client_cert_file` + `tls_client_key_file`.
    identity: Option<reqwest::Identity>,
}

impl TlsOptions {
    /// Read the files a sink's `tls_*` keys name; errors name the key and the file.
    pub fn load(config: &Config, sc: &SinkConfig) -> Result<TlsOptions, String> {
        let read = |key: &str, file: &std::path::Path| {
            read_file_bounded(&config.resolve_path(file), MAX_PEM_FILE_BYTES).map_err(|e| format!("{key}: {e}"))
        };
        let ca = match &sc.tls_ca_file {
            None => None,
            Some(file) => {
                let certs = reqwest::Certificate::from_pem_bundle(&read("tls_ca_file", file)?)
                    .map_err(|_| format!("tls_ca_file: {} holds no PEM certificate", file.display()))?;
                if certs.is_empty() {
                    return Err(format!("tls_ca_file: {} holds no PEM certificate", file.display()));
                }
                Some(certs)
            }
        };
        let identity = match (&sc.tls_client_cert_file, &sc.tls_client_key_file) {
            (Some(cert), Some(key)) => {
                let mut pem = read("tls_client_cert_file", cert)?;
                pem.push(b'\n');
                pem.extend(read("tls_client_key_file", key)?);
                Some(reqwest::Identity::from_pem(&pem).map_err(|_| {
                    format!(
                        "tls_client_cert_file {} and tls_client_key_file {} do not make a client certificate",
                        cert.display(),
                        key.display()
                    )
                })?)
            }
            _ => None,
        };
        Ok(TlsOptions {
            ca,
            only_custom_ca: sc.tls_only_custom_ca,
            identity,
        })
    }
}

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
    pub fn new(
        headers: HeaderMap,
        timeout: Duration,
        max_retry_after: Duration,
        tls: &TlsOptions,
    ) -> Result<Transport, String> {
        let mut builder = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("auditflow/", env!("CARGO_PKG_VERSION")))
            .tls_built_in_root_certs(!tls.only_custom_ca);
        for ca in tls.ca.iter().flatten() {
            builder = builder.add_root_certificate(ca.clone());
        }
        if let Some(identity) = &tls.identity {
            builder = builder.identity(identity.clone());
        }
        let client = builder
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
