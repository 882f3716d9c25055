//! Word-at-a-time byte searches (SWAR: eight bytes per step in a u64). The redactor's hot
//! loops walk strings byte by byte; in Wasm every loop iteration also pays an epoch check and
//! Cranelift keeps fewer loop variables in registers than LLVM, so wide steps gain more there
//! than natively (docs/BENCHMARKS.md, "Where the Wasm time goes").

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The first `u64` word of `s` from `at` on, little-endian, if eight bytes remain.
#[inline]
fn word(s: &[u8], at: usize) -> Option<u64> {
    let w = s.get(at..at + 8)?;
    Some(u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
}

/// High bit set in every byte of `x` that is an ASCII digit. Exact per byte: bytes >= 0x80 are
/// masked out and the rest compared as 7-bit values, so no addition carries into the next byte.
#[inline]
fn digits(x: u64) -> u64 {
    let y = x & !HI;
    // `y + 0x50` has its high bit set iff y >= b'0', `y + 0x46` iff y > b'9'.
    (y + LO * 0x50) & !(y + LO * 0x46) & !x & HI
}

/// High bit set in every byte of `x` equal to the ASCII byte `c` (exact per byte).
#[inline]
fn equal(x: u64, c: u8) -> u64 {
    let z = x ^ (LO * u64::from(c));
    // On the low seven bits, `+ 0x7f` sets the high bit iff they are not all zero; the high
    // bit of `z` itself must be clear too.
    !((z & !HI) + LO * 0x7f) & !z & HI
}

/// Index of the first byte of `s` for which `mask` sets the high bit, or of the first byte of
/// the tail matching `byte`. Only the lowest set bit of a mask is used, so it must be exact;
/// bits above it may be spurious (borrows).
#[inline]
fn first(s: &[u8], mask: impl Fn(u64) -> u64, byte: impl Fn(u8) -> bool) -> Option<usize> {
    let mut at = 0;
    while let Some(x) = word(s, at) {
        let m = mask(x);
        if m != 0 {
            return Some(at + (m.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    s[at..].iter().position(|&b| byte(b)).map(|k| at + k)
}

/// The first ASCII digit in `s`.
pub fn first_digit(s: &[u8]) -> Option<usize> {
    first(s, digits, |b| b.is_ascii_digit())
}

/// The first ASCII digit, `+` or `(` in `s`: where a phone number may start.
pub fn first_phone_start(s: &[u8]) -> Option<usize> {
    first(
        s,
        |x| digits(x) | equal(x, b'+') | equal(x, b'('),
        |b| b.is_ascii_digit() || b == b'+' || b == b'(',
    )
}

/// The first byte in `s` that ends the plain run of a JSON string: `"`, `\\` or a control
/// character (the bytes a JSON string must escape).
pub fn json_stop(s: &[u8]) -> Option<usize> {
    // High bit set in the lowest byte of `x` below `n` (n <= 0x80) and possibly in bytes above
    // it (borrows), never below: the lowest set bit is exact.
    fn below(x: u64, n: u8) -> u64 {
        x.wrapping_sub(LO * u64::from(n)) & !x & HI
    }
    first(
        s,
        |x| below(x ^ (LO * u64::from(b'"')), 1) | below(x ^ (LO * u64::from(b'\\')), 1) | below(x, 0x20),
        |b| b == b'"' || b == b'\\' || b < 0x20,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_stop_agrees_with_a_byte_loop() {
        let slow = |s: &[u8]| s.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        // Every byte value at every position of two words, after a run of plain bytes and
        // after bytes that borrow (0x00, 0x01, 0x21, 0x22, 0x5c, 0x80, 0xff).
        for byte in 0..=255u8 {
            for at in 0..17 {
                for fill in [b'a', 0x21, 0x23, 0x5d, 0x80, 0xff] {
                    let mut s = vec![fill; 17];
                    s[at] = byte;
                    assert_eq!(json_stop(&s), slow(&s), "{s:?}");
                    s[(at + 5) % 17] = 0x01;
                    assert_eq!(json_stop(&s), slow(&s), "{s:?}");
                }
            }
        }
    }

    /// `fast` agrees with `slow` for every byte value at every position of two words plus a
    /// tail, over fills next to the boundaries the masks test.
    fn agrees(fast: impl Fn(&[u8]) -> Option<usize>, slow: impl Fn(u8) -> bool) {
        for byte in 0..=255u8 {
            for at in 0..19 {
                for fill in [
                    b'a', b'z', b'A', b'Z', b'0', b'9', b'/', b':', b'@', b'[', b'`', b'{', b'*', b',', b')', 0x80,
                    0xa8, 0xab, 0xb0, 0xc1, 0xfa, 0xff,
                ] {
                    let mut s = vec![fill; 19];
                    s[at] = byte;
                    assert_eq!(fast(&s), s.iter().position(|&b| slow(b)), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn first_digit_agrees_with_a_byte_loop() {
        agrees(first_digit, |b| b.is_ascii_digit());
    }

    #[test]
    fn first_phone_start_agrees_with_a_byte_loop() {
        agrees(first_phone_start, |b| b.is_ascii_digit() || b == b'+' || b == b'(');
    }
}
