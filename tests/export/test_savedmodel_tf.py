"""centroid's SavedModel export, loaded and served by real TensorFlow.

Every export is loaded with ``tf.saved_model.load`` (TensorFlow 2's loader,
which reads our TF1-style graph through its v1 path) and, for one case, with
the TF1 session loader; each signature is run on data and compared with a
NumPy brute-force computation of the distances and their argmin.

Skips cleanly when TensorFlow is not importable (CI does not install it).
To run it: a Python with ``tensorflow-cpu==2.15.1 numpy<2 pytest``, then

    pytest tests/export/test_savedmodel_tf.py -v

How the SavedModel is written is decided by ``write_export`` below, in this
order: the Python package ``centroid`` once it offers an export entry point
(see ``_write_with_python_package``), else the binary named by the
environment variable ``CENTROID_EXPORT_WRITER`` (the example
``export_savedmodel`` of crates/centroid), else that example built here with
``cargo``. Without any of them the tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed; the SavedModel interoperability tests need it")

REPO_ROOT = Path(__file__).resolve().parents[2]
COSINE_NORM_FLOOR = 1e-12

# Largest absolute difference seen per case, printed at the end (pytest -s):
# TensorFlow serving our export vs NumPy brute force, or (vs-tf-kmeans/...)
# vs TensorFlow's own KMeans export of the same centres, or
# (vs-centroid-predict/...) vs centroid's predict on the same rows.
MAX_ABS_DIFFS: dict[str, tuple[float, float]] = {}  # case -> (difference, largest |distance|)


# --------------------------------------------------------------------------
# Writing an export


def _write_with_python_package(out_dir, centres, metric, dtype, features, as_text):
    """Hook for the Python API: return True once it wrote the export.

    The lead switches this to centroid's Python export when the package
    exists; until then it declines and the Rust example writes the model.
    """
    return False


@pytest.fixture(scope="session")
def example_writer():
    """Path of a binary that runs crates/centroid/examples/export_savedmodel.rs."""
    from_env = os.environ.get("CENTROID_EXPORT_WRITER")
    if from_env:
        if not Path(from_env).is_file():
            pytest.fail(f"CENTROID_EXPORT_WRITER={from_env} is not a file")
        return from_env
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("no SavedModel writer: set CENTROID_EXPORT_WRITER or put cargo on PATH")
    build = subprocess.run(
        [cargo, "build", "-q", "-p", "centroid", "--example", "export_savedmodel", "--message-format=json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        pytest.fail(f"cargo could not build the export example:\n{build.stderr}")
    for line in build.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("target", {}).get("name") == "export_savedmodel":
            if message.get("executable"):
                return message["executable"]
    pytest.fail("cargo built the export example but did not report its executable")


def write_export(writer, out_dir: Path, centres: np.ndarray, metric: str, dtype: str, features, as_text=False):
    """Writes a SavedModel for `centres` into `out_dir` (which must not exist)."""
    if _write_with_python_package(out_dir, centres, metric, dtype, features, as_text):
        return
    _run_example(writer, out_dir, centres, metric, dtype, features, as_text, [])


def export_and_predict(writer, out_dir: Path, centres, metric, dtype, features, x):
    """Writes the export and returns what centroid's predict computes on `x`
    (its kernels, run by the example): (all_distances, cluster_index)."""
    data_file = out_dir.parent / (out_dir.name + ".data.f64")
    np.ascontiguousarray(x, dtype="<f8").tofile(data_file)
    prefix = out_dir.parent / (out_dir.name + ".predict")
    _run_example(writer, out_dir, centres, metric, dtype, features, False, ["--predict", str(data_file), str(prefix)])
    distances = np.fromfile(f"{prefix}.distances.f64", dtype="<f8").reshape(len(x), len(centres))
    index = np.fromfile(f"{prefix}.index.i64", dtype="<i8")
    return distances, index


def _run_example(writer, out_dir, centres, metric, dtype, features, as_text, extra):
    centres_file = out_dir.parent / (out_dir.name + ".centres.f64")
    np.ascontiguousarray(centres, dtype="<f8").tofile(centres_file)
    spec = ",".join(f"{name}:{width}" for name, width in features)
    args = [writer, str(out_dir), metric, dtype, spec, str(centres_file), str(len(centres))]
    if as_text:
        args.append("--text")
    result = subprocess.run(args + extra, capture_output=True, text=True)
    assert result.returncode == 0, f"export failed: {result.stderr}"


# --------------------------------------------------------------------------
# The brute-force reference, in float64 on the values the model sees


def reference_distances(x: np.ndarray, centres: np.ndarray, metric: str) -> np.ndarray:
    x = x.astype(np.float64)
    c = centres.astype(np.float64)
    if metric == "squared_euclidean":
        # The direct form, sum of squared differences: a different computation
        # from the graph's ||x||^2 - 2x.c + ||c||^2.
        return ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
    x_hat = x / np.maximum(np.sqrt((x * x).sum(axis=1, keepdims=True)), COSINE_NORM_FLOOR)
    c_hat = c / np.maximum(np.sqrt((c * c).sum(axis=1, keepdims=True)), COSINE_NORM_FLOOR)
    out = np.empty((len(x), len(c)))
    for i in range(len(x)):
        for j in range(len(c)):
            out[i, j] = 1.0 - sum(float(a) * float(b) for a, b in zip(x_hat[i], c_hat[j]))
    return out


def check_cluster_index(got: np.ndarray, expected_distances: np.ndarray, tol: float):
    """The index must be the reference's argmin (lowest on ties); where two
    centres are within rounding of each other either is accepted, provided
    it is within `tol` of the minimum."""
    assert got.dtype == np.int64
    want = expected_distances.argmin(axis=1)
    best = expected_distances.min(axis=1)
    chosen = expected_distances[np.arange(len(got)), got]
    if expected_distances.shape[1] > 1:
        near_tie = np.sort(expected_distances, axis=1)[:, 1] - best <= tol
    else:
        near_tie = np.zeros(len(got), bool)
    wrong = np.nonzero(chosen - best > tol)[0]
    assert len(wrong) == 0, f"rows {wrong} got a centre that is not the nearest"
    clear = ~near_tie
    np.testing.assert_array_equal(got[clear], want[clear])


def make_case(rng, k: int, d: int, dtype: str):
    centres = rng.normal(size=(k, d)) * 3.0
    x = np.concatenate(
        [
            rng.normal(size=(60, d)) * 3.0,
            centres[:2] + rng.normal(size=(2, d)) * 1e-3,  # right by a centre
            centres,  # on the centres: distance 0, clamped, never negative
            np.zeros((1, d)),  # the zero row (cosine: floored norm)
        ]
    )
    np_dtype = np.float32 if dtype == "float32" else np.float64
    # The model and the reference both see the values rounded to the dtype.
    return centres.astype(np_dtype).astype(np.float64), x.astype(np_dtype)


def split_features(x: np.ndarray, features):
    out, start = {}, 0
    for name, width in features:
        out[name] = tf.constant(x[:, start : start + width])
        start += width
    return out


FEATURE_LAYOUTS = {
    "single": [("x", 5)],
    # Names deliberately not in sorted order: TensorFlow sorts signature
    # inputs by key, the model must still join them in the given order.
    "three": [("zeta", 2), ("alpha", 1), ("mid", 3)],
}


@pytest.mark.parametrize("as_text", [False, True], ids=["pb", "pbtxt"])
@pytest.mark.parametrize("layout", sorted(FEATURE_LAYOUTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("metric", ["squared_euclidean", "cosine"])
def test_signatures_match_numpy(example_writer, tmp_path, metric, dtype, layout, as_text):
    features = FEATURE_LAYOUTS[layout]
    d = sum(w for _, w in features)
    k = 4
    rng = np.random.default_rng([7, d, k, len(metric), len(dtype)])
    centres, x = make_case(rng, k, d, dtype)
    out_dir = tmp_path / "export"
    write_export(example_writer, out_dir, centres, metric, dtype, features, as_text)
    assert (out_dir / ("saved_model.pbtxt" if as_text else "saved_model.pb")).is_file()
    assert not (out_dir / ("saved_model.pb" if as_text else "saved_model.pbtxt")).exists()
    assert (out_dir / "variables").is_dir()

    loaded = tf.saved_model.load(str(out_dir))
    assert set(loaded.signatures.keys()) == {"serving_default", "cluster_index", "all_distances"}
    tf_dtype = tf.float32 if dtype == "float32" else tf.float64
    for key, fn in loaded.signatures.items():
        _, inputs = fn.structured_input_signature
        assert sorted(inputs) == sorted(name for name, _ in features), key
        for name, width in features:
            assert inputs[name].dtype == tf_dtype
            assert inputs[name].shape.as_list() == [None, width]
        assert list(fn.structured_outputs) == ["output"], key

    feeds = split_features(x, features)
    expected = reference_distances(x, centres, metric)
    distances = loaded.signatures["all_distances"](**feeds)["output"].numpy()
    assert distances.shape == (len(x), k)
    assert distances.dtype == (np.float32 if dtype == "float32" else np.float64)
    diff = float(np.abs(distances.astype(np.float64) - expected).max())
    scale = max(1.0, float(np.abs(expected).max()))
    MAX_ABS_DIFFS[f"{metric}/{dtype}/{layout}/{'pbtxt' if as_text else 'pb'}"] = (diff, scale)
    tol = (2e-6 if dtype == "float32" else 1e-13) * scale * 8
    np.testing.assert_allclose(distances, expected, rtol=0, atol=tol)
    if metric == "squared_euclidean":
        assert np.all(distances >= 0)
    # Rows 62..62+k are the centres themselves.
    np.testing.assert_allclose(np.diag(distances[62 : 62 + k]), np.zeros(k), rtol=0, atol=tol)
    # The zero row: squared norm of each centre; under cosine distance 1.
    if metric == "squared_euclidean":
        np.testing.assert_allclose(distances[-1], (centres**2).sum(axis=1), rtol=0, atol=tol)
    else:
        np.testing.assert_allclose(distances[-1], np.ones(k), rtol=0, atol=tol)

    for key in ("serving_default", "cluster_index"):
        index = loaded.signatures[key](**feeds)["output"].numpy()
        assert index.shape == (len(x),)
        check_cluster_index(index, expected, tol)
    # The rows placed right by centres 0 and 1 are assigned to them.
    np.testing.assert_array_equal(index[60:62], [0, 1])
    np.testing.assert_array_equal(index[62 : 62 + k], np.arange(k))

    # The centres travel with the model.
    clusters = loaded.prune([], "clusters:0")().numpy()
    np.testing.assert_array_equal(clusters, centres.astype(clusters.dtype))
    if metric == "cosine":
        normalised = loaded.prune([], "clusters_normalized:0")().numpy()
        want = centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), COSINE_NORM_FLOOR)
        np.testing.assert_allclose(normalised, want, rtol=0, atol=tol)


@pytest.mark.parametrize("metric", ["squared_euclidean", "cosine"])
def test_ties_go_to_the_lowest_index(example_writer, tmp_path, metric):
    # Small integers: every operation is exact, so the ties are exact too.
    if metric == "squared_euclidean":
        centres = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    else:
        centres = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0], [-1.0, 0.0]])
    x = np.array([[1.0, 0.0], [2.0, 0.0], [1.0, 1.0], [0.0, 5.0], [3.0, 3.0]], dtype=np.float32)
    out_dir = tmp_path / "export"
    write_export(example_writer, out_dir, centres, metric, "float32", [("x", 2)])
    loaded = tf.saved_model.load(str(out_dir))
    index = loaded.signatures["serving_default"](x=tf.constant(x))["output"].numpy()
    if metric == "squared_euclidean":
        # [1,0]: 0 and 1 tie -> 0; [2,0]: 1 and 2 tie -> 1; [1,1]: 0,1,2,3 tie -> 0.
        np.testing.assert_array_equal(index, [0, 1, 0, 3, 1])
    else:
        # [0,5]: centres 1 and 2 point the same way -> 1; [1,1] and [3,3]: 0,1,2 tie within rounding.
        assert index[0] == 0 and index[1] == 0 and index[3] == 1
        assert index[2] in (0, 1) and index[4] in (0, 1)


def test_empty_batch_and_wrong_width(example_writer, tmp_path):
    centres = np.arange(6, dtype=np.float64).reshape(2, 3)
    out_dir = tmp_path / "export"
    write_export(example_writer, out_dir, centres, "squared_euclidean", "float64", [("x", 3)])
    loaded = tf.saved_model.load(str(out_dir))
    empty = loaded.signatures["all_distances"](x=tf.zeros([0, 3], tf.float64))["output"]
    assert empty.shape == (0, 2)
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        loaded.signatures["all_distances"](x=tf.zeros([2, 4], tf.float64))


def test_tf1_session_loader_serves_the_export(example_writer, tmp_path):
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(3, 4))
    x = rng.normal(size=(20, 4))
    features = [("b", 3), ("a", 1)]
    out_dir = tmp_path / "export"
    write_export(example_writer, out_dir, centres, "squared_euclidean", "float64", features, as_text=True)
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as sess:
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(out_dir))
        signature = meta_graph.signature_def["all_distances"]
        assert signature.method_name == "tensorflow/serving/predict"
        feed = {
            signature.inputs["b"].name: x[:, :3],
            signature.inputs["a"].name: x[:, 3:],
        }
        distances = sess.run(signature.outputs["output"].name, feed)
        index = sess.run(meta_graph.signature_def["serving_default"].outputs["output"].name, feed)
    expected = reference_distances(x, centres, "squared_euclidean")
    MAX_ABS_DIFFS["tf1-session/squared_euclidean/float64"] = (float(np.abs(distances - expected).max()), float(np.abs(expected).max()))
    np.testing.assert_allclose(distances, expected, rtol=0, atol=1e-12)
    check_cluster_index(index, expected, 1e-12)


@pytest.mark.parametrize("metric", ["squared_euclidean", "cosine"])
def test_serves_like_tensorflows_own_kmeans_export(example_writer, tmp_path, metric):
    """Trains TensorFlow's KMeans Estimator, exports it with TensorFlow, then
    exports its centres with centroid: both SavedModels must have the same
    signatures and give the same answers on the same data."""
    pytest.importorskip("tensorflow_estimator", reason="tensorflow-estimator is not installed")
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(loc=m, size=(50, 3)) for m in (-4.0, 0.0, 4.0)]).astype(np.float32)
    x[:, 1] *= np.where(np.arange(150) % 2 == 0, 1.0, -1.0)  # spread the directions for cosine

    def input_fn():
        return {"b": tf.constant(x[:, 1:]), "a": tf.constant(x[:, :1])}, None

    km = tf.compat.v1.estimator.experimental.KMeans(
        num_clusters=3, model_dir=str(tmp_path / "tf_model"), distance_metric=metric, use_mini_batch=False,
        config=tf.estimator.RunConfig(tf_random_seed=3),
    )
    km.train(input_fn, steps=5)
    centres = km.cluster_centers()

    def serving_input_receiver_fn():
        feats = {
            "b": tf.compat.v1.placeholder(tf.float32, [None, 2], name="b"),
            "a": tf.compat.v1.placeholder(tf.float32, [None, 1], name="a"),
        }
        return tf.estimator.export.ServingInputReceiver(feats, feats)

    tf_export = km.export_saved_model(str(tmp_path / "tf_export"), serving_input_receiver_fn).decode()
    # TensorFlow's KMeans joins dict features in sorted key order: a, then b.
    ours = tmp_path / "ours"
    write_export(example_writer, ours, centres.astype(np.float64), metric, "float32", [("a", 1), ("b", 2)])

    theirs_loaded = tf.saved_model.load(tf_export)
    ours_loaded = tf.saved_model.load(str(ours))
    assert set(theirs_loaded.signatures.keys()) == set(ours_loaded.signatures.keys())
    queries = np.concatenate([x, rng.normal(scale=5.0, size=(40, 3)).astype(np.float32)])
    feeds = {"a": tf.constant(queries[:, :1]), "b": tf.constant(queries[:, 1:])}
    for key in ("serving_default", "cluster_index", "all_distances"):
        theirs_fn, ours_fn = theirs_loaded.signatures[key], ours_loaded.signatures[key]
        assert list(ours_fn.structured_outputs) == list(theirs_fn.structured_outputs) == ["output"]
        assert sorted(ours_fn.structured_input_signature[1]) == sorted(theirs_fn.structured_input_signature[1])
        theirs_out = theirs_fn(**feeds)["output"].numpy()
        ours_out = ours_fn(**feeds)["output"].numpy()
        assert ours_out.dtype == theirs_out.dtype, key
        if key == "all_distances":
            scale = max(1.0, float(np.abs(theirs_out).max()))
            MAX_ABS_DIFFS[f"vs-tf-kmeans/{metric}"] = (float(np.abs(ours_out - theirs_out).max()), scale)
            np.testing.assert_allclose(ours_out, theirs_out, rtol=0, atol=1e-5 * scale)
        else:
            np.testing.assert_array_equal(ours_out, theirs_out)


@pytest.mark.parametrize("metric", ["squared_euclidean", "cosine"])
def test_text_export_parses_to_the_binary_message(example_writer, tmp_path, metric):
    """protobuf's own text-format parser reads saved_model.pbtxt into exactly
    the message saved_model.pb holds."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 4))
    # A name with a quote, a backslash and non-ASCII: exercises the escaping.
    features = [('we"ird\\name é', 3), ("plain", 1)]
    write_export(example_writer, tmp_path / "pb", centres, metric, "float64", features)
    write_export(example_writer, tmp_path / "txt", centres, metric, "float64", features, as_text=True)
    binary = saved_model_pb2.SavedModel.FromString((tmp_path / "pb" / "saved_model.pb").read_bytes())
    text = text_format.Parse((tmp_path / "txt" / "saved_model.pbtxt").read_text(encoding="ascii"), saved_model_pb2.SavedModel())
    assert text == binary
    assert sorted(binary.meta_graphs[0].signature_def["serving_default"].inputs) == sorted(n for n, _ in features)
    # Nothing in our bytes was unknown to TensorFlow's schema (a wrong field
    # number or wire type would be kept as an unknown field, not rejected).
    assert not _has_unknown_fields(binary)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("metric", ["squared_euclidean", "cosine"])
def test_serving_matches_centroid_predict(example_writer, tmp_path, metric, dtype):
    """The served signatures against centroid's own predict computation on
    the same centres and rows (the kernels predict calls)."""
    rng = np.random.default_rng(21)
    k, features = 6, [("left", 3), ("right", 4)]
    centres, x = make_case(rng, k, 7, dtype)
    if metric == "cosine":
        # Rows whose squared norm underflows or overflows float32: predict
        # takes norms in float64, so must the graph.
        extreme = rng.normal(size=(4, 7)) * np.array([[1e-25], [1e-30], [1e20], [1e25]])
        x = np.concatenate([x, extreme.astype(x.dtype)])
    predicted_distances, predicted_index = export_and_predict(
        example_writer, tmp_path / "export", centres, metric, dtype, features, x.astype(np.float64)
    )
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    feeds = split_features(x, features)
    served = loaded.signatures["all_distances"](**feeds)["output"].numpy().astype(np.float64)
    index = loaded.signatures["serving_default"](**feeds)["output"].numpy()
    diff = float(np.abs(served - predicted_distances).max())
    scale = max(1.0, float(np.abs(predicted_distances).max()))
    MAX_ABS_DIFFS[f"vs-centroid-predict/{metric}/{dtype}"] = (diff, scale)
    tol = (2e-6 if dtype == "float32" else 1e-13) * scale * 8
    np.testing.assert_allclose(served, predicted_distances, rtol=0, atol=tol)
    # Same index wherever the two nearest centres are not within rounding.
    check_cluster_index(index, predicted_distances, tol)
    margin = np.sort(predicted_distances, axis=1)[:, 1] - predicted_distances.min(axis=1)
    np.testing.assert_array_equal(index[margin > tol], predicted_index[margin > tol])


def _has_unknown_fields(message) -> bool:
    from google.protobuf import unknown_fields

    if len(unknown_fields.UnknownFieldSet(message)):
        return True
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            values = value.values() if field.message_type.fields_by_name["value"].message_type else []
        elif field.label == field.LABEL_REPEATED:
            values = value
        else:
            values = [value]
        if any(_has_unknown_fields(v) for v in values):
            return True
    return False


def test_zz_report_max_abs_differences():
    """Prints the figures gathered above (run with -s to see them)."""
    for case, (diff, scale) in sorted(MAX_ABS_DIFFS.items()):
        print(f"max abs difference {case}: {diff:.3e} (largest distance {scale:.3g})")
