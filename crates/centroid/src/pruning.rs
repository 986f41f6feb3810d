//! Exact pruning for the batch Lloyd loop ([`crate::batch`]): per-row
//! bounds that prove a row keeps its label, so that after the first
//! iterations most rows need no distance at all.
//!
//! # What is kept
//!
//! The centres fall into `G = min(k, MAX_GROUPS)` groups of consecutive
//! indices (centre `j` in group `j G / k`). For every row `i` with label
//! `a`: `upper[i] >= ||x_i - c_a||` (f64) and, per group `g`,
//! `lower[i][g] <= min_{j in g, j != a} ||x_i - c_j||` (f32, rounded
//! down; +inf for a group holding only `a`), all for the centres of the
//! current iteration. When the centres move, `upper` grows by the drift of
//! `c_a` and each `lower[i][g]` shrinks by the largest drift in its group,
//! `a`'s own drift left out (the triangle inequality; in f32, the drift
//! rounded up and the difference rounded down, [`sub_down`], so that a row's
//! bounds move in a few vector operations). With `k <= G` this
//! is Elkan's bound per centre; with more centres, Yinyang's global
//! filter. One bound per group, rather than Hamerly's single one shrunk by
//! the largest drift of all, is what keeps rows pruned in high dimension,
//! where clusters overlap (Fashion-MNIST, 784 pixels: with k = 100 a single
//! bound fails for most rows in every pass). Each centre also has `sep[a]
//! <= 1/2 min_{j != a} ||c_a - c_j||`, which gives a second lower bound
//! `2 sep[a] - upper[i]` (Hamerly's test). Bounds live for one
//! [`crate::batch::lloyd`] call.
//!
//! # Why a skipped row keeps exactly the kernel's label
//!
//! The kernels do not compute exact distances: the label of a row is the
//! argmin of a floating-point score, and in a near tie the rounding decides.
//! A row is skipped only when its bounds prove that the kernel's argmin is
//! `a` whatever the rounding. The bound on that rounding, with
//! `u` the unit roundoff of `T` (2^-24 for f32, 2^-53 for f64),
//! `gamma_m = m u / (1 - m u)`, `M = (||x|| + C)^2` where `C >= max_j ||c_j||`,
//! and `A = m * T::MIN_POSITIVE` covering underflow (each operation's
//! absolute error below the normal range is at most half a subnormal ulp):
//!
//! - Tile and lane kernels (`tile.rs`, `lanes.rs`, every instruction set):
//!   the score of centre `j` is `s^_j = fl(b_j - sum_p x_p c_jp)`, where
//!   `b_j = fl(||c_j||^2) / 2` (the sum of products in `T`, any order, then
//!   an exact halving) and the sum is a chain of `d` fused multiply-adds
//!   starting from `b_j`. A sum of `d` non-negative products is within
//!   `gamma_d ||c||^2` of the truth, so `|b_j - ||c_j||^2/2| <= gamma_d
//!   ||c_j||^2 / 2`; the chain of `d` fused operations rounds `d` times, so
//!   it adds at most `gamma_d (|b_j| + sum_p |x_p c_jp|)`. With
//!   `|b_j| <= (1 + gamma_d) ||c_j||^2 / 2`, Cauchy-Schwarz and
//!   `gamma_a + gamma_b + gamma_a gamma_b <= gamma_{a+b}`:
//!   `|s^_j - s_j| <= gamma_{2d} (||c_j||^2 / 2 + ||x|| ||c_j||) + A
//!   <= gamma_{2d} M / 2 + A`, where `s_j = ||c_j||^2/2 - x.c_j =
//!   (||x - c_j||^2 - ||x||^2) / 2`. The argmin keeps a strictly smaller
//!   value, so if `s_j - s_a > 2 (gamma_{2d} M / 2 + A)` for every
//!   `j != a`, then `s^_j > s^_a` and the label is `a`.
//! - Row-dot kernel (`rowdot.rs`, k <= 16, every instruction set): the same
//!   `b_j` less `x.c_j` summed in `LANES` partial sums and a fixed tree, then
//!   one subtraction: the products' sum is within `gamma_d sum_p |x_p c_jp|`
//!   in any order, the subtraction adds one rounding, so the score is within
//!   `gamma_{2d}` of the same quantities as above (test:
//!   `rounding_bound_holds_on_every_kernel_path`).
//! - bf16 kernel (`bf16/`, f32, either engine): candidates within a rigorous margin of the
//!   true nearest, decided by `sum_p (x_p - c_p)^2` in f64, whose error is at
//!   most `gamma_{d+2}(2^-53) ||x - c||^2 <= gamma_{2d}(2^-24) M / 2`; the
//!   same condition makes the f64 decision strictly pick `a`.
//!
//! In distances, `s_j - s_a = (||x - c_j||^2 - ||x - c_a||^2) / 2`, so a row
//! is skipped when `lower^2 - upper^2 > tie = 2 g M + 4 A`, `lower` the
//! smallest of its group bounds, with
//! `g = gamma_{2d+8}` (a few spare operations; `g >= gamma_{2d}`). All of
//! this is computed in f64 and rounded outward ([`up`], [`down`]).
//!
//! # Recomputed rows
//!
//! Rows that fail the test are gathered, per chunk, into a contiguous
//! buffer (or read in place where a batch's rows are consecutive, as in a
//! first pass) and go through [`kernels::distances`] in batches. Its values are
//! `max(fl(fl(||x||^2) + 2 s^_j), 0)` (tile kernel, `Op::Distances`), within
//! `Ed = 4 g M + 8 A` of `||x - c_j||^2` (the score's `2 (g M / 2 + A)`, the
//! norm's `gamma_d ||x||^2`, the final rounding's `u (M + ...)`, and the
//! clamp only moves a negative value towards the truth). When the smallest
//! value `D^_b` beats every other by more than `2 Ed + tie`, the true
//! distances differ by more than `tie`, so the kernel's label is `b` (by the
//! argument above) without calling it. The remaining rows, the near ties,
//! are gathered again and labelled by [`kernels::assign`] itself.
//!
//! Where the bounds are valid and grouped, a row that still fails after
//! tightening usually fails only a few groups: it gets its distances to
//! the centres of those groups and to its own centre
//! ([`kernels::distances_to`], the same rounding bound `Ed`), while it is
//! in L1, and the argument of [`recompute_in_groups`] shows that the
//! winner by more than `2 Ed + tie` is the kernel's label. Rows that fail
//! most groups join the gathered batches above; with few centres (at most
//! `REFRESH_K`), so does every failing row, untightened: it gets all its
//! distances and bounds renewed from the blocked kernel (its distances
//! cost less than reading it again next pass).
//!
//! A row's label from `kernels::assign` does not depend on the other rows
//! of its batch or on the batch's size: the path (AMX, lanes, tile, or the
//! reference for `k >= 2^24`) is chosen from `k`, `d`, `T`, the metric and
//! the processor only; the tile kernel computes each (row, centre) value by
//! the same chain whether the row sits in a full tile or in the one-row
//! tail; the lane kernel pads a partial block with zero rows that only
//! occupy their own lanes; the AMX kernel decides each row from its own
//! products and margin. So a gathered row gets the label the full pass
//! would give it.
//!
//! # Exact sums
//!
//! A pruned pass must still produce every cluster's sum. Where
//! [`Pruner::exact_sums`] holds (every value a multiple of some `2^q` with
//! `n max|x| < 2^(53+q)`: integer pixels, or pixels / 255 in f32), every
//! f64 sum of the values is exact in any order, so `crate::batch` moves the
//! rows whose label changed from one cluster's sums to another's and gets
//! the very bits of summing afresh; the other rows are not read at all.
//! Elsewhere every row is summed again, in the fixed chunk order.
//!
//! After a recomputation, `upper` is the f64 distance to the label's centre
//! rounded up (for a row recomputed without bounds, as in the first pass,
//! the square root of its kernel distance plus `Ed`, rounded up: no second
//! read of the row) and `lower[g]` the smallest kernel distance to the other
//! centres of group `g` less `Ed`, rounded down (its square root too, and
//! its conversion to f32). While a chunk's labels churn (the first pass, after a
//! relocation, or when most of its rows fail), its failing rows are labelled
//! by `kernels::assign` alone (the fast path, AMX where there is one) with
//! `lower = 0`, and their distances are computed in a later pass: a
//! distance pass costs more than an assignment, and is worth it only once
//! the bounds it gives will hold for a while.

use rayon::prelude::*;

use crate::float::Float;
use crate::kernels::{self, ClusterStats, PreparedCentres};
use crate::matrix::MatRef;

#[cfg(test)]
mod tests;

/// Up to this many centres (in groups), every failing row gets all its
/// distances and bounds renewed, by the blocked kernel.
const REFRESH_K: usize = 16;

/// Rows per gathered batch: a `BATCH x k` distance buffer per task.
const BATCH: usize = 256;

/// The most groups of centres a row keeps a lower bound for: with the f64
/// upper bound, one row's bounds fill a 64-byte cache line.
pub(crate) const MAX_GROUPS: usize = 14;

/// The narrowest rows that keep a bound per group of centres.
const GROUPED_WIDTH: usize = 64;

/// How many groups `k` centres of width `d` fall into. Narrow rows keep
/// one bound (Hamerly's): keeping `G` costs about `G` operations per row
/// and pass, a real part of a narrow row's distance work, and narrow data
/// is where one bound already prunes well (300,000 x 32, k = 256: 17 ms an
/// iteration with one bound, 21 with 14, on an Intel Xeon). Wide rows
/// overlap more and gain (Fashion-MNIST, k = 10: 26 ms with a bound per
/// centre, 29 with one).
fn group_count(k: usize, d: usize) -> usize {
    if d < GROUPED_WIDTH {
        1
    } else {
        k.clamp(1, MAX_GROUPS)
    }
}

/// Whether rows of width `d` keep a lower bound per group of `k` centres
/// (more than one group).
pub(crate) fn keeps_group_bounds(k: usize, d: usize) -> bool {
    group_count(k, d) > 1
}

/// The `G` of the [`RowBounds`] that hold `groups` group bounds: 1 or
/// [`MAX_GROUPS`].
fn bounds_width(groups: usize) -> usize {
    if groups == 1 {
        1
    } else {
        MAX_GROUPS
    }
}

/// The lower bound on a distance from a value `v` of
/// [`kernels::distances`] within `err` of the squared distance:
/// `f32_down(down(down(v - err).max(0).sqrt()))`, +inf for `v` = +inf,
/// without a branch (see [`recompute`]). `down` of a finite value is
/// `x - |x| SLACK - MIN_POSITIVE`; a value `f` above `u >= 0` is positive,
/// so its next f32 down is the one below in bits.
#[inline(always)]
fn lower_bound(v: f64, err: f64) -> f32 {
    let t = v - err;
    let t = t - t.abs() * SLACK - f64::MIN_POSITIVE;
    let s = t.max(0.0).sqrt();
    let u = (s - s * SLACK - f64::MIN_POSITIVE).max(0.0);
    let f = u as f32;
    let f = if f as f64 > u {
        f32::from_bits(f.to_bits() - 1)
    } else {
        f
    };
    if v == f64::INFINITY {
        f32::INFINITY
    } else {
        f
    }
}

/// `v` as an f32 no larger than `v` (`v` not NaN; at least `f32::MAX`
/// below for values beyond f32's range, 0 for negative ones).
#[inline(always)]
fn f32_down(v: f64) -> f32 {
    let f = v.max(0.0) as f32;
    if f as f64 > v.max(0.0) {
        f.next_down().max(0.0)
    } else {
        f
    }
}

/// `v` as an f32 no smaller than `v` (`v` finite and non-negative).
#[inline(always)]
fn f32_up(v: f64) -> f32 {
    let f = v as f32;
    if (f as f64) < v {
        f.next_up()
    } else {
        f
    }
}

/// A value no larger than `l - m` (`l >= 0`, possibly +inf; `m >= 0`
/// finite), and not below 0: the f32 difference, rounded to nearest, then
/// one step down. A difference rounded up is at most half a step of its
/// result above the exact one, and the step below a positive value is at
/// least half of that (a power of two's), so the step down undoes any
/// rounding up; a difference in the subnormal range is exact. Branch-free,
/// so that a row's group bounds move in one vector operation.
#[inline(always)]
fn sub_down(l: f32, m: f32) -> f32 {
    let r = l - m;
    let stepped = f32::from_bits(r.to_bits().wrapping_sub(1));
    if r > 0.0 {
        stepped
    } else {
        0.0
    }
}

/// Centres per task when bounding the centres' separations.
const SEP_BLOCK: usize = 64;

/// The relative slack [`up`] and [`down`] add: 8 times one f64 rounding
/// (2^-53), so one call covers the rounding of the operation that gave its
/// argument and its own addition.
const SLACK: f64 = 1.0 / (1u64 << 50) as f64;

/// A value at least the exact result of the one f64 operation that gave `v`
/// (relative error at most 2^-53, or an absolute one below the normal
/// range, which `f64::MIN_POSITIVE` covers).
#[inline(always)]
pub(crate) fn up(v: f64) -> f64 {
    if v.is_infinite() {
        return v;
    }
    v + v.abs() * SLACK + f64::MIN_POSITIVE
}

/// A value at most the exact result of the one f64 operation that gave `v`.
#[inline(always)]
pub(crate) fn down(v: f64) -> f64 {
    if v.is_infinite() {
        return v;
    }
    v - v.abs() * SLACK - f64::MIN_POSITIVE
}

/// The square root of a sum of `d` f64 squares `s` (in any order, as
/// [`kernels::sq_dist_any_order`] sums them), rounded up: each square of a rounded value is within `(1 + u)^3`
/// of the exact one and the sum adds `gamma_{d-1}`, so `2 (d + 2) 2^-53`
/// (relative) covers both, and `(d + 1) MIN_POSITIVE` any underflow.
#[inline(always)]
fn sqrt_of_squares_up(s: f64, d: usize) -> f64 {
    let rel = 2.0 * (d as f64 + 2.0) * f64::EPSILON;
    up(up(s * (1.0 + rel) + (d as f64 + 1.0) * f64::MIN_POSITIVE).sqrt())
}

/// `||a - b||` rounded up.
pub(crate) fn distance_up<T: Float>(a: &[T], b: &[T]) -> f64 {
    sqrt_of_squares_up(kernels::sq_dist_any_order(a, b), a.len())
}

/// `||row||` rounded up for every row of `x`, a chunk of rows per task.
fn norms_up<T: Float>(x: MatRef<'_, T>) -> Vec<f64> {
    scan_up(x, false).norms
}

/// What [`scan_up`] finds.
struct Scan {
    /// Every row's norm, rounded up.
    norms: Vec<f64>,
    /// The largest magnitude of any value (0 unless asked for).
    max_abs: f64,
    /// The finest grid of all values (`i32::MAX` unless asked for).
    low: i32,
    /// The sum of the rows' squared norms: chunk by chunk in row order,
    /// the chunks' sums in order, so the same at any thread count.
    sq_norm_total: f64,
}

/// One read of the rows of `x` ([`kernels::scan_rows`], a chunk of rows
/// per task): every row's norm and, with `grid`, the largest magnitude and
/// the finest grid of all values.
fn scan_up<T: Float>(x: MatRef<'_, T>, grid: bool) -> Scan {
    let chunks: Vec<ChunkScan> = (0..x.rows().div_ceil(kernels::CHUNK_ROWS))
        .into_par_iter()
        .map(|c| {
            let start = c * kernels::CHUNK_ROWS;
            let mut scan = ChunkScan::default();
            scan.add(
                x.slice_rows(start, (start + kernels::CHUNK_ROWS).min(x.rows())),
                grid,
            );
            scan
        })
        .collect();
    Scan::of_chunks(chunks)
}

/// One chunk's part of a [`Scan`], its rows added in order (in one read, or
/// block by block as a pass leaves them in cache: the same values).
#[derive(Debug)]
pub(crate) struct ChunkScan {
    norms: Vec<f64>,
    max_abs: f64,
    low: i32,
    /// The rows' squared norms added in row order.
    sq_sum: f64,
}

impl Default for ChunkScan {
    fn default() -> Self {
        Self {
            norms: Vec::new(),
            max_abs: 0.0,
            low: i32::MAX,
            sq_sum: 0.0,
        }
    }
}

impl ChunkScan {
    /// Scans `rows`, the chunk's next rows (with `grid`, their largest
    /// magnitude and finest grid too).
    pub(crate) fn add<T: Float>(&mut self, rows: MatRef<'_, T>, grid: bool) {
        let (from, d) = (self.norms.len(), rows.cols());
        self.norms.resize(from + rows.rows(), 0.0);
        let out = &mut self.norms[from..];
        let (max_abs, low) = kernels::scan_rows(rows, out, grid);
        for norm in out.iter_mut() {
            self.sq_sum += *norm;
            *norm = sqrt_of_squares_up(*norm, d);
        }
        self.max_abs = self.max_abs.max(max_abs);
        self.low = self.low.min(low);
    }
}

/// A pruner for `x` made from the scan of a pass: `run` gets the function
/// to call with each block of rows (`start..end`, never across a chunk, a
/// chunk's blocks in order) while they are in cache, as
/// [`kernels::assign_accumulate_scanning`] calls it; the blocks are scanned
/// with their grid (the exact-sum test).
pub(crate) fn scanned_by<T: Float>(
    x: MatRef<'_, T>,
    run: impl FnOnce(&kernels::AfterBlock<'_>),
) -> Option<Pruner<T>> {
    let chunks: Vec<std::sync::Mutex<ChunkScan>> = (0..x.rows().div_ceil(kernels::CHUNK_ROWS))
        .map(|_| std::sync::Mutex::new(ChunkScan::default()))
        .collect();
    run(&|start, end| {
        chunks[start / kernels::CHUNK_ROWS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add(x.slice_rows(start, end), true)
    });
    let chunks = chunks
        .into_iter()
        .map(|c| {
            c.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
        .collect();
    Pruner::of_chunk_scans(x, chunks)
}

impl Scan {
    /// The scan of every chunk, in chunk order.
    fn of_chunks(chunks: Vec<ChunkScan>) -> Self {
        let mut scan = Scan {
            norms: Vec::with_capacity(chunks.iter().map(|c| c.norms.len()).sum()),
            max_abs: 0.0,
            low: i32::MAX,
            sq_norm_total: 0.0,
        };
        for c in chunks {
            scan.norms.extend_from_slice(&c.norms);
            scan.max_abs = scan.max_abs.max(c.max_abs);
            scan.low = scan.low.min(c.low);
            scan.sq_norm_total += c.sq_sum;
        }
        scan
    }
}

/// The kernels' rounding for one problem shape (see the module comment).
#[derive(Clone, Copy, Debug)]
struct Rounding {
    /// `g = gamma_{2d+8}` of `T`, rounded up.
    g: f64,
    /// `A = (2d + 8) T::MIN_POSITIVE`, rounded up.
    a: f64,
}

impl Rounding {
    /// `None` when `gamma` is not defined (`m u >= 1/2`; never for real
    /// widths).
    fn new<T: Float>(d: usize) -> Option<Self> {
        let m = (2 * d + 8) as f64;
        let unit = T::epsilon().to_f64_exact() / 2.0;
        let mu = up(m * unit);
        if mu >= 0.5 {
            return None;
        }
        Some(Self {
            g: up(mu / down(1.0 - mu)),
            a: up(m * T::min_positive_value().to_f64_exact()),
        })
    }

    /// `M = (||x|| + C)^2`, rounded up.
    fn m(norm: f64, cmax: f64) -> f64 {
        let s = up(norm + cmax);
        up(s * s)
    }

    /// `tie = 2 g M + 4 A`: true squared distances further apart than this
    /// are ordered the same by every kernel.
    fn tie(&self, m: f64) -> f64 {
        up(up(2.0 * self.g * m) + 4.0 * self.a)
    }

    /// `Ed = 4 g M + 8 A`: how far a value of `kernels::distances` may be
    /// from the exact squared distance.
    fn dist_err(&self, m: f64) -> f64 {
        up(up(4.0 * self.g * m) + 8.0 * self.a)
    }
}

/// Whether `lower^2 - upper^2 > tie`, evaluated so that a true answer is
/// true for the exact values.
#[inline(always)]
fn proves(lower: f64, upper: f64, tie: f64) -> bool {
    lower > upper && down(down(lower * lower) - up(upper * upper)) > tie
}

/// One row's bounds (see the module comment), with room for `G` groups'
/// lower bounds (1, or [`MAX_GROUPS`] of which a pass may use fewer).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowBounds<const G: usize> {
    upper: f64,
    lower: [f32; G],
}

impl<const G: usize> Default for RowBounds<G> {
    fn default() -> Self {
        Self {
            upper: 0.0,
            lower: [0.0; G],
        }
    }
}

/// Every row's bounds: one lower bound per row (16 bytes a row) or one per
/// group (64 bytes), made for the first pass that knows `k`.
enum Bounds {
    One(Vec<RowBounds<1>>),
    Grouped(Vec<RowBounds<MAX_GROUPS>>),
}

/// The rows' bounds as [`Pruner::begin_pass`] hands them out.
pub(crate) enum BoundsMut<'a> {
    One(&'a mut [RowBounds<1>]),
    Grouped(&'a mut [RowBounds<MAX_GROUPS>]),
}

/// What [`Pruner::begin_pass`] hands out: the pass's centres, and the rows'
/// norms, bounds and per-chunk churn flags.
pub(crate) type PassStart<'a, 's, T> = (
    PassCentres<'a, T>,
    &'s [f64],
    BoundsMut<'s>,
    &'s [std::sync::atomic::AtomicBool],
);

/// What every row of one pass needs to know about the centres.
pub(crate) struct PassCentres<'a, T> {
    prepared: &'a PreparedCentres<T>,
    rounding: Rounding,
    /// `C`: every centre's norm is at most this.
    cmax: f64,
    /// `sep[j] <= 1/2 min_{i != j} ||c_j - c_i||` (+inf when k = 1).
    sep: Vec<f64>,
    /// Per centre, how far it moved since the bounds were last updated
    /// (rounded up); empty when the bounds are not valid (first pass, after
    /// a relocation).
    drift: Vec<f64>,
    /// `G`, each centre's group, and where each group's centres start
    /// (`groups + 1` values: group `g` is `group_start[g]..group_start[g +
    /// 1]`).
    groups: usize,
    group_of: Vec<u8>,
    group_start: Vec<usize>,
    /// Per label `a` and group `g` (`a * bounds_width(groups) + g`): the
    /// largest drift of the centres of `g` other than `a`, rounded up to f32
    /// (empty with `drift`; 0 for the unused groups `g >= groups`).
    group_drift: Vec<f32>,
    /// Whether rows without bounds get their distances to every centre
    /// (bounds that hold from the next pass on) rather than the kernel's
    /// fast labels (see [`label_chunk`]).
    fresh_distances: bool,
    /// How many rows the pass has read so far: those whose bounds alone
    /// did not prove their label.
    rows_read: std::sync::atomic::AtomicUsize,
}

impl<T> PassCentres<'_, T> {
    /// How many rows [`label_chunk`] read in this pass (every row whose
    /// bounds alone did not prove its label).
    pub(crate) fn rows_read(&self) -> usize {
        self.rows_read.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The bounds of every row of one [`crate::batch::lloyd`] call, and the
/// centres they refer to.
pub(crate) struct Pruner<T> {
    rounding: Rounding,
    /// `||x_i||`, rounded up.
    norms: Vec<f64>,
    /// `sum_i ||x_i||^2`, where it and the sums are exact (see
    /// [`Pruner::inertia`]).
    sq_norm_total: Option<f64>,
    /// Made by the first [`Pruner::begin_pass`].
    bounds: Option<Bounds>,
    /// Whether `bounds` hold for `last` (false at first and after a
    /// relocation, when every row is recomputed).
    valid: bool,
    /// See [`Pruner::start_with_distances`].
    fresh_distances: bool,
    /// The centres the bounds refer to, `k x d`.
    last: Vec<T>,
    /// Per chunk of rows: whether its last recomputation was in the
    /// churning mode of [`label_chunk`].
    churned: Vec<std::sync::atomic::AtomicBool>,
    /// See [`Pruner::exact_sums`].
    exact_sums: bool,
}

impl<T: Float> Pruner<T> {
    /// Bounds for the rows of `x` (`None` when the rounding bound is not
    /// defined for this width, which no real width reaches). With
    /// `check_exact`, the same read of the rows also settles
    /// [`Pruner::exact_sums`].
    pub(crate) fn new(x: MatRef<'_, T>, check_exact: bool) -> Option<Self> {
        // One read of the rows: their norms and, for the exact-sum test,
        // their largest magnitude and finest grid.
        Self::of_scan(x, scan_up(x, check_exact), check_exact)
    }

    /// [`Pruner::new`] checking for exact sums, from the scan of every
    /// chunk of `x`'s rows with their grid, as
    /// [`kernels::assign_accumulate_scanning`] gathers it in a pass: no
    /// read of its own.
    fn of_chunk_scans(x: MatRef<'_, T>, chunks: Vec<ChunkScan>) -> Option<Self> {
        debug_assert_eq!(
            chunks.iter().map(|c| c.norms.len()).sum::<usize>(),
            x.rows()
        );
        Self::of_scan(x, Scan::of_chunks(chunks), true)
    }

    fn of_scan(x: MatRef<'_, T>, scan: Scan, check_exact: bool) -> Option<Self> {
        let rounding = Rounding::new::<T>(x.cols())?;
        let n = x.rows();
        let Scan {
            norms,
            max_abs,
            low,
            sq_norm_total,
        } = scan;
        let exact_sums = check_exact && sums_are_exact(n, low, max_abs);
        // The squares are multiples of 2^(2 low) below max_abs^2 (kept well
        // inside the normal range): their total is exact on the same terms.
        let squares_exact = exact_sums
            && (low == i32::MAX
                || (low >= -500
                    && sums_are_exact(n.saturating_mul(x.cols()), 2 * low, max_abs * max_abs)));
        Some(Self {
            rounding,
            norms,
            sq_norm_total: squares_exact.then_some(sq_norm_total),
            bounds: None,
            valid: false,
            fresh_distances: false,
            last: Vec::new(),
            churned: (0..n.div_ceil(kernels::CHUNK_ROWS))
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
            exact_sums,
        })
    }

    /// Whether every f64 sum of any subset of the rows' values, in any
    /// order, is exact (checked only for unweighted rows): see
    /// [`sums_are_exact`]. Then adding and removing the rows that change
    /// cluster gives the very bits of summing every cluster afresh.
    pub(crate) fn exact_sums(&self) -> bool {
        self.exact_sums
    }

    /// The rows' squared norms' total where it and every sum of the rows
    /// are exact: what [`inertia_from_exact_sums`] needs of the rows, and
    /// whether [`Pruner::inertia`] can answer (short of its rounding bound).
    pub(crate) fn exact_sq_norm_total(&self) -> Option<f64> {
        self.sq_norm_total
    }

    /// [`inertia_from_exact_sums`] of these rows, where their sums and
    /// squared norms are exact.
    pub(crate) fn inertia(&self, stats: &ClusterStats, centres: MatRef<'_, T>) -> Option<f64> {
        inertia_from_exact_sums(self.sq_norm_total?, stats, centres)
    }

    /// Every row is recomputed in the next pass (after a relocation), by the
    /// kernel's fast labels.
    pub(crate) fn invalidate(&mut self) {
        self.valid = false;
        self.fresh_distances = false;
    }

    /// The first pass computes every row's distances to every centre, not
    /// the kernel's fast labels: for a loop that starts pruning once labels
    /// have settled, when the bounds will hold from the next pass on.
    pub(crate) fn start_with_distances(mut self) -> Self {
        self.fresh_distances = true;
        self
    }

    /// What the pass with centres `prepared` needs, with the rows' norms
    /// and bounds (made here on the first pass, once `k` is known) to be
    /// handed out chunk by chunk to [`label_chunk`]; records the centres as
    /// those the bounds will refer to. `None` when the values are so large
    /// that the kernels' scores could overflow `T`: that pass runs unpruned
    /// and the next one starts afresh.
    pub(crate) fn begin_pass<'a>(
        &mut self,
        prepared: &'a PreparedCentres<T>,
    ) -> Option<PassStart<'a, '_, T>> {
        let c = prepared.centres();
        let (k, d) = (c.rows(), c.cols());
        let cmax = norms_up(c).into_iter().fold(0.0, f64::max);
        let xmax = self.norms.iter().copied().fold(0.0, f64::max);
        // The kernels' values reach about (||x|| + C)^2; keep them far below
        // T's largest finite value so no score overflows.
        let limit = T::max_value().to_f64_exact() / 64.0;
        let m = Rounding::m(xmax, cmax);
        if m.is_nan() || m >= limit {
            self.valid = false;
            self.last.clear();
            return None;
        }
        let groups = group_count(k, d);
        let n = self.norms.len();
        let bounds = match (self.bounds.take(), groups) {
            (Some(b @ Bounds::One(_)), 1) | (Some(b @ Bounds::Grouped(_)), 2..) => b,
            (_, 1) => {
                self.valid = false;
                Bounds::One(vec![RowBounds::default(); n])
            }
            _ => {
                self.valid = false;
                Bounds::Grouped(vec![RowBounds::default(); n])
            }
        };
        let stride = bounds_width(groups);
        let group_of: Vec<u8> = (0..k).map(|j| (j * groups / k) as u8).collect();
        let mut group_start = vec![k; groups + 1];
        for (j, &g) in group_of.iter().enumerate().rev() {
            group_start[g as usize] = j;
        }
        let (drift, group_drift) = if self.valid && self.last.len() == k * d {
            let drift: Vec<f64> = (0..k)
                .map(|j| distance_up(&self.last[j * d..(j + 1) * d], c.row(j)))
                .collect();
            // Per group, the largest and second largest drift (first of
            // equals): the largest of the others is the second for the
            // largest's own centre.
            let mut first = vec![usize::MAX; groups];
            for j in 0..k {
                let g = group_of[j] as usize;
                if first[g] == usize::MAX || drift[j] > drift[first[g]] {
                    first[g] = j;
                }
            }
            let mut second = vec![0.0f64; groups];
            for j in 0..k {
                let g = group_of[j] as usize;
                if j != first[g] {
                    second[g] = second[g].max(drift[j]);
                }
            }
            let mut group_drift = vec![0.0; k * stride];
            for a in 0..k {
                for g in 0..groups {
                    group_drift[a * stride + g] = f32_up(if a == first[g] {
                        second[g]
                    } else {
                        drift[first[g]]
                    });
                }
            }
            (drift, group_drift)
        } else {
            (Vec::new(), Vec::new())
        };
        self.last.clear();
        self.last.extend_from_slice(c.as_slice());
        self.valid = true;
        let sep = separations(prepared, &self.rounding, cmax);
        let pass = PassCentres {
            prepared,
            rounding: self.rounding,
            cmax,
            sep,
            drift,
            groups,
            group_of,
            group_start,
            group_drift,
            fresh_distances: self.fresh_distances,
            rows_read: std::sync::atomic::AtomicUsize::new(0),
        };
        let bounds = match self.bounds.insert(bounds) {
            Bounds::One(b) => BoundsMut::One(b),
            Bounds::Grouped(b) => BoundsMut::Grouped(b),
        };
        Some((pass, &self.norms, bounds, &self.churned))
    }
}

/// Whether `n` values, each a multiple of `2^low` (`i32::MAX`: all zero)
/// and at most `max_abs` in magnitude, have exact f64 sums over every
/// subset in every order. Every partial sum is then a multiple of `2^low`
/// of magnitude at most `n max_abs < 2^(53 + low)`, so it is representable
/// in f64's 53-bit significand and no addition or subtraction rounds.
/// Pixel data (integers, or `i / 255` rounded to f32) passes; most
/// continuous data, whose smallest values carry low bits far below the
/// largest values' precision, does not.
pub(crate) fn sums_are_exact(n: usize, low: i32, max_abs: f64) -> bool {
    if low == i32::MAX {
        return true;
    }
    let limit = 2f64.powi(53 + low.clamp(-1100, 1100));
    up(n as f64 * max_abs) < limit
}

/// The inertia of the clusters whose unweighted sums are `stats`, about
/// `centres` (`k x d`), without reading the rows: `sum_i ||x_i||^2 +
/// sum_j sum_p (n_j c_jp^2 - 2 c_jp S_jp)`, `sq_norm_total` being the
/// first term. Only where the sums and the squared norms' total are exact
/// ([`Pruner::exact_sq_norm_total`]: the squares on a grid fine enough,
/// pixels), so that only this combination rounds. Its terms nearly cancel
/// (the inertia is a small part of the squared norms on most data), so
/// each product is split into its rounded value and its exact error
/// ([`two_product`]) and the parts are added with their errors carried
/// ([`Compensated`]): the result is within `2^-52 |result| +
/// 2 gamma_N^2 sum |parts|` of the exact value (Ogita, Rump and Oishi,
/// "Accurate sum and dot product", 2005, Sum2), where a plain f64 sum
/// could only promise `gamma_{d+k+2}` times the parts' magnitude. `None`
/// where that bound exceeds 1e-12 of the result (extreme cancellation, or
/// values near overflow): then the rows must be read. One sequential
/// loop: the same bits however the sums were reached (moved rows or summed
/// afresh) and at any thread count.
pub(crate) fn inertia_from_exact_sums<T: Float>(
    sq_norm_total: f64,
    stats: &ClusterStats,
    centres: MatRef<'_, T>,
) -> Option<f64> {
    let (k, d) = (centres.rows(), centres.cols());
    let mut acc = Compensated::default();
    acc.add(sq_norm_total);
    for j in 0..k {
        let (c, s, n) = (
            centres.row(j),
            &stats.sums[j * d..(j + 1) * d],
            stats.weights[j],
        );
        for (&cv, &sv) in c.iter().zip(s) {
            let cv = cv.to_f64_exact();
            let (cs, cs_err) = two_product(cv, sv);
            acc.add(-2.0 * cs);
            acc.add(-2.0 * cs_err);
            let (cc, cc_err) = two_product(cv, cv);
            let (ncc, ncc_err) = two_product(n, cc);
            let (nerr, nerr_err) = two_product(n, cc_err);
            acc.add(ncc);
            acc.add(ncc_err);
            acc.add(nerr);
            acc.add(nerr_err);
        }
    }
    let (inertia, magnitude) = (acc.total(), up(2.0 * acc.magnitude));
    // Veltkamp's split overflows beyond 2^996; keep every part well inside.
    if !(inertia.is_finite() && magnitude < 2f64.powi(960)) {
        return None;
    }
    let u = f64::EPSILON / 2.0;
    let nu = acc.terms as f64 * u;
    let gamma = up(nu / down(1.0 - nu));
    // Underflow makes a product's error part inexact by at most a few
    // subnormal units: `8 MIN_POSITIVE` per part is far beyond that.
    let error = up(up(f64::EPSILON * inertia.abs())
        + up(2.0 * up(gamma * gamma) * magnitude)
        + 8.0 * acc.terms as f64 * f64::MIN_POSITIVE);
    (error <= 1e-12 * inertia).then_some(inertia)
}

/// A sum of f64 values that carries the exact error of each addition
/// ([`two_sum`]) and adds them up apart, and the sum of the values'
/// magnitudes: Sum2 of Ogita, Rump and Oishi.
#[derive(Default)]
struct Compensated {
    sum: f64,
    errors: f64,
    magnitude: f64,
    terms: usize,
}

impl Compensated {
    #[inline(always)]
    fn add(&mut self, v: f64) {
        let (sum, error) = two_sum(self.sum, v);
        self.sum = sum;
        self.errors += error;
        self.magnitude += v.abs();
        self.terms += 1;
    }

    fn total(&self) -> f64 {
        self.sum + self.errors
    }
}

/// `a + b` rounded, and the exact error of that rounding (Knuth's
/// TwoSum: no branch, any order of magnitudes).
#[inline(always)]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let b_part = s - a;
    (s, (a - (s - b_part)) + (b - b_part))
}

/// `a` as two parts of at most 26 significant bits that add up to it
/// exactly (Veltkamp's split; `|a| < 2^996`).
#[inline(always)]
fn split(a: f64) -> (f64, f64) {
    let scaled = 134_217_729.0 * a; // 2^27 + 1
    let high = scaled - (scaled - a);
    (high, a - high)
}

/// `a * b` rounded, and the exact error of that rounding (Dekker's
/// TwoProduct, without a fused multiply-add, which the baseline build
/// lacks): exact unless the parts underflow.
#[inline(always)]
fn two_product(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    (p, ((ah * bh - p) + ah * bl + al * bh) + al * bl)
}

/// Whether the sums of `x` may be exact ([`Pruner::exact_sums`]), from
/// its first chunk of rows alone: a cheap look before a read of every row.
/// `false` settles it, since the finest grid and the largest magnitude of
/// all rows are at least as fine and as large as those of the first.
pub(crate) fn may_have_exact_sums<T: Float>(x: MatRef<'_, T>) -> bool {
    let rows = x.rows().min(kernels::CHUNK_ROWS);
    let mut norms = vec![0.0; rows];
    let (max_abs, low) = kernels::scan_rows(x.slice_rows(0, rows), &mut norms, true);
    sums_are_exact(x.rows(), low, max_abs)
}

/// Rows [`well_separated`] and [`group_bounds_would_hold`] look at.
const SEPARATION_SAMPLE: usize = 1024;

/// Whether bounds are likely to hold from the first passes on: whether, for
/// at least a quarter of [`SEPARATION_SAMPLE`] rows spread evenly over `x`,
/// the nearest centre is nearer than half its own distance to its nearest
/// other centre (Hamerly's test, with the kernels' distances and the
/// pruning's bound on the gap, [`separations`]). Well-separated
/// clusters pass it for nearly every row (blobs, 200,000 x 128 with
/// k = 1000: 99.8 % at k-means++ centres) and keep most rows' bounds from
/// pass to pass; overlapping clusters in high dimension fail it (Fashion-MNIST,
/// k = 100: 0.3 %) and fail most bounds too, where the pass that computes
/// every distance to start the bounds costs more than pruning saves. From
/// the kernels' values, not proven bounds: only the choice of path depends
/// on it, never a label, and it is the same at any thread count.
pub(crate) fn well_separated<T: Float>(x: MatRef<'_, T>, prepared: &PreparedCentres<T>) -> bool {
    let c = prepared.centres();
    let (n, k) = (x.rows(), c.rows());
    if n == 0 || k < 2 {
        return false;
    }
    // Half of each centre's gap to its nearest other centre, squared (the
    // pruning's own lower bound on it; `None` where no rounding bound
    // exists, which no real width reaches).
    let Some(rounding) = Rounding::new::<T>(c.cols()) else {
        return false;
    };
    let cmax = norms_up(c).into_iter().fold(0.0, f64::max);
    let half_gap: Vec<f64> = separations(prepared, &rounding, cmax)
        .into_iter()
        .map(|s| s * s)
        .collect();
    let dist = sample_distances(x, prepared);
    let count = dist.len() / k;
    let separated = dist
        .chunks_exact(k)
        .filter(|row| {
            let (best, value) = row
                .iter()
                .enumerate()
                .fold((0, f64::INFINITY), |b, (j, v)| {
                    let v = v.to_f64_exact();
                    if v < b.1 {
                        (j, v)
                    } else {
                        b
                    }
                });
            value < half_gap[best]
        })
        .count();
    separated * 4 >= count
}

/// The kernels' squared distances from [`SEPARATION_SAMPLE`] rows spread
/// evenly over `x` (all of them when fewer) to every centre, row by row.
fn sample_distances<T: Float>(x: MatRef<'_, T>, prepared: &PreparedCentres<T>) -> Vec<T> {
    let (n, k) = (x.rows(), prepared.k());
    let count = n.min(SEPARATION_SAMPLE);
    let rows: Vec<usize> = (0..count).map(|s| s * n / count).collect();
    let mut dist = vec![T::zero(); count * k];
    with_rows(x, 0, &rows, |m| kernels::distances(m, prepared, &mut dist));
    dist
}

/// Whether group bounds started now would likely spare most rows of the
/// next pass, for centres that overlap too much for [`well_separated`]:
/// whether, for at least half of [`SEPARATION_SAMPLE`] rows spread evenly
/// over `x`, the distance to the nearest centre grown by that centre's
/// drift stays below the distance to every other centre shrunk by the
/// largest drift in its group (Yinyang's global filter on fresh bounds),
/// with `last` (`k x d`, row-major) the centres before the update that
/// gave `prepared`'s and each drift taken as the next update's.
///
/// Fresh bounds are a best case: the filter spares fewer rows once the
/// bounds of groups a row did not need have aged. Overlapping clusters
/// that settle pass (Fashion-MNIST after its labels settle, by a NumPy
/// model of this filter: 77 to 81 % of the rows with k = 100, 84 to 87 %
/// with k = 40; the pruned passes that follow spare 23 to 33 % and 44 to
/// 74 %); points spread evenly through a box fail (20 to 29 % with k = 64
/// in 128 dimensions; a pruner started there spared 0 to 6 %).
/// Like [`well_separated`] it chooses a path only, never a label, and it
/// is the same at any thread count.
pub(crate) fn group_bounds_would_hold<T: Float>(
    x: MatRef<'_, T>,
    prepared: &PreparedCentres<T>,
    last: &[T],
) -> bool {
    let c = prepared.centres();
    let (n, k, d) = (x.rows(), c.rows(), c.cols());
    let groups = group_count(k, d);
    if n == 0 || groups < 2 || last.len() != k * d {
        return false;
    }
    let drift: Vec<f64> = (0..k)
        .map(|j| distance_up(&last[j * d..(j + 1) * d], c.row(j)))
        .collect();
    let group_of = |j: usize| j * groups / k;
    let mut group_drift = vec![0.0f64; groups];
    for (j, &moved) in drift.iter().enumerate() {
        group_drift[group_of(j)] = group_drift[group_of(j)].max(moved);
    }
    let dist = sample_distances(x, prepared);
    let count = dist.len() / k;
    let spared = dist
        .chunks_exact(k)
        .filter(|row| {
            let distance = |j: usize| row[j].to_f64_exact().max(0.0).sqrt();
            let own = (0..k).fold(0, |best, j| if row[j] < row[best] { j } else { best });
            let upper = distance(own) + drift[own];
            (0..k)
                .filter(|&j| j != own)
                .all(|j| distance(j) - group_drift[group_of(j)] > upper)
        })
        .count();
    spared * 2 >= count
}

/// A lower bound on half the distance from each centre to its nearest
/// other centre, from the kernel's centre-to-centre distances less their
/// error (`M <= (2 C)^2` for two centres).
fn separations<T: Float>(prepared: &PreparedCentres<T>, r: &Rounding, cmax: f64) -> Vec<f64> {
    let c = prepared.centres();
    let k = c.rows();
    if k == 1 {
        return vec![f64::INFINITY];
    }
    let err = r.dist_err(Rounding::m(cmax, cmax));
    let mut sep = vec![0.0; k];
    sep.par_chunks_mut(SEP_BLOCK)
        .enumerate()
        .for_each(|(b, out)| {
            let start = b * SEP_BLOCK;
            let rows = c.slice_rows(start, start + out.len());
            let mut dist = vec![T::zero(); out.len() * k];
            kernels::distances(rows, prepared, &mut dist);
            for (r, s) in out.iter_mut().enumerate() {
                let own = start + r;
                let nearest = dist[r * k..(r + 1) * k]
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != own)
                    .map(|(_, v)| v.to_f64_exact())
                    .fold(f64::INFINITY, f64::min);
                let sq = down(nearest - err).max(0.0);
                *s = down(0.5 * down(sq.sqrt())).max(0.0);
            }
        });
    sep
}

/// Labels rows `start..start + labels.len()` of `x` for the centres of
/// `pass`: rows whose bounds prove their label keep it; the others are
/// recomputed in gathered batches (see the module comment) and get new
/// bounds. Returns how many rows were recomputed.
pub(crate) fn label_chunk<T: Float, const G: usize>(
    pass: &PassCentres<'_, T>,
    norms: &[f64],
    x: MatRef<'_, T>,
    start: usize,
    labels: &mut [u32],
    bounds: &mut [RowBounds<G>],
    churned: &std::sync::atomic::AtomicBool,
) -> usize {
    use std::sync::atomic::Ordering::Relaxed;
    let centres = pass.prepared.centres();
    let r = &pass.rounding;
    let valid = !pass.drift.is_empty();
    debug_assert_eq!(
        bounds_width(pass.groups),
        G,
        "the pass's drifts fit the rows' bounds"
    );
    // The lower bound from the centres' separation (Hamerly's), with the
    // rows' bound to their nearest other centre.
    let lower = |nearest_other: f32, upper: f64, a: usize| {
        (nearest_other as f64).max(down(down(2.0 * pass.sep[a]) - upper))
    };
    // First the bounds alone, moved by the centres' drifts: most rows are
    // proved here without reading them. A row that fails keeps its bound to
    // the nearest other centre for the next test.
    let mut loose: Vec<(usize, f32)> = Vec::new();
    for (q, (label, b)) in labels.iter_mut().zip(bounds.iter_mut()).enumerate() {
        if !valid {
            loose.push((q, 0.0));
            continue;
        }
        let a = *label as usize;
        b.upper = up(b.upper + pass.drift[a]);
        let drifts: &[f32; G] = pass.group_drift[a * G..(a + 1) * G]
            .try_into()
            .expect("G drifts per label");
        // Every group, used or not (an unused one stays +inf or near it).
        let mut nearest_other = f32::INFINITY;
        for (l, &moved) in b.lower.iter_mut().zip(drifts) {
            *l = sub_down(*l, moved);
            nearest_other = nearest_other.min(*l);
        }
        let tie = r.tie(Rounding::m(norms[start + q], pass.cmax));
        if !proves(lower(nearest_other, b.upper, a), b.upper, tie) {
            loose.push((q, nearest_other));
        }
    }
    // While labels churn (a fresh start, unless the pruner was made to start
    // with distances, or most of the chunk failing), the
    // failing rows take the kernel's fast labels and an upper bound only
    // (lower bound 0: Hamerly's separation test still applies); the next
    // pass of this chunk then computes all their distances (with lower
    // bounds 0, most rows would fail again). Which mode a chunk takes
    // depends only on its own rows, and both give the kernel's labels.
    //
    // With valid group bounds, a failing row needs only the centres of the
    // groups its bounds no longer rule out (Yinyang's local filter,
    // [`recompute_in_groups`]): a few of `k` even while most rows fail, so
    // such a chunk never churns.
    //
    // Few centres ([`REFRESH_K`]), kept in groups: a failing row gets all its
    // distances and bounds renewed, so the chunk's failing rows skip the
    // tightening of their upper bounds and go through the blocked kernel
    // together, their upper bounds taken from those distances. Row by row
    // (an f64 distance, then the distances of one row), each cost three
    // times as much (Fashion-MNIST, k = 10, 2 threads, AMD EPYC: pruned
    // passes of 6.8 to 9.4 ms against 7.6 to 12.1, for as many rows).
    pass.rows_read.fetch_add(loose.len(), Relaxed);
    let many = loose.len() * 2 > labels.len();
    let in_groups = valid && pass.groups > 1;
    let batch_all = in_groups && centres.rows() <= REFRESH_K;
    let churn = if in_groups {
        false
    } else if valid {
        many && !churned.load(Relaxed)
    } else {
        !pass.fresh_distances
    };
    churned.store(churn, Relaxed);
    // Then, a batch at a time, the upper bound of each remaining row is
    // tightened to the exact distance (d operations) and the test tried
    // again (not under `batch_all`); the rows that still fail are recomputed
    // at once, while they are still in cache (a chunk's rows are more than
    // a core's L2).
    let mut failing: Vec<usize> = Vec::with_capacity(BATCH);
    let mut recomputed = 0;
    let mut group_work = GroupWork::default();
    for batch in loose.chunks(BATCH) {
        failing.clear();
        for (i, &(q, nearest_other)) in batch.iter().enumerate() {
            if valid && !batch_all {
                // Scattered rows: start reading the next one now.
                if let Some(&(next, _)) = batch.get(i + 1) {
                    kernels::prefetch_row(x.row(start + next));
                }
                let a = labels[q] as usize;
                let b = &mut bounds[q];
                b.upper = distance_up(x.row(start + q), centres.row(a));
                let m = Rounding::m(norms[start + q], pass.cmax);
                let tie = r.tie(m);
                if proves(lower(nearest_other, b.upper, a), b.upper, tie) {
                    continue;
                }
                if in_groups {
                    // The groups the bounds no longer rule out. Rows that
                    // most groups fail (bounds just started from the
                    // kernel's fast labels, or centres that moved far) go
                    // through the batched distances with the others.
                    let mut failed = [false; G];
                    for (f, &l) in failed.iter_mut().zip(&b.lower[..pass.groups]) {
                        *f = !proves(l as f64, b.upper, tie);
                    }
                    if failed.iter().filter(|&&f| f).count() * 2 <= pass.groups {
                        // While the row is still in L1.
                        let row = x.row(start + q);
                        if !recompute_in_groups(
                            pass,
                            m,
                            row,
                            &mut labels[q],
                            b,
                            &mut group_work,
                            failed,
                        ) {
                            group_work.ties.push(q);
                        }
                        continue;
                    }
                }
            }
            failing.push(q);
        }
        recomputed += failing.len();
        if failing.is_empty() {
            continue;
        }
        if churn {
            relabel(pass, x, start, &failing, labels, bounds, valid);
        } else {
            recompute(
                pass,
                norms,
                x,
                start,
                &failing,
                labels,
                bounds,
                valid && !batch_all,
            );
        }
    }
    // The near ties of the grouped recomputations, labelled by the kernel
    // itself; their lower bounds start again from 0.
    if !group_work.ties.is_empty() {
        let ties = std::mem::take(&mut group_work.ties);
        let tie_labels = assign_gathered(pass.prepared, x, start, &ties);
        for (&q, &l) in ties.iter().zip(&tie_labels) {
            labels[q] = l;
            let mut lower = [f32::INFINITY; G];
            lower[..pass.groups].fill(0.0);
            bounds[q] = RowBounds {
                upper: distance_up(x.row(start + q), centres.row(l as usize)),
                lower,
            };
        }
        recomputed += ties.len();
    }
    // A grouped recomputation counts as the share of `k` it computed.
    recomputed + group_work.distances.div_ceil(centres.rows().max(1))
}

/// The index of the smallest of `values` (not empty; the first of equals),
/// its value, and the smallest of the others (+inf for one value), in f64.
fn two_smallest<T: Float>(values: &[T]) -> (usize, f64, f64) {
    let (mut best, mut best_v, mut second_v) = (0, values[0], T::infinity());
    for (j, &v) in values.iter().enumerate().skip(1) {
        if v < best_v {
            second_v = best_v;
            best_v = v;
            best = j;
        } else if v < second_v {
            second_v = v;
        }
    }
    (best, best_v.to_f64_exact(), second_v.to_f64_exact())
}

/// The scratch and the tally of one chunk's [`recompute_in_groups`].
#[derive(Default)]
struct GroupWork<T> {
    /// The centres one row is compared with, and its distances to them.
    centres: Vec<u32>,
    distances_to: Vec<T>,
    /// Rows left to the kernel (near ties).
    ties: Vec<usize>,
    /// Distances computed in the chunk.
    distances: usize,
}

/// Recomputes one row whose tightened bounds failed, from its distances to
/// the centres of the groups `computed` (every group its group bounds no
/// longer rule out, or more) and to its own centre, `m` its
/// [`Rounding::m`]: the label and new bounds where those distances prove
/// the kernel's label; false, with nothing changed, for a near tie, which
/// the caller hands to the kernel.
///
/// Why the label is the kernel's: with `u = b.upper >= ||x - c_a||` (just
/// tightened) and, for every group `g` left out, `lower[g]^2 - u^2 > tie`,
/// every centre of `g` is more than `tie` (in squared distance) farther
/// than `c_a`, hence than any centre nearer than `c_a`. Among the centres
/// computed (`S`, with `a`), each value is within `Ed` of its exact squared
/// distance (`kernels::distances_to`); when the smallest, `b`'s, beats
/// every other by more than `2 Ed + tie`, `b` is nearer than every other
/// centre of `S` by more than `tie`, and not farther than `c_a`, so by
/// more than `tie` than every centre left out too: every kernel's argmin
/// is `b` (the module comment). The new bounds: a computed group's lower
/// bound from its values less `Ed`; a group left out keeps its bound, which
/// covers every centre but `a`, and takes `c_a`'s value too when `a` is no
/// longer the label.
fn recompute_in_groups<T: Float, const G: usize>(
    pass: &PassCentres<'_, T>,
    m: f64,
    row: &[T],
    label: &mut u32,
    b: &mut RowBounds<G>,
    work: &mut GroupWork<T>,
    computed: [bool; G],
) -> bool {
    let centres = pass.prepared.centres();
    let r = &pass.rounding;
    let a = *label as usize;
    let (tie, err) = (r.tie(m), r.dist_err(m));
    let js = &mut work.centres;
    js.clear();
    js.push(a as u32);
    for g in (0..pass.groups).filter(|&g| computed[g]) {
        let members = pass.group_start[g]..pass.group_start[g + 1];
        js.extend(members.filter(|&j| j != a).map(|j| j as u32));
    }
    let dist = &mut work.distances_to;
    dist.clear();
    dist.resize(js.len(), T::zero());
    kernels::distances_to(row, centres, pass.prepared.sq_norms(), js, dist);
    work.distances += js.len();
    let (best, best_v, second_v) = two_smallest(dist);
    let proven = down(second_v - best_v) > up(up(2.0 * err) + tie);
    if !proven {
        return false;
    }
    let l = js[best] as usize;
    // Per group, the smallest value of its computed centres other than `l`.
    let mut nearest = [f64::INFINITY; G];
    for (&j, v) in js.iter().zip(dist.iter()) {
        if j as usize != l {
            let g = pass.group_of[j as usize] as usize;
            nearest[g] = nearest[g].min(v.to_f64_exact());
        }
    }
    for g in 0..pass.groups {
        let from_values = if nearest[g].is_infinite() {
            f32::INFINITY
        } else {
            f32_down(down(down(nearest[g] - err).max(0.0).sqrt()))
        };
        b.lower[g] = if computed[g] {
            from_values
        } else {
            b.lower[g].min(from_values)
        };
    }
    if l != a {
        b.upper = distance_up(row, centres.row(l));
    }
    *label = l as u32;
    true
}

/// Labels of the rows `start + q` for `q` in `batch` from
/// [`kernels::assign`] on the gathered rows, with the exact upper bound
/// and a lower bound of 0. With `tight`, each row's upper bound is already
/// the exact one to its current label's centre, and is kept where the
/// label stays.
fn relabel<T: Float, const G: usize>(
    pass: &PassCentres<'_, T>,
    x: MatRef<'_, T>,
    start: usize,
    batch: &[usize],
    labels: &mut [u32],
    bounds: &mut [RowBounds<G>],
    tight: bool,
) {
    let centres = pass.prepared.centres();
    let new_labels = assign_gathered(pass.prepared, x, start, batch);
    for (&q, &l) in batch.iter().zip(&new_labels) {
        let kept = tight && labels[q] == l;
        labels[q] = l;
        let mut lower = [f32::INFINITY; G];
        lower[..pass.groups].fill(0.0);
        bounds[q] = RowBounds {
            upper: if kept {
                bounds[q].upper
            } else {
                distance_up(x.row(start + q), centres.row(l as usize))
            },
            lower,
        };
    }
}

/// `f` of the rows `start + q` of `x`, for `q` in `rows` (increasing), as
/// one matrix: a view of `x` itself when they are consecutive (a fresh or
/// churning chunk recomputes every row), else a copy gathered into one
/// buffer (row-major, `x.cols()` values each).
fn with_rows<T: Float, R>(
    x: MatRef<'_, T>,
    start: usize,
    rows: &[usize],
    f: impl FnOnce(MatRef<'_, T>) -> R,
) -> R {
    match (rows.first(), rows.last()) {
        (Some(&first), Some(&last)) if last - first + 1 == rows.len() => {
            f(x.slice_rows(start + first, start + last + 1))
        }
        (None, _) | (_, None) => f(x.slice_rows(start, start)),
        _ => {
            let mut buf = Vec::with_capacity(rows.len() * x.cols());
            for &q in rows {
                buf.extend_from_slice(x.row(start + q));
            }
            f(MatRef::new(&buf, rows.len(), x.cols()).expect("gathered rows keep their width"))
        }
    }
}

/// [`kernels::assign`]'s labels of rows `start + q` of `x`, for `q` in
/// `rows`, as one batch (a row's label does not depend on its batch: see
/// the module comment).
fn assign_gathered<T: Float>(
    prepared: &PreparedCentres<T>,
    x: MatRef<'_, T>,
    start: usize,
    rows: &[usize],
) -> Vec<u32> {
    let mut labels = vec![0u32; rows.len()];
    with_rows(x, start, rows, |m| {
        kernels::assign_labels(m, prepared, &mut labels)
    });
    labels
}

/// Labels and new bounds of the rows `start + q` for `q` in `batch`
/// (`tight` as for [`relabel`]).
// The pass, the rows and their state: grouping them would only rename them.
#[allow(clippy::too_many_arguments)]
fn recompute<T: Float, const G: usize>(
    pass: &PassCentres<'_, T>,
    norms: &[f64],
    x: MatRef<'_, T>,
    start: usize,
    batch: &[usize],
    labels: &mut [u32],
    bounds: &mut [RowBounds<G>],
    tight: bool,
) {
    let old: Vec<u32> = batch.iter().map(|&q| labels[q]).collect();
    let centres = pass.prepared.centres();
    let k = centres.rows();
    let r = &pass.rounding;
    let mut dist = vec![T::zero(); batch.len() * k];
    with_rows(x, start, batch, |rows| {
        kernels::distances(rows, pass.prepared, &mut dist)
    });
    // Each row's smallest value, its index (the first of equals) and the
    // smallest of the others, in one scan.
    let nearest: Vec<(usize, f64, f64)> = (0..batch.len())
        .map(|p| two_smallest(&dist[p * k..(p + 1) * k]))
        .collect();
    // Labels the distances prove; the near ties go to the kernel.
    let mut ties: Vec<usize> = Vec::new();
    for (p, &q) in batch.iter().enumerate() {
        let (best, best_v, second_v) = nearest[p];
        let m = Rounding::m(norms[start + q], pass.cmax);
        let need = up(up(2.0 * r.dist_err(m)) + r.tie(m));
        if down(second_v - best_v) > need {
            labels[q] = best as u32;
        } else {
            ties.push(p);
        }
    }
    if !ties.is_empty() {
        let tie_rows: Vec<usize> = ties.iter().map(|&p| batch[p]).collect();
        let tie_labels = assign_gathered(pass.prepared, x, start, &tie_rows);
        for (&p, &l) in ties.iter().zip(&tie_labels) {
            labels[batch[p]] = l;
        }
    }
    // A group per centre (k <= MAX_GROUPS): centre `j` is group `j`.
    let per_centre = pass.groups == k;
    debug_assert!(
        !per_centre
            || pass
                .group_of
                .iter()
                .enumerate()
                .all(|(j, &g)| g as usize == j)
    );
    for (p, &q) in batch.iter().enumerate() {
        let a = labels[q] as usize;
        let m = Rounding::m(norms[start + q], pass.cmax);
        let err = r.dist_err(m);
        // Per group, the smallest value over its centres other than the
        // label (+inf for groups past the pass's).
        let mut nearest = [f64::INFINITY; G];
        let values = &dist[p * k..(p + 1) * k];
        if per_centre {
            for (n, &v) in nearest.iter_mut().zip(values) {
                *n = v.to_f64_exact();
            }
            nearest[a] = f64::INFINITY;
        } else {
            for (j, &v) in values.iter().enumerate() {
                let g = pass.group_of[j] as usize;
                if j != a {
                    nearest[g] = nearest[g].min(v.to_f64_exact());
                }
            }
        }
        // Every slot, used or not: the same operations on each, without a
        // branch. Taken one by one, with a branch each, these square roots
        // and roundings cost more than the rows' distances: Fashion-MNIST,
        // k = 10, the pass that starts the bounds spent 16 ms of CPU time
        // on them, 7 ms this way (AMD EPYC, Zen 4).
        let mut lower = [f32::INFINITY; G];
        for (l, &v) in lower.iter_mut().zip(&nearest) {
            *l = lower_bound(v, err);
        }
        bounds[q] = RowBounds {
            upper: if tight && old[p] as usize == a {
                bounds[q].upper
            } else if tight {
                distance_up(x.row(start + q), centres.row(a))
            } else {
                // A fresh row: from its distance, whose error `err` is
                // bounded like the lower bounds', instead of reading the
                // row again in f64 (a fresh start reads every row; the
                // few rows this leaves too loose are tightened exactly
                // when their test fails next pass).
                up(up(dist[p * k + a].to_f64_exact() + err).max(0.0).sqrt())
            },
            lower,
        };
    }
}
