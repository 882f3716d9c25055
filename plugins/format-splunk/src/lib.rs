//! The reference Splunk formatter: one HTTP Event Collector envelope per event, for the
//! `splunk_hec` sink (which stacks the envelopes into one request body).
//!
//! ```json
//! {"time":1780000000.123456,"host":"gw-1","source":"auditflow","sourcetype":"auditflow:event",
//!  "index":"audit","event":{…the canonical event…},
//!  "fields":{"event_id":"…","event_type":"tool_invoke","decision":"deny",…}}
//! ```
//!
//! `time` is the event time in epoch seconds with microseconds (so Splunk indexes the event
//! under its own time, not the forwarding time). `fields` are Splunk *indexed* fields: flat
//! string values only, and always `event_id`, the key a search dedupes on (delivery is
//! at-least-once).
//!
//! ```toml
//! [sinks.formatter_config]
//! host = "gw-1"                    # optional; Splunk uses the token's default when unset
//! source = "auditflow"             # default "auditflow"
//! sourcetype = "auditflow:event"   # default "auditflow:event"
//! index = "audit"                  # optional; must be in the HEC token's allowed indexes
//! indexed_fields = ["event_type", "decision", "agent_id"]   # typed fields copied to `fields`
//! ```

use auditflow_sdk::serde_json::{self, Map, Value};
use auditflow_sdk::{Config, Event, Formatter, fields};
use format_common::{ConfigTable, canonical, check_field_names, epoch_seconds};

/// Typed fields indexed by default: low-cardinality facts a search filters on.
const DEFAULT_INDEXED: &[&str] = &[
    "event_type",
    "decision",
    "outcome",
    "agent_id",
    "server_name",
    "tool_name",
    "source",
];

#[derive(Debug)]
pub struct SplunkHec {
    host: Option<String>,
    source: String,
    sourcetype: String,
    index: Option<String>,
    indexed_fields: Vec<String>,
}

impl SplunkHec {
    pub fn from_config(config: &Value) -> Result<SplunkHec, String> {
        let t = ConfigTable::new(config, &["host", "source", "sourcetype", "index", "indexed_fields"])?;
        let indexed_fields = match t.strings("indexed_fields")? {
            Some(list) => list,
            None => DEFAULT_INDEXED.iter().map(|s| (*s).to_owned()).collect(),
        };
        check_field_names("indexed_fields", &indexed_fields)?;
        Ok(SplunkHec {
            host: t.string("host")?,
            source: t.string_or("source", "auditflow")?,
            sourcetype: t.string_or("sourcetype", "auditflow:event")?,
            index: t.string("index")?,
            indexed_fields,
        })
    }

    /// The envelope as JSON text. Built by hand around `time`, which must be an exact decimal
    /// literal (see [`epoch_seconds`]); every other part goes through serde_json.
    pub fn envelope(&self, event: &Event) -> Result<String, String> {
        let body = Value::Object(canonical(event)?);
        let mut indexed = Map::new();
        indexed.insert("event_id".into(), Value::String(event.event_id.clone()));
        for name in &self.indexed_fields {
            if let Some(v) = fields::text_field(event, name) {
                // Indexed field names cannot hold dots in a search without quoting.
                indexed.insert(name.replace('.', "_"), Value::String(v.to_owned()));
            }
        }
        let text = |v: &str| serde_json::to_string(v).map_err(|e| e.to_string());
        let mut out = String::with_capacity(512);
        out.push_str("{\"time\":");
        out.push_str(&epoch_seconds(event.timestamp_us));
        if let Some(host) = &self.host {
            out.push_str(",\"host\":");
            out.push_str(&text(host)?);
        }
        out.push_str(",\"source\":");
        out.push_str(&text(&self.source)?);
        out.push_str(",\"sourcetype\":");
        out.push_str(&text(&self.sourcetype)?);
        if let Some(index) = &self.index {
            out.push_str(",\"index\":");
            out.push_str(&text(index)?);
        }
        out.push_str(",\"event\":");
        out.push_str(&serde_json::to_string(&body).map_err(|e| e.to_string())?);
        out.push_str(",\"fields\":");
        out.push_str(&serde_json::to_string(&Value::Object(indexed)).map_err(|e| e.to_string())?);
        out.push('}');
        Ok(out)
    }
}

impl Formatter for SplunkHec {
    fn init(config: Config) -> Result<Self, String> {
        SplunkHec::from_config(&config)
    }

    fn format(&mut self, event: &Event) -> Result<String, String> {
        self.envelope(event)
    }
}

auditflow_sdk::export_formatter!(SplunkHec);

#[cfg(test)]
mod tests {
    use super::*;
    use format_common::sample_event;
    use serde_json::json;

    #[test]
    fn envelope_has_the_hec_shape() {
        let f = SplunkHec::from_config(&json!({"host": "gw-1", "index": "audit"})).unwrap();
        let text = f.envelope(&sample_event()).unwrap();
        assert!(text.starts_with("{\"time\":1780000000.123456,"), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["host"], "gw-1");
        assert_eq!(v["source"], "auditflow");
        assert_eq!(v["sourcetype"], "auditflow:event");
        assert_eq!(v["index"], "audit");
        assert_eq!(v["event"]["event_id"], "0190b1f4-5c1e-7a4b-9a6e-5d2f1c3b4a59");
        assert_eq!(v["fields"]["event_id"], "0190b1f4-5c1e-7a4b-9a6e-5d2f1c3b4a59");
        assert_eq!(v["fields"]["decision"], "deny");
        // Indexed fields are flat strings.
        assert!(v["fields"].as_object().unwrap().values().all(Value::is_string));
    }

    #[test]
    fn unset_host_and_index_are_left_out() {
        let f = SplunkHec::from_config(&json!({})).unwrap();
        let v: Value = serde_json::from_str(&f.envelope(&sample_event()).unwrap()).unwrap();
        assert!(v.get("host").is_none() && v.get("index").is_none());
    }

    #[test]
    fn bad_config_is_refused_with_the_key() {
        assert!(
            SplunkHec::from_config(&json!({"idx": "a"}))
                .unwrap_err()
                .contains("`idx`")
        );
        assert!(
            SplunkHec::from_config(&json!({"indexed_fields": ["nope"]}))
                .unwrap_err()
                .contains("nope")
        );
    }
}
