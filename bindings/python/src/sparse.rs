//! The sparse (CSR) half of the functional core (`centroid::batch_sparse`)
//! for the scikit-learn classes. The caller (centroid/sklearn.py) passes a
//! scipy CSR matrix as its three arrays (indptr int64, indices int32, data
//! float32/float64) and its shape; they are read in place with the GIL
//! released, and checked (index ranges, order, finite values) in Rust.

use centroid::batch::LloydStop;
use centroid::batch_sparse::{self, CsrRef};
use centroid::{Float, MatRef, Matrix};
use numpy::{Element, PyArray1, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::arrays::{matrix_to_numpy, to_numpy};
use crate::errors::IntoPy;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sparse_lloyd, m)?)?;
    m.add_function(wrap_pyfunction!(sparse_minibatch_step, m)?)?;
    m.add_function(wrap_pyfunction!(sparse_labels_inertia, m)?)?;
    m.add_function(wrap_pyfunction!(sparse_sq_distances, m)?)?;
    m.add_function(wrap_pyfunction!(sparse_kmeans_plus_plus, m)?)?;
    Ok(())
}

/// A scipy CSR matrix as the Python side hands it over.
#[derive(FromPyObject)]
struct CsrArgs<'py> {
    shape: (usize, usize),
    indptr: Bound<'py, PyAny>,
    indices: Bound<'py, PyAny>,
    data: Bound<'py, PyAny>,
}

fn readonly_err(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn contiguous<'a, T: Element>(
    a: &'a numpy::PyReadonlyArray1<'_, T>,
    what: &str,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{what} must be a contiguous array")))
}

/// Runs `f` on the typed views (data, weights, centres) with the GIL
/// released; `T` is the data's dtype, which the weights and centres share.
fn run_typed<'py, T, R, F>(
    py: Python<'py>,
    x: &CsrArgs<'py>,
    w: Option<&Bound<'py, PyAny>>,
    c: Option<&Bound<'py, PyAny>>,
    f: F,
) -> PyResult<R>
where
    T: Float + Element,
    R: Send,
    F: for<'a> FnOnce(CsrRef<'a, T>, Option<&'a [T]>, Option<MatRef<'a, T>>) -> centroid::Result<R>
        + Send,
{
    let indptr = x
        .indptr
        .downcast::<PyArray1<i64>>()
        .map_err(|_| PyTypeError::new_err("indptr must be a 1-D int64 array"))?
        .try_readonly()
        .map_err(readonly_err)?;
    let indices = x
        .indices
        .downcast::<PyArray1<i32>>()
        .map_err(|_| PyTypeError::new_err("indices must be a 1-D int32 array"))?
        .try_readonly()
        .map_err(readonly_err)?;
    let data = x
        .data
        .downcast::<PyArray1<T>>()?
        .try_readonly()
        .map_err(readonly_err)?;
    let w = match w {
        Some(w) => Some(
            w.downcast::<PyArray1<T>>()
                .map_err(|_| {
                    PyTypeError::new_err("sample_weight must be a 1-D array of the data's dtype")
                })?
                .try_readonly()
                .map_err(readonly_err)?,
        ),
        None => None,
    };
    let c = match c {
        Some(c) => Some(
            c.downcast::<PyArray2<T>>()
                .map_err(|_| {
                    PyTypeError::new_err("the centres must be a 2-D array of the data's dtype")
                })?
                .try_readonly()
                .map_err(readonly_err)?,
        ),
        None => None,
    };
    let (n, d) = x.shape;
    let ip = contiguous(&indptr, "indptr")?;
    let ix = contiguous(&indices, "indices")?;
    let dv = contiguous(&data, "data")?;
    let ws = match &w {
        Some(w) => Some(contiguous(w, "sample_weight")?),
        None => None,
    };
    let cs = match &c {
        Some(c) => Some((
            c.as_slice()
                .map_err(|_| PyValueError::new_err("the centres must be a C-contiguous array"))?,
            c.shape()[0],
            c.shape()[1],
        )),
        None => None,
    };
    py.allow_threads(move || {
        let x = CsrRef::new(n, d, ip, ix, dv)?;
        let c = match cs {
            Some((s, k, cd)) => Some(MatRef::new(s, k, cd)?),
            None => None,
        };
        f(x, ws, c)
    })
    .py()
}

/// Dispatches on the data's dtype: `$T` is f32 or f64 inside `$body`.
macro_rules! dispatch {
    ($py:expr, $x:expr, $w:expr, $c:expr, |$xv:ident, $wv:ident, $cv:ident, $T:ident| $body:expr) => {{
        if $x.data.downcast::<PyArray1<f32>>().is_ok() {
            type $T = f32;
            run_typed::<f32, _, _>($py, &$x, $w, $c, |$xv, $wv, $cv| $body)
        } else if $x.data.downcast::<PyArray1<f64>>().is_ok() {
            type $T = f64;
            run_typed::<f64, _, _>($py, &$x, $w, $c, |$xv, $wv, $cv| $body)
        } else {
            Err(PyTypeError::new_err(
                "the sparse matrix's values must be float32 or float64",
            ))
        }
    }};
}

fn centres_of<T: Float>(c: Option<MatRef<'_, T>>) -> centroid::Result<MatRef<'_, T>> {
    c.ok_or_else(|| centroid::Error::InvalidArgument("centres are needed".into()))
}

/// A matrix of either float type (the result of a dtype dispatch).
enum AnyMatrix {
    F32(Matrix<f32>),
    F64(Matrix<f64>),
}

impl From<Matrix<f32>> for AnyMatrix {
    fn from(m: Matrix<f32>) -> Self {
        AnyMatrix::F32(m)
    }
}
impl From<Matrix<f64>> for AnyMatrix {
    fn from(m: Matrix<f64>) -> Self {
        AnyMatrix::F64(m)
    }
}

fn any_to_numpy(py: Python<'_>, m: AnyMatrix) -> PyResult<Bound<'_, PyAny>> {
    match m {
        AnyMatrix::F32(m) => matrix_to_numpy(py, m),
        AnyMatrix::F64(m) => matrix_to_numpy(py, m),
    }
}

fn labels_to_numpy(py: Python<'_>, labels: Vec<u32>) -> PyResult<Bound<'_, PyAny>> {
    let n = labels.len();
    to_numpy(py, labels.into_iter().map(|l| l as i32).collect(), &[n])
}

/// What `lloyd` and `sparse_lloyd` return to Python: centres, labels,
/// inertia, n_iter, the per-iteration losses, and why it stopped ("strict",
/// "tol" or "max_iter") with the last squared centre shift for "tol".
pub type LloydResult<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    f64,
    usize,
    Vec<f64>,
    &'static str,
    f64,
);

pub fn stop_parts(stop: LloydStop) -> (&'static str, f64) {
    match stop {
        LloydStop::Strict => ("strict", 0.0),
        LloydStop::Tolerance(shift) => ("tol", shift),
        LloydStop::MaxIter => ("max_iter", 0.0),
    }
}

/// Lloyd's algorithm on a CSR matrix from `centers`.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, centers, max_iter, tol))]
fn sparse_lloyd<'py>(
    py: Python<'py>,
    x: CsrArgs<'py>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    centers: &Bound<'py, PyAny>,
    max_iter: usize,
    tol: f64,
) -> PyResult<LloydResult<'py>> {
    let (c, labels, inertia, n_iter, losses, stop) =
        dispatch!(py, x, sample_weight, Some(centers), |xv, wv, cv, T| {
            batch_sparse::lloyd::<T>(xv, wv, centres_of(cv)?, max_iter, tol).map(|f| {
                (
                    AnyMatrix::from(f.centres),
                    f.labels,
                    f.inertia,
                    f.n_iter,
                    f.iteration_losses,
                    f.stop,
                )
            })
        })?;
    let (kind, shift) = stop_parts(stop);
    Ok((
        any_to_numpy(py, c)?,
        labels_to_numpy(py, labels)?,
        inertia,
        n_iter,
        losses,
        kind,
        shift,
    ))
}

/// One mini-batch step on a CSR batch: updates `centers` and `weight_sums`
/// in place, returns the batch's inertia before the update.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, centers, weight_sums))]
fn sparse_minibatch_step<'py>(
    py: Python<'py>,
    x: CsrArgs<'py>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    centers: &Bound<'py, PyAny>,
    weight_sums: &Bound<'py, PyArray1<f64>>,
) -> PyResult<f64> {
    let mut sums = weight_sums.to_vec().map_err(readonly_err)?;
    let (new_centres, inertia, new_sums) =
        dispatch!(py, x, sample_weight, Some(centers), |xv, wv, cv, T| {
            let cv = centres_of(cv)?;
            let mut c: Matrix<T> = Matrix::new(cv.as_slice().to_vec(), cv.rows(), cv.cols())?;
            let inertia = batch_sparse::minibatch_step::<T>(xv, wv, &mut c, &mut sums, None)?;
            Ok((AnyMatrix::from(c), inertia, sums))
        })?;
    // Written back only once the step succeeded: nothing is half-applied.
    match new_centres {
        AnyMatrix::F32(c) => write_into(centers, c.as_slice())?,
        AnyMatrix::F64(c) => write_into(centers, c.as_slice())?,
    }
    let mut rw = weight_sums.try_readwrite().map_err(readonly_err)?;
    rw.as_slice_mut()
        .map_err(|_| PyValueError::new_err("weight_sums must be contiguous"))?
        .copy_from_slice(&new_sums);
    Ok(inertia)
}

fn write_into<T: Element + Copy>(target: &Bound<'_, PyAny>, values: &[T]) -> PyResult<()> {
    let arr = target.downcast::<PyArray2<T>>()?;
    let mut rw = arr.try_readwrite().map_err(readonly_err)?;
    rw.as_slice_mut()
        .map_err(|_| PyValueError::new_err("the centres must be a C-contiguous array"))?
        .copy_from_slice(values);
    Ok(())
}

/// The nearest centre of every row (int32) and the weighted inertia.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, centers))]
fn sparse_labels_inertia<'py>(
    py: Python<'py>,
    x: CsrArgs<'py>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    centers: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, f64)> {
    let (labels, inertia) = dispatch!(py, x, sample_weight, Some(centers), |xv, wv, cv, T| {
        batch_sparse::labels_inertia::<T>(xv, wv, centres_of(cv)?)
    })?;
    Ok((labels_to_numpy(py, labels)?, inertia))
}

/// Squared Euclidean distances of every row to every centre, `n x k`.
#[pyfunction]
fn sparse_sq_distances<'py>(
    py: Python<'py>,
    x: CsrArgs<'py>,
    centers: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let m = dispatch!(py, x, None, Some(centers), |xv, _wv, cv, T| {
        batch_sparse::sq_distances::<T>(xv, centres_of(cv)?).map(AnyMatrix::from)
    })?;
    any_to_numpy(py, m)
}

/// Greedy k-means++ on a CSR matrix: `k` of its rows, densified.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, k, num_retries, seed))]
fn sparse_kmeans_plus_plus<'py>(
    py: Python<'py>,
    x: CsrArgs<'py>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    k: usize,
    num_retries: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let m = dispatch!(py, x, sample_weight, None, |xv, wv, _cv, T| {
        batch_sparse::kmeans_plus_plus::<T>(xv, wv, k, num_retries, seed).map(AnyMatrix::from)
    })?;
    any_to_numpy(py, m)
}
