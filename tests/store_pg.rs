//! End-to-end tests of the PostgreSQL store: the real `auditflow` binary against the real
//! PostgreSQL on 127.0.0.1:5432 (override with `AUDITFLOW_TEST_PG`).
//!
//! - crash: 100 000 events posted in batches with retries while the server is `kill -9`ed and
//!   restarted twice; every acknowledged event is stored exactly once and `auditflow verify`
//!   passes;
//! - outage: the database becomes unreachable (a TCP proxy in this test stops forwarding);
//!   ingest answers 503 + `Retry-After`, stores nothing it did not acknowledge, and recovers by
//!   itself when the proxy returns;
//! - tampering: each way of changing the stored trail makes `auditflow verify` exit non-zero and
//!   name the first broken sequence number, on PostgreSQL and on SQLite;
//! - the CLI: `keygen`, `migrate`.
//!
//! Each test creates its own database and drops it afterwards, also when it fails.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use auditflow::event::StoredEvent;
use auditflow::store::chain::{ChainHead, canonical_bytes, link};
use auditflow::store::checkpoint::{CheckpointSigner, Checkpointing};
use auditflow::store::{PostgresStore, SqliteStore, Store};
use chrono::Utc;
use common::*;
use pg::{TestDb, server_url};
use serde_json::json;
use sqlx::{Connection, Row};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Harness: a database per test, a stoppable TCP proxy, requests.

/// A TCP proxy to PostgreSQL that the test can stop (the port then refuses connections and
/// every open connection is cut) and start again on the same port: a database outage that
/// only this test's server sees.
struct Proxy {
    port: u16,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let proxy = Proxy {
            port,
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let tasks = Arc::clone(&self.tasks);
        let upstream = server_url()
            .rsplit_once('@')
            .map(|(_, hp)| hp.to_owned())
            .expect("host:port");
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().expect("lock").push(conn);
            }
        });
        self.tasks.lock().expect("lock").push(accept);
    }

    /// Refuse new connections and cut the open ones.
    fn stop(&self) {
        for task in self.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    /// Listen on the same port again.
    async fn resume(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => return self.serve(listener),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot re-bind the proxy port: {e}"),
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A config for a server without stages storing into `url`, signing checkpoints with the key
/// in `chain.key` next to the config.
fn pg_config(url: &str) -> String {
    format!(
        r#"
[[auth.tokens]]
name = "store-e2e"
env = "AUDITFLOW_TOKEN"

[storage]
url = "{url}"

[storage.chain]
signing_key = {{ file = "chain.key" }}
checkpoint_every_events = 5000
checkpoint_every_secs = 1
"#
    )
}

/// Start a server in a fresh directory holding a new signing key; returns the server and the
/// key's public half (hex).
fn start_server(config: &str) -> (TestServer, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let signer = CheckpointSigner::generate().expect("key");
    std::fs::write(dir.path().join("chain.key"), signer.private_key_hex()).expect("write key");
    let public = hex::encode(signer.verifying_key().as_bytes());
    (TestServer::start_in(dir, config), public)
}

/// NDJSON body of the events with ids `first..first + n`.
fn batch_body(first: u128, n: u128) -> Vec<u8> {
    let mut out = String::new();
    for i in first..first + n {
        let event = json!({
            "event_id": event_id(i).to_string(),
            "event_type": "tool_invoke",
            "timestamp": "2026-11-20T10:00:00Z",
            "actor": {"type": "user", "id": format!("user-{}", i % 97)},
            "decision": if i % 3 == 0 { "deny" } else { "allow" },
            "request_id": format!("req-{i}"),
            "metadata": {"n": i as u64, "args": {"path": "/tmp/x", "flags": ["-r"]}}
        });
        out.push_str(&event.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

fn event_id(i: u128) -> Uuid {
    Uuid::from_u128(0x0196_0000_0000_7000_8000_0000_0000_0000 | i)
}

/// POST a body; `None` when no HTTP answer came (connection refused or cut).
async fn post(client: &reqwest::Client, addr: &str, body: Vec<u8>) -> Option<(u16, Option<String>, serde_json::Value)> {
    let resp = client
        .post(format!("http://{addr}/v1/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    Some((status, retry_after, body))
}

async fn wait_healthy(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = http();
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("http://{addr}/health")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {addr} did not come back");
}

/// Run `auditflow verify`; (exit success, stdout + stderr).
fn verify(config: &std::path::Path, storage_url: &str) -> (bool, String) {
    let (ok, out, err) = cli(&[
        "verify",
        "--config",
        config.to_str().expect("path"),
        "--storage-url",
        storage_url,
    ]);
    (ok, format!("{out}{err}"))
}

async fn count_events(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&mut db.connect().await)
        .await
        .expect("count")
}

// ---------------------------------------------------------------------------------------------
// Crash and outage.

const CRASH_EVENTS: u128 = 100_000;
const CRASH_BATCH: u128 = 500;

/// 100 000 events in batches of 500 from four concurrent clients, each batch retried until it is
/// acknowledged, while the server is killed with SIGKILL twice and restarted. Afterwards every
/// event is stored exactly once and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_acknowledged_across_kill_9_are_stored_exactly_once() {
    let db = TestDb::create("crash").await;
    let (mut server, _public) = start_server(&pg_config(&db.url()));
    let addr = server.addr.clone();
    let batches = (CRASH_EVENTS / CRASH_BATCH) as usize;
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));

    let mut clients = Vec::new();
    for _ in 0..4 {
        let (next, acked, addr) = (Arc::clone(&next), Arc::clone(&acked), addr.clone());
        clients.push(tokio::spawn(async move {
            let client = http();
            let mut retries = 0u32;
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return retries;
                }
                let body = batch_body(b as u128 * CRASH_BATCH, CRASH_BATCH);
                loop {
                    match post(&client, &addr, body.clone()).await {
                        Some((200, _, ack)) => {
                            let n = ack["accepted"].as_u64().unwrap_or(0) + ack["duplicates"].as_u64().unwrap_or(0);
                            assert_eq!(n, CRASH_BATCH as u64, "ack does not cover the batch: {ack}");
                            break;
                        }
                        Some((status, _, _)) if status != 503 => panic!("unexpected status {status}"),
                        _ => {
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Kill the server twice while the clients are busy, restarting it on the same address.
    let mut kills = 0;
    for kill_at in [batches * 3 / 10, batches * 6 / 10] {
        while acked.load(Ordering::Relaxed) < kill_at {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("reap");
        kills += 1;
        let log = server.dir.path().join(format!("server-{kills}.log"));
        server.child = spawn_server(&server.config_path, &addr, &log);
        wait_healthy(&addr).await;
    }
    let mut retries = 0;
    for c in clients {
        retries += c.await.expect("client");
    }
    assert_eq!(kills, 2);
    assert!(retries > 0, "no request was interrupted: the kills happened while idle");
    eprintln!("crash test: {batches} batches acknowledged, {retries} retried posts, 2 kills");

    let mut conn = db.connect().await;
    let (rows, distinct): (i64, i64) = sqlx::query_as("SELECT count(*), count(DISTINCT event_id) FROM audit_events")
        .fetch_one(&mut conn)
        .await
        .expect("counts");
    assert_eq!(distinct, rows, "an event is stored more than once");
    let ids: Vec<Uuid> = (0..CRASH_EVENTS).map(event_id).collect();
    let present: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE event_id = ANY($1)")
        .bind(&ids)
        .fetch_one(&mut conn)
        .await
        .expect("present");
    assert_eq!(present, CRASH_EVENTS as i64, "an acknowledged event is missing");
    assert_eq!(rows, CRASH_EVENTS as i64);

    let (ok, out) = verify(&server.config_path, &db.url());
    assert!(ok, "verify failed after the crashes: {out}");
    assert!(out.contains("chain ok: 100000 events"), "{out}");
}

/// The database becomes unreachable: ingest answers 503 with Retry-After and acknowledges
/// nothing it did not store; when the database is back, ingest recovers on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_answers_503_and_recovers_without_restart() {
    let db = TestDb::create("outage").await;
    let proxy = Proxy::start().await;
    let (server, _public) = start_server(&pg_config(&db.url_via(proxy.port)));
    let client = http();

    let (status, _, ack) = post(&client, &server.addr, batch_body(0, 100)).await.expect("answer");
    assert_eq!(status, 200, "{ack}");

    proxy.stop();
    let started = Instant::now();
    for i in 1..=3u128 {
        let (status, retry_after, body) = post(&client, &server.addr, batch_body(i * 100, 100))
            .await
            .expect("an answer during the outage");
        assert_eq!(status, 503, "{body}");
        let secs: u64 = retry_after
            .expect("Retry-After header")
            .parse()
            .expect("Retry-After seconds");
        assert!(secs >= 1, "Retry-After {secs}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "503s took {:?}",
        started.elapsed()
    );
    let ready = client.get(server.url("/health/ready")).send().await.expect("ready");
    assert_eq!(ready.status().as_u16(), 503, "readiness must report the store down");
    // Nothing refused is stored (read straight from PostgreSQL, not through the proxy).
    assert_eq!(count_events(&db).await, 100);

    proxy.resume().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut recovered = false;
    while Instant::now() < deadline {
        if let Some((200, _, _)) = post(&client, &server.addr, batch_body(100, 100)).await {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "ingest did not recover after the database returned; log:\n{}",
        server.log()
    );
    for i in 2..=3u128 {
        let (status, _, ack) = post(&client, &server.addr, batch_body(i * 100, 100))
            .await
            .expect("answer");
        assert_eq!(status, 200, "{ack}");
        assert_eq!(ack["accepted"], 100, "{ack}");
    }
    assert_eq!(count_events(&db).await, 400);
    let (ok, out) = verify(&server.config_path, &db.url());
    assert!(ok, "{out}");
    assert!(!server.log().contains("user-"), "the server log leaked event contents");
}

// ---------------------------------------------------------------------------------------------
// Tampering.

/// 250 events written in batches of 50 with a checkpoint every 100 events: checkpoints at seq
/// 50 (the first batch), 150 and 250. Returns the verify-only config (public key, no private
/// key: what an auditor holds) and its directory.
async fn chained_pg_store(db: &TestDb) -> (tempfile::TempDir, std::path::PathBuf) {
    let store = PostgresStore::open(&db.url()).await.expect("open");
    let config = fill_with_checkpoints(&store).await;
    drop(store);
    config
}

async fn fill_with_checkpoints(store: &dyn Store) -> (tempfile::TempDir, std::path::PathBuf) {
    let signer = CheckpointSigner::generate().expect("key");
    let public = hex::encode(signer.verifying_key().as_bytes());
    store
        .enable_checkpoints(Arc::new(Checkpointing {
            signer,
            every_events: 100,
            every: Duration::from_secs(3600),
        }))
        .expect("enable checkpoints");
    for chunk in 0..5u128 {
        let events = auditflow::ingest::parse::parse_events(
            &batch_body(chunk * 50, 50),
            auditflow::ingest::body::BodyFormat::Ndjson,
            &auditflow::config::Limits::default(),
            "tamper-test",
        )
        .expect("parse");
        store.append(&events, Utc::now()).await.expect("append");
    }
    let seqs: Vec<i64> = store
        .checkpoints(0, 10)
        .await
        .expect("checkpoints")
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, vec![50, 150, 250]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("verify.toml");
    std::fs::write(&path, format!("[storage.chain]\npublic_key = \"{public}\"\n")).expect("config");
    (dir, path)
}

/// Apply `tamper` to a fresh chained database and run `auditflow verify`: it must fail and
/// name `seq` and `what`.
async fn assert_pg_tamper_detected(tag: &str, tamper: &str, seq: i64, what: &str) {
    let db = TestDb::create(tag).await;
    let (_dir, config) = chained_pg_store(&db).await;
    let (ok, out) = verify(&config, &db.url());
    assert!(ok, "the untouched chain must verify: {out}");

    sqlx::raw_sql(sqlx::AssertSqlSafe(tamper.to_owned()))
        .execute(&mut db.connect().await)
        .await
        .expect("tamper");
    let (ok, out) = verify(&config, &db.url());
    assert!(!ok, "verify passed after `{tamper}`: {out}");
    assert!(
        out.contains(&format!("seq {seq}: {what}")),
        "expected `seq {seq}: {what}`, got: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_updated_row_is_reported() {
    // An attacker with database access disables the append-only trigger first.
    assert_pg_tamper_detected(
        "upd",
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update; \
         UPDATE audit_events SET decision = 'allow', reason = 'approved' WHERE seq = 120",
        120,
        "modified row",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_deleted_row_is_reported() {
    assert_pg_tamper_detected("del", "DELETE FROM audit_events WHERE seq = 77", 77, "deleted rows").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_truncated_tail_is_reported() {
    // The newest ten rows, which the last checkpoint (seq 250) covers.
    assert_pg_tamper_detected(
        "trunc",
        "DELETE FROM audit_events WHERE seq > 240; DELETE FROM event_ids WHERE seq > 240",
        241,
        "truncated tail",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_altered_checkpoint_is_reported() {
    assert_pg_tamper_detected(
        "ckpt",
        "ALTER TABLE chain_checkpoints DISABLE TRIGGER chain_checkpoints_no_update; \
         UPDATE chain_checkpoints SET head_hash = (SELECT hash FROM audit_events WHERE seq = 149) WHERE seq = 150",
        150,
        "bad checkpoint signature",
    )
    .await;
}

/// A forged row with a correctly computed hash, linked to the row before it, inserted with an
/// existing seq (the partitioned table's key includes the event time, so PostgreSQL accepts it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_inserted_forged_row_is_reported() {
    let db = TestDb::create("ins").await;
    let (_dir, config) = chained_pg_store(&db).await;
    let store = PostgresStore::open(&db.url()).await.expect("open");
    let chain = store.chain(58, 2).await.expect("chain");
    let (prev, original) = (&chain[0], &chain[1]);
    let mut forged = original.event.clone();
    forged.event.event_id = Uuid::from_u128(42);
    forged.event.reason = Some("forged".into());
    forged.event.timestamp += chrono::Duration::seconds(1);
    let hash = link(&prev.hash, &canonical_bytes(&forged));
    insert_row(&store, &forged, &prev.hash, &hash).await;
    drop(store);

    let (ok, out) = verify(&config, &db.url());
    assert!(!ok, "verify passed with a forged row: {out}");
    assert!(out.contains("seq 60: inserted row"), "{out}");
}

/// The whole tail rewritten from seq 200 with every hash recomputed: the chain is consistent
/// on its own, only the checkpoint at 250 shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_rewritten_and_rehashed_tail_is_reported() {
    let db = TestDb::create("rehash").await;
    let (_dir, config) = chained_pg_store(&db).await;
    let store = PostgresStore::open(&db.url()).await.expect("open");
    let chain = store.chain(198, 100).await.expect("chain");
    let mut head = ChainHead {
        seq: 199,
        hash: chain[0].hash,
    };
    sqlx::raw_sql(
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update; DELETE FROM audit_events WHERE seq >= 200",
    )
    .execute(store.pool())
    .await
    .expect("delete");
    for row in &chain[1..] {
        let mut e = row.event.clone();
        e.event.reason = Some("rewritten".into());
        let hash = link(&head.hash, &canonical_bytes(&e));
        insert_row(&store, &e, &head.hash, &hash).await;
        head = ChainHead { seq: e.seq, hash };
    }
    drop(store);
    let (ok, out) = verify(&config, &db.url());
    assert!(!ok, "{out}");
    assert!(out.contains("seq 151: rewritten chain"), "{out}");
    assert!(out.contains("rows 151..=250 were rewritten"), "{out}");
}

/// What an attacker with write access would run: a plain INSERT of a complete row.
async fn insert_row(store: &PostgresStore, e: &StoredEvent, prev: &[u8; 32], hash: &[u8; 32]) {
    let ev = &e.event;
    sqlx::query(
        "INSERT INTO audit_events (seq, event_id, event_type, \"timestamp\", actor_type, actor_id, decision, request_id, \
         reason, source, metadata, received_at, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(e.seq)
    .bind(ev.event_id)
    .bind(&ev.event_type)
    .bind(ev.timestamp)
    .bind(ev.actor_type())
    .bind(ev.actor_id())
    .bind(ev.decision.map(|d| d.as_str()))
    .bind(&ev.request_id)
    .bind(&ev.reason)
    .bind(&ev.source)
    .bind(serde_json::Value::Object(ev.metadata.clone()))
    .bind(e.received_at)
    .bind(prev.to_vec())
    .bind(hash.to_vec())
    .execute(store.pool())
    .await
    .expect("insert forged row");
    assert!(
        ev.agent_id.is_none() && ev.correlation_id.is_none(),
        "insert_row only copies the fields the test events use"
    );
}

/// SQLite: the same detection through the same CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tampering_is_reported() {
    let cases: [(&str, i64, &str); 3] = [
        // The embedded schema refuses UPDATE with a trigger; an attacker drops it.
        (
            "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET reason = 'edited' WHERE seq = 33",
            33,
            "modified row",
        ),
        ("DELETE FROM audit_events WHERE seq >= 245", 245, "truncated tail"),
        (
            "DROP TRIGGER chain_checkpoints_no_update; UPDATE chain_checkpoints SET created_us = created_us + 1 WHERE seq = 50",
            50,
            "bad checkpoint signature",
        ),
    ];
    for (tamper, seq, what) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = SqliteStore::open(&url).await.expect("open");
        let (_cfg_dir, config) = fill_with_checkpoints(&store).await;
        drop(store);
        let (ok, out) = verify(&config, &url);
        assert!(ok, "{out}");

        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(tamper.to_owned()))
            .execute(&mut conn)
            .await
            .expect("tamper");
        conn.close().await.expect("close");
        let (ok, out) = verify(&config, &url);
        assert!(!ok, "verify passed after `{tamper}`: {out}");
        assert!(
            out.contains(&format!("seq {seq}: {what}")),
            "expected `seq {seq}: {what}`, got: {out}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// CLI.

/// `keygen` prints a key pair a config can use, `migrate` creates the schema, and a server
/// signing with that key produces checkpoints `verify` accepts with the public key alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_migrate_serve_and_verify_work_together() {
    let db = TestDb::create("cli").await;
    let (ok, out, err) = cli(&["keygen"]);
    assert!(ok, "{err}");
    let value = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("keygen printed no {name}: {out}"))
    };
    let (private, public) = (value("private_key"), value("public_key"));
    assert_eq!(private.len(), 64);
    assert!(!err.contains(&private), "the private key belongs on stdout only");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("chain.key"), &private).expect("key");
    let config_text = pg_config(&db.url());
    std::fs::write(dir.path().join("migrate.toml"), &config_text).expect("config");
    let (ok, out, err) = cli(&[
        "migrate",
        "--config",
        dir.path().join("migrate.toml").to_str().expect("path"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("postgres schema is up to date"), "{out}");
    let tables: Vec<String> =
        sqlx::query("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            .fetch_all(&mut db.connect().await)
            .await
            .expect("tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
    for t in ["audit_events_default", "chain_checkpoints", "event_ids", "quarantine"] {
        assert!(tables.iter().any(|x| x == t), "missing table {t}: {tables:?}");
    }

    let mut server = TestServer::start_in(dir, &config_text);
    let client = http();
    let (status, _, ack) = post(&client, &server.addr, batch_body(0, 10)).await.expect("answer");
    assert_eq!(status, 200, "{ack}");
    // Graceful stop signs the final head (SIGTERM, then wait).
    let pid = server.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let _ = server.child.wait();

    let auditor = server.dir.path().join("auditor.toml");
    std::fs::write(
        &auditor,
        format!(
            "[storage]\nurl = \"{}\"\n[storage.chain]\npublic_key = \"{public}\"\n",
            db.url()
        ),
    )
    .expect("auditor");
    let (ok, out, err) = cli(&["verify", "--config", auditor.to_str().expect("path")]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("chain ok: 10 events"), "{out}");
    assert!(out.contains("0 events after it are not signed yet"), "{out}");
}
