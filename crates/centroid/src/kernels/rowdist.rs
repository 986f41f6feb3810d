//! One row's squared distance to one point in f64, for the pruned Lloyd
//! loop's bounds (`pruning.rs`): the distances that tighten a bound, the
//! rows' norms and the centres' drifts. The bounds are proved for a sum of
//! squares in any order, so these keep 32 running sums (four AVX-512
//! registers) instead of the one chain of additions whose latency, not the
//! arithmetic, would set the pace; their bits are not those of
//! [`add_labelled`](super::add_labelled)'s loss, and need not be.

use super::isa::Isa;
#[cfg(target_arch = "x86_64")]
use super::isa::{Avx2Fma, Avx512F};
use super::simd::Simd;
use crate::float::{finest_grid, Float};
use crate::matrix::MatRef;
#[allow(unused_imports)]
use num_traits::{Float as _, One as _, Zero as _};

/// `||a - b||^2` in f64: every difference and square of the exact f64
/// values of `a` and `b`, summed in some order (within `gamma_{d-1}`
/// relative of the exact sum, like any order).
pub(crate) fn sq_dist_any_order<T: Float>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len(), "vectors of one width");
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX-512F.
        Isa::Avx512(t) => unsafe { sq_dist_avx512(t, a, b) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX2 and FMA.
        Isa::Avx2(t) => unsafe { sq_dist_avx2(t, a, b) },
        Isa::Portable => sq_dist_portable(a, b),
    }
}

/// One read of the rows of `x`: each row's squared norm into `sq_norms`
/// ([`sq_norm_any_order`]: in f64, in some order) and,
/// with `grid`, the largest magnitude of any value and the rows' finest
/// grid ([`finest_grid`]; `i32::MAX` and 0 without `grid`), each row
/// scanned while it is in cache. Compiled for the widest instruction set
/// the processor runs: the integer work of the grid is most of the cost.
pub(crate) fn scan_rows<T: Float>(
    x: MatRef<'_, T>,
    sq_norms: &mut [f64],
    grid: bool,
) -> (f64, i32) {
    assert_eq!(sq_norms.len(), x.rows(), "one norm per row");
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX-512F.
        Isa::Avx512(t) => unsafe { scan_rows_avx512(t, x, sq_norms, grid) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX2 and FMA.
        Isa::Avx2(t) => unsafe { scan_rows_avx2(t, x, sq_norms, grid) },
        Isa::Portable => scan_rows_body(x, sq_norms, grid),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn scan_rows_avx512<T: Float>(
    t: Avx512F,
    x: MatRef<'_, T>,
    sq_norms: &mut [f64],
    grid: bool,
) -> (f64, i32) {
    match T::as_f32(x.as_slice()) {
        // SAFETY: the token proves the CPU runs AVX-512F; `xs` holds
        // `sq_norms.len()` rows of `x.cols()` values.
        Some(xs) => unsafe { scan_rows_f32_avx512(t, xs, x.cols(), sq_norms, grid) },
        None => scan_rows_body(x, sq_norms, grid),
    }
}

/// [`scan_rows`] of f32 rows in one loop per row, sixteen values a step:
/// each value widened to f64 and squared into four running sums (any
/// order, as [`sq_norm_any_order`]) and, with `grid`, its magnitude into a
/// running maximum and the test for whole numbers below 2^31 in
/// magnitude (truncated to an integer and back, compared) with the
/// integers OR-ed together. The finest grid of a row of such integers is
/// the lowest set bit of that OR (a negative integer has the lowest set
/// bit of its magnitude in two's complement), `i32::MAX` for an all-zero
/// row; a row holding anything else gets [`finest_grid`], the exact rule
/// from the bits. So the results are those of [`scan_rows_body`], norms
/// up to the order of their sums; the three separate loops of that body
/// read Fashion-MNIST (70,000 x 784) in 19 ms on two Sapphire Rapids
/// cores, three times a plain read, mostly for the grid's bit work.
///
/// # Safety
/// `x` holds `sq_norms.len()` rows of `d` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scan_rows_f32_avx512(
    _: Avx512F,
    x: &[f32],
    d: usize,
    sq_norms: &mut [f64],
    grid: bool,
) -> (f64, i32) {
    use std::arch::x86_64::*;
    let rows = sq_norms.len();
    assert!(x.len() >= rows * d, "rows of d values");
    let whole = d / 16;
    // The last `d % 16` values, loaded with the others zeroed: a zero adds
    // nothing to a norm, a maximum or the integers' OR.
    let tail: __mmask16 = ((1u32 << (d % 16)) - 1) as __mmask16;
    let magnitude = _mm512_set1_epi32(0x7fff_ffff);
    let mut max_abs = _mm512_setzero_ps();
    let mut low = i32::MAX;
    for (i, out) in sq_norms.iter_mut().enumerate() {
        if i + SCAN_AHEAD < rows {
            prefetch_row(&x[(i + SCAN_AHEAD) * d..(i + SCAN_AHEAD + 1) * d]);
        }
        let row = &x[i * d..(i + 1) * d];
        let mut sums = [_mm512_setzero_pd(); 4];
        let mut ors = _mm512_setzero_si512();
        let mut integers: __mmask16 = 0xffff;
        let mut step = |v: __m512, s: usize| {
            let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
            let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                _mm512_castps_pd(v),
            )));
            sums[s] = _mm512_fmadd_pd(lo, lo, sums[s]);
            sums[s + 1] = _mm512_fmadd_pd(hi, hi, sums[s + 1]);
            if grid {
                let a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), magnitude));
                max_abs = _mm512_max_ps(max_abs, a);
                // Out of range, the conversion gives i32::MIN, which
                // converts back equal only to -2^31 itself.
                let n = _mm512_cvttps_epi32(v);
                integers &= _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_cvtepi32_ps(n), v);
                ors = _mm512_or_si512(ors, n);
            }
        };
        let p = row.as_ptr();
        for b in 0..whole {
            // SAFETY: values 16b .. 16b + 16 of the row.
            step(unsafe { _mm512_loadu_ps(p.add(16 * b)) }, 2 * (b & 1));
        }
        if tail != 0 {
            // SAFETY: the mask keeps the load within the row's last values.
            step(
                unsafe { _mm512_maskz_loadu_ps(tail, p.add(16 * whole)) },
                2 * (whole & 1),
            );
        }
        *out = _mm512_reduce_add_pd(_mm512_add_pd(
            _mm512_add_pd(sums[0], sums[1]),
            _mm512_add_pd(sums[2], sums[3]),
        ));
        if grid {
            let row_low = if integers == 0xffff {
                match _mm512_reduce_or_epi32(ors) as u32 {
                    0 => i32::MAX,
                    bits => bits.trailing_zeros() as i32,
                }
            } else {
                finest_grid(row)
            };
            low = low.min(row_low);
        }
    }
    if grid {
        (f64::from(_mm512_reduce_max_ps(max_abs)), low)
    } else {
        (0.0, i32::MAX)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn scan_rows_avx2<T: Float>(
    _: Avx2Fma,
    x: MatRef<'_, T>,
    sq_norms: &mut [f64],
    grid: bool,
) -> (f64, i32) {
    scan_rows_body(x, sq_norms, grid)
}

/// Rows ahead of the one [`scan_rows`] reads that it asks for.
const SCAN_AHEAD: usize = 4;

#[inline(always)]
fn scan_rows_body<T: Float>(x: MatRef<'_, T>, sq_norms: &mut [f64], grid: bool) -> (f64, i32) {
    let (mut max_abs, mut low) = (0.0f64, i32::MAX);
    for (i, out) in sq_norms.iter_mut().enumerate() {
        // The rows stream from memory, faster with the hint than on the
        // hardware prefetchers alone (Fashion-MNIST: 21 -> 13 ms).
        if i + SCAN_AHEAD < x.rows() {
            prefetch_row(x.row(i + SCAN_AHEAD));
        }
        let row = x.row(i);
        *out = sq_norm_any_order(row);
        if grid {
            max_abs = max_abs.max(max_abs_of(row));
            low = low.min(finest_grid(row));
        }
    }
    (max_abs, low)
}

/// `sum_p a_p^2` in f64, in [`SCAN_SUMS`] running sums: the order the
/// pruning's bounds allow (any; see `pruning::sqrt_of_squares_up`), and
/// four independent chains per vector so that the additions' latency does
/// not set the pace (eight sums in one chain took a third of the scan).
#[inline(always)]
fn sq_norm_any_order<T: Float>(row: &[T]) -> f64 {
    let mut acc = [0.0f64; SCAN_SUMS];
    let mut chunks = row.chunks_exact(SCAN_SUMS);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            let v = v.to_f64_exact();
            *a += v * v;
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        let v = v.to_f64_exact();
        *a += v * v;
    }
    acc.iter().sum()
}

/// Running sums of [`sq_norm_any_order`].
const SCAN_SUMS: usize = 32;

/// `max_p |a_p|` (0 for an empty slice; no NaN in `a`), in sixteen
/// independent lanes so that it vectorises: a maximum is exact in any
/// order, but one running maximum is a chain the compiler keeps scalar.
#[inline(always)]
fn max_abs_of<T: Float>(a: &[T]) -> f64 {
    let mut lanes = [T::zero(); 16];
    let mut blocks = a.chunks_exact(16);
    for b in &mut blocks {
        for (m, &v) in lanes.iter_mut().zip(b) {
            let v = v.abs();
            *m = if v > *m { v } else { *m };
        }
    }
    for (m, &v) in lanes.iter_mut().zip(blocks.remainder()) {
        *m = m.max(v.abs());
    }
    lanes.iter().fold(0.0f64, |m, v| m.max(v.to_f64_exact()))
}

/// Asks the processor to start loading `row` into cache, so that a loop
/// over scattered rows (the rows whose bounds failed) reads the next one
/// while it works on this one. Only a hint: no effect on any value.
#[inline(always)]
pub(crate) fn prefetch_row<T>(row: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let bytes = std::mem::size_of_val(row);
        let base = row.as_ptr().cast::<i8>();
        for off in (0..bytes).step_by(64) {
            // SAFETY: a prefetch never faults and reads nothing; the address
            // lies inside `row` anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// Running sums of the portable and AVX2 paths.
const SUMS: usize = 16;

#[inline(always)]
fn sq_dist_portable<T: Float>(a: &[T], b: &[T]) -> f64 {
    let mut acc = [0.0f64; SUMS];
    let (mut ca, mut cb) = (a.chunks_exact(SUMS), b.chunks_exact(SUMS));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..SUMS {
            let t = x[i].to_f64_exact() - y[i].to_f64_exact();
            acc[i] += t * t;
        }
    }
    for (i, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        let t = x.to_f64_exact() - y.to_f64_exact();
        acc[i] += t * t;
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sq_dist_avx2<T: Float>(_: Avx2Fma, a: &[T], b: &[T]) -> f64 {
    sq_dist_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn sq_dist_avx512<T: Float>(_: Avx512F, a: &[T], b: &[T]) -> f64 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let full = n - n % 32;
    let mut acc = [_mm512_setzero_pd(); 4];
    if let (Some(a), Some(b)) = (T::as_f32(a), T::as_f32(b)) {
        for p in (0..full).step_by(32) {
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: p + 8 r + 8 <= full <= n, within both slices;
                // unaligned loads.
                let (va, vb) = unsafe {
                    (
                        _mm256_loadu_ps(a.as_ptr().add(p + 8 * r)),
                        _mm256_loadu_ps(b.as_ptr().add(p + 8 * r)),
                    )
                };
                let t = _mm512_sub_pd(_mm512_cvtps_pd(va), _mm512_cvtps_pd(vb));
                *acc = _mm512_fmadd_pd(t, t, *acc);
            }
        }
    } else {
        // Not f32, so f64 (`Float` is sealed): the values themselves.
        let (a64, b64): (&[f64], &[f64]) = (bytemuck::cast_slice(a), bytemuck::cast_slice(b));
        for p in (0..full).step_by(32) {
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let (va, vb) = unsafe {
                    (
                        _mm512_loadu_pd(a64.as_ptr().add(p + 8 * r)),
                        _mm512_loadu_pd(b64.as_ptr().add(p + 8 * r)),
                    )
                };
                let t = _mm512_sub_pd(va, vb);
                *acc = _mm512_fmadd_pd(t, t, *acc);
            }
        }
    }
    let total = _mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3]));
    _mm512_reduce_add_pd(total) + sq_dist_portable(&a[full..n], &b[full..n])
}

/// Squared distances from `row` to the centres `js` (rows of `centres`,
/// `k x d`; `sq_norms` their squared norms as [`super::PreparedCentres`]
/// keeps them) into `out`, by the row-dot kernel's formula:
/// `max(||x||^2 + 2 (||c||^2 / 2 - x.c), 0)`, `x.c` in `LANES` running sums
/// and a fixed tree, the tail's products fused onto it, `||x||^2` in `T`.
/// Each value is within the pruning's `Ed` of the exact squared distance,
/// as every kernel's `distances` is (the rounding argument of `pruning.rs`
/// holds for a sum of products in any order). For the pruning's
/// recomputed rows, which need only the centres their bounds no longer
/// rule out: four centres at a time against the row, which stays in L1.
pub(crate) fn distances_to<T: Float>(
    row: &[T],
    centres: MatRef<'_, T>,
    sq_norms: &[T],
    js: &[u32],
    out: &mut [T],
) {
    let (k, d) = (centres.rows(), centres.cols());
    assert!(row.len() == d && sq_norms.len() == k && out.len() == js.len());
    assert!(js.iter().all(|&j| (j as usize) < k), "centres in range");
    let c = centres.as_slice();
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX-512F; the asserts keep
        // every centre read inside `c`.
        Isa::Avx512(t) => unsafe { distances_to_avx512::<T::Avx512>(t, row, c, sq_norms, js, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX2 and FMA; as above.
        Isa::Avx2(t) => unsafe { distances_to_avx2::<T::Avx2>(t, row, c, sq_norms, js, out) },
        // SAFETY: plain arrays; as above.
        Isa::Portable => unsafe { distances_to_body::<T::Portable>(row, c, sq_norms, js, out) },
    }
}

/// # Safety
///
/// As [`distances_to_body`]; the token proves the CPU runs AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn distances_to_avx512<S: Simd>(
    _: Avx512F,
    row: &[S::T],
    c: &[S::T],
    sq_norms: &[S::T],
    js: &[u32],
    out: &mut [S::T],
) {
    // SAFETY: this function's own contract.
    unsafe { distances_to_body::<S>(row, c, sq_norms, js, out) }
}

/// # Safety
///
/// As [`distances_to_body`]; the token proves the CPU runs AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn distances_to_avx2<S: Simd>(
    _: Avx2Fma,
    row: &[S::T],
    c: &[S::T],
    sq_norms: &[S::T],
    js: &[u32],
    out: &mut [S::T],
) {
    // SAFETY: this function's own contract.
    unsafe { distances_to_body::<S>(row, c, sq_norms, js, out) }
}

/// Centres computed side by side against one row.
const SIDE_BY_SIDE: usize = 4;

/// [`distances_to`]'s body.
///
/// # Safety
///
/// The CPU runs `S`'s instruction set; `c` holds `sq_norms.len()` rows of
/// `row.len()` values, every index of `js` is one of them, and `out` is as
/// long as `js`.
#[inline(always)]
unsafe fn distances_to_body<S: Simd>(
    row: &[S::T],
    c: &[S::T],
    sq_norms: &[S::T],
    js: &[u32],
    out: &mut [S::T],
) {
    // SAFETY: the contract above keeps every load inside `row` and `c`.
    unsafe {
        let d = row.len();
        let whole = d - d % S::LANES;
        let x = row.as_ptr();
        let nx = S::sq_norm(x, d);
        let (two, half) = (S::T::one() + S::T::one(), S::T::from_f64_lossy(0.5));
        let finish = |j: usize, acc: S::V| {
            let cj = &c[j * d..(j + 1) * d];
            let mut dot = S::reduce_add(acc);
            for p in whole..d {
                dot = row[p].mul_add(cj[p], dot);
            }
            // `bias - x.c` with an overflow kept as +inf (see rowdot.rs).
            let v = sq_norms[j] * half - dot;
            let v = if v.is_nan() { S::T::infinity() } else { v };
            // `2 v` is exact, so the sum rounds once, as in the kernels.
            (two * v + nx).max(S::T::zero())
        };
        let mut at = 0;
        while at < js.len() {
            // A last group of fewer centres repeats its last one: a single
            // chain of fused multiply-adds would wait on each one's latency.
            let g: [u32; SIDE_BY_SIDE] = std::array::from_fn(|t| js[(at + t).min(js.len() - 1)]);
            let cs: [*const S::T; SIDE_BY_SIDE] =
                std::array::from_fn(|t| c.as_ptr().add(g[t] as usize * d));
            let mut acc = [S::splat(S::T::zero()); SIDE_BY_SIDE];
            let mut p = 0;
            while p < whole {
                let xv = S::load(x.add(p));
                for t in 0..SIDE_BY_SIDE {
                    acc[t] = S::fmadd(xv, S::load(cs[t].add(p)), acc[t]);
                }
                p += S::LANES;
            }
            for t in 0..SIDE_BY_SIDE.min(js.len() - at) {
                out[at + t] = finish(g[t] as usize, acc[t]);
            }
            at += SIDE_BY_SIDE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within the error bound of any order of summation of the exact
    /// squares, against a compensated (two-sum) reference, at every
    /// remainder of the vector width, in f32 and f64.
    #[test]
    fn any_order_distance_is_within_the_summation_bound() {
        for n in [0, 1, 7, 8, 31, 32, 33, 64, 130, 784] {
            let a: Vec<f64> = (0..n)
                .map(|i| (i as f64 * 0.731).sin() * 1e3 + 0.1)
                .collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 1.37).cos() * 7e2).collect();
            let (a32, b32): (Vec<f32>, Vec<f32>) = (
                a.iter().map(|&v| v as f32).collect(),
                b.iter().map(|&v| v as f32).collect(),
            );
            // Kahan-Babuska: the squares' sum to within a few units of the
            // last place, whatever the order.
            let reference = |a: &[f64], b: &[f64]| {
                let (mut s, mut c) = (0.0f64, 0.0f64);
                for (x, y) in a.iter().zip(b) {
                    let t = (x - y) * (x - y);
                    let u = s + t;
                    c += if s.abs() >= t.abs() {
                        (s - u) + t
                    } else {
                        (t - u) + s
                    };
                    s = u;
                }
                s + c
            };
            let a32_64: Vec<f64> = a32.iter().map(|&v| v as f64).collect();
            let b32_64: Vec<f64> = b32.iter().map(|&v| v as f64).collect();
            let bound = |exact: f64| 2.0 * (n as f64 + 2.0) * f64::EPSILON * exact;
            let e64 = reference(&a, &b);
            let e32 = reference(&a32_64, &b32_64);
            let (f64d, f32d) = (sq_dist_any_order(&a, &b), sq_dist_any_order(&a32, &b32));
            assert!(
                (f64d - e64).abs() <= bound(e64),
                "f64, {n}: {f64d} vs {e64}"
            );
            assert!(
                (f32d - e32).abs() <= bound(e32),
                "f32, {n}: {f32d} vs {e32}"
            );
            // The baseline build of the same sums, within the same bound.
            let base = sq_dist_portable(&a32, &b32);
            assert!((base - e32).abs() <= bound(e32), "portable f32, {n}");
        }
    }

    /// The one-loop f32 scan of AVX-512 against the rules it stands for:
    /// norms within the summation bound of the f64 sum of squares in row
    /// order, the largest magnitude exactly, and grids worked out by hand:
    /// whole numbers
    /// (the OR of the integers), whole numbers past 2^31 and fractions
    /// (the bits' rule), zero rows, at widths around the vector's 16.
    #[test]
    fn the_f32_avx512_scan_keeps_norms_maxima_and_grids() {
        #[cfg(target_arch = "x86_64")]
        {
            let Isa::Avx512(t) = Isa::detect() else {
                super::super::isa::require::skip("avx512", "AVX-512F is not available here");
                return;
            };
            // (rows, the finest grid of all of them, by hand)
            let cases: Vec<(Vec<Vec<f32>>, i32)> = vec![
                (vec![vec![8.0, -24.0, 0.0, 40.0]], 3),
                (vec![vec![8.0, -24.0], vec![6.0, 0.0]], 1),
                (vec![vec![0.0, -0.0, 0.0]], i32::MAX),
                (vec![vec![255.0, 1.0, 128.0], vec![0.0, 0.0, 0.0]], 0),
                // -2^31 converts exactly; 2^40 does not, and takes the bits' rule.
                (vec![vec![-2147483648.0, 0.0]], 31),
                (vec![vec![1099511627776.0, 3221225472.0]], 30),
                (vec![vec![4.0, 0.5, 2.0]], -1),
                (vec![vec![4.0, 2.0], vec![0.75, 16.0]], -2),
                (vec![vec![f32::from_bits(1), 1.0]], -149),
            ];
            for (rows, want) in cases {
                // Each case at widths 1..=40 and 784: the values repeat
                // along the row, so the grid and the maximum stay.
                for d in (1..=40).chain([784]) {
                    let x: Vec<f32> = rows
                        .iter()
                        .flat_map(|r| (0..d).map(move |p| r[p % r.len()]))
                        .collect();
                    let n = rows.len();
                    let mut norms = vec![0.0; n];
                    // SAFETY: x holds n rows of d values.
                    let (max_abs, low) =
                        unsafe { scan_rows_f32_avx512(t, &x, d, &mut norms, true) };
                    let present: Vec<f32> = rows
                        .iter()
                        .flat_map(|r| r.iter().take(d).copied())
                        .collect();
                    let grid_want = if d >= rows.iter().map(Vec::len).max().unwrap_or(0) {
                        want
                    } else {
                        finest_grid(&present)
                    };
                    assert_eq!(low, grid_want, "grid of {rows:?} at d = {d}");
                    let max_want = present
                        .iter()
                        .fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
                    assert_eq!(max_abs, max_want, "max of {rows:?} at d = {d}");
                    for (r, &norm) in norms.iter().enumerate() {
                        let row = &x[r * d..(r + 1) * d];
                        let exact: f64 = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                        let tol = 2.0 * d as f64 * f64::EPSILON * exact;
                        assert!(
                            (norm - exact).abs() <= tol,
                            "norm of row {r} of {rows:?} at d = {d}: {norm} vs {exact}"
                        );
                    }
                    // Without the grid: the norms alone.
                    let mut again = vec![0.0; n];
                    // SAFETY: as above.
                    let none = unsafe { scan_rows_f32_avx512(t, &x, d, &mut again, false) };
                    assert_eq!(none, (0.0, i32::MAX));
                    assert_eq!(again, norms);
                }
            }
            // Continuous data: the same maximum and grid as the row-by-row
            // body, and norms within the summation bound of its.
            let (n, d) = (37, 100);
            let x: Vec<f32> = (0..n * d)
                .map(|i| ((i as f64 * 0.377).sin() * 300.0) as f32)
                .collect();
            let m = MatRef::new(&x, n, d).expect("shape");
            let (mut fast, mut body) = (vec![0.0; n], vec![0.0; n]);
            // SAFETY: x holds n rows of d values.
            let got = unsafe { scan_rows_f32_avx512(t, &x, d, &mut fast, true) };
            assert_eq!(got, scan_rows_body(m, &mut body, true));
            for (a, b) in fast.iter().zip(&body) {
                assert!(
                    (a - b).abs() <= 2.0 * d as f64 * f64::EPSILON * b,
                    "{a} vs {b}"
                );
            }
        }
    }
}
