"""K-means on a Dask cluster, with the Rust kernel on every partition.

`KMeans` follows dask-ml's `KMeans` API. Each Lloyd iteration maps the
partition task (`_core.partition_stats`) over the row blocks of a dask Array
or DataFrame and merges the partial statistics on the driver in partition
index order, never in completion order: the same data and chunking give the
same bits for any number of workers, any timing and any retried task. The
centres travel as task arguments (no `scatter`), so when a worker dies Dask
recomputes its tasks and the fit ends with the same centres.

It uses the active `distributed.Client` when there is one, else Dask's
default scheduler. Install with `pip install centroid[dask]`.

The driver loop itself is engine-neutral (`centroid._partitioned`); this
module is the Dask engine under it.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Union

import numpy as np

import dask
import dask.array as da

from . import _core
from . import _partitioned as driver

__all__ = ["KMeans", "from_npy", "EstimatorInput"]


def _is_dataframe(x: Any) -> bool:
    try:
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover - dask without its dataframe extra
        return False
    return isinstance(x, dd.DataFrame)


def _numeric_dtype(dtype: np.dtype) -> np.dtype:
    """float32 stays float32; every other numeric type computes in float64."""
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


def _block_task(block: Any, weights: Any, dtype: np.dtype, task: Any, index: int, offset: int, *args: Any) -> Any:
    """Runs a driver task on one dask block, made C-contiguous in `dtype`."""
    block = np.ascontiguousarray(block, dtype=dtype)
    if block.ndim != 2:
        raise ValueError(f"partition {index}: expected a 2-D block of rows, got {block.ndim} dimensions")
    if weights is not None:
        weights = np.ascontiguousarray(weights, dtype=dtype).reshape(-1)
    return task(block, weights, index, offset, *args)


def _take_task(block: Any, dtype: np.dtype, local: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(block)[local], dtype=dtype)


def _worker_version() -> str:
    from centroid import _core as core

    return str(core.VERSION)


def _active_client() -> Any:
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:
        return None


def check_worker_versions() -> None:
    """With an active `distributed.Client`, refuses workers whose centroid
    core differs from the driver's (the error names both versions)."""
    client = _active_client()
    if client is not None:
        driver.check_versions(str(_core.VERSION), client.run(_worker_version))


def _is_nan(v: Any) -> bool:
    """Unknown chunk sizes are NaN."""
    return isinstance(v, float) and v != v


class DaskPartitions:
    """A dask Array (chunked along rows) or DataFrame of numeric columns as
    the driver's `Partitions`: one partition per row block."""

    def __init__(self, X: Any, sample_weight: Any = None, what: str = "X", dtype: Optional[np.dtype] = None) -> None:
        self.feature_names: Optional[np.ndarray] = None
        if _is_dataframe(X):
            from pandas.api.types import is_numeric_dtype

            for name, dtype in X.dtypes.items():
                if not is_numeric_dtype(dtype):
                    raise ValueError(
                        f"{what}: column {name!r} has dtype {dtype}, which is not numeric; "
                        "K-means needs numeric columns only"
                    )
            self.feature_names = np.asarray([str(c) for c in X.columns], dtype=object)
            arr = X.to_dask_array(lengths=True)
        elif isinstance(X, da.Array):
            arr = X
        else:
            arr = da.from_array(np.asarray(X))
        if arr.ndim != 2:
            raise ValueError(f"{what} must be 2-D (rows x features), got {arr.ndim} dimensions")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise ValueError(f"{what} has dtype {arr.dtype}, which is not numeric")
        if any(_is_nan(c) for c in arr.chunks[0]):
            arr = arr.compute_chunk_sizes()
        if len(arr.chunks[1]) > 1:
            # One block per row range: the kernel needs whole rows.
            arr = arr.rechunk({1: -1})
        self.array = arr
        self.dtype = _numeric_dtype(arr.dtype) if dtype is None else np.dtype(dtype)
        self.n_rows = int(arr.shape[0])
        self.n_features = int(arr.shape[1])
        if self.n_rows == 0 or self.n_features == 0:
            raise ValueError(f"{what} is empty ({self.n_rows} rows x {self.n_features} columns)")
        lengths = [int(c) for c in arr.chunks[0]]
        self.offsets: List[int] = list(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int))
        self.lengths = lengths
        self.blocks = list(arr.to_delayed().ravel())
        self.weight_blocks: List[Any] = [None] * len(self.blocks)
        if sample_weight is not None:
            w = sample_weight if isinstance(sample_weight, da.Array) else da.from_array(np.asarray(sample_weight))
            if w.ndim != 1 or w.shape[0] != self.n_rows:
                raise ValueError(f"sample_weight has shape {w.shape} but {what} has {self.n_rows} rows")
            w = w.rechunk((tuple(lengths),))
            self.weight_blocks = list(w.to_delayed().ravel())

    def map(self, task: Any, *args: Any) -> list:
        call = dask.delayed(_block_task, pure=False)
        tasks = [
            call(b, w, self.dtype, task, i, off, *args)
            for i, (b, w, off) in enumerate(zip(self.blocks, self.weight_blocks, self.offsets))
        ]
        return list(dask.compute(*tasks))

    def map_one(self, index: int, task: Any, *args: Any) -> Any:
        """`task` on partition `index` alone (mini-batch steps)."""
        call = dask.delayed(_block_task, pure=False)
        b, w, off = self.blocks[index], self.weight_blocks[index], self.offsets[index]
        return dask.compute(call(b, w, self.dtype, task, index, off, *args))[0]

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        part = np.searchsorted(np.asarray(self.offsets), rows, side="right") - 1
        wanted = sorted(set(part.tolist()))
        call = dask.delayed(_take_task, pure=False)
        got = dask.compute(*[call(self.blocks[p], self.dtype, rows[part == p] - self.offsets[p]) for p in wanted])
        out = np.empty((rows.shape[0], self.n_features), dtype=self.dtype)
        for p, values in zip(wanted, got):
            out[part == p] = values
        return out


def _labels_block(block: Any, centers: np.ndarray, metric: str) -> np.ndarray:
    block = np.ascontiguousarray(block, dtype=centers.dtype)
    if block.shape[0] == 0:
        return np.empty(0, dtype=np.int32)
    return _core.partition_stats(block, None, centers, metric, 0, True, 0)["labels"]


def _distances_block(block: Any, centers: np.ndarray) -> np.ndarray:
    block = np.ascontiguousarray(block, dtype=centers.dtype)
    return np.sqrt(_core.sq_distances(block, centers))


def _inertia_block(block: Any, weights: Any, centers: np.ndarray, metric: str) -> np.ndarray:
    block = np.ascontiguousarray(block, dtype=centers.dtype)
    if weights is not None:
        weights = np.ascontiguousarray(weights, dtype=centers.dtype)
    loss = _core.partition_stats(block, weights, centers, metric, 0, False, 0)["loss"]
    return np.array([loss])


class KMeans:
    """K-means (Lloyd) on dask collections, in dask-ml's `KMeans` API.

    Parameters: `n_clusters`, `init` ("k-means||", "k-means++", "random" or
    an array of initial centres), `n_init`, `max_iter`, `tol` (relative to
    the mean feature variance, as scikit-learn's), `random_state`,
    `oversampling_factor` and `init_max_iter` (k-means|| rounds, default 5).

    Attributes after `fit`: `cluster_centers_` (NumPy), `labels_` (a lazy
    dask Array), `inertia_`, `n_iter_`, `n_features_in_`, and
    `feature_names_in_` for DataFrames.

    An `_on_iteration` attribute, when set to a callable, is called with the
    iteration number after every Lloyd update (tests and benchmarks use it).
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: Union[str, np.ndarray] = "k-means||",
        n_init: int = 1,
        max_iter: int = 300,
        tol: float = 1e-4,
        random_state: Any = None,
        oversampling_factor: float = 2.0,
        init_max_iter: Optional[int] = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.oversampling_factor = oversampling_factor
        self.init_max_iter = init_max_iter

    def get_params(self, deep: bool = True) -> dict:
        return {
            name: getattr(self, name)
            for name in (
                "n_clusters",
                "init",
                "n_init",
                "max_iter",
                "tol",
                "random_state",
                "oversampling_factor",
                "init_max_iter",
            )
        }

    def set_params(self, **params: Any) -> "KMeans":
        for name, value in params.items():
            if name not in self.get_params():
                raise ValueError(f"unknown parameter {name!r} for KMeans")
            setattr(self, name, value)
        return self

    def _check_params(self, n_rows: int) -> None:
        k = self.n_clusters
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"n_clusters must be an integer >= 1, got {k!r}")
        if k > n_rows:
            raise ValueError(f"n_clusters={k} is larger than the number of rows ({n_rows})")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if isinstance(self.n_init, bool) or not isinstance(self.n_init, (int, np.integer)) or self.n_init < 1:
            raise ValueError(f"n_init must be an integer >= 1, got {self.n_init!r}")
        if not (isinstance(self.tol, (int, float)) and self.tol >= 0):
            raise ValueError(f"tol must be a number >= 0, got {self.tol!r}")
        if isinstance(self.init, str) and self.init not in ("k-means||", "k-means++", "random"):
            raise ValueError(f"init must be 'k-means||', 'k-means++', 'random' or an array, got {self.init!r}")

    def _seeds(self) -> List[int]:
        rs = self.random_state
        if isinstance(rs, np.random.RandomState):
            state = rs
        else:
            state = np.random.RandomState(rs)
        return [int(state.randint(0, np.iinfo(np.int32).max)) for _ in range(int(self.n_init))]

    def _initial_centers(self, parts: DaskPartitions, seed: int) -> np.ndarray:
        k = int(self.n_clusters)
        init = self.init
        if isinstance(init, str):
            if init == "k-means||":
                return driver.kmeans_parallel_init(parts, k, seed, float(self.oversampling_factor), self.init_max_iter)
            if init == "k-means++":
                return driver.kmeans_plus_plus_init(parts, k, seed)
            return driver.random_init(parts, k, seed)
        centers = np.ascontiguousarray(np.asarray(init), dtype=parts.dtype)
        if centers.ndim != 2 or centers.shape != (k, parts.n_features):
            raise ValueError(
                f"the initial centres have shape {centers.shape} but n_clusters={k} and X has "
                f"{parts.n_features} features"
            )
        if not np.all(np.isfinite(centers)):
            raise ValueError("the initial centres contain NaN or infinity")
        return centers

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> "KMeans":
        """Computes the clustering; returns self."""
        parts = DaskPartitions(X, sample_weight)
        self._check_params(parts.n_rows)
        check_worker_versions()
        tol = 0.0 if self.tol == 0 else float(self.tol) * driver.mean_variance(parts)
        best = None
        for seed in self._seeds():
            centers = self._initial_centers(parts, seed)
            fitted = driver.lloyd(parts, centers, int(self.max_iter), tol, getattr(self, "_on_iteration", None))
            if best is None or fitted[2] < best[2]:
                best = fitted
            if not isinstance(self.init, str):
                break  # explicit centres: one run is the only run
        assert best is not None
        centers, n_iter, inertia = best
        self.cluster_centers_ = centers
        self.n_iter_ = int(n_iter)
        self.inertia_ = float(inertia)
        self.n_features_in_ = parts.n_features
        if parts.feature_names is not None:
            self.feature_names_in_ = parts.feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.labels_ = self._predict_array(parts.array)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise RuntimeError("this KMeans is not fitted yet: call fit first")

    def _as_array(self, X: Any) -> da.Array:
        self._check_fitted()
        if _is_dataframe(X):
            parts = DaskPartitions(X)
            arr = parts.array
        elif isinstance(X, da.Array):
            arr = X
        else:
            arr = da.from_array(np.asarray(X))
        if arr.ndim != 2 or arr.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has shape {arr.shape} but this KMeans was fitted on {self.n_features_in_} features"
            )
        if len(arr.chunks[1]) > 1:
            arr = arr.rechunk({1: -1})
        return arr

    def _centers_as(self, arr: da.Array) -> np.ndarray:
        return np.ascontiguousarray(self.cluster_centers_, dtype=_numeric_dtype(arr.dtype))

    def _predict_array(self, arr: da.Array) -> da.Array:
        centers = self._centers_as(arr)
        return arr.map_blocks(
            _labels_block, centers, driver.SQUARED_EUCLIDEAN, dtype=np.int32, drop_axis=1
        )

    def predict(self, X: Any) -> da.Array:
        """The index of the nearest centre of every row (lazy int32 dask Array)."""
        return self._predict_array(self._as_array(X))

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> da.Array:
        """Fits and returns `labels_` (lazy)."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X: Any) -> da.Array:
        """The Euclidean distance of every row to every centre (lazy)."""
        arr = self._as_array(X)
        centers = self._centers_as(arr)
        k = centers.shape[0]
        return arr.map_blocks(_distances_block, centers, dtype=centers.dtype, chunks=(arr.chunks[0], (k,)))

    def fit_transform(self, X: Any, y: Any = None, sample_weight: Any = None) -> da.Array:
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> da.Array:
        """Minus the (weighted) sum of squared distances to the nearest
        centres, as a lazy 0-d dask Array (call `.compute()` or `float()`)."""
        arr = self._as_array(X)
        centers = self._centers_as(arr)
        blocks = arr.to_delayed().ravel()
        if sample_weight is None:
            wblocks: Sequence[Any] = [None] * len(blocks)
        else:
            w = sample_weight if isinstance(sample_weight, da.Array) else da.from_array(np.asarray(sample_weight))
            wblocks = list(w.rechunk((arr.chunks[0],)).to_delayed().ravel())
        call = dask.delayed(_inertia_block, pure=True)
        pieces = [
            da.from_delayed(call(b, w, centers, driver.SQUARED_EUCLIDEAN), shape=(1,), dtype=np.float64)
            for b, w in zip(blocks, wblocks)
        ]
        return -da.concatenate(pieces).sum()


def _npy_slice(path: str, start: int, stop: int) -> np.ndarray:
    return np.array(np.load(path, mmap_mode="r")[start:stop])


def from_npy(path: Union[str, os.PathLike], chunk_rows: int = 100_000) -> da.Array:
    """A 2-D `.npy` file as a dask Array of row blocks that each task reads
    from the memory-mapped file when it runs: nothing is held in memory
    between iterations, so the data may be larger than the cluster's memory."""
    path = os.fspath(path)
    head = np.load(path, mmap_mode="r")
    if head.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D array, got shape {head.shape}")
    n, d = head.shape
    dtype = head.dtype
    del head
    if n == 0:
        raise ValueError(f"{path} is empty (0 rows)")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    blocks = [
        da.from_delayed(
            dask.delayed(_npy_slice, pure=True)(path, s, min(s + chunk_rows, n)),
            shape=(min(s + chunk_rows, n) - s, d),
            dtype=dtype,
        )
        for s in range(0, n, chunk_rows)
    ]
    return da.concatenate(blocks, axis=0)


def _estimator_dtype(dtype: np.dtype) -> np.dtype:
    """The Estimator's rule: float64 stays float64, anything else is float32."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _select(collection: Any, feature_columns: Optional[Sequence[str]]) -> Any:
    if feature_columns and _is_dataframe(collection):
        missing = [c for c in feature_columns if c not in collection.columns]
        if missing:
            raise ValueError(f"feature columns {missing} are not columns of the DataFrame")
        return collection[list(feature_columns)]
    return collection


def partition_batches(collection: Any, feature_columns: Optional[Sequence[str]] = None) -> Any:
    """The partitions of a dask Array or DataFrame as NumPy batches, each
    computed when it is asked for."""
    parts = DaskPartitions(_select(collection, feature_columns), what="the input")
    dtype = _estimator_dtype(parts.array.dtype)
    for block in parts.blocks:
        yield np.ascontiguousarray(block.compute(), dtype=dtype)


class EstimatorInput:
    """A dask collection as `KMeansClustering.train`'s input: a fresh model
    is initialised from the partitions read in order (TF's "from the first
    batch"); every step's statistics are computed on the cluster. Full
    batch: one step is one pass over every partition. Mini-batch: step g
    uses partition g mod (number of partitions), so partitions come in
    order, wrapping around, and a resumed training carries on where it
    stopped."""

    def __init__(self, collection: Any, *, use_mini_batch: bool, metric: str, feature_columns: Any = None) -> None:
        self.collection = _select(collection, feature_columns)
        self.parts = DaskPartitions(self.collection, what="the input")
        self.parts.dtype = _estimator_dtype(self.parts.array.dtype)
        self.use_mini_batch = bool(use_mini_batch)
        self.metric = metric
        check_worker_versions()

    def initial_batches(self) -> Any:
        return partition_batches(self.collection)

    def statistics(self, global_step: int, centers: np.ndarray) -> dict:
        centers = np.ascontiguousarray(centers, dtype=self.parts.dtype)
        if self.use_mini_batch:
            index = int(global_step) % len(self.parts.blocks)
            return self.parts.map_one(index, driver.stats_task, centers, self.metric, False, 0)
        return driver.merged_stats(self.parts, centers, self.metric)
