//! Synthesized load for the store benchmark: the dev set's events, cycled, each with a fresh
//! `event_id`, so any number of them are new to the store (nothing is deduplicated) while the
//! shapes, sizes and PII stay those of the dev set. The load generator posts them, the raw-COPY
//! ceiling inserts them.
//!
//! Ids are random (UUIDv4, like the dev set's) by default; [`IdKind::TimeOrdered`] makes them
//! UUIDv7 (what auditflow generates for events sent without one), which the store's `event_id`
//! index takes far more cheaply (appends instead of random inserts).

use std::path::Path;

use serde_json::Value;

/// How fresh event ids are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdKind {
    /// UUIDv4.
    #[default]
    Random,
    /// UUIDv7.
    TimeOrdered,
}

impl std::str::FromStr for IdKind {
    type Err = String;
    fn from_str(s: &str) -> Result<IdKind, String> {
        match s {
            "v4" | "random" => Ok(IdKind::Random),
            "v7" | "time-ordered" => Ok(IdKind::TimeOrdered),
            other => Err(format!("unknown id kind `{other}` (v4 or v7)")),
        }
    }
}

/// `n` NDJSON lines made from the events in `dev_set` (one JSON object per line).
pub fn synth_lines(dev_set: &Path, n: usize, ids: IdKind) -> Result<Vec<String>, String> {
    let text = crate::read_ndjson(dev_set)?;
    let templates: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{} line {}: {e}", dev_set.display(), i + 1)))
        .collect::<Result<_, _>>()?;
    if templates.is_empty() {
        return Err(format!("{} holds no events", dev_set.display()));
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut event = templates[i % templates.len()].clone();
        if let Value::Object(map) = &mut event {
            let id = match ids {
                IdKind::Random => uuid::Uuid::new_v4(),
                IdKind::TimeOrdered => uuid::Uuid::now_v7(),
            };
            map.insert("event_id".into(), Value::String(id.to_string()));
        }
        out.push(event.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_cycle_the_dev_set_with_fresh_ids() {
        let dir = tempfile_dir();
        let path = dir.join("dev.ndjson");
        std::fs::write(&path, "{\"event_id\":\"x\",\"a\":1}\n{\"a\":2}\n").expect("write");
        let lines = synth_lines(&path, 5, IdKind::Random).expect("synth");
        assert_eq!(lines.len(), 5);
        let ids: std::collections::HashSet<String> = lines
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("json")["event_id"]
                    .as_str()
                    .expect("id")
                    .to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 5, "ids must be fresh");
        assert!(lines[2].contains("\"a\":1"));
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("af-synth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
