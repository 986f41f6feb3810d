//! The model a model directory holds, as the command line needs it: the
//! parameters it was trained with (from the newest good checkpoint's
//! signature), so that `evaluate`, `predict` and the rest need no flags
//! repeated, and a resumed `train` keeps the settings it started with.
//!
//! This is the one module of the command line that reads checkpoints and
//! the directory's files; the commands go through it.

use std::path::{Path, PathBuf};

use centroid::model_dir;
pub use centroid::model_dir::{Loaded, ModelSignature};
use centroid::{Error, KMeansClustering, KMeansParams, Result, RunConfig};

/// The newest good checkpoint in `model_dir`, if any. A damaged checkpoint
/// with no good one before it is an error; one skipped for an older good
/// one is a warning line on standard error, naming both.
pub fn latest(model_dir: &Path) -> Result<Option<Loaded>> {
    if !model_dir.exists() {
        return Ok(None);
    }
    let (loaded, skipped) = model_dir::load_latest_good_reporting(model_dir)?;
    if let Some(l) = &loaded {
        for e in &skipped {
            eprintln!(
                "centroid: warning: {}",
                one_line(&model_dir::fallback_message(e, l))
            );
        }
    }
    Ok(loaded)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The CLI reports a damaged checkpoint once, when it first loads the model
/// (`latest`); the Estimator's own loads after that stay quiet.
pub fn quiet_warnings(est: &mut KMeansClustering) {
    est.set_warning_handler(std::sync::Arc::new(|_: &str| {}));
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
    let mut est = KMeansClustering::new(
        KMeansParams::from_signature(&loaded.signature).check()?,
        Some(model_dir.to_path_buf()),
        Some(config),
    )?;
    quiet_warnings(&mut est);
    Ok(est)
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

/// A checkpoint named by `--checkpoint` (a file, or its path without the
/// `.safetensors` ending).
pub fn load_checkpoint(path: &Path) -> Result<Loaded> {
    model_dir::load(&model_dir::resolve(path))
}

/// The global step a checkpoint's file name records.
pub fn step_of(checkpoint_path: &Path) -> Option<i64> {
    model_dir::step_of(checkpoint_path)
}

/// One variable of a saved model, as `inspect` shows it.
pub struct VariableInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: &'static str,
}

/// The saved model's variables, in the Estimator's order.
pub fn variables(loaded: &Loaded) -> Vec<VariableInfo> {
    model_dir::variable_names(&loaded.state)
        .into_iter()
        .filter_map(|name| {
            model_dir::variable(&loaded.state, &name).map(|t| VariableInfo {
                shape: t.shape().to_vec(),
                dtype: t.dtype_name(),
                name,
            })
        })
        .collect()
}

/// One checkpoint file the directory's index lists.
pub struct CheckpointInfo {
    pub path: PathBuf,
    pub global_step: Option<i64>,
    pub bytes: Option<u64>,
    /// Why the file does not read back, when it does not: every listed
    /// checkpoint is read, so a damaged one shows.
    pub damaged: Option<String>,
}

/// The checkpoints in `model_dir`, oldest first.
pub fn checkpoints(model_dir: &Path) -> Vec<CheckpointInfo> {
    model_dir::list(model_dir)
        .into_iter()
        .map(|path| CheckpointInfo {
            global_step: model_dir::step_of(&path),
            bytes: std::fs::metadata(&path).map(|m| m.len()).ok(),
            damaged: model_dir::load(&path).err().map(|e| e.to_string()),
            path,
        })
        .collect()
}

/// The per-step losses the Estimator records in `model_dir/train_losses.csv`.
pub fn read_train_losses(model_dir: &Path) -> Result<Vec<(i64, f64)>> {
    let path: PathBuf = model_dir::train_losses_path(model_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                action: "cannot read",
                path,
                source: e,
            })
        }
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let mut parts = line.split(',');
        let (Some(s), Some(l)) = (parts.next(), parts.next()) else {
            continue;
        };
        match (s.trim().parse::<i64>(), l.trim().parse::<f64>()) {
            (Ok(s), Ok(l)) => out.push((s, l)),
            _ => {
                return Err(Error::InvalidData(format!(
                    "{}: line {} is not `global_step,loss`",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(out)
}
