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
//!
//! Files: `csr.rs` (the checked CSR view), `panel.rs` (centres laid out
//! for sparse rows and the distance loop every entry point shares),
//! `seeding.rs` (greedy k-means++ on sparse rows, drawing through
//! [`crate::seeding`]'s draw). No unsafe code: every index comes from a
//! [`CsrRef`] that checked it.

mod csr;
mod panel;
mod seeding;
#[cfg(test)]
mod tests;

use rayon::prelude::*;

use super::scalar::RowsByCluster;
use super::{ClusterStats, CHUNK_ROWS};
use crate::float::Float;
pub use csr::CsrRef;
use panel::for_each_distance;
pub use panel::{SparseCentres, PANEL};
pub use seeding::{kmeans_plus_plus, kmeans_plus_plus_indices};

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
    let by_cluster = RowsByCluster::new(labels, k);
    if d == 0 {
        return;
    }
    sums.par_chunks_mut(d).enumerate().for_each(|(j, s)| {
        for &i in by_cluster.rows(j) {
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
