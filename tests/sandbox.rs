//! End-to-end tests of the plugin sandbox: hostile plugins (tests/plugins/hostile, built from
//! source by the normal cargo build) misbehave on marker events while the server keeps
//! serving, only the marked events meet the stage's error policy, and a failed redaction never
//! lets an unredacted event through.

mod common;
#[path = "common/siem.rs"]
mod siem;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn hostile_path() -> String {
    auditflow_artifacts::path("hostile").display().to_string()
}

/// A config with the hostile stage in `mode`, with `extra` stage keys (policy, limits).
fn config(mode: &str, role: &str, extra: &str) -> String {
    format!(
        r#"
[[auth.tokens]]
name = "test"
env = "AUDITFLOW_TOKEN"

[storage]
url = "sqlite://events.db"

[[stages]]
name = "hostile"
plugin = {path:?}
role = "{role}"
instances = 2
{extra}
[stages.config]
mode = "{mode}"

[[stages]]
name = "redact"
plugin = "redact"
role = "redaction"
[stages.config]
fields = {{ "actor.id" = "hash" }}
hash_key = "k"
"#,
        path = hostile_path()
    )
}

fn batch(n: usize, poison_at: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "event_type": if i == poison_at { "poison" } else { "tool_invoke" },
                "timestamp": "2026-11-01T00:00:00Z",
                "actor": {"type": "user", "id": format!("user{i}@example.com")},
                "metadata": {"n": i, "note": format!("contact user{i}@example.com")}
            })
        })
        .collect()
}

async fn post(server: &TestServer, events: &[Value]) -> (u16, Value) {
    let resp = http()
        .post(server.url("/v1/events"))
        .bearer_auth(TOKEN)
        .json(&events)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn still_serving(server: &TestServer) {
    let (status, ack) = post(server, &batch(3, usize::MAX)).await;
    assert_eq!(status, 200, "server stopped serving healthy events: {ack}");
}

/// For every hostile mode, with the `drop` policy: the request succeeds, only the poison
/// event is dropped, the other events of the same batch are stored, and the server keeps
/// serving.
#[tokio::test(flavor = "multi_thread")]
async fn each_hostile_plugin_only_costs_its_poison_event() {
    for mode in ["loop", "alloc", "trap", "wrong_count", "bad_json", "escape", "error"] {
        let server = TestServer::start(&config(
            mode,
            "custom",
            "on_error = \"drop\"\ntimeout_ms = 500\nmax_memory_mb = 64",
        ));
        let events = batch(10, 4);
        let (status, ack) = post(&server, &events).await;
        assert_eq!(status, 200, "{mode}: {ack}");
        assert_eq!(ack["accepted"], 9, "{mode}: {ack}");
        assert_eq!(ack["dropped"], 1, "{mode}: {ack}");
        let rows = stored_rows(&server);
        assert_eq!(rows.len(), 9, "{mode}");
        assert!(rows.iter().all(|r| r["event_type"] == "tool_invoke"), "{mode}");
        assert!(
            rows.iter().all(|r| r["metadata"].get("escaped").is_none()),
            "{mode}: plugin escaped the sandbox"
        );
        // The stage's metrics count the failure.
        let metrics = server.metrics().await;
        let errors = sample(
            &metrics,
            "auditflow_stage_events_total",
            &["stage=\"hostile\"", "outcome=\"error\""],
        );
        assert!(errors >= 1.0, "{mode}: stage errors not counted");
        if let Some(kind) = match mode {
            "loop" => Some("timeout"),
            "alloc" | "trap" => Some("trap"),
            "wrong_count" | "bad_json" => Some("contract"),
            _ => None,
        } {
            let failures = sample(
                &metrics,
                "auditflow_stage_call_failures_total",
                &["stage=\"hostile\"", &format!("kind=\"{kind}\"")],
            );
            assert!(failures >= 1.0, "{mode}: {kind} not counted");
        }
        still_serving(&server).await;
    }
}

/// A redaction stage that traps never lets the unredacted event reach the store: with
/// `reject` the request fails and nothing from it is stored; with `drop` only the poison
/// event is lost and what is stored is redacted.
#[tokio::test(flavor = "multi_thread")]
async fn trapping_redactor_fails_closed() {
    let server = TestServer::start(&config("trap", "redaction", "on_error = \"reject\""));
    let (status, ack) = post(&server, &batch(10, 4)).await;
    assert_eq!(status, 500, "{ack}");
    assert!(
        !ack.to_string().contains("example.com"),
        "error leaked event contents: {ack}"
    );
    assert_eq!(stored_rows(&server).len(), 0);
    assert!(!server.log().contains("user4@example.com"), "log leaked event contents");
    still_serving(&server).await;
    drop(server);

    // With `drop`, and a real HTTP sink forwarding what is stored: neither the store nor the
    // sink ever sees the unredacted events.
    let receiver = siem::Receiver::ndjson("").await;
    let with_sink = config("trap", "redaction", "on_error = \"drop\"")
        + &format!(
            "\n[[sinks]]\nname = \"lake\"\ntype = \"http\"\nendpoint = \"{}/ingest\"\n",
            receiver.base
        );
    let server = TestServer::start(&with_sink);
    let (status, ack) = post(&server, &batch(10, 4)).await;
    assert_eq!(status, 200, "{ack}");
    let rows = stored_rows(&server);
    assert_eq!(rows.len(), 9);
    let all = serde_json::to_string(&rows).unwrap();
    assert!(!all.contains("@example.com"), "unredacted data stored: {all}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.distinct_ids().len() < 9 {
        assert!(
            Instant::now() < deadline,
            "the sink never received the stored events:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let forwarded = serde_json::to_string(&receiver.accepted()).unwrap();
    assert_eq!(
        receiver.distinct_ids().len(),
        9,
        "the sink received an event that was not stored"
    );
    assert!(
        !forwarded.contains("@example.com"),
        "unredacted data reached the sink: {forwarded}"
    );
}

/// The `quarantine` policy stores a record (event id, stage, error — no payload) instead of
/// the poison event, counts it, and stores the rest of the batch.
#[tokio::test(flavor = "multi_thread")]
async fn quarantine_policy_records_the_poison_event_without_its_payload() {
    let server = TestServer::start(&config("trap", "redaction", "on_error = \"quarantine\""));
    let mut events = batch(10, 4);
    // Sender-chosen ids, so the resend below is recognisably the same events.
    for (i, e) in events.iter_mut().enumerate() {
        e["event_id"] = json!(format!("6f1c2a10-0000-4000-8000-{i:012}"));
    }
    let (status, ack) = post(&server, &events).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["accepted"], 9, "{ack}");
    assert_eq!(ack["quarantined"], 1, "{ack}");
    let poison_id = ack["event_ids"][4].as_str().unwrap().to_owned();
    assert_eq!(stored_rows(&server).len(), 9);
    let (ok, out, err) = cli(&["quarantine", "--config", server.config_path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&poison_id) && out.contains("hostile") && out.contains("(1 records)"),
        "{out}"
    );
    assert!(!out.contains("example.com"), "quarantine kept the payload: {out}");
    // A resend quarantines nothing twice.
    let (status, _) = post(&server, &events).await;
    assert_eq!(status, 200);
    let (_, out, _) = cli(&["quarantine", "--config", server.config_path.to_str().unwrap()]);
    assert!(out.contains("(1 records)"), "{out}");
}

/// `skip` on a redaction stage is refused by validation with a clear message.
#[test]
fn skip_on_a_redaction_stage_fails_validation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skip.toml");
    std::fs::write(&path, config("trap", "redaction", "on_error = \"skip\"")).unwrap();
    let (ok, _, err) = cli(&["validate", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("stages[0].on_error") && err.contains("redaction"), "{err}");
}

/// `skip` on a custom stage passes the poison event on unchanged (then redacted by the next
/// stage).
#[tokio::test(flavor = "multi_thread")]
async fn skip_policy_passes_failed_events_on_unchanged() {
    let server = TestServer::start(&config("trap", "custom", "on_error = \"skip\""));
    let (status, ack) = post(&server, &batch(5, 2)).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["accepted"], 5);
    let rows = stored_rows(&server);
    assert_eq!(rows.iter().filter(|r| r["event_type"] == "poison").count(), 1);
    assert!(!serde_json::to_string(&rows).unwrap().contains("@example.com"));
}

/// A component built for another major version of the contract is refused, naming both.
#[test]
fn plugin_for_another_major_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.toml");
    let plugin = auditflow_artifacts::path("contract-v2").display().to_string();
    std::fs::write(&path, format!("[[stages]]\nname = \"v2\"\nplugin = {plugin:?}\n")).unwrap();
    let (ok, _, err) = cli(&["validate", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("auditflow:plugin@2.0.0") && err.contains("auditflow:plugin@1.1.0"),
        "{err}"
    );
}

/// A read-only lookup file granted in config (`[stages.lookup_files]`) is served through the
/// host's `lookup` import: the enricher reads it, a plugin that tries to open the same file
/// directly is refused (the grant is not a preopened directory), and a reload re-reads it.
#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_file_is_readable_only_through_the_lookup_import() {
    let dir = tempfile::tempdir().unwrap();
    let teams = dir.path().join("teams.csv");
    std::fs::write(
        &teams,
        "agent,owner,team\nagent-7,ann,blue-team\nagent-8,bob,green-team\n",
    )
    .unwrap();
    let config = format!(
        r#"
[[auth.tokens]]
name = "test"
env = "AUDITFLOW_TOKEN"

[storage]
url = "sqlite://events.db"

[[stages]]
name = "hostile"
plugin = {hostile:?}
on_error = "drop"
[stages.config]
mode = "escape"
escape_path = {teams:?}
[stages.lookup_files.teams]
path = "teams.csv"

[[stages]]
name = "enrich"
plugin = "enrich"
role = "enrichment"
[[stages.config.fields]]
from = "agent_id"
table = "teams"
to = "metadata.team"
default = "unknown"
[stages.lookup_files.teams]
path = "teams.csv"
key = "agent"
value = "team"
"#,
        hostile = hostile_path(),
        teams = teams.display().to_string(),
    );
    let server = TestServer::start_in(dir, &config);
    let events = |tag: &str| -> Vec<Value> {
        ["agent-7", "agent-8", "agent-9", "agent-7"]
            .iter()
            .enumerate()
            .map(|(i, agent)| {
                json!({
                    "event_type": if i == 3 { "poison" } else { tag },
                    "timestamp": "2026-11-01T00:00:00Z",
                    "agent_id": agent,
                })
            })
            .collect()
    };
    let (status, ack) = post(&server, &events("before")).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["accepted"], 3, "{ack}");
    assert_eq!(
        ack["dropped"], 1,
        "the escape attempt must fail, so the poison event is dropped: {ack}"
    );
    let team_of = |rows: &[Value], tag: &str, agent: &str| -> String {
        rows.iter()
            .find(|r| r["event_type"] == tag && r["agent_id"] == agent)
            .map(|r| r["metadata"]["team"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    let rows = stored_rows(&server);
    assert_eq!(team_of(&rows, "before", "agent-7"), "blue-team");
    assert_eq!(team_of(&rows, "before", "agent-8"), "green-team");
    assert_eq!(team_of(&rows, "before", "agent-9"), "unknown");
    assert!(
        rows.iter().all(|r| r["metadata"].get("escaped").is_none()),
        "plugin read the file directly"
    );

    // The file is read when the pipeline is built: a reload picks up the new contents.
    std::fs::write(&teams, "agent,owner,team\nagent-7,ann,red-team\n").unwrap();
    let status = std::process::Command::new("kill")
        .args(["-s", "HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log().contains("reload: new pipeline in service") {
        assert!(Instant::now() < deadline, "no reload; log:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, ack) = post(&server, &events("after")).await;
    assert_eq!(status, 200, "{ack}");
    let rows = stored_rows(&server);
    assert_eq!(team_of(&rows, "after", "agent-7"), "red-team");
    assert_eq!(team_of(&rows, "after", "agent-8"), "unknown");
}

/// A missing or malformed lookup file fails validation naming the key path and the file
/// (and, for a bad row, the line), never a value from it.
#[test]
fn a_bad_lookup_file_fails_validation_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookup.toml");
    let config =
        "[[stages]]\nname = \"enrich\"\nplugin = \"enrich\"\n[stages.lookup_files.teams]\npath = \"teams.csv\"\n";
    std::fs::write(&path, config).unwrap();
    let (ok, _, err) = cli(&["validate", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("stages[0].lookup_files.teams") && err.contains("teams.csv"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("teams.csv"),
        "agent,team\nagent-secret-1,a\nagent-secret-1,b\n",
    )
    .unwrap();
    let (ok, _, err) = cli(&["validate", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("line 3: the key of line 2 is repeated"), "{err}");
    assert!(!err.contains("agent-secret-1"), "{err}");

    std::fs::write(dir.path().join("teams.csv"), "agent,team\nagent-1,a\n").unwrap();
    let (ok, out, err) = cli(&["validate", "--config", path.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
}

/// `fuel` bounds a call by instructions, not time: a looping plugin is stopped when its fuel
/// runs out, long before its (deliberately huge) timeout, and only the looping event meets
/// the policy. Events that fit the budget pass.
#[tokio::test(flavor = "multi_thread")]
async fn fuel_stops_a_looping_plugin_before_its_timeout() {
    let server = TestServer::start(&config(
        "loop",
        "custom",
        "on_error = \"quarantine\"\ntimeout_ms = 120000\nfuel = 200000000",
    ));
    let started = Instant::now();
    let (status, ack) = post(&server, &batch(10, 4)).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["accepted"], 9, "{ack}");
    assert_eq!(ack["quarantined"], 1, "{ack}");
    assert!(
        elapsed < Duration::from_secs(60),
        "fuel did not stop the loop ({elapsed:?})"
    );
    let (ok, out, err) = cli(&["quarantine", "--config", server.config_path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("fuel"),
        "the quarantine record should say the fuel ran out: {out}"
    );
    let metrics = server.metrics().await;
    let traps = sample(
        &metrics,
        "auditflow_stage_call_failures_total",
        &["stage=\"hostile\"", "kind=\"trap\""],
    );
    assert!(traps >= 1.0, "fuel exhaustion not counted as a trap");
    let timeouts = sample(
        &metrics,
        "auditflow_stage_call_failures_total",
        &["stage=\"hostile\"", "kind=\"timeout\""],
    );
    assert_eq!(timeouts, 0.0, "the loop must be stopped by fuel, not by the timeout");
    still_serving(&server).await;
}

/// A stage that runs past its timeout on one event under `reject` answers 422 naming the
/// event, the stage and the limit (it used to be a bare 500), and the request takes about two
/// timeouts: the batch call and the event tried alone, not one per event.
#[tokio::test(flavor = "multi_thread")]
async fn a_stage_timeout_is_a_422_naming_the_stage_the_limit_and_the_event() {
    let server = TestServer::start(&config("loop", "custom", "on_error = \"reject\"\ntimeout_ms = 300"));
    let started = std::time::Instant::now();
    let (status, body) = post(&server, &batch(50, 7)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["index"], 7, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("`hostile`") && error.contains("timeout_ms (300 ms)"),
        "{error}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    still_serving(&server).await;
}

/// Re-running a timed-out batch event by event draws on one budget per request (two stage
/// timeouts, then the rest in one call): ten looping events under `drop` cost about four
/// timeouts, not eleven (5.5 s); the events tried alone and found fast are stored.
#[tokio::test(flavor = "multi_thread")]
async fn many_slow_events_cost_one_rerun_budget_not_one_timeout_each() {
    let server = TestServer::start(&config("loop", "custom", "on_error = \"drop\"\ntimeout_ms = 500"));
    let mut events = batch(40, usize::MAX);
    for i in (0..40).step_by(4) {
        events[i]["event_type"] = json!("poison");
    }
    let started = std::time::Instant::now();
    let (status, ack) = post(&server, &events).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{ack}");
    assert!(
        elapsed < std::time::Duration::from_millis(3500),
        "10 slow events took {elapsed:?}"
    );
    let accepted = ack["accepted"].as_u64().unwrap();
    let dropped = ack["dropped"].as_u64().unwrap();
    assert_eq!(accepted + dropped, 40, "{ack}");
    assert!(
        dropped >= 10 && accepted >= 3,
        "every slow event is dropped, the first fast ones kept: {ack}"
    );
    assert_eq!(stored_rows(&server).len() as u64, accepted);
}

/// One slow event in a batch costs its batch nothing else: under `drop`, only it is dropped.
#[tokio::test(flavor = "multi_thread")]
async fn one_slow_event_costs_only_itself() {
    let server = TestServer::start(&config("loop", "custom", "on_error = \"drop\"\ntimeout_ms = 300"));
    let (status, ack) = post(&server, &batch(40, 5)).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(
        (ack["accepted"].as_u64(), ack["dropped"].as_u64()),
        (Some(39), Some(1)),
        "{ack}"
    );
}
