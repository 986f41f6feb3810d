"""K-means over partitioned data, for any engine that can map a task over
partitions and hand back the results in partition order.

The engine (`centroid.dask` today) implements `Partitions`: it runs a task
on every partition's block of rows and returns the results as a list in
partition index order, and fetches rows by global index. Everything else is
here and engine-neutral: the Lloyd loop, k-means|| / random / k-means++
initialisation, the tolerance, and the per-step statistics the Estimator
consumes. The per-partition work is the Rust kernel (`_core.partition_stats`,
`_core.kmeans_parallel_sample`); partial statistics are merged by
`_core.merge_partials` in partition order and the update rules are applied
by `_core.lloyd_update`, so results do not depend on which worker ran what,
in what order, or how often.

Tasks are module-level functions of (block, weights, index, row_offset,
*args) so any engine can ship them to other processes by pickling.
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Protocol, Sequence

import numpy as np

from . import _core

SQUARED_EUCLIDEAN = _core.SQUARED_EUCLIDEAN_DISTANCE


class Partitions(Protocol):
    """Rows cut into partitions, as an engine presents them to the driver."""

    n_rows: int
    n_features: int
    dtype: np.dtype
    #: The global index of every partition's first row.
    offsets: Sequence[int]

    def map(self, task: Callable[..., Any], *args: Any) -> List[Any]:
        """`task(block, weights, index, row_offset, *args)` on every
        partition (block: C-contiguous 2-D array of `dtype`; weights: 1-D
        array of `dtype` or None), results in partition index order."""
        ...

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows with these global indices, in the order given."""
        ...


def _where(index: int, offset: int, block: np.ndarray) -> str:
    return f"partition {index} (global rows {offset} to {offset + block.shape[0] - 1})"


def stats_task(
    block: np.ndarray,
    weights: Optional[np.ndarray],
    index: int,
    offset: int,
    centers: np.ndarray,
    metric: str,
    with_labels: bool,
    n_farthest: int,
) -> dict:
    """One partition's partial statistics (see `_core.partition_stats`)."""
    try:
        return _core.partition_stats(block, weights, centers, metric, offset, with_labels, n_farthest)
    except ValueError as e:
        raise ValueError(f"{_where(index, offset, block)}: {e}") from None


def sample_task(
    block: np.ndarray,
    weights: Optional[np.ndarray],
    index: int,
    offset: int,
    centers: np.ndarray,
    metric: str,
    seed: int,
    round_: int,
    oversampling: float,
    cost: float,
) -> tuple:
    """k-means|| round `round_` on one partition: (global rows, their values)."""
    try:
        local = _core.kmeans_parallel_sample(block, weights, centers, metric, offset, seed, round_, oversampling, cost)
    except ValueError as e:
        raise ValueError(f"{_where(index, offset, block)}: {e}") from None
    return local + offset, block[local]


def moments_task(block: np.ndarray, weights: Optional[np.ndarray], index: int, offset: int) -> tuple:
    """(rows, column means, column sums of squared deviations), in float64."""
    x = block.astype(np.float64, copy=False)
    n = x.shape[0]
    if n == 0:
        return 0, np.zeros(x.shape[1]), np.zeros(x.shape[1])
    mean = x.mean(axis=0)
    return n, mean, ((x - mean) ** 2).sum(axis=0)


def merged_stats(parts: Partitions, centers: np.ndarray, metric: str = SQUARED_EUCLIDEAN, n_farthest: int = 0) -> dict:
    """One pass: every partition's statistics under `centers`, merged in
    partition order."""
    return _core.merge_partials(parts.map(stats_task, centers, metric, False, n_farthest))


def mean_variance(parts: Partitions) -> float:
    """The mean over columns of the population variance (scikit-learn's
    tolerance scale), combining partitions in order (Chan et al.)."""
    n, mean, m2 = 0, None, None
    for nb, mb, m2b in parts.map(moments_task):
        if nb == 0:
            continue
        if mean is None:
            n, mean, m2 = nb, mb, m2b
            continue
        delta = mb - mean
        total = n + nb
        mean = mean + delta * (nb / total)
        m2 = m2 + m2b + delta**2 * (n * nb / total)
        n = total
    if mean is None:
        return 0.0
    return float(np.mean(m2 / n))


def lloyd(
    parts: Partitions,
    centers: np.ndarray,
    max_iter: int,
    tol: float,
    on_iteration: Optional[Callable[[int], None]] = None,
) -> tuple:
    """Lloyd's algorithm as scikit-learn runs it (`centroid.sklearn.KMeans`
    from the same centres): at most `max_iter` iterations, stopping when the
    sum of squared centre shifts is at most `tol` (absolute); an empty
    cluster takes the row farthest from its centre. Returns
    `(centers, n_iter, inertia)`, the inertia under the final centres.

    Stopping on unchanged labels (scikit-learn's other rule) needs no extra
    check: unchanged labels give the same sums, hence zero shift.
    """
    centers = np.ascontiguousarray(centers, dtype=parts.dtype)
    n_iter = 0
    for it in range(max_iter):
        n_iter = it + 1
        merged = merged_stats(parts, centers)
        n_empty = int(np.count_nonzero(merged["weights"] == 0))
        if n_empty:
            # Rare: a second pass over the same centres also brings back the
            # rows farthest from them, to refill the empty clusters.
            merged = merged_stats(parts, centers, n_farthest=n_empty)
        centers, shift, _ = _core.lloyd_update(centers, merged, True)
        if on_iteration is not None:
            on_iteration(n_iter)
        if shift <= tol:
            break
    inertia = float(merged_stats(parts, centers)["loss"])
    return centers, n_iter, inertia


def random_init(parts: Partitions, k: int, seed: int) -> np.ndarray:
    """`k` distinct rows drawn uniformly by global row index."""
    return parts.take(_core.random_row_indices(parts.n_rows, k, seed))


def kmeans_plus_plus_init(parts: Partitions, k: int, seed: int, sample_size: Optional[int] = None) -> np.ndarray:
    """Greedy k-means++ on a uniform sample of rows (by global index) of
    `max(100 k, 10000)` rows (all rows when there are fewer)."""
    m = sample_size if sample_size is not None else max(100 * k, 10_000)
    rows = np.sort(_core.random_row_indices(parts.n_rows, min(m, parts.n_rows), seed))
    sample = np.ascontiguousarray(parts.take(rows), dtype=parts.dtype)
    ones = np.ones(sample.shape[0], dtype=parts.dtype)
    return _core.kmeans_plus_plus(sample, ones, k, 1 + int(math.log(k)), seed)


def kmeans_parallel_init(
    parts: Partitions,
    k: int,
    seed: int,
    oversampling_factor: float = 2.0,
    rounds: Optional[int] = None,
    metric: str = SQUARED_EUCLIDEAN,
) -> np.ndarray:
    """k-means|| (Bahmani et al.): one uniform row, then `rounds` rounds
    (default 5) in which every row joins the candidates with probability
    `oversampling_factor * k * D(x) / cost`, drawn from a generator keyed by
    (seed, round, global row) so that partitioning does not matter; the
    candidates, weighted by the rows nearest to them, are reduced to `k`
    centres with greedy weighted k-means++."""
    n = parts.n_rows
    rounds = 5 if rounds is None else int(rounds)
    if rounds < 1:
        raise ValueError(f"init_max_iter must be at least 1, got {rounds}")
    if not (oversampling_factor > 0 and math.isfinite(oversampling_factor)):
        raise ValueError(f"oversampling_factor must be a positive number, got {oversampling_factor!r}")
    ell = float(oversampling_factor) * k
    candidates = np.ascontiguousarray(parts.take(_core.random_row_indices(n, 1, seed)), dtype=parts.dtype)
    chosen = [candidates]
    for round_ in range(1, rounds + 1):
        cost = float(merged_stats(parts, candidates, metric)["loss"])
        if not cost > 0:
            break  # every row sits on a candidate
        picked = parts.map(sample_task, candidates, metric, seed, round_, ell, cost)
        new = [values for _, values in picked if len(values)]
        if not new:
            continue
        chosen.extend(new)
        candidates = np.ascontiguousarray(np.concatenate(chosen), dtype=parts.dtype)
    if candidates.shape[0] < k:
        # Too few distinct candidates (tiny or highly duplicated data): top
        # up with uniformly drawn rows.
        extra = parts.take(_core.random_row_indices(n, k, seed ^ 0x5EED))
        candidates = np.ascontiguousarray(np.concatenate([candidates, extra])[: max(k, candidates.shape[0])])
    weights = merged_stats(parts, candidates, metric)["weights"].astype(parts.dtype)
    return _core.kmeans_plus_plus(candidates, weights, k, 1 + int(math.log(k)), seed)


def check_versions(driver: str, workers: dict) -> None:
    """Refuses workers whose centroid core is not the driver's."""
    for worker, version in sorted(workers.items()):
        if version != driver:
            raise RuntimeError(
                f"worker {worker} runs centroid {version} but this driver runs centroid {driver}; "
                "install the same centroid version on every worker"
            )
