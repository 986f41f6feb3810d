//! The one error type of the library. Every misuse a user can make ends here,
//! with a message that says what is wrong and where; nothing panics.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. The variants group by who must act: the caller's
/// arguments, the caller's data, the model directory on disk, or the caller's
/// own callbacks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A constructor or method argument is out of its domain.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

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
    IncompatibleModel { model_dir: PathBuf, message: String },

    /// A checkpoint exists but cannot be read.
    #[error("damaged checkpoint {}: {reason}", .path.display())]
    CorruptCheckpoint { path: PathBuf, reason: String },

    /// Another training run holds the model directory's lock.
    #[error("model_dir {} is in use: {holder}; wait for it to finish or use another model_dir", .model_dir.display())]
    ModelDirBusy { model_dir: PathBuf, holder: String },

    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Training was interrupted (Ctrl-C); the last finished step was saved.
    #[error("training interrupted; checkpoint saved at global step {global_step}")]
    Interrupted { global_step: i64 },

    /// A callback of the caller's (input_fn, hook, listener, init function)
    /// failed; the original error is kept as the source.
    #[error("{context}: {source}")]
    Callback {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Writing a SavedModel failed for a reason other than I/O.
    #[error("export failed: {0}")]
    Export(String),
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
