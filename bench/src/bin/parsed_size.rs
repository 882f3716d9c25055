//! `parsed_size`: how many bytes of memory the events parsed from a request body take, as a
//! multiple of the body's JSON bytes. Ingest charges that multiple
//! (`ingest::intake::PARSED_EVENTS_FACTOR`) against `max_in_flight_body_bytes`, so the budget
//! bounds the memory requests really hold. Counts live heap bytes with a counting allocator.
//!
//!   cargo run --release -p auditflow-bench --bin parsed_size

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use auditflow::config::Limits;
use auditflow::ingest::body::BodyFormat;
use auditflow::ingest::parse::parse_events;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() -> anyhow::Result<()> {
    let body = auditflow_bench::read_ndjson(&auditflow_bench::dev_set()).map_err(anyhow::Error::msg)?;
    let limits = Limits {
        max_events: usize::MAX,
        ..Limits::default()
    };
    let before = LIVE.load(Ordering::Relaxed);
    let events = parse_events(body.as_bytes(), BodyFormat::Ndjson, &limits, "bench")
        .map_err(|e| anyhow::anyhow!("dev set: {e}"))?;
    let parsed = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "{} events, {} bytes of NDJSON: parsed events hold {parsed} bytes, {:.2}x the JSON",
        events.len(),
        body.len(),
        parsed as f64 / body.len() as f64
    );
    Ok(())
}
