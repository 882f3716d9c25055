//! End-to-end tests of observability: metrics, health, request ids, traces, and the
//! monitoring/ assets, against the real `auditflow` binary, a real Prometheus and promtool.
//!
//! - The alert rules pass `promtool check rules`, their unit tests pass `promtool test rules`,
//!   and every alert has a firing and a silent test case and a runbook in docs/OPERATIONS.md.
//! - A real Prometheus (the Debian `prometheus` binary, installed when missing) scrapes a
//!   server every second while it takes a load of dev-set events with auth failures, dropped,
//!   quarantined, trapping and timing-out events and a store outage; then every PromQL query
//!   of the dashboards returns data, every rule expression parses and evaluates, and the
//!   per-stage latency histogram has samples for every configured stage.
//! - `/metrics` emits exactly the families docs/METRICS.md lists (names, types, labels),
//!   passes `promtool check metrics`, and carries no event content.
//! - `/health/ready` is 503 while the store is unusable and while draining, 200 otherwise.
//! - Request ids are echoed and carried by every log line of their request; OTLP export sends
//!   request spans to a collector; `metrics_listen` moves `/metrics` off the ingest listener.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

// ---------------------------------------------------------------------------------------------
// Shared helpers

fn repo(path: &str) -> PathBuf {
    workspace().join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `promtool` and `prometheus`, installed from Debian's `prometheus` package when missing.
fn ensure_prometheus_tools() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let present = |bin: &str| {
            Command::new(bin)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if present("promtool") && present("prometheus") {
            return;
        }
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "prometheus"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            let _ = Command::new("apt-get").arg("update").status();
            install();
        }
        assert!(
            present("promtool") && present("prometheus"),
            "promtool/prometheus missing and `apt-get install -y prometheus` failed"
        );
    });
}

/// The quick start pipeline (redact, enrich) plus the drop-marker test plugin as a third,
/// custom stage that quarantines what it fails on, with a short timeout. `extra` is appended.
fn pipeline_config(extra: &str) -> String {
    let plugin = auditflow_artifacts::path("drop-marker");
    assert!(plugin.exists(), "{} not built", plugin.display());
    format!(
        "{}\n[[stages]]\nname = \"drop-marker\"\nplugin = {:?}\nrole = \"custom\"\non_error = \"quarantine\"\ntimeout_ms = 300\ninstances = 2\n{extra}\n",
        quickstart_config(),
        plugin.display().to_string()
    )
}

const STAGES: [&str; 3] = ["redact", "enrich", "drop-marker"];

/// The dev set as NDJSON lines; every 20th event marked `drop_me`, every 100th (offset 50)
/// `fail_me`.
fn marked_dev_lines() -> Vec<String> {
    dev_data("events-dev.ndjson")
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let mut e: Value = serde_json::from_str(line).unwrap();
            if i % 20 == 0 {
                e["event_type"] = json!("drop_me");
            } else if i % 100 == 50 {
                e["event_type"] = json!("fail_me");
            }
            e.to_string()
        })
        .collect()
}

fn marker_event(event_type: &str) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4(),
        "event_type": event_type,
        "timestamp": "2026-11-01T00:00:00Z",
        "actor": {"type": "user", "id": "marker-actor@example.com"},
        "decision": "allow"
    })
}

async fn post(server_url: &str, body: String, token: Option<&str>, request_id: Option<&str>) -> reqwest::Response {
    let mut req = http()
        .post(format!("{server_url}/v1/events"))
        .header("content-type", "application/x-ndjson");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(id) = request_id {
        req = req.header("x-request-id", id);
    }
    req.body(body).send().await.unwrap()
}

fn base(server: &TestServer) -> String {
    format!("http://{}", server.addr)
}

/// Post the marked dev set in requests of 500 events; returns how many were stored.
async fn post_dev_load(server: &TestServer) -> u64 {
    let mut accepted = 0;
    for chunk in marked_dev_lines().chunks(500) {
        let resp = post(&base(server), chunk.join("\n"), Some(TOKEN), None).await;
        assert_eq!(resp.status().as_u16(), 200);
        let ack: Value = resp.json().await.unwrap();
        accepted += ack["accepted"].as_u64().unwrap();
    }
    accepted
}

/// A few requests with no token and with a wrong one.
async fn post_auth_failures(server: &TestServer) {
    for token in [None, Some("wrong-token"), None, Some("another-wrong-token")] {
        let resp = post(&base(server), marker_event("tool_invoke").to_string(), token, None).await;
        assert_eq!(resp.status().as_u16(), 401);
    }
}

/// Rename the event table away (and back): the store's ping and every commit fail until it
/// is restored. A real outage of the database as the server sees it, done from outside
/// through a second connection, as another process (or an operator) would.
async fn set_store_online(server: &TestServer, online: bool) {
    let mut conn = SqliteConnectOptions::from_str(&server.db_url())
        .unwrap()
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let sql = if online {
        "ALTER TABLE audit_events_offline RENAME TO audit_events"
    } else {
        "ALTER TABLE audit_events RENAME TO audit_events_offline"
    };
    sqlx::query(sql).execute(&mut conn).await.unwrap();
}

async fn get_json(url: &str) -> (u16, Value) {
    let resp = http().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Run a process and kill it when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Start auditflow with extra global CLI arguments (e.g. `--log-format json`).
fn start_with_args(config: &str, global_args: &[&str]) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("auditflow.toml");
    std::fs::write(&config_path, config).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log_path = dir.path().join("server.log");
    let child = Command::new(BIN)
        .args(global_args)
        .args(["serve", "--config"])
        .arg(&config_path)
        .args(["--listen", &addr])
        .env("AUDITFLOW_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let server = TestServer {
        child,
        addr,
        dir,
        config_path,
        log_path,
        scheme: "http",
    };
    wait_for(Duration::from_secs(60), || {
        std::net::TcpStream::connect(&server.addr).is_ok()
    })
    .unwrap_or_else(|_| panic!("server did not start; log:\n{}", server.log()));
    server
}

fn wait_for(within: Duration, mut ok: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(())
}

// ---------------------------------------------------------------------------------------------
// docs/METRICS.md and /metrics

#[derive(Debug, Clone, PartialEq, Eq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// The table between `<!-- metrics:{section}:begin -->` and its end marker:
/// name → (type, labels).
fn doc_table(section: &str) -> BTreeMap<String, Family> {
    let doc = read(&repo("docs/METRICS.md"));
    let begin = format!("<!-- metrics:{section}:begin -->");
    let end = format!("<!-- metrics:{section}:end -->");
    let start = doc.find(&begin).unwrap_or_else(|| panic!("METRICS.md has no {begin}"));
    let stop = doc.find(&end).unwrap_or_else(|| panic!("METRICS.md has no {end}"));
    let mut out = BTreeMap::new();
    for row in doc[start..stop].lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert!(cells.len() >= 5, "METRICS.md row has too few columns: {row}");
        let name = cells[0].trim_matches('`').to_owned();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_owned())
            .filter(|l| !l.is_empty() && l != "(none)")
            .collect();
        let prev = out.insert(
            name.clone(),
            Family {
                kind: cells[1].to_owned(),
                labels,
            },
        );
        assert!(prev.is_none(), "METRICS.md lists {name} twice");
    }
    // The planned table may be empty (nothing planned); the emitted one never is.
    assert!(
        !out.is_empty() || section == "planned",
        "METRICS.md {section} table is empty"
    );
    out
}

/// Label names and values of one sample line's `{...}`.
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim_start_matches(',').trim().to_owned();
        let mut value = String::new();
        let mut chars = rest[eq + 1..].char_indices();
        assert_eq!(chars.next().map(|c| c.1), Some('"'), "bad label syntax in {s}");
        let mut end = 0;
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, c) => {
                    value.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = eq + 1 + i + 1;
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        out.push((name, value));
        rest = &rest[end..];
    }
    out
}

/// The families of a Prometheus text scrape: name → (type, label names), plus every label value.
fn scrape_families(text: &str) -> (BTreeMap<String, Family>, BTreeSet<String>) {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut values = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.insert(
                name.to_owned(),
                Family {
                    kind: kind.to_owned(),
                    labels: BTreeSet::new(),
                },
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (sample, labels) = match line.split_once('{') {
            Some((name, rest)) => (name, parse_labels(&rest[..rest.rfind('}').unwrap()])),
            None => (line.split_whitespace().next().unwrap(), Vec::new()),
        };
        let family = [
            sample,
            sample.trim_end_matches("_bucket"),
            sample.trim_end_matches("_sum"),
            sample.trim_end_matches("_count"),
        ]
        .into_iter()
        .find(|n| families.contains_key(*n))
        .unwrap_or_else(|| panic!("sample {sample} has no # TYPE"));
        let f = families.get_mut(family).unwrap();
        for (name, value) in labels {
            if !(f.kind == "histogram" && name == "le") {
                f.labels.insert(name);
            }
            values.insert(value);
        }
    }
    (families, values)
}

/// A SIEM sink, so the scrape carries the sink families: an `http` sink at a loopback port where
/// nothing listens (every request fails with a network error and is retried), cutting batches
/// quickly so it has made requests by the time of the scrape.
const METRICS_PROBE_SINK: &str = "[[sinks]]\nname = \"metrics-probe\"\ntype = \"http\"\nendpoint = \"http://127.0.0.1:9/ingest\"\n[sinks.batch]\nmax_wait_ms = 20\n";

/// The metrics docs/METRICS.md lists are exactly the ones a server emits after traffic that
/// touches every component, with the same types and label names; the planned ones are not
/// emitted; the scrape passes `promtool check metrics`; and no event content is a label.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_doc_lists_exactly_the_emitted_families() {
    ensure_prometheus_tools();
    let server = TestServer::start(&pipeline_config(METRICS_PROBE_SINK));
    post_dev_load(&server).await;
    post_auth_failures(&server).await;
    let text = server.metrics().await;
    let (emitted, label_values) = scrape_families(&text);
    let documented = doc_table("emitted");
    let planned = doc_table("planned");

    let undocumented: Vec<_> = emitted.keys().filter(|n| !documented.contains_key(*n)).collect();
    let missing: Vec<_> = documented.keys().filter(|n| !emitted.contains_key(*n)).collect();
    assert!(
        undocumented.is_empty(),
        "emitted but not in docs/METRICS.md: {undocumented:?}"
    );
    assert!(missing.is_empty(), "in docs/METRICS.md but not emitted: {missing:?}");
    for (name, doc) in &documented {
        assert_eq!(
            &emitted[name], doc,
            "{name}: /metrics (left) and docs/METRICS.md (right) differ"
        );
    }
    let emitted_planned: Vec<_> = planned.keys().filter(|n| emitted.contains_key(*n)).collect();
    assert!(
        emitted_planned.is_empty(),
        "planned metrics are emitted; move them to the emitted table: {emitted_planned:?}"
    );

    // promtool lints names, units, suffixes and help texts.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Labels carry no event content: no actor, request or event id of the load, no email.
    for line in marked_dev_lines().iter().take(500) {
        let e: Value = serde_json::from_str(line).unwrap();
        for v in [
            &e["actor"]["id"],
            &e["request_id"],
            &e["event_id"],
            &e["agent_id"],
            &e["tool_name"],
        ] {
            if let Some(v) = v.as_str() {
                assert!(!label_values.contains(v), "event content {v:?} is a label value");
            }
        }
    }
    assert!(
        !label_values.iter().any(|v| v.contains('@')),
        "an email-like label value: {label_values:?}"
    );
    // The decision and stage labels are there with their bounded values.
    for v in [
        "allow",
        "deny",
        "drop-marker",
        "redaction",
        "quarantined",
        "dropped",
        "/v1/events",
    ] {
        assert!(label_values.contains(v), "label value {v} missing");
    }
}

// ---------------------------------------------------------------------------------------------
// Alert rules

fn rule_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("monitoring/prometheus/rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

/// Alert names of the rule files (`- alert: Name` lines).
fn alert_names() -> BTreeSet<String> {
    rule_files()
        .iter()
        .flat_map(|f| {
            read(f)
                .lines()
                .filter_map(|l| l.trim().strip_prefix("- alert:").map(|n| n.trim().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// For each alert named in the promtool test files: (has a case where it fires, has a case
/// where it is silent). A case is silent when its `exp_alerts` is `[]`.
fn alert_test_cases() -> BTreeMap<String, (bool, bool)> {
    let dir = repo("monitoring/prometheus/rules/tests");
    let mut cases: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = read(&entry.unwrap().path());
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = line.strip_prefix("alertname:") else {
                continue;
            };
            let exp = lines[i + 1..]
                .iter()
                .find(|l| l.starts_with("exp_alerts:"))
                .unwrap_or_else(|| panic!("alert test for {name} has no exp_alerts"));
            let entry = cases.entry(name.trim().to_owned()).or_default();
            if exp.trim_start_matches("exp_alerts:").trim() == "[]" {
                entry.1 = true;
            } else {
                entry.0 = true;
            }
        }
    }
    cases
}

/// GitHub-style anchors of the `##`/`###` headings of a markdown file.
fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

/// `promtool check rules` and `promtool test rules` pass, every alert has a firing and a
/// silent test case, and every alert's runbook section exists in docs/OPERATIONS.md.
#[test]
fn alert_rules_pass_promtool_and_every_alert_is_tested_both_ways() {
    ensure_prometheus_tools();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .args(rule_files())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let tests_dir = repo("monitoring/prometheus/rules/tests");
    let test_files: Vec<PathBuf> = std::fs::read_dir(&tests_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let out = Command::new("promtool")
        .current_dir(&tests_dir)
        .args(["test", "rules"])
        .args(&test_files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let alerts = alert_names();
    assert!(alerts.len() >= 8, "{alerts:?}");
    let cases = alert_test_cases();
    for alert in &alerts {
        let (fires, silent) = cases.get(alert).copied().unwrap_or_default();
        assert!(fires, "{alert}: no promtool test case where it fires");
        assert!(silent, "{alert}: no promtool test case where it stays silent");
    }
    let unknown: Vec<_> = cases.keys().filter(|a| !alerts.contains(*a)).collect();
    assert!(unknown.is_empty(), "tests for alerts that do not exist: {unknown:?}");

    let runbooks = anchors(&read(&repo("docs/OPERATIONS.md")));
    for alert in &alerts {
        assert!(
            runbooks.contains(&alert.to_lowercase()),
            "docs/OPERATIONS.md has no runbook section `## {alert}`"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Dashboards

struct DashboardQuery {
    dashboard: String,
    title: String,
    expr: String,
}

fn dashboards() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(repo("monitoring/grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&read(&p)).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every PromQL expression of the dashboards: panel targets, and query variables
/// (`label_values(expr, label)` becomes `count by (label) (expr)`), with Grafana's variables
/// replaced by what Grafana would send for "All" and a short range.
fn dashboard_queries() -> Vec<DashboardQuery> {
    fn substitute(expr: &str) -> String {
        expr.replace("$__rate_interval", "1m")
            .replace("$__interval", "15s")
            .replace("$__range", "10m")
            .replace("$instance", ".*")
            .replace("$stage", ".*")
    }
    fn walk(v: &Value, title: &str, dashboard: &str, out: &mut Vec<DashboardQuery>) {
        match v {
            Value::Object(m) => {
                let title = m.get("title").and_then(Value::as_str).unwrap_or(title);
                if let Some(expr) = m.get("expr").and_then(Value::as_str) {
                    out.push(DashboardQuery {
                        dashboard: dashboard.into(),
                        title: title.into(),
                        expr: substitute(expr),
                    });
                }
                for (k, child) in m {
                    if k != "templating" {
                        walk(child, title, dashboard, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, title, dashboard, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        walk(&d["panels"], "", &file, &mut out);
        for var in d["templating"]["list"].as_array().unwrap() {
            if var["type"] != "query" {
                continue;
            }
            let q = var["query"]["query"].as_str().or(var["query"].as_str()).unwrap();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{file}: variable query {q}"));
            let (expr, label) = inner.rsplit_once(',').unwrap();
            out.push(DashboardQuery {
                dashboard: file.clone(),
                title: format!("variable {}", var["name"]),
                expr: substitute(&format!("count by ({}) ({})", label.trim(), expr.trim())),
            });
        }
    }
    out
}

/// Dashboards select their data source through a `datasource` variable and use only metrics
/// docs/METRICS.md lists as emitted (plus Prometheus' own `up`).
#[test]
fn dashboards_use_a_datasource_variable_and_only_emitted_metrics() {
    let documented = doc_table("emitted");
    let boards = dashboards();
    let names: BTreeSet<&str> = boards.iter().map(|(f, _)| f.as_str()).collect();
    for expected in [
        "auditflow-overview.json",
        "auditflow-performance.json",
        "auditflow-security.json",
        "auditflow-operations.json",
    ] {
        assert!(names.contains(expected), "missing dashboard {expected}");
    }
    for (file, d) in &boards {
        let vars = d["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter()
                .any(|v| v["type"] == "datasource" && v["name"] == "datasource" && v["query"] == "prometheus"),
            "{file}: no `datasource` variable"
        );
        let text = d["panels"].to_string();
        let uids: BTreeSet<&str> = text
            .match_indices("\"uid\":\"")
            .map(|(i, _)| &text[i + 7..i + 7 + text[i + 7..].find('"').unwrap()])
            .collect();
        assert_eq!(
            uids,
            BTreeSet::from(["${datasource}"]),
            "{file}: panels must use the datasource variable"
        );
    }
    for q in dashboard_queries() {
        let mut rest = q.expr.as_str();
        while let Some(at) = rest.find("auditflow_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|base| documented.get(*base).is_some_and(|f| f.kind == "histogram"))
                .unwrap_or(&name);
            assert!(
                documented.contains_key(family),
                "{} / {}: {name} is not an emitted metric",
                q.dashboard,
                q.title
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus

struct Prometheus {
    _process: Reaped,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// monitoring/prometheus/prometheus.yml with a 1 s interval, `target` as the auditflow
    /// target and the repository's rule files.
    fn start(target: &str) -> Prometheus {
        ensure_prometheus_tools();
        let dir = tempfile::tempdir().unwrap();
        let config = read(&repo("monitoring/prometheus/prometheus.yml"))
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
            .replace("127.0.0.1:8080", target)
            .replace(
                "rules/*.yml",
                &repo("monitoring/prometheus/rules/*.yml").display().to_string(),
            );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let prom = Prometheus {
            _process: Reaped(child),
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let ready = format!("{}/-/ready", prom.url);
        wait_for(Duration::from_secs(30), || http_ok(&ready)).unwrap_or_else(|_| {
            panic!(
                "prometheus did not become ready: {}",
                read(&prom._dir.path().join("prometheus.log"))
            )
        });
        prom
    }

    /// An instant query: Ok(result array) or Err(error message).
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let resp: Value = http()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if resp["status"] != "success" {
            return Err(format!("{}: {}", resp["errorType"], resp["error"]));
        }
        match resp["data"]["resultType"].as_str() {
            Some("scalar") | Some("string") => Ok(vec![resp["data"]["result"].clone()]),
            _ => Ok(resp["data"]["result"].as_array().cloned().unwrap_or_default()),
        }
    }

    async fn scalar(&self, expr: &str) -> f64 {
        self.query(expr)
            .await
            .ok()
            .and_then(|r| {
                r.first()
                    .and_then(|s| s["value"][1].as_str().and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0.0)
    }
}

/// A tiny blocking GET that says whether the answer was 200, so no runtime is needed while
/// waiting for Prometheus.
fn http_ok(url: &str) -> bool {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// The dashboards and alert rules hold up against a real Prometheus scraping a real server
/// under load, with one `http` sink at a port where nothing listens (so the sink panels have
/// data: a backlog, network errors, retries, an open breaker): every dashboard query returns
/// data, every rule is loaded, evaluates without error and carries its annotations, and every
/// stage has latency samples.
#[tokio::test(flavor = "multi_thread")]
async fn dashboards_and_rules_work_against_a_real_prometheus() {
    let server = TestServer::start(&pipeline_config(METRICS_PROBE_SINK));
    let prom = Prometheus::start(&server.addr);
    // A first scrape before the load, so counters are seen increasing from their zero series.
    let deadline = Instant::now() + Duration::from_secs(20);
    while prom
        .query("auditflow_stage_call_failures_total")
        .await
        .map_or(true, |r| r.is_empty())
    {
        assert!(Instant::now() < deadline, "prometheus never scraped auditflow");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let accepted = post_dev_load(&server).await;
    assert_eq!(
        accepted,
        5000 - 250 - 50,
        "drop_me events are dropped and fail_me events quarantined"
    );
    post_auth_failures(&server).await;
    for marker in ["trap_me", "hang_me"] {
        let resp = post(&base(&server), marker_event(marker).to_string(), Some(TOKEN), None).await;
        assert_eq!(resp.status().as_u16(), 200, "{marker}");
    }
    // A store outage: ingest and readiness answer 503 until the table is back.
    set_store_online(&server, false).await;
    let resp = post(
        &base(&server),
        marker_event("tool_invoke").to_string(),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(get_json(&server.url("/health/ready")).await.0, 503);
    set_store_online(&server, true).await;
    let resp = post(
        &base(&server),
        marker_event("tool_invoke").to_string(),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);

    // Wait until Prometheus has scraped the end state, then a few more samples for rate().
    let expected = 5000.0 + 4.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = prom.scalar("sum(auditflow_ingest_events_total)").await;
        let outage = prom.scalar("sum(auditflow_store_commit_errors_total)").await;
        if seen >= expected && outage >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus saw {seen} events, {outage} commit errors"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Every stage has latency samples.
    let per_stage = prom
        .query("sum by (stage) (auditflow_stage_call_duration_seconds_count)")
        .await
        .unwrap();
    let stages: BTreeMap<String, f64> = per_stage
        .iter()
        .map(|s| {
            (
                s["metric"]["stage"].as_str().unwrap().to_owned(),
                s["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    for stage in STAGES {
        assert!(
            stages.get(stage).copied().unwrap_or(0.0) > 0.0,
            "no latency samples for stage {stage}: {stages:?}"
        );
    }

    // Every dashboard query returns data.
    let mut failures = Vec::new();
    let queries = dashboard_queries();
    assert!(queries.len() >= 30, "only {} dashboard queries", queries.len());
    for q in &queries {
        match prom.query(&q.expr).await {
            Ok(result) if !result.is_empty() => {}
            Ok(_) => failures.push(format!("{} / {}: no data: {}", q.dashboard, q.title, q.expr)),
            Err(e) => failures.push(format!("{} / {}: {e}: {}", q.dashboard, q.title, q.expr)),
        }
    }
    assert!(
        failures.is_empty(),
        "dashboard queries failed:\n{}",
        failures.join("\n")
    );

    // Every alert rule is loaded and evaluated without error, carries its annotations, and
    // its expression parses and evaluates through the query API.
    let alerts = alert_names();
    let runbooks = anchors(&read(&repo("docs/OPERATIONS.md")));
    let deadline = Instant::now() + Duration::from_secs(20);
    let rules = loop {
        let (_, body) = get_json(&format!("{}/api/v1/rules", prom.url)).await;
        let rules: Vec<Value> = body["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        let evaluated = rules
            .iter()
            .all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")));
        if evaluated || Instant::now() > deadline {
            break rules;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let loaded: BTreeSet<String> = rules.iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        loaded, alerts,
        "Prometheus loaded other alerts than the rule files name"
    );
    for rule in &rules {
        let name = rule["name"].as_str().unwrap();
        assert_eq!(rule["health"], "ok", "{name}: {}", rule["lastError"]);
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                rule["annotations"][key].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        let runbook = rule["annotations"]["runbook_url"].as_str().unwrap();
        let (page, anchor) = runbook
            .split_once('#')
            .unwrap_or_else(|| panic!("{name}: runbook_url without anchor"));
        assert!(page.ends_with("docs/OPERATIONS.md"), "{name}: {runbook}");
        assert!(
            runbooks.contains(anchor),
            "{name}: docs/OPERATIONS.md has no section #{anchor}"
        );
        let expr = rule["query"].as_str().unwrap();
        if let Err(e) = prom.query(expr).await {
            failures.push(format!("{name}: {e}: {expr}"));
        }
    }
    assert!(failures.is_empty(), "rule expressions failed:\n{}", failures.join("\n"));
    // The load quarantined events and trapped a plugin: those alerts are firing or pending.
    let active: BTreeSet<&str> = rules
        .iter()
        .filter(|r| r["alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for alert in [
        "AuditflowEventsQuarantined",
        "AuditflowPluginTraps",
        "AuditflowPluginTimeouts",
        "AuditflowStoreCommitErrors",
    ] {
        assert!(
            active.contains(alert),
            "{alert} is not active after the load; active: {active:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Health

/// `/health/ready` is 503 while the store is unusable (its event table renamed away by a second
/// connection, so the ping and every commit fail) and 200 again once it is back, without a
/// restart; `/health/detailed` says the same and describes every stage.
#[tokio::test(flavor = "multi_thread")]
async fn ready_is_503_while_the_store_is_unreachable_and_200_after() {
    let server = TestServer::start(&pipeline_config(""));
    let (status, body) = get_json(&server.url("/health/ready")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stages"], 3);

    set_store_online(&server, false).await;
    let (status, body) = get_json(&server.url("/health/ready")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["store"], "unreachable");
    let (status, detailed) = get_json(&server.url("/health/detailed")).await;
    assert_eq!(status, 200);
    assert_eq!(detailed["status"], "unavailable", "{detailed}");
    assert_eq!(detailed["store"]["reachable"], false, "{detailed}");
    // Liveness is not readiness: the process still serves.
    assert_eq!(get_json(&server.url("/health")).await.0, 200);

    set_store_online(&server, true).await;
    let (status, body) = get_json(&server.url("/health/ready")).await;
    assert_eq!(status, 200, "{body}");
    let resp = post(
        &base(&server),
        format!("{}\n{}", marker_event("tool_invoke"), marker_event("drop_me")),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);

    let (_, detailed) = get_json(&server.url("/health/detailed")).await;
    assert_eq!(detailed["status"], "ready", "{detailed}");
    assert_eq!(detailed["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(detailed["store"]["kind"], "sqlite");
    assert_eq!(detailed["store"]["reachable"], true);
    assert_eq!(detailed["store"]["queue_capacity"], 50_000);
    let stages = detailed["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, STAGES);
    assert_eq!(stages[0]["role"], "redaction");
    assert_eq!(stages[2]["instances"], 2);
    assert_eq!(stages[2]["on_error"], "quarantine");
    assert_eq!(stages[2]["metrics"]["events"]["dropped"], 1, "{detailed}");
    assert_eq!(stages[2]["metrics"]["events"]["kept"], 1, "{detailed}");
    assert!(stages[0]["metrics"]["calls"].as_u64().unwrap() >= 1);
}

/// On SIGTERM the server keeps serving for `shutdown_drain_ms` with `/health/ready` at 503
/// (liveness still 200), then stops cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn ready_is_503_while_draining_on_shutdown() {
    let config = quickstart_config().replace("[server]\n", "[server]\nshutdown_drain_ms = 3000\n");
    let mut server = TestServer::start(&config);
    assert_eq!(get_json(&server.url("/health/ready")).await.0, 200);
    sigterm(&server.child);
    let deadline = Instant::now() + Duration::from_secs(2);
    let body = loop {
        let (status, body) = get_json(&server.url("/health/ready")).await;
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "ready never turned 503 after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["status"], "draining");
    assert_eq!(get_json(&server.url("/health")).await.0, 200);
    // Ingest still works while draining: in-flight senders are not cut off.
    let resp = post(
        &base(&server),
        marker_event("tool_invoke").to_string(),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let status = wait_exit(&mut server.child, Duration::from_secs(15));
    assert!(status.success(), "exit {status:?}; log:\n{}", server.log());
}

/// With `metrics_listen`, `/metrics` (and health) are served there and not on the ingest port.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_listen_moves_metrics_off_the_ingest_listener() {
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "{}\n[telemetry]\nmetrics_listen = \"{metrics_addr}\"\n",
        quickstart_config()
    );
    let server = TestServer::start(&config);
    assert_eq!(
        http()
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    let resp = http()
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(resp.text().await.unwrap().contains("auditflow_build_info"));
    assert_eq!(get_json(&format!("http://{metrics_addr}/health/ready")).await.0, 200);
}

// ---------------------------------------------------------------------------------------------
// Logs and traces

/// A sane client `X-Request-Id` is echoed and appears in every JSON log line its request
/// produces; an unusable one is replaced by a generated id; logs carry no event contents.
#[tokio::test(flavor = "multi_thread")]
async fn request_id_is_echoed_and_in_every_log_line_of_its_request() {
    let server = start_with_args(&pipeline_config(""), &["--log-format", "json"]);
    // A trapping event makes the pipeline log inside the request.
    let trap = marker_event("trap_me");
    let resp = post(&base(&server), trap.to_string(), Some(TOKEN), Some("gw-req-0001")).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-request-id"], "gw-req-0001");
    // A refused request is logged too.
    let resp = post(
        &base(&server),
        marker_event("tool_invoke").to_string(),
        Some("wrong"),
        Some("gw-req-0002"),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers()["x-request-id"], "gw-req-0002");
    // An id that is not a short token is not taken.
    let resp = post(
        &base(&server),
        marker_event("tool_invoke").to_string(),
        Some(TOKEN),
        Some("alice@example.com says hi"),
    )
    .await;
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");

    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = server.log();
        if log.contains("gw-req-0002") || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lines: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!lines.is_empty(), "no JSON log lines:\n{log}");
    let trap_id = trap["event_id"].as_str().unwrap();
    let of_trap: Vec<&Value> = lines.iter().filter(|l| l.to_string().contains(trap_id)).collect();
    assert!(!of_trap.is_empty(), "no log line about the trapped event:\n{log}");
    for line in &of_trap {
        assert_eq!(
            line["span"]["request_id"], "gw-req-0001",
            "log line without the request id: {line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["request_id"] == "gw-req-0002" && l["status"] == 401),
        "no log line for the refused request:\n{log}"
    );
    assert!(!log.contains("marker-actor@example.com"), "event contents in the log");
    assert!(
        !log.contains("alice@example.com says hi"),
        "an unsafe request id was logged"
    );
}

/// With `otlp_endpoint`, request spans reach an OTLP/HTTP collector as protobuf.
#[tokio::test(flavor = "multi_thread")]
async fn otlp_export_sends_request_spans_to_the_collector() {
    let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/v1/traces", collector.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<(String, String, usize)>();
    std::thread::spawn(move || {
        for stream in collector.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let (mut content_type, mut length) = (String::new(), 0usize);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-type:") {
                    content_type = v.trim().to_owned();
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send((request_line.trim().to_owned(), content_type, body.len()));
        }
    });
    let config = format!("{}\n[telemetry]\notlp_endpoint = \"{endpoint}\"\n", quickstart_config());
    let mut server = TestServer::start(&config);
    let resp = post(
        &base(&server),
        marker_event("tool_invoke").to_string(),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    // Shutdown flushes the batch of spans.
    sigterm(&server.child);
    let status = wait_exit(&mut server.child, Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{}", server.log());
    let (line, content_type, bytes) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no OTLP export reached the collector");
    assert_eq!(line, "POST /v1/traces HTTP/1.1");
    assert_eq!(content_type, "application/x-protobuf");
    assert!(bytes > 0);
}
