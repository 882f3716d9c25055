//! Retention that `auditflow verify` survives: old events are removed only together with a
//! signed **retention record** saying exactly which rows went, so what remains still verifies and
//! removing anything else is still tampering.
//!
//! `auditflow retention apply` asks the store to remove the events older than
//! `[storage.retention] keep_days` (PostgreSQL: whole monthly partitions entirely older than the
//! cut-off, plus such rows of the DEFAULT partition; SQLite: the rows). In the same transaction,
//! under the writer's lock, the store records the removed rows as **runs** of consecutive `seq`s,
//! each with the `hash` of its last row, signs the record with the chain's checkpoint key, and
//! removes the rows. `verify` then accepts a gap in `seq` only when signed runs cover it exactly,
//! and checks the next row's `prev_hash` against the run's last hash, so the chain stays linked
//! across the gap.
//!
//! What is never removed: the newest stored event (the chain continues from it), and events a
//! configured sink has not delivered yet (`seq` above the lowest sink cursor). The `event_ids`
//! rows stay (a resend of a removed event is still a duplicate).
//!
//! # Signed message (version 1)
//! `str("auditflow.retention.v1") ‖ i64(cutoff µs) ‖ i64(head_seq) ‖ head_hash (32) ‖
//! i64(created_at µs) ‖ i64(removed) ‖ u64(run count) ‖ runs`, each run
//! `i64(first_seq) ‖ i64(last_seq) ‖ last_hash (32)`, big-endian like the chain's encodings.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey};

use super::chain::ChainHead;
use super::checkpoint::CheckpointSigner;

/// Names the signed message format; part of the signed bytes.
const RETENTION_TAG: &str = "auditflow.retention.v1";

/// What `retention apply` asks a store to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRequest {
    /// Remove events whose event time is before this.
    pub cutoff: DateTime<Utc>,
    /// Never remove an event with a higher `seq` (the lowest sink cursor, so nothing is removed
    /// before every sink has delivered it).
    pub keep_after_seq: i64,
    /// Only say what would be removed.
    pub dry_run: bool,
}

/// Consecutive removed `seq`s and the hash of the last of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovedRun {
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_hash: [u8; 32],
}

/// Folds removed rows, in `seq` order, into [`RemovedRun`]s.
#[derive(Debug, Default)]
pub struct RunBuilder {
    runs: Vec<RemovedRun>,
    count: i64,
}

impl RunBuilder {
    /// The next removed row (rows must come in ascending `seq`).
    pub fn push(&mut self, seq: i64, hash: [u8; 32]) {
        self.count += 1;
        match self.runs.last_mut() {
            Some(run) if run.last_seq + 1 == seq => {
                run.last_seq = seq;
                run.last_hash = hash;
            }
            _ => self.runs.push(RemovedRun {
                first_seq: seq,
                last_seq: seq,
                last_hash: hash,
            }),
        }
    }

    pub fn count(&self) -> i64 {
        self.count
    }

    pub fn finish(self) -> Vec<RemovedRun> {
        self.runs
    }
}

/// One stored retention record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRecord {
    pub cutoff: DateTime<Utc>,
    /// The chain head when the rows were removed.
    pub head_seq: i64,
    pub head_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    /// Events removed.
    pub removed: i64,
    pub runs: Vec<RemovedRun>,
    /// Key id of the signing key ([`super::checkpoint::key_id`]).
    pub key_id: String,
    pub signature: Vec<u8>,
}

impl RetentionRecord {
    /// Sign a record of `runs` (the removal of `removed` events older than `cutoff`, with the
    /// chain at `head`).
    pub fn sign(
        signer: &CheckpointSigner,
        cutoff: DateTime<Utc>,
        head: ChainHead,
        removed: i64,
        runs: Vec<RemovedRun>,
        at: DateTime<Utc>,
    ) -> RetentionRecord {
        let cutoff = crate::event::to_micros(cutoff);
        let at = crate::event::to_micros(at);
        let mut record = RetentionRecord {
            cutoff,
            head_seq: head.seq,
            head_hash: head.hash.to_vec(),
            created_at: at,
            removed,
            runs,
            key_id: signer.key_id().to_owned(),
            signature: Vec::new(),
        };
        record.signature = signer.sign_bytes(&record.signed_message()).to_vec();
        record
    }

    /// The bytes the signature covers (format in the module docs).
    pub fn signed_message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.runs.len() * 48);
        out.extend_from_slice(&(RETENTION_TAG.len() as u64).to_be_bytes());
        out.extend_from_slice(RETENTION_TAG.as_bytes());
        out.extend_from_slice(&self.cutoff.timestamp_micros().to_be_bytes());
        out.extend_from_slice(&self.head_seq.to_be_bytes());
        out.extend_from_slice(&self.head_hash);
        out.extend_from_slice(&self.created_at.timestamp_micros().to_be_bytes());
        out.extend_from_slice(&self.removed.to_be_bytes());
        out.extend_from_slice(&(self.runs.len() as u64).to_be_bytes());
        out.extend_from_slice(&encode_runs(&self.runs));
        out
    }

    pub fn signature_is_valid(&self, key: &VerifyingKey) -> bool {
        let Ok(signature) = Signature::from_slice(&self.signature) else {
            return false;
        };
        key.verify_strict(&self.signed_message(), &signature).is_ok()
    }

    /// `seq a..=b, c..=d, …` (the first few ranges).
    pub fn ranges(&self) -> String {
        let mut shown: Vec<String> = self
            .runs
            .iter()
            .take(5)
            .map(|r| format!("{}..={}", r.first_seq, r.last_seq))
            .collect();
        if self.runs.len() > 5 {
            shown.push(format!("and {} more ranges", self.runs.len() - 5));
        }
        shown.join(", ")
    }
}

/// Runs as stored: 48 bytes each (`first_seq`, `last_seq`, `last_hash`).
pub fn encode_runs(runs: &[RemovedRun]) -> Vec<u8> {
    let mut out = Vec::with_capacity(runs.len() * 48);
    for r in runs {
        out.extend_from_slice(&r.first_seq.to_be_bytes());
        out.extend_from_slice(&r.last_seq.to_be_bytes());
        out.extend_from_slice(&r.last_hash);
    }
    out
}

/// The runs of a stored record; `None` when the bytes are not whole runs (an altered record).
pub fn decode_runs(bytes: &[u8]) -> Option<Vec<RemovedRun>> {
    if !bytes.len().is_multiple_of(48) {
        return None;
    }
    bytes
        .chunks_exact(48)
        .map(|c| {
            Some(RemovedRun {
                first_seq: i64::from_be_bytes(c[0..8].try_into().ok()?),
                last_seq: i64::from_be_bytes(c[8..16].try_into().ok()?),
                last_hash: c[16..48].try_into().ok()?,
            })
        })
        .collect()
}

/// What one `retention apply` did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Events removed (or that would be).
    pub removed: i64,
    /// Their `seq` runs.
    pub runs: Vec<RemovedRun>,
    /// What was kept that the cut-off alone would have removed, and why (no values).
    pub kept: Vec<String>,
    /// The record written (None on a dry run or when nothing was removed).
    pub record: Option<RetentionRecord>,
}

/// The removed runs of every trusted record, by first `seq`, for `verify` to cover gaps with.
#[derive(Debug, Default)]
pub struct RemovedRows {
    runs: BTreeMap<i64, RemovedRun>,
}

impl RemovedRows {
    pub fn add(&mut self, runs: &[RemovedRun]) {
        for r in runs {
            self.runs.insert(r.first_seq, *r);
        }
    }

    /// When signed runs cover exactly `from..=to`, the hash of row `to` (what row `to + 1` must
    /// link to).
    pub fn covering(&self, from: i64, to: i64) -> Option<[u8; 32]> {
        let mut at = from;
        loop {
            let run = self.runs.get(&at)?;
            if run.last_seq == to {
                return Some(run.last_hash);
            }
            if run.last_seq > to {
                return None;
            }
            at = run.last_seq + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn rows_fold_into_runs_and_runs_cover_exact_gaps() {
        let mut b = RunBuilder::default();
        for seq in [1, 2, 3, 7, 8, 10] {
            b.push(seq, [seq as u8; 32]);
        }
        assert_eq!(b.count(), 6);
        let runs = b.finish();
        assert_eq!(
            runs.iter()
                .map(|r| (r.first_seq, r.last_seq, r.last_hash[0]))
                .collect::<Vec<_>>(),
            vec![(1, 3, 3), (7, 8, 8), (10, 10, 10)]
        );
        assert_eq!(decode_runs(&encode_runs(&runs)), Some(runs.clone()));
        assert_eq!(decode_runs(&[0; 47]), None);

        let mut removed = RemovedRows::default();
        removed.add(&runs);
        assert_eq!(removed.covering(1, 3), Some([3; 32]));
        assert_eq!(removed.covering(7, 8), Some([8; 32]));
        assert_eq!(removed.covering(1, 2), None, "a run must end where the gap ends");
        assert_eq!(removed.covering(4, 6), None, "rows 4..=6 were not removed by retention");
        assert_eq!(removed.covering(2, 3), None, "a gap starting inside a run");
        // Runs of two records join up.
        removed.add(&[RemovedRun {
            first_seq: 4,
            last_seq: 6,
            last_hash: [6; 32],
        }]);
        assert_eq!(removed.covering(1, 8), Some([8; 32]));
    }

    #[test]
    fn the_signature_covers_every_field_and_every_run() {
        let signer = CheckpointSigner::parse(&"21".repeat(32), "t").expect("key");
        let at = Utc.timestamp_opt(1_800_000_000, 0).single().expect("time");
        let runs = vec![RemovedRun {
            first_seq: 1,
            last_seq: 9,
            last_hash: [9; 32],
        }];
        let record = RetentionRecord::sign(&signer, at, ChainHead { seq: 20, hash: [1; 32] }, 9, runs, at);
        let key = signer.verifying_key();
        assert!(record.signature_is_valid(&key));
        let mut r = record.clone();
        r.runs[0].last_seq = 10;
        assert!(!r.signature_is_valid(&key), "a widened run");
        let mut r = record.clone();
        r.removed = 8;
        assert!(!r.signature_is_valid(&key));
        let mut r = record.clone();
        r.cutoff += chrono::Duration::days(1);
        assert!(!r.signature_is_valid(&key));
        let other = CheckpointSigner::generate().expect("key");
        assert!(!record.signature_is_valid(&other.verifying_key()));
    }
}
