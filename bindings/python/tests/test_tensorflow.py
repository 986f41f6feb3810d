"""Agreement with TensorFlow's own K-means Estimator, where TensorFlow 2.15
(with tensorflow-estimator) is installed; skipped elsewhere."""

import os

import numpy as np
import pytest

from centroid import KMeansClustering

try:  # TensorFlow is never a dependency of centroid.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    TFKMeans = tf.compat.v1.estimator.experimental.KMeans
except Exception as e:  # ImportError, or an estimator-less TensorFlow
    tf = None
    REASON = f"TensorFlow with tf.compat.v1.estimator is not installed ({type(e).__name__}: {e})"
else:
    REASON = ""

pytestmark = pytest.mark.skipif(tf is None, reason=REASON or "TensorFlow is not installed")


def test_full_batch_five_steps_agree_with_tensorflow(tmp_path, blobs):
    # Non-integer coordinates, so that sums are not exact in float32.
    x = (blobs.points + blobs.rng.uniform(-0.5, 0.5, blobs.points.shape)).astype(np.float32)
    # Explicit initial centres, one point from each true cluster, so no
    # cluster empties (TensorFlow would move an empty one to the origin).
    init = np.stack([x[np.flatnonzero(blobs.assignments == j)[0]] for j in range(5)])

    ref = TFKMeans(
        num_clusters=5,
        model_dir=str(tmp_path / "tf"),
        initial_clusters=init,
        use_mini_batch=False,
    )
    ref.train(lambda: tf.constant(x), steps=5)
    tf_centres = ref.cluster_centers()

    ours = KMeansClustering(5, model_dir=str(tmp_path / "ours"), initial_clusters=init, use_mini_batch=False)
    ours.train(lambda: x, steps=5)
    centres = ours.cluster_centers()

    rel = np.max(np.abs(centres - tf_centres) / np.maximum(np.abs(tf_centres), 1e-12))
    print(f"max relative difference of the centres after 5 full-batch steps: {rel:.3g}")
    assert rel <= 1e-4
    tf_score = ref.score(lambda: tf.constant(x))
    assert ours.score(lambda: x) == pytest.approx(tf_score, rel=1e-4)
    # A constant tensor never ends in TensorFlow's predict: give it one epoch.
    one_epoch = lambda: tf.compat.v1.train.limit_epochs(tf.constant(x), num_epochs=1)  # noqa: E731
    tf_index = [int(i) for i in ref.predict_cluster_index(one_epoch)]
    assert [int(i) for i in ours.predict_cluster_index(lambda: x)] == tf_index


def test_tensorflow_tensors_and_datasets_are_accepted_as_input(tmp_path, blobs):
    x = blobs.points
    init = x[:5].copy()
    est = KMeansClustering(None, model_dir=str(tmp_path / "a"), initial_clusters=init, use_mini_batch=False)
    est.train(lambda: tf.constant(x), steps=2)
    est2 = KMeansClustering(None, model_dir=str(tmp_path / "b"), initial_clusters=init, use_mini_batch=False)
    est2.train(lambda: tf.data.Dataset.from_tensors(tf.constant(x)).repeat(2))
    np.testing.assert_array_equal(est.cluster_centers(), est2.cluster_centers())
