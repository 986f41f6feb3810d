//! The distance / argmin core: the only place that touches every point.
//!
//! All of training, evaluation, prediction and seeding go through the three
//! entry points below, so a faster kernel replaces this module without
//! changing any caller:
//!
//! - [`assign_accumulate`]: nearest centre of every row, plus the per-cluster
//!   sums, weights and the loss (one Lloyd / mini-batch step's worth of work);
//! - [`assign`]: nearest centre and its distance per row (predict, score);
//! - [`distances`]: the full `n x k` distance matrix, only for callers that asked
//!   for it (`transform`, `all_distances`) and for seeding's few candidates.
//!
//! Distances: squared Euclidean `||x||^2 - 2 x.c + ||c||^2` clamped at 0, or
//! cosine `1 - x^.c^` where `x^ = x / max(||x||, 1e-12)`. Ties go to the
//! lowest centre index. Work runs on the current rayon pool; rows are split
//! into chunks whose boundaries depend only on the data's shape, and partial
//! sums are combined in chunk order, so results are bit-identical at any
//! thread count.

mod reference;

pub use reference::{assign_reference, distances_reference};

use rayon::prelude::*;

use crate::float::Float;
use crate::matrix::MatRef;

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

/// Centres made ready for the kernels: under cosine normalised, and with
/// their squared norms computed once per step rather than once per row block.
#[derive(Clone, Debug)]
pub struct PreparedCentres<T> {
    centres: Vec<T>,
    sq_norms: Vec<T>,
    k: usize,
    d: usize,
    metric: Metric,
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
        let sq_norms = data.chunks_exact(d.max(1)).map(|c| dot(c, c)).collect();
        Self {
            centres: data,
            sq_norms,
            k,
            d,
            metric,
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

/// Rows per chunk: the unit of parallel work and of the fixed summation order.
const CHUNK_ROWS: usize = 2048;

/// Assigns every row of `x` to its nearest centre and adds each row (weighted
/// by `sample_weight`, and normalised under cosine) to its cluster's sums in
/// `stats`, which it resets first. Writes the labels when `labels` is given.
pub fn assign_accumulate<T: Float>(
    x: MatRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: &PreparedCentres<T>,
    labels: Option<&mut [u32]>,
    stats: &mut ClusterStats,
) {
    let (n, d, k) = (x.rows(), x.cols(), centres.k());
    assert_eq!(d, centres.d(), "data width must match the centres");
    assert!(sample_weight.map_or(true, |w| w.len() == n));
    assert_eq!((stats.k, stats.d), (k, d));
    stats.clear();
    let mut scratch_labels;
    let labels: &mut [u32] = match labels {
        Some(l) => {
            assert_eq!(l.len(), n);
            l
        }
        None => {
            scratch_labels = vec![0u32; n];
            &mut scratch_labels
        }
    };
    let mut scores = vec![T::zero(); n];
    assign(x, centres, labels, &mut scores);

    // Combine in chunk order: fixed boundaries, fixed order.
    let partials: Vec<ClusterStats> = labels
        .par_chunks(CHUNK_ROWS)
        .zip(scores.par_chunks(CHUNK_ROWS))
        .enumerate()
        .map(|(ci, (lab, sc))| {
            let start = ci * CHUNK_ROWS;
            let mut part = ClusterStats::new(k, d);
            for (i, (&j, &s)) in lab.iter().zip(sc).enumerate() {
                let r = start + i;
                let w = sample_weight.map_or(1.0, |w| w[r].to_f64_exact());
                let j = j as usize;
                let row = x.row(r);
                let scale = match centres.metric() {
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
            part
        })
        .collect();
    for p in &partials {
        stats.merge(p);
    }
}

/// Nearest centre (`labels`) and the distance to it (`scores`) of every row.
pub fn assign<T: Float>(
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    labels: &mut [u32],
    scores: &mut [T],
) {
    let (n, d) = (x.rows(), x.cols());
    assert_eq!(d, centres.d(), "data width must match the centres");
    assert_eq!(labels.len(), n);
    assert_eq!(scores.len(), n);
    labels
        .par_chunks_mut(CHUNK_ROWS)
        .zip(scores.par_chunks_mut(CHUNK_ROWS))
        .enumerate()
        .for_each(|(ci, (lab, sc))| {
            let start = ci * CHUNK_ROWS;
            let block = x.slice_rows(start, start + lab.len());
            assign_reference(block, centres, lab, sc);
        });
}

/// The distance of every row to every centre, row-major `n x k`.
pub fn distances<T: Float>(x: MatRef<'_, T>, centres: &PreparedCentres<T>, out: &mut [T]) {
    let (n, k) = (x.rows(), centres.k());
    assert_eq!(out.len(), n * k);
    if k == 0 {
        return;
    }
    out.par_chunks_mut(CHUNK_ROWS * k)
        .enumerate()
        .for_each(|(ci, o)| {
            let start = ci * CHUNK_ROWS;
            let block = x.slice_rows(start, start + o.len() / k);
            distances_reference(block, centres, o);
        });
}

/// `1 / max(||row||, 1e-12)`, in f64.
#[inline]
pub fn inv_norm<T: Float>(row: &[T]) -> f64 {
    let sq: f64 = row
        .iter()
        .map(|v| v.to_f64_exact() * v.to_f64_exact())
        .sum();
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
