//! Writing inside `model_dir` without following symlinks.
//!
//! `model_dir` itself may be a symlink the user chose; the names inside it are
//! ours, and a symlink planted under one of them must never redirect a write
//! to a file elsewhere. New files are created with `O_EXCL` under names no
//! one can guess; files we append to are opened with `O_NOFOLLOW`; folders we
//! write into must be real folders.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Marks our temporary files: `.<final name>.tmp-<random>`.
const TEMPORARY_MARK: &str = ".tmp-";

/// Creates a new temporary file in `dir` for the final name `final_name`,
/// with an unpredictable name, refusing any existing file or symlink there.
pub fn create_temporary(dir: &Path, final_name: &str) -> io::Result<(PathBuf, File)> {
    let mut last_error = None;
    for _ in 0..16 {
        let tag: u64 = rand::random();
        let path = dir.join(format!(".{final_name}{TEMPORARY_MARK}{tag:016x}"));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        nofollow(&mut opts);
        match opts.open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary name")))
}

/// Opens `path` for appending, creating it if missing; a symlink there is an
/// error, not a redirection.
pub fn open_append(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    nofollow(&mut opts);
    opts.open(path).map_err(|e| explain_symlink(path, e))
}

/// Makes sure `path` is a real folder (not a symlink to one), creating it if
/// it is missing.
pub fn ensure_real_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(io::Error::other(
            "is a symlink; centroid does not write through symlinks inside model_dir",
        )),
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::other("exists and is not a folder")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => ensure_real_dir(path),
            other => other,
        },
        Err(e) => Err(e),
    }
}

/// Whether a file name in `model_dir` is one of our temporary files.
pub fn is_temporary_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMPORARY_MARK)
}

/// Removes the temporary files a crashed writer left in `dir`; returns how
/// many. Only call it while holding the model_dir lock: a live writer's
/// temporary file looks the same.
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_file = entry
            .file_type()
            .map(|t| t.is_file() || t.is_symlink())
            .unwrap_or(false);
        if is_file && is_temporary_name(name) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(unix)]
fn nofollow(opts: &mut OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
}

#[cfg(not(unix))]
fn nofollow(_: &mut OpenOptions) {}

fn explain_symlink(path: &Path, e: io::Error) -> io::Error {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return io::Error::other(format!(
            "{} is a symlink; centroid does not write through symlinks inside model_dir",
            path.display()
        ));
    }
    let _ = path;
    e
}
