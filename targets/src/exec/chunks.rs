//! How a parallel section's range is split over threads.

/// Number of chunks for a range of `len` iterations on `threads` threads: one per thread,
/// fewer when there are fewer iterations (a chunk of zero iterations is pointless).
pub fn chunk_count(len: i64, threads: usize) -> usize {
    if len <= 0 {
        return 0;
    }
    usize::try_from(len)
        .map_or(threads, |n| n.min(threads))
        .max(1)
}

/// Chunk `i` of `chunks` contiguous, near-equal chunks of `start..end`.
pub fn chunk(start: i64, end: i64, chunks: usize, i: usize) -> (i64, i64) {
    let len = i128::from(end) - i128::from(start);
    let at = |k: usize| -> i64 {
        let off = len * k as i128 / chunks.max(1) as i128;
        (i128::from(start) + off) as i64
    };
    (at(i), at(i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_tile_the_range() {
        for (start, end) in [(0i64, 1i64), (0, 7), (3, 100), (-5, 5), (0, 1 << 40)] {
            for threads in 1..=9 {
                let n = chunk_count(end - start, threads);
                assert!(n >= 1 && n <= threads);
                let mut at = start;
                for i in 0..n {
                    let (lo, hi) = chunk(start, end, n, i);
                    assert_eq!(lo, at);
                    assert!(hi > lo, "empty chunk {i} of {n} in {start}..{end}");
                    at = hi;
                }
                assert_eq!(at, end);
            }
        }
        assert_eq!(chunk_count(0, 4), 0);
        assert_eq!(chunk_count(-3, 4), 0);
        assert_eq!(chunk_count(2, 4), 2);
        assert_eq!(chunk(i64::MIN, i64::MAX, 2, 1), (-1, i64::MAX));
    }
}
