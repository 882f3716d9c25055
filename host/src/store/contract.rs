//! The store contract as executable checks: every backend runs these against a fresh, empty
//! store (SQLite in `sqlite/tests.rs`; PostgreSQL with the same functions when it lands).
//!
//! Each function takes a new store, panics with a message naming the broken promise, and is
//! public so backends outside this module (and integration tests) can call it. Not part of the
//! supported API, hence `#[doc(hidden)]` on the module.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use uuid::Uuid;

use super::chain::{ChainedEvent, GENESIS, canonical_bytes, link};
use super::{Appended, EventQuery, Store};
use crate::event::{Actor, Decision, Event, StoredEvent};

/// Event time of [`event`]`(0)`; event `n` happens `n` seconds later.
pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).single().unwrap_or_default()
}

/// A small, valid event numbered `n`: a fixed id derived from `n`, the time
/// `base_time() + n s`, and every other optional field absent.
pub fn event(n: u32) -> Event {
    Event {
        event_id: Uuid::from_u128(0x0195_0000_0000_7000_8000_0000_0000_0000 | u128::from(n)),
        event_type: "tool.call".into(),
        timestamp: base_time() + Duration::seconds(i64::from(n)),
        actor: None,
        agent_id: None,
        server_name: None,
        tool_name: None,
        decision: None,
        outcome: None,
        reason: None,
        request_id: None,
        correlation_id: None,
        source_ip: None,
        source: "contract".into(),
        metadata: serde_json::Map::new(),
    }
}

/// Events `0..n`.
pub fn events(n: u32) -> Vec<Event> {
    (0..n).map(event).collect()
}

/// An event with every field set, including awkward values.
pub fn full_event(n: u32) -> Event {
    let metadata = json!({
        "tool_args": {"path": "/etc/hosts", "flags": ["-r", "-n"], "depth": 3},
        "ratio": 0.25,
        "big": 9_007_199_254_740_993_u64,
        "negative": -17,
        "unicode": "żółw 🐢 \u{0007}",
        "empty": {},
        "nothing": null,
        "yes": true
    });
    Event {
        actor: Some(Actor {
            kind: Some("user".into()),
            id: Some(format!("user-{n}")),
        }),
        agent_id: Some("agent-1".into()),
        server_name: Some("filesystem".into()),
        tool_name: Some("read_file".into()),
        decision: Some(Decision::Deny),
        outcome: Some("blocked".into()),
        reason: Some("policy: no /etc".into()),
        request_id: Some(format!("req-{n}")),
        correlation_id: Some(format!("corr-{n}")),
        source_ip: Some("2001:db8::1".into()),
        source: "gateway-prod".into(),
        timestamp: base_time() + Duration::microseconds(i64::from(n) * 1_000_001),
        metadata: metadata.as_object().cloned().unwrap_or_default(),
        ..event(n)
    }
}

fn received(n: i64) -> DateTime<Utc> {
    base_time() + Duration::hours(1) + Duration::microseconds(n)
}

fn all() -> EventQuery {
    EventQuery {
        limit: 1_000_000,
        ..EventQuery::default()
    }
}

fn seqs(rows: &[StoredEvent]) -> Vec<i64> {
    rows.iter().map(|r| r.seq).collect()
}

/// Every stored event, in seq order, with its links.
pub async fn read_whole_chain(store: &dyn Store) -> Vec<ChainedEvent> {
    let mut out: Vec<ChainedEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |c| c.event.seq);
        let page = store.chain(after, 500).await.expect("chain read");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Seqs are 1..=n without gaps, the first link starts at GENESIS, each `prev_hash` is the
/// previous `hash`, and each `hash` recomputes from the row's own canonical bytes.
pub async fn assert_chain_verifies(store: &dyn Store) -> Vec<ChainedEvent> {
    let chain = read_whole_chain(store).await;
    let mut prev = GENESIS;
    for (i, link_row) in chain.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        assert_eq!(link_row.event.seq, expected_seq, "seq has a gap or is out of order");
        assert_eq!(
            link_row.prev_hash, prev,
            "prev_hash of seq {expected_seq} is not the previous hash"
        );
        let recomputed = link(&prev, &canonical_bytes(&link_row.event));
        assert_eq!(
            link_row.hash, recomputed,
            "hash of seq {expected_seq} does not match its row"
        );
        prev = link_row.hash;
    }
    assert_eq!(
        store.count().await.expect("count"),
        chain.len() as i64,
        "count disagrees with the chain"
    );
    chain
}

/// What a stored event must read back as: the same fields, time truncated to microseconds.
fn expected(seq: i64, received_at: DateTime<Utc>, event: &Event) -> StoredEvent {
    StoredEvent {
        seq,
        received_at: crate::event::to_micros(received_at),
        event: event.clone(),
    }
}

pub async fn round_trip_preserves_every_field(store: Arc<dyn Store>) {
    let full = full_event(1);
    let minimal = event(2);
    let mut actor_without_type = event(3);
    actor_without_type.actor = Some(Actor {
        kind: None,
        id: Some("svc-9".into()),
    });
    let mut empty_strings = event(4);
    empty_strings.reason = Some(String::new());
    empty_strings.outcome = Some(String::new());
    let batch = vec![
        full.clone(),
        minimal.clone(),
        actor_without_type.clone(),
        empty_strings.clone(),
    ];

    let results = store.append(&batch, received(0)).await.expect("append");
    let want = (1..=4).map(|seq| Appended::Stored { seq }).collect::<Vec<_>>();
    assert_eq!(results, want);

    let rows = store.query(&all()).await.expect("query");
    assert_eq!(
        rows,
        vec![
            expected(1, received(0), &full),
            expected(2, received(0), &minimal),
            expected(3, received(0), &actor_without_type),
            expected(4, received(0), &empty_strings),
        ],
        "events did not read back field for field"
    );
}

pub async fn received_at_is_stamped_per_batch(store: Arc<dyn Store>) {
    store.append(&events(2), received(5)).await.expect("append 1");
    store.append(&[event(2)], received(9)).await.expect("append 2");
    let rows = store.query(&all()).await.expect("query");
    let got: Vec<_> = rows.iter().map(|r| r.received_at).collect();
    assert_eq!(got, vec![received(5), received(5), received(9)]);
}

pub async fn resent_event_is_stored_once(store: Arc<dyn Store>) {
    let first = store.append(&[event(1), event(2)], received(0)).await.expect("append");
    assert_eq!(first, vec![Appended::Stored { seq: 1 }, Appended::Stored { seq: 2 }]);

    // A resend carrying a changed body is still the same event: the first copy wins.
    let mut changed = event(2);
    changed.reason = Some("resent".into());
    let second = store.append(&[changed, event(3)], received(1)).await.expect("resend");
    assert_eq!(second, vec![Appended::Duplicate, Appended::Stored { seq: 3 }]);

    let again = store
        .append(&[event(1), event(2), event(3)], received(2))
        .await
        .expect("resend all");
    assert_eq!(again, vec![Appended::Duplicate; 3]);

    let rows = store.query(&all()).await.expect("query");
    assert_eq!(rows.len(), 3, "a resent event was stored twice");
    assert_eq!(rows[1].event.reason, None, "the resend overwrote the stored event");
    assert_chain_verifies(&*store).await;
}

/// Idempotency is per source: the same `event_id` from another source is another event, in
/// another batch or in the same one, and each source's resend is still a duplicate.
pub async fn same_id_from_two_sources_is_two_events(store: Arc<dyn Store>) {
    let from = |source: &str| Event {
        source: source.into(),
        ..event(1)
    };
    let first = store.append(&[from("a")], received(0)).await.expect("a");
    assert_eq!(first, vec![Appended::Stored { seq: 1 }]);
    let second = store
        .append(&[from("b"), from("a"), from("b"), from("c")], received(1))
        .await
        .expect("b");
    assert_eq!(
        second,
        vec![
            Appended::Stored { seq: 2 },
            Appended::Duplicate,
            Appended::Duplicate,
            Appended::Stored { seq: 3 }
        ]
    );
    let rows = store.query(&all()).await.expect("query");
    let sources: Vec<_> = rows.iter().map(|r| r.event.source.as_str()).collect();
    assert_eq!(sources, ["a", "b", "c"]);
    assert_chain_verifies(&*store).await;
}

pub async fn repeated_id_within_batch_is_stored_once(store: Arc<dyn Store>) {
    let mut copy = event(1);
    copy.event_type = "copy".into();
    let results = store
        .append(&[event(1), copy, event(2), event(1)], received(0))
        .await
        .expect("append");
    assert_eq!(
        results,
        vec![
            Appended::Stored { seq: 1 },
            Appended::Duplicate,
            Appended::Stored { seq: 2 },
            Appended::Duplicate
        ]
    );
    let rows = store.query(&all()).await.expect("query");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].event, event(1), "the first copy in the batch is the one stored");
    assert_chain_verifies(&*store).await;
}

pub async fn empty_batch_stores_nothing(store: Arc<dyn Store>) {
    assert_eq!(
        store.append(&Vec::new(), received(0)).await.expect("append"),
        Vec::new()
    );
    assert_eq!(store.count().await.expect("count"), 0);
    // And the next event still starts the chain at seq 1.
    store.append(&[event(1)], received(1)).await.expect("append");
    assert_chain_verifies(&*store).await;
}

pub async fn seq_is_gapless_and_chain_links_verify(store: Arc<dyn Store>) {
    // Batches of awkward sizes (crossing any chunking a backend does), with duplicates
    // interleaved so skipped events must not consume a seq.
    let mut next = 0u32;
    let mut expected_count = 0i64;
    for (i, size) in [1u32, 2, 3, 255, 256, 257, 700].into_iter().enumerate() {
        let mut batch: Vec<Event> = (next..next + size).map(full_event).collect();
        if next > 0 {
            batch.insert(batch.len() / 2, full_event(next - 1)); // already stored
        }
        batch.push(full_event(next)); // repeated within the batch
        next += size;
        expected_count += i64::from(size);
        let results = store.append(&batch, received(i as i64)).await.expect("append");
        let stored: Vec<i64> = results
            .iter()
            .filter_map(|r| match r {
                Appended::Stored { seq } => Some(*seq),
                Appended::Duplicate => None,
            })
            .collect();
        let want: Vec<i64> = (expected_count - i64::from(size) + 1..=expected_count).collect();
        assert_eq!(stored, want, "batch {i} got non-consecutive seqs");
    }
    let chain = assert_chain_verifies(&*store).await;
    assert_eq!(chain.len() as i64, expected_count);
}

pub async fn concurrent_appends_keep_the_chain_consistent(store: Arc<dyn Store>) {
    // Only the group-commit writer appends in production, but the trait is shared: concurrent
    // callers must still get a gapless, consistent chain.
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let batch: Vec<Event> = (0..50).map(|i| event(t * 1000 + i)).collect();
            store.append(&batch, received(i64::from(t))).await
        }));
    }
    let mut seqs_seen = HashSet::new();
    for task in tasks {
        let results = task.await.expect("task").expect("append");
        for r in results {
            match r {
                Appended::Stored { seq } => assert!(seqs_seen.insert(seq), "seq {seq} handed out twice"),
                Appended::Duplicate => panic!("distinct events reported as duplicates"),
            }
        }
    }
    assert_eq!(seqs_seen.len(), 400);
    assert_chain_verifies(&*store).await;
}

/// Stores events 0..10 with distinct times (1 s apart), actors, request ids and decisions.
async fn store_query_fixture(store: &dyn Store) -> Vec<Event> {
    let batch: Vec<Event> = (0..10u32)
        .map(|n| {
            let mut e = event(n);
            e.actor = Some(Actor {
                kind: Some("user".into()),
                id: Some(format!("user-{}", n % 3)),
            });
            e.decision = match n % 3 {
                0 => Some(Decision::Allow),
                1 => Some(Decision::Deny),
                _ => None,
            };
            e.request_id = Some(format!("req-{}", n / 2));
            // Event 7 is correlated with request 1 through its correlation id only.
            if n == 7 {
                e.correlation_id = Some("req-1".into());
            }
            e
        })
        .collect();
    store.append(&batch.clone(), received(0)).await.expect("fixture append");
    batch
}

pub async fn query_filters_by_time_window(store: Arc<dyn Store>) {
    store_query_fixture(&*store).await;
    let at = |n: i64| base_time() + Duration::seconds(n);
    let q = EventQuery {
        since: Some(at(3)),
        until: Some(at(6)),
        ..all()
    };
    assert_eq!(
        seqs(&store.query(&q).await.expect("query")),
        vec![4, 5, 6],
        "since is inclusive, until exclusive"
    );
    let q = EventQuery {
        since: Some(at(8)),
        ..all()
    };
    assert_eq!(seqs(&store.query(&q).await.expect("query")), vec![9, 10]);
    let q = EventQuery {
        until: Some(at(1)),
        ..all()
    };
    assert_eq!(seqs(&store.query(&q).await.expect("query")), vec![1]);
    // Microsecond precision: one µs after event 3 excludes it.
    let q = EventQuery {
        since: Some(at(3) + Duration::microseconds(1)),
        until: Some(at(5)),
        ..all()
    };
    assert_eq!(seqs(&store.query(&q).await.expect("query")), vec![5]);
}

pub async fn query_filters_by_actor(store: Arc<dyn Store>) {
    store_query_fixture(&*store).await;
    let q = EventQuery {
        actor: Some("user-1".into()),
        ..all()
    };
    assert_eq!(seqs(&store.query(&q).await.expect("query")), vec![2, 5, 8]);
    let q = EventQuery {
        actor: Some("user-".into()),
        ..all()
    };
    assert!(
        store.query(&q).await.expect("query").is_empty(),
        "actor must match exactly, not as a prefix"
    );
}

pub async fn query_matches_request_id_or_correlation_id(store: Arc<dyn Store>) {
    store_query_fixture(&*store).await;
    let q = EventQuery {
        request_id: Some("req-1".into()),
        ..all()
    };
    // Events 2 and 3 carry request_id req-1; event 7 carries it as correlation_id.
    assert_eq!(seqs(&store.query(&q).await.expect("query")), vec![3, 4, 8]);
}

pub async fn query_filters_by_decision(store: Arc<dyn Store>) {
    store_query_fixture(&*store).await;
    let q = EventQuery {
        decision: Some(Decision::Deny),
        ..all()
    };
    assert_eq!(seqs(&store.query(&q).await.expect("query")), vec![2, 5, 8]);
    let q = EventQuery {
        decision: Some(Decision::Allow),
        ..all()
    };
    assert_eq!(seqs(&store.query(&q).await.expect("query")), vec![1, 4, 7, 10]);
}

pub async fn query_combines_filters(store: Arc<dyn Store>) {
    store_query_fixture(&*store).await;
    let q = EventQuery {
        actor: Some("user-0".into()),
        decision: Some(Decision::Allow),
        since: Some(base_time() + Duration::seconds(1)),
        ..all()
    };
    assert_eq!(seqs(&store.query(&q).await.expect("query")), vec![4, 7, 10]);
}

pub async fn query_pages_with_limit_and_after_seq(store: Arc<dyn Store>) {
    store_query_fixture(&*store).await;
    let page = |after_seq, limit| EventQuery {
        after_seq,
        limit,
        ..EventQuery::default()
    };
    assert_eq!(seqs(&store.query(&page(None, 3)).await.expect("query")), vec![1, 2, 3]);
    assert_eq!(
        seqs(&store.query(&page(Some(3), 3)).await.expect("query")),
        vec![4, 5, 6]
    );
    assert_eq!(seqs(&store.query(&page(Some(9), 3)).await.expect("query")), vec![10]);
    assert!(store.query(&page(Some(10), 3)).await.expect("query").is_empty());
    assert!(
        store.query(&page(None, 0)).await.expect("query").is_empty(),
        "limit 0 returns nothing"
    );
    assert!(
        store.query(&page(None, -1)).await.expect("query").is_empty(),
        "a negative limit is not 'unlimited'"
    );
    // Paging composes with filters.
    let q = EventQuery {
        decision: Some(Decision::Allow),
        after_seq: Some(4),
        limit: 1,
        ..EventQuery::default()
    };
    assert_eq!(seqs(&store.query(&q).await.expect("query")), vec![7]);
}

pub async fn count_and_ping_answer(store: Arc<dyn Store>) {
    store.ping().await.expect("ping on an empty store");
    assert_eq!(store.count().await.expect("count"), 0);
    store.append(&events(5), received(0)).await.expect("append");
    store.append(&events(7), received(1)).await.expect("append");
    assert_eq!(store.count().await.expect("count"), 7);
    store.ping().await.expect("ping");
}
