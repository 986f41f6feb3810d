//! The centring's column reductions (`batch::centring`): column sums in
//! NumPy's order with the integer test, and sums of squared deviations,
//! compiled for the widest instruction set the CPU runs. Every addition is
//! one column's, in row order, and nothing is fused, so each instruction
//! set gives the same bits; the baseline build handles four values per
//! instruction where AVX-512 handles sixteen (on Fashion-MNIST the means
//! and the integer test took a tenth of a 20-iteration fit).

use super::isa::Isa;
#[cfg(target_arch = "x86_64")]
use super::isa::{Avx2Fma, Avx512F};
use crate::float::{finest_grid, Float};
use crate::matrix::MatRef;

/// Adds columns `c0 .. c0 + acc.len()` of every row of `x` into `acc`, row
/// after row in `T` (each column one chain of additions: NumPy's order for
/// a strided axis); with `test`, returns the finest grid of those values
/// ([`finest_grid`]), else `i32::MAX`.
pub(crate) fn add_columns<T: Float>(x: MatRef<'_, T>, acc: &mut [T], c0: usize, test: bool) -> i32 {
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX-512F.
        Isa::Avx512(t) => unsafe { add_columns_avx512(t, x, acc, c0, test) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX2 and FMA.
        Isa::Avx2(t) => unsafe { add_columns_avx2(t, x, acc, c0, test) },
        Isa::Portable => add_columns_body(x, acc, c0, test),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn add_columns_avx512<T: Float>(
    _: Avx512F,
    x: MatRef<'_, T>,
    acc: &mut [T],
    c0: usize,
    test: bool,
) -> i32 {
    add_columns_body(x, acc, c0, test)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn add_columns_avx2<T: Float>(
    _: Avx2Fma,
    x: MatRef<'_, T>,
    acc: &mut [T],
    c0: usize,
    test: bool,
) -> i32 {
    add_columns_body(x, acc, c0, test)
}

#[inline(always)]
fn add_columns_body<T: Float>(x: MatRef<'_, T>, acc: &mut [T], c0: usize, test: bool) -> i32 {
    let mut low = i32::MAX;
    for i in 0..x.rows() {
        let row = &x.row(i)[c0..c0 + acc.len()];
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v;
        }
        if test {
            low = low.min(finest_grid(row));
        }
    }
    low
}

/// [`finest_grid`] of `values`, compiled for the widest instruction set.
pub(crate) fn finest_grid_of<T: Float>(values: &[T]) -> i32 {
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX-512F.
        Isa::Avx512(t) => unsafe { finest_grid_avx512(t, values) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX2 and FMA.
        Isa::Avx2(t) => unsafe { finest_grid_avx2(t, values) },
        Isa::Portable => finest_grid(values),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn finest_grid_avx512<T: Float>(_: Avx512F, values: &[T]) -> i32 {
    finest_grid(values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn finest_grid_avx2<T: Float>(_: Avx2Fma, values: &[T]) -> i32 {
    finest_grid(values)
}

/// Adds `(v - mean)^2` of columns `c0 .. c0 + acc.len()` of every row of
/// `x` into `acc`, row after row in `T`: the deviation and its square each
/// rounded to `T` (NumPy's separate passes), then added.
pub(crate) fn add_squared_deviations<T: Float>(
    x: MatRef<'_, T>,
    acc: &mut [T],
    c0: usize,
    means: &[T],
) {
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX-512F.
        Isa::Avx512(t) => unsafe { add_squared_deviations_avx512(t, x, acc, c0, means) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX2 and FMA.
        Isa::Avx2(t) => unsafe { add_squared_deviations_avx2(t, x, acc, c0, means) },
        Isa::Portable => add_squared_deviations_body(x, acc, c0, means),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn add_squared_deviations_avx512<T: Float>(
    _: Avx512F,
    x: MatRef<'_, T>,
    acc: &mut [T],
    c0: usize,
    means: &[T],
) {
    add_squared_deviations_body(x, acc, c0, means)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn add_squared_deviations_avx2<T: Float>(
    _: Avx2Fma,
    x: MatRef<'_, T>,
    acc: &mut [T],
    c0: usize,
    means: &[T],
) {
    add_squared_deviations_body(x, acc, c0, means)
}

#[inline(always)]
fn add_squared_deviations_body<T: Float>(x: MatRef<'_, T>, acc: &mut [T], c0: usize, means: &[T]) {
    let m = &means[c0..c0 + acc.len()];
    for i in 0..x.rows() {
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
            let low = add_columns(xm, &mut fast, c0, true);
            assert_eq!(low, add_columns_body(xm, &mut base, c0, true));
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
            assert_eq!(add_columns(xm, &mut fast, c0, false), i32::MAX);
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
        assert!(finest_grid_of(&ints) >= 0);
        let mut halves = ints.clone();
        halves[n * d - 1] = 0.5;
        assert_eq!(finest_grid_of(&halves), -1);
        assert_eq!(finest_grid_of(&halves), finest_grid(&halves));
    }
}
