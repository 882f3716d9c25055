//! Protocol-faithful SIEM receivers for the sink tests: Splunk HEC (`/services/collector/event`
//! and `/services/collector/ack`), Datadog Logs intake v2 (`/api/v2/logs`) and a generic
//! NDJSON endpoint, each a real axum server on a loopback port.
//!
//! They check what the vendors check (docs/reference/siem-protocols.md): the auth header,
//! the body encoding, the size and count limits and the body's shape (stacked envelopes for
//! HEC, an array of log items for Datadog), and answer with the vendors' status codes and
//! bodies: HEC's `{"text","code"}` table including 400 code 6 with `invalid-event-number`,
//! Datadog's 202/400/401/403/413. Everything they see is recorded for the test: every request
//! (time, answer, size, encoding), every accepted document, and every protocol violation.
//!
//! Tests steer them: an outage mode (answer 503 or 429 + `Retry-After`), poison event ids
//! (HEC answers 400 code 6 at that event), a response delay, a smaller size limit, and, for
//! indexer acknowledgement, ack ids that are never acknowledged.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// Splunk's classic `max_content_length` (bytes, uncompressed).
pub const HEC_MAX_CONTENT_LENGTH: usize = 1_000_000;
/// Datadog's limits per request.
pub const DD_MAX_BYTES: usize = 5_000_000;
pub const DD_MAX_ITEMS: usize = 1000;

/// Which protocol a receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hec,
    Datadog,
    Ndjson,
}

/// How the receiver answers requests that pass authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Accept,
    /// Answer every request with this status (503 busy, 429 with `Retry-After` seconds, …).
    Fail {
        status: u16,
        retry_after: Option<u64>,
    },
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub at: Instant,
    pub status: u16,
    /// Documents in the body (0 when it was not parsed).
    pub events: usize,
    /// Body size after decompression.
    pub raw_bytes: usize,
    pub gzip: bool,
    pub channel: Option<String>,
}

#[derive(Default)]
struct AckBook {
    next_id: u64,
    /// Accepted batches waiting for their acknowledgement.
    pending: HashMap<u64, Vec<Value>>,
    /// Ids that are never acknowledged (the indexer "lost" the batch).
    lost: HashSet<u64>,
    /// How many of the next ack ids to lose.
    lose_next: usize,
}

/// What a receiver knows; shared between its handlers and the test.
pub struct Shared {
    pub kind: Kind,
    /// The HEC token, Datadog API key or bearer token it accepts.
    secret: Mutex<String>,
    mode: Mutex<Mode>,
    requests: Mutex<Vec<RequestRecord>>,
    accepted: Mutex<Vec<Value>>,
    violations: Mutex<Vec<String>>,
    poison: Mutex<HashSet<String>>,
    max_bytes: Mutex<usize>,
    delay: Mutex<Duration>,
    /// HEC: indexer acknowledgement is on for the token.
    ack: bool,
    acks: Mutex<AckBook>,
}

/// A running receiver; stopped when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A Splunk HEC receiver accepting `token`; with `ack`, the token uses indexer
    /// acknowledgement.
    pub async fn hec(token: &str, ack: bool) -> Receiver {
        let router = Router::new()
            .route("/services/collector/event", post(hec_event))
            .route("/services/collector", post(hec_event))
            .route("/services/collector/ack", post(hec_ack))
            .route("/services/collector/health", get(hec_health));
        Self::start(Kind::Hec, token, ack, HEC_MAX_CONTENT_LENGTH, router).await
    }

    /// A Splunk HEC receiver served over HTTPS with `cert_pem`/`key_pem`; with `client_ca_pem`
    /// it requires a client certificate from that CA (mutual TLS).
    pub async fn hec_tls(token: &str, cert_pem: &str, key_pem: &str, client_ca_pem: Option<&str>) -> Receiver {
        let router = Router::new()
            .route("/services/collector/event", post(hec_event))
            .route("/services/collector/ack", post(hec_ack));
        let tls = server_tls(cert_pem, key_pem, client_ca_pem);
        Self::start_with(Kind::Hec, token, false, HEC_MAX_CONTENT_LENGTH, router, Some(tls)).await
    }

    /// A Datadog Logs intake accepting API key `key`.
    pub async fn datadog(key: &str) -> Receiver {
        let router = Router::new().route("/api/v2/logs", post(datadog_logs));
        Self::start(Kind::Datadog, key, false, DD_MAX_BYTES, router).await
    }

    /// A generic NDJSON endpoint at `/ingest`; `bearer` empty means no auth.
    pub async fn ndjson(bearer: &str) -> Receiver {
        let router = Router::new().route("/ingest", post(ndjson_ingest));
        Self::start(Kind::Ndjson, bearer, false, 10_000_000, router).await
    }

    async fn start(kind: Kind, secret: &str, ack: bool, max_bytes: usize, router: Router<Arc<Shared>>) -> Receiver {
        Self::start_with(kind, secret, ack, max_bytes, router, None).await
    }

    async fn start_with(
        kind: Kind,
        secret: &str,
        ack: bool,
        max_bytes: usize,
        router: Router<Arc<Shared>>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Receiver {
        let shared = Arc::new(Shared {
            kind,
            secret: Mutex::new(secret.to_owned()),
            mode: Mutex::new(Mode::Accept),
            requests: Mutex::default(),
            accepted: Mutex::default(),
            violations: Mutex::default(),
            poison: Mutex::default(),
            max_bytes: Mutex::new(max_bytes),
            delay: Mutex::new(Duration::ZERO),
            ack,
            acks: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let app = router.with_state(shared.clone());
        let task = match tls {
            None => tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }),
            Some(tls) => tokio::spawn(serve_tls(listener, app, tls)),
        };
        Receiver { base, shared, task }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    pub fn set_secret(&self, secret: &str) {
        *self.shared.secret.lock().unwrap() = secret.to_owned();
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    pub fn set_max_bytes(&self, max: usize) {
        *self.shared.max_bytes.lock().unwrap() = max;
    }

    /// HEC answers 400 code 6 at the envelope carrying this `fields.event_id`.
    pub fn poison(&self, event_id: &str) {
        self.shared.poison.lock().unwrap().insert(event_id.to_owned());
    }

    pub fn cure(&self) {
        self.shared.poison.lock().unwrap().clear();
    }

    /// The next `n` ack ids handed out are never acknowledged.
    pub fn lose_next_acks(&self, n: usize) {
        self.shared.acks.lock().unwrap().lose_next = n;
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every accepted document (with HEC ack: every acknowledged one), in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        self.shared.accepted.lock().unwrap().clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().unwrap().clone()
    }

    /// The event id of each accepted document, in arrival order.
    pub fn accepted_ids(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .filter_map(|d| event_id(self.shared.kind, d))
            .collect()
    }

    /// Distinct accepted event ids.
    pub fn distinct_ids(&self) -> HashSet<String> {
        self.accepted_ids().into_iter().collect()
    }
}

/// Where each format carries the event id: HEC `fields.event_id`, Datadog `event_id`, OCSF
/// `metadata.uid` (the NDJSON endpoint's usual body).
pub fn event_id(kind: Kind, doc: &Value) -> Option<String> {
    let v = match kind {
        Kind::Hec => &doc["fields"]["event_id"],
        Kind::Datadog => &doc["event_id"],
        Kind::Ndjson => &doc["metadata"]["uid"],
    };
    v.as_str().map(str::to_owned)
}

impl Shared {
    fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }

    fn record(&self, status: u16, events: usize, raw_bytes: usize, gzip: bool, headers: &HeaderMap) {
        let channel = headers
            .get("x-splunk-request-channel")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.requests.lock().unwrap().push(RequestRecord {
            at: Instant::now(),
            status,
            events,
            raw_bytes,
            gzip,
            channel,
        });
    }

    fn mode(&self) -> Mode {
        self.mode.lock().unwrap().clone()
    }

    fn secret(&self) -> String {
        self.secret.lock().unwrap().clone()
    }

    async fn delay(&self) {
        let d = *self.delay.lock().unwrap();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

fn answer(status: u16, body: Value, retry_after: Option<u64>) -> Response {
    let mut resp = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, secs.to_string().parse().unwrap());
    }
    resp
}

/// The body decompressed as its `Content-Encoding` says: (bytes, was gzip), or the answer to
/// an encoding the vendor refuses.
fn decode(headers: &HeaderMap, body: &Bytes) -> Result<(Vec<u8>, bool), &'static str> {
    match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?")) {
        None | Some("identity") => Ok((body.to_vec(), false)),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(64 << 20)
                .read_to_end(&mut out)
                .map_err(|_| "body is not valid gzip")?;
            Ok((out, true))
        }
        Some(_) => Err("unsupported content encoding"),
    }
}

// ---------------------------------------------------------------------------------------------
// Splunk HEC

fn hec_reply(status: u16, text: &str, code: i64) -> Response {
    answer(status, json!({ "text": text, "code": code }), None)
}

/// Splunk's check of the `Authorization: Splunk <token>` header (codes 2, 3, 4): the refusal,
/// or `None` when the token is right.
fn hec_auth(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Some(hec_reply(401, "Token is required", 2));
    };
    let Some(token) = value.strip_prefix("Splunk ") else {
        return Some(hec_reply(401, "Invalid authorization", 3));
    };
    if token != s.secret() {
        return Some(hec_reply(403, "Invalid token", 4));
    }
    None
}

/// Check one envelope; `Err((code, text))` is HEC's answer for it.
fn check_envelope(s: &Shared, item: &Value) -> Result<(), (i64, &'static str)> {
    let Some(obj) = item.as_object() else {
        return Err((6, "Invalid data format"));
    };
    for key in obj.keys() {
        if !["time", "host", "source", "sourcetype", "index", "event", "fields"].contains(&key.as_str()) {
            s.violation(format!("HEC envelope has an unknown key `{key}`"));
        }
    }
    match obj.get("event") {
        None | Some(Value::Null) => return Err((12, "Event field is required")),
        Some(Value::String(e)) if e.is_empty() => return Err((13, "Event field cannot be blank")),
        _ => {}
    }
    match obj.get("time") {
        None | Some(Value::Number(_)) => {}
        Some(Value::String(t)) if t.parse::<f64>().is_ok() => {}
        Some(_) => return Err((6, "Invalid data format")),
    }
    if let Some(fields) = obj.get("fields") {
        let flat = fields.as_object().is_some_and(|f| {
            f.values().all(|v| match v {
                Value::String(_) | Value::Number(_) => true,
                Value::Array(items) => items.iter().all(|i| i.is_string() || i.is_number()),
                _ => false,
            })
        });
        if !flat {
            return Err((15, "Error in handling indexed fields"));
        }
    }
    Ok(())
}

async fn hec_event(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    s.delay().await;
    if let Some(resp) = hec_auth(&s, &headers) {
        s.record(resp.status().as_u16(), 0, body.len(), false, &headers);
        return resp;
    }
    if let Mode::Fail { status, retry_after } = s.mode() {
        s.record(status, 0, body.len(), false, &headers);
        let (text, code) = match status {
            503 => ("Server is busy", 9),
            429 => ("Server is busy; queue at capacity", 26),
            500 => ("Internal server error", 8),
            _ => ("Error", 8),
        };
        return answer(status, json!({ "text": text, "code": code }), retry_after);
    }
    if s.ack && headers.get("x-splunk-request-channel").is_none() {
        s.violation("HEC request without a channel while ack is on".into());
        s.record(400, 0, body.len(), false, &headers);
        return hec_reply(400, "Data channel is missing", 10);
    }
    let (raw, gzip) = match decode(&headers, &body) {
        Ok(d) => d,
        Err(what) => {
            s.violation(format!("HEC: {what}"));
            s.record(415, 0, body.len(), false, &headers);
            return hec_reply(415, "Unsupported media type", 6);
        }
    };
    if raw.len() > *s.max_bytes.lock().unwrap() {
        s.record(413, 0, raw.len(), gzip, &headers);
        return hec_reply(413, "Content too large", 27);
    }
    let first = raw.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => {
            s.record(400, 0, raw.len(), gzip, &headers);
            return hec_reply(400, "No data", 5);
        }
        Some(b'[') => {
            s.violation("HEC body is a JSON array, not stacked envelopes".into());
            s.record(400, 0, raw.len(), gzip, &headers);
            return answer(
                400,
                json!({ "text": "Invalid data format", "code": 6, "invalid-event-number": 0 }),
                None,
            );
        }
        _ => {}
    }
    let mut good = Vec::new();
    let mut refused: Option<(usize, i64, &str)> = None;
    for (i, item) in serde_json::Deserializer::from_slice(&raw)
        .into_iter::<Value>()
        .enumerate()
    {
        let item = match item {
            Ok(v) => v,
            Err(_) => {
                refused = Some((i, 6, "Invalid data format"));
                break;
            }
        };
        if let Err((code, text)) = check_envelope(&s, &item) {
            refused = Some((i, code, text));
            break;
        }
        let poisoned = item["fields"]["event_id"]
            .as_str()
            .is_some_and(|id| s.poison.lock().unwrap().contains(id));
        if poisoned {
            refused = Some((i, 6, "Invalid data format"));
            break;
        }
        good.push(item);
    }
    let events = good.len() + usize::from(refused.is_some());
    if let Some((n, code, text)) = refused {
        // HEC parses in order: the envelopes before the bad one are already in.
        s.accepted.lock().unwrap().extend(good);
        s.record(400, events, raw.len(), gzip, &headers);
        let mut body = json!({ "text": text, "code": code });
        if code == 6 {
            body["invalid-event-number"] = json!(n);
        }
        return answer(400, body, None);
    }
    s.record(200, events, raw.len(), gzip, &headers);
    if s.ack {
        let mut book = s.acks.lock().unwrap();
        let id = book.next_id;
        book.next_id += 1;
        if book.lose_next > 0 {
            book.lose_next -= 1;
            book.lost.insert(id);
        }
        book.pending.insert(id, good);
        return answer(200, json!({ "text": "Success", "code": 0, "ackId": id }), None);
    }
    s.accepted.lock().unwrap().extend(good);
    hec_reply(200, "Success", 0)
}

/// `POST /services/collector/ack`: `{"acks":[ids]}` → `{"acks":{"id":bool}}`; an id answered
/// `true` is forgotten, as Splunk does.
async fn hec_ack(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(resp) = hec_auth(&s, &headers) {
        return resp;
    }
    if !s.ack {
        return hec_reply(400, "ACK is disabled", 14);
    }
    if headers.get("x-splunk-request-channel").is_none() {
        s.violation("ack poll without a channel".into());
        return hec_reply(400, "Data channel is missing", 10);
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return hec_reply(400, "Invalid data format", 6);
    };
    let mut out = serde_json::Map::new();
    let mut book = s.acks.lock().unwrap();
    for id in req["acks"].as_array().into_iter().flatten().filter_map(Value::as_u64) {
        let indexed = !book.lost.contains(&id) && book.pending.contains_key(&id);
        if indexed && let Some(docs) = book.pending.remove(&id) {
            s.accepted.lock().unwrap().extend(docs);
        }
        out.insert(id.to_string(), json!(indexed));
    }
    answer(200, json!({ "acks": out }), None)
}

async fn hec_health() -> Response {
    hec_reply(200, "HEC is healthy", 17)
}

// ---------------------------------------------------------------------------------------------
// Datadog Logs intake v2

fn dd_error(status: u16, message: &str) -> Response {
    answer(status, json!({ "errors": [message] }), None)
}

async fn datadog_logs(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    s.delay().await;
    match headers.get("dd-api-key").and_then(|v| v.to_str().ok()) {
        None => {
            s.record(401, 0, body.len(), false, &headers);
            return dd_error(401, "Unauthorized");
        }
        Some(key) if key != s.secret() => {
            s.record(403, 0, body.len(), false, &headers);
            return dd_error(403, "Forbidden");
        }
        Some(_) => {}
    }
    if let Mode::Fail { status, retry_after } = s.mode() {
        s.record(status, 0, body.len(), false, &headers);
        return answer(status, json!({ "errors": ["Service unavailable"] }), retry_after);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        s.violation(format!("Datadog request with Content-Type {content_type:?}"));
    }
    let (raw, gzip) = match decode(&headers, &body) {
        Ok(d) => d,
        Err(what) => {
            s.violation(format!("Datadog: {what}"));
            s.record(400, 0, body.len(), false, &headers);
            return dd_error(400, "Bad request");
        }
    };
    if raw.len() > DD_MAX_BYTES.min(*s.max_bytes.lock().unwrap()) {
        s.violation(format!("Datadog payload of {} bytes", raw.len()));
        s.record(413, 0, raw.len(), gzip, &headers);
        return dd_error(413, "Payload too large");
    }
    let items = match serde_json::from_slice::<Value>(&raw) {
        Ok(Value::Array(items)) => items,
        Ok(obj @ Value::Object(_)) => vec![obj],
        _ => {
            s.violation("Datadog body is neither an array nor an object".into());
            s.record(400, 0, raw.len(), gzip, &headers);
            return dd_error(400, "Bad request");
        }
    };
    if items.len() > DD_MAX_ITEMS {
        s.violation(format!("Datadog array of {} items", items.len()));
        s.record(400, items.len(), raw.len(), gzip, &headers);
        return dd_error(400, "Too many items");
    }
    if items.iter().any(|i| !i.is_object() || !i["message"].is_string()) {
        s.violation("Datadog item without a message".into());
        s.record(400, items.len(), raw.len(), gzip, &headers);
        return dd_error(400, "Bad request");
    }
    s.record(202, items.len(), raw.len(), gzip, &headers);
    s.accepted.lock().unwrap().extend(items);
    answer(202, json!({}), None)
}

// ---------------------------------------------------------------------------------------------
// Generic NDJSON

async fn ndjson_ingest(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    s.delay().await;
    let secret = s.secret();
    if !secret.is_empty() {
        let expected = format!("Bearer {secret}");
        if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            s.record(401, 0, body.len(), false, &headers);
            return answer(401, json!({ "error": "unauthorized" }), None);
        }
    }
    if let Mode::Fail { status, retry_after } = s.mode() {
        s.record(status, 0, body.len(), false, &headers);
        return answer(status, json!({ "error": "unavailable" }), retry_after);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/x-ndjson" {
        s.violation(format!("NDJSON request with Content-Type {content_type:?}"));
    }
    let (raw, gzip) = match decode(&headers, &body) {
        Ok(d) => d,
        Err(_) => {
            s.record(400, 0, body.len(), false, &headers);
            return answer(400, json!({ "error": "bad encoding" }), None);
        }
    };
    let mut docs = Vec::new();
    for line in raw.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Value>(line) {
            Ok(v @ Value::Object(_)) => docs.push(v),
            _ => {
                s.violation("NDJSON line is not a JSON object".into());
                s.record(400, 0, raw.len(), gzip, &headers);
                return answer(400, json!({ "error": "bad line" }), None);
            }
        }
    }
    s.record(200, docs.len(), raw.len(), gzip, &headers);
    let n = docs.len();
    s.accepted.lock().unwrap().extend(docs);
    answer(200, json!({ "accepted": n }), None)
}

/// The receiver's rustls config: its certificate, and client certificates required from
/// `client_ca_pem` when given.
fn server_tls(cert_pem: &str, key_pem: &str, client_ca_pem: Option<&str>) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Serve `app` over TLS: each connection's handshake, then HTTP/1.1.
async fn serve_tls(listener: tokio::net::TcpListener, app: Router, tls: Arc<rustls::ServerConfig>) {
    use tower::ServiceExt;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            // A client that does not trust us, or presents no certificate, fails here.
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                app.clone().oneshot(request.map(axum::body::Body::new))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
