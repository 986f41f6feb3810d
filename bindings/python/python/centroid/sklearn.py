"""scikit-learn compatible `KMeans` and `MiniBatchKMeans` on the Rust core.

They follow `sklearn.cluster.KMeans` (algorithm="lloyd") and
`sklearn.cluster.MiniBatchKMeans` step by step: the same parameters,
attributes, stopping rules, empty-cluster relocation and mini-batch
schedule, so that the same explicit initial centres give the same result.
k-means++ seeding is centroid's (greedy, with scikit-learn's number of
candidates), drawn from a seed taken from `random_state`.

`scipy.sparse` matrices and arrays are accepted wherever scikit-learn
accepts them: CSR is read in place by the Rust core's sparse kernels (other
formats are converted to CSR once, and indices sorted on a copy when they
are not). Sparse data is not centred, as in scikit-learn.

This module imports scikit-learn (and scipy, which scikit-learn needs); the
rest of `centroid` does not.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any, Callable, Optional, Union

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils.sparsefuncs import mean_variance_axis
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _core
from ._input import canonical_csr, csr_parts

__all__ = ["KMeans", "MiniBatchKMeans"]

ArrayLike = Any
InitType = Union[str, ArrayLike, Callable[..., ArrayLike]]


try:
    import scipy.sparse as _sp
except ImportError:  # scipy is optional for the rest of centroid
    _sp = None


def _issparse(X: Any) -> bool:
    return _sp is not None and _sp.issparse(X)


def _tolerance_of(variances: np.ndarray, tol: float) -> float:
    """scikit-learn's tolerance from the column variances, in their dtype."""
    return float(np.mean(variances) * tol)


def _tolerance(X: Any, tol: float) -> float:
    """scikit-learn's data-dependent tolerance: tol * mean feature variance."""
    if tol == 0:
        return 0.0
    if _issparse(X):
        return _tolerance_of(mean_variance_axis(X, axis=0)[1], tol)
    if (
        isinstance(X, np.ndarray)
        and X.ndim == 2
        and X.shape[0] > 0
        and X.shape[1] >= 2
        and X.dtype in (np.float32, np.float64)
        and X.flags.c_contiguous
    ):
        # NumPy's variances to the bit, in one read of the data instead of
        # NumPy's two temporary copies (a tenth of the main job's time).
        return _tolerance_of(_core.column_var(X), tol)
    return _tolerance_of(np.var(X, axis=0), tol)


def _c(a: Any, dtype: Any) -> Any:
    if _issparse(a):
        return canonical_csr(a)
    return np.ascontiguousarray(a, dtype=dtype)


# The core's entry points, dense or sparse by the type of X.


def _lloyd(
    X: Any, sw: Any, centers: np.ndarray, max_iter: int, tol: float, verbose: bool, known_finite: bool = False
) -> tuple:
    if _issparse(X):
        return _core.sparse_lloyd(csr_parts(X), sw, centers, max_iter, tol)
    # The per-iteration losses are only printed; without them a pruned
    # iteration need not read every row.
    return _core.lloyd(X, sw, centers, max_iter, tol, bool(verbose), known_finite)


def _labels_inertia(X: Any, sw: Any, centers: np.ndarray) -> tuple:
    if _issparse(X):
        return _core.sparse_labels_inertia(csr_parts(X), sw, centers)
    return _core.labels_inertia(X, sw, centers)


def _sq_distances(X: Any, centers: np.ndarray) -> np.ndarray:
    if _issparse(X):
        return _core.sparse_sq_distances(csr_parts(X), centers)
    return _core.sq_distances(X, centers)


def _minibatch_step(X: Any, sw: Any, centers: np.ndarray, counts: np.ndarray) -> float:
    if _issparse(X):
        return _core.sparse_minibatch_step(csr_parts(X), sw, centers, counts)
    return _core.minibatch_step(X, sw, centers, counts)


def _kmeans_plus_plus(X: Any, sw: Any, k: int, retries: int, seed: int) -> np.ndarray:
    if _issparse(X):
        return _core.sparse_kmeans_plus_plus(csr_parts(X), sw, k, retries, seed)
    return _core.kmeans_plus_plus(X, sw, k, retries, seed)


def _rows(X: Any, idx: Any) -> np.ndarray:
    """Rows of X as a dense C-contiguous array."""
    rows = X[idx]
    if _issparse(rows):
        rows = rows.toarray()
    return np.ascontiguousarray(rows, dtype=X.dtype)


def _validate(est: Any, X: Any, **kwargs: Any) -> Any:
    """validate_data for float32/float64, C order, CSR accepted; sparse input
    comes back as canonical CSR."""
    X = validate_data(est, X, accept_sparse="csr", dtype=[np.float64, np.float32], order="C", **kwargs)
    if _issparse(X):
        X = canonical_csr(X)
    return X


class _BaseKMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """What KMeans and MiniBatchKMeans share: checks, seeding, predict,
    transform and score."""

    _default_n_init_random = 10

    def _assert_finite(self, X: Any) -> None:
        """scikit-learn's error for NaN or infinity in X (validated
        without that test)."""
        check_array(X, accept_sparse="csr", dtype=None, copy=False, input_name="X", estimator=self)

    def _check_common(self, X: np.ndarray, tolerance: bool = True) -> None:
        """Checks the parameters against X; with `tolerance`, sets `_tol`
        (KMeans.fit takes the variances from its centring instead)."""
        n_clusters = self.n_clusters
        if isinstance(n_clusters, bool) or not isinstance(n_clusters, Integral) or n_clusters < 1:
            raise ValueError(f"n_clusters must be an integer >= 1, got {n_clusters!r}")
        if X.shape[0] < n_clusters:
            raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={n_clusters}.")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, Integral) or self.max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, Real) or not self.tol >= 0:
            raise ValueError(f"tol must be a number >= 0, got {self.tol!r}")
        if tolerance:
            self._tol = _tolerance(X, float(self.tol))
        init = self.init
        if isinstance(init, str):
            if init not in ("k-means++", "random"):
                raise ValueError(f"init must be 'k-means++', 'random', an array or a callable, got {init!r}")
        elif not callable(init) and not hasattr(init, "__array__") and not isinstance(init, (list, tuple)):
            raise ValueError(f"init must be 'k-means++', 'random', an array or a callable, got {init!r}")
        n_init = self.n_init
        if n_init == "auto":
            if isinstance(init, str) and init == "k-means++":
                self._n_init = 1
            elif isinstance(init, str) or callable(init):
                self._n_init = self._default_n_init_random
            else:
                self._n_init = 1
        elif isinstance(n_init, bool) or not isinstance(n_init, Integral) or n_init < 1:
            raise ValueError(f"n_init must be 'auto' or an integer >= 1, got {n_init!r}")
        else:
            self._n_init = int(n_init)
        if hasattr(init, "__array__") or isinstance(init, (list, tuple)):
            if self._n_init != 1:
                warnings.warn(
                    f"Explicit initial center position passed: performing only one init in {type(self).__name__} "
                    f"instead of n_init={self._n_init}.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._n_init = 1

    def _explicit_init(self, X: np.ndarray) -> Optional[np.ndarray]:
        init = self.init
        if isinstance(init, str) or (callable(init) and not hasattr(init, "__array__")):
            return None
        centers = check_array(init, dtype=X.dtype, copy=True, order="C")
        self._validate_center_shape(X, centers)
        return centers

    def _validate_center_shape(self, X: np.ndarray, centers: np.ndarray) -> None:
        if centers.shape[0] != self.n_clusters:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not match "
                f"the number of clusters {self.n_clusters}."
            )
        if centers.shape[1] != X.shape[1]:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not match "
                f"the number of features of the data {X.shape[1]}."
            )

    def _init_centroids(
        self,
        X: Any,
        x_squared_norms: Any = None,
        *,
        init: Any,
        random_state: np.random.RandomState,
        sample_weight: np.ndarray,
        init_size: Optional[int] = None,
        n_centroids: Optional[int] = None,
    ) -> np.ndarray:
        """`n_centroids` (default `n_clusters`) initial centres. Keyword
        names follow scikit-learn's private method of the same name, which
        its tests call; `x_squared_norms` is not needed and ignored."""
        n_samples = X.shape[0]
        k = self.n_clusters if n_centroids is None else int(n_centroids)
        sample_weight = np.asarray(sample_weight, dtype=X.dtype)
        if init_size is not None and init_size < n_samples:
            idx = random_state.randint(0, n_samples, init_size)
            X = X[idx]
            sample_weight = sample_weight[idx]
            n_samples = X.shape[0]
        if isinstance(init, str) and init == "k-means++":
            # scikit-learn tries 2 + floor(ln k) candidates per centre: our
            # greedy k-means++ tries 1 + R.
            retries = 1 + int(np.log(k))
            seed = int(random_state.randint(0, np.iinfo(np.int32).max))
            centers = _kmeans_plus_plus(_c(X, X.dtype), _c(sample_weight, X.dtype), k, retries, seed)
        elif isinstance(init, str) and init == "random":
            seeds = random_state.choice(n_samples, size=k, replace=False, p=sample_weight / sample_weight.sum())
            centers = _rows(X, seeds)
        elif isinstance(init, np.ndarray):
            centers = init
        else:  # callable
            centers = init(X, k, random_state=random_state)
            if _issparse(centers):
                centers = centers.toarray()
            centers = check_array(centers, dtype=X.dtype, copy=False, order="C")
            self._validate_center_shape(X, centers)
        return _c(centers, X.dtype)

    def _check_test_data(self, X: ArrayLike) -> Any:
        return _validate(self, X, reset=False)

    def _centers_as(self, dtype: Any) -> np.ndarray:
        return _c(self.cluster_centers_, dtype)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The index of the nearest centre of every sample (int32)."""
        check_is_fitted(self)
        X = self._check_test_data(X)
        if _issparse(X):
            labels, _ = _labels_inertia(X, None, self._centers_as(X.dtype))
            return labels
        return _core.labels(X, self._centers_as(X.dtype))

    def fit_predict(self, X: ArrayLike, y: Any = None, sample_weight: Optional[ArrayLike] = None) -> np.ndarray:
        """Fits and returns `labels_`."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X: ArrayLike) -> np.ndarray:
        """The Euclidean distance of every sample to every centre."""
        check_is_fitted(self)
        X = self._check_test_data(X)
        return self._transform(X)

    def _transform(self, X: Any) -> np.ndarray:
        if _issparse(X):
            # The sparse kernel works in float64 and gives exactly 0 for a
            # row equal to a centre.
            return np.sqrt(_sq_distances(X, self._centers_as(X.dtype)))
        # Dense: in float64 (as scikit-learn upcasts float32). The kernel's
        # expansion ||x||^2 - 2 x.c + ||c||^2 loses the small distances to
        # cancellation; those (below 1e-6 of the norms) are recomputed as
        # ||x - c||^2, so a point on a centre is at distance exactly 0.
        X64 = _c(X, np.float64)
        C64 = self._centers_as(np.float64)
        d = _sq_distances(X64, C64)
        xx = np.einsum("ij,ij->i", X64, X64)
        cc = np.einsum("ij,ij->i", C64, C64)
        rows, cols = np.nonzero(d <= 1e-6 * (xx[:, None] + cc[None, :]))
        if rows.size:
            d[rows, cols] = np.einsum("ij,ij->i", X64[rows] - C64[cols], X64[rows] - C64[cols])
        return np.sqrt(d).astype(X.dtype, copy=False)

    def fit_transform(self, X: ArrayLike, y: Any = None, sample_weight: Optional[ArrayLike] = None) -> np.ndarray:
        """Fits and returns the distances of X to the centres."""
        self.fit(X, sample_weight=sample_weight)
        return self._transform(_validate(self, X, reset=False))

    def score(self, X: ArrayLike, y: Any = None, sample_weight: Optional[ArrayLike] = None) -> float:
        """Minus the (weighted) sum of squared distances of X to the nearest centres."""
        check_is_fitted(self)
        X = self._check_test_data(X)
        sw = None if sample_weight is None else _c(_check_sample_weight(sample_weight, X, dtype=X.dtype), X.dtype)
        _, inertia = _labels_inertia(X, sw, self._centers_as(X.dtype))
        return -float(inertia)

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class KMeans(_BaseKMeans):
    """K-means clustering (Lloyd's algorithm), as `sklearn.cluster.KMeans`.

    Parameters, attributes and methods are scikit-learn's: `cluster_centers_`,
    `labels_`, `inertia_`, `n_iter_`, `n_features_in_`, `feature_names_in_`;
    `fit`, `predict`, `fit_predict`, `transform`, `fit_transform`, `score`.
    `algorithm="elkan"` is accepted and runs Lloyd (same result).
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: InitType = "k-means++",
        n_init: Union[str, int] = "auto",
        max_iter: int = 300,
        tol: float = 1e-4,
        verbose: int = 0,
        random_state: Any = None,
        copy_x: bool = True,
        algorithm: str = "lloyd",
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm

    def fit(self, X: ArrayLike, y: Any = None, sample_weight: Optional[ArrayLike] = None) -> "KMeans":
        """Computes the clustering; returns self."""
        X_orig = X
        # No copy yet: with copy_x the centred copy below is the copy, made in
        # one pass instead of a copy and then an in-place subtraction. No
        # test for NaN or infinity yet either: the centring's column sums
        # below are finite exactly when every value is (short of an
        # overflow, which the full test then clears), which saves a read of
        # the data (a twentieth of a 20-iteration Fashion-MNIST fit).
        X = _validate(self, X, copy=False, ensure_all_finite=False)
        # Dense data of two or more columns is centred in Rust, which reads
        # NumPy's column variances (the tolerance) on the way.
        centred_in_rust = not _issparse(X) and X.shape[1] >= 2
        if not centred_in_rust:
            self._assert_finite(X)
        self._check_common(X, tolerance=not centred_in_rust)
        if self.algorithm not in ("lloyd", "elkan"):
            raise ValueError(f"algorithm must be 'lloyd' or 'elkan', got {self.algorithm!r}")
        if self.algorithm == "elkan" and self.n_clusters == 1:
            warnings.warn(
                "algorithm='elkan' doesn't make sense for a single cluster. Using 'lloyd' instead.",
                RuntimeWarning,
                stacklevel=2,
            )
        random_state = check_random_state(self.random_state)
        weighted = sample_weight is not None
        sample_weight = _c(_check_sample_weight(sample_weight, X, dtype=X.dtype), X.dtype)
        init = self._explicit_init(X)
        if init is None:
            init = self.init
        # Centre the data for more precise distances, as scikit-learn does.
        # With copy_x, a copy is needed when X is the caller's memory
        # (scikit-learn's own test); the centred array is that copy, the
        # same values as a copy centred in place.
        copy = self.copy_x and not _issparse(X) and np.may_share_memory(X, X_orig)
        # Whether the centring found every value it wrote finite: Lloyd's
        # loop then skips its own read of X to check them.
        known_finite = False
        if _issparse(X):
            X_mean = None  # sparse data is not centred (scikit-learn neither)
        elif centred_in_rust:
            # NumPy's mean, variances and subtraction, to the bit, in two
            # column-parallel reads and one row-parallel pass (NumPy's
            # broadcasting is slow on narrow rows, and its variance makes two
            # temporary copies); integer data (pixels) is centred by the mean
            # rounded to integers, which keeps it exact for the pruned Lloyd
            # loop.
            tol = float(self.tol)
            X_centred, X_mean, var, known_finite = _core.center(
                X, copy, variances=tol != 0, when_it_pays=True
            )
            # No shift (X_centred is X itself): rows whose mean lies near
            # the origin next to their spread (Fashion-MNIST, blobs), where
            # centring would make the distances little more precise and its
            # copy costs several passes of the loop. Distances, labels and
            # centres do not depend on the origin.
            if X_mean is None or np.isfinite(X_mean).all():
                X = X_centred
                self._tol = _tolerance_of(var, tol) if var is not None else 0.0
            else:
                # X is untouched: NaN or infinity (scikit-learn's error), or
                # finite values whose column sums overflow, centred as
                # scikit-learn centres them (and as uselessly).
                self._assert_finite(X)
                self._tol = _tolerance(X, tol)
                X_mean = X.mean(axis=0)
                if copy:
                    X = X - X_mean
                else:
                    X -= X_mean
        else:
            X_mean = X.mean(axis=0)
            if copy:
                X = X - X_mean
            else:
                X -= X_mean
        if isinstance(init, np.ndarray) and X_mean is not None:
            init = init - X_mean
        best = None
        for _ in range(self._n_init):
            centers_init = self._init_centroids(
                X, init=init, random_state=random_state, sample_weight=sample_weight
            )
            if self.verbose:
                print("Initialization complete")
            centers, labels, inertia, n_iter, losses, stop, shift = _lloyd(
                X,
                sample_weight if weighted else None,
                centers_init,
                int(self.max_iter),
                self._tol,
                self.verbose,
                known_finite,
            )
            if self.verbose:
                # scikit-learn's messages, after the fact.
                for i, loss in enumerate(losses):
                    print(f"Iteration {i}, inertia {loss}.")
                if stop == "strict":
                    print(f"Converged at iteration {n_iter - 1}: strict convergence.")
                elif stop == "tol":
                    print(f"Converged at iteration {n_iter - 1}: center shift {shift} within tolerance {self._tol}.")
            if best is None or (inertia < best[2] and not _is_same_clustering(labels, best[1], self.n_clusters)):
                best = (centers, labels, inertia, n_iter)
        assert best is not None
        if not self.copy_x and X_mean is not None:
            X += X_mean
        centers, labels, inertia, n_iter = best
        if X_mean is not None:
            centers = centers + X_mean
        # Labels are 0..k-1, read until every cluster has been seen.
        distinct = _core.distinct_labels(labels, self.n_clusters)
        if distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({distinct}) found smaller than n_clusters ({self.n_clusters}). "
                "Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.cluster_centers_ = centers
        self._n_features_out = centers.shape[0]
        self.labels_ = labels
        self.inertia_ = float(inertia)
        self.n_iter_ = int(n_iter)
        return self


def _batch_sampler(n_samples: int, p: np.ndarray) -> Any:
    """`draw(random_state, size)` returning exactly the indices of
    `random_state.choice(n_samples, size, p=p, replace=True)`, from the same
    random numbers, without choice's O(n) cumulative sum on every call.

    NumPy's legacy `RandomState.choice` with `p` and replacement casts `p` to
    float64, takes `cdf = p.cumsum()`, normalises it in place with
    `cdf /= cdf[-1]`, and returns `cdf.searchsorted(self.random_sample(size),
    side="right")`; with `p` given it never takes the `randint` path. The
    cdf depends only on `p`, so it is built once here in the same operations.
    choice also validates `p` (non-negative, finite, summing to 1): one
    throwaway call on a private generator raises the very same errors, so bad
    weights still fail before the first step."""
    np.random.RandomState(0).choice(n_samples, 1, p=p, replace=True)
    cdf = np.asarray(p, dtype=np.float64).cumsum()
    cdf /= cdf[-1]

    def draw(random_state: np.random.RandomState, size: int) -> np.ndarray:
        return cdf.searchsorted(random_state.random_sample(size), side="right")

    return draw


def _is_same_clustering(a: np.ndarray, b: np.ndarray, k: int) -> bool:
    """Whether two labelings are the same up to a permutation of labels."""
    mapping = np.full(k, -1, dtype=np.int64)
    for x, y in zip(a, b):
        if mapping[x] == -1:
            mapping[x] = y
        elif mapping[x] != y:
            return False
    return True


class MiniBatchKMeans(_BaseKMeans):
    """Mini-batch K-means, as `sklearn.cluster.MiniBatchKMeans`, with
    `partial_fit` for streaming data."""

    _default_n_init_random = 3

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: InitType = "k-means++",
        max_iter: int = 100,
        batch_size: int = 1024,
        verbose: int = 0,
        compute_labels: bool = True,
        random_state: Any = None,
        tol: float = 0.0,
        max_no_improvement: Optional[int] = 10,
        init_size: Optional[int] = None,
        n_init: Union[str, int] = "auto",
        reassignment_ratio: float = 0.01,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio

    def _check_params(self, X: np.ndarray) -> None:
        self._check_common(X)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, Integral) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        self._batch_size = min(int(self.batch_size), X.shape[0])
        init_size = self.init_size
        if init_size is None:
            init_size = 3 * self._batch_size
            if init_size < self.n_clusters:
                init_size = 3 * self.n_clusters
        elif init_size < self.n_clusters:
            warnings.warn(
                f"init_size={init_size} should be larger than n_clusters={self.n_clusters}. "
                f"Setting it to min(3*n_clusters, n_samples)",
                RuntimeWarning,
                stacklevel=3,
            )
            init_size = 3 * self.n_clusters
        self._init_size = min(int(init_size), X.shape[0])
        if not isinstance(self.reassignment_ratio, Real) or self.reassignment_ratio < 0:
            raise ValueError(f"reassignment_ratio must be a number >= 0, got {self.reassignment_ratio!r}")
        mni = self.max_no_improvement
        if mni is not None and (isinstance(mni, bool) or not isinstance(mni, Integral) or mni < 0):
            raise ValueError(f"max_no_improvement must be an integer >= 0 or None, got {mni!r}")

    def _random_reassign(self) -> bool:
        self._n_since_last_reassign += self._batch_size
        if (self._counts == 0).any() or self._n_since_last_reassign >= (10 * self.n_clusters):
            self._n_since_last_reassign = 0
            return True
        return False

    def _step(
        self,
        X: np.ndarray,
        sample_weight: np.ndarray,
        centers: np.ndarray,
        random_state: np.random.RandomState,
        random_reassign: bool,
    ) -> tuple:
        """One mini-batch step: returns (new centres, batch inertia). Updates
        `self._counts` in place."""
        new = centers.copy()
        inertia = _minibatch_step(X, sample_weight, new, self._counts)
        ratio = float(self.reassignment_ratio)
        if random_reassign and ratio > 0:
            to_reassign = self._counts < ratio * self._counts.max()
            if to_reassign.sum() > 0.5 * X.shape[0]:
                keep = np.argsort(self._counts)[int(0.5 * X.shape[0]) :]
                to_reassign[keep] = False
            n_reassigns = int(to_reassign.sum())
            if n_reassigns:
                chosen = random_state.choice(X.shape[0], replace=False, size=n_reassigns)
                if self.verbose:
                    print(f"[MiniBatchKMeans] Reassigning {n_reassigns} cluster centers.")
                new[to_reassign] = _rows(X, chosen)
            if (~to_reassign).any():
                self._counts[to_reassign] = np.min(self._counts[~to_reassign])
        return new, inertia

    def _converged(self, step: int, n_steps: int, n_samples: int, centers_squared_diff: float, batch_inertia: float) -> bool:
        batch_inertia /= self._batch_size
        step = step + 1
        if step == 1:
            if self.verbose:
                print(f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch_inertia}")
            return False
        if self._ewa_inertia is None:
            self._ewa_inertia = batch_inertia
        else:
            alpha = min(self._batch_size * 2.0 / (n_samples + 1), 1.0)
            self._ewa_inertia = self._ewa_inertia * (1 - alpha) + batch_inertia * alpha
        if self.verbose:
            print(
                f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch_inertia}, "
                f"ewa inertia: {self._ewa_inertia}"
            )
        if self._tol > 0.0 and centers_squared_diff <= self._tol:
            if self.verbose:
                print(f"Converged (small centers change) at step {step}/{n_steps}")
            return True
        if self._ewa_inertia_min is None or self._ewa_inertia < self._ewa_inertia_min:
            self._no_improvement = 0
            self._ewa_inertia_min = self._ewa_inertia
        else:
            self._no_improvement += 1
        if self.max_no_improvement is not None and self._no_improvement >= self.max_no_improvement:
            if self.verbose:
                print(f"Converged (lack of improvement in inertia) at step {step}/{n_steps}")
            return True
        return False

    def fit(self, X: ArrayLike, y: Any = None, sample_weight: Optional[ArrayLike] = None) -> "MiniBatchKMeans":
        """Computes the clustering by mini-batch steps over X; returns self."""
        X = _validate(self, X)
        self._check_params(X)
        random_state = check_random_state(self.random_state)
        sample_weight = _c(_check_sample_weight(sample_weight, X, dtype=X.dtype), X.dtype)
        n_samples = X.shape[0]
        init = self._explicit_init(X)
        if init is None:
            init = self.init
        valid_idx = random_state.randint(0, n_samples, self._init_size)
        X_valid, sw_valid = _c(X[valid_idx], X.dtype), _c(sample_weight[valid_idx], X.dtype)
        best_inertia = None
        init_centers = None
        for init_idx in range(self._n_init):
            if self.verbose:
                print(f"Init {init_idx + 1}/{self._n_init} with method {init}")
            centers = self._init_centroids(
                X, init=init, random_state=random_state, sample_weight=sample_weight, init_size=self._init_size
            )
            _, inertia = _labels_inertia(X_valid, sw_valid, centers)
            if self.verbose:
                print(f"Inertia for init {init_idx + 1}/{self._n_init}: {inertia}")
            if best_inertia is None or inertia < best_inertia:
                init_centers, best_inertia = centers, inertia
        centers = init_centers
        self._counts = np.zeros(self.n_clusters, dtype=np.float64)
        self._ewa_inertia = None
        self._ewa_inertia_min = None
        self._no_improvement = 0
        self._n_since_last_reassign = 0
        n_steps = (int(self.max_iter) * n_samples) // self._batch_size
        # Batches are drawn with replacement, with probability proportional
        # to the sample weights, and then weigh one each (scikit-learn >= 1.7).
        sum_of_weights = float(np.sum(sample_weight))
        p = sample_weight / sum_of_weights
        draw = _batch_sampler(n_samples, p)
        unit = np.ones(self._batch_size, dtype=X.dtype)
        i = 0
        for i in range(n_steps):
            idx = draw(random_state, self._batch_size)
            new, batch_inertia = self._step(_c(X[idx], X.dtype), unit, centers, random_state, self._random_reassign())
            diff = float(np.sum((new - centers) ** 2)) if self._tol > 0.0 else 0.0
            centers = new
            if self._converged(i, n_steps, n_samples, diff, batch_inertia):
                break
        self.cluster_centers_ = centers
        self._n_features_out = centers.shape[0]
        self.n_steps_ = i + 1
        self.n_iter_ = int(np.ceil(((i + 1) * self._batch_size) / n_samples))
        if self.compute_labels:
            self.labels_, inertia = _labels_inertia(X, sample_weight, centers)
            self.inertia_ = float(inertia)
        else:
            self.inertia_ = float(self._ewa_inertia * sum_of_weights) if self._ewa_inertia is not None else 0.0
        return self

    def partial_fit(self, X: ArrayLike, y: Any = None, sample_weight: Optional[ArrayLike] = None) -> "MiniBatchKMeans":
        """Updates the centres with one mini-batch step over X; returns self."""
        has_centers = hasattr(self, "cluster_centers_")
        X = _validate(self, X, reset=not has_centers)
        self._random_state = getattr(self, "_random_state", check_random_state(self.random_state))
        sample_weight = _c(_check_sample_weight(sample_weight, X, dtype=X.dtype), X.dtype)
        self.n_steps_ = getattr(self, "n_steps_", 0)
        if not has_centers:
            self._check_params(X)
            init = self._explicit_init(X)
            if init is None:
                init = self.init
            self.cluster_centers_ = self._init_centroids(
                X, init=init, random_state=self._random_state, sample_weight=sample_weight, init_size=self._init_size
            )
            self._counts = np.zeros(self.n_clusters, dtype=np.float64)
            self._n_since_last_reassign = 0
        centers = self._centers_as(X.dtype)
        self.cluster_centers_, _ = self._step(X, sample_weight, centers, self._random_state, self._random_reassign())
        if self.compute_labels:
            self.labels_, inertia = _labels_inertia(X, sample_weight, self.cluster_centers_)
            self.inertia_ = float(inertia)
        self.n_steps_ += 1
        self._n_features_out = self.cluster_centers_.shape[0]
        return self
