//! The live state of one sink, shared between its driver task and `/health/detailed`: whether
//! this process drives it (holds its lease), the breaker, whether credentials stopped it, the
//! cursor and backlog, counters since start and the last error (status codes and vendor
//! codes, never event contents).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};

use serde_json::{Value, json};

use super::breaker::BreakerState;
use crate::config::SinkKind;

#[derive(Debug)]
pub struct SinkStatus {
    pub name: String,
    pub kind: SinkKind,
    active: AtomicBool,
    stopped: AtomicBool,
    breaker: AtomicU8,
    cursor: AtomicI64,
    last_seq: AtomicI64,
    sent: AtomicU64,
    dead_letters: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SinkStatus {
    pub fn new(name: &str, kind: SinkKind) -> SinkStatus {
        SinkStatus {
            name: name.to_owned(),
            kind,
            active: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            breaker: AtomicU8::new(BreakerState::Closed as u8),
            cursor: AtomicI64::new(0),
            last_seq: AtomicI64::new(0),
            sent: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Relaxed);
    }

    pub fn set_stopped(&self, stopped: bool) {
        self.stopped.store(stopped, Ordering::Relaxed);
    }

    pub fn set_breaker(&self, state: BreakerState) {
        self.breaker.store(state as u8, Ordering::Relaxed);
    }

    pub fn breaker(&self) -> BreakerState {
        BreakerState::from_u8(self.breaker.load(Ordering::Relaxed))
    }

    pub fn set_position(&self, cursor: i64, last_seq: i64) {
        self.cursor.store(cursor, Ordering::Relaxed);
        self.last_seq.store(last_seq.max(cursor), Ordering::Relaxed);
    }

    /// Committed events behind the cursor (`seq` is gapless, so this is exact).
    pub fn backlog(&self) -> i64 {
        (self.last_seq.load(Ordering::Relaxed) - self.cursor.load(Ordering::Relaxed)).max(0)
    }

    pub fn add_sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn add_dead_letters(&self, n: usize) {
        self.dead_letters.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn set_last_error(&self, e: String) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some(e);
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// The sink's entry in `/health/detailed`. `state` is `forwarding` (this process drives
    /// it and the breaker is closed), `retrying` (breaker open or half-open), `stopped`
    /// (credentials refused), or `standby` (another replica holds the sink).
    pub fn snapshot(&self) -> Value {
        let active = self.active.load(Ordering::Relaxed);
        let breaker = self.breaker();
        let state = match (active, self.stopped.load(Ordering::Relaxed), breaker) {
            (false, _, _) => "standby",
            (true, true, _) => "stopped",
            (true, false, BreakerState::Closed) => "forwarding",
            (true, false, _) => "retrying",
        };
        json!({
            "name": self.name,
            "type": self.kind.as_str(),
            "active": active,
            "state": state,
            "breaker": breaker.as_str(),
            "cursor": self.cursor.load(Ordering::Relaxed),
            "backlog": self.backlog(),
            "events_sent": self.sent.load(Ordering::Relaxed),
            "dead_letters": self.dead_letters.load(Ordering::Relaxed),
            "last_error": self.last_error(),
        })
    }
}
