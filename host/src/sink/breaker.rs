//! The circuit breaker of one sink: closed → open after `failure_threshold` consecutive
//! failed requests → half-open after `open_ms`, where exactly one probe request goes out →
//! closed on success, open again on failure. A 401/403 opens it at once for
//! `auth_probe_secs` ([`Breaker::stop`]): the sink is stopped until the probe succeeds.
//!
//! Why a breaker on top of backoff: backoff spaces the retries of one batch, the breaker bounds
//! what a sink sends to a destination that is down, whatever the batch, and makes "this
//! destination is down" a state operators see (`auditflow_sink_breaker_state`) and alert on.
//! Sinks send one request at a time, so "a single probe" needs no further bookkeeping.

use std::time::{Duration, Instant};

/// The breaker's state, as the metric reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }

    pub fn from_u8(v: u8) -> BreakerState {
        match v {
            0 => BreakerState::Closed,
            1 => BreakerState::HalfOpen,
            _ => BreakerState::Open,
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    failures: u32,
    state: BreakerState,
    /// While open: when the next probe may go.
    until: Instant,
    /// Opened by a 401/403 rather than by failures.
    stopped: bool,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            open_for,
            failures: 0,
            state: BreakerState::Closed,
            until: Instant::now(),
            stopped: false,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Opened by a 401/403 and not yet closed by a successful probe.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// How long to wait before the next request may go (zero: now). When an open breaker's
    /// time is up it turns half-open: the next request is the probe.
    pub fn wait(&mut self, now: Instant) -> Duration {
        if self.state == BreakerState::Open {
            if now < self.until {
                return self.until - now;
            }
            self.state = BreakerState::HalfOpen;
        }
        Duration::ZERO
    }

    /// The destination answered and took (or deliberately refused) the content.
    pub fn success(&mut self) {
        self.failures = 0;
        self.stopped = false;
        self.state = BreakerState::Closed;
    }

    /// A failed request (network error, 408, 429, 5xx, or an ack that never came).
    pub fn failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let trip = match self.state {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => self.failures >= self.threshold,
            BreakerState::Open => false,
        };
        if trip {
            self.state = BreakerState::Open;
            self.until = now + self.open_for;
        }
    }

    /// Credentials refused: open now, probe again after `probe_after`.
    pub fn stop(&mut self, now: Instant, probe_after: Duration) {
        self.stopped = true;
        self.state = BreakerState::Open;
        self.until = now + probe_after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_once() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            b.failure(t0);
            assert_eq!(b.state(), BreakerState::Closed);
        }
        b.failure(t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.wait(t0 + Duration::from_secs(4)), Duration::from_secs(6));
        assert_eq!(b.wait(t0 + Duration::from_secs(10)), Duration::ZERO);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // The probe fails: open again for the full period.
        b.failure(t0 + Duration::from_secs(10));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.wait(t0 + Duration::from_secs(11)), Duration::from_secs(9));
        b.wait(t0 + Duration::from_secs(20));
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn stop_opens_until_the_auth_probe() {
        let t0 = Instant::now();
        let mut b = Breaker::new(5, Duration::from_secs(1));
        b.stop(t0, Duration::from_secs(300));
        assert!(b.stopped());
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.wait(t0 + Duration::from_secs(100)), Duration::from_secs(200));
        b.wait(t0 + Duration::from_secs(300));
        b.success();
        assert!(!b.stopped());
    }
}
