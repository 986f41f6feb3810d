//! centroid: K-means clustering as a trainable, checkpointed Estimator.
//!
//! The crate follows TensorFlow's `KMeansClustering` Estimator behaviour for
//! behaviour (see `ARCHITECTURE.md` for the map of the code). Data flows one
//! way: [`Input`] -> validation -> kernels -> model state -> checkpoints.
//!
//! The public surface is the list of re-exports below, plus these modules:
//! [`model_dir`] (the layout of a model directory), [`batch`],
//! [`batch_sparse`] and [`seeding`] (plain functional K-means, dense and
//! sparse, for the scikit-learn classes and the benchmarks), [`partial`]
//! (one partition's statistics and their merge, for Dask), [`summary`]
//! (TensorBoard event files) and [`export`] (SavedModel writing).
//! `kernels` is public only for the benchmarks and the Python binding, and
//! hidden from the documentation: it is not a stable interface.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod batch;
pub mod batch_sparse;
mod checkpoint;
mod error;
mod estimator;
pub mod export;
// Float's items are documented with the kernels rework (issue 10, part A).
#[allow(missing_docs)]
mod float;
mod hooks;
mod input;
mod inputs;
#[doc(hidden)]
#[allow(missing_docs)]
pub mod kernels;
mod lock;
mod loss_log;
mod matrix;
mod memory;
mod model;
pub mod model_dir;
mod params;
pub mod partial;
mod pruning;
mod safe_io;
pub mod seeding;
mod source;
pub mod summary;

pub use checkpoint::Tensor;
pub use error::{Error, ParamError, Result};
pub use estimator::{
    EvalArgs, EvalResult, KMeansClustering, PredictArgs, Predictions, StepStatistics, TrainArgs,
    WarningHandler, CHECKPOINT_NOT_FOUND,
};
pub use export::ServingInputReceiver;
pub use float::{DType, Float};
pub use hooks::{CheckpointSaverListener, RunContext, RunValues, SessionRunHook};
pub use input::{Batch, Column, Data, Dense, Features, Input, Rows, Sparse};
pub use inputs::{numpy_input_fn, ArrayInputOptions};
pub use kernels::sparse::CsrRef;
pub use kernels::Metric;
pub use matrix::{MatRef, Matrix};
pub use model::{AnyState, ModelFn, ModelState, PredictKeys, PredictionBatch};
pub use model_dir::{ModelSignature, TRAIN_LOSSES_FILE};
pub use params::{
    InitFn, InitKind, InitialClusters, KMeansParams, Mode, Retries, RunConfig, ValidKMeansParams,
    ALL_DISTANCES, CLUSTER_INDEX, COSINE_DISTANCE, KMEANS_PLUS_PLUS_INIT,
    MAX_KMEANS_PLUS_PLUS_RETRIES, RANDOM_INIT, SCORE, SQUARED_EUCLIDEAN_DISTANCE,
};

/// Runs `f` on a rayon pool of `threads` threads: the tests that results do
/// not depend on the thread count.
#[cfg(test)]
pub(crate) fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool for a test")
        .install(f)
}
