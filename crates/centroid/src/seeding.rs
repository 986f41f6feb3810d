//! Choosing the first centres: distinct random rows and greedy k-means++.

use rand::seq::index;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::{self, Metric, PreparedCentres};
use crate::matrix::{MatRef, Matrix};
use crate::params::{resolve_retries, MAX_KMEANS_PLUS_PLUS_RETRIES};

/// The random generator behind every seeded choice. ChaCha's output stream is
/// fixed by its seed on every platform and version, unlike `StdRng`'s.
pub fn rng_from_seed(seed: u64) -> ChaCha8Rng {
    use rand::SeedableRng;
    ChaCha8Rng::seed_from_u64(seed)
}

/// Indices of the rows to take from a batch of `n` rows when `needed` more
/// centres are wanted: every row, in order, when the batch has no more rows
/// than needed; otherwise `needed` distinct rows drawn uniformly.
pub fn random_row_indices(n: usize, needed: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    if n <= needed {
        (0..n).collect()
    } else {
        index::sample(rng, n, needed).into_vec()
    }
}

/// Greedy k-means++ (the variant scikit-learn and TensorFlow use): each new
/// centre, the first included, is the best of `1 + R` candidates, drawn with
/// probability proportional to the weighted distance to the nearest chosen
/// centre (uniformly, or by weight, for the first); the candidate that
/// leaves the smallest total potential wins, the first one on ties.
/// `num_retries` is R; a negative value means `2 + floor(ln k)`.
///
/// Under cosine, rows are compared normalised, and the returned centres are
/// the chosen rows as they are (the caller normalises them).
pub fn kmeans_plus_plus<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    k: usize,
    num_retries: i64,
    metric: Metric,
    seed: u64,
) -> Result<Matrix<T>> {
    let mut rng = rng_from_seed(seed);
    let rows = kmeans_plus_plus_indices(
        x,
        sample_weight,
        k,
        resolve_retries(num_retries, k),
        metric,
        &mut rng,
    )?;
    let mut out = Matrix::with_capacity(k, x.cols());
    for r in rows {
        out.push_row(x.row(r));
    }
    Ok(out)
}

/// The row indices greedy k-means++ picks, in order of choice.
pub fn kmeans_plus_plus_indices<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    k: usize,
    retries: usize,
    metric: Metric,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<usize>> {
    let n = x.rows();
    if k == 0 {
        return Ok(Vec::new());
    }
    if n < k {
        return Err(Error::data(format!(
            "k-means++ needs at least num_clusters = {k} rows in the first batch, got {n}"
        )));
    }
    if let Some(w) = sample_weight {
        if w.len() != n {
            return Err(Error::InvalidShape(format!(
                "{} sample weights for {n} rows",
                w.len()
            )));
        }
        if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v >= T::zero())) {
            return Err(Error::data(format!(
                "sample weight {i} is {}; weights must be finite and >= 0",
                w[i]
            )));
        }
    }
    if retries > MAX_KMEANS_PLUS_PLUS_RETRIES as usize {
        return Err(Error::arg(format!(
            "kmeans_plus_plus_num_retries must be at most {MAX_KMEANS_PLUS_PLUS_RETRIES}, got {retries}"
        )));
    }
    let weight = |i: usize| sample_weight.map_or(1.0, |w| w[i].to_f64_exact());
    let candidates_per_step = 1 + retries;

    // min_dist[i]: distance of row i to its nearest chosen centre.
    let mut min_dist: Vec<f64> = vec![f64::INFINITY; n];
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    let mut is_chosen = vec![false; n];
    let mut cumulative: Vec<f64> = vec![0.0; n];

    for step in 0..k {
        // Probabilities: weight * D(x), or weight alone for the first centre.
        let mut total = 0.0f64;
        for i in 0..n {
            let p = if step == 0 {
                weight(i)
            } else {
                weight(i) * min_dist[i]
            };
            total += p;
            cumulative[i] = total;
        }
        if !(total > 0.0) || !total.is_finite() {
            // Every remaining point sits on a chosen centre (or all weights
            // are zero): any row not yet chosen is as good as another.
            let free: Vec<usize> = (0..n).filter(|&i| !is_chosen[i]).collect();
            if free.is_empty() {
                // n >= k rows and fewer than k chosen: cannot happen.
                return Err(Error::data(format!(
                    "k-means++ ran out of rows after {step} of {k} centres"
                )));
            }
            let pick = free[rng.gen_range(0..free.len())];
            take(pick, x, metric, &mut min_dist);
            is_chosen[pick] = true;
            chosen.push(pick);
            continue;
        }
        // Candidates are drawn with replacement; a repeated row scores the
        // same as its first draw, which wins ties, so scoring each distinct
        // row once, in order of first draw, picks the same winner.
        let mut candidates: Vec<usize> = Vec::with_capacity(candidates_per_step.min(n));
        let mut drawn = std::collections::HashSet::with_capacity(candidates_per_step.min(n));
        for _ in 0..candidates_per_step {
            let u = rng.gen::<f64>() * total;
            let c = cumulative.partition_point(|&c| c <= u).min(n - 1);
            if drawn.insert(c) {
                candidates.push(c);
            }
        }

        // All candidates are scored in one blocked pass that keeps only the
        // per-candidate potentials, never the n x candidates distances.
        let mut cand_rows = Matrix::with_capacity(candidates.len(), x.cols());
        for &c in &candidates {
            cand_rows.push_row(x.row(c));
        }
        let prepared = PreparedCentres::new(cand_rows.view(), metric);
        let potentials = kernels::candidate_potentials(x, sample_weight, &min_dist, &prepared);
        let mut best = 0usize;
        for (c, p) in potentials.iter().enumerate() {
            if *p < potentials[best] {
                best = c;
            }
        }
        take(candidates[best], x, metric, &mut min_dist);
        let pick = candidates[best];
        is_chosen[pick] = true;
        chosen.push(pick);
    }
    Ok(chosen)
}

/// Folds row `pick` into `min_dist` as a new centre.
fn take<T: Float>(pick: usize, x: MatRef<'_, T>, metric: Metric, min_dist: &mut [f64]) {
    let mut one = Matrix::with_capacity(1, x.cols());
    one.push_row(x.row(pick));
    kernels::update_min_distances(x, &PreparedCentres::new(one.view(), metric), min_dist);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_rows_take_everything_in_order_when_short() {
        let mut rng = rng_from_seed(1);
        assert_eq!(random_row_indices(3, 5, &mut rng), vec![0, 1, 2]);
    }

    #[test]
    fn random_rows_are_distinct() {
        let mut rng = rng_from_seed(7);
        let mut idx = random_row_indices(10, 10 - 1, &mut rng);
        idx.sort();
        idx.dedup();
        assert_eq!(idx.len(), 9);
    }

    #[test]
    fn kmeans_plus_plus_with_zero_potential_picks_distinct_rows() {
        // Five rows, two distinct points: after both points are chosen the
        // potential is zero, and the remaining picks must be rows not yet
        // chosen (duplicates of chosen points, but different rows).
        let data = [0.0f32, 0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 5.0, 0.0, 0.0];
        let x = MatRef::new(&data, 5, 2).unwrap();
        let mut rng = rng_from_seed(3);
        let idx =
            kmeans_plus_plus_indices(x, None, 4, 2, Metric::SquaredEuclidean, &mut rng).unwrap();
        let mut sorted = idx.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 4, "rows must not repeat: {idx:?}");
        // Both distinct points are among the first two picks: the second pick
        // has all its probability mass on the other point.
        let first_two: Vec<f32> = idx[..2].iter().map(|&r| data[r * 2]).collect();
        assert!(
            first_two.contains(&0.0) && first_two.contains(&5.0),
            "{idx:?}"
        );
    }

    #[test]
    fn kmeans_plus_plus_needs_k_rows() {
        let data = [0.0f64, 1.0, 2.0];
        let x = MatRef::new(&data, 3, 1).unwrap();
        let err = kmeans_plus_plus(x, None, 4, 2, Metric::SquaredEuclidean, 0).unwrap_err();
        assert!(
            err.to_string().contains("at least num_clusters = 4 rows"),
            "{err}"
        );
    }

    #[test]
    fn kmeans_plus_plus_finds_separated_groups() {
        // Three tight groups far apart: greedy k-means++ picks one from each.
        let mut data = Vec::new();
        for g in 0..3 {
            for i in 0..20 {
                data.push(g as f64 * 100.0 + (i as f64) * 0.01);
                data.push(-(g as f64) * 50.0);
            }
        }
        let x = MatRef::new(&data, 60, 2).unwrap();
        for seed in 0..10 {
            let c = kmeans_plus_plus(x, None, 3, -1, Metric::SquaredEuclidean, seed).unwrap();
            let mut groups: Vec<i64> = (0..3)
                .map(|j| (c.row(j)[0] / 100.0).round() as i64)
                .collect();
            groups.sort();
            assert_eq!(groups, vec![0, 1, 2], "seed {seed}");
        }
    }
}
