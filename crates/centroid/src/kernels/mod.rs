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
//! - [`candidate_potentials`] and [`update_min_distances`]: greedy k-means++
//!   seeding's two passes, without an `n x candidates` matrix.
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
    let (n, m) = (x.rows(), candidates.k());
    assert_eq!(
        x.cols(),
        candidates.d(),
        "data width must match the candidates"
    );
    assert_eq!(min_dist.len(), n, "one distance per row");
    assert!(
        sample_weight.is_none_or(|w| w.len() == n),
        "one sample weight per row"
    );
    if m == 0 {
        return Vec::new();
    }
    let partials: Vec<Vec<f64>> = min_dist
        .par_chunks(CHUNK_ROWS)
        .enumerate()
        .map(|(ci, current)| {
            let start = ci * CHUNK_ROWS;
            let rows = current.len();
            let mut dist = vec![T::zero(); rows * m];
            distances(x.slice_rows(start, start + rows), candidates, &mut dist);
            let mut pot = vec![0.0f64; m];
            for (i, (&cur, drow)) in current.iter().zip(dist.chunks_exact(m)).enumerate() {
                let w = sample_weight.map_or(1.0, |w| w[start + i].to_f64_exact());
                for (p, &dc) in pot.iter_mut().zip(drow) {
                    *p += w * cur.min(dc.to_f64_exact());
                }
            }
            pot
        })
        .collect();
    let mut total = vec![0.0f64; m];
    for p in &partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Greedy k-means++'s update pass: `min_dist[x] = min(min_dist[x], d(x, c))`
/// over the centres `c` of `centres` (usually the one just chosen), without
/// an `n x k` matrix.
pub fn update_min_distances<T: Float>(
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    min_dist: &mut [f64],
) {
    let n = x.rows();
    assert_eq!(x.cols(), centres.d(), "data width must match the centres");
    assert_eq!(min_dist.len(), n, "one distance per row");
    if centres.k() == 0 {
        return;
    }
    min_dist
        .par_chunks_mut(CHUNK_ROWS)
        .enumerate()
        .for_each(|(ci, current)| {
            let start = ci * CHUNK_ROWS;
            let rows = current.len();
            let mut labels = vec![0u32; rows];
            let mut best = vec![T::zero(); rows];
            assign(
                x.slice_rows(start, start + rows),
                centres,
                &mut labels,
                &mut best,
            );
            for (c, &b) in current.iter_mut().zip(&best) {
                *c = c.min(b.to_f64_exact());
            }
        });
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
