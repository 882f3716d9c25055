//! Detection on a normalised view: full-width `＠`, full-width digits, ligatures and other
//! compatibility characters are folded by NFKC, and zero-width characters (U+200B, U+200C,
//! U+200D, U+2060, U+FEFF, soft hyphen U+00AD) are removed, so `alice＠example.com`,
//! `al\u{200b}ice@example.com` or `gh\u{200b}p_…` cannot slip past the detectors. The
//! detectors run on the view as well as on the original; every match in the view is mapped
//! back to the bytes of the original characters it came from, and the **original** span is
//! replaced, so text without a match is never changed.
//!
//! NFKC is applied character by character (each character's compatibility decomposition,
//! recomposed), which keeps the map from view bytes to original characters exact. Combining
//! sequences across characters (`e` + U+0301) are not composed: either way they are non-ASCII
//! bytes, which every detector treats alike.
//!
//! Only strings holding non-ASCII bytes pay anything: the detectors' prefilter already reads
//! every byte and notes one (`Seen::non_ascii`); of those, only strings that NFKC or the
//! zero-width filter would change get a view (`unicode-normalization`'s quick check first).

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

use crate::detectors::{Detectors, Found, Hit, Within};
use crate::secrets::SecretKeys;

/// The characters removed from the view: invisible, and used to split words.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// Whether `text` has a view different from itself.
fn changes(text: &str) -> bool {
    text.chars().any(is_invisible) || is_nfkc_quick(text.chars()) != IsNormalized::Yes
}

/// A normalised view of one string and the map back; its buffers are reused across strings.
#[derive(Default)]
pub struct View {
    text: String,
    /// For each byte of `text`, the byte range in the original of the character it came from.
    origin: Vec<(usize, usize)>,
}

impl View {
    /// Build the view of `original`. Returns false (the view is then meaningless) when the
    /// view would be `original` itself.
    pub fn build(&mut self, original: &str) -> bool {
        if !changes(original) {
            return false;
        }
        self.text.clear();
        self.origin.clear();
        for (at, c) in original.char_indices() {
            if is_invisible(c) {
                continue;
            }
            if c.is_ascii() {
                self.text.push(c);
            } else {
                self.text.extend(std::iter::once(c).nfkc());
            }
            self.origin.resize(self.text.len(), (at, at + c.len_utf8()));
        }
        self.text != original
    }

    /// The original byte range of the view's `start..end`: from the first byte of the
    /// character the match starts in to the last byte of the one it ends in. Out of range
    /// (never expected) it is the whole original, to fail closed.
    fn to_original(&self, start: usize, end: usize, original_len: usize) -> (usize, usize) {
        match (
            self.origin.get(start),
            end.checked_sub(1).and_then(|e| self.origin.get(e)),
        ) {
            (Some(&(from, _)), Some(&(_, to))) if from < to => (from, to),
            _ => (0, original_len),
        }
    }
}

/// The view of a short string (an object key) as a new string; `None` if it is its own view.
pub fn normalised(text: &str) -> Option<String> {
    let mut view = View::default();
    view.build(text).then_some(view.text)
}

/// Find everything in `text` into `hits` (cleared first): the detectors and the key=value
/// secrets on the text itself and, if it has one, on its normalised view, mapped back.
/// `within` says where the text sits (see [`Within`]); `view` and `found` are buffers.
pub fn find(
    detectors: &Detectors,
    secrets: &SecretKeys,
    text: &str,
    within: Within,
    hits: &mut Vec<Hit>,
    view: &mut View,
    found: &mut Found,
) {
    hits.clear();
    let seen = detectors.scan(text, within, hits, found);
    if seen.pairs {
        secrets.scan_pairs(text, hits);
    }
    if within.generic {
        secrets.scan_value(text, hits);
    }
    if seen.non_ascii && view.build(text) {
        let from = hits.len();
        let seen = detectors.scan(&view.text, within, hits, found);
        if seen.pairs {
            secrets.scan_pairs(&view.text, hits);
        }
        for hit in &mut hits[from..] {
            (hit.start, hit.end) = view.to_original(hit.start, hit.end, text.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_and_map() {
        let mut view = View::default();
        assert!(!view.build("plain ascii"));
        assert!(!view.build("zoë café ☃"), "already NFKC, nothing invisible");
        assert!(view.build("a\u{200b}b＠ｃ"));
        assert_eq!(view.text, "ab@c");
        // `@` came from the three bytes of `＠`, at 5..8 (the zero-width space is 1..4).
        assert_eq!(view.to_original(2, 3, 11), (5, 8));
        assert_eq!(view.to_original(0, 4, 11), (0, 11));
        assert!(view.build("ﬁ"));
        assert_eq!(view.text, "fi");
        assert_eq!(view.to_original(1, 2, 3), (0, 3));
        assert_eq!(view.to_original(5, 9, 3), (0, 3), "out of range fails closed");
        assert_eq!(normalised("pass\u{ad}word").as_deref(), Some("password"));
        assert_eq!(normalised("password"), None);
    }
}
