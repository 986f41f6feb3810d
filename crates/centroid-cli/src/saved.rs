//! The model a model directory holds, as the command line needs it: the
//! parameters it was trained with (from the newest good checkpoint's
//! signature), so that `evaluate`, `predict` and the rest need no flags
//! repeated, and a resumed `train` keeps the settings it started with.

use std::path::Path;
use std::sync::Arc;

use centroid::checkpoint::{self, Loaded, ModelSignature};
use centroid::{
    Dense, Error, InitialClusters, KMeansClustering, KMeansParams, Metric, Result, RunConfig,
};

/// The newest good checkpoint in `model_dir`, if any. A damaged checkpoint
/// with no good one before it is an error; one skipped for an older good
/// one is a warning line on standard error, naming both.
pub fn latest(model_dir: &Path) -> Result<Option<Loaded>> {
    if !model_dir.exists() {
        return Ok(None);
    }
    let (loaded, skipped) = checkpoint::load_latest_good_reporting(model_dir)?;
    if let Some(l) = &loaded {
        for e in &skipped {
            eprintln!(
                "centroid: warning: {}",
                one_line(&checkpoint::fallback_message(e, l))
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

/// The parameters a saved model was trained with.
pub fn params_of(sig: &ModelSignature) -> Result<KMeansParams> {
    let mut p = KMeansParams::new(sig.num_clusters);
    p.distance_metric = Metric::from_name(&sig.distance_metric)?;
    p.use_mini_batch = sig.use_mini_batch;
    p.mini_batch_steps_per_iteration = sig.mini_batch_steps_per_iteration;
    p.random_seed = sig.random_seed;
    p.kmeans_plus_plus_num_retries = sig.kmeans_plus_plus_num_retries;
    p.relative_tolerance = sig.relative_tolerance;
    p.feature_columns = sig.feature_columns.clone();
    p.initial_clusters = initial_clusters_of(sig);
    Ok(p)
}

/// The saved model's initialisation, so that the checkpoints a resumed run
/// writes describe it as the first run did. A restored model never
/// re-initialises, so the stand-ins for an array or a callable (whose values
/// are not saved) are never called.
fn initial_clusters_of(sig: &ModelSignature) -> InitialClusters {
    match sig.initial_clusters.as_str() {
        "kmeans_plus_plus" => InitialClusters::KMeansPlusPlus,
        s if s.starts_with("array[") => {
            let (k, d) = (sig.num_clusters, sig.num_features);
            match Dense::new(vec![0f32; k * d], k, d) {
                Ok(zeros) => InitialClusters::Array(zeros),
                Err(_) => InitialClusters::Random,
            }
        }
        "callable" => InitialClusters::Callable(Arc::new(
            |_: &Dense<'_>, _: usize| -> Result<Dense<'static>> {
                Err(Error::InvalidArgument(
                    "a restored model is not initialised again".into(),
                ))
            },
        )),
        _ => InitialClusters::Random,
    }
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
        params_of(&loaded.signature)?,
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
