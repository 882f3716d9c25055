//! Monthly range partitions of `audit_events`, created ahead of time by the store itself.
//!
//! The window: the current month (UTC), [`MONTHS_BEHIND`] months before it and [`MONTHS_AHEAD`]
//! after it. [`maintain`] creates every missing partition of the window; the store runs it at
//! open and every hour, so the next month always exists well before it starts. An event whose
//! month has no partition (far past, far future, or maintenance failing for months) lands in
//! the DEFAULT partition `audit_events_default` instead of failing the insert. When the window
//! later reaches a month that already has rows in the DEFAULT partition, the new partition is
//! created empty, those rows are moved into it, and only then attached, all in one transaction:
//! rows keep every column (and so their hashes) and never stay in DEFAULT longer than needed.
//!
//! Partition changes take the writer's advisory lock, so they never interleave with an append
//! (no lock-order deadlock between the append's `COPY` and the `ATTACH`), and two replicas
//! never race to create the same month. Names are `audit_events_pYYYY_MM`.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;

use super::append::begin_locked;
use super::map_err;
use crate::store::StoreError;

/// Months before the current one that get a partition (late events, replays).
pub const MONTHS_BEHIND: i32 = 3;
/// Months after the current one that get a partition ahead of time.
pub const MONTHS_AHEAD: i32 = 3;

/// A calendar month, as months since year 0 (so adding and subtracting months is arithmetic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Month(i32);

impl Month {
    fn of(t: DateTime<Utc>) -> Month {
        Month(t.year() * 12 + t.month0() as i32)
    }

    fn year(self) -> i32 {
        self.0.div_euclid(12)
    }

    fn month(self) -> u32 {
        self.0.rem_euclid(12) as u32 + 1
    }

    fn first_day(self) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(self.year(), self.month(), 1)
    }

    fn table(self) -> String {
        format!("audit_events_p{:04}_{:02}", self.year(), self.month())
    }

    /// The month of a partition named by [`table`](Self::table); `None` for any other name.
    fn from_table(name: &str) -> Option<Month> {
        let rest = name.strip_prefix("audit_events_p")?;
        let (year, month) = rest.split_once('_')?;
        if year.len() != 4 || month.len() != 2 || !(year.bytes().chain(month.bytes()).all(|b| b.is_ascii_digit())) {
            return None;
        }
        let (year, month): (i32, i32) = (year.parse().ok()?, month.parse().ok()?);
        (1..=12).contains(&month).then_some(Month(year * 12 + month - 1))
    }

    /// The partition bounds as SQL literals: `'YYYY-MM-01 00:00:00+00'`, inclusive lower and
    /// exclusive upper. Built from integers only, so safe to splice into DDL.
    fn bounds(self) -> Option<(String, String)> {
        let lo = self.first_day()?;
        let hi = Month(self.0 + 1).first_day()?;
        Some((format!("'{lo} 00:00:00+00'"), format!("'{hi} 00:00:00+00'")))
    }
}

/// The months that should have a partition at `now`, oldest first.
fn window(now: DateTime<Utc>) -> Vec<Month> {
    let current = Month::of(now);
    (current.0 - MONTHS_BEHIND..=current.0 + MONTHS_AHEAD)
        .map(Month)
        .collect()
}

/// Create every missing partition of the window around `now`.
pub(super) async fn maintain(pool: &PgPool, now: DateTime<Utc>) -> Result<(), StoreError> {
    let existing = partitions(pool).await?;
    for month in window(now) {
        if !existing.contains(&month.table()) {
            create(pool, month).await?;
        }
    }
    Ok(())
}

/// [`maintain`] every `every`, until the task is aborted.
pub(super) async fn run_periodically(pool: PgPool, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = maintain(&pool, Utc::now()).await {
            tracing::warn!(error = %e, "partition maintenance failed; events without a partition go to the default partition");
        }
    }
}

/// The monthly partitions whose whole month is before `cutoff` (their events are all older),
/// oldest first. Only names of our own form are returned, so they are safe to splice into DDL.
pub(super) async fn months_before(
    conn: &mut sqlx::PgConnection,
    cutoff: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'audit_events'::regclass",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err)?;
    let mut months: Vec<Month> = names.iter().filter_map(|n| Month::from_table(n)).collect();
    months.sort();
    Ok(months
        .into_iter()
        .filter(|m| {
            Month(m.0 + 1)
                .first_day()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .is_some_and(|end| end.and_utc() <= cutoff)
        })
        .map(Month::table)
        .collect())
}

/// Names of the partitions `audit_events` has now.
async fn partitions(pool: &PgPool) -> Result<HashSet<String>, StoreError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'audit_events'::regclass",
    )
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    Ok(names.into_iter().collect())
}

/// Create the partition of `month`, moving its rows out of the DEFAULT partition if any.
async fn create(pool: &PgPool, month: Month) -> Result<(), StoreError> {
    let table = month.table();
    let Some((lo, hi)) = month.bounds() else {
        return Err(StoreError::Database(format!("month {} is out of range", month.0)));
    };
    let mut tx = begin_locked(pool).await?;

    // Under the lock: another replica may have created it since we looked.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&table)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
    if exists {
        return Ok(());
    }
    let in_default: bool = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM audit_events_default WHERE \"timestamp\" >= {lo} AND \"timestamp\" < {hi})"
    )))
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;

    if in_default {
        // Attaching a partition whose range has rows in DEFAULT fails, so build the partition
        // beside the table, move the rows, then attach (which adds the indexes and triggers).
        let statements = [
            format!("CREATE TABLE {table} (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"),
            format!(
                "WITH moved AS (DELETE FROM audit_events_default WHERE \"timestamp\" >= {lo} AND \"timestamp\" < {hi} \
                 RETURNING *) INSERT INTO {table} SELECT * FROM moved"
            ),
            format!("ALTER TABLE audit_events ATTACH PARTITION {table} FOR VALUES FROM ({lo}) TO ({hi})"),
        ];
        for sql in statements {
            sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tracing::info!(partition = %table, "partition created; its events moved out of the default partition");
    } else {
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE {table} PARTITION OF audit_events FOR VALUES FROM ({lo}) TO ({hi})"
        )))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tracing::info!(partition = %table, "partition created");
    }
    tx.commit().await.map_err(map_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn window_spans_three_months_each_side_across_year_ends() {
        let now = Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).single().expect("time");
        let names: Vec<String> = window(now).into_iter().map(Month::table).collect();
        assert_eq!(
            names,
            [
                "audit_events_p2025_10",
                "audit_events_p2025_11",
                "audit_events_p2025_12",
                "audit_events_p2026_01",
                "audit_events_p2026_02",
                "audit_events_p2026_03",
                "audit_events_p2026_04"
            ]
        );
    }

    #[test]
    fn partition_names_parse_back_to_their_month_and_nothing_else_does() {
        let m = Month::of(Utc.with_ymd_and_hms(2026, 3, 9, 0, 0, 0).single().expect("time"));
        assert_eq!(Month::from_table(&m.table()), Some(m));
        for other in [
            "audit_events_default",
            "audit_events_p2026_13",
            "audit_events_p26_01",
            "x; DROP TABLE y",
        ] {
            assert_eq!(Month::from_table(other), None, "{other}");
        }
    }

    #[test]
    fn bounds_are_utc_month_starts() {
        let december = Month::of(Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).single().expect("time"));
        assert_eq!(
            december.bounds(),
            Some((
                "'2026-12-01 00:00:00+00'".to_owned(),
                "'2027-01-01 00:00:00+00'".to_owned()
            ))
        );
    }
}
