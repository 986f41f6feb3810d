"""Shared data for the centroid Python tests.

The blob data follows the reference Estimator's own tests: five centres with
coordinates uniform in [0, 500) (rounded), 1,000 points, offsets rounded
from N(0, 20^2); the true score is the sum of the squared offsets.
"""

import numpy as np
import pytest


def make_random_centers(rng, num_centers, num_dims, center_norm=500):
    return np.round(rng.random((num_centers, num_dims)) * center_norm).astype(np.float32)


def make_random_points(rng, centers, num_points, max_offset=20):
    num_centers, num_dims = centers.shape
    assignments = rng.choice(num_centers, num_points)
    offsets = np.round(rng.standard_normal((num_points, num_dims)).astype(np.float32) * max_offset)
    return (centers[assignments] + offsets).astype(np.float32), assignments, np.sum(offsets * offsets, axis=1)


class Blobs:
    def __init__(self, seed=3):
        rng = np.random.default_rng(seed)
        # Redraw until the centres are well separated (> 150 apart), so
        # every point's nearest true centre is its own.
        while True:
            self.centers = make_random_centers(rng, 5, 2)
            d = np.linalg.norm(self.centers[:, None] - self.centers[None], axis=2)
            if d[np.triu_indices(5, 1)].min() > 150:
                break
        self.points, self.assignments, scores = make_random_points(rng, self.centers, 1000)
        self.true_score = float(np.sum(scores))
        self.rng = rng


@pytest.fixture
def blobs():
    return Blobs()


def random_batches(points, batch_size, seed=0):
    """An input_fn yielding random batches without end (one per step)."""

    def input_fn():
        rng = np.random.default_rng(seed)

        def gen():
            while True:
                yield points[rng.choice(len(points), batch_size, replace=False)]

        return gen()

    return input_fn
