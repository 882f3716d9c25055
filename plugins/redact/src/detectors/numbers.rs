//! Numbers: SSNs, card numbers, phone numbers and IP addresses. They share one idea: a number
//! is only a match if it is the whole of its "cluster" (digit groups joined by single
//! separators), so nothing matches inside a longer digit run, a UUID, a timestamp or a
//! version string.

use super::pii::{itin_group, ssn_parts};
use super::{Cx, Detector, Hit, is_digit, is_hex, is_word};

/// End of the digit run starting at `i`.
pub(super) fn digit_run(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_digit(s[i]) {
        i += 1;
    }
    i
}

/// Whether a number may start at `i`: not glued to a word, and not the continuation of an
/// earlier number (`1.5`, `12-34`).
pub(super) fn clean_left(s: &[u8], i: usize) -> bool {
    if i == 0 {
        return true;
    }
    let p = s[i - 1];
    if is_word(p) {
        return false;
    }
    !(matches!(p, b'-' | b'.' | b'+' | b'/' | b':') && i >= 2 && is_digit(s[i - 2]))
}

/// Whether a number may end at `j`: not glued to a word and not continued by `-5` or `.5`.
pub(super) fn clean_right(s: &[u8], j: usize) -> bool {
    match s.get(j) {
        None => true,
        Some(&n) if is_word(n) => false,
        Some(&n) => !(matches!(n, b'-' | b'.') && s.get(j + 1).is_some_and(|&d| is_digit(d))),
    }
}

/// The start of the first digit run in `s` that begins at or after `i`.
pub(super) fn next_run_start(s: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let d = i + crate::swar::first_digit(s.get(i..)?)?;
        if d == 0 || !is_digit(s[d - 1]) {
            return Some(d);
        }
        // Inside a run that began before `i`: skip the rest of it.
        i = digit_run(s, d);
    }
}

/// `123-45-6789` as an SSN (or, with area 9xx and an ITIN group, a US ITIN; Presidio
/// us_itin_recognizer). `123 45 6789` and `123.45.6789` need a context word and are found by
/// `pii::scan_runs`.
#[inline(never)]
pub(super) fn scan_ssn(s: &[u8], cx: &Cx, hits: &mut Vec<Hit>) {
    let mut i = 0;
    while let Some(start) = next_run_start(s, i) {
        let a = digit_run(s, start);
        i = a;
        if a - start != 3 || !clean_left(s, start) {
            continue;
        }
        // Spaced and dotted forms need a context word: `pii::scan_runs` has them.
        let sep = b'-';
        if s.get(a) != Some(&sep) {
            continue;
        }
        let b = digit_run(s, a + 1);
        if b - (a + 1) != 2 || s.get(b) != Some(&sep) {
            continue;
        }
        let c = digit_run(s, b + 1);
        if c - (b + 1) != 4 || !clean_right(s, c) {
            continue;
        }
        let (area, group, serial) = (&s[start..a], &s[a + 1..b], &s[b + 1..c]);
        if cx.on(Detector::Ssn) && ssn_parts(area, group, serial) {
            hits.push(Hit {
                start,
                end: c,
                detector: Detector::Ssn,
            });
            i = c;
        } else if cx.on(Detector::UsItin) && area[0] == b'9' && itin_group(group) {
            hits.push(Hit {
                start,
                end: c,
                detector: Detector::UsItin,
            });
            i = c;
        }
    }
}

/// Digit groups joined by single separators, e.g. `(474) 977-6443` or `4111 1111 1111 1111`.
struct Cluster {
    start: usize,
    end: usize,
    /// Digit runs, as `(start, end)`; at most [`Cluster::MAX`] are kept.
    groups: [(usize, usize); Cluster::MAX],
    len: usize,
    /// More groups than [`Cluster::MAX`]: not a phone or card number.
    overflow: bool,
    plus: bool,
    /// Groups that were written in parentheses, as a bit set by index.
    parens: u16,
    /// Separators seen between groups, as bit flags (space 1, dash 2, dot 4).
    seps: u8,
}

impl Cluster {
    const MAX: usize = 12;

    fn groups(&self) -> &[(usize, usize)] {
        &self.groups[..self.len]
    }

    fn digits(&self) -> usize {
        self.groups().iter().map(|(a, b)| b - a).sum()
    }

    /// Parse the cluster starting at `i` (a digit, `+` or `(`). `seps` are the single-byte
    /// separators allowed between groups; `phone` also allows a leading `+` and `(123)` groups.
    fn parse(s: &[u8], i: usize, seps: &[u8], phone: bool) -> Cluster {
        let mut c = Cluster {
            start: i,
            end: i,
            groups: [(0, 0); Cluster::MAX],
            len: 0,
            overflow: false,
            plus: false,
            parens: 0,
            seps: 0,
        };
        let mut j = i;
        if phone && s.get(j) == Some(&b'+') {
            c.plus = true;
            j += 1;
        }
        loop {
            // One group: digits, or (phone only) digits in parentheses.
            let paren = phone && s.get(j) == Some(&b'(');
            let g = if paren { j + 1 } else { j };
            let e = digit_run(s, g);
            if e == g || (paren && s.get(e) != Some(&b')')) {
                break;
            }
            if c.len == Cluster::MAX {
                c.overflow = true;
            } else {
                c.groups[c.len] = (g, e);
                if paren {
                    c.parens |= 1 << c.len;
                }
                c.len += 1;
            }
            j = if paren { e + 1 } else { e };
            c.end = j;
            // A separator continues the cluster only if a group follows it. After `(123)` the
            // separator is optional.
            let next_is_group = |k: usize| {
                s.get(k)
                    .is_some_and(|&b| is_digit(b) || (phone && b == b'(' && s.get(k + 1).is_some_and(|&d| is_digit(d))))
            };
            match s.get(j) {
                Some(&b) if seps.contains(&b) && next_is_group(j + 1) => {
                    c.seps |= match b {
                        b' ' => 1,
                        b'-' => 2,
                        _ => 4,
                    };
                    j += 1;
                }
                _ if paren && next_is_group(j) => {}
                _ => break,
            }
        }
        c
    }
}

/// Luhn checksum over the digits of `s`.
fn luhn(s: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for &b in s.iter().rev().filter(|b| is_digit(**b)) {
        let mut d = u32::from(b - b'0');
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
    }
    sum.is_multiple_of(10)
}

/// A plausible card number: 13–19 digits, an issuer digit 2–6 (payment cards; 0, 1, 7, 8 and
/// 9 are other industries, and rejecting them halves false positives on random IDs), Luhn.
/// Digits in a card number.
const CARD_DIGITS: std::ops::RangeInclusive<usize> = 13..=19;

fn is_card(s: &[u8], digits: usize) -> bool {
    CARD_DIGITS.contains(&digits) && matches!(s.iter().find(|b| is_digit(**b)), Some(b'2'..=b'6')) && luhn(s)
}

#[inline(never)]
pub(super) fn scan_cards(s: &[u8], hits: &mut Vec<Hit>) {
    let mut i = 0;
    while let Some(start) = next_run_start(s, i) {
        // A lone run too short for a card (`%40%40…`: one every 3 bytes) needs no cluster.
        let e = digit_run(s, start);
        if e - start < *CARD_DIGITS.start() && !matches!(s.get(e), Some(b' ' | b'-')) {
            i = e;
            continue;
        }
        let c = Cluster::parse(s, start, b" -", false);
        i = c.end.max(start + 1);
        if c.overflow || !clean_left(s, start) || !clean_right(s, c.end) {
            continue;
        }
        if is_card(&s[c.start..c.end], c.digits()) {
            hits.push(Hit {
                start: c.start,
                end: c.end,
                detector: Detector::CreditCard,
            });
            continue;
        }
        // A card inside a longer space-separated run (`4111 1111 1111 1111 12/27`): try the
        // sub-runs that start at a 4-digit group, longest first. Dash-joined runs are left
        // alone: those are structured IDs (UUIDs, dates) whose parts could pass Luhn by chance.
        if c.seps != 1 || c.len < 2 {
            continue;
        }
        let groups = c.groups();
        'outer: for a in 0..groups.len() {
            for b in (a..groups.len()).rev() {
                // The whole run was tried above; a multi-group card starts with 4 digits.
                let whole = (a, b) == (0, groups.len() - 1);
                if whole || (b > a && groups[a].1 - groups[a].0 != 4) {
                    continue;
                }
                let (from, to) = (groups[a].0, groups[b].1);
                let digits = groups[a..=b].iter().map(|(x, y)| y - x).sum();
                if is_card(&s[from..to], digits) {
                    hits.push(Hit {
                        start: from,
                        end: to,
                        detector: Detector::CreditCard,
                    });
                    break 'outer;
                }
            }
        }
    }
}

#[inline(never)]
pub(super) fn scan_phones(s: &[u8], cx: &mut Cx, hits: &mut Vec<Hit>) {
    let mut i = 0;
    while let Some(k) = s.get(i..).and_then(crate::swar::first_phone_start) {
        i += k;
        let b = s[i];
        let starts = match b {
            b'+' | b'(' => s.get(i + 1).is_some_and(|&d| is_digit(d)),
            _ => is_digit(b) && (i == 0 || !is_digit(s[i - 1])),
        };
        if !starts {
            // Past a `+` or `(`, or past the rest of a digit run that began earlier.
            i = if is_digit(b) { digit_run(s, i) } else { i + 1 };
            continue;
        }
        // A lone run of fewer than MIN_PHONE_DIGITS is no phone number in any format of
        // `phone_kind`: skip it without building a cluster (`%40%40…` starts one every 3 bytes).
        if is_digit(b) {
            let e = digit_run(s, i);
            if e - i < MIN_PHONE_DIGITS && !matches!(s.get(e), Some(b' ' | b'-' | b'.')) {
                i = e;
                continue;
            }
        }
        let c = Cluster::parse(s, i, b" -.", true);
        i = c.end.max(i + 1);
        if c.overflow || c.len == 0 || !clean_left(s, c.start) || !clean_right(s, c.end) {
            continue;
        }
        let matched = match phone_kind(s, &c) {
            Kind::Strong => true,
            Kind::Weak => cx.near(Detector::Phone, c.start, c.end),
            Kind::No => false,
        };
        if matched {
            hits.push(Hit {
                start: c.start,
                end: c.end,
                detector: Detector::Phone,
            });
        }
    }
}

enum Kind {
    /// A phone number by its shape alone.
    Strong,
    /// A phone number if a context word is near (national formats, a bare 10-digit number).
    Weak,
    No,
}

/// The fewest digits of any phone number `phone_kind` accepts (E.164's 8; the national formats
/// need 9 or 10).
const MIN_PHONE_DIGITS: usize = 8;

fn phone_kind(s: &[u8], c: &Cluster) -> Kind {
    let groups = c.groups();
    let len = |k: usize| groups[k].1 - groups[k].0;
    let digits = c.digits();
    if c.plus {
        // International, E.164: country code and subscriber number, 8–15 digits in all.
        // Grouped numbers have short groups; an ungrouped one is a single run.
        let ok =
            (MIN_PHONE_DIGITS..=15).contains(&digits) && (groups.len() == 1 || (0..groups.len()).all(|k| len(k) <= 5));
        return if ok { Kind::Strong } else { Kind::No };
    }
    // North American: `(474) 977-6443`, `474-977-6443`, `1 800 555 1234`.
    let parens_only_at = |k: usize| c.parens & !(1u16 << k) == 0;
    let nanp = match groups.len() {
        3 => (len(0), len(1), len(2)) == (3, 3, 4) && parens_only_at(0),
        4 => (len(0), len(1), len(2), len(3)) == (1, 3, 3, 4) && s[groups[0].0] == b'1' && parens_only_at(1),
        _ => false,
    };
    if nanp {
        return Kind::Strong;
    }
    // With a context word: a bare 10-digit number with a valid area code (a bare run is as
    // likely an epoch timestamp or an ID), and national formats with a trunk `0`
    // (`020 7946 0958`, `030 12345678`, `01 23 45 67 89`, `(011) 2345-6789`), the regions of
    // Presidio's phone_recognizer.
    let first = s[groups[0].0];
    if groups.len() == 1 && digits == 10 && (b'2'..=b'9').contains(&first) {
        return Kind::Weak;
    }
    if first == b'0' && (9..=12).contains(&digits) && (0..groups.len()).all(|k| len(k) <= 8) {
        return Kind::Weak;
    }
    Kind::No
}

#[inline(never)]
pub(super) fn scan_ipv4(s: &[u8], hits: &mut Vec<Hit>) {
    let mut i = 0;
    while let Some(start) = next_run_start(s, i) {
        i = digit_run(s, start);
        if !clean_left(s, start) {
            continue;
        }
        let mut j = start;
        let mut ok = true;
        for octet in 0..4 {
            let e = digit_run(s, j);
            let n = &s[j..e];
            let valid = matches!(n.len(), 1..=3)
                && (n.len() == 1 || n[0] != b'0')
                && n.iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0')) <= 255;
            if !valid {
                ok = false;
                break;
            }
            j = e;
            if octet < 3 {
                if s.get(j) != Some(&b'.') {
                    ok = false;
                    break;
                }
                j += 1;
            }
        }
        if ok && clean_right(s, j) {
            hits.push(Hit {
                start,
                end: j,
                detector: Detector::Ipv4,
            });
            i = j;
        }
    }
}

#[inline(never)]
pub(super) fn scan_ipv6(s: &[u8], hits: &mut Vec<Hit>) {
    let mut done = 0;
    for colon in memchr::memchr_iter(b':', s) {
        if colon < done {
            continue;
        }
        let mut start = colon;
        while start > 0 && colon - start < 4 && is_hex(s[start - 1]) {
            start -= 1;
        }
        if start > 0 {
            let p = s[start - 1];
            // `ip:2001:db8::1` is fine, `ab12:2001:…` is the middle of something else.
            let colon_after_key = p == b':' && (start < 2 || !(is_hex(s[start - 2]) || s[start - 2] == b':'));
            if (is_word(p) || p == b'.' || p == b':') && !colon_after_key {
                continue;
            }
        }
        if let Some(end) = parse_ipv6(s, start) {
            hits.push(Hit {
                start,
                end,
                detector: Detector::Ipv6,
            });
            done = end;
        }
    }
}

/// End of a dotted-quad IPv4 address starting at `j`, if one does (for IPv6's embedded form).
fn ipv4_at(s: &[u8], j: usize) -> Option<usize> {
    let mut k = j;
    for octet in 0..4 {
        let e = digit_run(s, k);
        let n = &s[k..e];
        let valid = matches!(n.len(), 1..=3)
            && (n.len() == 1 || n[0] != b'0')
            && n.iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0')) <= 255;
        if !valid {
            return None;
        }
        k = e;
        if octet < 3 {
            if s.get(k) != Some(&b'.') {
                return None;
            }
            k += 1;
        }
    }
    clean_right(s, k).then_some(k)
}

/// End of the IPv6 address starting at `i`, if one does: 8 groups, or fewer with one `::`;
/// the last two groups may be written as an IPv4 address (`::ffff:192.0.2.1`); a zone
/// (`%eth0`) is part of the address.
fn parse_ipv6(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    let mut groups = 0;
    let mut compressed = false;
    let mut ipv4 = false;
    // The first group is 4 hex digits with a digit among them (`2001`, `fe80`).
    let mut strong_first = false;
    if s[j..].starts_with(b"::") {
        compressed = true;
        j += 2;
    }
    let mut end = j;
    loop {
        if ((compressed && groups <= 5) || groups == 6)
            && let Some(e) = ipv4_at(s, j)
        {
            groups += 2;
            end = e;
            ipv4 = true;
            break;
        }
        // At most five hex digits are read: five already rule the group out, and reading a
        // long run to its end from every colon before it would be quadratic.
        let mut k = j;
        while k < s.len() && k - j < 5 && is_hex(s[k]) {
            k += 1;
        }
        match k - j {
            0 => break,
            1..=4 => {}
            _ => return None,
        }
        if groups == 0 && !compressed {
            strong_first = k - j == 4 && s[j..k].iter().any(|&b| is_digit(b));
        }
        groups += 1;
        if groups > 8 {
            return None;
        }
        j = k;
        end = k;
        if s[j..].starts_with(b"::") {
            if compressed {
                return None;
            }
            compressed = true;
            j += 2;
            end = j;
        } else if s.get(j) == Some(&b':') && s.get(j + 1).is_some_and(|&b| is_hex(b)) {
            j += 1;
        } else {
            break;
        }
    }
    // With `::`, three groups at least (so `a::b`-style code paths are not addresses), or two
    // after a strong first group (`fe80::1`, `2001:db8::`), or an embedded IPv4 address.
    let valid = if ipv4 {
        groups == 8 || (compressed && groups <= 8)
    } else if compressed {
        (3..=7).contains(&groups) || (groups == 2 && strong_first)
    } else {
        groups == 8
    };
    let next_ok = s.get(end).is_none_or(|&b| !(is_word(b) || b == b':'));
    if !(valid && next_ok) {
        return None;
    }
    if s.get(end) == Some(&b'%') && s.get(end + 1).is_some_and(|&b| b.is_ascii_alphanumeric()) {
        end += 1;
        while end < s.len() && end - i < 80 && s[end].is_ascii_alphanumeric() {
            end += 1;
        }
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn ssn() {
        assert_finds("ssn", "WHERE ssn = '391-55-0476' AND", "391-55-0476");
        assert_finds("ssn", "ssn:015-22-4151", "015-22-4151");
        for invalid in [
            "000-12-3456",
            "666-12-3456",
            "912-34-5678",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert_eq!(found(invalid, "ssn"), Vec::<String>::new(), "{invalid}");
        }
        for decoy in [
            "1391-55-0476",
            "391-55-04761",
            "391-55-0476-2",
            "a391-55-0476",
            "2026-11-01",
        ] {
            assert_eq!(found(decoy, "ssn"), Vec::<String>::new(), "{decoy}");
        }
    }

    #[test]
    fn credit_card() {
        assert_finds("credit_card", "card 4111 1111 1111 1111 ok", "4111 1111 1111 1111");
        assert_finds(
            "credit_card",
            "charge card 5240-6264-2190-5465 for",
            "5240-6264-2190-5465",
        );
        assert_finds("credit_card", "amex 3782 822463 10005", "3782 822463 10005");
        assert_finds("credit_card", "amex 3743-072315-25756.", "3743-072315-25756");
        assert_finds("credit_card", "4686978252529334", "4686978252529334");
        assert_finds("credit_card", "344684991124617", "344684991124617");
        assert_finds("credit_card", "4111 1111 1111 1111 12/27", "4111 1111 1111 1111");
        // Luhn fails: a 16-digit order number survives.
        assert_eq!(found("order 4686978252529335", "credit_card"), Vec::<String>::new());
        assert_eq!(found("order 8642798358069665 x", "credit_card"), Vec::<String>::new());
        // Luhn passes but it is glued to other digits or letters.
        assert_eq!(
            found("x4111111111111111 41111111111111112 4111111111111111-3", "credit_card"),
            Vec::<String>::new()
        );
        // Luhn-valid, but 9 is not a payment-card issuer digit.
        assert!(luhn(b"9111111111111110"));
        assert_eq!(found("id 9111111111111110", "credit_card"), Vec::<String>::new());
    }

    #[test]
    fn luhn_checksum() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"4111-1111-1111-1111"));
        assert!(luhn(b"378282246310005"));
        assert!(!luhn(b"4111111111111112"));
    }

    #[test]
    fn phone() {
        assert_finds("phone", "Call (474) 977-6443 or", "(474) 977-6443");
        assert_finds("phone", "Call +1-555-234-5678.", "+1-555-234-5678");
        assert_finds("phone", "Call +44 20 1234 5678 or", "+44 20 1234 5678");
        assert_finds("phone", "tel 555.234.5678", "555.234.5678");
        assert_finds("phone", "tel 1 (800) 555-1234", "1 (800) 555-1234");
        assert_finds("phone", "tel:+4915112345678", "+4915112345678");
        for decoy in [
            "2026-11-01T00:00:00.000Z",
            "a6cecc1b-78e5-4061-b311-d8a3c2ce6f44",
            "order 5634168587831012",
            "1234555-234-5678",
            "555-234-56789",
            "555-234-5678-1",
            "v555-234-5678",
            "4.6.6 2.16.28",
            "5552345678",
            "+12",
        ] {
            assert_eq!(found(decoy, "phone"), Vec::<String>::new(), "{decoy}");
        }
    }

    #[test]
    fn ipv4() {
        assert_finds("ipv4", "client 203.0.173.44 connected", "203.0.173.44");
        assert_finds("ipv4", "http://10.1.2.3:8080/x", "10.1.2.3");
        for decoy in ["1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "v1.2.3.4", "1.2.3.4a"] {
            assert_eq!(found(decoy, "ipv4"), Vec::<String>::new(), "{decoy}");
        }
    }

    #[test]
    fn ipv6() {
        assert_finds(
            "ipv6",
            "from 2001:db8:85a3::8a2e:370:7334 ok",
            "2001:db8:85a3::8a2e:370:7334",
        );
        assert_finds(
            "ipv6",
            "[2001:0db8:0000:0000:0000:ff00:0042:8329]",
            "2001:0db8:0000:0000:0000:ff00:0042:8329",
        );
        assert_finds("ipv6", "ip:fe80::1ff:fe23:4567", "fe80::1ff:fe23:4567");
        for decoy in [
            "12:30:45",
            "00:1a:2b:3c:4d:5e",
            "std::fmt",
            "a::b",
            "2001:db8:::1",
            "1:2:3:4:5:6:7:8:9",
        ] {
            assert_eq!(found(decoy, "ipv6"), Vec::<String>::new(), "{decoy}");
        }
    }
}
