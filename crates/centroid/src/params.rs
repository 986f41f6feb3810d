//! The Estimator's names, constants and validated parameters.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::input::Dense;
use crate::kernels::Metric;

pub const SQUARED_EUCLIDEAN_DISTANCE: &str = "squared_euclidean";
pub const COSINE_DISTANCE: &str = "cosine";
pub const RANDOM_INIT: &str = "random";
pub const KMEANS_PLUS_PLUS_INIT: &str = "kmeans_plus_plus";
pub const SCORE: &str = "score";
pub const CLUSTER_INDEX: &str = "cluster_index";
pub const ALL_DISTANCES: &str = "all_distances";

impl Metric {
    /// Parses a metric name (`"squared_euclidean"` or `"cosine"`).
    pub fn from_name(name: &str) -> Result<Metric> {
        match name {
            SQUARED_EUCLIDEAN_DISTANCE => Ok(Metric::SquaredEuclidean),
            COSINE_DISTANCE => Ok(Metric::Cosine),
            other => Err(Error::arg(format!(
                "unknown distance_metric {other:?}; accepted: {SQUARED_EUCLIDEAN_DISTANCE:?}, {COSINE_DISTANCE:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::SquaredEuclidean => SQUARED_EUCLIDEAN_DISTANCE,
            Metric::Cosine => COSINE_DISTANCE,
        }
    }
}

/// A caller-supplied initialiser: `f(batch, k_remaining)` returns up to
/// `k_remaining` rows to use as initial centres.
pub trait InitFn: Send + Sync {
    fn call(&self, batch: &Dense<'_>, k_remaining: usize) -> Result<Dense<'static>>;
}

impl<F> InitFn for F
where
    F: Fn(&Dense<'_>, usize) -> Result<Dense<'static>> + Send + Sync,
{
    fn call(&self, batch: &Dense<'_>, k_remaining: usize) -> Result<Dense<'static>> {
        self(batch, k_remaining)
    }
}

/// How the first centres are chosen.
#[derive(Clone)]
pub enum InitialClusters {
    /// Distinct rows drawn uniformly from the first batches.
    Random,
    /// Greedy k-means++ on the first batch.
    KMeansPlusPlus,
    /// These centres; `num_clusters` becomes their row count.
    Array(Dense<'static>),
    /// A caller's function, called on successive batches.
    Callable(Arc<dyn InitFn>),
}

impl InitialClusters {
    /// Parses `"random"` or `"kmeans_plus_plus"`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            RANDOM_INIT => Ok(InitialClusters::Random),
            KMEANS_PLUS_PLUS_INIT => Ok(InitialClusters::KMeansPlusPlus),
            other => Err(Error::arg(format!(
                "unknown initial_clusters {other:?}; accepted: {RANDOM_INIT:?}, {KMEANS_PLUS_PLUS_INIT:?}, an array of centres, or a callable"
            ))),
        }
    }

    /// A short description for messages and checkpoint metadata.
    pub fn describe(&self) -> String {
        match self {
            InitialClusters::Random => RANDOM_INIT.into(),
            InitialClusters::KMeansPlusPlus => KMEANS_PLUS_PLUS_INIT.into(),
            InitialClusters::Array(a) => format!("array[{}x{}]", a.rows(), a.cols()),
            InitialClusters::Callable(_) => "callable".into(),
        }
    }
}

impl std::fmt::Debug for InitialClusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The constructor's arguments (all but `model_dir` and `config`).
#[derive(Clone, Debug)]
pub struct KMeansParams {
    pub num_clusters: usize,
    pub initial_clusters: InitialClusters,
    pub distance_metric: Metric,
    pub random_seed: u64,
    pub use_mini_batch: bool,
    pub mini_batch_steps_per_iteration: u64,
    pub kmeans_plus_plus_num_retries: i64,
    pub relative_tolerance: Option<f64>,
    pub feature_columns: Option<Vec<String>>,
}

impl KMeansParams {
    /// The reference's defaults: random init, squared Euclidean, seed 0,
    /// mini-batch with one step per iteration, two k-means++ retries.
    pub fn new(num_clusters: usize) -> Self {
        Self {
            num_clusters,
            initial_clusters: InitialClusters::Random,
            distance_metric: Metric::SquaredEuclidean,
            random_seed: 0,
            use_mini_batch: true,
            mini_batch_steps_per_iteration: 1,
            kmeans_plus_plus_num_retries: 2,
            relative_tolerance: None,
            feature_columns: None,
        }
    }

    /// Checks every argument and resolves `num_clusters` from an explicit
    /// array of centres.
    pub fn validate(mut self) -> Result<Self> {
        if let InitialClusters::Array(a) = &self.initial_clusters {
            if a.rows() == 0 {
                return Err(Error::arg("initial_clusters array has no rows"));
            }
            a.validate(None, "initial_clusters array")?;
            self.num_clusters = a.rows();
        }
        if self.num_clusters == 0 {
            return Err(Error::arg("num_clusters must be at least 1, got 0"));
        }
        if self.mini_batch_steps_per_iteration == 0 {
            return Err(Error::arg(
                "mini_batch_steps_per_iteration must be at least 1, got 0",
            ));
        }
        // update_in_steps counts down from S in an int64 variable.
        if i64::try_from(self.mini_batch_steps_per_iteration).is_err() {
            return Err(Error::arg(format!(
                "mini_batch_steps_per_iteration must be at most {}, got {}",
                i64::MAX,
                self.mini_batch_steps_per_iteration
            )));
        }
        // Every retry is one more candidate scored against every row, for
        // every centre: beyond this bound seeding would run for hours.
        if self.kmeans_plus_plus_num_retries > MAX_KMEANS_PLUS_PLUS_RETRIES {
            return Err(Error::arg(format!(
                "kmeans_plus_plus_num_retries must be at most {MAX_KMEANS_PLUS_PLUS_RETRIES}, got {}",
                self.kmeans_plus_plus_num_retries
            )));
        }
        if let Some(t) = self.relative_tolerance {
            if !(t.is_finite() && t >= 0.0) {
                return Err(Error::arg(format!(
                    "relative_tolerance must be a finite number >= 0, got {t}"
                )));
            }
        }
        if let Some(cols) = &self.feature_columns {
            if cols.is_empty() {
                return Err(Error::arg("feature_columns is empty"));
            }
            for (i, c) in cols.iter().enumerate() {
                if cols[..i].contains(c) {
                    return Err(Error::arg(format!(
                        "feature_columns names {c:?} twice (positions {} and {i})",
                        cols[..i].iter().position(|x| x == c).unwrap_or(0)
                    )));
                }
            }
        }
        Ok(self)
    }

    /// R, the number of extra k-means++ candidates: a negative value means
    /// `2 + floor(ln k)`.
    pub fn kmeans_plus_plus_retries(&self) -> usize {
        resolve_retries(self.kmeans_plus_plus_num_retries, self.num_clusters)
    }

    /// Whether the model keeps the working copy of the asynchronous mode.
    pub fn is_async(&self) -> bool {
        self.use_mini_batch && self.mini_batch_steps_per_iteration > 1
    }
}

/// The largest `kmeans_plus_plus_num_retries` accepted.
pub const MAX_KMEANS_PLUS_PLUS_RETRIES: i64 = 10_000;

/// `num_retries`, or `2 + floor(ln k)` when negative.
pub fn resolve_retries(num_retries: i64, k: usize) -> usize {
    if num_retries < 0 {
        2 + (k.max(1) as f64).ln().floor() as usize
    } else {
        num_retries as usize
    }
}

/// The default checkpoint interval, in seconds.
pub const DEFAULT_SAVE_CHECKPOINTS_SECS: f64 = 600.0;

/// The most worker threads a model runs: far above any core count today,
/// low enough that a typo (8000) is refused instead of stalling the machine.
pub const MAX_THREADS: usize = 1024;

/// Where and how often the Estimator saves, and how it computes.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    pub model_dir: Option<PathBuf>,
    /// Overrides the constructor's `random_seed` when set.
    pub random_seed: Option<u64>,
    pub save_checkpoints_steps: Option<u64>,
    pub save_checkpoints_secs: Option<f64>,
    /// How many checkpoints to keep; 0 keeps all.
    pub keep_checkpoint_max: usize,
    pub log_step_count_steps: Option<u64>,
    /// Write the training loss to TensorBoard's event file every this many
    /// steps (and at the first and last step of each `train` call); `None`
    /// or 0 writes none.
    pub save_summary_steps: Option<u64>,
    /// Worker threads; `None` uses every core.
    pub num_threads: Option<usize>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            model_dir: None,
            random_seed: None,
            save_checkpoints_steps: None,
            save_checkpoints_secs: Some(DEFAULT_SAVE_CHECKPOINTS_SECS),
            keep_checkpoint_max: 5,
            log_step_count_steps: Some(100),
            save_summary_steps: Some(100),
            num_threads: None,
        }
    }
}

impl RunConfig {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<()> {
        if self.save_checkpoints_steps.is_some() && self.save_checkpoints_secs.is_some() {
            return Err(Error::arg(
                "save_checkpoints_steps and save_checkpoints_secs cannot both be set; set one of them to None",
            ));
        }
        if self.save_checkpoints_steps == Some(0) {
            return Err(Error::arg("save_checkpoints_steps must be at least 1"));
        }
        if let Some(s) = self.save_checkpoints_secs {
            if !(s.is_finite() && s >= 0.0) {
                return Err(Error::arg(format!(
                    "save_checkpoints_secs must be a finite number >= 0, got {s}"
                )));
            }
        }
        if self.num_threads == Some(0) {
            return Err(Error::arg("num_threads must be at least 1"));
        }
        if let Some(n) = self.num_threads.filter(|&n| n > MAX_THREADS) {
            return Err(Error::arg(format!(
                "num_threads = {n} is more than centroid runs ({MAX_THREADS}); leave it unset to use every core"
            )));
        }
        if self.log_step_count_steps == Some(0) {
            return Err(Error::arg("log_step_count_steps must be at least 1"));
        }
        Ok(())
    }
}
