//! The PostgreSQL read path: filtered queries, chain and checkpoint reads, counts, and decoding a
//! row back into a [`StoredEvent`] (defensively: a row is outside input, so a bad value is an
//! error naming the row's `seq`, never a panic).
//!
//! `metadata` comes back as `jsonb` and is parsed into a `serde_json` map: the chain hashes
//! the canonical JSON of that map (`chain::canonical_json`), never PostgreSQL's own rendering,
//! so the bytes are the same as SQLite's for the same event.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::map_err;
use crate::event::{Actor, Decision, Event, StoredEvent};
use crate::store::chain::{ChainHead, ChainedEvent};
use crate::store::checkpoint::Checkpoint;
use crate::store::{EventQuery, StoreError};

/// Every column, in table order, as a literal so queries can `concat!` onto it and stay
/// `&'static str`.
macro_rules! select_events {
    () => {
        "SELECT seq, event_id, event_type, \"timestamp\", actor_type, actor_id, agent_id, server_name, \
         tool_name, decision, outcome, reason, request_id, correlation_id, source_ip, source, \
         metadata, received_at, prev_hash, hash FROM audit_events"
    };
}

/// The highest stored `seq`, 0 when empty.
pub(super) async fn max_seq(pool: &PgPool) -> Result<i64, StoreError> {
    let max: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM event_ids")
        .fetch_one(pool)
        .await
        .map_err(map_err)?;
    Ok(max.unwrap_or(0))
}

/// The chain head at `seq` (the empty head for 0): the hash of row `seq`.
pub(super) async fn head_at(conn: &mut PgConnection, seq: i64) -> Result<ChainHead, StoreError> {
    if seq == 0 {
        return Ok(ChainHead::EMPTY);
    }
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = $1")
        .bind(seq)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
    // Anything but exactly one row means the table was changed behind the writer's back:
    // refuse to extend a chain whose tip is unknown (run `auditflow verify`).
    match hashes.as_slice() {
        [hash] => <[u8; 32]>::try_from(hash.as_slice())
            .map(|hash| ChainHead { seq, hash })
            .map_err(|_| {
                StoreError::Database(format!(
                    "chain head seq {seq}: hash is not 32 bytes; run auditflow verify"
                ))
            }),
        [] => Err(StoreError::Database(format!(
            "chain head seq {seq} is recorded in event_ids but missing from audit_events; run auditflow verify"
        ))),
        _ => Err(StoreError::Database(format!(
            "chain head seq {seq} is stored more than once; run auditflow verify"
        ))),
    }
}

/// See [`Store::query`](crate::store::Store::query).
pub(super) async fn query(pool: &PgPool, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
    if q.limit <= 0 {
        return Ok(Vec::new());
    }
    let mut sql = QueryBuilder::<Postgres>::new(select_events!());
    let mut conditions = Conditions::default();
    if let Some(since) = q.since {
        conditions.next(&mut sql).push("\"timestamp\" >= ").push_bind(since);
    }
    if let Some(until) = q.until {
        conditions.next(&mut sql).push("\"timestamp\" < ").push_bind(until);
    }
    if let Some(actor) = &q.actor {
        conditions.next(&mut sql).push("actor_id = ").push_bind(actor.clone());
    }
    if let Some(id) = &q.request_id {
        conditions
            .next(&mut sql)
            .push("(request_id = ")
            .push_bind(id.clone())
            .push(" OR correlation_id = ")
            .push_bind(id.clone())
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

    let rows = sql.build().fetch_all(pool).await.map_err(map_err)?;
    rows.iter().map(decode_event).collect()
}

/// See [`Store::chain`](crate::store::Store::chain). `seq` is unique only through `event_ids`
/// (the partitioned table's key includes the event time), so a row forged straight into
/// `audit_events` can repeat a `seq`. A page therefore never ends between two rows of the same
/// `seq`: it takes the first `limit` rows' `seq` range and returns every row in it, so
/// `auditflow verify` sees both copies side by side.
pub(super) async fn chain(pool: &PgPool, after_seq: i64, limit: i64) -> Result<Vec<ChainedEvent>, StoreError> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        select_events!(),
        " WHERE seq > $1 AND seq <= (SELECT max(seq) FROM (SELECT seq FROM audit_events WHERE seq > $1 \
         ORDER BY seq LIMIT $2) AS page) ORDER BY seq"
    ))
    .bind(after_seq)
    .bind(limit)
    .fetch_all(pool)
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

/// See [`Store::checkpoints`](crate::store::Store::checkpoints).
pub(super) async fn checkpoints(pool: &PgPool, after_seq: i64, limit: i64) -> Result<Vec<Checkpoint>, StoreError> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT seq, head_hash, created_at, key_id, signature FROM chain_checkpoints WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after_seq)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|row| {
            Ok(Checkpoint {
                seq: row.try_get("seq").map_err(map_err)?,
                head_hash: row.try_get("head_hash").map_err(map_err)?,
                created_at: row.try_get("created_at").map_err(map_err)?,
                key_id: row.try_get("key_id").map_err(map_err)?,
                signature: row.try_get("signature").map_err(map_err)?,
            })
        })
        .collect()
}

pub(super) async fn count(pool: &PgPool) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(pool)
        .await
        .map_err(map_err)
}

pub(super) async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    // Touch the table, not just the connection: a missing schema is "not ready".
    sqlx::query("SELECT 1 FROM event_ids LIMIT 1")
        .fetch_optional(pool)
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
    fn next<'a>(&mut self, sql: &'a mut QueryBuilder<Postgres>) -> &'a mut QueryBuilder<Postgres> {
        sql.push(if self.any { " AND " } else { " WHERE " });
        self.any = true;
        sql
    }
}

fn decode_event(row: &PgRow) -> Result<StoredEvent, StoreError> {
    let seq: i64 = row.try_get("seq").map_err(map_err)?;
    let bad = |what: &str| StoreError::Database(format!("stored row seq {seq}: {what}"));
    let text = |name: &str| -> Result<Option<String>, StoreError> { row.try_get(name).map_err(map_err) };

    let event_id: Uuid = row.try_get("event_id").map_err(map_err)?;
    let timestamp: DateTime<Utc> = row.try_get("timestamp").map_err(map_err)?;
    let received_at: DateTime<Utc> = row.try_get("received_at").map_err(map_err)?;
    let decision = match text("decision")? {
        None => None,
        Some(d) => Some(Decision::parse(&d).ok_or_else(|| bad("decision is neither allow nor deny"))?),
    };
    let actor = match (text("actor_type")?, text("actor_id")?) {
        (None, None) => None,
        (kind, id) => Some(Actor { kind, id }),
    };
    let metadata = match row.try_get::<Value, _>("metadata") {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) => return Err(bad("metadata is not a JSON object")),
    };

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

fn hash_column(row: &PgRow, name: &str, seq: i64) -> Result<[u8; 32], StoreError> {
    let bytes: Vec<u8> = row.try_get(name).map_err(map_err)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| StoreError::Database(format!("stored row seq {seq}: {name} is not 32 bytes")))
}
