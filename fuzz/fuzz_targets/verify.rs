//! `auditflow verify` on corrupted SQLite stores.
//!
//! A small store is built once with the host's store API (events in three batches, signed
//! checkpoints, a retention run that removed the oldest events under a signed record). Each
//! input is a list of corruptions applied to a fresh copy of it, as someone with write access
//! to the database would: through SQL with the append-only triggers dropped (set a column of
//! an event, checkpoint or retention row to a chosen value, flip a bit of one, delete a row,
//! insert a copy of an event under another `seq` and event id) or by flipping bits of the
//! file itself. Then the store is opened and verified with the signing key as trusted key.
//!
//! Properties: opening and verifying never panic or hang (libFuzzer's `-timeout`); the
//! corruptions that verify must catch by construction are caught: deleting an event row
//! (while the checkpoints are intact: the newest rows are covered by one only), inserting a
//! forged one, changing a row's `hash` or `prev_hash`, or changing any other column of an
//! event to a different integer or text value (every column is in the hashed canonical bytes;
//! the chain is signed to its end), except `event_id` and `metadata`, whose text has other
//! spellings of the same value. Anything else may pass or be reported, but must not crash.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use auditflow::store::checkpoint::{CheckpointSigner, Checkpointing};
use auditflow::store::retention::RetentionRequest;
use auditflow::store::{self, contract, verify};
use auditflow_fuzz::runtime;
use libfuzzer_sys::fuzz_target;
// Table and column names in the SQL below come from the constant lists in this file; every
// value is a bind parameter.
use sqlx::{AssertSqlSafe, Connection, Row, SqliteConnection};

/// The template store: its directory (kept for the process) and the trusted public key.
struct Template {
    dir: tempfile::TempDir,
    key: ed25519_dalek::VerifyingKey,
}

const FILES: [&str; 3] = ["store.db", "store.db-wal", "store.db-shm"];

/// Columns of `audit_events`, in table order.
const EVENT_COLUMNS: [&str; 20] = [
    "seq",
    "event_id",
    "event_type",
    "ts_us",
    "actor_type",
    "actor_id",
    "agent_id",
    "server_name",
    "tool_name",
    "decision",
    "outcome",
    "reason",
    "request_id",
    "correlation_id",
    "source_ip",
    "source",
    "metadata",
    "received_us",
    "prev_hash",
    "hash",
];
const CHECKPOINT_COLUMNS: [&str; 5] = ["seq", "head_hash", "created_us", "key_id", "signature"];
const RETENTION_COLUMNS: [&str; 8] = [
    "cutoff_us",
    "head_seq",
    "head_hash",
    "created_us",
    "removed",
    "runs",
    "key_id",
    "signature",
];

fuzz_target!(|data: &[u8]| {
    let template = template();
    let scratch = tempfile::tempdir().expect("a temporary directory");
    for name in FILES {
        let from = template.dir.path().join(name);
        if from.exists() {
            std::fs::copy(&from, scratch.path().join(name)).expect("copy the template store");
        }
    }
    let db = scratch.path().join("store.db");
    let must_detect = runtime().block_on(corrupt(&db, data));

    let url = format!("sqlite://{}", db.display());
    let outcome = runtime().block_on(async {
        let store = store::open_existing(&url).await?;
        verify::verify(&*store, &[template.key]).await
    });
    if must_detect {
        // Not readable at all, or read and found broken: either way, not "chain ok".
        if let Ok(report) = &outcome {
            assert!(
                !report.is_ok(),
                "verify passed a store whose chain was tampered with: {report}"
            );
        }
    }
});

/// Apply the corruptions `data` encodes to the database at `db`; whether one of them is a
/// change verify must report.
async fn corrupt(db: &Path, data: &[u8]) -> bool {
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the copy");
    for trigger in [
        "audit_events_no_update",
        "chain_checkpoints_no_update",
        "retention_records_no_update",
    ] {
        sqlx::query(AssertSqlSafe(format!("DROP TRIGGER IF EXISTS {trigger}")))
            .execute(&mut conn)
            .await
            .expect("drop a trigger");
    }
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit_events ORDER BY seq")
        .fetch_all(&mut conn)
        .await
        .expect("read the seqs");
    let mut must_detect = false;
    // Deleting the newest rows is detectable only while the checkpoint over them is intact.
    let mut deleted = false;
    let mut checkpoints_touched = false;
    let mut file_flips = Vec::new();
    let mut ops = data;
    while let [op, a, b, rest @ ..] = ops {
        ops = rest;
        let seq = seqs.get(usize::from(*a) % seqs.len()).copied().unwrap_or(1);
        match op % 7 {
            0 => {
                // Set an event column to a value taken from the input.
                let column = EVENT_COLUMNS[usize::from(*b) % EVENT_COLUMNS.len()];
                let (value, rest) = value(ops);
                ops = rest;
                must_detect |= set(&mut conn, "audit_events", column, seq, &value).await
                    && !matches!(column, "event_id" | "metadata");
            }
            1 => {
                // Flip one bit of an event column (as text, integer or blob, as stored).
                let column = EVENT_COLUMNS[usize::from(*b) % EVENT_COLUMNS.len()];
                let Some((&bit, rest)) = ops.split_first() else { break };
                ops = rest;
                must_detect |= flip(&mut conn, "audit_events", column, seq, bit).await
                    && !matches!(column, "event_id" | "metadata");
            }
            2 => {
                let done = sqlx::query("DELETE FROM audit_events WHERE seq = ?")
                    .bind(seq)
                    .execute(&mut conn)
                    .await
                    .is_ok_and(|r| r.rows_affected() > 0);
                deleted |= done;
            }
            3 => {
                // A forged row: a copy of an event under another seq and a new event id.
                let to = i64::from(*b) - 8;
                let columns = EVENT_COLUMNS[2..].join(", ");
                let done = sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO audit_events (seq, event_id, {columns}) SELECT ?, ?, {columns} FROM audit_events WHERE seq = ?"
                )))
                .bind(to)
                .bind(format!("01950000-0000-7000-8000-00000000f{:03x}", to.rem_euclid(4096)))
                .bind(seq)
                .execute(&mut conn)
                .await
                .is_ok_and(|r| r.rows_affected() > 0);
                must_detect |= done;
            }
            4 | 5 => {
                // A checkpoint or retention record: set a column to a value from the input,
                // flip a bit of one, or delete the row.
                let (table, columns) = if op % 7 == 4 {
                    ("chain_checkpoints", &CHECKPOINT_COLUMNS[..])
                } else {
                    ("retention_records", &RETENTION_COLUMNS[..])
                };
                let column = columns[usize::from(*b) % columns.len()];
                let row: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT {key} FROM {table} ORDER BY {key} LIMIT 1 OFFSET ?",
                    key = key_column(table)
                )))
                .bind(i64::from(*a % 4))
                .fetch_optional(&mut conn)
                .await
                .ok()
                .flatten();
                let Some(row) = row else { continue };
                checkpoints_touched |= table == "chain_checkpoints";
                match *a >> 6 {
                    0 => {
                        let _ = sqlx::query(AssertSqlSafe(format!(
                            "DELETE FROM {table} WHERE {} = ?",
                            key_column(table)
                        )))
                        .bind(row)
                        .execute(&mut conn)
                        .await;
                    }
                    1 => {
                        let Some((&bit, rest)) = ops.split_first() else { break };
                        ops = rest;
                        flip(&mut conn, table, column, row, bit).await;
                    }
                    _ => {
                        let (value, rest) = value(ops);
                        ops = rest;
                        set(&mut conn, table, column, row, &value).await;
                    }
                }
            }
            _ => file_flips.push((
                usize::from(*a) << 8 | usize::from(*b),
                ops.first().copied().unwrap_or(1),
            )),
        }
    }
    conn.close().await.expect("close the copy");
    must_detect |= deleted && !checkpoints_touched;
    if !file_flips.is_empty() {
        flip_file(db, &file_flips);
        // A flipped page may be a free one, or an index only: nothing to require.
        must_detect = false;
    }
    must_detect
}

/// A value to store: a tag byte (NULL, integer, text, blob), a length byte, the bytes.
enum SqlValue {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

fn value(data: &[u8]) -> (SqlValue, &[u8]) {
    let [tag, len, rest @ ..] = data else {
        return (SqlValue::Null, &[]);
    };
    let n = usize::from(*len).min(rest.len());
    let (bytes, rest) = rest.split_at(n);
    let v = match tag % 4 {
        0 => SqlValue::Null,
        1 => {
            let mut b = [0u8; 8];
            b[..n.min(8)].copy_from_slice(&bytes[..n.min(8)]);
            SqlValue::Int(i64::from_le_bytes(b))
        }
        2 => SqlValue::Text(String::from_utf8_lossy(bytes).into_owned()),
        _ => SqlValue::Blob(bytes.to_vec()),
    };
    (v, rest)
}

/// Set `column` of the row `key` (its seq) to `v`; whether the stored value changed to a
/// different integer or text (a NULL for NULL, or a type STRICT refuses, changes nothing).
async fn set(conn: &mut SqliteConnection, table: &str, column: &str, key: i64, v: &SqlValue) -> bool {
    let before = read(conn, table, column, key).await;
    let sql = format!("UPDATE {table} SET {column} = ? WHERE {} = ?", key_column(table));
    let q = sqlx::query(AssertSqlSafe(sql));
    let q = match v {
        SqlValue::Null => q.bind(None::<String>),
        SqlValue::Int(i) => q.bind(*i),
        SqlValue::Text(s) => q.bind(s.clone()),
        SqlValue::Blob(b) => q.bind(b.clone()),
    };
    if !q.execute(&mut *conn).await.is_ok_and(|r| r.rows_affected() > 0) {
        return false;
    }
    let after = read(conn, table, column, key).await;
    before.is_some() && after.is_some() && before != after
}

/// Flip `bit` (mod the value's bit length) of `column` of the row `key`, keeping its type;
/// whether the value changed.
async fn flip(conn: &mut SqliteConnection, table: &str, column: &str, key: i64, bit: u8) -> bool {
    let Some(before) = read(conn, table, column, key).await else {
        return false;
    };
    let flipped = match &before {
        Stored::Int(i) => SqlValue::Int(i ^ (1 << (bit % 64))),
        Stored::Text(s) => {
            let mut b = s.clone().into_bytes();
            if b.is_empty() {
                return false;
            }
            let at = usize::from(bit) % b.len();
            b[at] ^= 1 << (bit % 7);
            // Keep it text: a flip that breaks UTF-8 is skipped.
            match String::from_utf8(b) {
                Ok(s) => SqlValue::Text(s),
                Err(_) => return false,
            }
        }
        Stored::Blob(b) => {
            let mut b = b.clone();
            if b.is_empty() {
                return false;
            }
            let at = usize::from(bit) % b.len();
            b[at] ^= 1 << (bit % 8);
            SqlValue::Blob(b)
        }
    };
    set(conn, table, column, key, &flipped).await
}

/// The column that names a row of `table`.
fn key_column(table: &str) -> &'static str {
    if table == "retention_records" { "id" } else { "seq" }
}

/// A stored value, NULL as `None`.
#[derive(PartialEq)]
enum Stored {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

async fn read(conn: &mut SqliteConnection, table: &str, column: &str, key: i64) -> Option<Stored> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {column}, typeof({column}) FROM {table} WHERE {} = ?",
        key_column(table)
    )))
    .bind(key)
    .fetch_optional(&mut *conn)
    .await
    .ok()??;
    let kind: String = row.try_get(1).ok()?;
    match kind.as_str() {
        "integer" => row.try_get(0).ok().map(Stored::Int),
        "text" => row.try_get(0).ok().map(Stored::Text),
        "blob" => row.try_get(0).ok().map(Stored::Blob),
        _ => None,
    }
}

/// Flip bits of the database file itself at the given offsets (mod its length).
fn flip_file(db: &Path, flips: &[(usize, u8)]) {
    let Ok(mut bytes) = std::fs::read(db) else { return };
    if bytes.is_empty() {
        return;
    }
    for &(offset, mask) in flips {
        // Spread the 16-bit offset over the whole file.
        let at = offset.wrapping_mul(bytes.len()) >> 16;
        let last = bytes.len() - 1;
        bytes[at.min(last)] ^= mask.max(1);
    }
    std::fs::write(db, bytes).expect("write the flipped file");
}

/// Build the template store once per process.
fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path: PathBuf = dir.path().join("store.db");
        let signer = CheckpointSigner::generate().expect("a signing key");
        let key = signer.verifying_key();
        let retention_signer =
            CheckpointSigner::parse(&signer.private_key_hex(), "the template key").expect("its own key");
        runtime().block_on(async {
            let store = store::open(&format!("sqlite://{}", path.display()))
                .await
                .expect("open the template store");
            store
                .enable_checkpoints(Arc::new(Checkpointing {
                    signer,
                    every_events: 4,
                    every: Duration::from_secs(3600),
                }))
                .expect("checkpoints");
            let at = contract::base_time() + chrono::Duration::hours(1);
            for batch in [0..3u32, 3..7, 7..10] {
                let events: Vec<_> = batch.map(contract::full_event).collect();
                store.append(&events, at).await.expect("append");
            }
            store.checkpoint().await.expect("sign the head");
            let request = RetentionRequest {
                cutoff: contract::base_time() + chrono::Duration::seconds(2),
                keep_after_seq: 3,
                dry_run: false,
            };
            let removed = store
                .apply_retention(request, &retention_signer)
                .await
                .expect("retention");
            assert!(removed.removed > 0, "the template's retention removed nothing");
            let report = verify::verify(&*store, &[key]).await.expect("verify the template");
            assert!(report.is_ok(), "the template store does not verify: {report}");
        });
        Template { dir, key }
    })
}
