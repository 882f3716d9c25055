//! Batching: which formatted events go into the next request, and how they are framed and
//! compressed.
//!
//! The [`Buffer`] holds the events read from the store after the sink's cursor, already
//! formatted, in `seq` order. A request is cut from its front when it holds `max_events`
//! events, when the next document would push the body past `max_bytes` (uncompressed, as the
//! vendors count), or when its oldest event has waited `max_wait`. Events are only removed
//! from the buffer once the request carrying them settled (delivered or dead-lettered), so the
//! cursor can follow.
//!
//! Framing per protocol ([`Framing`]): Splunk HEC takes envelopes *stacked* (`{…}{…}`, no
//! array, no separator), Datadog a JSON array, the generic HTTP sink newline-delimited JSON.

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use uuid::Uuid;

use super::transport::RequestBody;

/// How documents are joined into one request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Concatenated JSON objects (Splunk HEC).
    Stacked,
    /// `[doc,doc,…]` (Datadog).
    JsonArray,
    /// One document per line, each line ending in `\n`.
    Ndjson,
}

impl Framing {
    pub fn content_type(self) -> &'static str {
        match self {
            Framing::Stacked | Framing::JsonArray => "application/json",
            Framing::Ndjson => "application/x-ndjson",
        }
    }

    /// Body size of `docs` documents totalling `doc_bytes`.
    pub fn body_len(self, docs: usize, doc_bytes: usize) -> usize {
        match self {
            Framing::Stacked => doc_bytes,
            Framing::JsonArray => doc_bytes + 2 + docs.saturating_sub(1),
            Framing::Ndjson => doc_bytes + docs,
        }
    }

    /// Frame `docs` and compress when asked.
    pub fn encode<'a>(self, docs: impl Iterator<Item = &'a str> + Clone, gzip: bool) -> RequestBody {
        let (count, bytes) = docs.clone().fold((0, 0), |(n, b), d| (n + 1, b + d.len()));
        let mut raw = Vec::with_capacity(self.body_len(count, bytes));
        match self {
            Framing::Stacked => docs.for_each(|d| raw.extend_from_slice(d.as_bytes())),
            Framing::JsonArray => {
                raw.push(b'[');
                for (i, d) in docs.enumerate() {
                    if i > 0 {
                        raw.push(b',');
                    }
                    raw.extend_from_slice(d.as_bytes());
                }
                raw.push(b']');
            }
            Framing::Ndjson => docs.for_each(|d| {
                raw.extend_from_slice(d.as_bytes());
                raw.push(b'\n');
            }),
        }
        let uncompressed = raw.len();
        if !gzip {
            return RequestBody {
                bytes: raw.into(),
                uncompressed,
                gzip: false,
            };
        }
        // Level 6 (the default): a third of the CPU of level 9 for nearly the same size on
        // JSON; writing into a Vec cannot fail.
        let mut enc = GzEncoder::new(Vec::with_capacity(uncompressed / 4), Compression::default());
        let compressed = enc.write_all(&raw).and_then(|()| enc.finish());
        match compressed {
            Ok(bytes) => RequestBody {
                bytes: bytes.into(),
                uncompressed,
                gzip: true,
            },
            Err(_) => RequestBody {
                bytes: raw.into(),
                uncompressed,
                gzip: false,
            },
        }
    }
}

/// When a request is cut.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub max_wait: Duration,
}

/// One event read from the store, waiting for its request.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: i64,
    pub event_id: Uuid,
    /// The formatted document; `None` when formatting failed and the event was dead-lettered
    /// already (it still occupies its place so the cursor passes it in order).
    pub doc: Option<String>,
    /// When it was read: the batch's age is its oldest event's.
    pub since: Instant,
}

/// The events after the cursor that were read and formatted, in `seq` order.
#[derive(Debug, Default)]
pub struct Buffer {
    items: VecDeque<Pending>,
    /// The highest `seq` read into the buffer (the cursor while it is empty).
    read_upto: i64,
}

impl Buffer {
    pub fn new(cursor: i64) -> Buffer {
        Buffer {
            items: VecDeque::new(),
            read_upto: cursor,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Read more events after this `seq`.
    pub fn read_upto(&self) -> i64 {
        self.read_upto
    }

    pub fn push(&mut self, item: Pending) {
        self.read_upto = self.read_upto.max(item.seq);
        self.items.push_back(item);
    }

    /// Only the reader's progress moved (e.g. the events it read were skipped).
    pub fn mark_read(&mut self, seq: i64) {
        self.read_upto = self.read_upto.max(seq);
    }

    /// How many front items make the next request, if it should go now.
    pub fn ready(&self, limits: &BatchLimits, framing: Framing, now: Instant) -> Option<usize> {
        let front = self.items.front()?;
        let (mut count, mut docs, mut bytes, mut full) = (0usize, 0usize, 0usize, false);
        for item in &self.items {
            if count == limits.max_events {
                full = true;
                break;
            }
            if let Some(doc) = &item.doc {
                let grown = framing.body_len(docs + 1, bytes + doc.len());
                if grown > limits.max_bytes && docs > 0 {
                    full = true;
                    break;
                }
                docs += 1;
                bytes += doc.len();
            }
            count += 1;
        }
        full |= count == limits.max_events;
        // Nothing to send (all dead-lettered at formatting): just let the cursor pass them.
        let nothing_to_send = docs == 0;
        let waited = now.saturating_duration_since(front.since) >= limits.max_wait;
        (full || waited || nothing_to_send).then_some(count)
    }

    /// The first `n` items.
    pub fn front(&self, n: usize) -> impl Iterator<Item = &Pending> + Clone {
        self.items.iter().take(n)
    }

    /// Remove the first `n` items (they settled); returns the last removed `seq`.
    pub fn settle(&mut self, n: usize) -> Option<i64> {
        let mut last = None;
        for _ in 0..n.min(self.items.len()) {
            last = self.items.pop_front().map(|p| p.seq);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn item(seq: i64, doc: &str, since: Instant) -> Pending {
        Pending {
            seq,
            event_id: Uuid::now_v7(),
            doc: Some(doc.to_owned()),
            since,
        }
    }

    #[test]
    fn framing_matches_each_protocol() {
        let docs = ["{\"a\":1}", "{\"b\":2}"];
        let stacked = Framing::Stacked.encode(docs.iter().copied(), false);
        assert_eq!(&stacked.bytes[..], b"{\"a\":1}{\"b\":2}");
        let array = Framing::JsonArray.encode(docs.iter().copied(), false);
        assert_eq!(&array.bytes[..], b"[{\"a\":1},{\"b\":2}]");
        assert_eq!(array.uncompressed, Framing::JsonArray.body_len(2, 14));
        let ndjson = Framing::Ndjson.encode(docs.iter().copied(), true);
        assert!(ndjson.gzip);
        let mut text = String::new();
        flate2::read::GzDecoder::new(&ndjson.bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(ndjson.uncompressed, text.len());
    }

    #[test]
    fn a_batch_is_cut_by_count_bytes_or_age() {
        let t0 = Instant::now();
        let limits = BatchLimits {
            max_events: 3,
            max_bytes: 1024,
            max_wait: Duration::from_secs(1),
        };
        let mut b = Buffer::new(0);
        b.push(item(1, "{}", t0));
        b.push(item(2, "{}", t0));
        assert_eq!(b.ready(&limits, Framing::Stacked, t0), None, "young and not full");
        assert_eq!(
            b.ready(&limits, Framing::Stacked, t0 + Duration::from_secs(1)),
            Some(2),
            "old enough"
        );
        b.push(item(3, "{}", t0));
        b.push(item(4, "{}", t0));
        assert_eq!(b.ready(&limits, Framing::Stacked, t0), Some(3), "full by count");
        let big = "x".repeat(600);
        let mut b = Buffer::new(0);
        b.push(item(1, &big, t0));
        b.push(item(2, &big, t0));
        assert_eq!(b.ready(&limits, Framing::Stacked, t0), Some(1), "full by bytes");
        assert_eq!(b.settle(1), Some(1));
        assert_eq!(b.read_upto(), 2);
        // A single document over the limit still makes a request of its own (the delivery
        // dead-letters it as too large).
        let mut b = Buffer::new(0);
        b.push(item(1, &"y".repeat(2000), t0));
        b.push(item(2, "{}", t0));
        assert_eq!(b.ready(&limits, Framing::Stacked, t0), Some(1));
    }

    #[test]
    fn dead_lettered_items_pass_without_waiting() {
        let t0 = Instant::now();
        let limits = BatchLimits {
            max_events: 10,
            max_bytes: 1024,
            max_wait: Duration::from_secs(5),
        };
        let mut b = Buffer::new(0);
        b.push(Pending {
            seq: 1,
            event_id: Uuid::now_v7(),
            doc: None,
            since: t0,
        });
        assert_eq!(b.ready(&limits, Framing::Ndjson, t0), Some(1));
    }
}
