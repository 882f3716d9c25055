//! Where a run of bytes ends, remembered across the candidates of one scan.
//!
//! A scanner that tries a candidate at every word start and reads its body up to `max` bytes
//! is linear, but reads each byte up to `max / spacing` times when candidates overlap:
//! `AccountKey=` repeated 21 800 times is one base64 run in which every repetition starts a
//! candidate, and each read ~100 bytes of it (17× the cost of plain text per byte). The end of
//! a run is the same from every position inside it, so it is read once and looked up after.

/// The last run read of one byte class: `[start, end)`, every byte in the class and
/// `s[end]` not (or the end of the text).
#[derive(Clone, Copy, Default)]
pub struct RunEnd(Option<(usize, usize)>);

impl RunEnd {
    /// Where the run of bytes satisfying `in_run` that starts at `from` ends in `s` (`from`
    /// itself if `s[from]` is not in the class). Calls must use the same `s` and `in_run`
    /// until [`RunEnd::default`] starts over; `from` should mostly grow, and a byte is then
    /// read once: a run that reaches the remembered one continues to its end, so a candidate
    /// a little before it reads only the gap.
    #[inline]
    pub fn end(&mut self, s: &[u8], from: usize, in_run: impl Fn(u8) -> bool) -> usize {
        let read = |stop: usize| {
            let mut i = from;
            while i < stop && in_run(s[i]) {
                i += 1;
            }
            i
        };
        match self.0 {
            Some((start, end)) if start <= from && from <= end => end,
            Some((start, end)) if from < start => {
                let i = read(start);
                if i == start {
                    self.0 = Some((from, end));
                    end
                } else {
                    // A shorter run before the remembered one: keep the longer one.
                    i
                }
            }
            _ => {
                let end = read(s.len());
                self.0 = Some((from, end));
                end
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(s: &[u8], from: usize) -> usize {
        let mut i = from;
        while i < s.len() && s[i].is_ascii_alphanumeric() {
            i += 1;
        }
        i
    }

    #[test]
    fn agrees_with_reading_the_run_from_any_order_of_starts() {
        let s = b"ab1 cd-efgh  ijk9 l m";
        let orders: [&[usize]; 4] = [
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
            &[8, 7, 6, 5, 4, 3, 2, 1, 0],
            &[14, 13, 16, 0, 2, 1, 9, 6, 20, 18, 12],
            &[5, 4, 6, 5, 4, 7, 3, 1, 2],
        ];
        for order in orders {
            let mut run = RunEnd::default();
            for &from in order {
                assert_eq!(
                    run.end(s, from, |b| b.is_ascii_alphanumeric()),
                    naive(s, from),
                    "from {from} in {order:?}"
                );
            }
        }
    }

    #[test]
    fn reads_each_byte_of_a_long_run_once() {
        let s = "AccountKey=".repeat(1000).replace('=', "x");
        let reads = std::cell::Cell::new(0usize);
        let mut run = RunEnd::default();
        for from in (0..s.len()).step_by(11) {
            let end = run.end(s.as_bytes(), from, |b| {
                reads.set(reads.get() + 1);
                b.is_ascii_alphanumeric()
            });
            assert_eq!(end, s.len());
        }
        assert_eq!(reads.get(), s.len());
    }
}
