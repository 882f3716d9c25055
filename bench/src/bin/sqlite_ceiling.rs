//! `sqlite_ceiling`: the raw ceiling of the embedded store. Inserts synthesized events straight
//! into auditflow's SQLite schema (same table, indexes and triggers, created by auditflow's own
//! migrations) with **one prepared `INSERT` per row** in transactions of `--batch` rows, on one
//! connection with the settings auditflow's writer uses (WAL journal, `synchronous = FULL`,
//! foreign keys on, its page cache size and mmap window), through rusqlite on the same SQLite library sqlx links (libsqlite3-sys 0.37, bundled).
//!
//! Everything auditflow's writer computes (parsing, `seq`, hash chain, canonical metadata) is
//! done before the clock starts; the clock covers what SQLite must do to durably store the rows:
//! `BEGIN IMMEDIATE`, the inserts, `COMMIT` (the fsync), one transaction after another.
//!
//! ```text
//! sqlite_ceiling --path /tmp/ceiling.db --events 100000 --batch 5000
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use auditflow::config::Limits;
use auditflow::ingest::body::BodyFormat;
use auditflow::ingest::parse::parse_events;
use auditflow::store::chain::{self, ChainHead};
use auditflow::store::{SqliteStore, Store};
use auditflow_bench::synth::{IdKind, synth_lines};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Raw prepared-INSERT ceiling for auditflow's SQLite schema")]
struct Args {
    /// The database file to create (it must not exist).
    #[arg(long)]
    path: PathBuf,
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Rows per transaction.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    #[arg(long, default_value_os_t = auditflow_bench::dev_set())]
    input: PathBuf,
    #[arg(long)]
    json: bool,
    /// Fresh event ids: `v4` (random, like the dev set) or `v7` (time-ordered).
    #[arg(long, default_value = "v4")]
    ids: IdKind,
}

/// One row, every column as auditflow's writer binds it.
struct Row {
    seq: i64,
    event_id: String,
    event_type: String,
    ts_us: i64,
    text: [Option<String>; 11],
    source: String,
    metadata: String,
    prev_hash: [u8; 32],
    hash: [u8; 32],
}

const INSERT: &str = "INSERT INTO audit_events (seq, event_id, event_type, ts_us, actor_type, actor_id, \
     agent_id, server_name, tool_name, decision, outcome, reason, request_id, correlation_id, source_ip, \
     source, metadata, received_us, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if args.path.exists() {
        bail!("{} exists; the ceiling needs a fresh database", args.path.display());
    }
    // The schema, exactly as auditflow creates it.
    let url = format!("sqlite://{}", args.path.display());
    let store = SqliteStore::open(&url).await?;
    if store.count().await? != 0 {
        bail!("the database is not empty");
    }
    drop(store);

    let lines = synth_lines(&args.input, args.events, args.ids).map_err(anyhow::Error::msg)?;
    let limits = Limits {
        max_events: usize::MAX,
        ..Limits::default()
    };
    let events = parse_events(lines.join("\n").as_bytes(), BodyFormat::Ndjson, &limits, "bench")
        .map_err(|e| anyhow::anyhow!("synthesized events do not parse: {e}"))?;
    drop(lines);

    let received_at = chrono::Utc::now();
    let received_us = received_at.timestamp_micros();
    let mut head = ChainHead::EMPTY;
    let mut scratch = Vec::new();
    let rows: Vec<Row> = events
        .iter()
        .map(|event| {
            let seq = head.seq + 1;
            let metadata = chain::canonical_json(&event.metadata);
            scratch.clear();
            chain::write_canonical_parts(seq, received_at, event, &metadata, &mut scratch);
            let hash = chain::link(&head.hash, &scratch);
            let row = Row {
                seq,
                event_id: event.event_id.to_string(),
                event_type: event.event_type.clone(),
                ts_us: event.timestamp.timestamp_micros(),
                text: [
                    event.actor_type().map(str::to_owned),
                    event.actor_id().map(str::to_owned),
                    event.agent_id.clone(),
                    event.server_name.clone(),
                    event.tool_name.clone(),
                    event.decision.map(|d| d.as_str().to_owned()),
                    event.outcome.clone(),
                    event.reason.clone(),
                    event.request_id.clone(),
                    event.correlation_id.clone(),
                    event.source_ip.clone(),
                ],
                source: event.source.clone(),
                metadata,
                prev_hash: head.hash,
                hash,
            };
            head = ChainHead { seq, hash };
            row
        })
        .collect();
    drop(events);
    let n = rows.len();

    let mut conn = rusqlite::Connection::open(&args.path).context("opening the database")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The writer's page cache and mmap window, as auditflow sets them.
    conn.pragma_update(None, "cache_size", format!("-{}", auditflow::store::sqlite::CACHE_KIB))?;
    conn.pragma_update(None, "mmap_size", auditflow::store::sqlite::MMAP_BYTES.to_string())?;
    let started = Instant::now();
    for chunk in rows.chunks(args.batch) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare(INSERT)?;
            for r in chunk {
                let t = &r.text;
                insert.execute(rusqlite::params![
                    r.seq,
                    r.event_id,
                    r.event_type,
                    r.ts_us,
                    t[0],
                    t[1],
                    t[2],
                    t[3],
                    t[4],
                    t[5],
                    t[6],
                    t[7],
                    t[8],
                    t[9],
                    t[10],
                    r.source,
                    r.metadata,
                    received_us,
                    &r.prev_hash[..],
                    &r.hash[..],
                ])?;
            }
        }
        tx.commit()?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = n as f64 / elapsed;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"events": n, "seconds": elapsed, "events_per_sec": rate, "batch": args.batch})
        );
    } else {
        println!(
            "{n} events inserted in {elapsed:.2} s: {rate:.0} events/s ({} rows per transaction)",
            args.batch
        );
    }
    Ok(())
}
