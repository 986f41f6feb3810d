//! The layout of a model directory, in one place: the checkpoints and their
//! index (`checkpoint`), the one-writer lock (`.lock`, [`ModelDirLock`]),
//! the per-step training losses (`train_losses.csv`), and the evaluation
//! metrics (`eval/metrics.jsonl` and a TensorBoard event file, or
//! `eval_<name>/...` for a named evaluation). The Estimator writes them
//! through this module and the command line reads them through it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, ParamError, Result};
use crate::estimator::EvalResult;
use crate::safe_io;
use crate::summary::EventWriter;

pub use crate::checkpoint::{
    checkpoint_path, fallback_message, latest, list, load, load_bytes, load_latest_good,
    load_latest_good_reporting, resolve, step_of, variable, variable_names, Loaded, ModelSignature,
    INDEX_FILE, INPUT_STATE_KEY,
};
pub use crate::lock::ModelDirLock;

/// Writes a checkpoint file and updates the index: for tests that need
/// checkpoints the Estimator would never write.
#[doc(hidden)]
pub use crate::checkpoint::save as save_checkpoint;

/// The file of per-step training losses in `model_dir` (CSV with the header
/// `global_step,loss`).
pub const TRAIN_LOSSES_FILE: &str = "train_losses.csv";

/// The file of evaluation results in an evaluation folder (one JSON object
/// per line: `global_step`, `loss`, `score`).
pub const EVAL_METRICS_FILE: &str = "metrics.jsonl";

/// The path of the training losses file of `model_dir`.
pub fn train_losses_path(model_dir: &Path) -> PathBuf {
    model_dir.join(TRAIN_LOSSES_FILE)
}

/// Where an evaluation's metrics go: `model_dir/eval`, or
/// `model_dir/eval_<name>` for a named one (a plain folder name).
pub fn eval_dir(model_dir: &Path, name: Option<&str>) -> Result<PathBuf> {
    match name {
        Some(n) => {
            if n.is_empty() || n.contains(['/', '\\', '\0']) || n == "." || n == ".." {
                return Err(ParamError::BadEvaluationName(n.to_string()).into());
            }
            Ok(model_dir.join(format!("eval_{n}")))
        }
        None => Ok(model_dir.join("eval")),
    }
}

/// Appends one evaluation's result to its metrics file, and to the
/// evaluation folder's TensorBoard event file.
pub(crate) fn record_eval(model_dir: &Path, name: Option<&str>, r: &EvalResult) -> Result<()> {
    let dir = eval_dir(model_dir, name)?;
    fs::create_dir_all(model_dir)
        .map_err(|e| Error::io("cannot create model_dir", model_dir, e))?;
    // Not through a link someone planted: the folder is made here or is a
    // real one.
    safe_io::ensure_real_dir(&dir).map_err(|e| Error::io("cannot write into", &dir, e))?;
    EventWriter::new(&dir).scalars(r.global_step, &[("loss", r.loss), ("score", r.score)])?;
    let path = dir.join(EVAL_METRICS_FILE);
    let line = serde_json::json!({"global_step": r.global_step, "loss": r.loss, "score": r.score})
        .to_string()
        + "\n";
    safe_io::open_append(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| Error::io("cannot append to", &path, e))
}
