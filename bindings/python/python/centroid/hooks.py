"""Hooks around training steps and listeners around checkpoint saves.

Subclass `SessionRunHook` or `CheckpointSaverListener` and override the
methods you need, or pass any object that has some of them. The methods
TensorFlow gives extra arguments (`end(session)`,
`before_save(session, global_step_value)`, ...) may keep those parameters:
they receive `None` for the session, so TensorFlow hooks run unchanged.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Optional

__all__ = [
    "SessionRunContext",
    "SessionRunValues",
    "SessionRunHook",
    "CheckpointSaverListener",
    "StopAtStepHook",
]


class SessionRunContext:
    """What a hook may see and do in the step it is called for."""

    def __init__(self, global_step: int, stop_requested: bool = False) -> None:
        self._global_step = int(global_step)
        self._stop_requested = bool(stop_requested)

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
    """What one step produced: `global_step` (after the step) and `loss`
    (the batch's loss with the centres as they were before the step; NaN
    during prediction)."""

    def __init__(self, global_step: int, loss: float) -> None:
        self.global_step = int(global_step)
        self.loss = float(loss)

    @property
    def results(self) -> Dict[str, Any]:
        """The values as a dict, where TensorFlow hooks look for them."""
        return {"global_step": self.global_step, "loss": self.loss}

    def __repr__(self) -> str:
        return f"SessionRunValues(global_step={self.global_step}, loss={self.loss})"


class SessionRunHook:
    """Base class of hooks: every method does nothing unless overridden."""

    def begin(self) -> None:
        """Called once before the loop starts."""

    def before_run(self, run_context: SessionRunContext) -> None:
        """Called before each step."""

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


def _call(obj: Any, name: str, *args: Any, session_first: bool = False) -> None:
    method = getattr(obj, name, None)
    if method is None:
        return
    n = _positional_count(method)
    # TensorFlow's signatures take a session first; pass None for it.
    if n is not None and n == len(args) + 1:
        if session_first or not args:
            method(None, *args)
            return
    method(*args)


class _HookAdapter:
    """Calls a user's hook with the arguments its signature expects."""

    def __init__(self, hook: Any) -> None:
        self._hook = hook

    def begin(self) -> None:
        _call(self._hook, "begin")

    def before_run(self, run_context: SessionRunContext) -> None:
        _call(self._hook, "before_run", run_context)

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        _call(self._hook, "after_run", run_context, run_values)

    def end(self) -> None:
        _call(self._hook, "end")


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
