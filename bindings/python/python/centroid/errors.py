"""The exception classes centroid raises where TensorFlow's Estimator raises a
built-in one. Each derives from TensorFlow's class and from the class earlier
centroid versions raised, so `except ValueError` (TensorFlow scripts) and
`except RuntimeError` (older centroid callers) both catch them."""

from __future__ import annotations

__all__ = ["NotTrainedError", "CheckpointNotFoundError", "ArgumentTypeError"]


class NotTrainedError(ValueError, RuntimeError):
    """The model has no checkpoint yet: train it first. TensorFlow raises
    `ValueError` here."""


class CheckpointNotFoundError(ValueError, FileNotFoundError):
    """`checkpoint_path` names a checkpoint that does not exist. TensorFlow
    raises `ValueError` here."""


class ArgumentTypeError(TypeError, ValueError):
    """An argument has the wrong type (a non-integer `num_clusters`, an
    `input_fn` that is not callable). TensorFlow raises `TypeError` here."""
