//! `copy_ceiling`: the raw ceiling of the store benchmark. `COPY`s synthesized events straight
//! into auditflow's PostgreSQL schema (same tables, partitions and indexes, created by
//! auditflow's own migrations) in transactions of `--batch` rows, and reports events/s.
//!
//! Everything auditflow's writer would compute (parsing, `seq`, hash chain, the binary `COPY`
//! encoding, with the writer's own encoder) is done before the clock starts; the clock covers
//! only what PostgreSQL must do to durably store the rows: `BEGIN`, `COPY … FROM STDIN (FORMAT
//! binary)`, `COMMIT`, one transaction after another on one connection (auditflow has one
//! writer per database too). It does not fill `event_ids`: the ceiling is the events table
//! alone, and the dedupe table is part of auditflow's cost.
//!
//! ```text
//! copy_ceiling --database-url postgres://postgres@127.0.0.1:5432/bench --events 100000 --batch 5000
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use auditflow::config::Limits;
use auditflow::ingest::body::BodyFormat;
use auditflow::ingest::parse::parse_events;
use auditflow::store::chain::{self, ChainHead};
use auditflow::store::postgres::copy::{COPY_AUDIT_EVENTS, COPY_EVENT_IDS, CopyBuffer, event_ids_payload};
use auditflow::store::{PostgresStore, Store};
use auditflow_bench::synth::{IdKind, synth_lines};
use clap::Parser;
use sqlx::{Connection, PgConnection};

#[derive(Parser)]
#[command(about = "Raw COPY ceiling for auditflow's PostgreSQL schema")]
struct Args {
    /// An existing, empty database; the schema is created with auditflow's migrations.
    #[arg(long)]
    database_url: String,
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Rows per COPY transaction (auditflow's `storage.max_batch_events` defaults to 5000).
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    #[arg(long, default_value_os_t = auditflow_bench::dev_set())]
    input: PathBuf,
    #[arg(long)]
    json: bool,
    /// Fresh event ids: `v4` (random, like the dev set) or `v7` (time-ordered).
    #[arg(long, default_value = "v4")]
    ids: IdKind,
    /// Also COPY each transaction's `(event_id, seq)` pairs into `event_ids`, as auditflow's
    /// writer does: measures what the dedupe table costs the database (not part of the ceiling).
    #[arg(long)]
    event_ids: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    // The schema, exactly as auditflow creates it.
    let store = PostgresStore::open(&args.database_url).await?;
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

    // Rows as the writer would produce them, encoded ahead of time.
    let received_at = chrono::Utc::now();
    let mut head = ChainHead::EMPTY;
    let mut payloads = Vec::new();
    let mut id_payloads = Vec::new();
    let mut scratch = Vec::new();
    for chunk in events.chunks(args.batch) {
        let mut copy = CopyBuffer::with_capacity(chunk.len());
        for event in chunk {
            let seq = head.seq + 1;
            let metadata = chain::canonical_json(&event.metadata);
            scratch.clear();
            chain::write_canonical_parts(seq, received_at, event, &metadata, &mut scratch);
            let hash = chain::link(&head.hash, &scratch);
            copy.push(seq, received_at, event, &metadata, &head.hash, &hash);
            head = ChainHead { seq, hash };
        }
        payloads.push(copy.finish());
        let keys = chunk.iter().map(|e| (e.source.as_str(), e.event_id));
        let seqs: Vec<i64> = (head.seq - chunk.len() as i64 + 1..=head.seq).collect();
        id_payloads.push(event_ids_payload(keys, &seqs));
    }
    let n = events.len();
    drop(events);

    let mut conn = PgConnection::connect(&args.database_url).await.context("connecting")?;
    let started = Instant::now();
    for (payload, ids) in payloads.into_iter().zip(id_payloads) {
        let mut tx = conn.begin().await?;
        if args.event_ids {
            let mut copy = tx.copy_in_raw(COPY_EVENT_IDS).await?;
            copy.send(ids).await?;
            copy.finish().await?;
        }
        let mut copy = tx.copy_in_raw(COPY_AUDIT_EVENTS).await?;
        copy.send(payload).await?;
        copy.finish().await?;
        tx.commit().await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = n as f64 / elapsed;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"events": n, "seconds": elapsed, "events_per_sec": rate, "batch": args.batch, "event_ids": args.event_ids})
        );
    } else {
        println!(
            "{n} events COPYed in {elapsed:.2} s: {rate:.0} events/s ({} rows per transaction)",
            args.batch
        );
    }
    Ok(())
}
