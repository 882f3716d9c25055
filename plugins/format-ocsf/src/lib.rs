//! The reference OCSF formatter: one OCSF **API Activity** event (class_uid 6003, category 6
//! Application Activity) per audit event. The document is a plain JSON object, so it works as
//! the body of any sink: one NDJSON line for `http`, one log item for `datadog_logs` (it
//! carries OCSF's `message`), or, with `wrap = "splunk_hec"`, the `event` of an HEC envelope.
//!
//! Mapping (see docs/reference/siem-protocols.md, "Standards mapping"):
//!
//! | auditflow | OCSF 6003 |
//! |---|---|
//! | `event_id` | `metadata.uid` |
//! | `correlation_id` (else `request_id`) | `metadata.correlation_uid` |
//! | `timestamp` | `time` (ms) and `metadata.original_time` (RFC 3339) |
//! | `event_type` | `api.operation`, `metadata.event_code`, `activity_name`; `activity_id` 1–4 when the type names create/read/update/delete, else 99 Other |
//! | `actor` (type user/admin/system/…) | `actor.user.{uid,type,type_id}`; a service/agent/app actor goes to `actor.app_uid` |
//! | `agent_id` | `actor.app_uid` (unless the actor is an app) and `unmapped.agent_id` |
//! | `decision` allow/deny | `actor.authorizations[].decision`, `status_id` 1 Success / 2 Failure |
//! | `outcome` (no decision) | `status_id` 1 for success/ok, 2 for failure/error, 99 otherwise |
//! | `reason` | `status_detail` and `actor.authorizations[].policy.desc` |
//! | `request_id` | `api.request.uid` |
//! | `server_name` | `api.service.name`, `dst_endpoint.name` |
//! | `tool_name` | `resources[] {type: "mcp_tool", name}` |
//! | `source_ip` | `src_endpoint.ip` (`src_endpoint` is required: without an IP it names the ingest source) |
//! | `metadata`, `source`, `outcome` | `unmapped` |
//!
//! ```toml
//! [sinks.formatter_config]
//! product_name = "auditflow"     # metadata.product.name (default "auditflow")
//! vendor_name = "auditflow"      # metadata.product.vendor_name (default "auditflow")
//! product_version = "0.1.0"      # metadata.product.version (optional)
//! wrap = "none"                  # "none" (default) or "splunk_hec": an HEC envelope around it
//! # with wrap = "splunk_hec": host, source (default "auditflow"), sourcetype (default
//! # "ocsf:api_activity"), index — as for format-splunk
//! ```

use auditflow_sdk::serde_json::{self, Map, Value, json};
use auditflow_sdk::{Config, Event, Formatter};
use format_common::{ConfigTable, epoch_millis, epoch_seconds, metadata, rfc3339};

/// OCSF schema version the documents follow.
pub const OCSF_VERSION: &str = "1.3.0";
const CLASS_UID: i64 = 6003;
const CATEGORY_UID: i64 = 6;

#[derive(Debug)]
struct HecWrap {
    host: Option<String>,
    source: String,
    sourcetype: String,
    index: Option<String>,
}

#[derive(Debug)]
pub struct Ocsf {
    product_name: String,
    vendor_name: String,
    product_version: Option<String>,
    wrap: Option<HecWrap>,
}

impl Ocsf {
    pub fn from_config(config: &Value) -> Result<Ocsf, String> {
        let t = ConfigTable::new(
            config,
            &[
                "product_name",
                "vendor_name",
                "product_version",
                "wrap",
                "host",
                "source",
                "sourcetype",
                "index",
            ],
        )?;
        let wrap = match t.choice("wrap", &["none", "splunk_hec"], "none")?.as_str() {
            "splunk_hec" => Some(HecWrap {
                host: t.string("host")?,
                source: t.string_or("source", "auditflow")?,
                sourcetype: t.string_or("sourcetype", "ocsf:api_activity")?,
                index: t.string("index")?,
            }),
            _ => {
                if let Some(k) = ["host", "source", "sourcetype", "index"]
                    .iter()
                    .find(|k| t.string(k).ok().flatten().is_some())
                {
                    return Err(format!("`{k}` only applies with wrap = \"splunk_hec\""));
                }
                None
            }
        };
        Ok(Ocsf {
            product_name: t.string_or("product_name", "auditflow")?,
            vendor_name: t.string_or("vendor_name", "auditflow")?,
            product_version: t.string("product_version")?,
            wrap,
        })
    }

    /// The OCSF API Activity object.
    pub fn api_activity(&self, e: &Event) -> Result<Value, String> {
        let (activity_id, activity_name) = activity(&e.event_type);
        let (status_id, status) = status(e);
        let denied = e.decision.as_deref() == Some("deny");
        let (severity_id, severity) = if denied { (3, "Medium") } else { (1, "Informational") };

        let mut product = json!({ "name": self.product_name, "vendor_name": self.vendor_name });
        if let Some(v) = &self.product_version {
            product["version"] = json!(v);
        }
        let mut meta = json!({
            "uid": e.event_id,
            "version": OCSF_VERSION,
            "product": product,
            "original_time": rfc3339(e.timestamp_us),
            "event_code": e.event_type,
            "log_name": e.source,
        });
        if let Some(c) = e.correlation_id.as_ref().or(e.request_id.as_ref()) {
            meta["correlation_uid"] = json!(c);
        }

        let mut actor = Map::new();
        let app_actor = matches!(
            e.actor_type.as_deref(),
            Some("service" | "agent" | "app" | "application")
        );
        if app_actor {
            if let Some(id) = &e.actor_id {
                actor.insert("app_uid".into(), json!(id));
            }
            if let Some(t) = &e.actor_type {
                actor.insert("app_name".into(), json!(t));
            }
        } else if e.actor_id.is_some() || e.actor_type.is_some() {
            let mut user = Map::new();
            if let Some(id) = &e.actor_id {
                user.insert("uid".into(), json!(id));
            }
            let type_id = match e.actor_type.as_deref() {
                Some("user" | "human") => 1,
                Some("admin") => 2,
                Some("system") => 3,
                Some(_) => 99,
                None => 0,
            };
            user.insert("type_id".into(), json!(type_id));
            if let Some(t) = &e.actor_type {
                user.insert("type".into(), json!(t));
            }
            actor.insert("user".into(), Value::Object(user));
        }
        if !app_actor && let Some(agent) = &e.agent_id {
            actor.insert("app_uid".into(), json!(agent));
        }
        if let Some(decision) = &e.decision {
            let mut authz = json!({ "decision": decision });
            if let Some(reason) = &e.reason {
                authz["policy"] = json!({ "desc": reason });
            }
            actor.insert("authorizations".into(), json!([authz]));
        }

        let mut api = json!({ "operation": e.event_type });
        if let Some(r) = &e.request_id {
            api["request"] = json!({ "uid": r });
        }
        if let Some(s) = &e.server_name {
            api["service"] = json!({ "name": s });
        }
        let src_endpoint = match &e.source_ip {
            Some(ip) => json!({ "ip": ip }),
            None => json!({ "name": e.source }),
        };

        let mut unmapped = json!({ "source": e.source, "metadata": metadata(e)? });
        if let Some(a) = &e.agent_id {
            unmapped["agent_id"] = json!(a);
        }
        if let Some(o) = &e.outcome {
            unmapped["outcome"] = json!(o);
        }

        let mut doc = json!({
            "class_uid": CLASS_UID,
            "class_name": "API Activity",
            "category_uid": CATEGORY_UID,
            "category_name": "Application Activity",
            "activity_id": activity_id,
            "activity_name": activity_name,
            "type_uid": CLASS_UID * 100 + activity_id,
            "type_name": format!("API Activity: {activity_name}"),
            "severity_id": severity_id,
            "severity": severity,
            "time": epoch_millis(e.timestamp_us),
            "timezone_offset": 0,
            "message": message(e),
            "metadata": meta,
            "actor": Value::Object(actor),
            "api": api,
            "src_endpoint": src_endpoint,
            "status_id": status_id,
            "status": status,
            "unmapped": unmapped,
        });
        if let Some(reason) = &e.reason {
            doc["status_detail"] = json!(reason);
        }
        if let Some(s) = &e.server_name {
            doc["dst_endpoint"] = json!({ "name": s });
        }
        if let Some(t) = &e.tool_name {
            doc["resources"] = json!([{ "type": "mcp_tool", "name": t }]);
        }
        Ok(doc)
    }

    fn document(&self, e: &Event) -> Result<String, String> {
        let doc = self.api_activity(e)?;
        let Some(w) = &self.wrap else {
            return serde_json::to_string(&doc).map_err(|x| x.to_string());
        };
        // An HEC envelope; `time` is written as an exact decimal literal (see format-splunk).
        let text = |v: &Value| serde_json::to_string(v).map_err(|x| x.to_string());
        let mut out = format!("{{\"time\":{}", epoch_seconds(e.timestamp_us));
        if let Some(h) = &w.host {
            out.push_str(&format!(",\"host\":{}", text(&json!(h))?));
        }
        out.push_str(&format!(
            ",\"source\":{},\"sourcetype\":{}",
            text(&json!(w.source))?,
            text(&json!(w.sourcetype))?
        ));
        if let Some(i) = &w.index {
            out.push_str(&format!(",\"index\":{}", text(&json!(i))?));
        }
        out.push_str(&format!(
            ",\"event\":{},\"fields\":{}}}",
            text(&doc)?,
            text(&json!({ "event_id": e.event_id }))?
        ));
        Ok(out)
    }
}

/// OCSF API Activity `activity_id` and name from the event type: create/read/update/delete
/// when the type says so, else 99 Other named after the type.
fn activity(event_type: &str) -> (i64, String) {
    let t = event_type.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if has(&["create", "insert", "add"]) {
        (1, "Create".into())
    } else if has(&["read", "get", "list", "query", "discovery", "search"]) {
        (2, "Read".into())
    } else if has(&["update", "modify", "patch", "edit"]) {
        (3, "Update".into())
    } else if has(&["delete", "remove"]) {
        (4, "Delete".into())
    } else {
        (99, event_type.to_owned())
    }
}

/// `status_id` and `status`: the decision when there is one, else the outcome.
fn status(e: &Event) -> (i64, &'static str) {
    match (e.decision.as_deref(), e.outcome.as_deref()) {
        (Some("allow"), _) => (1, "Success"),
        (Some("deny"), _) => (2, "Failure"),
        (_, Some("success" | "succeeded" | "ok")) => (1, "Success"),
        (_, Some("failure" | "failed" | "error")) => (2, "Failure"),
        (_, Some(_)) => (99, "Other"),
        _ => (0, "Unknown"),
    }
}

fn message(e: &Event) -> String {
    match (&e.decision, &e.tool_name) {
        (Some(d), Some(t)) => format!("{} {t}: {d}", e.event_type),
        (Some(d), None) => format!("{}: {d}", e.event_type),
        (None, Some(t)) => format!("{} {t}", e.event_type),
        (None, None) => e.event_type.clone(),
    }
}

impl Formatter for Ocsf {
    fn init(config: Config) -> Result<Self, String> {
        Ocsf::from_config(&config)
    }

    fn format(&mut self, event: &Event) -> Result<String, String> {
        self.document(event)
    }
}

auditflow_sdk::export_formatter!(Ocsf);

#[cfg(test)]
mod tests {
    use super::*;
    use format_common::sample_event;

    fn doc(config: Value, e: &Event) -> Value {
        serde_json::from_str(&Ocsf::from_config(&config).unwrap().document(e).unwrap()).unwrap()
    }

    #[test]
    fn api_activity_has_the_required_attributes() {
        let v = doc(json!({}), &sample_event());
        assert_eq!(v["class_uid"], 6003);
        assert_eq!(v["category_uid"], 6);
        assert_eq!(v["activity_id"], 99);
        assert_eq!(v["type_uid"], 600399);
        assert_eq!(v["severity_id"], 3);
        assert_eq!(v["time"], 1_780_000_000_123i64);
        assert_eq!(v["metadata"]["uid"], "0190b1f4-5c1e-7a4b-9a6e-5d2f1c3b4a59");
        assert_eq!(v["metadata"]["correlation_uid"], "corr-1");
        assert_eq!(v["metadata"]["product"]["name"], "auditflow");
        assert_eq!(v["metadata"]["version"], OCSF_VERSION);
        assert_eq!(v["actor"]["authorizations"][0]["decision"], "deny");
        assert_eq!(v["actor"]["user"]["uid"], "hashed-actor");
        assert_eq!(v["actor"]["user"]["type_id"], 1);
        assert_eq!(v["api"]["operation"], "tool_invoke");
        assert_eq!(v["api"]["request"]["uid"], "req-1");
        assert_eq!(v["src_endpoint"]["ip"], "10.0.0.7");
        assert_eq!(v["status_id"], 2);
        assert_eq!(v["resources"][0]["name"], "create_issue");
        assert_eq!(v["unmapped"]["metadata"]["latency_ms"], 12);
    }

    #[test]
    fn allow_is_success_and_types_map_to_activities() {
        let mut e = sample_event();
        e.decision = Some("allow".into());
        e.event_type = "record_delete".into();
        e.source_ip = None;
        e.correlation_id = None;
        let v = doc(json!({}), &e);
        assert_eq!(v["status_id"], 1);
        assert_eq!(v["activity_id"], 4);
        assert_eq!(v["type_uid"], 600304);
        assert_eq!(v["src_endpoint"]["name"], "gateway");
        assert_eq!(v["metadata"]["correlation_uid"], "req-1");
    }

    #[test]
    fn hec_wrap_puts_the_document_in_an_envelope() {
        let v = doc(json!({"wrap": "splunk_hec", "index": "ocsf"}), &sample_event());
        assert_eq!(v["sourcetype"], "ocsf:api_activity");
        assert_eq!(v["index"], "ocsf");
        assert_eq!(v["event"]["class_uid"], 6003);
        assert_eq!(v["fields"]["event_id"], "0190b1f4-5c1e-7a4b-9a6e-5d2f1c3b4a59");
        assert!(Ocsf::from_config(&json!({"index": "x"})).unwrap_err().contains("wrap"));
    }
}
