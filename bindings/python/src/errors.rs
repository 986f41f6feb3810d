//! Core errors as Python exceptions.
//!
//! Bad arguments and bad data are `ValueError`; a missing file is
//! `FileNotFoundError`; no checkpoint yet is `centroid.errors.NotTrainedError`
//! and a missing `checkpoint_path` `centroid.errors.CheckpointNotFoundError`
//! (both `ValueError`s, as in TensorFlow); a damaged model and other I/O are
//! `RuntimeError`; an interrupted training is `KeyboardInterrupt`. An
//! exception raised by one of the caller's own callbacks (input_fn, hooks,
//! listeners, an initialiser) travels through the core untouched and is
//! raised again as itself.

use centroid::Error;
use centroid::CHECKPOINT_NOT_FOUND;
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;

/// An instance of one of the classes in `centroid/errors.py`, or `fallback`
/// if that module cannot be imported.
fn centroid_error(class: &str, message: String, fallback: fn(String) -> PyErr) -> PyErr {
    Python::with_gil(|py| {
        match py
            .import("centroid.errors")
            .and_then(|m| m.getattr(class))
            .and_then(|c| c.downcast_into::<PyType>().map_err(PyErr::from))
        {
            Ok(cls) => PyErr::from_type(cls, message),
            Err(_) => fallback(message),
        }
    })
}

/// Wraps a Python exception raised by a callback so the core can carry it.
pub fn callback_error(context: &str, err: PyErr) -> Error {
    Error::callback(context.to_string(), err)
}

pub fn to_pyerr(e: Error) -> PyErr {
    match e {
        Error::Callback { context, source } => match source.downcast::<PyErr>() {
            Ok(original) => *original,
            Err(other) => PyRuntimeError::new_err(format!("{context}: {other}")),
        },
        Error::InvalidArgument(_)
        | Error::Param(_)
        | Error::InvalidShape(_)
        | Error::InvalidData(_)
        | Error::LabelsNotSupported
        | Error::IncompatibleModel { .. } => PyValueError::new_err(e.to_string()),
        Error::NoCheckpoint(_) => {
            centroid_error("NotTrainedError", e.to_string(), PyRuntimeError::new_err)
        }
        Error::Io {
            action, ref source, ..
        } if source.kind() == std::io::ErrorKind::NotFound && action == CHECKPOINT_NOT_FOUND => {
            centroid_error(
                "CheckpointNotFoundError",
                e.to_string(),
                PyFileNotFoundError::new_err,
            )
        }
        Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        Error::Interrupted { .. } => PyKeyboardInterrupt::new_err(e.to_string()),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

/// `Result` to `PyResult`.
pub trait IntoPy<T> {
    fn py(self) -> pyo3::PyResult<T>;
}

impl<T> IntoPy<T> for centroid::Result<T> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(to_pyerr)
    }
}
