//! The model a model directory holds, as the command line needs it: the
//! parameters it was trained with (from the newest good checkpoint's
//! signature), so that `evaluate`, `predict` and the rest need no flags
//! repeated, and a resumed `train` keeps the settings it started with.

use std::path::Path;

use centroid::model_dir::{self, Loaded};
use centroid::{Error, KMeansClustering, KMeansParams, ModelSignature, Result, RunConfig};

/// The newest good checkpoint in `model_dir`, if any. A damaged checkpoint
/// with no good one before it is an error.
pub fn latest(model_dir: &Path) -> Result<Option<Loaded>> {
    if !model_dir.exists() {
        return Ok(None);
    }
    model_dir::load_latest_good(model_dir)
}

/// The newest good checkpoint, or an error saying the model is not trained.
pub fn require(model_dir: &Path) -> Result<Loaded> {
    if !model_dir.is_dir() {
        return Err(Error::Io {
            action: "cannot open model directory",
            path: model_dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        });
    }
    latest(model_dir)?.ok_or_else(|| Error::NoCheckpoint(model_dir.to_path_buf()))
}

/// An estimator over the saved model, for inference.
pub fn estimator(
    model_dir: &Path,
    loaded: &Loaded,
    threads: Option<usize>,
) -> Result<KMeansClustering> {
    let config = RunConfig {
        num_threads: threads,
        ..RunConfig::default()
    };
    KMeansClustering::new(
        KMeansParams::from_signature(&loaded.signature).check()?,
        Some(model_dir.to_path_buf()),
        Some(config),
    )
}

/// Checks that a data source has the model's width, naming both.
pub fn check_width(
    source_width: usize,
    data: &Path,
    sig: &ModelSignature,
    model_dir: &Path,
) -> Result<()> {
    if source_width != sig.num_features {
        return Err(Error::InvalidData(format!(
            "{} has {source_width} columns but the model in {} has {} features",
            data.display(),
            model_dir.display(),
            sig.num_features
        )));
    }
    Ok(())
}
