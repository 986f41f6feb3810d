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
//! `n`); each chunk runs the tile kernel of `tile.rs` (or, for small `d` and `k`,
//! the lane kernel of `lanes.rs`), which computes `x.c`
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
//! On processors with AMX-BF16 (x86-64 Linux) or AVX512-BF16, f32 problems
//! with `k >= 32` and `d >= 64` run `bf16/` instead when no path is asked
//! for: bf16 split products (on the tile unit, or with `vdpbf16ps`) propose
//! candidates within a rigorous error margin, and f64 distances decide
//! between them, so its labels are the exact nearest centres (see that
//! module). `CENTROID_AMX=0` turns the tile unit off, `CENTROID_BF16=0` both.
//!
//! The kernel's values carry FMA rounding, so two centres whose distances
//! differ only in the last bits may be ordered differently than by the
//! one-pair-at-a-time [`reference`](assign_reference) (and between paths);
//! exact ties, such as duplicate centres, always go to the lowest index.

#[cfg(target_arch = "x86_64")]
mod bf16;
mod columns;
mod dispatch;
mod isa;
mod labelled;
mod lanes;
mod pack;
mod reference;
mod rowdist;
mod rowdot;
mod scalar;
mod seeding_pass;
pub(crate) mod simd;
pub mod sparse;
#[cfg(test)]
mod tests;
mod tile;

pub(crate) use columns::{
    add_columns, add_rows_f64, add_squared_deviations, block_clean, whole_numbers_of,
};
#[cfg(test)]
pub(crate) use isa::{require, Avx512Bf16};
#[cfg(test)]
pub(crate) use labelled::sq_dist_blocked;
pub(crate) use labelled::{add_labelled, add_loss, for_each_sq_dist};
use reference::accumulate_reference;
pub use reference::{assign_reference, distances_reference};
pub(crate) use rowdist::{distances_to, prefetch_row, scan_rows, sq_dist_any_order};
pub(crate) use scalar::RowsByCluster;
pub use scalar::{inv_norm, normalize_in_place, ClusterStats, Metric, COSINE_NORM_FLOOR};
pub(crate) use scalar::{sq_norm_f64, widened};
pub use seeding_pass::{
    candidate_potentials, fold_and_score, fold_and_score_pruned, seeding_terms,
    update_min_distances, ScoredCandidates, SeedingBounds,
};

use rayon::prelude::*;

use crate::float::Float;
use crate::matrix::MatRef;
use isa::Isa;
use pack::{Job, Op, Packed};
use scalar::dot;

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
    /// The centres packed for the bf16 kernel, when this CPU has one of its
    /// engines and the shape is worth it (f32 only).
    #[cfg(target_arch = "x86_64")]
    bf16: Option<std::sync::Arc<bf16::Bf16Centres>>,
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
        let packed = Packed::new(Isa::detect(), &data, &sq_norms, k, d, metric);
        #[cfg(target_arch = "x86_64")]
        let bf16 = match (T::as_f32(&data), T::as_f32(&sq_norms)) {
            (Some(c), Some(n)) => {
                bf16::Bf16Centres::new(c, n, k, d, metric).map(std::sync::Arc::new)
            }
            _ => None,
        };
        Self {
            centres: data,
            sq_norms,
            k,
            d,
            metric,
            packed,
            #[cfg(target_arch = "x86_64")]
            bf16,
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

    /// Whether `assign` runs on the bf16 kernel (AMX or AVX512-BF16) for
    /// these centres.
    pub(crate) fn on_bf16_path(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.bf16.is_some()
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Whether `assign` runs on bf16 products for these centres (the AMX
    /// tile unit or AVX512-BF16 vector products).
    pub(crate) fn on_bf16_products(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.bf16.is_some()
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Whether `assign` runs on AVX512-BF16 vector products for these
    /// centres (bf16 products without a tile unit: AMD Zen 4 and later).
    pub(crate) fn on_vector_bf16_products(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.bf16.as_ref().is_some_and(|b| b.on_vector_products())
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// The packing for `isa`: the centres' own when they were packed for it.
    fn packing_for(&self, isa: Isa) -> std::borrow::Cow<'_, Packed<T>> {
        if self.packed.isa == isa {
            std::borrow::Cow::Borrowed(&self.packed)
        } else {
            std::borrow::Cow::Owned(Packed::new(
                isa,
                &self.centres,
                &self.sq_norms,
                self.k,
                self.d,
                self.metric,
            ))
        }
    }

    /// The blocked kernels' job for rows `start..end` of `x`.
    fn job<'a>(
        &self,
        x: MatRef<'a, T>,
        start: usize,
        end: usize,
        packed: &'a Packed<T>,
    ) -> Job<'a, T> {
        Job {
            x: x.slice_rows(start, end).as_slice(),
            d: x.cols(),
            k: self.k,
            metric: self.metric,
            lanes: packed.lanes,
            panels: packed.panels,
            block_panels: packed.block_panels,
            data: packed.data(),
            bias: &packed.bias,
            rows: packed.rows(),
        }
    }

    /// Runs a chunk on the bf16 kernel when the caller did not ask for a
    /// particular path and the centres were packed for it (f32 only);
    /// false when the chunk is the caller's to run.
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    fn run_bf16(
        &self,
        isa: Option<Isa>,
        x: &[T],
        labels: &mut [u32],
        scores: Option<&mut [T]>,
        weights: Option<&[T]>,
        part: Option<&mut ClusterStats>,
        exact_loss: bool,
    ) -> bool {
        let (None, Some(a)) = (isa, self.bf16.as_deref()) else {
            return false;
        };
        let (Some(x), Some(centres)) = (T::as_f32(x), T::as_f32(&self.centres)) else {
            return false;
        };
        let weights = match weights {
            None => None,
            Some(w) => match T::as_f32(w) {
                Some(w) => Some(w),
                None => return false,
            },
        };
        let scores = match scores {
            None => None,
            Some(s) => match T::as_f32_mut(s) {
                Some(s) => Some(s),
                None => return false,
            },
        };
        bf16::run(
            a,
            bf16::Chunk {
                x,
                centres,
                labels,
                scores,
                weights,
                part,
                exact_loss,
            },
        );
        true
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
pub(crate) const PARTIAL_BYTES: usize = 32 << 20;

/// Elements of the result each task adds partials into when merging.
const MERGE_BLOCK: usize = 1 << 14;

/// The largest `k` the blocked kernels take: centre indices travel through
/// the argmin as floats, exact below 2^24 in f32. Larger `k` uses the
/// reference kernel.
const MAX_BLOCKED_K: usize = 1 << 24;

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
    assign_accumulate_reusing(
        x,
        sample_weight,
        centres,
        labels,
        stats,
        &mut Partials::default(),
    )
}

/// [`assign_accumulate`] on a chosen path (`None`: the centres' own), keeping
/// about `partial_budget` bytes of per-chunk partials alive at once (at least
/// one per thread): the tests run every instruction set and budget the
/// processor allows through it.
#[cfg(test)]
pub(crate) fn assign_accumulate_on<T: Float>(
    isa: Option<Isa>,
    partial_budget: usize,
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: &PreparedCentres<T>,
    labels: Option<&mut [u32]>,
    stats: &mut ClusterStats,
) {
    accumulate_chunks(
        isa,
        partial_budget,
        x,
        sample_weight,
        centres,
        labels,
        stats,
        false,
        &mut Partials::default(),
        None,
    )
}

/// [`assign_accumulate`] with the partials of the passes before (see
/// [`Partials`]).
pub(crate) fn assign_accumulate_reusing<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: &PreparedCentres<T>,
    labels: Option<&mut [u32]>,
    stats: &mut ClusterStats,
    partials: &mut Partials,
) {
    accumulate_chunks(
        None,
        PARTIAL_BYTES,
        x,
        sample_weight,
        centres,
        labels,
        stats,
        false,
        partials,
        None,
    )
}

/// What [`assign_accumulate_scanning`] calls with each block of rows
/// (`start..end` of `x`) the kernel is done with.
pub(crate) type AfterBlock<'a> = dyn Fn(usize, usize) + Sync + 'a;

/// Bytes of rows [`assign_accumulate_scanning`] hands on at a time: the
/// kernel's block is still in L2 (2 MiB on Zen 4 and Sapphire Rapids)
/// when `after` reads it.
const AFTER_BLOCK_BYTES: usize = 512 << 10;

/// [`assign_accumulate_reusing`], calling `after(start, end)` on each block
/// of about [`AFTER_BLOCK_BYTES`] of rows as soon as the kernel has labelled
/// and added them, while they are still in cache: a second look at every
/// row (the pruning's norms and exact-sum test) at the cost of reading it
/// from L2, not memory. A row's label does not depend on its block, and
/// each block's rows are added to the chunk's partial after the block
/// before, in row order: the row-dot, tile and bf16 paths then give the
/// sums of [`assign_accumulate_reusing`] to the bit (tested); the loss is
/// summed block by block, and the lane kernel (`d <= 16`, never scanned:
/// see `crate::batch`) would also add each block's sums on its own.
pub(crate) fn assign_accumulate_scanning<T: Float>(
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    labels: &mut [u32],
    stats: &mut ClusterStats,
    partials: &mut Partials,
    after: &AfterBlock<'_>,
) {
    accumulate_chunks(
        None,
        PARTIAL_BYTES,
        x,
        None,
        centres,
        Some(labels),
        stats,
        false,
        partials,
        Some(after),
    )
}

/// [`assign_accumulate_on`], or with `exact_loss` the additions of
/// [`add_labelled`] with its loss ([`assign_add_labelled`]), its partials
/// from `partials`.
// The pass's path, data, centres and outputs, and which loss: grouping
// them would only rename them.
#[allow(clippy::too_many_arguments)]
fn accumulate_chunks<T: Float>(
    isa: Option<Isa>,
    partial_budget: usize,
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: &PreparedCentres<T>,
    labels: Option<&mut [u32]>,
    stats: &mut ClusterStats,
    exact_loss: bool,
    partials: &mut Partials,
    after_block: Option<&AfterBlock<'_>>,
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
    if n == 0 {
        return;
    }
    let packed = centres.packing_for(isa.unwrap_or(centres.packed.isa));
    let n_chunks = n.div_ceil(CHUNK_ROWS);
    let mut label_chunks: Vec<Option<&mut [u32]>> = match labels {
        Some(l) => l.chunks_mut(CHUNK_ROWS).map(Some).collect(),
        None => (0..n_chunks).map(|_| None).collect(),
    };
    let group = chunk_group(partial_budget, k, d, n_chunks);
    let parts = partials.take(group, k, d);
    let blocked = k > 0 && k < MAX_BLOCKED_K;
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
                let mut scores = vec![T::zero(); rows];
                part.clear();
                // The rows `start..end` of the chunk, their labels and scores.
                let mut run = |start: usize, end: usize, labels: &mut [u32], scores: &mut [T]| {
                    let weights = sample_weight.map(|w| &w[start..end]);
                    #[cfg(target_arch = "x86_64")]
                    if centres.run_bf16(
                        isa,
                        x.slice_rows(start, end).as_slice(),
                        labels,
                        Some(&mut *scores),
                        weights,
                        Some(&mut *part),
                        exact_loss,
                    ) {
                        return;
                    }
                    if exact_loss {
                        // Off the bf16 path (which `assign_add_labelled`
                        // declines): the two steps it stands for.
                        let rows = x.slice_rows(start, end);
                        assign_on(isa, rows, centres, labels, Some(&mut *scores));
                        add_labelled(rows, weights, labels, centres.centres(), part, true);
                    } else if blocked {
                        let job = centres.job(x, start, end, &packed);
                        dispatch::run(
                            packed.isa,
                            &job,
                            Op::Accumulate {
                                weights,
                                labels,
                                scores,
                                part: &mut *part,
                            },
                        );
                    } else {
                        assign_reference(x.slice_rows(start, end), centres, labels, scores);
                        accumulate_reference(
                            x.slice_rows(start, end),
                            weights,
                            centres.metric,
                            labels,
                            scores,
                            part,
                        );
                    }
                };
                match after_block {
                    None => run(start, end, labels, &mut scores),
                    // Blocks that fit L2, each handed on once the kernel is
                    // done with it; the rows are added in the same order.
                    Some(after) => {
                        let block =
                            (AFTER_BLOCK_BYTES / (d * std::mem::size_of::<T>()).max(1)).max(1);
                        for b0 in (start..end).step_by(block) {
                            let b1 = (b0 + block).min(end);
                            let (l, s) = (b0 - start, b1 - start);
                            run(b0, b1, &mut labels[l..s], &mut scores[l..s]);
                            after(b0, b1);
                        }
                    }
                }
            });
        merge_in_order(stats, &parts[..g1 - g0]);
    }
}

/// [`assign`], then [`add_labelled`] with its loss, over every row of `x`,
/// to the same bits, in one read of each row, where the centres take the
/// bf16 path (AMX or AVX512-BF16: f32 rows, `d >= 64`, `k >= 32`): the
/// labels of `assign`, and each chunk of [`CHUNK_ROWS`] rows added in row
/// order (weighted, never normalised, each row's loss its f64 distance to
/// its centre, one chain) into a partial that starts empty, the partials
/// added into `stats` in chunk order. Those are the additions of
/// `crate::batch`'s labelled passes, pruned or not, so this pass may stand
/// in for any of them. Returns `false`, having done nothing, for centres
/// that do not take the bf16 path: there, labelling a block of rows and
/// then adding it from L2 ([`add_labelled`] groups a block's rows by
/// cluster) is faster than adding each row as the kernel finishes it
/// (Fashion-MNIST, k = 10, row-dot kernel: 12 % slower fused), while on
/// the bf16 path the fused pass is faster (k = 100: 15 %).
pub(crate) fn assign_add_labelled<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: &PreparedCentres<T>,
    labels: &mut [u32],
    stats: &mut ClusterStats,
    partials: &mut Partials,
) -> bool {
    if !centres.on_bf16_path() {
        return false;
    }
    accumulate_chunks(
        None,
        PARTIAL_BYTES,
        x,
        sample_weight,
        centres,
        Some(labels),
        stats,
        true,
        partials,
        None,
    );
    true
}

/// The per-chunk partial statistics of a pass, kept for the passes after it
/// (one loop's passes take the same number of the same shape). Allocated
/// afresh in every pass, they came from whichever malloc arena the thread
/// that ran the pass owned: after glibc raises its mmap threshold past
/// their size, a freed group stays in its arena, and two passes run from
/// two threads held two groups (200,000 x 128, k = 1000: 58 MB above the
/// data when the machine was idle, 92-97 MB when it was busy, 58 MB with
/// one arena).
#[derive(Default)]
pub(crate) struct Partials(Vec<ClusterStats>);

impl Partials {
    /// `group` partials shaped `k x d`, each holding whatever its last use
    /// left (every chunk clears its own before adding to it).
    pub(crate) fn take(&mut self, group: usize, k: usize, d: usize) -> &mut [ClusterStats] {
        if self.0.first().is_some_and(|p| (p.k, p.d) != (k, d)) {
            self.0.clear();
        }
        while self.0.len() < group {
            self.0.push(ClusterStats::new(k, d));
        }
        &mut self.0[..group]
    }
}

/// How many chunks of a pass over `n_chunks` chunks run between merges of
/// their `k x d` partial statistics, keeping about `partial_budget` bytes of
/// partials alive (at least one per thread). It changes when partials are
/// added, never which or in what order, so it may follow the thread count.
pub(crate) fn chunk_group(partial_budget: usize, k: usize, d: usize, n_chunks: usize) -> usize {
    let part_bytes = (k * d + 2 * k) * 8 + 64;
    (partial_budget / part_bytes)
        .max(rayon::current_num_threads())
        .clamp(1, n_chunks.max(1))
}

/// Adds `parts` into `stats` one after the other; each element sees the same
/// additions in the same order whichever task does them.
pub(crate) fn merge_in_order(stats: &mut ClusterStats, parts: &[ClusterStats]) {
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

/// Nearest centre (`labels`) and the distance to it (`scores`) of every row.
pub fn assign<T: Float>(
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    labels: &mut [u32],
    scores: &mut [T],
) {
    assign_on(None, x, centres, labels, Some(scores))
}

/// The nearest centre of every row, the labels [`assign`] gives, for
/// callers that drop the distances: the bf16 kernel then skips each row's
/// direct distance (a sixth of its pass at Fashion-MNIST's k = 100).
pub fn assign_labels<T: Float>(x: MatRef<'_, T>, centres: &PreparedCentres<T>, labels: &mut [u32]) {
    assign_on(None, x, centres, labels, None)
}

/// [`assign`] on a chosen path (`None`: the centres' own); without
/// `scores`, [`assign_labels`].
pub(crate) fn assign_on<T: Float>(
    isa: Option<Isa>,
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    labels: &mut [u32],
    scores: Option<&mut [T]>,
) {
    let (n, d) = (x.rows(), x.cols());
    assert_eq!(d, centres.d(), "data width must match the centres");
    assert_eq!(labels.len(), n, "one label per row");
    assert!(
        scores.as_ref().is_none_or(|s| s.len() == n),
        "one score per row"
    );
    let packed = centres.packing_for(isa.unwrap_or(centres.packed.isa));
    let blocked = centres.k > 0 && centres.k < MAX_BLOCKED_K;
    // Chunks of the scores, or none for each chunk of labels.
    let score_chunks: Vec<Option<&mut [T]>> = match scores {
        Some(s) => s.chunks_mut(CHUNK_ROWS).map(Some).collect(),
        None => (0..n.div_ceil(CHUNK_ROWS)).map(|_| None).collect(),
    };
    labels
        .par_chunks_mut(CHUNK_ROWS)
        .zip(score_chunks.into_par_iter())
        .enumerate()
        .for_each(|(ci, (labels, scores))| {
            let start = ci * CHUNK_ROWS;
            let end = start + labels.len();
            #[cfg(target_arch = "x86_64")]
            let scores = {
                let mut scores = scores;
                let done = centres.run_bf16(
                    isa,
                    x.slice_rows(start, end).as_slice(),
                    labels,
                    scores.as_deref_mut(),
                    None,
                    None,
                    false,
                );
                if done {
                    return;
                }
                scores
            };
            // The other kernels compute the distances on the way.
            let mut own = Vec::new();
            let scores = match scores {
                Some(s) => s,
                None => {
                    own.resize(labels.len(), T::zero());
                    &mut own[..]
                }
            };
            if blocked {
                dispatch::run(
                    packed.isa,
                    &centres.job(x, start, end, &packed),
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
    isa: Option<Isa>,
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
    let k = centres.k;
    if k == 0 {
        return;
    }
    let packed = centres.packing_for(isa.unwrap_or(centres.packed.isa));
    let blocked = k < MAX_BLOCKED_K;
    out.par_chunks_mut(CHUNK_ROWS * k)
        .enumerate()
        .for_each(|(ci, out)| {
            let start = ci * CHUNK_ROWS;
            let end = start + out.len() / k;
            if blocked {
                dispatch::run(
                    packed.isa,
                    &centres.job(x, start, end, &packed),
                    Op::Distances { out },
                );
            } else {
                distances_reference(x.slice_rows(start, end), centres, out);
            }
        });
}
