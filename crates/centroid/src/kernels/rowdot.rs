//! The row-dot kernel: few centres (`k <= MAX_K`) and wide rows
//! (`d > SMALL_D`), Fashion-MNIST's 784 x 10 for one.
//!
//! Why not the tile kernel: a tile broadcasts one value of a row per
//! multiply-add, so with one panel of centres it issues a load for every
//! FMA, wastes the lanes past `k`, and first interleaves the rows
//! dimension-major, a scalar copy that cost more than the products at
//! `k = 10`. Here a row is read in place, a vector of `LANES` dimensions at a
//! time, against a group of centres held row-major (all of them fit in L1
//! at this `k`; [`GROUP`] or, where five divides `k`, [`WIDE_GROUP`]):
//! `MR` rows x the group's centres of accumulators, one vector load per row
//! and per centre for `MR x group` FMAs, and one horizontal sum per
//! row and centre at the end. Each block of rows is finished (distance,
//! then added to the partial sums) right after its argmin, while it is
//! still in L1, instead of a second pass over a chunk that no longer fits
//! in L2.
//!
//! The value compared is `bias - x.c`, as in the tile kernel: `||c||^2/2 -
//! x.c` (squared Euclidean) or `-x.c^` (cosine), strictly smaller wins, so
//! ties go to the lowest index. Only the summation order differs from the
//! tile kernel (a row's products go to `LANES` partial sums, then a fixed
//! tree): this path's results are its own, and the same at any thread
//! count.
//!
//! # Safety
//!
//! The `unsafe fn`s here share the contract of `tile.rs`: the CPU runs `S`'s
//! instruction set, and the job is shaped as `dispatch::run` asserts, with
//! `job.rows` holding [`padded_k`] rows of `stride >= d`
//! values (`stride` a multiple of `LANES`).

use super::isa::prefetch_line_l2;
use super::pack::{Job, Op};
use super::scalar::{inv_norm, Metric};
use super::simd::{Simd, MAX_LANES};
use super::tile::{finish_rows, SMALL_D};
use crate::float::Float;
#[allow(unused_imports)]
use num_traits::{Float as _, One as _, Zero as _};

/// The largest `k` this kernel takes; above it the tile kernel's panels
/// amortise their broadcasts over enough centres (measured: bench/README.md).
pub(crate) const MAX_K: usize = 16;

/// Centres per group: the accumulators of a group for `MR` rows stay in
/// registers. It divides every path's lane count, so the padded centres
/// never outnumber the biases (`panels * lanes`, +inf past `k`).
pub(crate) const GROUP: usize = 4;

/// The group for `k` centres of five, [`WIDE_GROUP`], where it divides
/// `k` (no padding centre then, so still none past the biases): at
/// `k = 10` two groups of five compute ten centres' products where three
/// of four computed twelve, and read each row twice instead of three
/// times. Each centre's products are summed the same way in either
/// group, so the grouping never changes a result.
pub(crate) fn group_for(k: usize) -> usize {
    if k.is_multiple_of(WIDE_GROUP) {
        WIDE_GROUP
    } else {
        GROUP
    }
}

/// The other group size (see [`group_for`]); `MR x 5` accumulators, the
/// rows and a centre still fit the registers (25 of 32 on AVX-512 with
/// `MR = 4`, 13 of 16 on AVX2 with `MR = 2`).
pub(crate) const WIDE_GROUP: usize = 5;

/// `k` rounded up to its group ([`group_for`]): the centres' rows the
/// kernel reads.
pub(crate) fn padded_k(k: usize) -> usize {
    let g = group_for(k);
    k.div_ceil(g) * g
}

/// Bytes of rows finished together: small enough to still be in L1.
const FINISH_BYTES: usize = 16 << 10;

/// Whether the row-dot kernel takes `k` centres of width `d`.
pub(crate) fn takes(k: usize, d: usize) -> bool {
    k > 0 && k <= MAX_K && d > SMALL_D
}

/// `x.c` of `MR` rows (the first at `x`, `d` apart) against centres
/// `g..g + GROUP` of `rows` (`stride` apart): per row and centre, the
/// `LANES` partial sums. `tail` holds each row's last `d % LANES` values
/// zero-padded to a vector (the centres are zero there too).
///
/// The first group (`g == 0`) also asks for the rows one block further on
/// (rows `2 MR .. 3 MR` from `x`) to be brought into L2, one line per row
/// and vector step: the rows stream from memory, and the hardware
/// prefetchers stop at each 4 KiB page, which rows of a few KiB cross often
/// (measured: the row loads took half of the kernel's time at d = 784,
/// k = 10). Asking for the next block only left the memory idle while the
/// block after it was computed: two blocks ahead, `assign` on 70,000 x 784,
/// k = 10 took 8.9-9.1 ms a pass against 9.8-10.2 (three blocks ahead:
/// no better; Sapphire Rapids, 2 threads, `bench/rust --assign`).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // indices into the register tile read best
unsafe fn group_dots<S: Simd, const MR: usize, const G: usize>(
    x: *const S::T,
    d: usize,
    tail: &[[S::T; MAX_LANES]; MR],
    rows: *const S::T,
    stride: usize,
    g: usize,
) -> [[S::V; G]; MR] {
    // SAFETY: the module contract: `x` holds `MR` rows of `d` values and
    // `rows` the padded centres, so every load below is in bounds.
    unsafe {
        let lanes = S::LANES;
        let whole = d - d % lanes;
        let c0 = rows.add(g * stride);
        let mut acc = [[S::splat(S::T::zero()); G]; MR];
        let ahead = g == 0;
        let mut p = 0;
        while p < whole {
            if ahead {
                for r in 0..MR {
                    prefetch_line_l2(x.wrapping_add((2 * MR + r) * d + p));
                }
            }
            let xv: [S::V; MR] = std::array::from_fn(|r| S::load(x.add(r * d + p)));
            for j in 0..G {
                let c = S::load(c0.add(j * stride + p));
                for r in 0..MR {
                    acc[r][j] = S::fmadd(xv[r], c, acc[r][j]);
                }
            }
            p += lanes;
        }
        if whole < d {
            let xv: [S::V; MR] = std::array::from_fn(|r| S::load(tail[r].as_ptr()));
            for j in 0..G {
                let c = S::load(c0.add(j * stride + whole));
                for r in 0..MR {
                    acc[r][j] = S::fmadd(xv[r], c, acc[r][j]);
                }
            }
        }
        acc
    }
}

/// `bias - x.c` with an overflow kept as +inf: when `||c||^2/2` and `x.c`
/// both overflow, their difference is NaN, where the tile kernel (which
/// starts from the bias and subtracts product by product) stays at +inf.
/// The squared distance is then +inf on both paths, never a NaN that the
/// clamp at 0 would turn into a perfect fit.
#[inline(always)]
fn not_nan<T: Float>(v: T) -> T {
    if v.is_nan() {
        T::infinity()
    } else {
        v
    }
}

/// Labels and raw values (`bias - x.c` of the chosen centre) of the `MR`
/// rows starting at `row`.
#[inline(always)]
unsafe fn argmin_rows<S: Simd, const MR: usize, const G: usize>(
    job: &Job<'_, S::T>,
    (rows, stride): (&[S::T], usize),
    row: usize,
    labels: &mut [u32],
    raw: &mut [S::T],
) {
    // SAFETY: the module contract.
    unsafe {
        let (d, lanes) = (job.d, S::LANES);
        let x = job.x.as_ptr().add(row * d);
        let whole = d - d % lanes;
        let mut tail = [[S::T::zero(); MAX_LANES]; MR];
        for (r, t) in tail.iter_mut().enumerate() {
            t[..d - whole].copy_from_slice(&job.x[(row + r) * d + whole..(row + r + 1) * d]);
        }
        let mut best = [S::T::infinity(); MR];
        let mut label = [0u32; MR];
        let mut g = 0;
        while g < job.k {
            let acc = group_dots::<S, MR, G>(x, d, &tail, rows.as_ptr(), stride, g);
            for (j, bias) in job.bias[g..g + G].iter().enumerate() {
                for r in 0..MR {
                    let v = not_nan(*bias - S::reduce_add(acc[r][j]));
                    // Centre 0 always sets the value (a NaN row keeps centre
                    // 0, like the reference); later ones only when smaller.
                    if g + j == 0 || v < best[r] {
                        best[r] = v;
                        label[r] = (g + j) as u32;
                    }
                }
            }
            g += G;
        }
        labels[row..row + MR].copy_from_slice(&label);
        raw[row..row + MR].copy_from_slice(&best);
    }
}

/// Every distance of the `MR` rows starting at `row`, into `out` (row-major,
/// `k` per row), by the tile kernel's formulas: `max(||x||^2 + 2 (||c||^2/2
/// - x.c), 0)` or `1 + (-x.c^) / max(||x||, eps)`.
#[inline(always)]
unsafe fn distance_rows<S: Simd, const MR: usize, const G: usize>(
    job: &Job<'_, S::T>,
    (rows, stride): (&[S::T], usize),
    row: usize,
    out: &mut [S::T],
) {
    // SAFETY: the module contract.
    unsafe {
        let (d, k, lanes) = (job.d, job.k, S::LANES);
        let x = job.x.as_ptr().add(row * d);
        let whole = d - d % lanes;
        let mut tail = [[S::T::zero(); MAX_LANES]; MR];
        let mut norm = [S::T::zero(); MR];
        for r in 0..MR {
            let src = &job.x[(row + r) * d..(row + r + 1) * d];
            tail[r][..d - whole].copy_from_slice(&src[whole..]);
            norm[r] = match job.metric {
                // The vector sum (four running sums): a scalar one is a
                // chain of dependent adds that cost more than the row's
                // products at k = 10 (the pruning's first pass computes
                // every row's distances).
                Metric::SquaredEuclidean => S::sq_norm(src.as_ptr(), d),
                Metric::Cosine => S::T::from_f64_lossy(inv_norm(src)),
            };
        }
        let two = S::T::one() + S::T::one();
        let mut g = 0;
        while g < k {
            let acc = group_dots::<S, MR, G>(x, d, &tail, rows.as_ptr(), stride, g);
            for j in 0..G.min(k - g) {
                let bias = job.bias[g + j];
                for r in 0..MR {
                    let v = not_nan(bias - S::reduce_add(acc[r][j]));
                    // `2 v` is exact, so `2 v + ||x||^2` rounds once, as
                    // the tile kernel's fused multiply-add does.
                    out[(row + r) * k + g + j] = match job.metric {
                        Metric::SquaredEuclidean => (two * v + norm[r]).max(S::T::zero()),
                        Metric::Cosine => v.mul_add(norm[r], S::T::one()),
                    };
                }
            }
            g += G;
        }
    }
}

/// Labels and raw values of every row of `job`.
#[inline(always)]
unsafe fn argmin_block<S: Simd, const MR: usize, const G: usize>(
    job: &Job<'_, S::T>,
    centres: (&[S::T], usize),
    labels: &mut [u32],
    raw: &mut [S::T],
) {
    // SAFETY: the module contract.
    unsafe {
        let rows = labels.len();
        let mut r = 0;
        while r + MR <= rows {
            argmin_rows::<S, MR, G>(job, centres, r, labels, raw);
            r += MR;
        }
        while r < rows {
            argmin_rows::<S, 1, G>(job, centres, r, labels, raw);
            r += 1;
        }
    }
}

/// Runs `op` on the row-dot kernel when the job carries row-major centres;
/// gives `op` back otherwise.
#[inline(always)]
pub(crate) unsafe fn run<'o, S: Simd, const MR: usize>(
    job: &Job<'_, S::T>,
    op: Op<'o, S::T>,
) -> Option<Op<'o, S::T>> {
    // SAFETY: the module contract; the centres' rows are padded to
    // `padded_k(job.k)`, the group chosen here.
    unsafe {
        if group_for(job.k) == WIDE_GROUP {
            run_grouped::<S, MR, WIDE_GROUP>(job, op)
        } else {
            run_grouped::<S, MR, GROUP>(job, op)
        }
    }
}

/// [`run`] with groups of `G` centres.
#[inline(always)]
unsafe fn run_grouped<'o, S: Simd, const MR: usize, const G: usize>(
    job: &Job<'_, S::T>,
    op: Op<'o, S::T>,
) -> Option<Op<'o, S::T>> {
    // SAFETY: the module contract.
    unsafe {
        let Some(centres) = job.rows else {
            return Some(op);
        };
        let row_bytes = (job.d * std::mem::size_of::<S::T>()).max(1);
        let block = ((FINISH_BYTES / row_bytes) / MR).max(1) * MR;
        let (weights, labels, scores, mut part) = match op {
            Op::Assign { labels, scores } => (None, labels, scores, None),
            Op::Accumulate {
                weights,
                labels,
                scores,
                part,
            } => (weights, labels, scores, Some(part)),
            Op::Distances { out } => {
                let (n, k) = (out.len() / job.k, job.k);
                let mut r = 0;
                while r + MR <= n {
                    distance_rows::<S, MR, G>(job, centres, r, out);
                    r += MR;
                }
                while r < n {
                    distance_rows::<S, 1, G>(job, centres, r, out);
                    r += 1;
                }
                debug_assert_eq!(out.len(), n * k);
                return None;
            }
        };
        let n = labels.len();
        for b0 in (0..n).step_by(block) {
            let b1 = (b0 + block).min(n);
            let sub = job.sub(b0, b1);
            argmin_block::<S, MR, G>(&sub, centres, &mut labels[b0..b1], &mut scores[b0..b1]);
            finish_rows::<S>(
                &sub,
                weights.map(|w| &w[b0..b1]),
                &labels[b0..b1],
                &mut scores[b0..b1],
                part.as_deref_mut(),
            );
        }
        None
    }
}
