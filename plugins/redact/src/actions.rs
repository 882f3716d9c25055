//! Actions: what happens to a finding (`mask`, `hash`, `drop`), the keyed pseudonyms behind
//! `hash`, and rewriting a string once its findings are known.

use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::detectors::{Detector, Hit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replace the match with `[REDACTED:<label>]`.
    Mask,
    /// Replace the match with `[HASH:<label>:<hex>]`, a keyed pseudonym.
    Hash,
    /// Remove the whole field the match is in.
    Drop,
}

impl Action {
    /// For error messages.
    pub const EXPECTED: &'static str = "\"mask\", \"hash\" or \"drop\"";

    pub fn from_name(name: &str) -> Option<Action> {
        match name {
            "mask" => Some(Action::Mask),
            "hash" => Some(Action::Hash),
            "drop" => Some(Action::Drop),
            _ => None,
        }
    }
}

/// What to do with a whole string.
#[derive(Debug, PartialEq, Eq)]
pub enum Rewrite {
    Unchanged,
    Changed(String),
    /// Remove the field.
    Drop,
}

/// Keyed pseudonyms: the first 128 bits of HMAC-SHA256(hash_key, text), in hex. Keyed so that
/// nobody without the key can confirm a guess (an unkeyed hash of an email is reversible by
/// hashing candidate emails); stable so that pseudonyms still join across events.
pub struct Hasher {
    /// Keyed once at init; cloning the keyed state per value skips re-deriving the key pads.
    mac: Option<Hmac<Sha256>>,
    /// Recent pseudonyms. The same actors and hosts recur in every batch, and an HMAC costs
    /// several times more in Wasm than natively (no SHA instructions), so a lookup pays off.
    memo: Mutex<Memo>,
}

/// A direct-mapped memo: each input has one slot, and a newer input evicts the older one.
/// Without chains, crafted inputs can at worst cause misses, never slow lookups; and the slot
/// index is keyed by a secret derived from hash_key, so inputs cannot be aimed at a slot.
/// (A `HashMap` would need `RandomState`, hence WASI randomness the host may not grant.)
struct Memo {
    seed: u64,
    /// Allocated on first use, so configs that never hash pay nothing.
    slots: Vec<Option<(Box<str>, [u8; 32])>>,
}

const MEMO_SLOTS: usize = 4096;

/// Longer inputs (a whole hashed field, a private key) are rarely repeated: not memoised.
const MEMO_MAX_INPUT: usize = 128;

impl Memo {
    fn slot(&self, text: &str) -> usize {
        // FNV-1a from a secret offset; only needs to spread inputs over the slots.
        let mut h = self.seed;
        for &b in text.as_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        (h ^ (h >> 32)) as usize % MEMO_SLOTS
    }
}

impl Hasher {
    pub fn new(key: Option<&str>) -> Hasher {
        let mac = key.map(|k| Hmac::<Sha256>::new_from_slice(k.as_bytes()).expect("HMAC takes keys of any length"));
        let seed = mac.as_ref().map_or(0, |m| {
            let digest = m
                .clone()
                .chain_update(b"auditflow-redact memo slots")
                .finalize()
                .into_bytes();
            u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
        });
        Hasher {
            mac,
            memo: Mutex::new(Memo {
                seed,
                slots: Vec::new(),
            }),
        }
    }

    /// Append the 32 hex digits of `text`'s pseudonym to `out`. Returns false (and appends
    /// nothing) without a key; the config parser makes that impossible for `hash` actions.
    fn digest_into(&self, text: &str, out: &mut String) -> bool {
        let Some(mac) = &self.mac else { return false };
        // `try_lock`: a contended or poisoned memo is skipped, never waited on.
        let mut memo = if text.len() <= MEMO_MAX_INPUT {
            self.memo.try_lock().ok()
        } else {
            None
        };
        let slot = memo.as_ref().map(|m| m.slot(text));
        if let (Some(memo), Some(slot)) = (&memo, slot)
            && let Some(Some((input, hex))) = memo.slots.get(slot)
            && **input == *text
        {
            out.push_str(std::str::from_utf8(hex).expect("hex digits"));
            return true;
        }
        let digest = mac.clone().chain_update(text.as_bytes()).finalize().into_bytes();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 32];
        for (i, &b) in digest[..16].iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        out.push_str(std::str::from_utf8(&hex).expect("hex digits"));
        if let (Some(memo), Some(slot)) = (memo.as_mut(), slot) {
            if memo.slots.is_empty() {
                memo.slots.resize_with(MEMO_SLOTS, || None);
            }
            memo.slots[slot] = Some((text.into(), hex));
        }
        true
    }
}

/// Append the replacement of `matched` to `out`. `Drop` is decided before rendering, so it
/// renders like `Mask`; so does `Hash` without a key, to fail closed.
pub fn render(out: &mut String, action: Action, label: &str, matched: &str, hasher: &Hasher) {
    if action == Action::Hash {
        let mark = out.len();
        out.push_str("[HASH:");
        out.push_str(label);
        out.push(':');
        if hasher.digest_into(matched, out) {
            out.push(']');
            return;
        }
        out.truncate(mark);
    }
    out.push_str("[REDACTED:");
    out.push_str(label);
    out.push(']');
}

/// The rewrite of a whole value by `action`.
pub fn whole(action: Action, label: &str, text: &str, hasher: &Hasher) -> Rewrite {
    if action == Action::Drop {
        return Rewrite::Drop;
    }
    let mut out = String::with_capacity(label.len() + 48);
    render(&mut out, action, label, text, hasher);
    Rewrite::Changed(out)
}

/// Apply `hits` (in any order, possibly overlapping) to `text`. Overlapping hits merge into
/// one replacement covering all of them, so no part of either match survives; it is labelled
/// by the hit that starts first (then the longest, then the more specific detector). Any hit
/// whose action is `drop` drops the field.
pub fn rewrite(text: &str, hits: &mut [Hit], actions: &[Action; Detector::COUNT], hasher: &Hasher) -> Rewrite {
    if hits.is_empty() {
        return Rewrite::Unchanged;
    }
    if drops(hits, actions) {
        return Rewrite::Drop;
    }
    let mut out = String::with_capacity(text.len() + 16 * hits.len());
    rewrite_into(&mut out, text, hits, actions, hasher, false);
    Rewrite::Changed(out)
}

/// Whether any of `hits` drops its field.
pub fn drops(hits: &[Hit], actions: &[Action; Detector::COUNT]) -> bool {
    hits.iter().any(|h| actions[h.detector as usize] == Action::Drop)
}

/// Append `text` with `hits` applied to `out`, the kept text JSON-escaped if `json` (for
/// writing straight into a JSON string literal). The caller has ruled out `drop`.
pub fn rewrite_into(
    out: &mut String,
    text: &str,
    hits: &mut [Hit],
    actions: &[Action; Detector::COUNT],
    hasher: &Hasher,
    json: bool,
) {
    let push = |out: &mut String, piece: &str| {
        if json {
            push_json_escaped(out, piece)
        } else {
            out.push_str(piece)
        }
    };
    hits.sort_unstable_by_key(|h| (h.start, std::cmp::Reverse(h.end), h.detector));
    let mut copied = 0;
    let mut i = 0;
    while i < hits.len() {
        let first = hits[i];
        let mut end = first.end;
        i += 1;
        while i < hits.len() && hits[i].start < end {
            end = end.max(hits[i].end);
            i += 1;
        }
        push(out, &text[copied..first.start]);
        // Labels and hex digits never need escaping.
        render(
            out,
            actions[first.detector as usize],
            first.detector.name(),
            &text[first.start..end],
            hasher,
        );
        copied = end;
    }
    push(out, &text[copied..]);
}

/// Append `s` escaped for the inside of a JSON string literal.
pub fn push_json_escaped(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut plain = 0;
    while let Some(k) = crate::swar::json_stop(&bytes[plain..]) {
        let i = plain + k;
        let b = bytes[i];
        out.push_str(&s[plain..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(start: usize, end: usize, detector: Detector) -> Hit {
        Hit { start, end, detector }
    }

    fn changed(r: Rewrite) -> String {
        match r {
            Rewrite::Changed(s) => s,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[test]
    fn action_names() {
        assert_eq!(Action::from_name("mask"), Some(Action::Mask));
        assert_eq!(Action::from_name("hash"), Some(Action::Hash));
        assert_eq!(Action::from_name("drop"), Some(Action::Drop));
        assert_eq!(Action::from_name("Mask"), None);
    }

    #[test]
    fn hash_is_stable_and_keyed() {
        let a = Hasher::new(Some("test-key"));
        let b = Hasher::new(Some("other-key"));
        let hash = |h: &Hasher, text: &str| changed(whole(Action::Hash, "email", text, h));
        let first = hash(&a, "bob@example.com");
        assert_eq!(first, hash(&a, "bob@example.com"));
        // Again through the memo, and from a fresh hasher with the same key.
        assert_eq!(first, hash(&a, "bob@example.com"));
        assert_eq!(first, hash(&Hasher::new(Some("test-key")), "bob@example.com"));
        assert_ne!(first, hash(&b, "bob@example.com"));
        assert_ne!(first, hash(&a, "bob@example.org"));
        assert!(first.starts_with("[HASH:email:") && first.ends_with(']'));
        let hex = &first["[HASH:email:".len()..first.len() - 1];
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn hash_matches_hmac_sha256() {
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?").
        let out = changed(whole(
            Action::Hash,
            "x",
            "what do ya want for nothing?",
            &Hasher::new(Some("Jefe")),
        ));
        assert_eq!(out, "[HASH:x:5bdcc146bf60754e6a042426089575c7]");
    }

    #[test]
    fn memo_is_bounded_and_transparent() {
        let h = Hasher::new(Some("k"));
        let first: Vec<String> = (0..MEMO_SLOTS + 10)
            .map(|i| changed(whole(Action::Hash, "x", &format!("v{i}"), &h)))
            .collect();
        let filled = h.memo.lock().unwrap().slots.iter().filter(|s| s.is_some()).count();
        assert!(filled > MEMO_SLOTS / 2 && filled <= MEMO_SLOTS, "{filled}");
        let fresh = Hasher::new(Some("k"));
        for (i, expected) in first.iter().enumerate().step_by(97) {
            assert_eq!(&changed(whole(Action::Hash, "x", &format!("v{i}"), &h)), expected);
            assert_eq!(&changed(whole(Action::Hash, "x", &format!("v{i}"), &fresh)), expected);
        }
        // Long inputs bypass the memo but hash the same way.
        let long = "y".repeat(MEMO_MAX_INPUT + 1);
        assert_eq!(
            whole(Action::Hash, "x", &long, &h),
            whole(Action::Hash, "x", &long, &fresh)
        );
    }

    #[test]
    fn json_escaping() {
        let mut out = String::new();
        push_json_escaped(&mut out, "a\"b\\c\nd\u{1}é\t");
        assert_eq!(out, r#"a\"b\\c\nd\u0001é\t"#);
        let mut hits = [hit(2, 10, Detector::Email)];
        let mut out = String::new();
        rewrite_into(
            &mut out,
            "\"\nbob@x.io\"",
            &mut hits,
            &[Action::Mask; Detector::COUNT],
            &Hasher::new(None),
            true,
        );
        assert_eq!(out, r#"\"\n[REDACTED:email]\""#);
    }

    #[test]
    fn hash_without_key_fails_closed() {
        assert_eq!(
            changed(whole(Action::Hash, "email", "bob@x.io", &Hasher::new(None))),
            "[REDACTED:email]"
        );
    }

    #[test]
    fn rewrite_masks_and_keeps_the_rest() {
        let actions = [Action::Mask; Detector::COUNT];
        let text = "mail bob@x.io or 203.0.1.2!";
        let mut hits = [hit(17, 26, Detector::Ipv4), hit(5, 13, Detector::Email)];
        let out = changed(rewrite(text, &mut hits, &actions, &Hasher::new(None)));
        assert_eq!(out, "mail [REDACTED:email] or [REDACTED:ipv4]!");
        assert_eq!(rewrite(text, &mut [], &actions, &Hasher::new(None)), Rewrite::Unchanged);
    }

    #[test]
    fn overlapping_hits_merge() {
        let actions = [Action::Mask; Detector::COUNT];
        let text = "token=ghp_abc&x";
        // The same span from a key name and a format: the format names it.
        let mut hits = [hit(6, 13, Detector::Secret), hit(6, 13, Detector::GithubToken)];
        assert_eq!(
            changed(rewrite(text, &mut hits, &actions, &Hasher::new(None))),
            "token=[REDACTED:github_token]&x"
        );
        // Partial overlap: the union goes.
        let mut hits = [hit(0, 8, Detector::Secret), hit(6, 15, Detector::GithubToken)];
        assert_eq!(
            changed(rewrite(text, &mut hits, &actions, &Hasher::new(None))),
            "[REDACTED:secret]"
        );
    }

    #[test]
    fn drop_wins() {
        let mut actions = [Action::Mask; Detector::COUNT];
        actions[Detector::Phone as usize] = Action::Drop;
        let mut hits = [hit(0, 3, Detector::Email), hit(4, 6, Detector::Phone)];
        assert_eq!(
            rewrite("abc de", &mut hits, &actions, &Hasher::new(None)),
            Rewrite::Drop
        );
    }
}
