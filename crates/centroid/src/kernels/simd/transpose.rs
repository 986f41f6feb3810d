//! The transposition plans of the AVX-512 `load_columns`, worked out at
//! compile time.

/// How [`Simd::load_columns`] transposes a block of `lanes` rows of `d`
/// values with two-source permutes (AVX-512). Each row is padded to
/// `dp`, the power of two at or above `d`, so that a vector holds
/// `lanes / dp` whole rows (loaded with an expanding load when
/// `d < dp`); then `stages = log2(dp)` rounds of permutes each swap one
/// bit of the vector index (a row bit) with one bit of the lane (a
/// dimension bit), after which vector `p` holds dimension `p` of row
/// `r` in lane `r`: `dp * log2(dp)` permutes per block, fewer in the
/// last round, which only makes the `d` vectors wanted.
pub(super) struct Transpose {
    pub(super) dp: usize,
    pub(super) stages: usize,
    /// The expanding load's mask: `d` lanes of every `dp`.
    pub(super) load_mask: u32,
    /// Per round and output vector `o`: the permute's indices into
    /// vectors `o` and `o ^ (1 << round)` (the lower index first, so
    /// `lanes..2 lanes` index the higher).
    pub(super) idx: [[[u32; 16]; 16]; 4],
}

/// The [`Transpose`] for `lanes` rows of `d` values; an empty one
/// (`dp = 0`) when `d > lanes`. Only evaluated as a constant, so its
/// checks run at compile time.
pub(super) const fn transpose_plan(lanes: usize, d: usize) -> Transpose {
    assert!(d >= 1 && lanes <= 16);
    if d > lanes {
        return Transpose {
            dp: 0,
            stages: 0,
            load_mask: 0,
            idx: [[[0; 16]; 16]; 4],
        };
    }
    let mut dp = 1;
    while dp < d {
        dp *= 2;
    }
    let rows_per_vector = lanes / dp;
    let mut load_mask = 0u32;
    let mut q = 0;
    while q < rows_per_vector {
        load_mask |= ((1u32 << d) - 1) << (q * dp);
        q += 1;
    }
    // Which element each lane of each vector holds, as `r * 16 + p`.
    let mut state = [[0u32; 16]; 16];
    let mut v = 0;
    while v < dp {
        let mut l = 0;
        while l < lanes {
            state[v][l] = ((v * rows_per_vector + l / dp) * 16 + l % dp) as u32;
            l += 1;
        }
        v += 1;
    }
    let mut idx = [[[0u32; 16]; 16]; 4];
    let mut stages = 0;
    let mut bit = 1;
    while bit < dp {
        let mut next = [[0u32; 16]; 16];
        let mut o = 0;
        while o < dp {
            // The elements of vectors `o & !bit` and `o | bit` whose
            // dimension has `bit` as `o` has it, in element order.
            let mut ids = [0u32; 16];
            let mut src = [0u32; 16];
            let mut n = 0;
            let mut h = 0;
            while h < 2 {
                let from = if h == 0 { o & !bit } else { o | bit };
                let mut l = 0;
                while l < lanes {
                    let id = state[from][l];
                    if (id as usize % 16) & bit == o & bit {
                        // Insertion sort by element.
                        let mut at = n;
                        while at > 0 && ids[at - 1] > id {
                            ids[at] = ids[at - 1];
                            src[at] = src[at - 1];
                            at -= 1;
                        }
                        ids[at] = id;
                        src[at] = (h * lanes + l) as u32;
                        n += 1;
                    }
                    l += 1;
                }
                h += 1;
            }
            assert!(n == lanes);
            next[o] = ids;
            idx[stages][o] = src;
            o += 1;
        }
        state = next;
        stages += 1;
        bit *= 2;
    }
    // Vector `p` now holds dimension `p` of row `r` in lane `r`.
    let mut p = 0;
    while p < dp {
        let mut r = 0;
        while r < lanes {
            assert!(state[p][r] == (r * 16 + p) as u32);
            r += 1;
        }
        p += 1;
    }
    Transpose {
        dp,
        stages,
        load_mask,
        idx,
    }
}

/// The transposition plans for rows of `D` values.
pub(super) struct Plan<const D: usize>;

impl<const D: usize> Plan<D> {
    pub(super) const F32: Transpose = transpose_plan(16, D);
    pub(super) const F64: Transpose = transpose_plan(8, D);
}
