//! [`crate::batch`]'s functional K-means for sparse (CSR) data: Lloyd to
//! convergence, mini-batch steps, labels and inertia, distances and
//! k-means++, as scikit-learn runs them on `scipy.sparse` input (no
//! centring; the same stopping rules, empty-cluster relocation and
//! mini-batch update). The distance work is [`crate::kernels::sparse`]'s.

use rayon::prelude::*;

use crate::batch::{update_centres, LloydFit, LloydStop};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::sparse::{self, SparseCentres};
use crate::kernels::{ClusterStats, CHUNK_ROWS};
use crate::matrix::{MatRef, Matrix};

pub use crate::kernels::sparse::{kmeans_plus_plus, CsrRef};

fn check_inputs<T: Float>(
    x: CsrRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: MatRef<'_, T>,
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
        if let Some(i) = w.iter().position(|v| !v.is_finite() || *v < T::zero()) {
            return Err(Error::InvalidData(format!(
                "sample_weight[{i}] = {} is not a finite non-negative number",
                w[i]
            )));
        }
    }
    Ok(())
}

/// `||x_i - c||^2` for a sparse row and a dense centre, in f64, directly
/// (scikit-learn's relocation distance).
fn sq_dist_sparse<T: Float>(x: CsrRef<'_, T>, i: usize, c: &[T], c_sq_norm: f64) -> f64 {
    let (idx, vals) = x.row(i);
    let mut s = c_sq_norm;
    for (&col, &v) in idx.iter().zip(vals) {
        let cv = c[col as usize].to_f64_exact();
        let t = v.to_f64_exact() - cv;
        s += t * t - cv * cv;
    }
    s.max(0.0)
}

/// scikit-learn's empty-cluster relocation on sparse rows: the rows farthest
/// from their (old) centres move to the empty clusters, farthest first, lower
/// row first among equals; nothing moves when every row sits on its centre.
fn relocate_empty_clusters<T: Float>(
    x: CsrRef<'_, T>,
    sample_weight: Option<&[T]>,
    old_centres: &SparseCentres<T>,
    old: MatRef<'_, T>,
    labels: &mut [u32],
    stats: &mut ClusterStats,
) {
    let empty: Vec<usize> = (0..stats.k).filter(|&j| stats.weights[j] == 0.0).collect();
    if empty.is_empty() {
        return;
    }
    let d = stats.d;
    let norms = old_centres.sq_norms();
    let dist: Vec<f64> = (0..x.rows())
        .into_par_iter()
        .map(|i| {
            let j = labels[i] as usize;
            sq_dist_sparse(x, i, old.row(j), norms[j])
        })
        .collect();
    if dist.iter().all(|&v| v == 0.0) {
        return;
    }
    let order = crate::partial::farthest_first(&dist, empty.len());
    for (&new_j, &row) in empty.iter().zip(&order) {
        let w = sample_weight.map_or(1.0, |w| w[row].to_f64_exact());
        let old_j = labels[row] as usize;
        stats.sums[new_j * d..(new_j + 1) * d].fill(0.0);
        let (idx, vals) = x.row(row);
        for (&c, &v) in idx.iter().zip(vals) {
            let v = v.to_f64_exact() * w;
            stats.sums[old_j * d + c as usize] -= v;
            stats.sums[new_j * d + c as usize] = v;
        }
        stats.weights[new_j] = w;
        stats.weights[old_j] -= w;
        stats.counts[new_j] = 1;
        stats.counts[old_j] = stats.counts[old_j].saturating_sub(1);
        labels[row] = new_j as u32;
    }
}

/// The weighted sum of each row's squared distance to the centre its label
/// names; chunk sums added in chunk order.
fn labelled_inertia<T: Float>(
    x: CsrRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: MatRef<'_, T>,
    labels: &[u32],
) -> f64 {
    let norms: Vec<f64> = (0..centres.rows())
        .map(|j| {
            centres
                .row(j)
                .iter()
                .map(|c| c.to_f64_exact() * c.to_f64_exact())
                .sum()
        })
        .collect();
    let scores: Vec<f64> = labels
        .par_iter()
        .enumerate()
        .map(|(i, &j)| sq_dist_sparse(x, i, centres.row(j as usize), norms[j as usize]))
        .collect();
    weighted_total(&scores, sample_weight)
}

/// The weighted sum of the scores, chunk sums added in chunk order.
fn weighted_total<T: Float>(scores: &[f64], sample_weight: Option<&[T]>) -> f64 {
    scores
        .chunks(CHUNK_ROWS)
        .enumerate()
        .map(|(ci, s)| {
            s.iter()
                .enumerate()
                .map(|(r, &v)| {
                    sample_weight.map_or(1.0, |w| w[ci * CHUNK_ROWS + r].to_f64_exact()) * v
                })
                .sum::<f64>()
        })
        .sum::<f64>()
}

/// Lloyd's algorithm on sparse rows from `initial_centres`, with
/// [`crate::batch::lloyd`]'s rules (`tol` absolute).
pub fn lloyd<T: Float>(
    x: CsrRef<'_, T>,
    sample_weight: Option<&[T]>,
    initial_centres: MatRef<'_, T>,
    max_iter: usize,
    tol: f64,
) -> Result<LloydFit<T>> {
    check_inputs(x, sample_weight, initial_centres)?;
    if max_iter == 0 {
        return Err(Error::InvalidArgument("max_iter must be at least 1".into()));
    }
    if tol.is_nan() || tol < 0.0 {
        return Err(Error::InvalidArgument(format!(
            "tol must be a non-negative number, got {tol}"
        )));
    }
    let (n, d, k) = (x.rows(), x.cols(), initial_centres.rows());
    let mut centres = Matrix::new(initial_centres.as_slice().to_vec(), k, d)?;
    let mut labels = vec![0u32; n];
    let mut labels_old: Option<Vec<u32>> = None;
    let mut stats = ClusterStats::new(k, d);
    let mut stop = LloydStop::MaxIter;
    let mut iteration_losses = Vec::new();
    let mut n_iter = 0;
    for _ in 0..max_iter {
        n_iter += 1;
        let prepared = SparseCentres::new(centres.view());
        sparse::assign_accumulate(x, sample_weight, &prepared, Some(&mut labels), &mut stats);
        iteration_losses.push(stats.loss);
        if stats.weights.contains(&0.0) {
            relocate_empty_clusters(
                x,
                sample_weight,
                &prepared,
                centres.view(),
                &mut labels,
                &mut stats,
            );
        }
        let shift = update_centres(&mut centres, &stats);
        if labels_old.as_deref() == Some(labels.as_slice()) {
            stop = LloydStop::Strict;
            break;
        }
        if shift <= tol {
            stop = LloydStop::Tolerance(shift);
            break;
        }
        match &mut labels_old {
            Some(old) => old.copy_from_slice(&labels),
            None => labels_old = Some(labels.clone()),
        }
    }
    // Labels and inertia of the final centres. After a strict stop the
    // labels already are those: the last update computed the previous
    // centres again, bit for bit, from the same labels (a relocation would
    // have changed a label). Then only the inertia is left, row by row
    // against the labelled centre: O(nnz) rather than a distance pass over
    // all k centres.
    let (labels, inertia) = if stop == LloydStop::Strict {
        let inertia = labelled_inertia(x, sample_weight, centres.view(), &labels);
        (labels, inertia)
    } else {
        labels_inertia(x, sample_weight, centres.view())?
    };
    Ok(LloydFit {
        centres,
        labels,
        inertia,
        n_iter,
        iteration_losses,
        stop,
    })
}

/// One mini-batch step on sparse rows, as [`crate::batch::minibatch_step`].
pub fn minibatch_step<T: Float>(
    x: CsrRef<'_, T>,
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
    let prepared = SparseCentres::new(centres.view());
    let mut stats = ClusterStats::new(k, d);
    sparse::assign_accumulate(x, sample_weight, &prepared, labels, &mut stats);
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
    Ok(stats.loss)
}

/// The nearest centre of every row and the weighted sum of the squared
/// distances to it.
pub fn labels_inertia<T: Float>(
    x: CsrRef<'_, T>,
    sample_weight: Option<&[T]>,
    centres: MatRef<'_, T>,
) -> Result<(Vec<u32>, f64)> {
    check_inputs(x, sample_weight, centres)?;
    let mut labels = vec![0u32; x.rows()];
    let mut scores = vec![0.0f64; x.rows()];
    sparse::assign(x, &SparseCentres::new(centres), &mut labels, &mut scores);
    Ok((labels, weighted_total(&scores, sample_weight)))
}

/// The squared Euclidean distance of every row to every centre, `n x k`.
pub fn sq_distances<T: Float>(x: CsrRef<'_, T>, centres: MatRef<'_, T>) -> Result<Matrix<T>> {
    check_inputs(x, None, centres)?;
    let mut out = Matrix::zeros(x.rows(), centres.rows());
    sparse::distances(x, &SparseCentres::new(centres), out.as_mut_slice());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(dense: &[f64], n: usize, d: usize) -> (Vec<i64>, Vec<i32>, Vec<f64>) {
        let (mut ip, mut ix, mut dv) = (vec![0i64], Vec::new(), Vec::new());
        for i in 0..n {
            for c in 0..d {
                let v = dense[i * d + c];
                if v != 0.0 {
                    ix.push(c as i32);
                    dv.push(v);
                }
            }
            ip.push(ix.len() as i64);
        }
        (ip, ix, dv)
    }

    fn wavy(n: usize, d: usize) -> Vec<f64> {
        // About half the values are zero.
        (0..n * d)
            .map(|i| {
                let v = (i as f64 * 0.7548).sin() * 10.0;
                if v > 0.0 {
                    v + (i % 5) as f64
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn lloyd_on_sparse_rows_matches_the_dense_lloyd() {
        let (n, d, k) = (3 * CHUNK_ROWS + 17, 6, 5);
        let dense = wavy(n, d);
        let (ip, ix, dv) = csr(&dense, n, d);
        let x = CsrRef::new(n, d, &ip, &ix, &dv).unwrap();
        let xd = MatRef::new(&dense, n, d).unwrap();
        let init = MatRef::new(&dense[..k * d], k, d).unwrap();
        let w: Vec<f64> = (0..n).map(|i| 1.0 + (i % 4) as f64).collect();
        let s = lloyd(x, Some(&w), init, 30, 0.0).unwrap();
        let r = crate::batch::lloyd(xd, Some(&w), init, 30, 0.0, true).unwrap();
        assert_eq!(s.labels, r.labels);
        assert_eq!(s.n_iter, r.n_iter);
        for (a, b) in s.centres.as_slice().iter().zip(r.centres.as_slice()) {
            assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
        }
        assert!((s.inertia - r.inertia).abs() <= 1e-9 * r.inertia);
    }

    #[test]
    fn lloyd_is_bit_identical_at_one_and_two_threads() {
        let (n, d, k) = (4 * CHUNK_ROWS + 300, 9, 7);
        let dense = wavy(n, d);
        let (ip, ix, dv) = csr(&dense, n, d);
        let x = CsrRef::new(n, d, &ip, &ix, &dv).unwrap();
        let init = MatRef::new(&dense[..k * d], k, d).unwrap();
        let run = |t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
                .install(|| lloyd(x, None, init, 6, 0.0).unwrap())
        };
        let (a, b) = (run(1), run(2));
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.centres.as_slice(), b.centres.as_slice());
        assert_eq!(a.inertia.to_bits(), b.inertia.to_bits());
    }

    #[test]
    fn empty_cluster_takes_the_farthest_row() {
        // As batch.rs's dense test: (10, 0) moves to the far centre.
        let dense = [0.0f64, 0.0, 1.0, 0.0, 10.0, 0.0];
        let (ip, ix, dv) = csr(&dense, 3, 2);
        let x = CsrRef::new(3, 2, &ip, &ix, &dv).unwrap();
        let init = [0.5f64, 0.0, 100.0, 100.0];
        let fit = lloyd(x, None, MatRef::new(&init, 2, 2).unwrap(), 1, 0.0).unwrap();
        assert_eq!(fit.centres.row(0), &[0.5, 0.0]);
        assert_eq!(fit.centres.row(1), &[10.0, 0.0]);
        assert_eq!(fit.labels, vec![0, 0, 1]);
        assert!((fit.inertia - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_strict_stop_reports_the_inertia_of_its_labels() {
        // Iteration 1 moves the centres to (1.5, 0) and (0, 6); iteration 2
        // gives the same labels: a strict stop, whose inertia (worked out by
        // hand below) comes from the labels without another distance pass.
        let dense = [1.0f64, 0.0, 2.0, 0.0, 0.0, 5.0, 0.0, 7.0];
        let (ip, ix, dv) = csr(&dense, 4, 2);
        let x = CsrRef::new(4, 2, &ip, &ix, &dv).unwrap();
        let init = [1.0f64, 0.0, 0.0, 5.0];
        let w = [1.0, 1.0, 2.0, 1.0];
        let fit = lloyd(x, Some(&w), MatRef::new(&init, 2, 2).unwrap(), 10, 0.0).unwrap();
        assert_eq!(fit.stop, LloydStop::Strict);
        assert_eq!(fit.n_iter, 2);
        assert_eq!(fit.labels, vec![0, 0, 1, 1]);
        for (a, b) in fit
            .centres
            .as_slice()
            .iter()
            .zip([1.5, 0.0, 0.0, 17.0 / 3.0])
        {
            assert!((a - b).abs() < 1e-12, "{:?}", fit.centres);
        }
        // Weights 2 and 1 on 5 and 7: mean 17/3, squared distances 4/9 (with
        // weight 2) and 16/9; the other cluster 0.25 twice.
        let want = 0.25 + 0.25 + 2.0 * (4.0 / 9.0) + 16.0 / 9.0;
        assert!((fit.inertia - want).abs() < 1e-12, "{}", fit.inertia);
        let (labels, inertia) = labels_inertia(x, Some(&w), fit.centres.view()).unwrap();
        assert_eq!(labels, fit.labels);
        assert!((inertia - fit.inertia).abs() < 1e-12);
    }

    #[test]
    fn minibatch_step_is_a_weighted_running_mean() {
        let mut centres = Matrix::new(vec![0.0f64, 0.0, 10.0, 10.0], 2, 2).unwrap();
        let mut ws = vec![1.0, 3.0];
        let dense = [2.0f64, 0.0, 4.0, 0.0];
        let (ip, ix, dv) = csr(&dense, 2, 2);
        let x = CsrRef::new(2, 2, &ip, &ix, &dv).unwrap();
        let loss = minibatch_step(x, None, &mut centres, &mut ws, None).unwrap();
        assert_eq!(centres.row(0), &[2.0, 0.0]);
        assert_eq!(centres.row(1), &[10.0, 10.0]);
        assert_eq!(ws, vec![3.0, 3.0]);
        assert!((loss - 20.0).abs() < 1e-12);
    }
}
