"""Type stubs of the compiled `centroid._core` module (Rust, PyO3)."""

import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

SQUARED_EUCLIDEAN_DISTANCE: str
COSINE_DISTANCE: str
RANDOM_INIT: str
KMEANS_PLUS_PLUS_INIT: str
SCORE: str
CLUSTER_INDEX: str
ALL_DISTANCES: str
TRAIN_LOSSES_FILE: str
VERSION: str

_Float = Union[np.float32, np.float64]
_FloatArray = npt.NDArray[Any]

_LloydResult = Tuple[_FloatArray, npt.NDArray[np.int32], float, int, List[float], str, float]

def lloyd(
    x: _FloatArray,
    sample_weight: Optional[_FloatArray],
    centers: _FloatArray,
    max_iter: int,
    tol: float,
    track_losses: bool = True,
    known_finite: bool = False,
) -> _LloydResult:
    """Lloyd's algorithm from `centers` (scikit-learn's rules); returns
    (centers, labels, inertia, n_iter, iteration_losses, stop, shift):
    `stop` is "strict", "tol" (the last squared centre shift in `shift`) or
    "max_iter". `tol` is absolute. `iteration_losses` is empty unless
    `track_losses`. `known_finite`: x is `center`'s unchanged result, which
    reported every value finite; x is then not read to check them."""

class _Csr:
    """What the sparse_* functions take: a scipy CSR matrix's parts."""

    shape: Tuple[int, int]
    indptr: npt.NDArray[np.int64]
    indices: npt.NDArray[np.int32]
    data: _FloatArray

def sparse_lloyd(
    x: _Csr, sample_weight: Optional[_FloatArray], centers: _FloatArray, max_iter: int, tol: float
) -> _LloydResult:
    """`lloyd` on CSR rows (not centred)."""

def sparse_minibatch_step(
    x: _Csr, sample_weight: Optional[_FloatArray], centers: _FloatArray, weight_sums: npt.NDArray[np.float64]
) -> float:
    """`minibatch_step` on CSR rows."""

def sparse_labels_inertia(
    x: _Csr, sample_weight: Optional[_FloatArray], centers: _FloatArray
) -> Tuple[npt.NDArray[np.int32], float]:
    """`labels_inertia` on CSR rows."""

def sparse_sq_distances(x: _Csr, centers: _FloatArray) -> _FloatArray:
    """`sq_distances` on CSR rows (computed in float64)."""

def sparse_kmeans_plus_plus(
    x: _Csr, sample_weight: Optional[_FloatArray], k: int, num_retries: int, seed: int
) -> _FloatArray:
    """Greedy k-means++ on CSR rows (the dense version's draws): k rows, dense."""

def minibatch_step(
    x: _FloatArray, sample_weight: Optional[_FloatArray], centers: _FloatArray, weight_sums: npt.NDArray[np.float64]
) -> float:
    """One mini-batch step, updating `centers` and `weight_sums` in place;
    returns the batch's inertia before the update."""

def labels(x: _FloatArray, centers: _FloatArray) -> npt.NDArray[np.int32]:
    """Nearest centre of every row (the labels of `labels_inertia`)."""

def labels_inertia(
    x: _FloatArray, sample_weight: Optional[_FloatArray], centers: _FloatArray
) -> Tuple[npt.NDArray[np.int32], float]:
    """Nearest centre of every row and the weighted inertia."""

def sq_distances(x: _FloatArray, centers: _FloatArray) -> _FloatArray:
    """Squared Euclidean distances, n x k."""

def column_var(x: _FloatArray) -> _FloatArray:
    """NumPy's x.var(axis=0), to the bit, for two or more columns."""
    ...

def distinct_labels(labels: np.ndarray, k: int) -> int:
    """How many of the clusters 0..k-1 the int32 labels name, read until
    every cluster has been seen (ValueError for a label outside 0..k-1 among
    those read)."""
    ...

def center(
    x: _FloatArray, copy: bool, variances: bool = False, when_it_pays: bool = False
) -> Tuple[_FloatArray, Optional[_FloatArray], Optional[_FloatArray], bool]:
    """(x - shift, shift, var or None, finite): shift is NumPy's
    x.mean(axis=0) for two or more columns (rounded to integers where every
    value is one), var NumPy's x.var(axis=0) when asked for; a new array with
    copy, else x centred in place; finite, whether every centred value is
    (x untouched and False where a mean is not finite). With when_it_pays,
    where the means are finite but centring would not make distances
    precise enough to pay for its pass (centroid::batch::centring_pays): x
    untouched, shift None, finite True."""
    ...

def kmeans_plus_plus(
    x: _FloatArray, sample_weight: Optional[_FloatArray], k: int, num_retries: int, seed: int
) -> _FloatArray:
    """Greedy k-means++: k rows of x."""

class PredictIter(Iterator[Tuple[Optional[npt.NDArray[np.int64]], Optional[_FloatArray]]]):
    """Lazy predictions: (cluster_index, all_distances) per input batch."""

    def __iter__(self) -> "PredictIter": ...
    def __next__(self) -> Tuple[Optional[npt.NDArray[np.int64]], Optional[_FloatArray]]: ...

class _Estimator:
    """The Rust KMeansClustering; use `centroid.KMeansClustering`."""

    def __init__(
        self,
        num_clusters: int,
        model_dir: Optional[str],
        initial_clusters: Union[str, _FloatArray, Callable[[_FloatArray, int], _FloatArray]],
        distance_metric: str,
        random_seed: int,
        use_mini_batch: bool,
        mini_batch_steps_per_iteration: int,
        kmeans_plus_plus_num_retries: int,
        relative_tolerance: Optional[float],
        feature_columns: Optional[List[str]],
        config: Optional[Any],
    ) -> None: ...
    @property
    def model_dir(self) -> os.PathLike[str]: ...
    @property
    def num_clusters(self) -> int: ...
    @property
    def seed(self) -> int: ...
    def train(
        self,
        input_fn: Callable[[], Tuple[bool, Any]],
        hooks: Sequence[Any],
        steps: Optional[int],
        max_steps: Optional[int],
        saving_listeners: Sequence[Any],
    ) -> None: ...
    def train_from_statistics(
        self,
        input_fn: Callable[[], Tuple[bool, Any]],
        statistics_fn: Callable[[int, _FloatArray], Optional[_Partial]],
        hooks: Sequence[Any],
        steps: Optional[int],
        max_steps: Optional[int],
        saving_listeners: Sequence[Any],
    ) -> None: ...
    def evaluate(
        self,
        input_fn: Callable[[], Tuple[bool, Any]],
        steps: Optional[int],
        hooks: Sequence[Any],
        checkpoint_path: Optional[str],
        name: Optional[str],
    ) -> Tuple[float, float, int]: ...
    def predict(
        self,
        input_fn: Callable[[], Tuple[bool, Any]],
        predict_keys: Optional[List[str]],
        hooks: Sequence[Any],
        checkpoint_path: Optional[str],
    ) -> PredictIter: ...
    def cluster_centers(self) -> _FloatArray: ...
    def get_variable_names(self) -> List[str]: ...
    def get_variable_value(self, name: str) -> npt.NDArray[Any]: ...
    def latest_checkpoint(self) -> Optional[os.PathLike[str]]: ...
    def export_saved_model(
        self,
        export_dir_base: str,
        features: List[Tuple[str, int]],
        assets_extra: List[Tuple[str, str]],
        as_text: bool,
        checkpoint_path: Optional[str],
        parse_examples: bool = False,
    ) -> os.PathLike[str]: ...

# Partitioned data (centroid.dask): one partition's statistics, their merge
# in partition order, and the update rules on merged statistics.
_Partial = Dict[str, Any]

def partition_stats(
    x: _FloatArray,
    sample_weight: Optional[_FloatArray],
    centers: _FloatArray,
    metric: str,
    row_offset: int,
    with_labels: bool = False,
    n_farthest: int = 0,
) -> _Partial:
    """The statistics of one block of rows under `centers`."""

def merge_partials(parts: List[_Partial]) -> _Partial:
    """Adds partial statistics in the order given (partition index order)."""

def lloyd_update(centers: _FloatArray, merged: _Partial, relocate: bool = True) -> Tuple[_FloatArray, float, int]:
    """Lloyd's update on merged statistics: `(new_centers, shift, relocated)`."""

def minibatch_update(
    centers: _FloatArray, weight_sums: npt.NDArray[np.float64], merged: _Partial
) -> Tuple[_FloatArray, npt.NDArray[np.float64]]:
    """scikit-learn's mini-batch update on merged statistics."""

def kmeans_parallel_sample(
    x: _FloatArray,
    sample_weight: Optional[_FloatArray],
    centers: _FloatArray,
    metric: str,
    row_offset: int,
    seed: int,
    round: int,
    oversampling: float,
    cost: float,
) -> npt.NDArray[np.int64]:
    """k-means|| sampling of one block: the local indices of the rows kept."""

def random_row_indices(n: int, needed: int, seed: int) -> npt.NDArray[np.int64]:
    """`needed` distinct indices in `0..n` drawn from `seed`."""
