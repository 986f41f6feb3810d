"""Serving inputs of an exported SavedModel.

`export_savedmodel` takes what TensorFlow's takes: a
`serving_input_receiver_fn` returning a receiver whose `features` are
placeholders, such as `tf.estimator.export.build_raw_serving_input_receiver_fn`
builds. TensorFlow 2 refuses to build placeholders outside a graph, so when
TensorFlow is loaded the function is called inside a fresh `tf.Graph` (the
caller does not enter one). Only the features' names and widths are read:
the exported graph is written by centroid, not traced from TensorFlow.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, List, Optional, Tuple

import numpy as np

__all__ = ["serving_features"]


def _width(spec: Any, name: str) -> int:
    """The width of a serving feature given as an int, a shape, or anything
    with a `shape` (a placeholder, an array, a tf.TensorSpec)."""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return int(spec)
    shape = getattr(spec, "shape", spec)
    try:
        dims = list(shape)
    except (TypeError, ValueError):
        raise ValueError(f"serving feature {name!r}: cannot tell its width from {spec!r}") from None
    if len(dims) <= 1:
        return 1
    if len(dims) > 2:
        raise ValueError(f"serving feature {name!r} must be [batch] or [batch, width], got shape {dims}")
    last = dims[-1]
    last = getattr(last, "value", last)  # TF1 Dimension
    if last is None:
        raise ValueError(f"serving feature {name!r} has an unknown width")
    return int(last)


def _call_receiver_fn(fn: Any) -> Any:
    """Calls a serving_input_receiver_fn, inside a TensorFlow graph when
    TensorFlow is loaded (placeholders need one)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return fn()
    with tf.Graph().as_default():
        return fn()


def serving_features(spec: Any, d: int, feature_columns: Optional[List[str]]) -> Tuple[List[Any], bool]:
    """The serving input as (name, width) pairs, joined left to right as
    training joined the features, and whether clients send serialized
    tf.Example protos that the graph parses into those features. `spec` may be a dict of name -> width or
    shape, a list of (name, width) pairs, an object with a `features` dict
    (a ServingInputReceiver) or a single `features` tensor (whole rows), or
    a function returning one of those."""
    if callable(spec) and not isinstance(spec, Mapping):
        spec = _call_receiver_fn(spec)
    if spec is None:
        raise ValueError("serving_input_receiver_fn returned None")
    features = getattr(spec, "features", spec)
    receiver_tensors = getattr(spec, "receiver_tensors", None)
    parse_examples = False
    if isinstance(receiver_tensors, Mapping) and isinstance(features, Mapping):
        if set(receiver_tensors) != set(features):
            # Clients send something other than the features themselves:
            # serialized tf.Example protos, which the graph must parse.
            _check_parsing(receiver_tensors, features)
            parse_examples = True
    return _named_widths(features, feature_columns), parse_examples


def _check_parsing(receiver_tensors: Mapping, features: Mapping) -> None:
    """Accepts what `build_parsing_serving_input_receiver_fn` builds: one
    string input, parsed by one ParseExample op into float32 features of
    fixed width with no default; refuses any other transformation (the
    exported graph is written by centroid, not traced)."""

    def refuse(why: str) -> ValueError:
        return ValueError(
            f"cannot export this serving_input_receiver_fn: {why}; centroid exports raw feature inputs or "
            "build_parsing_serving_input_receiver_fn({name: tf.io.FixedLenFeature([width], tf.float32)})"
        )

    if len(receiver_tensors) != 1:
        raise refuse(f"its receiver tensors {sorted(receiver_tensors)} are not one string input")
    (serialized,) = receiver_tensors.values()
    if "string" not in str(getattr(serialized, "dtype", "")):
        raise refuse("its receiver tensor is not a string (serialized tf.Example) input")
    for name, t in features.items():
        op = getattr(t, "op", None)
        if op is None or getattr(op, "type", "") != "ParseExampleV2":
            raise refuse(f"feature {name!r} is not parsed directly by a ParseExampleV2 op")
        if "float32" not in str(getattr(t, "dtype", "")):
            raise refuse(f"feature {name!r} is {t.dtype}, not float32")
        # ParseExampleV2's inputs: serialized, names, sparse_keys, dense_keys,
        # ragged_keys, then one default per dense feature (empty: required).
        if any(d.shape.num_elements() for d in list(op.inputs)[5:]):
            raise refuse("a feature has a default value (only required features are exported)")


def _named_widths(features: Any, feature_columns: Optional[List[str]]) -> List[Any]:
    if isinstance(features, Mapping):
        if feature_columns is not None:
            missing = [k for k in feature_columns if k not in features]
            if missing:
                raise ValueError(f"the serving input lacks the feature columns {missing}")
            names = list(feature_columns)
        else:
            names = sorted(features)
        return [(str(k), _width(features[k], str(k))) for k in names]
    if hasattr(features, "shape"):  # one tensor: whole rows
        return [("x", _width(features, "x"))]
    try:
        return [(str(name), _width(w, str(name))) for name, w in features]
    except (TypeError, ValueError) as e:
        raise ValueError(
            "serving_input_receiver_fn must give a dict of name -> width, a list of (name, width) "
            f"pairs, or a receiver with a features dict ({e})"
        ) from None
