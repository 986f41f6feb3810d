//! The one error type of the library. Every misuse a user can make ends here,
//! with a message that says what is wrong and where; nothing panics.

use std::path::PathBuf;

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. The variants group by who must act: the caller's
/// arguments, the caller's data, the model directory on disk, or the caller's
/// own callbacks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A constructor or method argument is out of its domain (one without a
    /// [`ParamError`] kind of its own).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A parameter of the model, the run configuration or a call is out of
    /// its domain; the kind says which.
    #[error("invalid argument: {0}")]
    Param(#[from] ParamError),

    /// A matrix does not have the shape it must have.
    #[error("invalid shape: {0}")]
    InvalidShape(String),

    /// The data holds a value that cannot be clustered.
    #[error("invalid data: {0}")]
    InvalidData(String),

    /// input_fn returned labels; K-means is unsupervised.
    #[error("KMeansClustering does not take labels")]
    LabelsNotSupported,

    /// A step needs a trained model and no checkpoint exists yet.
    #[error("no checkpoint found in {}: train the model first", .0.display())]
    NoCheckpoint(PathBuf),

    /// The model directory holds a model that cannot be used with these
    /// parameters or this data.
    #[error("incompatible model in {}: {message}", .model_dir.display())]
    IncompatibleModel {
        /// The model directory.
        model_dir: PathBuf,
        /// What differs, both sides named.
        message: String,
    },

    /// A checkpoint exists but cannot be read.
    #[error("damaged checkpoint {}: {reason}", .path.display())]
    CorruptCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Another training run holds the model directory's lock.
    #[error("model_dir {} is in use: {holder}; wait for it to finish or use another model_dir", .model_dir.display())]
    ModelDirBusy {
        /// The model directory.
        model_dir: PathBuf,
        /// Who holds it, as the lock file says.
        holder: String,
    },

    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done ("cannot read", ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Training was interrupted (Ctrl-C); the last finished step was saved.
    #[error("training interrupted; checkpoint saved at global step {global_step}")]
    Interrupted {
        /// The step of the checkpoint saved.
        global_step: i64,
    },

    /// A callback of the caller's (input_fn, hook, listener, init function)
    /// failed; the original error is kept as the source.
    #[error("{context}: {source}")]
    Callback {
        /// Which callback ("input_fn", "hook.after_run", ...).
        context: String,
        /// The callback's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Writing a SavedModel failed for a reason other than I/O.
    #[error("export failed: {0}")]
    Export(String),
}

/// One kind of bad parameter: what a caller can match on, where the
/// message is for people.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// `num_clusters` is 0.
    #[error("num_clusters must be at least 1, got 0")]
    NoClusters,
    /// `initial_clusters` is an array with no rows.
    #[error("initial_clusters array has no rows")]
    EmptyInitialClusters,
    /// `initial_clusters` is a name other than the accepted ones.
    #[error("unknown initial_clusters {0:?}; accepted: \"random\", \"kmeans_plus_plus\", an array of centres, or a callable")]
    UnknownInitialClusters(String),
    /// `distance_metric` is a name other than the accepted ones.
    #[error("unknown distance_metric {0:?}; accepted: \"squared_euclidean\", \"cosine\"")]
    UnknownDistanceMetric(String),
    /// `mini_batch_steps_per_iteration` is 0.
    #[error("mini_batch_steps_per_iteration must be at least 1, got 0")]
    NoStepsPerIteration,
    /// `mini_batch_steps_per_iteration` does not fit the int64 counter.
    #[error("mini_batch_steps_per_iteration must be at most {max}, got {0}", max = i64::MAX)]
    TooManyStepsPerIteration(u64),
    /// `kmeans_plus_plus_num_retries` is beyond the bound seeding accepts.
    #[error("kmeans_plus_plus_num_retries must be at most {max}, got {got}")]
    TooManyRetries {
        /// The value given.
        got: i64,
        /// The largest value accepted.
        max: i64,
    },
    /// `relative_tolerance` is negative, NaN or infinite.
    #[error("relative_tolerance must be a finite number >= 0, got {0}")]
    BadRelativeTolerance(f64),
    /// `feature_columns` names no column.
    #[error("feature_columns is empty")]
    NoFeatureColumns,
    /// `feature_columns` names a column twice.
    #[error("feature_columns names {name:?} twice (positions {first} and {second})")]
    DuplicateFeatureColumn {
        /// The repeated name.
        name: String,
        /// Its first position.
        first: usize,
        /// Its second position.
        second: usize,
    },
    /// A predict key other than `cluster_index` and `all_distances`.
    #[error("unknown predict key {0:?}; accepted: \"cluster_index\", \"all_distances\"")]
    UnknownPredictKey(String),
    /// An empty list of predict keys.
    #[error("predict_keys is empty; accepted: \"cluster_index\", \"all_distances\"")]
    NoPredictKeys,
    /// Both checkpoint schedules are set.
    #[error("save_checkpoints_steps and save_checkpoints_secs cannot both be set; set one of them to None")]
    TwoCheckpointSchedules,
    /// `save_checkpoints_steps` is 0.
    #[error("save_checkpoints_steps must be at least 1")]
    NoCheckpointSteps,
    /// `save_checkpoints_secs` is negative, NaN or infinite.
    #[error("save_checkpoints_secs must be a finite number >= 0, got {0}")]
    BadCheckpointSecs(f64),
    /// `num_threads` is 0.
    #[error("num_threads must be at least 1")]
    NoThreads,
    /// `log_step_count_steps` is 0.
    #[error("log_step_count_steps must be at least 1")]
    NoLogSteps,
    /// `train` got both `steps` and `max_steps`.
    #[error("give steps or max_steps, not both")]
    StepsAndMaxSteps,
    /// `steps` is 0.
    #[error("steps must be positive, got 0")]
    NoSteps,
    /// `max_steps` is 0.
    #[error("max_steps must be positive, got 0")]
    NoMaxSteps,
    /// `model_dir` and `config.model_dir` name different folders.
    #[error("model_dir {} and config.model_dir {} differ; give one of them", .0.display(), .1.display())]
    ModelDirsDiffer(PathBuf, PathBuf),
    /// `model_dir` exists and is a file.
    #[error("model_dir {} exists and is not a folder", .0.display())]
    ModelDirNotAFolder(PathBuf),
    /// An evaluation name that is not a plain folder name.
    #[error("evaluation name {0:?} must be a plain folder name")]
    BadEvaluationName(String),
    /// `num_threads` beyond the most centroid runs (a typo, say).
    #[error(
        "num_threads = {got} is more than centroid runs ({max}); leave it unset to use every core"
    )]
    TooManyThreads {
        /// The value given.
        got: usize,
        /// The largest value accepted.
        max: usize,
    },
    /// `model_dir` is the empty path (which would mean the current folder).
    #[error("model_dir is empty; give a folder (\".\" for the current one)")]
    EmptyModelDir,
    /// `model_dir` contains a NUL byte.
    #[error("model_dir {0:?} contains a NUL byte")]
    NulInModelDir(PathBuf),
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn arg(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    pub(crate) fn data(msg: impl Into<String>) -> Self {
        Error::InvalidData(msg.into())
    }

    /// Wraps an error raised by a caller's callback.
    pub fn callback(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Callback {
            context: context.into(),
            source: source.into(),
        }
    }
}
