"""Input functions over in-memory NumPy data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterator, Optional, Union

import numpy as np

from ._input import as_float_array

__all__ = ["numpy_input_fn", "pandas_input_fn"]

ArrayOrDict = Union[np.ndarray, Dict[str, np.ndarray]]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def numpy_input_fn(
    x: Union[Any, Mapping[str, Any]],
    y: Any = None,
    batch_size: int = 128,
    num_epochs: Optional[int] = 1,
    shuffle: Optional[bool] = None,
    queue_capacity: int = 1000,
    num_threads: int = 1,
    *,
    seed: Optional[int] = None,
) -> Callable[[], Iterator[Any]]:
    """An input function that yields `x` in batches of `batch_size` rows,
    with the signature and defaults of TensorFlow's
    `tf.compat.v1.estimator.inputs.numpy_input_fn`.

    Args:
      x: an array [N, d], or a dict of name -> [N] or [N, d] arrays.
      y: labels: yielded as `(features, labels)` pairs as TensorFlow does,
        which `KMeansClustering` then refuses (K-means takes no labels).
      batch_size: rows per batch; as in TensorFlow, batches run across epoch
        boundaries and only the last batch may be smaller.
      num_epochs: passes over the data; `None` repeats without end.
      shuffle: visit the rows of each epoch in a random order. Required, as
        in TensorFlow.
      queue_capacity, num_threads: accepted for TensorFlow's sake (there is
        no queue here; batches are slices of `x`).
      seed: makes the order reproducible; every call of the returned input
        function then yields the same sequence.

    Returns:
      A function that, each time it is called, returns a fresh iterator of
      batches (arrays, or dicts of arrays when `x` is a dict).

    Raises:
      ValueError: `shuffle` is not a bool, a count is out of range, or the
        arrays do not line up.
    """
    if not isinstance(shuffle, (bool, np.bool_)):
        raise ValueError(
            "shuffle must be provided and explicitly set as boolean (it is recommended to set it as True "
            f"for training); got {shuffle!r}"
        )
    size = _positive_int("batch_size", batch_size)
    if num_epochs is not None:
        _positive_int("num_epochs", num_epochs)
    _positive_int("queue_capacity", queue_capacity)
    _positive_int("num_threads", num_threads)
    if isinstance(x, Mapping):
        if not x:
            raise ValueError("x is an empty dict")
        columns = {str(k): as_float_array(v, f"x[{k!r}]") for k, v in x.items()}
        lengths = {k: (v.shape[0] if v.ndim else -1) for k, v in columns.items()}
        for k, v in columns.items():
            if v.ndim not in (1, 2):
                raise ValueError(f"x[{k!r}] must be [N] or [N, d], got shape {v.shape}")
        if len(set(lengths.values())) != 1:
            raise ValueError(f"the arrays of x have different lengths: {lengths}")
        n = next(iter(lengths.values()))
        data: Union[np.ndarray, Dict[str, np.ndarray]] = columns
    else:
        arr = as_float_array(x, "x")
        if arr.ndim != 2:
            raise ValueError(f"x must be a 2-D array [N, d] or a dict of arrays, got shape {arr.shape}")
        n = arr.shape[0]
        data = arr
    if n == 0:
        raise ValueError("x has no rows")
    labels = None
    if y is not None:
        labels = np.asarray(y)
        if labels.ndim == 0 or labels.shape[0] != n:
            raise ValueError(f"y must have the {n} rows of x, got shape {labels.shape}")
    return _batches(data, labels, n, size, num_epochs, bool(shuffle), seed)


def _batches(
    data: Union[np.ndarray, Dict[str, np.ndarray]],
    labels: Optional[np.ndarray],
    n: int,
    size: int,
    num_epochs: Optional[int],
    shuffle: bool,
    seed: Optional[int],
) -> Callable[[], Iterator[Any]]:
    def take(rows: np.ndarray) -> Any:
        if isinstance(data, dict):
            features: Any = {k: np.ascontiguousarray(v[rows]) for k, v in data.items()}
        else:
            features = np.ascontiguousarray(data[rows])
        return features if labels is None else (features, labels[rows])

    def rows() -> Iterator[np.ndarray]:
        rng = np.random.default_rng(seed)
        epoch = 0
        while num_epochs is None or epoch < num_epochs:
            yield rng.permutation(n) if shuffle else np.arange(n)
            epoch += 1

    def batches() -> Iterator[Any]:
        # As TensorFlow's queue: the epochs form one stream of rows, cut
        # into batches that may span an epoch boundary; only the very last
        # batch may be short.
        pending = np.empty(0, dtype=np.int64)
        for order in rows():
            pending = np.concatenate([pending, order])
            while len(pending) >= size:
                yield take(pending[:size])
                pending = pending[size:]
        if len(pending):
            yield take(pending)

    def input_fn() -> Iterator[Any]:
        return batches()

    return input_fn


def pandas_input_fn(
    x: Any,
    y: Any = None,
    batch_size: int = 128,
    num_epochs: Optional[int] = 1,
    shuffle: Optional[bool] = None,
    queue_capacity: int = 1000,
    num_threads: int = 1,
    target_column: str = "target",
    *,
    seed: Optional[int] = None,
) -> Callable[[], Iterator[Any]]:
    """An input function over a pandas DataFrame, with the signature of
    TensorFlow's `tf.compat.v1.estimator.inputs.pandas_input_fn`: each batch
    is a dict of column name -> [n] array (join them with
    `feature_columns`, or in sorted name order). `y` is a Series of labels
    (refused by `KMeansClustering`); `target_column` is the name it must not
    clash with. The other arguments are as in `numpy_input_fn`. pandas is
    not imported here: anything with `columns` and per-column `to_numpy()`
    works.

    Raises:
      ValueError: `shuffle` is not a bool, `x` is no DataFrame, or
        `target_column` is already a column of `x`.
    """
    if not isinstance(shuffle, (bool, np.bool_)):
        raise ValueError(
            "shuffle must be provided and explicitly set as boolean (it is recommended to set it as True "
            f"for training); got {shuffle!r}"
        )
    columns = getattr(x, "columns", None)
    if columns is None:
        raise ValueError(f"x must be a pandas DataFrame, got {type(x).__name__}")
    if y is not None and target_column in list(columns):
        raise ValueError(f"cannot use name {target_column} for target column: DataFrame already has a column with that name")
    features = {str(c): np.asarray(x[c].to_numpy()) for c in columns}
    labels = None if y is None else np.asarray(getattr(y, "to_numpy", lambda: y)())
    return numpy_input_fn(
        features,
        labels,
        batch_size=batch_size,
        num_epochs=num_epochs,
        shuffle=bool(shuffle),
        queue_capacity=queue_capacity,
        num_threads=num_threads,
        seed=seed,
    )
