//! The blocked kernels: one chunk of rows against all centres.
//!
//! Centres are packed into panels of `LANES` centres stored dimension-major
//! (`panel[p][lane]`), so one vector load fetches dimension `p` of `LANES`
//! centres. A tile of `MR` rows by `NV` panels keeps its `MR x NV`
//! accumulators in registers, starts them at the centre bias
//! (`||c||^2 / 2` under squared Euclidean, 0 under cosine) and subtracts
//! `x_p * c_p` for each dimension: the value left is `||c||^2/2 - x.c`, whose
//! argmin is the nearest centre, or `-x.c`, whose argmin is the most similar
//! normalised centre. Each row keeps a vector of per-lane minima and their
//! centre indices; one horizontal argmin per row turns them into a label.
//!
//! Panels are visited in blocks of at most 1 MiB, half the 2 MB L2, because
//! each block is re-read by every row group of the chunk. A row group's
//! minima stay in registers across a whole block and only its label and
//! value are written. For `d <= 16` (where the argmin costs as much as the
//! multiply) the tile is 4 rows (AVX-512) so that accumulators and minima
//! all stay in registers, rows are read in place, and one block holds over
//! 16,000 centres; for larger `d` the tile is 12 rows, whose values are first
//! interleaved dimension-major so one pointer feeds all the broadcasts. When
//! all centres fit in one panel (`k <= LANES`) the lane of the minimum is the
//! label and the index vectors are skipped. After the argmin, one pass per
//! chunk turns raw values into distances and adds rows to the partial sums.
//!
//! Everything here is generic over [`Simd`] and `#[inline(always)]`; the
//! `*_avx512`, `*_avx2` and `*_portable` entry points at the bottom compile
//! it once per instruction set under the matching `#[target_feature]`.

use super::simd::{self, Simd, MAX_LANES};
use super::Metric;
use crate::float::Float;
#[allow(unused_imports)]
use num_traits::{Float as _, One as _, Zero as _};

/// The instruction sets the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// Plain arrays, any target.
    Portable,
    /// AVX2 + FMA (x86-64).
    Avx2,
    /// AVX-512F (x86-64).
    Avx512,
}

impl Path {
    /// The fastest path this CPU runs.
    pub(crate) fn detect() -> Path {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Path::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Path::Avx2;
            }
        }
        Path::Portable
    }

    /// Whether this CPU can run the path.
    pub(crate) fn available(self) -> bool {
        match self {
            Path::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Centres per panel on this path for element type `F`.
    pub(crate) fn lanes<F: KernelFloat>(self) -> usize {
        match self {
            Path::Portable => <F::Portable as Simd>::LANES,
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => <F::Avx2 as Simd>::LANES,
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => <F::Avx512 as Simd>::LANES,
            #[cfg(not(target_arch = "x86_64"))]
            _ => <F::Portable as Simd>::LANES,
        }
    }
}

/// The element types the kernels are compiled for, with their vector types.
pub(crate) trait KernelFloat: Float {
    type Portable: Simd<T = Self>;
    #[cfg(target_arch = "x86_64")]
    type Avx2: Simd<T = Self>;
    #[cfg(target_arch = "x86_64")]
    type Avx512: Simd<T = Self>;
}

impl KernelFloat for f32 {
    type Portable = simd::PortableF32;
    #[cfg(target_arch = "x86_64")]
    type Avx2 = simd::Avx2F32;
    #[cfg(target_arch = "x86_64")]
    type Avx512 = simd::Avx512F32;
}

impl KernelFloat for f64 {
    type Portable = simd::PortableF64;
    #[cfg(target_arch = "x86_64")]
    type Avx2 = simd::Avx2F64;
    #[cfg(target_arch = "x86_64")]
    type Avx512 = simd::Avx512F64;
}

/// Bytes of packed centres visited per block: half of the 2 MB L2 of the
/// target machines, leaving the rest for the chunk's rows and partial sums.
const CENTRE_BLOCK_BYTES: usize = 1 << 20;

/// Centres packed for one path: panels of `lanes` centres, dimension-major,
/// padded with zero centres whose bias is +inf so they never win.
#[derive(Clone, Debug)]
pub(crate) struct Packed<T> {
    pub(crate) path: Path,
    pub(crate) lanes: usize,
    pub(crate) panels: usize,
    /// Panels per L2 block.
    pub(crate) block_panels: usize,
    /// `len = panels * d * lanes` values starting at `offset` (64-byte
    /// aligned, so no vector load splits a cache line).
    buf: Vec<T>,
    offset: usize,
    len: usize,
    /// `panels * lanes` biases.
    pub(crate) bias: Vec<T>,
}

impl<T: Float> Packed<T> {
    /// Packs the `k x d` row-major (already normalised under cosine) centres
    /// `centres` with squared norms `sq_norms` for `path`, whose panels hold
    /// `lanes` centres.
    pub(crate) fn new(
        path: Path,
        lanes: usize,
        centres: &[T],
        sq_norms: &[T],
        k: usize,
        d: usize,
        metric: Metric,
    ) -> Self {
        let panels = k.div_ceil(lanes);
        let len = panels * d * lanes;
        let align = 64 / std::mem::size_of::<T>();
        let mut buf = vec![T::zero(); len + align];
        let offset = buf.as_ptr().align_offset(64).min(align);
        let data = &mut buf[offset..offset + len];
        let half = T::from_f64_lossy(0.5);
        let mut bias = vec![T::infinity(); panels * lanes];
        for j in 0..k {
            let (q, lane) = (j / lanes, j % lanes);
            for p in 0..d {
                data[(q * d + p) * lanes + lane] = centres[j * d + p];
            }
            bias[j] = match metric {
                Metric::SquaredEuclidean => sq_norms[j] * half,
                Metric::Cosine => T::zero(),
            };
        }
        let panel_bytes = (d * lanes * std::mem::size_of::<T>()).max(1);
        let block_panels = (CENTRE_BLOCK_BYTES / panel_bytes).max(2) & !1;
        Self {
            path,
            lanes,
            panels,
            block_panels,
            buf,
            offset,
            len,
            bias,
        }
    }

    /// The packed panels, `panels * d * lanes` values.
    pub(crate) fn data(&self) -> &[T] {
        &self.buf[self.offset..self.offset + self.len]
    }
}

/// A chunk of rows and the centres it is matched against.
pub(crate) struct Job<'a, T> {
    /// `rows x d`, row-major.
    pub(crate) x: &'a [T],
    pub(crate) d: usize,
    pub(crate) k: usize,
    pub(crate) metric: Metric,
    pub(crate) lanes: usize,
    pub(crate) panels: usize,
    pub(crate) block_panels: usize,
    pub(crate) data: &'a [T],
    pub(crate) bias: &'a [T],
}

/// `sum_p row_p^2` with independent partial sums, so it vectorises (the
/// result can differ from a left-to-right sum in the last bits).
#[inline(always)]
pub(crate) fn sq_norm<T: Float>(row: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            acc[i] += c[i] * c[i];
        }
    }
    for (i, &v) in chunks.remainder().iter().enumerate() {
        acc[i] += v * v;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// The `MR x NV` values `bias - x.c` of `MR` rows against the `NV` panels
/// starting at `panel`. Value `p` of row `r` is at `xp[r * sr + p * sp]`:
/// `(d, 1)` for rows in place, `(1, MR)` for rows interleaved into a
/// scratch buffer, where one pointer serves every row (fewer address
/// computations in the loop).
#[inline(always)]
unsafe fn tile<S: Simd, const MR: usize, const NV: usize>(
    xp: *const S::T,
    sr: usize,
    sp: usize,
    d: usize,
    panel: *const S::T,
    bias: *const S::T,
) -> [[S::V; NV]; MR] {
    let lanes = S::LANES;
    let pstride = d * lanes;
    let b: [S::V; NV] = std::array::from_fn(|v| S::load(bias.add(v * lanes)));
    let mut acc: [[S::V; NV]; MR] = [b; MR];
    for p in 0..d {
        let c: [S::V; NV] = std::array::from_fn(|v| S::load(panel.add(v * pstride + p * lanes)));

        for (r, acc_r) in acc.iter_mut().enumerate() {
            let xb = S::splat(*xp.add(r * sr + p * sp));
            for v in 0..NV {
                acc_r[v] = S::fnmadd(xb, c[v], acc_r[v]);
            }
        }
    }
    acc
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

/// Labels and raw values of every row of the job.
#[inline(always)]
unsafe fn argmin_chunk<S: Simd, const MR: usize>(
    job: &Job<'_, S::T>,
    labels: &mut [u32],
    raw: &mut [S::T],
) {
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
    mut part: Option<&mut super::ClusterStats>,
) {
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
                let inv = super::inv_norm(row);
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

/// [`finish`] with the row width as a constant for `d <= 16`, so the
/// per-row loops unroll into a few vector instructions.
#[inline(always)]
unsafe fn finish_rows<S: Simd>(
    job: &Job<'_, S::T>,
    weights: Option<&[S::T]>,
    labels: &[u32],
    scores: &mut [S::T],
    part: Option<&mut super::ClusterStats>,
) {
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
/// biases and indices (as floats). The values are those of [`tile`] (bias
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
    part: Option<&mut super::ClusterStats>,
) {
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
    let mut stats = LaneStats::<D>::new(ACC, cosine || weights.is_some());
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
                let inv = super::inv_norm(std::slice::from_raw_parts(job.x.as_ptr().add(i * D), D));
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

/// One chunk's statistics in the lane-parallel path: [`LANE_COPIES`]
/// interleaved copies, each cluster's row of sums padded to whole vectors
/// (see `Simd::accumulate_padded`), and the loss per lane.
struct LaneStats<const D: usize> {
    sums: [f64; LANE_COPIES * LANE_K * SMALL_D],
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
    fn new(accumulate: bool, scaled: bool) -> Self {
        // Left unused (and the zeroing dead) without `accumulate`.
        let _ = accumulate;
        Self {
            sums: [0.0; LANE_COPIES * LANE_K * SMALL_D],
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
                    w * super::inv_norm(std::slice::from_raw_parts(row, D))
                } else {
                    w
                };
                let at = *labels.get_unchecked(i) as usize * LANE_COPIES + i % LANE_COPIES;
                S::accumulate_padded(self.sums.as_mut_ptr().add(at * stride), row, D, Some(scale));
                *self.weights.get_unchecked_mut(at) += w;
                *self.counts.get_unchecked_mut(at) += 1;
            }
        } else {
            for i in r0..end {
                let row = x.as_ptr().add(i * D);
                let at = *labels.get_unchecked(i) as usize * LANE_COPIES + i % LANE_COPIES;
                S::accumulate_padded(self.sums.as_mut_ptr().add(at * stride), row, D, None);
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

    /// Adds the copies together, `(c0 + c1) + (c2 + c3)`, and then into
    /// `part`.
    #[inline(always)]
    fn merge_into(&self, k: usize, part: &mut super::ClusterStats) {
        const { assert!(LANE_COPIES == 4) };
        let stride = Self::STRIDE;
        for j in 0..k {
            let c = j * LANE_COPIES;
            let copy = |q: usize| &self.sums[(c + q) * stride..(c + q) * stride + D];
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

/// Every distance of the job's rows, row-major `rows x k` into `out`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn distances_body<S: Simd, const MR: usize>(job: &Job<'_, S::T>, out: &mut [S::T]) {
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
        Metric::Cosine => S::T::from_f64_lossy(super::inv_norm(row)),
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

/// One chunk's work, by operation.
pub(crate) enum Op<'o, T> {
    /// Labels and distances to the chosen centre.
    Assign {
        labels: &'o mut [u32],
        scores: &'o mut [T],
    },
    /// The same, then the rows added to `part`.
    Accumulate {
        weights: Option<&'o [T]>,
        labels: &'o mut [u32],
        scores: &'o mut [T],
        part: &'o mut super::ClusterStats,
    },
    /// All distances, `rows x k`.
    Distances { out: &'o mut [T] },
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
    part: Option<&mut super::ClusterStats>,
) {
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

/// Runs `op` on the lane-parallel path when it takes the shape (see
/// [`lane_path`]); gives `op` back otherwise.
#[inline(always)]
unsafe fn run_lanes<'o, S: Simd>(job: &Job<'_, S::T>, op: Op<'o, S::T>) -> Option<Op<'o, S::T>> {
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

#[inline(always)]
unsafe fn run_body<S: Simd, const MR: usize>(job: &Job<'_, S::T>, op: Op<'_, S::T>) {
    match op {
        Op::Assign { labels, scores } => {
            argmin_chunk::<S, MR>(job, labels, scores);
            finish_rows::<S>(job, None, labels, scores, None);
        }
        Op::Accumulate {
            weights,
            labels,
            scores,
            part,
        } => {
            argmin_chunk::<S, MR>(job, labels, scores);
            finish_rows::<S>(job, weights, labels, scores, Some(part));
        }
        Op::Distances { out } => distances_body::<S, MR>(job, out),
    }
}

/// Rows per tile. Small `d` keeps fewer rows so that a row group's
/// accumulators and its running minima all fit in the register file.
const fn rows_per_tile(path: Path, small_d: bool) -> usize {
    match (path, small_d) {
        (Path::Avx512, false) => 12,
        (Path::Avx512, true) => 4,
        (Path::Avx2, false) => 4,
        (Path::Avx2, true) => 2,
        (Path::Portable, _) => 2,
    }
}

/// The largest `d` served by the register-resident tile shape.
const SMALL_D: usize = 16;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<S: Simd>(job: &Job<'_, S::T>, op: Op<'_, S::T>) {
    let Some(op) = run_lanes::<S>(job, op) else {
        return;
    };
    if job.d <= SMALL_D {
        run_body::<S, { rows_per_tile(Path::Avx512, true) }>(job, op)
    } else {
        run_body::<S, { rows_per_tile(Path::Avx512, false) }>(job, op)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<S: Simd>(job: &Job<'_, S::T>, op: Op<'_, S::T>) {
    let Some(op) = run_lanes::<S>(job, op) else {
        return;
    };
    if job.d <= SMALL_D {
        run_body::<S, { rows_per_tile(Path::Avx2, true) }>(job, op)
    } else {
        run_body::<S, { rows_per_tile(Path::Avx2, false) }>(job, op)
    }
}

fn run_portable<S: Simd>(job: &Job<'_, S::T>, op: Op<'_, S::T>) {
    // SAFETY: the portable vectors are plain arrays; `Job` keeps every
    // pointer the tiles form inside `x`, `data` and `bias`.
    unsafe {
        if let Some(op) = run_lanes::<S>(job, op) {
            run_body::<S, { rows_per_tile(Path::Portable, false) }>(job, op)
        }
    }
}

/// Runs one chunk's operation on `path`, which must be available (see
/// [`Path::available`]) and the path the job's centres were packed for.
pub(crate) fn run<F: KernelFloat>(path: Path, job: &Job<'_, F>, op: Op<'_, F>) {
    assert_eq!(
        job.lanes,
        path.lanes::<F>(),
        "centres packed for another path"
    );
    assert!(
        job.data.len() >= job.panels * job.d * job.lanes
            && job.bias.len() >= job.panels * job.lanes
    );
    assert!(job.d == 0 || job.x.len().is_multiple_of(job.d));
    match path {
        // SAFETY: the CPU has the features (checked by the caller through
        // `Path::available`, asserted in debug builds) and the asserts above
        // keep every load inside the packed centres.
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => {
            debug_assert!(path.available());
            unsafe { run_avx512::<F::Avx512>(job, op) }
        }
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => {
            debug_assert!(path.available());
            unsafe { run_avx2::<F::Avx2>(job, op) }
        }
        _ => run_portable::<F::Portable>(job, op),
    }
}
