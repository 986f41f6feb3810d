//! Whole-data scans whose baseline build is narrow: the input checks'
//! read (finite values, row norms) and the centring's column reductions
//! (`batch::centring`: column sums in NumPy's order with the integer test,
//! sums of squared deviations), each compiled for the widest instruction
//! set the CPU runs ([`widest_isa`]). Every addition is one column's, in
//! row order, and nothing is fused, so each instruction set gives the same
//! bits; the baseline build handles four values per instruction where
//! AVX-512 handles sixteen (on Fashion-MNIST the means and the integer test
//! took a tenth of a 20-iteration fit, and the checks read at a fifth of
//! the memory's speed).

use super::isa::{prefetch, widest_isa};
use super::scalar::sq_norm_f64_inline;
use crate::float::Float;
use crate::matrix::MatRef;

widest_isa! {
    /// Whether every value of `b` (whole rows of `cols` values) is finite
    /// and, with a `limit`, every row's squared norm
    /// ([`sq_norm_f64`](super::sq_norm_f64)) at most `limit` (a NaN or
    /// infinite value makes its row's norm fail any limit).
    pub(crate) fn block_clean(b: &[T], cols: usize, limit: Option<f64>) -> bool = block_clean_body;
}

/// [`block_clean`]'s loops; they fold without stopping early, so that they
/// vectorise.
#[inline(always)]
fn block_clean_body<T: Float>(b: &[T], cols: usize, limit: Option<f64>) -> bool {
    match limit {
        Some(limit) => {
            // Most data is far inside the limit: every value finite and
            // `cols * max|x|^2` within it prove every row's norm is, in one
            // streaming read (per-row f64 norms of narrow rows ran at a
            // fifth of the memory's speed). The computed norm is a sum of
            // `cols` products each at most `max^2 (1 + u)`, so it is at most
            // `cols max^2 (1 + u)^(cols + 1)`; the bound's own two roundings
            // and that growth stay within `(cols + 4) * 2u`, relative.
            if let Some(m) = finite_max_abs(b) {
                let bound = cols as f64 * m * m;
                if bound * (1.0 + (cols as f64 + 4.0) * f64::EPSILON) <= limit {
                    return true;
                }
            }
            b.chunks_exact(cols.max(1))
                .fold(true, |ok, row| ok & (sq_norm_f64_inline(row) <= limit))
        }
        None => b.iter().fold(true, |ok, x| ok & x.is_finite()),
    }
}

/// The largest magnitude in `b`, or `None` where a value is NaN or
/// infinite: the largest of the values' bits without the sign, as
/// unsigned integers, which order finite magnitudes as the values do and
/// put infinity and NaN above them all (an integer maximum, which
/// vectorises where a float comparison with its NaN rules does not).
#[inline(always)]
fn finite_max_abs<T: Float>(b: &[T]) -> Option<f64> {
    match T::as_f32(b) {
        Some(v) => {
            let m = v.iter().fold(0u32, |m, x| m.max(x.to_bits() & 0x7fff_ffff));
            (m < 0x7f80_0000).then(|| f64::from(f32::from_bits(m)))
        }
        None => {
            let v: &[f64] = bytemuck::cast_slice(b);
            let m = v
                .iter()
                .fold(0u64, |m, x| m.max(x.to_bits() & 0x7fff_ffff_ffff_ffff));
            (m < 0x7ff0_0000_0000_0000).then(|| f64::from_bits(m))
        }
    }
}

widest_isa! {
    /// Adds columns `c0 .. c0 + acc.len()` of every row of `x` into `acc`,
    /// row after row in `T` (each column one chain of additions: NumPy's
    /// order for a strided axis); with `test`, returns whether every one of
    /// those values is a whole number ([`whole_numbers`]), else `true`.
    pub(crate) fn add_columns(x: MatRef<'_, T>, acc: &mut [T], c0: usize, test: bool) -> bool = add_columns_body;
}

#[inline(always)]
fn add_columns_body<T: Float>(x: MatRef<'_, T>, acc: &mut [T], c0: usize, test: bool) -> bool {
    let mut whole = true;
    for i in 0..x.rows() {
        prefetch_ahead(x, i, c0, acc.len());
        let row = &x.row(i)[c0..c0 + acc.len()];
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v;
        }
        if test {
            whole &= whole_numbers(row);
        }
    }
    whole
}

/// Whether every value of `v` is a whole number (finite values; a NaN is
/// not one): `trunc(x) == x` for each, folded without stopping early so
/// that it vectorises, a rounding and a comparison per vector. The centring
/// needs only this, not the exact grid of [`crate::float::finest_grid`],
/// whose bit work per value made the means' read on Fashion-MNIST take
/// three times as long as a plain read.
#[inline(always)]
fn whole_numbers<T: Float>(v: &[T]) -> bool {
    v.iter().fold(true, |ok, &x| ok & (x.trunc() == x))
}

/// Rows ahead of the one being added that [`prefetch_ahead`] asks for.
const AHEAD_ROWS: usize = 8;

/// Asks for columns `c0 .. c0 + cols` of row `i + AHEAD_ROWS` to be brought
/// into cache, where the rows are wider than a line. A column block is one
/// stretch of every row, and the hardware prefetchers stop at each 4 KiB
/// page, which such stretches cross every row or two: without the hint
/// the column sums read Fashion-MNIST at half the memory's speed.
#[inline(always)]
fn prefetch_ahead<T: Float>(x: MatRef<'_, T>, i: usize, c0: usize, cols: usize) {
    if x.cols() * std::mem::size_of::<T>() > 64 && i + AHEAD_ROWS < x.rows() {
        prefetch(&x.row(i + AHEAD_ROWS)[c0..c0 + cols]);
    }
}

widest_isa! {
    /// Adds every row of `rows` (whole rows of `acc.len()` values) into
    /// `acc`, each value widened to f64, row after row.
    pub(crate) fn add_rows_f64(rows: &[T], acc: &mut [f64]) = add_rows_f64_body;
}

#[inline(always)]
fn add_rows_f64_body<T: Float>(rows: &[T], acc: &mut [f64]) {
    if acc.is_empty() {
        return;
    }
    for row in rows.chunks_exact(acc.len()) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v.to_f64_exact();
        }
    }
}

widest_isa! {
    /// Whether every value of `values` is a whole number ([`whole_numbers`]).
    pub(crate) fn whole_numbers_of(values: &[T]) -> bool = whole_numbers;
}

widest_isa! {
    /// Adds `(v - mean)^2` of columns `c0 .. c0 + acc.len()` of every row
    /// of `x` into `acc`, row after row in `T`: the deviation and its
    /// square each rounded to `T` (NumPy's separate passes), then added.
    pub(crate) fn add_squared_deviations(x: MatRef<'_, T>, acc: &mut [T], c0: usize, means: &[T]) = add_squared_deviations_body;
}

#[inline(always)]
fn add_squared_deviations_body<T: Float>(x: MatRef<'_, T>, acc: &mut [T], c0: usize, means: &[T]) {
    let m = &means[c0..c0 + acc.len()];
    for i in 0..x.rows() {
        prefetch_ahead(x, i, c0, acc.len());
        let row = &x.row(i)[c0..c0 + acc.len()];
        for ((a, &v), &mu) in acc.iter_mut().zip(row).zip(m) {
            let t = v - mu;
            *a += t * t;
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// The input check's norm limit, against each row's f64 squared norm
    /// summed here: accepted exactly when no row's norm exceeds the limit,
    /// whether the one-read bound (`cols * max^2`) settles it or the rows
    /// are summed; and any NaN or infinity refused.
    #[test]
    fn block_clean_accepts_exactly_the_rows_within_the_norm_limit() {
        for cols in [1usize, 3, 8, 37] {
            // One large value per row, in a different column each row, so
            // that `cols * max^2` exceeds every row's norm for cols > 1.
            let rows = 50;
            let mut b = vec![0.5f32; rows * cols];
            for r in 0..rows {
                b[r * cols + r % cols] = 1e3 + r as f32;
            }
            let norms: Vec<f64> = b
                .chunks(cols)
                .map(|row| row.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
                .collect();
            let top = norms.iter().cloned().fold(0.0, f64::max);
            for (limit, want) in [
                (top, true),
                (top * (1.0 - 1e-9), false),
                (top * 1e3, true),
                (norms[0] * 0.5, false),
            ] {
                assert_eq!(
                    block_clean(&b, cols, Some(limit)),
                    want,
                    "cols {cols}, limit {limit}"
                );
                let b64: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
                assert_eq!(
                    block_clean(&b64, cols, Some(limit)),
                    want,
                    "f64, cols {cols}, limit {limit}"
                );
            }
            // Every value equal to a power of two: `cols * max^2` is then
            // each row's exact norm, and a limit equal to it passes.
            let flat = vec![4.0f32; rows * cols];
            assert!(block_clean(&flat, cols, Some(16.0 * cols as f64)));
            assert!(!block_clean(&flat, cols, Some(16.0 * cols as f64 - 1e-9)));
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut dirty = b.clone();
                dirty[rows * cols - 1] = bad;
                assert!(!block_clean(&dirty, cols, Some(f64::MAX)));
                assert!(!block_clean(&dirty, cols, None));
                let dirty64: Vec<f64> = dirty.iter().map(|&v| f64::from(v)).collect();
                assert!(!block_clean(&dirty64, cols, Some(f64::MAX)));
            }
            assert!(block_clean(&b, cols, None));
        }
    }

    /// Every instruction set's build against the baseline's, bit for bit,
    /// and the sums against NumPy's order written out (each column from
    /// +0.0, row after row), on values whose sums round; the integer test
    /// on integers and on values with a half.
    #[test]
    fn every_instruction_set_gives_numpys_column_sums() {
        let (n, d) = (257, 37);
        let x: Vec<f32> = (0..n * d)
            .map(|i| ((i as f64 * 0.61).sin() * 1e4) as f32)
            .collect();
        let xm = MatRef::new(&x, n, d).unwrap();
        let means: Vec<f32> = (0..d).map(|p| p as f32 * 0.37).collect();
        for (c0, w) in [(0, d), (5, 19), (36, 1)] {
            let mut fast = vec![0.0f32; w];
            let mut base = vec![0.0f32; w];
            let whole = add_columns(xm, &mut fast, c0, true);
            assert_eq!(whole, add_columns_body(xm, &mut base, c0, true));
            assert!(!whole, "sines times 1e4 are not whole numbers");
            assert_eq!(
                fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                base.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            for (q, &s) in fast.iter().enumerate() {
                let mut want = 0.0f32;
                for i in 0..n {
                    want += x[i * d + c0 + q];
                }
                assert_eq!(s.to_bits(), want.to_bits());
            }
            assert!(add_columns(xm, &mut fast, c0, false));
            let mut fast = vec![0.0f32; w];
            add_squared_deviations(xm, &mut fast, c0, &means);
            for (q, &s) in fast.iter().enumerate() {
                let mut want = 0.0f32;
                for i in 0..n {
                    let t = x[i * d + c0 + q] - means[c0 + q];
                    want += t * t;
                }
                assert_eq!(s.to_bits(), want.to_bits());
            }
        }
        let ints: Vec<f32> = (0..n * d).map(|i| (i % 255) as f32).collect();
        assert!(whole_numbers_of(&ints));
        let im = MatRef::new(&ints, n, d).unwrap();
        assert!(add_columns(im, &mut vec![0.0f32; d], 0, true));
        // Past 2^23 every f32 is whole; 2^-149 (subnormal) and 0.5 are not.
        for (v, whole) in [
            (0.5f32, false),
            (-0.5, false),
            (1e9, true),
            (-3.0, true),
            (f32::from_bits(1), false),
            (-0.0, true),
            (f32::NAN, false),
        ] {
            let mut one = ints.clone();
            one[n * d - 1] = v;
            assert_eq!(whole_numbers_of(&one), whole, "{v:e}");
            if !v.is_nan() {
                // The bits' rule agrees: whole exactly where the grid is 2^0 or coarser.
                assert_eq!(crate::float::finest_grid(&one) >= 0, whole, "{v:e}");
            }
            let om = MatRef::new(&one, n, d).unwrap();
            assert_eq!(
                add_columns(om, &mut vec![0.0f32; d], 0, true),
                whole,
                "{v:e}"
            );
        }
    }
}
