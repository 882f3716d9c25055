//! The SQLite read path: filtered queries, chain reads, counts, and decoding a row back into a
//! [`StoredEvent`] (defensively: a row is outside input, so a bad value is an error naming the
//! row's `seq`, never a panic).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteExecutor};
use uuid::Uuid;

use super::map_err;
use crate::event::{Actor, Decision, Event, StoredEvent};
use crate::store::chain::{ChainHead, ChainedEvent};
use crate::store::{EventQuery, StoreError};

/// Every column, in table order, as a literal so queries can `concat!` onto it and stay
/// `&'static str` (what sqlx accepts without an injection audit).
macro_rules! select_events {
    () => {
        "SELECT seq, event_id, event_type, ts_us, actor_type, actor_id, agent_id, server_name, \
         tool_name, decision, outcome, reason, request_id, correlation_id, source_ip, source, \
         metadata, received_us, prev_hash, hash FROM audit_events"
    };
}

/// The last stored `seq` and `hash`, or the empty head.
pub(super) async fn chain_head<'e>(exec: impl SqliteExecutor<'e>) -> Result<ChainHead, StoreError> {
    let row = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(exec)
        .await
        .map_err(map_err)?;
    match row {
        None => Ok(ChainHead::EMPTY),
        Some(row) => {
            let seq: i64 = row.try_get("seq").map_err(map_err)?;
            let hash = hash_column(&row, "hash", seq)?;
            Ok(ChainHead { seq, hash })
        }
    }
}

/// See [`Store::query`](crate::store::Store::query).
pub(super) async fn query(reader: &SqlitePool, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
    if q.limit <= 0 {
        return Ok(Vec::new());
    }
    let mut sql = QueryBuilder::<Sqlite>::new(select_events!());
    let mut conditions = Conditions::default();
    if let Some(since) = q.since {
        conditions
            .next(&mut sql)
            .push("ts_us >= ")
            .push_bind(since.timestamp_micros());
    }
    if let Some(until) = q.until {
        conditions
            .next(&mut sql)
            .push("ts_us < ")
            .push_bind(until.timestamp_micros());
    }
    if let Some(actor) = &q.actor {
        conditions.next(&mut sql).push("actor_id = ").push_bind(actor.as_str());
    }
    if let Some(id) = &q.request_id {
        // Two indexed equalities joined by OR: SQLite answers it as a union of both indexes.
        conditions
            .next(&mut sql)
            .push("(request_id = ")
            .push_bind(id.as_str())
            .push(" OR correlation_id = ")
            .push_bind(id.as_str())
            .push(")");
    }
    if let Some(decision) = q.decision {
        conditions
            .next(&mut sql)
            .push("decision = ")
            .push_bind(decision.as_str());
    }
    if let Some(after) = q.after_seq {
        conditions.next(&mut sql).push("seq > ").push_bind(after);
    }
    sql.push(" ORDER BY seq LIMIT ").push_bind(q.limit);

    let rows = sql.build().fetch_all(reader).await.map_err(map_err)?;
    rows.iter().map(decode_event).collect()
}

/// See [`Store::chain`](crate::store::Store::chain).
pub(super) async fn chain(reader: &SqlitePool, after_seq: i64, limit: i64) -> Result<Vec<ChainedEvent>, StoreError> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(select_events!(), " WHERE seq > ?1 ORDER BY seq LIMIT ?2"))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(reader)
        .await
        .map_err(map_err)?;
    rows.iter()
        .map(|row| {
            let event = decode_event(row)?;
            let prev_hash = hash_column(row, "prev_hash", event.seq)?;
            let hash = hash_column(row, "hash", event.seq)?;
            Ok(ChainedEvent { event, prev_hash, hash })
        })
        .collect()
}

pub(super) async fn count(reader: &SqlitePool) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(reader)
        .await
        .map_err(map_err)
}

pub(super) async fn ping(reader: &SqlitePool) -> Result<(), StoreError> {
    // Touch the table, not just the connection: a missing or unreadable schema is "not ready".
    sqlx::query("SELECT 1 FROM audit_events LIMIT 1")
        .fetch_optional(reader)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Emits ` WHERE ` before the first condition and ` AND ` before the others.
#[derive(Default)]
struct Conditions {
    any: bool,
}

impl Conditions {
    fn next<'a>(&mut self, sql: &'a mut QueryBuilder<Sqlite>) -> &'a mut QueryBuilder<Sqlite> {
        sql.push(if self.any { " AND " } else { " WHERE " });
        self.any = true;
        sql
    }
}

fn decode_event(row: &SqliteRow) -> Result<StoredEvent, StoreError> {
    let seq: i64 = row.try_get("seq").map_err(map_err)?;
    let bad = |what: &str| StoreError::Database(format!("stored row seq {seq}: {what}"));
    let text = |name: &str| -> Result<Option<String>, StoreError> { row.try_get(name).map_err(map_err) };

    let event_id: String = row.try_get("event_id").map_err(map_err)?;
    let event_id = Uuid::parse_str(&event_id).map_err(|_| bad("event_id is not a UUID"))?;
    let timestamp = micros_to_time(row.try_get("ts_us").map_err(map_err)?).ok_or_else(|| bad("ts_us out of range"))?;
    let received_at =
        micros_to_time(row.try_get("received_us").map_err(map_err)?).ok_or_else(|| bad("received_us out of range"))?;
    let decision = match text("decision")? {
        None => None,
        Some(d) => Some(Decision::parse(&d).ok_or_else(|| bad("decision is neither allow nor deny"))?),
    };
    let actor = match (text("actor_type")?, text("actor_id")?) {
        (None, None) => None,
        (kind, id) => Some(Actor { kind, id }),
    };
    let metadata: String = row.try_get("metadata").map_err(map_err)?;
    let metadata: Map<String, Value> =
        serde_json::from_str(&metadata).map_err(|_| bad("metadata is not a JSON object"))?;

    Ok(StoredEvent {
        seq,
        received_at,
        event: Event {
            event_id,
            event_type: row.try_get("event_type").map_err(map_err)?,
            timestamp,
            actor,
            agent_id: text("agent_id")?,
            server_name: text("server_name")?,
            tool_name: text("tool_name")?,
            decision,
            outcome: text("outcome")?,
            reason: text("reason")?,
            request_id: text("request_id")?,
            correlation_id: text("correlation_id")?,
            source_ip: text("source_ip")?,
            source: row.try_get("source").map_err(map_err)?,
            metadata,
        },
    })
}

fn hash_column(row: &SqliteRow, name: &str, seq: i64) -> Result<[u8; 32], StoreError> {
    let bytes: Vec<u8> = row.try_get(name).map_err(map_err)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| StoreError::Database(format!("stored row seq {seq}: {name} is not 32 bytes")))
}

fn micros_to_time(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}
