//! Choosing the first centres: distinct random rows and greedy k-means++.

use std::collections::HashSet;

use rand::seq::index;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::ParamError;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::{self, Metric, PreparedCentres, ScoredCandidates, CHUNK_ROWS};
use crate::matrix::{MatRef, Matrix};
use crate::params::{Retries, MAX_KMEANS_PLUS_PLUS_RETRIES};

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
/// `num_retries` gives R.
///
/// Each step reads the data once ([`kernels::fold_and_score`]): the pass
/// that scores a step's candidates also folds the previous step's centre
/// into the closest distances, and keeps per-chunk sums of the potential
/// each candidate would leave. The next step draws from the winner's chunk
/// sums and recomputes only the chunks its draws land in. Draws are defined
/// by the serial f64 running total over all rows; the chunk sums give the
/// same totals when every addition is exact, which a bound on the terms'
/// lowest set bits proves (the usual case for f32 data, whose distances
/// have 24 significant bits). When it cannot be proved (f64 data, most
/// weighted data) the step folds the centre in with a separate pass and
/// draws from the running total itself, as two passes. Either way the same
/// rows are chosen, at any thread count. Under squared Euclidean the passes
/// skip the rows none of their centres can come closer to, by the triangle
/// inequality with the kernels' rounding bounded
/// ([`kernels::SeedingBounds`]): fewer rows read, the same bits.
///
/// Under cosine, rows are compared normalised, and the returned centres are
/// the chosen rows as they are (the caller normalises them).
pub fn kmeans_plus_plus<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    k: usize,
    num_retries: Retries,
    metric: Metric,
    seed: u64,
) -> Result<Matrix<T>> {
    let mut rng = rng_from_seed(seed);
    let rows = kmeans_plus_plus_indices(
        x,
        sample_weight,
        k,
        num_retries.resolve(k),
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
    check_weights_and_retries(n, sample_weight, retries)?;
    let weight = |i: usize| sample_weight.map_or(1.0, |w| w[i].to_f64_exact());
    let candidates_per_step = 1 + retries;

    // min_dist[i]: distance of row i to its nearest chosen centre, except
    // the last chosen one (`pending`), which the next pass folds in while it
    // scores the next candidates: one read of the data per step.
    let mut min_dist: Vec<f64> = vec![f64::INFINITY; n];
    // Every fold goes through the bounds, which skip the rows a centre
    // cannot come closer to (squared Euclidean; the same picks, to the bit).
    let mut bounds = kernels::SeedingBounds::new(x, metric);
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    let mut is_chosen = vec![false; n];
    let mut pending: Option<usize> = None;
    // The pass that scored `pending` as its winner, when it was scored (not
    // picked for lack of potential): its sums locate the next draws.
    let mut last: Option<LastPass<T>> = None;
    let mut cumulative: Vec<f64> = Vec::new();

    for step in 0..k {
        // Probabilities: weight * D(x), or weight alone for the first centre;
        // the first row whose running total exceeds a uniform draw times the
        // total is drawn. The running total is a serial f64 sum; the last
        // pass's chunk sums give the same sums when they are exact.
        let fast = last.as_ref().filter(|l| l.sums_are_exact());
        let candidates: Vec<usize> = if let Some(l) = fast {
            #[cfg(test)]
            tests::FAST_STEPS.with(|c| c.set(c.get() + 1));
            let total = l.total;
            let mut terms = ChunkTerms::default();
            let mut candidates = Vec::with_capacity(candidates_per_step.min(n));
            // As in draw_candidates: each distinct row once, in order of
            // first draw.
            let mut drawn = HashSet::with_capacity(candidates_per_step.min(n));
            for _ in 0..candidates_per_step {
                let u = rng.gen::<f64>() * total;
                let c = l.locate(u, x, sample_weight, &min_dist, &mut terms);
                if drawn.insert(c) {
                    candidates.push(c);
                }
            }
            candidates
        } else {
            if let Some(p) = pending {
                // The running total needs every row's weight: fold the last
                // centre in now, with the values the pass would have used.
                let one = PreparedCentres::new(x.slice_rows(p, p + 1), metric);
                match bounds.as_mut() {
                    Some(b) => {
                        kernels::fold_and_score_pruned(x, None, &mut min_dist, b, &one, 1);
                    }
                    None => kernels::update_min_distances(x, &one, &mut min_dist),
                }
                pending = None;
            }
            match draw_candidates(
                step,
                k,
                weight,
                &min_dist,
                &is_chosen,
                candidates_per_step,
                &mut cumulative,
                rng,
            )? {
                Draw::Candidates(candidates) => candidates,
                Draw::Uniform(pick) => {
                    is_chosen[pick] = true;
                    chosen.push(pick);
                    pending = Some(pick);
                    last = None;
                    continue;
                }
            }
        };

        // One pass: fold `pending` in, then score every candidate against
        // the updated distances. Only per-chunk sums are kept, never the
        // n x candidates distances.
        let fold = usize::from(pending.is_some());
        let mut set = Matrix::with_capacity(fold + candidates.len(), x.cols());
        if let Some(p) = pending {
            set.push_row(x.row(p));
        }
        for &c in &candidates {
            set.push_row(x.row(c));
        }
        let prepared = PreparedCentres::new(set.view(), metric);
        let scored = match bounds.as_mut() {
            Some(b) => {
                kernels::fold_and_score_pruned(x, sample_weight, &mut min_dist, b, &prepared, fold)
            }
            None => kernels::fold_and_score(x, sample_weight, &mut min_dist, &prepared, fold),
        };
        let mut best = 0usize;
        for (c, p) in scored.potentials.iter().enumerate() {
            if *p < scored.potentials[best] {
                best = c;
            }
        }
        let pick = candidates[best];
        is_chosen[pick] = true;
        chosen.push(pick);
        pending = Some(pick);
        last = Some(LastPass::new(prepared, scored, fold, best));
    }
    Ok(chosen)
}

/// What both k-means++ seedings (dense and sparse) check besides the data:
/// one finite, non-negative weight per row, and at most
/// [`MAX_KMEANS_PLUS_PLUS_RETRIES`] retries.
pub(crate) fn check_weights_and_retries<T: Float>(
    n: usize,
    sample_weight: Option<&[T]>,
    retries: usize,
) -> Result<()> {
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
        return Err(ParamError::TooManyRetries {
            got: i64::try_from(retries).unwrap_or(i64::MAX),
            max: MAX_KMEANS_PLUS_PLUS_RETRIES,
        }
        .into());
    }
    Ok(())
}

/// What one step of greedy k-means++ drew.
pub(crate) enum Draw {
    /// No sampling weight is left (every remaining row sits on a chosen
    /// centre, or no row has weight): a row not yet chosen, drawn
    /// uniformly, since any is as good as another.
    Uniform(usize),
    /// The distinct candidates, in order of first draw.
    Candidates(Vec<usize>),
}

/// Step `step`'s draws, by definition: the sampling weight of row `i` is
/// `weight(i) * min_dist[i]` (`weight(i)` for the first centre), and each
/// of the `candidates_per_step` draws is the first row whose serial f64
/// running total exceeds a uniform draw times the total. Candidates are
/// drawn with replacement; a repeated row scores the same as its first
/// draw, which wins ties, so each distinct row is kept once, in order of
/// first draw. `cumulative` is scratch. The dense seeding (when its chunk
/// sums cannot stand in for the running total) and the sparse seeding
/// ([`crate::kernels::sparse::kmeans_plus_plus`]) both draw here, so the
/// same seed picks the same rows from the same data.
#[allow(clippy::too_many_arguments)]
pub(crate) fn draw_candidates(
    step: usize,
    k: usize,
    weight: impl Fn(usize) -> f64,
    min_dist: &[f64],
    is_chosen: &[bool],
    candidates_per_step: usize,
    cumulative: &mut Vec<f64>,
    rng: &mut ChaCha8Rng,
) -> Result<Draw> {
    let n = min_dist.len();
    cumulative.resize(n, 0.0);
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
    if !total.is_finite() || total <= 0.0 {
        let free: Vec<usize> = (0..n).filter(|&i| !is_chosen[i]).collect();
        if free.is_empty() {
            // n >= k rows and fewer than k chosen: cannot happen.
            return Err(Error::data(format!(
                "k-means++ ran out of rows after {step} of {k} centres"
            )));
        }
        return Ok(Draw::Uniform(free[rng.gen_range(0..free.len())]));
    }
    let mut candidates = Vec::with_capacity(candidates_per_step.min(n));
    let mut drawn = HashSet::with_capacity(candidates_per_step.min(n));
    for _ in 0..candidates_per_step {
        let u = rng.gen::<f64>() * total;
        let c = cumulative.partition_point(|&c| c <= u).min(n - 1);
        if drawn.insert(c) {
            candidates.push(c);
        }
    }
    Ok(Draw::Candidates(candidates))
}

/// The pass that scored the latest chosen centre, kept to draw the next
/// candidates from: per-chunk sums of the sampling weights that centre
/// leaves (`w_i min(d_i, d(x_i, c))`), and the centres it ran with, to
/// recompute the weights of the few chunks the draws land in.
struct LastPass<T> {
    /// The chunk sums added in chunk order.
    total: f64,
    /// The chosen centre's index in `centres`.
    column: usize,
    centres: PreparedCentres<T>,
    scored: ScoredCandidates,
    /// The chosen centre's index among the candidates.
    best: usize,
}

/// The running totals of the chunks the current step's draws landed in.
#[derive(Default)]
struct ChunkTerms {
    chunks: Vec<(usize, Vec<f64>)>,
}

impl<T: Float> LastPass<T> {
    fn new(
        centres: PreparedCentres<T>,
        scored: ScoredCandidates,
        fold: usize,
        best: usize,
    ) -> Self {
        let mut last = LastPass {
            total: 0.0,
            column: fold + best,
            centres,
            scored,
            best,
        };
        // In chunk order, from 0, as the running total over rows adds them.
        last.total = last.chunk_sums().fold(0.0, |a, b| a + b);
        last
    }

    fn chunk_sums(&self) -> impl Iterator<Item = f64> + '_ {
        let m = self.scored.m;
        self.scored
            .chunk_potentials
            .chunks_exact(m)
            .map(move |c| c[self.best])
    }

    /// Whether every partial sum of the sampling weights, in any order, is
    /// exact: then the running total over all rows, which sampling is defined
    /// by, equals the chunk sums' running total at every chunk boundary, and
    /// no row needs visiting outside the chunks the draws land in. Each
    /// weight is a multiple of `2^e` (`e` the smallest lowest-set-bit
    /// exponent), so a sum below `2^(e + 53)` is exact. If some addition
    /// rounded, every later partial sum, the computed total included, is at
    /// least `2^(e + 53)` (rounding is monotonic and that bound is a float),
    /// so the test on the computed total is enough. Typically true for f32
    /// data (24-bit distances) and false for f64 data, which then takes the
    /// two-pass path.
    fn sums_are_exact(&self) -> bool {
        let total = self.total;
        if !(total > 0.0 && total.is_finite()) {
            return false;
        }
        let e = self.scored.min_lsb[self.best];
        // e >= -1074 when any weight is nonzero (total > 0 says one is).
        let top = e.saturating_add(53);
        top >= 1024 || total < pow2(top)
    }

    /// The first row whose running total exceeds `u` (or the last row), as
    /// `partition_point` over the serial running totals finds it; valid when
    /// [`Self::sums_are_exact`].
    fn locate(
        &self,
        u: f64,
        x: MatRef<'_, T>,
        sample_weight: Option<&[T]>,
        min_dist: &[f64],
        terms: &mut ChunkTerms,
    ) -> usize {
        let n = x.rows();
        let mut before = 0.0f64;
        for (ci, s) in self.chunk_sums().enumerate() {
            let end = before + s;
            if end > u {
                let start = ci * CHUNK_ROWS;
                let rows = (n - start).min(CHUNK_ROWS);
                let running = match terms.chunks.iter().position(|(c, _)| *c == ci) {
                    Some(j) => &terms.chunks[j].1,
                    None => {
                        let mut t = kernels::seeding_terms(
                            x,
                            sample_weight,
                            min_dist,
                            &self.centres,
                            self.column,
                            start,
                            rows,
                        );
                        let mut acc = before;
                        for v in t.iter_mut() {
                            acc += *v;
                            *v = acc;
                        }
                        terms.chunks.push((ci, t));
                        &terms.chunks[terms.chunks.len() - 1].1
                    }
                };
                // The chunk's last running total is `end` > u, so a row is
                // found; the fallback only guards the arithmetic's premise.
                let r = running.partition_point(|&c| c <= u).min(rows - 1);
                return start + r;
            }
            before = end;
        }
        n - 1
    }
}

/// `2^e` for `-1022 <= e <= 1023` (normal floats), exactly.
fn pow2(e: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Steps that drew their candidates from the last pass's chunk sums.
        pub(super) static FAST_STEPS: Cell<usize> = const { Cell::new(0) };
    }

    /// Greedy k-means++ as two passes per step, the formulation the fused
    /// pass replaced: draw from the serial running total of the weights,
    /// score all candidates, fold the winner in.
    fn two_pass<T: Float>(
        x: MatRef<'_, T>,
        sample_weight: Option<&[T]>,
        k: usize,
        retries: usize,
        metric: Metric,
        rng: &mut ChaCha8Rng,
    ) -> (Vec<usize>, Vec<f64>) {
        let n = x.rows();
        let weight = |i: usize| sample_weight.map_or(1.0, |w| w[i].to_f64_exact());
        let mut min_dist = vec![f64::INFINITY; n];
        let mut chosen = Vec::new();
        let mut is_chosen = vec![false; n];
        let mut cumulative = vec![0.0; n];
        let take = |pick: usize, min_dist: &mut Vec<f64>| {
            let c = PreparedCentres::new(x.slice_rows(pick, pick + 1), metric);
            kernels::update_min_distances(x, &c, min_dist);
        };
        for step in 0..k {
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
            if !total.is_finite() || total <= 0.0 {
                let free: Vec<usize> = (0..n).filter(|&i| !is_chosen[i]).collect();
                let pick = free[rng.gen_range(0..free.len())];
                take(pick, &mut min_dist);
                is_chosen[pick] = true;
                chosen.push(pick);
                continue;
            }
            let mut candidates = Vec::new();
            for _ in 0..1 + retries {
                let u = rng.gen::<f64>() * total;
                let c = cumulative.partition_point(|&c| c <= u).min(n - 1);
                if !candidates.contains(&c) {
                    candidates.push(c);
                }
            }
            let mut rows = Matrix::with_capacity(candidates.len(), x.cols());
            for &c in &candidates {
                rows.push_row(x.row(c));
            }
            let prepared = PreparedCentres::new(rows.view(), metric);
            let pots = kernels::candidate_potentials(x, sample_weight, &min_dist, &prepared);
            let mut best = 0;
            for (c, p) in pots.iter().enumerate() {
                if *p < pots[best] {
                    best = c;
                }
            }
            take(candidates[best], &mut min_dist);
            is_chosen[candidates[best]] = true;
            chosen.push(candidates[best]);
        }
        (chosen, min_dist)
    }

    use crate::in_pool;

    /// Fused and two-pass seeding from the same seed, at 1 and 2 threads:
    /// the same rows in the same order. Returns how many steps took the
    /// chunk-sum path.
    fn assert_same_as_two_pass<T: Float>(
        x: MatRef<'_, T>,
        w: Option<&[T]>,
        k: usize,
        retries: usize,
        metric: Metric,
    ) -> usize {
        let mut fast = 0;
        for seed in 0..3 {
            let want = two_pass(x, w, k, retries, metric, &mut rng_from_seed(seed)).0;
            for threads in [1, 2] {
                let got = in_pool(threads, || {
                    kmeans_plus_plus_indices(x, w, k, retries, metric, &mut rng_from_seed(seed))
                })
                .unwrap();
                assert_eq!(got, want, "seed {seed}, {threads} threads");
            }
            // Once more on this thread, where the fast-step counter lives.
            let before = FAST_STEPS.with(|c| c.get());
            let got = kmeans_plus_plus_indices(x, w, k, retries, metric, &mut rng_from_seed(seed))
                .unwrap();
            assert_eq!(got, want, "seed {seed}, calling thread");
            fast += FAST_STEPS.with(|c| c.get()) - before;
        }
        fast
    }

    /// Uniform-ish values with full 24-bit mantissas (f32) or 53-bit (f64).
    fn noise<T: Float>(rng: &mut ChaCha8Rng, len: usize, scale: f64) -> Vec<T> {
        (0..len)
            .map(|_| T::from_f64_lossy((rng.gen::<f64>() - 0.5) * scale))
            .collect()
    }

    /// Points around `groups` centres: sums of distances cover a wide range.
    fn blobs<T: Float>(rng: &mut ChaCha8Rng, n: usize, d: usize, groups: usize) -> Vec<T> {
        let centres: Vec<f64> = (0..groups * d)
            .map(|_| (rng.gen::<f64>() - 0.5) * 40.0)
            .collect();
        (0..n)
            .flat_map(|i| {
                let g = i % groups;
                (0..d)
                    .map(|p| T::from_f64_lossy(centres[g * d + p] + rng.gen::<f64>() - 0.5))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn fused_pass_picks_what_two_passes_pick_f32() {
        // Several chunks, a ragged last one; f32 distances keep the chunk
        // sums exact, so most steps take the chunk-sum path.
        let mut rng = rng_from_seed(11);
        let (n, d) = (3 * CHUNK_ROWS + 321, 9);
        let data = blobs::<f32>(&mut rng, n, d, 12);
        let x = MatRef::new(&data, n, d).unwrap();
        let fast = assert_same_as_two_pass(x, None, 25, 4, Metric::SquaredEuclidean);
        assert!(fast > 3 * 20, "only {fast} fast steps");
        let ones = vec![1.0f32; n];
        assert_same_as_two_pass(x, Some(&ones), 25, 4, Metric::SquaredEuclidean);
        assert_same_as_two_pass(x, None, 25, 4, Metric::Cosine);
        // Weights with full mantissas make the sums inexact: the two-pass
        // path, still the same picks.
        let w: Vec<f32> = (0..n).map(|_| rng.gen_range(0.1f32..3.0)).collect();
        assert_same_as_two_pass(x, Some(&w), 25, 4, Metric::SquaredEuclidean);
    }

    #[test]
    fn fused_pass_picks_what_two_passes_pick_f64() {
        let mut rng = rng_from_seed(12);
        let (n, d) = (2 * CHUNK_ROWS + 7, 5);
        let data = noise::<f64>(&mut rng, n * d, 10.0);
        let x = MatRef::new(&data, n, d).unwrap();
        assert_same_as_two_pass(x, None, 12, 3, Metric::SquaredEuclidean);
        let w: Vec<f64> = (0..n).map(|i| (i % 4) as f64).collect(); // zeros too
        assert_same_as_two_pass(x, Some(&w), 12, 3, Metric::SquaredEuclidean);
    }

    #[test]
    fn fused_pass_picks_what_two_passes_pick_with_many_duplicates() {
        // Three distinct points repeated across chunks: after three picks
        // the potential is zero and rows are picked uniformly; the chunk-sum
        // path must hand over to the exact one and back.
        let (n, d) = (CHUNK_ROWS + 100, 2);
        let data: Vec<f32> = (0..n).flat_map(|i| [(i % 3) as f32 * 7.0, 1.0]).collect();
        let x = MatRef::new(&data, n, d).unwrap();
        assert_same_as_two_pass(x, None, 6, 2, Metric::SquaredEuclidean);
    }

    #[test]
    fn fused_pass_matches_a_brute_force_kmeans_plus_plus() {
        // Small integers: every distance, in the kernels or below, is exact,
        // so a direct implementation must pick the same rows.
        let mut rng = rng_from_seed(13);
        let (n, d, k, retries) = (2 * CHUNK_ROWS + 55, 3, 15, 3);
        let data: Vec<f32> = (0..n * d).map(|_| rng.gen_range(0..40) as f32).collect();
        let x = MatRef::new(&data, n, d).unwrap();
        let before = FAST_STEPS.with(|c| c.get());
        for seed in 0..3 {
            let got = kmeans_plus_plus_indices(
                x,
                None,
                k,
                retries,
                Metric::SquaredEuclidean,
                &mut rng_from_seed(seed),
            )
            .unwrap();
            let mut r = rng_from_seed(seed);
            let dist = |i: usize, j: usize| -> f64 {
                (0..d)
                    .map(|p| (data[i * d + p] as f64 - data[j * d + p] as f64).powi(2))
                    .sum()
            };
            let mut min_dist = vec![f64::INFINITY; n];
            let mut want = Vec::new();
            for step in 0..k {
                let mut cum = Vec::with_capacity(n);
                let mut total = 0.0;
                for &m in &min_dist {
                    total += if step == 0 { 1.0 } else { m };
                    cum.push(total);
                }
                let mut cands: Vec<usize> = Vec::new();
                for _ in 0..=retries {
                    let u = r.gen::<f64>() * total;
                    let c = (0..n).find(|&i| cum[i] > u).unwrap_or(n - 1);
                    if !cands.contains(&c) {
                        cands.push(c);
                    }
                }
                let pot = |c: usize| -> f64 { (0..n).map(|i| min_dist[i].min(dist(i, c))).sum() };
                let mut best = cands[0];
                for &c in &cands[1..] {
                    if pot(c) < pot(best) {
                        best = c;
                    }
                }
                for (i, m) in min_dist.iter_mut().enumerate() {
                    *m = m.min(dist(i, best));
                }
                want.push(best);
            }
            assert_eq!(got, want, "seed {seed}");
        }
        // Integer distances: every step after the first draws from chunk sums.
        assert_eq!(FAST_STEPS.with(|c| c.get()) - before, 3 * (k - 1));
    }

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
        let err = kmeans_plus_plus(x, None, 4, Retries::Count(2), Metric::SquaredEuclidean, 0)
            .unwrap_err();
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
            let c = kmeans_plus_plus(x, None, 3, Retries::Auto, Metric::SquaredEuclidean, seed)
                .unwrap();
            let mut groups: Vec<i64> = (0..3)
                .map(|j| (c.row(j)[0] / 100.0).round() as i64)
                .collect();
            groups.sort();
            assert_eq!(groups, vec![0, 1, 2], "seed {seed}");
        }
    }
}
