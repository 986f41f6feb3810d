"""Hooks, saving listeners, Ctrl-C and the GIL."""

import logging
import os
import signal
import threading
import time

import numpy as np
import pytest

from centroid import KMeansClustering, RunConfig
from centroid.hooks import CheckpointSaverListener, SessionRunHook, StopAtStepHook

X = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)


def _est(tmp_path, **kw):
    return KMeansClustering(4, model_dir=str(tmp_path), **kw)


class Recorder(SessionRunHook):
    def __init__(self, stop_at=None):
        self.calls = []
        self.stop_at = stop_at

    def begin(self):
        self.calls.append("begin")

    def before_run(self, run_context):
        self.calls.append(("before", run_context.global_step))

    def after_run(self, run_context, run_values):
        self.calls.append(("after", run_values.global_step, run_values.loss))
        if self.stop_at is not None and run_values.global_step >= self.stop_at:
            run_context.request_stop()

    def end(self):
        self.calls.append("end")


def test_hooks_see_every_step_and_can_stop_training(tmp_path):
    hook = Recorder(stop_at=3)
    _est(tmp_path).train(lambda: X, hooks=[hook], steps=100)
    assert hook.calls[0] == "begin" and hook.calls[-1] == "end"
    steps = [c for c in hook.calls if isinstance(c, tuple)]
    assert [c[:2] for c in steps] == [("before", 0), ("after", 1), ("before", 1), ("after", 2), ("before", 2), ("after", 3)]
    assert all(c[2] > 0 for c in steps if c[0] == "after")
    assert _est(tmp_path).get_variable_value("global_step") == 3


def test_the_loss_a_hook_sees_is_the_batch_loss_before_the_update(tmp_path):
    hook = Recorder()
    init = X[:4].copy()
    est = KMeansClustering(None, model_dir=str(tmp_path), initial_clusters=init, use_mini_batch=False)
    est.train(lambda: X, hooks=[hook], steps=1)
    d = ((X[:, None, :].astype(np.float64) - init[None]) ** 2).sum(-1).min(1).sum()
    (after,) = [c for c in hook.calls if isinstance(c, tuple) and c[0] == "after"]
    assert after[2] == pytest.approx(d, rel=1e-5)


def test_duck_typed_hooks_and_stop_at_step(tmp_path):
    class OnlyAfterRun:
        n = 0

        def after_run(self, run_context, run_values):
            self.n += 1

    h = OnlyAfterRun()
    _est(tmp_path).train(lambda: X, hooks=[h, StopAtStepHook(num_steps=4)])
    assert h.n == 4
    _est(tmp_path).train(lambda: X, hooks=[StopAtStepHook(last_step=6)])
    assert _est(tmp_path).get_variable_value("global_step") == 6


def test_tensorflow_style_hook_signatures_work(tmp_path):
    class TFHook:  # TensorFlow passes a session to end()
        ended = False

        def end(self, session):
            # A stand-in session: run() gives the model's values by name.
            assert session.run("global_step") == 2
            self.ended = True

    h = TFHook()
    _est(tmp_path).train(lambda: X, hooks=[h], steps=2)
    assert h.ended


def test_hook_errors_propagate_unchanged(tmp_path):
    class Boom(SessionRunHook):
        def after_run(self, run_context, run_values):
            if run_values.global_step == 2:
                raise LookupError("hook failed")

    with pytest.raises(LookupError, match="hook failed"):
        _est(tmp_path).train(lambda: X, hooks=[Boom()], steps=5)


def test_evaluate_and_predict_run_hooks(tmp_path):
    est = _est(tmp_path)
    est.train(lambda: X, steps=1)
    h = Recorder()
    est.evaluate(lambda: iter([X[:100], X[100:]]), hooks=[h])
    assert [c[0] if isinstance(c, tuple) else c for c in h.calls] == [
        "begin", "before", "after", "before", "after", "before", "end"
    ]
    h = Recorder(stop_at=0)
    rows = list(est.predict(lambda: iter([X[:10], X[10:20], X[20:30]]), hooks=[h]))
    assert len(rows) == 10  # the hook stopped after the first batch
    assert h.calls[-1] == "end"


class Listener(CheckpointSaverListener):
    def __init__(self):
        self.calls = []

    def begin(self):
        self.calls.append("begin")

    def before_save(self, global_step):
        self.calls.append(("before_save", global_step))

    def after_save(self, global_step):
        assert os.path.exists(os.path.join(self.model_dir, f"model.ckpt-{global_step}.safetensors"))
        self.calls.append(("after_save", global_step))

    def end(self, global_step):
        self.calls.append(("end", global_step))


def test_listeners_are_called_around_every_save(tmp_path):
    lst = Listener()
    lst.model_dir = str(tmp_path)
    est = _est(tmp_path, config=RunConfig(save_checkpoints_steps=2))
    est.train(lambda: X, steps=5, saving_listeners=[lst])
    assert lst.calls == [
        "begin",
        ("before_save", 2), ("after_save", 2),
        ("before_save", 4), ("after_save", 4),
        ("before_save", 5), ("after_save", 5),
        ("end", 5),
    ]


def test_tensorflow_style_listener_signatures_work(tmp_path):
    seen = []

    class TFListener:
        def before_save(self, session, global_step_value):
            seen.append(("before", session, global_step_value))

        def after_save(self, session, global_step_value):
            seen.append(("after", session, global_step_value))

    _est(tmp_path).train(lambda: X, steps=3, saving_listeners=[TFListener()])
    assert seen == [("before", None, 3), ("after", None, 3)]


# ------------------------------------------------------------------- Ctrl-C


def test_keyboard_interrupt_in_a_hook_saves_the_last_finished_step(tmp_path):
    class CtrlC(SessionRunHook):
        def after_run(self, run_context, run_values):
            if run_values.global_step == 3:
                raise KeyboardInterrupt

    est = _est(tmp_path, config=RunConfig(save_checkpoints_secs=None))
    with pytest.raises(KeyboardInterrupt):
        est.train(lambda: X, hooks=[CtrlC()], steps=100)
    assert est.latest_checkpoint().endswith("model.ckpt-3.safetensors")
    assert est.get_variable_value("global_step") == 3


@pytest.fixture
def ctrl_c():
    """Python's own SIGINT handler for the test. A process started in the
    background by a shell without job control inherits SIGINT ignored, and
    Python then installs no handler: a SIGINT the test sends itself would do
    nothing (an endless train() would run on)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_sigint_during_training_stops_cleanly_with_a_checkpoint(tmp_path, ctrl_c):
    big = np.random.default_rng(1).normal(size=(20000, 8)).astype(np.float32)
    est = _est(tmp_path, config=RunConfig(save_checkpoints_secs=None))
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt, match="checkpoint saved at global step"):
            est.train(lambda: big)  # a constant batch and no steps: runs until stopped
    finally:
        timer.cancel()
    step = est.get_variable_value("global_step")
    assert step > 0
    assert est.latest_checkpoint().endswith(f"model.ckpt-{step}.safetensors")


def test_ctrl_c_raised_inside_a_log_record_still_stops_training(tmp_path):
    # Python runs a signal's handler at the next bytecode of the main thread,
    # which may be inside a log record the training loop hands to Python's
    # logging. The KeyboardInterrupt raised there must stop training as a
    # Ctrl-C between steps does (it used to be left pending and lost, and an
    # endless train() ran on). Here the log handler raises it itself.
    class RaiseOnLoss(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("loss = "):
                raise KeyboardInterrupt

    logger = logging.getLogger("centroid")
    handler, level = RaiseOnLoss(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        est = _est(tmp_path, config=RunConfig(save_checkpoints_secs=None, log_step_count_steps=10))
        with pytest.raises(KeyboardInterrupt, match="checkpoint saved at global step"):
            est.train(lambda: X, steps=1000)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    step = est.get_variable_value("global_step")
    assert 0 < step < 1000
    assert est.latest_checkpoint().endswith(f"model.ckpt-{step}.safetensors")


def test_sigint_inside_a_python_generator_also_stops_cleanly(tmp_path, ctrl_c):
    def slow_batches():
        for i in range(10_000):
            if i == 3:
                os.kill(os.getpid(), signal.SIGINT)  # raises KeyboardInterrupt here
            yield X

    est = _est(tmp_path, config=RunConfig(save_checkpoints_secs=None))
    with pytest.raises(KeyboardInterrupt):
        est.train(slow_batches)
    step = est.get_variable_value("global_step")
    assert step == 3


# --------------------------------------------------------------------- GIL


def test_the_gil_is_released_while_rust_trains(tmp_path):
    # Big enough that each step takes tens of milliseconds even on a fast,
    # idle machine (100,000 x 64 against 256 centres: 3.3 GFLOP a step).
    big = np.random.default_rng(2).normal(size=(100_000, 64)).astype(np.float32)
    est = KMeansClustering(256, model_dir=str(tmp_path), use_mini_batch=False, config=RunConfig(num_threads=1))
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=count)
    start = time.perf_counter()
    t.start()
    try:
        est.train(lambda: big, steps=8)
    finally:
        done.set()
        t.join()
    elapsed = time.perf_counter() - start
    during = [x for x in ticks if x < start + elapsed]
    # With the GIL held the other thread could not tick at all while a step
    # ran; released, it ticks about once a millisecond throughout.
    assert elapsed > 0.05
    assert len(during) > 0.3 * elapsed / 0.001 * 0.5
