//! Group commit: the single writer task that turns many concurrent ingest requests into few
//! transactions, and answers each request only after its events are committed.
//!
//! A commit costs one fsync whatever its size, so merging requests is what lets a durable
//! store (`synchronous = FULL`, or PostgreSQL's WAL flush) take thousands of events a second.
//!
//! Flow: [`GroupCommit::commit`] reserves queue space for its events (a semaphore whose
//! permits are events, taken with `try_acquire_many` so a full queue answers `Overloaded` at
//! once instead of making the client wait), then puts the request on a bounded channel and
//! awaits its answer. The writer takes the first waiting request, gathers more for up to
//! `max_wait` or until `max_batch_events`, calls [`Store::append`] once for the group, and
//! hands every request its own slice of the results. The permits are returned after the answer,
//! so the capacity bounds every event held in memory (queued or being committed).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Appended, Store, StoreError};
use crate::event::Event;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::telemetry::metrics;

/// Sizing of the writer's queue and groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// Events accepted but not yet answered, at most. A request that does not fit gets
    /// [`CommitError::Overloaded`] (503 + `Retry-After`); one larger than this gets
    /// [`CommitError::TooLarge`]. Default 50 000.
    pub queue_capacity: usize,
    /// Events per transaction the writer aims for. Requests are never split, so a single
    /// request larger than this is committed alone. Default 5 000.
    pub max_batch_events: usize,
    /// How long the writer waits for more requests after taking the first one of a group.
    /// Adds at most this much latency to a lone request. Default 2 ms.
    pub max_wait: Duration,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        GroupCommitConfig {
            queue_capacity: 50_000,
            max_batch_events: 5_000,
            max_wait: Duration::from_millis(2),
        }
    }
}

/// The answer to a committed request: one [`Appended`] per event, in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReceipt {
    /// Events newly stored.
    pub stored: usize,
    /// Events skipped because their `event_id` was already stored.
    pub duplicates: usize,
    pub results: Vec<Appended>,
}

impl CommitReceipt {
    fn from_results(results: Vec<Appended>) -> CommitReceipt {
        let stored = results.iter().filter(|r| matches!(r, Appended::Stored { .. })).count();
        CommitReceipt {
            stored,
            duplicates: results.len() - stored,
            results,
        }
    }
}

/// Why a request was not committed. In every case none of its events is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The queue is full: retry later (503 + `Retry-After`).
    #[error("the store queue is full")]
    Overloaded,
    /// The store failed the transaction this request was part of. The next group tries the
    /// database again.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused this request's own events for their content (they were committed
    /// apart from the rest of their group, which was stored): a resend fails the same way.
    #[error("the store refused the events: {0}")]
    Rejected(String),
    /// The request alone has more events than the whole queue holds.
    #[error("the request has more events than the store queue holds")]
    TooLarge,
    /// The writer is shutting down and takes no new requests.
    #[error("the store writer is shutting down")]
    ShuttingDown,
}

/// Handle to the writer task. Clone it freely; every clone feeds the same writer.
#[derive(Clone)]
pub struct GroupCommit {
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

struct Shared {
    /// One permit per event of queue space.
    space: Arc<Semaphore>,
    capacity: usize,
    /// Fired by [`GroupCommit::close`] (or dropped with the last handle): the writer stops
    /// taking requests and drains.
    closing: ShutdownTrigger,
}

/// One `commit` call waiting for the writer.
struct Request {
    events: Vec<Event>,
    reply: oneshot::Sender<Result<Vec<Appended>, CommitError>>,
    /// Queue space for `events`, returned when the request is answered.
    _space: QueueSpace,
}

impl GroupCommit {
    /// Spawn the writer task for `store`. The handle resolves when the writer has drained its
    /// queue after [`close`](Self::close) or after every `GroupCommit` clone is dropped.
    /// Must be called inside a Tokio runtime.
    pub fn start(store: Arc<dyn Store>, config: GroupCommitConfig) -> (GroupCommit, JoinHandle<()>) {
        // The semaphore counts permits in u32 and caps them at MAX_PERMITS; a zero capacity
        // would refuse everything and a zero-capacity channel panics.
        let capacity = config
            .queue_capacity
            .clamp(1, (u32::MAX as usize).min(Semaphore::MAX_PERMITS));
        let max_batch = config.max_batch_events.max(1);
        // Every queued request holds at least one event's permit, so a channel with one slot
        // per event of capacity is never the limit: the semaphore is.
        let (tx, rx) = mpsc::channel(capacity);
        let (closing, closing_rx) = Shutdown::new();
        let shared = Arc::new(Shared {
            space: Arc::new(Semaphore::new(capacity)),
            capacity,
            closing,
        });
        let writer = Writer {
            store,
            requests: rx,
            closing: closing_rx,
            closed: false,
            max_batch,
            max_wait: config.max_wait,
        };
        metrics().store.writer_started(capacity);
        let handle = tokio::spawn(writer.run());
        (GroupCommit { requests: tx, shared }, handle)
    }

    /// Commit `events` (possibly together with other requests) and return once they are
    /// durable. Fails at once, without waiting, when the queue is full.
    pub async fn commit(&self, events: Vec<Event>) -> Result<CommitReceipt, CommitError> {
        if events.is_empty() {
            return Ok(CommitReceipt::default());
        }
        if events.len() > self.shared.capacity {
            return Err(CommitError::TooLarge);
        }
        if self.shared.closing.is_fired() {
            return Err(CommitError::ShuttingDown);
        }
        let n = u32::try_from(events.len()).map_err(|_| CommitError::TooLarge)?;
        let space = Arc::clone(&self.shared.space)
            .try_acquire_many_owned(n)
            .map_err(|e| match e {
                TryAcquireError::NoPermits => CommitError::Overloaded,
                TryAcquireError::Closed => CommitError::ShuttingDown,
            })?;
        let space = QueueSpace::held(space, n);
        let (reply, answer) = oneshot::channel();
        self.requests
            .try_send(Request {
                events,
                reply,
                _space: space,
            })
            .map_err(|e| match e {
                TrySendError::Full(_) => CommitError::Overloaded,
                TrySendError::Closed(_) => CommitError::ShuttingDown,
            })?;
        // A dropped reply means the writer went away without answering (its task was
        // aborted): the events may or may not be stored, so nothing is acknowledged.
        let results = answer
            .await
            .map_err(|_| CommitError::Unavailable("the store writer stopped before answering".into()))??;
        Ok(CommitReceipt::from_results(results))
    }

    /// Events accepted and not yet answered (queued, or in the transaction being committed).
    pub fn queue_depth(&self) -> usize {
        self.shared.capacity - self.shared.space.available_permits()
    }

    /// Stop taking requests (every clone answers [`CommitError::ShuttingDown`] from now on);
    /// the writer commits and answers everything already queued, then exits. Await the
    /// `JoinHandle` from [`start`](Self::start) to know the flush is done.
    pub fn close(self) {
        self.shared.closing.fire();
    }
}

/// The writer task's state.
struct Writer {
    store: Arc<dyn Store>,
    requests: mpsc::Receiver<Request>,
    closing: Shutdown,
    /// The channel has been closed for new requests; what is buffered still gets committed.
    closed: bool,
    max_batch: usize,
    max_wait: Duration,
}

impl Writer {
    async fn run(mut self) {
        // A request that did not fit in the previous group opens the next one.
        let mut carried: Option<Request> = None;
        loop {
            let first = match carried.take() {
                Some(r) => r,
                None => match self.next_request().await {
                    Some(r) => r,
                    None => break,
                },
            };
            let (group, next) = self.gather(first).await;
            carried = next;
            self.commit_group(group).await;
        }
        tracing::debug!("store writer drained and stopped");
    }

    /// The next request, waiting as long as it takes; `None` once closed and drained.
    async fn next_request(&mut self) -> Option<Request> {
        if !self.closed {
            tokio::select! {
                biased;
                r = self.requests.recv() => return r,
                // Every handle gone counts as a close too.
                _ = self.closing.recv() => {
                    // No new sends from here on; recv still yields what is buffered.
                    self.requests.close();
                    self.closed = true;
                }
            }
        }
        self.requests.recv().await
    }

    /// Requests to commit together with `first`, and the request that would have overflowed
    /// the group, if any.
    async fn gather(&mut self, first: Request) -> (Vec<Request>, Option<Request>) {
        let deadline = tokio::time::Instant::now() + self.max_wait;
        let mut events = first.events.len();
        let mut group = vec![first];
        while events < self.max_batch {
            // Already queued requests join without touching the timer.
            let next = match self.requests.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => match tokio::time::timeout_at(deadline, self.requests.recv()).await {
                    Ok(Some(r)) => r,
                    Ok(None) | Err(_) => break,
                },
            };
            if events + next.events.len() > self.max_batch {
                return (group, Some(next));
            }
            events += next.events.len();
            group.push(next);
        }
        (group, None)
    }

    /// One `append` for the whole group; each request gets its own slice of the results, or
    /// the error. Permits are released as each request is answered.
    async fn commit_group(&self, group: Vec<Request>) {
        let total: usize = group.iter().map(|r| r.events.len()).sum();
        let mut batch = Vec::with_capacity(total);
        let mut sizes = Vec::with_capacity(group.len());
        let mut waiters = Vec::with_capacity(group.len());
        for Request {
            events,
            reply,
            _space: space,
        } in group
        {
            sizes.push(events.len());
            waiters.push((reply, space));
            batch.extend(events);
        }
        let answers = self.commit_requests(&batch, &sizes).await;
        for ((reply, space), answer) in waiters.into_iter().zip(answers) {
            // The caller may have gone away (client disconnected); its events are stored
            // regardless and a resend will be reported as duplicates.
            let _ = reply.send(answer);
            drop(space);
        }
    }

    /// Commit the requests whose events are `batch`, `sizes[i]` events each in order, in one
    /// transaction, and return each request's answer. When the store refuses the transaction
    /// for what it holds ([`StoreError::Rejected`]) and it holds several requests, each half is
    /// committed on its own, and so on down to single requests: only the requests whose own
    /// events are refused fail (with [`CommitError::Rejected`]), the others are stored. Any
    /// other failure fails every request of the transaction ([`CommitError::Unavailable`]).
    fn commit_requests<'a>(
        &'a self,
        batch: &'a [Event],
        sizes: &'a [usize],
    ) -> Pin<Box<dyn Future<Output = Vec<Answer>> + Send + 'a>> {
        Box::pin(async move {
            let started = Instant::now();
            // A panicking store must not take the writer (and every later request) down with it.
            let outcome = AssertUnwindSafe(self.store.append(batch, Utc::now()))
                .catch_unwind()
                .await;
            let total = batch.len();
            let outcome = match outcome {
                Ok(Ok(results)) if results.len() == total => Ok(results),
                Ok(Ok(results)) => Err(StoreError::Database(format!(
                    "store returned {} results for {total} events",
                    results.len()
                ))),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Database("the store panicked while appending".to_owned())),
            };
            match outcome {
                Ok(results) => {
                    let stored = results.iter().filter(|r| matches!(r, Appended::Stored { .. })).count();
                    metrics().store.committed(started.elapsed(), stored, total - stored);
                    tracing::debug!(
                        events = total,
                        requests = sizes.len(),
                        elapsed_us = started.elapsed().as_micros() as u64,
                        "group committed"
                    );
                    let mut results = results.into_iter();
                    sizes.iter().map(|&n| Ok(results.by_ref().take(n).collect())).collect()
                }
                Err(StoreError::Rejected(reason)) if sizes.len() > 1 => {
                    tracing::warn!(
                        events = total,
                        requests = sizes.len(),
                        %reason,
                        "the store refused a group for its content; committing its halves apart"
                    );
                    let half = sizes.len() / 2;
                    let split = sizes[..half].iter().sum();
                    let mut answers = self.commit_requests(&batch[..split], &sizes[..half]).await;
                    answers.extend(self.commit_requests(&batch[split..], &sizes[half..]).await);
                    answers
                }
                Err(StoreError::Rejected(reason)) => {
                    metrics().store.rejected(total);
                    tracing::warn!(events = total, %reason, "the store refused a request's events; refusing it");
                    vec![Err(CommitError::Rejected(reason))]
                }
                Err(e) => {
                    metrics().store.commit_failed();
                    tracing::warn!(events = total, requests = sizes.len(), error = %e, "group commit failed; requests refused");
                    let message = e.to_string();
                    sizes
                        .iter()
                        .map(|_| Err(CommitError::Unavailable(message.clone())))
                        .collect()
                }
            }
        })
    }
}

/// What one request is answered: the result per event, or why none was stored.
type Answer = Result<Vec<Appended>, CommitError>;

/// A request's queue space: its permits, counted in `auditflow_store_queue_depth` until they
/// are returned (when the request is answered, or dropped unanswered).
struct QueueSpace {
    _permit: OwnedSemaphorePermit,
    events: u32,
}

impl QueueSpace {
    fn held(permit: OwnedSemaphorePermit, events: u32) -> QueueSpace {
        metrics().store.queue_changed(i64::from(events));
        QueueSpace {
            _permit: permit,
            events,
        }
    }
}

impl Drop for QueueSpace {
    fn drop(&mut self) {
        metrics().store.queue_changed(-i64::from(self.events));
    }
}

#[cfg(test)]
mod tests;
