//! Email addresses: found from each `@` (or URL-encoded `%40`), extended over the local part to
//! the left and the domain to the right.

use super::{Detector, Hit, is_alnum};

fn is_local(b: u8) -> bool {
    is_alnum(b) || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-') || b >= 0x80
}
fn is_domain(b: u8) -> bool {
    is_alnum(b) || b == b'-' || b >= 0x80
}

#[inline(never)]
pub(super) fn scan_email(s: &[u8], hits: &mut Vec<Hit>) {
    // Each local part is looked for back to the previous at-sign at most, and each domain
    // stops at the next one (`@` and `%` are not domain bytes), so every byte is read a bounded
    // number of times however many at-signs there are.
    let mut done = 0;
    for at in memchr::memchr_iter(b'@', s) {
        done = email_at(s, at, at + 1, done, hits);
    }
    // URL-encoded (`bob%40example.com`), as in query strings and form bodies. `%` is a local
    // byte, so without the bound `%40` repeated would read back to the start from each one.
    // Each `%` is checked for `40` after it: a substring search has no SIMD in Wasm and cost
    // more when `%40` is dense.
    let mut done = 0;
    for at in memchr::memchr_iter(b'%', s) {
        if s.get(at + 1..at + 3) == Some(b"40") {
            done = email_at(s, at, at + 3, done, hits).max(at + 3);
        }
    }
}

/// Record the address around the at-sign `s[at..domain]`, if there is one. `done` is where
/// the previous address (or at-sign) ended, and the local part does not reach back past it;
/// returns the new value.
fn email_at(s: &[u8], at: usize, domain: usize, done: usize, hits: &mut Vec<Hit>) -> usize {
    if at < done {
        return done;
    }
    let mut a = at;
    if at > done + 1 && s[at - 1] == b'"' {
        // A quoted local part (`"john doe"@example.com`), at most 64 bytes, no quote inside.
        let from = done.max(at.saturating_sub(66));
        match memchr::memrchr(b'"', &s[from..at - 1]) {
            Some(q) if from + q + 1 < at - 1 => a = from + q,
            _ => return done,
        }
    } else {
        while a > done && is_local(s[a - 1]) {
            a -= 1;
        }
        while a < at && s[a] == b'.' {
            a += 1;
        }
    }
    if a == at || in_url_userinfo(s, a) {
        return done;
    }
    // An address literal: `user@[192.0.2.1]`, `user@[IPv6:2001:db8::1]`.
    if s.get(domain) == Some(&b'[') {
        let inner = &s[domain + 1..s.len().min(domain + 48)];
        if let Some(close) = memchr::memchr(b']', inner) {
            let lit = &inner[..close];
            let plausible = lit.len() >= 7
                && lit
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || matches!(b, b'.' | b':') || b"IPv6".contains(&b));
            if plausible {
                let end = domain + 2 + close;
                hits.push(Hit {
                    start: a,
                    end,
                    detector: Detector::Email,
                });
                return end;
            }
        }
        return done;
    }
    // Domain: labels joined by single dots; the last one (the TLD) is 2+ letters.
    let mut j = domain;
    let mut labels = 0;
    let mut end = None;
    loop {
        let l = j;
        while j < s.len() && is_domain(s[j]) {
            j += 1;
        }
        if j == l {
            break;
        }
        labels += 1;
        let label = &s[l..j];
        if labels >= 2 && label.len() >= 2 && label.iter().all(|&b| b.is_ascii_alphabetic() || b >= 0x80) {
            end = Some(j);
        }
        if s.get(j) == Some(&b'.') && s.get(j + 1).is_some_and(|&b| is_domain(b)) {
            j += 1;
        } else {
            break;
        }
    }
    match end {
        Some(end) => {
            hits.push(Hit {
                start: a,
                end,
                detector: Detector::Email,
            });
            end
        }
        None => done,
    }
}

/// Whether `s[a..]` starts inside the userinfo of a URL (`scheme://user:pass@host`): that
/// is a login, not an email address (the `url_credentials` detector takes the password).
fn in_url_userinfo(s: &[u8], a: usize) -> bool {
    let from = a.saturating_sub(256);
    match memchr::memmem::rfind(&s[from..a], b"://") {
        Some(k) => !s[from + k + 3..a]
            .iter()
            .any(|&b| matches!(b, b'/' | b'@' | b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'<' | b'>')),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn email() {
        assert_finds("email", "mail obrien@mail.example.net now", "obrien@mail.example.net");
        assert_finds("email", "x heidi+audit20@EXAMPLE.CO.UK.", "heidi+audit20@EXAMPLE.CO.UK");
        assert_finds("email", "zoë.o-neil@example.com", "zoë.o-neil@example.com");
        assert_finds("email", "mailto:<ivan@sub.dept.example.io>", "ivan@sub.dept.example.io");
        assert_finds("email", "/invite?email=bob%40example.com&x=1", "bob%40example.com");
        assert_finds("email", r#"to "john doe"@example.com ok"#, r#""john doe"@example.com"#);
        assert_finds("email", "John Doe <john.doe@example.com>", "john.doe@example.com");
        assert_finds("email", "ops@[192.0.2.10] x", "ops@[192.0.2.10]");
        assert_eq!(
            found("ssh://git@github.com/x postgres://app:pw@db.example.com/a", "email"),
            Vec::<String>::new()
        );
        assert_finds("email", "https://x.example.com/?to=bob@example.com", "bob@example.com");
        // A local part reaches back to the previous encoded at-sign at most.
        assert_finds("email", "x%40y%40bob%2Bz%40example.com", "bob%2Bz%40example.com");
        assert_eq!(
            found("user@localhost and @handle and a@b.c1", "email"),
            Vec::<String>::new()
        );
    }
}
