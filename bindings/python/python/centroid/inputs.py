"""Input functions over in-memory NumPy data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterator, Optional, Union

import numpy as np

from ._input import LABELS_ERROR, as_float_array

__all__ = ["numpy_input_fn"]

ArrayOrDict = Union[np.ndarray, Dict[str, np.ndarray]]


def numpy_input_fn(
    x: Union[Any, Mapping[str, Any]],
    batch_size: int = 128,
    num_epochs: Optional[int] = 1,
    shuffle: bool = True,
    seed: Optional[int] = None,
    *,
    y: Any = None,
) -> Callable[[], Iterator[ArrayOrDict]]:
    """An input function that yields `x` in batches of `batch_size` rows.

    Args:
      x: an array [N, d], or a dict of name -> [N] or [N, d] arrays.
      batch_size: rows per batch; the last batch of an epoch may be smaller.
      num_epochs: passes over the data; `None` repeats without end.
      shuffle: visit the rows of each epoch in a random order.
      seed: makes the order reproducible; every call of the returned input
        function then yields the same sequence.
      y: must be None (K-means takes no labels); accepted so TensorFlow calls
        that pass `y=None` keep working.

    Returns:
      A function that, each time it is called, returns a fresh iterator of
      batches (arrays, or dicts of arrays when `x` is a dict).
    """
    if y is not None:
        raise ValueError(LABELS_ERROR)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if num_epochs is not None and (
        isinstance(num_epochs, bool) or not isinstance(num_epochs, (int, np.integer)) or num_epochs < 1
    ):
        raise ValueError(f"num_epochs must be a positive integer or None, got {num_epochs!r}")
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
    size = int(batch_size)

    def take(rows: np.ndarray) -> ArrayOrDict:
        if isinstance(data, dict):
            return {k: np.ascontiguousarray(v[rows]) for k, v in data.items()}
        return np.ascontiguousarray(data[rows])

    def batches() -> Iterator[ArrayOrDict]:
        rng = np.random.default_rng(seed)
        epoch = 0
        while num_epochs is None or epoch < num_epochs:
            order = rng.permutation(n) if shuffle else np.arange(n)
            for start in range(0, n, size):
                yield take(order[start : start + size])
            epoch += 1

    def input_fn() -> Iterator[ArrayOrDict]:
        return batches()

    return input_fn
