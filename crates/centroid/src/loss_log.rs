//! `model_dir/train_losses.csv`: every training step's loss, written as the
//! step finishes.
//!
//! A line is appended (one `write`, `O_APPEND`, never through a symlink) after
//! every step, so a killed process loses none; the file is flushed to disk
//! with every checkpoint. Training resumes from the last checkpoint, so when
//! a run starts, lines past that checkpoint's step (the steps a crash threw
//! away, which will run again) and any torn last line are dropped first:
//! the file then reads as if the run had never been interrupted.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::checkpoint::write_atomically;
use crate::error::{Error, Result};
use crate::safe_io;

use crate::model_dir::train_losses_path;

const HEADER: &str = "global_step,loss\n";

/// The open loss log of one training run; hold the model_dir lock.
pub struct LossLog {
    path: PathBuf,
    /// Opened on the first step, so a run that fails before its first step
    /// leaves no file behind.
    file: Option<File>,
}

impl LossLog {
    /// Opens the log of `model_dir` for a run that resumes after
    /// `resume_step` (0 for a fresh model), dropping later lines.
    pub fn open(model_dir: &Path, resume_step: i64) -> Result<Self> {
        let path = train_losses_path(model_dir);
        let existing = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::io(
                    "cannot write",
                    &path,
                    std::io::Error::other(
                        "is a symlink; centroid does not write through symlinks inside model_dir",
                    ),
                ))
            }
            Ok(_) => Some(std::fs::read(&path).map_err(|e| Error::io("cannot read", &path, e))?),
            Err(_) => None,
        };
        if let Some(text) = existing.and_then(|bytes| kept_lines(&bytes, resume_step)) {
            write_atomically(&path, text.as_bytes())?;
        }
        Ok(LossLog { path, file: None })
    }

    /// Records one finished step.
    pub fn record(&mut self, step: i64, loss: f64) -> Result<()> {
        let path = &self.path;
        let file = match &mut self.file {
            Some(f) => f,
            slot => {
                if std::fs::symlink_metadata(path).is_err() {
                    write_atomically(path, HEADER.as_bytes())?;
                }
                let f = safe_io::open_append(path)
                    .map_err(|e| Error::io("cannot append to", path, e))?;
                slot.insert(f)
            }
        };
        file.write_all(format!("{step},{loss:e}\n").as_bytes())
            .map_err(|e| Error::io("cannot append to", path, e))
    }

    /// Flushes the lines written so far to disk (with each checkpoint).
    pub fn sync(&mut self) -> Result<()> {
        match &self.file {
            Some(f) => f
                .sync_data()
                .map_err(|e| Error::io("cannot write", &self.path, e)),
            None => Ok(()),
        }
    }
}

/// The text to keep of an existing log: the header and the whole lines of
/// steps up to `resume_step`; `None` when that is the whole file already.
fn kept_lines(bytes: &[u8], resume_step: i64) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::from(HEADER);
    let mut changed = !text.starts_with(HEADER);
    let body = text.strip_prefix(HEADER).unwrap_or(&text);
    let complete = match body.rfind('\n') {
        Some(i) => &body[..=i],
        None => "",
    };
    changed |= complete.len() != body.len();
    for line in complete.lines() {
        let step = line.split_once(',').and_then(|(s, l)| {
            l.trim()
                .parse::<f64>()
                .ok()
                .and(s.trim().parse::<i64>().ok())
        });
        match step {
            Some(s) if s <= resume_step => {
                out.push_str(line);
                out.push('\n');
            }
            _ => changed = true,
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_whole_lines_up_to_the_resumed_step() {
        let log = b"global_step,loss\n1,5e0\n2,4e0\n3,3e0\n4,2";
        assert_eq!(
            kept_lines(log, 2).as_deref(),
            Some("global_step,loss\n1,5e0\n2,4e0\n")
        );
        assert_eq!(kept_lines(b"global_step,loss\n1,5e0\n", 1), None);
        assert_eq!(
            kept_lines(b"global_step,loss\n1,5e0\n", 0).as_deref(),
            Some(HEADER)
        );
        assert_eq!(kept_lines(b"", 3).as_deref(), Some(HEADER));
    }
}
