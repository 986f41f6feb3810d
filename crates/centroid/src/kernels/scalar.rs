//! The plain arithmetic every kernel shares: the metric, the per-cluster
//! sums, and the norms, written once on scalars. Nothing here depends on
//! another file of `kernels/`, so every kernel may use it.

use crate::float::Float;

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

/// The rows of each cluster, in row order: a counting sort of `labels`
/// (every label below `k`), for passes that take a cluster's rows together.
pub(crate) struct RowsByCluster {
    /// Cluster `j`'s rows are `order[starts[j]..starts[j + 1]]`.
    starts: Vec<usize>,
    order: Vec<u32>,
}

impl RowsByCluster {
    pub(crate) fn new(labels: &[u32], k: usize) -> Self {
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
        Self { starts, order }
    }

    /// The rows labelled `j`, increasing.
    pub(crate) fn rows(&self, j: usize) -> &[u32] {
        &self.order[self.starts[j]..self.starts[j + 1]]
    }
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

/// `sum_p row_p^2` in f64, in eight running sums (value `p` goes to `p % 8`,
/// combined as a fixed tree): one chain of dependent adds per row cost more
/// than reading the row in the whole-batch checks.
#[inline]
pub(crate) fn sq_norm_f64<T: Float>(row: &[T]) -> f64 {
    sq_norm_f64_inline(row)
}

/// [`sq_norm_f64`], always inlined: for callers compiled for a wider
/// instruction set than the baseline.
#[inline(always)]
pub(crate) fn sq_norm_f64_inline<T: Float>(row: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            acc[i] += c[i].to_f64_exact() * c[i].to_f64_exact();
        }
    }
    for (i, v) in chunks.remainder().iter().enumerate() {
        acc[i] += v.to_f64_exact() * v.to_f64_exact();
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// `values` widened exactly to f64 (centres read by the f64 loss, inertia
/// and relocation distances, converted once per call instead of per row).
pub(crate) fn widened<T: Float>(values: &[T]) -> Vec<f64> {
    values.iter().map(|v| v.to_f64_exact()).collect()
}

/// Divides `row` by `max(||row||, 1e-12)`.
pub fn normalize_in_place<T: Float>(row: &mut [T]) {
    let s = inv_norm(row);
    for v in row.iter_mut() {
        *v = T::from_f64_lossy(v.to_f64_exact() * s);
    }
}

/// `sum_p a_p b_p`, left to right in the element type.
#[inline]
pub(crate) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    a.iter().zip(b).fold(T::zero(), |acc, (&x, &y)| acc + x * y)
}

/// `sum_p row_p^2` with independent partial sums, so it vectorises (the
/// result can differ from a left-to-right sum in the last bits).
#[inline(always)]
pub(crate) fn sq_norm<T: Float>(row: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            acc[i] += c[i] * c[i];
        }
    }
    for (i, &v) in chunks.remainder().iter().enumerate() {
        acc[i] += v * v;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}
