//! End-to-end tests of hot reload and graceful shutdown under a steady load: a SIGHUP (or
//! `auditflow reload`) swaps the redact config without losing an event, an invalid config is
//! refused while the old pipeline keeps serving (and says so in `/health/detailed` and
//! `auditflow_reloads_total`), and SIGTERM loses no acknowledged event.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::sync::Mutex;

fn config(actor_action: &str) -> String {
    format!(
        r#"
[[auth.tokens]]
name = "test"
env = "AUDITFLOW_TOKEN"

[admin]
token_file = "admin.token"

[storage]
url = "sqlite://events.db"

[[stages]]
name = "redact"
plugin = "redact"
role = "redaction"
[stages.config]
fields = {{ "actor.id" = "{actor_action}" }}
hash_key = "k"
"#
    )
}

fn events(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"event_type": tag, "timestamp": "2026-11-01T00:00:00Z", "actor": {"type": "user", "id": format!("u{i}@example.com")}}))
        .collect()
}

/// Post batches until `stop` is set; every acknowledged event id goes into `acked`.
async fn steady_load(url: String, stop: Arc<AtomicBool>, acked: Arc<Mutex<HashSet<String>>>) -> usize {
    let client = http();
    let mut refused = 0;
    while !stop.load(Ordering::Relaxed) {
        let resp = match client
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&events(20, "load"))
            .send()
            .await
        {
            Ok(r) => r,
            Err(_) => {
                refused += 1;
                break; // the server went away (shutdown test)
            }
        };
        if resp.status().is_success() {
            let ack: Value = resp.json().await.unwrap();
            let mut set = acked.lock().await;
            for id in ack["event_ids"].as_array().unwrap() {
                set.insert(id.as_str().unwrap().to_owned());
            }
        } else {
            refused += 1;
        }
    }
    refused
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_swaps_the_pipeline_under_load_without_losing_events() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "admin-secret\n").unwrap();
    let server = TestServer::start_in(dir, &config("hash"));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let loaders: Vec<_> = (0..3)
        .map(|_| tokio::spawn(steady_load(server.url("/v1/events"), stop.clone(), acked.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Swap in a config that masks the actor instead of hashing it.
    std::fs::write(&server.config_path, config("mask")).unwrap();
    server.signal("HUP");
    server.wait_for_log("reload: new pipeline in service", 1).await;
    let resp = http()
        .post(server.url("/v1/events"))
        .bearer_auth(TOKEN)
        .json(&events(2, "after_reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // An invalid config is refused and logged; the last good pipeline keeps serving.
    std::fs::write(&server.config_path, config("mask").replace("fields =", "feilds =")).unwrap();
    server.signal("HUP");
    server.wait_for_log("reload refused", 1).await;
    let resp = http()
        .post(server.url("/v1/events"))
        .bearer_auth(TOKEN)
        .json(&events(2, "after_bad_reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        assert_eq!(l.await.unwrap(), 0, "a request failed during reload");
    }

    let rows = stored_rows(&server);
    let stored: HashSet<String> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    let acked = acked.lock().await;
    assert!(acked.len() > 100, "too little load: {}", acked.len());
    assert!(acked.is_subset(&stored), "an acknowledged event is missing");
    for r in rows.iter().filter(|r| r["event_type"] != "load") {
        assert!(
            r["actor"]["id"].as_str().unwrap().starts_with("[REDACTED:"),
            "reloaded config not in effect: {r}"
        );
    }
    assert!(
        rows.iter()
            .any(|r| r["actor"]["id"].as_str().unwrap().starts_with("[HASH:")),
        "no event before the reload?"
    );
}

/// A reload's outcome is visible without the log: `/health/detailed` shows the last one and why it
/// was refused; `auditflow_reloads_total` counts them by result.
#[tokio::test(flavor = "multi_thread")]
async fn reload_outcomes_show_in_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "admin-secret\n").unwrap();
    let server = TestServer::start_in(dir, &config("hash"));
    let s = &server;
    let last_reload = move || async move {
        let detailed: Value = serde_json::from_str(&get_text(&s.url("/health/detailed")).await).unwrap();
        detailed["reload"].clone()
    };
    let reloads = move || async move {
        let metrics = s.metrics().await;
        let count = |result: &str| sample(&metrics, "auditflow_reloads_total", &[&format!("result=\"{result}\"")]);
        (count("applied"), count("refused"))
    };
    assert_eq!(last_reload().await, Value::Null, "no reload yet");
    assert!(
        server
            .metrics()
            .await
            .contains("auditflow_reloads_total{result=\"refused\"} 0")
    );

    std::fs::write(&server.config_path, config("mask").replace("fields =", "feilds =")).unwrap();
    server.signal("HUP");
    server.wait_for_log("reload refused", 1).await;
    let reload = last_reload().await;
    assert_eq!(reload["result"], "refused", "{reload}");
    assert!(
        reload["error"].as_str().unwrap().contains("feilds"),
        "names what is wrong: {reload}"
    );
    assert!(reload["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{reload}");
    assert_eq!(reloads().await, (0.0, 1.0));

    std::fs::write(&server.config_path, config("mask")).unwrap();
    server.signal("HUP");
    server.wait_for_log("reload: new pipeline in service", 1).await;
    let reload = last_reload().await;
    assert_eq!(reload["result"], "applied", "{reload}");
    assert_eq!(reload["error"], Value::Null);
    assert_eq!(reloads().await, (1.0, 1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_reload_command_swaps_the_pipeline_and_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "admin-secret\n").unwrap();
    let server = TestServer::start_in(dir, &config("hash"));
    std::fs::write(&server.config_path, config("mask")).unwrap();
    let url = server.url("");
    let (ok, out, err) = cli(&[
        "reload",
        "--config",
        server.config_path.to_str().unwrap(),
        "--url",
        &url,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("reloaded: redact"), "{out}");
    let resp = http()
        .post(server.url("/v1/events"))
        .bearer_auth(TOKEN)
        .json(&events(1, "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        stored_rows(&server)[0]["actor"]["id"]
            .as_str()
            .unwrap()
            .starts_with("[REDACTED:")
    );

    let resp = http()
        .post(server.url("/admin/reload"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "admin-secret\n").unwrap();
    let mut server = TestServer::start_in(dir, &config("hash"));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let loaders: Vec<_> = (0..4)
        .map(|_| tokio::spawn(steady_load(server.url("/v1/events"), stop.clone(), acked.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let s = server.child.wait().unwrap();
        (s, server)
    });
    let (exit, server) = tokio::time::timeout(Duration::from_secs(30), status)
        .await
        .unwrap()
        .unwrap();
    assert!(
        exit.success(),
        "auditflow did not exit cleanly: {exit:?}\n{}",
        server.log()
    );
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.await.unwrap();
    }
    let stored: HashSet<String> = stored_rows(&server)
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    let acked = acked.lock().await;
    assert!(acked.len() > 100, "too little load: {}", acked.len());
    assert!(
        acked.is_subset(&stored),
        "{} acknowledged events missing",
        acked.difference(&stored).count()
    );
}
