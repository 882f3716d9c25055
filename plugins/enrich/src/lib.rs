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
use auditflow_sdk::{Config, EventPatch, Field, Patchable, Stage, fields, json, lookup};

#[derive(Debug)]
struct Rule {
    /// `metadata.a.b`, or a typed field's config name.
    from: String,
    /// The typed field `from` names (None for a metadata path).
    field: Option<Field>,
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
            let field = fields::field_named(&from);
            if !from.starts_with("metadata.") && field.is_none() {
                return Err(format!("{at}.from: unknown field `{from}`"));
            }
            rules.push(Rule {
                from,
                field,
                table: need("table")?,
                to: to_path.split('.').map(str::to_owned).collect(),
                default: string_key(r, "default", &at)?,
            });
        }
        Ok(Enrich { rules, stamp })
    }

    /// The fields the rules read, and metadata (where values are written).
    fn reads(&self) -> Vec<Field> {
        let mut reads = vec![Field::Metadata];
        for f in self.rules.iter().filter_map(|r| r.field) {
            if !reads.contains(&f) {
                reads.push(f);
            }
        }
        reads
    }

    fn enrich(&self, event: &mut EventPatch<'_>) -> Result<(), String> {
        let mut meta = json::parse_metadata(event.metadata().unwrap_or_default())?;
        for rule in &self.rules {
            let key = match (rule.field, rule.from.strip_prefix("metadata.")) {
                (None, Some(path)) => path
                    .split('.')
                    .try_fold(&meta, |v, k| v.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                (Some(field), _) => event.get(field).map(str::to_owned),
                (None, None) => None,
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
        event.set(Patchable::Metadata, Some(json::metadata_text(&meta)));
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

impl Stage for Enrich {
    fn init(config: Config) -> Result<Self, String> {
        Enrich::from_config(&config)
    }

    fn reads(&self) -> Vec<Field> {
        Enrich::reads(self)
    }

    fn process(&mut self, event: &mut EventPatch<'_>) {
        if let Err(e) = self.enrich(event) {
            event.fail(e);
        }
    }
}

auditflow_sdk::export_stage!(Enrich);

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
    fn rules_read_their_fields_and_write_metadata_as_a_patch() {
        let e = Enrich::from_config(&json!({"fields": [
            {"from": "server_name", "table": "no-such-table", "to": "metadata.class", "default": "unclassified"},
            {"from": "metadata.missing", "table": "no-such-table", "to": "metadata.b"}
        ]}))
        .unwrap();
        assert_eq!(e.reads(), vec![Field::Metadata, Field::ServerName]);
        // No key to look up (natively there is no host to ask): the default is written.
        let mut event = EventPatch::new([(Field::Metadata, Some(r#"{"a":"x"}"#)), (Field::ServerName, None)]);
        e.enrich(&mut event).unwrap();
        let patched: Vec<_> = event.patches().collect();
        assert_eq!(patched.len(), 1);
        assert_eq!(patched[0].0, Patchable::Metadata);
        assert_eq!(
            json::parse_metadata(patched[0].1.unwrap()).unwrap(),
            json!({"a": "x", "class": "unclassified"})
        );
        let mut broken = EventPatch::new([(Field::Metadata, Some("{not json"))]);
        assert!(e.enrich(&mut broken).is_err());
    }

    #[test]
    fn set_path_creates_nested_objects() {
        let mut v = json!({"a": 1});
        set_path(&mut v, &["x".into(), "y".into()], json!("z"));
        assert_eq!(v, json!({"a": 1, "x": {"y": "z"}}));
    }
}
