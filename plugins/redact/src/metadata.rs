//! Redacting the `metadata` JSON text: the field rules (`fields`, `allow_fields`,
//! `deny_fields`) matched by dot path, secret key names matched against object keys, and the
//! detectors run over every string, number and key.
//!
//! This works on the text rather than on a parsed `serde_json::Value`: one pass validates the
//! JSON and records edits (byte range → replacement), and the text is rebuilt only if there is
//! an edit. That avoids building and freeing a tree per event (allocation is much slower in
//! Wasm than natively), keeps the producer's key order and formatting, and makes metadata with
//! nothing to redact cost a read-only pass. The SDK's `visit_strings_mut` is not used for the
//! same reason, and because the rules need full paths and non-string values.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::Redactor;
use crate::actions::{self, Action, Rewrite};
use crate::config::FieldRule;
use crate::detectors::{Detector, Within};
use crate::scratch::Scratch;

/// The field rules that apply inside metadata, keyed by full path (`metadata.args.body`).
pub struct MetaRules {
    rules: BTreeMap<String, FieldRule>,
    /// Strict prefixes of the paths with a `Redact` rule: an allowed subtree is still entered
    /// when a more specific rule sits below it (`allow metadata.args`, `deny metadata.args.pw`).
    ancestors: BTreeSet<String>,
}

impl MetaRules {
    pub fn new(fields: &BTreeMap<String, FieldRule>) -> MetaRules {
        let rules: BTreeMap<String, FieldRule> = fields
            .iter()
            .filter(|(path, _)| *path == "metadata" || path.starts_with("metadata."))
            .map(|(p, r)| (p.clone(), *r))
            .collect();
        let mut ancestors = BTreeSet::new();
        for (path, rule) in &rules {
            if let FieldRule::Redact(_) = rule {
                for (i, _) in path.match_indices('.') {
                    ancestors.insert(path[..i].to_owned());
                }
            }
        }
        MetaRules { rules, ancestors }
    }

    /// Whether metadata needs no look at all: allowed as a whole, with no rule inside.
    pub fn skip_all(&self) -> bool {
        self.rules.get("metadata") == Some(&FieldRule::Allow) && !self.ancestors.contains("metadata")
    }
}

/// Redact the metadata JSON `text`. Returns the new text, or `None` if nothing changed.
pub fn redact(r: &Redactor, text: &str, scratch: &mut Scratch) -> Result<Option<String>, String> {
    let track = !r.meta.rules.is_empty();
    let mode = match r.meta.rules.get("metadata") {
        Some(FieldRule::Allow) => Mode::Allowed,
        _ => Mode::Scan,
    };
    scratch.edits.clear();
    scratch.buf.clear();
    let mut pass = Pass {
        r,
        src: text,
        s: text.as_bytes(),
        pos: 0,
        depth: 0,
        sc: scratch,
        track,
        path: String::new(),
        key: (0, 0),
        parent: (0, 0),
        generic: false,
    };
    if track {
        pass.path.push_str("metadata");
    }
    pass.ws();
    let fate = pass.value(mode)?;
    pass.ws();
    if pass.pos != pass.s.len() {
        return Err(pass.error("unexpected characters after the metadata value"));
    }
    if let Fate::Drop = fate {
        // Metadata should be an object; a bare string or array that must go leaves an empty one.
        return Ok(Some("{}".to_owned()));
    }
    Ok((!pass.sc.edits.is_empty()).then(|| apply(text, &pass.sc.edits, &pass.sc.buf)))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Detectors, key names and rules apply.
    Scan,
    /// Inside an allowed path with a more specific rule below: only rules apply.
    Allowed,
    /// Validate only: allowed paths, and values that are replaced whole.
    Skip,
}

enum Fate {
    Keep,
    /// Remove the enclosing object entry.
    Drop,
}

/// Replace `src[start..end]` with `buf[from..to]` (the pass's replacement buffer).
pub struct Edit {
    start: usize,
    end: usize,
    from: usize,
    to: usize,
}

fn apply(src: &str, edits: &[Edit], buf: &str) -> String {
    let mut out = String::with_capacity(src.len() + buf.len());
    let mut copied = 0;
    for e in edits {
        out.push_str(&src[copied..e.start]);
        out.push_str(&buf[e.from..e.to]);
        copied = e.end;
    }
    out.push_str(&src[copied..]);
    out
}

/// Same limit as serde_json: deeper input is rejected rather than risking the (small, in
/// Wasm) stack.
const MAX_DEPTH: usize = 128;

/// One pass over the metadata text. Edits are recorded in text order and never overlap: an
/// entry that is dropped first discards the edits recorded inside it.
struct Pass<'a, 'h> {
    r: &'a Redactor,
    src: &'a str,
    s: &'a [u8],
    pos: usize,
    depth: usize,
    sc: &'h mut Scratch,
    /// Whether any metadata rule exists; without one the path is not built at all.
    track: bool,
    path: String,
    /// The raw text (between the quotes) of the key whose value is being read, and of its
    /// parent's key: the context of the detectors' context words.
    key: (usize, usize),
    parent: (usize, usize),
    /// Whether that key is secret-ish for `generic_secret`.
    generic: bool,
}

impl<'a> Pass<'a, '_> {
    fn error(&self, what: &str) -> String {
        format!("metadata is not valid JSON: {what} at byte {}", self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.pos += 1;
        self.ws();
        Ok(())
    }

    fn value(&mut self, mode: Mode) -> Result<Fate, String> {
        match self.peek() {
            Some(b'{') => self.object(mode).map(|()| Fate::Keep),
            Some(b'[') => self.array(mode),
            Some(b'"') => self.string_value(mode),
            Some(b'-' | b'0'..=b'9') => self.number(mode),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => Err(self.error("expected a value")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<Fate, String> {
        if !self.s[self.pos..].starts_with(word) {
            return Err(self.error("invalid literal"));
        }
        self.pos += word.len();
        Ok(Fate::Keep)
    }

    fn object(&mut self, mode: Mode) -> Result<(), String> {
        let after_brace = self.pos + 1;
        self.enter()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        // Dropping an entry deletes it up to the next key; a dropped run at the end of the
        // object is deleted from the end of the last kept entry instead, taking the comma
        // before it, so the object stays valid JSON.
        let mut last_kept_end = after_brace;
        let mut trailing_run: Option<usize> = None;
        let mut renamed = Renamed::default();
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let entry_start = self.pos;
            let edits_before = self.sc.edits.len();
            let dropped = self.entry(mode, &mut renamed)?;
            let value_end = self.pos;
            self.ws();
            let more = match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                    true
                }
                Some(b'}') => false,
                _ => return Err(self.error("expected ',' or '}'")),
            };
            if dropped {
                self.sc.edits.truncate(edits_before);
                let run_start = *trailing_run.get_or_insert(self.sc.edits.len());
                if more {
                    self.delete(entry_start, self.pos);
                } else {
                    self.sc.edits.truncate(run_start);
                    self.delete(last_kept_end, value_end);
                }
            } else {
                trailing_run = None;
                last_kept_end = value_end;
            }
            if !more {
                break;
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(())
    }

    /// One `"key": value` entry; returns whether it is to be dropped.
    fn entry(&mut self, mode: Mode, renamed: &mut Renamed) -> Result<bool, String> {
        let key_start = self.pos;
        let key = self.string(mode != Mode::Skip || self.track)?;
        let key_end = self.pos;
        self.ws();
        if self.peek() != Some(b':') {
            return Err(self.error("expected ':'"));
        }
        self.pos += 1;
        self.ws();
        let mark = self.path.len();
        if self.track {
            self.path.push('.');
            self.path.push_str(&key);
        }
        let saved = (self.key, self.parent, self.generic);
        let dropped = self.entry_value(mode, &key, key_start, key_end, renamed);
        (self.key, self.parent, self.generic) = saved;
        self.path.truncate(mark);
        dropped
    }

    fn entry_value(
        &mut self,
        mode: Mode,
        key: &str,
        key_start: usize,
        key_end: usize,
        renamed: &mut Renamed,
    ) -> Result<bool, String> {
        let mut mode = mode;
        if self.track && mode != Mode::Skip {
            match self.r.meta.rules.get(self.path.as_str()) {
                Some(FieldRule::Redact(action)) => {
                    return self.replace_value(*action, "field", false);
                }
                Some(FieldRule::Allow) => mode = Mode::Allowed,
                None => {}
            }
            if mode == Mode::Allowed && !self.r.meta.ancestors.contains(self.path.as_str()) {
                mode = Mode::Skip;
            }
        }
        if mode != Mode::Scan {
            return Ok(matches!(self.value(mode)?, Fate::Drop));
        }
        // Keys can hold PII too (maps keyed by email address); their context is the parent.
        let within = Within {
            src: self.src,
            key: self.key,
            parent: (0, 0),
            generic: false,
        };
        match self.r.rewrite_text(key, within, self.sc) {
            Rewrite::Unchanged => {}
            Rewrite::Changed(new) => {
                let from = self.sc.buf.len();
                push_json_string(&mut self.sc.buf, &unique(new, renamed));
                self.sc.edits.push(Edit {
                    start: key_start,
                    end: key_end,
                    from,
                    to: self.sc.buf.len(),
                });
            }
            Rewrite::Drop => {
                self.value(Mode::Skip)?;
                return Ok(true);
            }
        }
        let (secret, generic) = self.r.secrets.classify(key);
        if secret {
            let action = self.r.actions[Detector::Secret as usize];
            return self.replace_value(action, Detector::Secret.name(), true);
        }
        self.parent = self.key;
        self.key = (key_start + 1, key_end - 1);
        self.generic = generic;
        Ok(matches!(self.value(Mode::Scan)?, Fate::Drop))
    }

    /// Replace (or drop) the value at `pos` as a whole, whatever its type. With `if_informative`,
    /// `null`, booleans and empty strings, arrays and objects are left alone: they reveal
    /// nothing, and `"password_set": true` stays readable.
    fn replace_value(&mut self, action: Action, label: &str, if_informative: bool) -> Result<bool, String> {
        let start = self.pos;
        self.value(Mode::Skip)?;
        let raw = &self.src[start..self.pos];
        if if_informative && !informative(raw) {
            return Ok(false);
        }
        let text: Cow<'_, str> = match action {
            Action::Drop => return Ok(true),
            Action::Mask => Cow::Borrowed(""),
            Action::Hash => value_text(raw),
        };
        let from = self.sc.buf.len();
        // Labels and hex digits need no escaping.
        self.sc.buf.push('"');
        actions::render(&mut self.sc.buf, action, label, &text, &self.r.hasher);
        self.sc.buf.push('"');
        self.sc.edits.push(Edit {
            start,
            end: self.pos,
            from,
            to: self.sc.buf.len(),
        });
        Ok(false)
    }

    /// Arrays are transparent: elements share the array's path, and an element that must be
    /// dropped drops the whole field.
    fn array(&mut self, mode: Mode) -> Result<Fate, String> {
        self.enter()?;
        let mut fate = Fate::Keep;
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(fate);
        }
        loop {
            let element_mode = if let Fate::Drop = fate { Mode::Skip } else { mode };
            if let Fate::Drop = self.value(element_mode)? {
                fate = Fate::Drop;
            }
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
        self.depth -= 1;
        Ok(fate)
    }

    fn string_value(&mut self, mode: Mode) -> Result<Fate, String> {
        let start = self.pos;
        let text = self.string(mode == Mode::Scan)?;
        if mode != Mode::Scan {
            return Ok(Fate::Keep);
        }
        Ok(self.rewrite(start, &text))
    }

    /// A card number can arrive as a JSON number; only integers of 13+ digits can hold one.
    fn number(&mut self, mode: Mode) -> Result<Fate, String> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        let int_digits = self.pos - int_start;
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.required_digits()?;
            integer = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.required_digits()?;
            integer = false;
        }
        if mode != Mode::Scan || !integer || int_digits < 13 {
            return Ok(Fate::Keep);
        }
        let src = self.src;
        Ok(self.rewrite(start, &src[start..self.pos]))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), String> {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            return Err(self.error("invalid number"));
        }
        Ok(())
    }

    /// Run the detectors over `text`, the decoded value of the token `src[start..pos]`, and
    /// write the redacted string straight into the replacement buffer.
    fn rewrite(&mut self, start: usize, text: &str) -> Fate {
        let within = Within {
            src: self.src,
            key: self.key,
            parent: self.parent,
            generic: self.generic,
        };
        self.r.find(text, within, self.sc);
        if self.sc.hits.is_empty() {
            return Fate::Keep;
        }
        if actions::drops(&self.sc.hits, &self.r.actions) {
            return Fate::Drop;
        }
        let from = self.sc.buf.len();
        self.sc.buf.push('"');
        actions::rewrite_into(
            &mut self.sc.buf,
            text,
            &mut self.sc.hits,
            &self.r.actions,
            &self.r.hasher,
            true,
        );
        self.sc.buf.push('"');
        self.sc.edits.push(Edit {
            start,
            end: self.pos,
            from,
            to: self.sc.buf.len(),
        });
        Fate::Keep
    }

    fn delete(&mut self, start: usize, end: usize) {
        let at = self.sc.buf.len();
        self.sc.edits.push(Edit {
            start,
            end,
            from: at,
            to: at,
        });
    }

    /// The string starting at `pos` (its opening quote). Without escapes (the common case) it
    /// is borrowed from the text; with escapes it is decoded only if `decode`.
    fn string(&mut self, decode: bool) -> Result<Cow<'a, str>, String> {
        let src = self.src;
        self.pos += 1;
        let start = self.pos;
        // Fast path: find the end of a string without escapes.
        match crate::swar::json_stop(&self.s[start..]) {
            Some(k) => self.pos = start + k,
            None => {
                self.pos = self.s.len();
                return Err(self.error("unterminated string"));
            }
        }
        match self.s[self.pos] {
            b'"' => {
                self.pos += 1;
                return Ok(Cow::Borrowed(&src[start..self.pos - 1]));
            }
            b'\\' => {}
            _ => return Err(self.error("control character in string")),
        }
        let mut out = String::new();
        if decode {
            out.push_str(&src[start..self.pos]);
        }
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.escape()?;
                    if decode {
                        out.push(c);
                    }
                }
                Some(0x00..=0x1f) => return Err(self.error("control character in string")),
                Some(_) => {
                    let run = self.pos;
                    while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                        self.pos += 1;
                    }
                    if decode {
                        out.push_str(&src[run..self.pos]);
                    }
                }
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// The character of the escape after a backslash.
    fn escape(&mut self) -> Result<char, String> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let high = self.hex4()?;
                if !(0xD800..0xDC00).contains(&high) {
                    // A lone low surrogate is not a character; it cannot hide one either.
                    return Ok(char::from_u32(high).unwrap_or('\u{FFFD}'));
                }
                if self.s[self.pos..].starts_with(b"\\u") {
                    let save = self.pos;
                    self.pos += 2;
                    let low = self.hex4()?;
                    if (0xDC00..0xE000).contains(&low) {
                        let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                        return Ok(char::from_u32(c).unwrap_or('\u{FFFD}'));
                    }
                    self.pos = save;
                }
                return Ok('\u{FFFD}');
            }
            _ => return Err(self.error("invalid escape")),
        };
        self.pos += 1;
        Ok(c)
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("invalid \\u escape"))?;
        let mut v = 0;
        for &d in digits {
            let n = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid \\u escape"))?;
            v = v * 16 + n;
        }
        self.pos += 4;
        Ok(v)
    }
}

/// The text a whole value is hashed by: a string's content, or any other value's compact JSON
/// (with object keys sorted, so formatting does not change the pseudonym).
fn value_text(raw: &str) -> Cow<'_, str> {
    if raw.starts_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(raw) {
            return Cow::Owned(s);
        }
    } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(raw) {
        return Cow::Owned(v.to_string());
    }
    Cow::Borrowed(raw)
}

fn informative(raw: &str) -> bool {
    match raw.as_bytes()[0] {
        b'n' | b't' | b'f' => false,
        b'"' => raw.len() > 2,
        b'[' | b'{' => !raw[1..raw.len() - 1].trim_matches([' ', '\t', '\n', '\r']).is_empty(),
        _ => true,
    }
}

/// Append `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    actions::push_json_escaped(out, s);
    out.push('"');
}

/// The redacted keys of one object: the names taken, and the next number to try per name.
/// Allocated on the first renamed key, so objects without one pay nothing.
#[derive(Default)]
struct Renamed(Option<Box<Names>>);

/// The names taken, and per name the next number to try.
type Names = (BTreeSet<String>, BTreeMap<String, usize>);

/// Two keys can redact to the same text (`[REDACTED:email]`); number the later ones so no
/// value is lost to a duplicate key. Each name remembers where its numbering got to, so an
/// object of many keys that all redact alike costs O(log n) per key, not O(n²).
fn unique(name: String, renamed: &mut Renamed) -> String {
    let (taken, next) = &mut **renamed.0.get_or_insert_with(Default::default);
    let mut candidate = name.clone();
    let mut n = next.get(&name).copied().unwrap_or(2);
    while taken.contains(&candidate) {
        candidate = format!("{name}#{n}");
        n += 1;
    }
    next.insert(name, n);
    taken.insert(candidate.clone());
    candidate
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// Redact `text` with `config`; the output must be valid JSON.
    fn run(config: Value, text: &str) -> Result<Option<String>, String> {
        let r = Redactor::from_config(&config).expect("valid config");
        let out = redact(&r, text, &mut Scratch::default())?;
        if let Some(out) = &out {
            serde_json::from_str::<Value>(out).unwrap_or_else(|e| panic!("invalid output {out:?}: {e}"));
        }
        Ok(out)
    }

    fn changed(config: Value, text: &str) -> String {
        run(config, text).expect("valid JSON").expect("a change")
    }

    #[test]
    fn untouched_text_is_not_rebuilt() {
        assert_eq!(
            run(json!({}), r#"{ "b": [1, 2.5e3, -0, true, null], "a": "4.6.6" }"#),
            Ok(None)
        );
    }

    #[test]
    fn formatting_and_key_order_survive_an_edit() {
        let out = changed(
            json!({}),
            "{\n  \"z\": \"ok\",\n  \"mail\": \"bob@x.io\",\n  \"a\": 1\n}",
        );
        assert_eq!(
            out,
            "{\n  \"z\": \"ok\",\n  \"mail\": \"[REDACTED:email]\",\n  \"a\": 1\n}"
        );
    }

    #[test]
    fn escaped_strings_are_decoded_before_scanning() {
        // `\u0040` is `@`: the escape must not hide the address.
        let out = changed(json!({}), r#"{"m": "bob\u0040x.io \"quoted\"\n"}"#);
        assert_eq!(out, r#"{"m": "[REDACTED:email] \"quoted\"\n"}"#);
        let out = changed(json!({}), r#"{"k\u0065y": "x", "pass\u0077ord": "hunter2"}"#);
        assert_eq!(out, r#"{"k\u0065y": "x", "pass\u0077ord": "[REDACTED:secret]"}"#);
    }

    #[test]
    fn drops_keep_the_json_valid() {
        let drop_secrets = json!({"secret_key_action": "drop"});
        let cases = [
            (r#"{"token": 1, "a": 2}"#, r#"{"a": 2}"#),
            (r#"{"a": 1, "token": 2, "b": 3}"#, r#"{"a": 1, "b": 3}"#),
            (r#"{"a": 1, "token": 2}"#, r#"{"a": 1}"#),
            (r#"{"a": 1, "token": 2, "pwd": 3}"#, r#"{"a": 1}"#),
            (r#"{"token": 1, "pwd": 2, "a": 3}"#, r#"{"a": 3}"#),
            (r#"{"token": 1, "pwd": 2}"#, "{}"),
            (
                r#"{ "token" : 1 , "a" : [ {"pwd": 1, "x": 2} ] }"#,
                r#"{ "a" : [ {"x": 2} ] }"#,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(changed(drop_secrets.clone(), input), expected, "{input}");
        }
    }

    #[test]
    fn a_dropped_entry_discards_edits_inside_it() {
        let out = changed(
            json!({"actions": {"ssn": "drop"}}),
            r#"{"a": ["bob@x.io", "391-55-0476"], "b": "bob@x.io"}"#,
        );
        assert_eq!(out, r#"{"b": "[REDACTED:email]"}"#);
    }

    #[test]
    fn hashing_non_strings_ignores_formatting() {
        let config = json!({"secret_key_action": "hash", "hash_key": "k"});
        let a: Value = serde_json::from_str(&changed(config.clone(), r#"{"token": {"b": 1, "a": [1,2]}}"#)).unwrap();
        let b: Value = serde_json::from_str(&changed(config, r#"{"token": { "a": [1, 2], "b": 1 }}"#)).unwrap();
        assert_eq!(a, b);
        assert!(a["token"].as_str().unwrap().starts_with("[HASH:secret:"));
    }

    #[test]
    fn kept_text_around_a_replacement_is_re_escaped() {
        let out = changed(
            json!({}),
            r#"{"m": "tab\there \"bob@x.io\" \u0001 \\ done", "k\"bob@x.io": 1}"#,
        );
        assert_eq!(
            out,
            r#"{"m": "tab\there \"[REDACTED:email]\" \u0001 \\ done", "k\"[REDACTED:email]": 1}"#
        );
    }

    #[test]
    fn invalid_json_is_rejected() {
        for bad in [
            "{",
            "{\"a\" 1}",
            "{\"a\": 1,}",
            "{\"a\": 1} x",
            "{\"a\": [1 2]}",
            "{\"a\": \"x}",
            "{\"a\": \"\u{1}\"}",
            "{\"a\": \"\\x\"}",
            "{\"a\": \"\\u12\"}",
            "{\"a\": tru}",
            "{\"a\": 01x}",
            "{\"a\": 1.}",
            "{\"a\": -}",
            "{a: 1}",
            "",
        ] {
            let err = run(json!({}), bad).expect_err(bad);
            assert!(err.starts_with("metadata is not valid JSON: "), "{bad}: {err}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(
            run(json!({}), &format!("{{\"a\": {deep}}}"))
                .unwrap_err()
                .contains("nested too deeply")
        );
    }

    #[test]
    fn surrogate_pairs_decode() {
        let out = changed(json!({}), r#"{"m": "\ud83d\ude00 bob@x.io \ud800"}"#);
        assert_eq!(out, r#"{"m": "😀 [REDACTED:email] �"}"#);
    }

    /// Random documents with secret keys, PII and drops in every position: the output must
    /// always be valid JSON (checked by `run`) and hold none of the planted PII.
    #[test]
    fn random_documents_stay_valid() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        const KEYS: [&str; 6] = ["token", "name", "pwd", "items", "note", "a b"];
        const LEAVES: [&str; 6] = [
            "\"bob@x.io\"",
            "\"391-55-0476\"",
            "\"plain\"",
            "42",
            "null",
            "\"4.6.6\"",
        ];
        fn doc(next: &mut dyn FnMut(usize) -> usize, depth: usize) -> String {
            match if depth > 3 { 2 } else { next(3) } {
                0 => {
                    let entries: Vec<String> = (0..next(4))
                        .map(|_| format!("{:?}: {}", KEYS[next(KEYS.len())], doc(next, depth + 1)))
                        .collect();
                    format!("{{ {} }}", entries.join(" , "))
                }
                1 => format!(
                    "[{}]",
                    (0..next(3)).map(|_| doc(next, depth + 1)).collect::<Vec<_>>().join(",")
                ),
                _ => LEAVES[next(LEAVES.len())].to_owned(),
            }
        }
        let configs = [
            json!({}),
            json!({"secret_key_action": "drop", "actions": {"ssn": "drop"}}),
            json!({"default_action": "drop"}),
        ];
        for i in 0..3000 {
            let text = format!("{{\"root\": {}}}", doc(&mut next, 0));
            let config = &configs[i % configs.len()];
            let out = run(config.clone(), &text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let out = out.unwrap_or(text.clone());
            assert!(
                !out.contains("bob@x.io") && !out.contains("391-55-0476"),
                "{text} -> {out}"
            );
        }
    }
}
