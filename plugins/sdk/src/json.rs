//! Helpers for the JSON `metadata` object: parse it, write it back, and visit every string in
//! it however deeply nested, with the key it sits under.

use serde_json::{Map, Value};

use crate::Event;

/// Parse the event's metadata. Empty text is an empty object.
pub fn metadata(event: &Event) -> Result<Value, String> {
    parse_metadata(&event.metadata)
}

/// Parse metadata JSON text (what a contract 1.1 stage reads). Empty text is an empty object.
pub fn parse_metadata(text: &str) -> Result<Value, String> {
    if text.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(text).map_err(|e| format!("metadata is not valid JSON: {e}"))
}

/// Metadata as JSON text (what a contract 1.1 stage patches with).
pub fn metadata_text(value: &Value) -> String {
    // Serialising a `Value` cannot fail: its map keys are strings.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

/// Store `value` as the event's metadata.
pub fn set_metadata(event: &mut Event, value: &Value) {
    event.metadata = metadata_text(value);
}

/// What a visitor decided about one string.
pub enum Visit {
    /// Leave the value (the visitor may have changed it in place).
    Keep,
    /// Remove the value: from its object, or (in an array) replace it with `null`.
    Remove,
}

/// Call `f(key, value)` for every string in `value`, depth first. `key` is the name of the
/// nearest enclosing object key (array elements inherit their array's key). Object keys
/// themselves are not visited.
pub fn visit_strings_mut(value: &mut Value, f: &mut impl FnMut(Option<&str>, &mut String) -> Visit) {
    visit(value, None, f);
}

fn visit(value: &mut Value, key: Option<&str>, f: &mut impl FnMut(Option<&str>, &mut String) -> Visit) -> Visit {
    match value {
        Value::String(s) => f(key, s),
        Value::Array(items) => {
            for item in items.iter_mut() {
                if let Visit::Remove = visit(item, key, f) {
                    *item = Value::Null;
                }
            }
            Visit::Keep
        }
        Value::Object(map) => {
            map.retain(|k, v| !matches!(visit(v, Some(k), f), Visit::Remove));
            Visit::Keep
        }
        _ => Visit::Keep,
    }
}
