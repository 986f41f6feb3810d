//! Greedy k-means++ seeding's pass over the data: fold the last chosen
//! centre into each row's closest distance and score the next candidates,
//! in one read of the data and without an `n x candidates` matrix.

use rayon::prelude::*;

use super::{distances, sq_norm_f64, Metric, PreparedCentres, CHUNK_ROWS};
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
    /// Rows the pass did not compute distances for (see
    /// [`fold_and_score_pruned`]); 0 without skipping.
    pub skipped_rows: usize,
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
    fold_and_score_with(x, sample_weight, min_dist, None, centres, fold)
}

/// [`fold_and_score`] skipping the rows that no centre of `centres` can
/// come closer to than their current distance (see [`SeedingBounds`]): the
/// same `min_dist`, the same potentials and chunk sums, to the bit. Every
/// fold into `min_dist` must go through here with the same `bounds`, which
/// keep track of each row's closest centre.
pub fn fold_and_score_pruned<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    min_dist: &mut [f64],
    bounds: &mut SeedingBounds,
    centres: &PreparedCentres<T>,
    fold: usize,
) -> ScoredCandidates {
    fold_and_score_with(x, sample_weight, min_dist, Some(bounds), centres, fold)
}

/// Row index marking "no centre chosen yet" in [`SeedingBounds::closest`].
const NO_CENTRE: u32 = u32::MAX;

/// What greedy k-means++ keeps between passes to skip, exactly, the rows a
/// new centre cannot come closer to (squared Euclidean only).
///
/// A row `x` whose nearest chosen centre `a` is at `D = min_dist[x]` cannot
/// get closer to a centre `c` with `||c - a|| >= 2 sqrt(D)`: by the triangle
/// inequality `||x - c|| >= ||c - a|| - ||x - a|| >= sqrt(D)`. Skipping must
/// not change a single bit, so the test is made on what the kernel would
/// compute, with its rounding bounded: the kernels compute a squared
/// distance `||x||^2 + ||c||^2 - 2 x.c` in the data's type with at most `d +
/// 3` roundings per term, so the computed value is within `E(x, c) = unit *
/// (||x||^2 + ||c||^2)` of the true one, `unit = 4 (d + 4) u` (twice the
/// textbook `2 gamma_{d+3}`; `u` the type's unit roundoff). With `D` the
/// computed distance to `a`, the true one is at most `D + E(x, a)`, so
///
/// `lo = ||c - a|| - sqrt(D + E(x, a))` bounds `||x - c||` from below, and
/// when `lo > 0` and `lo^2 >= D + E(x, c)`, the kernel's value for `(x, c)`
/// is at least `D`: `min(D, d(x, c)) = D`, the row neither moves nor changes
/// any candidate's potential, and its term is `w D` either way. `||c - a||`
/// is computed in f64 from the centres' values, and every f64 step of the
/// test is covered by a relative slack.
#[derive(Clone, Debug)]
pub struct SeedingBounds {
    d: usize,
    /// `||x||^2` of every row, in f64.
    row_norms: Vec<f64>,
    /// Per row, the index in `centres` of a chosen centre at exactly
    /// `min_dist` ([`NO_CENTRE`] before the first fold).
    closest: Vec<u32>,
    /// The chosen centres in the order folded, row-major f64.
    centres: Vec<f64>,
    /// Their squared norms.
    centre_norms: Vec<f64>,
    /// The kernels' rounding bound per unit of squared norm.
    unit: f64,
    /// Relative slack for the test's own f64 arithmetic.
    slack: f64,
}

impl SeedingBounds {
    /// Bounds for seeding `x` from scratch (`min_dist` all +inf); `None`
    /// under cosine, which seeds without skipping.
    pub fn new<T: Float>(x: MatRef<'_, T>, metric: Metric) -> Option<Self> {
        if metric != Metric::SquaredEuclidean {
            return None;
        }
        let (n, d) = (x.rows(), x.cols());
        let mut row_norms = vec![0.0f64; n];
        row_norms
            .par_chunks_mut(CHUNK_ROWS)
            .enumerate()
            .for_each(|(ci, out)| {
                for (r, v) in out.iter_mut().enumerate() {
                    *v = sq_norm_f64(x.row(ci * CHUNK_ROWS + r));
                }
            });
        let u = <T as num_traits::Float>::epsilon().to_f64_exact() / 2.0;
        Some(Self {
            d,
            row_norms,
            closest: vec![NO_CENTRE; n],
            centres: Vec::new(),
            centre_norms: Vec::new(),
            unit: 4.0 * (d as f64 + 4.0) * u,
            slack: 8.0 * (d as f64 + 4.0) * f64::EPSILON,
        })
    }

    /// Takes the first `fold` centres of `centres` as chosen; returns, for
    /// every chosen centre `a` and every centre `j` of `centres`, row-major
    /// `chosen x k`: a lower bound on `||c_j - a||` and `unit (||a||^2 +
    /// ||c_j||^2)`.
    fn prepare<T: Float>(
        &mut self,
        centres: &PreparedCentres<T>,
        fold: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let (k, d) = (centres.k(), self.d);
        let c = centres.centres();
        let as_f64 = |j: usize| -> Vec<f64> { c.row(j).iter().map(|v| v.to_f64_exact()).collect() };
        for j in 0..fold {
            let row = as_f64(j);
            self.centre_norms.push(row.iter().map(|v| v * v).sum());
            self.centres.extend_from_slice(&row);
        }
        let pass: Vec<Vec<f64>> = (0..k).map(as_f64).collect();
        let pass_norms: Vec<f64> = pass.iter().map(|r| r.iter().map(|v| v * v).sum()).collect();
        let chosen = self.centre_norms.len();
        let mut gap = vec![0.0f64; chosen * k];
        let mut err = vec![0.0f64; chosen * k];
        let (centres_f64, norms, unit, slack) =
            (&self.centres, &self.centre_norms, self.unit, self.slack);
        gap.par_chunks_mut(k)
            .zip(err.par_chunks_mut(k))
            .enumerate()
            .for_each(|(a, (gap, err))| {
                let ca = &centres_f64[a * d..(a + 1) * d];
                for j in 0..k {
                    let cc: f64 = ca
                        .iter()
                        .zip(&pass[j])
                        .map(|(p, q)| (p - q) * (p - q))
                        .sum();
                    gap[j] = (cc * (1.0 - slack)).sqrt() * (1.0 - slack);
                    err[j] = unit * (norms[a] + pass_norms[j]);
                }
            });
        (gap, err)
    }
}

/// [`fold_and_score`], skipping rows by `bounds` when given.
fn fold_and_score_with<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    min_dist: &mut [f64],
    bounds: Option<&mut SeedingBounds>,
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
            skipped_rows: 0,
        };
    }
    // The test's inputs: per (chosen centre, centre of this pass) the gap
    // and error terms, with the folded centres taken as chosen first.
    let prune = bounds.map(|b| {
        let base = b.centre_norms.len() as u32;
        let (gap, err) = b.prepare(centres, fold);
        (b, base, gap, err)
    });
    let n_chunks = n.div_ceil(CHUNK_ROWS);
    let (tests, mut closest_chunks): (Option<SkipTest<'_>>, Vec<Option<&mut [u32]>>) = match prune {
        Some((b, base, gap, err)) => {
            let SeedingBounds {
                row_norms,
                closest,
                centre_norms,
                unit,
                slack,
                ..
            } = b;
            let chunks = closest.chunks_mut(CHUNK_ROWS).map(Some).collect();
            let test = SkipTest {
                row_norms,
                centre_norms,
                unit: *unit,
                slack: *slack,
                k,
                base,
                gap,
                err,
            };
            (Some(test), chunks)
        }
        None => (None, (0..n_chunks).map(|_| None).collect()),
    };
    let per_chunk: Vec<(Vec<f64>, Vec<LowBits>, usize)> = min_dist
        .par_chunks_mut(CHUNK_ROWS)
        .zip(closest_chunks.par_iter_mut())
        .enumerate()
        .map(|(ci, (current, closest))| {
            let start = ci * CHUNK_ROWS;
            let mut pot = vec![0.0f64; m];
            let mut low = vec![LowBits::NONE; m];
            let skip = tests.as_ref().zip(closest.as_deref_mut());
            let skipped = score_chunk(
                x,
                sample_weight,
                centres,
                fold,
                start,
                current,
                skip,
                &mut pot,
                &mut low,
            );
            (pot, low, skipped)
        })
        .collect();
    let mut chunk_potentials = Vec::with_capacity(per_chunk.len() * m);
    let mut potentials = vec![0.0f64; m];
    let mut low = vec![LowBits::NONE; m];
    let mut skipped_rows = 0;
    for (pot, lb, skipped) in &per_chunk {
        skipped_rows += skipped;
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
        skipped_rows,
    }
}

/// One pass's skipping test (see [`SeedingBounds`]), shared by its chunks.
struct SkipTest<'a> {
    row_norms: &'a [f64],
    centre_norms: &'a [f64],
    unit: f64,
    slack: f64,
    /// Centres in this pass.
    k: usize,
    /// The chosen index of this pass's first folded centre.
    base: u32,
    /// `chosen x k`: lower bounds on `||c_j - a||`.
    gap: Vec<f64>,
    /// `chosen x k`: `unit (||a||^2 + ||c_j||^2)`.
    err: Vec<f64>,
}

impl SkipTest<'_> {
    /// Whether no centre of this pass can come closer to row `i` (at
    /// distance `cur` from its closest chosen centre `a`) than `cur`.
    #[inline]
    fn skips(&self, i: usize, a: u32, cur: f64) -> bool {
        if a == NO_CENTRE {
            return false;
        }
        let a = a as usize;
        let nx = self.row_norms[i];
        let reach = ((cur + self.unit * (nx + self.centre_norms[a])) * (1.0 + self.slack)).sqrt()
            * (1.0 + self.slack);
        let (gap, err) = (
            &self.gap[a * self.k..][..self.k],
            &self.err[a * self.k..][..self.k],
        );
        gap.iter().zip(err).all(|(&g, &e)| {
            let lo = g - reach;
            lo > 0.0
                && lo * lo * (1.0 - self.slack) >= (cur + self.unit * nx + e) * (1.0 + self.slack)
        })
    }
}

/// Rows of a block gathered for the kernel when few of them need it.
const GATHER_BELOW: f64 = 0.5;

/// One chunk of [`fold_and_score`]: rows `start..start + current.len()`,
/// their closest distances `current` (and closest centres, when skipping),
/// adding each candidate's terms to `pot` and `low` in row order. Returns
/// the number of rows skipped.
#[allow(clippy::too_many_arguments)]
fn score_chunk<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: &PreparedCentres<T>,
    fold: usize,
    start: usize,
    current: &mut [f64],
    mut skip: Option<(&SkipTest<'_>, &mut [u32])>,
    pot: &mut [f64],
    low: &mut [LowBits],
) -> usize {
    let (k, d) = (centres.k(), x.cols());
    let rows = current.len();
    let block = (SEEDING_SCRATCH / k.max(1)).clamp(1, CHUNK_ROWS);
    let mut dist = vec![T::zero(); block.min(rows) * k];
    let mut needed: Vec<usize> = Vec::with_capacity(block.min(rows));
    let mut gathered: Vec<T> = Vec::new();
    let mut skipped = 0;
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + block).min(rows);
        // Which rows of the block the kernel must see.
        needed.clear();
        match &skip {
            Some((test, closest)) => {
                for r in r0..r1 {
                    if !test.skips(start + r, closest[r], current[r]) {
                        needed.push(r);
                    }
                }
            }
            None => needed.extend(r0..r1),
        }
        skipped += (r1 - r0) - needed.len();
        // Row values do not depend on the blocking or on the rows around
        // them, so a gathered row gets the same distances as in place.
        let in_place = needed.len() as f64 >= GATHER_BELOW * (r1 - r0) as f64;
        if in_place {
            let out = &mut dist[..(r1 - r0) * k];
            distances(x.slice_rows(start + r0, start + r1), centres, out);
        } else if !needed.is_empty() {
            gathered.clear();
            for &r in &needed {
                gathered.extend_from_slice(x.row(start + r));
            }
            let g =
                MatRef::new(&gathered, needed.len(), d).expect("gathered rows keep their width");
            distances(g, centres, &mut dist[..needed.len() * k]);
        }
        let mut next = needed.iter().enumerate().peekable();
        for r in r0..r1 {
            let i = start + r;
            let w = sample_weight.map_or(1.0, |w| w[i].to_f64_exact());
            let cur = &mut current[r];
            let drow = match next.peek() {
                Some(&(slot, &nr)) if nr == r => {
                    next.next();
                    let at = if in_place { r - r0 } else { slot };
                    Some(&dist[at * k..(at + 1) * k])
                }
                _ => None,
            };
            match drow {
                Some(drow) => {
                    for (f, &dc) in drow[..fold].iter().enumerate() {
                        let dc = dc.to_f64_exact();
                        if let Some((test, closest)) = skip.as_mut() {
                            // Strictly closer (or the first centre): `cur`
                            // stays the distance to `closest`.
                            if dc < *cur || closest[r] == NO_CENTRE {
                                closest[r] = test.base + f as u32;
                            }
                        }
                        *cur = cur.min(dc);
                    }
                    for ((p, lb), &dc) in pot.iter_mut().zip(low.iter_mut()).zip(&drow[fold..]) {
                        let t = seeding_term(w, *cur, dc);
                        *p += t;
                        lb.add(t);
                    }
                }
                None => {
                    // Skipped: every centre of the pass is at least `cur`
                    // away, so the fold leaves it and each term is `w cur`.
                    let t = w * *cur;
                    for (p, lb) in pot.iter_mut().zip(low.iter_mut()) {
                        *p += t;
                        lb.add(t);
                    }
                }
            }
        }
        r0 = r1;
    }
    skipped
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
