//! The distance / argmin core: the only place that touches every point.
//!
//! All of training, evaluation, prediction and seeding go through the entry
//! points below, so a faster kernel replaces this module without changing any
//! caller:
//!
//! - [`assign_accumulate`]: nearest centre of every row, plus the per-cluster
//!   sums, weights and the loss (one Lloyd / mini-batch step's worth of work);
//! - [`assign`]: nearest centre and its distance per row (predict, score);
//! - [`distances`]: the full `n x k` distance matrix, only for callers that asked
//!   for it (`transform`, `all_distances`);
//! - [`fold_and_score`] (and its halves [`candidate_potentials`] and
//!   [`update_min_distances`]): greedy k-means++ seeding's pass, which folds
//!   the last chosen centre into the closest distances and scores the next
//!   candidates in one read of the data, without an `n x candidates` matrix.
//!
//! Distances: squared Euclidean `||x||^2 - 2 x.c + ||c||^2` clamped at 0, or
//! cosine `1 - x^.c^` where `x^ = x / max(||x||, 1e-12)`. Ties go to the
//! lowest centre index.
//!
//! How: rows are cut into chunks of [`CHUNK_ROWS`] (boundaries depend only on
//! `n`); each chunk runs the blocked kernel of `block.rs`, which computes `x.c`
//! for a tile of rows against panels of centres with a SIMD micro-kernel,
//! folds the half-norms in (argmin of `||c||^2/2 - x.c`, or argmax of `x.c^`
//! under cosine) and keeps the running argmin in registers, so no `n x k`
//! matrix is ever written by [`assign`] or [`assign_accumulate`]. The
//! instruction set (AVX-512F, AVX2+FMA, or portable) is picked at run time
//! when the centres are prepared. [`assign_accumulate`] sums each chunk's rows
//! into a per-chunk [`ClusterStats`] (in f64) and adds those into the result in
//! chunk order, a bounded group of chunks at a time: the same additions in the
//! same order at any thread count, so results are bit-identical. Work runs on
//! the current rayon pool; nothing here builds a pool.
//!
//! On processors with AMX-BF16 (x86-64 Linux), f32 problems with `k >= 32`
//! and `d >= 64` run `amx.rs` instead when no path is asked for: bf16
//! split products on the tile unit propose candidates within a rigorous
//! error margin, and f64 distances decide between them, so its labels are
//! the exact nearest centres (see that module). `CENTROID_AMX=0` turns it
//! off.
//!
//! The kernel's values carry FMA rounding, so two centres whose distances
//! differ only in the last bits may be ordered differently than by the
//! one-pair-at-a-time [`reference`](assign_reference) (and between paths);
//! exact ties, such as duplicate centres, always go to the lowest index.

#[cfg(target_arch = "x86_64")]
mod amx;
mod block;
mod reference;
mod simd;
pub mod sparse;
#[cfg(test)]
mod tests;

pub use reference::{assign_reference, distances_reference};

use std::any::Any;

use rayon::prelude::*;

use crate::float::{DType, Float};
use crate::matrix::MatRef;
use block::{KernelFloat, Op, Packed, Path};

/// The distance between a point and a centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Metric {
    #[serde(rename = "squared_euclidean")]
    SquaredEuclidean,
    #[serde(rename = "cosine")]
    Cosine,
}

/// Smallest norm a row is divided by under cosine, so zero rows stay finite.
pub const COSINE_NORM_FLOOR: f64 = 1e-12;

/// Centres made ready for the kernels: under cosine normalised, with their
/// squared norms computed once per step rather than once per row block, and
/// packed into the panels of the fastest kernel this CPU runs.
#[derive(Clone, Debug)]
pub struct PreparedCentres<T> {
    centres: Vec<T>,
    sq_norms: Vec<T>,
    k: usize,
    d: usize,
    metric: Metric,
    packed: Packed<T>,
    /// The centres packed for the AMX kernel, when this CPU has one and the
    /// shape is worth it (f32 only).
    #[cfg(target_arch = "x86_64")]
    amx: Option<std::sync::Arc<amx::AmxCentres>>,
}

impl<T: Float> PreparedCentres<T> {
    pub fn new(centres: MatRef<'_, T>, metric: Metric) -> Self {
        let (k, d) = (centres.rows(), centres.cols());
        let mut data = centres.as_slice().to_vec();
        if metric == Metric::Cosine {
            for row in data.chunks_exact_mut(d.max(1)) {
                normalize_in_place(row);
            }
        }
        let sq_norms: Vec<T> = if d == 0 {
            vec![T::zero(); k]
        } else {
            data.chunks_exact(d).map(|c| dot(c, c)).collect()
        };
        let packed = pack(Path::detect(), &data, &sq_norms, k, d, metric);
        #[cfg(target_arch = "x86_64")]
        let amx = match T::DTYPE {
            DType::F32 => amx::AmxCentres::new(cast(&data), cast(&sq_norms), k, d, metric)
                .map(std::sync::Arc::new),
            DType::F64 => None,
        };
        Self {
            centres: data,
            sq_norms,
            k,
            d,
            metric,
            packed,
            #[cfg(target_arch = "x86_64")]
            amx,
        }
    }
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn d(&self) -> usize {
        self.d
    }
    pub fn metric(&self) -> Metric {
        self.metric
    }
    /// The centres as the kernels see them (normalised under cosine).
    pub fn centres(&self) -> MatRef<'_, T> {
        MatRef::new(&self.centres, self.k, self.d).expect("prepared centres keep their shape")
    }
    pub fn sq_norms(&self) -> &[T] {
        &self.sq_norms
    }
}

/// Per-cluster sums of one pass, accumulated in `f64`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterStats {
    pub k: usize,
    pub d: usize,
    /// `k x d`, row-major: the (weighted, under cosine normalised) sum of the
    /// rows assigned to each cluster.
    pub sums: Vec<f64>,
    /// The total sample weight assigned to each cluster (the count when
    /// unweighted).
    pub weights: Vec<f64>,
    /// The number of rows assigned to each cluster.
    pub counts: Vec<u64>,
    /// The (weighted) sum of every row's distance to its nearest centre.
    pub loss: f64,
}

impl ClusterStats {
    pub fn new(k: usize, d: usize) -> Self {
        Self {
            k,
            d,
            sums: vec![0.0; k * d],
            weights: vec![0.0; k],
            counts: vec![0; k],
            loss: 0.0,
        }
    }

    /// Adds another pass's statistics (same shape) into these.
    pub fn merge(&mut self, other: &ClusterStats) {
        debug_assert_eq!((self.k, self.d), (other.k, other.d));
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            *a += b;
        }
        for (a, b) in self.weights.iter_mut().zip(&other.weights) {
            *a += b;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.loss += other.loss;
    }

    pub fn clear(&mut self) {
        self.sums.fill(0.0);
        self.weights.fill(0.0);
        self.counts.fill(0);
        self.loss = 0.0;
    }
}

/// Rows per chunk: the unit of parallel work and of the fixed summation
/// order. Its boundaries depend only on the number of rows.
pub const CHUNK_ROWS: usize = 2048;

/// Bytes of per-chunk partial statistics [`assign_accumulate`] keeps alive at
/// once (at least one per thread): 32 chunks of a `k = 1000, d = 128` model.
/// Each group of chunks ends in a barrier, so groups must hold many chunks
/// per thread for the threads to finish together; the budget keeps the
/// extra memory well under 64 MiB.
const PARTIAL_BYTES: usize = 32 << 20;

/// Elements of the result each task adds partials into when merging.
const MERGE_BLOCK: usize = 1 << 14;

/// The largest `k` the blocked kernels take: centre indices travel through
/// the argmin as floats, exact below 2^24 in f32. Larger `k` uses the
/// reference kernel.
const MAX_BLOCKED_K: usize = 1 << 24;

fn pack<T: Float>(
    path: Path,
    data: &[T],
    sq_norms: &[T],
    k: usize,
    d: usize,
    metric: Metric,
) -> Packed<T> {
    let lanes = match T::DTYPE {
        DType::F32 => path.lanes::<f32>(),
        DType::F64 => path.lanes::<f64>(),
    };
    Packed::new(path, lanes, data, sq_norms, k, d, metric)
}

/// The centres as the concrete kernel type `F`, when `T` is `F`.
fn downcast<T: Float, F: KernelFloat>(c: &PreparedCentres<T>) -> Option<&PreparedCentres<F>> {
    (c as &dyn Any).downcast_ref::<PreparedCentres<F>>()
}

/// `T`'s slice as `F`'s; only called once [`downcast`] showed `T` is `F`.
fn cast<T: Float, F: KernelFloat>(s: &[T]) -> &[F] {
    bytemuck::cast_slice(s)
}

fn cast_mut<T: Float, F: KernelFloat>(s: &mut [T]) -> &mut [F] {
    bytemuck::cast_slice_mut(s)
}

fn job<'a, F: KernelFloat>(
    x: MatRef<'a, F>,
    start: usize,
    end: usize,
    centres: &PreparedCentres<F>,
    packed: &'a Packed<F>,
) -> block::Job<'a, F> {
    block::Job {
        x: x.slice_rows(start, end).as_slice(),
        d: x.cols(),
        k: centres.k,
        metric: centres.metric,
        lanes: packed.lanes,
        panels: packed.panels,
        block_panels: packed.block_panels,
        data: packed.data(),
        bias: &packed.bias,
    }
}

/// The packing for `path`: the centres' own when they were packed for it.
fn packing_for<F: KernelFloat>(
    centres: &PreparedCentres<F>,
    path: Path,
) -> std::borrow::Cow<'_, Packed<F>> {
    if centres.packed.path == path {
        std::borrow::Cow::Borrowed(&centres.packed)
    } else {
        std::borrow::Cow::Owned(pack(
            path,
            &centres.centres,
            &centres.sq_norms,
            centres.k,
            centres.d,
            centres.metric,
        ))
    }
}

/// The AMX kernel's centres, when the caller did not ask for a particular
/// path and the centres were packed for it (f32 only).
#[cfg(target_arch = "x86_64")]
fn amx_for<F: KernelFloat>(
    centres: &PreparedCentres<F>,
    path: Option<Path>,
) -> Option<&amx::AmxCentres> {
    match path {
        None => centres.amx.as_deref(),
        Some(_) => None,
    }
}

/// Assigns every row of `x` to its nearest centre and adds each row (weighted
/// by `sample_weight`, and normalised under cosine) to its cluster's sums in
/// `stats`, which it resets first. Writes the labels when `labels` is given.
///
/// Extra memory: at most [`CHUNK_ROWS`]-row scratch per task and a bounded
/// group of per-chunk partial statistics (at most 32 MiB, or one per thread
/// when one partial is larger than that).
pub fn assign_accumulate<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: &PreparedCentres<T>,
    labels: Option<&mut [u32]>,
    stats: &mut ClusterStats,
) {
    assign_accumulate_on(
        None,
        PARTIAL_BYTES,
        x,
        sample_weight,
        centres,
        labels,
        stats,
    )
}

/// [`assign_accumulate`] on a chosen path (`None`: the centres' own), keeping
/// about `partial_budget` bytes of per-chunk partials alive at once (at least
/// one per thread).
pub(crate) fn assign_accumulate_on<T: Float>(
    path: Option<Path>,
    partial_budget: usize,
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: &PreparedCentres<T>,
    labels: Option<&mut [u32]>,
    stats: &mut ClusterStats,
) {
    let (n, d, k) = (x.rows(), x.cols(), centres.k());
    assert_eq!(d, centres.d(), "data width must match the centres");
    assert!(
        sample_weight.is_none_or(|w| w.len() == n),
        "one sample weight per row"
    );
    assert_eq!(
        (stats.k, stats.d),
        (k, d),
        "statistics shaped like the centres"
    );
    if let Some(l) = &labels {
        assert_eq!(l.len(), n, "one label per row");
    }
    stats.clear();
    if let Some(c) = downcast::<T, f32>(centres) {
        let w = sample_weight.map(cast::<T, f32>);
        accumulate_typed(
            path,
            partial_budget,
            MatRef::new(cast(x.as_slice()), n, d).expect("same shape"),
            w,
            c,
            labels,
            stats,
        );
    } else if let Some(c) = downcast::<T, f64>(centres) {
        let w = sample_weight.map(cast::<T, f64>);
        accumulate_typed(
            path,
            partial_budget,
            MatRef::new(cast(x.as_slice()), n, d).expect("same shape"),
            w,
            c,
            labels,
            stats,
        );
    } else {
        unreachable!("Float is implemented for f32 and f64 only")
    }
}

fn accumulate_typed<F: KernelFloat>(
    path: Option<Path>,
    partial_budget: usize,
    x: MatRef<'_, F>,
    sample_weight: Option<&[F]>,
    centres: &PreparedCentres<F>,
    labels: Option<&mut [u32]>,
    stats: &mut ClusterStats,
) {
    let (n, d, k) = (x.rows(), x.cols(), centres.k());
    if n == 0 {
        return;
    }
    let packed = packing_for(centres, path.unwrap_or(centres.packed.path));
    let n_chunks = n.div_ceil(CHUNK_ROWS);
    let mut label_chunks: Vec<Option<&mut [u32]>> = match labels {
        Some(l) => l.chunks_mut(CHUNK_ROWS).map(Some).collect(),
        None => (0..n_chunks).map(|_| None).collect(),
    };
    // How many chunks run between merges changes when partials are added,
    // never which or in what order, so it may follow the thread count.
    let part_bytes = (k * d + 2 * k) * 8 + 64;
    let group = (partial_budget / part_bytes)
        .max(rayon::current_num_threads())
        .clamp(1, n_chunks);
    let mut parts: Vec<ClusterStats> = (0..group).map(|_| ClusterStats::new(k, d)).collect();
    let blocked = k > 0 && k < MAX_BLOCKED_K;
    #[cfg(target_arch = "x86_64")]
    let amx = amx_for(centres, path);
    for g0 in (0..n_chunks).step_by(group) {
        let g1 = (g0 + group).min(n_chunks);
        parts[..g1 - g0]
            .par_iter_mut()
            .zip(label_chunks[g0..g1].par_iter_mut())
            .enumerate()
            .for_each(|(i, (part, lab))| {
                let start = (g0 + i) * CHUNK_ROWS;
                let end = (start + CHUNK_ROWS).min(n);
                let rows = end - start;
                let mut own_labels = Vec::new();
                let labels: &mut [u32] = match lab {
                    Some(l) => l,
                    None => {
                        own_labels.resize(rows, 0);
                        &mut own_labels
                    }
                };
                let mut scores = vec![F::zero(); rows];
                part.clear();
                let weights = sample_weight.map(|w| &w[start..end]);
                #[cfg(target_arch = "x86_64")]
                if let Some(a) = amx {
                    amx::run(
                        a,
                        amx::Chunk {
                            x: cast(x.slice_rows(start, end).as_slice()),
                            centres: cast(&centres.centres),
                            labels,
                            scores: cast_mut(&mut scores),
                            weights: weights.map(cast),
                            part: Some(part),
                        },
                    );
                    return;
                }
                if blocked {
                    let job = job(x, start, end, centres, &packed);
                    block::run(
                        packed.path,
                        &job,
                        Op::Accumulate {
                            weights,
                            labels,
                            scores: &mut scores,
                            part,
                        },
                    );
                } else {
                    assign_reference(x.slice_rows(start, end), centres, labels, &mut scores);
                    accumulate_reference(
                        x.slice_rows(start, end),
                        weights,
                        centres.metric,
                        labels,
                        &scores,
                        part,
                    );
                }
            });
        merge_in_order(stats, &parts[..g1 - g0]);
    }
}

/// Adds `parts` into `stats` one after the other; each element sees the same
/// additions in the same order whichever task does them.
fn merge_in_order(stats: &mut ClusterStats, parts: &[ClusterStats]) {
    stats
        .sums
        .par_chunks_mut(MERGE_BLOCK)
        .enumerate()
        .for_each(|(b, sums)| {
            let (off, len) = (b * MERGE_BLOCK, sums.len());
            for p in parts {
                for (a, v) in sums.iter_mut().zip(&p.sums[off..off + len]) {
                    *a += v;
                }
            }
        });
    for p in parts {
        for (a, b) in stats.weights.iter_mut().zip(&p.weights) {
            *a += b;
        }
        for (a, b) in stats.counts.iter_mut().zip(&p.counts) {
            *a += b;
        }
        stats.loss += p.loss;
    }
}

/// The sums of one chunk from its labels and scores, one row at a time.
fn accumulate_reference<T: Float>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    metric: Metric,
    labels: &[u32],
    scores: &[T],
    part: &mut ClusterStats,
) {
    let d = x.cols();
    for (i, (&j, &s)) in labels.iter().zip(scores).enumerate() {
        let row = x.row(i);
        let w = weights.map_or(1.0, |w| w[i].to_f64_exact());
        let j = j as usize;
        let scale = match metric {
            Metric::SquaredEuclidean => w,
            Metric::Cosine => w * inv_norm(row),
        };
        for (acc, &v) in part.sums[j * d..(j + 1) * d].iter_mut().zip(row) {
            *acc += scale * v.to_f64_exact();
        }
        part.weights[j] += w;
        part.counts[j] += 1;
        part.loss += w * s.to_f64_exact();
    }
}

/// Nearest centre (`labels`) and the distance to it (`scores`) of every row.
pub fn assign<T: Float>(
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    labels: &mut [u32],
    scores: &mut [T],
) {
    assign_on(None, x, centres, labels, scores)
}

/// [`assign`] on a chosen path (`None`: the centres' own).
pub(crate) fn assign_on<T: Float>(
    path: Option<Path>,
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    labels: &mut [u32],
    scores: &mut [T],
) {
    let (n, d) = (x.rows(), x.cols());
    assert_eq!(d, centres.d(), "data width must match the centres");
    assert_eq!(labels.len(), n, "one label per row");
    assert_eq!(scores.len(), n, "one score per row");
    if let Some(c) = downcast::<T, f32>(centres) {
        assign_typed(
            path,
            MatRef::new(cast(x.as_slice()), n, d).expect("same shape"),
            c,
            labels,
            cast_mut(scores),
        );
    } else if let Some(c) = downcast::<T, f64>(centres) {
        assign_typed(
            path,
            MatRef::new(cast(x.as_slice()), n, d).expect("same shape"),
            c,
            labels,
            cast_mut(scores),
        );
    } else {
        unreachable!("Float is implemented for f32 and f64 only")
    }
}

fn assign_typed<F: KernelFloat>(
    path: Option<Path>,
    x: MatRef<'_, F>,
    centres: &PreparedCentres<F>,
    labels: &mut [u32],
    scores: &mut [F],
) {
    let packed = packing_for(centres, path.unwrap_or(centres.packed.path));
    let blocked = centres.k > 0 && centres.k < MAX_BLOCKED_K;
    #[cfg(target_arch = "x86_64")]
    let amx = amx_for(centres, path);
    labels
        .par_chunks_mut(CHUNK_ROWS)
        .zip(scores.par_chunks_mut(CHUNK_ROWS))
        .enumerate()
        .for_each(|(ci, (labels, scores))| {
            let start = ci * CHUNK_ROWS;
            let end = start + labels.len();
            #[cfg(target_arch = "x86_64")]
            if let Some(a) = amx {
                amx::run(
                    a,
                    amx::Chunk {
                        x: cast(x.slice_rows(start, end).as_slice()),
                        centres: cast(&centres.centres),
                        labels,
                        scores: cast_mut(scores),
                        weights: None,
                        part: None,
                    },
                );
                return;
            }
            if blocked {
                block::run(
                    packed.path,
                    &job(x, start, end, centres, &packed),
                    Op::Assign { labels, scores },
                );
            } else {
                assign_reference(x.slice_rows(start, end), centres, labels, scores);
            }
        });
}

/// The distance of every row to every centre, row-major `n x k`.
pub fn distances<T: Float>(x: MatRef<'_, T>, centres: &PreparedCentres<T>, out: &mut [T]) {
    distances_on(None, x, centres, out)
}

/// [`distances`] on a chosen path (`None`: the centres' own).
pub(crate) fn distances_on<T: Float>(
    path: Option<Path>,
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    out: &mut [T],
) {
    let (n, d) = (x.rows(), x.cols());
    assert_eq!(d, centres.d(), "data width must match the centres");
    assert_eq!(
        out.len(),
        n * centres.k(),
        "one distance per row and centre"
    );
    if let Some(c) = downcast::<T, f32>(centres) {
        distances_typed(
            path,
            MatRef::new(cast(x.as_slice()), n, d).expect("same shape"),
            c,
            cast_mut(out),
        );
    } else if let Some(c) = downcast::<T, f64>(centres) {
        distances_typed(
            path,
            MatRef::new(cast(x.as_slice()), n, d).expect("same shape"),
            c,
            cast_mut(out),
        );
    } else {
        unreachable!("Float is implemented for f32 and f64 only")
    }
}

fn distances_typed<F: KernelFloat>(
    path: Option<Path>,
    x: MatRef<'_, F>,
    centres: &PreparedCentres<F>,
    out: &mut [F],
) {
    let k = centres.k;
    if k == 0 {
        return;
    }
    let packed = packing_for(centres, path.unwrap_or(centres.packed.path));
    let blocked = k < MAX_BLOCKED_K;
    out.par_chunks_mut(CHUNK_ROWS * k)
        .enumerate()
        .for_each(|(ci, out)| {
            let start = ci * CHUNK_ROWS;
            let end = start + out.len() / k;
            if blocked {
                block::run(
                    packed.path,
                    &job(x, start, end, centres, &packed),
                    Op::Distances { out },
                );
            } else {
                distances_reference(x.slice_rows(start, end), centres, out);
            }
        });
}

/// One term of a k-means++ potential: row weight `w` times the row's distance
/// to its nearest centre once centre `c` (at distance `dc`) is added to those
/// at distance `cur`. Every seeding function sums exactly this, so their
/// potentials and sampling probabilities agree to the bit.
#[inline(always)]
fn seeding_term<T: Float>(w: f64, cur: f64, dc: T) -> f64 {
    w * cur.min(dc.to_f64_exact())
}

/// Values of distance scratch per task in the seeding passes: a chunk is cut
/// into row blocks of at most this many distances (row values do not depend
/// on the blocking), so thousands of candidates need no `CHUNK_ROWS x m`
/// buffer.
const SEEDING_SCRATCH: usize = 1 << 16;

/// Runs `f(first_row, distances)` on consecutive row blocks of rows
/// `start..start + rows` of `x`, `distances` being each block's `rows x k`
/// distances to `centres`, in row order.
fn for_distance_blocks<T: Float>(
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    start: usize,
    rows: usize,
    mut f: impl FnMut(usize, &[T]),
) {
    let k = centres.k();
    let block = (SEEDING_SCRATCH / k.max(1)).clamp(1, CHUNK_ROWS);
    let mut dist = vec![T::zero(); block.min(rows) * k];
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + block).min(rows);
        let out = &mut dist[..(r1 - r0) * k];
        distances(x.slice_rows(start + r0, start + r1), centres, out);
        f(r0, out);
        r0 = r1;
    }
}

/// Greedy k-means++'s scoring pass: for each candidate centre `c` (the rows
/// of `candidates`), the potential `sum_x w(x) min(min_dist[x], d(x, c))` in
/// f64, where `min_dist` holds each row's distance to the centres chosen so
/// far (+inf before the first) and `w` the sample weights (1 without). The
/// `n x candidates` distances are computed a chunk at a time and never
/// stored; partial sums are added in chunk order, so the result is the same
/// at any thread count.
pub fn candidate_potentials<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    min_dist: &[f64],
    candidates: &PreparedCentres<T>,
) -> Vec<f64> {
    let mut scratch = min_dist.to_vec();
    fold_and_score(x, sample_weight, &mut scratch, candidates, 0).potentials
}

/// Greedy k-means++'s update pass: `min_dist[x] = min(min_dist[x], d(x, c))`
/// over the centres `c` of `centres` (usually the one just chosen), without
/// an `n x k` matrix. The distances are those [`candidate_potentials`] scores
/// with, so the potential a chosen candidate was scored with is exactly the
/// sum of the weighted distances it leaves.
pub fn update_min_distances<T: Float>(
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    min_dist: &mut [f64],
) {
    fold_and_score(x, None, min_dist, centres, centres.k());
}

/// What one [`fold_and_score`] pass leaves for each of its `m` candidates.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredCandidates {
    /// The number of candidates scored.
    pub m: usize,
    /// `chunks x m`, row-major: for each chunk of [`CHUNK_ROWS`] rows, each
    /// candidate's potential over the chunk's rows, summed in row order from
    /// 0. Exactly the sampling weights' sums over the chunk once that
    /// candidate is chosen.
    pub chunk_potentials: Vec<f64>,
    /// Each candidate's potential: its chunk sums added in chunk order.
    pub potentials: Vec<f64>,
    /// For each candidate, an exponent `e` such that every term of its
    /// potential is a multiple of `2^e` (`i32::MAX` when every term is
    /// zero): every partial sum of the terms is one too, so any that stays
    /// below `2^(e + 53)` is exact.
    pub min_lsb: Vec<i32>,
}

/// The smallest exponent of the lowest set bit over nonnegative floats, kept
/// while summing them: each value's biased exponent plus the trailing zeros
/// of its significand (branch-free), the smallest such key over the nonzero
/// values. Every value is a multiple of `2^(key - 1075)`.
#[derive(Clone, Copy)]
struct LowBits {
    min_key: u32,
}

impl LowBits {
    const NONE: LowBits = LowBits { min_key: u32::MAX };

    #[inline(always)]
    fn add(&mut self, v: f64) {
        let b = v.to_bits();
        let key = (b >> 52) as u32 + (b | (1u64 << 52)).trailing_zeros();
        // Zeros add nothing to a sum.
        self.min_key = self.min_key.min(if b == 0 { u32::MAX } else { key });
    }

    fn merge(&mut self, o: LowBits) {
        self.min_key = self.min_key.min(o.min_key);
    }

    /// The exponent; `i32::MAX` when every value was zero. A subnormal
    /// (biased exponent 0) is worth `significand * 2^-1074`: its bound is one
    /// lower than it could be, which is safe.
    fn exponent(self) -> i32 {
        if self.min_key == u32::MAX {
            i32::MAX
        } else {
            self.min_key as i32 - 1075
        }
    }
}

/// Greedy k-means++'s fused pass: the first `fold` centres of `centres` are
/// folded into `min_dist` (as [`update_min_distances`] does) and the others
/// are scored against the updated distances (as [`candidate_potentials`]
/// does), one distance computation per chunk for both, so one step of
/// seeding reads the data once. Chunks are summed in parallel and their sums
/// kept and added in chunk order: the same at any thread count.
pub fn fold_and_score<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    min_dist: &mut [f64],
    centres: &PreparedCentres<T>,
    fold: usize,
) -> ScoredCandidates {
    let (n, k) = (x.rows(), centres.k());
    assert_eq!(x.cols(), centres.d(), "data width must match the centres");
    assert_eq!(min_dist.len(), n, "one distance per row");
    assert!(fold <= k, "cannot fold more centres than given");
    assert!(
        sample_weight.is_none_or(|w| w.len() == n),
        "one sample weight per row"
    );
    let m = k - fold;
    if k == 0 {
        return ScoredCandidates {
            m,
            chunk_potentials: Vec::new(),
            potentials: Vec::new(),
            min_lsb: Vec::new(),
        };
    }
    let per_chunk: Vec<(Vec<f64>, Vec<LowBits>)> = min_dist
        .par_chunks_mut(CHUNK_ROWS)
        .enumerate()
        .map(|(ci, current)| {
            let start = ci * CHUNK_ROWS;
            let mut pot = vec![0.0f64; m];
            let mut low = vec![LowBits::NONE; m];
            for_distance_blocks(x, centres, start, current.len(), |r0, dist| {
                for (r, drow) in dist.chunks_exact(k).enumerate() {
                    let i = r0 + r;
                    let cur = &mut current[i];
                    for &dc in &drow[..fold] {
                        *cur = cur.min(dc.to_f64_exact());
                    }
                    let w = sample_weight.map_or(1.0, |w| w[start + i].to_f64_exact());
                    for ((p, lb), &dc) in pot.iter_mut().zip(low.iter_mut()).zip(&drow[fold..]) {
                        let t = seeding_term(w, *cur, dc);
                        *p += t;
                        lb.add(t);
                    }
                }
            });
            (pot, low)
        })
        .collect();
    let mut chunk_potentials = Vec::with_capacity(per_chunk.len() * m);
    let mut potentials = vec![0.0f64; m];
    let mut low = vec![LowBits::NONE; m];
    for (pot, lb) in &per_chunk {
        chunk_potentials.extend_from_slice(pot);
        for (t, v) in potentials.iter_mut().zip(pot) {
            *t += v;
        }
        for (a, b) in low.iter_mut().zip(lb) {
            a.merge(*b);
        }
    }
    let min_lsb = low.iter().map(|l| l.exponent()).collect();
    ScoredCandidates {
        m,
        chunk_potentials,
        potentials,
        min_lsb,
    }
}

/// The terms [`fold_and_score`] summed for centre `column` of `centres` over
/// rows `start..start + rows`, after its folding (`min_dist` as that pass
/// left it): `w_i min(min_dist[i], d(x_i, centres[column]))`. Recomputed with
/// the same centres, so the values are the pass's to the bit.
pub fn seeding_terms<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    min_dist: &[f64],
    centres: &PreparedCentres<T>,
    column: usize,
    start: usize,
    rows: usize,
) -> Vec<f64> {
    let k = centres.k();
    assert!(column < k, "no such centre");
    assert!(start + rows <= x.rows() && min_dist.len() == x.rows());
    let mut terms = Vec::with_capacity(rows);
    for_distance_blocks(x, centres, start, rows, |r0, dist| {
        for (r, drow) in dist.chunks_exact(k).enumerate() {
            let i = start + r0 + r;
            let w = sample_weight.map_or(1.0, |w| w[i].to_f64_exact());
            terms.push(seeding_term(w, min_dist[i], drow[column]));
        }
    });
    terms
}

/// `1 / max(||row||, 1e-12)`, in f64.
#[inline]
pub fn inv_norm<T: Float>(row: &[T]) -> f64 {
    // Four running sums keep the loop off the add latency.
    let mut acc = [0.0f64; 4];
    let mut chunks = row.chunks_exact(4);
    for c in &mut chunks {
        for i in 0..4 {
            acc[i] += c[i].to_f64_exact() * c[i].to_f64_exact();
        }
    }
    for (i, v) in chunks.remainder().iter().enumerate() {
        acc[i] += v.to_f64_exact() * v.to_f64_exact();
    }
    let sq = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    1.0 / sq.sqrt().max(COSINE_NORM_FLOOR)
}

/// Divides `row` by `max(||row||, 1e-12)`.
pub fn normalize_in_place<T: Float>(row: &mut [T]) {
    let s = inv_norm(row);
    for v in row.iter_mut() {
        *v = T::from_f64_lossy(v.to_f64_exact() * s);
    }
}

#[inline]
pub(crate) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    a.iter().zip(b).fold(T::zero(), |acc, (&x, &y)| acc + x * y)
}
