//! The Estimator's names, constants and validated parameters.

use std::path::PathBuf;
use std::sync::Arc;

use crate::checkpoint::ModelSignature;
use crate::error::{ParamError, Result};
use crate::input::Dense;
use crate::kernels::Metric;

/// The name of [`Metric::SquaredEuclidean`].
pub const SQUARED_EUCLIDEAN_DISTANCE: &str = "squared_euclidean";
/// The name of [`Metric::Cosine`] (distance `1 - cos`).
pub const COSINE_DISTANCE: &str = "cosine";
/// The name of [`InitialClusters::Random`].
pub const RANDOM_INIT: &str = "random";
/// The name of [`InitialClusters::KMeansPlusPlus`].
pub const KMEANS_PLUS_PLUS_INIT: &str = "kmeans_plus_plus";
/// The name of the evaluation score.
pub const SCORE: &str = "score";
/// The predict key of the nearest centre.
pub const CLUSTER_INDEX: &str = "cluster_index";
/// The predict key of the distances to every centre.
pub const ALL_DISTANCES: &str = "all_distances";

impl Metric {
    /// Parses a metric name (`"squared_euclidean"` or `"cosine"`).
    pub fn from_name(name: &str) -> Result<Metric> {
        match name {
            SQUARED_EUCLIDEAN_DISTANCE => Ok(Metric::SquaredEuclidean),
            COSINE_DISTANCE => Ok(Metric::Cosine),
            other => Err(ParamError::UnknownDistanceMetric(other.to_string()).into()),
        }
    }

    /// The metric's name, as the reference spells it.
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
    /// Up to `k_remaining` rows to use as centres, chosen from `batch`.
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
    /// The initialisation a checkpoint records, for a model rebuilt from its
    /// signature ([`KMeansParams::from_signature`]): such a model resumes
    /// from its checkpoints and is never initialised again, so the values of
    /// an array or a function (which checkpoints do not keep) are not needed.
    Restored(InitKind),
}

/// What kind of initialisation a model had, as its checkpoints record it
/// (serialised as `"random"`, `"kmeans_plus_plus"`, `"array[KxD]"` or
/// `"callable"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitKind {
    /// [`InitialClusters::Random`].
    Random,
    /// [`InitialClusters::KMeansPlusPlus`].
    KMeansPlusPlus,
    /// [`InitialClusters::Array`] of this shape.
    Array {
        /// Rows of the array (the number of centres).
        rows: usize,
        /// Columns of the array (the number of features).
        cols: usize,
    },
    /// [`InitialClusters::Callable`].
    Callable,
}

impl std::fmt::Display for InitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitKind::Random => f.write_str(RANDOM_INIT),
            InitKind::KMeansPlusPlus => f.write_str(KMEANS_PLUS_PLUS_INIT),
            InitKind::Array { rows, cols } => write!(f, "array[{rows}x{cols}]"),
            InitKind::Callable => f.write_str("callable"),
        }
    }
}

impl std::str::FromStr for InitKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let shape = || -> Option<InitKind> {
            let (rows, cols) = s
                .strip_prefix("array[")?
                .strip_suffix(']')?
                .split_once('x')?;
            Some(InitKind::Array {
                rows: rows.parse().ok()?,
                cols: cols.parse().ok()?,
            })
        };
        match s {
            RANDOM_INIT => Ok(InitKind::Random),
            KMEANS_PLUS_PLUS_INIT => Ok(InitKind::KMeansPlusPlus),
            "callable" => Ok(InitKind::Callable),
            _ => shape().ok_or_else(|| format!("unknown initial_clusters {s:?}")),
        }
    }
}

impl InitialClusters {
    /// Parses `"random"` or `"kmeans_plus_plus"`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            RANDOM_INIT => Ok(InitialClusters::Random),
            KMEANS_PLUS_PLUS_INIT => Ok(InitialClusters::KMeansPlusPlus),
            other => Err(ParamError::UnknownInitialClusters(other.to_string()).into()),
        }
    }

    /// The kind of initialisation, as checkpoints record it.
    pub fn kind(&self) -> InitKind {
        match self {
            InitialClusters::Random => InitKind::Random,
            InitialClusters::KMeansPlusPlus => InitKind::KMeansPlusPlus,
            InitialClusters::Array(a) => InitKind::Array {
                rows: a.rows(),
                cols: a.cols(),
            },
            InitialClusters::Callable(_) => InitKind::Callable,
            InitialClusters::Restored(kind) => *kind,
        }
    }

    /// A short description for messages and checkpoint metadata.
    pub fn describe(&self) -> String {
        self.kind().to_string()
    }
}

impl std::fmt::Debug for InitialClusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// How training updates the centres.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Lloyd's update: every step recomputes the centres as the means of the
    /// points assigned to them.
    FullBatch,
    /// Sculley's mini-batch update with per-cluster counts.
    MiniBatch,
    /// Mini-batch updates accumulated in a working copy that is published
    /// into the centres every `steps_per_iteration` steps (TensorFlow's
    /// `mini_batch_steps_per_iteration > 1`).
    Async {
        /// S, the steps between publications (at least 1; 1 is
        /// [`Mode::MiniBatch`]).
        steps_per_iteration: u64,
    },
}

impl Mode {
    /// The mode the reference's two arguments describe: `use_mini_batch`
    /// and `mini_batch_steps_per_iteration` (S). The one place they are
    /// decoded; S is checked whatever the mode, as the reference does.
    pub fn from_flags(use_mini_batch: bool, steps_per_iteration: u64) -> Result<Mode> {
        check_steps_per_iteration(steps_per_iteration)?;
        Ok(match (use_mini_batch, steps_per_iteration) {
            (false, _) => Mode::FullBatch,
            (true, 1) => Mode::MiniBatch,
            (true, s) => Mode::Async {
                steps_per_iteration: s,
            },
        })
    }

    /// The reference's `use_mini_batch`.
    pub fn use_mini_batch(self) -> bool {
        !matches!(self, Mode::FullBatch)
    }

    /// The reference's `mini_batch_steps_per_iteration`: S for the
    /// asynchronous mode, 1 otherwise.
    pub fn steps_per_iteration(self) -> u64 {
        match self {
            Mode::Async {
                steps_per_iteration,
            } => steps_per_iteration,
            Mode::FullBatch | Mode::MiniBatch => 1,
        }
    }

    /// Whether the model keeps the working copy of the asynchronous mode.
    pub fn is_async(self) -> bool {
        matches!(self, Mode::Async { steps_per_iteration } if steps_per_iteration > 1)
    }

    /// The mode in words, for messages.
    pub fn describe(self) -> String {
        match self {
            Mode::FullBatch => "full batch".to_string(),
            Mode::MiniBatch => "mini-batch".to_string(),
            Mode::Async {
                steps_per_iteration: s,
            } => format!("asynchronous full batch (mini_batch_steps_per_iteration = {s})"),
        }
    }

    /// The mode with S checked and `Async { 1 }` written as `MiniBatch`.
    fn checked(self) -> Result<Mode> {
        match self {
            Mode::Async {
                steps_per_iteration,
            } => Mode::from_flags(true, steps_per_iteration),
            other => Ok(other),
        }
    }
}

fn check_steps_per_iteration(s: u64) -> Result<()> {
    if s == 0 {
        return Err(ParamError::NoStepsPerIteration.into());
    }
    // update_in_steps counts down from S in an int64 variable.
    if i64::try_from(s).is_err() {
        return Err(ParamError::TooManyStepsPerIteration(s).into());
    }
    Ok(())
}

/// R, the number of extra k-means++ candidates per centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retries {
    /// `2 + floor(ln k)`, as scikit-learn chooses.
    Auto,
    /// This many (at most [`MAX_KMEANS_PLUS_PLUS_RETRIES`]).
    Count(u32),
}

impl Retries {
    /// The reference's integer: a negative value means [`Retries::Auto`].
    pub fn from_i64(n: i64) -> Result<Retries> {
        if n < 0 {
            return Ok(Retries::Auto);
        }
        if n > MAX_KMEANS_PLUS_PLUS_RETRIES {
            return Err(ParamError::TooManyRetries {
                got: n,
                max: MAX_KMEANS_PLUS_PLUS_RETRIES,
            }
            .into());
        }
        // n <= 10_000 fits u32.
        Ok(Retries::Count(n as u32))
    }

    /// The reference's integer: -1 for [`Retries::Auto`].
    pub fn to_i64(self) -> i64 {
        match self {
            Retries::Auto => -1,
            Retries::Count(n) => i64::from(n),
        }
    }

    /// R for `k` centres.
    pub fn resolve(self, k: usize) -> usize {
        match self {
            Retries::Auto => 2 + (k.max(1) as f64).ln().floor() as usize,
            Retries::Count(n) => n as usize,
        }
    }

    fn check(self) -> Result<Retries> {
        Retries::from_i64(self.to_i64())
    }
}

/// The settings shared by the builder and the validated parameters.
#[derive(Clone, Debug)]
struct Settings {
    num_clusters: usize,
    initial_clusters: InitialClusters,
    distance_metric: Metric,
    random_seed: u64,
    mode: Mode,
    kmeans_plus_plus_num_retries: Retries,
    relative_tolerance: Option<f64>,
    feature_columns: Option<Vec<String>>,
}

/// The constructor's arguments (all but `model_dir` and `config`), as a
/// builder: set what differs from the defaults, then [`check`] it into the
/// [`ValidKMeansParams`] the Estimator and [`ModelFn`] take.
///
/// [`check`]: KMeansParams::check
/// [`ModelFn`]: crate::ModelFn
#[derive(Clone, Debug)]
pub struct KMeansParams(Settings);

/// Parameters that passed [`KMeansParams::check`]: every value is in its
/// domain, and `num_clusters` agrees with an explicit array of centres.
#[derive(Clone, Debug)]
pub struct ValidKMeansParams(Settings);

impl KMeansParams {
    /// The reference's defaults: random init, squared Euclidean, seed 0,
    /// mini-batch with one step per iteration, two k-means++ retries.
    pub fn new(num_clusters: usize) -> Self {
        Self(Settings {
            num_clusters,
            initial_clusters: InitialClusters::Random,
            distance_metric: Metric::SquaredEuclidean,
            random_seed: 0,
            mode: Mode::MiniBatch,
            kmeans_plus_plus_num_retries: Retries::Count(2),
            relative_tolerance: None,
            feature_columns: None,
        })
    }

    /// The parameters a checkpoint's signature records, so that a model
    /// directory can be reopened without repeating them. The initialisation
    /// becomes [`InitialClusters::Restored`] for an array or a function,
    /// whose values checkpoints do not keep.
    pub fn from_signature(sig: &ModelSignature) -> Self {
        let initial_clusters = match sig.initial_clusters {
            InitKind::Random => InitialClusters::Random,
            InitKind::KMeansPlusPlus => InitialClusters::KMeansPlusPlus,
            kind => InitialClusters::Restored(kind),
        };
        Self(Settings {
            num_clusters: sig.num_clusters,
            initial_clusters,
            distance_metric: sig.distance_metric,
            random_seed: sig.random_seed,
            mode: sig.mode,
            kmeans_plus_plus_num_retries: sig.kmeans_plus_plus_num_retries,
            relative_tolerance: sig.relative_tolerance,
            feature_columns: sig.feature_columns.clone(),
        })
    }

    /// The number of centres (replaced by the row count of an array given
    /// as `initial_clusters`).
    pub fn num_clusters(mut self, k: usize) -> Self {
        self.0.num_clusters = k;
        self
    }
    /// How the first centres are chosen.
    pub fn initial_clusters(mut self, init: InitialClusters) -> Self {
        self.0.initial_clusters = init;
        self
    }
    /// The distance between points and centres.
    pub fn distance_metric(mut self, metric: Metric) -> Self {
        self.0.distance_metric = metric;
        self
    }
    /// The seed of every random choice (`RunConfig::random_seed` overrides it).
    pub fn random_seed(mut self, seed: u64) -> Self {
        self.0.random_seed = seed;
        self
    }
    /// The update rule.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.0.mode = mode;
        self
    }
    /// R, the extra k-means++ candidates per centre.
    pub fn kmeans_plus_plus_num_retries(mut self, retries: Retries) -> Self {
        self.0.kmeans_plus_plus_num_retries = retries;
        self
    }
    /// Stop training when the loss changes by less than this, relatively.
    pub fn relative_tolerance(mut self, tolerance: Option<f64>) -> Self {
        self.0.relative_tolerance = tolerance;
        self
    }
    /// The feature columns to join, in this order (all, sorted by name,
    /// when `None`).
    pub fn feature_columns(mut self, columns: Option<Vec<String>>) -> Self {
        self.0.feature_columns = columns;
        self
    }

    /// The number of centres set so far.
    pub fn get_num_clusters(&self) -> usize {
        self.0.num_clusters
    }
    /// The update rule set so far.
    pub fn get_mode(&self) -> Mode {
        self.0.mode
    }
    /// The feature columns set so far.
    pub fn get_feature_columns(&self) -> Option<&[String]> {
        self.0.feature_columns.as_deref()
    }

    /// Checks every argument and resolves `num_clusters` from an explicit
    /// array of centres.
    pub fn check(self) -> Result<ValidKMeansParams> {
        let mut p = self.0;
        if let InitialClusters::Array(a) = &p.initial_clusters {
            if a.rows() == 0 {
                return Err(ParamError::EmptyInitialClusters.into());
            }
            a.validate(None, "initial_clusters array")?;
            p.num_clusters = a.rows();
        }
        if p.num_clusters == 0 {
            return Err(ParamError::NoClusters.into());
        }
        p.mode = p.mode.checked()?;
        // Every retry is one more candidate scored against every row, for
        // every centre: beyond this bound seeding would run for hours.
        p.kmeans_plus_plus_num_retries = p.kmeans_plus_plus_num_retries.check()?;
        if let Some(t) = p.relative_tolerance {
            if !(t.is_finite() && t >= 0.0) {
                return Err(ParamError::BadRelativeTolerance(t).into());
            }
        }
        if let Some(cols) = &p.feature_columns {
            if cols.is_empty() {
                return Err(ParamError::NoFeatureColumns.into());
            }
            for (i, c) in cols.iter().enumerate() {
                if let Some(first) = cols[..i].iter().position(|x| x == c) {
                    return Err(ParamError::DuplicateFeatureColumn {
                        name: c.clone(),
                        first,
                        second: i,
                    }
                    .into());
                }
            }
        }
        Ok(ValidKMeansParams(p))
    }
}

impl From<ValidKMeansParams> for KMeansParams {
    fn from(p: ValidKMeansParams) -> Self {
        KMeansParams(p.0)
    }
}

impl ValidKMeansParams {
    /// The number of centres, k.
    pub fn num_clusters(&self) -> usize {
        self.0.num_clusters
    }
    /// How the first centres are chosen.
    pub fn initial_clusters(&self) -> &InitialClusters {
        &self.0.initial_clusters
    }
    /// The distance between points and centres.
    pub fn distance_metric(&self) -> Metric {
        self.0.distance_metric
    }
    /// The constructor's seed (before `RunConfig::random_seed`).
    pub fn random_seed(&self) -> u64 {
        self.0.random_seed
    }
    /// The update rule.
    pub fn mode(&self) -> Mode {
        self.0.mode
    }
    /// The k-means++ retries setting.
    pub fn kmeans_plus_plus_num_retries(&self) -> Retries {
        self.0.kmeans_plus_plus_num_retries
    }
    /// R, the number of extra k-means++ candidates for these k.
    pub fn kmeans_plus_plus_retries(&self) -> usize {
        self.0
            .kmeans_plus_plus_num_retries
            .resolve(self.0.num_clusters)
    }
    /// The relative tolerance that stops training, if any.
    pub fn relative_tolerance(&self) -> Option<f64> {
        self.0.relative_tolerance
    }
    /// The feature columns joined, in order, if named.
    pub fn feature_columns(&self) -> Option<&[String]> {
        self.0.feature_columns.as_deref()
    }
}

/// The largest `kmeans_plus_plus_num_retries` accepted.
pub const MAX_KMEANS_PLUS_PLUS_RETRIES: i64 = 10_000;

/// The default checkpoint interval, in seconds.
pub const DEFAULT_SAVE_CHECKPOINTS_SECS: f64 = 600.0;

/// The most worker threads a model runs: far above any core count today,
/// low enough that a typo (8000) is refused instead of stalling the machine.
pub const MAX_THREADS: usize = 1024;

/// Where and how often the Estimator saves, and how it computes.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// The model directory, when not given to the constructor.
    pub model_dir: Option<PathBuf>,
    /// Overrides the constructor's `random_seed` when set.
    pub random_seed: Option<u64>,
    /// Save every this many steps (exclusive with `save_checkpoints_secs`).
    pub save_checkpoints_steps: Option<u64>,
    /// Save when this many seconds have passed since the last save.
    pub save_checkpoints_secs: Option<f64>,
    /// How many checkpoints to keep; 0 keeps all.
    pub keep_checkpoint_max: usize,
    /// Log the loss and the speed every this many steps.
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
            return Err(ParamError::TwoCheckpointSchedules.into());
        }
        if self.save_checkpoints_steps == Some(0) {
            return Err(ParamError::NoCheckpointSteps.into());
        }
        if let Some(s) = self.save_checkpoints_secs {
            if !(s.is_finite() && s >= 0.0) {
                return Err(ParamError::BadCheckpointSecs(s).into());
            }
        }
        if self.num_threads == Some(0) {
            return Err(ParamError::NoThreads.into());
        }
        if let Some(n) = self.num_threads.filter(|&n| n > MAX_THREADS) {
            return Err(ParamError::TooManyThreads {
                got: n,
                max: MAX_THREADS,
            }
            .into());
        }
        if self.log_step_count_steps == Some(0) {
            return Err(ParamError::NoLogSteps.into());
        }
        Ok(())
    }
}
