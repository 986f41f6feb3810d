"""Reliability through the Python API (issue 11): a damaged checkpoint is
reported, predict generators survive a change of thread, and one estimator
used from two threads gives a clear error."""

import logging
import os
import threading

import numpy as np
import pytest

from centroid import KMeansClustering, RunConfig
from centroid.hooks import SessionRunHook


def _points(n=29, seed=3):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    return (centres[np.arange(n) % 3] + rng.normal(size=(n, 2))).astype(np.float32)


def _trained(tmp_path, steps=3):
    x = _points()
    est = KMeansClustering(
        3,
        model_dir=str(tmp_path / "m"),
        initial_clusters="kmeans_plus_plus",
        relative_tolerance=None,
        config=RunConfig(save_checkpoints_steps=1, keep_checkpoint_max=0),
    )
    est.train(lambda: x, steps=steps)
    return est, x


def test_a_damaged_checkpoint_warns_logs_and_is_not_the_latest(tmp_path, caplog):
    est, _ = _trained(tmp_path)
    newest = os.path.join(est.model_dir, "model.ckpt-3.safetensors")
    data = bytearray(open(newest, "rb").read())
    data[-3] ^= 0x40
    open(newest, "wb").write(bytes(data))
    with caplog.at_level(logging.WARNING, logger="centroid"):
        with pytest.warns(RuntimeWarning, match=r"model\.ckpt-3\.safetensors.*step 2"):
            step = est.get_variable_value("global_step")
    assert int(step) == 2
    records = [r for r in caplog.records if r.name == "centroid"]
    assert len(records) == 1 and "model.ckpt-3.safetensors" in records[0].getMessage()
    assert est.latest_checkpoint() == os.path.join(est.model_dir, "model.ckpt-2.safetensors")


def test_a_predict_generator_continued_on_another_thread_yields_every_row(tmp_path):
    est, x = _trained(tmp_path)
    centres = est.cluster_centers()
    expected = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)

    def batches():
        return iter([x[i : i + 3] for i in range(0, len(x), 3)])

    gen = est.predict(batches, predict_keys="cluster_index")
    got = [int(next(gen)["cluster_index"]) for _ in range(4)]
    failure = []

    def rest():
        try:
            got.extend(int(r["cluster_index"]) for r in gen)
        except BaseException as e:  # noqa: BLE001 - the test reports it
            failure.append(e)

    t = threading.Thread(target=rest)
    t.start()
    t.join()
    assert not failure, failure
    assert got == expected.tolist()


class _Blocker(SessionRunHook):
    def __init__(self):
        self.inside = threading.Event()
        self.release = threading.Event()

    def after_run(self, run_context, run_values):
        self.inside.set()
        self.release.wait(30)


def test_one_estimator_from_two_threads_is_a_clear_error(tmp_path):
    est, x = _trained(tmp_path, steps=1)
    hook = _Blocker()
    errors = []

    def train():
        try:
            est.train(lambda: x, steps=1, hooks=[hook])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=train)
    t.start()
    assert hook.inside.wait(30)
    try:
        with pytest.raises(RuntimeError, match="another thread"):
            est.train(lambda: x, steps=1)
        with pytest.raises(RuntimeError, match="another thread"):
            est.evaluate(lambda: x)
    finally:
        hook.release.set()
        t.join()
    assert not errors, errors
    assert int(est.get_variable_value("global_step")) == 2


def test_a_second_estimator_on_a_model_dir_in_training_is_refused(tmp_path):
    est, x = _trained(tmp_path, steps=1)
    hook = _Blocker()
    t = threading.Thread(target=lambda: est.train(lambda: x, steps=1, hooks=[hook]))
    t.start()
    assert hook.inside.wait(30)
    other = KMeansClustering(3, model_dir=est.model_dir, relative_tolerance=None)
    try:
        with pytest.raises(RuntimeError, match=f"process {os.getpid()}"):
            other.train(lambda: x, steps=1)
    finally:
        hook.release.set()
        t.join()
