//! `loadgen`: post synthesized audit events to a running auditflow over N concurrent HTTP
//! connections and report the throughput (events/s, counted from acknowledged events only) and
//! the ack latency (p50/p99 of the time from sending a request to its 2xx).
//!
//! Every request body is built before the clock starts (NDJSON, `--batch` events each, from the
//! dev set with fresh event ids), so the measurement is of auditflow, not of JSON encoding.
//! A `503` is retried after its `Retry-After` (capped at 1 s) and counted; its latency is not a
//! sample, the retried request's is measured from its last send.
//!
//! With `--rate N` the load is open-loop: request `i` is due at `i × batch / N` seconds after
//! the start, whatever happened to earlier requests, and its latency is counted from when it was
//! due (not from when a free connection got to send it), so a server that falls behind shows
//! it in the percentiles instead of slowing the generator down (no coordinated omission). The
//! connections bound how many requests are in flight; too few for the rate show up as latency.
//!
//! ```text
//! AUDITFLOW_TOKEN=… loadgen --url http://127.0.0.1:8080 --events 100000 --batch 500 --connections 8
//! AUDITFLOW_TOKEN=… loadgen --events 100000 --batch 100 --connections 16 --rate 10000
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use auditflow_bench::synth::{IdKind, synth_lines};
use bytes::Bytes;
use clap::Parser;

#[derive(Parser)]
#[command(about = "HTTP load generator for auditflow's POST /v1/events")]
struct Args {
    /// auditflow's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token of an `[[auth.tokens]]` entry.
    #[arg(long, env = "AUDITFLOW_TOKEN", hide_env_values = true)]
    token: String,
    /// Events to post in total.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Events per request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Concurrent connections (each sends its next request when the previous one is acked).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// NDJSON file (gzipped if it ends in `.gz`) the events are synthesized from.
    #[arg(long, default_value_os_t = auditflow_bench::dev_set())]
    input: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Fresh event ids: `v4` (random, like the dev set) or `v7` (time-ordered).
    #[arg(long, default_value = "v4")]
    ids: IdKind,
    /// Hold this many events per second (open loop; latency counted from each request's due
    /// time). Default: as fast as the connections go (closed loop).
    #[arg(long)]
    rate: Option<f64>,
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    acked_events: u64,
    duplicates: u64,
    retries_503: u64,
    errors: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.batch == 0 || args.connections == 0 {
        bail!("--batch and --connections must be at least 1");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of events per second");
    }
    // Seconds between two requests' due times under --rate.
    let interval = args.rate.map(|r| args.batch as f64 / r);
    let lines = synth_lines(&args.input, args.events, args.ids).map_err(anyhow::Error::msg)?;
    let bodies: Arc<Vec<Bytes>> = Arc::new(lines.chunks(args.batch).map(|c| Bytes::from(c.join("\n"))).collect());
    drop(lines);

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;
    let endpoint = format!("{}/v1/events", args.url.trim_end_matches('/'));
    let next = Arc::new(AtomicUsize::new(0));

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (client, endpoint, token, bodies, next) = (
            client.clone(),
            endpoint.clone(),
            args.token.clone(),
            Arc::clone(&bodies),
            Arc::clone(&next),
        );
        tasks.push(tokio::spawn(async move {
            connection(client, endpoint, token, bodies, next, started, interval).await
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        let t = t.await.context("connection task")??;
        total.latencies_us.extend(t.latencies_us);
        total.acked_events += t.acked_events;
        total.duplicates += t.duplicates;
        total.retries_503 += t.retries_503;
        total.errors += t.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();

    total.latencies_us.sort_unstable();
    let pct = |p: f64| auditflow_bench::percentile_ms(&total.latencies_us, p);
    let rate = total.acked_events as f64 / elapsed;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "events": total.acked_events, "duplicates": total.duplicates, "seconds": elapsed,
                "events_per_sec": rate, "p50_ms": pct(50.0), "p99_ms": pct(99.0),
                "requests": total.latencies_us.len(), "retries_503": total.retries_503, "errors": total.errors,
                "batch": args.batch, "connections": args.connections, "target_rate": args.rate
            })
        );
    } else {
        let target = args.rate.map_or(String::new(), |r| format!(" (target {r:.0}/s)"));
        println!(
            "{} events acked in {elapsed:.2} s: {rate:.0} events/s{target}; ack latency p50 {:.1} ms, p99 {:.1} ms \
             ({} requests of {}, {} connections; {} duplicates, {} retried 503s, {} errors)",
            total.acked_events,
            pct(50.0),
            pct(99.0),
            total.latencies_us.len(),
            args.batch,
            args.connections,
            total.duplicates,
            total.retries_503,
            total.errors
        );
    }
    if total.errors > 0 {
        bail!("{} requests failed", total.errors);
    }
    Ok(())
}

/// One connection: take the next body, (under `--rate`, wait for its due time,) post it until
/// acknowledged, repeat.
async fn connection(
    client: reqwest::Client,
    endpoint: String,
    token: String,
    bodies: Arc<Vec<Bytes>>,
    next: Arc<AtomicUsize>,
    started: Instant,
    interval: Option<f64>,
) -> Result<Tally> {
    let mut tally = Tally::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(body) = bodies.get(i) else { return Ok(tally) };
        let due = interval.map(|s| started + Duration::from_secs_f64(s * i as f64));
        if let Some(due) = due {
            tokio::time::sleep_until(due.into()).await;
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Open loop: from the due time, so waiting for a free connection counts.
            let sent = match due {
                Some(due) if attempts == 1 => due,
                _ => Instant::now(),
            };
            let resp = client
                .post(&endpoint)
                .bearer_auth(&token)
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    let ack: serde_json::Value = serde_json::from_slice(&r.bytes().await?).unwrap_or_default();
                    tally.latencies_us.push(sent.elapsed().as_micros() as u64);
                    tally.acked_events += ack["accepted"].as_u64().unwrap_or(0);
                    tally.duplicates += ack["duplicates"].as_u64().unwrap_or(0);
                    break;
                }
                Ok(r) if r.status().as_u16() == 503 => {
                    tally.retries_503 += 1;
                    let wait = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(1)
                        .min(1);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
                Ok(r) => {
                    tally.errors += 1;
                    eprintln!("request {i}: HTTP {}", r.status());
                    break;
                }
                Err(e) if attempts < 5 => {
                    eprintln!("request {i}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    tally.errors += 1;
                    eprintln!("request {i}: {e}; giving up");
                    break;
                }
            }
        }
    }
}
