//! One writer per `model_dir`.
//!
//! Training holds an exclusive advisory lock (`flock`) on `model_dir/.lock`
//! for as long as it runs. The kernel drops the lock when the holder's file
//! descriptor closes, which includes the process dying in any way, so a crash
//! never leaves a model_dir locked. The file holds the holder's process id,
//! only to name it in the error a second writer gets. Readers (evaluate,
//! predict, inspect, export) take no lock: they only read complete files,
//! which the atomic renames guarantee.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::Result;

/// The lock file's name in `model_dir`.
pub const LOCK_FILE: &str = ".lock";

/// The held lock of one `model_dir`; released on drop.
#[derive(Debug)]
pub struct ModelDirLock {
    // Held only for its file descriptor: closing it releases the lock.
    _file: File,
    path: PathBuf,
}

impl ModelDirLock {
    /// Takes the lock of `model_dir` (which must exist), or fails at once,
    /// naming the process that holds it.
    pub fn acquire(model_dir: &Path) -> Result<Self> {
        let path = model_dir.join(LOCK_FILE);
        imp::acquire(&path).map(|file| ModelDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
mod imp {
    use std::fs::{File, OpenOptions};
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    use std::path::Path;

    use crate::error::{Error, Result};

    pub fn acquire(path: &Path) -> Result<File> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    Error::io("cannot lock model_dir: the lock file is a symlink", path, e)
                } else {
                    Error::io("cannot open the model_dir lock file", path, e)
                }
            })?;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.chars().all(|c| c.is_ascii_digit()) && !holder.is_empty() {
                    format!("process {holder}")
                } else {
                    "another process".to_string()
                };
                let dir = path.parent().unwrap_or(path);
                return Err(Error::ModelDirBusy {
                    model_dir: dir.to_path_buf(),
                    holder: format!(
                        "{who} (or another estimator in it) is training it (lock file {})",
                        path.display()
                    ),
                });
            }
            return Err(Error::io("cannot lock", path, err));
        }
        // Best effort: the pid only makes the other writer's error clearer.
        let _ = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(file)
    }
}

#[cfg(not(unix))]
mod imp {
    use std::fs::{File, OpenOptions};
    use std::path::Path;

    use crate::error::{Error, Result};

    /// Without `flock`, the lock file is only opened: concurrent writers are
    /// not detected on this platform.
    pub fn acquire(path: &Path) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("cannot open the model_dir lock file", path, e))
    }
}
