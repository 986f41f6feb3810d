//! A plain functional K-means API over whole in-memory data sets: Lloyd's
//! algorithm to convergence and single mini-batch steps.
//!
//! This is what the scikit-learn-compatible Python classes and the
//! benchmarks drive. It follows scikit-learn's `KMeans` (algorithm="lloyd")
//! and `MiniBatchKMeans` step by step, so that the same initial centres give
//! the same result: the same stopping rule, the same relocation of empty
//! clusters, and labels and inertia recomputed with the final centres. All
//! distance work goes through [`crate::kernels`]; per-cluster sums are in
//! `f64`.

use rayon::prelude::*;
use std::mem::MaybeUninit;

use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::{
    self, ClusterStats, Metric, Partials, PreparedCentres, RowsByCluster, CHUNK_ROWS,
};
use crate::matrix::{MatRef, Matrix};
use crate::partial;
use crate::pruning::{self, BoundsMut, PassCentres, Pruner, RowBounds};

/// The outcome of [`lloyd`].
#[derive(Clone, Debug)]
pub struct LloydFit<T> {
    /// The final `k x d` centres.
    pub centres: Matrix<T>,
    /// The nearest final centre of every row.
    pub labels: Vec<u32>,
    /// The weighted sum of squared distances of the rows to their centres.
    pub inertia: f64,
    /// The number of Lloyd iterations run (at least 1).
    pub n_iter: usize,
    /// Each iteration's loss: the weighted squared distances of the rows to
    /// the centres they were assigned to in that iteration (scikit-learn's
    /// verbose "Iteration i, inertia x").
    pub iteration_losses: Vec<f64>,
    /// Why the iterations stopped.
    pub stop: LloydStop,
}

/// Why [`lloyd`] stopped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LloydStop {
    /// An iteration gave the same labels as the one before.
    Strict,
    /// The squared centre shift (the value given) was at most `tol`.
    Tolerance(f64),
    /// `max_iter` iterations ran.
    MaxIter,
}

/// Checks the shapes and values shared by every entry point.
pub(crate) fn check_inputs<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: MatRef<'_, T>,
) -> Result<()> {
    check_inputs_with(x, sample_weight, centres, Values::Scan)
}

/// Whether [`check_inputs_with`] reads the data's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    /// Read every value: NaN and infinity are refused, with their place.
    Scan,
    /// The caller has just produced or read every value and found each
    /// finite ([`subtracted_rows`] says so of its result): skip that read,
    /// a twentieth of a 20-iteration fit of Fashion-MNIST. Shapes, centres
    /// and weights are checked all the same.
    KnownFinite,
}

/// [`check_inputs`], the data's values read or not (see [`Values`]).
pub(crate) fn check_inputs_with<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: MatRef<'_, T>,
    values: Values,
) -> Result<()> {
    if x.rows() == 0 || x.cols() == 0 {
        return Err(Error::InvalidData(format!(
            "the data is empty ({} rows x {} columns)",
            x.rows(),
            x.cols()
        )));
    }
    if centres.rows() == 0 {
        return Err(Error::InvalidArgument(
            "at least one centre is needed".into(),
        ));
    }
    if centres.cols() != x.cols() {
        return Err(Error::InvalidShape(format!(
            "the centres have {} features but the data has {}",
            centres.cols(),
            x.cols()
        )));
    }
    // The common case, clean data, in one read compiled for the widest
    // instruction set; only a failure is located, as a serial scan would.
    let (xs, block) = (x.as_slice(), CHUNK_ROWS * x.cols());
    let clean = values == Values::KnownFinite
        || xs
            .par_chunks(block)
            .all(|b| kernels::block_clean(b, x.cols(), None));
    let first_bad = if clean {
        None
    } else {
        first_where(xs, block, |v| !v.is_finite())
    };
    if let Some(idx) = first_bad {
        return Err(Error::InvalidData(format!(
            "row {}, column {} of the data is not finite",
            idx / x.cols(),
            idx % x.cols()
        )));
    }
    if let Some(idx) = centres.as_slice().iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidData(format!(
            "centre {} is not finite",
            idx / x.cols()
        )));
    }
    if let Some(w) = sample_weight {
        if w.len() != x.rows() {
            return Err(Error::InvalidShape(format!(
                "sample_weight has {} values but the data has {} rows",
                w.len(),
                x.rows()
            )));
        }
        if let Some(i) = first_where(w, CHUNK_ROWS, |v| !v.is_finite() || v < T::zero()) {
            return Err(Error::InvalidData(format!(
                "sample_weight[{i}] = {} is not a finite non-negative number",
                w[i]
            )));
        }
    }
    Ok(())
}

/// The index of the first value of `values` that is `bad`. Blocks of `block`
/// values are checked in parallel without early exit (a plain AND over a
/// block vectorises); only the first failing block, in order, is searched
/// value by value, so the answer is the same as a serial scan's.
fn first_where<T: Float>(
    values: &[T],
    block: usize,
    bad: impl Fn(T) -> bool + Sync,
) -> Option<usize> {
    let block = block.max(1);
    let b = values
        .par_chunks(block)
        .position_first(|c| !c.iter().fold(true, |ok, &v| ok & !bad(v)))?;
    let start = b * block;
    values[start..]
        .iter()
        .position(|&v| bad(v))
        .map(|i| start + i)
}

/// `sum` plus the weighted `||x_i - c_{labels[i]}||^2` of rows `start..` of
/// `x` (as many as `labels` holds), added one row after the other (so a
/// chunk summed in consecutive pieces gives the same bits as in one), each
/// distance [`sq_dist`]'s (`c64`: the centres widened to f64).
fn chunk_inertia<T: Float>(
    sum: f64,
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    c64: &[f64],
    start: usize,
    labels: &[u32],
) -> f64 {
    let end = start + labels.len();
    kernels::add_loss(
        x.slice_rows(start, end),
        sample_weight.map(|w| &w[start..end]),
        labels,
        c64,
        sum,
    )
}

/// Weighted sum of squared distances of every row to the centre its label
/// names, computed directly as `||x - c||^2` (as scikit-learn's inertia is).
///
/// Rows are summed in chunks of [`CHUNK_ROWS`] in parallel and the chunk
/// sums are added in chunk order, so the result does not depend on the
/// thread count.
pub fn inertia<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: MatRef<'_, T>,
    labels: &[u32],
) -> f64 {
    let c64 = kernels::widened(centres.as_slice());
    let partials: Vec<f64> = labels
        .par_chunks(CHUNK_ROWS)
        .enumerate()
        .map(|(ci, l)| chunk_inertia(0.0, x, sample_weight, &c64, ci * CHUNK_ROWS, l))
        .collect();
    partials.iter().sum()
}

/// Nearest centre of every row (into `labels`) and the inertia of those
/// labels, as [`kernels::assign`] followed by [`inertia`] would give them, in
/// one pass: each chunk's rows are summed while still in cache after the
/// kernel labelled them.
fn assign_with_inertia<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: MatRef<'_, T>,
    labels: &mut [u32],
) -> f64 {
    // Each chunk is labelled and summed a block at a time, so the exact
    // distances read rows the kernel has just left in L2: a chunk of wide
    // rows (2048 x 784 f32 is 6.4 MB) would otherwise be read twice from
    // memory.
    const BLOCK_BYTES: usize = 256 << 10;
    let block = (BLOCK_BYTES / (x.cols() * std::mem::size_of::<T>()).max(1)).clamp(1, CHUNK_ROWS);
    let prepared = PreparedCentres::new(centres, Metric::SquaredEuclidean);
    let c64 = kernels::widened(centres.as_slice());
    let partials: Vec<f64> = labels
        .par_chunks_mut(CHUNK_ROWS)
        .enumerate()
        .map(|(ci, l)| {
            let mut sum = 0.0;
            for (b, lb) in l.chunks_mut(block).enumerate() {
                let start = ci * CHUNK_ROWS + b * block;
                let rows = x.slice_rows(start, start + lb.len());
                // Labels alone: the inertia is summed in f64 below.
                kernels::assign_labels(rows, &prepared, lb);
                sum = chunk_inertia(sum, x, sample_weight, &c64, start, lb);
            }
            sum
        })
        .collect();
    partials.iter().sum()
}

/// Moves empty clusters to the rows farthest from their centres, as
/// scikit-learn does (see [`partial::relocate_empty_clusters`], which this
/// shares with the partitioned path): the farthest row (by squared distance
/// to its assigned old centre) goes to the first empty cluster, the next
/// farthest to the second, and so on.
fn relocate_empty_clusters<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    old_centres: MatRef<'_, T>,
    labels: &mut [u32],
    stats: &mut ClusterStats,
) -> bool {
    let empty = partial::empty_clusters(stats);
    if empty.is_empty() {
        return false;
    }
    let farthest = partial::farthest_rows(x, sample_weight, old_centres, labels, 0, empty.len());
    if farthest.first().is_none_or(|f| f.distance == 0.0) {
        // More clusters than distinct rows: moving a row would only empty
        // another cluster (scikit-learn >= 1.5 does not either).
        return false;
    }
    let moved = partial::relocate_empty_clusters(stats, &farthest);
    for &(row, new_j) in &moved {
        labels[row as usize] = new_j;
    }
    !moved.is_empty()
}

/// Lloyd's algorithm from `initial_centres` (squared Euclidean), as
/// scikit-learn's `KMeans(algorithm="lloyd")` runs it: at most `max_iter`
/// iterations, stopping early when no label changes, or when the sum over
/// centres of the squared centre shift is at most `tol` (an absolute value:
/// scikit-learn passes `tol * mean(var(x, axis=0))`). Labels and inertia are
/// those of the final centres. `iteration_losses` holds each iteration's
/// loss when `track_losses` is set (scikit-learn's verbose output) and is
/// empty otherwise: computing it reads every row, which a pruned iteration
/// need not do.
///
/// Rows whose label provably cannot change skip the distance work where
/// that pays (see [`Pruning::Auto`] and `pruning.rs`); the labels are
/// always those of the unpruned pass.
pub fn lloyd<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    initial_centres: MatRef<'_, T>,
    max_iter: usize,
    tol: f64,
    track_losses: bool,
) -> Result<LloydFit<T>> {
    lloyd_values(
        x,
        sample_weight,
        initial_centres,
        max_iter,
        tol,
        track_losses,
        Values::Scan,
    )
}

/// [`lloyd`], the data's values read for NaN and infinity first or not:
/// [`Values::KnownFinite`] where the caller knows them finite (the centred
/// copy of `subtracted_rows`, which found every value it wrote finite), so
/// that the fit does not read the data once more to check them.
pub fn lloyd_values<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    initial_centres: MatRef<'_, T>,
    max_iter: usize,
    tol: f64,
    track_losses: bool,
    values: Values,
) -> Result<LloydFit<T>> {
    lloyd_checked(
        x,
        sample_weight,
        initial_centres,
        max_iter,
        tol,
        track_losses,
        Pruning::Auto,
        values,
    )
    .map(|(f, _)| f)
}

/// Whether [`lloyd_with`] prunes rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))] // Off and On: tests compare the two
pub(crate) enum Pruning {
    /// Every row labelled by [`kernels::assign`] every iteration, then
    /// summed by [`kernels::add_labelled`]: the unpruned twin of
    /// `On`, with the same additions in the same order.
    Off,
    /// Hamerly bounds (`pruning.rs`): labels, centres and losses bit for bit
    /// those of `Off`. Where the sums are exact in any order
    /// ([`Pruner::exact_sums`], unweighted, losses not tracked), an
    /// iteration after the first reads only the rows that fail their bounds
    /// and the rows that change cluster.
    On,
    /// What [`lloyd`] runs, by [`worth_pruning`]: `On` from the first pass
    /// for many centres, else the fused [`kernels::assign_accumulate`] pass
    /// (sums in the kernels' order, loss from the kernels' scores) until
    /// labels settle (see [`SETTLED`]) and `On` from then on. A pruned pass
    /// after the first that recomputes more than half of the rows hands back
    /// to the fused pass for the rest of the fit: bounds that fail that
    /// often cost more than they save (Fashion-MNIST, k = 100: nearly every
    /// row in the second pass; blobs: under 1 %). A pruner started on
    /// settled labels by the group filter (AVX512-BF16 vector products) also
    /// hands back once a pass reads more than 7/8 of the rows.
    Auto,
}

/// How [`Pruning::Auto`] starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AutoStart {
    /// No pruning for this shape.
    Never,
    /// Prune from the first pass, rows first labelled by the kernel's fast
    /// path (AMX where there is one), where the first pass's centres find
    /// the clusters separated ([`pruning::well_separated`]); otherwise
    /// from the pass after labels settle, if its centres find them
    /// separated, or, on AVX512-BF16 vector products in wide rows, if
    /// group bounds would spare most rows
    /// ([`pruning::group_bounds_would_hold`]), every row's distances
    /// computed then.
    AtOnce,
    /// Prune once labels settle, every row's distances computed in the
    /// first pruned pass (exact sums only, checked then).
    WhenSettled,
}

/// See [`Pruning::Auto`]: a loop that prunes when labels settle starts once
/// fewer than `n / SETTLED` rows changed cluster in an iteration (measured
/// on Fashion-MNIST, k = 10: 2 to 5 % of the labels change in each of the
/// first ten iterations, while bounds fail for a third to a half of the
/// rows; after that 2 to 5 % of the rows fail).
const SETTLED: usize = 50;

/// An unpruned pass over exact sums moves the rows whose label changed
/// instead of summing every row once fewer than `n / MOVE_AT_MOST` labels
/// changed in the pass before (Fashion-MNIST, k = 10: a sixth in the second
/// pass, a twelfth in the third, then fewer); `move_changed_rows` sums
/// afresh beyond the same share.
const MOVE_AT_MOST: usize = 8;

/// When pruning pays for `k` centres of width `d` (see [`AutoStart`]).
/// With few cheap distances per row (`k d < 1024`: 1,000,000 x 8 with
/// k = 16) a row's bound bookkeeping costs about what its distances do.
/// With many centres (`k >= 32`) the distances dominate and the bounds pay
/// from the start where clusters are separated (blobs), and not at all
/// where they overlap (Fashion-MNIST, k = 100: most bounds fail in every
/// pass, and the pass that starts them costs two fused ones). With few, a pruned pass that still sums every row costs
/// what the fused pass does; it pays only once most rows keep their bounds
/// and the sums are exact, so that moved rows are added and removed
/// instead (pixel data).
fn worth_pruning(k: usize, d: usize) -> AutoStart {
    if k < 2 || k * d < 1024 {
        AutoStart::Never
    } else if k >= 32 {
        AutoStart::AtOnce
    } else {
        AutoStart::WhenSettled
    }
}

/// [`lloyd`] with the pruning chosen; also returns, per iteration, how many
/// rows went through the kernel (the tests compare the pruning's choices).
#[cfg(test)]
pub(crate) fn lloyd_with<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    initial_centres: MatRef<'_, T>,
    max_iter: usize,
    tol: f64,
    track_losses: bool,
    pruning: Pruning,
) -> Result<(LloydFit<T>, Vec<usize>)> {
    lloyd_checked(
        x,
        sample_weight,
        initial_centres,
        max_iter,
        tol,
        track_losses,
        pruning,
        Values::Scan,
    )
}

/// [`lloyd_with`], the data's values read first or not (see [`Values`]).
// The fit's arguments, the pruning and the check: grouping them would only
// rename them.
#[allow(clippy::too_many_arguments)]
fn lloyd_checked<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    initial_centres: MatRef<'_, T>,
    max_iter: usize,
    tol: f64,
    track_losses: bool,
    pruning: Pruning,
    values: Values,
) -> Result<(LloydFit<T>, Vec<usize>)> {
    check_inputs_with(x, sample_weight, initial_centres, values)?;
    if max_iter == 0 {
        return Err(Error::InvalidArgument("max_iter must be at least 1".into()));
    }
    if tol.is_nan() || tol < 0.0 {
        return Err(Error::InvalidArgument(format!(
            "tol must be a non-negative number, got {tol}"
        )));
    }
    let (d, k) = (x.cols(), initial_centres.rows());
    // Exact sums let an iteration move rows between clusters' sums instead
    // of summing every row again; they are of no use when every row is read
    // for its loss anyway.
    let check_exact = sample_weight.is_none() && !track_losses;
    let mut passes = LloydPasses::new(x, k, pruning, Unpruned::Fused, check_exact);
    let mut centres = Matrix::new(initial_centres.as_slice().to_vec(), k, d)?;
    let mut stats = ClusterStats::new(k, d);
    let mut stop = LloydStop::MaxIter;
    let mut iteration_losses = Vec::new();
    let mut n_iter = 0;
    for _ in 0..max_iter {
        n_iter += 1;
        let prepared = PreparedCentres::new(centres.view(), Metric::SquaredEuclidean);
        let rows = passes.pass(x, sample_weight, &prepared, &mut stats, track_losses);
        if track_losses {
            iteration_losses.push(stats.loss);
        }
        if relocate_empty_clusters(
            x,
            sample_weight,
            centres.view(),
            &mut passes.labels,
            &mut stats,
        ) {
            passes.relocated();
        }
        let shift = update_centres(&mut centres, &stats);
        if passes.end_pass(x, rows) == Some(0) {
            stop = LloydStop::Strict;
            break;
        }
        if shift <= tol {
            stop = LloydStop::Tolerance(shift);
            break;
        }
    }
    // Labels that match the final centres (unless no label changed), and
    // their inertia: from one more pruned pass and the exact sums where
    // the loop pruned, else from reading every row.
    let strict = stop == LloydStop::Strict;
    let from_sums = passes.final_inertia(x, centres.view(), &mut stats, strict);
    let recomputed = std::mem::take(&mut passes.kernel_rows);
    let mut labels = passes.into_labels();
    let inertia = match from_sums {
        Some(v) => v,
        None if strict => inertia(x, sample_weight, centres.view(), &labels),
        None => assign_with_inertia(x, sample_weight, centres.view(), &mut labels),
    };
    let fit = LloydFit {
        centres,
        labels,
        inertia,
        n_iter,
        iteration_losses,
        stop,
    };
    Ok((fit, recomputed))
}

/// How an unpruned pass of [`LloydPasses`] labels and sums the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unpruned {
    /// The fused [`kernels::assign_accumulate`]: one read of each row, sums
    /// in the kernels' order, the loss from the kernels' scores. Fastest,
    /// but not the bits of a pruned pass: for a loop whose result need not
    /// match another run pass for pass (scikit-learn's fit).
    Fused,
    /// [`kernels::assign`], then [`kernels::add_labelled`]: the very
    /// additions of a pruned pass, so a pass gives the same bits whether or
    /// not it was pruned, and whatever the passes before it were (the
    /// Estimator: resuming from a checkpoint starts the bounds afresh).
    Labelled,
}

/// What the passes of [`LloydPasses`] know of the rows, for a loss taken
/// from the clusters' exact sums ([`pruning::inertia_from_exact_sums`]).
#[derive(Clone, Copy, Debug, PartialEq)]
enum SquaredNorms {
    /// Not learnt yet: no pass has needed a loss.
    Unknown,
    /// Some sum of the rows, or of their squared norms, is not exact in
    /// f64: the loss reads the rows.
    Inexact,
    /// Every such sum is exact; the rows' squared norms add up to this.
    Exact(f64),
}

impl SquaredNorms {
    /// From [`Pruner::exact_sq_norm_total`].
    fn from_total(total: Option<f64>) -> Self {
        total.map_or(Self::Inexact, Self::Exact)
    }

    /// The squared norms' total, where every sum is exact.
    fn exact_total(self) -> Option<f64> {
        match self {
            Self::Exact(total) => Some(total),
            Self::Unknown | Self::Inexact => None,
        }
    }
}

/// The passes of one Lloyd loop over the same rows (one [`lloyd`] call, or
/// the full-batch steps of one Estimator `train()` call on a constant
/// input): the labels of the last pass, those of the pass before, and the
/// bounds that let a pass skip rows whose label cannot change, with the
/// policy of [`Pruning`] deciding when to keep them.
pub(crate) struct LloydPasses<T> {
    pruning: Pruning,
    auto: AutoStart,
    unpruned: Unpruned,
    /// Whether a pruner checks for exact sums ([`Pruner::exact_sums`]).
    check_exact: bool,
    pruner: Option<Pruner<T>>,
    /// Auto: whether a pruner may still be made once labels settle (never
    /// again after a pruned fit gave up: see [`LloydPasses::end_pass`]).
    may_prune: bool,
    pruned_passes: usize,
    /// AtOnce whose first centres found the clusters overlapping: labels
    /// have settled, and the next pass checks the separation again.
    separation_due: bool,
    /// AtOnce whose first centres found the clusters overlapping in wide
    /// rows: the pass after the first starts the pruner.
    wide_start: bool,
    /// AtOnce on AVX512-BF16 vector products, clusters overlapping in wide
    /// rows: the centres of the last pass while labels settle, for
    /// [`pruning::group_bounds_would_hold`] (empty otherwise).
    last_centres: Vec<T>,
    /// The pruner was started by [`pruning::group_bounds_would_hold`]: it
    /// hands back once a pass reads nearly every row (see
    /// [`LloydPasses::end_pass`]).
    settled_start: bool,
    /// How many rows the last pass read: every row, unless it was pruned
    /// ([`PassCentres::rows_read`]).
    rows_read: usize,
    /// Every row's label from the last pass.
    pub(crate) labels: Vec<u32>,
    /// The labels of the pass before (none before the second pass).
    labels_old: Option<Vec<u32>>,
    /// The passes' per-chunk partial statistics, kept from pass to pass.
    partials: Partials,
    /// A pruner made before pruning starts (see [`LloydPasses::scan_for_moves`]),
    /// taken by the first pruner the loop starts instead of reading the rows
    /// again.
    scanned: Option<Pruner<T>>,
    /// Unpruned [`Unpruned::Fused`] passes may label the rows and move the
    /// changed ones between the clusters' sums ([`Pruner::exact_sums`]).
    exact_moves: bool,
    /// How many labels the last pass changed (`None` after the first).
    last_changed: Option<usize>,
    /// Passes that take their loss from the sums ([`LloydPasses::pass`]):
    /// whether they can, learnt in the first pass, from the rows alone.
    squared_norms: SquaredNorms,
    /// [`Unpruned::Labelled`] passes over rows whose sums are exact: the
    /// last pass's statistics, which the next pass brings up to date by
    /// moving the rows whose label changed (the caller's `stats` start
    /// empty at every step).
    last_stats: Option<ClusterStats>,
    /// How many unpruned passes moved rows instead of summing them.
    #[cfg(test)]
    pub(crate) moved_passes: usize,
    /// How many passes summed every row again for their loss
    /// ([`LloydPasses::sum_labelled_rows`]).
    #[cfg(test)]
    pub(crate) resummed_passes: usize,
    /// How many rows went through the kernels in each pass so far.
    pub(crate) kernel_rows: Vec<usize>,
}

impl<T: Float> LloydPasses<T> {
    /// Passes over the rows of `x` with `k` centres.
    pub(crate) fn new(
        x: MatRef<'_, T>,
        k: usize,
        pruning: Pruning,
        unpruned: Unpruned,
        check_exact: bool,
    ) -> Self {
        let auto = match pruning {
            Pruning::Auto => worth_pruning(k, x.cols()),
            Pruning::On | Pruning::Off => AutoStart::Never,
        };
        // Auto's pruner for AtOnce is made by the first pass, which knows
        // the centres (see `pruning::well_separated`).
        let pruner = match pruning {
            Pruning::On => Pruner::new(x, check_exact),
            _ => None,
        };
        Self {
            pruning,
            auto,
            unpruned,
            check_exact,
            pruner,
            may_prune: auto == AutoStart::WhenSettled,
            pruned_passes: 0,
            separation_due: false,
            wide_start: false,
            last_centres: Vec::new(),
            settled_start: false,
            rows_read: 0,
            labels: vec![0; x.rows()],
            labels_old: None,
            partials: Partials::default(),
            scanned: None,
            exact_moves: false,
            last_changed: None,
            squared_norms: SquaredNorms::Unknown,
            last_stats: None,
            #[cfg(test)]
            moved_passes: 0,
            #[cfg(test)]
            resummed_passes: 0,
            kernel_rows: Vec::new(),
        }
    }

    /// The pruner the loop starts now: the one [`LloydPasses::scan_for_moves`]
    /// made, or a new one (one read of the rows).
    fn new_pruner(&mut self, x: MatRef<'_, T>) -> Option<Pruner<T>> {
        self.scanned
            .take()
            .or_else(|| Pruner::new(x, self.check_exact))
    }

    /// After the first pass of a loop of [`Unpruned::Fused`] passes that
    /// may prune later: learns whether the sums are exact, reading the rows
    /// once for the pruner that starts later anyway (its norms are what
    /// that read is for), and keeps the pruner for then. With exact sums,
    /// the unpruned passes until pruning starts need only the labels: the
    /// sums come from moving the rows whose label changed, the very bits of
    /// summing afresh. At Fashion-MNIST's k = 10 (row-dot kernel), a third of
    /// a fused pass is its sums, and after the first few passes fewer than a
    /// tenth of the labels change in each.
    fn scan_for_moves(&mut self, x: MatRef<'_, T>) {
        if self.scanned.is_none() && self.wants_scan(x) {
            self.keep_scan(Pruner::new(x, true));
        }
    }

    /// Whether [`LloydPasses::scan_for_moves`] reads the rows after the
    /// first pass (or that pass scans them as it goes: see
    /// [`LloydPasses::pass`]).
    fn wants_scan(&self, x: MatRef<'_, T>) -> bool {
        self.unpruned == Unpruned::Fused
            && self.check_exact
            && self.pruning == Pruning::Auto
            && self.auto != AutoStart::Never
            && self.pruner.is_none()
            && pruning::may_have_exact_sums(x)
    }

    /// Keeps the pruner a scan made for when pruning starts.
    fn keep_scan(&mut self, scanned: Option<Pruner<T>>) {
        self.scanned = scanned;
        self.exact_moves = self.scanned.as_ref().is_some_and(Pruner::exact_sums);
    }

    /// One pass with the centres `prepared`: every row's label into
    /// [`LloydPasses::labels`] and the clusters' statistics into `stats`
    /// (the loss with `with_loss`, or in any unpruned [`Unpruned::Fused`]
    /// pass); returns how many rows went through the kernels.
    ///
    /// [`Unpruned::Labelled`] passes that check for exact sums (the
    /// Estimator's steps) take the loss from the clusters' exact sums where
    /// the rows allow ([`pruning::inertia_from_exact_sums`]: pixels), so
    /// that a pass reads only the rows whose label may change; elsewhere,
    /// and where those terms cancel, each row's f64 distance is added in
    /// row order. Which of the two depends on the rows, the labels and the
    /// centres alone, never on the passes before: a pass carried from
    /// earlier ones gives the bits of a first one.
    pub(crate) fn pass(
        &mut self,
        x: MatRef<'_, T>,
        sample_weight: Option<&[T]>,
        prepared: &PreparedCentres<T>,
        stats: &mut ClusterStats,
        with_loss: bool,
    ) -> usize {
        let n = x.rows();
        self.start_pruner_if_due(x, prepared);
        let loss_from_sums = with_loss
            && self.unpruned == Unpruned::Labelled
            && self.check_exact
            && sample_weight.is_none();
        if loss_from_sums && self.squared_norms == SquaredNorms::Unknown {
            self.learn_squared_norms_before_pass(x);
        }
        // The rows are read for the loss only where the sums cannot give it.
        let with_loss =
            with_loss && !(loss_from_sums && self.squared_norms.exact_total().is_some());
        if let Some(last) = &self.last_stats {
            stats.clone_from(last);
        }
        // Few labels changed last pass: an unpruned pass over exact sums
        // labels the rows and moves those that changed (the fallback of
        // `move_changed_rows`, a second read of every row, is then rare).
        let moves = self.exact_moves
            && !with_loss
            && sample_weight.is_none()
            && self.last_changed.is_some_and(|c| c * MOVE_AT_MOST < n);
        // A first fused pass that the exact-sum test follows scans each
        // block of rows as the kernel leaves it in L2, for the norms and
        // grid that test needs, instead of reading every row again after
        // the pass (Fashion-MNIST: 11 to 18 ms after a pass of 15 to 20, AMD
        // EPYC, 2 threads).
        let scan_now = self.kernel_rows.is_empty()
            && sample_weight.is_none()
            && self.scanned.is_none()
            && (self.wants_scan(x)
                || (loss_from_sums && self.squared_norms == SquaredNorms::Unknown));
        let mut scanned = None;
        let labels = &mut self.labels;
        let labels_old = &self.labels_old;
        let partials = &mut self.partials;
        // The pruned pass, where there is a pruner and the values allow it.
        let pruned = self.pruner.as_mut().and_then(|p| {
            let exact = p.exact_sums();
            let (pass, norms, bounds, churned) = p.begin_pass(prepared)?;
            let pruned = PrunedPass {
                x,
                sample_weight,
                prepared,
                pass: &pass,
                norms,
                churned,
                old: labels_old.as_deref().filter(|_| exact && !with_loss),
                with_loss,
            };
            let rows = match bounds {
                BoundsMut::One(b) => pruned.run(labels, b, stats, partials),
                BoundsMut::Grouped(b) => pruned.run(labels, b, stats, partials),
            };
            Some((rows, pass.rows_read()))
        });
        self.rows_read = pruned.map_or(n, |(_, read)| read);
        let pruned = pruned.map(|(rows, _)| rows);
        let rows = match (pruned, labels_old.as_deref().filter(|_| moves)) {
            (Some(rows), _) => rows,
            (None, Some(old)) => {
                kernels::assign_labels(x, prepared, labels);
                move_changed_rows(x, prepared, old, labels, stats, partials);
                #[cfg(test)]
                {
                    self.moved_passes += 1;
                }
                n
            }
            (None, None) if scan_now => {
                scanned = Some(pruning::scanned_by(x, |after| {
                    kernels::assign_accumulate_scanning(x, prepared, labels, stats, partials, after)
                }));
                n
            }
            (None, None) if self.pruning == Pruning::Auto && self.unpruned == Unpruned::Fused => {
                kernels::assign_accumulate_reusing(
                    x,
                    sample_weight,
                    prepared,
                    Some(labels),
                    stats,
                    partials,
                );
                n
            }
            (None, None) => plain_pass(
                x,
                sample_weight,
                prepared,
                labels,
                stats,
                with_loss,
                partials,
            ),
        };
        let fused = scanned.is_some();
        if let Some(scanned) = scanned {
            self.keep_scan(scanned);
            if loss_from_sums {
                let total = self.scanned.as_ref().and_then(Pruner::exact_sq_norm_total);
                self.squared_norms = SquaredNorms::from_total(total);
            }
        }
        if loss_from_sums {
            self.take_loss_from_sums(x, prepared, stats, fused);
        }
        self.keep_stats(stats);
        self.keep_centres_while_settling(x, prepared);
        rows
    }

    /// Before a pass: starts the pruner of [`Pruning::Auto`] where its
    /// time has come and the first pass's centres allow it.
    fn start_pruner_if_due(&mut self, x: MatRef<'_, T>, prepared: &PreparedCentres<T>) {
        if self.auto == AutoStart::AtOnce && self.kernel_rows.is_empty() {
            // Many centres: prune from the first pass where the clusters
            // are separated enough for the bounds to hold; else look again
            // once labels settle, with centres nearer the clusters' means
            // (initial centres that are data rows carry their own noise).
            if pruning::well_separated(x, prepared) {
                self.pruner = self.new_pruner(x);
            } else if pruning::keeps_group_bounds(prepared.k(), x.cols())
                && !prepared.on_bf16_products()
            {
                // Overlapping clusters in wide rows: most rows fail their
                // bounds in every pass, but each needs only the groups of
                // centres its bounds no longer rule out, a small share of
                // the products that a full pass computes with f32 FMAs.
                // The pruner starts with the second pass. (bf16 products
                // compute a full pass faster than the pruned one, whose
                // bounds need f32 distances: Fashion-MNIST, k = 100, 20
                // iterations, 2 threads: 0.99 s against 1.27 s on AMD EPYC
                // (Zen 4, AVX512-BF16), and about as fast on the AMX tile
                // unit of a Sapphire Rapids core. Once labels settle, the
                // vector products' loop may still start them: see
                // `keep_centres_while_settling`.)
                self.wide_start = true;
            } else {
                self.may_prune = true;
            }
        }
        if std::mem::take(&mut self.separation_due) {
            let last = std::mem::take(&mut self.last_centres);
            if pruning::well_separated(x, prepared) {
                self.pruner = self.new_pruner(x).map(Pruner::start_with_distances);
            } else if pruning::group_bounds_would_hold(x, prepared, &last) {
                self.pruner = self.new_pruner(x).map(Pruner::start_with_distances);
                self.settled_start = self.pruner.is_some();
            }
        }
    }

    /// After a pass: keeps its centres for [`pruning::group_bounds_would_hold`]
    /// while labels settle, where AVX512-BF16 vector products compute the
    /// full passes and the clusters overlap in wide rows.
    ///
    /// There a full pass takes half the f32 kernel's time, and group bounds
    /// started early fail for most rows (see
    /// [`LloydPasses::start_pruner_if_due`]), but once labels settle they
    /// spare the products of most rows where the clusters settle too:
    /// Fashion-MNIST, 2 threads, AMD EPYC (Zen 4), same centres, 40
    /// iterations with k = 100: 1.46-1.50 s against 1.74-1.76 s; 30 with
    /// k = 40: 0.67-0.69 s against 0.79-0.83 s. On the tile unit, whose full
    /// passes are twice as fast again, this was not measured and is not
    /// done.
    fn keep_centres_while_settling(&mut self, x: MatRef<'_, T>, prepared: &PreparedCentres<T>) {
        let c = prepared.centres();
        if self.may_prune
            && self.auto == AutoStart::AtOnce
            && prepared.on_vector_bf16_products()
            && pruning::keeps_group_bounds(c.rows(), x.cols())
        {
            self.last_centres.clear();
            self.last_centres.extend_from_slice(c.as_slice());
        }
    }

    /// Before the first pass that takes its loss from the sums: a pruner's
    /// read of the rows settles whether it can; else the first chunk may
    /// settle that the sums are not exact, or the pass scans the rows as
    /// it goes ([`LloydPasses::pass`]).
    fn learn_squared_norms_before_pass(&mut self, x: MatRef<'_, T>) {
        if let Some(p) = &self.pruner {
            self.squared_norms = SquaredNorms::from_total(p.exact_sq_norm_total());
        } else if !pruning::may_have_exact_sums(x) {
            self.squared_norms = SquaredNorms::Inexact;
        }
    }

    /// After a pass that takes its loss from the sums (`stats` holds them):
    /// the loss from the exact sums, or, where those terms cancel beyond
    /// their bound, from every row summed again. A `fused` pass (the first
    /// pass's scan) summed the rows in the kernels' order, which is a
    /// labelled pass's only where the sums are exact: elsewhere its rows
    /// are summed again too, with their loss.
    fn take_loss_from_sums(
        &mut self,
        x: MatRef<'_, T>,
        prepared: &PreparedCentres<T>,
        stats: &mut ClusterStats,
        fused: bool,
    ) {
        let total = self.squared_norms.exact_total();
        match total.and_then(|t| pruning::inertia_from_exact_sums(t, stats, prepared.centres())) {
            Some(loss) => stats.loss = loss,
            // Terms that cancel beyond their bound, or a fused pass's sums.
            None if total.is_some() || fused => self.sum_labelled_rows(x, prepared, stats),
            // The pass added every row's loss.
            None => {}
        }
    }

    /// After a pass: [`Unpruned::Labelled`] passes over exact sums keep its
    /// statistics, which the next pass brings up to date by moving rows.
    fn keep_stats(&mut self, stats: &ClusterStats) {
        let exact = self.exact_moves || self.pruner.as_ref().is_some_and(Pruner::exact_sums);
        if self.unpruned == Unpruned::Labelled && exact {
            match &mut self.last_stats {
                Some(last) => last.clone_from(stats),
                None => self.last_stats = Some(stats.clone()),
            }
        }
    }

    /// The statistics of the rows with their labels as they are, and their
    /// loss, summed afresh in row order: the bits of a labelled pass
    /// ([`plain_pass`] with its loss) without labelling again.
    fn sum_labelled_rows(
        &mut self,
        x: MatRef<'_, T>,
        prepared: &PreparedCentres<T>,
        stats: &mut ClusterStats,
    ) {
        #[cfg(test)]
        {
            self.resummed_passes += 1;
        }
        let mut no_state: Vec<()> = Vec::new();
        labelled_pass(
            x,
            None,
            prepared,
            &mut self.labels,
            &mut no_state,
            stats,
            true,
            CHUNK_ROWS,
            |_, _, _| 0,
            &mut self.partials,
        );
    }

    /// After the last iteration, whose sums `stats` gave `centres`: the
    /// inertia of the labels those centres give (one more pass brings
    /// [`LloydPasses::labels`] and `stats` to them, unless `strict`: no
    /// label changed), from the clusters' exact sums
    /// ([`Pruner::inertia`]), without reading the rows again. `None`, with
    /// nothing done, unless the loop ends with a pruner whose sums and
    /// squared norms are exact ([`Pruner::exact_sq_norm_total`]).
    pub(crate) fn final_inertia(
        &mut self,
        x: MatRef<'_, T>,
        centres: MatRef<'_, T>,
        stats: &mut ClusterStats,
        strict: bool,
    ) -> Option<f64> {
        // Nothing is done unless the sums and squared norms are exact.
        self.pruner.as_ref().and_then(Pruner::exact_sq_norm_total)?;
        if !strict {
            let prepared = PreparedCentres::new(centres, Metric::SquaredEuclidean);
            self.pass(x, None, &prepared, stats, false);
        }
        self.pruner.as_ref()?.inertia(stats, centres)
    }

    /// The last pass's labels were changed outside the pass (empty clusters
    /// relocated): every row is recomputed in the next pass.
    pub(crate) fn relocated(&mut self) {
        if let Some(p) = &mut self.pruner {
            p.invalidate();
        }
    }

    /// Ends a pass that sent `rows` rows through the kernels: returns how
    /// many labels changed from the pass before (`None` after the first),
    /// and under [`Pruning::Auto`] starts or stops pruning for the next
    /// pass. Always `None` for [`Unpruned::Labelled`] passes of a shape
    /// that never prunes (the Estimator's steps on narrow rows): nothing
    /// reads the labels of the pass before there, so comparing and keeping
    /// them (a read and a write of every label) is skipped.
    pub(crate) fn end_pass(&mut self, x: MatRef<'_, T>, rows: usize) -> Option<usize> {
        let n = x.rows();
        self.kernel_rows.push(rows);
        if self.unpruned == Unpruned::Labelled
            && self.auto == AutoStart::Never
            && self.pruning != Pruning::On
        {
            return None;
        }
        let changed = self.keep_labels();
        self.last_changed = changed;
        if changed.is_none() {
            self.scan_for_moves(x);
        }
        if self.pruning == Pruning::Auto && changed != Some(0) {
            if self.pruner.is_some() {
                self.pruned_passes += 1;
                // A pruner started on settled labels by the group filter
                // also hands back when a pass after the first two (the
                // start and the first with fresh bounds) had to read more
                // than 7/8 of the rows: it then saves little of the reading
                // and costs more than the bf16 pass (points spread evenly
                // through a box, 100,000 x 128, k = 64: 94 to 100 % read,
                // 25 to 40 ms a pass against 14; Fashion-MNIST, k = 100:
                // 67 to 77 %, 28 to 38 ms against 40 to 44).
                let reads_all =
                    self.settled_start && self.pruned_passes >= 3 && self.rows_read * 8 > n * 7;
                if (self.pruned_passes >= 2 && rows * 2 > n) || reads_all {
                    self.pruner = None;
                    self.may_prune = false;
                }
            } else if changed.is_none() && std::mem::take(&mut self.wide_start) {
                self.pruner = self.new_pruner(x).map(Pruner::start_with_distances);
                self.pruned_passes = 0;
            } else if self.may_prune && changed.is_some_and(|c| c * SETTLED < n) {
                self.may_prune = false;
                self.pruned_passes = 0;
                if self.auto == AutoStart::AtOnce {
                    // The next pass, which knows its centres, decides.
                    self.separation_due = true;
                    return changed;
                }
                // A fused unpruned pass reads each row once, as a pruned one
                // that sums every row does: pruning few centres then pays only
                // where the sums are exact. A labelled pass reads each row
                // twice, and skipping its kernel work always pays.
                let unpruned = self.unpruned;
                self.pruner = self
                    .new_pruner(x)
                    .filter(|p| unpruned == Unpruned::Labelled || p.exact_sums())
                    .map(Pruner::start_with_distances);
            }
        }
        changed
    }

    /// Keeps this pass's labels as the next pass's old ones; returns how
    /// many differ from the old ones (`None` after the first pass). One
    /// read of both, a chunk per task.
    fn keep_labels(&mut self) -> Option<usize> {
        match &mut self.labels_old {
            Some(old) => Some(
                old.par_chunks_mut(CHUNK_ROWS)
                    .zip(self.labels.par_chunks(CHUNK_ROWS))
                    .map(|(old, new)| {
                        let mut changed = 0;
                        for (o, &l) in old.iter_mut().zip(new) {
                            changed += usize::from(*o != l);
                            *o = l;
                        }
                        changed
                    })
                    .sum(),
            ),
            None => {
                self.labels_old = Some(self.labels.clone());
                None
            }
        }
    }

    /// Whether the passes take their loss from the exact sums (`None`
    /// before the first pass that needs a loss).
    #[cfg(test)]
    pub(crate) fn loss_from_sums(&self) -> Option<bool> {
        match self.squared_norms {
            SquaredNorms::Unknown => None,
            SquaredNorms::Inexact => Some(false),
            SquaredNorms::Exact(_) => Some(true),
        }
    }

    /// The labels of the last pass.
    pub(crate) fn into_labels(self) -> Vec<u32> {
        self.labels
    }
}

/// One pruned pass of [`LloydPasses::pass`], for either size of
/// [`RowBounds`].
struct PrunedPass<'a, T> {
    x: MatRef<'a, T>,
    sample_weight: Option<&'a [T]>,
    prepared: &'a PreparedCentres<T>,
    pass: &'a PassCentres<'a, T>,
    norms: &'a [f64],
    churned: &'a [std::sync::atomic::AtomicBool],
    /// The labels of the pass before, when the sums are exact and no loss
    /// is wanted: `stats` holds their clusters' sums (relocations
    /// included), and only the rows that changed cluster are moved.
    old: Option<&'a [u32]>,
    with_loss: bool,
}

impl<T: Float> PrunedPass<'_, T> {
    /// Labels every row into `labels` and the clusters' statistics into
    /// `stats`; returns how many rows went through the kernels.
    fn run<const G: usize>(
        &self,
        labels: &mut [u32],
        bounds: &mut [RowBounds<G>],
        stats: &mut ClusterStats,
        partials: &mut Partials,
    ) -> usize {
        let (x, pass, norms, churned) = (self.x, self.pass, self.norms, self.churned);
        let label = move |start: usize, l: &mut [u32], b: &mut [RowBounds<G>]| {
            let chunk = &churned[start / CHUNK_ROWS];
            pruning::label_chunk(pass, norms, x, start, l, b, chunk)
        };
        match self.old {
            Some(old) => {
                let rows = label_chunks(labels, bounds, label);
                move_changed_rows(x, self.prepared, old, labels, stats, partials);
                rows
            }
            None => labelled_pass(
                x,
                self.sample_weight,
                self.prepared,
                labels,
                bounds,
                stats,
                self.with_loss,
                CHUNK_ROWS,
                label,
                partials,
            ),
        }
    }
}

/// Labels every chunk of [`CHUNK_ROWS`] rows with `label` (as
/// [`labelled_pass`] does, without the sums); returns how many rows went
/// through the kernel.
fn label_chunks<B: Send>(
    labels: &mut [u32],
    per_row: &mut [B],
    label: impl Fn(usize, &mut [u32], &mut [B]) -> usize + Sync,
) -> usize {
    labels
        .par_chunks_mut(CHUNK_ROWS)
        .zip(per_row.par_chunks_mut(CHUNK_ROWS))
        .enumerate()
        .map(|(c, (l, b))| label(c * CHUNK_ROWS, l, b))
        .sum()
}

/// Brings `stats`, the unweighted sums of the clusters of `old`, to those
/// of `labels`: every row whose label changed leaves its old cluster and
/// joins its new one. Only for rows whose sums are exact in any order
/// ([`Pruner::exact_sums`]): the result is then the very bits of summing
/// afresh, whatever the order of the moves, so the clusters' sums are
/// brought up to date in parallel, one task per cluster (each reads only
/// the rows that leave or join it). When many rows moved, summing afresh is
/// cheaper and is what happens (the loss is left 0: losses are not tracked
/// here).
fn move_changed_rows<T: Float>(
    x: MatRef<'_, T>,
    prepared: &PreparedCentres<T>,
    old: &[u32],
    labels: &mut [u32],
    stats: &mut ClusterStats,
    partials: &mut Partials,
) {
    let d = x.cols();
    let moved: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] != old[i]).collect();
    if moved.len() * MOVE_AT_MOST > labels.len() {
        let mut no_state: Vec<()> = Vec::new();
        labelled_pass(
            x,
            None,
            prepared,
            labels,
            &mut no_state,
            stats,
            false,
            CHUNK_ROWS,
            |_, _, _| 0,
            partials,
        );
        return;
    }
    if d == 0 {
        return;
    }
    // Each cluster's moves, grouped: the moved rows (as positions in
    // `moved`) that leave it and those that join it, in row order.
    let k = stats.k;
    let leaving = RowsByCluster::new(&moved.iter().map(|&i| old[i]).collect::<Vec<_>>(), k);
    let joining = RowsByCluster::new(&moved.iter().map(|&i| labels[i]).collect::<Vec<_>>(), k);
    stats
        .sums
        .par_chunks_mut(d)
        .enumerate()
        .for_each(|(j, sums)| {
            // One loop per direction: each vectorises.
            for &m in leaving.rows(j) {
                for (s, &v) in sums.iter_mut().zip(x.row(moved[m as usize])) {
                    *s -= v.to_f64_exact();
                }
            }
            for &m in joining.rows(j) {
                for (s, &v) in sums.iter_mut().zip(x.row(moved[m as usize])) {
                    *s += v.to_f64_exact();
                }
            }
        });
    for &i in &moved {
        let (from, to) = (old[i] as usize, labels[i] as usize);
        stats.weights[from] -= 1.0;
        stats.weights[to] += 1.0;
        stats.counts[from] -= 1;
        stats.counts[to] += 1;
    }
}

/// One unpruned Lloyd pass: every row labelled by [`kernels::assign`], then
/// summed by [`kernels::add_labelled`], a block of about [`L2_BLOCK_BYTES`]
/// at a time so that the sums read rows the kernel has just left in L2.
/// Returns `n`, the rows labelled. The same bits as a pruned pass with the
/// same labels: the block size changes neither the labels (see `pruning.rs`)
/// nor the order of the additions. With the loss, on the bf16 path, the
/// kernel does both in one read of each row instead, to the same bits
/// ([`kernels::assign_add_labelled`]).
pub(crate) fn plain_pass<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    prepared: &PreparedCentres<T>,
    labels: &mut [u32],
    stats: &mut ClusterStats,
    with_loss: bool,
    partials: &mut Partials,
) -> usize {
    if with_loss
        && kernels::assign_add_labelled(x, sample_weight, prepared, labels, stats, partials)
    {
        return x.rows();
    }
    let mut no_state: Vec<()> = Vec::new();
    let block =
        (L2_BLOCK_BYTES / (x.cols() * std::mem::size_of::<T>()).max(1)).clamp(1, CHUNK_ROWS);
    labelled_pass(
        x,
        sample_weight,
        prepared,
        labels,
        &mut no_state,
        stats,
        with_loss,
        block,
        |start: usize, l: &mut [u32], _: &mut [()]| {
            kernels::assign_labels(x.slice_rows(start, start + l.len()), prepared, l);
            l.len()
        },
        partials,
    )
}

/// Rows labelled and then summed in one block while they are still in a
/// core's L2 (1-2 MiB on the processors we run on).
const L2_BLOCK_BYTES: usize = 512 << 10;

/// One Lloyd pass over chunks of [`CHUNK_ROWS`] rows, each in blocks of
/// `block` rows: `label` labels a block's rows (given the block's first
/// row, its labels and its part of `per_row`, which is either empty or one
/// value per row) and says how many went through the kernel; then
/// [`kernels::add_labelled`] adds the block's rows into the chunk's
/// partial, and the partials are added into `stats` in chunk order, a
/// bounded group at a time (the loss only `with_loss`). The pruned and
/// unpruned loops differ only in `label` and `block`, so their sums are the
/// same additions in the same order whenever their labels agree, at any
/// thread count.
// The data, the centres, the per-row state and the outputs of one pass, and
// what to compute: grouping them would only rename them.
#[allow(clippy::too_many_arguments)]
fn labelled_pass<T: Float, B: Send>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    prepared: &PreparedCentres<T>,
    labels: &mut [u32],
    per_row: &mut [B],
    stats: &mut ClusterStats,
    with_loss: bool,
    block: usize,
    label: impl Fn(usize, &mut [u32], &mut [B]) -> usize + Sync,
    partials: &mut Partials,
) -> usize {
    let (n, k, d) = (x.rows(), stats.k, stats.d);
    stats.clear();
    let n_chunks = n.div_ceil(CHUNK_ROWS);
    let mut label_chunks: Vec<&mut [u32]> = labels.chunks_mut(CHUNK_ROWS).collect();
    let mut state_chunks: Vec<&mut [B]> = if per_row.is_empty() {
        (0..n_chunks).map(|_| <&mut [B]>::default()).collect()
    } else {
        per_row.chunks_mut(CHUNK_ROWS).collect()
    };
    let group = kernels::chunk_group(kernels::PARTIAL_BYTES, k, d, n_chunks);
    let parts = partials.take(group, k, d);
    let centres = prepared.centres();
    let block = block.max(1);
    let mut labelled = 0;
    for g0 in (0..n_chunks).step_by(group) {
        let g1 = (g0 + group).min(n_chunks);
        labelled += parts[..g1 - g0]
            .par_iter_mut()
            .zip(label_chunks[g0..g1].par_iter_mut())
            .zip(state_chunks[g0..g1].par_iter_mut())
            .enumerate()
            .map(|(i, ((part, l), st))| {
                let start = (g0 + i) * CHUNK_ROWS;
                part.clear();
                let mut count = 0;
                for b0 in (0..l.len()).step_by(block) {
                    let b1 = (b0 + block).min(l.len());
                    let st = if st.is_empty() {
                        &mut st[..]
                    } else {
                        &mut st[b0..b1]
                    };
                    let (s0, s1) = (start + b0, start + b1);
                    count += label(s0, &mut l[b0..b1], st);
                    kernels::add_labelled(
                        x.slice_rows(s0, s1),
                        sample_weight.map(|w| &w[s0..s1]),
                        &l[b0..b1],
                        centres,
                        part,
                        with_loss,
                    );
                }
                count
            })
            .sum::<usize>();
        kernels::merge_in_order(stats, &parts[..g1 - g0]);
    }
    labelled
}

/// Moves every centre to the weighted mean of its cluster (`stats`) and
/// returns the sum of the squared shifts. A cluster without weight (empty,
/// not relocated) takes the new position of the heaviest cluster (the first
/// of equals), as scikit-learn >= 1.5 places it.
pub(crate) fn update_centres<T: Float>(centres: &mut Matrix<T>, stats: &ClusterStats) -> f64 {
    let (k, d) = (stats.k, stats.d);
    let mut heaviest = 0;
    for j in 1..k {
        if stats.weights[j] > stats.weights[heaviest] {
            heaviest = j;
        }
    }
    let mean = |j: usize, c: usize| T::from_f64_lossy(stats.sums[j * d + c] / stats.weights[j]);
    let mut shift = 0.0;
    for j in 0..k {
        let source = if stats.weights[j] > 0.0 {
            j
        } else if stats.weights[heaviest] > 0.0 {
            heaviest
        } else {
            continue; // No weight anywhere: nothing moves.
        };
        for c in 0..d {
            let new = mean(source, c);
            let v = &mut centres.row_mut(j)[c];
            let delta = new.to_f64_exact() - v.to_f64_exact();
            shift += delta * delta;
            *v = new;
        }
    }
    shift
}

/// One mini-batch K-means step (scikit-learn's `MiniBatchKMeans` update):
/// assigns the batch to `centres`, then moves every centre j that received
/// weight m_j > 0 with sum s_j to `(c_j * W_j + s_j) / (W_j + m_j)` and adds
/// m_j to `weight_sums[j]` = W_j. Returns the batch's weighted inertia with
/// the centres as they were before the update, and writes the labels when
/// asked.
pub fn minibatch_step<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: &mut Matrix<T>,
    weight_sums: &mut [f64],
    labels: Option<&mut [u32]>,
) -> Result<f64> {
    check_inputs(x, sample_weight, centres.view())?;
    let (d, k) = (centres.cols(), centres.rows());
    if weight_sums.len() != k {
        return Err(Error::InvalidShape(format!(
            "weight_sums has {} values but there are {k} centres",
            weight_sums.len()
        )));
    }
    let prepared = PreparedCentres::new(centres.view(), Metric::SquaredEuclidean);
    let mut stats = ClusterStats::new(k, d);
    kernels::assign_accumulate(x, sample_weight, &prepared, labels, &mut stats);
    partial::minibatch_update(centres, weight_sums, &stats)?;
    Ok(stats.loss)
}

/// The nearest centre of every row (scikit-learn's `predict`): the labels
/// of [`labels_inertia`], without reading the rows again for the inertia
/// or computing any distance the labels do not need.
pub fn labels<T: Float>(x: MatRef<'_, T>, centres: MatRef<'_, T>) -> Result<Vec<u32>> {
    check_inputs(x, None, centres)?;
    let prepared = PreparedCentres::new(centres, Metric::SquaredEuclidean);
    let mut labels = vec![0u32; x.rows()];
    kernels::assign_labels(x, &prepared, &mut labels);
    Ok(labels)
}

/// The nearest centre of every row and the weighted sum of the squared
/// distances to it (scikit-learn's `-score`, and `predict` of sparse rows).
pub fn labels_inertia<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: MatRef<'_, T>,
) -> Result<(Vec<u32>, f64)> {
    check_inputs(x, sample_weight, centres)?;
    let mut labels = vec![0u32; x.rows()];
    let inertia = assign_with_inertia(x, sample_weight, centres, &mut labels);
    Ok((labels, inertia))
}

/// The squared Euclidean distance of every row to every centre, `n x k`.
pub fn sq_distances<T: Float>(x: MatRef<'_, T>, centres: MatRef<'_, T>) -> Result<Matrix<T>> {
    check_inputs(x, None, centres)?;
    let prepared = PreparedCentres::new(centres, Metric::SquaredEuclidean);
    let mut out = Matrix::zeros(x.rows(), centres.rows());
    kernels::distances(x, &prepared, out.as_mut_slice());
    Ok(out)
}

/// What the scikit-learn classes' fit computes of dense data before Lloyd's
/// loop, from two reads of it (see [`centring`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Centring<T> {
    /// The values subtracted from each column: NumPy's column means
    /// ([`column_means_like_numpy`]), rounded to integers (ties to even, as
    /// NumPy rounds) when every value of the data is an integer. Integer
    /// data then stays integer, and exact, once centred, so the pruned loop
    /// can move rows between exactly summed clusters instead of summing
    /// every row again (see [`Pruning::On`]); distances are the same for any
    /// shift, and a shift by less than half a unit keeps the centring's
    /// purpose.
    pub shift: Vec<T>,
    /// NumPy's `x.var(axis=0)` ([`column_variances_like_numpy`]), when asked
    /// for: scikit-learn's tolerance is their mean times `tol`.
    pub variances: Option<Vec<T>>,
}

/// The centring of `x` and, `with_variances`, its column variances: one read
/// for the means and the test for integers, one for the variances.
pub fn centring<T: Float>(x: MatRef<'_, T>, with_variances: bool) -> Centring<T> {
    let (means, integral) = column_means_and_integrality(x);
    let variances = with_variances.then(|| column_variances_like_numpy(x, &means));
    let shift = if integral {
        means
            .into_iter()
            .map(|m| T::from_f64_lossy(m.to_f64_exact().round_ties_even()))
            .collect()
    } else {
        means
    };
    Centring { shift, variances }
}

/// Whether centring the rows of `x` on `shift` (their column means, see
/// [`centring`]) makes the distances precise enough to pay for writing a
/// centred copy of the data. Centring is for precision alone: distances,
/// and so Lloyd's labels and sums, are the same wherever the origin lies,
/// but the kernels' `f32` products round in proportion to the rows' and
/// centres' norms, and centring takes `|shift|^2` out of every row's
/// squared norm. It pays where that is more than twice the rows' mean
/// squared distance to their mean (the sum of `variances`, or of a sample
/// of 1,024 rows spread over `x`): then it shrinks the squared norms more
/// than threefold. Elsewhere it would cost more than it gives: at most
/// 1.6 times wider norms, against a pass that writes a copy of the data
/// into new pages (Fashion-MNIST: `|mean|^2` is 1.4 times the spread, and
/// the copy costs as much as four passes of the loop).
pub fn centring_pays<T: Float>(x: MatRef<'_, T>, shift: &[T], variances: Option<&[T]>) -> bool {
    let shift_sq: f64 = shift.iter().map(|v| v.to_f64_exact().powi(2)).sum();
    let spread = match variances {
        Some(v) => v.iter().map(|v| v.to_f64_exact()).sum(),
        None => {
            let n = x.rows();
            let sample = n.min(CENTRING_SAMPLE);
            if sample == 0 {
                return false;
            }
            let total: f64 = (0..sample)
                .map(|i| {
                    let row = x.row(i * n / sample);
                    row.iter()
                        .zip(shift)
                        .map(|(&v, &m)| (v.to_f64_exact() - m.to_f64_exact()).powi(2))
                        .sum::<f64>()
                })
                .sum();
            total / sample as f64
        }
    };
    shift_sq > 2.0 * spread
}

/// Whether every value of `x` is finite and centring would not pay
/// ([`centring_pays`], the spread from its sample), known from column means
/// in f64 instead of NumPy's: one read of whole rows, a chunk of
/// [`CHUNK_ROWS`] rows per task, where NumPy's order (each column one chain
/// of additions in `T`) must split the columns between tasks and read at
/// half the memory's speed (Fashion-MNIST: 16 ms against 7). Those means
/// are needed only where centring pays, and are then computed as before;
/// the decision does not depend on their last bits. Every f64 sum of
/// finite f32 values is finite, and a NaN or an infinity makes its
/// column's sum one or the other, so `true` also says that every value is
/// finite (f64 sums that overflow give `false`, and the caller's full
/// read). The chunks' sums are added in order: the same answer at any
/// thread count.
pub fn centring_would_not_pay<T: Float>(x: MatRef<'_, T>) -> bool {
    let (n, d) = (x.rows(), x.cols());
    if n == 0 || d == 0 {
        return false;
    }
    let chunks: Vec<Vec<f64>> = x
        .as_slice()
        .par_chunks(CHUNK_ROWS * d)
        .map(|c| {
            let mut sums = vec![0.0; d];
            kernels::add_rows_f64(c, &mut sums);
            sums
        })
        .collect();
    let mut sums = vec![0.0f64; d];
    for chunk in &chunks {
        for (s, v) in sums.iter_mut().zip(chunk) {
            *s += v;
        }
    }
    if !sums.iter().all(|s| s.is_finite()) {
        return false;
    }
    let means: Vec<T> = sums
        .iter()
        .map(|s| T::from_f64_lossy(s / n as f64))
        .collect();
    !centring_pays(x, &means, None)
}

/// Rows [`centring_pays`] looks at when no variances are at hand.
const CENTRING_SAMPLE: usize = 1024;

/// Column means as NumPy's `x.mean(axis=0)` computes them for a C-contiguous
/// array of at least two columns: each column summed row after row in `T`,
/// from +0.0, then divided by the row count in `f64` and rounded to `T`.
/// (NumPy sums in order along a strided axis; its pairwise summation applies
/// only along contiguous memory, a single column, which callers leave to
/// NumPy.) Column blocks are summed in parallel; each column's order is
/// fixed, so the result is the same at any thread count.
pub fn column_means_like_numpy<T: Float>(x: MatRef<'_, T>) -> Vec<T> {
    column_means_and_integrality(x).0
}

/// [`column_means_like_numpy`], and whether every value is an integer
/// (`trunc(v) == v` for every value). The
/// means' additions follow each column in row order, one chain per column.
/// Where the columns make several tasks, each tests the values it adds, in
/// the same read; where they make one (narrow data, 1,000,000 x 8), testing
/// there took as long again as adding, so the order-free test runs
/// alongside, a chunk of rows per task.
fn column_means_and_integrality<T: Float>(x: MatRef<'_, T>) -> (Vec<T>, bool) {
    let (n, d) = (x.rows(), x.cols());
    let cols = column_block(d);
    let mut sums = vec![T::zero(); d];
    let one_task = d <= cols && rayon::current_num_threads() > 1;
    let add = |acc: &mut [T], c0: usize, test: bool| kernels::add_columns(x, acc, c0, test);
    let integral = if one_task {
        // The test stops at the first chunk off the integers (continuous
        // data: at once), leaving the memory to the means' read.
        rayon::join(
            || add(&mut sums, 0, false),
            || {
                !x.as_slice()
                    .par_chunks((CHUNK_ROWS * d).max(1))
                    .any(|c| !kernels::whole_numbers_of(c))
            },
        )
        .1
    } else {
        sums.par_chunks_mut(cols)
            .enumerate()
            .map(|(b, acc)| add(acc, b * cols, true))
            .reduce(|| true, |a, b| a && b)
    };
    let means = sums
        .iter()
        .map(|s| T::from_f64_lossy(s.to_f64_exact() / n as f64))
        .collect();
    (means, integral)
}

/// Columns per parallel task of the column reductions: one block per
/// thread (at least 64 columns), so that each thread streams one long
/// stretch of every row, which the hardware prefetchers follow, rather than
/// many short ones. Only the split depends on the thread count; each
/// column's order of additions does not.
fn column_block(d: usize) -> usize {
    d.div_ceil(rayon::current_num_threads().max(1))
        .next_multiple_of(16)
        .max(64)
}

/// Column variances as NumPy's `x.var(axis=0)` computes them for a
/// C-contiguous array of at least two columns, given `means` from
/// [`column_means_like_numpy`]: each deviation `v - mean` and its square
/// rounded to `T` (NumPy subtracts, then squares, as separate passes: no
/// fused multiply-add), summed row after row in `T` from +0.0, then divided
/// by the row count in `f64` and rounded to `T`. One read of the data,
/// without NumPy's two temporary copies; column blocks in parallel, each
/// column in a fixed order, so the result is the same at any thread count.
pub fn column_variances_like_numpy<T: Float>(x: MatRef<'_, T>, means: &[T]) -> Vec<T> {
    let (n, d) = (x.rows(), x.cols());
    assert_eq!(means.len(), d, "one mean per column");
    let cols = column_block(d);
    let mut sums = vec![T::zero(); d];
    sums.par_chunks_mut(cols).enumerate().for_each(|(b, acc)| {
        kernels::add_squared_deviations(x, acc, b * cols, means);
    });
    sums.iter()
        .map(|s| T::from_f64_lossy(s.to_f64_exact() / n as f64))
        .collect()
}

/// `out = x - v` row by row (`v` has one value per column), in parallel;
/// returns whether every value written is finite (tested as each is
/// computed), so that the fit on `out` need not read it for that again
/// ([`Values::KnownFinite`]). Subtraction rounds once per element, so this
/// is NumPy's `x - v` to the bit.
pub fn subtract_rows<T: Float>(x: MatRef<'_, T>, v: &[T], out: &mut [T]) -> bool {
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, and `subtract_into` only
    // writes initialised values through the view.
    let out = unsafe { &mut *(out as *mut [T] as *mut [MaybeUninit<T>]) };
    subtract_into(x, v, out)
}

/// [`subtract_rows`] into memory not yet written: every value of `out` is
/// written.
fn subtract_into<T: Float>(x: MatRef<'_, T>, v: &[T], out: &mut [MaybeUninit<T>]) -> bool {
    let d = x.cols();
    assert_eq!(v.len(), d, "one value per column");
    assert_eq!(out.len(), x.as_slice().len(), "out shaped like x");
    if d == 0 {
        return true;
    }
    out.par_chunks_mut(CHUNK_ROWS * d)
        .zip(x.as_slice().par_chunks(CHUNK_ROWS * d))
        .map(|(o, xs)| {
            let mut finite = true;
            for (orow, xrow) in o.chunks_exact_mut(d).zip(xs.chunks_exact(d)) {
                let mut row_finite = true;
                for ((a, &b), &c) in orow.iter_mut().zip(xrow).zip(v) {
                    let r = b - c;
                    row_finite &= r.is_finite();
                    a.write(r);
                }
                finite &= row_finite;
            }
            finite
        })
        .reduce(|| true, |a, b| a & b)
}

/// `x - v` row by row into a new buffer (see [`subtract_rows`]), which is
/// placed on huge pages where the system allows it: a fresh buffer the size
/// of the data (220 MB for Fashion-MNIST) otherwise costs one page fault
/// per 4 KiB written, about a third of the copy's time. The buffer is not
/// zeroed first: memory the allocator hands back (a fit's copy freed and
/// asked for again) would be cleared for nothing, 1 % of a 1,000,000 x 8
/// fit. Also returns whether every value written is finite.
pub fn subtracted_rows<T: Float>(x: MatRef<'_, T>, v: &[T]) -> (Vec<T>, bool) {
    let len = x.as_slice().len();
    let mut out: Vec<T> = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    crate::memory::advise_huge_pages(spare);
    let finite = subtract_into(x, v, spare);
    // SAFETY: `subtract_into` wrote every one of the first `len` values.
    unsafe { out.set_len(len) };
    (out, finite)
}

/// `x -= v` row by row, in place; see [`subtract_rows`].
/// Returns whether every value is finite afterwards.
pub fn subtract_rows_in_place<T: Float>(x: &mut [T], d: usize, v: &[T]) -> bool {
    assert_eq!(v.len(), d, "one value per column");
    if d == 0 {
        return true;
    }
    x.par_chunks_mut(CHUNK_ROWS * d)
        .map(|o| {
            let mut finite = true;
            for row in o.chunks_exact_mut(d) {
                for (a, &c) in row.iter_mut().zip(v) {
                    *a -= c;
                }
                finite &= row.iter().fold(true, |ok, a| ok & a.is_finite());
            }
            finite
        })
        .reduce(|| true, |a, b| a & b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A brute-force Lloyd iteration: nearest centre by direct distance,
    /// then weighted means.
    fn brute_lloyd_step(x: &[[f64; 2]], centres: &[[f64; 2]]) -> (Vec<usize>, Vec<[f64; 2]>) {
        let labels: Vec<usize> = x
            .iter()
            .map(|p| {
                let mut best = (f64::INFINITY, 0);
                for (j, c) in centres.iter().enumerate() {
                    let dd = (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2);
                    if dd < best.0 {
                        best = (dd, j);
                    }
                }
                best.1
            })
            .collect();
        let mut new = centres.to_vec();
        for (j, c) in new.iter_mut().enumerate() {
            let members: Vec<&[f64; 2]> = x
                .iter()
                .zip(&labels)
                .filter(|(_, &l)| l == j)
                .map(|(p, _)| p)
                .collect();
            if !members.is_empty() {
                let m = members.len() as f64;
                *c = [
                    members.iter().map(|p| p[0]).sum::<f64>() / m,
                    members.iter().map(|p| p[1]).sum::<f64>() / m,
                ];
            }
        }
        (labels, new)
    }

    #[test]
    fn one_iteration_matches_brute_force() {
        let pts = [
            [0.0, 0.0],
            [1.0, 0.0],
            [0.0, 1.0],
            [10.0, 10.0],
            [11.0, 10.0],
            [10.0, 12.0],
            [5.0, 4.0],
        ];
        let init = [[0.0, 0.0], [5.0, 5.0]];
        let flat: Vec<f64> = pts.iter().flatten().copied().collect();
        let cflat: Vec<f64> = init.iter().flatten().copied().collect();
        let x = MatRef::new(&flat, 7, 2).unwrap();
        let c = MatRef::new(&cflat, 2, 2).unwrap();
        let fit = lloyd(x, None, c, 1, 0.0, false).unwrap();
        let (_, expect) = brute_lloyd_step(&pts, &init);
        for (j, want) in expect.iter().enumerate() {
            assert!((fit.centres.row(j)[0] - want[0]).abs() < 1e-12);
            assert!((fit.centres.row(j)[1] - want[1]).abs() < 1e-12);
        }
        assert_eq!(fit.n_iter, 1);
        // Labels and inertia belong to the final centres.
        let (labels, _) = brute_lloyd_step(&pts, &expect);
        assert_eq!(
            fit.labels.iter().map(|&l| l as usize).collect::<Vec<_>>(),
            labels
        );
        let expect_inertia: f64 = pts
            .iter()
            .zip(&labels)
            .map(|(p, &l)| (p[0] - expect[l][0]).powi(2) + (p[1] - expect[l][1]).powi(2))
            .sum();
        assert!((fit.inertia - expect_inertia).abs() < 1e-9);
    }

    #[test]
    fn converges_to_the_two_groups() {
        // Two groups; init puts both centres in the first group.
        let flat = [0.0f32, 0.0, 0.0, 2.0, 10.0, 0.0, 10.0, 2.0];
        let init = [0.0f32, 0.0, 0.0, 2.0];
        let x = MatRef::new(&flat, 4, 2).unwrap();
        let fit = lloyd(x, None, MatRef::new(&init, 2, 2).unwrap(), 100, 0.0, false).unwrap();
        let mut cs: Vec<(f32, f32)> = (0..2)
            .map(|j| (fit.centres.row(j)[0], fit.centres.row(j)[1]))
            .collect();
        cs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        // Iteration 1: {(0,0),(10,0)} -> (5,0), {(0,2),(10,2)} -> (5,2): the
        // split is horizontal and stays there (a local optimum), inertia 4*25.
        assert_eq!(cs, vec![(5.0, 0.0), (5.0, 2.0)]);
        assert!((fit.inertia - 100.0).abs() < 1e-9);
        assert_eq!(fit.n_iter, 2); // second iteration sees the same labels
    }

    #[test]
    fn empty_cluster_takes_the_farthest_point() {
        // Centre 1 is far from every point, so it is empty after assignment;
        // the farthest point from its centre (10, 0) moves to cluster 1.
        let flat = [0.0f64, 0.0, 1.0, 0.0, 10.0, 0.0];
        let init = [0.5f64, 0.0, 100.0, 100.0];
        let x = MatRef::new(&flat, 3, 2).unwrap();
        let fit = lloyd(x, None, MatRef::new(&init, 2, 2).unwrap(), 1, 0.0, false).unwrap();
        assert_eq!(fit.centres.row(0), &[0.5, 0.0]);
        assert_eq!(fit.centres.row(1), &[10.0, 0.0]);
        assert_eq!(fit.labels, vec![0, 0, 1]);
        assert!((fit.inertia - 0.5).abs() < 1e-12);
    }

    #[test]
    fn the_farthest_rows_are_a_full_sorts_first_with_ties_lower_row_first() {
        // Distances repeat every 97 rows, so equal ones fall in every chunk.
        let n = 3 * CHUNK_ROWS + 5;
        let flat: Vec<f32> = (0..n).flat_map(|i| [(i % 97) as f32, 1.0]).collect();
        let centres = [0.0f32, 1.0, 50.0, 1.0];
        let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let x = MatRef::new(&flat, n, 2).unwrap();
        let c = MatRef::new(&centres, 2, 2).unwrap();
        let dist = |i: usize| {
            let v = (i % 97) as f64 - if labels[i] == 0 { 0.0 } else { 50.0 };
            v * v
        };
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| dist(b).total_cmp(&dist(a)).then(a.cmp(&b)));
        for m in [1, 3, 40, 500] {
            let want: Vec<(usize, f64)> = order[..m].iter().map(|&i| (i, dist(i))).collect();
            for threads in [1, 2] {
                let got: Vec<(usize, f64)> = in_pool(threads, || {
                    partial::farthest_rows(x, None, c, &labels, 0, m)
                })
                .into_iter()
                .map(|f| (f.row as usize, f.distance))
                .collect();
                assert_eq!(got, want, "m = {m}, {threads} threads");
            }
        }
    }

    #[test]
    fn tied_farthest_rows_fill_empty_clusters_lower_row_first() {
        // Rows 0..5 on a line; the first centre takes them all, the others are
        // far away and stay empty. Around centre (2, 0), rows 0 and 4 tie at
        // distance 4 and rows 1 and 3 at 1: the empty clusters 1 and 2 take
        // rows 0 and 4 (lower row first), cluster 3 takes row 1.
        let flat = [0.0f64, 0.0, 1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 4.0, 0.0];
        let init = [2.0f64, 0.0, 100.0, 100.0, 200.0, 200.0, 300.0, 300.0];
        let x = MatRef::new(&flat, 5, 2).unwrap();
        let fit = lloyd(x, None, MatRef::new(&init, 4, 2).unwrap(), 1, 0.0, false).unwrap();
        assert_eq!(fit.centres.row(1), &[0.0, 0.0]);
        assert_eq!(fit.centres.row(2), &[4.0, 0.0]);
        assert_eq!(fit.centres.row(3), &[1.0, 0.0]);
        // Cluster 0 keeps rows 2 and 3: mean (2.5, 0).
        assert_eq!(fit.centres.row(0), &[2.5, 0.0]);
    }

    #[test]
    fn weights_act_as_repetition_in_the_means() {
        let flat = [0.0f64, 0.0, 3.0, 0.0];
        let w = [1.0f64, 2.0];
        let init = [1.0f64, 0.0];
        let x = MatRef::new(&flat, 2, 2).unwrap();
        let fit = lloyd(
            x,
            Some(&w),
            MatRef::new(&init, 1, 2).unwrap(),
            1,
            0.0,
            false,
        )
        .unwrap();
        assert_eq!(fit.centres.row(0), &[2.0, 0.0]);
        assert!((fit.inertia - (4.0 + 2.0)).abs() < 1e-12);
    }

    #[test]
    fn minibatch_step_is_a_weighted_running_mean() {
        let mut centres = Matrix::new(vec![0.0f64, 0.0, 10.0, 10.0], 2, 2).unwrap();
        let mut ws = vec![1.0, 3.0];
        let flat = [2.0f64, 0.0, 4.0, 0.0];
        let x = MatRef::new(&flat, 2, 2).unwrap();
        let loss = minibatch_step(x, None, &mut centres, &mut ws, None).unwrap();
        // Both points go to centre 0: (0*1 + 6) / 3 = 2; centre 1 untouched.
        assert_eq!(centres.row(0), &[2.0, 0.0]);
        assert_eq!(centres.row(1), &[10.0, 10.0]);
        assert_eq!(ws, vec![3.0, 3.0]);
        assert!((loss - 20.0).abs() < 1e-12);
    }

    /// A deterministic pseudo-random matrix (no RNG crate needed in the test).
    fn wavy(n: usize, d: usize, phase: f64) -> Vec<f32> {
        (0..n * d)
            .map(|i| ((i as f64 * 0.7548 + phase).sin() * 10.0 + (i % 7) as f64) as f32)
            .collect()
    }

    use crate::in_pool;

    #[test]
    fn inertia_matches_brute_force_and_ignores_thread_count() {
        // Several chunks and a ragged last one.
        let (n, d, k) = (3 * CHUNK_ROWS + 77, 5, 4);
        let flat = wavy(n, d, 0.3);
        let cflat = wavy(k, d, 1.9);
        let w: Vec<f32> = (0..n).map(|i| 0.25 + (i % 5) as f32).collect();
        let labels: Vec<u32> = (0..n).map(|i| (i * 7 % k) as u32).collect();
        let x = MatRef::new(&flat, n, d).unwrap();
        let c = MatRef::new(&cflat, k, d).unwrap();
        let want: f64 = (0..n)
            .map(|i| {
                let j = labels[i] as usize;
                let dd: f64 = (0..d)
                    .map(|p| (flat[i * d + p] as f64 - cflat[j * d + p] as f64).powi(2))
                    .sum();
                w[i] as f64 * dd
            })
            .sum();
        let one = in_pool(1, || inertia(x, Some(&w), c, &labels));
        let two = in_pool(2, || inertia(x, Some(&w), c, &labels));
        assert_eq!(one.to_bits(), two.to_bits());
        assert!((one - want).abs() <= 1e-12 * want, "{one} vs {want}");
    }

    #[test]
    fn labels_inertia_matches_brute_force() {
        let (n, d, k) = (2 * CHUNK_ROWS + 5, 3, 6);
        let flat = wavy(n, d, 0.1);
        let cflat = wavy(k, d, 2.5);
        let x = MatRef::new(&flat, n, d).unwrap();
        let c = MatRef::new(&cflat, k, d).unwrap();
        let (labels, got) = in_pool(2, || labels_inertia(x, None, c).unwrap());
        let mut want = 0.0;
        for i in 0..n {
            let dist = |j: usize| -> f64 {
                (0..d)
                    .map(|p| (flat[i * d + p] as f64 - cflat[j * d + p] as f64).powi(2))
                    .sum()
            };
            let best = (0..k).map(dist).fold(f64::INFINITY, f64::min);
            let mine = dist(labels[i] as usize);
            // The kernel's f32 expansion may swap near-ties; the chosen centre
            // must still be nearest up to its rounding.
            assert!(
                mine <= best + 1e-3 * (1.0 + best),
                "row {i}: {mine} vs {best}"
            );
            want += mine;
        }
        assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
    }

    #[test]
    fn labels_alone_are_the_nearest_centres_of_labels_inertia() {
        // Narrow rows (lane kernel) and wide rows with k >= 32 (the bf16
        // kernel where the processor has one, else AVX-512 or portable).
        for (n, d, k) in [(2 * CHUNK_ROWS + 5, 3, 6), (CHUNK_ROWS + 77, 128, 40)] {
            let flat = wavy(n, d, 0.1);
            let cflat = wavy(k, d, 2.5);
            let x = MatRef::new(&flat, n, d).unwrap();
            let c = MatRef::new(&cflat, k, d).unwrap();
            let alone = in_pool(2, || labels(x, c).unwrap());
            let (with_inertia, _) = in_pool(2, || labels_inertia(x, None, c).unwrap());
            assert_eq!(alone, with_inertia, "{n} x {d}, k = {k}");
            for (i, &l) in alone.iter().enumerate() {
                let dist = |j: usize| -> f64 {
                    (0..d)
                        .map(|p| (flat[i * d + p] as f64 - cflat[j * d + p] as f64).powi(2))
                        .sum()
                };
                let best = (0..k).map(dist).fold(f64::INFINITY, f64::min);
                let mine = dist(l as usize);
                assert!(
                    mine <= best + 1e-3 * (1.0 + best),
                    "row {i}: {mine} vs {best}"
                );
            }
        }
        let flat = wavy(10, 3, 0.1);
        let x = MatRef::new(&flat, 10, 3).unwrap();
        let c = MatRef::new(&flat[..4], 2, 2).unwrap();
        assert!(labels(x, c).is_err(), "centres of another width");
    }

    #[test]
    fn lloyd_is_bit_identical_at_one_and_two_threads() {
        let (n, d, k) = (4 * CHUNK_ROWS + 300, 4, 7);
        let flat = wavy(n, d, 0.0);
        let x = MatRef::new(&flat, n, d).unwrap();
        let init = MatRef::new(&flat[..k * d], k, d).unwrap();
        let run = |t| in_pool(t, || lloyd(x, None, init, 5, 0.0, false).unwrap());
        let (a, b) = (run(1), run(2));
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.centres.as_slice(), b.centres.as_slice());
        assert_eq!(a.inertia.to_bits(), b.inertia.to_bits());
        assert_eq!(a.n_iter, b.n_iter);
    }

    #[test]
    fn the_first_bad_value_is_reported() {
        // Two bad values in different chunks, the later one in a chunk that
        // another thread may reach first: the earlier one is named.
        let (n, d) = (3 * CHUNK_ROWS, 4);
        let mut flat = wavy(n, d, 0.5);
        flat[(2 * CHUNK_ROWS + 10) * d + 1] = f32::NAN;
        flat[(CHUNK_ROWS + 3) * d + 2] = f32::INFINITY;
        let x = MatRef::new(&flat, n, d).unwrap();
        let c = MatRef::new(&flat[..d], 1, d).unwrap();
        let err = in_pool(2, || lloyd(x, None, c, 1, 0.0, false)).unwrap_err();
        let row = CHUNK_ROWS + 3;
        assert!(
            err.to_string().contains(&format!("row {row}, column 2 ")),
            "{err}"
        );
        let ok = wavy(n, d, 0.5);
        let x = MatRef::new(&ok, n, d).unwrap();
        let mut w = vec![1.0f32; n];
        w[CHUNK_ROWS + 1] = -1.0;
        w[2 * CHUNK_ROWS] = f32::NAN;
        let err = in_pool(2, || lloyd(x, Some(&w), c, 1, 0.0, false)).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("sample_weight[{}]", CHUNK_ROWS + 1)),
            "{err}"
        );
    }

    #[test]
    fn column_means_sum_each_column_in_row_order() {
        // Values whose f32 sums depend on the order: 1e8 swallows small
        // terms unless they are added first.
        let (n, d) = (CHUNK_ROWS + 9, 70);
        let mut flat = wavy(n, d, 0.4);
        flat[..d].fill(1e8); // row 0
        let x = MatRef::new(&flat, n, d).unwrap();
        let got = in_pool(2, || column_means_like_numpy(x));
        for c in 0..d {
            let mut s = 0.0f32;
            for i in 0..n {
                s += flat[i * d + c];
            }
            let want = (s as f64 / n as f64) as f32;
            assert_eq!(got[c].to_bits(), want.to_bits(), "column {c}");
        }
        let mut out = vec![0.0f32; n * d];
        assert!(subtract_rows(x, &got, &mut out));
        let mut inplace = flat.clone();
        assert!(subtract_rows_in_place(&mut inplace, d, &got));
        for (i, (&o, &p)) in out.iter().zip(&inplace).enumerate() {
            assert_eq!(o.to_bits(), (flat[i] - got[i % d]).to_bits());
            assert_eq!(p.to_bits(), o.to_bits());
        }
    }

    /// Rows (a+1, a+1) and (a-1, a-1) around the mean (a, a): centring
    /// pays where |mean|^2 = 2 a^2 is more than twice the spread 2, that is
    /// where a > sqrt 2 (by hand); a NaN or an infinity anywhere is never
    /// "would not pay", and neither is a column whose f64 sum overflows.
    #[test]
    fn centring_would_not_pay_below_root_two() {
        for (a, pays) in [
            (0.0, false),
            (1.25, false),
            (1.375, false),
            (1.5, true),
            (40.0, true),
        ] {
            let x: Vec<f32> = (0..3000)
                .flat_map(|i| {
                    let v = if i % 2 == 0 { a + 1.0 } else { a - 1.0 };
                    [v as f32, v as f32]
                })
                .collect();
            let m = MatRef::new(&x, 3000, 2).unwrap();
            assert_eq!(centring_would_not_pay(m), !pays, "a = {a}");
            for bad in [f32::NAN, f32::INFINITY] {
                let mut y = x.clone();
                y[2 * 2999 + 1] = bad;
                assert!(
                    !centring_would_not_pay(MatRef::new(&y, 3000, 2).unwrap()),
                    "{bad}"
                );
            }
        }
        let huge = [f64::MAX, 0.0, f64::MAX, 0.0];
        assert!(!centring_would_not_pay(MatRef::new(&huge, 2, 2).unwrap()));
    }

    /// Integer data is shifted by its means rounded to integers (ties to
    /// even); one value off the integers anywhere keeps the exact means.
    #[test]
    fn integer_data_is_shifted_by_rounded_means() {
        let (n, d) = (3 * CHUNK_ROWS + 11, 9);
        // Column c holds i % (c + 2) + 2c: integers whose means are not.
        let mut flat: Vec<f32> = (0..n * d)
            .map(|v| ((v / d) % (v % d + 2) + 2 * (v % d)) as f32)
            .collect();
        let means: Vec<f32> = (0..d)
            .map(|c| {
                let s: f32 = (0..n).map(|i| flat[i * d + c]).sum();
                (s as f64 / n as f64) as f32
            })
            .collect();
        for threads in [1, 2] {
            let x = MatRef::new(&flat, n, d).unwrap();
            let got = in_pool(threads, || centring(x, false));
            let want: Vec<f32> = means.iter().map(|m| m.round_ties_even()).collect();
            assert_eq!(got.shift, want, "{threads} threads");
            assert!(
                got.shift.iter().zip(&means).any(|(s, m)| s != m),
                "the means are not integers"
            );
        }
        // One half, in the last row: the shift is the means themselves.
        flat[n * d - 1] += 0.5;
        let x = MatRef::new(&flat, n, d).unwrap();
        let got = in_pool(2, || centring(x, false));
        assert_eq!(got.shift, column_means_like_numpy(x));
        assert!(got.shift.iter().any(|s| s.fract() != 0.0));
    }

    /// The centred copy, large enough to be advised onto huge pages, holds
    /// NumPy's `x - v` element by element.
    #[test]
    fn a_centred_copy_is_each_value_less_its_column_shift() {
        let (n, d) = (9000, 70); // 2.5 MB of f32
        let x: Vec<f32> = (0..n * d)
            .map(|i| ((i * 37 % 1001) as f32) * 0.37)
            .collect();
        let v: Vec<f32> = (0..d).map(|p| p as f32 * 1.5 - 20.25).collect();
        let (out, finite) = subtracted_rows(MatRef::new(&x, n, d).unwrap(), &v);
        assert!(finite);
        assert_eq!(out.len(), n * d);
        for (i, (&o, &a)) in out.iter().zip(&x).enumerate() {
            assert_eq!(o.to_bits(), (a - v[i % d]).to_bits(), "element {i}");
        }
    }

    /// Finite values whose difference overflows (3e38 - (-3e38)) make the
    /// subtraction say so, in a copy and in place, wherever the value sits;
    /// a fit told the values are finite then labels as the checked fit does.
    #[test]
    fn an_overflowing_subtraction_is_reported_and_known_finite_data_fits_alike() {
        let (n, d) = (3 * CHUNK_ROWS + 5, 3);
        let v = [-3e38f32, 0.0, 1.0];
        for at in [0, d * CHUNK_ROWS * 2 + 1, n * d - 3] {
            let mut x = vec![1.0f32; n * d];
            x[at] = 3e38;
            let xm = MatRef::new(&x, n, d).unwrap();
            let (_, finite) = in_pool(2, || subtracted_rows(xm, &v));
            assert_eq!(finite, at % d != 0, "value {at}");
            let mut inplace = x.clone();
            let finite = in_pool(2, || subtract_rows_in_place(&mut inplace, d, &v));
            assert_eq!(finite, at % d != 0, "value {at}");
        }
        let flat = wavy(n, d, 0.0);
        let x = MatRef::new(&flat, n, d).unwrap();
        let init = MatRef::new(&flat[..4 * d], 4, d).unwrap();
        let a = lloyd(x, None, init, 4, 0.0, false).unwrap();
        let b = lloyd_values(x, None, init, 4, 0.0, false, Values::KnownFinite).unwrap();
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.centres.as_slice(), b.centres.as_slice());
        // Shapes and centres are still checked.
        let bad_centre = [f32::NAN; 3];
        let c = MatRef::new(&bad_centre, 1, d).unwrap();
        assert!(lloyd_values(x, None, c, 1, 0.0, false, Values::KnownFinite).is_err());
    }

    #[test]
    fn column_variances_square_the_deviations_and_sum_in_row_order() {
        // NumPy's x.var(axis=0): deviations and squares rounded to f32, the
        // squares summed row after row; 1e4 in row 0 makes the order of the
        // additions show.
        let (n, d) = (CHUNK_ROWS + 9, 70);
        let mut flat = wavy(n, d, 0.4);
        flat[..d].fill(1e4);
        let x = MatRef::new(&flat, n, d).unwrap();
        let means = column_means_like_numpy(x);
        let got = in_pool(2, || column_variances_like_numpy(x, &means));
        assert_eq!(got, in_pool(1, || column_variances_like_numpy(x, &means)));
        for c in 0..d {
            let mut s = 0.0f32;
            for i in 0..n {
                let t = flat[i * d + c] - means[c];
                s += t * t;
            }
            let want = (s as f64 / n as f64) as f32;
            assert_eq!(got[c].to_bits(), want.to_bits(), "column {c}");
        }
        // Hand-worked: columns (1, 2, 3, 6) and (0, 0, 0, 0); means 3 and 0,
        // variances (4 + 1 + 0 + 9) / 4 = 3.5 and 0.
        let small = [1.0f64, 0.0, 2.0, 0.0, 3.0, 0.0, 6.0, 0.0];
        let x = MatRef::new(&small, 4, 2).unwrap();
        let means = column_means_like_numpy(x);
        assert_eq!(means, vec![3.0, 0.0]);
        assert_eq!(column_variances_like_numpy(x, &means), vec![3.5, 0.0]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let flat = [0.0f64, f64::NAN];
        let x = MatRef::new(&flat, 1, 2).unwrap();
        let init = [0.0f64, 0.0];
        let c = MatRef::new(&init, 1, 2).unwrap();
        assert!(matches!(
            lloyd(x, None, c, 10, 0.0, false),
            Err(Error::InvalidData(_))
        ));
        let ok = [0.0f64, 1.0];
        let x = MatRef::new(&ok, 1, 2).unwrap();
        let narrow = [0.0f64];
        assert!(matches!(
            lloyd(x, None, MatRef::new(&narrow, 1, 1).unwrap(), 10, 0.0, false),
            Err(Error::InvalidShape(_))
        ));
        assert!(matches!(
            lloyd(x, Some(&[-1.0]), c, 10, 0.0, false),
            Err(Error::InvalidData(_))
        ));
        assert!(matches!(
            lloyd(x, None, c, 0, 0.0, false),
            Err(Error::InvalidArgument(_))
        ));
    }
}
