"""Normalising what an `input_fn` returns, before it reaches the Rust core.

A batch becomes a C-contiguous float32/float64 2-D array, or a dict of
1-D/2-D such arrays. Arrays already in that form pass through untouched
(the core then reads them in place); anything else is converted once.

A `scipy.sparse` batch (matrix or array, any format) becomes CSR with
sorted, unique column indices, int64 `indptr`, int32 `indices` and float32
or float64 values; the core's sparse kernels read it without densifying
(under the cosine distance the core densifies it, one batch at a time). A
sparse feature inside a dict of features is densified here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from types import SimpleNamespace
from typing import Any, Callable, Dict, Tuple, Union

import numpy as np

LABELS_ERROR = "KMeansClustering does not take labels"

Batch = Union[np.ndarray, Dict[str, np.ndarray], SimpleNamespace]


def _is_sparse(value: Any) -> bool:
    # scipy is optional: a value can only be a scipy.sparse matrix if scipy
    # has been imported.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and bool(sparse.issparse(value))


def canonical_csr(X: Any) -> Any:
    """X as CSR with sorted, unique column indices: X itself when it already
    is, else a converted or sorted copy (the caller's matrix is never
    changed)."""
    if X.format != "csr":
        X = X.tocsr()
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    return X


def csr_parts(X: Any) -> SimpleNamespace:
    """A canonical CSR matrix as the core takes it: int64 indptr, int32
    indices and the values, borrowed when they already have those types."""
    if X.shape[1] > np.iinfo(np.int32).max:
        raise ValueError(f"a sparse matrix may have at most {np.iinfo(np.int32).max} columns, got {X.shape[1]}")
    return SimpleNamespace(
        format="csr",
        shape=(int(X.shape[0]), int(X.shape[1])),
        indptr=np.ascontiguousarray(X.indptr, dtype=np.int64),
        indices=np.ascontiguousarray(X.indices, dtype=np.int32),
        data=np.ascontiguousarray(X.data),
    )


def as_sparse_batch(value: Any, what: str) -> SimpleNamespace:
    """A scipy.sparse batch as the core's CSR parts (float64 stays float64;
    every other numeric type becomes float32)."""
    if value.ndim != 2:
        raise ValueError(f"{what} must be a 2-D sparse matrix [N, d], got shape {value.shape}")
    if value.dtype.kind not in "biuf":
        raise ValueError(f"{what} is not numeric (dtype {value.dtype})")
    X = canonical_csr(value)
    if X.dtype != np.float32 and X.dtype != np.float64:
        X = X.astype(np.float32)
    return csr_parts(X)


def as_float_array(value: Any, what: str) -> np.ndarray:
    """`value` as a C-contiguous float32 or float64 array (float64 stays
    float64; every other numeric type becomes float32). A scipy.sparse
    matrix or array is densified."""
    if _is_sparse(value):
        value = value.toarray()
    if isinstance(value, np.ndarray):
        arr = value
    elif hasattr(value, "__array__") or isinstance(value, (list, tuple)) or np.isscalar(value):
        try:
            arr = np.asarray(value)
        except ValueError as e:
            raise ValueError(f"{what} is not a regular array (ragged rows?): {e}") from None
    else:
        raise ValueError(f"{what} must be an array, got {type(value).__name__}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{what} is not numeric (dtype {arr.dtype})")
    if arr.dtype != np.float32 and arr.dtype != np.float64:
        arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr)


def is_dask_collection(value: Any) -> bool:
    """Whether `value` is a dask Array or DataFrame (without importing dask)."""
    cls = type(value)
    return cls.__module__.split(".")[0] == "dask" and cls.__name__ in ("Array", "DataFrame")


def _is_batch(value: Any) -> bool:
    return (
        isinstance(value, (np.ndarray, Mapping, list, tuple))
        or _is_sparse(value)
        or hasattr(value, "__array__")
        or np.isscalar(value)
    )


def normalize_batch(value: Any, what: str = "the input batch") -> Batch:
    """One batch as the core takes it; refuses labels."""
    if isinstance(value, tuple) and len(value) == 2:
        features, labels = value
        if labels is not None:
            raise ValueError(LABELS_ERROR)
        value = features
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"{what} is an empty dict of features")
        out: Dict[str, np.ndarray] = {}
        for key, column in value.items():
            if not isinstance(key, str):
                raise ValueError(f"feature names must be strings, got {key!r}")
            arr = as_float_array(column, f"feature {key!r}")
            if arr.ndim not in (1, 2):
                raise ValueError(f"feature {key!r} must be [N] or [N, d], got shape {arr.shape}")
            out[key] = arr
        return out
    if _is_sparse(value):
        return as_sparse_batch(value, what)
    arr = as_float_array(value, what)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array [N, d], got shape {arr.shape}")
    return arr


class _Batches:
    """One normalised batch per `next()`, from the user's iterator."""

    def __init__(self, it: Iterator[Any]) -> None:
        self._it = it
        self._count = 0

    def __iter__(self) -> "_Batches":
        return self

    def __next__(self) -> Batch:
        value = next(self._it)
        batch = normalize_batch(value, f"input batch {self._count}")
        self._count += 1
        return batch


def normalize_result(result: Any) -> Tuple[bool, Any]:
    """`(True, batch)` for one batch (used for every step) or
    `(False, iterator of batches)`."""
    if result is None:
        raise ValueError("input_fn returned None; it must return an array, a dict of arrays, or an iterator of them")
    if is_dask_collection(result):
        # Evaluation and prediction read a dask collection one partition
        # at a time, each partition one batch (training maps over the
        # partitions on the cluster instead: see centroid.dask).
        from .dask import partition_batches

        return False, _Batches(partition_batches(result))
    if _is_batch(result):
        return True, normalize_batch(result)
    if isinstance(result, Iterator):
        return False, _Batches(result)
    if isinstance(result, Iterable):  # e.g. a tf.data.Dataset
        return False, _Batches(iter(result))
    raise ValueError(
        f"input_fn returned a {type(result).__name__}; it must return an array, a dict of arrays, "
        "a (features, None) pair, or an iterator of them"
    )


def wrap_input_fn(input_fn: Callable[[], Any]) -> Callable[[], Tuple[bool, Any]]:
    """The input function the core calls: the user's, normalised."""
    if not callable(input_fn):
        from .errors import ArgumentTypeError

        raise ArgumentTypeError(f"input_fn must be callable, got {type(input_fn).__name__}")

    def call() -> Tuple[bool, Any]:
        return normalize_result(input_fn())

    return call
