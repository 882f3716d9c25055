//! The `auditflow` command line. Only argument handling and wiring live here; everything else
//! is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use auditflow::config::{Config, Limits};
use auditflow::event::{Decision, Event};
use auditflow::ingest::body::BodyFormat;
use auditflow::ingest::parse::parse_events;
use auditflow::pipeline::Pipeline;
use auditflow::plugin::PluginEngine;
use auditflow::plugin::bindings::{WitOutcome, from_wit, to_wit};
use auditflow::server::{Server, shutdown_signal, storage_url};
use auditflow::store::{self, EventQuery};
use auditflow::telemetry::{LogFormat, init_logging};

#[derive(Parser)]
#[command(name = "auditflow", version, about = "Audit-event pipeline: ingest, Wasm plugin chain, durable store")]
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

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Ndjson,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &Path) -> Result<Config> {
    Ok(Config::load(path)?)
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve { config, listen, storage_url } => {
            let mut config = load_config(&config)?;
            if let Some(url) = storage_url {
                config.storage.url = url;
            }
            let addr = listen.unwrap_or_else(|| config.server.listen.clone());
            let server = Server::build(&config).await?;
            server.run(&addr, shutdown_signal()).await?;
            Ok(())
        }
        Command::Validate { config: path } => validate(&path).await,
        Command::Plugin { command: PluginCommand::Test { config, stage, input } } => {
            plugin_test(&config, &stage, &input).await
        }
        Command::Query { config, storage_url: url, since, until, actor, request_id, decision, limit, format } => {
            let mut config = load_config(&config)?;
            if let Some(url) = url {
                config.storage.url = url;
            }
            let store = store::open(&storage_url(&config)).await?;
            let q = EventQuery {
                since,
                until,
                actor,
                request_id,
                decision: decision.as_deref().and_then(Decision::parse),
                limit,
                after_seq: None,
            };
            let rows = store.query(&q).await?;
            match format {
                OutputFormat::Ndjson => {
                    for row in &rows {
                        println!("{}", serde_json::to_string(row)?);
                    }
                }
                OutputFormat::Table => print_table(&rows),
            }
            Ok(())
        }
    }
}

async fn validate(path: &Path) -> Result<()> {
    let config = load_config(path)?;
    for (i, token) in config.auth.tokens.iter().enumerate() {
        if let Some(var) = &token.env
            && std::env::var(var).is_err()
        {
            eprintln!("warning: auth.tokens[{i}] (`{}`): environment variable {var} is not set here", token.name);
        }
    }
    let engine = PluginEngine::for_config(&config)?;
    let pipeline = Pipeline::build(&config, &engine).await?;
    println!("{}: ok ({} stages: {})", path.display(), pipeline.stages().len(),
        pipeline.stages().iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(" → "));
    Ok(())
}

async fn plugin_test(config_path: &Path, stage_name: &str, input: &Path) -> Result<()> {
    let mut config = load_config(config_path)?;
    let Some(stage) = config.stages.iter().find(|s| s.name == stage_name).cloned() else {
        let names: Vec<_> = config.stages.iter().map(|s| s.name.as_str()).collect();
        bail!("no stage `{stage_name}` in {} (stages: {})", config_path.display(), names.join(", "));
    };
    config.stages = vec![stage];
    let text = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let limits = Limits { max_events: usize::MAX, ..Limits::default() };
    let events = parse_events(&text, BodyFormat::Ndjson, &limits, "plugin-test")
        .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    let engine = PluginEngine::for_config(&config)?;
    let pipeline = Pipeline::build(&config, &engine).await?;
    let stage = &pipeline.stages()[0];
    let wit: Vec<_> = events.iter().map(to_wit).collect();
    let outcomes = stage.process_raw(&wit).await?;
    let (mut changed, mut dropped, mut failed) = (0, 0, 0);
    for (event, outcome) in events.iter().zip(outcomes) {
        match outcome {
            WitOutcome::Drop => {
                dropped += 1;
                println!("event {}: dropped", event.event_id);
            }
            WitOutcome::Error(msg) => {
                failed += 1;
                println!("event {}: error: {msg}", event.event_id);
            }
            WitOutcome::Keep(after) => match from_wit(after, event) {
                Err(msg) => {
                    failed += 1;
                    println!("event {}: contract error: {msg}", event.event_id);
                }
                Ok(after) => {
                    let diff = diff_events(event, &after);
                    if !diff.is_empty() {
                        changed += 1;
                        println!("event {}:", event.event_id);
                        for line in diff {
                            println!("  {line}");
                        }
                    }
                }
            },
        }
    }
    println!("{} events: {changed} changed, {} unchanged, {dropped} dropped, {failed} errors",
        events.len(), events.len() - changed - dropped - failed);
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
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
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

fn print_table(rows: &[auditflow::event::StoredEvent]) {
    println!("{:>8}  {:<27}  {:<18}  {:<40}  {:<6}  {:<36}", "SEQ", "TIMESTAMP", "EVENT_TYPE", "ACTOR", "DECIS.", "EVENT_ID");
    for r in rows {
        let e = &r.event;
        let actor: String = e.actor_id().unwrap_or("-").chars().take(40).collect();
        println!(
            "{:>8}  {:<27}  {:<18}  {:<40}  {:<6}  {}",
            r.seq,
            e.timestamp.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
            e.event_type,
            actor,
            e.decision.map_or("-", |d| d.as_str()),
            e.event_id
        );
    }
    println!("({} events)", rows.len());
}
