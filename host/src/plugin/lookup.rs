//! The lookup tables one stage may read through the host's `lookup` import: the inline
//! `[stages.lookups]` tables, the read-only `[stages.lookup_files]` (CSV or JSON) and the
//! built-in `pipeline` table.
//!
//! A lookup file is a capability, not a preopened directory: the host reads it when the
//! pipeline is built (at start and on every reload) and answers the plugin's `lookup` calls
//! from memory. The plugin never gets a file handle, so it can neither write the file nor read
//! anything next to it. Error messages name the file, line and column, never a value.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{Config, LookupFile, StageConfig};

use super::host::LookupTables;

/// The built-in table every stage can read: `name` and `version` of `[pipeline]`.
pub const PIPELINE_TABLE: &str = "pipeline";

/// The largest lookup file the host loads. Tables live in memory once per stage.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

enum Format {
    Csv,
    Json,
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "csv" => Some(Format::Csv),
        "json" => Some(Format::Json),
        _ => None,
    }
}

/// Config-time checks that need no file system: a known format, column names only for CSV.
pub fn check_file_options(file: &LookupFile) -> Result<(), String> {
    match format_of(&file.path) {
        None => Err(format!(
            "{}: unsupported lookup file type (use .csv or .json)",
            file.path.display()
        )),
        Some(Format::Json) if file.key.is_some() || file.value.is_some() => {
            Err("`key` and `value` name CSV columns; a .json file is one object of key → value".into())
        }
        Some(_) => Ok(()),
    }
}

/// Every table `stage` may read. The error is `(table, message)`.
pub fn stage_tables(config: &Config, stage: &StageConfig) -> Result<LookupTables, (String, String)> {
    let mut tables = stage.lookups.clone();
    for (table, file) in &stage.lookup_files {
        let path = config.resolve_path(&file.path);
        let rows = load_file(file, &path).map_err(|message| (table.clone(), message))?;
        tables.insert(table.clone(), rows);
    }
    tables.insert(
        PIPELINE_TABLE.into(),
        BTreeMap::from([
            ("name".into(), config.pipeline.name.clone()),
            ("version".into(), config.pipeline.version.clone()),
        ]),
    );
    Ok(tables)
}

/// Read one lookup file (already resolved against the config's directory).
pub fn load_file(file: &LookupFile, path: &Path) -> Result<BTreeMap<String, String>, String> {
    let shown = path.display();
    let format = format_of(path).ok_or_else(|| format!("{shown}: unsupported lookup file type (use .csv or .json)"))?;
    // Only a regular file, and the limit counted in bytes actually read: a symlink to
    // /dev/zero or a FIFO can neither flood the host nor hang it.
    let bytes = crate::config::read_file_bounded(path, MAX_FILE_BYTES)
        .map_err(|e| format!("{e} (lookup files are limited to {MAX_FILE_BYTES} bytes)"))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    match format {
        Format::Csv => parse_csv(bytes, file.key.as_deref(), file.value.as_deref()),
        Format::Json => parse_json(bytes),
    }
    .map_err(|message| format!("{shown}: {message}"))
}

fn parse_csv(bytes: &[u8], key: Option<&str>, value: Option<&str>) -> Result<BTreeMap<String, String>, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
    let headers = reader.headers().map_err(csv_error)?.clone();
    let column = |name: Option<&str>, default: usize, what: &str| -> Result<usize, String> {
        match name {
            Some(name) => headers
                .iter()
                .position(|h| h.trim() == name)
                .ok_or_else(|| format!("the header row has no `{name}` column (the {what} column)")),
            None if default < headers.len() => Ok(default),
            None => Err(format!(
                "the header row has {} column(s); a lookup file needs a key and a value column",
                headers.len()
            )),
        }
    };
    let (k, v) = (column(key, 0, "key")?, column(value, 1, "value")?);
    if k == v {
        return Err("the key and value columns are the same column".into());
    }
    let mut table = BTreeMap::new();
    let mut first_line = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        let key = record.get(k).unwrap_or_default().trim();
        if key.is_empty() {
            return Err(format!("line {line}: the key is empty"));
        }
        if let Some(first) = first_line.insert(key.to_owned(), line) {
            return Err(format!("line {line}: the key of line {first} is repeated"));
        }
        table.insert(key.to_owned(), record.get(v).unwrap_or_default().trim().to_owned());
    }
    Ok(table)
}

/// CSV errors carry positions and counts, not field contents.
fn csv_error(e: csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { pos, .. } => {
            format!("line {}: not valid UTF-8", pos.as_ref().map_or(0, |p| p.line()))
        }
        csv::ErrorKind::UnequalLengths { pos, expected_len, len } => format!(
            "line {}: {len} fields where the header has {expected_len}",
            pos.as_ref().map_or(0, |p| p.line())
        ),
        _ => format!("not a readable CSV file: {e}"),
    }
}

fn parse_json(bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    // serde_json's messages quote the offending value; report where and what kind instead.
    serde_json::from_slice::<BTreeMap<String, String>>(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "expected one JSON object whose values are all strings",
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "invalid JSON",
            serde_json::error::Category::Io => "cannot read",
        };
        format!("line {} column {}: {what}", e.line(), e.column())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, key: Option<&str>, value: Option<&str>) -> LookupFile {
        LookupFile {
            path: path.into(),
            key: key.map(Into::into),
            value: value.map(Into::into),
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn csv_uses_the_first_two_columns_or_the_named_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "teams.csv",
            "\u{feff}agent_id,team,owner\nagent-1,payments,ann\nagent-2,\"platform, core\",bob\n",
        );
        let t = load_file(&file("teams.csv", None, None), &p).unwrap();
        assert_eq!(t["agent-1"], "payments");
        assert_eq!(t["agent-2"], "platform, core");
        let t = load_file(&file("teams.csv", Some("team"), Some("owner")), &p).unwrap();
        assert_eq!(t["payments"], "ann");
        let err = load_file(&file("teams.csv", Some("agent"), None), &p).unwrap_err();
        assert!(err.contains("no `agent` column"), "{err}");
    }

    #[test]
    fn csv_errors_name_the_line_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.csv", "k,v\nsecret-key-1,x\nsecret-key-1,y\n");
        let err = load_file(&file("a.csv", None, None), &p).unwrap_err();
        assert!(err.ends_with("line 3: the key of line 2 is repeated"), "{err}");
        assert!(!err.contains("secret-key-1"), "{err}");
        let p = write(dir.path(), "b.csv", "k,v\nsecret-key-1,x,extra\n");
        let err = load_file(&file("b.csv", None, None), &p).unwrap_err();
        assert!(err.contains("line 2: 3 fields where the header has 2"), "{err}");
        let p = write(dir.path(), "c.csv", "k\nonly\n");
        assert!(
            load_file(&file("c.csv", None, None), &p)
                .unwrap_err()
                .contains("needs a key and a value")
        );
        let p = write(dir.path(), "d.csv", "k,v\n ,x\n");
        assert!(
            load_file(&file("d.csv", None, None), &p)
                .unwrap_err()
                .contains("line 2: the key is empty")
        );
    }

    #[test]
    fn json_is_one_object_of_strings() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "a.json",
            r#"{"fs-mcp": "confidential", "http-mcp": "public"}"#,
        );
        let t = load_file(&file("a.json", None, None), &p).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t["fs-mcp"], "confidential");
        let p = write(dir.path(), "b.json", "{\"k\":\n 12345}");
        let err = load_file(&file("b.json", None, None), &p).unwrap_err();
        assert!(
            err.contains("line 2 column") && err.contains("values are all strings"),
            "{err}"
        );
        assert!(!err.contains("12345"), "{err}");
        let p = write(dir.path(), "c.json", "[\"x\"]");
        assert!(load_file(&file("c.json", None, None), &p).is_err());
    }

    #[test]
    fn missing_oversized_and_unknown_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_file(&file("x.csv", None, None), &dir.path().join("x.csv")).unwrap_err();
        assert!(err.starts_with("cannot read") && err.contains("x.csv"), "{err}");
        let big = dir.path().join("big.csv");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert!(
            load_file(&file("big.csv", None, None), &big)
                .unwrap_err()
                .contains("limited to")
        );
        assert!(check_file_options(&file("t.txt", None, None)).is_err());
        assert!(check_file_options(&file("t.json", Some("k"), None)).is_err());
        assert!(check_file_options(&file("t.CSV", Some("k"), None)).is_ok());
    }
}
