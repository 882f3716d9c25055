//! The `quarantine` table on PostgreSQL: records of events a stage failed on under its
//! `quarantine` policy (event id, stage, error, time; never the payload).

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::map_err;
use crate::store::{QuarantineRecord, Quarantined, StoreError};

/// See [`Store::quarantine`](crate::store::Store::quarantine): one statement for the whole
/// slice, idempotent per `(source, event_id, stage)`.
pub(super) async fn insert(pool: &PgPool, entries: &[QuarantineRecord]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = entries.iter().map(|e| e.event_id).collect();
    // `text` cannot hold U+0000, and a plugin's error message is outside input.
    let text = |s: &str| s.replace('\0', "\u{fffd}");
    let sources: Vec<String> = entries.iter().map(|e| text(&e.source)).collect();
    let stages: Vec<String> = entries.iter().map(|e| text(&e.stage)).collect();
    let errors: Vec<String> = entries.iter().map(|e| text(&e.error)).collect();
    sqlx::query(
        "INSERT INTO quarantine (event_id, stage, error, source) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[]) \
         ON CONFLICT (source, event_id, stage) DO NOTHING",
    )
    .bind(&ids)
    .bind(&stages)
    .bind(&errors)
    .bind(&sources)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// See [`Store::quarantined`](crate::store::Store::quarantined).
pub(super) async fn newest(pool: &PgPool, limit: i64) -> Result<Vec<Quarantined>, StoreError> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT source, event_id, stage, error, quarantined_at FROM quarantine \
         ORDER BY quarantined_at DESC, event_id, stage LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|row| {
            Ok(Quarantined {
                source: row.try_get("source").map_err(map_err)?,
                event_id: row.try_get("event_id").map_err(map_err)?,
                stage: row.try_get("stage").map_err(map_err)?,
                error: row.try_get("error").map_err(map_err)?,
                quarantined_at: row.try_get("quarantined_at").map_err(map_err)?,
            })
        })
        .collect()
}
