//! Group commit against a real (in-memory SQLite) store wrapped in a test store that counts
//! appends, can hold them at a gate, can fail or panic on a chosen append, and refuses every
//! append holding an event of type `poison` for its content, as PostgreSQL refuses an index row
//! that is too large.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use super::*;
use crate::event::{Event, StoredEvent};
use crate::store::contract::{assert_chain_verifies, event};
use crate::store::{ChainedEvent, EventQuery, SqliteStore, StoreError};

/// What the test store does on its n-th append (1-based).
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Fail,
    Panic,
}

struct TestStore {
    inner: Arc<dyn Store>,
    /// Appends started (incremented before waiting at the gate).
    entered: AtomicUsize,
    /// Events per append, in call order.
    batches: Mutex<Vec<usize>>,
    /// Each append takes one permit before running; tests hand them out to release appends.
    gate: Semaphore,
    fault: Mutex<Option<(usize, Fault)>>,
}

impl TestStore {
    async fn new(gated: bool) -> Arc<TestStore> {
        let inner = Arc::new(SqliteStore::open("sqlite::memory:").await.expect("open"));
        Arc::new(TestStore {
            inner,
            entered: AtomicUsize::new(0),
            batches: Mutex::new(Vec::new()),
            gate: Semaphore::new(if gated { 0 } else { Semaphore::MAX_PERMITS }),
            fault: Mutex::new(None),
        })
    }

    fn release(&self) {
        self.gate.add_permits(1000);
    }

    fn fault_on(&self, append: usize, fault: Fault) {
        *self.fault.lock().expect("lock") = Some((append, fault));
    }

    fn batches(&self) -> Vec<usize> {
        self.batches.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Store for TestStore {
    async fn append(&self, batch: &[Event], received_at: DateTime<Utc>) -> Result<Vec<Appended>, StoreError> {
        let n = self.entered.fetch_add(1, Ordering::SeqCst) + 1;
        self.batches.lock().expect("lock").push(batch.len());
        self.gate.acquire().await.expect("gate").forget();
        let fault = *self.fault.lock().expect("lock");
        match fault {
            Some((at, Fault::Fail)) if at == n => Err(StoreError::Unavailable("injected failure".into())),
            Some((at, Fault::Panic)) if at == n => panic!("injected panic"),
            _ if batch.iter().any(|e| e.event_type == "poison") => Err(StoreError::Rejected(
                "test 54000: a value is too large for an index".into(),
            )),
            _ => self.inner.append(batch, received_at).await,
        }
    }
    async fn query(&self, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.query(q).await
    }
    async fn chain(&self, after_seq: i64, limit: i64) -> Result<Vec<ChainedEvent>, StoreError> {
        self.inner.chain(after_seq, limit).await
    }
    async fn count(&self) -> Result<i64, StoreError> {
        self.inner.count().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    fn kind(&self) -> &'static str {
        "test"
    }
}

fn config(queue_capacity: usize, max_batch_events: usize) -> GroupCommitConfig {
    GroupCommitConfig {
        queue_capacity,
        max_batch_events,
        max_wait: Duration::from_millis(2),
    }
}

/// Events numbered `from..from + n`.
fn range(from: u32, n: u32) -> Vec<Event> {
    (from..from + n).map(event).collect()
}

/// Wait (up to 10 s) until `cond` holds; the writer runs on other tasks.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn spawn_commit(gc: &GroupCommit, events: Vec<Event>) -> JoinHandle<Result<CommitReceipt, CommitError>> {
    let gc = gc.clone();
    tokio::spawn(async move { gc.commit(events).await })
}

/// Start a gated writer and park a first one-event request inside `append`, so everything
/// committed next queues up behind it.
async fn parked_writer(
    store: &Arc<TestStore>,
    cfg: GroupCommitConfig,
) -> (
    GroupCommit,
    JoinHandle<()>,
    JoinHandle<Result<CommitReceipt, CommitError>>,
) {
    let (gc, writer) = GroupCommit::start(store.clone(), cfg);
    let first = spawn_commit(&gc, vec![event(999_999)]);
    until("the first append to start", || {
        store.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    (gc, writer, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_one_transaction() {
    let store = TestStore::new(true).await;
    let (gc, _writer, first) = parked_writer(&store, config(10_000, 10_000)).await;

    let callers: Vec<_> = (0..50u32).map(|c| spawn_commit(&gc, range(c * 100, 10))).collect();
    until("all 50 requests to queue", || gc.queue_depth() == 1 + 500).await;
    store.release();

    first.await.expect("task").expect("first commit");
    for (c, caller) in callers.into_iter().enumerate() {
        let receipt = caller.await.expect("task").expect("commit");
        assert_eq!((receipt.stored, receipt.duplicates), (10, 0), "caller {c}");
        // Each caller's seqs point at its own events, in its own order.
        for (i, r) in receipt.results.iter().enumerate() {
            let Appended::Stored { seq } = *r else {
                panic!("caller {c}: unexpected duplicate")
            };
            let row = store
                .query(&EventQuery {
                    after_seq: Some(seq - 1),
                    limit: 1,
                    ..EventQuery::default()
                })
                .await
                .expect("query");
            assert_eq!(
                row[0].event.event_id,
                event(c as u32 * 100 + i as u32).event_id,
                "caller {c} got another caller's result"
            );
        }
    }
    assert_eq!(
        store.batches(),
        vec![1, 500],
        "50 queued requests were not merged into one append"
    );
    assert_eq!(gc.queue_depth(), 0, "permits were not returned");
    assert_chain_verifies(&*store).await;
}

/// A group the store refuses for one request's content is committed in halves until only the
/// poison requests fail (with `Rejected`, not `Unavailable`); everyone else's events are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_request_fails_alone_and_the_rest_of_its_group_is_stored() {
    let store = TestStore::new(true).await;
    let (gc, _writer, first) = parked_writer(&store, config(10_000, 10_000)).await;
    let poison = |n: u32| {
        let mut events = range(n, 3);
        events[1].event_type = "poison".into();
        events
    };
    let mut callers = Vec::new();
    for c in 0..16u32 {
        let events = if c == 5 || c == 11 {
            poison(c * 100)
        } else {
            range(c * 100, 3)
        };
        callers.push(spawn_commit(&gc, events));
        until("the request to queue", || gc.queue_depth() == 1 + 3 * (c as usize + 1)).await;
    }
    store.release();
    first.await.expect("task").expect("first");
    for (c, caller) in callers.into_iter().enumerate() {
        let answer = caller.await.expect("task");
        if c == 5 || c == 11 {
            match answer {
                Err(CommitError::Rejected(reason)) => assert!(reason.contains("54000"), "{reason}"),
                other => panic!("poison request {c}: {other:?}"),
            }
        } else {
            assert_eq!(answer.expect("honest request").stored, 3, "request {c}");
        }
    }
    assert_eq!(store.count().await.expect("count"), 1 + 14 * 3);
    assert_chain_verifies(&*store).await;
    // Every append of the bisection holds whole requests: 48 events in the first, then halves.
    let batches = store.batches();
    assert_eq!(batches[1], 48);
    assert!(batches.iter().all(|b| b % 3 == 0 || *b == 1), "{batches:?}");
}

/// A failure that is not about the content fails the whole group as unavailable (503), without
/// splitting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_the_whole_group_unsplit() {
    let store = TestStore::new(true).await;
    let (gc, _writer, first) = parked_writer(&store, config(10_000, 10_000)).await;
    store.fault_on(2, Fault::Fail);
    let a = spawn_commit(&gc, range(0, 2));
    until("a queued", || gc.queue_depth() == 3).await;
    let b = spawn_commit(&gc, range(10, 2));
    until("b queued", || gc.queue_depth() == 5).await;
    store.release();
    first.await.expect("task").expect("first");
    for r in [a, b] {
        assert!(matches!(r.await.expect("task"), Err(CommitError::Unavailable(_))));
    }
    assert_eq!(store.batches(), vec![1, 4], "an outage is not bisected");
}

#[tokio::test]
async fn each_caller_gets_its_own_duplicate_counts() {
    let store = TestStore::new(true).await;
    let (gc, _writer, first) = parked_writer(&store, config(1_000, 1_000)).await;

    let b = spawn_commit(&gc, vec![event(999_999), event(1), event(2)]);
    until("b queued", || gc.queue_depth() == 4).await;
    let c = spawn_commit(&gc, vec![event(2), event(3), event(3)]);
    until("c queued", || gc.queue_depth() == 7).await;
    store.release();

    first.await.expect("task").expect("first");
    let b = b.await.expect("task").expect("b");
    let c = c.await.expect("task").expect("c");
    // b: its first event was stored by the parked request; c: event 2 came first in b, and
    // event 3 repeats within c.
    assert_eq!((b.stored, b.duplicates), (2, 1));
    assert_eq!(
        b.results,
        vec![
            Appended::Duplicate,
            Appended::Stored { seq: 2 },
            Appended::Stored { seq: 3 }
        ]
    );
    assert_eq!((c.stored, c.duplicates), (1, 2));
    assert_eq!(
        c.results,
        vec![Appended::Duplicate, Appended::Stored { seq: 4 }, Appended::Duplicate]
    );
    assert_eq!(store.count().await.expect("count"), 4);
}

#[tokio::test]
async fn full_queue_answers_overloaded_at_once() {
    let store = TestStore::new(true).await;
    let (gc, _writer, first) = parked_writer(&store, config(100, 1_000)).await;

    let big = spawn_commit(&gc, range(0, 60));
    until("60 events queued", || gc.queue_depth() == 61).await;
    let refused = tokio::time::timeout(Duration::from_secs(1), gc.commit(range(100, 40)))
        .await
        .expect("a full queue must answer without waiting");
    assert_eq!(refused, Err(CommitError::Overloaded));
    // Exactly what is left still fits.
    let fits = spawn_commit(&gc, range(200, 39));
    until("the queue to be exactly full", || gc.queue_depth() == 100).await;

    store.release();
    first.await.expect("task").expect("first");
    assert_eq!(big.await.expect("task").expect("big").stored, 60);
    assert_eq!(fits.await.expect("task").expect("fits").stored, 39);
    until("the queue to drain", || gc.queue_depth() == 0).await;
    // Space is back: the refused request now succeeds.
    assert_eq!(gc.commit(range(100, 40)).await.expect("retry").stored, 40);
}

#[tokio::test]
async fn request_larger_than_the_queue_is_too_large() {
    let store = TestStore::new(false).await;
    let (gc, _writer) = GroupCommit::start(store.clone(), config(10, 5));
    assert_eq!(gc.commit(range(0, 11)).await, Err(CommitError::TooLarge));
    // Larger than a batch but within capacity is fine: it is committed whole, alone.
    assert_eq!(gc.commit(range(0, 10)).await.expect("commit").stored, 10);
    assert_eq!(store.batches(), vec![10]);
}

#[tokio::test]
async fn store_failure_refuses_the_whole_group_and_the_next_group_succeeds() {
    let store = TestStore::new(true).await;
    store.fault_on(2, Fault::Fail);
    let (gc, _writer, first) = parked_writer(&store, config(1_000, 1_000)).await;

    let b = spawn_commit(&gc, range(0, 3));
    let c = spawn_commit(&gc, range(10, 2));
    until("b and c queued", || gc.queue_depth() == 6).await;
    store.release();

    first.await.expect("task").expect("first");
    for (name, r) in [("b", b), ("c", c)] {
        match r.await.expect("task") {
            Err(CommitError::Unavailable(msg)) => assert!(msg.contains("injected failure"), "{name}: {msg}"),
            other => panic!("{name}: expected Unavailable, got {other:?}"),
        }
    }
    assert_eq!(store.batches(), vec![1, 5], "b and c were not in one group");
    assert_eq!(
        store.count().await.expect("count"),
        1,
        "a failed group stored something"
    );
    // The next group tries the database again; b's events were never stored, so they are new.
    let retry = gc.commit(range(0, 3)).await.expect("retry");
    assert_eq!((retry.stored, retry.duplicates), (3, 0));
    assert_eq!(gc.queue_depth(), 0);
}

#[tokio::test]
async fn panicking_store_refuses_the_group_and_the_writer_carries_on() {
    let store = TestStore::new(false).await;
    store.fault_on(1, Fault::Panic);
    let (gc, writer) = GroupCommit::start(store.clone(), config(100, 100));
    match gc.commit(range(0, 2)).await {
        Err(CommitError::Unavailable(msg)) => assert!(msg.contains("panicked"), "{msg}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(gc.commit(range(0, 2)).await.expect("next commit").stored, 2);
    assert!(!writer.is_finished(), "the writer died with the store's panic");
}

#[tokio::test]
async fn requests_are_never_split_across_transactions() {
    let store = TestStore::new(true).await;
    let (gc, _writer, first) = parked_writer(&store, config(1_000, 10)).await;
    let mut queued = 1;
    let mut callers = Vec::new();
    for (i, n) in [8u32, 8, 15, 1, 1].into_iter().enumerate() {
        callers.push(spawn_commit(&gc, range(i as u32 * 100, n)));
        queued += n as usize;
        until("request queued", || gc.queue_depth() == queued).await;
    }
    store.release();
    first.await.expect("task").expect("first");
    for c in callers {
        c.await.expect("task").expect("commit");
    }
    // 8 + 8 > 10, and the 15-event request goes alone (whole) rather than being cut.
    assert_eq!(store.batches(), vec![1, 8, 8, 15, 2]);
}

#[tokio::test]
async fn requests_arriving_within_max_wait_share_a_transaction() {
    let store = TestStore::new(false).await;
    let cfg = GroupCommitConfig {
        max_wait: Duration::from_millis(500),
        ..config(1_000, 1_000)
    };
    let (gc, _writer) = GroupCommit::start(store.clone(), cfg);
    let a = spawn_commit(&gc, range(0, 1));
    until("a queued", || gc.queue_depth() == 1).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b = spawn_commit(&gc, range(1, 1));
    a.await.expect("task").expect("a");
    b.await.expect("task").expect("b");
    assert_eq!(store.batches(), vec![2], "the writer did not wait for a second request");
}

#[tokio::test]
async fn empty_request_is_answered_without_a_transaction() {
    let store = TestStore::new(false).await;
    let (gc, _writer) = GroupCommit::start(store.clone(), config(10, 10));
    assert_eq!(gc.commit(Vec::new()).await.expect("commit"), CommitReceipt::default());
    assert!(store.batches().is_empty());
}

#[tokio::test]
async fn close_flushes_queued_requests_then_refuses_new_ones() {
    let store = TestStore::new(true).await;
    let (gc, writer, first) = parked_writer(&store, config(1_000, 1_000)).await;
    let b = spawn_commit(&gc, range(0, 3));
    until("b queued", || gc.queue_depth() == 4).await;

    // Another clone (say, one a slow HTTP handler still holds) must not keep the writer alive.
    let other = gc.clone();
    gc.close();
    assert_eq!(other.commit(range(10, 1)).await, Err(CommitError::ShuttingDown));

    store.release();
    first.await.expect("task").expect("queued before close");
    assert_eq!(b.await.expect("task").expect("queued before close").stored, 3);
    tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .expect("writer did not exit after close")
        .expect("writer");
    assert_eq!(store.count().await.expect("count"), 4);
    assert_eq!(other.commit(range(10, 1)).await, Err(CommitError::ShuttingDown));
}

#[tokio::test]
async fn dropping_every_handle_flushes_and_stops_the_writer() {
    let store = TestStore::new(true).await;
    let (gc, writer, first) = parked_writer(&store, config(1_000, 1_000)).await;
    let b = spawn_commit(&gc, range(0, 2));
    until("b queued", || gc.queue_depth() == 3).await;
    drop(gc);
    store.release();
    first.await.expect("task").expect("first");
    assert_eq!(b.await.expect("task").expect("b").stored, 2);
    tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .expect("writer did not exit")
        .expect("writer");
}
