//! K-means over partitioned data: the statistics one partition contributes
//! to a step, their merge, and the update rules applied to merged statistics.
//!
//! A distributed engine (Dask today; Spark's `mapInArrow` later) runs
//! [`partition_stats`] on every partition with the same centres, brings the
//! [`PartialStats`] back and merges them with [`merge_in_order`] in partition
//! index order, never in completion order: the same data cut into the same
//! partitions gives the same bits on any number of workers, whatever the
//! timing or retries. The update rules ([`lloyd_update`],
//! [`minibatch_update`]) are the ones [`crate::batch`] applies on one machine,
//! so one code path serves one machine and many.
//!
//! Within a partition the kernels' fixed chunking holds (chunk boundaries
//! depend on the partition's row count only), so a partition's statistics do
//! not depend on the worker's thread count either.
//!
//! k-means|| (Bahmani et al.) sampling is here too: [`kmeans_parallel_sample`]
//! decides for every row whether it becomes a candidate, with a uniform draw
//! taken from a ChaCha stream at a position fixed by the global row index, so
//! the candidates do not depend on how the rows are partitioned.

use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::batch::{self, check_inputs};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::{self, ClusterStats, Metric, PreparedCentres, CHUNK_ROWS};
use crate::matrix::{MatRef, Matrix};

/// A row that may refill an empty cluster: one of the rows farthest from
/// their assigned centre.
#[derive(Clone, Debug, PartialEq)]
pub struct FarRow {
    /// The row's index in the whole data set (partition offset + local row).
    pub row: u64,
    /// Its squared Euclidean distance to the centre it is assigned to.
    pub distance: f64,
    /// The cluster it is assigned to.
    pub label: u32,
    /// Its sample weight (1 when unweighted).
    pub weight: f64,
    /// Its values, in f64.
    pub values: Vec<f64>,
}

/// What one partition (or several, merged) contributes to a step.
#[derive(Clone, Debug, PartialEq)]
pub struct PartialStats {
    /// Per-cluster f64 sums, weights, counts and the loss.
    pub stats: ClusterStats,
    /// The rows farthest from their centres, farthest first (equal distances:
    /// lower global row first); only as many as were asked for.
    pub farthest: Vec<FarRow>,
}

impl PartialStats {
    /// Empty statistics for `k` clusters of `d` features.
    pub fn new(k: usize, d: usize) -> Self {
        Self {
            stats: ClusterStats::new(k, d),
            farthest: Vec::new(),
        }
    }
}

/// Farthest first; equal distances put the lower global row first, so the
/// order is total and does not depend on the sort.
fn farther_first(a: &FarRow, b: &FarRow) -> std::cmp::Ordering {
    b.distance.total_cmp(&a.distance).then(a.row.cmp(&b.row))
}

/// The indices of the `m` largest values of `dist` (all of them when `m`
/// exceeds its length), largest first, the lower index first among equal
/// values: exactly the first `m` of a full sort under that total order, found
/// by a linear-time selection and a sort of the `m` chosen (relocating empty
/// clusters must cost no more than an ordinary pass over the data).
pub(crate) fn farthest_first(dist: &[f64], m: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..dist.len()).collect();
    let by = |&a: &usize, &b: &usize| dist[b].total_cmp(&dist[a]).then(a.cmp(&b));
    let m = m.min(order.len());
    if m == 0 {
        return Vec::new();
    }
    if m < order.len() {
        // The order is total (ties broken by index), so the m selected are
        // the same m a full sort would put first.
        order.select_nth_unstable_by(m - 1, by);
        order.truncate(m);
    }
    order.sort_unstable_by(by);
    order
}

/// One partition's statistics under `centres`: the nearest centre of every
/// row (into `labels` when given), the per-cluster sums (weighted by
/// `sample_weight`), and the `n_farthest` rows farthest from their centres.
/// `row_offset` is the global index of the partition's first row.
///
/// The rows are checked first (finite values, finite non-negative weights,
/// the centres' width); errors name the row within the partition. An empty
/// partition contributes nothing.
pub fn partition_stats<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: &PreparedCentres<T>,
    row_offset: u64,
    labels: Option<&mut [u32]>,
    n_farthest: usize,
) -> Result<PartialStats> {
    let (n, k, d) = (x.rows(), centres.k(), centres.d());
    let mut out = PartialStats::new(k, d);
    if n == 0 {
        return Ok(out);
    }
    check_inputs(x, sample_weight, centres.centres())?;
    if let Some(l) = &labels {
        if l.len() != n {
            return Err(Error::InvalidShape(format!(
                "labels has room for {} rows but the partition has {n}",
                l.len()
            )));
        }
    }
    let mut own_labels = Vec::new();
    let labels: &mut [u32] = match labels {
        Some(l) => l,
        None => {
            own_labels.resize(n, 0);
            &mut own_labels
        }
    };
    if centres.metric() == Metric::SquaredEuclidean {
        // The additions of an Estimator step on the same rows
        // (`ModelFn::train_step`): a model trained on partitions matches
        // one trained on the whole batch.
        batch::plain_pass(
            x,
            sample_weight,
            centres,
            labels,
            &mut out.stats,
            true,
            &mut kernels::Partials::default(),
        );
    } else {
        kernels::assign_accumulate(x, sample_weight, centres, Some(labels), &mut out.stats);
    }
    if n_farthest > 0 {
        out.farthest = farthest_rows(
            x,
            sample_weight,
            centres.centres(),
            labels,
            row_offset,
            n_farthest,
        );
    }
    Ok(out)
}

/// The `m` rows farthest from their assigned centres (squared distance,
/// f64), farthest first, the lower row first among equals, as
/// [`farthest_first`] orders them; `row_offset` is the global index of the
/// first row. Each chunk of rows keeps its own `m` farthest, which hold the
/// overall `m` farthest, so this costs one read of the rows and no `n`-long
/// buffers (relocating empty clusters must cost no more than an ordinary
/// pass). Each distance is computed on its own, so the result is the same
/// at any thread count.
pub(crate) fn farthest_rows<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: MatRef<'_, T>,
    labels: &[u32],
    row_offset: u64,
    m: usize,
) -> Vec<FarRow> {
    let c64 = kernels::widened(centres.as_slice());
    let candidates: Vec<(usize, f64)> = labels
        .par_chunks(CHUNK_ROWS)
        .enumerate()
        .flat_map_iter(|(c, chunk)| {
            // The chunk's `m` farthest so far, farthest first: a row enters
            // only when strictly farther than the last (rows come in order,
            // so an equal one ranks after), after any equal ones.
            let start = c * CHUNK_ROWS;
            let mut top: Vec<(usize, f64)> = Vec::with_capacity(m + 1);
            let rows = x.slice_rows(start, start + chunk.len());
            kernels::for_each_sq_dist(rows, chunk, &c64, |q, dist| {
                if top.len() == m && top.last().is_none_or(|&(_, v)| dist <= v) {
                    return;
                }
                let at = top.partition_point(|&(_, v)| v >= dist);
                top.insert(at, (start + q, dist));
                top.truncate(m);
            });
            top
        })
        .collect();
    let dist: Vec<f64> = candidates.iter().map(|&(_, v)| v).collect();
    // Among equal distances, positions in `candidates` follow the rows'
    // order (chunks in order, each chunk's lower rows first), so ties are
    // broken as over all rows.
    farthest_first(&dist, m)
        .into_iter()
        .map(|p| {
            let (i, distance) = candidates[p];
            FarRow {
                row: row_offset + i as u64,
                distance,
                label: labels[i],
                weight: sample_weight.map_or(1.0, |w| w[i].to_f64_exact()),
                values: x.row(i).iter().map(|v| v.to_f64_exact()).collect(),
            }
        })
        .collect()
}

/// Adds partial statistics in the order given (partition index order), and
/// keeps the farthest rows of all of them, as many as the largest list held.
pub fn merge_in_order(parts: &[PartialStats]) -> Result<PartialStats> {
    let first = parts
        .first()
        .ok_or_else(|| Error::data("there are no partial statistics to merge"))?;
    let (k, d) = (first.stats.k, first.stats.d);
    let mut out = PartialStats::new(k, d);
    let mut keep = 0;
    for (i, p) in parts.iter().enumerate() {
        if (p.stats.k, p.stats.d) != (k, d)
            || p.stats.sums.len() != k * d
            || p.stats.weights.len() != k
            || p.stats.counts.len() != k
        {
            return Err(Error::InvalidShape(format!(
                "partial statistics {i} are for {} clusters x {} features, the first for {k} x {d}",
                p.stats.k, p.stats.d
            )));
        }
        if let Some(bad) = p.farthest.iter().find(|f| f.values.len() != d) {
            return Err(Error::InvalidShape(format!(
                "partial statistics {i}: farthest row {} has {} values, expected {d}",
                bad.row,
                bad.values.len()
            )));
        }
        out.stats.merge(&p.stats);
        keep = keep.max(p.farthest.len());
        out.farthest.extend(p.farthest.iter().cloned());
    }
    out.farthest.sort_by(farther_first);
    out.farthest.truncate(keep);
    Ok(out)
}

/// The clusters that received no weight, in index order.
pub fn empty_clusters(stats: &ClusterStats) -> Vec<usize> {
    (0..stats.k).filter(|&j| stats.weights[j] == 0.0).collect()
}

/// Moves empty clusters to the farthest rows, as scikit-learn does: the
/// farthest row goes to the first empty cluster, the next to the second, and
/// so on; each moved row leaves its old cluster's sums. `farthest` must be
/// ordered farthest first. Returns `(row, new cluster)` for every moved row.
pub fn relocate_empty_clusters(stats: &mut ClusterStats, farthest: &[FarRow]) -> Vec<(u64, u32)> {
    let d = stats.d;
    let empty = empty_clusters(stats);
    let mut moved = Vec::with_capacity(empty.len().min(farthest.len()));
    for (&new_j, far) in empty.iter().zip(farthest) {
        let (w, old_j) = (far.weight, far.label as usize);
        for (c, &v) in far.values.iter().enumerate() {
            let v = v * w;
            stats.sums[old_j * d + c] -= v;
            stats.sums[new_j * d + c] = v;
        }
        stats.weights[new_j] = w;
        stats.weights[old_j] -= w;
        stats.counts[new_j] = 1;
        stats.counts[old_j] = stats.counts[old_j].saturating_sub(1);
        moved.push((far.row, new_j as u32));
    }
    moved
}

/// Lloyd's update (scikit-learn's): every centre that received weight
/// becomes the mean of its rows; the others stay. Returns the sum over
/// centres of the squared shift.
pub fn lloyd_update<T: Float>(centres: &mut Matrix<T>, stats: &ClusterStats) -> Result<f64> {
    check_shape(centres, stats)?;
    let d = stats.d;
    let mut shift = 0.0;
    for j in 0..stats.k {
        let w = stats.weights[j];
        if w <= 0.0 {
            continue; // Nothing to move it (only with zero weights).
        }
        for (c, v) in centres.row_mut(j).iter_mut().enumerate() {
            let new = T::from_f64_lossy(stats.sums[j * d + c] / w);
            let delta = new.to_f64_exact() - v.to_f64_exact();
            shift += delta * delta;
            *v = new;
        }
    }
    Ok(shift)
}

/// scikit-learn's mini-batch update: every centre j that received weight
/// m_j > 0 with sum s_j moves to `(c_j * W_j + s_j) / (W_j + m_j)`, and
/// `weight_sums[j]` = W_j grows by m_j.
pub fn minibatch_update<T: Float>(
    centres: &mut Matrix<T>,
    weight_sums: &mut [f64],
    stats: &ClusterStats,
) -> Result<()> {
    check_shape(centres, stats)?;
    if weight_sums.len() != stats.k {
        return Err(Error::InvalidShape(format!(
            "weight_sums has {} values but there are {} centres",
            weight_sums.len(),
            stats.k
        )));
    }
    let d = stats.d;
    for (j, weight_sum) in weight_sums.iter_mut().enumerate() {
        let m = stats.weights[j];
        if m <= 0.0 {
            continue;
        }
        let total = *weight_sum + m;
        for (c, v) in centres.row_mut(j).iter_mut().enumerate() {
            *v =
                T::from_f64_lossy((v.to_f64_exact() * *weight_sum + stats.sums[j * d + c]) / total);
        }
        *weight_sum = total;
    }
    Ok(())
}

fn check_shape<T: Float>(centres: &Matrix<T>, stats: &ClusterStats) -> Result<()> {
    if (centres.rows(), centres.cols()) != (stats.k, stats.d)
        || stats.sums.len() != stats.k * stats.d
        || stats.weights.len() != stats.k
    {
        return Err(Error::InvalidShape(format!(
            "the centres are {} x {} but the statistics are for {} clusters x {} features",
            centres.rows(),
            centres.cols(),
            stats.k,
            stats.d
        )));
    }
    Ok(())
}

/// The uniform draws of k-means|| round `round` for global rows
/// `first_row..first_row + out.len()`: row r's draw is the 53-bit float made
/// from word pair r of ChaCha8 stream `round` keyed by `seed`, whatever
/// partition r falls in.
fn keyed_uniforms(seed: u64, round: u64, first_row: u64, out: &mut [f64]) {
    use rand::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(round);
    // Each row consumes one u64, that is two 32-bit words of the stream.
    rng.set_word_pos(u128::from(first_row) * 2);
    for u in out.iter_mut() {
        *u = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    }
}

/// k-means|| sampling of one partition: row i becomes a candidate when its
/// keyed uniform draw is below `oversampling * w_i * D(x_i) / cost`, where
/// `D` is the distance to the nearest of `centres` and `cost` the whole data
/// set's weighted sum of those distances. Returns the local indices of the
/// chosen rows, in order. `round` must be at least 1 (stream 0 is the first
/// centre's).
#[allow(clippy::too_many_arguments)]
pub fn kmeans_parallel_sample<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: &PreparedCentres<T>,
    row_offset: u64,
    seed: u64,
    round: u64,
    oversampling: f64,
    cost: f64,
) -> Result<Vec<u64>> {
    let n = x.rows();
    if n == 0 {
        return Ok(Vec::new());
    }
    check_inputs(x, sample_weight, centres.centres())?;
    if !(oversampling.is_finite() && oversampling > 0.0) {
        return Err(Error::arg(format!(
            "the oversampling factor must be a positive number, got {oversampling}"
        )));
    }
    if round == 0 {
        return Err(Error::arg("k-means|| sampling rounds start at 1"));
    }
    if !(cost.is_finite() && cost > 0.0) {
        // Every row sits on a candidate: nothing more to sample.
        return Ok(Vec::new());
    }
    let chosen: Vec<Vec<u64>> = (0..n.div_ceil(CHUNK_ROWS))
        .into_par_iter()
        .map(|ci| {
            let start = ci * CHUNK_ROWS;
            let end = (start + CHUNK_ROWS).min(n);
            let rows = x.slice_rows(start, end);
            let m = end - start;
            let mut labels = vec![0u32; m];
            let mut scores = vec![T::zero(); m];
            kernels::assign(rows, centres, &mut labels, &mut scores);
            let mut draws = vec![0.0; m];
            keyed_uniforms(seed, round, row_offset + start as u64, &mut draws);
            (0..m)
                .filter(|&i| {
                    let w = sample_weight.map_or(1.0, |w| w[start + i].to_f64_exact());
                    draws[i] < oversampling * w * scores[i].to_f64_exact() / cost
                })
                .map(|i| (start + i) as u64)
                .collect()
        })
        .collect();
    Ok(chosen.concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::sq_dist_blocked as sq_dist;

    /// The rule relocation has always used: a stable full sort, farthest
    /// first, lower index first among equal distances.
    fn full_sort_rule(dist: &[f64], m: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..dist.len()).collect();
        order.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
        order.truncate(m);
        order
    }

    #[test]
    fn farthest_first_picks_what_a_full_sort_picks_on_ties() {
        // Hand-built ties: three rows at 4.0 (rows 1, 3, 6), two at 9.0
        // (rows 5, 2 order reversed in the input), zeros, and a -0.0.
        let dist = [0.0, 4.0, 9.0, 4.0, 1.0, 9.0, 4.0, 0.0, -0.0, 1.0];
        assert_eq!(farthest_first(&dist, 1), vec![2]);
        assert_eq!(farthest_first(&dist, 2), vec![2, 5]);
        assert_eq!(farthest_first(&dist, 3), vec![2, 5, 1]);
        assert_eq!(farthest_first(&dist, 4), vec![2, 5, 1, 3]);
        assert_eq!(farthest_first(&dist, 5), vec![2, 5, 1, 3, 6]);
        assert_eq!(farthest_first(&dist, 0), Vec::<usize>::new());
        for m in 0..=dist.len() + 2 {
            assert_eq!(
                farthest_first(&dist, m),
                full_sort_rule(&dist, m),
                "m = {m}"
            );
        }
        // Many rows, few distinct values: every m agrees with the full sort.
        let many: Vec<f64> = (0..997u64).map(|i| ((i * 7919) % 13) as f64).collect();
        for m in [1, 2, 3, 50, 76, 77, 78, 500, 996, 997, 1000] {
            assert_eq!(
                farthest_first(&many, m),
                full_sort_rule(&many, m),
                "m = {m}"
            );
        }
    }
    use crate::kernels::Metric;

    fn data(n: usize, d: usize) -> Vec<f64> {
        // A fixed, irregular pattern: no ties in distances.
        (0..n * d)
            .map(|i| ((i * 7919) % 1013) as f64 / 97.0 + (i % 3) as f64 * 0.01)
            .collect()
    }

    /// Brute force: nearest centre by direct squared distance.
    fn brute(x: &[f64], c: &[f64], d: usize) -> Vec<usize> {
        x.chunks(d)
            .map(|r| {
                let dist = |j: usize| sq_dist(r, &c[j * d..(j + 1) * d]);
                (0..c.len() / d)
                    .min_by(|&a, &b| dist(a).total_cmp(&dist(b)))
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn merged_partitions_match_brute_force_sums() {
        let (n, d, k) = (5000, 3, 4);
        let x = data(n, d);
        let c: Vec<f64> = x[..k * d].to_vec();
        let cm = MatRef::new(&c, k, d).unwrap();
        let prepared = PreparedCentres::new(cm, Metric::SquaredEuclidean);
        let cuts = [0, 1234, 1235, 4000, n];
        let parts: Vec<PartialStats> = cuts
            .windows(2)
            .map(|w| {
                let xm = MatRef::new(&x[w[0] * d..w[1] * d], w[1] - w[0], d).unwrap();
                partition_stats(xm, None, &prepared, w[0] as u64, None, 2).unwrap()
            })
            .collect();
        let merged = merge_in_order(&parts).unwrap();
        let labels = brute(&x, &c, d);
        let mut sums = vec![0.0; k * d];
        let mut counts = vec![0u64; k];
        let mut far: Vec<(f64, usize)> = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            counts[l] += 1;
            for j in 0..d {
                sums[l * d + j] += x[i * d + j];
            }
            far.push((sq_dist(&x[i * d..(i + 1) * d], &c[l * d..(l + 1) * d]), i));
        }
        far.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        assert_eq!(merged.stats.counts, counts);
        for (a, b) in merged.stats.sums.iter().zip(&sums) {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
        }
        let got: Vec<u64> = merged.farthest.iter().map(|f| f.row).collect();
        assert_eq!(got, vec![far[0].1 as u64, far[1].1 as u64]);
    }

    #[test]
    fn relocation_moves_the_farthest_row_into_the_empty_cluster() {
        // Two clusters; the second centre is far from every row.
        let x = [0.0, 1.0, 2.0, 10.0];
        let c = [1.0, 1000.0];
        let prepared =
            PreparedCentres::new(MatRef::new(&c, 2, 1).unwrap(), Metric::SquaredEuclidean);
        let p =
            partition_stats(MatRef::new(&x, 4, 1).unwrap(), None, &prepared, 0, None, 1).unwrap();
        let mut merged = merge_in_order(&[p]).unwrap();
        assert_eq!(empty_clusters(&merged.stats), vec![1]);
        let moved = relocate_empty_clusters(&mut merged.stats, &merged.farthest);
        assert_eq!(moved, vec![(3, 1)]);
        let mut centres = Matrix::new(c.to_vec(), 2, 1).unwrap();
        lloyd_update(&mut centres, &merged.stats).unwrap();
        // Cluster 0 keeps 0, 1, 2 (mean 1); cluster 1 takes row 3 alone.
        assert_eq!(centres.as_slice(), &[1.0, 10.0]);
    }

    #[test]
    fn sampling_does_not_depend_on_partitioning() {
        let (n, d) = (9000, 2);
        let x = data(n, d);
        let c = x[..d].to_vec();
        let prepared =
            PreparedCentres::new(MatRef::new(&c, 1, d).unwrap(), Metric::SquaredEuclidean);
        let cost: f64 = x.chunks(d).map(|r| sq_dist(r, &c)).sum();
        let sample = |cuts: &[usize]| -> Vec<u64> {
            cuts.windows(2)
                .flat_map(|w| {
                    let xm = MatRef::new(&x[w[0] * d..w[1] * d], w[1] - w[0], d).unwrap();
                    kmeans_parallel_sample(xm, None, &prepared, w[0] as u64, 7, 1, 20.0, cost)
                        .unwrap()
                        .into_iter()
                        .map(move |i| i + w[0] as u64)
                })
                .collect()
        };
        let whole = sample(&[0, n]);
        assert_eq!(whole, sample(&[0, 17, 4096, 5000, n]));
        // About 20 expected; far more or none would mean a wrong probability.
        assert!((5..=60).contains(&whole.len()), "{} sampled", whole.len());
    }

    #[test]
    fn model_step_from_merged_statistics_equals_a_step_on_the_whole_batch() {
        use crate::model::ModelFn;
        use crate::params::{KMeansParams, Mode};
        let (n, d, k) = (3000, 2, 3);
        let x = data(n, d);
        for mini in [false, true] {
            let mode = if mini {
                Mode::MiniBatch
            } else {
                Mode::FullBatch
            };
            let model = ModelFn::new(KMeansParams::new(k).mode(mode).check().unwrap());
            let init = Matrix::new(x[..k * d].to_vec(), k, d).unwrap();
            let mut whole = model.new_state(init.clone());
            let mut parted = model.new_state(init);
            for _ in 0..3 {
                model.train_step(&mut whole, MatRef::new(&x, n, d).unwrap());
                let c = model.step_centres(&parted);
                let prepared = PreparedCentres::new(c.view(), Metric::SquaredEuclidean);
                // One partition: the same chunks as the whole batch.
                let part =
                    partition_stats(MatRef::new(&x, n, d).unwrap(), None, &prepared, 0, None, 0)
                        .unwrap();
                let merged = merge_in_order(&[part]).unwrap();
                model
                    .train_step_with_statistics(&mut parted, &merged.stats)
                    .unwrap();
            }
            assert_eq!(whole, parted, "mini-batch: {mini}");
        }
    }
}
