//! The stage config: parsing and checking the JSON object the host passes to `init`. Every
//! error names the offending key, and unknown keys are errors: a typo in a redaction config
//! must not silently leave data unredacted.

use std::collections::BTreeMap;

use auditflow_sdk::fields::TEXT_FIELDS;
use serde_json::{Map, Value};

use crate::actions::Action;
use crate::detectors::Detector;
use crate::detectors::context::{DEFAULT_WINDOW, GATED};
use crate::secrets::{DEFAULT_GENERIC_ENTROPY, DEFAULT_GENERIC_KEYS, DEFAULT_SECRET_KEYS, Generic, SecretKeys};

/// Typed fields scanned by default: the free-text and identity fields. `decision`,
/// `actor.type`, `request_id` and `correlation_id` are enums and IDs, where a detector can
/// only produce false positives.
pub const DEFAULT_SCAN_FIELDS: &[&str] = &[
    "actor.id",
    "agent_id",
    "server_name",
    "tool_name",
    "outcome",
    "reason",
    "source_ip",
];

const KEYS: &[&str] = &[
    "detectors",
    "actions",
    "default_action",
    "secret_keys",
    "extra_secret_keys",
    "secret_key_action",
    "fields",
    "scan_fields",
    "allow_fields",
    "deny_fields",
    "hash_key",
    "context_words",
    "context_window",
    "generic_secret_keys",
    "generic_secret_entropy",
];

/// A rule for one field path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRule {
    /// Never scanned or changed.
    Allow,
    /// Replaced as a whole.
    Redact(Action),
}

/// A checked config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Enabled pattern detectors.
    pub detectors: Vec<Detector>,
    /// Action per detector, [`Detector::Secret`] included.
    pub actions: [Action; Detector::COUNT],
    /// Secret key names; empty turns key-name detection off.
    pub secret_keys: Vec<String>,
    /// Field path (`actor.id`, `metadata.a.b`) → rule, from `fields`, `deny_fields` and
    /// `allow_fields`.
    pub fields: BTreeMap<String, FieldRule>,
    /// Typed fields scanned with the detectors.
    pub scan_fields: Vec<&'static str>,
    pub hash_key: Option<String>,
    /// Context words replacing a weak detector's defaults.
    pub context_words: Vec<(Detector, Vec<String>)>,
    /// Characters on each side of a candidate searched for context words.
    pub context_window: usize,
    /// Key words of `generic_secret`.
    pub generic_keys: Vec<String>,
    /// Entropy threshold of `generic_secret`, in bits per character.
    pub generic_entropy: f64,
}

impl Settings {
    /// `generic_secret`'s settings, if it is enabled.
    pub fn generic(&self) -> Option<Generic> {
        (self.detectors.contains(&Detector::GenericSecret) && !self.generic_keys.is_empty())
            .then(|| Generic::new(&self.generic_keys, self.generic_entropy))
    }
}

/// Parse and check the stage config.
pub fn parse(config: &Value) -> Result<Settings, String> {
    let empty = Map::new();
    let obj = match config {
        Value::Object(obj) => obj,
        Value::Null => &empty,
        other => {
            return Err(format!("config must be a table (JSON object), not {}", kind(other)));
        }
    };
    for key in obj.keys() {
        if !KEYS.contains(&key.as_str()) {
            return Err(format!(
                "unknown config key {key:?}; expected one of: {}",
                KEYS.join(", ")
            ));
        }
    }

    let detectors = match obj.get("detectors") {
        None => Detector::ALL.to_vec(),
        Some(v) => {
            let mut list = Vec::new();
            for name in strings(v, "detectors")? {
                let d = detector(&name, "detectors")?;
                if !list.contains(&d) {
                    list.push(d);
                }
            }
            list
        }
    };

    let default_action = match obj.get("default_action") {
        None => Action::Mask,
        Some(v) => action(v, "default_action")?,
    };
    let mut actions = [default_action; Detector::COUNT];
    // Where each detector's action came from, to name it if it needs a missing hash_key.
    let mut action_source: Vec<String> = vec!["default_action".to_owned(); Detector::COUNT];
    if let Some(v) = obj.get("actions") {
        for (name, a) in table(v, "actions")? {
            let key = format!("actions.{name}");
            let d = detector(name, &key)?;
            if !detectors.contains(&d) {
                return Err(format!("{key}: detector {name:?} is not enabled in detectors"));
            }
            actions[d as usize] = action(a, &key)?;
            action_source[d as usize] = key;
        }
    }
    actions[Detector::Secret as usize] = match obj.get("secret_key_action") {
        None => Action::Mask,
        Some(v) => action(v, "secret_key_action")?,
    };
    action_source[Detector::Secret as usize] = "secret_key_action".to_owned();

    let mut secret_keys: Vec<String> = match obj.get("secret_keys") {
        None => DEFAULT_SECRET_KEYS.iter().map(|s| s.to_string()).collect(),
        Some(v) => secret_key_list(v, "secret_keys")?,
    };
    if let Some(v) = obj.get("extra_secret_keys") {
        secret_keys.extend(secret_key_list(v, "extra_secret_keys")?);
    }

    let mut fields = BTreeMap::new();
    let mut field_source = BTreeMap::new();
    if let Some(v) = obj.get("fields") {
        for (path, a) in table(v, "fields")? {
            let key = format!("fields.{path}");
            check_path(path, "fields", false)?;
            fields.insert(path.clone(), FieldRule::Redact(action(a, &key)?));
            field_source.insert(path.clone(), ("fields", key));
        }
    }
    let mut add = |list: &str, rule: FieldRule, whole_metadata: bool| -> Result<(), String> {
        let Some(v) = obj.get(list) else {
            return Ok(());
        };
        for path in strings(v, list)? {
            check_path(&path, list, whole_metadata)?;
            if let Some((other, _)) = field_source.get(&path).filter(|(other, _)| *other != list) {
                return Err(format!("{list}: {path:?} is also listed in {other}"));
            }
            fields.insert(path.clone(), rule);
            field_source.insert(path.clone(), (list_name(list), format!("{list} ({path})")));
        }
        Ok(())
    };
    add("deny_fields", FieldRule::Redact(default_action), false)?;
    add("allow_fields", FieldRule::Allow, true)?;

    let scan_fields = match obj.get("scan_fields") {
        None => DEFAULT_SCAN_FIELDS.to_vec(),
        Some(v) => {
            let mut list = Vec::new();
            for name in strings(v, "scan_fields")? {
                // Metadata is always scanned; naming it is harmless.
                if name == "metadata" {
                    continue;
                }
                let Some(&field) = TEXT_FIELDS.iter().find(|f| **f == name) else {
                    return Err(format!(
                        "scan_fields: unknown field {name:?}; expected some of: {}",
                        TEXT_FIELDS.join(", ")
                    ));
                };
                list.push(field);
            }
            list
        }
    };

    let hash_key = match obj.get("hash_key") {
        None => None,
        Some(Value::String(k)) if k.is_empty() => {
            return Err("hash_key: must not be empty".to_owned());
        }
        Some(Value::String(k)) => Some(k.clone()),
        Some(other) => return Err(format!("hash_key: expected a string, not {}", kind(other))),
    };
    if hash_key.is_none() {
        let detector_hash = detectors
            .iter()
            .copied()
            .chain((!secret_keys.is_empty()).then_some(Detector::Secret))
            .find(|d| actions[*d as usize] == Action::Hash)
            .map(|d| action_source[d as usize].clone());
        let field_hash = fields
            .iter()
            .find(|(_, rule)| **rule == FieldRule::Redact(Action::Hash))
            .map(|(path, _)| field_source[path].1.clone());
        if let Some(source) = detector_hash.or(field_hash) {
            return Err(format!("hash_key: required because {source} uses the hash action"));
        }
    }

    let mut context_words = Vec::new();
    if let Some(v) = obj.get("context_words") {
        for (name, list) in table(v, "context_words")? {
            let key = format!("context_words.{name}");
            let d = detector(name, &key)?;
            if !GATED.contains(&d) {
                let gated: Vec<&str> = GATED.iter().map(|d| d.name()).collect();
                return Err(format!(
                    "{key}: {name:?} takes no context words; these do: {}",
                    gated.join(", ")
                ));
            }
            let words = strings(list, &key)?;
            if words.len() > 1000 {
                return Err(format!("{key}: at most 1000 context words per detector"));
            }
            if let Some(i) = words.iter().position(|w| w.trim().is_empty() || w.len() > 64) {
                return Err(format!(
                    "{key}[{i}]: a context word must be 1 to 64 bytes and not blank"
                ));
            }
            context_words.push((d, words));
        }
    }
    let context_window = match obj.get("context_window") {
        None => DEFAULT_WINDOW,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=1000) => n as usize,
            _ => return Err("context_window: expected a whole number of characters from 1 to 1000".to_owned()),
        },
    };
    let generic_keys = match obj.get("generic_secret_keys") {
        None => DEFAULT_GENERIC_KEYS.iter().map(|s| s.to_string()).collect(),
        Some(v) => secret_key_list(v, "generic_secret_keys")?,
    };
    let generic_entropy = match obj.get("generic_secret_entropy") {
        None => DEFAULT_GENERIC_ENTROPY,
        Some(v) => match v.as_f64() {
            Some(e) if (0.0..=8.0).contains(&e) => e,
            _ => return Err("generic_secret_entropy: expected a number of bits from 0 to 8".to_owned()),
        },
    };

    Ok(Settings {
        detectors,
        actions,
        secret_keys,
        fields,
        scan_fields,
        hash_key,
        context_words,
        context_window,
        generic_keys,
        generic_entropy,
    })
}

fn list_name(list: &str) -> &'static str {
    match list {
        "deny_fields" => "deny_fields",
        _ => "allow_fields",
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>, String> {
    let Value::Array(items) = v else {
        return Err(format!("{key}: expected an array of strings, not {}", kind(v)));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!("{key}[{i}]: expected a string, not {}", kind(other))),
        })
        .collect()
}

fn table<'a>(v: &'a Value, key: &str) -> Result<&'a Map<String, Value>, String> {
    match v {
        Value::Object(map) => Ok(map),
        other => Err(format!("{key}: expected a table, not {}", kind(other))),
    }
}

fn action(v: &Value, key: &str) -> Result<Action, String> {
    match v {
        Value::String(name) => Action::from_name(name)
            .ok_or_else(|| format!("{key}: unknown action {name:?}; expected {}", Action::EXPECTED)),
        other => Err(format!(
            "{key}: expected an action ({}), not {}",
            Action::EXPECTED,
            kind(other)
        )),
    }
}

fn detector(name: &str, key: &str) -> Result<Detector, String> {
    if name == "secret" {
        return Err(format!(
            "{key}: \"secret\" (values found by key name) is configured with secret_keys and secret_key_action"
        ));
    }
    Detector::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
        format!(
            "{key}: unknown detector {name:?}; expected one of: {}",
            names.join(", ")
        )
    })
}

fn secret_key_list(v: &Value, key: &str) -> Result<Vec<String>, String> {
    let list = strings(v, key)?;
    for (i, entry) in list.iter().enumerate() {
        if !SecretKeys::valid_entry(entry) {
            return Err(format!(
                "{key}[{i}]: {entry:?} is not a usable key name (empty after dropping - and _, or over 64 bytes)"
            ));
        }
    }
    Ok(list)
}

/// A field path is a typed field name or `metadata.<key>.<key>…`. Only `allow_fields` may name
/// `metadata` as a whole (to skip it): it has no value to mask or drop.
fn check_path(path: &str, list: &str, whole_metadata: bool) -> Result<(), String> {
    if TEXT_FIELDS.contains(&path) || (whole_metadata && path == "metadata") {
        return Ok(());
    }
    if let Some(rest) = path.strip_prefix("metadata.") {
        if rest.split('.').any(str::is_empty) {
            return Err(format!("{list}: {path:?} has an empty path segment"));
        }
        return Ok(());
    }
    let whole = if whole_metadata { "metadata, " } else { "" };
    Err(format!(
        "{list}: unknown field {path:?}; expected {whole}metadata.<path> or one of: {} (event_id, event_type, timestamp and source cannot be changed)",
        TEXT_FIELDS.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(config: Value) -> String {
        parse(&config).expect_err("config should be rejected")
    }

    #[test]
    fn defaults() {
        let s = parse(&json!({})).unwrap();
        assert_eq!(s.detectors, Detector::ALL.to_vec());
        assert!(s.actions.iter().all(|a| *a == Action::Mask));
        assert_eq!(s.secret_keys.len(), DEFAULT_SECRET_KEYS.len());
        assert!(s.fields.is_empty());
        assert_eq!(s.scan_fields, DEFAULT_SCAN_FIELDS);
        assert_eq!(s.hash_key, None);
        assert!(parse(&Value::Null).is_ok());
    }

    #[test]
    fn full_config() {
        let s = parse(&json!({
            "detectors": ["email", "ssn", "credit_card"],
            "actions": {"email": "hash", "ssn": "drop"},
            "default_action": "hash",
            "secret_keys": ["pin"],
            "extra_secret_keys": ["otp"],
            "secret_key_action": "drop",
            "fields": {"actor.id": "hash", "metadata.args.body": "drop"},
            "scan_fields": ["reason", "metadata"],
            "allow_fields": ["metadata.gateway_version", "metadata"],
            "deny_fields": ["metadata.args.cmd"],
            "hash_key": "k",
        }))
        .unwrap();
        assert_eq!(s.detectors, vec![Detector::Email, Detector::Ssn, Detector::CreditCard]);
        assert_eq!(s.actions[Detector::Email as usize], Action::Hash);
        assert_eq!(s.actions[Detector::Ssn as usize], Action::Drop);
        assert_eq!(s.actions[Detector::CreditCard as usize], Action::Hash);
        assert_eq!(s.actions[Detector::Secret as usize], Action::Drop);
        assert_eq!(s.secret_keys, vec!["pin", "otp"]);
        assert_eq!(s.fields["actor.id"], FieldRule::Redact(Action::Hash));
        assert_eq!(s.fields["metadata.args.body"], FieldRule::Redact(Action::Drop));
        assert_eq!(s.fields["metadata.args.cmd"], FieldRule::Redact(Action::Hash));
        assert_eq!(s.fields["metadata.gateway_version"], FieldRule::Allow);
        assert_eq!(s.fields["metadata"], FieldRule::Allow);
        assert_eq!(s.scan_fields, vec!["reason"]);
        assert_eq!(s.hash_key.as_deref(), Some("k"));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (json!({"detector": ["email"]}), "unknown config key \"detector\""),
            (json!([]), "config must be a table"),
            (
                json!({"detectors": ["email", "passport"]}),
                "detectors: unknown detector \"passport\"",
            ),
            (json!({"detectors": "email"}), "detectors: expected an array of strings"),
            (json!({"detectors": ["email", 3]}), "detectors[1]: expected a string"),
            (json!({"detectors": ["secret"]}), "secret_keys and secret_key_action"),
            (
                json!({"actions": {"email": "blur"}}),
                "actions.email: unknown action \"blur\"",
            ),
            (
                json!({"actions": {"emial": "mask"}}),
                "actions.emial: unknown detector \"emial\"",
            ),
            (json!({"actions": ["mask"]}), "actions: expected a table"),
            (
                json!({"detectors": ["ssn"], "actions": {"email": "hash"}}),
                "actions.email: detector \"email\" is not enabled",
            ),
            (json!({"default_action": 1}), "default_action: expected an action"),
            (
                json!({"secret_key_action": "redact"}),
                "secret_key_action: unknown action \"redact\"",
            ),
            (json!({"secret_keys": ["--"]}), "secret_keys[0]"),
            (json!({"extra_secret_keys": [""]}), "extra_secret_keys[0]"),
            (
                json!({"fields": {"actor.email": "mask"}}),
                "fields: unknown field \"actor.email\"",
            ),
            (
                json!({"fields": {"event_id": "mask"}}),
                "fields: unknown field \"event_id\"",
            ),
            (
                json!({"fields": {"metadata": "drop"}}),
                "fields: unknown field \"metadata\"",
            ),
            (json!({"fields": {"metadata..a": "drop"}}), "empty path segment"),
            (
                json!({"fields": {"reason": "wipe"}}),
                "fields.reason: unknown action \"wipe\"",
            ),
            (
                json!({"deny_fields": ["metadata"]}),
                "deny_fields: unknown field \"metadata\"",
            ),
            (
                json!({"scan_fields": ["metadata.args"]}),
                "scan_fields: unknown field \"metadata.args\"",
            ),
            (
                json!({"allow_fields": ["reason"], "fields": {"reason": "mask"}}),
                "allow_fields: \"reason\" is also listed in fields",
            ),
            (
                json!({"allow_fields": ["reason"], "deny_fields": ["reason"]}),
                "allow_fields: \"reason\" is also listed in deny_fields",
            ),
            (json!({"hash_key": ""}), "hash_key: must not be empty"),
            (json!({"hash_key": 5}), "hash_key: expected a string"),
        ];
        for (config, expected) in cases {
            let message = err(config.clone());
            assert!(
                message.contains(expected),
                "{config}: got {message:?}, expected it to contain {expected:?}"
            );
        }
    }

    #[test]
    fn hash_needs_a_key() {
        let cases = [
            (json!({"fields": {"actor.id": "hash"}}), "fields.actor.id"),
            (json!({"actions": {"email": "hash"}}), "actions.email"),
            (json!({"default_action": "hash"}), "default_action"),
            (json!({"secret_key_action": "hash"}), "secret_key_action"),
            (
                json!({"default_action": "hash", "detectors": [], "secret_keys": [], "deny_fields": ["reason"]}),
                "deny_fields (reason)",
            ),
        ];
        for (config, source) in cases {
            assert_eq!(
                err(config),
                format!("hash_key: required because {source} uses the hash action")
            );
        }
        // Not needed when nothing hashes: key-name detection off and no detectors.
        assert!(parse(&json!({"secret_key_action": "hash", "secret_keys": []})).is_ok());
        assert!(parse(&json!({"fields": {"actor.id": "hash"}, "hash_key": "k"})).is_ok());
    }
}
