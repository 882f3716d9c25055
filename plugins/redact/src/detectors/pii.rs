//! Personal and financial identifiers beyond the original set, after Microsoft Presidio's
//! recognizers (presidio-analyzer/presidio_analyzer/predefined_recognizers/): IBANs (mod-97),
//! US ITINs, bank routing numbers (ABA checksum), passport and driver's-licence numbers, dates
//! of birth, MAC addresses, crypto wallet addresses (Bitcoin base58check and bech32/bech32m,
//! Ethereum) and the credentials in URLs. The weak ones (a bare 9-digit number could be
//! anything) only match with a context word near them ([`super::context`]).

use sha2::{Digest, Sha256};

use super::numbers::{clean_left, clean_right, digit_run};
use super::{Cx, Detector, Hit, is_alnum, is_digit, is_hex, is_word};

fn push(hits: &mut Vec<Hit>, start: usize, end: usize, detector: Detector) {
    hits.push(Hit { start, end, detector });
}

fn number(s: &[u8]) -> u32 {
    s.iter()
        .fold(0u32, |v, d| v.saturating_mul(10).saturating_add(u32::from(d - b'0')))
}

// ---------------------------------------------------------------------------------------------
// Identifiers found from a digit run: bare 9-digit numbers (SSN, ITIN, routing, passport),
// letter-prefixed numbers (passport, driver's licence), dashed routing numbers.

/// ITIN group digits (4th and 5th): 50–65, 70–88, 90–92, 94–99 (Presidio us_itin_recognizer).
pub(super) fn itin_group(g: &[u8]) -> bool {
    matches!(number(g), 50..=65 | 70..=88 | 90..=92 | 94..=99)
}

/// The ABA checksum: 3·d1 + 7·d2 + d3 + 3·d4 + … ≡ 0 (mod 10), with a Federal Reserve
/// prefix 00–12, 21–32, 61–72 or 80.
fn aba(digits: &[u8]) -> bool {
    if digits.len() != 9 || !matches!(number(&digits[..2]), 0..=12 | 21..=32 | 61..=72 | 80) {
        return false;
    }
    let w = [3, 7, 1];
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| w[i % 3] * u32::from(d - b'0'))
        .sum();
    sum.is_multiple_of(10)
}

/// Whether a 9-digit SSN's parts were ever issuable.
pub(super) fn ssn_parts(area: &[u8], group: &[u8], serial: &[u8]) -> bool {
    area != b"000" && area != b"666" && area[0] != b'9' && group != b"00" && serial != b"0000"
}

/// What [`run_at`] looks for.
#[derive(Clone, Copy)]
pub(super) struct Want {
    pub ids: bool,
    pub dates: bool,
    pub iban: bool,
}

impl Want {
    pub(super) fn any(self) -> bool {
        self.ids || self.dates || self.iban
    }
}

/// The identifiers found from a digit run: IBANs, dates of birth, and the weak numbers (bare
/// or spaced SSNs and ITINs, routing, passport and driver's-licence numbers). Called by the
/// word-start loop of `tokens::scan_anchored` for each word that starts with a digit, or
/// with one or two capitals and a digit (`start` is that digit), so no pass of their own
/// walks the string. Returns where to resume if a match spans past the run.
#[inline(never)]
pub(super) fn run_at(s: &[u8], start: usize, cx: &mut Cx, want: Want, hits: &mut Vec<Hit>) -> Option<usize> {
    let end = digit_run(s, start);
    // Every shape here starts clean (not glued to a word, not the continuation of a number)
    // or after capital letters (`DE89…`, `X1234…`).
    if start > 0 {
        let p = s[start - 1];
        if (is_word(p) && !p.is_ascii_uppercase())
            || (matches!(p, b'-' | b'.' | b'+' | b'/' | b':') && start >= 2 && is_digit(s[start - 2]))
        {
            return None;
        }
    }
    if want.iban
        && start >= 2
        && s[start - 1].is_ascii_uppercase()
        && s[start - 2].is_ascii_uppercase()
        && let Some(e) = iban_at(s, start - 2, hits)
    {
        return Some(e);
    }
    // Only some run lengths start a shape: a date's 1–2 or 4 digits before a separator (or a
    // year after a month name), 3–4 digits starting a group, 7–9 digits, or 5–14 after
    // capitals. Most numbers (ports, counters, epoch seconds) stop here.
    let n = end - start;
    let capitals = start > 0 && s[start - 1].is_ascii_uppercase();
    let sep = s.get(end).copied().unwrap_or(0);
    if want.dates
        && !capitals
        && (matches!(n, 1 | 2 | 4) && matches!(sep, b'-' | b'/' | b'.') || n == 4)
        && let Some(e) = date_at(s, start, end, cx, hits)
    {
        return Some(e);
    }
    if want.ids && (capitals || matches!(n, 3 | 4 | 7..=9)) {
        return id_at(s, start, end, cx, hits);
    }
    None
}

/// The weak numbers whose digit run starts at `start` and ends at `end`. Returns where to
/// resume when a match spans further than the run.
fn id_at(s: &[u8], start: usize, end: usize, cx: &mut Cx, hits: &mut Vec<Hit>) -> Option<usize> {
    // Up to two capital letters may lead (`X12345678`, `DL1234567`).
    let mut t = start;
    while t > 0 && start - t < 2 && s[t - 1].is_ascii_uppercase() {
        t -= 1;
    }
    let letters = start - t;
    let n = end - start;
    // The shapes: 3 or 4 digits starting a group, 9 digits, a letter and 8, 7–9 digits or
    // 1–2 letters and 5–14 (driver's licences). Anything else costs nothing more.
    let shaped = match letters {
        0 => matches!(n, 3 | 4 | 7..=9),
        _ => (5..=14).contains(&n),
    };
    if !shaped || !clean_left(s, t) {
        return None;
    }
    if letters == 0 && matches!(n, 3 | 4) {
        return grouped_id_at(s, start, end, cx, hits);
    }
    if !clean_right(s, end) {
        return None;
    }
    let digits = &s[start..end];
    if letters == 0 && n == 9 {
        if cx.on(Detector::Ssn)
            && ssn_parts(&digits[..3], &digits[3..5], &digits[5..])
            && cx.near(Detector::Ssn, start, end)
        {
            push(hits, start, end, Detector::Ssn);
        }
        if cx.on(Detector::UsItin)
            && digits[0] == b'9'
            && itin_group(&digits[3..5])
            && cx.near(Detector::UsItin, start, end)
        {
            push(hits, start, end, Detector::UsItin);
        }
        if cx.on(Detector::UsBankRouting) && aba(digits) && cx.near(Detector::UsBankRouting, start, end) {
            push(hits, start, end, Detector::UsBankRouting);
        }
    }
    if cx.on(Detector::UsPassport)
        && ((letters == 0 && n == 9) || (letters == 1 && n == 8))
        && cx.near(Detector::UsPassport, t, end)
    {
        push(hits, t, end, Detector::UsPassport);
    }
    // Presidio also takes bare runs of 6–14 and 16 digits; those are mostly timestamps, order
    // numbers and counters, and the states that use all-digit numbers use 7–9 digits.
    let licence = letters > 0 || (7..=9).contains(&n);
    if licence && cx.on(Detector::UsDriverLicense) && cx.near(Detector::UsDriverLicense, t, end) {
        push(hits, t, end, Detector::UsDriverLicense);
    }
    None
}

/// Numbers in groups, from a first group of 3 or 4 digits: `123 45 6789` / `123.45.6789`
/// (SSN, or ITIN with area 9xx; only with a context word: the dashed form is
/// `numbers::scan_ssn`'s) and the dashed routing number `0210-0002-1`.
fn grouped_id_at(s: &[u8], start: usize, end: usize, cx: &mut Cx, hits: &mut Vec<Hit>) -> Option<usize> {
    let sep = *s.get(end)?;
    let b = digit_run(s, end + 1);
    let c = if s.get(b) == Some(&sep) {
        digit_run(s, b + 1)
    } else {
        return None;
    };
    let (g1, g2, g3) = (end - start, b - (end + 1), c - (b + 1));
    if !clean_right(s, c) {
        return None;
    }
    if (g1, g2, g3) == (3, 2, 4) && matches!(sep, b' ' | b'.') {
        // Not part of a longer spaced digit run (a card number).
        if sep == b' ' && s.get(c) == Some(&b' ') && s.get(c + 1).is_some_and(|&d| is_digit(d)) {
            return None;
        }
        let (area, group, serial) = (&s[start..end], &s[end + 1..b], &s[b + 1..c]);
        if cx.on(Detector::Ssn) && ssn_parts(area, group, serial) && cx.near(Detector::Ssn, start, c) {
            push(hits, start, c, Detector::Ssn);
            return Some(c);
        }
        if cx.on(Detector::UsItin) && area[0] == b'9' && itin_group(group) && cx.near(Detector::UsItin, start, c) {
            push(hits, start, c, Detector::UsItin);
            return Some(c);
        }
    }
    if (g1, g2, g3) == (4, 4, 1) && sep == b'-' && cx.on(Detector::UsBankRouting) {
        let mut d = [0u8; 9];
        d[..4].copy_from_slice(&s[start..end]);
        d[4..8].copy_from_slice(&s[end + 1..b]);
        d[8] = s[b + 1];
        if aba(&d) && cx.near(Detector::UsBankRouting, start, c) {
            push(hits, start, c, Detector::UsBankRouting);
            return Some(c);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// IBAN: two capital letters, two check digits, the country's BBAN length; written compact or
// in groups of four separated by single spaces (or dashes). Valid if the mod-97 check holds.

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

fn iban_length(country: &[u8]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| c.as_slice() == country)
        .map(|(_, n)| *n)
}

/// The mod-97 check over the compact IBAN `chars` (country, check digits, BBAN).
fn mod97(chars: &[u8]) -> bool {
    let mut rem = 0u32;
    let mut feed = |c: u8| {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c.to_ascii_uppercase() - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    };
    for &c in chars[4..].iter().chain(&chars[..4]) {
        feed(c);
    }
    rem == 1
}

/// The IBAN starting at `at` (two capitals, then the check digits), if one does; returns its
/// end.
fn iban_at(s: &[u8], at: usize, hits: &mut Vec<Hit>) -> Option<usize> {
    if at > 0 && is_word(s[at - 1]) {
        return None;
    }
    let len = iban_length(&s[at..at + 2])?;
    // Collect `len` alphanumerics, allowing one space or dash between groups of four.
    let mut chars = [0u8; 34];
    let mut n = 0;
    let mut j = at;
    while n < len && j < s.len() {
        let c = s[j];
        if is_alnum(c) {
            chars[n] = c;
            n += 1;
            j += 1;
        } else if matches!(c, b' ' | b'-') && n % 4 == 0 && n > 0 && s.get(j + 1).is_some_and(|&b| is_alnum(b)) {
            j += 1;
        } else {
            break;
        }
    }
    let shaped = n == len
        && !s.get(j).is_some_and(|&b| is_word(b))
        && chars[2].is_ascii_digit()
        && chars[3].is_ascii_digit()
        && chars[..n].iter().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
    if shaped && mod97(&chars[..n]) {
        push(hits, at, j, Detector::Iban);
        return Some(j);
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Dates of birth: a date, only with a context word (`dob`, `born`, `birth`) near it.

const MONTHS: [&[u8]; 12] = [
    b"january",
    b"february",
    b"march",
    b"april",
    b"may",
    b"june",
    b"july",
    b"august",
    b"september",
    b"october",
    b"november",
    b"december",
];

fn month_word(w: &[u8]) -> bool {
    w.eq_ignore_ascii_case(b"sept")
        || MONTHS.iter().any(|m| {
            (w.len() == 3 || w.len() == m.len()) && w.len() <= m.len() && w.eq_ignore_ascii_case(&m[..w.len()])
        })
}

fn plausible(year: u32, month: u32, day: u32) -> bool {
    (1900..=2099).contains(&year) && (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// A date of birth from the digit run `s[start..a_end]`, with a context word near; returns
/// its end.
fn date_at(s: &[u8], start: usize, a_end: usize, cx: &mut Cx, hits: &mut Vec<Hit>) -> Option<usize> {
    if !clean_left(s, start) {
        return None;
    }
    let a = &s[start..a_end];
    // Numeric: YYYY-MM-DD, DD/MM/YYYY, MM/DD/YYYY, DD.MM.YYYY (one separator kind).
    if let Some(&sep) = s.get(a_end).filter(|b| matches!(b, b'-' | b'/' | b'.')) {
        let b_end = digit_run(s, a_end + 1);
        let b = &s[a_end + 1..b_end];
        if matches!(b.len(), 1..=2) && s.get(b_end) == Some(&sep) {
            let c_end = digit_run(s, b_end + 1);
            let c = &s[b_end + 1..c_end];
            let ok = match (a.len(), c.len()) {
                (4, 1..=2) => plausible(number(a), number(b), number(c)),
                (1..=2, 4) => plausible(number(c), number(b), number(a)) || plausible(number(c), number(a), number(b)),
                _ => false,
            };
            if ok && clean_right(s, c_end) && cx.near(Detector::DateOfBirth, start, c_end) {
                push(hits, start, c_end, Detector::DateOfBirth);
                return Some(c_end);
            }
        }
    }
    // A year after a month name: `April 12, 1987`, `12 Apr 1987`, `Apr 12 1987`.
    if a.len() == 4
        && (1900..=2099).contains(&number(a))
        && clean_right(s, a_end)
        && let Some(from) = named_date_start(s, start)
        && cx.near(Detector::DateOfBirth, from, a_end)
    {
        push(hits, from, a_end, Detector::DateOfBirth);
        return Some(a_end);
    }
    None
}

/// The start of `Month DD, ` or `DD Month ` ending just before the year at `year`.
fn named_date_start(s: &[u8], year: usize) -> Option<usize> {
    let mut j = year;
    if j == 0 || s[j - 1] != b' ' {
        return None;
    }
    j -= 1;
    if j > 0 && s[j - 1] == b',' {
        j -= 1;
    }
    let word_back = |end: usize, f: fn(u8) -> bool| {
        let mut k = end;
        while k > 0 && end - k < 9 && f(s[k - 1]) {
            k -= 1;
        }
        k
    };
    let w = word_back(j, |b| b.is_ascii_alphabetic() || b.is_ascii_digit());
    let word = &s[w..j];
    if word.iter().all(|b| b.is_ascii_digit()) && matches!(word.len(), 1..=2) {
        // `Month DD, YYYY`
        let day = number(word);
        if w < 2 || s[w - 1] != b' ' || !(1..=31).contains(&day) {
            return None;
        }
        let m = word_back(w - 1, |b| b.is_ascii_alphabetic() || b == b'.');
        let month = s[m..w - 1].strip_suffix(b".").unwrap_or(&s[m..w - 1]);
        return (month_word(month) && (m == 0 || !is_word(s[m - 1]))).then_some(m);
    }
    let month = word.strip_suffix(b".").unwrap_or(word);
    if !month_word(month) || w < 2 || s[w - 1] != b' ' {
        return None;
    }
    // `DD Month YYYY`
    let d = word_back(w - 1, |b| b.is_ascii_digit());
    let day = &s[d..w - 1];
    (matches!(day.len(), 1..=2) && (1..=31).contains(&number(day)) && (d == 0 || !is_word(s[d - 1]))).then_some(d)
}

// ---------------------------------------------------------------------------------------------
// MAC addresses: `00:1a:2b:3c:4d:5e`, `00-1A-2B-3C-4D-5E`, Cisco `001a.2b3c.4d5e`.

/// The MAC address starting at `start` (a word start, hex), if one does; returns its end.
/// Called from the word-start loop of `tokens::scan_anchored` when the third byte is `:` or
/// `-` or the fifth is `.`.
#[inline(never)]
pub(super) fn mac_at(s: &[u8], start: usize, hits: &mut Vec<Hit>) -> Option<usize> {
    let sep = match (s.get(start + 2), s.get(start + 4)) {
        (Some(&c @ (b':' | b'-')), _) => c,
        (_, Some(b'.')) => b'.',
        _ => return None,
    };
    let (width, groups) = if sep == b'.' { (4, 3) } else { (2, 6) };
    if start > 0 && (is_word(s[start - 1]) || s[start - 1] == sep || s[start - 1] == b':') {
        return None;
    }
    let mut j = start;
    for g in 0..groups {
        if !s.get(j..j + width).is_some_and(|w| w.iter().all(|&b| is_hex(b))) {
            return None;
        }
        j += width;
        if g + 1 < groups {
            if s.get(j) != Some(&sep) {
                return None;
            }
            j += 1;
        }
    }
    let continues = s
        .get(j)
        .is_some_and(|&b| is_word(b) || (b == sep || b == b':') && s.get(j + 1).is_some_and(|&h| is_hex(h)));
    // Cisco form: not all digits (a version-like number).
    let dotted_digits = sep == b'.' && s[start..j].iter().all(|&b| is_digit(b) || b == b'.');
    if continues || dotted_digits {
        return None;
    }
    push(hits, start, j, Detector::MacAddress);
    Some(j)
}

// ---------------------------------------------------------------------------------------------
// Crypto wallet addresses (Presidio crypto_recognizer: Bitcoin; here also Ethereum).

const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A legacy Bitcoin address (`1…` P2PKH, `3…` P2SH): 25–34 base58 characters decoding to 25
/// bytes whose last 4 are the double SHA-256 of the first 21.
pub(super) fn base58check(word: &[u8]) -> bool {
    if !(25..=34).contains(&word.len()) || !matches!(word[0], b'1' | b'3') {
        return false;
    }
    let mut bytes = [0u8; 25];
    for &c in word {
        let Some(v) = BASE58.iter().position(|&b| b == c) else {
            return false;
        };
        let mut carry = v as u32;
        for b in bytes.iter_mut().rev() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        if carry != 0 {
            return false;
        }
    }
    // Leading `1`s stand for leading zero bytes; the version byte is 0 (P2PKH) or 5 (P2SH).
    let ones = word.iter().take_while(|&&c| c == b'1').count();
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    if ones != zeros || !(bytes[0] == 0 || bytes[0] == 5) {
        return false;
    }
    let hash = Sha256::digest(Sha256::digest(&bytes[..21]));
    hash[..4] == bytes[21..]
}

const BECH32: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// A segwit address `bc1…`: bech32 (witness v0) or bech32m (v1+) checksum.
pub(super) fn bech32(word: &[u8]) -> bool {
    if !(14..=74).contains(&word.len()) {
        return false;
    }
    let lower = word.iter().all(|b| !b.is_ascii_uppercase());
    let upper = word.iter().all(|b| !b.is_ascii_lowercase());
    if !(lower || upper) || !word[..3].eq_ignore_ascii_case(b"bc1") {
        return false;
    }
    fn polymod(values: impl Iterator<Item = u8>) -> u32 {
        const GEN: [u32; 5] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3];
        let mut chk = 1u32;
        for v in values {
            let top = chk >> 25;
            chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(v);
            for (i, g) in GEN.iter().enumerate() {
                if (top >> i) & 1 == 1 {
                    chk ^= g;
                }
            }
        }
        chk
    }
    let mut data = Vec::with_capacity(word.len());
    for &c in &word[3..] {
        let Some(v) = BECH32.iter().position(|&b| b == c.to_ascii_lowercase()) else {
            return false;
        };
        data.push(v as u8);
    }
    // hrp "bc" expanded: high bits, 0, low bits.
    let hrp = [b'b' >> 5, b'c' >> 5, 0, b'b' & 31, b'c' & 31];
    let check = polymod(hrp.iter().copied().chain(data.iter().copied()));
    check == 1 || check == 0x2bc8_30a3
}

/// `0x` and 40 hex digits.
pub(super) fn ethereum(word: &[u8]) -> bool {
    word.len() == 42 && word[..2] == *b"0x" && word[2..].iter().all(|&b| is_hex(b))
}

// ---------------------------------------------------------------------------------------------
// Credentials in URLs: `scheme://user:password@host` → the password; a long token-like user
// alone (`https://ghp_…@github.com`) → the user.

#[inline(never)]
pub(super) fn scan_url_credentials(s: &[u8], hits: &mut Vec<Hit>) {
    for p in memchr::memmem::find_iter(s, b"://") {
        let start = p + 3;
        let mut i = start;
        let mut colon = None;
        while i < s.len()
            && !matches!(
                s[i],
                b'@' | b'/' | b' ' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'\n' | b'\\'
            )
        {
            if s[i] == b':' && colon.is_none() {
                colon = Some(i);
            }
            i += 1;
        }
        if s.get(i) != Some(&b'@') || !s.get(i + 1).is_some_and(|&b| is_alnum(b) || b == b'[') {
            continue;
        }
        match colon {
            Some(c) if c + 1 < i => push(hits, c + 1, i, Detector::UrlCredentials),
            Some(_) => {}
            None => {
                let user = &s[start..i];
                let token_like = user.len() >= 20
                    && user.iter().any(|b| b.is_ascii_digit())
                    && user.iter().any(|b| b.is_ascii_alphabetic());
                if token_like {
                    push(hits, start, i, Detector::UrlCredentials);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn checksums() {
        assert!(aba(b"021000021"));
        assert!(aba(b"011401533"));
        assert!(!aba(b"021000022"));
        assert!(mod97(b"GB82WEST12345698765432"));
        assert!(mod97(b"DE89370400440532013000"));
        assert!(!mod97(b"DE89370400440532013001"));
        assert!(base58check(b"1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"));
        assert!(base58check(b"3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"));
        assert!(!base58check(b"1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3"));
        assert!(bech32(b"bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"));
        assert!(bech32(
            b"bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297"
        ));
        assert!(!bech32(b"bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdp"));
    }

    #[test]
    fn new_entities() {
        assert_finds(
            "iban",
            "pay to GB82 WEST 1234 5698 7654 32 today",
            "GB82 WEST 1234 5698 7654 32",
        );
        assert_finds("iban", "iban=DE89370400440532013000&x", "DE89370400440532013000");
        assert_eq!(found("DE89370400440532013001", "iban"), Vec::<String>::new());
        assert_finds("us_itin", "itin 912-70-1234", "912-70-1234");
        assert_finds("us_bank_routing", "routing number 021000021", "021000021");
        assert_finds("us_bank_routing", "ABA: 0210-0002-1;", "0210-0002-1");
        assert_eq!(found("order 021000021", "us_bank_routing"), Vec::<String>::new());
        assert_finds("us_passport", "passport no X12345678", "X12345678");
        assert_finds("us_driver_license", "driver license D1234567", "D1234567");
        assert_finds("date_of_birth", "dob: 1987-04-12", "1987-04-12");
        assert_finds("date_of_birth", "born April 12, 1987 in", "April 12, 1987");
        assert_finds("date_of_birth", "date of birth 12 Apr 1987", "12 Apr 1987");
        assert_eq!(found("at 2026-11-01 12:30", "date_of_birth"), Vec::<String>::new());
        assert_finds("mac_address", "hw 00:1a:2b:3c:4d:5e up", "00:1a:2b:3c:4d:5e");
        assert_finds("mac_address", "hw 001a.2b3c.4d5e up", "001a.2b3c.4d5e");
        assert_finds(
            "crypto_wallet",
            "send to 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2 now",
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
        );
        assert_finds(
            "crypto_wallet",
            "eth 0x52908400098527886E0F7030069857D2E4169EE7",
            "0x52908400098527886E0F7030069857D2E4169EE7",
        );
        assert_finds(
            "url_credentials",
            "postgres://app:s3cr3t@db.internal:5432/app",
            "s3cr3t",
        );
        assert_eq!(
            found(
                "https://example.com:8443/path ssh://git@github.com/x",
                "url_credentials"
            ),
            Vec::<String>::new()
        );
    }
}
