//! `loop_p99`: the ack latency of healthy events while a looping plugin sits on its stage's
//! timeout path, next to the same latency without it, in one run against one server.
//!
//! The server runs the quick start pipeline (redact + enrich) behind a first stage built from
//! `tests/plugins/hostile` in `loop` mode: it passes every event through, except events of type
//! `poison`, on which it spins until the stage's `timeout_ms` cancels the call (policy `drop`).
//! A steady open-loop load of healthy requests (`--rate` requests/s of `--batch` dev-set events)
//! runs throughout; rounds alternate a *quiet* phase (healthy load only) and a *looping* phase
//! (the same load plus one poison request every `--poison-interval-ms`, so a plugin instance is
//! nearly always spinning). Reported: p50/p99/max ack latency of the healthy requests per phase,
//! over all rounds and per round, and what the poison requests saw (to show the loop ran).
//!
//! ```text
//! cargo build --release -p auditflow -p auditflow-bench --bins
//! target/release/loop_p99 --rounds 3 --seconds 10
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use auditflow_bench::percentile_ms as pct;
use auditflow_bench::synth::{IdKind, synth_lines};
use bytes::Bytes;
use clap::Parser;

const TOKEN: &str = "loop-p99-bench";

#[derive(Parser)]
#[command(about = "p99 ack latency of healthy events with and without a looping plugin")]
struct Args {
    /// The auditflow binary. Default: `auditflow` beside this binary.
    #[arg(long)]
    auditflow: Option<PathBuf>,
    /// Rounds; each is one quiet and one looping phase.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Length of each phase, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Healthy requests per second (open loop: sent on schedule, whatever the latency).
    #[arg(long, default_value_t = 40)]
    rate: u32,
    /// Events per healthy request.
    #[arg(long, default_value_t = 25)]
    batch: usize,
    /// One poison request every this many milliseconds during looping phases.
    #[arg(long, default_value_t = 300)]
    poison_interval_ms: u64,
    /// `timeout_ms` of the looping stage.
    #[arg(long, default_value_t = 250)]
    timeout_ms: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Quiet,
    Looping,
}

#[derive(Default)]
struct Samples {
    /// (round, phase, latency µs) of every acknowledged healthy request.
    healthy: Vec<(usize, bool, u64)>,
    /// Latency µs of every poison request.
    poison: Vec<u64>,
    poison_dropped: u64,
    errors: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = match &args.auditflow {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("auditflow"),
    };
    let dir = std::env::temp_dir().join(format!("auditflow-loop-p99-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = write_config(&root, &dir, args.timeout_ms)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Server(
        Command::new(&bin)
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("AUDITFLOW_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log"))?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?,
    );
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    wait_healthy(&client, &base, &mut server).await?;

    let phases = args.rounds * 2;
    let requests = (args.rate as u64 * args.seconds * (phases as u64 + 1)) as usize + 16;
    let lines =
        synth_lines(&auditflow_bench::dev_set(), requests * args.batch, IdKind::Random).map_err(anyhow::Error::msg)?;
    let bodies: Vec<Bytes> = lines.chunks(args.batch).map(|c| Bytes::from(c.join("\n"))).collect();
    drop(lines);
    let samples = Arc::new(Mutex::new(Samples::default()));
    let endpoint = format!("{base}/v1/events");

    let load = Load {
        args: &args,
        client: &client,
        endpoint: &endpoint,
        bodies: &bodies,
        samples: &samples,
    };
    // Warm-up (not sampled): instances, connections, SQLite.
    let mut next = 0;
    load.phase(&mut next, None, Phase::Quiet, 1).await;
    samples.lock().unwrap().healthy.clear();
    for round in 0..args.rounds {
        for phase in [Phase::Quiet, Phase::Looping] {
            load.phase(&mut next, Some(round), phase, args.seconds).await;
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);

    let s = samples.lock().unwrap();
    let pick = |round: Option<usize>, looping: bool| -> Vec<u64> {
        let mut v: Vec<u64> = s
            .healthy
            .iter()
            .filter(|(r, l, _)| *l == looping && round.is_none_or(|want| *r == want))
            .map(|(_, _, us)| *us)
            .collect();
        v.sort_unstable();
        v
    };
    let stats = |v: &[u64]| serde_json::json!({"requests": v.len(), "p50_ms": pct(v, 50.0), "p99_ms": pct(v, 99.0), "max_ms": pct(v, 100.0)});
    let (quiet, looping) = (pick(None, false), pick(None, true));
    let mut poison = s.poison.clone();
    poison.sort_unstable();
    let per_round: Vec<_> = (0..args.rounds)
        .map(|r| serde_json::json!({"round": r + 1, "quiet": stats(&pick(Some(r), false)), "looping": stats(&pick(Some(r), true))}))
        .collect();
    let report = serde_json::json!({
        "quiet": stats(&quiet), "looping": stats(&looping),
        "p99_ratio": pct(&looping, 99.0) / pct(&quiet, 99.0).max(f64::MIN_POSITIVE),
        "poison": {"requests": poison.len(), "dropped": s.poison_dropped, "p50_ms": pct(&poison, 50.0)},
        "errors": s.errors, "rounds": per_round,
        "rate": args.rate, "batch": args.batch, "seconds": args.seconds,
        "poison_interval_ms": args.poison_interval_ms, "timeout_ms": args.timeout_ms,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "healthy ack latency ({} requests/s of {} events):",
            args.rate, args.batch
        );
        for (name, v) in [("quiet", &quiet), ("looping", &looping)] {
            println!(
                "  {name:8} p50 {:7.1} ms  p99 {:7.1} ms  max {:7.1} ms  ({} requests)",
                pct(v, 50.0),
                pct(v, 99.0),
                pct(v, 100.0),
                v.len()
            );
        }
        for r in &per_round {
            println!(
                "  round {}: p99 quiet {:.1} ms, looping {:.1} ms",
                r["round"], r["quiet"]["p99_ms"], r["looping"]["p99_ms"]
            );
        }
        println!(
            "poison requests: {} sent, {} events dropped by the stage's policy, p50 {:.0} ms (timeout {} ms); {} errors",
            poison.len(),
            s.poison_dropped,
            pct(&poison, 50.0),
            args.timeout_ms,
            s.errors
        );
    }
    if s.errors > 0 {
        bail!("{} requests failed", s.errors);
    }
    if s.poison_dropped == 0 && args.rounds > 0 {
        bail!("no poison event was dropped: the looping stage never ran");
    }
    Ok(())
}

/// The quick start config with the looping stage in front, storing into `dir`.
fn write_config(root: &Path, dir: &Path, timeout_ms: u64) -> Result<PathBuf> {
    let quickstart = std::fs::read_to_string(root.join("examples/quickstart.toml"))?;
    let lookups = root.join("examples/lookups");
    let body = quickstart
        .replace("sqlite://quickstart.db", "sqlite://bench.db")
        .replace("\"lookups/", &format!("\"{}/", lookups.display()));
    let (head, stages) = body.split_once("[[stages]]").context("quickstart.toml has no stages")?;
    let hostile = auditflow_artifacts::path("hostile");
    let config = format!(
        "{head}[[stages]]\nname = \"looping\"\nplugin = {:?}\non_error = \"drop\"\ntimeout_ms = {timeout_ms}\n\
         instances = 2\n[stages.config]\nmode = \"loop\"\n\n[[stages]]{stages}",
        hostile.display().to_string()
    );
    let path = dir.join("loop_p99.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_healthy(client: &reqwest::Client, base: &str, server: &mut Server) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{base}/health")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if let Some(status) = server.0.try_wait()? {
            bail!("auditflow exited during start-up ({status})");
        }
        if Instant::now() > deadline {
            bail!("auditflow did not become healthy in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What every phase sends with and records into.
struct Load<'a> {
    args: &'a Args,
    client: &'a reqwest::Client,
    endpoint: &'a str,
    bodies: &'a [Bytes],
    samples: &'a Arc<Mutex<Samples>>,
}

impl Load<'_> {
    /// One phase: healthy requests on an open-loop schedule (and poison requests when looping),
    /// then wait for every request of the phase to be answered.
    async fn phase(&self, next: &mut usize, round: Option<usize>, phase: Phase, seconds: u64) {
        let Load {
            args,
            client,
            endpoint,
            bodies,
            samples,
        } = *self;
        let started = Instant::now();
        let end = started + Duration::from_secs(seconds);
        let every = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
        let mut tasks = Vec::new();
        let mut healthy_at = started;
        let mut poison_at = started + Duration::from_millis(args.poison_interval_ms / 2);
        while healthy_at < end {
            if phase == Phase::Looping && poison_at <= healthy_at {
                tasks.push(tokio::spawn(poison(
                    client.clone(),
                    endpoint.to_owned(),
                    Arc::clone(samples),
                )));
                poison_at += Duration::from_millis(args.poison_interval_ms);
                continue;
            }
            tokio::time::sleep_until(healthy_at.into()).await;
            let body = bodies[*next % bodies.len()].clone();
            *next += 1;
            let (client, endpoint, samples) = (client.clone(), endpoint.to_owned(), Arc::clone(samples));
            let looping = phase == Phase::Looping;
            let want = args.batch as u64;
            tasks.push(tokio::spawn(async move {
                let sent = Instant::now();
                let ok = post(&client, &endpoint, body, "application/x-ndjson")
                    .await
                    .is_some_and(|ack| {
                        ack["accepted"].as_u64().unwrap_or(0) + ack["duplicates"].as_u64().unwrap_or(0) == want
                    });
                let us = sent.elapsed().as_micros() as u64;
                let mut s = samples.lock().unwrap();
                match (ok, round) {
                    (true, Some(r)) => s.healthy.push((r, looping, us)),
                    (true, None) => {}
                    (false, _) => s.errors += 1,
                }
            }));
            healthy_at += every;
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn poison(client: reqwest::Client, endpoint: String, samples: Arc<Mutex<Samples>>) {
    let body = Bytes::from(
        serde_json::json!({"event_type": "poison", "timestamp": chrono::Utc::now().to_rfc3339()}).to_string(),
    );
    let sent = Instant::now();
    let ack = post(&client, &endpoint, body, "application/json").await;
    let us = sent.elapsed().as_micros() as u64;
    let mut s = samples.lock().unwrap();
    match ack {
        Some(ack) => {
            s.poison.push(us);
            s.poison_dropped += ack["dropped"].as_u64().unwrap_or(0);
        }
        None => s.errors += 1,
    }
}

/// POST and return the ack of a 2xx, or `None` (reported on stderr).
async fn post(client: &reqwest::Client, endpoint: &str, body: Bytes, content_type: &str) -> Option<serde_json::Value> {
    let resp = client
        .post(endpoint)
        .bearer_auth(TOKEN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await;
    match resp {
        Ok(r) if r.status().is_success() => r.json().await.ok(),
        Ok(r) => {
            eprintln!("HTTP {}", r.status());
            None
        }
        Err(e) => {
            eprintln!("request failed: {e}");
            None
        }
    }
}
