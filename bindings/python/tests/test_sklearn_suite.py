"""scikit-learn's own KMeans tests, run against centroid's classes.

The installed scikit-learn's `sklearn/cluster/tests/test_k_means.py` is read,
its import of `KMeans` and `MiniBatchKMeans` is pointed at `centroid.sklearn`
(`k_means` and `kmeans_plusplus` stay scikit-learn's: they are functions we
do not replace), and its tests are collected here, so every assertion in it
runs against our classes, dense and sparse input alike. The two fixtures it
takes from scikit-learn's conftest are defined below as scikit-learn's
defaults define them.

Nothing is excluded. The tests that call scikit-learn's private helpers
(`_labels_inertia`, `_mini_batch_step`, `_inertia_dense`, ...) call them on
arrays, not on our classes, and so test scikit-learn itself; the ones that
call the private method `_init_centroids` on a `KMeans` call ours, which
takes the same keywords; `_n_init` and `_init_size` are attributes of ours
too. A test that cannot run against our classes would go into EXCLUDED with
its reason.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("scipy")

SOURCE = pathlib.Path(sklearn.__file__).parent / "cluster" / "tests" / "test_k_means.py"
IMPORT = "from sklearn.cluster import KMeans, MiniBatchKMeans, k_means, kmeans_plusplus"
REPLACEMENT = (
    "from sklearn.cluster import k_means, kmeans_plusplus\n"
    "from centroid.sklearn import KMeans, MiniBatchKMeans"
)

# name -> why it cannot run against our classes.
EXCLUDED: dict[str, str] = {}


@pytest.fixture(params=[int(os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED", "42"))])
def global_random_seed(request):  # type: ignore[no-untyped-def]
    """scikit-learn's conftest fixture: its default seed, 42."""
    return request.param


@pytest.fixture(params=[np.float32, np.float64])
def global_dtype(request):  # type: ignore[no-untyped-def]
    """scikit-learn's conftest fixture, with float32 turned on (as
    SKLEARN_RUN_FLOAT32_TESTS=1 does there)."""
    return request.param


def _load() -> dict:
    if not SOURCE.exists():
        pytest.skip(f"this scikit-learn ships no {SOURCE}", allow_module_level=True)
    text = SOURCE.read_text()
    if IMPORT not in text:
        raise RuntimeError(f"{SOURCE} no longer imports the classes with {IMPORT!r}; update this module")
    namespace: dict = {"__name__": "sklearn_test_k_means_on_centroid", "__file__": str(SOURCE)}
    exec(compile(text.replace(IMPORT, REPLACEMENT), str(SOURCE), "exec"), namespace)
    return namespace


_namespace = _load()
_missing = sorted(set(EXCLUDED) - set(_namespace))
assert not _missing, f"excluded tests that scikit-learn no longer has: {_missing}"
for _name, _obj in _namespace.items():
    if _name.startswith("test_") and callable(_obj) and _name not in EXCLUDED:
        globals()[_name] = _obj
