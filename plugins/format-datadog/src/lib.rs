//! The reference Datadog formatter: one Logs intake v2 item (`HTTPLogItem`) per event, for
//! the `datadog_logs` sink (which sends them as a JSON array).
//!
//! ```json
//! {"message":"tool_invoke decision=deny tool=create_issue server=github-mcp agent=agent-1",
//!  "ddsource":"auditflow","ddtags":"env:prod,event_type:tool_invoke,decision:deny",
//!  "hostname":"auditflow","service":"auditflow","status":"warn",
//!  "timestamp":1780000000123,"event_time":"2026-05-28T20:26:40.123456Z",
//!  "event_id":"…","audit":{…the canonical event…}}
//! ```
//!
//! - `message` is a one-line summary from the typed fields (never `reason` or `metadata`).
//! - `status` is `warn` for a denied event, `error` for an outcome of `failure`/`error`,
//!   `info` otherwise.
//! - `timestamp` (the reserved attribute, milliseconds) is the event time. Datadog refuses
//!   times more than 18 hours old, so a replay after a long outage could lose them:
//!   `event_time` always keeps the original time as an attribute, and `timestamp = "intake"`
//!   leaves the reserved attribute out so Datadog stamps the intake time instead.
//! - The canonical event goes under `audit`, not at the top level, where Datadog would treat
//!   its `source` as the reserved `ddsource`.
//!
//! ```toml
//! [sinks.formatter_config]
//! ddsource = "auditflow"                 # default "auditflow"
//! service = "auditflow"                  # default "auditflow"
//! hostname = "gw-1"                      # default "auditflow"
//! tags = ["env:prod"]                    # static tags
//! tag_fields = ["event_type", "decision"] # typed fields added as tags (default shown)
//! timestamp = "event"                    # "event" (default) or "intake"
//! ```

use auditflow_sdk::serde_json::{self, Map, Value};
use auditflow_sdk::{Config, Event, Formatter, fields};
use format_common::{ConfigTable, canonical, check_field_names, epoch_millis, rfc3339, tag_safe};

#[derive(Debug)]
pub struct DatadogLogs {
    ddsource: String,
    service: String,
    hostname: String,
    tags: Vec<String>,
    tag_fields: Vec<String>,
    event_timestamp: bool,
}

impl DatadogLogs {
    pub fn from_config(config: &Value) -> Result<DatadogLogs, String> {
        let t = ConfigTable::new(
            config,
            &["ddsource", "service", "hostname", "tags", "tag_fields", "timestamp"],
        )?;
        let tags = t.strings("tags")?.unwrap_or_default();
        if let Some(bad) = tags.iter().find(|tag| tag.contains(',')) {
            return Err(format!("`tags`: `{bad}` contains a comma (ddtags is comma-separated)"));
        }
        let tag_fields = t
            .strings("tag_fields")?
            .unwrap_or_else(|| vec!["event_type".into(), "decision".into()]);
        check_field_names("tag_fields", &tag_fields)?;
        Ok(DatadogLogs {
            ddsource: t.string_or("ddsource", "auditflow")?,
            service: t.string_or("service", "auditflow")?,
            hostname: t.string_or("hostname", "auditflow")?,
            tags,
            tag_fields,
            event_timestamp: t.choice("timestamp", &["event", "intake"], "event")? == "event",
        })
    }

    pub fn item(&self, event: &Event) -> Result<String, String> {
        let mut tags = self.tags.clone();
        for name in &self.tag_fields {
            if let Some(v) = fields::text_field(event, name) {
                tags.push(format!("{}:{}", tag_safe(name), tag_safe(v)));
            }
        }
        let mut item = Map::new();
        item.insert("message".into(), Value::String(summary(event)));
        item.insert("ddsource".into(), Value::String(self.ddsource.clone()));
        item.insert("ddtags".into(), Value::String(tags.join(",")));
        item.insert("hostname".into(), Value::String(self.hostname.clone()));
        item.insert("service".into(), Value::String(self.service.clone()));
        item.insert("status".into(), Value::String(status(event).into()));
        if self.event_timestamp {
            item.insert("timestamp".into(), Value::from(epoch_millis(event.timestamp_us)));
        }
        item.insert("event_time".into(), Value::String(rfc3339(event.timestamp_us)));
        item.insert("event_id".into(), Value::String(event.event_id.clone()));
        item.insert("audit".into(), Value::Object(canonical(event)?));
        serde_json::to_string(&Value::Object(item)).map_err(|e| e.to_string())
    }
}

/// `event_type` plus the typed facts a reader scans for, `key=value`, space-separated.
fn summary(event: &Event) -> String {
    let mut out = event.event_type.clone();
    for (key, value) in [
        ("decision", &event.decision),
        ("outcome", &event.outcome),
        ("tool", &event.tool_name),
        ("server", &event.server_name),
        ("agent", &event.agent_id),
    ] {
        if let Some(v) = value {
            out.push(' ');
            out.push_str(key);
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// Datadog's log status for the event.
fn status(event: &Event) -> &'static str {
    if event.decision.as_deref() == Some("deny") {
        return "warn";
    }
    match event.outcome.as_deref() {
        Some("failure" | "error" | "failed") => "error",
        _ => "info",
    }
}

impl Formatter for DatadogLogs {
    fn init(config: Config) -> Result<Self, String> {
        DatadogLogs::from_config(&config)
    }

    fn format(&mut self, event: &Event) -> Result<String, String> {
        self.item(event)
    }
}

auditflow_sdk::export_formatter!(DatadogLogs);

#[cfg(test)]
mod tests {
    use super::*;
    use format_common::sample_event;
    use serde_json::json;

    #[test]
    fn item_has_the_reserved_attributes_and_keeps_the_event_time() {
        let f = DatadogLogs::from_config(&json!({"tags": ["env:prod"], "hostname": "gw-1"})).unwrap();
        let v: Value = serde_json::from_str(&f.item(&sample_event()).unwrap()).unwrap();
        assert_eq!(
            v["message"],
            "tool_invoke decision=deny tool=create_issue server=github-mcp agent=agent-1"
        );
        assert_eq!(v["ddsource"], "auditflow");
        assert_eq!(v["ddtags"], "env:prod,event_type:tool_invoke,decision:deny");
        assert_eq!(v["hostname"], "gw-1");
        assert_eq!(v["service"], "auditflow");
        assert_eq!(v["status"], "warn");
        assert_eq!(v["timestamp"], 1_780_000_000_123i64);
        assert_eq!(v["event_time"], "2026-05-28T20:26:40.123456Z");
        assert_eq!(v["event_id"], "0190b1f4-5c1e-7a4b-9a6e-5d2f1c3b4a59");
        assert_eq!(v["audit"]["source"], "gateway");
        assert!(v.get("source").is_none());
    }

    #[test]
    fn intake_timestamp_leaves_the_reserved_attribute_out() {
        let f = DatadogLogs::from_config(&json!({"timestamp": "intake"})).unwrap();
        let v: Value = serde_json::from_str(&f.item(&sample_event()).unwrap()).unwrap();
        assert!(v.get("timestamp").is_none());
        assert!(v["event_time"].is_string());
        assert!(DatadogLogs::from_config(&json!({"timestamp": "now"})).is_err());
        assert!(DatadogLogs::from_config(&json!({"tags": ["a:b,c:d"]})).is_err());
    }
}
