//! Crash-safe checkpoints of the model state in `model_dir`.
//!
//! Each checkpoint is one safetensors file, `model.ckpt-<step>.safetensors`,
//! holding the variables under their spec names and, as metadata, the format
//! version, the global step, the model's parameters and CRC-32s (safetensors
//! validates its header but not the values). Format 1 checksums the tensor
//! bytes only; format 2 adds `file_crc32`, a CRC-32 of the whole file taken
//! with that field's own eight hex digits set to `0`, so an edited parameter
//! in the header is caught too. Both formats are read. A file is written
//! whole or not at all: written under a fresh, unpredictable temporary name
//! opened with `O_EXCL` (never through a planted symlink), flushed to disk,
//! then renamed. The index file `checkpoint` names the latest and the kept
//! checkpoints, in TensorFlow's text layout.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::float::{DType, Float};
use crate::kernels::Metric;
use crate::matrix::Matrix;
use crate::model::{AnyState, ModelState};
use crate::params::{InitKind, Mode, Retries};

pub const FORMAT_NAME: &str = "centroid-checkpoint";
/// The version this centroid writes; it reads every version up to it.
pub const FORMAT_VERSION: u32 = 2;
/// Metadata key of the whole-file CRC-32 (format 2 on).
const FILE_CRC_KEY: &str = "file_crc32";
/// The value `file_crc32` has while the file's CRC-32 is computed.
const FILE_CRC_PLACEHOLDER: &str = "00000000";
/// The index file in `model_dir` naming the latest and the kept checkpoints.
pub const INDEX_FILE: &str = "checkpoint";
const PREFIX: &str = "model.ckpt-";
const SUFFIX: &str = ".safetensors";

/// What a checkpoint says about the model that wrote it; compared against the
/// current parameters before a model directory is reused. Stored as JSON
/// under the reference's argument names (see [`SignatureRecord`]), so that
/// checkpoints written before these fields were typed still load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SignatureRecord", into = "SignatureRecord")]
pub struct ModelSignature {
    /// k.
    pub num_clusters: usize,
    /// d.
    pub num_features: usize,
    /// The element type of the variables.
    pub dtype: DType,
    /// The distance the model clusters by.
    pub distance_metric: Metric,
    /// The update rule.
    pub mode: Mode,
    /// How the first centres were chosen.
    pub initial_clusters: InitKind,
    /// The seed in force when the model was trained.
    pub random_seed: u64,
    /// The k-means++ retries setting.
    pub kmeans_plus_plus_num_retries: Retries,
    /// The relative tolerance that stops training, if any.
    pub relative_tolerance: Option<f64>,
    /// The feature columns joined, in order, if named.
    pub feature_columns: Option<Vec<String>>,
}

/// The signature as checkpoints store it: the reference's names and plain
/// values (format version 1).
#[derive(Serialize, Deserialize)]
struct SignatureRecord {
    num_clusters: usize,
    num_features: usize,
    dtype: DType,
    distance_metric: String,
    use_mini_batch: bool,
    mini_batch_steps_per_iteration: u64,
    initial_clusters: String,
    random_seed: u64,
    kmeans_plus_plus_num_retries: i64,
    relative_tolerance: Option<f64>,
    feature_columns: Option<Vec<String>>,
}

impl From<ModelSignature> for SignatureRecord {
    fn from(s: ModelSignature) -> Self {
        SignatureRecord {
            num_clusters: s.num_clusters,
            num_features: s.num_features,
            dtype: s.dtype,
            distance_metric: s.distance_metric.name().to_string(),
            use_mini_batch: s.mode.use_mini_batch(),
            mini_batch_steps_per_iteration: s.mode.steps_per_iteration(),
            initial_clusters: s.initial_clusters.to_string(),
            random_seed: s.random_seed,
            kmeans_plus_plus_num_retries: s.kmeans_plus_plus_num_retries.to_i64(),
            relative_tolerance: s.relative_tolerance,
            feature_columns: s.feature_columns,
        }
    }
}

impl TryFrom<SignatureRecord> for ModelSignature {
    type Error = String;

    fn try_from(r: SignatureRecord) -> std::result::Result<Self, String> {
        if r.mini_batch_steps_per_iteration == 0 {
            return Err("the parameters say mini_batch_steps_per_iteration = 0".into());
        }
        let mode = Mode::from_flags(r.use_mini_batch, r.mini_batch_steps_per_iteration)
            .map_err(|e| e.to_string())?;
        Ok(ModelSignature {
            num_clusters: r.num_clusters,
            num_features: r.num_features,
            dtype: r.dtype,
            distance_metric: Metric::from_name(&r.distance_metric).map_err(|e| e.to_string())?,
            mode,
            initial_clusters: r.initial_clusters.parse()?,
            random_seed: r.random_seed,
            // Any negative value meant "auto"; a count beyond the bound
            // could not have been trained with.
            kmeans_plus_plus_num_retries: Retries::from_i64(r.kmeans_plus_plus_num_retries)
                .map_err(|e| e.to_string())?,
            relative_tolerance: r.relative_tolerance,
            feature_columns: r.feature_columns,
        })
    }
}

/// A variable's value, as `get_variable_value` returns it.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// float32 values.
    F32 {
        /// The values, row-major.
        values: Vec<f32>,
        /// The shape (empty for a scalar).
        shape: Vec<usize>,
    },
    /// float64 values.
    F64 {
        /// The values, row-major.
        values: Vec<f64>,
        /// The shape (empty for a scalar).
        shape: Vec<usize>,
    },
    /// int64 values.
    I64 {
        /// The values, row-major.
        values: Vec<i64>,
        /// The shape (empty for a scalar).
        shape: Vec<usize>,
    },
    /// bool values.
    Bool {
        /// The values, row-major.
        values: Vec<bool>,
        /// The shape (empty for a scalar).
        shape: Vec<usize>,
    },
}

impl Tensor {
    /// The shape (empty for a scalar).
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32 { shape, .. }
            | Tensor::F64 { shape, .. }
            | Tensor::I64 { shape, .. }
            | Tensor::Bool { shape, .. } => shape,
        }
    }
    /// The element type's NumPy name.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            Tensor::F32 { .. } => "float32",
            Tensor::F64 { .. } => "float64",
            Tensor::I64 { .. } => "int64",
            Tensor::Bool { .. } => "bool",
        }
    }
}

/// The path of the checkpoint of `step` in `model_dir`.
pub fn checkpoint_path(model_dir: &Path, step: i64) -> PathBuf {
    model_dir.join(format!("{PREFIX}{step}{SUFFIX}"))
}

/// The step a checkpoint file name stands for.
pub fn step_of(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

/// Accepts a checkpoint's file path or its prefix (`.../model.ckpt-20`).
pub fn resolve(path: &Path) -> PathBuf {
    if path.extension().and_then(|e| e.to_str()) == Some("safetensors") {
        path.to_path_buf()
    } else {
        let mut s = path.as_os_str().to_owned();
        s.push(SUFFIX);
        PathBuf::from(s)
    }
}

/// The checkpoints in `model_dir`, oldest first: those the index names, or,
/// when the index is missing or unreadable, every checkpoint file found.
pub fn list(model_dir: &Path) -> Vec<PathBuf> {
    let mut steps: Vec<i64> = match fs::read_to_string(model_dir.join(INDEX_FILE)) {
        Ok(text) => parse_index(&text),
        Err(_) => Vec::new(),
    };
    // An index that names only files which are gone says nothing: look at
    // what is on disk rather than take the model for a fresh one.
    steps.retain(|&s| checkpoint_path(model_dir, s).is_file());
    if steps.is_empty() {
        if let Ok(entries) = fs::read_dir(model_dir) {
            steps = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| step_of(&e.path()))
                .collect();
        }
    }
    steps.sort_unstable();
    steps.dedup();
    steps
        .into_iter()
        .map(|s| checkpoint_path(model_dir, s))
        .filter(|p| p.is_file())
        .collect()
}

/// The newest checkpoint in `model_dir`, if any.
pub fn latest(model_dir: &Path) -> Option<PathBuf> {
    list(model_dir).pop()
}

fn parse_index(text: &str) -> Vec<i64> {
    text.lines()
        .filter_map(|l| {
            let (_, v) = l.split_once(':')?;
            step_of(Path::new(v.trim().trim_matches('"')))
        })
        .collect()
}

/// Writes `state` as the checkpoint of its global step, updates the index,
/// and deletes the oldest checkpoints beyond `keep_max` (0 keeps all).
pub fn save(
    model_dir: &Path,
    state: &AnyState,
    signature: &ModelSignature,
    keep_max: usize,
) -> Result<PathBuf> {
    save_with_input_state(model_dir, state, signature, keep_max, None)
}

/// [`save`], also recording `input_state` under the metadata key
/// [`INPUT_STATE_KEY`]: an opaque string from whoever feeds the input (the
/// command line's position in its file stream), handed back as
/// [`Loaded::input_state`] so that a resumed run continues where this one
/// stopped.
pub fn save_with_input_state(
    model_dir: &Path,
    state: &AnyState,
    signature: &ModelSignature,
    keep_max: usize,
    input_state: Option<&str>,
) -> Result<PathBuf> {
    fs::create_dir_all(model_dir)
        .map_err(|e| Error::io("cannot create model_dir", model_dir, e))?;
    let step = state.global_step();
    let bytes = crate::model::with_state!(state, s, T => encode(s, signature, input_state)?);
    let path = checkpoint_path(model_dir, step);
    write_atomically(&path, &bytes)?;

    let mut kept = list(model_dir);
    // Checkpoints of later steps than this one can only be ones training
    // could not resume from (damaged, or of a newer format): leave their
    // files alone but drop them from the index, so that the index's latest
    // is the checkpoint just written.
    kept.retain(|p| {
        let later = step_of(p).is_some_and(|s| s > step);
        if later {
            log::warn!(
                "dropping {} from the index: training went on from an earlier step",
                p.display()
            );
        }
        !later
    });
    if !kept.contains(&path) {
        kept.push(path.clone());
    }
    kept.sort_by_key(|p| step_of(p));
    let drop_count = if keep_max > 0 && kept.len() > keep_max {
        kept.len() - keep_max
    } else {
        0
    };
    let mut dropped: Vec<PathBuf> = kept.drain(..drop_count).collect();
    if keep_max > 0 {
        // Files older than the oldest kept checkpoint that the index no
        // longer names (a run killed between writing the index and removing
        // them) are beyond keep_max too.
        dropped.extend(older_files_on_disk(
            model_dir,
            kept.first().and_then(|p| step_of(p)),
        ));
        dropped.sort();
        dropped.dedup();
    }
    let mut index = format!("model_checkpoint_path: {:?}\n", file_name(&path));
    for p in &kept {
        index.push_str(&format!("all_model_checkpoint_paths: {:?}\n", file_name(p)));
    }
    write_atomically(&model_dir.join(INDEX_FILE), index.as_bytes())?;
    for p in dropped {
        // A checkpoint that cannot be removed is only wasted space.
        if let Err(e) = fs::remove_file(&p) {
            log::warn!("could not remove old checkpoint {}: {e}", p.display());
        }
    }
    Ok(path)
}

/// Checkpoint files in `model_dir` of steps before `step`.
fn older_files_on_disk(model_dir: &Path, step: Option<i64>) -> Vec<PathBuf> {
    let (Some(step), Ok(entries)) = (step, fs::read_dir(model_dir)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| step_of(p).is_some_and(|s| s < step))
        .collect()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the
/// new one, never a part: temporary file, fsync, rename, fsync of the folder.
/// The temporary file has an unpredictable name and is created with
/// `O_EXCL`, so a file or symlink planted under a guessed name is never
/// written through; the rename replaces a symlink at `path` rather than
/// following it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let (tmp, mut f) = crate::safe_io::create_temporary(dir, &file_name(path))
        .map_err(|e| Error::io("cannot create a temporary file for", path, e))?;
    let result = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            // Not every platform can sync a folder; the rename is already done.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("cannot write", path, e)
    })
}

fn dtype_of<T: Float>() -> Dtype {
    match T::DTYPE {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
    }
}

fn encode<T: Float>(
    s: &ModelState<T>,
    signature: &ModelSignature,
    input_state: Option<&str>,
) -> Result<Vec<u8>> {
    let (k, d) = (s.k(), s.d());
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = vec![
        (
            "clusters".into(),
            dtype_of::<T>(),
            vec![k, d],
            bytemuck::cast_slice(s.clusters.as_slice()).to_vec(),
        ),
        (
            "initialized".into(),
            Dtype::BOOL,
            vec![],
            vec![s.initialized as u8],
        ),
        (
            "global_step".into(),
            Dtype::I64,
            vec![],
            s.global_step.to_le_bytes().to_vec(),
        ),
    ];
    if let Some(c) = &s.cluster_counts {
        owned.push((
            "cluster_counts".into(),
            Dtype::I64,
            vec![k],
            c.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }
    if let Some(c) = &s.clusters_updated {
        owned.push((
            "clusters_updated".into(),
            dtype_of::<T>(),
            vec![k, d],
            bytemuck::cast_slice(c.as_slice()).to_vec(),
        ));
    }
    if let Some(u) = s.update_in_steps {
        owned.push((
            "update_in_steps".into(),
            Dtype::I64,
            vec![],
            u.to_le_bytes().to_vec(),
        ));
    }
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    let checksum = checksum(owned.iter().map(|(n, _, _, b)| (n.as_str(), b.as_slice())));
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT_NAME.to_string());
    meta.insert("format_version".to_string(), FORMAT_VERSION.to_string());
    meta.insert("global_step".to_string(), s.global_step.to_string());
    meta.insert("crc32".to_string(), format!("{checksum:08x}"));
    meta.insert(FILE_CRC_KEY.to_string(), FILE_CRC_PLACEHOLDER.to_string());
    meta.insert(
        "params".to_string(),
        serde_json::to_string(signature).map_err(|e| Error::Export(e.to_string()))?,
    );
    if let Some(i) = input_state {
        meta.insert(INPUT_STATE_KEY.to_string(), i.to_string());
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, dt, shape, b)| TensorView::new(*dt, shape.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::InvalidShape(format!("checkpoint tensor: {e}")))?;
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::InvalidShape(format!("checkpoint encoding: {e}")))?;
    let mut bytes = canonical_header(bytes)
        .map_err(|e| Error::InvalidShape(format!("checkpoint encoding: {e}")))?;
    let at = file_crc_position(&bytes)
        .map_err(|e| Error::InvalidShape(format!("checkpoint encoding: {e}")))?;
    let crc = file_checksum(&bytes, at);
    bytes[at..at + 8].copy_from_slice(format!("{crc:08x}").as_bytes());
    Ok(bytes)
}

/// Puts the keys of a safetensors file's `__metadata__` in sorted order.
/// safetensors takes the metadata as a `HashMap`, whose order changes from
/// process to process; sorted keys make a checkpoint's bytes a function of
/// its contents alone, so a resumed run writes the same file as an
/// uninterrupted one. The same strings re-encoded by serde_json (which
/// safetensors also uses) take the same bytes, so nothing else moves.
fn canonical_header(mut bytes: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    const PREFIX: &[u8] = b"{\"__metadata__\":";
    let header_len = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or("shorter than a safetensors header")?;
    let end = header_len
        .checked_add(8)
        .filter(|&e| e <= bytes.len())
        .ok_or("the header runs past the end of the file")?;
    let start = 8 + PREFIX.len();
    if !bytes[8..end].starts_with(PREFIX) {
        return Err("the metadata is not at the head of the header".into());
    }
    let mut objects = serde_json::Deserializer::from_slice(&bytes[start..end])
        .into_iter::<std::collections::BTreeMap<String, String>>();
    let meta = objects
        .next()
        .ok_or("no metadata")?
        .map_err(|e| e.to_string())?;
    let used = objects.byte_offset();
    let sorted = serde_json::to_vec(&meta).map_err(|e| e.to_string())?;
    if sorted.len() != used {
        return Err("the metadata changed length when sorted".into());
    }
    bytes[start..start + used].copy_from_slice(&sorted);
    Ok(bytes)
}

/// Where the eight hex digits of `file_crc32` sit in a checkpoint's bytes:
/// inside the JSON header, right after the one `"file_crc32":"`. (Every
/// other string in the header is a key or value whose quotes JSON escapes,
/// so the pattern cannot occur elsewhere by accident.)
fn file_crc_position(bytes: &[u8]) -> std::result::Result<usize, String> {
    let header_len = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or("shorter than a safetensors header")?;
    let end = usize::try_from(header_len)
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&e| e <= bytes.len())
        .ok_or("the header runs past the end of the file")?;
    let pattern = format!("\"{FILE_CRC_KEY}\":\"");
    let header = &bytes[8..end];
    let mut found = header
        .windows(pattern.len())
        .enumerate()
        .filter(|(_, w)| *w == pattern.as_bytes())
        .map(|(i, _)| 8 + i + pattern.len());
    let at = found.next().ok_or("missing whole-file checksum")?;
    if found.next().is_some() {
        return Err("the whole-file checksum appears twice".into());
    }
    if at + 9 > end || bytes[at + 8] != b'"' {
        return Err("the whole-file checksum is not 8 hex digits".into());
    }
    Ok(at)
}

/// The CRC-32 of the whole file with the checksum's own digits taken as `0`.
fn file_checksum(bytes: &[u8], at: usize) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..at]);
    h.update(FILE_CRC_PLACEHOLDER.as_bytes());
    h.update(&bytes[at + 8..]);
    h.finalize()
}

fn checksum<'b>(tensors: impl Iterator<Item = (&'b str, &'b [u8])>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for (name, bytes) in tensors {
        h.update(name.as_bytes());
        h.update(bytes);
    }
    h.finalize()
}

/// A checkpoint read back: the state and the signature of its model.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The checkpoint file read.
    pub path: PathBuf,
    /// The variables.
    pub state: AnyState,
    /// The parameters of the model that wrote it.
    pub signature: ModelSignature,
    /// What the input's feeder recorded with this checkpoint (see
    /// [`save_with_input_state`]); `None` for checkpoints without one.
    pub input_state: Option<String>,
}

/// The metadata key of [`Loaded::input_state`].
pub const INPUT_STATE_KEY: &str = "input_state";

/// Reads and verifies one checkpoint file.
pub fn load(path: &Path) -> Result<Loaded> {
    let bytes = fs::read(path).map_err(|e| Error::io("cannot read checkpoint", path, e))?;
    load_bytes(path, &bytes)
}

/// Verifies and reads a checkpoint held in memory; `path` names it in
/// messages.
pub fn load_bytes(path: &Path, bytes: &[u8]) -> Result<Loaded> {
    decode(bytes)
        .and_then(|(state, signature, input_state)| match step_of(path) {
            Some(named) if named != state.global_step() => Err(format!(
                "the file name says step {named} but the checkpoint holds global_step {}",
                state.global_step()
            )),
            _ => Ok((state, signature, input_state)),
        })
        .map(|(state, signature, input_state)| Loaded {
            path: path.to_path_buf(),
            state,
            signature,
            input_state,
        })
        .map_err(|reason| Error::CorruptCheckpoint {
            path: path.to_path_buf(),
            reason,
        })
}

/// Loads the newest checkpoint that reads back intact. A damaged newer one is
/// skipped with a warning (to the `log` crate), so a crash or a bad disk
/// block costs at most the steps since the previous save. `Ok(None)` when
/// there is no checkpoint.
pub fn load_latest_good(model_dir: &Path) -> Result<Option<Loaded>> {
    let (loaded, skipped) = load_latest_good_reporting(model_dir)?;
    if let Some(l) = &loaded {
        for e in &skipped {
            log::warn!("{}", fallback_message(e, l));
        }
    }
    Ok(loaded)
}

/// As [`load_latest_good`], and also returns the error of every damaged
/// checkpoint skipped, newest first, for the caller to report.
pub fn load_latest_good_reporting(model_dir: &Path) -> Result<(Option<Loaded>, Vec<Error>)> {
    let all = list(model_dir);
    let mut skipped = Vec::new();
    for path in all.iter().rev() {
        match load(path) {
            Ok(l) => return Ok((Some(l), skipped)),
            Err(e) => skipped.push(e),
        }
    }
    match skipped.into_iter().next() {
        Some(e) => Err(e),
        None => Ok((None, Vec::new())),
    }
}

/// The one-line warning for a damaged checkpoint skipped in favour of `used`.
pub fn fallback_message(damaged: &Error, used: &Loaded) -> String {
    format!(
        "{damaged}; using the checkpoint of step {} instead ({})",
        used.state.global_step(),
        used.path.display()
    )
}

/// Tidies `model_dir` before training resumes from `resume_step` (0 for a
/// fresh model): removes the temporary files a killed writer left, and the
/// oldest checkpoints up to `resume_step` beyond `keep_max` (0 keeps all),
/// whether or not the index still names them. Checkpoints after
/// `resume_step` (damaged ones, skipped when loading) are left for the user
/// to look at. Call only while holding the model_dir lock.
pub fn clean_up(model_dir: &Path, resume_step: i64, keep_max: usize) {
    let removed = crate::safe_io::remove_stale_temporaries(model_dir);
    if removed > 0 {
        log::info!(
            "removed {removed} temporary file(s) an interrupted run left in {}",
            model_dir.display()
        );
    }
    if keep_max == 0 {
        return;
    }
    let Ok(entries) = fs::read_dir(model_dir) else {
        return;
    };
    let mut steps: Vec<i64> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| step_of(&e.path()))
        .filter(|&s| s <= resume_step)
        .collect();
    steps.sort_unstable();
    let extra = steps.len().saturating_sub(keep_max);
    for s in &steps[..extra] {
        let p = checkpoint_path(model_dir, *s);
        if let Err(e) = fs::remove_file(&p) {
            log::warn!("could not remove old checkpoint {}: {e}", p.display());
        }
    }
}

type Decoded = (AnyState, ModelSignature, Option<String>);

fn decode(bytes: &[u8]) -> std::result::Result<Decoded, String> {
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
    let meta = metadata.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT_NAME) {
        return Err("not a centroid checkpoint".into());
    }
    let version: u32 = meta
        .get("format_version")
        .and_then(|v| v.parse().ok())
        .ok_or("missing format version")?;
    if version > FORMAT_VERSION {
        return Err(format!(
            "format version {version} is newer than this centroid reads ({FORMAT_VERSION})"
        ));
    }
    if version >= 2 {
        let at = file_crc_position(bytes)?;
        let stored = std::str::from_utf8(&bytes[at..at + 8]).unwrap_or("");
        let actual = format!("{:08x}", file_checksum(bytes, at));
        if stored != actual {
            return Err(format!(
                "whole-file checksum mismatch (stored {stored:?}, computed {actual}): the file is damaged or was edited"
            ));
        }
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("unreadable tensors ({e})"))?;
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    let mut views = Vec::new();
    for n in &names {
        views.push((*n, st.tensor(n).map_err(|e| e.to_string())?));
    }
    let expected = meta.get("crc32").ok_or("missing checksum")?;
    let actual = format!(
        "{:08x}",
        checksum(views.iter().map(|(n, v)| (*n, v.data())))
    );
    if &actual != expected {
        return Err(format!(
            "checksum mismatch (stored {expected}, computed {actual}): the file is damaged"
        ));
    }
    let signature: ModelSignature =
        serde_json::from_str(meta.get("params").ok_or("missing parameters")?)
            .map_err(|e| format!("bad parameters ({e})"))?;
    let get = |name: &str| views.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
    let clusters = get("clusters").ok_or("missing variable `clusters`")?;
    let state = match clusters.dtype() {
        Dtype::F32 => AnyState::F32(decode_state::<f32>(&get)?),
        Dtype::F64 => AnyState::F64(decode_state::<f64>(&get)?),
        other => return Err(format!("`clusters` has unsupported dtype {other:?}")),
    };
    check_consistent(&state, &signature)?;
    if let Some(m) = meta.get("global_step") {
        if m.parse::<i64>().ok() != Some(state.global_step()) {
            return Err(format!(
                "the header says global_step {m:?} but the variable holds {}",
                state.global_step()
            ));
        }
    }
    let input_state = meta.get(INPUT_STATE_KEY).cloned();
    Ok((state, signature, input_state))
}

fn decode_state<'v, T: Float>(
    get: &dyn Fn(&str) -> Option<&'v TensorView<'v>>,
) -> std::result::Result<ModelState<T>, String> {
    let matrix = |name: &str| -> std::result::Result<Option<Matrix<T>>, String> {
        let Some(v) = get(name) else { return Ok(None) };
        if v.dtype() != dtype_of::<T>() || v.shape().len() != 2 {
            return Err(format!(
                "`{name}` has dtype {:?} and shape {:?}",
                v.dtype(),
                v.shape()
            ));
        }
        let values: Vec<T> = bytemuck::pod_collect_to_vec(v.data());
        Matrix::new(values, v.shape()[0], v.shape()[1])
            .map(Some)
            .map_err(|e| e.to_string())
    };
    let ints = |name: &str| -> std::result::Result<Option<Vec<i64>>, String> {
        let Some(v) = get(name) else { return Ok(None) };
        if v.dtype() != Dtype::I64 {
            return Err(format!("`{name}` has dtype {:?}", v.dtype()));
        }
        Ok(Some(bytemuck::pod_collect_to_vec(v.data())))
    };
    let scalar = |name: &str| -> std::result::Result<Option<i64>, String> {
        match ints(name)? {
            Some(v) if v.len() == 1 => Ok(Some(v[0])),
            Some(v) => Err(format!(
                "`{name}` should be a scalar, has {} values",
                v.len()
            )),
            None => Ok(None),
        }
    };
    let clusters = matrix("clusters")?.ok_or("missing `clusters`")?;
    let k = clusters.rows();
    if k == 0 || clusters.cols() == 0 {
        return Err(format!(
            "`clusters` has shape [{k}, {}]: a model needs at least one centre and one feature",
            clusters.cols()
        ));
    }
    let initialized = match get("initialized") {
        None => true,
        Some(v) if v.dtype() == Dtype::BOOL && v.data().len() == 1 => v.data()[0] != 0,
        Some(v) => {
            return Err(format!(
                "`initialized` should be one bool, has dtype {:?} and shape {:?}",
                v.dtype(),
                v.shape()
            ))
        }
    };
    if !initialized {
        return Err("`initialized` is false: the checkpoint holds no centres".into());
    }
    let global_step = scalar("global_step")?.ok_or("missing `global_step`")?;
    if global_step < 0 {
        return Err(format!("`global_step` is negative ({global_step})"));
    }
    let cluster_counts = ints("cluster_counts")?;
    if cluster_counts.as_ref().is_some_and(|c| c.len() != k) {
        return Err("`cluster_counts` does not have one entry per cluster".into());
    }
    if let Some((j, c)) = cluster_counts
        .iter()
        .flatten()
        .enumerate()
        .find(|(_, c)| **c < 0)
    {
        return Err(format!("`cluster_counts` of cluster {j} is negative ({c})"));
    }
    let clusters_updated = matrix("clusters_updated")?;
    if clusters_updated
        .as_ref()
        .is_some_and(|c| (c.rows(), c.cols()) != (k, clusters.cols()))
    {
        return Err("`clusters_updated` does not have the shape of `clusters`".into());
    }
    let update_in_steps = scalar("update_in_steps")?;
    if let Some(u) = update_in_steps.filter(|u| *u < 0) {
        return Err(format!("`update_in_steps` is negative ({u})"));
    }
    let state = ModelState {
        clusters,
        initialized,
        global_step,
        cluster_counts,
        clusters_updated,
        update_in_steps,
    };
    if let Some((name, row, col)) = state.first_non_finite() {
        return Err(format!("`{name}` row {row}, column {col} is not finite"));
    }
    Ok(state)
}

/// Checks that the variables and the parameters stored beside them describe
/// the same model: its shape, element type, and the variables its update
/// mode needs (no more, no fewer).
fn check_consistent(state: &AnyState, sig: &ModelSignature) -> std::result::Result<(), String> {
    if (sig.num_clusters, sig.num_features, sig.dtype) != (state.k(), state.d(), state.dtype()) {
        return Err(format!(
            "the parameters say {} x {} {} but `clusters` is {} x {} {}",
            sig.num_clusters,
            sig.num_features,
            sig.dtype,
            state.k(),
            state.d(),
            state.dtype()
        ));
    }
    let is_async = sig.mode.is_async();
    let expected = [
        ("cluster_counts", sig.mode.use_mini_batch()),
        ("clusters_updated", is_async),
        ("update_in_steps", is_async),
    ];
    for (name, wanted) in expected {
        let present = variable(state, name).is_some();
        if present != wanted {
            return Err(format!(
                "variable `{name}` is {} but the model's update mode {} it",
                if present { "present" } else { "missing" },
                if wanted { "needs" } else { "does not have" }
            ));
        }
    }
    Ok(())
}

/// The value of one variable of a loaded state.
pub fn variable(state: &AnyState, name: &str) -> Option<Tensor> {
    fn float<T: Float>(m: &Matrix<T>) -> Tensor {
        let shape = vec![m.rows(), m.cols()];
        let v: Vec<f64> = m.as_slice().iter().map(|x| x.to_f64_exact()).collect();
        match T::DTYPE {
            DType::F32 => Tensor::F32 {
                values: v.iter().map(|&x| x as f32).collect(),
                shape,
            },
            DType::F64 => Tensor::F64 { values: v, shape },
        }
    }
    crate::model::with_state!(state, s, T => match name {
        "clusters" => Some(float(&s.clusters)),
        "initialized" => Some(Tensor::Bool { values: vec![s.initialized], shape: vec![] }),
        "global_step" => Some(Tensor::I64 { values: vec![s.global_step], shape: vec![] }),
        "cluster_counts" => s.cluster_counts.as_ref().map(|c| Tensor::I64 { values: c.clone(), shape: vec![c.len()] }),
        "clusters_updated" => s.clusters_updated.as_ref().map(float),
        "update_in_steps" => s.update_in_steps.map(|u| Tensor::I64 { values: vec![u], shape: vec![] }),
        _ => None,
    })
}

/// The names of the variables a state holds, in the spec's order.
pub fn variable_names(state: &AnyState) -> Vec<String> {
    [
        "clusters",
        "initialized",
        "global_step",
        "cluster_counts",
        "clusters_updated",
        "update_in_steps",
    ]
    .into_iter()
    .filter(|n| variable(state, n).is_some())
    .map(String::from)
    .collect()
}
