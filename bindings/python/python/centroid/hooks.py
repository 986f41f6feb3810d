"""Hooks around training steps and listeners around checkpoint saves.

Subclass `SessionRunHook` or `CheckpointSaverListener` and override the
methods you need, or pass any object that has some of them, or pass
TensorFlow's own hooks (`tf.estimator.SessionRunHook` subclasses and its
built-in hooks): they run in TensorFlow's order with what TensorFlow would
give them (see `_HookRunner`). The methods TensorFlow gives extra arguments
(`end(session)`, `before_save(session, global_step_value)`, ...) may keep
those parameters: hooks get a stand-in session, listeners `None`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Callable, Dict, Optional

import numpy as np

__all__ = [
    "SessionRunArgs",
    "SessionRunContext",
    "SessionRunValues",
    "SessionRunHook",
    "CheckpointSaverListener",
    "StopAtStepHook",
]


class SessionRunArgs:
    """What a hook's `before_run` may return: `fetches` to receive in
    `after_run` as `run_values.results` (TensorFlow's
    `tf.estimator.SessionRunArgs`). A fetch names `"loss"`, `"global_step"`
    or `"clusters"` (a string, or a TensorFlow tensor or variable of that
    name such as `tf.compat.v1.train.get_global_step()`), or is a list,
    tuple or dict of fetches."""

    def __init__(self, fetches: Any, feed_dict: Any = None, options: Any = None) -> None:
        self.fetches = fetches
        self.feed_dict = feed_dict
        self.options = options

    def __repr__(self) -> str:
        return f"SessionRunArgs(fetches={self.fetches!r})"


class SessionRunContext:
    """What a hook may see and do in the step it is called for. `session`
    is an object whose `run(fetches)` gives the model's current values by
    name (what TensorFlow hooks call `run_context.session.run` for)."""

    def __init__(self, global_step: int, stop_requested: bool = False) -> None:
        self._global_step = int(global_step)
        self._stop_requested = bool(stop_requested)
        self.session: Any = None
        self.original_args: Optional[SessionRunArgs] = None
        # Read by the core after before_run / after_run.
        self.clusters_requested = False
        self.checkpoint_requested = False

    @property
    def global_step(self) -> int:
        """The global step before the step runs."""
        return self._global_step

    @property
    def stop_requested(self) -> bool:
        """Whether some hook asked the loop to stop."""
        return self._stop_requested

    def request_stop(self) -> None:
        """Asks the loop to stop after the current step."""
        self._stop_requested = True

    def __repr__(self) -> str:
        return f"SessionRunContext(global_step={self._global_step}, stop_requested={self._stop_requested})"


class SessionRunValues:
    """What one step produced: `global_step` (after the step), `loss` (the
    batch's loss with the centres as they were before the step; NaN during
    prediction) and `clusters` (the centres after a training step).
    `results` holds what the hook's `before_run` fetched, or these values as
    a dict when it fetched nothing."""

    def __init__(self, global_step: int, loss: float, clusters: Any = None) -> None:
        self.global_step = int(global_step)
        self.loss = float(loss)
        self.clusters = clusters
        self._results: Any = None
        self.options = None
        self.run_metadata = None

    @property
    def results(self) -> Any:
        """The hook's fetches, or the values as a dict."""
        if self._results is None:
            return {"global_step": self.global_step, "loss": self.loss}
        return self._results

    @results.setter
    def results(self, value: Any) -> None:
        self._results = value

    def __repr__(self) -> str:
        return f"SessionRunValues(global_step={self.global_step}, loss={self.loss})"


class SessionRunHook:
    """Base class of hooks: every method does nothing unless overridden."""

    def begin(self) -> None:
        """Called once before the loop starts."""

    def after_create_session(self, session: Any, coord: Any) -> None:
        """Called once the model is loaded, before the first step."""

    def before_run(self, run_context: SessionRunContext) -> Optional[SessionRunArgs]:
        """Called before each step; may return `SessionRunArgs`."""

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        """Called after each step with its values."""

    def end(self) -> None:
        """Called once after the loop ends normally."""


class CheckpointSaverListener:
    """Base class of listeners called around every checkpoint `train()` writes."""

    def begin(self) -> None:
        """Called once before training starts."""

    def before_save(self, global_step: int) -> None:
        """Called before the checkpoint of `global_step` is written."""

    def after_save(self, global_step: int) -> None:
        """Called after the checkpoint of `global_step` is written."""

    def end(self, global_step: int) -> None:
        """Called once when training ends, with the final global step."""


class StopAtStepHook(SessionRunHook):
    """Stops training after `num_steps` more steps or at `last_step` (give one),
    as `tf.estimator.StopAtStepHook` does."""

    def __init__(self, num_steps: Optional[int] = None, last_step: Optional[int] = None) -> None:
        if (num_steps is None) == (last_step is None):
            raise ValueError("give exactly one of num_steps and last_step")
        if num_steps is not None and num_steps <= 0:
            raise ValueError(f"num_steps must be positive, got {num_steps}")
        self._num_steps = num_steps
        self._last_step = last_step

    def before_run(self, run_context: SessionRunContext) -> None:
        if self._last_step is None:
            assert self._num_steps is not None
            self._last_step = run_context.global_step + self._num_steps
        if run_context.global_step >= self._last_step:
            run_context.request_stop()

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        if self._last_step is not None and run_values.global_step >= self._last_step:
            run_context.request_stop()


_FETCHABLE = ("loss", "global_step", "clusters")


def _fetch_key(fetch: Any) -> str:
    """Which model value a fetch names: "loss", "global_step" or "clusters",
    from a string ("loss", "global_step:0") or a TensorFlow tensor or
    variable named so ("global_step/Read/ReadVariableOp:0")."""
    name = fetch if isinstance(fetch, str) else getattr(fetch, "name", None)
    if not isinstance(name, str):
        raise ValueError(f"cannot fetch {fetch!r}: a hook can fetch {', '.join(_FETCHABLE)} (by name or tensor)")
    base = name.split(":")[0].split("/")[0]
    if base not in _FETCHABLE:
        raise ValueError(f"cannot fetch {name!r}: a hook can fetch {', '.join(_FETCHABLE)} (by name or tensor)")
    return base


def _resolve(fetches: Any, values: Dict[str, Any]) -> Any:
    """`fetches` with every fetch replaced by its value, keeping the
    structure (dicts, lists, tuples, namedtuples)."""
    if fetches is None:
        return None
    if isinstance(fetches, Mapping):
        return {k: _resolve(v, values) for k, v in fetches.items()}
    if isinstance(fetches, tuple) and hasattr(fetches, "_fields"):
        return type(fetches)(*(_resolve(v, values) for v in fetches))
    if isinstance(fetches, (list, tuple)):
        return type(fetches)(_resolve(v, values) for v in fetches)
    key = _fetch_key(fetches)
    value = values.get(key)
    if value is None:
        raise ValueError(f"{key!r} is not available here (prediction has no loss; only training has clusters)")
    return value


class _Session:
    """Stands in for the `tf.compat.v1.Session` TensorFlow passes hooks:
    `run(fetches)` gives the model's current values by name."""

    def __init__(self, runner: "_HookRunner") -> None:
        self._runner = runner

    @property
    def graph(self) -> Any:
        return self._runner.graph

    def run(self, fetches: Any, feed_dict: Any = None, options: Any = None, run_metadata: Any = None) -> Any:
        return _resolve(fetches, self._runner.current)


def _tf_hook_class(hook: Any, name: str) -> bool:
    """Whether `hook` is an instance of TensorFlow's built-in hook `name`
    (matched by class and module, so TensorFlow is never imported here)."""
    return any(
        c.__name__ == name and c.__module__.startswith(("tensorflow", "tensorflow_estimator"))
        for c in type(hook).__mro__
    )


def _is_tensorflow_object(obj: Any) -> bool:
    return any(c.__module__.startswith(("tensorflow", "tensorflow_estimator")) for c in type(obj).__mro__)


class _TimerHook:
    """Base of the stand-ins for TensorFlow's CheckpointSaverHook and
    SummarySaverHook: triggers every `every_steps` global steps or
    `every_secs` seconds, as TensorFlow's SecondOrStepTimer does (the first
    step always triggers)."""

    def __init__(self, every_steps: Optional[int], every_secs: Optional[float], trigger_first: bool) -> None:
        self._every_steps = every_steps
        self._every_secs = every_secs
        self._trigger_first = trigger_first
        self._last_step: Optional[int] = None
        self._last_time = 0.0

    def _due(self, step: int) -> bool:
        import time

        if self._last_step is None:
            if self._trigger_first:
                return True
            self._triggered(step - 1)
        if self._every_steps is not None and step >= self._last_step + self._every_steps:
            return True
        if self._every_secs is not None and time.time() >= self._last_time + self._every_secs:
            return True
        return False

    def _triggered(self, step: int) -> None:
        import time

        self._last_step = step
        self._last_time = time.time()


def _timer_settings(hook: Any) -> Any:
    timer = getattr(hook, "_timer", None)
    return getattr(timer, "_every_steps", None), getattr(timer, "_every_secs", None)


class _CheckpointSaverStandIn(_TimerHook):
    """TensorFlow's CheckpointSaverHook, translated: asks the loop for a
    checkpoint on the hook's schedule; its listeners become saving
    listeners of the train call."""

    def __init__(self, hook: Any) -> None:
        steps, secs = _timer_settings(hook)
        # TensorFlow saved when the session started; the first save here
        # is one period after the first step.
        super().__init__(steps, secs, trigger_first=False)
        self.checkpoint_dir = getattr(hook, "_checkpoint_dir", None)
        self.listeners = list(getattr(hook, "_listeners", None) or [])
        if getattr(hook, "_saver", None) is not None or getattr(hook, "_scaffold", None) is not None:
            raise ValueError("CheckpointSaverHook with a saver or scaffold cannot be honoured: centroid writes its own checkpoints")

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        if self._due(run_values.global_step):
            self._triggered(run_values.global_step)
            run_context.checkpoint_requested = True


class _SummarySaverStandIn(_TimerHook):
    """TensorFlow's SummarySaverHook, translated: writes the training `loss`
    (the summary TensorFlow's K-means records) to the hook's output folder
    on its schedule, through TensorFlow's own summary writer."""

    def __init__(self, hook: Any, default_dir: str) -> None:
        steps, secs = _timer_settings(hook)
        super().__init__(steps, secs, trigger_first=True)
        if getattr(hook, "_summary_op", None) is not None:
            raise ValueError(
                "SummarySaverHook with a summary_op cannot be honoured: centroid's model has no TensorFlow graph; "
                "give it output_dir or a summary_writer and it records the training loss"
            )
        self._writer = getattr(hook, "_summary_writer", None)
        self._output_dir = getattr(hook, "_output_dir", None) or default_dir

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        import sys

        step = run_values.global_step
        if not self._due(step):
            return
        self._triggered(step)
        tf = sys.modules["tensorflow"]
        if self._writer is None:
            self._writer = tf.compat.v1.summary.FileWriterCache.get(self._output_dir)
        summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag="loss", simple_value=run_values.loss)])
        self._writer.add_summary(summary, step)

    def end(self) -> None:
        if self._writer is not None:
            self._writer.flush()


class _HookRunner:
    """All the hooks of one train/evaluate/predict call, called in
    TensorFlow's order: every `begin`, then every `after_create_session`
    (once the model is loaded, before the first step), then per step every
    `before_run` and every `after_run`, then every `end`.

    TensorFlow hooks get what TensorFlow would give them: a run context
    with `session` (whose `run` gives the model's values by name) and
    `original_args`, their own fetches in `run_values.results`, and, when
    TensorFlow is loaded, a graph holding `global_step`, `loss` and
    `clusters` as the default graph during every call (so
    `tf.compat.v1.train.get_global_step()` works in `begin`).
    TensorFlow's CheckpointSaverHook and SummarySaverHook are translated
    (they need a TensorFlow session); its other built-in hooks run as they
    are.

    The global step fetched through SessionRunArgs is the value before the
    step (TensorFlow fetches a read of it that runs before the update);
    `session.run` in `after_run` gives the value after it.
    """

    def __init__(self, hooks: Any, mode: str, model_dir: Optional[str] = None) -> None:
        self.mode = mode
        self._hooks: list = []
        self._listeners: list = []
        self._model_dir = model_dir
        for h in hooks:
            if _tf_hook_class(h, "CheckpointSaverHook"):
                if mode != "train":
                    raise ValueError("CheckpointSaverHook only runs during training")
                standin = _CheckpointSaverStandIn(h)
                self._listeners += standin.listeners
                self._hooks.append((standin, standin))
            elif _tf_hook_class(h, "SummarySaverHook"):
                self._hooks.append((None, h))  # replaced once model_dir is known
            else:
                self._hooks.append((h, h))
        self.uses_tensorflow = any(_is_tensorflow_object(orig) for _, orig in self._hooks)
        self.graph: Any = None
        self.current: Dict[str, Any] = {"global_step": None, "loss": None, "clusters": None}
        self._session = _Session(self)
        self._created = False
        self._fetches: list = []

    def checkpoint_listeners(self, model_dir: str) -> list:
        """The listeners of translated CheckpointSaverHooks (added to the
        train call's saving listeners); checks their folders."""
        self._model_dir = model_dir
        for i, (h, orig) in enumerate(self._hooks):
            if isinstance(h, _CheckpointSaverStandIn) and h.checkpoint_dir is not None:
                import os

                if os.path.abspath(os.fspath(h.checkpoint_dir)) != os.path.abspath(model_dir):
                    raise ValueError(
                        f"CheckpointSaverHook saves to {h.checkpoint_dir!r}, but centroid checkpoints go to "
                        f"model_dir {model_dir!r}"
                    )
            if h is None:
                self._hooks[i] = (_SummarySaverStandIn(orig, model_dir), orig)
        return list(self._listeners)

    def _graph_scope(self) -> Any:
        """The TensorFlow graph as the default graph, when a TensorFlow hook
        is present (TensorFlow is then already loaded)."""
        import contextlib
        import sys

        tf = sys.modules.get("tensorflow") if self.uses_tensorflow else None
        if tf is None:
            return contextlib.nullcontext()
        if self.graph is None:
            self.graph = tf.Graph()
            with self.graph.as_default():
                tf.compat.v1.train.create_global_step()
                tf.compat.v1.placeholder(tf.float32, shape=[], name="loss")
                tf.compat.v1.placeholder(tf.float32, shape=[None, None], name="clusters")
        return self.graph.as_default()

    def begin(self) -> None:
        for i, (h, orig) in enumerate(self._hooks):
            if h is None:  # a SummarySaverHook in evaluate/predict: no training loss to record
                self._hooks[i] = (SessionRunHook(), orig)
        with self._graph_scope():
            for h, _ in self._hooks:
                _call(h, "begin")

    def _create_session(self) -> None:
        if self._created:
            return
        self._created = True
        with self._graph_scope():
            for h, _ in self._hooks:
                method = getattr(h, "after_create_session", None)
                if method is not None:
                    method(self._session, None)

    def before_run(self, run_context: SessionRunContext) -> None:
        self.current = {"global_step": np.int64(run_context.global_step), "loss": None, "clusters": None}
        self._create_session()
        run_context.session = self._session
        run_context.clusters_requested = self.mode == "train"
        self._fetches = []
        with self._graph_scope():
            for h, _ in self._hooks:
                method = getattr(h, "before_run", None)
                args = None if method is None else method(run_context)
                fetches = getattr(args, "fetches", None) if args is not None else None
                if fetches is not None:
                    # Fail before the step, naming the hook, not after it.
                    _resolve(fetches, {k: 0 for k in _FETCHABLE})
                self._fetches.append(fetches if args is not None else _NO_FETCHES)

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        before = run_values.global_step - 1 if self.mode == "train" else run_values.global_step
        # The loss in the model's own type, as TensorFlow fetches it.
        dtype = getattr(run_values.clusters, "dtype", np.dtype(np.float32))
        loss = None if run_values.loss != run_values.loss else dtype.type(run_values.loss)
        fetched = {"global_step": np.int64(before), "loss": loss, "clusters": run_values.clusters}
        self.current = {"global_step": np.int64(run_values.global_step), "loss": loss, "clusters": run_values.clusters}
        run_context.session = self._session
        with self._graph_scope():
            for (h, _), fetches in zip(self._hooks, self._fetches):
                method = getattr(h, "after_run", None)
                if method is None:
                    continue
                values = SessionRunValues(run_values.global_step, run_values.loss, run_values.clusters)
                if fetches is not _NO_FETCHES:
                    values.results = _resolve(fetches, fetched)
                method(run_context, values)

    def end(self) -> None:
        import sys

        self._create_session()
        with self._graph_scope():
            for h, _ in self._hooks:
                _call(h, "end", session=self._session)
        tf = sys.modules.get("tensorflow") if self.uses_tensorflow else None
        if tf is not None:
            # As TensorFlow's session does when it closes: the summary
            # writers its hooks opened write out and close.
            tf.compat.v1.summary.FileWriterCache.clear()


_NO_FETCHES = object()


def _positional_count(fn: Callable[..., Any]) -> Optional[int]:
    """How many positional parameters a bound method takes, or None if it
    takes *args or cannot be inspected."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    count = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            count += 1
    return count


def _call(obj: Any, name: str, *args: Any, session_first: bool = False, session: Any = None) -> None:
    method = getattr(obj, name, None)
    if method is None:
        return
    n = _positional_count(method)
    # TensorFlow's signatures take a session first.
    if n is not None and n == len(args) + 1:
        if session_first or not args:
            method(session, *args)
            return
    method(*args)


class _ListenerAdapter:
    """Calls a user's listener with the arguments its signature expects."""

    def __init__(self, listener: Any) -> None:
        self._listener = listener

    def begin(self) -> None:
        _call(self._listener, "begin")

    def before_save(self, global_step: int) -> None:
        _call(self._listener, "before_save", global_step, session_first=True)

    def after_save(self, global_step: int) -> None:
        _call(self._listener, "after_save", global_step, session_first=True)

    def end(self, global_step: int) -> None:
        _call(self._listener, "end", global_step, session_first=True)
