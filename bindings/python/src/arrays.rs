//! NumPy arrays to and from the core's buffers.
//!
//! A C-contiguous float32/float64 array that must stay readable for a whole
//! call (a constant training batch, the data of a scikit-learn fit) is
//! borrowed in place: the array object is held in a [`KeepAlive`] for as long
//! as the borrowed slice may be used, so its buffer can neither be freed nor
//! moved (NumPy refuses to resize an array that other references hold).
//! Everything else is copied once.

use std::borrow::Cow;
use std::sync::Mutex;

use centroid::{Data, Dense, Matrix, Sparse};
use numpy::{Element, PyArray1, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// Python objects that must outlive slices borrowed from them.
#[derive(Default)]
pub struct KeepAlive(Mutex<Vec<Py<PyAny>>>);

impl KeepAlive {
    fn hold(&self, obj: Py<PyAny>) {
        // A poisoned lock only means a panic elsewhere; holding the object is
        // still right.
        match self.0.lock() {
            Ok(mut v) => v.push(obj),
            Err(p) => p.into_inner().push(obj),
        }
    }
}

/// The values of a float array and its shape. With `keep`, a C-contiguous
/// array is borrowed for the lifetime of `keep`; otherwise it is copied.
pub fn array_data<'k>(
    obj: &Bound<'_, PyAny>,
    keep: Option<&'k KeepAlive>,
) -> PyResult<(Data<'k>, Vec<usize>)> {
    if let Ok(a) = obj.downcast::<PyArrayDyn<f32>>() {
        let (v, shape) = typed(a, keep)?;
        return Ok((Data::F32(v), shape));
    }
    if let Ok(a) = obj.downcast::<PyArrayDyn<f64>>() {
        let (v, shape) = typed(a, keep)?;
        return Ok((Data::F64(v), shape));
    }
    Err(PyTypeError::new_err(format!(
        "expected a float32 or float64 numpy array, got {}",
        obj.get_type().name()?
    )))
}

fn typed<'k, T: Element + Copy>(
    a: &Bound<'_, PyArrayDyn<T>>,
    keep: Option<&'k KeepAlive>,
) -> PyResult<(Cow<'k, [T]>, Vec<usize>)> {
    let shape = a.shape().to_vec();
    let ro = a
        .try_readonly()
        .map_err(|e| PyValueError::new_err(format!("cannot read the array: {e}")))?;
    if let Ok(slice) = ro.as_slice() {
        if let (Some(keep), false) = (keep, slice.is_empty()) {
            let (ptr, len) = (slice.as_ptr(), slice.len());
            keep.hold(a.clone().into_any().unbind());
            // SAFETY: `keep` holds a reference to the array for all of 'k, so
            // its buffer is neither freed nor reallocated during 'k.
            //
            // Writes are another matter: the GIL is released while the
            // kernels read this slice, and another Python thread may write
            // the same array then (the read-only borrow above ends here, and
            // NumPy's writeable flag is the user's to set). We do not copy
            // to prevent it: copying every batch would undo the zero-copy
            // path for all users to guard against a data race in the
            // caller's own program. The race cannot break memory safety
            // (the values are plain f32/f64 bits, every bit pattern is a
            // valid float, and the buffer's length and address are fixed);
            // its worst outcome is a step computed from a mix of old and new
            // values, which the NaN/inf checks on the step's result still
            // catch when a written value is not finite. The Python docs say
            // not to write arrays passed to a running call.
            let borrowed: &'k [T] = unsafe { std::slice::from_raw_parts(ptr, len) };
            return Ok((Cow::Borrowed(borrowed), shape));
        }
        return Ok((Cow::Owned(slice.to_vec()), shape));
    }
    Ok((Cow::Owned(ro.as_array().iter().copied().collect()), shape))
}

/// A scipy CSR matrix (format "csr", int64 indptr, int32 indices,
/// float32/float64 data, as `_input.py` hands it over) as a sparse batch;
/// `None` when `obj` is not one. Borrowed like [`array_data`] with `keep`.
pub fn sparse_from_csr<'k>(
    obj: &Bound<'_, PyAny>,
    keep: Option<&'k KeepAlive>,
) -> PyResult<Option<Sparse<'k>>> {
    let is_csr = obj.hasattr("indptr")?
        && obj.hasattr("format")?
        && obj
            .getattr("format")?
            .extract::<String>()
            .is_ok_and(|f| f == "csr");
    if !is_csr {
        return Ok(None);
    }
    let (rows, cols): (usize, usize) = obj.getattr("shape")?.extract()?;
    let index_array = |name: &str| -> PyResult<Bound<'_, PyAny>> { obj.getattr(name) };
    let indptr = index_array("indptr")?;
    let indptr = indptr
        .downcast::<PyArrayDyn<i64>>()
        .map_err(|_| PyTypeError::new_err("a sparse batch's indptr must be an int64 array"))?;
    let indices = index_array("indices")?;
    let indices = indices
        .downcast::<PyArrayDyn<i32>>()
        .map_err(|_| PyTypeError::new_err("a sparse batch's indices must be an int32 array"))?;
    let (indptr, _) = typed(indptr, keep)?;
    let (indices, _) = typed(indices, keep)?;
    let (data, _) = array_data(&obj.getattr("data")?, keep)?;
    Sparse::new(indptr, indices, data, rows, cols)
        .map(Some)
        .map_err(crate::errors::to_pyerr)
}

/// A 2-D float array as a dense batch.
pub fn dense_from_array<'k>(
    obj: &Bound<'_, PyAny>,
    keep: Option<&'k KeepAlive>,
    what: &str,
) -> PyResult<Dense<'k>> {
    let (data, shape) = array_data(obj, keep)?;
    if shape.len() != 2 {
        return Err(PyValueError::new_err(format!(
            "{what} must be a 2-D array [N, d], got shape {shape:?}"
        )));
    }
    Dense::new(data, shape[0], shape[1]).map_err(crate::errors::to_pyerr)
}

/// A numpy array of `shape` holding `values`.
pub fn to_numpy<'py, T: Element>(
    py: Python<'py>,
    values: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    let flat = PyArray1::from_vec(py, values);
    Ok(flat.reshape(shape.to_vec())?.into_any())
}

/// A dense batch as a 2-D numpy array of its own dtype.
pub fn dense_to_numpy<'py>(py: Python<'py>, d: &Dense<'_>) -> PyResult<Bound<'py, PyAny>> {
    let shape = [d.rows(), d.cols()];
    match d.data() {
        Data::F32(v) => to_numpy(py, v.to_vec(), &shape),
        Data::F64(v) => to_numpy(py, v.to_vec(), &shape),
    }
}

/// An owned matrix as a 2-D numpy array.
pub fn matrix_to_numpy<'py, T: Element + centroid::Float>(
    py: Python<'py>,
    m: Matrix<T>,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = [m.rows(), m.cols()];
    to_numpy(py, m.into_vec(), &shape)
}
