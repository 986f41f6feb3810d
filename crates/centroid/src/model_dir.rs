//! The layout of a model directory, in one place: the checkpoints and their
//! index (`checkpoint`), the per-step training losses (`train_losses.csv`),
//! and the evaluation metrics (`eval/metrics.jsonl`, or
//! `eval_<name>/metrics.jsonl` for a named evaluation). The Estimator writes
//! them through this module and the command line reads them through it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, ParamError, Result};
use crate::estimator::EvalResult;

pub use crate::checkpoint::{
    checkpoint_path, latest, list, load, load_bytes, load_latest_good, resolve, step_of, variable,
    variable_names, Loaded, ModelSignature, INDEX_FILE,
};

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

/// Appends the per-step losses since the last save to the training losses
/// file (for plots of the training curve), emptying `losses`.
pub(crate) fn append_losses(model_dir: &Path, losses: &mut Vec<(i64, f64)>) -> Result<()> {
    if losses.is_empty() {
        return Ok(());
    }
    let path = train_losses_path(model_dir);
    let fresh = !path.exists();
    let mut text = String::new();
    if fresh {
        text.push_str("global_step,loss\n");
    }
    for (s, l) in losses.drain(..) {
        text.push_str(&format!("{s},{l:e}\n"));
    }
    append(&path, text.as_bytes())
}

/// Appends one evaluation's result to its metrics file.
pub(crate) fn record_eval(model_dir: &Path, name: Option<&str>, r: &EvalResult) -> Result<()> {
    let dir = eval_dir(model_dir, name)?;
    fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
    let path = dir.join(EVAL_METRICS_FILE);
    let line = serde_json::json!({"global_step": r.global_step, "loss": r.loss, "score": r.score})
        .to_string()
        + "\n";
    append(&path, line.as_bytes())
}

fn append(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| Error::io("cannot append to", path, e))
}
