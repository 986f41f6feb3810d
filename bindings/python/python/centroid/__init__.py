"""centroid: K-means clustering as a trainable, checkpointed Estimator.

`centroid.KMeansClustering` behaves as TensorFlow's K-means Estimator
(`tf.compat.v1.estimator.experimental.KMeans`), with NumPy input functions;
`centroid.sklearn` holds scikit-learn compatible `KMeans` and
`MiniBatchKMeans`. The work is done by a Rust core.
"""

from . import errors, hooks, inputs, serving
from ._core import (
    ALL_DISTANCES,
    CLUSTER_INDEX,
    COSINE_DISTANCE,
    KMEANS_PLUS_PLUS_INIT,
    RANDOM_INIT,
    SCORE,
    SQUARED_EUCLIDEAN_DISTANCE,
)
from .estimator import EstimatorSpec, KMeansClustering, ModeKeys, ModelFn
from .run_config import RunConfig

__all__ = [
    "KMeansClustering",
    "ModelFn",
    "ModeKeys",
    "EstimatorSpec",
    "errors",
    "serving",
    "RunConfig",
    "hooks",
    "inputs",
    "SQUARED_EUCLIDEAN_DISTANCE",
    "COSINE_DISTANCE",
    "RANDOM_INIT",
    "KMEANS_PLUS_PLUS_INIT",
    "SCORE",
    "CLUSTER_INDEX",
    "ALL_DISTANCES",
]
