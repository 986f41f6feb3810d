//! The tile kernel: one chunk of rows against all centres, for any `d`.
//!
//! A tile of `MR` rows by `NV` panels (see `pack.rs`) keeps its `MR x NV`
//! accumulators in registers, starts them at the centre bias
//! (`||c||^2 / 2` under squared Euclidean, 0 under cosine) and subtracts
//! `x_p * c_p` for each dimension: the value left is `||c||^2/2 - x.c`, whose
//! argmin is the nearest centre, or `-x.c`, whose argmin is the most similar
//! normalised centre. Each row keeps a vector of per-lane minima and their
//! centre indices; one horizontal argmin per row turns them into a label.
//!
//! A row group's minima stay in registers across a whole block of panels
//! and only its label and value are written. For `d <= 16` (where the argmin
//! costs as much as the multiply) the tile is 4 rows (AVX-512) so that
//! accumulators and minima all stay in registers, rows are read in place,
//! and one block holds over 16,000 centres; for larger `d` the tile is 12
//! rows, whose values are first interleaved dimension-major so one pointer
//! feeds all the broadcasts. When all centres fit in one panel
//! (`k <= LANES`) the lane of the minimum is the label and the index vectors
//! are skipped. After the argmin, one pass per chunk ([`finish_rows`]) turns
//! raw values into distances and adds rows to the partial sums.
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

use super::pack::Job;
use super::scalar::{inv_norm, sq_norm, ClusterStats, Metric};
use super::simd::{self, Simd, MAX_LANES};
use crate::float::Float;
#[allow(unused_imports)]
use num_traits::{Float as _, One as _, Zero as _};

/// The largest `d` served by the register-resident tile shape (and by the
/// lane-parallel path).
pub(crate) const SMALL_D: usize = 16;

/// The `MR x NV` values `bias - x.c` of `MR` rows against the `NV` panels
/// starting at `panel`. Value `p` of row `r` is at `xp[r * sr + p * sp]`:
/// `(d, 1)` for rows in place, `(1, MR)` for rows interleaved into a
/// scratch buffer, where one pointer serves every row (fewer address
/// computations in the loop).
#[inline(always)]
pub(crate) unsafe fn tile<S: Simd, const MR: usize, const NV: usize>(
    xp: *const S::T,
    sr: usize,
    sp: usize,
    d: usize,
    panel: *const S::T,
    bias: *const S::T,
) -> [[S::V; NV]; MR] {
    // SAFETY: the module contract (see the top of this file): the CPU runs `S`'s instruction set
    // and `job` is shaped as `dispatch::run` asserts, which keeps every pointer below in bounds.
    unsafe {
        let lanes = S::LANES;
        let pstride = d * lanes;
        let b: [S::V; NV] = std::array::from_fn(|v| S::load(bias.add(v * lanes)));
        let mut acc: [[S::V; NV]; MR] = [b; MR];
        for p in 0..d {
            let c: [S::V; NV] =
                std::array::from_fn(|v| S::load(panel.add(v * pstride + p * lanes)));

            for (r, acc_r) in acc.iter_mut().enumerate() {
                let xb = S::splat(*xp.add(r * sr + p * sp));
                for v in 0..NV {
                    acc_r[v] = S::fnmadd(xb, c[v], acc_r[v]);
                }
            }
        }
        acc
    }
}

/// Folds a tile into the rows' running per-lane minima; `idx` holds the
/// centre indices of the tile's first panel and `step` is `LANES` as a
/// vector. Panels arrive in increasing index order and only a strictly
/// smaller value replaces a minimum, so each lane keeps its lowest index.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // indices into the register tile read best
unsafe fn fold_min<S: Simd, const MR: usize, const NV: usize>(
    acc: [[S::V; NV]; MR],
    idx: S::V,
    step: S::V,
    bestv: &mut [S::V; MR],
    besti: &mut [S::V; MR],
) {
    // SAFETY: the module contract (see the top of this file): the CPU runs `S`'s instruction set
    // and `job` is shaped as `dispatch::run` asserts, which keeps every pointer below in bounds.
    unsafe {
        let mut iv = idx;
        for v in 0..NV {
            for r in 0..MR {
                let m = S::lt(acc[r][v], bestv[r]);
                bestv[r] = S::select(m, acc[r][v], bestv[r]);
                besti[r] = S::select(m, iv, besti[r]);
            }
            iv = S::add(iv, step);
        }
    }
}

/// Labels and raw values (`bias - x.c` of the chosen centre) of `MR` rows
/// starting at `row` over panels `q0..q1`; `first` says whether this is the
/// first centre block (else a row's earlier result is replaced only by a
/// strictly smaller value, which keeps the lowest index on ties). When
/// `interleave` is set the rows are first copied into `xbuf` (`MR * d`)
/// dimension-major.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn argmin_rows<S: Simd, const MR: usize>(
    job: &Job<'_, S::T>,
    row: usize,
    q0: usize,
    q1: usize,
    first: bool,
    iota: S::V,
    interleave: bool,
    xbuf: &mut [S::T],
    labels: &mut [u32],
    raw: &mut [S::T],
) {
    // SAFETY: the module contract (see the top of this file): the CPU runs `S`'s instruction set
    // and `job` is shaped as `dispatch::run` asserts, which keeps every pointer below in bounds.
    unsafe {
        let lanes = S::LANES;
        let d = job.d;
        let data = job.data.as_ptr();
        let bias = job.bias.as_ptr();
        let k = job.k;
        let src = &job.x[row * d..(row + MR) * d];
        let (xp, sr, sp) = if interleave && MR > 1 {
            for (r, src_row) in src.chunks_exact(d).enumerate() {
                for (p, &v) in src_row.iter().enumerate() {
                    xbuf[p * MR + r] = v;
                }
            }
            (xbuf.as_ptr(), 1, MR)
        } else {
            (src.as_ptr(), d, 1)
        };
        if q1 - q0 == 1 && first && job.panels == 1 {
            // All centres in one panel (k <= LANES): the lane is the index.
            let acc = tile::<S, MR, 1>(xp, sr, sp, d, data, bias);
            for r in 0..MR {
                let v = S::reduce_min(acc[r][0]);
                let lane = S::first_lane(S::eq(acc[r][0], S::splat(v))) as usize;
                // NaN rows compare equal to nothing: centre 0, like the reference.
                labels[row + r] = if lane < k { lane as u32 } else { 0 };
                raw[row + r] = v;
            }
            return;
        }
        let step = S::splat(S::T::from_f64_lossy(lanes as f64));
        let mut bestv = [S::splat(S::T::infinity()); MR];
        let mut besti = [S::splat(S::T::zero()); MR];
        let mut q = q0;
        while q + 2 <= q1 {
            let acc = tile::<S, MR, 2>(xp, sr, sp, d, data.add(q * d * lanes), bias.add(q * lanes));
            let idx = S::add(iota, S::splat(S::T::from_f64_lossy((q * lanes) as f64)));
            fold_min::<S, MR, 2>(acc, idx, step, &mut bestv, &mut besti);
            q += 2;
        }
        if q < q1 {
            let acc = tile::<S, MR, 1>(xp, sr, sp, d, data.add(q * d * lanes), bias.add(q * lanes));
            let idx = S::add(iota, S::splat(S::T::from_f64_lossy((q * lanes) as f64)));
            fold_min::<S, MR, 1>(acc, idx, step, &mut bestv, &mut besti);
        }
        let kf = k as f64;
        for r in 0..MR {
            let (v, i) = simd::argmin::<S>(bestv[r], besti[r]);
            let i = i.to_f64_exact();
            // NaN rows compare equal to nothing: centre 0, like the reference.
            let label = if i < kf { i as u32 } else { 0 };
            if first || v < raw[row + r] {
                labels[row + r] = label;
                raw[row + r] = v;
            }
        }
    }
}

/// Labels and raw values of every row of the job.
#[inline(always)]
pub(crate) unsafe fn argmin_chunk<S: Simd, const MR: usize>(
    job: &Job<'_, S::T>,
    labels: &mut [u32],
    raw: &mut [S::T],
) {
    // SAFETY: the module contract (see the top of this file): the CPU runs `S`'s instruction set
    // and `job` is shaped as `dispatch::run` asserts, which keeps every pointer below in bounds.
    unsafe {
        let rows = labels.len();
        debug_assert_eq!(job.lanes, S::LANES);
        debug_assert!(job.x.len() >= rows * job.d && raw.len() == rows);
        if job.panels == 0 {
            labels.fill(0);
            raw.fill(S::T::infinity());
            return;
        }
        let mut iota_buf = [S::T::zero(); MAX_LANES];
        for (i, v) in iota_buf.iter_mut().enumerate() {
            *v = S::T::from_f64_lossy(i as f64);
        }
        let iota = S::load(iota_buf.as_ptr());
        let interleave = job.d > SMALL_D;
        let mut xbuf = vec![S::T::zero(); if interleave { MR * job.d } else { 0 }];
        let mut q0 = 0;
        while q0 < job.panels {
            let q1 = (q0 + job.block_panels).min(job.panels);
            let first = q0 == 0;
            let mut r = 0;
            while r + MR <= rows {
                argmin_rows::<S, MR>(
                    job, r, q0, q1, first, iota, interleave, &mut xbuf, labels, raw,
                );
                r += MR;
            }
            while r < rows {
                argmin_rows::<S, 1>(job, r, q0, q1, first, iota, false, &mut xbuf, labels, raw);
                r += 1;
            }
            q0 = q1;
        }
    }
}

/// Turns each row's raw value (of its chosen centre) into the true distance,
/// `max(||x||^2 + 2 (||c||^2/2 - x.c), 0)` or `1 + (-x.c) / max(||x||, eps)`,
/// and with `part` adds the row, weighted and (under cosine) normalised, to
/// its cluster's sums: one pass over the rows after the argmin. `D` is the
/// row width when known at compile time (small `d`), else 0.
#[inline(always)]
unsafe fn finish<S: Simd, const D: usize>(
    job: &Job<'_, S::T>,
    weights: Option<&[S::T]>,
    labels: &[u32],
    scores: &mut [S::T],
    mut part: Option<&mut ClusterStats>,
) {
    // SAFETY: the module contract (see the top of this file): the CPU runs `S`'s instruction set
    // and `job` is shaped as `dispatch::run` asserts, which keeps every pointer below in bounds.
    unsafe {
        type T<S> = <S as Simd>::T;
        let d = if D > 0 { D } else { job.d };
        debug_assert_eq!(d, job.d);
        let two = T::<S>::one() + T::<S>::one();
        // The statistics as plain slices and locals: the loop then keeps them in
        // registers instead of reloading them through `part` every row.
        // Four running loss sums (row i goes to i % 4, combined in a fixed order
        // at the end) keep the loop off the latency of one long add chain.
        let mut loss = [0.0f64; 4];
        let (sums, cluster_weights, counts) = match part.as_deref_mut() {
            Some(p) => (&mut p.sums[..], &mut p.weights[..], &mut p.counts[..]),
            None => (&mut [][..], &mut [][..], &mut [][..]),
        };
        let accumulate = !counts.is_empty();
        for (i, (&j, s)) in labels.iter().zip(scores.iter_mut()).enumerate() {
            let row = &job.x[i * d..i * d + d];
            let inv = match job.metric {
                Metric::SquaredEuclidean => {
                    *s = (S::sq_norm(row.as_ptr(), d) + two * *s).max(T::<S>::zero());
                    1.0
                }
                Metric::Cosine => {
                    let inv = inv_norm(row);
                    *s = T::<S>::one() + *s * T::<S>::from_f64_lossy(inv);
                    inv
                }
            };
            if accumulate {
                let w = weights.map_or(1.0, |w| w[i].to_f64_exact());
                let j = j as usize;
                let scale = w * inv;
                let acc = &mut sums[j * d..j * d + d];
                S::accumulate_row(acc.as_mut_ptr(), row.as_ptr(), d, scale);
                cluster_weights[j] += w;
                counts[j] += 1;
                loss[i % 4] += w * s.to_f64_exact();
            }
        }
        if let Some(part) = part {
            part.loss += (loss[0] + loss[1]) + (loss[2] + loss[3]);
        }
    }
}

/// [`finish`] with the row width as a constant for `d <= 16`, so the
/// per-row loops unroll into a few vector instructions.
#[inline(always)]
pub(crate) unsafe fn finish_rows<S: Simd>(
    job: &Job<'_, S::T>,
    weights: Option<&[S::T]>,
    labels: &[u32],
    scores: &mut [S::T],
    part: Option<&mut ClusterStats>,
) {
    // SAFETY: the module contract (see the top of this file): the CPU runs `S`'s instruction set
    // and `job` is shaped as `dispatch::run` asserts, which keeps every pointer below in bounds.
    unsafe {
        macro_rules! by_width {
            ($($w:literal)*) => {
                match job.d {
                    $($w => finish::<S, $w>(job, weights, labels, scores, part),)*
                    _ => finish::<S, 0>(job, weights, labels, scores, part),
                }
            };
        }
        by_width!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    }
}

/// Every distance of the job's rows, row-major `rows x k` into `out`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
pub(crate) unsafe fn distances_body<S: Simd, const MR: usize>(
    job: &Job<'_, S::T>,
    out: &mut [S::T],
) {
    // SAFETY: the module contract (see the top of this file): the CPU runs `S`'s instruction set
    // and `job` is shaped as `dispatch::run` asserts, which keeps every pointer below in bounds.
    unsafe {
        let (d, k, lanes) = (job.d, job.k, S::LANES);
        if k == 0 {
            return;
        }
        let rows = out.len() / k;
        let two = S::splat(S::T::one() + S::T::one());
        let zero = S::splat(S::T::zero());
        let one = S::splat(S::T::one());
        let mut norms = [S::T::zero(); MR];
        let mut spill = [S::T::zero(); MAX_LANES];
        let data = job.data.as_ptr();
        let bias = job.bias.as_ptr();
        let mut store_rows = |r0: usize, nr: usize, q: usize, vals: &[S::V], norms: &[S::T]| {
            for r in 0..nr {
                let v = match job.metric {
                    Metric::SquaredEuclidean => {
                        S::max(S::fmadd(two, vals[r], S::splat(norms[r])), zero)
                    }
                    Metric::Cosine => S::fmadd(vals[r], S::splat(norms[r]), one),
                };
                let col = q * lanes;
                let dst = &mut out[(r0 + r) * k + col..(r0 + r + 1) * k];
                if dst.len() >= lanes {
                    S::store(dst.as_mut_ptr(), v);
                } else {
                    S::store(spill.as_mut_ptr(), v);
                    dst.copy_from_slice(&spill[..dst.len()]);
                }
            }
        };
        let norm_of = |row: &[S::T]| match job.metric {
            Metric::SquaredEuclidean => sq_norm(row),
            Metric::Cosine => S::T::from_f64_lossy(inv_norm(row)),
        };
        let mut q0 = 0;
        while q0 < job.panels {
            let q1 = (q0 + job.block_panels).min(job.panels);
            let mut r = 0;
            while r < rows {
                let nr = if r + MR <= rows { MR } else { 1 };
                for i in 0..nr {
                    norms[i] = norm_of(&job.x[(r + i) * d..(r + i + 1) * d]);
                }
                let xp = job.x.as_ptr().add(r * d);
                for q in q0..q1 {
                    let p = data.add(q * d * lanes);
                    let b = bias.add(q * lanes);
                    if nr == MR {
                        let acc = tile::<S, MR, 1>(xp, d, 1, d, p, b);
                        let vals: [S::V; MR] = std::array::from_fn(|i| acc[i][0]);
                        store_rows(r, MR, q, &vals, &norms);
                    } else {
                        let acc = tile::<S, 1, 1>(xp, d, 1, d, p, b);
                        store_rows(r, 1, q, &[acc[0][0]], &norms);
                    }
                }
                r += nr;
            }
            q0 = q1;
        }
    }
}
