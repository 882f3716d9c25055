//! The dead-letter queue from the command line: `auditflow dlq list` shows what sinks parked,
//! `auditflow dlq replay` sends it again.
//!
//! Dead letters hold no payload (see [`crate::store::sink_state`]): a replay re-reads each
//! event from the store by its `seq`, formats it with the sink's *current* formatter and
//! config (the usual fix is a formatter or index change), and delivers it with the sink's
//! retry rules, a few attempts at most. A delivered letter is marked replayed; one refused
//! again stays pending with the new reason; one whose event is gone from the store (retention)
//! is reported and left alone. Replay runs beside a running server without disturbing it:
//! it only reads events and touches dead-letter rows, never a sink's cursor.

use std::collections::HashSet;
use std::sync::Arc;

use crate::shutdown::Shutdown;

use super::breaker::Breaker;
use super::delivery::{Delivery, Doc};
use super::driver::format_events;
use super::metrics::SinkMetrics;
use super::status::SinkStatus;
use super::{SinkError, build_formatter, build_sink, delivery_policy};
use crate::config::Config;
use crate::event::StoredEvent;
use crate::plugin::PluginEngine;
use crate::store::{DeadLetter, DeadLetterQuery, DeadLettered, EventQuery, Store};

/// Attempts per request before a replay gives up (the server's sinks never give up).
const REPLAY_ATTEMPTS: u32 = 5;
/// Most dead letters replayed per sink and run.
const REPLAY_LIMIT: i64 = 100_000;

/// What a replay did for one sink.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub sink: String,
    /// Pending dead letters found.
    pub pending: usize,
    pub delivered: usize,
    /// Refused again (still pending, with the new reason).
    pub refused: usize,
    /// Their event is no longer in the store.
    pub gone: usize,
    /// Set when the replay stopped early (destination down, credentials refused).
    pub halted: Option<String>,
}

/// Dead letters, oldest first.
pub async fn list(
    store: &dyn Store,
    sink: Option<&str>,
    include_replayed: bool,
    limit: i64,
) -> Result<Vec<DeadLettered>, SinkError> {
    let q = DeadLetterQuery {
        sink: sink.map(str::to_owned),
        include_replayed,
        limit,
    };
    Ok(store.dead_letters(&q).await?)
}

/// Replay the pending dead letters of every sink in `config` (or of `only`).
pub async fn replay(
    config: &Config,
    store: Arc<dyn Store>,
    only: Option<&str>,
) -> Result<Vec<ReplayReport>, SinkError> {
    if let Some(name) = only
        && !config.sinks.iter().any(|s| s.name == name)
    {
        return Err(SinkError::Config {
            sink: name.to_owned(),
            message: "no sink of that name in the config".into(),
        });
    }
    let engine = PluginEngine::new()?;
    let mut reports = Vec::new();
    for sc in config.sinks.iter().filter(|s| only.is_none_or(|n| n == s.name)) {
        let mut report = ReplayReport {
            sink: sc.name.clone(),
            ..ReplayReport::default()
        };
        let letters = list(store.as_ref(), Some(&sc.name), false, REPLAY_LIMIT).await?;
        report.pending = letters.len();
        if letters.is_empty() {
            reports.push(report);
            continue;
        }
        let sink = build_sink(config, sc)?;
        let formatter = build_formatter(config, sc, &engine).await?;
        let mut rows: Vec<StoredEvent> = Vec::with_capacity(letters.len());
        for l in &letters {
            match event_at(store.as_ref(), &l.letter).await? {
                Some(row) => rows.push(row),
                None => report.gone += 1,
            }
        }
        let docs = format_events(&formatter, sink.as_ref(), &sc.name, &rows).await;
        let mut refused_again: Vec<DeadLetter> = Vec::new();
        let mut sendable: Vec<(&StoredEvent, String)> = Vec::new();
        for (row, doc) in rows.iter().zip(docs) {
            match doc {
                Ok(text) => sendable.push((row, text)),
                Err(why) => refused_again.push(letter(&sc.name, row, &why.reason, &why.detail)),
            }
        }

        let status = Arc::new(SinkStatus::new(&sc.name, sc.kind));
        let mut policy = delivery_policy(sc, sink.as_ref());
        policy.max_attempts = Some(REPLAY_ATTEMPTS);
        let mut delivery = Delivery {
            sink: sink.clone(),
            policy,
            breaker: Breaker::new(u32::MAX, std::time::Duration::ZERO),
            status,
            metrics: Arc::new(SinkMetrics::new(&sc.name)),
            // A replay runs to its end or its attempt limit.
            shutdown: Shutdown::never(),
        };
        for chunk in sendable.chunks(sc.max_events()) {
            let docs: Vec<Doc<'_>> = chunk
                .iter()
                .map(|(row, text)| Doc {
                    seq: row.seq,
                    event_id: row.event.event_id,
                    text,
                })
                .collect();
            let outcome = delivery.deliver(&docs).await;
            let dead: HashSet<usize> = outcome
                .dead
                .iter()
                .map(|(i, _)| *i)
                .filter(|i| *i < outcome.settled)
                .collect();
            let delivered: Vec<i64> = (0..outcome.settled)
                .filter(|i| !dead.contains(i))
                .map(|i| docs[i].seq)
                .collect();
            store.mark_dead_letters_replayed(&sc.name, &delivered).await?;
            report.delivered += delivered.len();
            for (i, why) in outcome.dead.iter().filter(|(i, _)| *i < outcome.settled) {
                refused_again.push(letter(&sc.name, chunk[*i].0, &why.reason, &why.detail));
            }
            if let Some(halt) = outcome.halt {
                report.halted = Some(format!("{halt:?}"));
                break;
            }
        }
        report.refused = refused_again.len();
        store.add_dead_letters(&refused_again).await?;
        reports.push(report);
    }
    Ok(reports)
}

fn letter(sink: &str, row: &StoredEvent, reason: &str, detail: &str) -> DeadLetter {
    DeadLetter {
        sink: sink.to_owned(),
        event_id: row.event.event_id,
        seq: row.seq,
        reason: reason.into(),
        detail: detail.into(),
    }
}

/// The stored event a dead letter names, if it is still there.
async fn event_at(store: &dyn Store, letter: &DeadLetter) -> Result<Option<StoredEvent>, SinkError> {
    let q = EventQuery {
        after_seq: Some(letter.seq - 1),
        limit: 1,
        ..EventQuery::default()
    };
    let row = store.query(&q).await?.into_iter().next();
    Ok(row.filter(|r| r.seq == letter.seq && r.event.event_id == letter.event_id))
}
