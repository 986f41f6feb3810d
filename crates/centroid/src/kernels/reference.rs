//! Straightforward per-pair kernels: the definition the fast kernels are
//! tested against, and the fallback for shapes too small to block.

use super::scalar::{dot, inv_norm, ClusterStats, Metric};
use super::PreparedCentres;
use crate::float::Float;
use crate::matrix::MatRef;

/// The distance from `row` to centre `j` of `centres`.
#[inline]
fn distance<T: Float>(
    row: &[T],
    row_sq: T,
    row_inv_norm: T,
    centres: &PreparedCentres<T>,
    j: usize,
) -> T {
    let c = centres.centres().row(j);
    let xc = dot(row, c);
    match centres.metric() {
        Metric::SquaredEuclidean => {
            let two = T::one() + T::one();
            (row_sq - two * xc + centres.sq_norms()[j]).max(T::zero())
        }
        Metric::Cosine => T::one() - xc * row_inv_norm,
    }
}

/// Nearest centre and its distance for every row, one pair at a time.
pub fn assign_reference<T: Float>(
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    labels: &mut [u32],
    scores: &mut [T],
) {
    for i in 0..x.rows() {
        let row = x.row(i);
        let sq = dot(row, row);
        let inv = T::from_f64_lossy(inv_norm(row));
        let mut best = T::infinity();
        let mut best_j = 0u32;
        for j in 0..centres.k() {
            let dist = distance(row, sq, inv, centres, j);
            if dist < best {
                best = dist;
                best_j = j as u32;
            }
        }
        labels[i] = best_j;
        scores[i] = best;
    }
}

/// All `rows x k` distances, one pair at a time.
pub fn distances_reference<T: Float>(
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    out: &mut [T],
) {
    let k = centres.k();
    for i in 0..x.rows() {
        let row = x.row(i);
        let sq = dot(row, row);
        let inv = T::from_f64_lossy(inv_norm(row));
        for j in 0..k {
            out[i * k + j] = distance(row, sq, inv, centres, j);
        }
    }
}

/// The sums of one chunk from its labels and scores, one row at a time.
pub(super) fn accumulate_reference<T: Float>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    metric: Metric,
    labels: &[u32],
    scores: &[T],
    part: &mut ClusterStats,
) {
    let d = x.cols();
    for (i, (&j, &s)) in labels.iter().zip(scores).enumerate() {
        let row = x.row(i);
        let w = weights.map_or(1.0, |w| w[i].to_f64_exact());
        let j = j as usize;
        let scale = match metric {
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
}
