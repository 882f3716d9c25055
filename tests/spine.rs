//! End-to-end tests of the spine: a real auditflow process, real HTTP, the real Wasm
//! plugins, SQLite storage.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::{Value, json};

async fn post(server: &TestServer, body: Vec<u8>, content_type: &str) -> (u16, Value) {
    let resp = http()
        .post(server.url("/v1/events"))
        .bearer_auth(TOKEN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

fn dev_lines() -> Vec<String> {
    dev_data("events-dev.ndjson").lines().map(str::to_owned).collect()
}

/// Posting the whole dev set stores every event with no labeled PII left anywhere, keeps the
/// decoys, and a resend is reported as duplicates and stores nothing new.
#[tokio::test(flavor = "multi_thread")]
async fn dev_set_is_stored_redacted_and_resend_is_idempotent() {
    let server = TestServer::start(&quickstart_config());
    let lines = dev_lines();
    assert_eq!(lines.len(), 5000);

    for chunk in lines.chunks(500) {
        let (status, ack) = post(&server, chunk.join("\n").into_bytes(), "application/x-ndjson").await;
        assert_eq!(status, 200, "{ack}");
        assert_eq!(ack["accepted"], 500, "{ack}");
        assert_eq!(ack["duplicates"], 0);
    }
    let rows = stored_rows(&server);
    assert_eq!(rows.len(), 5000);

    // No labeled PII value appears anywhere in any stored row; decoys survive.
    let labels = dev_data("labels-dev.ndjson");
    let by_id: HashMap<String, String> = rows
        .iter()
        .map(|r| (r["event_id"].as_str().unwrap().to_owned(), r.to_string()))
        .collect();
    let (mut decoys, mut decoys_kept, mut pii_checked) = (0, 0, 0);
    for line in labels.lines() {
        let label: Value = serde_json::from_str(line).unwrap();
        let row = &by_id[label["event_id"].as_str().unwrap()];
        for pii in label["pii"].as_array().unwrap() {
            let pii = pii.as_str().unwrap();
            // Compare against the JSON-escaped form, as the row text is JSON.
            let escaped = serde_json::to_string(pii).unwrap();
            let escaped = &escaped[1..escaped.len() - 1];
            assert!(!row.contains(escaped), "PII survived in event {}", label["event_id"]);
            pii_checked += 1;
        }
        for decoy in label["decoys"].as_array().unwrap() {
            decoys += 1;
            if row.contains(decoy.as_str().unwrap()) {
                decoys_kept += 1;
            }
        }
    }
    assert!(pii_checked > 5000);
    let kept = decoys_kept as f64 / decoys as f64;
    assert!(kept >= 0.995, "only {decoys_kept}/{decoys} decoys survived");

    // Enrichment ran after redaction.
    assert_eq!(
        rows[0]["metadata"]["pipeline"],
        json!({"name": "quickstart", "version": "1"})
    );
    assert!(rows[0]["metadata"]["data_classification"].is_string());
    assert_eq!(rows[0]["source"], "quickstart");

    // The same file again: nothing new, 5 000 duplicates.
    let mut dups = 0;
    for chunk in lines.chunks(500) {
        let (status, ack) = post(&server, chunk.join("\n").into_bytes(), "application/x-ndjson").await;
        assert_eq!(status, 200);
        assert_eq!(ack["accepted"], 0);
        dups += ack["duplicates"].as_u64().unwrap();
    }
    assert_eq!(dups, 5000);
    assert_eq!(stored_rows(&server).len(), 5000);
}

fn one_event() -> Value {
    json!({"event_type": "tool_invoke", "timestamp": "2026-11-01T00:00:00Z", "actor": {"type": "user", "id": "alice@example.com"}})
}

/// Every class of bad input gets its status and a JSON error naming what is wrong, and
/// nothing from the request is stored.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_a_clear_error_and_nothing_is_stored() {
    let mut cfg = quickstart_config();
    cfg = cfg.replace(
        "[storage]",
        "[server.limits]\nmax_body_bytes = 1000000\nmax_decompressed_bytes = 2000000\nmax_depth = 8\n\n[storage]",
    );
    let server = TestServer::start(&cfg);
    let good = one_event();

    // One valid event first, so "unchanged" is measured against a non-empty store.
    let (status, _) = post(&server, good.to_string().into_bytes(), "application/json").await;
    assert_eq!(status, 200);

    // Malformed JSON → 400 with line and column.
    let (status, err) = post(
        &server,
        b"{\"event_type\": \"x\",\n  \"timestamp\": }".to_vec(),
        "application/json",
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["line"], 2, "{err}");
    assert!(err["column"].as_u64().is_some(), "{err}");

    // Malformed NDJSON line → 400 naming the line.
    let body = format!("{}\n{}\n{{nope\n", good, good);
    let (status, err) = post(&server, body.into_bytes(), "application/x-ndjson").await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["line"], 3, "{err}");

    // Missing required field → 422 naming index and field; the valid events before it are
    // not stored either.
    let body = json!([good, good, {"timestamp": "2026-11-01T00:00:00Z"}]);
    let (status, err) = post(&server, body.to_string().into_bytes(), "application/json").await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["index"], 2);
    assert_eq!(err["field"], "event_type");

    // Ill-typed field → 422.
    let mut bad = good.clone();
    bad["decision"] = json!(7);
    let (status, err) = post(&server, json!([good, bad]).to_string().into_bytes(), "application/json").await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["index"], 1);
    assert_eq!(err["field"], "decision");

    // Nesting deeper than the limit → 422.
    let mut deep = json!("x");
    for _ in 0..20 {
        deep = json!({ "d": deep });
    }
    let mut nested = good.clone();
    nested["metadata"] = deep;
    let (status, err) = post(&server, nested.to_string().into_bytes(), "application/json").await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["field"], "metadata");

    // Body over the limit → 413.
    let big = vec![b' '; 1_100_000];
    let (status, err) = post(&server, big, "application/json").await;
    assert_eq!(status, 413, "{err}");

    // Gzip bomb: small on the wire, over the decompressed limit → 413 without inflating it.
    let bomb = gzip(&vec![b' '; 50_000_000]);
    assert!(bomb.len() < 1_000_000);
    let resp = http()
        .post(server.url("/v1/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("max_decompressed_bytes"),
        "{err}"
    );

    // Unsupported content type → 415.
    let (status, err) = post(&server, good.to_string().into_bytes(), "text/plain").await;
    assert_eq!(status, 415, "{err}");

    // Missing or wrong token → 401.
    for token in [None, Some("wrong-token")] {
        let mut req = http()
            .post(server.url("/v1/events"))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.body(good.to_string()).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let err: Value = resp.json().await.unwrap();
        assert!(err["error"].is_string());
    }

    // Error messages never echo event contents.
    let mut leaky = good.clone();
    leaky["decision"] = json!("secret-value-123");
    let (status, err) = post(&server, leaky.to_string().into_bytes(), "application/json").await;
    assert_eq!(status, 422);
    assert!(!err.to_string().contains("secret-value-123"), "{err}");

    assert_eq!(stored_rows(&server).len(), 1, "a refused request stored something");
    assert!(
        !server.log().contains("secret-value-123"),
        "server log leaked event contents"
    );
}

/// Gzip bodies, single objects and arrays all ingest; event ids are generated when missing.
#[tokio::test(flavor = "multi_thread")]
async fn gzip_arrays_and_generated_ids_are_accepted() {
    let server = TestServer::start(&quickstart_config());
    let body = json!([one_event(), one_event()]).to_string();
    let resp = http()
        .post(server.url("/v1/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(body.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ack: Value = resp.json().await.unwrap();
    assert_eq!(ack["accepted"], 2);
    let ids = ack["event_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2);
    // Generated ids are UUIDv7 (version nibble 7).
    assert_eq!(&ids[0].as_str().unwrap()[14..15], "7");
    let rows = stored_rows(&server);
    assert_eq!(rows.len(), 2);
    // The actor id was pseudonymised by the redact stage, stably.
    assert_eq!(rows[0]["actor"]["id"], rows[1]["actor"]["id"]);
    assert!(
        rows[0]["actor"]["id"].as_str().unwrap().starts_with("[HASH:"),
        "{}",
        rows[0]
    );
}

/// SARK's gateway posts its GatewayAuditEvent with `X-Gateway-Api-Key` and is stored as a
/// canonical event.
#[tokio::test(flavor = "multi_thread")]
async fn sark_gateway_audit_route_accepts_sark_payloads() {
    let server = TestServer::start(&quickstart_config());
    let payload = json!({
        "event_type": "tool_invoke",
        "user_id": "bob@example.com",
        "agent_id": "agent-2",
        "server_name": "github-mcp",
        "tool_name": "create_issue",
        "decision": "deny",
        "reason": "denied by policy",
        "timestamp": 1_793_000_000,
        "gateway_request_id": "gw-req-42",
        "metadata": {}
    });
    let resp = http()
        .post(server.url("/api/v1/gateway/audit"))
        .header("x-gateway-api-key", TOKEN)
        .json(&payload)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 201, "{}", resp.text().await.unwrap());
    let rows = stored_rows(&server);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["request_id"], "gw-req-42");
    assert_eq!(row["decision"], "deny");
    assert_eq!(row["timestamp"], "2026-10-26T07:33:20Z");
    assert!(!row.to_string().contains("bob@example.com"));

    let resp = http()
        .post(server.url("/api/v1/gateway/audit"))
        .header("x-gateway-api-key", "nope")
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

/// A team's own plugin (examples/custom-redactor) loads from its path and runs.
#[tokio::test(flavor = "multi_thread")]
async fn custom_redactor_example_masks_employee_ids() {
    let cfg = std::fs::read_to_string(workspace().join("examples/custom-redactor.toml"))
        .unwrap()
        .replace("url = \"sqlite://custom-redactor.db\"", "url = \"sqlite://events.db\"")
        .replace(
            "\"../target/plugins/wasm32-wasip2/release/custom_redactor.wasm\"",
            &format!(
                "{:?}",
                auditflow_artifacts::path("custom-redactor").display().to_string()
            ),
        );
    let server = TestServer::start(&cfg);
    let events = std::fs::read(workspace().join("examples/events.ndjson")).unwrap();
    let (status, ack) = post(&server, events, "application/x-ndjson").await;
    assert_eq!(status, 200, "{ack}");
    let rows = stored_rows(&server);
    let all = serde_json::to_string(&rows).unwrap();
    assert!(!all.contains("EMP-204518") && !all.contains("EMP-771203"));
    assert!(all.contains("/home/[REDACTED:employee_id]/payroll.csv"), "{all}");
}

/// `auditflow validate` names the mistyped key or the missing plugin file.
#[test]
fn validate_names_the_bad_key_or_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "[[stages]]\nname = \"redact\"\nplugin = \"redact\"\non_eror = \"drop\"\n",
    )
    .unwrap();
    let (ok, _, err) = cli(&["validate", "--config", typo.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("stages[0].on_eror"), "{err}");

    let missing = dir.path().join("missing.toml");
    std::fs::write(
        &missing,
        "[[stages]]\nname = \"mine\"\nplugin = \"plugins/nope.wasm\"\n",
    )
    .unwrap();
    let (ok, _, err) = cli(&["validate", "--config", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("nope.wasm") && err.contains("not found"), "{err}");

    let bad_plugin_config = dir.path().join("badcfg.toml");
    std::fs::write(
        &bad_plugin_config,
        "[[stages]]\nname = \"r\"\nplugin = \"redact\"\n[stages.config]\ndetectors = [\"emial\"]\n",
    )
    .unwrap();
    let (ok, _, err) = cli(&["validate", "--config", bad_plugin_config.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("emial"), "{err}");

    let quickstart = workspace().join("examples/quickstart.toml");
    let (ok, out, err) = cli(&["validate", "--config", quickstart.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("redact → enrich"), "{out}");
}

/// `AUDITFLOW_WASM_PROFILER=perfmap` (docs/PLUGINS.md, "Profiling a plugin") makes any command
/// write the perf map that lets `perf` name plugin functions; without it nothing is written.
#[test]
fn wasm_profiler_writes_a_perf_map_naming_plugin_functions() {
    let quickstart = workspace().join("examples/quickstart.toml");
    let run = |profiler: Option<&str>| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["validate", "--config", quickstart.to_str().unwrap()])
            .env("AUDITFLOW_TOKEN", TOKEN)
            .env_remove("AUDITFLOW_WASM_PROFILER")
            .stdout(std::process::Stdio::null());
        if let Some(value) = profiler {
            cmd.env("AUDITFLOW_WASM_PROFILER", value);
        }
        let mut child = cmd.spawn().unwrap();
        let map = std::path::PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
        assert!(child.wait().unwrap().success());
        let text = std::fs::read_to_string(&map).ok();
        let _ = std::fs::remove_file(&map);
        text
    };
    let map = run(Some("perfmap")).expect("a perf map is written");
    assert!(map.contains("redact::Redactor"), "{}", &map[..map.len().min(500)]);
    assert!(run(None).is_none());
}

/// `auditflow plugin test` shows what a stage changes.
#[test]
fn plugin_test_prints_a_before_after_diff() {
    let quickstart = workspace().join("examples/quickstart.toml");
    let input = workspace().join("examples/events.ndjson");
    let (ok, out, err) = cli(&[
        "plugin",
        "test",
        "--config",
        quickstart.to_str().unwrap(),
        "--stage",
        "redact",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("- actor.id: \"obrien@mail.example.net\""), "{out}");
    assert!(out.contains("+ actor.id: \"[HASH:"), "{out}");
    assert!(out.contains("[REDACTED:ssn]"), "{out}");
    assert!(out.contains("21 events"), "{out}");
}

/// The dev set in tests/data is exactly what its generator makes (tests/data/README.md), so the
/// data and the script that documents it cannot drift apart.
#[test]
fn dev_set_files_are_what_the_generator_makes() {
    let dir = tempfile::tempdir().unwrap();
    let (events, labels) = (dir.path().join("events.ndjson"), dir.path().join("labels.ndjson"));
    let status = std::process::Command::new("python3")
        .arg(workspace().join("tests/data/gen_events.py"))
        .args(["--seed", "1", "--count", "5000", "--out"])
        .arg(&events)
        .arg("--labels")
        .arg(&labels)
        .status()
        .expect("python3 runs the generator");
    assert!(status.success());
    assert!(
        std::fs::read_to_string(&events).unwrap() == dev_data("events-dev.ndjson"),
        "events differ"
    );
    assert!(
        std::fs::read_to_string(&labels).unwrap() == dev_data("labels-dev.ndjson"),
        "labels differ"
    );
}

/// The quick start with its redact stage swapped for `redact_plugin` and the 1.0 test plugin
/// drop-marker between redact and enrich, so 1.0 and 1.1 plugins run in one pipeline.
fn mixed_contract_config(redact_plugin: &str, extra: &str) -> String {
    let marker = auditflow_artifacts::path("drop-marker").display().to_string();
    let config = quickstart_config().replace(
        "plugin = \"redact\"          # the built-in reference redactor",
        &format!("plugin = {redact_plugin:?}"),
    );
    assert!(
        config.contains(&format!("plugin = {redact_plugin:?}")),
        "quickstart.toml changed"
    );
    config.replace(
        "[[stages]]\nname = \"enrich\"",
        &format!(
            "[[stages]]\nname = \"marker\"\nplugin = {marker:?}\non_error = \"quarantine\"\n\n{extra}[[stages]]\nname = \"enrich\""
        ),
    )
}

/// A row without what the store adds (sequence, chain, receive time): the event as stored.
fn event_of(mut row: Value) -> Value {
    let obj = row.as_object_mut().unwrap();
    for store_only in ["seq", "received_at", "hash", "prev_hash", "chain", "lane"] {
        obj.remove(store_only);
    }
    row
}

/// Contract 1.0 and 1.1 side by side: the reference redactor built for each (`redact-v10` is
/// the same code exported as a 1.0 `stage`), each in a pipeline with a 1.0 plugin (drop-marker)
/// and a 1.1 plugin (enrich), store the same rows for 1 000 dev-set events plus the examples;
/// and a 1.1 plugin that reads two fields and patches one (touch-two) changes exactly that field.
#[tokio::test(flavor = "multi_thread")]
async fn contracts_1_0_and_1_1_store_the_same_rows() {
    let mut body = dev_lines()[..1000].join("\n");
    body.push('\n');
    body.push_str(&std::fs::read_to_string(workspace().join("examples/events.ndjson")).unwrap());
    let v10 = auditflow_artifacts::path("redact-v10").display().to_string();

    let mut stored = Vec::new();
    for redact in [v10.as_str(), "redact"] {
        let server = TestServer::start(&mixed_contract_config(redact, ""));
        let (status, ack) = post(&server, body.clone().into_bytes(), "application/x-ndjson").await;
        assert_eq!(status, 200, "{ack}");
        // The examples are dev-set events too: some are duplicates of the first 1 000.
        assert_eq!(
            ack["accepted"].as_u64().unwrap() + ack["duplicates"].as_u64().unwrap(),
            1021
        );
        let mut rows: Vec<Value> = stored_rows(&server).into_iter().map(event_of).collect();
        assert_eq!(rows.len() as u64, ack["accepted"].as_u64().unwrap());
        rows.sort_by_key(|r| r["event_id"].as_str().unwrap().to_owned());
        stored.push(rows);
    }
    assert_eq!(stored[0].len(), stored[1].len());
    assert!(stored[0].len() >= 1000);
    for (a, b) in stored[0].iter().zip(&stored[1]) {
        assert_eq!(a, b, "contract 1.0 and 1.1 redactors stored different rows");
    }
    // Redaction did happen (the comparison is not between two unredacted copies).
    let all = serde_json::to_string(&stored[1]).unwrap();
    assert!(
        all.contains("[REDACTED:ssn]") && all.contains("[HASH:"),
        "no redaction seen"
    );

    // touch-two after the marker: tool_name becomes `<tool>@<len(actor.id)>`, nothing else moves.
    let touch = auditflow_artifacts::path("touch-two").display().to_string();
    let extra = format!("[[stages]]\nname = \"touch\"\nplugin = {touch:?}\non_error = \"reject\"\n\n");
    let server = TestServer::start(&mixed_contract_config("redact", &extra));
    let (status, ack) = post(&server, body.clone().into_bytes(), "application/x-ndjson").await;
    assert_eq!(status, 200, "{ack}");
    let mut touched: Vec<Value> = stored_rows(&server).into_iter().map(event_of).collect();
    touched.sort_by_key(|r| r["event_id"].as_str().unwrap().to_owned());
    let mut changed = 0;
    for (before, after) in stored[1].iter().zip(&touched) {
        let mut expect = before.clone();
        if let Some(tool) = before["tool_name"].as_str() {
            let actor = before["actor"]["id"].as_str().map_or(0, str::len);
            expect["tool_name"] = json!(format!("{tool}@{actor}"));
            changed += 1;
        }
        assert_eq!(&expect, after);
    }
    assert!(changed > 500, "only {changed} events had a tool name");
}

/// A 1.1 plugin's patch is checked like a 1.0 plugin's whole record: `decision = "maybe"`
/// breaks the contract, which is the plugin's fault, not the sender's: under `on_error =
/// "reject"` the request gets a 500 naming the stage, nothing is stored, and the breach is
/// counted as `kind="contract"`.
#[tokio::test(flavor = "multi_thread")]
async fn a_patch_that_breaks_the_contract_is_refused() {
    let touch = auditflow_artifacts::path("touch-two").display().to_string();
    let extra = format!(
        "[[stages]]\nname = \"touch\"\nplugin = {touch:?}\non_error = \"reject\"\n\n[stages.config]\npatch = \"bad-decision\"\n\n"
    );
    let server = TestServer::start(&mixed_contract_config("redact", &extra));
    let events = std::fs::read(workspace().join("examples/events.ndjson")).unwrap();
    let (status, answer) = post(&server, events, "application/x-ndjson").await;
    assert_eq!(status, 500, "{answer}");
    let text = answer.to_string();
    assert!(
        text.contains("stage `touch`") && text.contains("broke the contract"),
        "{text}"
    );
    assert!(stored_rows(&server).is_empty());
    let metrics = server.metrics().await;
    let breaches = sample(
        &metrics,
        "auditflow_stage_call_failures_total",
        &["stage=\"touch\"", "kind=\"contract\""],
    );
    assert!(breaches >= 1.0, "{metrics}");
}
