//! Secrets found by the name of their key rather than by their format: JSON object keys such
//! as `"password"` or `"Authorization"`, and `key=value` / `key: value` pairs inside strings
//! (URL query strings, env dumps, header lines, embedded JSON).

use crate::detectors::{Detector, Hit};
use crate::runs::RunEnd;

/// Key names whose values are secrets, matched as substrings of the normalised key.
pub const DEFAULT_SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "access_key",
    "secret_key",
    "client_secret",
    "private_key",
    "credential",
    "cookie",
    "session",
];

/// Authorization schemes: in `Authorization: Bearer abc` the credential is `abc`.
const SCHEMES: &[&[u8]] = &[b"bearer", b"basic", b"token", b"bot", b"negotiate"];

/// Longest key looked at; longer runs of key characters are not key names.
const MAX_KEY: usize = 64;

/// Lowercase ASCII and drop `-` and `_`, so `X-Api-Key`, `api_key` and `apiKey` all read
/// `apikey`. Separators are dropped rather than unified so camelCase keys match too.
fn normalise_into(key: &[u8], out: &mut [u8; MAX_KEY]) -> usize {
    let mut n = 0;
    for &b in key.iter().take(MAX_KEY) {
        if b != b'-' && b != b'_' {
            out[n] = b.to_ascii_lowercase();
            n += 1;
        }
    }
    n
}

/// The gitleaks `generic-api-key` keywords (config/gitleaks.toml): a key containing one of
/// them marks its value as a secret if the value looks random enough (`generic_secret`).
pub const DEFAULT_GENERIC_KEYS: &[&str] = &[
    "access",
    "api",
    "auth",
    "credential",
    "creds",
    "key",
    "passwd",
    "password",
    "secret",
    "token",
];

/// The gitleaks `generic-api-key` entropy threshold, in bits per character.
pub const DEFAULT_GENERIC_ENTROPY: f64 = 3.5;

/// `generic_secret`: high-entropy values next to secret-ish keys.
pub struct Generic {
    keys: SecretKeys,
    entropy: f64,
}

impl Generic {
    pub fn new(keys: &[String], entropy: f64) -> Generic {
        Generic {
            keys: SecretKeys::new(keys),
            entropy,
        }
    }

    /// Whether `value`, under a key that matched, looks like a generated secret: 10–150 bytes
    /// of `[A-Za-z0-9_.=+/-]` with a letter and a digit, entropy over the threshold, and not
    /// a UUID or a bare hex digest (request ids, commit and content hashes are not secrets).
    fn value(&self, v: &[u8]) -> bool {
        if !(10..=150).contains(&v.len())
            || !v
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'=' | b'+' | b'/' | b'-'))
            || !v.iter().any(|b| b.is_ascii_digit())
            || !v.iter().any(|b| b.is_ascii_alphabetic())
        {
            return false;
        }
        let hex = |b: &u8| b.is_ascii_hexdigit();
        let uuid = v.len() == 36
            && v.iter().enumerate().all(|(i, b)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    *b == b'-'
                } else {
                    hex(b)
                }
            });
        if uuid || v.iter().all(hex) {
            return false;
        }
        entropy(v) >= self.entropy
    }
}

/// Shannon entropy of `s` in bits per byte.
fn entropy(s: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in s {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The configured secret key names.
pub struct SecretKeys {
    /// Normalised, deduplicated entries; empty when key-name detection is off.
    entries: Vec<Vec<u8>>,
    /// A bit per byte pair that starts an entry of 2+ bytes: nearly every position of a key
    /// is ruled out with one lookup.
    starts: Box<[u64; 1024]>,
    /// Entries of a single byte.
    singles: [bool; 256],
    /// For each first byte, the range of `entries` (sorted) that start with it.
    by_first: Box<[(usize, usize); 256]>,
    /// `generic_secret`, when enabled.
    generic: Option<Box<Generic>>,
}

impl SecretKeys {
    /// `entries` must be non-empty strings after normalisation (checked by the config parser).
    pub fn new(entries: &[String]) -> SecretKeys {
        let mut normalised: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| {
                let mut buf = [0u8; MAX_KEY];
                let n = normalise_into(e.as_bytes(), &mut buf);
                buf[..n].to_vec()
            })
            .filter(|e| !e.is_empty())
            .collect();
        normalised.sort();
        normalised.dedup();
        let mut starts = Box::new([0u64; 1024]);
        let mut singles = [false; 256];
        for e in &normalised {
            match e.as_slice() {
                [b] => singles[usize::from(*b)] = true,
                [a, b, ..] => {
                    let pair = usize::from(*a) << 8 | usize::from(*b);
                    starts[pair >> 6] |= 1 << (pair & 63);
                }
                [] => {}
            }
        }
        let mut by_first = Box::new([(0usize, 0usize); 256]);
        for (i, e) in normalised.iter().enumerate() {
            let slot = &mut by_first[usize::from(e[0])];
            if slot.1 == 0 {
                *slot = (i, i + 1);
            } else {
                slot.1 = i + 1;
            }
        }
        SecretKeys {
            entries: normalised,
            starts,
            singles,
            by_first,
            generic: None,
        }
    }

    /// These key names, and `generic_secret` with `generic`.
    pub fn with_generic(mut self, generic: Option<Generic>) -> SecretKeys {
        self.generic = generic.map(Box::new);
        self
    }

    /// A [`Detector::GenericSecret`] hit for the whole of `text`, the string value of a JSON
    /// entry whose key [`SecretKeys::classify`] found secret-ish, if the value looks
    /// generated. (A key that names a secret outright has its value replaced whole before it
    /// is scanned.)
    pub fn scan_value(&self, text: &str, hits: &mut Vec<Hit>) {
        if let Some(g) = &self.generic
            && g.value(text.as_bytes())
        {
            hits.push(Hit {
                start: 0,
                end: text.len(),
                detector: Detector::GenericSecret,
            });
        }
    }

    /// Whether the key `key` names a secret, and whether it is secret-ish for
    /// `generic_secret` (then its string values are checked for entropy); one normalisation
    /// for both.
    pub fn classify(&self, key: &str) -> (bool, bool) {
        let mut buf = [0u8; MAX_KEY];
        let n = normalise_into(key.as_bytes(), &mut buf);
        if self.matches(&buf[..n]) {
            return (true, false);
        }
        // Keys are nearly always ASCII; only others are normalised (full-width letters,
        // zero-width characters).
        if key.bytes().any(|b| b >= 0x80)
            && crate::normalize::normalised(key).is_some_and(|k| self.is_secret_bytes(k.as_bytes()))
        {
            return (true, false);
        }
        let generic = self.generic.as_ref().is_some_and(|g| g.keys.matches(&buf[..n]));
        (false, generic)
    }

    /// Whether the key `key` names a secret (also once normalised, if it is not ASCII).
    #[cfg(test)]
    pub fn is_secret(&self, key: &str) -> bool {
        self.is_secret_bytes(key.as_bytes())
            || (!key.is_ascii()
                && crate::normalize::normalised(key).is_some_and(|k| self.is_secret_bytes(k.as_bytes())))
    }

    /// Whether `entry` normalises to something (an empty entry would match every key).
    pub fn valid_entry(entry: &str) -> bool {
        let mut buf = [0u8; MAX_KEY];
        entry.len() <= MAX_KEY && normalise_into(entry.as_bytes(), &mut buf) > 0
    }

    fn is_secret_bytes(&self, key: &[u8]) -> bool {
        // A key longer than MAX_KEY is judged by its first MAX_KEY bytes.
        let mut buf = [0u8; MAX_KEY];
        let n = normalise_into(key, &mut buf);
        self.matches(&buf[..n])
    }

    /// Whether the normalised key `k` contains an entry.
    fn matches(&self, k: &[u8]) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let n = k.len();
        for i in 0..n {
            if self.singles[usize::from(k[i])] {
                return true;
            }
            if i + 1 < n {
                let pair = usize::from(k[i]) << 8 | usize::from(k[i + 1]);
                if self.starts[pair >> 6] & (1 << (pair & 63)) != 0 {
                    let (from, to) = self.by_first[usize::from(k[i])];
                    let candidates = self.entries.get(from..to).unwrap_or(&[]);
                    if candidates.iter().any(|e| e.len() >= 2 && k[i..].starts_with(e)) {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Append a [`Detector::Secret`] hit for the value of every `key=value` or `key: value`
    /// pair in `text` whose key names a secret, and for the password in URL userinfo
    /// (`scheme://user:password@host`). The key itself is kept.
    pub fn scan_pairs(&self, text: &str, hits: &mut Vec<Hit>) {
        if self.entries.is_empty() && self.generic.is_none() {
            return;
        }
        let s = text.as_bytes();
        let mut done = 0;
        let mut seen = Seen::default();
        for sep in memchr::memchr2_iter(b'=', b':', s) {
            if sep < done {
                continue;
            }
            if let Some((start, end, detector)) = self.pair_value(s, sep, &mut seen) {
                hits.push(Hit { start, end, detector });
                done = end;
            }
        }
    }

    /// The span of the secret value after the separator at `sep`, if its key is a secret key
    /// (or a secret-ish one and the value looks generated: `generic_secret`).
    fn pair_value(&self, s: &[u8], sep: usize, seen: &mut Seen) -> Option<(usize, usize, Detector)> {
        // The key: `password=`, `password: `, `"password": `, `password = `.
        let mut k_end = sep;
        while k_end > 0 && s[k_end - 1] == b' ' {
            k_end -= 1;
        }
        if k_end > 0 && matches!(s[k_end - 1], b'"' | b'\'') {
            k_end -= 1;
        }
        let mut k_start = k_end;
        while k_start > 0 && k_end - k_start < MAX_KEY && is_key_byte(s[k_start - 1]) {
            k_start -= 1;
        }
        if k_start == k_end {
            return None;
        }
        // `scheme://user:password@host` is not a key: the `url_credentials` detector has it.
        if s[sep] == b':' && k_start >= 3 && &s[k_start - 3..k_start] == b"://" {
            return None;
        }
        let key = &s[k_start..k_end];
        let detector = match seen.key {
            Some((start, end, detector)) if s[start..end] == *key => detector,
            _ => {
                let mut buf = [0u8; MAX_KEY];
                let n = normalise_into(key, &mut buf);
                let detector = if self.matches(&buf[..n]) {
                    Some(Detector::Secret)
                } else if self.generic.as_ref().is_some_and(|g| g.keys.matches(&buf[..n])) {
                    Some(Detector::GenericSecret)
                } else {
                    None
                };
                seen.key = Some((k_start, k_end, detector));
                detector
            }
        }?;
        let values = &mut seen.values;
        let mut v = sep + 1;
        // `key: value` and `key = value` are spaced; in `KEY= NEXT=x` the value is empty.
        if s[sep] == b':' || k_end < sep {
            while s.get(v) == Some(&b' ') {
                v += 1;
            }
        }
        // A generic value is at most 150 bytes: read no further, so that a failed candidate
        // costs O(1) (a value running to the end of the string from every `=` of
        // `key=key=key=…` would make the pass quadratic). A secret key's value is taken
        // whole, and the scan resumes after it.
        let limit = match detector {
            Detector::GenericSecret => s.len().min(v + 153),
            _ => s.len(),
        };
        if let Some(&q) = s.get(v).filter(|&&b| b == b'"' || b == b'\'') {
            let start = v + 1;
            let end = memchr::memchr(q, &s[start..limit.max(start)]).map_or(limit.max(start), |e| start + e);
            return self.kept(s, start, end, detector);
        }
        let mut end = values.end(s, v, in_value).min(limit);
        // `Authorization: Bearer abc`: redact the credential, keep the scheme.
        let word = &s[v..end];
        if SCHEMES.iter().any(|scheme| word.eq_ignore_ascii_case(scheme)) && s.get(end) == Some(&b' ') {
            let mut c = end;
            while s.get(c) == Some(&b' ') {
                c += 1;
            }
            let credential_end = values.end(s, c, in_value).min(limit);
            if c < limit && credential_end > c {
                v = c;
                end = credential_end;
            }
        }
        self.kept(s, v, end, detector)
    }

    /// The value `s[start..end]` as a hit, if it is one: non-empty, and for `generic_secret`
    /// generated-looking.
    fn kept(&self, s: &[u8], start: usize, end: usize, detector: Detector) -> Option<(usize, usize, Detector)> {
        let generic_ok = || self.generic.as_ref().is_some_and(|g| g.value(&s[start..end]));
        (end > start && (detector == Detector::Secret || generic_ok())).then_some((start, end, detector))
    }
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// What [`SecretKeys::scan_pairs`] remembers while it walks one string, so that `key=key=key=…`
/// (an `=` every few bytes, each a candidate) costs about what plain text does.
#[derive(Default)]
struct Seen {
    /// The last key looked up (`s[start..end]`) and what it named.
    key: Option<(usize, usize, Option<Detector>)>,
    /// The unquoted values read so far: every `=` of `key=key=…` starts one inside the same run.
    values: RunEnd,
}

/// Whether `b` continues an unquoted value, which ends at `&`, whitespace, `;`, `,` or a quote.
fn in_value(b: u8) -> bool {
    !matches!(b, b'&' | b' ' | b'\t' | b'\n' | b'\r' | b';' | b',' | b'"' | b'\'')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> SecretKeys {
        let entries: Vec<String> = DEFAULT_SECRET_KEYS.iter().map(|s| s.to_string()).collect();
        SecretKeys::new(&entries)
    }

    fn values(text: &str) -> Vec<&str> {
        let mut hits = Vec::new();
        defaults().scan_pairs(text, &mut hits);
        hits.iter().map(|h| &text[h.start..h.end]).collect()
    }

    #[test]
    fn key_names() {
        let keys = defaults();
        for secret in [
            "password",
            "Password",
            "db_password",
            "userPassword",
            "PWD",
            "X-Api-Key",
            "apiKey",
            "api-key",
            "Authorization",
            "Proxy-Authorization",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "accessKey",
            "client_secret",
            "privateKey",
            "refresh_token",
            "Set-Cookie",
            "sessionId",
            "credentials",
        ] {
            assert!(keys.is_secret(secret), "{secret} should be a secret key");
        }
        for plain in [
            "X-Request-Id",
            "request_id",
            "user",
            "author",
            "gateway_version",
            "headers",
            "page",
            "ssn",
            "keyboard",
            "",
        ] {
            assert!(!keys.is_secret(plain), "{plain} should not be a secret key");
        }
    }

    #[test]
    fn custom_list_replaces_defaults() {
        let keys = SecretKeys::new(&["pin".to_owned(), "X".to_owned()]);
        assert!(keys.is_secret("card_PIN"));
        assert!(keys.is_secret("x-id"));
        assert!(!keys.is_secret("password"));
        assert!(keys.is_secret("pi_n2"), "separators are dropped before matching");
        assert!(!keys.is_secret("pn_i"));
        assert!(!SecretKeys::new(&[]).is_secret("password"));
        assert!(!SecretKeys::valid_entry("-_-"));
        assert!(SecretKeys::valid_entry("otp"));
    }

    #[test]
    fn query_strings() {
        assert_eq!(
            values("https://api.example.com/login?user=svc&password=pWwtG2Bg#YS&token=ghp_JN6U6PrPod&page=2"),
            ["pWwtG2Bg#YS", "ghp_JN6U6PrPod"]
        );
    }

    #[test]
    fn env_and_header_lines() {
        assert_eq!(
            values("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG REGION=us-east-1"),
            ["wJalrXUtnFEMI/K7MDENG"]
        );
        assert_eq!(values("password: hunter2; user: bob"), ["hunter2"]);
        assert_eq!(
            values("Authorization: Bearer abc.def.ghi\nX-Request-Id: 42"),
            ["abc.def.ghi"]
        );
        assert_eq!(values("Authorization: Basic dXNlcjpwYXNz"), ["dXNlcjpwYXNz"]);
        assert_eq!(
            values("X-Request-Id: a46d6753-ec14-4cb4-8e73-ca47ea90a8f0"),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn embedded_json_and_quotes() {
        assert_eq!(values(r#"{"password": "p@ss w0rd", "user": "bob"}"#), ["p@ss w0rd"]);
        assert_eq!(values("secret='abc def'"), ["abc def"]);
    }

    #[test]
    fn url_userinfo_is_left_to_its_detector() {
        assert_eq!(values("postgres://app:s3cr3t@db.internal:5432/app"), Vec::<&str>::new());
        assert_eq!(values("https://example.com:8443/path"), Vec::<&str>::new());
    }

    #[test]
    fn generic_values_need_entropy() {
        let keys: Vec<String> = DEFAULT_GENERIC_KEYS.iter().map(|s| s.to_string()).collect();
        let g = SecretKeys::new(&[]).with_generic(Some(Generic::new(&keys, DEFAULT_GENERIC_ENTROPY)));
        let found = |text: &str| {
            let mut hits = Vec::new();
            g.scan_pairs(text, &mut hits);
            hits.iter().map(|h| text[h.start..h.end].to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(found("signing_key=Zk3q9XvB2mL7pR4tW8yN1c"), ["Zk3q9XvB2mL7pR4tW8yN1c"]);
        assert_eq!(found("auth_code: 8fJ2kLq9Zx4Tb7Wn0Rm5"), ["8fJ2kLq9Zx4Tb7Wn0Rm5"]);
        for plain in [
            "cache_key=aaaaaaaaaa11",
            "idempotency_key=a6cecc1b-78e5-4061-b311-d8a3c2ce6f44",
            "key_sha=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
            "api_version=2024-06-01",
            "keyboard=ConnectionTimeout",
        ] {
            assert_eq!(found(plain), Vec::<String>::new(), "{plain}");
        }
    }

    #[test]
    fn empty_values_are_not_hits() {
        assert_eq!(values("password= next"), Vec::<&str>::new());
        assert_eq!(values("token=&page=2"), Vec::<&str>::new());
    }
}
