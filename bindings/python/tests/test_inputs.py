"""What input_fn may return, numpy_input_fn, and RunConfig."""

import numpy as np
import pytest

import centroid
from centroid import KMeansClustering, RunConfig
from centroid.inputs import numpy_input_fn

POINTS = np.array([[0, 0], [0, 1], [10, 10], [10, 11], [20, 0], [21, 0]], dtype=np.float32)
# Full batch, explicit centres: one Lloyd step from these lands on the pair means.
INIT = np.array([[0, 0], [10, 10], [20, 0]], dtype=np.float32)
AFTER_ONE_STEP = np.array([[0, 0.5], [10, 10.5], [20.5, 0]], dtype=np.float32)


def _est(tmp_path, **kw):
    kw.setdefault("initial_clusters", INIT)
    return KMeansClustering(None, model_dir=str(tmp_path), use_mini_batch=False, **kw)


def test_array(tmp_path):
    est = _est(tmp_path)
    est.train(lambda: POINTS, steps=1)
    np.testing.assert_array_equal(est.cluster_centers(), AFTER_ONE_STEP)


def test_pair_with_none_labels_and_lists(tmp_path):
    est = _est(tmp_path)
    est.train(lambda: (POINTS.tolist(), None), steps=1)
    np.testing.assert_array_equal(est.cluster_centers(), AFTER_ONE_STEP)


def test_dict_is_joined_in_sorted_key_order(tmp_path):
    # Keys "b" then "a": sorted order puts "a" (the x coordinate) first.
    est = _est(tmp_path)
    est.train(lambda: {"b": POINTS[:, 1], "a": POINTS[:, 0:1]}, steps=1)
    np.testing.assert_array_equal(est.cluster_centers(), AFTER_ONE_STEP)


def test_dict_with_feature_columns_uses_only_those_in_order(tmp_path):
    class NumericColumn:  # shaped like tf.feature_column.numeric_column
        def __init__(self, key):
            self.key = key

    est = _est(tmp_path, feature_columns=["y", NumericColumn("x")], initial_clusters=INIT[:, ::-1].copy())
    est.train(lambda: {"x": POINTS[:, 0], "y": POINTS[:, 1], "ignored": np.full(6, np.nan)}, steps=1)
    np.testing.assert_array_equal(est.cluster_centers(), AFTER_ONE_STEP[:, ::-1])
    with pytest.raises(ValueError, match="feature column \"y\" is not in the input"):
        est.train(lambda: {"x": POINTS[:, 0]}, steps=1)


def test_generator_gives_one_batch_per_step_until_it_ends(tmp_path):
    est = _est(tmp_path)
    batches = [POINTS, POINTS[::-1].copy(), POINTS]

    def input_fn():
        return (b for b in batches)

    est.train(input_fn)  # no steps: runs until the input ends
    assert est.get_variable_value("global_step") == 3


def test_labels_are_refused(tmp_path):
    est = _est(tmp_path)
    with pytest.raises(ValueError, match="KMeansClustering does not take labels"):
        est.train(lambda: (POINTS, np.zeros(6)), steps=1)
    with pytest.raises(ValueError, match="KMeansClustering does not take labels"):
        est.train(lambda: iter([(POINTS, np.zeros(6))]), steps=1)
    # numpy_input_fn yields (features, labels) as TensorFlow's; training refuses them.
    with pytest.raises(ValueError, match="does not take labels"):
        est.train(numpy_input_fn(POINTS, y=np.zeros(6), shuffle=False), steps=1)


def test_array_like_objects_and_conversions(tmp_path):
    class Tensorish:  # anything with __array__ counts (e.g. an eager tf.Tensor)
        def __init__(self, a):
            self._a = a

        def __array__(self, dtype=None, copy=None):
            return self._a if dtype is None else self._a.astype(dtype)

    for value in (
        Tensorish(POINTS),
        POINTS.astype(np.int64),  # converted to float32
        np.asfortranarray(POINTS),  # made C-contiguous
        POINTS.astype(np.float64)[:, :],
    ):
        est = _est(tmp_path / str(id(value)))
        est.train(lambda v=value: v, steps=1)
        np.testing.assert_allclose(est.cluster_centers(), AFTER_ONE_STEP)


def test_float64_data_trains_float64_centres(tmp_path):
    est = _est(tmp_path, initial_clusters=INIT.astype(np.float64))
    est.train(lambda: POINTS.astype(np.float64), steps=1)
    assert est.cluster_centers().dtype == np.float64
    est = _est(tmp_path / "f32")
    est.train(lambda: POINTS, steps=1)
    assert est.cluster_centers().dtype == np.float32


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([[0, 0], [np.nan, 1], [2, 2]], np.float32), "row 1, column 0 is NaN"),
        (np.array([[0, 0], [1, np.inf], [2, 2]], np.float32), "row 1, column 1 is infinite"),
        (np.zeros((0, 2), np.float32), "empty"),
        (np.array([["a", "b"]]), "not numeric"),
        ([[0, 1], [2]], "ragged"),
        (np.zeros(5, np.float32), "2-D"),
        ("text", "not numeric"),
    ],
)
def test_bad_data_is_a_value_error_naming_the_problem(tmp_path, bad, message):
    est = KMeansClustering(2, model_dir=str(tmp_path))
    with pytest.raises(ValueError, match=message):
        est.train(lambda: bad, steps=1)
    assert est.latest_checkpoint() is None


def test_a_bad_step_leaves_the_model_as_it_was(tmp_path):
    est = _est(tmp_path)
    est.train(lambda: POINTS, steps=1)
    before = est.cluster_centers()
    bad = POINTS.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="input batch 1: row 3, column 1 is NaN"):
        est.train(lambda: iter([POINTS, bad]), steps=5)
    np.testing.assert_array_equal(est.cluster_centers(), before)
    assert est.get_variable_value("global_step") == 1


def test_python_exceptions_from_input_fn_come_back_unchanged(tmp_path):
    class MyError(Exception):
        pass

    def broken():
        raise MyError("from input_fn")

    def gen():
        yield POINTS
        raise MyError("from the generator")

    est = _est(tmp_path)
    with pytest.raises(MyError, match="from input_fn"):
        est.train(broken, steps=1)
    with pytest.raises(MyError, match="from the generator"):
        est.train(gen, steps=5)
    with pytest.raises(ValueError, match="input_fn must be callable"):
        est.train(POINTS, steps=1)


def test_tf_data_like_iterables_are_batch_sequences(tmp_path):
    class Dataset:  # iterable, not an iterator, no __array__
        def __iter__(self):
            return iter([{"a": POINTS[:, 0], "b": POINTS[:, 1]}] * 2)

    est = _est(tmp_path)
    est.train(lambda: Dataset())
    assert est.get_variable_value("global_step") == 2


# ------------------------------------------------------------ numpy_input_fn


def test_numpy_input_fn_batches_epochs_and_order():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    # As TensorFlow's: batches run across the epoch boundary.
    batches = list(numpy_input_fn(x, batch_size=4, num_epochs=2, shuffle=False)())
    assert [len(b) for b in batches] == [4, 4, 4, 4, 4]
    np.testing.assert_array_equal(np.concatenate(batches), np.concatenate([x, x]))
    batches = list(numpy_input_fn(x, batch_size=3, num_epochs=1, shuffle=False)())
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    shuffled = list(numpy_input_fn(x, batch_size=3, num_epochs=1, shuffle=True, seed=1)())
    again = list(numpy_input_fn(x, batch_size=3, num_epochs=1, shuffle=True, seed=1)())
    joined = np.concatenate(shuffled)
    assert sorted(joined[:, 0].tolist()) == x[:, 0].tolist()
    assert not np.array_equal(joined, x)
    for a, b in zip(shuffled, again):
        np.testing.assert_array_equal(a, b)
    forever = numpy_input_fn(x, batch_size=4, num_epochs=None, shuffle=False)()
    assert len([next(forever) for _ in range(50)]) == 50


def test_numpy_input_fn_dicts_and_errors(tmp_path):
    fn = numpy_input_fn({"a": POINTS[:, 0], "b": POINTS[:, 1]}, batch_size=6, shuffle=False)
    (batch,) = list(fn())
    assert set(batch) == {"a", "b"}
    est = _est(tmp_path)
    est.train(fn, steps=1)
    np.testing.assert_array_equal(est.cluster_centers(), AFTER_ONE_STEP)
    with pytest.raises(ValueError, match="different lengths"):
        numpy_input_fn({"a": np.zeros(3), "b": np.zeros(4)}, shuffle=False)
    with pytest.raises(ValueError, match="batch_size"):
        numpy_input_fn(POINTS, batch_size=0, shuffle=False)
    with pytest.raises(ValueError, match="num_epochs"):
        numpy_input_fn(POINTS, num_epochs=0, shuffle=False)
    # As TensorFlow: shuffle must be given, as a bool.
    with pytest.raises(ValueError, match="shuffle must be provided"):
        numpy_input_fn(POINTS)
    with pytest.raises(ValueError, match="shuffle must be provided"):
        numpy_input_fn(POINTS, shuffle=1)


def test_numpy_input_fn_mini_batch_training(tmp_path, blobs):
    est = KMeansClustering(5, model_dir=str(tmp_path), initial_clusters="kmeans_plus_plus", random_seed=24)
    est.train(numpy_input_fn(blobs.points, batch_size=50, num_epochs=10, shuffle=True, seed=0))
    # Initialisation calls input_fn once for itself; training starts afresh:
    # 10 epochs of 20 batches.
    assert est.get_variable_value("global_step") == 200
    assert abs(est.score(lambda: blobs.points) - blobs.true_score) <= 0.05 * blobs.true_score


# --------------------------------------------------------------- RunConfig


def test_run_config_defaults_and_validation(tmp_path):
    c = RunConfig()
    assert (c.model_dir, c.random_seed, c.save_checkpoints_steps, c.save_checkpoints_secs) == (None, None, None, 600)
    assert (c.keep_checkpoint_max, c.log_step_count_steps, c.num_threads) == (5, 100, None)
    c = RunConfig(save_checkpoints_steps=10)
    assert c.save_checkpoints_secs is None
    with pytest.raises(ValueError, match="cannot both be set"):
        RunConfig(save_checkpoints_steps=10, save_checkpoints_secs=5)
    with pytest.raises(ValueError):
        RunConfig(num_threads=0)
    assert RunConfig(model_dir=tmp_path).model_dir == str(tmp_path)
    assert c.replace(keep_checkpoint_max=1).keep_checkpoint_max == 1
    with pytest.raises(ValueError):
        KMeansClustering(2, config={"model_dir": "x"})


def test_run_config_checkpoint_schedule_and_retention(tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32)
    cfg = RunConfig(save_checkpoints_steps=2, keep_checkpoint_max=2)
    est = KMeansClustering(2, model_dir=str(tmp_path), config=cfg)
    est.train(lambda: x, steps=7)
    kept = sorted(p.name for p in tmp_path.glob("model.ckpt-*"))
    assert kept == ["model.ckpt-6.safetensors", "model.ckpt-7.safetensors"]


def test_config_random_seed_overrides_random_seed(tmp_path, blobs):
    def centres(seed, cfg_seed, d):
        est = KMeansClustering(
            5, model_dir=str(tmp_path / d), random_seed=seed, config=RunConfig(random_seed=cfg_seed),
            use_mini_batch=True, mini_batch_steps_per_iteration=100,
        )
        est.train(lambda: blobs.points, steps=1)
        return est.cluster_centers()

    np.testing.assert_array_equal(centres(1, 9, "a"), centres(2, 9, "b"))
    assert not np.array_equal(centres(1, 9, "c"), centres(1, 10, "d"))
