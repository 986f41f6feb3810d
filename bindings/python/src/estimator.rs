//! `_Estimator`: the core `KMeansClustering` driven from Python.
//!
//! centroid/estimator.py normalises what the user's `input_fn` returns into
//! `(True, batch)` (one batch for every step) or `(False, iterator)` (one
//! batch per step), where a batch is a float32/float64 C-contiguous 2-D array
//! or a dict of 1-D/2-D such arrays. The core calls back into Python (taking
//! the GIL) for every batch, hook and listener call; it runs with the GIL
//! released otherwise.
//!
//! Ctrl-C: Python only notices a signal while Python code runs or when asked.
//! The training loop asks after every step (`TrainArgs::interrupt`), and a
//! `KeyboardInterrupt` raised inside a callback is held back and turned into
//! the same clean stop (the input "ends", a hook asks to stop), so the last
//! finished step is always checkpointed before `KeyboardInterrupt` reaches
//! the caller.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use centroid::kernels::ClusterStats;
use centroid::{
    CheckpointSaverListener, Column, Dense, EvalArgs, Features, InitFn, InitialClusters, Input,
    KMeansClustering, KMeansParams, Metric, Mode, PredictArgs, PredictKeys, PredictionBatch,
    Predictions, Retries, RunConfig, RunContext, RunValues, ServingInputReceiver, SessionRunHook,
    StepStatistics, Tensor, TrainArgs,
};
use pyo3::exceptions::{
    PyKeyboardInterrupt, PyRuntimeError, PyStopIteration, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::arrays::{
    array_data, dense_from_array, dense_to_numpy, sparse_from_csr, to_numpy, KeepAlive,
};
use crate::errors::{callback_error, to_pyerr, IntoPy};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEstimator>()?;
    m.add_class::<PredictIter>()?;
    Ok(())
}

/// A `KeyboardInterrupt` seen inside a callback, held until the loop has
/// stopped cleanly.
#[derive(Clone, Default)]
struct Interrupt(Arc<Mutex<Option<PyErr>>>);

impl Interrupt {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<PyErr>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
    fn set(&self, e: PyErr) {
        let mut slot = self.slot();
        if slot.is_none() {
            *slot = Some(e);
        }
    }
    fn is_set(&self) -> bool {
        self.slot().is_some()
    }
    fn take(&self) -> Option<PyErr> {
        self.slot().take()
    }
    /// Whether Ctrl-C was pressed: a held interrupt, an exception left
    /// pending on this thread, or a pending signal whose Python handler
    /// raises.
    ///
    /// Python runs a signal's handler at the next bytecode this thread
    /// executes, which may be inside a log record that pyo3-log hands to
    /// Python's `logging` while the loop runs. pyo3-log cannot return the
    /// `KeyboardInterrupt` raised there and leaves it pending instead; the
    /// signal itself is then consumed, so without this check the Ctrl-C
    /// would be lost and an endless `train()` would never stop. Any other
    /// exception left pending is surfaced the same way rather than lost.
    fn poll(&self) -> bool {
        if self.is_set() {
            return true;
        }
        Python::with_gil(|py| {
            if let Some(e) = PyErr::take(py) {
                self.set(e);
                return true;
            }
            self.poll_signals(py)
        })
    }

    fn poll_signals(&self, py: Python<'_>) -> bool {
        match py.check_signals() {
            Ok(()) => false,
            Err(e) => {
                self.set(e);
                true
            }
        }
    }
}

/// Moves a value into `allow_threads`, or to another Python thread (a
/// predict generator resumed elsewhere). Everything wrapped here only
/// touches Python through `Python::with_gil`, so using it from any thread,
/// with or without the GIL, is sound; the wrapper exists because the core's
/// iterator types are boxed trait objects that do not carry `Send` in their
/// type.
struct AssertSend<T>(T);
// SAFETY: see above. The wrapped values are used by one thread at a time
// (allow_threads runs its closure on the current thread; PredictIter keeps
// its predictions behind a Mutex); what they hold is owned data, `Py`
// handles, and array buffers kept alive by `KeepAlive` handles.
unsafe impl<T> Send for AssertSend<T> {}
impl<T> AssertSend<T> {
    fn get(&mut self) -> &mut T {
        &mut self.0
    }
}

/// A normalised Python batch as core features. With `keep`, C-contiguous
/// arrays are borrowed; otherwise copied.
fn features<'k>(obj: &Bound<'_, PyAny>, keep: Option<&'k KeepAlive>) -> PyResult<Features<'k>> {
    if let Ok(d) = obj.downcast::<PyDict>() {
        let mut map = BTreeMap::new();
        for (k, v) in d.iter() {
            let name: String = k
                .downcast::<PyString>()
                .map_err(|_| PyTypeError::new_err("feature names must be strings"))?
                .to_string();
            let (data, shape) = array_data(&v, keep)?;
            let column = match shape.as_slice() {
                [_] => Column::vector(data),
                [n, d] => Column::matrix(data, *n, *d).py()?,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "feature {name:?} must be [N] or [N, d], got shape {other:?}"
                    )))
                }
            };
            map.insert(name, column);
        }
        return Ok(Features::Columns(map));
    }
    if let Some(sparse) = sparse_from_csr(obj, keep)? {
        return Ok(Features::Sparse(sparse));
    }
    Ok(Features::Dense(dense_from_array(
        obj,
        keep,
        "the input batch",
    )?))
}

/// The batches of a Python iterator, one per step, copied (each batch is
/// released once its step is done, so memory stays bounded however long
/// the iterator runs).
struct PyBatches<'k> {
    it: Py<PyAny>,
    interrupt: Interrupt,
    _batches: PhantomData<&'k ()>,
}

impl<'k> Iterator for PyBatches<'k> {
    type Item = centroid::Result<Features<'k>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.interrupt.is_set() {
            return None;
        }
        Python::with_gil(|py| match self.it.bind(py).call_method0("__next__") {
            Ok(obj) => Some(features(&obj, None).map_err(|e| callback_error("input_fn", e))),
            Err(e) if e.is_instance_of::<PyStopIteration>(py) => None,
            Err(e) if e.is_instance_of::<PyKeyboardInterrupt>(py) => {
                self.interrupt.set(e);
                None
            }
            Err(e) => Some(Err(callback_error("input_fn", e))),
        })
    }
}

/// Calls the normalised Python input function once; a constant batch's
/// C-contiguous arrays are borrowed for as long as `keep` lives.
fn call_input_fn<'k>(
    input_fn: &Py<PyAny>,
    keep: &'k KeepAlive,
    interrupt: &Interrupt,
) -> centroid::Result<Input<'k>> {
    call_input_fn_with(input_fn, Some(keep), interrupt)
}

/// As [`call_input_fn`], with every array copied.
fn call_input_fn_owned(
    input_fn: &Py<PyAny>,
    interrupt: &Interrupt,
) -> centroid::Result<Input<'static>> {
    call_input_fn_with(input_fn, None, interrupt)
}

fn call_input_fn_with<'k>(
    input_fn: &Py<PyAny>,
    keep: Option<&'k KeepAlive>,
    interrupt: &Interrupt,
) -> centroid::Result<Input<'k>> {
    Python::with_gil(|py| {
        let wrap = |e: PyErr| callback_error("input_fn", e);
        let out = input_fn.bind(py).call0().map_err(wrap)?;
        let (constant, payload): (bool, Bound<'_, PyAny>) = out.extract().map_err(wrap)?;
        if constant {
            Ok(Input::Constant(features(&payload, keep).map_err(wrap)?))
        } else {
            Ok(Input::Batches(Box::new(PyBatches {
                it: payload.unbind(),
                interrupt: interrupt.clone(),
                _batches: PhantomData,
            })))
        }
    })
}

/// A Python hook (`centroid.hooks.SessionRunHook` or any object with some
/// of its methods).
struct PyHook {
    obj: Py<PyAny>,
    context_class: Py<PyAny>,
    values_class: Py<PyAny>,
    interrupt: Interrupt,
}

/// Calls `obj.name(*args)` if `obj` has such a method; a `KeyboardInterrupt`
/// is held in `interrupt` rather than aborting the loop.
fn call_optional<'py>(
    py: Python<'py>,
    obj: &Py<PyAny>,
    name: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
    interrupt: &Interrupt,
    what: &str,
) -> centroid::Result<()> {
    let obj = obj.bind(py);
    let method = match obj.getattr(name) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    match method.call1(args) {
        Ok(_) => Ok(()),
        Err(e) if e.is_instance_of::<PyKeyboardInterrupt>(py) => {
            interrupt.set(e);
            Ok(())
        }
        Err(e) => Err(callback_error(&format!("{what}.{name}"), e)),
    }
}

impl PyHook {
    fn new(py: Python<'_>, obj: Py<PyAny>, interrupt: &Interrupt) -> PyResult<Self> {
        let hooks = py.import("centroid.hooks")?;
        Ok(Self {
            obj,
            context_class: hooks.getattr("SessionRunContext")?.unbind(),
            values_class: hooks.getattr("SessionRunValues")?.unbind(),
            interrupt: interrupt.clone(),
        })
    }

    fn run_with_context(
        &self,
        ctx: &mut RunContext,
        name: &str,
        values: Option<&RunValues>,
    ) -> centroid::Result<()> {
        Python::with_gil(|py| {
            let wrap = |e: PyErr| callback_error(&format!("hook.{name}"), e);
            let pctx = self
                .context_class
                .bind(py)
                .call1((ctx.global_step(), ctx.stop_requested()))
                .map_err(wrap)?;
            match values {
                None => call_optional(
                    py,
                    &self.obj,
                    name,
                    (pctx.clone(),),
                    &self.interrupt,
                    "hook",
                )?,
                Some(v) => {
                    let clusters = match ctx.clusters() {
                        Some(c) => Some(dense_to_numpy(py, c).map_err(wrap)?),
                        None => None,
                    };
                    let pvalues = self
                        .values_class
                        .bind(py)
                        .call1((v.global_step, v.loss, clusters))
                        .map_err(wrap)?;
                    call_optional(
                        py,
                        &self.obj,
                        name,
                        (pctx.clone(), pvalues),
                        &self.interrupt,
                        "hook",
                    )?
                }
            }
            let stop: bool = pctx
                .getattr("stop_requested")
                .and_then(|s| s.is_truthy())
                .map_err(wrap)?;
            if stop || self.interrupt.is_set() {
                ctx.request_stop();
            }
            // What a TensorFlow hook's SessionRunArgs or CheckpointSaverHook
            // asked of the loop (see centroid/hooks.py).
            let asked = |attr: &str| -> PyResult<bool> {
                match pctx.getattr(attr) {
                    Ok(v) => v.is_truthy(),
                    Err(_) => Ok(false),
                }
            };
            if asked("clusters_requested").map_err(wrap)? {
                ctx.request_clusters();
            }
            if asked("checkpoint_requested").map_err(wrap)? {
                ctx.request_checkpoint();
            }
            Ok(())
        })
    }
}

/// The Python hooks of one call, owned by its arguments.
fn py_hooks(py: Python<'_>, hooks: Vec<Py<PyAny>>, interrupt: &Interrupt) -> PyResult<Vec<PyHook>> {
    hooks
        .into_iter()
        .map(|h| PyHook::new(py, h, interrupt))
        .collect()
}

/// The hooks as the core takes them. Called inside `allow_threads`: the
/// concrete hooks are `Send` (they hold only `Py` handles), the boxed trait
/// objects are not, so they are made on the thread that runs the call.
fn boxed_hooks(hooks: Vec<PyHook>) -> Vec<Box<dyn SessionRunHook>> {
    hooks
        .into_iter()
        .map(|h| Box::new(h) as Box<dyn SessionRunHook>)
        .collect()
}

impl SessionRunHook for PyHook {
    fn begin(&mut self) -> centroid::Result<()> {
        Python::with_gil(|py| call_optional(py, &self.obj, "begin", (), &self.interrupt, "hook"))
    }
    fn before_run(&mut self, ctx: &mut RunContext) -> centroid::Result<()> {
        self.run_with_context(ctx, "before_run", None)
    }
    fn after_run(&mut self, ctx: &mut RunContext, values: &RunValues) -> centroid::Result<()> {
        self.run_with_context(ctx, "after_run", Some(values))
    }
    fn end(&mut self) -> centroid::Result<()> {
        Python::with_gil(|py| call_optional(py, &self.obj, "end", (), &self.interrupt, "hook"))
    }
}

/// A Python checkpoint-saver listener.
struct PyListener {
    obj: Py<PyAny>,
    interrupt: Interrupt,
}

impl CheckpointSaverListener for PyListener {
    fn begin(&mut self) -> centroid::Result<()> {
        Python::with_gil(|py| {
            call_optional(py, &self.obj, "begin", (), &self.interrupt, "listener")
        })
    }
    fn before_save(&mut self, global_step: i64) -> centroid::Result<()> {
        Python::with_gil(|py| {
            call_optional(
                py,
                &self.obj,
                "before_save",
                (global_step,),
                &self.interrupt,
                "listener",
            )
        })
    }
    fn after_save(&mut self, global_step: i64) -> centroid::Result<()> {
        Python::with_gil(|py| {
            call_optional(
                py,
                &self.obj,
                "after_save",
                (global_step,),
                &self.interrupt,
                "listener",
            )
        })
    }
    fn end(&mut self, global_step: i64) -> centroid::Result<()> {
        Python::with_gil(|py| {
            call_optional(
                py,
                &self.obj,
                "end",
                (global_step,),
                &self.interrupt,
                "listener",
            )
        })
    }
}

/// A Python `initial_clusters(batch, k_remaining)` function. The Python side
/// wraps the user's function so that it returns a 2-D float array.
struct PyInitFn(Py<PyAny>);

impl InitFn for PyInitFn {
    fn call(&self, batch: &Dense<'_>, k_remaining: usize) -> centroid::Result<Dense<'static>> {
        Python::with_gil(|py| {
            let wrap = |e: PyErr| callback_error("initial_clusters", e);
            let arr = dense_to_numpy(py, batch).map_err(wrap)?;
            let out = self.0.bind(py).call1((arr, k_remaining)).map_err(wrap)?;
            dense_from_array(&out, None, "the initial_clusters function's result").map_err(wrap)
        })
    }
}

fn config_from_py(obj: &Bound<'_, PyAny>) -> PyResult<RunConfig> {
    let get = |name: &str| obj.getattr(name);
    Ok(RunConfig {
        model_dir: get("model_dir")?.extract()?,
        random_seed: get("random_seed")?.extract()?,
        save_checkpoints_steps: get("save_checkpoints_steps")?.extract()?,
        save_checkpoints_secs: get("save_checkpoints_secs")?.extract()?,
        keep_checkpoint_max: get("keep_checkpoint_max")?.extract()?,
        log_step_count_steps: get("log_step_count_steps")?.extract()?,
        save_summary_steps: match obj.getattr("save_summary_steps") {
            Ok(v) => v.extract()?,
            Err(_) => RunConfig::default().save_summary_steps,
        },
        num_threads: get("num_threads")?.extract()?,
    })
}

fn tensor_to_numpy(py: Python<'_>, t: Tensor) -> PyResult<Bound<'_, PyAny>> {
    match t {
        Tensor::F32 { values, shape } => to_numpy(py, values, &shape),
        Tensor::F64 { values, shape } => to_numpy(py, values, &shape),
        Tensor::I64 { values, shape } => to_numpy(py, values, &shape),
        Tensor::Bool { values, shape } => to_numpy(py, values, &shape),
    }
}

/// The core estimator. Python's `centroid.KMeansClustering` wraps it.
///
/// One call runs at a time: the model is behind a lock that a second thread
/// finds taken (a clear error rather than PyO3's "Already borrowed"), and
/// the constant attributes are kept outside it so they read at any time.
#[pyclass(module = "centroid._core", name = "_Estimator")]
pub struct PyEstimator {
    inner: Mutex<KMeansClustering>,
    model_dir: PathBuf,
    num_clusters: usize,
    seed: u64,
    /// Warnings the core raised during the current call (a damaged
    /// checkpoint skipped), emitted as Python warnings when it returns.
    warnings: Arc<Mutex<Vec<String>>>,
}

impl PyEstimator {
    /// The model, or an error when another thread is using it.
    fn busy(&self) -> PyResult<std::sync::MutexGuard<'_, KMeansClustering>> {
        match self.inner.try_lock() {
            Ok(g) => Ok(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => Err(PyRuntimeError::new_err(
                "this KMeansClustering is already running a call (train, evaluate, predict, ...) on another thread; \
                 an estimator runs one call at a time: wait for it, or give each thread its own estimator",
            )),
        }
    }

    /// Emits the core's warnings of the call that just ended: a
    /// `RuntimeWarning` through `warnings.warn` and a record on the
    /// `centroid` logger.
    fn emit_warnings(&self, py: Python<'_>) -> PyResult<()> {
        let pending: Vec<String> = match self.warnings.lock() {
            Ok(mut g) => g.drain(..).collect(),
            Err(p) => p.into_inner().drain(..).collect(),
        };
        if pending.is_empty() {
            return Ok(());
        }
        let warnings = py.import("warnings")?;
        let category = py.import("builtins")?.getattr("RuntimeWarning")?;
        let logger = py
            .import("logging")?
            .call_method1("getLogger", ("centroid",))?;
        for message in pending {
            logger.call_method1("warning", (message.as_str(),))?;
            warnings.call_method1("warn", (message.as_str(), &category, 2))?;
        }
        Ok(())
    }

    /// Emits the warnings, then returns `result` (a raised warning wins).
    fn finish<T>(&self, py: Python<'_>, result: PyResult<T>) -> PyResult<T> {
        self.emit_warnings(py)?;
        result
    }
}

#[pymethods]
impl PyEstimator {
    #[new]
    #[pyo3(signature = (num_clusters, model_dir, initial_clusters, distance_metric, random_seed,
        use_mini_batch, mini_batch_steps_per_iteration, kmeans_plus_plus_num_retries,
        relative_tolerance, feature_columns, config))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        num_clusters: usize,
        model_dir: Option<PathBuf>,
        initial_clusters: &Bound<'_, PyAny>,
        distance_metric: &str,
        random_seed: u64,
        use_mini_batch: bool,
        mini_batch_steps_per_iteration: u64,
        kmeans_plus_plus_num_retries: i64,
        relative_tolerance: Option<f64>,
        feature_columns: Option<Vec<String>>,
        config: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let initial_clusters = if let Ok(name) = initial_clusters.downcast::<PyString>() {
            InitialClusters::from_name(&name.to_string()).py()?
        } else if initial_clusters.hasattr("__array_interface__")? {
            InitialClusters::Array(dense_from_array(
                initial_clusters,
                None,
                "initial_clusters",
            )?)
        } else if initial_clusters.is_callable() {
            InitialClusters::Callable(Arc::new(PyInitFn(initial_clusters.clone().unbind())))
        } else {
            return Err(PyValueError::new_err(
                "initial_clusters must be \"random\", \"kmeans_plus_plus\", an array of centres or a callable",
            ));
        };
        let params = KMeansParams::new(num_clusters)
            .initial_clusters(initial_clusters)
            .distance_metric(Metric::from_name(distance_metric).py()?)
            .random_seed(random_seed)
            .mode(Mode::from_flags(use_mini_batch, mini_batch_steps_per_iteration).py()?)
            .kmeans_plus_plus_num_retries(Retries::from_i64(kmeans_plus_plus_num_retries).py()?)
            .relative_tolerance(relative_tolerance)
            .feature_columns(feature_columns)
            .check()
            .py()?;
        let config = config.map(config_from_py).transpose()?;
        let mut inner = KMeansClustering::new(params, model_dir, config).py()?;
        let warnings: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = Arc::clone(&warnings);
        inner.set_warning_handler(Arc::new(move |m: &str| match sink.lock() {
            Ok(mut g) => g.push(m.to_string()),
            Err(p) => p.into_inner().push(m.to_string()),
        }));
        Ok(Self {
            model_dir: inner.model_dir().to_path_buf(),
            num_clusters: inner.params().num_clusters(),
            seed: inner.seed(),
            inner: Mutex::new(inner),
            warnings,
        })
    }

    #[getter]
    fn model_dir(&self) -> PathBuf {
        self.model_dir.clone()
    }

    #[getter]
    fn num_clusters(&self) -> usize {
        self.num_clusters
    }

    #[getter]
    fn seed(&self) -> u64 {
        self.seed
    }

    #[pyo3(signature = (input_fn, hooks, steps, max_steps, saving_listeners))]
    fn train(
        &self,
        py: Python<'_>,
        input_fn: Py<PyAny>,
        hooks: Vec<Py<PyAny>>,
        steps: Option<u64>,
        max_steps: Option<u64>,
        saving_listeners: Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        self.run_train(
            py,
            input_fn,
            None,
            hooks,
            steps,
            max_steps,
            saving_listeners,
        )
    }

    /// Training whose steps' statistics come from
    /// `statistics_fn(global_step, centres) -> dict | None` (partial
    /// statistics merged over a cluster's partitions; see
    /// `centroid._partitioned`). `input_fn` only initialises a fresh model.
    #[pyo3(signature = (input_fn, statistics_fn, hooks, steps, max_steps, saving_listeners))]
    #[allow(clippy::too_many_arguments)]
    fn train_from_statistics(
        &self,
        py: Python<'_>,
        input_fn: Py<PyAny>,
        statistics_fn: Py<PyAny>,
        hooks: Vec<Py<PyAny>>,
        steps: Option<u64>,
        max_steps: Option<u64>,
        saving_listeners: Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        self.run_train(
            py,
            input_fn,
            Some(statistics_fn),
            hooks,
            steps,
            max_steps,
            saving_listeners,
        )
    }
    #[pyo3(signature = (input_fn, steps, hooks, checkpoint_path, name))]
    fn evaluate(
        &self,
        py: Python<'_>,
        input_fn: Py<PyAny>,
        steps: Option<u64>,
        hooks: Vec<Py<PyAny>>,
        checkpoint_path: Option<PathBuf>,
        name: Option<String>,
    ) -> PyResult<(f64, f64, i64)> {
        let keep = KeepAlive::default();
        let interrupt = Interrupt::default();
        let hooks = py_hooks(py, hooks, &interrupt)?;
        let guard = self.busy()?;
        let inner = &*guard;
        let result = py.allow_threads(|| {
            let make_input = || call_input_fn(&input_fn, &keep, &interrupt);
            let args = EvalArgs {
                steps,
                hooks: boxed_hooks(hooks),
                checkpoint_path,
                name,
            };
            inner.evaluate(make_input, args)
        });
        drop(guard);
        if let Some(held) = interrupt.take() {
            return self.finish(py, Err(held));
        }
        let r = self.finish(py, result.py())?;
        Ok((r.score, r.loss, r.global_step))
    }

    /// A lazy iterator of `(cluster_index, all_distances)` per input batch
    /// (either may be None when not asked for).
    #[pyo3(signature = (input_fn, predict_keys, hooks, checkpoint_path))]
    fn predict(
        &self,
        py: Python<'_>,
        input_fn: Py<PyAny>,
        predict_keys: Option<Vec<String>>,
        hooks: Vec<Py<PyAny>>,
        checkpoint_path: Option<PathBuf>,
    ) -> PyResult<PredictIter> {
        let interrupt = Interrupt::default();
        let predict_keys = predict_keys
            .map(|k| PredictKeys::from_names(&k))
            .transpose()
            .py()?;
        let hooks = py_hooks(py, hooks, &interrupt)?;
        // The predictions outlive this call, so they own everything they
        // use: the hooks, and the input's arrays (copied, not borrowed, since
        // nothing here can hold a borrowed array for as long as they live).
        let interrupt_for_input = interrupt.clone();
        // Loading the checkpoint and the first input_fn() call run with the
        // GIL held; the per-batch work in __next__ releases it.
        let make_input = move || call_input_fn_owned(&input_fn, &interrupt_for_input);
        let args = PredictArgs {
            predict_keys,
            hooks: boxed_hooks(hooks),
            checkpoint_path,
        };
        let predictions = self.busy()?.predict(make_input, args).py();
        let predictions = self.finish(py, predictions)?;
        Ok(PredictIter {
            predictions: Mutex::new(Some(AssertSend(predictions))),
            interrupt,
        })
    }

    fn cluster_centers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let guard = self.busy()?;
        let inner = &*guard;
        let c = py.allow_threads(|| inner.cluster_centers()).py();
        drop(guard);
        let c = self.finish(py, c)?;
        dense_to_numpy(py, &c)
    }

    fn get_variable_names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let names = self.busy()?.get_variable_names().py();
        self.finish(py, names)
    }

    fn get_variable_value<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let t = self.busy()?.get_variable_value(name).py();
        let t = self.finish(py, t)?;
        tensor_to_numpy(py, t)
    }

    fn latest_checkpoint(&self) -> PyResult<Option<PathBuf>> {
        Ok(self.busy()?.latest_checkpoint())
    }

    /// Writes a SavedModel under `export_dir_base/<timestamp>`; `features`
    /// are the serving inputs as (name, width), in join order, parsed from
    /// serialized tf.Example protos when `parse_examples`.
    #[pyo3(signature = (export_dir_base, features, assets_extra, as_text, checkpoint_path, parse_examples=false))]
    // The Python method's arguments, one for one.
    #[allow(clippy::too_many_arguments)]
    fn export_saved_model(
        &self,
        py: Python<'_>,
        export_dir_base: PathBuf,
        features: Vec<(String, usize)>,
        assets_extra: Vec<(String, PathBuf)>,
        as_text: bool,
        checkpoint_path: Option<PathBuf>,
        parse_examples: bool,
    ) -> PyResult<PathBuf> {
        let guard = self.busy()?;
        let inner = &*guard;
        let receiver = ServingInputReceiver {
            features,
            parse_examples,
        };
        let result = py
            .allow_threads(|| {
                inner.export_saved_model(
                    &export_dir_base,
                    &receiver,
                    &assets_extra,
                    as_text,
                    checkpoint_path.as_deref(),
                )
            })
            .py();
        drop(guard);
        self.finish(py, result)
    }
}

/// The lazy result of `_Estimator.predict`. It may be advanced from any
/// Python thread (a generator handed to another thread keeps working); one
/// thread at a time, the others get an error.
#[pyclass(module = "centroid._core")]
pub struct PredictIter {
    predictions: Mutex<Option<AssertSend<Predictions<'static>>>>,
    interrupt: Interrupt,
}

type BatchOut<'py> = (Option<Bound<'py, PyAny>>, Option<Bound<'py, PyAny>>);

#[pymethods]
impl PredictIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<BatchOut<'py>>> {
        let mut slot =
            match self.predictions.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Err(PyRuntimeError::new_err(
                    "this predict generator is being advanced on another thread at the same time",
                )),
            };
        let Some(predictions) = slot.as_mut() else {
            return Ok(None);
        };
        let mut target = AssertSend(predictions.get());
        let next = py.allow_threads(move || target.get().next());
        if let Some(held) = self.interrupt.take() {
            *slot = None;
            return Err(held);
        }
        match next {
            None => {
                *slot = None;
                Ok(None)
            }
            Some(Err(e)) => {
                *slot = None;
                Err(to_pyerr(e))
            }
            Some(Ok(PredictionBatch {
                cluster_index,
                all_distances,
            })) => {
                let index = match cluster_index {
                    Some(v) => {
                        let n = v.len();
                        Some(to_numpy(py, v, &[n])?)
                    }
                    None => None,
                };
                let distances = match all_distances {
                    Some(d) => Some(dense_to_numpy(py, &d)?),
                    None => None,
                };
                Ok(Some((index, distances)))
            }
        }
    }
}

impl PyEstimator {
    #[allow(clippy::too_many_arguments)]
    fn run_train(
        &self,
        py: Python<'_>,
        input_fn: Py<PyAny>,
        statistics: Option<Py<PyAny>>,
        hooks: Vec<Py<PyAny>>,
        steps: Option<u64>,
        max_steps: Option<u64>,
        saving_listeners: Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        let keep = KeepAlive::default();
        let interrupt = Interrupt::default();
        let hooks = py_hooks(py, hooks, &interrupt)?;
        let listeners: Vec<PyListener> = saving_listeners
            .into_iter()
            .map(|obj| PyListener {
                obj,
                interrupt: interrupt.clone(),
            })
            .collect();
        let mut guard = self.busy()?;
        let inner = &mut *guard;
        let result = py.allow_threads(|| {
            let mut make_input = || call_input_fn(&input_fn, &keep, &interrupt);
            let mut poll = || interrupt.poll();
            let args = TrainArgs {
                steps,
                max_steps,
                hooks: boxed_hooks(hooks),
                saving_listeners: listeners
                    .into_iter()
                    .map(|l| Box::new(l) as Box<dyn CheckpointSaverListener>)
                    .collect(),
                interrupt: Some(&mut poll),
                on_step: None,
                input_state: None,
            };
            match statistics {
                None => inner.train(&mut make_input, args).map(|_| ()),
                Some(f) => {
                    let mut source = PyStatistics(f);
                    inner
                        .train_from_statistics(&mut make_input, &mut source, args)
                        .map(|_| ())
                }
            }
        });
        drop(guard);
        let result = match (result, interrupt.take()) {
            (Err(e @ centroid::Error::Interrupted { .. }), _) => Err(to_pyerr(e)),
            (_, Some(held)) => Err(held),
            (r, None) => r.py(),
        };
        self.finish(py, result)
    }
}

/// A Python `statistics_fn(global_step, centres)` as the core's source of
/// per-step statistics.
struct PyStatistics(Py<PyAny>);

impl StepStatistics for PyStatistics {
    fn next(
        &mut self,
        global_step: i64,
        centres: &Dense<'_>,
    ) -> centroid::Result<Option<ClusterStats>> {
        Python::with_gil(|py| {
            let wrap = |e: PyErr| callback_error("statistics_fn", e);
            let c = dense_to_numpy(py, centres).map_err(wrap)?;
            let out = self.0.bind(py).call1((global_step, c)).map_err(wrap)?;
            if out.is_none() {
                return Ok(None);
            }
            let d = out.downcast::<PyDict>().map_err(|_| {
                wrap(PyTypeError::new_err(
                    "statistics_fn must return a dict of partial statistics or None",
                ))
            })?;
            crate::partial::stats_from_dict(d, 0)
                .map(|p| Some(p.stats))
                .map_err(wrap)
        })
    }
}
