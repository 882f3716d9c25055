//! Signed checkpoints of the hash chain: what a checkpoint is, how it is signed and when the
//! writer writes one, the keys (parsing, `auditflow keygen`), and the idle timer.
//!
//! The hash chain alone shows that rows were changed, removed or inserted *between* other rows,
//! but anyone who can write to the database can also cut rows off the end, or rewrite the chain
//! from some row onwards and recompute every later hash. A checkpoint closes that: every
//! `checkpoint_every_events` events or `checkpoint_every_secs` seconds the writer signs
//! `(seq, hash of that row, time)` with an Ed25519 key the database never sees, and
//! `auditflow verify` checks each signature and that the chain still reaches each checkpoint
//! with the signed hash. What stays undetectable is bounded by the interval: rows stored after
//! the newest checkpoint (see docs/STORE.md).
//!
//! Who writes them: each store's `append` writes a checkpoint inside the same transaction as the
//! batch that makes one due ([`Checkpointing::due`]), under the writer's lock, so two replicas on
//! one database never sign diverging heads; [`spawn_timer`] asks the store to sign the head when
//! the store went idle with an unsigned tail ([`Store::checkpoint`]).
//!
//! # Signed message (version 1)
//! `str("auditflow.checkpoint.v1") ‖ i64(seq) ‖ head_hash (32 bytes) ‖ i64(created_at µs)`,
//! with the integer and string encodings of [`chain`](super::chain) (big-endian, `u64` length
//! prefix). The key id is not signed: a signature only verifies under its own key anyway.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::Store;
use super::chain::ChainHead;
use crate::config::{Config, SecretSource};

/// Names the signed message format; part of the signed bytes.
const CHECKPOINT_TAG: &str = "auditflow.checkpoint.v1";

/// One row of `chain_checkpoints`, as stored. Hash and signature are kept as the raw column
/// bytes (any length) so that `auditflow verify` can report a tampered row instead of failing
/// to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last `seq` the checkpoint covers.
    pub seq: i64,
    /// The `hash` of row `seq` when it was signed.
    pub head_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    /// [`key_id`] of the signing key.
    pub key_id: String,
    /// Ed25519 signature of [`signed_message`].
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// Whether the signature is valid for this checkpoint under `key`.
    pub fn signature_is_valid(&self, key: &VerifyingKey) -> bool {
        let Ok(signature) = Signature::from_slice(&self.signature) else {
            return false;
        };
        key.verify_strict(&signed_message(self.seq, &self.head_hash, self.created_at), &signature)
            .is_ok()
    }
}

/// The bytes a checkpoint signature covers (format in the module docs).
pub fn signed_message(seq: i64, head_hash: &[u8], created_at: DateTime<Utc>) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + CHECKPOINT_TAG.len() + 8 + head_hash.len() + 8);
    out.extend_from_slice(&(CHECKPOINT_TAG.len() as u64).to_be_bytes());
    out.extend_from_slice(CHECKPOINT_TAG.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(head_hash);
    out.extend_from_slice(&created_at.timestamp_micros().to_be_bytes());
    out
}

/// A short, stable name for a public key: the first 8 bytes of its SHA-256, in hex. Stored with
/// each checkpoint so a verifier holding several keys (after a rotation) knows which applies.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

/// A key that cannot be read or parsed. The message names where the key came from (variable,
/// file or config key), never the key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The private key that signs checkpoints. `Debug` prints only the key id.
pub struct CheckpointSigner {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    pub fn new(key: SigningKey) -> CheckpointSigner {
        let key_id = key_id(&key.verifying_key());
        CheckpointSigner { key, key_id }
    }

    /// A fresh key from the operating system's random source (`auditflow keygen`).
    pub fn generate() -> Result<CheckpointSigner, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError(format!("no randomness for a new key: {e}")))?;
        Ok(CheckpointSigner::new(SigningKey::from_bytes(&seed)))
    }

    /// Parse a private key (32-byte seed as hex or base64). `origin` names where it came from
    /// for the error message.
    pub fn parse(text: &str, origin: &str) -> Result<CheckpointSigner, KeyError> {
        let seed = decode_key(text).ok_or_else(|| {
            KeyError(format!(
                "{origin}: not an Ed25519 private key (expected 32 bytes as hex or base64)"
            ))
        })?;
        Ok(CheckpointSigner::new(SigningKey::from_bytes(&seed)))
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The private key as hex, for `auditflow keygen` to print once.
    pub fn private_key_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    /// An Ed25519 signature of `message` (retention records sign with the chain's key too).
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// Sign `head` as of `at`.
    pub fn sign(&self, head: ChainHead, at: DateTime<Utc>) -> Checkpoint {
        // Stored times have microsecond precision; sign exactly what will be read back.
        let at = crate::event::to_micros(at);
        let signature = self.key.sign(&signed_message(head.seq, &head.hash, at));
        Checkpoint {
            seq: head.seq,
            head_hash: head.hash.to_vec(),
            created_at: at,
            key_id: self.key_id.clone(),
            signature: signature.to_bytes().to_vec(),
        }
    }
}

/// Parse a public key (32 bytes as hex or base64).
pub fn parse_public_key(text: &str, origin: &str) -> Result<VerifyingKey, KeyError> {
    decode_key(text)
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| {
            KeyError(format!(
                "{origin}: not an Ed25519 public key (expected 32 bytes as hex or base64)"
            ))
        })
}

/// 32 bytes from hex (64 digits) or base64 (standard or URL-safe, padded or not).
fn decode_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()?
    } else {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(text).ok())?
    };
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// When to checkpoint, and the key to sign with: `[storage.chain]` resolved.
#[derive(Debug)]
pub struct Checkpointing {
    pub signer: CheckpointSigner,
    /// Checkpoint once this many events were stored since the last checkpoint.
    pub every_events: i64,
    /// Checkpoint once this long passed since the last checkpoint (if events were stored).
    pub every: Duration,
}

impl Checkpointing {
    /// `[storage.chain]` of `config`; `None` when no `signing_key` is configured.
    pub fn from_config(config: &Config) -> Result<Option<Arc<Checkpointing>>, KeyError> {
        let chain = &config.storage.chain;
        let Some(source) = &chain.signing_key else {
            return Ok(None);
        };
        let signer = read_signing_key(config, source)?;
        Ok(Some(Arc::new(Checkpointing {
            signer,
            every_events: i64::try_from(chain.checkpoint_every_events).unwrap_or(i64::MAX).max(1),
            every: Duration::from_secs(chain.checkpoint_every_secs.max(1)),
        })))
    }

    /// Whether a checkpoint is due after the chain reached `head_seq`, given the newest
    /// checkpoint `last` (`seq`, time). Never when nothing was stored since `last`.
    pub fn due(&self, head_seq: i64, last: Option<(i64, DateTime<Utc>)>, now: DateTime<Utc>) -> bool {
        let Some((last_seq, last_at)) = last else {
            return head_seq > 0;
        };
        if head_seq <= last_seq {
            return false;
        }
        let waited = (now - last_at).to_std().unwrap_or(Duration::ZERO);
        head_seq - last_seq >= self.every_events || waited >= self.every
    }
}

/// The keys `auditflow verify` trusts: `extra` (from `verify --public-key`), `public_key`,
/// `public_keys`, and the public half of `signing_key` when that is readable here and no public
/// key was given (an auditor holds public keys only; the private key is never needed to
/// verify). Empty when none is configured.
pub fn trusted_keys(config: &Config, extra: &[String]) -> Result<Vec<VerifyingKey>, KeyError> {
    let chain = &config.storage.chain;
    let mut keys = Vec::new();
    for text in extra {
        keys.push(parse_public_key(text, "--public-key")?);
    }
    if let Some(text) = &chain.public_key {
        keys.push(parse_public_key(text, "storage.chain.public_key")?);
    }
    for (i, text) in chain.public_keys.iter().enumerate() {
        keys.push(parse_public_key(text, &format!("storage.chain.public_keys[{i}]"))?);
    }
    if let Some(source) = &chain.signing_key {
        match read_signing_key(config, source) {
            Ok(signer) => keys.push(signer.verifying_key()),
            // With an explicit public key the private one is not needed (an auditor usually
            // has no access to it).
            Err(_) if !keys.is_empty() => {}
            Err(e) => return Err(e),
        }
    }
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert(k.to_bytes()));
    Ok(keys)
}

/// The private key of `[storage.chain] signing_key` (for `retention apply`); an error naming
/// the key when it is not configured.
pub fn signing_key(config: &Config) -> Result<CheckpointSigner, KeyError> {
    match &config.storage.chain.signing_key {
        Some(source) => read_signing_key(config, source),
        None => Err(KeyError(
            "storage.chain.signing_key is not set: retention records are signed with the chain's key".into(),
        )),
    }
}

fn read_signing_key(config: &Config, source: &SecretSource) -> Result<CheckpointSigner, KeyError> {
    let origin = match (&source.env, &source.file) {
        (Some(var), None) => format!("storage.chain.signing_key (environment variable {var})"),
        (None, Some(file)) => format!(
            "storage.chain.signing_key (file {})",
            config.resolve_path(file).display()
        ),
        _ => "storage.chain.signing_key".to_owned(),
    };
    // The read error names the variable or file itself.
    let text = config
        .read_secret(source)
        .map_err(|e| KeyError(format!("storage.chain.signing_key: {e}")))?;
    CheckpointSigner::parse(&text, &origin)
}

/// Ask `store` every `every` to sign its head if events were stored since the last checkpoint,
/// so a tail that stopped growing is signed within one interval (appends sign on their own
/// while events keep coming). Runs until aborted.
pub fn spawn_timer(store: Arc<dyn Store>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once; the store was just opened.
        tick.tick().await;
        loop {
            tick.tick().await;
            match store.checkpoint().await {
                Ok(Some(cp)) => tracing::debug!(seq = cp.seq, "idle chain checkpoint signed"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not write a chain checkpoint; retrying next interval"),
            }
        }
    })
}

/// Log a new checkpoint at info level, so a copy of every signed head also lives outside the
/// database (in the log pipeline), where an attacker with database access cannot delete it.
pub fn log_checkpoint(cp: &Checkpoint) {
    tracing::info!(
        seq = cp.seq,
        head_hash = %hex::encode(&cp.head_hash),
        key_id = %cp.key_id,
        signature = %hex::encode(&cp.signature),
        "chain checkpoint signed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn signer() -> CheckpointSigner {
        CheckpointSigner::parse(&"11".repeat(32), "test").expect("key")
    }

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).single().expect("time")
    }

    #[test]
    fn signature_verifies_and_breaks_on_any_change() {
        let s = signer();
        let cp = s.sign(ChainHead { seq: 42, hash: [7; 32] }, at(0));
        let key = s.verifying_key();
        assert!(cp.signature_is_valid(&key));
        assert_eq!(cp.key_id, key_id(&key));

        let mut c = cp.clone();
        c.seq = 43;
        assert!(!c.signature_is_valid(&key), "seq is signed");
        let mut c = cp.clone();
        c.head_hash[0] ^= 1;
        assert!(!c.signature_is_valid(&key), "hash is signed");
        let mut c = cp.clone();
        c.created_at += chrono::Duration::microseconds(1);
        assert!(!c.signature_is_valid(&key), "time is signed");
        let mut c = cp.clone();
        c.signature.pop();
        assert!(!c.signature_is_valid(&key), "a short signature is invalid, not a panic");
        let other = CheckpointSigner::generate().expect("generate");
        assert!(
            !cp.signature_is_valid(&other.verifying_key()),
            "another key does not verify it"
        );
    }

    #[test]
    fn keys_parse_from_hex_and_base64_and_errors_do_not_echo_them() {
        let s = CheckpointSigner::generate().expect("generate");
        let hex_text = s.private_key_hex();
        let b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(&hex_text).expect("hex"));
        for text in [hex_text.clone(), b64, format!("  {hex_text}\n")] {
            let parsed = CheckpointSigner::parse(&text, "k").expect("parse");
            assert_eq!(parsed.verifying_key(), s.verifying_key());
        }
        let public = hex::encode(s.verifying_key().as_bytes());
        assert_eq!(parse_public_key(&public, "p").expect("public"), s.verifying_key());

        let bad = "not-a-key-but-a-secret-looking-string";
        let err = CheckpointSigner::parse(bad, "env AUDITFLOW_CHAIN_KEY").expect_err("bad key");
        assert!(err.0.contains("AUDITFLOW_CHAIN_KEY") && !err.0.contains(bad), "{err}");
        assert!(
            parse_public_key(&"ab".repeat(31), "p").is_err(),
            "31 bytes is not a key"
        );
        assert!(!format!("{s:?}").contains(&hex_text), "Debug leaks the private key");
    }

    #[test]
    fn checkpoint_is_due_by_count_or_time_only_after_new_events() {
        let c = Checkpointing {
            signer: signer(),
            every_events: 100,
            every: Duration::from_secs(10),
        };
        assert!(!c.due(0, None, at(0)), "nothing stored yet");
        assert!(c.due(1, None, at(0)), "the first events get a first checkpoint");
        assert!(!c.due(150, Some((100, at(0))), at(5)), "50 events and 5 s: not yet");
        assert!(c.due(200, Some((100, at(0))), at(5)), "100 events");
        assert!(c.due(101, Some((100, at(0))), at(10)), "10 s");
        assert!(!c.due(100, Some((100, at(0))), at(3600)), "idle with nothing new");
    }
}
