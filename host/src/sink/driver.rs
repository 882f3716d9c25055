//! The task that drives one sink, and its cursor handling.
//!
//! 1. **Lease.** Take the right to drive the sink from the store ([`Store::lock_sink`]); while
//!    another replica holds it, stand by and try again every [`LEASE_RETRY`]. The lease is
//!    re-checked every [`LEASE_CHECK`]; when it is lost the driver drops everything in memory
//!    and starts over from step 1.
//! 2. **Cursor.** Read the sink's durable cursor: everything at or below it is done.
//! 3. **Read and format.** Read committed events after what was read so far, format them with
//!    the sink's formatter plugin and keep them in the [`Buffer`]. An event the formatter (or
//!    the sink's check of the document) refuses is dead-lettered at once and passed over.
//! 4. **Batch and deliver.** When the buffer's front makes a batch (events, bytes, age), hand
//!    it to the [`Delivery`] (retry, split, dead-letter, ack, breaker).
//! 5. **Advance.** Write the batch's dead letters, then move the cursor over the settled
//!    events, retrying until the store takes it. Only then are they dropped from memory.
//!
//! A crash between a delivery and step 5 resends that one batch after the restart: delivery is
//! at-least-once, and duplicates are bounded by one batch per crash.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shutdown::Shutdown;

use super::Sink;
use super::batch::{BatchLimits, Buffer, Pending};
use super::delivery::{Delivery, Doc, Halt};
use super::metrics::SinkMetrics;
use super::retry::Refusal;
use super::status::SinkStatus;
use crate::event::StoredEvent;
use crate::plugin::FormatterPool;
use crate::plugin::bindings::to_wit;
use crate::store::{DeadLetter, EventQuery, SinkLease, Store, StoreError};

/// How often a standby replica tries to take the sink over.
pub const LEASE_RETRY: Duration = Duration::from_secs(1);
/// How often the holder checks that it still holds the lease.
pub const LEASE_CHECK: Duration = Duration::from_secs(2);
/// Events per formatter call.
const FORMAT_CHUNK: usize = 256;
/// How long to wait after a failed store operation before trying again.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// How often the backlog is read from the store by [`report_backlog`].
const BACKLOG_REFRESH: Duration = Duration::from_secs(1);

/// Why [`SinkDriver::forward`] returned.
enum Exit {
    Shutdown,
    LeaseLost,
}

pub struct SinkDriver {
    pub name: String,
    pub sink: Arc<dyn Sink>,
    pub formatter: Arc<FormatterPool>,
    pub store: Arc<dyn Store>,
    pub limits: BatchLimits,
    pub delivery: Delivery,
    pub status: Arc<SinkStatus>,
    pub metrics: Arc<SinkMetrics>,
    pub shutdown: Shutdown,
}

impl SinkDriver {
    pub async fn run(mut self) {
        loop {
            let Some(lease) = self.acquire_lease().await else { break };
            tracing::info!(sink = %self.name, "driving the sink");
            self.status.set_active(true);
            self.metrics.active(true);
            let exit = self.forward(lease).await;
            self.status.set_active(false);
            self.metrics.active(false);
            match exit {
                Exit::Shutdown => break,
                Exit::LeaseLost => tracing::warn!(sink = %self.name, "lost the sink's lease; standing by"),
            }
        }
        tracing::info!(sink = %self.name, "sink stopped");
    }

    async fn acquire_lease(&mut self) -> Option<Box<dyn SinkLease>> {
        let mut standing_by = false;
        loop {
            match self.store.lock_sink(&self.name).await {
                Ok(Some(lease)) => return Some(lease),
                Ok(None) if !standing_by => {
                    standing_by = true;
                    tracing::info!(sink = %self.name, "another replica drives this sink; standing by");
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(sink = %self.name, error = %e, "cannot take the sink's lease"),
            }
            if !self.sleep(LEASE_RETRY).await {
                return None;
            }
        }
    }

    async fn forward(&mut self, mut lease: Box<dyn SinkLease>) -> Exit {
        let cursor = loop {
            match self.store.sink_cursor(&self.name).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(sink = %self.name, error = %e, "cannot read the sink's cursor");
                    if !self.sleep(STORE_RETRY).await {
                        return Exit::Shutdown;
                    }
                }
            }
        };
        let mut buffer = Buffer::new(cursor);
        let mut cursor = cursor;
        let mut last_lease_check = Instant::now();
        let poll = self
            .limits
            .max_wait
            .clamp(Duration::from_millis(10), Duration::from_millis(200));
        loop {
            if self.shutdown.is_shutdown() {
                return Exit::Shutdown;
            }
            if last_lease_check.elapsed() >= LEASE_CHECK {
                if !lease.held().await {
                    return Exit::LeaseLost;
                }
                last_lease_check = Instant::now();
            }
            if buffer.len() < self.limits.max_events
                && let Err(e) = self.read_more(&mut buffer).await
            {
                tracing::warn!(sink = %self.name, error = %e, "cannot read events for the sink");
            }
            let Some(n) = buffer.ready(&self.limits, self.sink.framing(), Instant::now()) else {
                if !self.sleep(poll).await {
                    return Exit::Shutdown;
                }
                continue;
            };
            match self.deliver(&mut buffer, n, &mut cursor).await {
                Ok(()) => self.refresh_backlog(cursor).await,
                Err(()) => return Exit::Shutdown,
            }
        }
    }

    /// Deliver the buffer's first `n` events and move the cursor over what settled.
    async fn deliver(&mut self, buffer: &mut Buffer, n: usize, cursor: &mut i64) -> Result<(), ()> {
        let items: Vec<&Pending> = buffer.front(n).collect();
        let docs: Vec<Doc<'_>> = items
            .iter()
            .filter_map(|p| {
                p.doc.as_deref().map(|text| Doc {
                    seq: p.seq,
                    event_id: p.event_id,
                    text,
                })
            })
            .collect();
        let outcome = self.delivery.deliver(&docs).await;
        // Items up to the first unsettled document (items without one settled at formatting).
        let settled_items = match docs.get(outcome.settled) {
            Some(first_open) => items.iter().position(|p| p.seq == first_open.seq).unwrap_or(0),
            None => items.len(),
        };
        let letters: Vec<DeadLetter> = outcome
            .dead
            .iter()
            .filter(|(i, _)| *i < outcome.settled)
            .map(|(i, why)| self.letter(docs[*i].seq, docs[*i].event_id, why))
            .collect();
        let new_cursor = items[..settled_items].last().map(|p| p.seq);
        drop(items);
        if let Some(seq) = new_cursor {
            self.commit(&letters, seq).await?;
            buffer.settle(settled_items);
            *cursor = seq;
        }
        match outcome.halt {
            Some(Halt::Shutdown) => Err(()),
            Some(halt) => {
                // Only `dlq replay` limits attempts or returns on Stop; the driver retries.
                tracing::warn!(sink = %self.name, ?halt, "delivery halted; will try again");
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Store the dead letters, then the cursor; retried until the store takes them (the
    /// events are delivered: giving up here would resend them).
    async fn commit(&mut self, letters: &[DeadLetter], seq: i64) -> Result<(), ()> {
        loop {
            let result = async {
                self.store.add_dead_letters(letters).await?;
                self.store.advance_sink_cursor(&self.name, seq).await
            }
            .await;
            match result {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(sink = %self.name, seq, error = %e, "cannot store the sink's cursor; retrying");
                    if !self.sleep(STORE_RETRY).await {
                        return Err(());
                    }
                }
            }
        }
        if !letters.is_empty() {
            self.metrics.dead_lettered(letters.len());
            self.status.add_dead_letters(letters.len());
        }
        Ok(())
    }

    fn letter(&self, seq: i64, event_id: uuid::Uuid, why: &Refusal) -> DeadLetter {
        DeadLetter {
            sink: self.name.clone(),
            event_id,
            seq,
            reason: why.reason.clone(),
            detail: why.detail.clone(),
        }
    }

    /// Read and format the next events after what the buffer holds.
    async fn read_more(&mut self, buffer: &mut Buffer) -> Result<(), StoreError> {
        let room = (2 * self.limits.max_events).saturating_sub(buffer.len()).min(2000);
        if room == 0 {
            return Ok(());
        }
        let q = EventQuery {
            after_seq: Some(buffer.read_upto()),
            limit: room as i64,
            ..EventQuery::default()
        };
        let rows = self.store.query(&q).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let docs = self.format(&rows).await;
        let letters: Vec<DeadLetter> = rows
            .iter()
            .zip(&docs)
            .filter_map(|(row, doc)| {
                doc.as_ref()
                    .err()
                    .map(|why| self.letter(row.seq, row.event.event_id, why))
            })
            .collect();
        if !letters.is_empty() {
            for l in &letters {
                tracing::warn!(sink = %self.name, event_id = %l.event_id, seq = l.seq, detail = %l.detail, "cannot format the event; dead-lettering it");
            }
            self.store.add_dead_letters(&letters).await?;
            self.metrics.dead_lettered(letters.len());
            self.status.add_dead_letters(letters.len());
        }
        let now = Instant::now();
        for (row, doc) in rows.iter().zip(docs) {
            buffer.push(Pending {
                seq: row.seq,
                event_id: row.event.event_id,
                doc: doc.ok(),
                since: now,
            });
        }
        Ok(())
    }

    /// Format events with the sink's formatter and check each document for the protocol.
    pub async fn format(&self, rows: &[StoredEvent]) -> Vec<Result<String, Refusal>> {
        format_events(&self.formatter, self.sink.as_ref(), &self.name, rows).await
    }

    /// Right after the cursor moved: show it without waiting for [`report_backlog`].
    async fn refresh_backlog(&self, cursor: i64) {
        match self.store.last_seq().await {
            Ok(last) => {
                self.status.set_position(cursor, last);
                self.metrics.backlog(self.status.backlog());
            }
            Err(e) => tracing::debug!(sink = %self.name, error = %e, "cannot read the last seq for the backlog"),
        }
    }

    /// Sleep; false when shutdown begins.
    async fn sleep(&mut self, d: Duration) -> bool {
        self.shutdown.sleep(d).await
    }
}

/// Format `rows` in chunks; a chunk whose call fails as a whole (trap, timeout) is formatted
/// again event by event, so only the events that fail on their own are refused.
pub async fn format_events(
    formatter: &FormatterPool,
    sink: &dyn Sink,
    name: &str,
    rows: &[StoredEvent],
) -> Vec<Result<String, Refusal>> {
    let finish = |row: &StoredEvent, doc: Result<String, String>| -> Result<String, Refusal> {
        let doc = doc.map_err(|m| {
            let m: String = m.chars().take(200).collect();
            Refusal::new("format_error", format!("the formatter refused the event: {m}"))
        })?;
        sink.prepare(doc, row).map_err(|m| Refusal::new("format_error", m))
    };
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(FORMAT_CHUNK) {
        let wit: Vec<_> = chunk.iter().map(|r| to_wit(&r.event)).collect();
        match formatter.format(&wit).await {
            Ok(results) => out.extend(chunk.iter().zip(results).map(|(row, r)| finish(row, r))),
            Err(e) => {
                tracing::warn!(sink = %name, error = %e, "formatter call failed; formatting the events one by one");
                for (row, w) in chunk.iter().zip(&wit) {
                    match formatter.format(std::slice::from_ref(w)).await {
                        Ok(mut r) => out.push(finish(row, r.pop().unwrap_or_else(|| Err("no document".into())))),
                        Err(e) => out.push(Err(Refusal::new("format_error", e.to_string()))),
                    }
                }
            }
        }
    }
    out
}

/// Keep the sink's backlog (committed events behind its durable cursor) in its status and
/// gauge, once a second, on every replica: also while the driver waits out an outage or
/// stands by, when it cannot update it itself.
pub async fn report_backlog(
    name: String,
    store: Arc<dyn Store>,
    status: Arc<SinkStatus>,
    metrics: Arc<SinkMetrics>,
    mut shutdown: Shutdown,
) {
    loop {
        let position = async { Ok::<_, StoreError>((store.sink_cursor(&name).await?, store.last_seq().await?)) }.await;
        match position {
            Ok((cursor, last)) => {
                status.set_position(cursor, last);
                metrics.backlog(status.backlog());
            }
            Err(e) => tracing::debug!(sink = %name, error = %e, "cannot read the sink's backlog"),
        }
        tokio::select! {
            _ = tokio::time::sleep(BACKLOG_REFRESH) => {}
            _ = shutdown.recv() => return,
        }
    }
}
