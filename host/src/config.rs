//! TOML → typed config. Every key is documented here, next to its default: these doc comments
//! are the config reference (`docs/CONFIG.md` is checked against them by a test).
//!
//! Unknown keys are errors, and every error names the key path (`stages[0].timeout_ms`), so a
//! typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listener and request limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Who may post events.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Where events are stored.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Name and version stamped on events by stages that ask for them.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The plugin stages, run in order on every event.
    #[serde(default)]
    pub stages: Vec<StageConfig>,
    /// Directory of the config file; relative paths in the config are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server listens on. Default `127.0.0.1:8080`.
    pub listen: String,
    /// Request limits.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { listen: "127.0.0.1:8080".into(), limits: Limits::default() }
    }
}

/// `[server.limits]`: what one request may contain. Exceeding a byte limit answers 413,
/// exceeding the nesting depth answers 422.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body as sent (compressed, if gzip). Default 10 MiB.
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression; inflating stops as soon as it is exceeded, so a
    /// gzip bomb costs no more than this. Default 32 MiB.
    pub max_decompressed_bytes: usize,
    /// Most events in one request. Default 10 000.
    pub max_events: usize,
    /// Largest single event, as serialised JSON. Default 256 KiB.
    pub max_event_bytes: usize,
    /// Deepest nesting of objects/arrays inside one event (the event object itself is depth
    /// 1). Default 32.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 10 * 1024 * 1024,
            max_decompressed_bytes: 32 * 1024 * 1024,
            max_events: 10_000,
            max_event_bytes: 256 * 1024,
            max_depth: 32,
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Ingest tokens. The token's `name` is recorded on each event it sends as `source`.
    /// With no tokens configured every ingest request is refused (401).
    pub tokens: Vec<TokenConfig>,
}

/// `[[auth.tokens]]`: one bearer token. The value comes from `env` or `file`, never from the
/// TOML itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Name recorded as the events' `source` (e.g. `sark-gateway`).
    pub name: String,
    /// Environment variable holding the token.
    pub env: Option<String>,
    /// File holding the token (surrounding whitespace is ignored).
    pub file: Option<PathBuf>,
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://path/to/file.db` (embedded default) or `postgres://user@host/db`.
    /// A relative SQLite path is resolved against the config file's directory.
    /// Default `sqlite://auditflow.db`.
    pub url: String,
    /// Most events waiting for the writer; beyond it ingest answers 503. Default 50 000.
    pub queue_capacity: usize,
    /// Most events written in one transaction. Default 5 000.
    pub max_batch_events: usize,
    /// How long the writer waits to gather more requests into one commit, in
    /// milliseconds. Default 2.
    pub max_wait_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: "sqlite://auditflow.db".into(),
            queue_capacity: 50_000,
            max_batch_events: 5_000,
            max_wait_ms: 2,
        }
    }
}

/// `[pipeline]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Pipeline name, offered to stages (the enrich plugin stamps it). Default `auditflow`.
    pub name: String,
    /// Pipeline version, likewise. Default `1`.
    pub version: String,
    /// Most events per plugin call; larger requests are cut into batches of this size.
    /// Default 256.
    pub batch_size: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig { name: "auditflow".into(), version: "1".into(), batch_size: 256 }
    }
}

/// What a stage does with an event it failed on (a plugin `error` outcome, or a call that
/// trapped, timed out or broke the contract; a failed call is re-run event by event first,
/// so only the events that fail on their own get the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorPolicy {
    /// Fail the whole request (422 naming the event, 500 if the plugin itself failed); nothing
    /// from it is stored.
    Reject,
    /// Drop the event (counted).
    Drop,
    /// Store a quarantine record (event id, stage, error — not the payload) instead of the
    /// event (counted).
    Quarantine,
    /// Pass the event on unchanged, as if the stage were not there. Refused on redaction
    /// stages: a failed redaction must never let the unredacted event through.
    Skip,
}

/// What a stage is for. `redaction` stages fail closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageRole {
    Redaction,
    Enrichment,
    #[default]
    Custom,
}

/// `[[stages]]`: one Wasm component in the chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Stage name: unique, used in metrics labels and logs.
    pub name: String,
    /// A built-in plugin name (`redact`, `enrich`) or a path to a `.wasm` component, relative
    /// to the config file.
    pub plugin: String,
    /// `redaction`, `enrichment` or `custom` (default).
    #[serde(default)]
    pub role: StageRole,
    /// `reject` (default) or `drop`.
    #[serde(default = "default_on_error")]
    pub on_error: ErrorPolicy,
    /// Warm instances kept for this stage. Default: the number of CPU cores.
    pub instances: Option<usize>,
    /// Wall-clock budget of one plugin call, in milliseconds. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Memory one plugin instance may grow to, in MiB; a failed grow traps. Default 256.
    #[serde(default = "default_max_memory_mb")]
    pub max_memory_mb: u64,
    /// Optional deterministic budget of Wasm instructions ("fuel") per call. Unset by default:
    /// fuel costs speed, the timeout already bounds every call.
    pub fuel: Option<u64>,
    /// Passed to the plugin's `init` as JSON.
    #[serde(default = "empty_table")]
    pub config: Value,
    /// Secret values merged into `config` before `init`, each read from `{ env = "VAR" }` or
    /// `{ file = "path" }`, so secrets never sit in the TOML.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Lookup tables the plugin may read through the host's `lookup` import: table name →
    /// inline `{ key = "value" }` map.
    #[serde(default)]
    pub lookups: BTreeMap<String, BTreeMap<String, String>>,
}

fn default_on_error() -> ErrorPolicy {
    ErrorPolicy::Reject
}

fn default_timeout_ms() -> u64 {
    5_000
}

fn default_max_memory_mb() -> u64 {
    256
}

fn empty_table() -> Value {
    Value::Object(Default::default())
}

/// Where a secret value comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// A config that could not be loaded; the message names the key path or the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {key}: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
}

impl Config {
    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config = Config::parse(&text).map_err(|(key, message)| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        })?;
        config.base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok(config)
    }

    /// Parse config text; on error returns (key path, message).
    pub fn parse(text: &str) -> Result<Config, (String, String)> {
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| ("(syntax)".to_owned(), e.to_string().trim().to_owned()))?;
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().message().to_owned();
            (key, message)
        })?;
        config.check().map_err(|(k, m)| (k, m))?;
        Ok(config)
    }

    /// Rules serde cannot express.
    fn check(&self) -> Result<(), (String, String)> {
        let mut names = std::collections::HashSet::new();
        for (i, stage) in self.stages.iter().enumerate() {
            let key = |k: &str| format!("stages[{i}].{k}");
            if stage.name.is_empty() {
                return Err((key("name"), "must not be empty".into()));
            }
            if !names.insert(stage.name.as_str()) {
                return Err((key("name"), format!("duplicate stage name `{}`", stage.name)));
            }
            if !stage.config.is_object() {
                return Err((key("config"), "must be a table".into()));
            }
            for (name, source) in &stage.secrets {
                if source.env.is_some() == source.file.is_some() {
                    return Err((key(&format!("secrets.{name}")), "set exactly one of `env` or `file`".into()));
                }
                if stage.config.get(name).is_some() {
                    return Err((key(&format!("secrets.{name}")), "also set in `config`; set it in one place".into()));
                }
            }
            if stage.role == StageRole::Redaction && stage.on_error == ErrorPolicy::Skip {
                return Err((
                    key("on_error"),
                    "`skip` is not allowed on a redaction stage: a failed redaction would pass the \
                     event on unredacted (use reject, drop or quarantine)"
                        .into(),
                ));
            }
            if stage.timeout_ms == 0 {
                return Err((key("timeout_ms"), "must be at least 1".into()));
            }
            if stage.max_memory_mb == 0 || stage.max_memory_mb > 4096 {
                return Err((key("max_memory_mb"), "must be between 1 and 4096".into()));
            }
            if stage.fuel == Some(0) {
                return Err((key("fuel"), "must be at least 1".into()));
            }
            if stage.instances == Some(0) {
                return Err((key("instances"), "must be at least 1".into()));
            }
        }
        for (i, token) in self.auth.tokens.iter().enumerate() {
            if token.env.is_some() == token.file.is_some() {
                return Err((format!("auth.tokens[{i}]"), "set exactly one of `env` or `file`".into()));
            }
        }
        // serde_json refuses nesting past 128 levels whatever we say; keep the limit meaningful.
        if !(1..=127).contains(&self.server.limits.max_depth) {
            return Err(("server.limits.max_depth".into(), "must be between 1 and 127".into()));
        }
        if self.pipeline.batch_size == 0 {
            return Err(("pipeline.batch_size".into(), "must be at least 1".into()));
        }
        Ok(())
    }

    /// Resolve a path from the config against the config file's directory.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_owned() } else { self.base_dir.join(p) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_in_a_stage_key_names_the_key_path() {
        let err = Config::parse(
            "[[stages]]\nname = \"redact\"\nplugin = \"redact\"\ntimout_ms = 5\n",
        )
        .unwrap_err();
        assert_eq!(err.0, "stages[0].timout_ms");
        assert!(err.1.contains("unknown field"), "{}", err.1);
    }

    #[test]
    fn defaults_apply_when_sections_are_missing() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.storage.url, "sqlite://auditflow.db");
        assert_eq!(c.server.limits.max_depth, 32);
    }

    #[test]
    fn skip_is_refused_on_a_redaction_stage() {
        let err = Config::parse(
            "[[stages]]\nname = \"r\"\nplugin = \"redact\"\nrole = \"redaction\"\non_error = \"skip\"\n",
        )
        .unwrap_err();
        assert_eq!(err.0, "stages[0].on_error");
        assert!(err.1.contains("not allowed on a redaction stage"), "{}", err.1);
        // The same policy on a custom stage is fine.
        Config::parse("[[stages]]\nname = \"c\"\nplugin = \"x.wasm\"\non_error = \"skip\"\n").unwrap();
    }

    #[test]
    fn secret_set_twice_is_refused() {
        let err = Config::parse(
            "[[stages]]\nname = \"r\"\nplugin = \"redact\"\n[stages.config]\nhash_key = \"x\"\n[stages.secrets]\nhash_key = { env = \"K\" }\n",
        )
        .unwrap_err();
        assert_eq!(err.0, "stages[0].secrets.hash_key");
    }
}

#[cfg(test)]
mod doc_tests {
    /// docs/CONFIG.md is written by hand from the doc comments above; this keeps the two from
    /// drifting: every deserialised field of this file must appear in the reference.
    #[test]
    fn every_config_key_is_documented_in_config_md() {
        let source = include_str!("config.rs");
        let doc = include_str!("../../docs/CONFIG.md");
        let mut missing = Vec::new();
        let mut skip_next = false;
        for line in source.lines().map(str::trim) {
            if line.starts_with("#[cfg(test)]") {
                break;
            }
            if line.starts_with("#[serde(skip)]") {
                skip_next = true;
                continue;
            }
            let Some(rest) = line.strip_prefix("pub ") else { continue };
            let Some((name, _)) = rest.split_once(':') else { continue };
            if name.contains(' ') || name.contains('(') {
                continue;
            }
            if std::mem::take(&mut skip_next) {
                continue;
            }
            if !doc.contains(&format!("`{name}`")) && !doc.contains(&format!("{name}]")) {
                missing.push(name.to_owned());
            }
        }
        assert!(missing.is_empty(), "keys missing from docs/CONFIG.md: {missing:?}");
    }
}
