//! The SQLite store's side of the SIEM sinks: cursors (`sink_cursors`) and dead letters
//! (`dead_letters`), see [`crate::store::sink_state`]. Writes go through the writer connection
//! (the read pool is `query_only`); SQLite serves one process per database, so the sink lease
//! is the trait's default, always held.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use super::map_err;
use crate::store::{DeadLetter, DeadLetterQuery, DeadLettered, StoreError};

pub(super) async fn last_seq(reader: &SqlitePool) -> Result<i64, StoreError> {
    // `seq` is the rowid: MAX reads the last b-tree entry.
    sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_events")
        .fetch_one(reader)
        .await
        .map_err(map_err)
}

pub(super) async fn cursor(reader: &SqlitePool, sink: &str) -> Result<i64, StoreError> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM sink_cursors WHERE sink = ?1")
        .bind(sink)
        .fetch_optional(reader)
        .await
        .map_err(map_err)?;
    Ok(seq.unwrap_or(0))
}

pub(super) async fn advance(writer: &SqlitePool, sink: &str, seq: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sink_cursors (sink, seq, updated_us) VALUES (?1, ?2, ?3) \
         ON CONFLICT (sink) DO UPDATE SET seq = MAX(seq, excluded.seq), updated_us = excluded.updated_us",
    )
    .bind(sink)
    .bind(seq.max(0))
    .bind(Utc::now().timestamp_micros())
    .execute(writer)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(super) async fn add_dead_letters(writer: &SqlitePool, letters: &[DeadLetter]) -> Result<(), StoreError> {
    if letters.is_empty() {
        return Ok(());
    }
    let now = Utc::now().timestamp_micros();
    let mut tx = writer.begin().await.map_err(map_err)?;
    for l in letters {
        sqlx::query(
            "INSERT INTO dead_letters (sink, event_id, seq, reason, detail, created_us) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (sink, seq) DO UPDATE SET reason = excluded.reason, detail = excluded.detail, \
             created_us = CASE WHEN replayed_us IS NULL THEN created_us ELSE excluded.created_us END, \
             replayed_us = NULL",
        )
        .bind(&l.sink)
        .bind(l.event_id.to_string())
        .bind(l.seq)
        .bind(&l.reason)
        .bind(&l.detail)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)?;
    Ok(())
}

pub(super) async fn dead_letters(reader: &SqlitePool, q: &DeadLetterQuery) -> Result<Vec<DeadLettered>, StoreError> {
    if q.limit <= 0 {
        return Ok(Vec::new());
    }
    let mut sql = QueryBuilder::<Sqlite>::new(
        "SELECT id, sink, event_id, seq, reason, detail, created_us, replayed_us FROM dead_letters WHERE 1 = 1",
    );
    if let Some(sink) = &q.sink {
        sql.push(" AND sink = ").push_bind(sink.as_str());
    }
    if !q.include_replayed {
        sql.push(" AND replayed_us IS NULL");
    }
    sql.push(" ORDER BY seq, sink LIMIT ").push_bind(q.limit);
    let rows = sql.build().fetch_all(reader).await.map_err(map_err)?;
    rows.iter()
        .map(|row| {
            let id: i64 = row.try_get("id").map_err(map_err)?;
            let bad = |what: &str| StoreError::Database(format!("dead letter {id}: {what}"));
            let event_id: String = row.try_get("event_id").map_err(map_err)?;
            let replayed: Option<i64> = row.try_get("replayed_us").map_err(map_err)?;
            Ok(DeadLettered {
                id,
                letter: DeadLetter {
                    sink: row.try_get("sink").map_err(map_err)?,
                    event_id: Uuid::parse_str(&event_id).map_err(|_| bad("event_id is not a UUID"))?,
                    seq: row.try_get("seq").map_err(map_err)?,
                    reason: row.try_get("reason").map_err(map_err)?,
                    detail: row.try_get("detail").map_err(map_err)?,
                },
                created_at: time(row.try_get("created_us").map_err(map_err)?)
                    .ok_or_else(|| bad("created_us out of range"))?,
                replayed_at: match replayed {
                    Some(us) => Some(time(us).ok_or_else(|| bad("replayed_us out of range"))?),
                    None => None,
                },
            })
        })
        .collect()
}

pub(super) async fn mark_replayed(writer: &SqlitePool, sink: &str, seqs: &[i64]) -> Result<(), StoreError> {
    if seqs.is_empty() {
        return Ok(());
    }
    let now = Utc::now().timestamp_micros();
    let mut tx = writer.begin().await.map_err(map_err)?;
    for seq in seqs {
        sqlx::query("UPDATE dead_letters SET replayed_us = ?1 WHERE sink = ?2 AND seq = ?3")
            .bind(now)
            .bind(sink)
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)?;
    Ok(())
}

fn time(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}

#[cfg(test)]
mod tests {
    use crate::store::{DeadLetter, DeadLetterQuery, SqliteStore, Store};
    use uuid::Uuid;

    #[tokio::test]
    async fn cursor_only_moves_forward() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        assert_eq!(store.sink_cursor("splunk").await.unwrap(), 0);
        store.advance_sink_cursor("splunk", 10).await.unwrap();
        store.advance_sink_cursor("splunk", 4).await.unwrap();
        assert_eq!(store.sink_cursor("splunk").await.unwrap(), 10);
        assert_eq!(store.sink_cursor("datadog").await.unwrap(), 0);
        assert_eq!(store.last_seq().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn dead_letters_are_idempotent_and_replayable() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let id = Uuid::now_v7();
        let letter = |reason: &str| DeadLetter {
            sink: "splunk".into(),
            event_id: id,
            seq: 7,
            reason: reason.into(),
            detail: "HTTP 400".into(),
        };
        store.add_dead_letters(&[letter("hec_code_6")]).await.unwrap();
        store.add_dead_letters(&[letter("http_400")]).await.unwrap();
        let q = DeadLetterQuery {
            sink: Some("splunk".into()),
            include_replayed: false,
            limit: 10,
        };
        let rows = store.dead_letters(&q).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].letter.reason, "http_400");
        store.mark_dead_letters_replayed("splunk", &[7]).await.unwrap();
        assert!(store.dead_letters(&q).await.unwrap().is_empty());
        let all = DeadLetterQuery {
            include_replayed: true,
            ..q
        };
        assert!(store.dead_letters(&all).await.unwrap()[0].replayed_at.is_some());
    }
}
