//! The reference enrichment plugin: adds fields from host-managed lookup tables and stamps
//! the pipeline's name and version.
//!
//! ```toml
//! [stages.config]
//! stamp_pipeline = true              # metadata.pipeline = { name, version }
//! [[stages.config.fields]]
//! from = "agent_id"                  # a typed field (see auditflow_sdk::fields) or metadata.a.b
//! table = "agent_teams"              # a table granted in [stages.lookups]
//! to = "metadata.team"               # where the value goes (a metadata path)
//! default = "unassigned"             # optional: written when the key is not in the table
//! [stages.lookups.agent_teams]
//! "agent-7" = "payments"
//! ```

use auditflow_sdk::serde_json::{Map, Value};
use auditflow_sdk::{Config, Event, Outcome, Transform, fields, json, lookup};

#[derive(Debug)]
struct Rule {
    from: String,
    table: String,
    to: Vec<String>,
    default: Option<String>,
}

#[derive(Debug)]
pub struct Enrich {
    rules: Vec<Rule>,
    /// (name, version) read from the host's `pipeline` table at init.
    stamp: Option<(String, String)>,
}

fn string_key(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(format!("{at}.{key} must be a non-empty string")),
    }
}

impl Enrich {
    pub fn from_config(config: &Value) -> Result<Enrich, String> {
        let obj = config.as_object().ok_or("config must be a table")?;
        for key in obj.keys() {
            if key != "fields" && key != "stamp_pipeline" {
                return Err(format!("unknown key `{key}` (expected `fields`, `stamp_pipeline`)"));
            }
        }
        let stamp = match obj.get("stamp_pipeline") {
            None | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some((
                lookup("pipeline", "name").unwrap_or_default(),
                lookup("pipeline", "version").unwrap_or_default(),
            )),
            Some(_) => return Err("stamp_pipeline must be true or false".into()),
        };
        let mut rules = Vec::new();
        let list = match obj.get("fields") {
            None => &Vec::new(),
            Some(Value::Array(list)) => list,
            Some(_) => return Err("fields must be an array of tables".into()),
        };
        for (i, rule) in list.iter().enumerate() {
            let at = format!("fields[{i}]");
            let r = rule.as_object().ok_or(format!("{at} must be a table"))?;
            if let Some(k) = r
                .keys()
                .find(|k| !["from", "table", "to", "default"].contains(&k.as_str()))
            {
                return Err(format!("{at}: unknown key `{k}`"));
            }
            let need = |k: &str| string_key(r, k, &at)?.ok_or(format!("{at}.{k} is required"));
            let from = need("from")?;
            let to = need("to")?;
            let Some(to_path) = to.strip_prefix("metadata.") else {
                return Err(format!("{at}.to must be a metadata path like `metadata.team`"));
            };
            if !from.starts_with("metadata.") && !fields::TEXT_FIELDS.contains(&from.as_str()) && from != "event_type" {
                return Err(format!("{at}.from: unknown field `{from}`"));
            }
            rules.push(Rule {
                from,
                table: need("table")?,
                to: to_path.split('.').map(str::to_owned).collect(),
                default: string_key(r, "default", &at)?,
            });
        }
        Ok(Enrich { rules, stamp })
    }

    fn enrich(&self, event: &mut Event) -> Result<(), String> {
        let mut meta = json::metadata(event)?;
        for rule in &self.rules {
            let key = match rule.from.strip_prefix("metadata.") {
                Some(path) => path
                    .split('.')
                    .try_fold(&meta, |v, k| v.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                None => fields::text_field(event, &rule.from).map(str::to_owned),
            };
            let value = key
                .and_then(|k| lookup(&rule.table, &k))
                .or_else(|| rule.default.clone());
            if let Some(value) = value {
                set_path(&mut meta, &rule.to, Value::String(value));
            }
        }
        if let Some((name, version)) = &self.stamp {
            let stamp = auditflow_sdk::serde_json::json!({ "name": name, "version": version });
            set_path(&mut meta, &["pipeline".to_owned()], stamp);
        }
        json::set_metadata(event, &meta);
        Ok(())
    }
}

/// Set `path` inside `root`, creating objects on the way (and replacing non-objects).
fn set_path(root: &mut Value, path: &[String], value: Value) {
    let mut cur = root;
    for key in &path[..path.len() - 1] {
        if !cur.get(key).is_some_and(Value::is_object) {
            cur[key.as_str()] = Value::Object(Map::new());
        }
        cur = &mut cur[key.as_str()];
    }
    cur[path[path.len() - 1].as_str()] = value;
}

impl Transform for Enrich {
    fn init(config: Config) -> Result<Self, String> {
        Enrich::from_config(&config)
    }

    fn process(&mut self, mut event: Event) -> Outcome {
        match self.enrich(&mut event) {
            Ok(()) => Outcome::Keep(event),
            Err(e) => Outcome::Error(e),
        }
    }
}

auditflow_sdk::export_transform!(Enrich);

#[cfg(test)]
mod tests {
    use super::*;
    use auditflow_sdk::serde_json::json;

    #[test]
    fn unknown_config_keys_are_refused() {
        assert!(
            Enrich::from_config(&json!({"feilds": []}))
                .unwrap_err()
                .contains("feilds")
        );
        let bad = json!({"fields": [{"from": "agent_id", "table": "t", "to": "team"}]});
        assert!(Enrich::from_config(&bad).unwrap_err().contains("metadata path"));
    }

    #[test]
    fn set_path_creates_nested_objects() {
        let mut v = json!({"a": 1});
        set_path(&mut v, &["x".into(), "y".into()], json!("z"));
        assert_eq!(v, json!({"a": 1, "x": {"y": "z"}}));
    }
}
