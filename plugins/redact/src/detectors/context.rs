//! Context words: the weak detectors (bare 9-digit numbers as SSNs, passports or routing
//! numbers, driver's-licence numbers, national phone formats, dates of birth) only match when
//! one of their words occurs near the candidate: within `window` characters before or after
//! it in the same string, or in the key of the JSON entry holding the string (in
//! `{"passport_no": "X12345678"}` the key is the context). Words are matched
//! case-insensitively and as whole words (`dob` does not match inside `adobe`).
//!
//! All words of all detectors are compiled once at init into one Aho–Corasick automaton, and
//! it only runs over a string once a weak candidate has been found in it (then once, for all
//! candidates and detectors), so strings without a candidate never pay for it. Default word
//! lists follow Microsoft Presidio's recognizers (presidio-analyzer/presidio_analyzer/
//! predefined_recognizers/country_specific/us/*.py, generic/phone_recognizer.py); see
//! docs/REDACTION.md for where they differ.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::Detector;

/// Default context words of the detectors that have any (others never need context).
pub fn default_words(d: Detector) -> &'static [&'static str] {
    match d {
        Detector::Ssn => &["ssn", "ssns", "ssid", "social security", "social"],
        Detector::UsItin => &["itin", "taxpayer", "tax id", "taxid", "tin", "tax", "individual"],
        Detector::UsBankRouting => &["aba", "routing", "abarouting", "bankrouting", "rtn", "transit"],
        Detector::UsPassport => &["passport", "passport#", "passport no", "travel document"],
        Detector::UsDriverLicense => &[
            "driver", "drivers", "driver's", "license", "licence", "lic", "lic#", "dl", "dl#", "dls", "cdl", "cdls",
            "driving", "permit",
        ],
        Detector::Phone => &[
            "phone",
            "telephone",
            "tel",
            "cell",
            "cellphone",
            "mobile",
            "call",
            "fax",
            "contact",
            "whatsapp",
        ],
        Detector::DateOfBirth => &[
            "birth",
            "birthday",
            "birthdate",
            "born",
            "dob",
            "d.o.b",
            "date of birth",
        ],
        _ => &[],
    }
}

/// The detectors that take context words.
pub const GATED: [Detector; 7] = [
    Detector::Ssn,
    Detector::UsItin,
    Detector::UsBankRouting,
    Detector::UsPassport,
    Detector::UsDriverLicense,
    Detector::Phone,
    Detector::DateOfBirth,
];

/// Default window, in characters, on each side of a candidate.
pub const DEFAULT_WINDOW: usize = 48;

/// The compiled context words of the enabled detectors.
pub struct Context {
    automaton: Option<AhoCorasick>,
    /// For each pattern of the automaton, the detectors (bit per `GATED` index) it serves.
    owners: Vec<u8>,
    window: usize,
}

/// Where the context words of one string are, found on the first weak candidate. Reused
/// from string to string (its buffer is kept in the batch's scratch).
#[derive(Default)]
pub struct Found {
    /// `(start, end, owners)` of each whole-word match in the string.
    spans: Vec<(usize, usize, u8)>,
    /// Owners of the words in the entry's keys.
    key: u8,
    done: bool,
}

impl Found {
    /// Forget the previous string.
    pub fn reset(&mut self) {
        self.done = false;
    }
}

fn bit(d: Detector) -> u8 {
    GATED.iter().position(|g| *g == d).map_or(0, |i| 1 << i)
}

impl Context {
    /// `words(d)` gives each gated detector's list (configured or default).
    pub fn new<'a>(words: impl Fn(Detector) -> &'a [String], window: usize) -> Context {
        let mut patterns: Vec<String> = Vec::new();
        let mut owners: Vec<u8> = Vec::new();
        for d in GATED {
            for w in words(d) {
                let w = w.to_ascii_lowercase();
                // In keys words are joined by `_` or `-` (`travel_document`, `date-of-birth`).
                let variants = [w.clone(), w.replace(' ', "_"), w.replace(' ', "-")];
                for v in variants {
                    match patterns.iter().position(|p| *p == v) {
                        Some(i) => owners[i] |= bit(d),
                        None => {
                            patterns.push(v);
                            owners.push(bit(d));
                        }
                    }
                }
            }
        }
        let automaton = (!patterns.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .expect("context words compile")
        });
        Context {
            automaton,
            owners,
            window,
        }
    }

    /// Call `f(start, end, owners)` for each whole-word match in `text`.
    fn scan(&self, text: &[u8], mut f: impl FnMut(usize, usize, u8)) {
        let Some(ac) = &self.automaton else { return };
        for m in ac.find_iter(text) {
            let (a, b) = (m.start(), m.end());
            let letter = |i: usize| text.get(i).is_some_and(|c| c.is_ascii_alphabetic());
            if (a == 0 || !letter(a - 1)) && !letter(b) {
                f(a, b, self.owners[m.pattern().as_usize()]);
            }
        }
    }

    /// Whether a word of `d` is in `keys` (the entry's key and its parent's) or within the
    /// window around `text[start..end]`.
    pub fn near(&self, d: Detector, text: &[u8], keys: [&str; 2], start: usize, end: usize, found: &mut Found) -> bool {
        if !found.done {
            found.done = true;
            found.spans.clear();
            self.scan(text, |a, b, o| found.spans.push((a, b, o)));
            let mut in_keys = 0;
            for key in keys {
                self.scan(key.as_bytes(), |_, _, o| in_keys |= o);
            }
            found.key = in_keys;
        }
        let b = bit(d);
        if found.key & b != 0 {
            return true;
        }
        let from = back_chars(text, start, self.window);
        let to = forward_chars(text, end, self.window);
        found
            .spans
            .iter()
            .any(|&(a, e, owners)| owners & b != 0 && a >= from && e <= to)
    }
}

/// The byte offset `n` characters before `i` (UTF-8 continuation bytes do not count).
fn back_chars(s: &[u8], mut i: usize, mut n: usize) -> usize {
    while i > 0 && n > 0 {
        i -= 1;
        if s[i] & 0xC0 != 0x80 {
            n -= 1;
        }
    }
    i
}

/// The byte offset `n` characters after `i`.
fn forward_chars(s: &[u8], mut i: usize, mut n: usize) -> usize {
    while i < s.len() && n > 0 {
        i += 1;
        while i < s.len() && s[i] & 0xC0 == 0x80 {
            i += 1;
        }
        n -= 1;
    }
    i
}
