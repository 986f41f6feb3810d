"""C-contiguous float arrays reach Rust without a copy."""

import sys

import numpy as np
import pytest

from centroid import KMeansClustering

resource = pytest.importorskip("resource")


def _peak_rss_mib():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


def test_training_on_a_large_constant_array_does_not_copy_it(tmp_path):
    n, d = 2_000_000, 32  # 256 MiB of float32
    x = np.random.default_rng(0).random((n, d), dtype=np.float32)
    x += 0  # touch every page so the array itself counts in the peak now
    before = _peak_rss_mib()
    est = KMeansClustering(4, model_dir=str(tmp_path), use_mini_batch=False)
    est.train(lambda: x, steps=2)
    list(est.predict_cluster_index(lambda: x[:10]))
    grown = _peak_rss_mib() - before
    # A copy of x would add 256 MiB; per-row labels and scores add ~16 MiB.
    assert grown < 128, f"peak memory grew by {grown:.0f} MiB"
