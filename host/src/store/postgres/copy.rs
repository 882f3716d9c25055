//! `audit_events` rows in PostgreSQL's binary `COPY` format: the writer's bulk insert (one
//! `COPY` per batch instead of one `INSERT` per event) and the benchmark's raw ceiling.
//!
//! Binary rather than text: no escaping of tabs, newlines and backslashes in free-text fields,
//! no decimal formatting of times, and the server skips text parsing for every column but
//! `jsonb` (whose binary form is a version byte followed by the JSON text).
//!
//! Format (PostgreSQL docs, "COPY — Binary Format"): a fixed signature, flags and header
//! extension length; per row a 16-bit column count and, per column, a 32-bit byte length (-1 for
//! NULL) followed by the value's binary send format; a 16-bit -1 trailer.

use chrono::{DateTime, Utc};

use crate::event::Event;

/// The statement the buffer is made for: the columns in this order.
pub const COPY_AUDIT_EVENTS: &str = "COPY audit_events (seq, event_id, event_type, \"timestamp\", actor_type, \
     actor_id, agent_id, server_name, tool_name, decision, outcome, reason, request_id, correlation_id, source_ip, \
     source, metadata, received_at, prev_hash, hash) FROM STDIN (FORMAT binary)";

const COLUMNS: i16 = 20;

/// 11-byte signature, 32-bit flags (no OIDs), 32-bit header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01T00:00:00Z).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// The jsonb binary format version.
const JSONB_VERSION: u8 = 1;

/// A `COPY` payload being built, row by row.
pub struct CopyBuffer {
    buf: Vec<u8>,
    rows: usize,
}

impl Default for CopyBuffer {
    fn default() -> Self {
        CopyBuffer::with_capacity(0)
    }
}

impl CopyBuffer {
    /// An empty payload with room for about `rows` typical rows.
    pub fn with_capacity(rows: usize) -> CopyBuffer {
        let mut buf = Vec::with_capacity(HEADER.len() + rows * 512 + 2);
        buf.extend_from_slice(HEADER);
        CopyBuffer { buf, rows: 0 }
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Append the row of event `e` stored as `seq` at `received_at`. `metadata_json` must be
    /// the event's metadata as JSON text (the writer passes its canonical JSON).
    pub fn push(
        &mut self,
        seq: i64,
        received_at: DateTime<Utc>,
        e: &Event,
        metadata_json: &str,
        prev_hash: &[u8; 32],
        hash: &[u8; 32],
    ) {
        let b = &mut self.buf;
        b.extend_from_slice(&COLUMNS.to_be_bytes());
        put_i64(b, seq);
        put_bytes(b, e.event_id.as_bytes());
        put_bytes(b, e.event_type.as_bytes());
        put_time(b, e.timestamp.timestamp_micros());
        put_opt(b, e.actor_type());
        put_opt(b, e.actor_id());
        put_opt(b, e.agent_id.as_deref());
        put_opt(b, e.server_name.as_deref());
        put_opt(b, e.tool_name.as_deref());
        put_opt(b, e.decision.map(|d| d.as_str()));
        put_opt(b, e.outcome.as_deref());
        put_opt(b, e.reason.as_deref());
        put_opt(b, e.request_id.as_deref());
        put_opt(b, e.correlation_id.as_deref());
        put_opt(b, e.source_ip.as_deref());
        put_bytes(b, e.source.as_bytes());
        put_len(b, metadata_json.len() + 1);
        b.push(JSONB_VERSION);
        b.extend_from_slice(metadata_json.as_bytes());
        put_time(b, received_at.timestamp_micros());
        put_bytes(b, prev_hash);
        put_bytes(b, hash);
        self.rows += 1;
    }

    /// The bytes pushed so far (the header first, if not yet taken), leaving the buffer empty:
    /// to stream a large `COPY` in pieces while later rows are still being encoded.
    pub fn take(&mut self) -> Vec<u8> {
        let capacity = self.buf.capacity();
        std::mem::replace(&mut self.buf, Vec::with_capacity(capacity))
    }

    /// The rest of the payload with the trailer appended, ready for `PgCopyIn::send`.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

/// The statement [`event_ids_payload`] is made for.
pub const COPY_EVENT_IDS: &str = "COPY event_ids (source, event_id, seq) FROM STDIN (FORMAT binary)";

/// `event_ids` rows (`source`, `event_id`, `seq`) as a binary `COPY` payload: cheaper for the
/// server than an `INSERT … SELECT FROM UNNEST`, because `COPY` inserts heap tuples in batches.
pub fn event_ids_payload<'a>(keys: impl ExactSizeIterator<Item = (&'a str, uuid::Uuid)>, seqs: &[i64]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER.len() + keys.len() * 60 + 2);
    b.extend_from_slice(HEADER);
    for ((source, id), seq) in keys.zip(seqs) {
        b.extend_from_slice(&3i16.to_be_bytes());
        put_bytes(&mut b, source.as_bytes());
        put_bytes(&mut b, id.as_bytes());
        put_i64(&mut b, *seq);
    }
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b
}

fn put_len(b: &mut Vec<u8>, len: usize) {
    // A field over 2 GiB cannot reach here: events are limited to far less by ingest
    // (max_event_bytes) and PostgreSQL refuses values over 1 GiB anyway. Saturate rather than
    // wrap, so an impossible value fails in the server instead of corrupting the stream.
    let len = i32::try_from(len).unwrap_or(i32::MAX);
    b.extend_from_slice(&len.to_be_bytes());
}

fn put_bytes(b: &mut Vec<u8>, v: &[u8]) {
    put_len(b, v.len());
    b.extend_from_slice(v);
}

fn put_opt(b: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => put_bytes(b, s.as_bytes()),
        None => b.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

fn put_i64(b: &mut Vec<u8>, v: i64) {
    put_len(b, 8);
    b.extend_from_slice(&v.to_be_bytes());
}

/// timestamptz: microseconds since 2000-01-01 UTC.
fn put_time(b: &mut Vec<u8>, unix_us: i64) {
    put_i64(b, unix_us.saturating_sub(PG_EPOCH_OFFSET_US));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[test]
    fn a_row_has_twenty_fields_and_nulls_for_absent_values() {
        let mut copy = CopyBuffer::with_capacity(1);
        copy.push(7, contract::base_time(), &contract::event(1), "{}", &[0; 32], &[1; 32]);
        assert_eq!(copy.rows(), 1);
        let bytes = copy.finish();
        assert!(bytes.starts_with(b"PGCOPY\n\xff\r\n\0"));
        assert!(bytes.ends_with(&[0xff, 0xff]));
        let row = &bytes[HEADER.len()..];
        assert_eq!(&row[..2], &20i16.to_be_bytes());
        // seq: length 8, then 7.
        assert_eq!(&row[2..6], &8i32.to_be_bytes());
        assert_eq!(&row[6..14], &7i64.to_be_bytes());
        // 11 optional fields are absent: eleven -1 lengths in a row after event_type and time.
        let nulls = (-1i32).to_be_bytes().repeat(11);
        assert!(row.windows(nulls.len()).any(|w| w == nulls.as_slice()));
    }

    #[test]
    fn times_count_from_the_postgres_epoch() {
        let mut b = Vec::new();
        put_time(&mut b, PG_EPOCH_OFFSET_US + 5);
        assert_eq!(b, [&8i32.to_be_bytes()[..], &5i64.to_be_bytes()[..]].concat());
    }
}
