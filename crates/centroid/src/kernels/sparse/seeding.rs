//! Greedy k-means++ on sparse rows. The draws are
//! [`crate::seeding::draw_candidates`]'s, the same code the dense seeding
//! runs, so that the same seed picks the same rows from the same data,
//! dense or sparse; only the scoring of candidates is sparse.

use rayon::prelude::*;

use super::{for_each_distance, CsrRef, SparseCentres, CHUNK_ROWS};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::matrix::{MatRef, Matrix};
use crate::seeding::{check_weights_and_retries, draw_candidates, Draw};

/// `sum_i w_i min(min_dist[i], d(x_i, c))` for each centre `c` of
/// `candidates`, chunk sums added in chunk order; and, when `fold` is set,
/// `min_dist` lowered to the distance to that candidate.
fn potentials<T: Float>(
    x: CsrRef<'_, T>,
    sample_weight: Option<&[T]>,
    min_dist: &mut [f64],
    candidates: &SparseCentres<T>,
    fold: Option<usize>,
) -> Vec<f64> {
    let m = candidates.k();
    let parts: Vec<Vec<f64>> = min_dist
        .par_chunks_mut(CHUNK_ROWS)
        .enumerate()
        .map(|(ci, cur)| {
            let start = ci * CHUNK_ROWS;
            let mut dist = vec![0.0f64; cur.len() * m];
            for_each_distance(x, start, start + cur.len(), candidates, |r, j, v| {
                dist[r * m + j] = v;
            });
            let mut pot = vec![0.0f64; m];
            for (r, c) in cur.iter_mut().enumerate() {
                let w = sample_weight.map_or(1.0, |w| w[start + r].to_f64_exact());
                let drow = &dist[r * m..(r + 1) * m];
                for (p, &dv) in pot.iter_mut().zip(drow) {
                    *p += w * c.min(dv);
                }
                if let Some(f) = fold {
                    *c = c.min(drow[f]);
                }
            }
            pot
        })
        .collect();
    let mut total = vec![0.0f64; m];
    for p in &parts {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Greedy k-means++ on sparse rows, drawing as
/// [`crate::seeding::kmeans_plus_plus`] does on dense rows (with the same
/// [`draw_candidates`]), so that the same
/// seed picks the same rows from the same data, dense or sparse: each
/// centre, the first included, is the best of `1 + retries` distinct rows
/// drawn with probability proportional to `w * D(x)` (to `w` for the first):
/// the first row whose serial f64 running total exceeds a uniform draw
/// times the total. The candidate leaving the smallest potential wins, the
/// first drawn on ties; when no potential is left, a row not yet chosen is
/// drawn uniformly. The same rows at any thread count. Returns the chosen
/// rows, densified.
pub fn kmeans_plus_plus<T: Float>(
    x: CsrRef<'_, T>,
    sample_weight: Option<&[T]>,
    k: usize,
    retries: usize,
    seed: u64,
) -> Result<Matrix<T>> {
    let mut rng = crate::seeding::rng_from_seed(seed);
    let rows = kmeans_plus_plus_indices(x, sample_weight, k, retries, &mut rng)?;
    let mut out = Matrix::zeros(rows.len(), x.cols());
    for (step, &i) in rows.iter().enumerate() {
        x.row_dense(i, out.row_mut(step));
    }
    Ok(out)
}

/// The rows [`kmeans_plus_plus`] chooses, in the order chosen, drawing from
/// `rng` (the sparse twin of [`crate::seeding::kmeans_plus_plus_indices`],
/// which the Estimator's first-batch seeding calls on dense batches).
pub fn kmeans_plus_plus_indices<T: Float>(
    x: CsrRef<'_, T>,
    sample_weight: Option<&[T]>,
    k: usize,
    retries: usize,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Result<Vec<usize>> {
    let (n, d) = (x.rows(), x.cols());
    if n < k {
        return Err(Error::InvalidData(format!(
            "k-means++ needs at least {k} rows, got {n}"
        )));
    }
    check_weights_and_retries(n, sample_weight, retries)?;
    let mut picks = Vec::with_capacity(k);
    let weight = |i: usize| sample_weight.map_or(1.0, |w| w[i].to_f64_exact());
    let mut min_dist = vec![f64::INFINITY; n];
    let mut is_chosen = vec![false; n];
    let mut cumulative = Vec::new();
    let mut row = vec![T::zero(); d];
    for step in 0..k {
        let drawn = draw_candidates(
            step,
            k,
            weight,
            &min_dist,
            &is_chosen,
            1 + retries,
            &mut cumulative,
            rng,
        )?;
        let pick = match drawn {
            Draw::Uniform(pick) => pick,
            Draw::Candidates(candidates) => {
                let mut cand = Matrix::zeros(candidates.len(), d);
                for (c, &i) in candidates.iter().enumerate() {
                    x.row_dense(i, &mut row);
                    cand.row_mut(c).copy_from_slice(&row);
                }
                let mut scratch = min_dist.clone();
                let pots = potentials(
                    x,
                    sample_weight,
                    &mut scratch,
                    &SparseCentres::new(cand.view()),
                    None,
                );
                let mut best = 0;
                for (c, &p) in pots.iter().enumerate() {
                    if p < pots[best] {
                        best = c;
                    }
                }
                candidates[best]
            }
        };
        is_chosen[pick] = true;
        picks.push(pick);
        x.row_dense(pick, &mut row);
        let chosen = SparseCentres::new(MatRef::new(&row, 1, d)?);
        potentials(x, None, &mut min_dist, &chosen, Some(0));
    }
    Ok(picks)
}
