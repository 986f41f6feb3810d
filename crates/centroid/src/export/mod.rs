//! TensorFlow SavedModel export, written by hand: no TensorFlow and no protoc
//! at build time or run time.
//!
//! The model is a TF1-style SavedModel: one MetaGraphDef tagged `serve` whose
//! graph holds only constants, placeholders and math ops (no variables, so
//! `variables/` stays empty and no checkpoint is needed to serve). TensorFlow
//! 2's `tf.saved_model.load` reads it through its v1 loader, TensorFlow 1's
//! `tf.compat.v1.saved_model.loader.load` and TensorFlow Serving read it
//! directly. The graph computes what `predict` computes:
//!
//! - squared Euclidean: `max(||x||^2 - 2 x.c + ||c||^2, 0)`;
//! - cosine: `1 - (x . c^) / max(||x||, 1e-12)` with `c^` the normalised
//!   centre (stored normalised, as the kernels prepare it) and the row's norm
//!   taken in float64, as predict takes it;
//! - `cluster_index`: the argmin over centres (int64, ties to the lowest index).
//!
//! Signatures `serving_default` and `cluster_index` return the index,
//! `all_distances` the `n x k` distances, each under the output key `output`,
//! with one input per serving feature keyed by the feature's name. The
//! centres themselves are the constant `clusters:0` (and, under cosine, the
//! normalised copy `clusters_normalized:0`), so a user can read them back,
//! e.g. `tf.saved_model.load(path).prune([], "clusters:0")()`.
//!
//! Entry points: [`write_saved_model`] (one directory),
//! [`write_saved_model_with_assets`] (plus `assets.extra/` files) and
//! [`export_timestamped`] (a `<seconds since epoch>` directory under a base,
//! what the estimator's `export_saved_model` needs).

pub mod graph;
/// Copies of TensorFlow's protobuf messages (prost-derived); their fields are
/// documented in TensorFlow's `.proto` files, under the same names.
#[allow(missing_docs)]
pub mod proto;
pub mod text;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::Metric;
use crate::matrix::MatRef;
use proto::{
    DataType, MetaGraphDef, MetaInfoDef, SavedModel, SignatureDef, TensorInfo, TensorShapeProto,
};

/// File name of the binary SavedModel.
pub const SAVED_MODEL_PB: &str = "saved_model.pb";
/// File name of the text-format SavedModel (`as_text`).
pub const SAVED_MODEL_PBTXT: &str = "saved_model.pbtxt";
/// The directory TensorFlow looks in for variables (empty here).
pub const VARIABLES_DIR: &str = "variables";
/// The MetaGraphDef tag serving systems load.
pub const SERVE_TAG: &str = "serve";
/// Signature keys and their single output key.
pub const SERVING_DEFAULT_SIGNATURE: &str = "serving_default";
/// The signature giving the nearest cluster.
pub const CLUSTER_INDEX_SIGNATURE: &str = "cluster_index";
/// The signature giving the distances to every centre.
pub const ALL_DISTANCES_SIGNATURE: &str = "all_distances";
/// The output key of every signature.
pub const OUTPUT_KEY: &str = "output";
/// The method of every signature (TensorFlow's PREDICT_METHOD_NAME).
pub const PREDICT_METHOD_NAME: &str = "tensorflow/serving/predict";
/// The largest message protobuf (and so TensorFlow) parses: 2 GiB - 1.
const MAX_PROTO_BYTES: usize = i32::MAX as usize;
/// The TensorFlow release the graph's ops and versions were checked against.
pub const TENSORFLOW_VERSION: &str = "2.15.1";

/// The serving input: one placeholder per feature, in order; their widths
/// sum to the model's dimension `d`. Served rows are the features'
/// columns joined left to right in this order.
///
/// With `parse_examples`, clients send serialized `tf.Example` protos
/// instead (TensorFlow's `build_parsing_serving_input_receiver_fn`): the
/// one input `examples` is a string vector, and the graph parses each
/// feature as a required float list of its width, as TensorFlow's
/// ParseExampleV2 does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServingInputReceiver {
    /// The serving inputs as (name, width), in the order they are joined.
    pub features: Vec<(String, usize)>,
    /// Whether serving parses serialized `tf.Example` protos (one string
    /// input) instead of taking the features as tensors.
    pub parse_examples: bool,
}

/// The signature input of a parsing receiver, as TensorFlow names it.
pub const EXAMPLES_INPUT: &str = "examples";

impl ServingInputReceiver {
    /// One feature holding the whole row.
    pub fn single(name: &str, width: usize) -> Self {
        Self {
            features: vec![(name.to_owned(), width)],
            parse_examples: false,
        }
    }

    /// Features parsed from serialized `tf.Example` protos.
    pub fn parsing(features: Vec<(String, usize)>) -> Self {
        Self {
            features,
            parse_examples: true,
        }
    }

    /// Checks the features against a model of dimension `d`.
    fn validate(&self, d: usize) -> Result<()> {
        if self.features.is_empty() {
            return Err(Error::arg(
                "the serving input has no features; give at least one (name, width)",
            ));
        }
        let mut seen = BTreeMap::new();
        let mut total = 0usize;
        for (i, (name, width)) in self.features.iter().enumerate() {
            if name.is_empty() {
                return Err(Error::arg(format!(
                    "serving input feature {i} has an empty name"
                )));
            }
            if let Some(first) = seen.insert(name.as_str(), i) {
                return Err(Error::arg(format!(
                    "serving input feature name {name:?} is used twice (features {first} and {i})"
                )));
            }
            if *width == 0 {
                return Err(Error::arg(format!(
                    "serving input feature {name:?} has width 0; widths must be at least 1"
                )));
            }
            total = total.saturating_add(*width);
        }
        if total != d {
            let widths: Vec<String> = self
                .features
                .iter()
                .map(|(n, w)| format!("{n}: {w}"))
                .collect();
            return Err(Error::InvalidShape(format!(
                "the serving input's feature widths ({}) sum to {total}, but the model's centres have {d} columns",
                widths.join(", ")
            )));
        }
        Ok(())
    }
}

/// Writes a SavedModel serving `centres` into `dir`, which must not exist yet
/// (its parent is created if needed): `saved_model.pb` (`saved_model.pbtxt`
/// when `as_text`) and an empty `variables/`. The directory appears whole or
/// not at all: it is written under a temporary name beside it and renamed.
pub fn write_saved_model<T: Float>(
    dir: &Path,
    centres: MatRef<'_, T>,
    metric: Metric,
    serving_input: &ServingInputReceiver,
    as_text: bool,
) -> Result<()> {
    write_saved_model_with_assets(dir, centres, metric, serving_input, &[], as_text)
}

/// [`write_saved_model`], also copying each `(destination, source)` of
/// `assets_extra` to `assets.extra/<destination>` (TensorFlow's
/// `assets_extra`; destinations are relative paths, sub-directories are
/// created). The copies are made before the directory is moved into place,
/// so a missing source leaves no export behind.
pub fn write_saved_model_with_assets<T: Float>(
    dir: &Path,
    centres: MatRef<'_, T>,
    metric: Metric,
    serving_input: &ServingInputReceiver,
    assets_extra: &[(String, PathBuf)],
    as_text: bool,
) -> Result<()> {
    let model = saved_model(centres, metric, serving_input)?;
    let encoded_len = prost::Message::encoded_len(&model);
    if encoded_len > MAX_PROTO_BYTES {
        return Err(Error::Export(format!(
            "the model's graph would take {encoded_len} bytes, over the 2 GiB that a protocol buffer \
             (and so a SavedModel graph) can hold; {} centres of width {} are too many to export",
            centres.rows(),
            centres.cols()
        )));
    }
    let assets = check_assets_extra(assets_extra)?;
    let (file_name, contents) = if as_text {
        (SAVED_MODEL_PBTXT, text::to_text(&model).into_bytes())
    } else {
        (SAVED_MODEL_PB, prost::Message::encode_to_vec(&model))
    };

    if fs::symlink_metadata(dir).is_ok() {
        return Err(already_exists(dir));
    }
    let Some(name) = dir.file_name() else {
        return Err(Error::arg(format!(
            "export directory {} does not name a directory",
            dir.display()
        )));
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)
        .map_err(|e| Error::io("create export parent directory", &parent, e))?;

    static EXPORT_SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let staging = parent.join(format!(
        ".{}.partial-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        EXPORT_SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_files(&staging, file_name, &contents, &assets).and_then(|()| {
        // rename() would silently replace an empty directory made meanwhile.
        if fs::symlink_metadata(dir).is_ok() {
            return Err(already_exists(dir));
        }
        fs::rename(&staging, dir)
            .map_err(|e| Error::io("move finished export into place at", dir, e))
    });
    if result.is_err() {
        // Best effort: a leftover staging directory is hidden and harmless.
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// Writes a SavedModel into a new directory under `export_dir_base` named by
/// the current time in seconds since the epoch, as TensorFlow's
/// `export_savedmodel` does, and returns its path. When that name is taken
/// (two exports in one second) it waits for the next second, up to 10 times,
/// as TensorFlow does.
pub fn export_timestamped<T: Float>(
    export_dir_base: &Path,
    centres: MatRef<'_, T>,
    metric: Metric,
    serving_input: &ServingInputReceiver,
    assets_extra: &[(String, PathBuf)],
    as_text: bool,
) -> Result<PathBuf> {
    const ATTEMPTS: usize = 10;
    // A base that is a file would fail every attempt below; say so at once.
    if let Ok(m) = fs::metadata(export_dir_base) {
        if !m.is_dir() {
            return Err(Error::io(
                "cannot export under",
                export_dir_base,
                io::Error::other("it exists and is not a folder"),
            ));
        }
    }
    for _ in 0..ATTEMPTS {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| Error::Export(format!("the system clock is before 1970: {e}")))?
            .as_secs();
        let dir = export_dir_base.join(seconds.to_string());
        if fs::symlink_metadata(&dir).is_err() {
            match write_saved_model_with_assets(
                &dir,
                centres,
                metric,
                serving_input,
                assets_extra,
                as_text,
            ) {
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {}
                other => return other.map(|()| dir),
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1000));
    }
    Err(Error::Export(format!(
        "could not find a free timestamped export directory under {} after {ATTEMPTS} attempts",
        export_dir_base.display()
    )))
}

fn already_exists(dir: &Path) -> Error {
    Error::io(
        "cannot export to",
        dir,
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the export directory already exists",
        ),
    )
}

/// The directory extra assets go to, inside the export.
pub const ASSETS_EXTRA_DIR: &str = "assets.extra";

/// Checks `assets_extra` before anything is written: destinations are
/// distinct relative paths that stay inside `assets.extra/`, sources are
/// readable files. Returns the destinations as paths.
fn check_assets_extra(assets_extra: &[(String, PathBuf)]) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(assets_extra.len());
    for (destination, source) in assets_extra {
        let relative = Path::new(destination);
        let inside = !destination.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            return Err(Error::arg(format!(
                "assets_extra destination {destination:?} must be a relative path inside {ASSETS_EXTRA_DIR}/ \
                 (no '..', no leading '/')"
            )));
        }
        if !seen.insert(relative.to_path_buf()) {
            return Err(Error::arg(format!(
                "assets_extra destination {destination:?} is given twice"
            )));
        }
        match fs::metadata(source) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(Error::arg(format!(
                    "assets_extra source {} for {destination:?} is not a file",
                    source.display()
                )))
            }
            Err(e) => return Err(Error::io("read assets_extra source", source, e)),
        }
        out.push((relative.to_path_buf(), source.clone()));
    }
    Ok(out)
}

fn write_files(
    staging: &Path,
    file_name: &str,
    contents: &[u8],
    assets: &[(PathBuf, PathBuf)],
) -> Result<()> {
    fs::create_dir(staging).map_err(|e| Error::io("create export directory", staging, e))?;
    let variables = staging.join(VARIABLES_DIR);
    fs::create_dir(&variables).map_err(|e| Error::io("create export directory", &variables, e))?;
    let path = staging.join(file_name);
    fs::write(&path, contents).map_err(|e| Error::io("write", &path, e))?;
    for (destination, source) in assets {
        let target = staging.join(ASSETS_EXTRA_DIR).join(destination);
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir)
                .map_err(|e| Error::io("create assets.extra directory", dir, e))?;
        }
        fs::copy(source, &target).map_err(|e| Error::io("copy assets_extra source", source, e))?;
    }
    Ok(())
}

/// The SavedModel message `write_saved_model` writes.
pub fn saved_model<T: Float>(
    centres: MatRef<'_, T>,
    metric: Metric,
    serving_input: &ServingInputReceiver,
) -> Result<SavedModel> {
    let (k, d) = (centres.rows(), centres.cols());
    if k == 0 || d == 0 {
        return Err(Error::arg(format!(
            "cannot export a model with {k} centres of width {d}"
        )));
    }
    if let Some(pos) = centres.as_slice().iter().position(|v| !v.is_finite()) {
        return Err(Error::Export(format!(
            "centre {} holds the non-finite value {} at column {}",
            pos / d,
            centres.as_slice()[pos],
            pos % d
        )));
    }
    serving_input.validate(d)?;

    let placeholders = placeholder_names(serving_input);
    let graph_def = if serving_input.parse_examples {
        graph::build_parsing_graph(centres, metric, &serving_input.features)
    } else {
        graph::build_graph(centres, metric, &placeholders)
    };
    let dtype = graph::data_type::<T>();

    let inputs: BTreeMap<String, TensorInfo> = if serving_input.parse_examples {
        BTreeMap::from([(
            EXAMPLES_INPUT.to_owned(),
            tensor_info(graph::EXAMPLES_NODE, DataType::DtString, &[-1]),
        )])
    } else {
        serving_input
            .features
            .iter()
            .zip(&placeholders)
            .map(|((name, width), p)| {
                (
                    name.clone(),
                    tensor_info(&p.node_name, dtype, &[-1, *width as i64]),
                )
            })
            .collect()
    };
    let signature = |node: &str, dtype: DataType, dims: &[i64]| SignatureDef {
        inputs: inputs.clone(),
        outputs: BTreeMap::from([(OUTPUT_KEY.to_owned(), tensor_info(node, dtype, dims))]),
        method_name: PREDICT_METHOD_NAME.to_owned(),
    };
    let index_signature = signature(graph::CLUSTER_INDEX_NODE, DataType::DtInt64, &[-1]);
    let signature_def = BTreeMap::from([
        (
            SERVING_DEFAULT_SIGNATURE.to_owned(),
            index_signature.clone(),
        ),
        (CLUSTER_INDEX_SIGNATURE.to_owned(), index_signature),
        (
            ALL_DISTANCES_SIGNATURE.to_owned(),
            signature(graph::ALL_DISTANCES_NODE, dtype, &[-1, k as i64]),
        ),
    ]);

    Ok(SavedModel {
        saved_model_schema_version: 1,
        meta_graphs: vec![MetaGraphDef {
            meta_info_def: Some(MetaInfoDef {
                meta_graph_version: String::new(),
                tags: vec![SERVE_TAG.to_owned()],
                tensorflow_version: TENSORFLOW_VERSION.to_owned(),
                tensorflow_git_version: concat!("centroid-", env!("CARGO_PKG_VERSION")).to_owned(),
                stripped_default_attrs: false,
            }),
            graph_def: Some(graph_def),
            signature_def,
        }],
    })
}

fn tensor_info(node: &str, dtype: DataType, dims: &[i64]) -> TensorInfo {
    TensorInfo {
        name: format!("{node}:0"),
        dtype: dtype as i32,
        tensor_shape: Some(TensorShapeProto::of(dims)),
    }
}

/// Graph node names for the features: `features/<name>`, with characters
/// TensorFlow does not allow in node names replaced by `_`, made unique. The
/// signature keys keep the names as given.
fn placeholder_names(serving_input: &ServingInputReceiver) -> Vec<graph::Placeholder> {
    let mut used = std::collections::BTreeSet::new();
    serving_input
        .features
        .iter()
        .enumerate()
        .map(|(i, (name, width))| {
            let clean: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let mut node_name = format!("features/{clean}");
            if !used.insert(node_name.clone()) {
                node_name = format!("features/{clean}_{i}");
                used.insert(node_name.clone());
            }
            graph::Placeholder {
                node_name,
                width: *width,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
