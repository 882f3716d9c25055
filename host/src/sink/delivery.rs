//! Delivering one batch: send, classify the answer (the sink's one `classify` function), and
//! act on the [`Decision`]: retry after backoff or `Retry-After`, split, dead-letter, wait for
//! Splunk's indexer acknowledgement, or stop. The circuit breaker gates every request.
//!
//! The batch is worked through as ranges, in order: a split or a partial acceptance replaces
//! the current range by smaller ones at the front of the queue, so events always settle in
//! `seq` order and the caller can move the cursor over the settled prefix, even when the
//! delivery halts half-way (credentials refused, shutdown).

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shutdown::Shutdown;
use uuid::Uuid;

use super::Sink;
use super::batch::Framing;
use super::breaker::Breaker;
use super::metrics::SinkMetrics;
use super::retry::{Backoff, Decision, Refusal};
use super::status::SinkStatus;
use super::transport::{Attempt, RequestBody};

/// One document of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Doc<'a> {
    pub seq: i64,
    pub event_id: Uuid,
    pub text: &'a str,
}

/// Why a delivery stopped before settling every document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// Credentials or configuration refused (401/403, …): the sink stops until a probe
    /// succeeds.
    Stopped(String),
    /// The process is shutting down.
    Shutdown,
    /// `max_attempts` retries failed (only `dlq replay` sets a limit).
    GaveUp(String),
}

/// What a delivery achieved.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The first `settled` documents are done: delivered or in `dead`.
    pub settled: usize,
    /// Documents (by index) the destination refused, with why.
    pub dead: Vec<(usize, Refusal)>,
    /// Documents delivered.
    pub delivered: usize,
    /// Set when the delivery stopped before settling every document.
    pub halt: Option<Halt>,
}

/// How a sink delivers.
#[derive(Debug, Clone)]
pub struct Policy {
    pub framing: Framing,
    pub gzip: bool,
    pub max_bytes: usize,
    pub backoff: Backoff,
    /// How long a 401/403 stops the sink before one probe.
    pub auth_probe: Duration,
    /// Give up after this many failed attempts of one range (`None`: never).
    pub max_attempts: Option<u32>,
}

/// A sink's long-lived delivery state: the breaker lives across batches.
pub struct Delivery {
    pub sink: Arc<dyn Sink>,
    pub policy: Policy,
    pub breaker: Breaker,
    pub status: Arc<SinkStatus>,
    pub metrics: Arc<SinkMetrics>,
    pub shutdown: Shutdown,
}

enum AckResult {
    Acked,
    TimedOut,
    Shutdown,
}

impl Delivery {
    /// Deliver `docs` in order.
    pub async fn deliver(&mut self, docs: &[Doc<'_>]) -> Outcome {
        let mut out = Outcome::default();
        // Ranges still to do, the next one last.
        let mut todo: Vec<Range<usize>> = Vec::with_capacity(8);
        todo.push(0..docs.len());
        while let Some(range) = todo.pop() {
            if range.is_empty() {
                continue;
            }
            match self.deliver_range(docs, range.clone(), &mut todo, &mut out).await {
                Ok(()) => {}
                Err(halt) => {
                    out.settled = range.start;
                    out.halt = Some(halt);
                    return out;
                }
            }
        }
        out.settled = docs.len();
        out
    }

    /// Settle `range`, or push the smaller ranges it became onto `todo`.
    async fn deliver_range(
        &mut self,
        docs: &[Doc<'_>],
        range: Range<usize>,
        todo: &mut Vec<Range<usize>>,
        out: &mut Outcome,
    ) -> Result<(), Halt> {
        let body = self
            .policy
            .framing
            .encode(docs[range.clone()].iter().map(|d| d.text), self.policy.gzip);
        if body.uncompressed > self.policy.max_bytes {
            if range.len() == 1 {
                let why = Refusal::new(
                    "too_large",
                    format!(
                        "{} bytes formatted, more than the sink's max_bytes {}",
                        body.uncompressed, self.policy.max_bytes
                    ),
                );
                out.dead.push((range.start, why));
                return Ok(());
            }
            push_halves(todo, range);
            return Ok(());
        }
        let mut failures: u32 = 0;
        loop {
            self.wait_for_breaker().await?;
            let attempt = self.send(&body).await;
            match self.sink.classify(&attempt) {
                Decision::Done { ack_id } => {
                    self.succeeded();
                    if let (Some(id), Some(settings)) = (ack_id, self.sink.ack()) {
                        match self.wait_for_ack(id, settings.poll, settings.timeout).await {
                            AckResult::Acked => {}
                            AckResult::Shutdown => return Err(Halt::Shutdown),
                            AckResult::TimedOut => {
                                tracing::warn!(sink = %self.status.name, ack_id = id, events = range.len(), "batch not acknowledged in time; resending it");
                                self.failed(format!(
                                    "ackId {id} not acknowledged within {} ms",
                                    settings.timeout.as_millis()
                                ));
                                failures += 1;
                                self.metrics.retried();
                                self.check_attempts(failures)?;
                                continue;
                            }
                        }
                    }
                    self.delivered(range.len(), out);
                    return Ok(());
                }
                Decision::Retry { after, why } => {
                    self.failed(why.clone());
                    failures += 1;
                    self.check_attempts(failures)?;
                    self.metrics.retried();
                    let wait = after.unwrap_or_else(|| self.policy.backoff.delay(failures - 1));
                    tracing::debug!(sink = %self.status.name, %why, wait_ms = wait.as_millis() as u64, "retrying");
                    self.sleep(wait).await?;
                }
                Decision::Split { why } => {
                    self.succeeded();
                    if range.len() == 1 {
                        out.dead.push((range.start, why));
                    } else {
                        tracing::info!(sink = %self.status.name, events = range.len(), reason = %why.reason, "splitting the batch");
                        push_halves(todo, range);
                    }
                    return Ok(());
                }
                Decision::DeadLetter {
                    first_bad: Some(n),
                    why,
                } if n < range.len() => {
                    self.succeeded();
                    let bad = range.start + n;
                    tracing::warn!(sink = %self.status.name, event_id = %docs[bad].event_id, seq = docs[bad].seq, reason = %why.reason, "destination refused one event; dead-lettering it");
                    todo.push(bad + 1..range.end);
                    if self.sink.ack().is_some() {
                        // With indexer acknowledgement the events before it are not known to be
                        // indexed (an error answer carries no ackId): send them again.
                        out.dead.push((bad, why));
                        todo.push(range.start..bad);
                    } else {
                        self.delivered(n, out);
                        out.dead.push((bad, why));
                    }
                    return Ok(());
                }
                Decision::DeadLetter { why, .. } => {
                    self.succeeded();
                    if range.len() == 1 {
                        tracing::warn!(sink = %self.status.name, event_id = %docs[range.start].event_id, seq = docs[range.start].seq, reason = %why.reason, "destination refused the event; dead-lettering it");
                        out.dead.push((range.start, why));
                    } else {
                        push_halves(todo, range);
                    }
                    return Ok(());
                }
                Decision::Stop { why } => {
                    tracing::error!(sink = %self.status.name, %why, probe_in_secs = self.policy.auth_probe.as_secs(), "sink stopped; events are kept");
                    self.breaker.stop(Instant::now(), self.policy.auth_probe);
                    self.status.set_stopped(true);
                    self.metrics.stopped(true);
                    self.publish_breaker();
                    self.status.set_last_error(why.clone());
                    if self.policy.max_attempts.is_some() {
                        return Err(Halt::Stopped(why));
                    }
                    // Keep the batch: the next request is the probe after `auth_probe`.
                    failures += 1;
                }
            }
        }
    }

    async fn send(&mut self, body: &RequestBody) -> Attempt {
        let started = Instant::now();
        let attempt = self.sink.send(body).await;
        self.metrics.request(&attempt, started.elapsed());
        attempt
    }

    fn delivered(&mut self, n: usize, out: &mut Outcome) {
        out.delivered += n;
        self.metrics.sent(n);
        self.status.add_sent(n);
    }

    fn succeeded(&mut self) {
        let was_stopped = self.breaker.stopped();
        self.breaker.success();
        if was_stopped {
            tracing::info!(sink = %self.status.name, "destination accepts the credentials again; sink resumed");
            self.status.set_stopped(false);
            self.metrics.stopped(false);
        }
        self.publish_breaker();
    }

    fn failed(&mut self, why: String) {
        let before = self.breaker.state();
        self.breaker.failure(Instant::now());
        let after = self.breaker.state();
        if before != after {
            tracing::warn!(sink = %self.status.name, %why, breaker = after.as_str(), "circuit breaker opened");
        }
        self.status.set_last_error(why);
        self.publish_breaker();
    }

    fn check_attempts(&self, failures: u32) -> Result<(), Halt> {
        match self.policy.max_attempts {
            Some(max) if failures >= max => Err(Halt::GaveUp(self.status.last_error().unwrap_or_default())),
            _ => Ok(()),
        }
    }

    fn publish_breaker(&self) {
        let state = self.breaker.state();
        self.status.set_breaker(state);
        self.metrics.breaker(state);
    }

    /// Sleep while the breaker is open (a half-open breaker lets this one request through).
    async fn wait_for_breaker(&mut self) -> Result<(), Halt> {
        loop {
            let wait = self.breaker.wait(Instant::now());
            self.publish_breaker();
            if wait.is_zero() {
                return Ok(());
            }
            self.sleep(wait).await?;
        }
    }

    async fn wait_for_ack(&mut self, id: u64, poll: Duration, timeout: Duration) -> AckResult {
        let deadline = Instant::now() + timeout;
        loop {
            if self.sleep(poll).await.is_err() {
                return AckResult::Shutdown;
            }
            match self.sink.acked(id).await {
                Ok(true) => return AckResult::Acked,
                Ok(false) => {}
                Err(e) => tracing::debug!(sink = %self.status.name, ack_id = id, error = %e, "ack poll failed"),
            }
            if Instant::now() >= deadline {
                return AckResult::TimedOut;
            }
        }
    }

    /// Sleep, or halt when shutdown begins.
    async fn sleep(&mut self, d: Duration) -> Result<(), Halt> {
        if self.shutdown.sleep(d).await {
            Ok(())
        } else {
            Err(Halt::Shutdown)
        }
    }
}

/// Replace `range` by its two halves, first half next.
fn push_halves(todo: &mut Vec<Range<usize>>, range: Range<usize>) {
    let mid = range.start + range.len() / 2;
    todo.push(mid..range.end);
    todo.push(range.start..mid);
}
