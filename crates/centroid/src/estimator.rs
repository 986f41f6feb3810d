//! `KMeansClustering`: the training, evaluation and prediction loops around
//! [`ModelFn`], with checkpoints in `model_dir`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::{self, Loaded, ModelSignature, Tensor};
use crate::error::{Error, ParamError, Result};
use crate::export::{self, ServingInputReceiver};
use crate::float::{DType, Float};
use crate::hooks::{CheckpointSaverListener, RunContext, RunValues, SessionRunHook};
use crate::input::{Dense, Input, Rows};
use crate::kernels;
use crate::lock::ModelDirLock;
use crate::loss_log::LossLog;
use crate::matrix::Matrix;
use crate::model::{
    dense_from, with_state, AnyState, ModelFn, ModelState, PredictKeys, PredictionBatch, StepCarry,
};
use crate::model_dir;
use crate::params::{InitialClusters, RunConfig, ValidKMeansParams};
use crate::seeding;
use crate::source::{ended_early, BatchSource};
use crate::summary::EventWriter;

/// Arguments of [`KMeansClustering::train`].
#[derive(Default)]
pub struct TrainArgs<'h> {
    /// Steps to run, added to the current global step.
    pub steps: Option<u64>,
    /// The global step to stop at (absolute).
    pub max_steps: Option<u64>,
    /// Called around every step, in order.
    pub hooks: Vec<Box<dyn SessionRunHook + 'h>>,
    /// Called around every checkpoint this call writes, in order.
    pub saving_listeners: Vec<Box<dyn CheckpointSaverListener + 'h>>,
    /// Polled after every step; `true` saves the last finished step and
    /// returns [`Error::Interrupted`].
    pub interrupt: Option<&'h mut dyn FnMut() -> bool>,
    /// Called after every step with the global step and the step's loss.
    pub on_step: Option<&'h mut dyn FnMut(i64, f64)>,
    /// Called at every checkpoint save: an opaque string (say, a position in
    /// a file stream) stored with the checkpoint and handed back on restore
    /// as [`crate::model_dir::Loaded::input_state`].
    pub input_state: Option<&'h mut dyn FnMut() -> Option<String>>,
}

/// Where [`KMeansClustering::train_from_statistics`] gets every step's
/// statistics: a distributed engine that runs the partition task
/// ([`crate::partial::partition_stats`]) over its partitions and merges the
/// results in partition order.
pub trait StepStatistics {
    /// The statistics of training step `global_step` (the step about to
    /// run) under `centres`; `None` when the input has ended.
    fn next(
        &mut self,
        global_step: i64,
        centres: &Dense<'_>,
    ) -> Result<Option<crate::kernels::ClusterStats>>;
}

/// Arguments of [`KMeansClustering::evaluate`].
#[derive(Default)]
pub struct EvalArgs<'h> {
    /// At most this many batches.
    pub steps: Option<u64>,
    /// Called around every batch, in order.
    pub hooks: Vec<Box<dyn SessionRunHook + 'h>>,
    /// This checkpoint instead of the latest.
    pub checkpoint_path: Option<PathBuf>,
    /// Keeps this evaluation's metrics apart: `model_dir/eval_<name>`.
    pub name: Option<String>,
}

/// Arguments of [`KMeansClustering::predict`].
#[derive(Default)]
pub struct PredictArgs<'h> {
    /// The outputs to compute; `None` computes both.
    pub predict_keys: Option<PredictKeys>,
    /// Called around every batch, in order.
    pub hooks: Vec<Box<dyn SessionRunHook + 'h>>,
    /// This checkpoint instead of the latest.
    pub checkpoint_path: Option<PathBuf>,
}

/// What `evaluate` returns: the mean over batches of each batch's loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalResult {
    /// The mean batch loss (the same number as `loss`, as the reference
    /// reports it under both names).
    pub score: f64,
    /// The mean batch loss.
    pub loss: f64,
    /// The global step of the checkpoint evaluated.
    pub global_step: i64,
}

/// K-means as an Estimator: train in steps, checkpoint, resume, evaluate,
/// predict, export.
pub struct KMeansClustering {
    params: ValidKMeansParams,
    model_dir: PathBuf,
    config: RunConfig,
    model_fn: ModelFn,
    seed: u64,
    pool: Arc<rayon::ThreadPool>,
    warn: WarningHandler,
}

/// Where the Estimator's warnings go (see
/// [`KMeansClustering::set_warning_handler`]).
pub type WarningHandler = Arc<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for KMeansClustering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KMeansClustering")
            .field("params", &self.params)
            .field("model_dir", &self.model_dir)
            .field("config", &self.config)
            .finish()
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<KMeansClustering>();
};

impl KMeansClustering {
    /// Validates the arguments. `model_dir = None` uses `config.model_dir`,
    /// or a fresh temporary directory when that is unset too.
    pub fn new(
        params: ValidKMeansParams,
        model_dir: Option<PathBuf>,
        config: Option<RunConfig>,
    ) -> Result<Self> {
        let mut config = config.unwrap_or_default();
        config.validate()?;
        let model_dir = match (model_dir, config.model_dir.clone()) {
            (Some(a), Some(b)) if !same_dir(&a, &b) => {
                return Err(ParamError::ModelDirsDiffer(a, b).into())
            }
            (Some(a), _) => a,
            (None, Some(b)) => b,
            (None, None) => fresh_temp_dir()?,
        };
        check_model_dir(&model_dir)?;
        config.model_dir = Some(model_dir.clone());
        let seed = config.random_seed.unwrap_or(params.random_seed());
        let mut builder = rayon::ThreadPoolBuilder::new();
        if let Some(n) = config.num_threads {
            builder = builder.num_threads(n);
        }
        let pool = builder.build().map_err(|e| {
            Error::arg(format!(
                "cannot start {:?} threads: {e}",
                config.num_threads
            ))
        })?;
        Ok(Self {
            model_fn: ModelFn::new(params.clone()),
            params,
            model_dir,
            config,
            seed,
            pool: Arc::new(pool),
            warn: Arc::new(|m: &str| log::warn!("{m}")),
        })
    }

    /// Sends the Estimator's warnings (a damaged checkpoint skipped for the
    /// previous good one) to `handler` instead of the `log` crate.
    pub fn set_warning_handler(&mut self, handler: WarningHandler) {
        self.warn = handler;
    }

    /// Loads the newest good checkpoint, reporting each damaged newer one
    /// skipped on the way to the warning handler.
    fn load_latest_good(&self) -> Result<Option<Loaded>> {
        let (loaded, skipped) = checkpoint::load_latest_good_reporting(&self.model_dir)?;
        if let Some(l) = &loaded {
            for e in &skipped {
                (self.warn)(&checkpoint::fallback_message(e, l));
            }
        }
        Ok(loaded)
    }

    /// The run configuration, with `model_dir` filled in.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }
    /// The folder of the model's checkpoints and records.
    pub fn model_dir(&self) -> &Path {
        &self.model_dir
    }
    /// The (checked) parameters.
    pub fn params(&self) -> &ValidKMeansParams {
        &self.params
    }
    /// The model bound to its parameters, usable without the Estimator.
    pub fn model_fn(&self) -> ModelFn {
        self.model_fn.clone()
    }
    /// The seed in force: `config.random_seed` when set, else `random_seed`.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The path of the checkpoint the Estimator would use: the newest one
    /// that reads back intact (a damaged newer one is skipped, as loading
    /// does). None when there is none.
    pub fn latest_checkpoint(&self) -> Option<PathBuf> {
        checkpoint::load_latest_good_reporting(&self.model_dir)
            .ok()
            .and_then(|(loaded, _)| loaded)
            .map(|l| l.path)
    }

    /// Trains for `steps` more steps, up to `max_steps`, until the input ends,
    /// the relative tolerance is met, or a hook asks to stop. Initialises a
    /// fresh model first; resumes from the latest checkpoint otherwise.
    pub fn train<'a, F>(&mut self, mut input_fn: F, args: TrainArgs<'_>) -> Result<&mut Self>
    where
        F: FnMut() -> Result<Input<'a>>,
    {
        self.train_loop(&mut input_fn, None, args)
    }

    /// Trains as [`train`](Self::train) does (steps, hooks, tolerance,
    /// checkpoints), but every step's statistics come from `statistics`
    /// instead of a batch: a distributed engine computes them over the
    /// partitions of its data. `input_fn` is called only to initialise a
    /// fresh model (its first batch, as in `train`).
    pub fn train_from_statistics<'a, F>(
        &mut self,
        mut input_fn: F,
        statistics: &mut dyn StepStatistics,
        args: TrainArgs<'_>,
    ) -> Result<&mut Self>
    where
        F: FnMut() -> Result<Input<'a>>,
    {
        self.train_loop(&mut input_fn, Some(statistics), args)
    }

    fn train_loop<'a>(
        &mut self,
        input_fn: &mut dyn FnMut() -> Result<Input<'a>>,
        mut statistics: Option<&mut dyn StepStatistics>,
        mut args: TrainArgs<'_>,
    ) -> Result<&mut Self> {
        let (steps, max_steps) = (args.steps, args.max_steps);
        match (steps, max_steps) {
            (Some(_), Some(_)) => return Err(ParamError::StepsAndMaxSteps.into()),
            (Some(0), _) => return Err(ParamError::NoSteps.into()),
            (_, Some(0)) => return Err(ParamError::NoMaxSteps.into()),
            _ => {}
        }
        check_model_dir(&self.model_dir)?;
        // One writer per model_dir: held until this call returns.
        let _lock = self.lock_model_dir()?;
        let restored = self.restore_latest()?;
        let start_step = restored.as_ref().map_or(0, |l| l.state.global_step());
        checkpoint::clean_up(&self.model_dir, start_step, self.config.keep_checkpoint_max);
        // global_step is an int64: larger step counts mean "no limit".
        let as_step = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let last_step: Option<i64> = match (steps, max_steps) {
            (Some(s), _) => Some(start_step.saturating_add(as_step(s))),
            (_, Some(m)) => {
                if start_step >= as_step(m) {
                    log::info!("skipping training: global step {start_step} already reached max_steps = {m}");
                    return Ok(self);
                }
                Some(as_step(m))
            }
            _ => None,
        };

        for h in args.hooks.iter_mut() {
            h.begin()?;
        }
        for l in args.saving_listeners.iter_mut() {
            l.begin()?;
        }
        let (mut state, mut last_saved) = match restored {
            Some(l) => (l.state, Some(start_step)),
            None => (self.initialize(input_fn()?)?, None),
        };
        let signature = self.signature(&state);
        let mut source = match statistics {
            Some(_) => None,
            None => {
                let mut source =
                    BatchSource::new(input_fn()?, self.params.feature_columns(), false)?;
                source.set_sq_norm_limit(self.sq_norm_limit(state.dtype()));
                Some(source)
            }
        };
        let d = state.d();
        let metric = self.params.distance_metric();
        let mut ctx = RunContext::new(state.global_step());
        let mut prev_loss: Option<f64> = None;
        let mut losses = LossLog::open(&self.model_dir, start_step)?;
        let mut last_save_time = Instant::now();
        let mut progress = Progress::default();
        let first_step = state.global_step();
        let mut events = EventWriter::new(&self.model_dir);
        let mut last_summary: Option<(i64, f64)> = None;
        let mut final_loss: Option<(i64, f64)> = None;
        // Labels and pruning bounds of this call's steps (constant input).
        let mut carry = StepCarry::default();

        let outcome: Result<()> = (|| loop {
            let step = state.global_step();
            if last_step.is_some_and(|l| step >= l) {
                return Ok(());
            }
            if step == i64::MAX {
                return Err(Error::arg(format!(
                    "global_step has reached its largest value ({step}); the model cannot train further"
                )));
            }
            ctx.set_global_step(step);
            ctx.reset_fetches();
            for h in args.hooks.iter_mut() {
                h.before_run(&mut ctx)?;
            }
            let step_before = step;
            let model_fn = &self.model_fn;
            let loss = match (&mut source, &mut statistics) {
                (Some(source), _) => {
                    let what = source.next_label();
                    let constant = source.is_constant();
                    let Some(batch) = source.next(Some(d))? else {
                        return Ok(());
                    };
                    // The same rows every step: the steps may carry labels
                    // and bounds from one to the next.
                    let carry = constant.then_some(&mut carry);
                    self.pool.install(|| -> Result<f64> {
                        with_state!(&mut state, s, T => {
                            let typed = batch.typed::<T>(&what, metric)?;
                            let loss = model_fn.train_step_carrying(s, typed.rows()?, carry);
                            check_step(s, loss, &what)?;
                            Ok(loss)
                        })
                    })?
                }
                (None, Some(statistics)) => {
                    let what = format!("the statistics of step {step}");
                    let centres =
                        with_state!(&state, s, T => dense_from(&model_fn.step_centres(s)));
                    let Some(stats) = statistics.next(step, &centres)? else {
                        return Ok(());
                    };
                    with_state!(&mut state, s, T => {
                        let loss = model_fn.train_step_with_statistics(s, &stats)?;
                        check_step(s, loss, &what)?;
                        loss
                    })
                }
                (None, None) => unreachable!("training has a batch source or a statistics source"),
            };
            let step = state.global_step();
            losses.record(step, loss)?;
            final_loss = Some((step, loss));
            if let Some(cb) = args.on_step.as_mut() {
                cb(step, loss);
            }
            self.log_progress(
                &mut progress,
                &mut events,
                first_step,
                step_before,
                loss,
                state.dtype(),
            )?;
            if self.summary_due(first_step, step) {
                events.scalars(step, &[("loss", loss)])?;
                last_summary = Some((step, loss));
            } else {
                last_summary = None;
            }
            let values = RunValues {
                global_step: step,
                loss,
            };
            ctx.set_global_step(step);
            if ctx.clusters_requested() {
                ctx.set_clusters(Some(state.clusters()));
            }
            for h in args.hooks.iter_mut() {
                h.after_run(&mut ctx, &values)?;
            }
            let due = match (
                self.config.save_checkpoints_steps,
                self.config.save_checkpoints_secs,
            ) {
                (Some(n), _) => (step as u64).is_multiple_of(n),
                (None, Some(secs)) => last_save_time.elapsed().as_secs_f64() >= secs,
                (None, None) => false,
            } || ctx.checkpoint_requested();
            if due {
                self.save(&state, &signature, &mut losses, &mut args)?;
                last_saved = Some(step);
                last_save_time = Instant::now();
            }
            if args.interrupt.as_mut().is_some_and(|f| f()) {
                if last_saved != Some(step) {
                    self.save(&state, &signature, &mut losses, &mut args)?;
                }
                return Err(Error::Interrupted { global_step: step });
            }
            if ctx.stop_requested() {
                return Ok(());
            }
            if let (Some(tol), Some(prev)) = (self.params.relative_tolerance(), prev_loss) {
                if (loss - prev).abs() / (1.0 + prev.abs()) < tol {
                    log::info!("relative tolerance {tol} met at global step {step}");
                    return Ok(());
                }
            }
            prev_loss = Some(loss);
        })();
        outcome?;
        // TensorBoard's curve ends at the last step, as the logs do.
        if let Some((step, loss)) = final_loss.filter(|_| self.summaries_on()) {
            if last_summary.map(|(s, _)| s) != Some(step) {
                events.scalars(step, &[("loss", loss)])?;
            }
        }
        if last_saved != Some(state.global_step()) {
            self.save(&state, &signature, &mut losses, &mut args)?;
        }
        if let Some((_, loss)) = final_loss {
            log::info!("Loss for final step: {}.", loss_text(loss, state.dtype()));
        }
        let final_step = state.global_step();
        for l in args.saving_listeners.iter_mut() {
            l.end(final_step)?;
        }
        for h in args.hooks.iter_mut() {
            h.end()?;
        }
        Ok(self)
    }

    fn summaries_on(&self) -> bool {
        self.config.save_summary_steps.is_some_and(|n| n > 0)
    }

    /// Whether the loss after global step `step` goes to TensorBoard: as
    /// TensorFlow's SummarySaverHook, after the first step of a `train`
    /// call and every `save_summary_steps` steps from there.
    fn summary_due(&self, first_step: i64, step: i64) -> bool {
        match self.config.save_summary_steps {
            Some(n) if n > 0 => {
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                (step - first_step - 1) % n == 0
            }
            _ => false,
        }
    }

    /// TensorFlow's training log lines: `loss = L, step = S` (S the global
    /// step the step started from) on the first step of a call and every
    /// `log_step_count_steps` steps after it, with the seconds since the
    /// previous such line; and `global_step/sec: R` every
    /// `log_step_count_steps` steps counted from the first, which also goes
    /// to TensorBoard.
    fn log_progress(
        &self,
        progress: &mut Progress,
        events: &mut EventWriter,
        first_step: i64,
        step_before: i64,
        loss: f64,
        dtype: DType,
    ) -> Result<()> {
        let Some(every) = self.config.log_step_count_steps else {
            return Ok(());
        };
        let every = i64::try_from(every).unwrap_or(i64::MAX);
        let now = Instant::now();
        let loss = loss_text(loss, dtype);
        // The rate first, as TensorFlow's hooks print them.
        let step = step_before.saturating_add(1);
        match progress.rate_mark {
            None => progress.rate_mark = Some((now, step)),
            Some((t, s)) if step - s >= every => {
                let secs = (now - t).as_secs_f64();
                if secs > 0.0 {
                    let rate = (step - s) as f64 / secs;
                    log::info!("global_step/sec: {rate:.6}");
                    events.scalars(step, &[("global_step/sec", rate)])?;
                }
                progress.rate_mark = Some((now, step));
            }
            Some(_) => {}
        }
        if (step_before - first_step) % every == 0 {
            match progress.last_loss_line {
                None => log::info!("loss = {loss}, step = {step_before}"),
                Some(t) => log::info!(
                    "loss = {loss}, step = {step_before} ({:.3} sec)",
                    (now - t).as_secs_f64()
                ),
            }
            progress.last_loss_line = Some(now);
        }
        Ok(())
    }

    fn save(
        &self,
        state: &AnyState,
        signature: &ModelSignature,
        losses: &mut LossLog,
        args: &mut TrainArgs<'_>,
    ) -> Result<()> {
        let step = state.global_step();
        for l in args.saving_listeners.iter_mut() {
            l.before_save(step)?;
        }
        let input_state = args.input_state.as_mut().and_then(|f| f());
        let path = checkpoint::save_with_input_state(
            &self.model_dir,
            state,
            signature,
            self.config.keep_checkpoint_max,
            input_state.as_deref(),
        )?;
        log::info!("Saving checkpoints for {step} into {}.", path.display());
        losses.sync()?;
        for l in args.saving_listeners.iter_mut() {
            l.after_save(step)?;
        }
        Ok(())
    }

    /// Creates `model_dir` if needed and takes its one-writer lock.
    fn lock_model_dir(&self) -> Result<ModelDirLock> {
        fs::create_dir_all(&self.model_dir)
            .map_err(|e| Error::io("cannot create model_dir", &self.model_dir, e))?;
        ModelDirLock::acquire(&self.model_dir)
    }

    fn signature(&self, state: &AnyState) -> ModelSignature {
        ModelSignature {
            num_clusters: state.k(),
            num_features: state.d(),
            dtype: state.dtype(),
            distance_metric: self.params.distance_metric(),
            mode: self.params.mode(),
            initial_clusters: self.params.initial_clusters().kind(),
            random_seed: self.seed,
            kmeans_plus_plus_num_retries: self.params.kmeans_plus_plus_num_retries(),
            relative_tolerance: self.params.relative_tolerance(),
            feature_columns: self.params.feature_columns().map(<[String]>::to_vec),
        }
    }

    /// The largest squared row norm whose squared Euclidean distances fit
    /// `dtype`: a distance is at most (|x| + |c|)^2 <= 4 max(|x|^2, |c|^2),
    /// and centres, as averages of rows, are no longer than the longest
    /// row. Cosine normalises rows in float64 first and needs no limit.
    fn sq_norm_limit(&self, dtype: DType) -> Option<f64> {
        let max = match dtype {
            DType::F32 => f32::MAX as f64,
            DType::F64 => f64::MAX,
        };
        (self.params.distance_metric() == crate::kernels::Metric::SquaredEuclidean)
            .then_some(max / 4.0)
    }

    /// The latest good checkpoint, checked against these parameters.
    fn restore_latest(&self) -> Result<Option<Loaded>> {
        let loaded = self.load_latest_good()?;
        if let Some(l) = &loaded {
            self.check_compatible(&l.signature)?;
        }
        Ok(loaded)
    }

    fn check_compatible(&self, saved: &ModelSignature) -> Result<()> {
        let p = &self.params;
        let mut problems = Vec::new();
        if saved.num_clusters != p.num_clusters() {
            problems.push(format!(
                "num_clusters {} on disk vs {} here",
                saved.num_clusters,
                p.num_clusters()
            ));
        }
        if saved.distance_metric != p.distance_metric() {
            problems.push(format!(
                "distance_metric {:?} on disk vs {:?} here",
                saved.distance_metric.name(),
                p.distance_metric().name()
            ));
        }
        if saved.mode != p.mode() {
            problems.push(format!(
                "{} on disk vs {} here",
                saved.mode.describe(),
                p.mode().describe()
            ));
        }
        // The same width from other columns, or the same columns in another
        // order, would silently mix features.
        if let (Some(disk), Some(here)) = (&saved.feature_columns, p.feature_columns()) {
            if disk != here {
                problems.push(format!("feature_columns {disk:?} on disk vs {here:?} here"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::IncompatibleModel {
                model_dir: self.model_dir.clone(),
                message: problems.join("; "),
            })
        }
    }

    /// The checkpoint to evaluate or predict with.
    fn load_for_inference(&self, checkpoint_path: Option<&Path>) -> Result<Loaded> {
        let loaded = match checkpoint_path {
            Some(p) => {
                let p = checkpoint::resolve(p);
                if !p.is_file() {
                    return Err(Error::io(
                        CHECKPOINT_NOT_FOUND,
                        &p,
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no such checkpoint"),
                    ));
                }
                checkpoint::load(&p)?
            }
            None => self
                .load_latest_good()?
                .ok_or_else(|| Error::NoCheckpoint(self.model_dir.clone()))?,
        };
        self.check_compatible(&loaded.signature)?;
        Ok(loaded)
    }

    /// Chooses the initial centres from the batches of one `input_fn()` call.
    fn initialize(&self, input: Input<'_>) -> Result<AnyState> {
        let mut source = BatchSource::new(input, self.params.feature_columns(), false)?;
        let (dtype, _) = source.peek()?.ok_or_else(|| match self.params.initial_clusters() {
            InitialClusters::Array(_) => Error::data(
                "the input gave no batch: initial_clusters' width cannot be checked against the data",
            ),
            _ => ended_early(0, self.params.num_clusters()),
        })?;
        source.set_sq_norm_limit(self.sq_norm_limit(dtype));
        let state = match dtype {
            DType::F32 => AnyState::F32(self.initialize_typed::<f32>(&mut source)?),
            DType::F64 => AnyState::F64(self.initialize_typed::<f64>(&mut source)?),
        };
        Ok(state)
    }

    fn initialize_typed<T: Float>(&self, source: &mut BatchSource<'_>) -> Result<ModelState<T>> {
        let k = self.params.num_clusters();
        let metric = self.params.distance_metric();
        let mut rng = seeding::rng_from_seed(self.seed);
        let mut width: Option<usize> = None;
        let mut centres: Option<Matrix<T>> = None;
        loop {
            let have = centres.as_ref().map_or(0, Matrix::rows);
            if have == k {
                break;
            }
            let constant = source.is_constant();
            let what = source.next_label();
            let batch = source.next(width)?.ok_or_else(|| ended_early(have, k))?;
            let d = batch.cols();
            width = Some(d);
            // Reserve no more than the batch can give: k is the caller's
            // number and may be absurd.
            let out = centres.get_or_insert_with(|| Matrix::with_capacity(k.min(batch.rows()), d));
            let typed = batch.typed::<T>(&what, metric)?;
            let x = typed.rows()?;
            match self.params.initial_clusters() {
                InitialClusters::Array(a) => {
                    if a.cols() != d {
                        return Err(Error::data(format!(
                            "initial_clusters has {} columns but the data has {d}",
                            a.cols()
                        )));
                    }
                    if let Some(limit) = self.sq_norm_limit(T::DTYPE) {
                        a.check_row_norms(limit, "initial_clusters array")?;
                    }
                    let values = a.to_type_checked::<T>("initial_clusters array")?;
                    *out = Matrix::new(values.into_owned(), a.rows(), d)?;
                }
                InitialClusters::KMeansPlusPlus => {
                    let retries = self.params.kmeans_plus_plus_retries();
                    let rows = self.pool.install(|| match x {
                        Rows::Dense(x) => {
                            seeding::kmeans_plus_plus_indices(x, None, k, retries, metric, &mut rng)
                        }
                        Rows::Csr(x) => {
                            kernels::sparse::kmeans_plus_plus_indices(x, None, k, retries, &mut rng)
                        }
                    })?;
                    for r in rows {
                        x.push_row_to(r, out);
                    }
                }
                InitialClusters::Random => {
                    if constant && batch.rows() < k - have {
                        return Err(Error::data(format!(
                            "num_clusters = {k} is larger than the {} rows of the input batch",
                            batch.rows()
                        )));
                    }
                    for r in seeding::random_row_indices(x.rows(), k - have, &mut rng) {
                        x.push_row_to(r, out);
                    }
                }
                InitialClusters::Restored(kind) => {
                    return Err(Error::arg(format!(
                        "initial_clusters was restored from a checkpoint ({kind}) and cannot initialise a new model; give the initialisation itself"
                    )));
                }
                InitialClusters::Callable(f) => {
                    // The function is written for dense rows: a sparse
                    // batch reaches it densified.
                    let got = f.call(batch.to_dense()?.as_ref(), k - have)?;
                    if got.rows() > k - have {
                        return Err(Error::data(format!(
                            "the initial_clusters function returned {} rows but only {} centres were still needed",
                            got.rows(),
                            k - have
                        )));
                    }
                    if got.rows() > 0 {
                        let what = "the initial_clusters function's result";
                        got.validate(Some(d), what)?;
                        if let Some(limit) = self.sq_norm_limit(T::DTYPE) {
                            got.check_row_norms(limit, what)?;
                        }
                        let values = got.to_type_checked::<T>(what)?;
                        for r in 0..got.rows() {
                            out.push_row(&values[r * d..(r + 1) * d]);
                        }
                    } else if constant {
                        return Err(Error::data(
                            "the initial_clusters function returned no rows for the (constant) input batch, so it can never finish",
                        ));
                    }
                }
            }
        }
        let centres = centres.ok_or_else(|| ended_early(0, k))?;
        Ok(self.model_fn.new_state(centres))
    }

    /// The mean over the evaluated batches of each batch's loss.
    pub fn evaluate<'a, F>(&self, mut input_fn: F, mut args: EvalArgs<'_>) -> Result<EvalResult>
    where
        F: FnMut() -> Result<Input<'a>>,
    {
        if args.steps == Some(0) {
            return Err(ParamError::NoSteps.into());
        }
        // A bad name is found before the work, not after it.
        model_dir::eval_dir(&self.model_dir, args.name.as_deref())?;
        let loaded = self.load_for_inference(args.checkpoint_path.as_deref())?;
        let state = loaded.state;
        let global_step = state.global_step();
        let d = state.d();
        let mut source = BatchSource::new(input_fn()?, self.params.feature_columns(), true)?;
        source.set_sq_norm_limit(self.sq_norm_limit(state.dtype()));
        for h in args.hooks.iter_mut() {
            h.begin()?;
        }
        let mut ctx = RunContext::new(global_step);
        let (mut total, mut batches) = (0.0f64, 0u64);
        while args.steps.is_none_or(|s| batches < s) {
            for h in args.hooks.iter_mut() {
                h.before_run(&mut ctx)?;
            }
            let what = source.next_label();
            let Some(batch) = source.next(Some(d))? else {
                break;
            };
            let loss = self.pool.install(|| -> Result<f64> {
                with_state!(&state, s, T => {
                    let typed = batch.typed::<T>(&what, self.params.distance_metric())?;
                    let loss = self.model_fn.loss(s, typed.rows()?);
                    if loss.is_nan() || loss == f64::INFINITY {
                        return Err(Error::data(format!(
                            "{what}: the loss is {loss}: squared distances overflow {}; use float64 data or scale it down",
                            T::DTYPE
                        )));
                    }
                    Ok(loss)
                })
            })?;
            total += loss;
            batches += 1;
            let values = RunValues { global_step, loss };
            for h in args.hooks.iter_mut() {
                h.after_run(&mut ctx, &values)?;
            }
            if ctx.stop_requested() {
                break;
            }
        }
        if batches == 0 {
            return Err(Error::data("evaluate: input_fn gave no batches"));
        }
        let mean = total / batches as f64;
        for h in args.hooks.iter_mut() {
            h.end()?;
        }
        let result = EvalResult {
            score: mean,
            loss: mean,
            global_step,
        };
        model_dir::record_eval(&self.model_dir, args.name.as_deref(), &result)?;
        log::info!(
            "Saving dict for global step {global_step}: global_step = {global_step}, loss = {mean}, score = {mean}"
        );
        Ok(result)
    }

    /// Predictions, one [`PredictionBatch`] per input batch, computed lazily.
    pub fn predict<'a, F>(&self, mut input_fn: F, args: PredictArgs<'a>) -> Result<Predictions<'a>>
    where
        F: FnMut() -> Result<Input<'a>>,
    {
        let keys = args.predict_keys.unwrap_or(PredictKeys::ALL);
        let loaded = self.load_for_inference(args.checkpoint_path.as_deref())?;
        let mut source = BatchSource::new(input_fn()?, self.params.feature_columns(), true)?;
        source.set_sq_norm_limit(self.sq_norm_limit(loaded.state.dtype()));
        Ok(Predictions {
            model_fn: self.model_fn.clone(),
            state: loaded.state,
            source,
            keys,
            pool: Arc::clone(&self.pool),
            hooks: args.hooks,
            ctx: RunContext::default(),
            started: false,
            finished: false,
        })
    }

    /// The nearest cluster of every input row, one vector per batch.
    pub fn predict_cluster_index<'a, F>(
        &self,
        input_fn: F,
    ) -> Result<impl Iterator<Item = Result<Vec<i64>>> + 'a>
    where
        F: FnMut() -> Result<Input<'a>>,
    {
        let args = PredictArgs {
            predict_keys: Some(PredictKeys::CLUSTER_INDEX),
            ..Default::default()
        };
        Ok(self
            .predict(input_fn, args)?
            .map(|b| b.map(|b| b.cluster_index.unwrap_or_default())))
    }

    /// The distance of every input row to every centre, one `n x k` batch per
    /// input batch (squared Euclidean, or `1 - cos`).
    pub fn transform<'a, F>(
        &self,
        input_fn: F,
    ) -> Result<impl Iterator<Item = Result<Dense<'static>>> + 'a>
    where
        F: FnMut() -> Result<Input<'a>>,
    {
        let args = PredictArgs {
            predict_keys: Some(PredictKeys::ALL_DISTANCES),
            ..Default::default()
        };
        Ok(self.predict(input_fn, args)?.map(|b| {
            b.and_then(|b| {
                b.all_distances
                    .ok_or_else(|| Error::arg("transform: no distances computed"))
            })
        }))
    }

    /// The sum of distances of the first batch's rows to their nearest
    /// centres (positive, unlike scikit-learn's score).
    pub fn score<'a, F>(&self, input_fn: F) -> Result<f64>
    where
        F: FnMut() -> Result<Input<'a>>,
    {
        Ok(self
            .evaluate(
                input_fn,
                EvalArgs {
                    steps: Some(1),
                    ..Default::default()
                },
            )?
            .score)
    }

    /// Writes a TensorFlow SavedModel of the chosen checkpoint (the latest by
    /// default) into a new directory under `export_dir_base`, named by the
    /// seconds since the epoch, and returns its path. Signatures
    /// `serving_default` and `cluster_index` give the nearest cluster,
    /// `all_distances` the distances, each under the output key `output`; the
    /// centres travel along as the tensor `clusters:0`. `assets_extra` maps
    /// names under `assets.extra/` to files to copy there.
    pub fn export_saved_model(
        &self,
        export_dir_base: &Path,
        serving_input: &ServingInputReceiver,
        assets_extra: &[(String, PathBuf)],
        as_text: bool,
        checkpoint_path: Option<&Path>,
    ) -> Result<PathBuf> {
        let loaded = self.load_for_inference(checkpoint_path)?;
        with_state!(&loaded.state, s, T => export::export_timestamped(
            export_dir_base,
            s.clusters.view(),
            self.params.distance_metric(),
            serving_input,
            assets_extra,
            as_text,
        ))
    }

    /// The centres of the latest checkpoint.
    pub fn cluster_centers(&self) -> Result<Dense<'static>> {
        Ok(self.load_for_inference(None)?.state.clusters())
    }

    /// The variables the latest checkpoint holds.
    pub fn get_variable_names(&self) -> Result<Vec<String>> {
        Ok(checkpoint::variable_names(
            &self.load_for_inference(None)?.state,
        ))
    }

    /// One variable of the latest checkpoint.
    pub fn get_variable_value(&self, name: &str) -> Result<Tensor> {
        let state = self.load_for_inference(None)?.state;
        checkpoint::variable(&state, name).ok_or_else(|| {
            Error::arg(format!(
                "no variable {name:?} in this model; it has: {}",
                checkpoint::variable_names(&state).join(", ")
            ))
        })
    }
}

/// A loss as TensorFlow prints it: in the model's own precision.
fn loss_text(loss: f64, dtype: DType) -> String {
    match dtype {
        DType::F32 => format!("{}", loss as f32),
        DType::F64 => format!("{loss}"),
    }
}

/// When the last training log lines were written.
#[derive(Default)]
struct Progress {
    last_loss_line: Option<Instant>,
    rate_mark: Option<(Instant, i64)>,
}

/// The action of the I/O error for a `checkpoint_path` that does not exist
/// (the Python bindings raise TensorFlow's `ValueError` for it).
pub const CHECKPOINT_NOT_FOUND: &str = "cannot read checkpoint";

/// The lazy result of [`KMeansClustering::predict`].
pub struct Predictions<'a> {
    model_fn: ModelFn,
    state: AnyState,
    source: BatchSource<'a>,
    keys: PredictKeys,
    pool: Arc<rayon::ThreadPool>,
    hooks: Vec<Box<dyn SessionRunHook + 'a>>,
    ctx: RunContext,
    started: bool,
    finished: bool,
}

impl<'a> Predictions<'a> {
    fn advance(&mut self) -> Result<Option<PredictionBatch>> {
        if !self.started {
            self.started = true;
            self.ctx.set_global_step(self.state.global_step());
            for h in self.hooks.iter_mut() {
                h.begin()?;
            }
        }
        for h in self.hooks.iter_mut() {
            h.before_run(&mut self.ctx)?;
        }
        let d = self.state.d();
        let what = self.source.next_label();
        let Some(batch) = self.source.next(Some(d))? else {
            return Ok(None);
        };
        let (model_fn, keys, state) = (&self.model_fn, self.keys, &self.state);
        let out = self.pool.install(|| -> Result<PredictionBatch> {
            with_state!(state, s, T => {
                let typed = batch.typed::<T>(&what, model_fn.metric())?;
                Ok(model_fn.predict(s, typed.rows()?, keys))
            })
        })?;
        let values = RunValues {
            global_step: self.state.global_step(),
            loss: f64::NAN,
        };
        for h in self.hooks.iter_mut() {
            h.after_run(&mut self.ctx, &values)?;
        }
        Ok(Some(out))
    }
}

impl<'a> Iterator for Predictions<'a> {
    type Item = Result<PredictionBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        if self.ctx.stop_requested() {
            self.finished = true;
            return self.end_hooks().err().map(Err);
        }
        match self.advance() {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => {
                self.finished = true;
                self.end_hooks().err().map(Err)
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}

impl<'a> Predictions<'a> {
    fn end_hooks(&mut self) -> Result<()> {
        for h in self.hooks.iter_mut() {
            h.end()?;
        }
        Ok(())
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// A new, empty folder under the system's temporary directory, kept after
/// the process ends (as the reference does), so the model can be reused.
fn fresh_temp_dir() -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("centroid-{}-{nanos}-{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => {
                log::warn!("using temporary model_dir {}", dir.display());
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("cannot create temporary model_dir", &dir, e)),
        }
    }
    Err(Error::arg("cannot find a free temporary model_dir name"))
}

/// Refuses an empty `model_dir` (it would silently mean the current
/// folder), one with a NUL byte, and one that exists but is not a folder.
fn check_model_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() {
        return Err(ParamError::EmptyModelDir.into());
    }
    if dir.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(ParamError::NulInModelDir(dir.to_path_buf()).into());
    }
    match fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err(ParamError::ModelDirNotAFolder(dir.to_path_buf()).into()),
        _ => Ok(()),
    }
}

/// After a training step: a loss or centres that are not finite mean the
/// data's squared distances overflowed the element type. The step is
/// refused, so no checkpoint ever holds such centres.
fn check_step<T: Float>(state: &ModelState<T>, loss: f64, what: &str) -> Result<()> {
    if loss.is_nan() || loss == f64::INFINITY {
        return Err(Error::data(format!(
            "{what}: the step's loss is {loss}: squared distances overflow {}; use float64 data or scale it down",
            T::DTYPE
        )));
    }
    if let Some((name, row, col)) = state.first_non_finite() {
        return Err(Error::data(format!(
            "{what}: the step made `{name}` row {row}, column {col} non-finite; use float64 data or scale it down"
        )));
    }
    Ok(())
}
