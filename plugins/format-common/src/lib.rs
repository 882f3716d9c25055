//! What the reference formatter plugins (`format-splunk`, `format-datadog`, `format-ocsf`)
//! share: the canonical JSON of an event (the same shape `auditflow query --format ndjson`
//! prints, without the store's `seq`), event times as RFC 3339 text and as epoch seconds, a
//! strict reader for a formatter's config table, and label sanitising.
//!
//! A plain library (no component exports): each formatter links it in. Guests have no clock
//! or time zone database, so the calendar arithmetic is done here, in UTC only.

use auditflow_sdk::serde_json::{Map, Value};
use auditflow_sdk::{Event, json};

/// The event as the canonical JSON object: `event_id`, `event_type`, `timestamp` (RFC 3339,
/// UTC), `actor` {`type`, `id`}, the optional typed fields when present, `source` and
/// `metadata`.
pub fn canonical(event: &Event) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    m.insert("event_id".into(), Value::String(event.event_id.clone()));
    m.insert("event_type".into(), Value::String(event.event_type.clone()));
    m.insert("timestamp".into(), Value::String(rfc3339(event.timestamp_us)));
    if event.actor_type.is_some() || event.actor_id.is_some() {
        let mut actor = Map::new();
        if let Some(t) = &event.actor_type {
            actor.insert("type".into(), Value::String(t.clone()));
        }
        if let Some(id) = &event.actor_id {
            actor.insert("id".into(), Value::String(id.clone()));
        }
        m.insert("actor".into(), Value::Object(actor));
    }
    let optional = [
        ("agent_id", &event.agent_id),
        ("server_name", &event.server_name),
        ("tool_name", &event.tool_name),
        ("decision", &event.decision),
        ("outcome", &event.outcome),
        ("reason", &event.reason),
        ("request_id", &event.request_id),
        ("correlation_id", &event.correlation_id),
        ("source_ip", &event.source_ip),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            m.insert(key.into(), Value::String(v.clone()));
        }
    }
    m.insert("source".into(), Value::String(event.source.clone()));
    m.insert("metadata".into(), metadata(event)?);
    Ok(m)
}

/// The event's metadata object (an empty object when the text is empty).
pub fn metadata(event: &Event) -> Result<Value, String> {
    match json::metadata(event)? {
        v @ Value::Object(_) => Ok(v),
        _ => Err("metadata is not a JSON object".into()),
    }
}

/// Microseconds since the Unix epoch as RFC 3339 in UTC, with as many fraction digits as the
/// value needs (none, 3 or 6): `2026-11-01T00:00:00Z`, `2026-11-01T00:00:00.123Z`,
/// `2026-11-01T00:00:00.123456Z`, like the host's own output.
pub fn rfc3339(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    let fraction = if micros == 0 {
        String::new()
    } else if micros % 1000 == 0 {
        format!(".{:03}", micros / 1000)
    } else {
        format!(".{micros:06}")
    };
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{mi:02}:{s:02}{fraction}Z")
}

/// Microseconds since the Unix epoch as a JSON number literal of seconds with six decimals
/// (`1780000000.123456`). Written as text rather than through `f64`, which cannot hold 16
/// significant digits exactly.
pub fn epoch_seconds(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let abs = us.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

/// Milliseconds since the Unix epoch (OCSF `timestamp_t`, Datadog's `timestamp`).
pub fn epoch_millis(us: i64) -> i64 {
    us.div_euclid(1000)
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A formatter's config table, read strictly: unknown keys and wrong types are errors naming
/// the key, so a typo never silently falls back to a default.
#[derive(Debug)]
pub struct ConfigTable {
    map: Map<String, Value>,
}

impl ConfigTable {
    /// `config` must be a table whose keys are all in `allowed`.
    pub fn new(config: &Value, allowed: &[&str]) -> Result<ConfigTable, String> {
        let map = match config {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            _ => return Err("config must be a table".into()),
        };
        if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!("unknown key `{key}` (expected one of: {})", allowed.join(", ")));
        }
        Ok(ConfigTable { map })
    }

    /// A non-empty string, or `None` when the key is absent.
    pub fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{key}` must be a non-empty string")),
        }
    }

    /// A string with a default.
    pub fn string_or(&self, key: &str, default: &str) -> Result<String, String> {
        Ok(self.string(key)?.unwrap_or_else(|| default.to_owned()))
    }

    /// A list of non-empty strings, or `None` when the key is absent.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.is_empty() => Ok(s.clone()),
                    _ => Err(format!("`{key}` must be a list of non-empty strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(format!("`{key}` must be a list of strings")),
        }
    }

    /// One of `choices`, with a default.
    pub fn choice(&self, key: &str, choices: &[&str], default: &str) -> Result<String, String> {
        let value = self.string_or(key, default)?;
        if choices.contains(&value.as_str()) {
            Ok(value)
        } else {
            Err(format!("`{key}` must be one of: {}", choices.join(", ")))
        }
    }
}

/// Check that every name in `names` is a typed field the SDK can read
/// (`auditflow_sdk::fields::text_field`).
pub fn check_field_names(key: &str, names: &[String]) -> Result<(), String> {
    for name in names {
        let known = name == "event_id"
            || name == "event_type"
            || name == "source"
            || auditflow_sdk::fields::TEXT_FIELDS.contains(&name.as_str());
        if !known {
            return Err(format!(
                "`{key}`: unknown field `{name}` (use event_id, event_type, source or one of: {})",
                auditflow_sdk::fields::TEXT_FIELDS.join(", ")
            ));
        }
    }
    Ok(())
}

/// A value made safe for a tag or an indexed field name: lowercase ASCII letters, digits and
/// `_ - . : /`; anything else becomes `_`; at most 200 characters (Datadog's tag limit).
pub fn tag_safe(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '-' | '.' | ':' | '/' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect()
}

/// Test support: an event with every field set.
#[doc(hidden)]
pub fn sample_event() -> Event {
    Event {
        event_id: "0190b1f4-5c1e-7a4b-9a6e-5d2f1c3b4a59".into(),
        event_type: "tool_invoke".into(),
        timestamp_us: 1_780_000_000_123_456,
        actor_type: Some("user".into()),
        actor_id: Some("hashed-actor".into()),
        agent_id: Some("agent-1".into()),
        server_name: Some("github-mcp".into()),
        tool_name: Some("create_issue".into()),
        decision: Some("deny".into()),
        outcome: None,
        reason: Some("policy rbac.deny matched".into()),
        request_id: Some("req-1".into()),
        correlation_id: Some("corr-1".into()),
        source_ip: Some("10.0.0.7".into()),
        source: "gateway".into(),
        metadata: r#"{"latency_ms":12,"args":{"q":"x"}}"#.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_like_the_host() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_780_000_000_123_456), "2026-05-28T20:26:40.123456Z");
        assert_eq!(rfc3339(1_780_000_000_123_000), "2026-05-28T20:26:40.123Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(epoch_seconds(1_780_000_000_123_456), "1780000000.123456");
        assert_eq!(epoch_seconds(-1_500_000), "-1.500000");
        assert_eq!(epoch_millis(1_780_000_000_123_456), 1_780_000_000_123);
    }

    #[test]
    fn canonical_has_the_stored_shape() {
        let m = canonical(&sample_event()).unwrap();
        assert_eq!(m["actor"]["type"], "user");
        assert_eq!(m["metadata"]["latency_ms"], 12);
        assert_eq!(m["timestamp"], "2026-05-28T20:26:40.123456Z");
        assert!(!m.contains_key("outcome"));
    }

    #[test]
    fn config_table_refuses_unknown_keys_and_wrong_types() {
        let v: Value = auditflow_sdk::serde_json::json!({"index": 3});
        let t = ConfigTable::new(&v, &["index"]).unwrap();
        assert!(t.string("index").unwrap_err().contains("index"));
        assert!(ConfigTable::new(&v, &["host"]).unwrap_err().contains("`index`"));
        assert_eq!(tag_safe("Tool Invoke,x"), "tool_invoke_x");
    }
}
