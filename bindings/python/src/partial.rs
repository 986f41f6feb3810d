//! The partition task of distributed training (`centroid::partial`) for
//! `centroid.dask` and the engine-neutral driver (`centroid/_partitioned.py`).
//!
//! Partial statistics cross process boundaries (Dask pickles them), so they
//! travel as plain dicts of NumPy arrays and floats:
//! `sums` (k x d f64), `weights` (k f64), `counts` (k int64), `loss` (float),
//! `far_rows` (m int64, global row indices), `far_distances` (m f64),
//! `far_labels` (m int64), `far_weights` (m f64), `far_values` (m x d f64),
//! and `labels` (n int32) when asked for.

use centroid::kernels::{ClusterStats, PreparedCentres};
use centroid::partial::{self, FarRow, PartialStats};
use centroid::{Matrix, Metric};
use numpy::{PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrays::{matrix_to_numpy, to_numpy};
use crate::batch::{dispatch, labels_to_numpy, run_typed};
use crate::errors::IntoPy;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(partition_stats, m)?)?;
    m.add_function(wrap_pyfunction!(merge_partials, m)?)?;
    m.add_function(wrap_pyfunction!(lloyd_update, m)?)?;
    m.add_function(wrap_pyfunction!(minibatch_update, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans_parallel_sample, m)?)?;
    m.add_function(wrap_pyfunction!(random_row_indices, m)?)?;
    // Distributed workers must run the same core as the driver: they
    // compare this.
    m.add("VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// The statistics of one block of rows under `centers` (same dtype as `x`):
/// a dict (see the module docs). `row_offset` is the global index of the
/// block's first row; `n_farthest` rows farthest from their centres are
/// kept for refilling empty clusters.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, centers, metric, row_offset, with_labels=false, n_farthest=0))]
#[allow(clippy::too_many_arguments)]
fn partition_stats<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    centers: &Bound<'py, PyAny>,
    metric: &str,
    row_offset: u64,
    with_labels: bool,
    n_farthest: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let metric = Metric::from_name(metric).py()?;
    let (part, labels) = dispatch!(py, x, sample_weight, centers, |v, T| {
        let prepared = PreparedCentres::<T>::new(v.c, metric);
        let mut labels = with_labels.then(|| vec![0u32; v.x.rows()]);
        let part = partial::partition_stats(
            v.x,
            v.w,
            &prepared,
            row_offset,
            labels.as_deref_mut(),
            n_farthest,
        )?;
        Ok((part, labels))
    })?;
    let out = to_dict(py, &part)?;
    if let Some(labels) = labels {
        out.set_item("labels", labels_to_numpy(py, labels)?)?;
    }
    Ok(out)
}

fn to_dict<'py>(py: Python<'py>, p: &PartialStats) -> PyResult<Bound<'py, PyDict>> {
    let (k, d, m) = (p.stats.k, p.stats.d, p.farthest.len());
    let out = PyDict::new(py);
    out.set_item("sums", to_numpy(py, p.stats.sums.clone(), &[k, d])?)?;
    out.set_item("weights", to_numpy(py, p.stats.weights.clone(), &[k])?)?;
    let counts: Vec<i64> = p
        .stats
        .counts
        .iter()
        .map(|&c| i64::try_from(c).unwrap_or(i64::MAX))
        .collect();
    out.set_item("counts", to_numpy(py, counts, &[k])?)?;
    out.set_item("loss", p.stats.loss)?;
    let f = &p.farthest;
    let rows: Vec<i64> = f
        .iter()
        .map(|r| i64::try_from(r.row).unwrap_or(i64::MAX))
        .collect();
    out.set_item("far_rows", to_numpy(py, rows, &[m])?)?;
    let dist: Vec<f64> = f.iter().map(|r| r.distance).collect();
    out.set_item("far_distances", to_numpy(py, dist, &[m])?)?;
    let labels: Vec<i64> = f.iter().map(|r| i64::from(r.label)).collect();
    out.set_item("far_labels", to_numpy(py, labels, &[m])?)?;
    let weights: Vec<f64> = f.iter().map(|r| r.weight).collect();
    out.set_item("far_weights", to_numpy(py, weights, &[m])?)?;
    let values: Vec<f64> = f.iter().flat_map(|r| r.values.iter().copied()).collect();
    out.set_item("far_values", to_numpy(py, values, &[m, d])?)?;
    Ok(out)
}

fn item<'py>(d: &Bound<'py, PyDict>, key: &str, which: usize) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(key)?
        .ok_or_else(|| PyValueError::new_err(format!("partial statistics {which} have no {key:?}")))
}

fn vec1<T: numpy::Element + Copy>(
    d: &Bound<'_, PyDict>,
    key: &str,
    which: usize,
) -> PyResult<Vec<T>> {
    let a = item(d, key, which)?;
    let a: PyReadonlyArray1<T> = a.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "partial statistics {which}: {key:?} must be a 1-D array of {}",
            std::any::type_name::<T>()
        ))
    })?;
    Ok(a.as_array().iter().copied().collect())
}

fn vec2(d: &Bound<'_, PyDict>, key: &str, which: usize) -> PyResult<(Vec<f64>, usize, usize)> {
    let a = item(d, key, which)?;
    let a: PyReadonlyArray2<f64> = a.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "partial statistics {which}: {key:?} must be a 2-D float64 array"
        ))
    })?;
    let (rows, cols) = a.as_array().dim();
    Ok((a.as_array().iter().copied().collect(), rows, cols))
}

pub(crate) fn stats_from_dict(d: &Bound<'_, PyDict>, which: usize) -> PyResult<PartialStats> {
    let (sums, k, dim) = vec2(d, "sums", which)?;
    let weights = vec1::<f64>(d, "weights", which)?;
    let counts = vec1::<i64>(d, "counts", which)?;
    if weights.len() != k || counts.len() != k {
        return Err(PyValueError::new_err(format!(
            "partial statistics {which}: sums are for {k} clusters but there are {} weights and {} counts",
            weights.len(),
            counts.len()
        )));
    }
    let loss: f64 = item(d, "loss", which)?.extract()?;
    let rows = vec1::<i64>(d, "far_rows", which)?;
    let dist = vec1::<f64>(d, "far_distances", which)?;
    let labels = vec1::<i64>(d, "far_labels", which)?;
    let fw = vec1::<f64>(d, "far_weights", which)?;
    let (values, m, vd) = vec2(d, "far_values", which)?;
    if [dist.len(), labels.len(), fw.len(), m] != [rows.len(); 4] || (m > 0 && vd != dim) {
        return Err(PyValueError::new_err(format!(
            "partial statistics {which}: the farthest rows' arrays disagree in length or width"
        )));
    }
    let bad = |what: &str| {
        PyValueError::new_err(format!("partial statistics {which}: {what} out of range"))
    };
    let mut farthest = Vec::with_capacity(m);
    for i in 0..m {
        let label = u32::try_from(labels[i])
            .ok()
            .filter(|&l| (l as usize) < k)
            .ok_or_else(|| bad("a farthest row's label"))?;
        farthest.push(FarRow {
            row: u64::try_from(rows[i]).map_err(|_| bad("a farthest row's index"))?,
            distance: dist[i],
            label,
            weight: fw[i],
            values: values[i * dim..(i + 1) * dim].to_vec(),
        });
    }
    let counts = counts
        .into_iter()
        .map(|c| u64::try_from(c).map_err(|_| bad("a count")))
        .collect::<PyResult<Vec<u64>>>()?;
    Ok(PartialStats {
        stats: ClusterStats {
            k,
            d: dim,
            sums,
            weights,
            counts,
            loss,
        },
        farthest,
    })
}

/// Adds partial statistics in the order given (partition index order) and
/// keeps the farthest rows over all of them.
#[pyfunction]
fn merge_partials<'py>(
    py: Python<'py>,
    parts: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyDict>> {
    let parts = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let d = p.downcast::<PyDict>().map_err(|_| {
                PyTypeError::new_err(format!("partial statistics {i} must be a dict"))
            })?;
            stats_from_dict(d, i)
        })
        .collect::<PyResult<Vec<_>>>()?;
    let merged = py.allow_threads(|| partial::merge_in_order(&parts)).py()?;
    to_dict(py, &merged)
}

fn centres_of<T: numpy::Element + centroid::Float>(
    c: &Bound<'_, PyArray2<T>>,
) -> PyResult<Matrix<T>> {
    let ro = c
        .try_readonly()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let (k, d) = ro.as_array().dim();
    Matrix::new(ro.as_array().iter().copied().collect(), k, d).py()
}

/// Lloyd's update on merged statistics: `(new_centers, shift, relocated)`,
/// where empty clusters are first refilled with the farthest rows when
/// `relocate` is true (scikit-learn's rule), `shift` is the sum of squared
/// centre moves and `relocated` the number of clusters refilled.
#[pyfunction]
#[pyo3(signature = (centers, merged, relocate=true))]
fn lloyd_update<'py>(
    py: Python<'py>,
    centers: &Bound<'py, PyAny>,
    merged: &Bound<'py, PyDict>,
    relocate: bool,
) -> PyResult<(Bound<'py, PyAny>, f64, usize)> {
    let mut merged = stats_from_dict(merged, 0)?;
    let relocated = if relocate {
        partial::relocate_empty_clusters(&mut merged.stats, &merged.farthest).len()
    } else {
        0
    };
    if let Ok(c) = centers.downcast::<PyArray2<f32>>() {
        let mut m = centres_of(c)?;
        let shift = partial::lloyd_update(&mut m, &merged.stats).py()?;
        Ok((matrix_to_numpy(py, m)?, shift, relocated))
    } else if let Ok(c) = centers.downcast::<PyArray2<f64>>() {
        let mut m = centres_of(c)?;
        let shift = partial::lloyd_update(&mut m, &merged.stats).py()?;
        Ok((matrix_to_numpy(py, m)?, shift, relocated))
    } else {
        Err(PyTypeError::new_err(
            "the centres must be a 2-D float32 or float64 array",
        ))
    }
}

/// scikit-learn's mini-batch update on merged statistics:
/// `(new_centers, new_weight_sums)`.
#[pyfunction]
fn minibatch_update<'py>(
    py: Python<'py>,
    centers: &Bound<'py, PyAny>,
    weight_sums: PyReadonlyArray1<'py, f64>,
    merged: &Bound<'py, PyDict>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let merged = stats_from_dict(merged, 0)?;
    let mut sums: Vec<f64> = weight_sums.as_array().iter().copied().collect();
    let n = sums.len();
    let centres = if let Ok(c) = centers.downcast::<PyArray2<f32>>() {
        let mut m = centres_of(c)?;
        partial::minibatch_update(&mut m, &mut sums, &merged.stats).py()?;
        matrix_to_numpy(py, m)?
    } else if let Ok(c) = centers.downcast::<PyArray2<f64>>() {
        let mut m = centres_of(c)?;
        partial::minibatch_update(&mut m, &mut sums, &merged.stats).py()?;
        matrix_to_numpy(py, m)?
    } else {
        return Err(PyTypeError::new_err(
            "the centres must be a 2-D float32 or float64 array",
        ));
    };
    Ok((centres, to_numpy(py, sums, &[n])?))
}

/// k-means|| sampling of one block: the local indices (int64) of the rows
/// chosen in round `round` (>= 1), given the candidates so far and the
/// whole data set's cost under them.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, centers, metric, row_offset, seed, round, oversampling, cost))]
#[allow(clippy::too_many_arguments)]
fn kmeans_parallel_sample<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    centers: &Bound<'py, PyAny>,
    metric: &str,
    row_offset: u64,
    seed: u64,
    round: u64,
    oversampling: f64,
    cost: f64,
) -> PyResult<Bound<'py, PyAny>> {
    let metric = Metric::from_name(metric).py()?;
    let chosen = dispatch!(py, x, sample_weight, centers, |v, T| {
        let prepared = PreparedCentres::<T>::new(v.c, metric);
        partial::kmeans_parallel_sample(
            v.x,
            v.w,
            &prepared,
            row_offset,
            seed,
            round,
            oversampling,
            cost,
        )
    })?;
    let n = chosen.len();
    let chosen: Vec<i64> = chosen.into_iter().map(|i| i as i64).collect();
    to_numpy(py, chosen, &[n])
}

/// `needed` distinct indices in `0..n` drawn from `seed` (every index, in
/// order, when `n <= needed`): global rows for random initialisation.
#[pyfunction]
fn random_row_indices<'py>(
    py: Python<'py>,
    n: usize,
    needed: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let mut rng = centroid::seeding::rng_from_seed(seed);
    let idx: Vec<i64> = centroid::seeding::random_row_indices(n, needed, &mut rng)
        .into_iter()
        .map(|i| i as i64)
        .collect();
    let m = idx.len();
    to_numpy(py, idx, &[m])
}
