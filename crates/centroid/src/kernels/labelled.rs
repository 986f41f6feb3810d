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
use super::scalar::{widened, ClusterStats, RowsByCluster};
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

/// `sum` plus, row after row, each row's weight (1 when absent) times its
/// squared distance to the centre its label names, `c64` being the
/// centres widened to f64 (`k x d`, row-major): the loss of
/// [`add_labelled`] alone, to the same bits, and the inertia of
/// `crate::batch` (a final labelling pass). Rows added in consecutive
/// pieces give the bits of adding them in one call.
pub fn add_loss<T: Float>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    c64: &[f64],
    sum: f64,
) -> f64 {
    assert!(
        weights.is_none_or(|w| w.len() == x.rows()),
        "one weight per row"
    );
    let mut sum = sum;
    match weights {
        None => for_each_sq_dist(x, labels, c64, |_, sq| sum += sq),
        Some(w) => for_each_sq_dist(x, labels, c64, |i, sq| sum += w[i].to_f64_exact() * sq),
    }
    sum
}

/// Calls `f(i, ||x_i - c_{labels[i]}||^2)` for every row `i` in order, each
/// distance [`sq_dist_blocked`]'s bits (`c64`: the centres, `k x d`,
/// row-major, in f64 or as the kernels keep them: each value is widened
/// to f64 as it is read, which is exact), computed [`LOSS_ROWS`] rows at a time where the
/// processor has AVX-512 (the baseline build runs two values an
/// instruction). The loss, the inertia and the farthest rows of a
/// relocation read their distances here.
pub fn for_each_sq_dist<T: Float, U: Float>(
    x: MatRef<'_, T>,
    labels: &[u32],
    c64: &[U],
    mut f: impl FnMut(usize, f64),
) {
    let d = x.cols();
    assert_eq!(labels.len(), x.rows(), "one label per row");
    assert!(
        labels.iter().all(|&l| (l as usize + 1) * d <= c64.len()),
        "every label names a centre"
    );
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU runs AVX-512F; the labels name
        // rows of `c64` (checked above).
        Isa::Avx512(_) => unsafe { sq_dists_avx512(x, labels, c64, f) },
        _ => {
            for (i, &l) in labels.iter().enumerate() {
                let j = l as usize;
                f(i, sq_dist_blocked(x.row(i), &c64[j * d..(j + 1) * d]));
            }
        }
    }
}

/// Rows of [`sq_dists_avx512`] computed together: a row's squared distance
/// is eight chains of `d / 8` dependent additions, and four rows side by
/// side keep the adder busy (Fashion-MNIST: 98 additions a chain).
const LOSS_ROWS: usize = 4;

/// [`for_each_sq_dist`] on AVX-512F: each row's eight running sums are one
/// register's lanes, as in [`accumulate_avx512`] (the last block masked:
/// its missing columns add `0 * 0` to sums that are at least `+0`), the
/// same tree, [`LOSS_ROWS`] rows at a time, `f` called in row order.
///
/// # Safety
/// AVX-512F; every label names a row of `c64` (`k x d`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sq_dists_avx512<T: Float, U: Float>(
    x: MatRef<'_, T>,
    labels: &[u32],
    c64: &[U],
    mut f: impl FnMut(usize, f64),
) {
    use std::arch::x86_64::*;
    let d = x.cols();
    let blocks = d.div_ceil(8);
    let last: __mmask8 = last_block_mask(d);
    let xs = x.as_slice();
    let n = labels.len();
    let mut i = 0;
    while i < n {
        let rows = LOSS_ROWS.min(n - i);
        let mut lanes = [_mm512_setzero_pd(); LOSS_ROWS];
        for b in 0..blocks {
            let m = if b + 1 == blocks { last } else { 0xff };
            for r in 0..rows {
                // SAFETY: the mask keeps both loads within columns
                // 8b .. min(8b + 8, d) of row i + r of x and of the row of
                // c64 its label names (the caller).
                unsafe {
                    let v = load_f64(xs, (i + r) * d + 8 * b, m);
                    let c = load_f64(c64, labels[i + r] as usize * d + 8 * b, m);
                    let t = _mm512_sub_pd(v, c);
                    lanes[r] = _mm512_add_pd(lanes[r], _mm512_mul_pd(t, t));
                }
            }
        }
        for (r, l) in lanes.iter().enumerate().take(rows) {
            // SAFETY: AVX-512F is enabled here.
            f(i + r, unsafe { sum_tree_lanes(*l) });
        }
        i += rows;
    }
}

/// [`accumulate_body`] with a row's eight columns at a time in one AVX-512
/// register: each column's sum gets the same addition (of the same product
/// under weights) as in the baseline, and the loss's eight running sums are
/// [`sq_dist_blocked`]'s lanes, combined by the same tree, so the result is
/// the baseline's bits. The last block of a row is masked: its missing
/// columns load as zeros and add `0 * 0 = +0` to running sums that are at
/// least `+0`, which leaves them as they are. Written out because the
/// compiled generic body spent three times as long per narrow row (d = 8)
/// in loop set-up, alias checks and a round trip of the lanes through
/// memory, which made the Estimator's labelled pass twice its kernel's
/// time. (Four rows interleaved, to overlap the chains of wide rows' loss,
/// measured slower on both d = 8 and Fashion-MNIST.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn accumulate_avx512<T: Float>(
    _: Avx512F,
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    centres: MatRef<'_, T>,
    part: &mut ClusterStats,
    with_loss: bool,
) {
    use std::arch::x86_64::*;
    let d = x.cols();
    let blocks = d.div_ceil(8);
    let last: __mmask8 = last_block_mask(d);
    if blocks == 1 && centres.rows() <= labels.len() {
        // SAFETY: AVX-512F is enabled here; the labels name centres
        // (add_labelled checked them); d <= 8.
        unsafe {
            match (weights, with_loss) {
                (None, true) => {
                    accumulate_narrow_avx512::<T, false, true>(x, &[], labels, centres, part)
                }
                (None, false) => {
                    accumulate_narrow_avx512::<T, false, false>(x, &[], labels, centres, part)
                }
                (Some(w), true) => {
                    accumulate_narrow_avx512::<T, true, true>(x, w, labels, centres, part)
                }
                (Some(w), false) => {
                    accumulate_narrow_avx512::<T, true, false>(x, w, labels, centres, part)
                }
            }
        }
        return;
    }
    // The centres widened to f64 once per call where that is no more work
    // than the rows' own values (k <= rows); else (many centres, few rows:
    // a pruned chunk) each block is widened as it is read.
    let c64: Option<Vec<f64>> =
        (with_loss && centres.rows() <= labels.len()).then(|| widened(centres.as_slice()));
    let xs = x.as_slice();
    if let Some(c64) = c64.as_deref().filter(|_| blocks >= GROUPED_BLOCKS) {
        // SAFETY: AVX-512F is enabled here; the labels name centres
        // (add_labelled checked them) and `c64` holds all of them.
        unsafe { accumulate_grouped_avx512(x, weights, labels, c64, part) };
        return;
    }
    let sums = part.sums.as_mut_ptr();
    let mut loss = part.loss;
    for (i, &l) in labels.iter().enumerate() {
        let j = l as usize;
        let w = weights.map(|w| w[i].to_f64_exact());
        let mut lanes = _mm512_setzero_pd();
        for b in 0..blocks {
            let m = if b + 1 == blocks { last } else { 0xff };
            // SAFETY: the mask keeps the load within columns
            // 8b .. min(8b + 8, d) of row i of x (n x d).
            let v = unsafe { load_f64(xs, i * d + 8 * b, m) };
            // SAFETY: the mask keeps the sums' load and store within row j
            // (k x d);
            // masked-out lanes are neither read nor written. A full block
            // is stored without a mask: a masked store is not forwarded to
            // the next row of the same cluster that loads the sums it
            // wrote.
            unsafe {
                let s = sums.add(j * d + 8 * b);
                let add = match w {
                    None => v,
                    Some(w) => _mm512_mul_pd(_mm512_set1_pd(w), v),
                };
                if m == 0xff {
                    _mm512_storeu_pd(s, _mm512_add_pd(_mm512_loadu_pd(s), add));
                } else {
                    _mm512_mask_storeu_pd(s, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, s), add));
                }
            }
            if with_loss {
                let at = j * d + 8 * b;
                // SAFETY: the mask keeps the load within row j of the
                // centres (k x d; add_labelled checked the labels).
                let c = unsafe {
                    match &c64 {
                        Some(c) => load_f64(c, at, m),
                        None => load_f64(centres.as_slice(), at, m),
                    }
                };
                let t = _mm512_sub_pd(v, c);
                lanes = _mm512_add_pd(lanes, _mm512_mul_pd(t, t));
            }
        }
        part.weights[j] += w.unwrap_or(1.0);
        part.counts[j] += 1;
        if with_loss {
            // SAFETY: AVX-512F is enabled here.
            let sq = unsafe { sum_tree_lanes(lanes) };
            // Unweighted, the baseline's `1.0 * sq` is `sq` itself.
            loss += match w {
                Some(w) => w * sq,
                None => sq,
            };
        }
    }
    part.loss = loss;
}

/// [`accumulate_avx512`] for rows of at most eight columns (1,000,000 x 8):
/// one register a row, with the cluster sums and the centres in f64
/// copied into rows of eight (zero-padded) for the call, so that no load
/// or store is masked, and the weighting and the loss chosen at compile
/// time. Each sum still gets its rows in row order and each row's squared
/// distance the same lanes and tree, so the bits are the row-by-row loop's;
/// its generic form spent twice as long per row as the distance kernel,
/// on loop and branch overhead around a four-cycle loss chain.
///
/// # Safety
/// AVX-512F; `x.cols() <= 8`; every label names a centre; `weights` holds
/// one weight per row when `WEIGHTED`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn accumulate_narrow_avx512<T: Float, const WEIGHTED: bool, const LOSS: bool>(
    x: MatRef<'_, T>,
    weights: &[T],
    labels: &[u32],
    centres: MatRef<'_, T>,
    part: &mut ClusterStats,
) {
    use std::arch::x86_64::*;
    let (d, k) = (x.cols(), centres.rows());
    debug_assert!(d <= 8);
    let m: __mmask8 = last_block_mask(d);
    let mut sums = vec![0.0f64; 8 * k];
    let mut c64 = vec![0.0f64; if LOSS { 8 * k } else { 0 }];
    for j in 0..k {
        sums[8 * j..8 * j + d].copy_from_slice(&part.sums[j * d..(j + 1) * d]);
        if LOSS {
            for (c, v) in c64[8 * j..8 * j + d].iter_mut().zip(centres.row(j)) {
                *c = v.to_f64_exact();
            }
        }
    }
    let xs = x.as_slice();
    let sp = sums.as_mut_ptr();
    let mut loss = part.loss;
    for (i, &l) in labels.iter().enumerate() {
        let j = l as usize;
        // SAFETY: the mask keeps the load within row i of x (n x d, d <= 8).
        let v = unsafe { load_f64(xs, i * d, m) };
        let w = if WEIGHTED {
            weights[i].to_f64_exact()
        } else {
            1.0
        };
        // SAFETY: j < k, and `sums` and `c64` hold eight values a centre.
        unsafe {
            let s = sp.add(8 * j);
            let add = if WEIGHTED {
                _mm512_mul_pd(_mm512_set1_pd(w), v)
            } else {
                v
            };
            _mm512_storeu_pd(s, _mm512_add_pd(_mm512_loadu_pd(s), add));
            if LOSS {
                let t = _mm512_sub_pd(v, _mm512_loadu_pd(c64.as_ptr().add(8 * j)));
                // `0 + t * t` in the general loop is `t * t` itself.
                let sq = sum_tree_lanes(_mm512_mul_pd(t, t));
                loss += if WEIGHTED { w * sq } else { sq };
            }
        }
        part.weights[j] += w;
        part.counts[j] += 1;
    }
    for j in 0..k {
        part.sums[j * d..(j + 1) * d].copy_from_slice(&sums[8 * j..8 * j + d]);
    }
    if LOSS {
        part.loss = loss;
    }
}

/// Rows of at least this many blocks of eight take
/// [`accumulate_grouped_avx512`]: the loss of a wide row is one chain of
/// `d / 8` dependent additions, which set the pace of the row-by-row loop
/// (Fashion-MNIST: 98 additions, four cycles each, twice the row's other
/// work), while its cluster's sums and centre (12 KiB a cluster in f64)
/// came from L2 for every row. Narrower rows stay in the row-by-row loop,
/// whose short chains the processor overlaps across rows by itself: at
/// 32 columns (300,000 x 32, k = 256) grouping cost a counting sort and a
/// scattered read of the rows for nothing, and the Estimator's 20 steps
/// took 230 ms in groups against 190 ms row by row (AMD EPYC, Zen 4, 2
/// threads).
const GROUPED_BLOCKS: usize = 5;

/// Rows of one cluster taken together by [`accumulate_grouped_avx512`].
const GROUP_ROWS: usize = 4;

/// [`accumulate_avx512`] with the loss (`c64`: the centres in f64, `k x
/// d`) for wide rows, cluster by cluster: each cluster's rows, in row
/// order, [`GROUP_ROWS`] at a time, so that their loss chains overlap and
/// the cluster's sums and centre are read once per group and stay in L1.
/// Every sum still gets its rows in row order (`s + v1`, then `+ v2`, ...),
/// each row's squared distance is the same lanes and tree, and the
/// weights and the loss are added afterwards in row order: the very bits of
/// the row-by-row loop.
///
/// # Safety
/// AVX-512F; every label below `c64.len() / d`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn accumulate_grouped_avx512<T: Float>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    c64: &[f64],
    part: &mut ClusterStats,
) {
    let (n, d) = (labels.len(), x.cols());
    let k = c64.len() / d.max(1);
    let by_cluster = RowsByCluster::new(labels, k);
    let mut row_loss = vec![0.0f64; n];
    let weight = |i: usize| weights.map(|w| w[i].to_f64_exact());
    for j in 0..k {
        let mut groups = by_cluster.rows(j).chunks_exact(GROUP_ROWS);
        for g in &mut groups {
            let rows: [usize; GROUP_ROWS] = std::array::from_fn(|r| g[r] as usize);
            // SAFETY: the rows are rows of x, j a centre (the caller).
            let sq = unsafe { add_rows::<T, GROUP_ROWS>(x, &rows, weight, c64, j, part) };
            for (r, v) in rows.iter().zip(sq) {
                row_loss[*r] = v;
            }
        }
        for &i in groups.remainder() {
            let i = i as usize;
            // SAFETY: as above.
            let [sq] = unsafe { add_rows::<T, 1>(x, &[i], weight, c64, j, part) };
            row_loss[i] = sq;
        }
    }
    let mut loss = part.loss;
    for (i, &l) in labels.iter().enumerate() {
        let j = l as usize;
        let w = weight(i);
        part.weights[j] += w.unwrap_or(1.0);
        part.counts[j] += 1;
        // Unweighted, the baseline's `1.0 * sq` is `sq` itself.
        loss += match w {
            Some(w) => w * row_loss[i],
            None => row_loss[i],
        };
    }
    part.loss = loss;
}

/// Adds rows `rows` (all of cluster `j`, in row order) to cluster `j`'s
/// sums in `part`, each times its weight, and returns their squared
/// distances to centre `j` of `c64` (the lanes and tree of
/// [`accumulate_avx512`]).
///
/// # Safety
/// AVX-512F; `rows` are rows of `x`, `j` a row of `c64` (`k x d`) and of
/// `part`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn add_rows<T: Float, const R: usize>(
    x: MatRef<'_, T>,
    rows: &[usize; R],
    weight: impl Fn(usize) -> Option<f64>,
    c64: &[f64],
    j: usize,
    part: &mut ClusterStats,
) -> [f64; R] {
    use std::arch::x86_64::*;
    let d = x.cols();
    let blocks = d.div_ceil(8);
    let last: __mmask8 = last_block_mask(d);
    let xs = x.as_slice();
    let w: [Option<f64>; R] = std::array::from_fn(|r| weight(rows[r]));
    let sums = part.sums[j * d..(j + 1) * d].as_mut_ptr();
    let mut lanes = [_mm512_setzero_pd(); R];
    for b in 0..blocks {
        let m = if b + 1 == blocks { last } else { 0xff };
        // SAFETY: the mask keeps every access within columns
        // 8b .. min(8b + 8, d) of a row of x, of the centre and of the
        // cluster's sums.
        unsafe {
            let v: [__m512d; R] = std::array::from_fn(|r| load_f64(xs, rows[r] * d + 8 * b, m));
            let s = sums.add(8 * b);
            let mut acc = if m == 0xff {
                _mm512_loadu_pd(s)
            } else {
                _mm512_maskz_loadu_pd(m, s)
            };
            for r in 0..R {
                let add = match w[r] {
                    None => v[r],
                    Some(w) => _mm512_mul_pd(_mm512_set1_pd(w), v[r]),
                };
                acc = _mm512_add_pd(acc, add);
            }
            if m == 0xff {
                _mm512_storeu_pd(s, acc);
            } else {
                _mm512_mask_storeu_pd(s, m, acc);
            }
            let c = load_f64(c64, j * d + 8 * b, m);
            for r in 0..R {
                let t = _mm512_sub_pd(v[r], c);
                lanes[r] = _mm512_add_pd(lanes[r], _mm512_mul_pd(t, t));
            }
        }
    }
    // SAFETY: AVX-512F is enabled here, as the callee needs.
    lanes.map(|l| unsafe { sum_tree_lanes(l) })
}

/// [`sum_tree`] of eight f64 lanes: `((a0 + a4) + (a1 + a5)) + ((a2 + a6)
/// + (a3 + a7))`.
///
/// # Safety
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn sum_tree_lanes(lanes: std::arch::x86_64::__m512d) -> f64 {
    use std::arch::x86_64::*;
    let s = _mm256_add_pd(
        _mm512_castpd512_pd256(lanes),
        _mm512_extractf64x4_pd(lanes, 1),
    );
    let (lo, hi) = (_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    let pairs = _mm_add_pd(_mm_unpacklo_pd(lo, hi), _mm_unpackhi_pd(lo, hi));
    _mm_cvtsd_f64(pairs) + _mm_cvtsd_f64(_mm_unpackhi_pd(pairs, pairs))
}

/// The mask of the last block of eight of a row of `d` values (all eight
/// where `d` is a multiple of eight).
#[cfg(target_arch = "x86_64")]
fn last_block_mask(d: usize) -> u8 {
    match d % 8 {
        0 => 0xff,
        r => (1u8 << r) - 1,
    }
}

/// The eight values of `v` from `at` (those the mask `m` keeps, zeros
/// elsewhere), widened exactly to f64; not f32 is f64 (`Float` is sealed).
/// A full block (`m == 0xff`) is loaded without a mask.
///
/// # Safety
/// The lanes `m` keeps must lie within `v`; masked-out lanes are not read.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_f64<U: Float>(
    v: &[U],
    at: usize,
    m: std::arch::x86_64::__mmask8,
) -> std::arch::x86_64::__m512d {
    use std::arch::x86_64::*;
    let full = m == 0xff;
    // SAFETY: the caller keeps the kept lanes within `v`.
    unsafe {
        match U::as_f32(v) {
            Some(v) if full => _mm512_cvtps_pd(_mm256_loadu_ps(v.as_ptr().add(at))),
            Some(v) => _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps(
                __mmask16::from(m),
                v.as_ptr().add(at),
            ))),
            None => {
                let v: &[f64] = bytemuck::cast_slice(v);
                if full {
                    _mm512_loadu_pd(v.as_ptr().add(at))
                } else {
                    _mm512_maskz_loadu_pd(m, v.as_ptr().add(at))
                }
            }
        }
    }
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

/// `||a - b||^2` in `f64` with eight running sums (element `p` into sum
/// `p % 8`, combined in a fixed order), so that long rows do not wait on
/// one chain of additions; the order depends only on the length.
#[inline(always)]
pub(crate) fn sq_dist_blocked<T: Float, U: Float>(a: &[T], b: &[U]) -> f64 {
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
    /// brute-force computation, in f32 and f64, at widths below, at and
    /// past one register of eight and with every remainder of eight.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        for d in [37, 1, 2, 7, 8, 9, 15, 16, 17, 32, 40, 64, 131] {
            same_bits_at_width::<f32>(d);
            same_bits_at_width::<f64>(d);
        }
    }

    fn same_bits_at_width<T: Float>(d: usize) {
        let (n, k) = (303, 5);
        let x: Vec<T> = (0..n * d)
            .map(|i| T::from_f64_lossy((i as f64 * 0.377).sin() * 1e3))
            .collect();
        let c: Vec<T> = (0..k * d)
            .map(|i| T::from_f64_lossy((i as f64 * 0.91).cos() * 7e2))
            .collect();
        let w: Vec<T> = (0..n)
            .map(|i| T::from_f64_lossy((i % 5) as f64 * 0.3))
            .collect();
        // Runs of three rows of one cluster (a row adds to the sums the
        // row before it has just written), or scattered labels with one
        // cluster of a single row and one of none (the grouped wide-row
        // path's leftovers).
        let runs: Vec<u32> = (0..n).map(|i| (i / 3 * 7 % k) as u32).collect();
        let scattered: Vec<u32> = (0..n)
            .map(|i| {
                if i == 150 {
                    4
                } else {
                    (i * i * 13 % 7 % 3) as u32
                }
            })
            .collect();
        for labels in [runs, scattered] {
            same_bits_with_labels(d, n, k, &x, &c, &w, &labels);
        }
    }

    fn same_bits_with_labels<T: Float>(
        d: usize,
        n: usize,
        k: usize,
        x: &[T],
        c: &[T],
        w: &[T],
        labels: &[u32],
    ) {
        let xm = MatRef::new(x, n, d).unwrap();
        let cm = MatRef::new(c, k, d).unwrap();
        for weights in [None, Some(w)] {
            let mut fast = ClusterStats::new(k, d);
            let mut base = ClusterStats::new(k, d);
            add_labelled(xm, weights, labels, cm, &mut fast, true);
            accumulate_body(xm, weights, labels, cm, &mut base, true, sq_dist_blocked);
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
            add_labelled(xm, weights, labels, cm, &mut quiet, false);
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
            // The loss alone: add_labelled's loss, and the inertia's
            // definition (`batch::sq_dist`, row after row, from a running
            // sum), to the bit, in one call or in uneven pieces.
            let c64 = widened(c);
            assert_eq!(
                add_loss(xm, weights, labels, &c64, 0.0).to_bits(),
                fast.loss.to_bits()
            );
            let start = 0.5;
            let direct = (0..n).fold(start, |s, i| {
                let j = labels[i] as usize;
                let wi = weights.map_or(1.0, |w| w[i].to_f64_exact());
                s + wi * crate::kernels::sq_dist_blocked(xm.row(i), cm.row(j))
            });
            let mut pieces = start;
            for (b0, b1) in [(0, 3), (3, 4), (4, 131), (131, n)] {
                let w = weights.map(|w| &w[b0..b1]);
                pieces = add_loss(xm.slice_rows(b0, b1), w, &labels[b0..b1], &c64, pieces);
            }
            assert_eq!(pieces.to_bits(), direct.to_bits());
            assert_eq!(
                add_loss(xm, weights, labels, &c64, start).to_bits(),
                direct.to_bits()
            );
            let mut loss = 0.0;
            for i in 0..n {
                let (j, wi) = (
                    labels[i] as usize,
                    weights.map_or(1.0, |w| w[i].to_f64_exact()),
                );
                let dd: f64 = (0..d)
                    .map(|p| (x[i * d + p].to_f64_exact() - c[j * d + p].to_f64_exact()).powi(2))
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
                    .map(|&i| weights.map_or(1.0, |w| w[i].to_f64_exact()))
                    .sum();
                assert!((fast.weights[j] - wsum).abs() <= 1e-12 * (1.0 + wsum));
                for p in 0..d {
                    let s: f64 = members
                        .iter()
                        .map(|&i| {
                            weights.map_or(1.0, |w| w[i].to_f64_exact())
                                * x[i * d + p].to_f64_exact()
                        })
                        .sum();
                    assert!((fast.sums[j * d + p] - s).abs() <= 1e-9 * (1.0 + s.abs()));
                }
            }
        }
    }
}
