//! centroid: K-means clustering as a trainable, checkpointed Estimator.
//!
//! The crate follows TensorFlow's `KMeansClustering` Estimator behaviour for
//! behaviour (see `ARCHITECTURE.md` for the map of the code). Data flows one
//! way: [`input`] -> validation -> [`kernels`] -> model state -> checkpoints.

pub mod batch;
pub mod batch_sparse;
pub mod error;
pub mod export;
pub mod float;
pub mod input;
pub mod inputs;
pub mod kernels;
pub mod matrix;

pub use error::{Error, Result};
pub use float::{DType, Float};
pub use input::{Column, Data, Dense, Features, Input};
pub use kernels::Metric;
pub use matrix::{MatRef, Matrix};
pub mod checkpoint;
pub mod estimator;
pub mod hooks;
pub mod lock;
mod loss_log;
pub mod model;
pub mod params;
pub mod partial;
pub mod safe_io;
pub mod seeding;
mod source;
pub mod summary;

pub use checkpoint::Tensor;
pub use estimator::{
    EvalArgs, EvalResult, KMeansClustering, PredictArgs, Predictions, StepStatistics, TrainArgs,
    TRAIN_LOSSES_FILE,
};
pub use export::ServingInputReceiver;
pub use hooks::{CheckpointSaverListener, RunContext, RunValues, SessionRunHook};
pub use model::{AnyState, ModelFn, ModelState, PredictKeys, PredictionBatch};
pub use params::{
    InitFn, InitialClusters, KMeansParams, RunConfig, ALL_DISTANCES, CLUSTER_INDEX,
    COSINE_DISTANCE, KMEANS_PLUS_PLUS_INIT, RANDOM_INIT, SCORE, SQUARED_EUCLIDEAN_DISTANCE,
};
