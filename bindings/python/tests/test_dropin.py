"""What a TensorFlow script relies on, checked without TensorFlow:
TensorBoard event files, training logs through `logging`, hooks' fetches,
the error classes, `get_variable_value` with a list, RunConfig read by field
name. (test_tensorflow.py runs the same scenarios side by side with
TensorFlow where it is installed.)"""

import logging
import os
import types

import numpy as np
import pytest

from centroid import KMeansClustering, RunConfig
from centroid.errors import ArgumentTypeError, CheckpointNotFoundError, NotTrainedError
from centroid.hooks import SessionRunArgs, SessionRunHook

X = np.random.default_rng(1).normal(size=(120, 3)).astype(np.float32)
INIT = X[:4].copy()


def lloyd_reference(x, centres, steps):
    """Full-batch Lloyd in float64: the loss of every step (with the centres
    before it) and the centres after each step. Empty clusters keep their
    centre."""
    x = x.astype(np.float64)
    c = centres.astype(np.float64).copy()
    losses, history = [], []
    for _ in range(steps):
        d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        losses.append(d.min(1).sum())
        a = d.argmin(1)
        for j in range(len(c)):
            if np.any(a == j):
                c[j] = x[a == j].mean(0)
        history.append(c.copy())
    return losses, history


def _est(tmp_path, **config):
    cfg = RunConfig(model_dir=str(tmp_path), **config) if config else None
    return KMeansClustering(
        None, model_dir=None if cfg else str(tmp_path), initial_clusters=INIT, use_mini_batch=False, config=cfg
    )


def _scalars(folder):
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea.EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_training_and_evaluation_write_tensorboard_event_files(tmp_path):
    est = _est(tmp_path, save_summary_steps=3, log_step_count_steps=2)
    est.train(lambda: X, steps=7)
    losses, history = lloyd_reference(X, INIT, 7)
    assert any(n.startswith("events.out.tfevents.") for n in os.listdir(tmp_path))
    scalars = _scalars(tmp_path)
    # As TensorFlow's SummarySaverHook: after the first step, then every 3.
    assert [s for s, _ in scalars["loss"]] == [1, 4, 7]
    np.testing.assert_allclose([v for _, v in scalars["loss"]], [losses[0], losses[3], losses[6]], rtol=1e-5)
    # As TensorFlow's StepCounterHook: every 2 steps from the first.
    assert [s for s, _ in scalars["global_step/sec"]] == [3, 5, 7]
    assert all(v > 0 for _, v in scalars["global_step/sec"])

    final = ((X[:, None, :].astype(np.float64) - history[-1][None]) ** 2).sum(-1).min(1).sum()
    est.evaluate(lambda: X, steps=1, name="holdout")
    est.evaluate(lambda: X, steps=1)
    for folder in ("eval_holdout", "eval"):
        s = _scalars(tmp_path / folder)
        for tag in ("loss", "score"):
            assert [step for step, _ in s[tag]] == [7]
            assert s[tag][0][1] == pytest.approx(final, rel=1e-5)

    # A second train call: a new event file, the curve goes on from step 7,
    # and the last step is written even off the 3-step grid.
    est.train(lambda: X, steps=2)
    assert [s for s, _ in _scalars(tmp_path)["loss"]] == [1, 4, 7, 8, 9]


def test_no_loss_summaries_when_save_summary_steps_is_none(tmp_path):
    est = _est(tmp_path, save_summary_steps=None, log_step_count_steps=None)
    est.train(lambda: X, steps=3)
    assert not [n for n in os.listdir(tmp_path) if n.startswith("events.out.tfevents.")]


def test_training_logs_reach_python_logging(tmp_path, caplog):
    est = _est(tmp_path, log_step_count_steps=2)
    losses, _ = lloyd_reference(X, INIT, 5)
    with caplog.at_level(logging.INFO, logger="centroid"):
        est.train(lambda: X, steps=5)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("centroid")]
    loss_lines = [l for l in lines if l.startswith("loss = ")]
    assert [l.split("step = ")[1].split(" ")[0] for l in loss_lines] == ["0", "2", "4"]
    for line, expected in zip(loss_lines, (losses[0], losses[2], losses[4])):
        assert float(line.split(",")[0].split("=")[1]) == pytest.approx(expected, rel=1e-5)
    assert sum(l.startswith("global_step/sec: ") for l in lines) == 2
    assert any(l.startswith("Saving checkpoints for 5 into ") for l in lines)
    assert lines[-1].startswith("Loss for final step: ")
    # Below INFO nothing is printed.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="centroid"):
        est.train(lambda: X, steps=2)
    assert not [r for r in caplog.records if r.name.startswith("centroid")]


class Fetcher(SessionRunHook):
    def __init__(self, fetches):
        self.fetches = fetches
        self.results = []
        self.sessions = []

    def before_run(self, run_context):
        return SessionRunArgs(self.fetches)

    def after_run(self, run_context, run_values):
        self.results.append(run_values.results)
        self.sessions.append(run_context.session.run("global_step:0"))


def test_hooks_fetch_loss_global_step_and_clusters(tmp_path):
    hook = Fetcher({"loss": "loss", "step": "global_step:0", "both": ["clusters", "loss:0"]})
    _est(tmp_path).train(lambda: X, steps=3, hooks=[hook])
    losses, history = lloyd_reference(X, INIT, 3)
    assert [int(r["step"]) for r in hook.results] == [0, 1, 2]  # read before the step, as TensorFlow
    assert [int(s) for s in hook.sessions] == [1, 2, 3]  # the session's value after it
    for r, loss, centres in zip(hook.results, losses, history):
        assert float(r["loss"]) == pytest.approx(loss, rel=1e-5)
        np.testing.assert_allclose(r["both"][0], centres, rtol=1e-5)
        assert r["both"][1] == r["loss"]
    with pytest.raises(ValueError, match="cannot fetch 'train_op'"):
        _est(tmp_path).train(lambda: X, steps=1, hooks=[Fetcher("train_op")])


def test_error_classes_are_tensorflows_and_the_old_ones(tmp_path):
    est = _est(tmp_path)
    for call in (est.cluster_centers, est.get_variable_names, lambda: est.evaluate(lambda: X)):
        with pytest.raises(NotTrainedError) as e:
            call()
        assert isinstance(e.value, ValueError) and isinstance(e.value, RuntimeError)
    est.train(lambda: X, steps=1)
    with pytest.raises(CheckpointNotFoundError) as e:
        est.evaluate(lambda: X, checkpoint_path=str(tmp_path / "model.ckpt-42"))
    assert isinstance(e.value, ValueError) and isinstance(e.value, FileNotFoundError)
    for bad in (lambda: est.train(X, steps=1), lambda: KMeansClustering(2.5), lambda: KMeansClustering("3")):
        with pytest.raises(ArgumentTypeError) as e:
            bad()
        assert isinstance(e.value, TypeError) and isinstance(e.value, ValueError)


def test_get_variable_value_takes_a_list(tmp_path):
    est = _est(tmp_path)
    est.train(lambda: X, steps=2)
    clusters, step = est.get_variable_value(["clusters", "global_step"])
    np.testing.assert_allclose(clusters, lloyd_reference(X, INIT, 2)[1][-1], rtol=1e-5)
    assert step == 2
    assert est.get_variable_value(("global_step",)) == [2]
    with pytest.raises(ValueError, match="no variable"):
        est.get_variable_value(["clusters", "nope"])


def test_run_config_read_from_a_tensorflow_shaped_object(tmp_path):
    tf_like = types.SimpleNamespace(
        model_dir=str(tmp_path),
        tf_random_seed=3,
        save_summary_steps=10,
        save_checkpoints_steps=None,
        save_checkpoints_secs=60,
        keep_checkpoint_max=4,
        keep_checkpoint_every_n_hours=10000,
        log_step_count_steps=50,
        session_config=types.SimpleNamespace(intra_op_parallelism_threads=0),
        train_distribute=None,
        num_worker_replicas=1,
        num_ps_replicas=0,
    )
    est = KMeansClustering(3, config=tf_like)
    c = est.config
    assert est.model_dir == str(tmp_path)
    assert (c.random_seed, c.save_summary_steps, c.save_checkpoints_steps, c.save_checkpoints_secs) == (3, 10, None, 60)
    assert (c.keep_checkpoint_max, c.log_step_count_steps, c.num_threads) == (4, 50, None)
    tf_like.train_distribute = object()
    with pytest.raises(ValueError, match="cannot honour these RunConfig settings: train_distribute"):
        KMeansClustering(3, config=tf_like)
    with pytest.raises(ValueError, match="tf.estimator.RunConfig"):
        KMeansClustering(3, config={"model_dir": "x"})


def test_a_damaged_checkpoint_warning_reaches_python_logging(tmp_path, caplog):
    est = _est(tmp_path, save_checkpoints_steps=1, save_checkpoints_secs=None)
    est.train(lambda: X, steps=2)
    latest = tmp_path / "model.ckpt-2.safetensors"
    data = bytearray(latest.read_bytes())
    data[-1] ^= 0xFF  # flip bits of the last value: the CRC no longer matches
    latest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="centroid"):
        centres = est.cluster_centers()
    np.testing.assert_allclose(centres, lloyd_reference(X, INIT, 1)[1][-1], rtol=1e-5)  # step 1's
    warnings = [r for r in caplog.records if r.name.startswith("centroid") and r.levelno == logging.WARNING]
    assert warnings and "model.ckpt-1" in warnings[0].getMessage()
