//! The `auditflow` command line. Only argument handling and wiring live here; everything else
//! is in the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use auditflow::config::{Config, Limits};
use auditflow::event::{Decision, Event};
use auditflow::ingest::body::BodyFormat;
use auditflow::ingest::parse::parse_events;
use auditflow::pipeline::{Pipeline, StageOutcome};
use auditflow::plugin::PluginEngine;
use auditflow::server::{Server, shutdown_signal, storage_url};
use auditflow::store::{self, Checkpointing, EventQuery};
use auditflow::telemetry::{self, LogFormat, init_logging};

/// `auditflow --version`: the release, the plugin contract it implements, and the git
/// revision it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (plugin contract ",
    env!("AUDITFLOW_CONTRACT_VERSION"),
    ", git ",
    env!("AUDITFLOW_GIT_REV"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "auditflow",
    version = VERSION,
    about = "Audit-event pipeline: ingest, Wasm plugin chain, durable store"
)]
struct Cli {
    /// Log format for auditflow's own logs.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Overrides `server.listen`.
        #[arg(long)]
        listen: Option<String>,
        /// Overrides `storage.url`.
        #[arg(long)]
        storage_url: Option<String>,
    },
    /// Ask a running server to re-read its config and swap the pipeline, credentials and
    /// certificates (needs `[admin]`).
    Reload {
        #[arg(long)]
        config: PathBuf,
        /// Server address; default: `server.listen` from the config (https:// when it has
        /// `[server.tls]`).
        #[arg(long)]
        url: Option<String>,
        /// PEM file of a CA to trust for the server's certificate, besides the public roots.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// PEM client certificate (and `--client-key`) for a server that requires one.
        #[arg(long, requires = "client_key")]
        client_cert: Option<PathBuf>,
        #[arg(long, requires = "client_cert")]
        client_key: Option<PathBuf>,
    },
    /// Create or upgrade the storage schema (also done at every start), then exit.
    Migrate {
        #[arg(long)]
        config: PathBuf,
        /// Overrides `storage.url`.
        #[arg(long)]
        storage_url: Option<String>,
    },
    /// Print a new Ed25519 key pair for signing chain checkpoints (`[storage.chain]`).
    Keygen,
    /// Walk the stored hash chain, its signed checkpoints and retention records; exit non-zero
    /// and name the first broken sequence number if anything was modified, deleted, inserted or
    /// truncated.
    Verify {
        #[arg(long)]
        config: PathBuf,
        /// Overrides `storage.url`.
        #[arg(long)]
        storage_url: Option<String>,
        /// An Ed25519 public key (hex or base64) to trust, besides the config's; repeat it for
        /// the keys of a rotation. With one given, the private signing key is never read.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
    },
    /// Retention of old events (`[storage.retention] keep_days`).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Check a config: parse it, load and initialise every plugin.
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// List quarantine records (events a stage failed on under its `quarantine` policy).
    Quarantine {
        #[arg(long)]
        config: PathBuf,
        /// Overrides `storage.url`.
        #[arg(long)]
        storage_url: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Dead letters of the SIEM sinks: events a destination refused for their content.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Read stored events back.
    Query {
        #[arg(long)]
        config: PathBuf,
        /// Overrides `storage.url`.
        #[arg(long)]
        storage_url: Option<String>,
        /// Events at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// Events before this time (RFC 3339).
        #[arg(long)]
        until: Option<DateTime<Utc>>,
        /// Actor id (as stored, i.e. after redaction: a hashed id must be given hashed).
        #[arg(long)]
        actor: Option<String>,
        /// Matches `request_id` or `correlation_id`.
        #[arg(long)]
        request_id: Option<String>,
        #[arg(long, value_parser = ["allow", "deny"])]
        decision: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Run one stage on sample events and print a before/after diff.
    Test {
        #[arg(long)]
        config: PathBuf,
        /// Stage name from the config.
        #[arg(long)]
        stage: String,
        /// NDJSON file of events.
        #[arg(long)]
        input: PathBuf,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Remove the events older than `keep_days` with a signed retention record that `verify`
    /// accepts; events a sink has not delivered and the newest event are kept.
    Apply {
        #[arg(long)]
        config: PathBuf,
        /// Overrides `storage.url`.
        #[arg(long)]
        storage_url: Option<String>,
        /// Say what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List dead letters, oldest first: sink, seq, event id, reason (never the payload).
    List {
        #[arg(long)]
        config: PathBuf,
        /// Overrides `storage.url`.
        #[arg(long)]
        storage_url: Option<String>,
        /// Only this sink's.
        #[arg(long)]
        sink: Option<String>,
        /// Also list the ones already replayed.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Re-read the dead-lettered events from the store, format them with the sink's current
    /// formatter and send them again; delivered ones are marked replayed.
    Replay {
        #[arg(long)]
        config: PathBuf,
        /// Overrides `storage.url`.
        #[arg(long)]
        storage_url: Option<String>,
        /// Only this sink's.
        #[arg(long)]
        sink: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Ndjson,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = match telemetry::init(cli.log_format, otlp_endpoint(&cli.command).as_deref()) {
        Ok(guard) => guard,
        Err(e) => {
            init_logging(cli.log_format);
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    drop(runtime);
    // Outside the runtime: flushing the last spans blocks.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `serve` exports traces when its config's `[telemetry] otlp_endpoint` says so. Read before
/// anything logs, so the subscriber is installed once, with the exporter; a config that does
/// not load is reported by `run`.
fn otlp_endpoint(command: &Command) -> Option<String> {
    match command {
        Command::Serve { config, .. } => Config::load(config).ok()?.telemetry.otlp_endpoint,
        _ => None,
    }
}

/// The config at `path`; a `--storage-url` flag, when given, overrides `[storage] url`.
fn load_config(path: &Path, storage_url: Option<String>) -> Result<Config> {
    let mut config = Config::load(path)?;
    if let Some(url) = storage_url {
        config.storage.url = url;
    }
    Ok(config)
}

/// The store `config` names (relative SQLite paths against the config's directory).
async fn open_store(config: &Config) -> Result<Arc<dyn store::Store>> {
    Ok(store::open(&storage_url(config)).await?)
}

/// The store `config` names, which must exist (the reading commands never create one).
async fn open_existing_store(config: &Config) -> Result<Arc<dyn store::Store>> {
    Ok(store::open_existing(&storage_url(config)).await?)
}

/// How the CLI prints stored times: UTC, microseconds.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve {
            config: config_path,
            listen,
            storage_url,
        } => {
            let config = load_config(&config_path, storage_url)?;
            let addr = listen.unwrap_or_else(|| config.server.listen.clone());
            // Read the signing key before building anything: a bad key fails the start.
            let checkpointing = Checkpointing::from_config(&config)?;
            let server = Server::build(&config, Some(&config_path)).await?;
            let checkpoints = start_checkpoints(&server.store, checkpointing)?;
            server.run(&addr, shutdown_signal()).await?;
            finish_checkpoints(checkpoints).await;
            Ok(())
        }
        Command::Migrate {
            config,
            storage_url: url,
        } => migrate(&config, url).await,
        Command::Keygen => keygen(),
        Command::Verify {
            config,
            storage_url: url,
            public_keys,
        } => verify_chain(&config, url, &public_keys).await,
        Command::Retention {
            command:
                RetentionCommand::Apply {
                    config,
                    storage_url,
                    dry_run,
                },
        } => retention_apply(&config, storage_url, dry_run).await,
        Command::Validate { config: path } => validate(&path).await,
        Command::Quarantine {
            config,
            storage_url: url,
            limit,
        } => {
            let config = load_config(&config, url)?;
            let store = open_existing_store(&config).await?;
            let rows = store.quarantined(limit).await?;
            println!("{:<36}  {:<20}  {:<27}  ERROR", "EVENT_ID", "STAGE", "QUARANTINED_AT");
            for r in &rows {
                println!(
                    "{:<36}  {:<20}  {:<27}  {}",
                    r.event_id,
                    r.stage,
                    r.quarantined_at.format(TIME_FORMAT),
                    r.error
                );
            }
            println!("({} records)", rows.len());
            Ok(())
        }
        Command::Reload {
            config,
            url,
            ca_file,
            client_cert,
            client_key,
        } => reload(&config, url, ca_file, client_cert.zip(client_key)).await,
        Command::Dlq { command } => dlq(command).await,
        Command::Plugin {
            command: PluginCommand::Test { config, stage, input },
        } => plugin_test(&config, &stage, &input).await,
        Command::Query {
            config,
            storage_url: url,
            since,
            until,
            actor,
            request_id,
            decision,
            limit,
            format,
        } => {
            let config = load_config(&config, url)?;
            let store = open_existing_store(&config).await?;
            let mut q = EventQuery {
                since,
                until,
                actor,
                request_id,
                decision: decision.as_deref().and_then(Decision::parse),
                limit: 0,
                after_seq: None,
            };
            // Page by seq, printing as we go: a huge --limit never holds more than a page.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if let OutputFormat::Table = format {
                print_table_header(&mut out)?;
            }
            let mut printed = 0i64;
            while printed < limit {
                q.limit = (limit - printed).min(QUERY_PAGE);
                let rows = store.query(&q).await?;
                for row in &rows {
                    match format {
                        OutputFormat::Ndjson => writeln!(out, "{}", serde_json::to_string(row)?)?,
                        OutputFormat::Table => print_table_row(&mut out, row)?,
                    }
                }
                printed += rows.len() as i64;
                match rows.last() {
                    Some(last) if (rows.len() as i64) == q.limit => q.after_seq = Some(last.seq),
                    _ => break,
                }
            }
            if let OutputFormat::Table = format {
                writeln!(out, "({printed} events)")?;
            }
            out.flush()?;
            Ok(())
        }
    }
}

async fn reload(
    path: &Path,
    url: Option<String>,
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
) -> Result<()> {
    let config = load_config(path, None)?;
    let Some(token) = auditflow::server::reload::admin_token(&config).map_err(anyhow::Error::msg)? else {
        bail!(
            "{}: no [admin] token configured; the server has no admin endpoint (send SIGHUP instead)",
            path.display()
        );
    };
    let base = url.unwrap_or_else(|| {
        // A wildcard listen address is reachable on loopback.
        let listen = config
            .server
            .listen
            .replace("0.0.0.0", "127.0.0.1")
            .replace("[::]", "[::1]");
        let scheme = if config.server.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{listen}")
    });
    let token = String::from_utf8(token).context("admin token is not UTF-8")?;
    let mut client = reqwest::Client::builder();
    if let Some(file) = &ca_file {
        let pem = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        for ca in reqwest::Certificate::from_pem_bundle(&pem).with_context(|| format!("{}", file.display()))? {
            client = client.add_root_certificate(ca);
        }
    }
    if let Some((cert, key)) = &client_cert {
        let mut pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        pem.push(b'\n');
        pem.extend(std::fs::read(key).with_context(|| format!("reading {}", key.display()))?);
        client = client.identity(reqwest::Identity::from_pem(&pem).context("--client-cert/--client-key")?);
    }
    let resp = client
        .build()?
        .post(format!("{}/admin/reload", base.trim_end_matches('/')))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "reload refused ({status}): {}",
            body["error"].as_str().unwrap_or("no detail")
        );
    }
    println!(
        "reloaded: {}",
        body["stages"]
            .as_array()
            .map(|s| s.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" → "))
            .unwrap_or_default()
    );
    Ok(())
}

async fn validate(path: &Path) -> Result<()> {
    let config = load_config(path, None)?;
    for (i, token) in config.auth.tokens.iter().enumerate() {
        if let Some(var) = &token.env
            && std::env::var(var).is_err()
        {
            eprintln!(
                "warning: auth.tokens[{i}] (`{}`): environment variable {var} is not set here",
                token.name
            );
        }
    }
    for (i, sink) in config.sinks.iter().enumerate() {
        if let Some(var) = sink.token.as_ref().and_then(|t| t.env.as_ref())
            && std::env::var(var).is_err()
        {
            eprintln!(
                "warning: sinks[{i}] (`{}`): environment variable {var} is not set here",
                sink.name
            );
        }
    }
    let engine = PluginEngine::for_config(&config)?;
    let pipeline = Pipeline::build(&config, &engine).await?;
    // Load and initialise each sink's formatter: a bad formatter_config fails here.
    for sink in &config.sinks {
        auditflow::sink::build_formatter(&config, sink, &engine).await?;
    }
    println!(
        "{}: ok ({} stages: {}; {} sinks{})",
        path.display(),
        pipeline.stages().len(),
        pipeline
            .stages()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(" → "),
        config.sinks.len(),
        if config.sinks.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                config
                    .sinks
                    .iter()
                    .map(|s| format!("{} ({})", s.name, s.kind.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    Ok(())
}

async fn plugin_test(config_path: &Path, stage_name: &str, input: &Path) -> Result<()> {
    let mut config = load_config(config_path, None)?;
    let Some(stage) = config.stages.iter().find(|s| s.name == stage_name).cloned() else {
        let names: Vec<_> = config.stages.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "no stage `{stage_name}` in {} (stages: {})",
            config_path.display(),
            names.join(", ")
        );
    };
    config.stages = vec![stage];
    let text = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let limits = Limits {
        max_events: usize::MAX,
        ..Limits::default()
    };
    let events = parse_events(&text, BodyFormat::Ndjson, &limits, "plugin-test")
        .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    let engine = PluginEngine::for_config(&config)?;
    let pipeline = Pipeline::build(&config, &engine).await?;
    let stage = &pipeline.stages()[0];
    let outcomes = stage.process_events(events.clone()).await?;
    let (mut changed, mut dropped, mut failed) = (0, 0, 0);
    for (event, outcome) in events.iter().zip(outcomes) {
        match outcome {
            StageOutcome::Drop => {
                dropped += 1;
                println!("event {}: dropped", event.event_id);
            }
            StageOutcome::Error(msg) => {
                failed += 1;
                println!("event {}: error: {msg}", event.event_id);
            }
            StageOutcome::Keep(after) => {
                let diff = diff_events(event, &after);
                if !diff.is_empty() {
                    changed += 1;
                    println!("event {}:", event.event_id);
                    for line in diff {
                        println!("  {line}");
                    }
                }
            }
        }
    }
    println!(
        "{} events: {changed} changed, {} unchanged, {dropped} dropped, {failed} errors",
        events.len(),
        events.len() - changed - dropped - failed
    );
    Ok(())
}

/// `- path: old` / `+ path: new` lines for every leaf that differs.
fn diff_events(before: &Event, after: &Event) -> Vec<String> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    flatten("", &serde_json::to_value(before).unwrap_or_default(), &mut a);
    flatten("", &serde_json::to_value(after).unwrap_or_default(), &mut b);
    let a: std::collections::BTreeMap<_, _> = a.into_iter().collect();
    let b: std::collections::BTreeMap<_, _> = b.into_iter().collect();
    let mut out = Vec::new();
    for key in a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>() {
        match (a.get(key), b.get(key)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                if let Some(x) = x {
                    out.push(format!("- {key}: {x}"));
                }
                if let Some(y) = y {
                    out.push(format!("+ {key}: {y}"));
                }
            }
        }
    }
    out
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        leaf => out.push((prefix.to_owned(), leaf.to_string())),
    }
}

/// Rows `query` reads from the store at a time.
const QUERY_PAGE: i64 = 1000;

fn print_table_header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>8}  {:<27}  {:<18}  {:<40}  {:<6}  {:<36}",
        "SEQ", "TIMESTAMP", "EVENT_TYPE", "ACTOR", "DECIS.", "EVENT_ID"
    )
}

fn print_table_row(out: &mut impl Write, r: &auditflow::event::StoredEvent) -> std::io::Result<()> {
    let e = &r.event;
    let actor: String = e.actor_id().unwrap_or("-").chars().take(40).collect();
    writeln!(
        out,
        "{:>8}  {:<27}  {:<18}  {:<40}  {:<6}  {}",
        r.seq,
        e.timestamp.format(TIME_FORMAT),
        e.event_type,
        actor,
        e.decision.map_or("-", |d| d.as_str()),
        e.event_id
    )
}

/// Checkpoints of a running server: the store and the idle timer.
type CheckpointTimer = (std::sync::Arc<dyn store::Store>, tokio::task::JoinHandle<()>);

/// Turn on signed checkpoints (when `[storage.chain] signing_key` is set) and start the timer
/// that signs an idle tail.
fn start_checkpoints(
    store: &std::sync::Arc<dyn store::Store>,
    checkpointing: Option<std::sync::Arc<Checkpointing>>,
) -> Result<Option<CheckpointTimer>> {
    let Some(c) = checkpointing else {
        tracing::warn!(
            "no [storage.chain] signing_key: chain checkpoints are off, so truncation of the newest events would go unnoticed"
        );
        return Ok(None);
    };
    store.enable_checkpoints(c.clone())?;
    tracing::info!(
        key_id = c.signer.key_id(),
        every_events = c.every_events,
        every_secs = c.every.as_secs(),
        "signing chain checkpoints"
    );
    let timer = store::checkpoint::spawn_timer(store.clone(), c.every);
    Ok(Some((store.clone(), timer)))
}

/// After the writer drained at shutdown: sign the final head, so a clean stop leaves no
/// unsigned tail.
async fn finish_checkpoints(checkpoints: Option<CheckpointTimer>) {
    let Some((store, timer)) = checkpoints else { return };
    timer.abort();
    if let Err(e) = store.checkpoint().await {
        tracing::warn!(error = %e, "could not sign the final chain checkpoint");
    }
}

async fn migrate(config_path: &Path, url: Option<String>) -> Result<()> {
    let config = load_config(config_path, url)?;
    // Opening migrates (and, on PostgreSQL, creates the partitions around this month).
    let store = open_store(&config).await?;
    println!(
        "{} schema is up to date ({} events stored)",
        store.kind(),
        store.count().await?
    );
    Ok(())
}

fn keygen() -> Result<()> {
    let signer = store::checkpoint::CheckpointSigner::generate()?;
    eprintln!("# Ed25519 key pair for [storage.chain] (key id {}).", signer.key_id());
    eprintln!("# Keep private_key secret: put it in the env var or file that `signing_key` names.");
    eprintln!("# public_key goes into `public_key` wherever `auditflow verify` runs.");
    eprintln!("#");
    eprintln!("# To rotate: keep the old public key in `public_keys = [\"<old>\"]` (checkpoints and");
    eprintln!("# retention records keep naming the key that signed them), set `public_key` to the new");
    eprintln!("# one, point `signing_key` at the new private key, and restart. `verify` then checks old");
    eprintln!("# records with the old key and new ones with the new key; one signed by a key in neither");
    eprintln!("# list fails. An auditor runs `auditflow verify --public-key <old> --public-key <new>`.");
    println!("private_key={}", signer.private_key_hex());
    println!("public_key={}", hex::encode(signer.verifying_key().as_bytes()));
    Ok(())
}

async fn verify_chain(config_path: &Path, url: Option<String>, public_keys: &[String]) -> Result<()> {
    let config = load_config(config_path, url)?;
    let keys = store::checkpoint::trusted_keys(&config, public_keys)?;
    let store = open_existing_store(&config).await?;
    let report = store::verify::verify(&*store, &keys).await?;
    if report.is_ok() {
        println!("{report}");
        Ok(())
    } else {
        bail!("{report}")
    }
}

async fn retention_apply(config_path: &Path, url: Option<String>, dry_run: bool) -> Result<()> {
    let config = load_config(config_path, url)?;
    let Some(keep_days) = config.storage.retention.keep_days else {
        bail!(
            "{}: [storage.retention] keep_days is not set; nothing is removed without it",
            config_path.display()
        );
    };
    let signer = store::checkpoint::signing_key(&config)?;
    let store = open_existing_store(&config).await?;
    // Never remove what a sink has not delivered: the lowest cursor of the configured sinks.
    let mut keep_after_seq = i64::MAX;
    for sink in &config.sinks {
        keep_after_seq = keep_after_seq.min(store.sink_cursor(&sink.name).await?);
    }
    let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::try_from(keep_days).unwrap_or(i64::MAX / 86_400_000));
    let request = store::retention::RetentionRequest {
        cutoff,
        keep_after_seq,
        dry_run,
    };
    let outcome = store.apply_retention(request, &signer).await?;
    let verb = if dry_run { "would remove" } else { "removed" };
    let ranges: Vec<String> = outcome
        .runs
        .iter()
        .take(5)
        .map(|r| format!("{}..={}", r.first_seq, r.last_seq))
        .collect();
    println!(
        "{verb} {} events older than {} (seq {}{})",
        outcome.removed,
        cutoff.format(TIME_FORMAT),
        if ranges.is_empty() {
            "-".to_owned()
        } else {
            ranges.join(", ")
        },
        if outcome.runs.len() > 5 {
            format!(" and {} more ranges", outcome.runs.len() - 5)
        } else {
            String::new()
        }
    );
    for note in &outcome.kept {
        println!("kept: {note}");
    }
    if let Some(record) = &outcome.record {
        println!("signed retention record with key {}", record.key_id);
    }
    Ok(())
}

async fn dlq(command: DlqCommand) -> Result<()> {
    match command {
        DlqCommand::List {
            config,
            storage_url: url,
            sink,
            all,
            limit,
        } => {
            let config = load_config(&config, url)?;
            let store = open_existing_store(&config).await?;
            let rows = auditflow::sink::dlq::list(store.as_ref(), sink.as_deref(), all, limit).await?;
            println!(
                "{:>6}  {:<16}  {:>8}  {:<36}  {:<14}  {:<27}  {:<27}  DETAIL",
                "ID", "SINK", "SEQ", "EVENT_ID", "REASON", "CREATED_AT", "REPLAYED_AT"
            );
            for r in &rows {
                let l = &r.letter;
                let replayed = r
                    .replayed_at
                    .map_or_else(|| "-".to_owned(), |t| t.format(TIME_FORMAT).to_string());
                println!(
                    "{:>6}  {:<16}  {:>8}  {:<36}  {:<14}  {:<27}  {:<27}  {}",
                    r.id,
                    l.sink,
                    l.seq,
                    l.event_id,
                    l.reason,
                    r.created_at.format(TIME_FORMAT),
                    replayed,
                    l.detail
                );
            }
            println!("({} dead letters)", rows.len());
            Ok(())
        }
        DlqCommand::Replay {
            config,
            storage_url: url,
            sink,
        } => {
            let config = load_config(&config, url)?;
            let store = open_existing_store(&config).await?;
            let reports = auditflow::sink::dlq::replay(&config, store, sink.as_deref()).await?;
            let mut halted = false;
            for r in &reports {
                println!(
                    "{}: {} pending, {} delivered, {} refused again, {} no longer stored{}",
                    r.sink,
                    r.pending,
                    r.delivered,
                    r.refused,
                    r.gone,
                    r.halted
                        .as_deref()
                        .map(|h| format!(" (stopped early: {h})"))
                        .unwrap_or_default()
                );
                halted |= r.halted.is_some();
            }
            if halted {
                bail!("replay stopped early; the remaining dead letters are still pending");
            }
            Ok(())
        }
    }
}
