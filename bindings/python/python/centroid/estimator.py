"""`KMeansClustering`: TensorFlow's K-means Estimator, on the Rust core."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from . import _core
from ._input import LABELS_ERROR, as_float_array, is_dask_collection, normalize_batch, wrap_input_fn
from .errors import ArgumentTypeError
from .hooks import _HookRunner, _ListenerAdapter
from .run_config import RunConfig
from .serving import serving_features

__all__ = ["KMeansClustering", "ModeKeys", "EstimatorSpec", "PredictOutput"]

InputFn = Callable[[], Any]
_PathLike = Union[str, "os.PathLike[str]"]


def _positive(name: str, value: Optional[int]) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    value = int(value.__index__())
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _feature_names(feature_columns: Any) -> Optional[List[str]]:
    """Names of feature columns: strings, or objects with a `key` or `name`
    (such as `tf.feature_column.numeric_column`)."""
    if feature_columns is None:
        return None
    if isinstance(feature_columns, (str, bytes)) or not hasattr(feature_columns, "__iter__"):
        feature_columns = [feature_columns]
    names = []
    for c in feature_columns:
        if isinstance(c, str):
            names.append(c)
        elif isinstance(getattr(c, "key", None), str):
            names.append(c.key)
        elif isinstance(getattr(c, "name", None), str):
            names.append(c.name)
        else:
            raise ValueError(f"feature_columns entries must be names or feature columns, got {c!r}")
    return names


def _wrap_init_fn(fn: Callable[..., Any]) -> Callable[[np.ndarray, int], np.ndarray]:
    def call(batch: np.ndarray, k_remaining: int) -> np.ndarray:
        out = fn(batch, k_remaining)
        if out is None:
            return np.zeros((0, batch.shape[1]), dtype=batch.dtype)
        arr = as_float_array(out, "the initial_clusters function's result")
        if arr.size == 0:
            return np.zeros((0, batch.shape[1]), dtype=batch.dtype)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        return arr

    return call


def _hooks(hooks: Optional[Sequence[Any]], mode: str = "train") -> List[Any]:
    """The caller's hooks as one runner (TensorFlow's call order across
    hooks), or none at all."""
    hooks = list(hooks or [])
    return [_HookRunner(hooks, mode)] if hooks else []


class KMeansClustering:
    """K-means clustering as a trainable, checkpointed Estimator.

    The constructor, methods and properties are those of TensorFlow's
    `tf.compat.v1.estimator.experimental.KMeans`. `input_fn` functions take no
    arguments and return a NumPy array [N, d], a dict of name -> [N] or
    [N, d] arrays, a `(features, None)` pair, or an iterator of any of those
    (one batch per step). One batch is used for every step.

    Args:
      num_clusters: k. Ignored when `initial_clusters` is an array.
      model_dir: the checkpoint directory; None uses `config.model_dir`, else
        a fresh temporary directory.
      initial_clusters: `RANDOM_INIT`, `KMEANS_PLUS_PLUS_INIT`, an array of
        centres [k, d], or a function `f(batch, k_remaining)` returning up to
        `k_remaining` rows.
      distance_metric: `SQUARED_EUCLIDEAN_DISTANCE` or `COSINE_DISTANCE`.
      random_seed: makes initialisation reproducible (`config.random_seed`
        overrides it).
      use_mini_batch: mini-batch updates (True) or one Lloyd iteration per
        step over the whole batch (False).
      mini_batch_steps_per_iteration: S > 1 publishes the accumulated centres
        every S steps ("asynchronous full batch").
      kmeans_plus_plus_num_retries: extra candidates per k-means++ centre;
        negative means 2 + floor(ln k).
      relative_tolerance: stop training when the loss changes by less than
        this (relatively) between steps.
      config: a `centroid.RunConfig`.
      feature_columns: with dict input, the feature names to use, in order.

    Raises:
      ValueError: an argument is out of range or names an unknown metric or
        initialisation.
    """

    SQUARED_EUCLIDEAN_DISTANCE: str = _core.SQUARED_EUCLIDEAN_DISTANCE
    COSINE_DISTANCE: str = _core.COSINE_DISTANCE
    RANDOM_INIT: str = _core.RANDOM_INIT
    KMEANS_PLUS_PLUS_INIT: str = _core.KMEANS_PLUS_PLUS_INIT
    SCORE: str = _core.SCORE
    CLUSTER_INDEX: str = _core.CLUSTER_INDEX
    ALL_DISTANCES: str = _core.ALL_DISTANCES

    def __init__(
        self,
        num_clusters: Optional[int],
        model_dir: Optional[_PathLike] = None,
        initial_clusters: Any = RANDOM_INIT,
        distance_metric: str = SQUARED_EUCLIDEAN_DISTANCE,
        random_seed: int = 0,
        use_mini_batch: bool = True,
        mini_batch_steps_per_iteration: int = 1,
        kmeans_plus_plus_num_retries: int = 2,
        relative_tolerance: Optional[float] = None,
        config: Optional[RunConfig] = None,
        feature_columns: Optional[Sequence[Any]] = None,
    ) -> None:
        if config is not None and not isinstance(config, RunConfig):
            # tf.estimator.RunConfig (or tf.compat.v1's): read by field name.
            config = RunConfig.from_tensorflow(config)
        if isinstance(initial_clusters, str):
            init: Any = initial_clusters
        elif callable(initial_clusters) and not hasattr(initial_clusters, "__array__"):
            init = _wrap_init_fn(initial_clusters)
        else:
            init = as_float_array(initial_clusters, "initial_clusters")
            if init.ndim != 2:
                raise ValueError(f"initial_clusters must be a 2-D array [k, d], got shape {init.shape}")
        if isinstance(init, np.ndarray):
            k = init.shape[0] if num_clusters is None else num_clusters
        else:
            k = num_clusters
        if isinstance(k, bool) or not hasattr(k, "__index__"):
            raise ArgumentTypeError(f"num_clusters must be a positive integer, got {num_clusters!r}")
        k = int(k.__index__())
        if k < 1 and not isinstance(init, np.ndarray):
            raise ValueError(f"num_clusters must be at least 1, got {k}")
        if isinstance(random_seed, bool) or not hasattr(random_seed, "__index__") or not 0 <= int(random_seed) < 2**64:
            raise ValueError(f"random_seed must be an integer in [0, 2**64), got {random_seed!r}")
        s = _positive("mini_batch_steps_per_iteration", mini_batch_steps_per_iteration)
        if s is None:
            raise ValueError("mini_batch_steps_per_iteration must be a positive integer, got None")
        if isinstance(kmeans_plus_plus_num_retries, bool) or not hasattr(kmeans_plus_plus_num_retries, "__index__"):
            raise ValueError(f"kmeans_plus_plus_num_retries must be an integer, got {kmeans_plus_plus_num_retries!r}")
        if relative_tolerance is not None:
            relative_tolerance = float(relative_tolerance)
        if not isinstance(distance_metric, str):
            raise ValueError(f"distance_metric must be a string, got {distance_metric!r}")
        names = _feature_names(feature_columns)
        self._params: Dict[str, Any] = dict(
            num_clusters=num_clusters,
            initial_clusters=initial_clusters,
            distance_metric=distance_metric,
            random_seed=random_seed,
            use_mini_batch=bool(use_mini_batch),
            mini_batch_steps_per_iteration=s,
            kmeans_plus_plus_num_retries=int(kmeans_plus_plus_num_retries),
            relative_tolerance=relative_tolerance,
            feature_columns=names,
        )
        self._core = _core._Estimator(
            max(k, 1),
            None if model_dir is None else os.fspath(model_dir),
            init,
            distance_metric,
            int(random_seed),
            bool(use_mini_batch),
            s,
            int(kmeans_plus_plus_num_retries),
            relative_tolerance,
            names,
            config,
        )
        base = config if config is not None else RunConfig()
        self._config = base.replace(model_dir=os.fspath(self._core.model_dir))

    # ----------------------------------------------------------------- train

    def train(
        self,
        input_fn: InputFn,
        hooks: Optional[Sequence[Any]] = None,
        steps: Optional[int] = None,
        max_steps: Optional[int] = None,
        saving_listeners: Optional[Sequence[Any]] = None,
    ) -> "KMeansClustering":
        """Trains the model; returns the estimator.

        A fresh model is first initialised from one `input_fn()` call, then
        training calls `input_fn()` again. `steps` adds to the current global
        step; `max_steps` is absolute (give at most one). Training ends when
        the steps are done, the input is exhausted, `relative_tolerance` is
        met, or a hook calls `run_context.request_stop()`. A checkpoint is
        written at the end (and as `config` asks). Ctrl-C stops after the
        current step, saves it, and raises `KeyboardInterrupt`.

        Raises:
          ValueError: bad arguments or data, labels, an incompatible model.
          RuntimeError: a damaged checkpoint or an I/O failure.
        """
        steps = _positive("steps", steps)
        max_steps = _positive("max_steps", max_steps)
        if steps is not None and max_steps is not None:
            raise ValueError("give steps or max_steps, not both")
        if not callable(input_fn):
            raise ArgumentTypeError(f"input_fn must be callable, got {type(input_fn).__name__}")
        listeners = list(saving_listeners or [])
        runner = _hooks(hooks)
        if runner:
            # TensorFlow CheckpointSaverHooks bring listeners of their own.
            listeners += runner[0].checkpoint_listeners(self.model_dir)
        listeners = [_ListenerAdapter(l) for l in listeners]
        # The first call tells dask input apart; the core then gets that
        # same result on its first call, so input_fn runs as often as ever.
        first = [input_fn()]
        if is_dask_collection(first[0]):
            from .dask import EstimatorInput

            source = EstimatorInput(
                first[0],
                use_mini_batch=self._params["use_mini_batch"],
                metric=self._params["distance_metric"],
                feature_columns=self._params["feature_columns"],
            )
            self._core.train_from_statistics(
                wrap_input_fn(source.initial_batches), source.statistics, runner, steps, max_steps, listeners
            )
            return self

        def replay() -> Any:
            return first.pop() if first else input_fn()

        self._core.train(wrap_input_fn(replay), runner, steps, max_steps, listeners)
        return self

    # -------------------------------------------------------------- evaluate

    def evaluate(
        self,
        input_fn: InputFn,
        steps: Optional[int] = None,
        hooks: Optional[Sequence[Any]] = None,
        checkpoint_path: Optional[_PathLike] = None,
        name: Optional[str] = None,
    ) -> Dict[str, Union[float, int]]:
        """Evaluates the latest (or the given) checkpoint.

        Returns `{"score": s, "loss": s, "global_step": g}`, where s is the
        mean over the evaluated batches of each batch's sum of distances to
        the nearest centre. `steps` caps the number of batches.

        Raises:
          ValueError: no checkpoint yet (`centroid.errors.NotTrainedError`),
            `checkpoint_path` does not exist
            (`centroid.errors.CheckpointNotFoundError`), or bad data.
        """
        steps = _positive("steps", steps)
        wrapped = wrap_input_fn(input_fn)
        path = None if checkpoint_path is None else os.fspath(checkpoint_path)
        score, loss, step = self._core.evaluate(wrapped, steps, _hooks(hooks, "eval"), path, name)
        return {"score": float(score), "loss": float(loss), "global_step": int(step)}

    # --------------------------------------------------------------- predict

    def predict(
        self,
        input_fn: InputFn,
        predict_keys: Optional[Union[str, Sequence[str]]] = None,
        hooks: Optional[Sequence[Any]] = None,
        checkpoint_path: Optional[_PathLike] = None,
        yield_single_examples: bool = True,
    ) -> Iterator[Dict[str, Any]]:
        """Yields one dict per input row: `"cluster_index"` (an int64) and
        `"all_distances"` (the distances to every centre), or only the
        `predict_keys` asked for. With `yield_single_examples=False`, one dict
        of arrays per input batch. A single batch is predicted once.

        Raises (on the first `next()`):
          ValueError: no checkpoint yet (`centroid.errors.NotTrainedError`),
            an unknown predict key, or bad data.
        """
        if isinstance(predict_keys, str):
            predict_keys = [predict_keys]
        keys = None if predict_keys is None else [str(k) for k in predict_keys]
        path = None if checkpoint_path is None else os.fspath(checkpoint_path)
        wrapped = wrap_input_fn(input_fn)
        hook_list = _hooks(hooks, "infer")

        def generate() -> Iterator[Dict[str, Any]]:
            for index, distances in self._core.predict(wrapped, keys, hook_list, path):
                if not yield_single_examples:
                    out: Dict[str, Any] = {}
                    if index is not None:
                        out[self.CLUSTER_INDEX] = index
                    if distances is not None:
                        out[self.ALL_DISTANCES] = distances
                    yield out
                    continue
                n = len(index) if index is not None else len(distances)
                for i in range(n):
                    row: Dict[str, Any] = {}
                    if index is not None:
                        row[self.CLUSTER_INDEX] = index[i]
                    if distances is not None:
                        row[self.ALL_DISTANCES] = distances[i]
                    yield row

        return generate()

    def predict_cluster_index(self, input_fn: InputFn) -> Iterator[np.int64]:
        """Yields the index of the nearest centre of every input row."""
        for row in self.predict(input_fn, predict_keys=[self.CLUSTER_INDEX]):
            yield row[self.CLUSTER_INDEX]

    def transform(self, input_fn: InputFn) -> Iterator[np.ndarray]:
        """Yields, for every input row, its distance to every centre (squared
        Euclidean, or 1 - cosine similarity)."""
        for row in self.predict(input_fn, predict_keys=[self.ALL_DISTANCES]):
            yield row[self.ALL_DISTANCES]

    def score(self, input_fn: InputFn) -> float:
        """The sum of the first batch's distances to their nearest centres
        (positive; scikit-learn's `score` is its negative)."""
        return float(self.evaluate(input_fn, steps=1)["score"])

    # ---------------------------------------------------------------- state

    def cluster_centers(self) -> np.ndarray:
        """The centres [k, d] of the latest checkpoint.

        Raises:
          ValueError: no checkpoint yet (`centroid.errors.NotTrainedError`).
        """
        return self._core.cluster_centers()

    def get_variable_names(self) -> List[str]:
        """The names of the model's variables (`clusters`, `initialized`,
        `global_step`, and per mode `cluster_counts`, `clusters_updated`,
        `update_in_steps`)."""
        return list(self._core.get_variable_names())

    def get_variable_value(self, name: Union[str, Sequence[str]]) -> Any:
        """The value of a variable in the latest checkpoint: an array, or a
        NumPy scalar for scalar variables. Given a list of names, a list of
        values in the same order.

        Raises:
          ValueError: no such variable, or no checkpoint yet
            (`centroid.errors.NotTrainedError`).
        """
        if not isinstance(name, str) and isinstance(name, Sequence):
            return [self.get_variable_value(n) for n in name]
        if not isinstance(name, str):
            raise ArgumentTypeError(f"name must be a variable name or a list of them, got {name!r}")
        value = self._core.get_variable_value(name)
        return value[()] if value.ndim == 0 else value

    def latest_checkpoint(self) -> Optional[str]:
        """The newest checkpoint's path, or None."""
        path = self._core.latest_checkpoint()
        return None if path is None else os.fspath(path)

    def export_savedmodel(
        self,
        export_dir_base: _PathLike,
        serving_input_receiver_fn: Any = None,
        assets_extra: Optional[Dict[str, _PathLike]] = None,
        as_text: bool = False,
        checkpoint_path: Optional[_PathLike] = None,
        experimental_mode: Optional[str] = None,
        strip_default_attrs: Optional[bool] = None,
    ) -> str:
        """Writes a TensorFlow SavedModel of the latest (or the given)
        checkpoint under `export_dir_base/<seconds since the epoch>` and
        returns its path. TensorFlow loads and serves it: signatures
        `serving_default` and `cluster_index` (the nearest centre) and
        `all_distances`, each with the output key `output`.

        Args:
          export_dir_base: the folder to create the export in.
          serving_input_receiver_fn: the serving inputs (required, as in
            TensorFlow): a function returning a receiver (TensorFlow's
            `build_raw_serving_input_receiver_fn` or
            `build_parsing_serving_input_receiver_fn`, or a hand-written one
            building `tf.compat.v1.placeholder`s; see `centroid.serving`), or
            directly a dict of feature name -> width (or shape), a list of
            (name, width) pairs, or a receiver object with a `features` dict.
            Features are joined as in training (sorted names, or
            `feature_columns` order).
          assets_extra: destination name under `assets.extra/` -> source file.
          as_text: write `saved_model.pbtxt` instead of `saved_model.pb`.
          checkpoint_path: the checkpoint to export (default: the latest).

        Raises:
          ValueError: no `serving_input_receiver_fn`, no checkpoint yet
            (`centroid.errors.NotTrainedError`), a missing `checkpoint_path`,
            or serving inputs that do not add up to the model's width.
          RuntimeError: the export failed.
          FileNotFoundError: an `assets_extra` source is missing.
        """
        if serving_input_receiver_fn is None:
            raise ValueError(
                "An input_receiver_fn must be defined: pass serving_input_receiver_fn, e.g. "
                "{'x': num_features} for one input 'x' holding whole rows"
            )
        if experimental_mode not in (None, "infer", "predict"):
            raise ValueError(f"only the predict mode can be exported, got experimental_mode={experimental_mode!r}")
        export = getattr(self._core, "export_saved_model", None)
        if export is None:
            raise RuntimeError("this build of centroid cannot export SavedModels")
        d = int(self.cluster_centers().shape[1])
        features, parse_examples = serving_features(serving_input_receiver_fn, d, self._params["feature_columns"])
        assets = [(str(k), os.fspath(v)) for k, v in (assets_extra or {}).items()]
        path = None if checkpoint_path is None else os.fspath(checkpoint_path)
        return os.fspath(export(os.fspath(export_dir_base), features, assets, bool(as_text), path, parse_examples))

    export_saved_model = export_savedmodel

    # ------------------------------------------------------------ properties

    @property
    def config(self) -> RunConfig:
        """The run configuration (with `model_dir` filled in)."""
        return self._config

    @property
    def model_dir(self) -> str:
        """The checkpoint directory."""
        return self._config.model_dir or os.fspath(self._core.model_dir)

    @property
    def params(self) -> Dict[str, Any]:
        """The constructor's arguments (a copy)."""
        return dict(self._params)

    @property
    def model_fn(self) -> "ModelFn":
        """The model bound to its parameters."""
        return ModelFn(self)

    def __repr__(self) -> str:
        return f"KMeansClustering(num_clusters={self._core.num_clusters}, model_dir={self.model_dir!r})"


class ModeKeys:
    """The modes a `model_fn` runs in (TensorFlow's `tf.estimator.ModeKeys`)."""

    TRAIN = "train"
    EVAL = "eval"
    PREDICT = "infer"


class PredictOutput:
    """One output of an exported signature (as TensorFlow's
    `tf.estimator.export.PredictOutput`): `outputs` maps "output" to the
    values."""

    def __init__(self, outputs: Any) -> None:
        self.outputs = dict(outputs) if isinstance(outputs, Mapping) else {"output": outputs}

    def __repr__(self) -> str:
        return f"PredictOutput(keys={sorted(self.outputs)})"


class EstimatorSpec:
    """What `model_fn` returns (shaped as TensorFlow's `tf.estimator.EstimatorSpec`,
    holding NumPy values instead of tensors).

    Attributes:
      mode: the `ModeKeys` value the model ran in.
      predictions: `{"cluster_index": [n], "all_distances": [n, k]}`.
      loss: the batch's loss: the sum over its rows of the distance to the
        nearest centre.
      eval_metric_ops: `{"score": (loss, None)}`: TensorFlow's (value,
        update op) pairs, with nothing left to update.
      export_outputs: `{"serving_default", "cluster_index",
        "all_distances"}` -> `PredictOutput`, the signatures an export holds.
    """

    def __init__(self, mode: str, predictions: Dict[str, np.ndarray], loss: float) -> None:
        self.mode = mode
        self.predictions = predictions
        self.loss = loss
        self.eval_metric_ops: Dict[str, Any] = {_core.SCORE: (loss, None)}
        index = predictions[_core.CLUSTER_INDEX]
        self.export_outputs = {
            "serving_default": PredictOutput(index),
            _core.CLUSTER_INDEX: PredictOutput(index),
            _core.ALL_DISTANCES: PredictOutput(predictions[_core.ALL_DISTANCES]),
        }
        self.train_op = None

    def __repr__(self) -> str:
        return f"EstimatorSpec(mode={self.mode!r}, loss={self.loss!r})"


class ModelFn:
    """The K-means model of an estimator, usable on its own: the
    computations the training, evaluation and prediction loops run, applied
    to arrays. Each method reads the estimator's latest checkpoint."""

    def __init__(self, estimator: KMeansClustering) -> None:
        self._estimator = estimator

    @property
    def params(self) -> Dict[str, Any]:
        """The model's parameters."""
        return self._estimator.params

    def __call__(
        self, features: Any, labels: Any = None, mode: Optional[str] = None, config: Any = None
    ) -> EstimatorSpec:
        """Runs the model on one batch of NumPy features (an array [n, d] or
        a dict of arrays), with TensorFlow's `model_fn(features, labels,
        mode, config)` signature, and returns an `EstimatorSpec`. `mode` is
        `ModeKeys.PREDICT` ("infer", the default) or `ModeKeys.EVAL`
        ("eval"); training runs through `train()`. `labels` must be None and
        `config` is not used (the estimator's own applies).

        Raises:
          ValueError: labels, an unknown mode, or bad features.
        """
        if labels is not None:
            raise ValueError(LABELS_ERROR)
        mode = ModeKeys.PREDICT if mode is None else str(mode)
        if mode == "predict":
            mode = ModeKeys.PREDICT
        if mode not in (ModeKeys.PREDICT, ModeKeys.EVAL):
            raise ValueError(
                f"model_fn runs in mode {ModeKeys.PREDICT!r} or {ModeKeys.EVAL!r} on NumPy features, got {mode!r}; "
                "train with train()"
            )
        batch = normalize_batch(features, "features")
        out = next(iter(self._estimator.predict(lambda: batch, yield_single_examples=False)))
        index = out[_core.CLUSTER_INDEX]
        distances = out[_core.ALL_DISTANCES]
        loss = float(np.sum(distances[np.arange(len(index)), index], dtype=np.float64))
        return EstimatorSpec(mode, {_core.CLUSTER_INDEX: index, _core.ALL_DISTANCES: distances}, loss)
