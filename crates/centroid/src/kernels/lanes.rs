//! The lane kernel: small `d` (at most [`SMALL_D`]) and few centres (at
//! most [`LANE_K`]), one row per vector lane.
//!
//! Everything here is generic over [`Simd`] and `#[inline(always)]`; the
//! entry points of `dispatch.rs` compile it once per instruction set.
//!
//! # Safety
//!
//! Every `unsafe fn` here has one contract: the CPU runs the instruction
//! set of its [`Simd`] type `S` (the entry points of `dispatch.rs` take the
//! capability token for it), and the job and slices it is given are shaped
//! as `dispatch::run` asserts (`job.x` holds the rows, `job.data` and
//! `job.bias` the packed panels, one label and score per row), which keeps
//! every pointer it forms in bounds.

use super::pack::{Job, Op};
use super::scalar::{inv_norm, ClusterStats, Metric};
use super::simd::{Simd, MAX_LANES};
use super::tile::SMALL_D;
use crate::float::Float;
#[allow(unused_imports)]
use num_traits::{Float as _, One as _, Zero as _};
use std::mem::MaybeUninit;

/// The largest `k` the lane-parallel path takes (with `d <= SMALL_D`).
const LANE_K: usize = 64;

/// Copies of a chunk's per-cluster statistics in the lane-parallel path:
/// row `i` of the chunk is added to copy `i % LANE_COPIES` (in row order
/// within a copy), and the copies are added together in a fixed order at
/// the end of the chunk, `(c0 + c1) + (c2 + c3)`. A run of rows of one
/// cluster then waits on four separate chains of store, reload and add,
/// not on one.
const LANE_COPIES: usize = 4;

/// How many blocks ahead the lane-parallel path prefetches rows.
const LANE_PREFETCH: usize = 8;

/// Centres per group in the lane-parallel path: that many independent
/// multiply-add chains keep the FMA units busy, and the group's argmin is a
/// tree three merges deep.
const LANE_GROUP: usize = 8;

/// Folds centres `j0..j0 + G` into the running minima of a block of rows
/// held dimension-major in `xt` (row `r` in lane `r`). `cen` holds the
/// centres' values centre-major (`D` per centre), `bias` and `idx` their
/// biases and indices (as floats). The values are those of the tile kernel's `tile` (bias
/// minus `x_p c_p` for `p` ascending, fused), so both paths see the same
/// bits. The group is reduced as a tree in which every merge takes the
/// higher-index side only when strictly smaller, and then merged into the
/// running minima the same way, so ties go to the lowest index and NaN
/// values never win.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // indices into the register tile read best
unsafe fn lane_group<S: Simd, const D: usize, const G: usize>(
    xt: &[S::V; D],
    j0: usize,
    cen: &[S::T],
    bias: &[S::T],
    idx: &[S::T],
    best: &mut S::V,
    besti: &mut S::V,
) {
    // SAFETY: the module contract (see the top of this file): the CPU runs `S`'s instruction set
    // and `job` is shaped as `dispatch::run` asserts, which keeps every pointer below in bounds.
    unsafe {
        let cen = cen.as_ptr().add(j0 * D);
        let mut v: [S::V; G] = std::array::from_fn(|g| S::splat(bias[j0 + g]));
        for p in 0..D {
            for g in 0..G {
                v[g] = S::fnmadd(xt[p], S::splat(*cen.add(g * D + p)), v[g]);
            }
        }
        let mut i: [S::V; G] = std::array::from_fn(|g| S::splat(idx[j0 + g]));
        let mut step = 1;
        while step < G {
            let mut a = 0;
            while a + step < G {
                let m = S::lt(v[a + step], v[a]);
                v[a] = S::select(m, v[a + step], v[a]);
                i[a] = S::select(m, i[a + step], i[a]);
                a += 2 * step;
            }
            step *= 2;
        }
        let m = S::lt(v[0], *best);
        *best = S::select(m, v[0], *best);
        *besti = S::select(m, i[0], *besti);
    }
}

/// The lane-parallel path for `d = D <= 16` and `k <= LANE_K`: blocks of
/// `LANES` rows are loaded transposed, so that one vector holds one
/// dimension of every row of the block and each centre's value for all of
/// them takes `D` multiply-adds against broadcast centre values; the argmin
/// is then lane-wise (a compare and two blends per centre per block)
/// instead of a horizontal reduction per row. The distances follow in the
/// same registers, and with `ACC` (then `part` is given) each row is added
/// to its cluster's sums one block later, while it is still in L1 and its
/// label's store has long completed: one pass over the chunk.
///
/// A chunk's statistics are kept in [`LANE_COPIES`] interleaved copies
/// (row `i` in copy `i % LANE_COPIES`, in row order within a copy) that
/// are added together in a fixed order at the end, and the loss in one sum
/// per lane; the order depends only on the rows' places in the chunk.
#[inline(always)]
unsafe fn lane_chunk<S: Simd, const D: usize, const ACC: bool>(
    job: &Job<'_, S::T>,
    weights: Option<&[S::T]>,
    labels: &mut [u32],
    scores: &mut [S::T],
    part: Option<&mut ClusterStats>,
) {
    // SAFETY: the module contract (see the top of this file): the CPU runs `S`'s instruction set
    // and `job` is shaped as `dispatch::run` asserts, which keeps every pointer below in bounds.
    unsafe {
        type T<S> = <S as Simd>::T;
        let (lanes, k, rows) = (S::LANES, job.k, labels.len());
        debug_assert!(job.d == D && k <= LANE_K && job.lanes == lanes);
        debug_assert!(job.x.len() >= rows * D && scores.len() == rows);
        debug_assert_eq!(ACC, part.is_some());
        // The centres centre-major, their biases and indices: a few KiB, read
        // by every block of the chunk from L1.
        let mut cen = [T::<S>::zero(); LANE_K * SMALL_D];
        let mut bias = [T::<S>::zero(); LANE_K];
        let mut idx = [T::<S>::zero(); LANE_K];
        for j in 0..k {
            let (q, lane) = (j / lanes, j % lanes);
            for p in 0..D {
                cen[j * D + p] = job.data[(q * D + p) * lanes + lane];
            }
            bias[j] = job.bias[j];
            idx[j] = T::<S>::from_f64_lossy(j as f64);
        }
        let cosine = job.metric == Metric::Cosine;
        let mut stats = LaneStats::<D>::new(ACC, cosine || weights.is_some(), k);
        let zero = S::splat(T::<S>::zero());
        let two = S::splat(T::<S>::one() + T::<S>::one());
        // The last, partial block of a chunk is copied here, zero-padded.
        let mut pad = [T::<S>::zero(); MAX_LANES * SMALL_D];
        let mut out_scores = [T::<S>::zero(); MAX_LANES];
        let mut out_labels = [0u32; MAX_LANES];
        // The block whose rows are still to be added to the statistics.
        let mut pending = 0..0;
        let mut r0 = 0;
        while r0 < rows {
            let valid = (rows - r0).min(lanes);
            let src = if valid == lanes {
                job.x.as_ptr().add(r0 * D)
            } else {
                pad[..valid * D].copy_from_slice(&job.x[r0 * D..(r0 + valid) * D]);
                pad.as_ptr()
            };
            // The rows a few blocks on: the hardware prefetchers alone leave
            // the loads waiting on L3.
            let ahead = job
                .x
                .as_ptr()
                .wrapping_add((r0 + LANE_PREFETCH * lanes) * D);
            let line = 64 / std::mem::size_of::<T<S>>();
            for l in 0..(lanes * D).div_ceil(line) {
                S::prefetch(ahead.wrapping_add(l * line));
            }
            let xt = S::load_columns::<D>(src);
            let mut best = S::splat(T::<S>::infinity());
            let mut besti = zero;
            let mut j = 0;
            while j + LANE_GROUP <= k {
                lane_group::<S, D, LANE_GROUP>(&xt, j, &cen, &bias, &idx, &mut best, &mut besti);
                j += LANE_GROUP;
            }
            if k - j >= 4 {
                lane_group::<S, D, 4>(&xt, j, &cen, &bias, &idx, &mut best, &mut besti);
                j += 4;
            }
            if k - j >= 2 {
                lane_group::<S, D, 2>(&xt, j, &cen, &bias, &idx, &mut best, &mut besti);
                j += 2;
            }
            if k - j >= 1 {
                lane_group::<S, D, 1>(&xt, j, &cen, &bias, &idx, &mut best, &mut besti);
            }
            // A row whose values are all NaN keeps index 0 (centre 0, like the
            // reference) and gets distance 0 from the clamp below, as in
            // [`finish`].
            let score = if cosine {
                best
            } else {
                let mut sq = S::fmadd(xt[0], xt[0], zero);
                for x in &xt[1..] {
                    sq = S::fmadd(*x, *x, sq);
                }
                // `max(sq + 2 value, 0)`; `2 value` is exact, so one rounding.
                S::max(S::fmadd(two, best, sq), zero)
            };
            let end = r0 + valid;
            if valid == lanes {
                S::store_indices(labels.as_mut_ptr().add(r0), besti);
                S::store(scores.as_mut_ptr().add(r0), score);
            } else {
                S::store_indices(out_labels.as_mut_ptr(), besti);
                S::store(out_scores.as_mut_ptr(), score);
                labels[r0..end].copy_from_slice(&out_labels[..valid]);
                scores[r0..end].copy_from_slice(&out_scores[..valid]);
            }
            if cosine {
                // `1 + (-x.c) / max(||x||, eps)`, the norm in f64 per row.
                for i in r0..end {
                    let inv = inv_norm(std::slice::from_raw_parts(job.x.as_ptr().add(i * D), D));
                    let s = scores.get_unchecked_mut(i);
                    *s = T::<S>::one() + *s * T::<S>::from_f64_lossy(inv);
                }
            }
            if ACC {
                stats.add_rows::<S>(job.x, weights, cosine, labels, scores, pending);
                pending = r0..end;
            }
            r0 += lanes;
        }
        if let Some(part) = part {
            stats.add_rows::<S>(job.x, weights, cosine, labels, scores, pending);
            stats.merge_into(k, part);
        }
    }
}

/// One chunk's statistics in the lane-parallel path: [`LANE_COPIES`]
/// interleaved copies, each cluster's row of sums padded to whole vectors
/// (see `Simd::accumulate_padded`), and the loss per lane.
struct LaneStats<const D: usize> {
    /// The first `used` values hold the `k` clusters' copies (zeroed by
    /// `new`); the rest, sized for the largest `k` and `D`, is never
    /// touched: zeroing all 32 KiB for every chunk of 2048 rows cost about
    /// 2 % of a 1,000,000 x 8 fit.
    sums: [MaybeUninit<f64>; LANE_COPIES * LANE_K * SMALL_D],
    used: usize,
    weights: [f64; LANE_COPIES * LANE_K],
    counts: [u32; LANE_COPIES * LANE_K],
    loss: [f64; MAX_LANES],
    /// Whether rows carry a scale (a weight, or under cosine a norm).
    scaled: bool,
}

impl<const D: usize> LaneStats<D> {
    /// Sums per cluster and copy: `D` rounded up to whole f64 vectors.
    const STRIDE: usize = D.next_multiple_of(8);

    #[inline(always)]
    fn new(accumulate: bool, scaled: bool, k: usize) -> Self {
        let mut sums = [const { MaybeUninit::uninit() }; LANE_COPIES * LANE_K * SMALL_D];
        let used = if accumulate {
            (k * LANE_COPIES * Self::STRIDE).min(sums.len())
        } else {
            0
        };
        for v in &mut sums[..used] {
            v.write(0.0);
        }
        Self {
            sums,
            used,
            weights: [0.0; LANE_COPIES * LANE_K],
            counts: [0; LANE_COPIES * LANE_K],
            loss: [0.0; MAX_LANES],
            scaled,
        }
    }

    /// Adds rows `rows` (a block, labelled and scored) of the chunk `x`.
    #[inline(always)]
    unsafe fn add_rows<S: Simd>(
        &mut self,
        x: &[S::T],
        weights: Option<&[S::T]>,
        cosine: bool,
        labels: &[u32],
        scores: &[S::T],
        rows: std::ops::Range<usize>,
    ) {
        // SAFETY: the module contract (see the top of this file): the CPU runs `S`'s instruction
        // set and `job` is shaped as `dispatch::run` asserts, which keeps every pointer below in
        // bounds.
        unsafe {
            let stride = Self::STRIDE;
            if rows.is_empty() {
                return;
            }
            let (r0, end) = (rows.start, rows.end);
            if self.scaled {
                for i in r0..end {
                    let row = x.as_ptr().add(i * D);
                    let w = weights.map_or(1.0, |w| w.get_unchecked(i).to_f64_exact());
                    let scale = if cosine {
                        w * inv_norm(std::slice::from_raw_parts(row, D))
                    } else {
                        w
                    };
                    let at = *labels.get_unchecked(i) as usize * LANE_COPIES + i % LANE_COPIES;
                    S::accumulate_padded(
                        self.sums.as_mut_ptr().cast::<f64>().add(at * stride),
                        row,
                        D,
                        Some(scale),
                    );
                    *self.weights.get_unchecked_mut(at) += w;
                    *self.counts.get_unchecked_mut(at) += 1;
                }
            } else {
                for i in r0..end {
                    let row = x.as_ptr().add(i * D);
                    let at = *labels.get_unchecked(i) as usize * LANE_COPIES + i % LANE_COPIES;
                    S::accumulate_padded(
                        self.sums.as_mut_ptr().cast::<f64>().add(at * stride),
                        row,
                        D,
                        None,
                    );
                    *self.counts.get_unchecked_mut(at) += 1;
                }
            }
            // The loss, lane `l` holding the rows `l` mod `LANES`.
            let w = weights.map(|w| w.as_ptr().add(r0));
            if end - r0 == S::LANES {
                S::accumulate_lanes(self.loss.as_mut_ptr(), S::load(scores.as_ptr().add(r0)), w);
            } else {
                for (l, (acc, s)) in self.loss.iter_mut().zip(&scores[r0..end]).enumerate() {
                    let s = s.to_f64_exact();
                    *acc += match w {
                        Some(w) => (*w.add(l)).to_f64_exact() * s,
                        None => s,
                    };
                }
            }
        }
    }

    /// Adds the copies together, `(c0 + c1) + (c2 + c3)`, and then into
    /// `part`.
    #[inline(always)]
    fn merge_into(&self, k: usize, part: &mut ClusterStats) {
        const { assert!(LANE_COPIES == 4) };
        let stride = Self::STRIDE;
        assert!(
            k * LANE_COPIES * stride <= self.used,
            "the sums new() zeroed"
        );
        // SAFETY: the first `used` values were written by `new` (and since
        // only added to); MaybeUninit<f64> has f64's layout.
        let sums: &[f64] =
            unsafe { std::slice::from_raw_parts(self.sums.as_ptr().cast::<f64>(), self.used) };
        for j in 0..k {
            let c = j * LANE_COPIES;
            let copy = |q: usize| &sums[(c + q) * stride..(c + q) * stride + D];
            let (a, b, e, f) = (copy(0), copy(1), copy(2), copy(3));
            for (p, s) in part.sums[j * D..(j + 1) * D].iter_mut().enumerate() {
                *s += (a[p] + b[p]) + (e[p] + f[p]);
            }
            let n: u32 = self.counts[c..c + LANE_COPIES].iter().sum();
            part.counts[j] += u64::from(n);
            part.weights[j] += if self.scaled {
                let w = &self.weights[c..c + LANE_COPIES];
                (w[0] + w[1]) + (w[2] + w[3])
            } else {
                // Unit weights add up to the count exactly.
                f64::from(n)
            };
        }
        part.loss += self.loss.iter().sum::<f64>();
    }
}

/// Whether the lane-parallel path takes the job's shape.
fn lane_path(job_d: usize, job_k: usize) -> bool {
    (1..=SMALL_D).contains(&job_d) && job_k <= LANE_K
}

/// [`lane_chunk`] with the row width as a constant.
#[inline(always)]
unsafe fn lane_rows<S: Simd>(
    job: &Job<'_, S::T>,
    weights: Option<&[S::T]>,
    labels: &mut [u32],
    scores: &mut [S::T],
    part: Option<&mut ClusterStats>,
) {
    // SAFETY: the module contract (see the top of this file): the CPU runs `S`'s instruction set
    // and `job` is shaped as `dispatch::run` asserts, which keeps every pointer below in bounds.
    unsafe {
        macro_rules! by_width {
            ($($w:literal)*) => {
                match job.d {
                    $($w => match part {
                        Some(_) => lane_chunk::<S, $w, true>(job, weights, labels, scores, part),
                        None => lane_chunk::<S, $w, false>(job, weights, labels, scores, None),
                    },)*
                    _ => unreachable!("the lane path takes 1 <= d <= {SMALL_D}"),
                }
            };
        }
        by_width!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    }
}

/// Runs `op` on the lane-parallel path when it takes the shape (see
/// [`lane_path`]); gives `op` back otherwise.
#[inline(always)]
pub(crate) unsafe fn run_lanes<'o, S: Simd>(
    job: &Job<'_, S::T>,
    op: Op<'o, S::T>,
) -> Option<Op<'o, S::T>> {
    // SAFETY: the module contract (see the top of this file): the CPU runs `S`'s instruction set
    // and `job` is shaped as `dispatch::run` asserts, which keeps every pointer below in bounds.
    unsafe {
        if !lane_path(job.d, job.k) || job.k == 0 {
            return Some(op);
        }
        match op {
            Op::Assign { labels, scores } => lane_rows::<S>(job, None, labels, scores, None),
            Op::Accumulate {
                weights,
                labels,
                scores,
                part,
            } => lane_rows::<S>(job, weights, labels, scores, Some(part)),
            op @ Op::Distances { .. } => return Some(op),
        }
        None
    }
}
