"""`RunConfig`: where a `KMeansClustering` keeps its checkpoints and how often."""

from __future__ import annotations

import os
from typing import Any, Optional, Union

__all__ = ["RunConfig"]

_PathLike = Union[str, "os.PathLike[str]"]


def _opt_int(name: str, value: Any, minimum: int) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int,)) and not hasattr(value, "__index__"):
        raise ValueError(f"{name} must be an integer or None, got {value!r}")
    value = int(value.__index__())
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class RunConfig:
    """Run settings of an estimator, as `tf.estimator.RunConfig` has them.

    Args:
      model_dir: where checkpoints go; `None` lets the estimator decide (its
        own `model_dir` argument, else a fresh temporary directory).
      random_seed: overrides the estimator's `random_seed` when set.
      save_checkpoints_steps: save every this many steps (set
        `save_checkpoints_secs=None` when using it).
      save_checkpoints_secs: save every this many seconds (default 600).
      keep_checkpoint_max: how many of the newest checkpoints to keep
        (0 keeps all).
      log_step_count_steps: log the loss and speed every this many steps.
      num_threads: worker threads; `None` uses every core. Results do not
        depend on it.
      save_summary_steps: write the training loss to TensorBoard's event
        file in `model_dir` every this many steps; `None` or 0: never.
      tf_random_seed: TensorFlow's name for `random_seed` (give one).
      session_config: a `tf.compat.v1.ConfigProto` (or anything with
        `intra_op_parallelism_threads`): its thread count becomes
        `num_threads` (0 means every core).

    `RunConfig.from_tensorflow(tf.estimator.RunConfig(...))` reads a
    TensorFlow RunConfig; `KMeansClustering(config=...)` does so itself.
    """

    def __init__(
        self,
        model_dir: Optional[_PathLike] = None,
        random_seed: Optional[int] = None,
        save_checkpoints_steps: Optional[int] = None,
        save_checkpoints_secs: Optional[float] = 600,
        keep_checkpoint_max: int = 5,
        log_step_count_steps: Optional[int] = 100,
        num_threads: Optional[int] = None,
        save_summary_steps: Optional[int] = 100,
        tf_random_seed: Optional[int] = None,
        session_config: Any = None,
    ) -> None:
        if tf_random_seed is not None:
            if random_seed is not None and random_seed != tf_random_seed:
                raise ValueError("give random_seed or tf_random_seed, not both")
            random_seed = tf_random_seed
        if session_config is not None:
            threads = _opt_int(
                "session_config.intra_op_parallelism_threads",
                getattr(session_config, "intra_op_parallelism_threads", 0),
                0,
            )
            if threads and num_threads is not None and num_threads != threads:
                raise ValueError("give num_threads or session_config.intra_op_parallelism_threads, not both")
            if threads:
                num_threads = threads
        if model_dir is not None:
            model_dir = os.fspath(model_dir)
        self._model_dir: Optional[str] = model_dir
        self._random_seed = _opt_int("random_seed", random_seed, 0)
        if self._random_seed is not None and self._random_seed >= 2**64:
            raise ValueError(f"random_seed must be below 2**64, got {random_seed}")
        # Like TensorFlow: giving steps silences the default seconds.
        if save_checkpoints_steps is not None and save_checkpoints_secs == 600:
            save_checkpoints_secs = None
        self._save_checkpoints_steps = _opt_int("save_checkpoints_steps", save_checkpoints_steps, 1)
        if save_checkpoints_secs is not None:
            try:
                save_checkpoints_secs = float(save_checkpoints_secs)
            except (TypeError, ValueError):
                raise ValueError(f"save_checkpoints_secs must be a number or None, got {save_checkpoints_secs!r}") from None
            if not save_checkpoints_secs >= 0 or save_checkpoints_secs == float("inf"):
                raise ValueError(f"save_checkpoints_secs must be a finite number >= 0, got {save_checkpoints_secs}")
        if self._save_checkpoints_steps is not None and save_checkpoints_secs is not None:
            raise ValueError(
                "save_checkpoints_steps and save_checkpoints_secs cannot both be set; set one of them to None"
            )
        self._save_checkpoints_secs: Optional[float] = save_checkpoints_secs
        keep = _opt_int("keep_checkpoint_max", keep_checkpoint_max, 0)
        self._keep_checkpoint_max: int = 0 if keep is None else keep
        self._log_step_count_steps = _opt_int("log_step_count_steps", log_step_count_steps, 1)
        self._num_threads = _opt_int("num_threads", num_threads, 1)
        summary = _opt_int("save_summary_steps", save_summary_steps, 0)
        self._save_summary_steps = summary or None

    @property
    def model_dir(self) -> Optional[str]:
        """The checkpoint directory, or None."""
        return self._model_dir

    @property
    def random_seed(self) -> Optional[int]:
        """The seed that overrides the estimator's, or None."""
        return self._random_seed

    @property
    def tf_random_seed(self) -> Optional[int]:
        """TensorFlow's name for `random_seed`."""
        return self._random_seed

    @property
    def save_checkpoints_steps(self) -> Optional[int]:
        """Save every this many steps, or None."""
        return self._save_checkpoints_steps

    @property
    def save_checkpoints_secs(self) -> Optional[float]:
        """Save every this many seconds, or None."""
        return self._save_checkpoints_secs

    @property
    def keep_checkpoint_max(self) -> int:
        """How many checkpoints are kept (0: all)."""
        return self._keep_checkpoint_max

    @property
    def log_step_count_steps(self) -> Optional[int]:
        """Log every this many steps, or None."""
        return self._log_step_count_steps

    @property
    def save_summary_steps(self) -> Optional[int]:
        """Write the loss to TensorBoard every this many steps, or None."""
        return self._save_summary_steps

    @property
    def num_threads(self) -> Optional[int]:
        """Worker threads, or None for every core."""
        return self._num_threads

    def replace(self, **kwargs: Any) -> "RunConfig":
        """A copy with some settings changed (as `tf.estimator.RunConfig.replace`)."""
        args = dict(
            model_dir=self._model_dir,
            random_seed=self._random_seed,
            save_checkpoints_steps=self._save_checkpoints_steps,
            save_checkpoints_secs=self._save_checkpoints_secs,
            keep_checkpoint_max=self._keep_checkpoint_max,
            log_step_count_steps=self._log_step_count_steps,
            num_threads=self._num_threads,
            save_summary_steps=self._save_summary_steps,
        )
        if "tf_random_seed" in kwargs:
            kwargs["random_seed"] = kwargs.pop("tf_random_seed")
        unknown = set(kwargs) - set(args)
        if unknown:
            raise ValueError(f"unknown RunConfig settings: {sorted(unknown)}; known: {sorted(args)}")
        if "save_checkpoints_steps" in kwargs and "save_checkpoints_secs" not in kwargs:
            args["save_checkpoints_secs"] = None
        if "save_checkpoints_secs" in kwargs and "save_checkpoints_steps" not in kwargs:
            args["save_checkpoints_steps"] = None
        args.update(kwargs)
        return RunConfig(**args)

    def __repr__(self) -> str:
        return (
            f"RunConfig(model_dir={self._model_dir!r}, random_seed={self._random_seed!r}, "
            f"save_checkpoints_steps={self._save_checkpoints_steps!r}, "
            f"save_checkpoints_secs={self._save_checkpoints_secs!r}, "
            f"keep_checkpoint_max={self._keep_checkpoint_max!r}, "
            f"log_step_count_steps={self._log_step_count_steps!r}, num_threads={self._num_threads!r}, "
            f"save_summary_steps={self._save_summary_steps!r})"
        )

    @classmethod
    def from_tensorflow(cls, config: Any) -> "RunConfig":
        """A `RunConfig` from a `tf.estimator.RunConfig` (or
        `tf.compat.v1.estimator.RunConfig`, or any object with its field
        names): `model_dir`, `tf_random_seed`, `save_summary_steps`,
        `save_checkpoints_steps`, `save_checkpoints_secs`,
        `keep_checkpoint_max`, `log_step_count_steps` and
        `session_config.intra_op_parallelism_threads`. TensorFlow is not
        imported.

        Raises:
          ValueError: a setting centroid cannot honour (distribution,
            device placement, a cluster, keep_checkpoint_every_n_hours), or
            an object that is no RunConfig.
        """
        if isinstance(config, RunConfig):
            return config
        known = ("model_dir", "save_checkpoints_steps", "save_checkpoints_secs", "keep_checkpoint_max")
        if not all(hasattr(config, name) for name in known):
            raise ValueError(
                f"config must be a centroid.RunConfig or a tf.estimator.RunConfig, got {type(config).__name__}"
            )
        # Settings with no counterpart here: refused unless left at
        # TensorFlow's defaults.
        unhonoured = []
        for name, default in (
            ("train_distribute", None),
            ("eval_distribute", None),
            ("device_fn", None),
            ("experimental_distribute", None),
            ("keep_checkpoint_every_n_hours", 10000),
        ):
            value = getattr(config, name, default)
            if value != default:
                unhonoured.append(f"{name}={value!r}")
        if getattr(config, "num_worker_replicas", 1) > 1 or getattr(config, "num_ps_replicas", 0) > 0:
            unhonoured.append("a cluster (TF_CONFIG with workers or parameter servers)")
        if unhonoured:
            raise ValueError(f"centroid cannot honour these RunConfig settings: {', '.join(unhonoured)}")
        return cls(
            model_dir=config.model_dir,
            random_seed=getattr(config, "tf_random_seed", None),
            save_checkpoints_steps=config.save_checkpoints_steps,
            save_checkpoints_secs=config.save_checkpoints_secs,
            keep_checkpoint_max=config.keep_checkpoint_max,
            log_step_count_steps=getattr(config, "log_step_count_steps", 100),
            save_summary_steps=getattr(config, "save_summary_steps", 100),
            session_config=getattr(config, "session_config", None),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunConfig) and repr(self) == repr(other)

    __hash__ = None  # type: ignore[assignment]
