//! Greedy k-means++ seeding's pass over the data: fold the last chosen
//! centre into each row's closest distance and score the next candidates,
//! in one read of the data and without an `n x candidates` matrix.

use rayon::prelude::*;

use super::{distances, PreparedCentres, CHUNK_ROWS};
use crate::float::Float;
use crate::matrix::MatRef;

/// One term of a k-means++ potential: row weight `w` times the row's distance
/// to its nearest centre once centre `c` (at distance `dc`) is added to those
/// at distance `cur`. Every seeding function sums exactly this, so their
/// potentials and sampling probabilities agree to the bit.
#[inline(always)]
fn seeding_term<T: Float>(w: f64, cur: f64, dc: T) -> f64 {
    w * cur.min(dc.to_f64_exact())
}

/// Values of distance scratch per task in the seeding passes: a chunk is cut
/// into row blocks of at most this many distances (row values do not depend
/// on the blocking), so thousands of candidates need no `CHUNK_ROWS x m`
/// buffer.
const SEEDING_SCRATCH: usize = 1 << 16;

/// Runs `f(first_row, distances)` on consecutive row blocks of rows
/// `start..start + rows` of `x`, `distances` being each block's `rows x k`
/// distances to `centres`, in row order.
fn for_distance_blocks<T: Float>(
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    start: usize,
    rows: usize,
    mut f: impl FnMut(usize, &[T]),
) {
    let k = centres.k();
    let block = (SEEDING_SCRATCH / k.max(1)).clamp(1, CHUNK_ROWS);
    let mut dist = vec![T::zero(); block.min(rows) * k];
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + block).min(rows);
        let out = &mut dist[..(r1 - r0) * k];
        distances(x.slice_rows(start + r0, start + r1), centres, out);
        f(r0, out);
        r0 = r1;
    }
}

/// Greedy k-means++'s scoring pass: for each candidate centre `c` (the rows
/// of `candidates`), the potential `sum_x w(x) min(min_dist[x], d(x, c))` in
/// f64, where `min_dist` holds each row's distance to the centres chosen so
/// far (+inf before the first) and `w` the sample weights (1 without). The
/// `n x candidates` distances are computed a chunk at a time and never
/// stored; partial sums are added in chunk order, so the result is the same
/// at any thread count.
pub fn candidate_potentials<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    min_dist: &[f64],
    candidates: &PreparedCentres<T>,
) -> Vec<f64> {
    let mut scratch = min_dist.to_vec();
    fold_and_score(x, sample_weight, &mut scratch, candidates, 0).potentials
}

/// Greedy k-means++'s update pass: `min_dist[x] = min(min_dist[x], d(x, c))`
/// over the centres `c` of `centres` (usually the one just chosen), without
/// an `n x k` matrix. The distances are those [`candidate_potentials`] scores
/// with, so the potential a chosen candidate was scored with is exactly the
/// sum of the weighted distances it leaves.
pub fn update_min_distances<T: Float>(
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    min_dist: &mut [f64],
) {
    fold_and_score(x, None, min_dist, centres, centres.k());
}

/// What one [`fold_and_score`] pass leaves for each of its `m` candidates.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredCandidates {
    /// The number of candidates scored.
    pub m: usize,
    /// `chunks x m`, row-major: for each chunk of [`CHUNK_ROWS`] rows, each
    /// candidate's potential over the chunk's rows, summed in row order from
    /// 0. Exactly the sampling weights' sums over the chunk once that
    /// candidate is chosen.
    pub chunk_potentials: Vec<f64>,
    /// Each candidate's potential: its chunk sums added in chunk order.
    pub potentials: Vec<f64>,
    /// For each candidate, an exponent `e` such that every term of its
    /// potential is a multiple of `2^e` (`i32::MAX` when every term is
    /// zero): every partial sum of the terms is one too, so any that stays
    /// below `2^(e + 53)` is exact.
    pub min_lsb: Vec<i32>,
}

/// The smallest exponent of the lowest set bit over nonnegative floats, kept
/// while summing them: each value's biased exponent plus the trailing zeros
/// of its significand (branch-free), the smallest such key over the nonzero
/// values. Every value is a multiple of `2^(key - 1075)`.
#[derive(Clone, Copy)]
pub(super) struct LowBits {
    min_key: u32,
}

impl LowBits {
    pub(super) const NONE: LowBits = LowBits { min_key: u32::MAX };

    #[inline(always)]
    pub(super) fn add(&mut self, v: f64) {
        let b = v.to_bits();
        let key = (b >> 52) as u32 + (b | (1u64 << 52)).trailing_zeros();
        // Zeros add nothing to a sum.
        self.min_key = self.min_key.min(if b == 0 { u32::MAX } else { key });
    }

    pub(super) fn merge(&mut self, o: LowBits) {
        self.min_key = self.min_key.min(o.min_key);
    }

    /// The exponent; `i32::MAX` when every value was zero. A subnormal
    /// (biased exponent 0) is worth `significand * 2^-1074`: its bound is one
    /// lower than it could be, which is safe.
    pub(super) fn exponent(self) -> i32 {
        if self.min_key == u32::MAX {
            i32::MAX
        } else {
            self.min_key as i32 - 1075
        }
    }
}

/// Greedy k-means++'s fused pass: the first `fold` centres of `centres` are
/// folded into `min_dist` (as [`update_min_distances`] does) and the others
/// are scored against the updated distances (as [`candidate_potentials`]
/// does), one distance computation per chunk for both, so one step of
/// seeding reads the data once. Chunks are summed in parallel and their sums
/// kept and added in chunk order: the same at any thread count.
pub fn fold_and_score<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    min_dist: &mut [f64],
    centres: &PreparedCentres<T>,
    fold: usize,
) -> ScoredCandidates {
    let (n, k) = (x.rows(), centres.k());
    assert_eq!(x.cols(), centres.d(), "data width must match the centres");
    assert_eq!(min_dist.len(), n, "one distance per row");
    assert!(fold <= k, "cannot fold more centres than given");
    assert!(
        sample_weight.is_none_or(|w| w.len() == n),
        "one sample weight per row"
    );
    let m = k - fold;
    if k == 0 {
        return ScoredCandidates {
            m,
            chunk_potentials: Vec::new(),
            potentials: Vec::new(),
            min_lsb: Vec::new(),
        };
    }
    let per_chunk: Vec<(Vec<f64>, Vec<LowBits>)> = min_dist
        .par_chunks_mut(CHUNK_ROWS)
        .enumerate()
        .map(|(ci, current)| {
            let start = ci * CHUNK_ROWS;
            let mut pot = vec![0.0f64; m];
            let mut low = vec![LowBits::NONE; m];
            for_distance_blocks(x, centres, start, current.len(), |r0, dist| {
                for (r, drow) in dist.chunks_exact(k).enumerate() {
                    let i = r0 + r;
                    let cur = &mut current[i];
                    for &dc in &drow[..fold] {
                        *cur = cur.min(dc.to_f64_exact());
                    }
                    let w = sample_weight.map_or(1.0, |w| w[start + i].to_f64_exact());
                    for ((p, lb), &dc) in pot.iter_mut().zip(low.iter_mut()).zip(&drow[fold..]) {
                        let t = seeding_term(w, *cur, dc);
                        *p += t;
                        lb.add(t);
                    }
                }
            });
            (pot, low)
        })
        .collect();
    let mut chunk_potentials = Vec::with_capacity(per_chunk.len() * m);
    let mut potentials = vec![0.0f64; m];
    let mut low = vec![LowBits::NONE; m];
    for (pot, lb) in &per_chunk {
        chunk_potentials.extend_from_slice(pot);
        for (t, v) in potentials.iter_mut().zip(pot) {
            *t += v;
        }
        for (a, b) in low.iter_mut().zip(lb) {
            a.merge(*b);
        }
    }
    let min_lsb = low.iter().map(|l| l.exponent()).collect();
    ScoredCandidates {
        m,
        chunk_potentials,
        potentials,
        min_lsb,
    }
}

/// The terms [`fold_and_score`] summed for centre `column` of `centres` over
/// rows `start..start + rows`, after its folding (`min_dist` as that pass
/// left it): `w_i min(min_dist[i], d(x_i, centres[column]))`. Recomputed with
/// the same centres, so the values are the pass's to the bit.
pub fn seeding_terms<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    min_dist: &[f64],
    centres: &PreparedCentres<T>,
    column: usize,
    start: usize,
    rows: usize,
) -> Vec<f64> {
    let k = centres.k();
    assert!(column < k, "no such centre");
    assert!(start + rows <= x.rows() && min_dist.len() == x.rows());
    let mut terms = Vec::with_capacity(rows);
    for_distance_blocks(x, centres, start, rows, |r0, dist| {
        for (r, drow) in dist.chunks_exact(k).enumerate() {
            let i = start + r0 + r;
            let w = sample_weight.map_or(1.0, |w| w[i].to_f64_exact());
            terms.push(seeding_term(w, min_dist[i], drow[column]));
        }
    });
    terms
}
