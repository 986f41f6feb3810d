//! The exact side of the bf16 kernel: candidates within the margin, f64
//! decisions between them, and each row's distance and sums.
//!
//! # Safety
//!
//! Every `unsafe fn` here has one contract: the CPU runs AVX-512F/BW/DQ/VL
//! and FMA (what either engine's token proves; `run` holds one), and the
//! slices and pointers it is given are valid for the extents its
//! documentation names.

use std::arch::x86_64::*;

use super::{first_lanes, Bf16Centres, Margin, BLOCK_ROWS, MAX_NORM_PRODUCT, U32};
use crate::kernels::for_each_sq_dist;
use crate::kernels::scalar::{inv_norm, ClusterStats, Metric};
use crate::matrix::MatRef;

/// The exact nearest of `candidates` (ascending) to row `x`, lowest index
/// on ties: squared distances (or, under cosine, minus the dot products with
/// the normalised centres) in f64, where the rounding of d products of f32
/// values is far below any difference the margin lets through. Centre 0
/// when none compares below +inf (NaN rows), as every kernel does.
///
/// Up to four candidates at a time share one widening of the row and keep
/// eight independent accumulator chains in flight (one candidate's two
/// chains would wait on the fused multiply-add's latency at every step);
/// each candidate's value is summed in the same order whichever group it
/// falls in, so the result does not depend on the grouping.
#[inline(always)]
unsafe fn nearest_exactly(c: &Bf16Centres, centres: &[f32], x: &[f32], candidates: &[u32]) -> u32 {
    // SAFETY: the module contract (see the top of this file): the CPU runs AVX-512F/BW/DQ/VL and FMA,
    // and the slices and pointers are as documented above.
    unsafe {
        let mut best = f64::INFINITY;
        let mut label = 0u32;
        // Candidates in ascending order, each compared as it comes.
        let mut consider = |js: &[u32], values: &[f64]| {
            for (&j, &v) in js.iter().zip(values) {
                if v < best {
                    best = v;
                    label = j;
                }
            }
        };
        let mut fours = candidates.chunks_exact(4);
        for four in &mut fours {
            consider(four, &exact_values::<4>(c, centres, x, four));
        }
        let rest = fours.remainder();
        match rest.len() {
            3 => consider(rest, &exact_values::<3>(c, centres, x, rest)),
            2 => consider(rest, &exact_values::<2>(c, centres, x, rest)),
            1 => consider(rest, &exact_values::<1>(c, centres, x, rest)),
            _ => {}
        }
        label
    }
}

/// [`nearest_exactly`]'s values of the `N` centres `js` for row `x`: for
/// each, two f64 sums over alternate halves of each 16 values, joined once.
#[inline(always)]
unsafe fn exact_values<const N: usize>(
    c: &Bf16Centres,
    centres: &[f32],
    x: &[f32],
    js: &[u32],
) -> [f64; N] {
    // SAFETY: the module contract (see the top of this file): the CPU runs AVX-512F/BW/DQ/VL and FMA,
    // and the slices and pointers are as documented above.
    unsafe {
        let d = c.d;
        let cj: [*const f32; N] = std::array::from_fn(|t| centres.as_ptr().add(js[t] as usize * d));
        let mut acc0 = [_mm512_setzero_pd(); N];
        let mut acc1 = [_mm512_setzero_pd(); N];
        let mut p = 0;
        while p < d {
            let m = first_lanes(d - p);
            let (x0, x1) = widen(_mm512_maskz_loadu_ps(m, x.as_ptr().add(p)));
            for t in 0..N {
                let (c0, c1) = widen(_mm512_maskz_loadu_ps(m, cj[t].add(p)));
                match c.metric {
                    Metric::SquaredEuclidean => {
                        let (t0, t1) = (_mm512_sub_pd(x0, c0), _mm512_sub_pd(x1, c1));
                        acc0[t] = _mm512_fmadd_pd(t0, t0, acc0[t]);
                        acc1[t] = _mm512_fmadd_pd(t1, t1, acc1[t]);
                    }
                    Metric::Cosine => {
                        acc0[t] = _mm512_fnmadd_pd(x0, c0, acc0[t]);
                        acc1[t] = _mm512_fnmadd_pd(x1, c1, acc1[t]);
                    }
                }
            }
            p += 16;
        }
        std::array::from_fn(|t| _mm512_reduce_add_pd(_mm512_add_pd(acc0[t], acc1[t])))
    }
}

/// The two halves of sixteen f32 lanes as f64.
#[inline(always)]
unsafe fn widen(v: __m512) -> (__m512d, __m512d) {
    // SAFETY: the module contract (see the top of this file): the CPU runs AVX-512F/BW/DQ/VL and FMA,
    // and the slices and pointers are as documented above.
    unsafe {
        (
            _mm512_cvtps_pd(_mm512_castps512_ps256(v)),
            _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                _mm512_castps_pd(v),
            ))),
        )
    }
}

/// Labels of up to 16 rows (`x`, their norm bounds `norms`) from their
/// approximate dot products (`dots[j * 32 + lane]`): one vector lane per
/// row, so the bound `U` of each row is a lane-wise minimum and the
/// candidate test one comparison per centre for all rows. A row with one
/// candidate takes it; others are decided exactly (see the module docs).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn decide_lanes(
    c: &Bf16Centres,
    margin: &Margin,
    centres: &[f32],
    x: &[f32],
    norms: &[f64],
    dots: *const f32,
    labels: &mut [u32],
    candidates: &mut Candidates,
    all: &[u32],
) -> usize {
    // SAFETY: the module contract (see the top of this file): the CPU runs AVX-512F/BW/DQ/VL and FMA,
    // and the slices and pointers are as documented above.
    unsafe {
        let (d, k) = (c.d, c.k);
        let lanes = labels.len();
        let mut er = [0.0f32; 16];
        let mut eta2 = [0.0f32; 16];
        let mut bounded = 0u32;
        // eta: flushed subnormal inputs and results of the products, each below
        // 2^-126 times a norm (or alone); negligible unless the data are tiny.
        let tiny = (2.0f64).powi(-126);
        for l in 0..lanes {
            let nx = norms[l];
            if nx.is_finite() && nx * c.max_norm <= MAX_NORM_PRODUCT {
                bounded |= 1 << l;
                er[l] = (nx * (1.0 + 1e-6)) as f32;
                let eta =
                    tiny * ((2 * c.dpad) as f64 * (nx + c.max_norm) + (4 * c.dpad + d + 8) as f64);
                eta2[l] = (2.0 * eta) as f32;
            }
        }
        let erv = _mm512_loadu_ps(er.as_ptr());
        let (up, down, nrm) = (
            margin.bias_up.as_ptr(),
            margin.bias_down.as_ptr(),
            margin.weights.as_ptr(),
        );
        // A_j + E_j = ||x|| w_j - (dot_j - b_up_j); four running minima so that
        // the loop is not bound by the latency of one.
        let upper = |j: usize| {
            let q = _mm512_sub_ps(
                _mm512_loadu_ps(dots.add(j * BLOCK_ROWS)),
                _mm512_set1_ps(*up.add(j)),
            );
            _mm512_fmsub_ps(erv, _mm512_set1_ps(*nrm.add(j)), q)
        };
        let mut u = [_mm512_set1_ps(f32::INFINITY); 4];
        let mut j = 0;
        while j + 4 <= k {
            for (t, ut) in u.iter_mut().enumerate() {
                *ut = _mm512_min_ps(*ut, upper(j + t));
            }
            j += 4;
        }
        while j < k {
            u[0] = _mm512_min_ps(u[0], upper(j));
            j += 1;
        }
        let u = _mm512_min_ps(_mm512_min_ps(u[0], u[1]), _mm512_min_ps(u[2], u[3]));
        // The threshold, nudged up by its own f32 rounding.
        let abs_u = _mm512_abs_ps(u);
        let thr = _mm512_add_ps(
            _mm512_fmadd_ps(abs_u, _mm512_set1_ps((8.0 * U32) as f32), u),
            _mm512_loadu_ps(eta2.as_ptr()),
        );
        // A_j - E_j = -(||x|| w_j) - (dot_j - b_down_j) <= thr: each row's
        // candidates, in ascending order (few per row: the loop mostly tests an
        // empty mask).
        candidates.clear();
        for j in 0..k {
            let q = _mm512_sub_ps(
                _mm512_loadu_ps(dots.add(j * BLOCK_ROWS)),
                _mm512_set1_ps(*down.add(j)),
            );
            let lower = _mm512_fnmsub_ps(erv, _mm512_set1_ps(*nrm.add(j)), q);
            let mut m = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(lower, thr) as u32;
            while m != 0 {
                candidates.push(m.trailing_zeros() as usize, j as u32);
                m &= m - 1;
            }
        }
        candidates.group();
        let mut extra = 0;
        for l in 0..lanes {
            let row = &x[l * d..(l + 1) * d];
            let mine = candidates.of(l);
            labels[l] = match mine.len() {
                _ if bounded & (1 << l) == 0 => nearest_exactly(c, centres, row, all),
                0 => nearest_exactly(c, centres, row, all),
                1 => mine[0],
                n => {
                    extra += n - 1;
                    nearest_exactly(c, centres, row, mine)
                }
            };
        }
        extra
    }
}

/// Candidate centres of 16 lanes (rows): pushed as found, in ascending
/// centre order, then grouped by lane.
#[derive(Default)]
pub(super) struct Candidates {
    found: Vec<(u8, u32)>,
    counts: [usize; 16],
    start: [usize; 17],
    grouped: Vec<u32>,
}

impl Candidates {
    fn clear(&mut self) {
        self.found.clear();
        self.counts = [0; 16];
    }
    #[inline(always)]
    fn push(&mut self, lane: usize, j: u32) {
        self.found.push((lane as u8, j));
        self.counts[lane] += 1;
    }
    fn group(&mut self) {
        self.start[0] = 0;
        for l in 0..16 {
            self.start[l + 1] = self.start[l] + self.counts[l];
        }
        self.grouped.resize(self.found.len(), 0);
        let mut next = self.start;
        for &(l, j) in &self.found {
            self.grouped[next[l as usize]] = j;
            next[l as usize] += 1;
        }
    }
    fn of(&self, lane: usize) -> &[u32] {
        &self.grouped[self.start[lane]..self.start[lane + 1]]
    }
}

/// Distances of the chosen centres of rows `range`, computed directly, and
/// with `part` the rows added to the sums (as the AVX-512 kernel's
/// finishing pass adds them: row order, `scale * x` in f64). With `chain`
/// and `part`, the rows are added as `add_labelled` adds them: weighted,
/// never normalised, each row's f64 distance to its centre added to
/// `chain` in row order, and no distance into `scores`. Without `scores`
/// or `part`, nothing (the labels are all that was asked for).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn finish(
    c: &Bf16Centres,
    x: &[f32],
    centres: &[f32],
    range: std::ops::Range<usize>,
    labels: &[u32],
    mut scores: Option<&mut [f32]>,
    weights: Option<&[f32]>,
    mut part: Option<&mut ClusterStats>,
    loss: &mut [f64; 4],
    chain: Option<&mut f64>,
) {
    // SAFETY: the module contract (see the top of this file): the CPU runs AVX-512F/BW/DQ/VL and FMA,
    // and the slices and pointers are as documented above.
    unsafe {
        let d = c.d;
        if let (Some(p), Some(chain)) = (part.as_deref_mut(), chain) {
            // The sums in row order, then the rows' f64 distances (several
            // rows side by side) added to the loss in row order.
            for i in range.clone() {
                let row = &x[i * d..(i + 1) * d];
                let j = labels[i] as usize;
                let w = weights.map_or(1.0, |w| w[i] as f64);
                let acc = &mut p.sums[j * d..(j + 1) * d];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += w * v as f64;
                }
                p.weights[j] += w;
                p.counts[j] += 1;
            }
            let rows = MatRef::new(&x[range.start * d..range.end * d], range.len(), d)
                .expect("the block's rows are whole rows of width d");
            for_each_sq_dist(rows, &labels[range.clone()], centres, |r, sq| {
                *chain += weights.map_or(1.0, |w| w[range.start + r] as f64) * sq;
            });
            return;
        }
        if scores.is_none() && part.is_none() {
            // Labels alone (`kernels::assign_labels`).
            return;
        }
        for i in range {
            let row = &x[i * d..(i + 1) * d];
            let j = labels[i] as usize;
            let cj = &centres[j * d..(j + 1) * d];
            let (s, inv) = match c.metric {
                Metric::SquaredEuclidean => (sq_diff(row, cj), 1.0),
                Metric::Cosine => {
                    let inv = inv_norm(row);
                    (1.0 - dot(row, cj) * inv as f32, inv)
                }
            };
            if let Some(scores) = scores.as_deref_mut() {
                scores[i] = s;
            }
            if let Some(p) = part.as_deref_mut() {
                let w = weights.map_or(1.0, |w| w[i] as f64);
                let scale = w * inv;
                let acc = &mut p.sums[j * d..(j + 1) * d];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += scale * v as f64;
                }
                p.weights[j] += w;
                p.counts[j] += 1;
                loss[i % 4] += w * s as f64;
            }
        }
    }
}

/// `sum_p f(a_p, b_p, acc)` in f32 over 16 lanes of the dimensions, the
/// blocks of 16 taken in turn by four running sums (one chain of fused
/// operations would wait on its latency at every block), joined as
/// `(s0 + s1) + (s2 + s3)`.
#[inline(always)]
unsafe fn lanes4(a: &[f32], b: &[f32], f: impl Fn(__m512, __m512, __m512) -> __m512) -> f32 {
    // SAFETY: the module contract (see the top of this file): the CPU runs AVX-512F/BW/DQ/VL and FMA,
    // and the slices and pointers are as documented above.
    unsafe {
        let d = a.len();
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut p = 0;
        let mut t = 0;
        while p < d {
            let m = first_lanes(d - p);
            let (av, bv) = (
                _mm512_maskz_loadu_ps(m, a.as_ptr().add(p)),
                _mm512_maskz_loadu_ps(m, b.as_ptr().add(p)),
            );
            acc[t] = f(av, bv, acc[t]);
            t = (t + 1) % 4;
            p += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    }
}

/// `||a - b||^2` in f32.
#[inline(always)]
unsafe fn sq_diff(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: the module contract (see the top of this file).
    unsafe {
        lanes4(a, b, |av, bv, acc| {
            let t = _mm512_sub_ps(av, bv);
            _mm512_fmadd_ps(t, t, acc)
        })
    }
}

/// `a . b` in f32.
#[inline(always)]
unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: the module contract (see the top of this file).
    unsafe { lanes4(a, b, |av, bv, acc| _mm512_fmadd_ps(av, bv, acc)) }
}
