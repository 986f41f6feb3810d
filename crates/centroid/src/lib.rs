//! centroid: K-means clustering as a trainable, checkpointed Estimator.
//!
//! The crate follows TensorFlow's `KMeansClustering` Estimator behaviour for
//! behaviour (see `ARCHITECTURE.md` for the map of the code). Data flows one
//! way: [`input`] -> validation -> [`kernels`] -> model state -> checkpoints.

pub mod batch;
pub mod error;
pub mod float;
pub mod input;
pub mod kernels;
pub mod matrix;

pub use error::{Error, Result};
pub use float::{DType, Float};
pub use input::{Column, Data, Dense, Features, Input};
pub use kernels::Metric;
pub use matrix::{MatRef, Matrix};
