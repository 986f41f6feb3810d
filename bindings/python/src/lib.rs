//! `centroid._core`: the compiled half of the `centroid` Python package.
//!
//! The Python modules (bindings/python/python/centroid) give users the
//! TensorFlow- and scikit-learn-shaped API and normalise what they pass in;
//! this module moves arrays to and from the Rust core (borrowing C-contiguous
//! float32/float64 arrays rather than copying them), releases the GIL while
//! the core works, and turns core errors into Python exceptions.

use pyo3::prelude::*;

mod arrays;
mod batch;
mod errors;
mod estimator;
mod partial;
mod sparse;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The core's `log` records (training progress, damaged-checkpoint
    // warnings) go to Python's `logging`, under the logger "centroid".
    // Levels are looked up on every record, not cached, so that a level
    // set after the import (logging.basicConfig, pytest's caplog) applies;
    // the core logs a few lines per `log_step_count_steps` steps.
    // Another extension may have installed a logger already; then ours
    // stays off rather than failing the import.
    let _ = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::Nothing)?.install();
    m.add(
        "SQUARED_EUCLIDEAN_DISTANCE",
        centroid::SQUARED_EUCLIDEAN_DISTANCE,
    )?;
    m.add("COSINE_DISTANCE", centroid::COSINE_DISTANCE)?;
    m.add("RANDOM_INIT", centroid::RANDOM_INIT)?;
    m.add("KMEANS_PLUS_PLUS_INIT", centroid::KMEANS_PLUS_PLUS_INIT)?;
    m.add("SCORE", centroid::SCORE)?;
    m.add("CLUSTER_INDEX", centroid::CLUSTER_INDEX)?;
    m.add("ALL_DISTANCES", centroid::ALL_DISTANCES)?;
    m.add("TRAIN_LOSSES_FILE", centroid::TRAIN_LOSSES_FILE)?;
    batch::register(m)?;
    estimator::register(m)?;
    sparse::register(m)?;
    partial::register(m)?;
    Ok(())
}
