"""export_savedmodel through the Python API (files on disk; serving with
real TensorFlow is in test_tensorflow.py)."""

import os
import re

import numpy as np
import pytest

from centroid import KMeansClustering

X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)


@pytest.fixture
def trained(tmp_path):
    est = KMeansClustering(3, model_dir=str(tmp_path / "model"))
    est.train(lambda: X, steps=2)
    return est


def test_export_writes_a_timestamped_saved_model(tmp_path, trained):
    before = int(__import__("time").time())
    path = trained.export_savedmodel(str(tmp_path / "export"), {"x": 3})
    assert os.path.dirname(path) == str(tmp_path / "export")
    assert int(os.path.basename(path)) >= before
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert os.path.isdir(os.path.join(path, "variables"))


def test_export_as_text_with_assets_and_feature_dict(tmp_path, trained):
    asset = tmp_path / "vocab.txt"
    asset.write_text("hello")
    path = trained.export_saved_model(
        tmp_path / "export",
        serving_input_receiver_fn=lambda: {"b": 1, "a": (None, 2)},
        assets_extra={"extra/vocab.txt": asset},
        as_text=True,
    )
    text = open(os.path.join(path, "saved_model.pbtxt")).read()
    assert "serving_default" in text and "all_distances" in text and "cluster_index" in text
    # One serving input per feature, with its width.
    for name, width in (("a", 2), ("b", 1)):
        m = re.search(r'key: "%s"\s*value \{\s*name: "features/%s:0".*?size: -1\s*\}\s*dim \{\s*size: (\d+)' % (name, name), text, re.S)
        assert m is not None and int(m.group(1)) == width
    assert open(os.path.join(path, "assets.extra", "extra", "vocab.txt")).read() == "hello"


def test_export_errors(tmp_path, trained):
    with pytest.raises(ValueError, match="sum to 2"):
        trained.export_savedmodel(str(tmp_path / "e"), serving_input_receiver_fn={"x": 2})
    with pytest.raises(FileNotFoundError):
        trained.export_savedmodel(str(tmp_path / "e"), {"x": 3}, assets_extra={"a": str(tmp_path / "missing")})
    # As TensorFlow: the serving input is required.
    with pytest.raises(ValueError, match="input_receiver_fn must be defined"):
        trained.export_savedmodel(str(tmp_path / "e"), None)
    fresh = KMeansClustering(3, model_dir=str(tmp_path / "fresh"))
    # ValueError as TensorFlow; still a RuntimeError for older callers.
    with pytest.raises(ValueError, match="no checkpoint"):
        fresh.export_savedmodel(str(tmp_path / "e"), {"x": 3})
    with pytest.raises(RuntimeError, match="no checkpoint"):
        fresh.export_savedmodel(str(tmp_path / "e"), {"x": 3})
