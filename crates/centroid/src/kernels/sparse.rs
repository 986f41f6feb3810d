//! Sparse rows (CSR) against dense centres, squared Euclidean only: the
//! nearest centre, the distances, the per-cluster sums and greedy k-means++
//! seeding for data such as TF-IDF matrices, where densifying would not fit.
//!
//! Distances use the expansion `||x||^2 - 2 x.c + ||c||^2` (clamped at 0),
//! all in f64: row norms are computed once per pass, and `x.c` runs over the
//! row's non-zeros only. The centres are stored transposed in panels (`d`
//! rows of `w` values: feature `c` of `w` centres side by side), so each
//! non-zero `(c, v)` adds `v * panel[c]` to `w` running dot products at
//! once; a chunk's rows all run against one panel before the next. When a
//! panel of [`PANEL`] centres fits in L2 (small `d`), panels are that wide
//! and stay in cache; for wide data (TF-IDF: `d` = 100 000) one panel holds
//! all `k` centres, so each non-zero reads one contiguous run of `k` values
//! instead of one cache line in each of `k / 16` panels. A point equal to a centre
//! is at distance exactly 0: its norm, the centre's and the dot product are
//! the same sums of the same products in the same order.
//!
//! Determinism: rows are cut into the same [`CHUNK_ROWS`] chunks as the dense
//! kernels; per-chunk totals are added in chunk order. The per-cluster sums
//! are not kept per chunk (a `k x d` partial per chunk is 80 MB for k = 100
//! and d = 100 000): once the labels are known, each cluster's rows are
//! added into its sums in row order, clusters in parallel. Either way the
//! same additions happen in the same order at any thread count.

use rand::Rng;
use rayon::prelude::*;

use super::{ClusterStats, CHUNK_ROWS};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::matrix::{MatRef, Matrix};

/// Centres per panel when a panel fits in cache: the dot products one pass
/// over a row's non-zeros computes.
pub const PANEL: usize = 16;

/// The largest panel (bytes) kept narrow: about an L2 cache.
const PANEL_CACHE_BYTES: usize = 1 << 20;

/// The panel width for `k` centres of width `d`: [`PANEL`] when such a
/// panel fits in [`PANEL_CACHE_BYTES`], else all `k` (rounded up to 8).
fn panel_width<T>(k: usize, d: usize) -> usize {
    if k <= PANEL || d * PANEL * std::mem::size_of::<T>() <= PANEL_CACHE_BYTES {
        PANEL
    } else {
        k.div_ceil(8) * 8
    }
}

/// A borrowed CSR matrix (scipy's layout): row `i`'s non-zeros are
/// `data[indptr[i]..indptr[i + 1]]` in the columns named by `indices`,
/// which increase strictly within a row. [`CsrRef::new`] checks all of it
/// and that every value is finite, so the kernels never see a bad index.
#[derive(Clone, Copy, Debug)]
pub struct CsrRef<'a, T> {
    rows: usize,
    cols: usize,
    indptr: &'a [i64],
    indices: &'a [i32],
    data: &'a [T],
}

impl<'a, T: Float> CsrRef<'a, T> {
    /// Views the three arrays as a `rows x cols` CSR matrix; every error
    /// names the row (and column) that is wrong.
    pub fn new(
        rows: usize,
        cols: usize,
        indptr: &'a [i64],
        indices: &'a [i32],
        data: &'a [T],
    ) -> Result<Self> {
        if indptr.len() != rows + 1 {
            return Err(Error::InvalidShape(format!(
                "indptr has {} entries; a sparse matrix of {rows} rows needs {}",
                indptr.len(),
                rows + 1
            )));
        }
        if indices.len() != data.len() {
            return Err(Error::InvalidShape(format!(
                "the sparse matrix has {} column indices but {} values",
                indices.len(),
                data.len()
            )));
        }
        if indptr[0] != 0 {
            return Err(Error::InvalidData(format!(
                "indptr[0] is {}, not 0",
                indptr[0]
            )));
        }
        let nnz = data.len() as i64;
        if let Some(i) = (0..rows).find(|&i| indptr[i + 1] < indptr[i] || indptr[i + 1] > nnz) {
            return Err(Error::InvalidData(format!(
                "indptr[{}] = {} is out of order or past the {nnz} stored values (row {i})",
                i + 1,
                indptr[i + 1]
            )));
        }
        if indptr[rows] != nnz {
            return Err(Error::InvalidData(format!(
                "indptr ends at {} but there are {nnz} stored values",
                indptr[rows]
            )));
        }
        let x = Self {
            rows,
            cols,
            indptr,
            indices,
            data,
        };
        // Checked a chunk of rows per task; the first failing chunk, in
        // order, names the error, as a serial scan would.
        let first_bad = (0..rows.div_ceil(CHUNK_ROWS))
            .into_par_iter()
            .map(|ci| {
                let end = ((ci + 1) * CHUNK_ROWS).min(rows);
                (ci * CHUNK_ROWS..end).find_map(|i| x.check_row(i).err())
            })
            .find_first(|e| e.is_some())
            .flatten();
        match first_bad {
            Some(e) => Err(e),
            None => Ok(x),
        }
    }

    fn check_row(&self, i: usize) -> Result<()> {
        let (idx, vals) = self.row(i);
        let mut prev: i64 = -1;
        for (&c, &v) in idx.iter().zip(vals) {
            let c64 = c as i64;
            if c64 < 0 || c64 >= self.cols as i64 {
                return Err(Error::InvalidData(format!(
                    "row {i} of the sparse matrix has column index {c}, outside 0..{}",
                    self.cols
                )));
            }
            if c64 <= prev {
                return Err(Error::InvalidData(format!(
                    "row {i} of the sparse matrix has column indices out of order or repeated \
                     ({prev} then {c}); sort them (scipy: sum_duplicates())"
                )));
            }
            if !v.is_finite() {
                return Err(Error::InvalidData(format!(
                    "row {i}, column {c} of the data is not finite"
                )));
            }
            prev = c64;
        }
        Ok(())
    }

    #[inline]
    pub fn rows(&self) -> usize {
        self.rows
    }
    #[inline]
    pub fn cols(&self) -> usize {
        self.cols
    }
    #[inline]
    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// Row `i`'s column indices and values.
    #[inline]
    pub fn row(&self, i: usize) -> (&'a [i32], &'a [T]) {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        (&self.indices[a..b], &self.data[a..b])
    }

    /// Writes row `i` into `out` (`cols` values), zeros included.
    pub fn row_dense(&self, i: usize, out: &mut [T]) {
        out.fill(T::zero());
        let (idx, vals) = self.row(i);
        for (&c, &v) in idx.iter().zip(vals) {
            out[c as usize] = v;
        }
    }

    /// The whole matrix, densified (tests and small inputs only).
    pub fn to_dense(&self) -> Matrix<T> {
        let mut out = vec![T::zero(); self.rows * self.cols];
        for (i, row) in out.chunks_exact_mut(self.cols.max(1)).enumerate() {
            self.row_dense(i, row);
        }
        Matrix::new(out, self.rows, self.cols).expect("shape matches")
    }
}

/// `sum v^2` over a row's values, in f64, in stored order.
#[inline]
fn sq_norm<T: Float>(vals: &[T]) -> f64 {
    vals.iter()
        .map(|v| v.to_f64_exact() * v.to_f64_exact())
        .sum()
}

/// Dense centres laid out for sparse rows: panel `p` holds centres
/// `p * w ..` transposed (`d` rows of `w` values, zero-padded), with the
/// centres' squared norms in f64.
#[derive(Clone, Debug)]
pub struct SparseCentres<T> {
    k: usize,
    d: usize,
    /// Centres per panel.
    w: usize,
    panels: Vec<T>,
    sq_norms: Vec<f64>,
}

impl<T: Float> SparseCentres<T> {
    pub fn new(centres: MatRef<'_, T>) -> Self {
        Self::with_width(centres, panel_width::<T>(centres.rows(), centres.cols()))
    }

    /// Panels of `w` centres (tests run both layouts).
    fn with_width(centres: MatRef<'_, T>, w: usize) -> Self {
        let (k, d) = (centres.rows(), centres.cols());
        let w = w.max(1);
        let n_panels = k.div_ceil(w);
        let mut panels = vec![T::zero(); n_panels * d * w];
        for (p, block) in panels.chunks_exact_mut((d * w).max(1)).enumerate() {
            // Row by row of the panel, so writes are sequential.
            let j0 = p * w;
            let width = w.min(k - j0);
            for (c, out) in block.chunks_exact_mut(w).enumerate() {
                for (q, o) in out[..width].iter_mut().enumerate() {
                    *o = centres.row(j0 + q)[c];
                }
            }
        }
        let sq_norms = (0..k).map(|j| sq_norm(centres.row(j))).collect();
        Self {
            k,
            d,
            w,
            panels,
            sq_norms,
        }
    }
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn d(&self) -> usize {
        self.d
    }
    /// `||c_j||^2` in f64.
    pub fn sq_norms(&self) -> &[f64] {
        &self.sq_norms
    }
    fn panel(&self, p: usize) -> &[T] {
        let size = self.d * self.w;
        &self.panels[p * size..(p + 1) * size]
    }
}

/// The dot products of one sparse row with the `PANEL` centres of `panel`
/// (fixed width: the compiler keeps them in registers).
#[inline]
fn panel_dots<T: Float>(idx: &[i32], vals: &[T], panel: &[T]) -> [f64; PANEL] {
    let mut acc = [0.0f64; PANEL];
    for (&c, &v) in idx.iter().zip(vals) {
        let col: &[T; PANEL] = panel[c as usize * PANEL..][..PANEL]
            .try_into()
            .expect("a panel row is PANEL values");
        let v = v.to_f64_exact();
        for (a, &c) in acc.iter_mut().zip(col) {
            *a += v * c.to_f64_exact();
        }
    }
    acc
}

/// The dot products of one sparse row with the `acc.len()` centres of a
/// wide `panel`, into `acc`.
#[inline]
fn wide_dots<T: Float>(idx: &[i32], vals: &[T], panel: &[T], acc: &mut [f64]) {
    let w = acc.len();
    acc.fill(0.0);
    for (&c, &v) in idx.iter().zip(vals) {
        let col = &panel[c as usize * w..][..w];
        let v = v.to_f64_exact();
        for (a, &c) in acc.iter_mut().zip(col) {
            *a += v * c.to_f64_exact();
        }
    }
}

/// Runs `f(row, j, distance)` for every row `start..end` of `x` and every
/// centre, panel by panel (each panel over all the rows), centres in
/// increasing order for a given row.
fn for_each_distance<T: Float>(
    x: CsrRef<'_, T>,
    start: usize,
    end: usize,
    centres: &SparseCentres<T>,
    mut f: impl FnMut(usize, usize, f64),
) {
    let row_norms: Vec<f64> = (start..end).map(|i| sq_norm(x.row(i).1)).collect();
    let w = centres.w;
    let mut wide = vec![0.0f64; if w == PANEL { 0 } else { w }];
    for p in 0..centres.k.div_ceil(w) {
        let panel = centres.panel(p);
        let j0 = p * w;
        let width = w.min(centres.k - j0);
        let cn = &centres.sq_norms[j0..j0 + width];
        for (r, &rn) in row_norms.iter().enumerate() {
            let (idx, vals) = x.row(start + r);
            // The same sums in the same order either way.
            let fixed;
            let acc: &[f64] = if w == PANEL {
                fixed = panel_dots(idx, vals, panel);
                &fixed
            } else {
                wide_dots(idx, vals, panel, &mut wide);
                &wide
            };
            for (q, (&dot, &c)) in acc.iter().zip(cn).enumerate() {
                f(r, j0 + q, (rn - 2.0 * dot + c).max(0.0));
            }
        }
    }
}

/// Nearest centre and its squared distance for rows `start..end`; ties go to
/// the lowest index.
fn nearest_chunk<T: Float>(
    x: CsrRef<'_, T>,
    start: usize,
    centres: &SparseCentres<T>,
    labels: &mut [u32],
    scores: &mut [f64],
) {
    labels.fill(0);
    scores.fill(f64::INFINITY);
    for_each_distance(x, start, start + labels.len(), centres, |r, j, dist| {
        if dist < scores[r] {
            scores[r] = dist;
            labels[r] = j as u32;
        }
    });
}

fn check_shapes<T: Float>(x: CsrRef<'_, T>, centres: &SparseCentres<T>) {
    assert_eq!(x.cols(), centres.d(), "data width must match the centres");
}

/// The nearest centre (`labels`) and the squared distance to it (`scores`)
/// of every row.
pub fn assign<T: Float>(
    x: CsrRef<'_, T>,
    centres: &SparseCentres<T>,
    labels: &mut [u32],
    scores: &mut [f64],
) {
    check_shapes(x, centres);
    assert!(labels.len() == x.rows() && scores.len() == x.rows());
    if centres.k() == 0 {
        return;
    }
    labels
        .par_chunks_mut(CHUNK_ROWS)
        .zip(scores.par_chunks_mut(CHUNK_ROWS))
        .enumerate()
        .for_each(|(ci, (l, s))| nearest_chunk(x, ci * CHUNK_ROWS, centres, l, s));
}

/// The sparse counterpart of [`super::assign_accumulate`]: labels every row
/// (into `labels` when given), and fills `stats` (reset first) with each
/// cluster's weighted sums, weight, count and the weighted loss.
pub fn assign_accumulate<T: Float>(
    x: CsrRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: &SparseCentres<T>,
    labels: Option<&mut [u32]>,
    stats: &mut ClusterStats,
) {
    let (n, d, k) = (x.rows(), x.cols(), centres.k());
    check_shapes(x, centres);
    assert!(sample_weight.is_none_or(|w| w.len() == n));
    assert_eq!(
        (stats.k, stats.d),
        (k, d),
        "statistics shaped like the centres"
    );
    stats.clear();
    let mut own = Vec::new();
    let labels: &mut [u32] = match labels {
        Some(l) => {
            assert_eq!(l.len(), n, "one label per row");
            l
        }
        None => {
            own.resize(n, 0);
            &mut own
        }
    };
    if k == 0 || n == 0 {
        return;
    }
    let weight = |i: usize| sample_weight.map_or(1.0, |w| w[i].to_f64_exact());
    // Labels, and per chunk the loss, weights and counts, in one pass.
    let parts: Vec<(f64, Vec<f64>, Vec<u64>)> = labels
        .par_chunks_mut(CHUNK_ROWS)
        .enumerate()
        .map(|(ci, l)| {
            let start = ci * CHUNK_ROWS;
            let mut scores = vec![0.0f64; l.len()];
            nearest_chunk(x, start, centres, l, &mut scores);
            let (mut loss, mut weights, mut counts) = (0.0, vec![0.0; k], vec![0u64; k]);
            for (r, (&j, &s)) in l.iter().zip(&scores).enumerate() {
                let w = weight(start + r);
                loss += w * s;
                weights[j as usize] += w;
                counts[j as usize] += 1;
            }
            (loss, weights, counts)
        })
        .collect();
    for (loss, weights, counts) in &parts {
        stats.loss += loss;
        for (a, b) in stats.weights.iter_mut().zip(weights) {
            *a += b;
        }
        for (a, b) in stats.counts.iter_mut().zip(counts) {
            *a += b;
        }
    }
    cluster_sums(x, sample_weight, labels, &mut stats.sums, k);
}

/// `sums[j]` = the weighted sum of the rows labelled `j`, added in row
/// order; clusters in parallel.
fn cluster_sums<T: Float>(
    x: CsrRef<'_, T>,
    sample_weight: Option<&[T]>,
    labels: &[u32],
    sums: &mut [f64],
    k: usize,
) {
    let d = x.cols();
    // Rows grouped by label, in row order within a group (a counting sort).
    let mut starts = vec![0usize; k + 1];
    for &j in labels {
        starts[j as usize + 1] += 1;
    }
    for j in 0..k {
        starts[j + 1] += starts[j];
    }
    let mut next = starts.clone();
    let mut order = vec![0u32; labels.len()];
    for (i, &j) in labels.iter().enumerate() {
        order[next[j as usize]] = i as u32;
        next[j as usize] += 1;
    }
    if d == 0 {
        return;
    }
    sums.par_chunks_mut(d).enumerate().for_each(|(j, s)| {
        for &i in &order[starts[j]..starts[j + 1]] {
            let i = i as usize;
            let w = sample_weight.map_or(1.0, |w| w[i].to_f64_exact());
            let (idx, vals) = x.row(i);
            for (&c, &v) in idx.iter().zip(vals) {
                s[c as usize] += w * v.to_f64_exact();
            }
        }
    });
}

/// The squared distance of every row to every centre (`n x k`, row-major,
/// rounded to `T` from f64).
pub fn distances<T: Float>(x: CsrRef<'_, T>, centres: &SparseCentres<T>, out: &mut [T]) {
    check_shapes(x, centres);
    let k = centres.k();
    assert_eq!(out.len(), x.rows() * k, "out is n x k");
    if k == 0 {
        return;
    }
    out.par_chunks_mut(CHUNK_ROWS * k)
        .enumerate()
        .for_each(|(ci, o)| {
            let start = ci * CHUNK_ROWS;
            let end = start + o.len() / k;
            for_each_distance(x, start, end, centres, |r, j, dist| {
                o[r * k + j] = T::from_f64_lossy(dist);
            });
        });
}

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
/// [`crate::seeding::kmeans_plus_plus`] does on dense rows, so that the same
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
    let (n, d) = (x.rows(), x.cols());
    if n < k {
        return Err(Error::InvalidData(format!(
            "k-means++ needs at least {k} rows, got {n}"
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
            return Err(Error::InvalidData(format!(
                "sample_weight[{i}] = {} is not a finite non-negative number",
                w[i]
            )));
        }
    }
    if retries > crate::params::MAX_KMEANS_PLUS_PLUS_RETRIES as usize {
        return Err(Error::InvalidArgument(format!(
            "k-means++ takes at most {} retries, got {retries}",
            crate::params::MAX_KMEANS_PLUS_PLUS_RETRIES
        )));
    }
    let mut out = Matrix::zeros(k, d);
    let mut rng = crate::seeding::rng_from_seed(seed);
    let weight = |i: usize| sample_weight.map_or(1.0, |w| w[i].to_f64_exact());
    let mut min_dist = vec![f64::INFINITY; n];
    let mut is_chosen = vec![false; n];
    let mut cumulative = vec![0.0f64; n];
    let mut row = vec![T::zero(); d];
    for step in 0..k {
        let mut total = 0.0f64;
        for (i, c) in cumulative.iter_mut().enumerate() {
            total += if step == 0 {
                weight(i)
            } else {
                weight(i) * min_dist[i]
            };
            *c = total;
        }
        let pick = if !(total > 0.0) || !total.is_finite() {
            // Every row sits on a chosen centre (or no row has weight).
            let free: Vec<usize> = (0..n).filter(|&i| !is_chosen[i]).collect();
            if free.is_empty() {
                return Err(Error::InvalidData(format!(
                    "k-means++ ran out of rows after {step} of {k} centres"
                )));
            }
            free[rng.gen_range(0..free.len())]
        } else {
            let mut candidates: Vec<usize> = Vec::with_capacity(1 + retries);
            for _ in 0..1 + retries {
                let u = rng.gen::<f64>() * total;
                let c = cumulative.partition_point(|&c| c <= u).min(n - 1);
                if !candidates.contains(&c) {
                    candidates.push(c);
                }
            }
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
        };
        is_chosen[pick] = true;
        x.row_dense(pick, out.row_mut(step));
        let chosen = SparseCentres::new(MatRef::new(out.row(step), 1, d)?);
        potentials(x, None, &mut min_dist, &chosen, Some(0));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic sparse matrix: about one value in `every` is non-zero.
    fn sparse(n: usize, d: usize, every: usize, phase: f64) -> (Vec<i64>, Vec<i32>, Vec<f64>) {
        let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
        for i in 0..n {
            for c in 0..d {
                let h = (i * 31 + c * 17 + (phase * 7.0) as usize) % every;
                if h == 0 {
                    indices.push(c as i32);
                    data.push(((i * d + c) as f64 * 0.618 + phase).sin() * 3.0);
                }
            }
            indptr.push(indices.len() as i64);
        }
        (indptr, indices, data)
    }

    fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    fn brute_dist(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum()
    }

    #[test]
    fn assign_and_distances_match_a_dense_brute_force() {
        // 37 centres: two full panels and a ragged one.
        let (n, d, k) = (2 * CHUNK_ROWS + 101, 40, 37);
        let (ip, ix, dv) = sparse(n, d, 7, 0.0);
        let x = CsrRef::new(n, d, &ip, &ix, &dv).unwrap();
        let dense = x.to_dense();
        let cflat: Vec<f64> = (0..k * d).map(|i| (i as f64 * 0.37).cos()).collect();
        let c = MatRef::new(&cflat, k, d).unwrap();
        // Narrow panels (16 centres) and one wide panel (all 37, padded).
        for width in [PANEL, 40] {
            let prepared = SparseCentres::with_width(c, width);
            let (mut labels, mut scores) = (vec![0u32; n], vec![0.0f64; n]);
            assign(x, &prepared, &mut labels, &mut scores);
            let mut all = vec![0.0f64; n * k];
            distances(x, &prepared, &mut all);
            for i in 0..n {
                let want: Vec<f64> = (0..k).map(|j| brute_dist(dense.row(i), c.row(j))).collect();
                for j in 0..k {
                    assert!((all[i * k + j] - want[j]).abs() <= 1e-9 * (1.0 + want[j]));
                }
                let best = want.iter().cloned().fold(f64::INFINITY, f64::min);
                assert!(
                    want[labels[i] as usize] <= best + 1e-9 * (1.0 + best),
                    "row {i}"
                );
                assert!((scores[i] - best).abs() <= 1e-9 * (1.0 + best));
            }
        }
    }

    #[test]
    fn wide_data_gets_one_panel_of_all_centres() {
        assert_eq!(panel_width::<f32>(100, 100_000), 104);
        assert_eq!(panel_width::<f32>(100, 1000), PANEL);
        assert_eq!(panel_width::<f64>(8, 100_000), PANEL);
    }

    #[test]
    fn a_row_equal_to_a_centre_is_at_distance_zero() {
        let (n, d) = (50, 30);
        let (ip, ix, dv) = sparse(n, d, 3, 1.0);
        let dv32: Vec<f32> = dv.iter().map(|&v| v as f32 * 1.1).collect();
        let x = CsrRef::new(n, d, &ip, &ix, &dv32).unwrap();
        let dense = x.to_dense();
        let c = MatRef::new(&dense.as_slice()[5 * d..8 * d], 3, d).unwrap();
        for width in [PANEL, 8] {
            let mut out = vec![1.0f32; n * 3];
            distances(x, &SparseCentres::with_width(c, width), &mut out);
            assert_eq!(out[5 * 3], 0.0);
            assert_eq!(out[6 * 3 + 1], 0.0);
            assert_eq!(out[7 * 3 + 2], 0.0);
        }
    }

    #[test]
    fn sums_match_brute_force_and_ignore_the_thread_count() {
        let (n, d, k) = (3 * CHUNK_ROWS + 7, 25, 5);
        let (ip, ix, dv) = sparse(n, d, 4, 2.0);
        let x = CsrRef::new(n, d, &ip, &ix, &dv).unwrap();
        let dense = x.to_dense();
        let w: Vec<f64> = (0..n).map(|i| 0.5 + (i % 3) as f64).collect();
        let cflat: Vec<f64> = (0..k * d).map(|i| (i as f64 * 0.9).sin()).collect();
        let prepared = SparseCentres::new(MatRef::new(&cflat, k, d).unwrap());
        let run = |t| {
            in_pool(t, || {
                let mut stats = ClusterStats::new(k, d);
                let mut labels = vec![0u32; n];
                assign_accumulate(x, Some(&w), &prepared, Some(&mut labels), &mut stats);
                (labels, stats)
            })
        };
        let (l1, s1) = run(1);
        let (l2, s2) = run(2);
        assert_eq!(l1, l2);
        assert_eq!(
            s1.sums.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            s2.sums.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(s1.loss.to_bits(), s2.loss.to_bits());
        let mut sums = vec![0.0f64; k * d];
        let mut weights = vec![0.0f64; k];
        let mut loss = 0.0;
        for i in 0..n {
            let j = l1[i] as usize;
            for c in 0..d {
                sums[j * d + c] += w[i] * dense.row(i)[c];
            }
            weights[j] += w[i];
            loss += w[i] * brute_dist(dense.row(i), &cflat[j * d..(j + 1) * d]);
        }
        for (a, b) in s1.sums.iter().zip(&sums) {
            assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()));
        }
        assert_eq!(s1.weights, weights);
        assert_eq!(s1.counts.iter().sum::<u64>(), n as u64);
        assert!((s1.loss - loss).abs() <= 1e-9 * loss);
    }

    #[test]
    fn kmeans_plus_plus_is_deterministic_and_picks_distinct_rows() {
        let (n, d, k) = (CHUNK_ROWS + 500, 20, 12);
        let (ip, ix, dv) = sparse(n, d, 5, 3.0);
        let x = CsrRef::new(n, d, &ip, &ix, &dv).unwrap();
        let a = in_pool(1, || kmeans_plus_plus(x, None, k, 3, 42).unwrap());
        let b = in_pool(2, || kmeans_plus_plus(x, None, k, 3, 42).unwrap());
        assert_eq!(a.as_slice(), b.as_slice());
        let dense = x.to_dense();
        for j in 0..k {
            // Every centre is one of the rows, and no two are the same.
            assert!((0..n).any(|i| dense.row(i) == a.row(j)));
            for m in 0..j {
                assert_ne!(a.row(j), a.row(m));
            }
        }
    }

    #[test]
    fn kmeans_plus_plus_picks_the_rows_the_dense_seeding_picks() {
        // Well-separated distinct rows: the distances' last bits cannot
        // change a draw, so both must follow the same random stream.
        let (n, d, k) = (600, 12, 9);
        let (ip, ix, dv) = sparse(n, d, 3, 0.5);
        let x = CsrRef::new(n, d, &ip, &ix, &dv).unwrap();
        let dense = x.to_dense();
        let w: Vec<f64> = (0..n).map(|i| 0.5 + (i % 7) as f64).collect();
        for weights in [None, Some(&w[..])] {
            let a = kmeans_plus_plus(x, weights, k, 3, 7).unwrap();
            let b = crate::seeding::kmeans_plus_plus(
                dense.view(),
                weights,
                k,
                3,
                super::super::Metric::SquaredEuclidean,
                7,
            )
            .unwrap();
            assert_eq!(a.as_slice(), b.as_slice());
        }
    }

    #[test]
    fn bad_matrices_are_errors_that_name_the_row() {
        let data = [1.0f64, 2.0, 3.0];
        let indptr = [0i64, 2, 3];
        let err = |ix: &[i32], dv: &[f64], ip: &[i64]| {
            CsrRef::new(2, 4, ip, ix, dv).unwrap_err().to_string()
        };
        assert!(err(&[0, 4, 1], &data, &indptr).contains("row 0"));
        assert!(err(&[2, 1, 1], &data, &indptr).contains("out of order"));
        assert!(err(&[0, 1, -1], &data, &indptr).contains("row 1"));
        assert!(err(&[0, 1, 1], &[1.0, f64::NAN, 3.0], &indptr).contains("row 0, column 1"));
        assert!(err(&[0, 1, 1], &data, &[0, 3, 2]).contains("out of order"));
        assert!(err(&[0, 1, 1], &data, &[0, 2]).contains("indptr"));
        assert!(CsrRef::new(2, 4, &indptr, &[0, 1, 1], &data).is_ok());
    }
}
