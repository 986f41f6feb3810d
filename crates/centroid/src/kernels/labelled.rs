//! Per-cluster sums of rows whose labels are already known: the second half
//! of a Lloyd pass when the labels come from somewhere other than
//! [`assign_accumulate`](super::assign_accumulate) (the batch Lloyd loop,
//! pruned or not, labels its chunks first and then calls this).
//!
//! The arithmetic is plain Rust with no fused operations, so the instruction
//! set it is compiled for (AVX-512F, AVX2+FMA or the baseline, picked at run
//! time) changes only how many values one instruction handles, never a
//! result: the same labels give the same bits on every path.

use super::isa::Isa;
#[cfg(target_arch = "x86_64")]
use super::isa::{Avx2Fma, Avx512F};
use super::scalar::ClusterStats;
use crate::float::Float;
use crate::matrix::MatRef;

/// Adds to `part` the statistics of the rows of `x` (`labels[i]` is row
/// `i`'s cluster, `weights[i]` its weight, 1 when absent): each row, times
/// its weight, added to its cluster's sums in row order; the weights and
/// counts; and the loss, continuing `part.loss` with each row's weight
/// times its squared distance to its cluster's centre in `centres`, in row
/// order, in f64 (see [`sq_dist_blocked`]). The loss of a row depends only
/// on the row, its weight, its label and the centres, and rows added block
/// by block give the very bits of adding them in one call. With `with_loss`
/// false the loss is left as it is: the pass then only streams the rows
/// once.
pub fn add_labelled<T: Float>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    centres: MatRef<'_, T>,
    part: &mut ClusterStats,
    with_loss: bool,
) {
    assert_eq!(labels.len(), x.rows(), "one label per row");
    assert!(
        weights.is_none_or(|w| w.len() == x.rows()),
        "one weight per row"
    );
    assert_eq!(
        x.cols(),
        centres.cols(),
        "data width must match the centres"
    );
    assert_eq!((part.k, part.d), (centres.rows(), centres.cols()));
    assert!(
        labels.iter().all(|&l| (l as usize) < centres.rows()),
        "every label names a centre"
    );
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX-512F, the only
        // requirement of the function beyond its (safe) arguments.
        Isa::Avx512(t) => unsafe {
            accumulate_avx512(t, x, weights, labels, centres, part, with_loss)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX2 and FMA.
        Isa::Avx2(t) => unsafe { accumulate_avx2(t, x, weights, labels, centres, part, with_loss) },
        Isa::Portable => accumulate_body(
            x,
            weights,
            labels,
            centres,
            part,
            with_loss,
            sq_dist_blocked,
        ),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn accumulate_avx512<T: Float>(
    t: Avx512F,
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    centres: MatRef<'_, T>,
    part: &mut ClusterStats,
    with_loss: bool,
) {
    accumulate_body(x, weights, labels, centres, part, with_loss, |a, b| {
        sq_dist_lanes_avx512(t, a, b)
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn accumulate_avx2<T: Float>(
    _: Avx2Fma,
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    centres: MatRef<'_, T>,
    part: &mut ClusterStats,
    with_loss: bool,
) {
    accumulate_body(
        x,
        weights,
        labels,
        centres,
        part,
        with_loss,
        sq_dist_blocked,
    )
}

#[inline(always)]
fn accumulate_body<T: Float>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    centres: MatRef<'_, T>,
    part: &mut ClusterStats,
    with_loss: bool,
    sq_dist: impl Fn(&[T], &[T]) -> f64,
) {
    let d = x.cols();
    let mut loss = part.loss;
    for (i, &l) in labels.iter().enumerate() {
        let j = l as usize;
        let row = x.row(i);
        let acc = &mut part.sums[j * d..(j + 1) * d];
        let w = match weights {
            None => {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v.to_f64_exact();
                }
                1.0
            }
            Some(w) => {
                let w = w[i].to_f64_exact();
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += w * v.to_f64_exact();
                }
                w
            }
        };
        part.weights[j] += w;
        part.counts[j] += 1;
        if with_loss {
            loss += w * sq_dist(row, centres.row(j));
        }
    }
    part.loss = loss;
}

/// [`sq_dist_blocked`] with its eight running sums in the eight lanes of
/// one AVX-512 register: lane `i` takes elements `p = i mod 8` in order,
/// by the same exact conversion, subtraction, multiplication and addition
/// (no fused operation), then the same tree: the same bits. The compiler
/// left alone pairs the sums into 2-lane registers (the tree's pairing), a
/// quarter of the width.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn sq_dist_lanes_avx512<T: Float>(_: Avx512F, a: &[T], b: &[T]) -> f64 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let full = n - n % 8;
    let mut acc = _mm512_setzero_pd();
    let mut step = |va: __m512d, vb: __m512d| {
        let t = _mm512_sub_pd(va, vb);
        acc = _mm512_add_pd(acc, _mm512_mul_pd(t, t));
    };
    if let (Some(a), Some(b)) = (T::as_f32(a), T::as_f32(b)) {
        for p in (0..full).step_by(8) {
            // SAFETY: p + 8 <= full <= n, within both slices; unaligned
            // loads.
            let (va, vb) = unsafe {
                (
                    _mm256_loadu_ps(a.as_ptr().add(p)),
                    _mm256_loadu_ps(b.as_ptr().add(p)),
                )
            };
            step(_mm512_cvtps_pd(va), _mm512_cvtps_pd(vb));
        }
    } else {
        // Not f32, so f64 (`Float` is sealed): the values themselves.
        let (a64, b64): (&[f64], &[f64]) = (bytemuck::cast_slice(a), bytemuck::cast_slice(b));
        for p in (0..full).step_by(8) {
            // SAFETY: as above.
            let (va, vb) = unsafe {
                (
                    _mm512_loadu_pd(a64.as_ptr().add(p)),
                    _mm512_loadu_pd(b64.as_ptr().add(p)),
                )
            };
            step(va, vb);
        }
    }
    let mut lanes = [0.0f64; 8];
    // SAFETY: eight f64 fit the array.
    unsafe { _mm512_storeu_pd(lanes.as_mut_ptr(), acc) };
    for (i, p) in (full..n).enumerate() {
        let t = a[p].to_f64_exact() - b[p].to_f64_exact();
        lanes[i] += t * t;
    }
    sum_tree(&lanes)
}

/// `||a - b||^2` in `f64` with eight running sums (element `p` into sum
/// `p % 8`, combined in a fixed order), so that long rows do not wait on
/// one chain of additions; the order depends only on the length.
#[inline(always)]
fn sq_dist_blocked<T: Float>(a: &[T], b: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            let t = x[i].to_f64_exact() - y[i].to_f64_exact();
            acc[i] += t * t;
        }
    }
    for (i, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        let t = x.to_f64_exact() - y.to_f64_exact();
        acc[i] += t * t;
    }
    sum_tree(&acc)
}

/// The eight running sums of [`sq_dist_blocked`] combined in its fixed order.
#[inline(always)]
fn sum_tree(acc: &[f64; 8]) -> f64 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dispatched routine against the baseline build of the same body,
    /// bit for bit, and the sums, weights, counts and loss against a
    /// brute-force computation.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        for d in [37, 2, 8, 9] {
            same_bits_at_width(d);
        }
    }

    fn same_bits_at_width(d: usize) {
        let (n, k) = (300, 5);
        let x: Vec<f32> = (0..n * d)
            .map(|i| ((i as f64 * 0.377).sin() * 1e3) as f32)
            .collect();
        let c: Vec<f32> = (0..k * d)
            .map(|i| ((i as f64 * 0.91).cos() * 7e2) as f32)
            .collect();
        let w: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * 0.3).collect();
        let labels: Vec<u32> = (0..n).map(|i| (i * 7 % k) as u32).collect();
        let xm = MatRef::new(&x, n, d).unwrap();
        let cm = MatRef::new(&c, k, d).unwrap();
        for weights in [None, Some(&w[..])] {
            let mut fast = ClusterStats::new(k, d);
            let mut base = ClusterStats::new(k, d);
            add_labelled(xm, weights, &labels, cm, &mut fast, true);
            accumulate_body(xm, weights, &labels, cm, &mut base, true, sq_dist_blocked);
            let bits = |s: &ClusterStats| -> Vec<u64> {
                s.sums
                    .iter()
                    .chain(&s.weights)
                    .chain([&s.loss])
                    .map(|v| v.to_bits())
                    .collect()
            };
            assert_eq!(bits(&fast), bits(&base));
            assert_eq!(fast.counts, base.counts);
            // Without the loss: the same sums, weights and counts, loss 0.
            let mut quiet = ClusterStats::new(k, d);
            add_labelled(xm, weights, &labels, cm, &mut quiet, false);
            assert_eq!(quiet.sums, fast.sums);
            assert_eq!(
                (&quiet.weights, &quiet.counts),
                (&fast.weights, &fast.counts)
            );
            assert_eq!(quiet.loss, 0.0);
            // Block by block (uneven blocks), continuing the same partial:
            // the same bits as one call.
            let mut blocks = ClusterStats::new(k, d);
            for (b0, b1) in [(0, 1), (1, 64), (64, 65), (65, 200), (200, n)] {
                let rows = xm.slice_rows(b0, b1);
                let w = weights.map(|w| &w[b0..b1]);
                add_labelled(rows, w, &labels[b0..b1], cm, &mut blocks, true);
            }
            assert_eq!(bits(&blocks), bits(&fast));
            assert_eq!(blocks.counts, fast.counts);
            let mut loss = 0.0;
            for i in 0..n {
                let (j, wi) = (labels[i] as usize, weights.map_or(1.0, |w| w[i] as f64));
                let dd: f64 = (0..d)
                    .map(|p| (x[i * d + p] as f64 - c[j * d + p] as f64).powi(2))
                    .sum();
                loss += wi * dd;
            }
            assert!(
                (fast.loss - loss).abs() <= 1e-12 * loss,
                "{} vs {loss}",
                fast.loss
            );
            for j in 0..k {
                let members: Vec<usize> = (0..n).filter(|&i| labels[i] as usize == j).collect();
                assert_eq!(fast.counts[j], members.len() as u64);
                let wsum: f64 = members
                    .iter()
                    .map(|&i| weights.map_or(1.0, |w| w[i] as f64))
                    .sum();
                assert!((fast.weights[j] - wsum).abs() <= 1e-12 * (1.0 + wsum));
                for p in 0..d {
                    let s: f64 = members
                        .iter()
                        .map(|&i| weights.map_or(1.0, |w| w[i] as f64) * x[i * d + p] as f64)
                        .sum();
                    assert!((fast.sums[j * d + p] - s).abs() <= 1e-9 * (1.0 + s.abs()));
                }
            }
        }
    }

    /// The loss's squared distance in AVX-512 lanes against the baseline's
    /// eight running sums, bit for bit, at every length's remainder, in f32
    /// and f64.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_squared_distance_has_the_baseline_bits() {
        let Some(t) = Avx512F::detect() else {
            crate::kernels::isa::require::skip("avx512", "AVX-512F is not available here");
            return;
        };
        for n in [0, 1, 7, 8, 9, 16, 37, 130, 784] {
            let a: Vec<f64> = (0..n)
                .map(|i| (i as f64 * 0.731).sin() * 1e3 + 0.1)
                .collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 1.37).cos() * 7e2).collect();
            // SAFETY: the token proves the CPU runs AVX-512F.
            let lanes = unsafe { sq_dist_lanes_avx512(t, &a, &b) };
            assert_eq!(
                lanes.to_bits(),
                sq_dist_blocked(&a, &b).to_bits(),
                "f64, {n}"
            );
            let (a, b): (Vec<f32>, Vec<f32>) = (
                a.iter().map(|&v| v as f32).collect(),
                b.iter().map(|&v| v as f32).collect(),
            );
            let exact: f64 = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
                .sum();
            // SAFETY: as above.
            let fast = unsafe { sq_dist_lanes_avx512(t, &a, &b) };
            assert_eq!(
                fast.to_bits(),
                sq_dist_blocked(&a, &b).to_bits(),
                "f32, {n}"
            );
            assert!((fast - exact).abs() <= 1e-13 * exact, "{fast} vs {exact}");
        }
    }
}
