//! End-to-end tests of TLS on every hop, with certificate authorities made in the test
//! (rcgen): HTTPS ingest over HTTP/1.1 and HTTP/2, refusal of plain HTTP and of TLS 1.1,
//! certificate rotation on SIGHUP with a request in flight, mutual TLS sources, PostgreSQL
//! over TLS (a cluster of the test's own with `ssl = on`), and a Splunk HEC receiver behind a
//! private CA.

mod common;
#[path = "common/siem.rs"]
mod siem;
#[path = "common/tls.rs"]
mod tls;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tls::{TestCa, der_of, presented_certificate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A config serving HTTPS with `server.crt`/`server.key` from its directory, the token from
/// `AUDITFLOW_TOKEN`, no stages, SQLite in the directory; `extra` is appended.
fn https_config(extra: &str) -> String {
    format!(
        "[server.tls]\ncert_file = \"server.crt\"\nkey_file = \"server.key\"\n{extra}\n\
         [[auth.tokens]]\nname = \"token-sender\"\nenv = \"AUDITFLOW_TOKEN\"\n\
         [storage]\nurl = \"sqlite://events.db\"\n"
    )
}

fn event(i: usize) -> Value {
    json!({"event_type": "tool_invoke", "timestamp": "2026-11-01T00:00:00Z",
           "actor": {"type": "user", "id": format!("user-{i}")}, "decision": "allow"})
}

/// Start an HTTPS server whose certificate is signed by `ca`; `files` are written beside the
/// config first.
fn start_https(ca: &TestCa, config: &str, files: &[(&str, &str)]) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    ca.server(&[]).write(dir.path(), "server");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    TestServer::start_https_in(dir, config)
}

async fn post(
    client: &reqwest::Client,
    server: &TestServer,
    token: Option<&str>,
    events: &[Value],
) -> reqwest::Result<(u16, Value, reqwest::Version)> {
    let mut request = client.post(server.url("/v1/events")).json(events);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let resp = request.send().await?;
    let version = resp.version();
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null), version))
}

/// HTTP/1.1 and HTTP/2 clients post over HTTPS and get their acks after the commit.
#[tokio::test(flavor = "multi_thread")]
async fn https_ingest_acks_http1_and_http2_clients() {
    let ca = TestCa::new("ingest CA");
    let server = start_https(&ca, &https_config(""), &[]);
    let h1 = reqwest::Client::builder()
        .http1_only()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let (status, ack, version) = post(&h1, &server, Some(TOKEN), &[event(1)]).await.unwrap();
    assert_eq!((status, version), (200, reqwest::Version::HTTP_11), "{ack}");
    assert_eq!(ack["accepted"], 1);

    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let (status, ack, version) = post(&h2, &server, Some(TOKEN), &[event(2), event(3)]).await.unwrap();
    assert_eq!((status, version), (200, reqwest::Version::HTTP_2), "{ack}");
    assert_eq!(ack["accepted"], 2);
    // An ALPN client (offers h2 and http/1.1) gets HTTP/2.
    let (_, _, version) = post(&ca.client_for(None), &server, Some(TOKEN), &[event(1)])
        .await
        .unwrap();
    assert_eq!(version, reqwest::Version::HTTP_2);
    assert_eq!(stored_rows(&server).len(), 4);
}

/// Plain HTTP sent to the TLS port gets no HTTP answer, and a TLS 1.1-only ClientHello is
/// refused with a protocol_version alert; nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn plain_http_and_tls_1_1_are_refused_on_the_tls_port() {
    let ca = TestCa::new("ingest CA");
    let server = start_https(&ca, &https_config(""), &[]);

    let body = serde_json::to_vec(&[event(1)]).unwrap();
    let mut plain = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    plain.write_all(request.as_bytes()).await.unwrap();
    plain.write_all(&body).await.unwrap();
    let answer = read_until_closed(&mut plain).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer on the TLS port"
    );

    // The same ClientHello is answered with a ServerHello when it says TLS 1.2, and refused
    // with a fatal alert when it says TLS 1.1: the version is what is refused.
    let mut tls12 = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    tls12.write_all(&client_hello([3, 3])).await.unwrap();
    let mut head = [0u8; 6];
    tls12.read_exact(&mut head).await.unwrap();
    assert_eq!((head[0], head[5]), (22, 2), "TLS 1.2 gets a ServerHello: {head:?}");
    let mut old = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    old.write_all(&client_hello([3, 2])).await.unwrap();
    let answer = read_until_closed(&mut old).await;
    assert!(answer.len() >= 7, "no alert: {answer:?}");
    // An alert record (type 21), fatal (2): handshake_failure (40) or protocol_version (70).
    assert_eq!((answer[0], answer[5]), (21, 2), "{answer:?}");
    assert!(matches!(answer[6], 40 | 70), "{answer:?}");

    // The handshake failures are counted; a good client still gets through.
    let metrics = ca
        .client_for(None)
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failed = sample(
        &metrics,
        "auditflow_connections_closed_total",
        &["reason=\"tls_handshake\""],
    );
    assert!(failed >= 2.0, "{failed}");
    assert_eq!(stored_rows(&server).len(), 0);
}

/// After the certificate and key files are replaced and SIGHUP is sent, new connections are
/// shown the new certificate, and a request in flight during the swap still gets its ack.
#[tokio::test(flavor = "multi_thread")]
async fn certificates_rotate_on_sighup_without_dropping_a_request_in_flight() {
    let ca = TestCa::new("ingest CA");
    let server = start_https(&ca, &https_config(""), &[]);
    let first = std::fs::read_to_string(server.dir.path().join("server.crt")).unwrap();
    assert_eq!(
        presented_certificate(&server.addr, ca.rustls_client()).await,
        der_of(&first)
    );

    // A request whose body is only half sent when the certificates change.
    let tcp = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut inflight = tokio_rustls::TlsConnector::from(ca.rustls_client())
        .connect(name, tcp)
        .await
        .unwrap();
    let body = serde_json::to_vec(&[event(7)]).unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    inflight.write_all(head.as_bytes()).await.unwrap();
    inflight.write_all(&body[..body.len() / 2]).await.unwrap();
    inflight.flush().await.unwrap();

    let second = ca.server(&[]);
    second.write(server.dir.path(), "server");
    server.signal("HUP");
    server.wait_for_log("reload: new pipeline in service", 1).await;
    assert_eq!(
        presented_certificate(&server.addr, ca.rustls_client()).await,
        der_of(&second.cert),
        "new connections see the new certificate"
    );

    inflight.write_all(&body[body.len() / 2..]).await.unwrap();
    inflight.flush().await.unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut inflight).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"accepted\":1"), "{answer}");

    // A replacement that does not load is refused; the certificate in service stays.
    std::fs::write(server.dir.path().join("server.key"), "not a key").unwrap();
    server.signal("HUP");
    server.wait_for_log("reload refused", 1).await;
    assert!(
        server.log().contains("key_file"),
        "the refusal names the key: {}",
        server.log()
    );
    assert_eq!(
        presented_certificate(&server.addr, ca.rustls_client()).await,
        der_of(&second.cert)
    );
}

/// Mutual TLS: a certificate from the trusted CA listed in `[[auth.clients]]` posts without a
/// token and its events carry that source; an unlisted one needs a token; one from another CA
/// and an expired one are refused at the handshake; with `require_client_cert`, no
/// certificate at all is refused too. Nothing refused is stored.
#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_clients_post_as_their_mapped_source() {
    let ca = TestCa::new("ingest CA");
    let clients_ca = TestCa::new("clients CA");
    let other_ca = TestCa::new("someone else's CA");
    let config = https_config(
        "client_ca_file = \"clients.pem\"\n\
         [[auth.clients]]\nname = \"gw-by-cn\"\nsubject_cn = \"gateway-1\"\n\
         [[auth.clients]]\nname = \"gw-by-uri\"\nsan_uri = \"spiffe://example.org/ns/audit/sa/gw\"\n",
    );
    let server = start_https(&ca, &config, &[("clients.pem", &clients_ca.pem)]);

    let by_cn = clients_ca.client("gateway-1", &[], &[]);
    let (status, ack, _) = post(&ca.client_for(Some(&by_cn)), &server, None, &[event(1)])
        .await
        .unwrap();
    assert_eq!(status, 200, "{ack}");
    let by_uri = clients_ca.client("whatever", &[], &["spiffe://example.org/ns/audit/sa/gw"]);
    let (status, _, _) = post(&ca.client_for(Some(&by_uri)), &server, None, &[event(2)])
        .await
        .unwrap();
    assert_eq!(status, 200);

    let unlisted = clients_ca.client("stranger", &[], &[]);
    let (status, _, _) = post(&ca.client_for(Some(&unlisted)), &server, None, &[event(3)])
        .await
        .unwrap();
    assert_eq!(status, 401, "a valid but unlisted certificate needs a token");
    let (status, _, _) = post(&ca.client_for(Some(&unlisted)), &server, Some(TOKEN), &[event(4)])
        .await
        .unwrap();
    assert_eq!(status, 200, "with a token it is the token's source");

    let foreign = other_ca.client("gateway-1", &[], &[]);
    assert!(
        post(&ca.client_for(Some(&foreign)), &server, Some(TOKEN), &[event(5)])
            .await
            .is_err()
    );
    let expired = clients_ca.expired_client("gateway-1");
    assert!(
        post(&ca.client_for(Some(&expired)), &server, Some(TOKEN), &[event(6)])
            .await
            .is_err()
    );

    let mut sources: Vec<String> = stored_rows(&server)
        .iter()
        .map(|r| r["source"].as_str().unwrap().to_owned())
        .collect();
    sources.sort();
    assert_eq!(sources, ["gw-by-cn", "gw-by-uri", "token-sender"]);

    let required = https_config("client_ca_file = \"clients.pem\"\nrequire_client_cert = true\n");
    let strict = start_https(&ca, &required, &[("clients.pem", &clients_ca.pem)]);
    assert!(
        post(&ca.client_for(None), &strict, Some(TOKEN), &[event(7)])
            .await
            .is_err()
    );
    let (status, _, _) = post(&ca.client_for(Some(&unlisted)), &strict, Some(TOKEN), &[event(8)])
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(stored_rows(&strict).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL over TLS

/// A PostgreSQL cluster of the test's own (initdb in a temp dir) that only takes TLS
/// connections (`hostssl` in pg_hba.conf), with a certificate for `localhost` from `ca`.
struct TlsPostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

impl TlsPostgres {
    fn start(ca: &TestCa) -> TlsPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // The server refuses to run as root: the cluster belongs to the postgres user.
        chmod(dir.path(), 0o755);
        chown_postgres(dir.path());
        as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        ca.server(&["localhost"]).write(&data, "server");
        chmod(&data.join("server.key"), 0o600);
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .unwrap();
        let port = free_port();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        use std::io::Write;
        writeln!(
            conf,
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nport = {port}\n\
             listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off",
            dir.path().display()
        )
        .unwrap();
        drop(conf);
        chown_postgres(dir.path());
        as_postgres(
            &bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                dir.path().join("log").to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        TlsPostgres { dir, bin, port }
    }

    fn url(&self, params: &str) -> String {
        format!("postgres://postgres@localhost:{}/postgres?{params}", self.port)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_postgres(path: &std::path::Path) {
    let ok = std::process::Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "chown postgres");
}

fn as_postgres(program: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `migrate` with a storage URL, through the CLI; (success, stderr).
fn migrate(url: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditflow.toml");
    std::fs::write(&config, "").unwrap();
    let (ok, _, err) = cli(&["migrate", "--config", config.to_str().unwrap(), "--storage-url", url]);
    (ok, err)
}

/// `sslmode=verify-full` with the right CA reaches the TLS-only cluster; the same URL with
/// another CA, or with a host name the certificate does not carry, fails at start with a
/// message naming the cause; and TLS is really in use (`sslmode=disable` is refused by
/// pg_hba.conf).
#[tokio::test(flavor = "multi_thread")]
async fn postgres_over_tls_verifies_the_ca_and_the_host_name() {
    let ca = TestCa::new("database CA");
    let pg = TlsPostgres::start(&ca);
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, other_file) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
    std::fs::write(&ca_file, &ca.pem).unwrap();
    std::fs::write(&other_file, TestCa::new("other CA").pem).unwrap();

    let verified = pg.url(&format!("sslmode=verify-full&sslrootcert={}", ca_file.display()));
    let (ok, err) = migrate(&verified);
    assert!(ok, "verify-full with the right CA: {err}");

    let (ok, err) = migrate(&pg.url(&format!("sslmode=verify-full&sslrootcert={}", other_file.display())));
    assert!(!ok);
    assert!(
        err.contains("certificate") && err.contains("UnknownIssuer"),
        "wrong CA: {err}"
    );

    let wrong_host = verified.replace("localhost", "127.0.0.1");
    let (ok, err) = migrate(&wrong_host);
    assert!(!ok);
    assert!(
        err.contains("certificate not valid for name \"127.0.0.1\""),
        "wrong host: {err}"
    );
    // verify-ca checks the chain but not the name, as libpq documents.
    let (ok, err) = migrate(&wrong_host.replace("verify-full", "verify-ca"));
    assert!(ok, "verify-ca: {err}");

    let (ok, err) = migrate(&pg.url("sslmode=disable"));
    assert!(!ok, "the cluster only takes TLS: {err}");
    let (ok, err) = migrate(&pg.url("sslmode=require"));
    assert!(ok, "require encrypts without verifying: {err}");
}

// ---------------------------------------------------------------------------------------------
// SIEM sinks behind a private CA

const HEC_TOKEN: &str = "hec-secret-token";

/// A server forwarding to an HTTPS HEC receiver; `tls` holds the sink's `tls_*` keys.
fn hec_sink_config(endpoint: &str, tls: &str) -> String {
    format!(
        "[[auth.tokens]]\nname = \"e2e\"\nenv = \"AUDITFLOW_TOKEN\"\n\
         [storage]\nurl = \"sqlite://events.db\"\n\
         [[sinks]]\nname = \"splunk\"\ntype = \"splunk_hec\"\nendpoint = \"{endpoint}\"\n\
         token = {{ env = \"HEC_TOKEN\" }}\n{tls}\n\
         [sinks.batch]\nmax_wait_ms = 50\n[sinks.retry]\ninitial_backoff_ms = 50\nmax_backoff_ms = 200\n\
         [sinks.breaker]\nfailure_threshold = 2\nopen_ms = 60000\n"
    )
}

/// A HEC receiver whose certificate comes from a private CA (and which requires a client
/// certificate from another private CA) receives every event when the sink names both in
/// `tls_ca_file` and `tls_client_cert_file`/`tls_client_key_file`, and none without the CA:
/// the breaker opens and the log says why.
#[tokio::test(flavor = "multi_thread")]
async fn hec_behind_a_private_ca_receives_events_only_when_the_sink_trusts_it() {
    let siem_ca = TestCa::new("SIEM CA");
    let client_ca = TestCa::new("forwarder CA");
    let receiver_cert = siem_ca.server(&[]);
    let receiver =
        siem::Receiver::hec_tls(HEC_TOKEN, &receiver_cert.cert, &receiver_cert.key, Some(&client_ca.pem)).await;
    let endpoint = receiver.base.replace("127.0.0.1", "localhost");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("siem-ca.pem"), &siem_ca.pem).unwrap();
    client_ca
        .client("auditflow-forwarder", &[], &[])
        .write(dir.path(), "forwarder");
    let tls = "tls_ca_file = \"siem-ca.pem\"\ntls_only_custom_ca = true\n\
               tls_client_cert_file = \"forwarder.crt\"\ntls_client_key_file = \"forwarder.key\"";
    // SAFETY: set before any server starts; read only by the child processes.
    unsafe { std::env::set_var("HEC_TOKEN", HEC_TOKEN) };
    let trusting = TestServer::start_in(dir, &hec_sink_config(&endpoint, tls));
    let events: Vec<Value> = (0..50).map(event).collect();
    let resp = http()
        .post(trusting.url("/v1/events"))
        .bearer_auth(TOKEN)
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.distinct_ids().len() < 50 {
        assert!(
            Instant::now() < deadline,
            "received {} of 50; log:\n{}",
            receiver.distinct_ids().len(),
            trusting.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.violations().is_empty(), "{:?}", receiver.violations());
    drop(trusting);

    let before = receiver.requests().len();
    let dir = tempfile::tempdir().unwrap();
    client_ca
        .client("auditflow-forwarder", &[], &[])
        .write(dir.path(), "forwarder");
    let untrusting = TestServer::start_in(
        dir,
        &hec_sink_config(
            &endpoint,
            "tls_client_cert_file = \"forwarder.crt\"\ntls_client_key_file = \"forwarder.key\"",
        ),
    );
    let resp = http()
        .post(untrusting.url("/v1/events"))
        .bearer_auth(TOKEN)
        .json(&events[..5])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health: Value = http()
            .get(untrusting.url("/health/detailed"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["sinks"][0]["breaker"] == "open" {
            break;
        }
        assert!(Instant::now() < deadline, "breaker never opened: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(receiver.requests().len(), before, "nothing reached the receiver");
    let log = untrusting.log();
    assert!(
        log.contains("invalid peer certificate") && log.contains("UnknownIssuer"),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------------

async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    out
}

/// A ClientHello with legacy version `version` and no `supported_versions` extension, so it
/// offers that one version: `[3, 3]` is TLS 1.2, `[3, 2]` TLS 1.1. It offers the ECDHE AEAD
/// suites, groups and signature schemes a TLS 1.2 server needs for an ECDSA P-256 certificate.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut hello = version.to_vec();
    hello.extend([7u8; 32]); // random
    hello.push(0); // no session id
    let suites: [u16; 4] = [0xc02b, 0xc02f, 0xcca9, 0xcca8];
    hello.extend(((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        hello.extend(s.to_be_bytes());
    }
    hello.extend([1, 0]); // compression: null
    let extensions: &[u8] = &[
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, // supported_groups: x25519, P-256
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, // signature_algorithms
        0x00, 0x17, 0x00, 0x00, // extended_master_secret
        0xff, 0x01, 0x00, 0x01, 0x00, // renegotiation_info
    ];
    hello.extend((extensions.len() as u16).to_be_bytes());
    hello.extend(extensions);
    let mut handshake = vec![1u8]; // client_hello
    handshake.extend(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![22u8, 0x03, 0x01]; // handshake record
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}
