"""KMeansClustering through the Python API: the reference Estimator's
acceptance cases, constants, methods and properties."""

import os

import numpy as np
import pytest

import centroid
from centroid import KMeansClustering, RunConfig
from conftest import make_random_points, random_batches


def normalize(x):
    return x / np.sqrt(np.sum(x * x, axis=-1, keepdims=True))


# ----------------------------------------------------------------- constants


def test_constants_have_the_reference_values():
    expected = {
        "SQUARED_EUCLIDEAN_DISTANCE": "squared_euclidean",
        "COSINE_DISTANCE": "cosine",
        "RANDOM_INIT": "random",
        "KMEANS_PLUS_PLUS_INIT": "kmeans_plus_plus",
        "SCORE": "score",
        "CLUSTER_INDEX": "cluster_index",
        "ALL_DISTANCES": "all_distances",
    }
    for name, value in expected.items():
        assert getattr(KMeansClustering, name) == value
        assert getattr(centroid, name) == value


def test_constructor_defaults_match_the_spec():
    import inspect

    sig = inspect.signature(KMeansClustering.__init__)
    defaults = {k: v.default for k, v in sig.parameters.items() if k != "self"}
    assert list(defaults) == [
        "num_clusters", "model_dir", "initial_clusters", "distance_metric", "random_seed",
        "use_mini_batch", "mini_batch_steps_per_iteration", "kmeans_plus_plus_num_retries",
        "relative_tolerance", "config", "feature_columns",
    ]
    assert defaults["initial_clusters"] == "random"
    assert defaults["distance_metric"] == "squared_euclidean"
    assert defaults["random_seed"] == 0
    assert defaults["use_mini_batch"] is True
    assert defaults["mini_batch_steps_per_iteration"] == 1
    assert defaults["kmeans_plus_plus_num_retries"] == 2
    assert defaults["relative_tolerance"] is None


# ------------------------------------------------ acceptance: five 2-D blobs


def _kmeans(tmp_path, use_mini_batch, s=1, relative_tolerance=None):
    return KMeansClustering(
        5,
        model_dir=str(tmp_path / "model"),
        initial_clusters=KMeansClustering.KMEANS_PLUS_PLUS_INIT,
        use_mini_batch=use_mini_batch,
        mini_batch_steps_per_iteration=s,
        random_seed=24,
        relative_tolerance=relative_tolerance,
    )


MODES = [
    pytest.param(False, 1, 1000, id="full-batch"),
    pytest.param(True, 1, 50, id="mini-batch"),
    pytest.param(True, 20, 50, id="async-full-batch"),
]


def _train_input(blobs, batch_size):
    if batch_size == len(blobs.points):
        return lambda: blobs.points
    return random_batches(blobs.points, batch_size)


@pytest.mark.parametrize("mini, s, batch_size", MODES)
def test_fit_reaches_the_true_score(tmp_path, blobs, mini, s, batch_size):
    est = _kmeans(tmp_path, mini, s)
    est.train(_train_input(blobs, batch_size), steps=1)
    assert est.cluster_centers().shape == (5, 2)
    score1 = est.score(lambda: blobs.points)
    steps = 10 * len(blobs.points) // batch_size
    assert est.train(_train_input(blobs, batch_size), steps=steps) is est
    score2 = est.score(lambda: blobs.points)
    assert score1 >= score2  # full batch may converge in its first step
    assert abs(score2 - blobs.true_score) <= 0.05 * blobs.true_score
    assert est.get_variable_value("global_step") == 1 + steps


def test_full_batch_with_relative_tolerance_is_within_one_percent(tmp_path, blobs):
    est = _kmeans(tmp_path, False, relative_tolerance=1e-4)
    est.train(lambda: blobs.points, max_steps=100)
    score = est.score(lambda: blobs.points)
    assert abs(score - blobs.true_score) <= 0.01 * blobs.true_score
    # The tolerance stopped it well before max_steps.
    assert est.get_variable_value("global_step") < 100


@pytest.mark.parametrize("mini, s, batch_size", MODES)
def test_fresh_points_get_their_true_cluster(tmp_path, blobs, mini, s, batch_size):
    est = _kmeans(tmp_path, mini, s)
    est.train(_train_input(blobs, batch_size), steps=10 * len(blobs.points) // batch_size)
    clusters = est.cluster_centers()
    for n in (10, 1):
        points, true_assignments, offsets = make_random_points(blobs.rng, clusters, n)
        assignments = list(est.predict_cluster_index(lambda: points))
        assert [int(a) for a in assignments] == list(true_assignments)
        assert np.isclose(est.score(lambda: points), np.sum(offsets), rtol=0.05, atol=10)
        transform = np.array(list(est.transform(lambda: points)))
        true_transform = np.maximum(
            0,
            np.sum(points.astype(np.float64) ** 2, axis=1, keepdims=True)
            - 2 * points.astype(np.float64) @ clusters.T.astype(np.float64)
            + np.sum(clusters.astype(np.float64) ** 2, axis=1)[None, :],
        )
        np.testing.assert_allclose(transform, true_transform, rtol=1e-3, atol=1e-2)


# ------------------------------------------------------------ cosine cases


COSINE_POINTS = np.array(
    [[2.5, 0.1], [2, 0.2], [3, 0.1], [4, 0.2], [0.1, 2.5], [0.2, 2], [0.1, 3], [0.2, 4]], dtype=np.float32
)


def _cosine_truth(points, groups):
    n = normalize(points.astype(np.float64))
    centers = np.array([normalize(np.mean(n[g], axis=0)) for g in groups])
    assignments = np.concatenate([[j] * len(g) for j, g in enumerate(groups)])
    score = len(points) - np.sum(n * centers[assignments])
    return centers, assignments, score


COSINE_MODES = [
    pytest.param(False, 1, 8, id="full-batch"),
    pytest.param(True, 1, 2, id="mini-batch"),
    pytest.param(True, 4, 2, id="async-full-batch"),
]


def _cosine_input(points, batch_size, seed=0):
    if batch_size == len(points):
        return lambda: points
    return random_batches(points, batch_size, seed)


@pytest.mark.parametrize("mini, s, batch_size", COSINE_MODES)
def test_cosine_eight_points(tmp_path, mini, s, batch_size):
    true_centers, true_assignments, true_score = _cosine_truth(COSINE_POINTS, [range(0, 4), range(4, 8)])
    est = KMeansClustering(
        2,
        model_dir=str(tmp_path),
        initial_clusters=KMeansClustering.RANDOM_INIT,
        distance_metric=KMeansClustering.COSINE_DISTANCE,
        use_mini_batch=mini,
        mini_batch_steps_per_iteration=s,
        config=RunConfig(random_seed=3),
    )
    est.train(_cosine_input(COSINE_POINTS, batch_size), max_steps=10 * 8 // batch_size * 10)
    centers = normalize(est.cluster_centers().astype(np.float64))
    assignments = [int(a) for a in est.predict_cluster_index(lambda: COSINE_POINTS)]
    np.testing.assert_allclose(centers[assignments], true_centers[true_assignments], atol=0.04)
    if not mini:
        np.testing.assert_allclose(centers[assignments], true_centers[true_assignments], atol=1e-4)
        assert est.score(lambda: COSINE_POINTS) == pytest.approx(true_score, abs=1e-2)
    transform = np.array(list(est.transform(lambda: COSINE_POINTS)))
    np.testing.assert_allclose(transform, 1 - normalize(COSINE_POINTS.astype(np.float64)) @ centers.T, atol=1e-3)


PP_POINTS = np.array(
    [[2.5, 3.5], [2.5, 3.5], [-2, 3], [-2, 3], [-3, -3], [-3.1, -3.2], [-2.8, -3.0], [-2.9, -3.1],
     [-3.0, -3.1], [-3.0, -3.1], [-3.2, -3.0], [-3.0, -3.0]],
    dtype=np.float32,
)


@pytest.mark.parametrize("mini, s", [(False, 1), (True, 1), (True, 4)])
def test_cosine_twelve_points_kmeans_plus_plus(tmp_path, mini, s):
    true_centers, true_assignments, true_score = _cosine_truth(PP_POINTS, [range(0, 2), range(2, 4), range(4, 12)])
    est = KMeansClustering(
        3,
        model_dir=str(tmp_path),
        initial_clusters=KMeansClustering.KMEANS_PLUS_PLUS_INIT,
        distance_metric=KMeansClustering.COSINE_DISTANCE,
        use_mini_batch=mini,
        mini_batch_steps_per_iteration=s,
        config=RunConfig(random_seed=3),
    )
    est.train(lambda: (PP_POINTS, None), steps=30)
    centers = normalize(est.cluster_centers().astype(np.float64))
    np.testing.assert_allclose(sorted(centers.tolist()), sorted(true_centers.tolist()), atol=1e-2)
    assignments = [int(a) for a in est.predict_cluster_index(lambda: (PP_POINTS, None))]
    np.testing.assert_allclose(centers[assignments], true_centers[true_assignments], atol=1e-2)
    assert est.score(lambda: (PP_POINTS, None)) == pytest.approx(true_score, abs=1e-2)


# ------------------------------------------------------------ initialisation


def test_random_init_with_batch_size_one_takes_the_first_k_points_in_order(tmp_path):
    points = np.arange(20, dtype=np.float32).reshape(10, 2) * np.array([1, -1], dtype=np.float32)

    def one_row_at_a_time():
        return (points[i : i + 1] for i in range(len(points)))

    # S = 10: the first 10 steps do not change the published centres, so
    # they still show exactly what initialisation chose.
    est = KMeansClustering(
        3, model_dir=str(tmp_path), initial_clusters=KMeansClustering.RANDOM_INIT,
        use_mini_batch=True, mini_batch_steps_per_iteration=10,
    )
    est.train(one_row_at_a_time, steps=1)
    np.testing.assert_array_equal(est.cluster_centers(), points[:3])


def test_kmeans_plus_plus_with_a_small_first_batch_fails_clearly(tmp_path):
    points = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)

    def batches_of_two():
        return (points[i : i + 2] for i in range(0, 20, 2))

    est = KMeansClustering(5, model_dir=str(tmp_path), initial_clusters=KMeansClustering.KMEANS_PLUS_PLUS_INIT)
    with pytest.raises(ValueError, match="at least num_clusters = 5 rows"):
        est.train(batches_of_two, steps=1)
    assert est.latest_checkpoint() is None


def test_explicit_initial_clusters_and_full_batch_match_a_numpy_lloyd(tmp_path, blobs):
    init = blobs.points[:5].astype(np.float64)
    est = KMeansClustering(
        None, model_dir=str(tmp_path), initial_clusters=init, use_mini_batch=False,
    )
    x = blobs.points.astype(np.float64)
    est.train(lambda: x, steps=3)
    centers = init.copy()
    for _ in range(3):
        labels = np.argmin(((x[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
        for j in range(5):
            if np.any(labels == j):
                centers[j] = x[labels == j].mean(axis=0)
    got = est.cluster_centers()
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, centers, rtol=1e-12)


def test_callable_initial_clusters_get_batches_and_k_remaining(tmp_path):
    points = np.arange(12, dtype=np.float32).reshape(6, 2)
    calls = []

    def init(batch, k):
        calls.append((batch.shape, k))
        return batch[:1]

    def two_rows_at_a_time():
        return (points[i : i + 2] for i in range(0, 6, 2))

    est = KMeansClustering(
        3, model_dir=str(tmp_path), initial_clusters=init,
        use_mini_batch=True, mini_batch_steps_per_iteration=10,
    )
    est.train(two_rows_at_a_time, steps=1)
    assert calls == [((2, 2), 3), ((2, 2), 2), ((2, 2), 1)]
    np.testing.assert_array_equal(est.cluster_centers(), points[[0, 2, 4]])


# ---------------------------------------------------------------- methods


def test_evaluate_predict_and_variables(tmp_path, blobs):
    est = _kmeans(tmp_path, False)
    with pytest.raises(RuntimeError, match="no checkpoint"):
        est.cluster_centers()
    with pytest.raises(RuntimeError):
        est.get_variable_names()
    est.train(lambda: blobs.points, steps=5)
    centers = est.cluster_centers()
    assert isinstance(centers, np.ndarray) and centers.dtype == np.float32

    # evaluate: the mean over batches of each batch's summed distance.
    d = ((blobs.points[:, None, :].astype(np.float64) - centers[None].astype(np.float64)) ** 2).sum(-1).min(1)
    halves = lambda: iter([blobs.points[:500], blobs.points[500:]])
    result = est.evaluate(halves)
    assert set(result) == {"score", "loss", "global_step"}
    assert isinstance(result["score"], float) and isinstance(result["loss"], float)
    assert result["global_step"] == 5
    assert result["score"] == pytest.approx((d[:500].sum() + d[500:].sum()) / 2, rel=1e-4)
    assert est.evaluate(halves, steps=1)["score"] == pytest.approx(d[:500].sum(), rel=1e-4)
    assert os.path.isdir(os.path.join(est.model_dir, "eval_holdout")) is False
    est.evaluate(halves, name="holdout")
    assert os.path.isdir(os.path.join(est.model_dir, "eval_holdout"))
    s = est.score(lambda: blobs.points)
    assert isinstance(s, float) and s == pytest.approx(d.sum(), rel=1e-4)

    # predict: one dict per row, numpy values.
    preds = list(est.predict(lambda: blobs.points[:7]))
    assert len(preds) == 7
    for row, p in zip(blobs.points[:7], preds):
        assert set(p) == {"cluster_index", "all_distances"}
        assert isinstance(p["cluster_index"], np.integer)
        dist = ((row.astype(np.float64) - centers) ** 2).sum(1)
        np.testing.assert_allclose(p["all_distances"], dist, rtol=1e-4, atol=1e-2)
        assert p["cluster_index"] == np.argmin(dist)
    only = list(est.predict(lambda: blobs.points[:3], predict_keys=["cluster_index"]))
    assert all(set(p) == {"cluster_index"} for p in only)
    batched = list(est.predict(lambda: blobs.points[:3], yield_single_examples=False))
    assert len(batched) == 1 and batched[0]["all_distances"].shape == (3, 5)
    with pytest.raises(ValueError, match="unknown predict key"):
        list(est.predict(lambda: blobs.points, predict_keys=["nope"]))

    assert est.get_variable_names() == ["clusters", "initialized", "global_step"]
    assert est.get_variable_value("initialized") == True  # noqa: E712
    np.testing.assert_array_equal(est.get_variable_value("clusters"), centers)
    with pytest.raises(ValueError, match="no variable"):
        est.get_variable_value("nope")
    ckpt = est.latest_checkpoint()
    assert ckpt is not None and "model.ckpt-5" in ckpt
    with pytest.raises(FileNotFoundError):
        est.evaluate(lambda: blobs.points, checkpoint_path=str(tmp_path / "missing.ckpt"))


def test_variables_per_mode(tmp_path, blobs):
    mini = _kmeans(tmp_path / "a", True, 1)
    mini.train(random_batches(blobs.points, 50), steps=2)
    assert mini.get_variable_names() == ["clusters", "initialized", "global_step", "cluster_counts"]
    counts = mini.get_variable_value("cluster_counts")
    assert counts.dtype == np.int64 and counts.sum() == 5 + 100  # 1 per centre + 2 batches of 50
    asyn = _kmeans(tmp_path / "b", True, 20)
    asyn.train(random_batches(blobs.points, 50), steps=2)
    assert set(asyn.get_variable_names()) == {
        "clusters", "initialized", "global_step", "cluster_counts", "clusters_updated", "update_in_steps",
    }


def test_properties(tmp_path):
    cfg = RunConfig(save_checkpoints_steps=3, keep_checkpoint_max=2)
    est = KMeansClustering(4, model_dir=str(tmp_path), config=cfg, relative_tolerance=0.5)
    assert est.model_dir == str(tmp_path)
    assert est.config.model_dir == str(tmp_path)
    assert est.config.save_checkpoints_steps == 3 and est.config.keep_checkpoint_max == 2
    assert est.params["num_clusters"] == 4 and est.params["relative_tolerance"] == 0.5
    assert callable(est.model_fn) and est.model_fn.params == est.params


def test_model_dir_defaults(tmp_path):
    est = KMeansClustering(2)
    assert os.path.isdir(est.model_dir)
    est2 = KMeansClustering(2, config=RunConfig(model_dir=str(tmp_path)))
    assert est2.model_dir == str(tmp_path)
    with pytest.raises(ValueError, match="differ"):
        KMeansClustering(2, model_dir=str(tmp_path / "a"), config=RunConfig(model_dir=str(tmp_path / "b")))


def test_model_fn_runs_on_its_own(tmp_path, blobs):
    est = _kmeans(tmp_path, False)
    est.train(lambda: blobs.points, steps=2)
    spec = est.model_fn(blobs.points[:4], None, "infer", None)
    assert spec.mode == "infer"
    np.testing.assert_array_equal(
        spec.predictions["cluster_index"], [int(i) for i in est.predict_cluster_index(lambda: blobs.points[:4])]
    )
    # Brute force: each row's squared distance to every centre.
    centres = est.cluster_centers().astype(np.float64)
    d = ((blobs.points[:, None, :].astype(np.float64) - centres[None]) ** 2).sum(-1)
    spec = est.model_fn(features=blobs.points, labels=None, mode=centroid.ModeKeys.EVAL, config=est.config)
    assert spec.mode == "eval"
    assert spec.loss == pytest.approx(d.min(1).sum(), rel=1e-5)
    assert spec.eval_metric_ops["score"][0] == pytest.approx(est.score(lambda: blobs.points), rel=1e-5)
    # float32 distances by ||x||^2 - 2 x.c + ||c||^2: absolute error ~ eps * ||x||^2.
    np.testing.assert_allclose(spec.predictions["all_distances"], d, rtol=1e-4, atol=1e-6 * d.max())
    assert set(spec.export_outputs) == {"serving_default", "cluster_index", "all_distances"}
    np.testing.assert_array_equal(spec.export_outputs["serving_default"].outputs["output"], d.argmin(1))
    with pytest.raises(ValueError, match="labels"):
        est.model_fn(blobs.points, np.zeros(len(blobs.points)), "eval", None)
    with pytest.raises(ValueError, match="train"):
        est.model_fn(blobs.points, None, "train", None)


# ------------------------------------------------------------------ errors


def test_bad_arguments_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="manhattan.*squared_euclidean.*cosine"):
        KMeansClustering(2, distance_metric="manhattan")
    with pytest.raises(ValueError, match="kmeans_minus_minus.*random.*kmeans_plus_plus"):
        KMeansClustering(2, initial_clusters="kmeans_minus_minus")
    with pytest.raises(ValueError):
        KMeansClustering(0)
    with pytest.raises(ValueError):
        KMeansClustering(2, mini_batch_steps_per_iteration=0)
    with pytest.raises(ValueError):
        KMeansClustering(2, random_seed=-1)
    est = KMeansClustering(2, model_dir=str(tmp_path))
    x = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="not both"):
        est.train(lambda: x, steps=1, max_steps=2)
    with pytest.raises(ValueError):
        est.train(lambda: x, steps=0)
    with pytest.raises(ValueError):
        est.train(lambda: x, max_steps=-3)


def test_incompatible_model_dir_is_refused(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    KMeansClustering(2, model_dir=str(tmp_path)).train(lambda: x, steps=1)
    with pytest.raises(ValueError, match="num_clusters"):
        KMeansClustering(3, model_dir=str(tmp_path)).train(lambda: x, steps=1)
    with pytest.raises(ValueError, match="cosine"):
        KMeansClustering(2, model_dir=str(tmp_path), distance_metric="cosine").train(lambda: x, steps=1)
    with pytest.raises(ValueError, match="3 columns but the model has 2"):
        KMeansClustering(2, model_dir=str(tmp_path)).train(lambda: np.ones((5, 3), np.float32), steps=1)


def test_corrupt_checkpoint_is_a_runtime_error(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    est = KMeansClustering(2, model_dir=str(tmp_path))
    est.train(lambda: x, steps=1)
    path = est.latest_checkpoint()
    with open(path, "r+b") as f:
        f.seek(40)
        f.write(b"\xff" * 16)
    with pytest.raises(RuntimeError):
        est.evaluate(lambda: x, checkpoint_path=path)


def test_resume_across_two_objects_on_one_model_dir(tmp_path, blobs):
    inp = random_batches(blobs.points, 50)
    a = _kmeans(tmp_path / "resume", True, 1)
    a.train(inp, steps=5)
    b = _kmeans(tmp_path / "resume", True, 1)
    assert b.get_variable_value("global_step") == 5
    np.testing.assert_array_equal(b.cluster_centers(), a.cluster_centers())
    b.train(inp, steps=3)
    assert a.get_variable_value("global_step") == 8  # a sees b's checkpoint
    # max_steps already reached: nothing runs.
    b.train(inp, max_steps=8)
    assert b.get_variable_value("global_step") == 8

    # Resuming gives what the same steps from the same checkpoint give.
    c = _kmeans(tmp_path / "other", True, 1)
    c.train(inp, steps=5)
    c.train(inp, steps=3)
    np.testing.assert_array_equal(c.cluster_centers(), b.cluster_centers())


def test_same_seed_same_centres_at_any_thread_count(tmp_path, blobs):
    results = []
    for threads in (1, 2, 3):
        est = KMeansClustering(
            5, model_dir=str(tmp_path / str(threads)), initial_clusters="kmeans_plus_plus",
            config=RunConfig(num_threads=threads, random_seed=7),
        )
        est.train(random_batches(blobs.points, 100), steps=20)
        results.append(est.cluster_centers())
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
