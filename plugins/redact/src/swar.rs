//! Word-at-a-time byte searches (SWAR: eight bytes per step in a u64). The redactor's hot
//! loops walk strings byte by byte; in Wasm every loop iteration also pays an epoch check and
//! Cranelift keeps fewer loop variables in registers than LLVM, so wide steps gain more there
//! than natively (docs/BENCHMARKS.md, "Where the Wasm time goes").

/// The first byte in `s` that ends the plain run of a JSON string: `"`, `\\` or a control
/// character (the bytes a JSON string must escape). Eight bytes per step, the tail one by one.
pub fn json_stop(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // High bit set in the lowest byte of `x` below `n` (n <= 0x80) and possibly in bytes above
    // it (borrows), never below: the lowest set bit is exact.
    fn below(x: u64, n: u8) -> u64 {
        x.wrapping_sub(LO * u64::from(n)) & !x & HI
    }
    let is_stop = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
    let mut words = s.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let x = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
        let m = below(x ^ (LO * u64::from(b'"')), 1) | below(x ^ (LO * u64::from(b'\\')), 1) | below(x, 0x20);
        if m != 0 {
            return Some(at + (m.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words.remainder().iter().position(|&b| is_stop(b)).map(|k| at + k)
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
}
