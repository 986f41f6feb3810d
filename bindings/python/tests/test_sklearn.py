"""centroid.sklearn against scikit-learn itself."""

import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.cluster import KMeans as SkKMeans  # noqa: E402
from sklearn.cluster import MiniBatchKMeans as SkMiniBatchKMeans  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

from centroid.sklearn import KMeans, MiniBatchKMeans  # noqa: E402

# scikit-learn marks exactly these checks as expected failures for its own
# KMeans and MiniBatchKMeans (sklearn/utils/_test_common/instance_generator.py):
# weights are not equivalent to repeated samples once seeding is random.
SKLEARN_OWN_XFAILS = {
    "check_sample_weight_equivalence_on_dense_data": "sample_weight is not equivalent to removing/repeating samples.",
    "check_sample_weight_equivalence_on_sparse_data": "sample_weight is not equivalent to removing/repeating samples.",
}


@pytest.mark.parametrize("estimator", [KMeans(), MiniBatchKMeans()], ids=["KMeans", "MiniBatchKMeans"])
def test_check_estimator(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, expected_failed_checks=SKLEARN_OWN_XFAILS, on_fail=None)
    failed = [(r["check_name"], repr(r["exception"])) for r in results if r["status"] == "failed"]
    assert failed == []
    assert sum(r["status"] == "passed" for r in results) > 40


@pytest.fixture(scope="module")
def data():
    X, _ = make_blobs(3000, n_features=6, centers=7, cluster_std=2.0, random_state=4)
    return X


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_kmeans_equals_scikit_learn_given_the_same_initial_centres(data, dtype, weighted):
    X = data.astype(dtype)
    init = X[[0, 10, 20, 30, 40, 50, 60]].copy()
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(X)) if weighted else None
    ours = KMeans(7, init=init, n_init=1, max_iter=300).fit(X, sample_weight=sw)
    ref = SkKMeans(7, init=init, n_init=1, max_iter=300).fit(X, sample_weight=sw)
    assert abs(ours.inertia_ - ref.inertia_) <= 1e-5 * ref.inertia_
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-4, atol=1e-4)
    assert (ours.labels_ == ref.labels_).mean() > 0.999
    assert ours.n_iter_ == ref.n_iter_
    assert ours.cluster_centers_.dtype == dtype
    assert ours.score(X) == pytest.approx(ref.score(X), rel=1e-5)
    np.testing.assert_allclose(ours.transform(X[:50]), ref.transform(X[:50]), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(ours.predict(X[:500]), ref.predict(X[:500]))


def test_kmeans_empty_cluster_relocation_matches_scikit_learn(data):
    X = data
    init = X[:7].copy()
    init[6] = [1e4] * X.shape[1]  # far from everything: empty after the first assignment
    ours = KMeans(7, init=init, n_init=1).fit(X)
    ref = SkKMeans(7, init=init, n_init=1).fit(X)
    assert abs(ours.inertia_ - ref.inertia_) <= 1e-5 * ref.inertia_
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-6)


def test_kmeans_stops_on_tolerance_like_scikit_learn(data):
    init = data[:7].copy()
    for tol in (1e-1, 1e-2, 1e-4):
        ours = KMeans(7, init=init, n_init=1, tol=tol).fit(data)
        ref = SkKMeans(7, init=init, n_init=1, tol=tol).fit(data)
        assert ours.n_iter_ == ref.n_iter_
        assert abs(ours.inertia_ - ref.inertia_) <= 1e-5 * ref.inertia_
    ours = KMeans(7, init=init, n_init=1, max_iter=2).fit(data)
    assert ours.n_iter_ == 2


@pytest.mark.parametrize("batch_size", [64, 1024])
def test_minibatch_equals_scikit_learn_given_the_same_initial_centres(data, batch_size):
    init = data[:7].copy()
    ours = MiniBatchKMeans(7, init=init, n_init=1, batch_size=batch_size, random_state=0).fit(data)
    ref = SkMiniBatchKMeans(7, init=init, n_init=1, batch_size=batch_size, random_state=0).fit(data)
    assert ours.n_steps_ == ref.n_steps_
    assert ours.n_iter_ == ref.n_iter_
    assert abs(ours.inertia_ - ref.inertia_) <= 1e-5 * ref.inertia_
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-6, atol=1e-8)


def test_partial_fit_equals_scikit_learn(data):
    init = data[:7].copy()
    ours = MiniBatchKMeans(7, init=init, n_init=1, random_state=0)
    ref = SkMiniBatchKMeans(7, init=init, n_init=1, random_state=0)
    for start in range(0, 1500, 100):
        ours.partial_fit(data[start : start + 100])
        ref.partial_fit(data[start : start + 100])
    assert ours.n_steps_ == ref.n_steps_ == 15
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-6, atol=1e-8)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)


def test_kmeans_plus_plus_is_as_good_as_scikit_learns(data):
    ours = [KMeans(7, random_state=s).fit(data).inertia_ for s in range(5)]
    ref = [SkKMeans(7, random_state=s).fit(data).inertia_ for s in range(5)]
    assert np.median(ours) <= 1.05 * np.median(ref)
    again = KMeans(7, random_state=3).fit(data)
    np.testing.assert_array_equal(again.cluster_centers_, KMeans(7, random_state=3).fit(data).cluster_centers_)


def test_attributes_and_methods(data):
    X = data[:200]
    km = KMeans(3, random_state=0, n_init=2)
    labels = km.fit_predict(X)
    np.testing.assert_array_equal(labels, km.labels_)
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    assert km.n_features_in_ == 6 and km.cluster_centers_.shape == (3, 6)
    assert isinstance(km.inertia_, float) and isinstance(km.n_iter_, int)
    d = km.fit_transform(X)
    brute = np.sqrt(((X[:, None, :] - km.cluster_centers_[None]) ** 2).sum(-1))
    np.testing.assert_allclose(d, brute, rtol=1e-6, atol=1e-6)
    assert km.score(X) == pytest.approx(-(brute.min(1) ** 2).sum(), rel=1e-6)
    assert list(km.get_feature_names_out()) == ["kmeans0", "kmeans1", "kmeans2"]
    mb = MiniBatchKMeans(3, random_state=0, batch_size=50).fit(X)
    assert mb.labels_.shape == (200,) and mb.n_steps_ >= 1
    with pytest.raises(ValueError, match="n_samples=2 should be >= n_clusters=3"):
        KMeans(3).fit(X[:2])
    with pytest.raises(ValueError):
        KMeans(3).fit(np.full((10, 2), np.nan))
    with pytest.raises(ValueError):
        KMeans(3, init="bogus").fit(X)


def test_scikit_learn_is_only_imported_by_centroid_sklearn():
    import subprocess
    import sys

    code = "import sys, centroid; centroid.KMeansClustering(2); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("copy_x", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_leaves_the_data_as_scikit_learn_does(data, copy_x, dtype):
    # copy_x=True must not touch the caller's array (fit centres a copy);
    # copy_x=False centres it in place and adds the mean back, as
    # scikit-learn does, and the fit is the same either way.
    X = np.ascontiguousarray(data, dtype=dtype)
    before = X.copy()
    init = X[[0, 10, 20, 30, 40, 50, 60]].copy()
    ours = KMeans(7, init=init, n_init=1, max_iter=5, copy_x=copy_x).fit(X)
    ref = SkKMeans(7, init=init, n_init=1, max_iter=5, copy_x=copy_x).fit(X.copy())
    if copy_x:
        np.testing.assert_array_equal(X, before)
    else:
        np.testing.assert_allclose(X, before, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-4, atol=1e-4)
    # A list is converted (a new array), so there is nothing to protect.
    from_list = KMeans(7, init=init, n_init=1, max_iter=5, copy_x=copy_x).fit(before.tolist())
    np.testing.assert_array_equal(from_list.labels_, KMeans(7, init=init, n_init=1, max_iter=5).fit(before).labels_)


def test_distinct_labels_counts_the_clusters_named():
    from centroid import _core

    rng = np.random.default_rng(8)
    for k, missing in [(1, []), (16, []), (16, [0, 7, 15]), (300, list(range(0, 300, 3)))]:
        present = np.setdiff1d(np.arange(k), missing)
        labels = rng.choice(present, size=5000).astype(np.int32)
        labels[-len(present):] = present  # each present cluster at least once
        want = len(np.unique(labels))
        assert _core.distinct_labels(labels, k) == want == len(present)
    assert _core.distinct_labels(np.zeros(0, dtype=np.int32), 4) == 0
    for bad in (-1, 4):
        with pytest.raises(ValueError, match=f"label {bad} at position 2 is not one of the 4 clusters"):
            _core.distinct_labels(np.array([0, 1, bad, 2], dtype=np.int32), 4)


def test_fewer_distinct_clusters_than_asked_warns_like_scikit_learn():
    # Two distinct points, three clusters, the third starting on a copy of
    # the first: ties go to the lower index, so one label is never used.
    X = np.array([[0.0, 0.0]] * 5 + [[3.0, 3.0]] * 5)
    init = np.array([[0.0, 0.0], [3.0, 3.0], [0.0, 0.0]])
    with pytest.warns(sklearn.exceptions.ConvergenceWarning, match=r"distinct clusters \(2\)"):
        ours = KMeans(3, init=init, n_init=1).fit(X)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning, match=r"distinct clusters \(2\)"):
        ref = SkKMeans(3, init=init, n_init=1).fit(X)
    assert len(set(ours.labels_)) == len(set(ref.labels_)) == 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [2, 3, 8, 65, 130])
def test_center_is_numpys_mean_and_subtraction(dtype, d):
    # fit centres the data in Rust; it must be NumPy's x.mean(axis=0) and
    # x - mean bit for bit (the fit then matches scikit-learn's centring).
    from centroid import _core

    rng = np.random.default_rng(d)
    X = (rng.normal(size=(5000, d)) * 1000 + 7).astype(dtype)
    X[0] = 3e7  # makes the sum depend on the order of additions
    X[:, 1] = -0.0  # NumPy's sum starts at +0.0
    mean = X.mean(axis=0)
    centred, got, none, finite = _core.center(X, True)
    assert none is None
    assert finite is True
    np.testing.assert_array_equal(got.view(np.uint8), mean.view(np.uint8))
    np.testing.assert_array_equal(centred.view(np.uint8), (X - mean).view(np.uint8))
    # The variances computed on the way are NumPy's too.
    _, _, var, _ = _core.center(X, True, variances=True)
    np.testing.assert_array_equal(var.view(np.uint8), np.var(X, axis=0).view(np.uint8))
    Y = X.copy()
    same, got2, var2, finite2 = _core.center(Y, False, variances=True)
    assert finite2 is True
    np.testing.assert_array_equal(var2, var)
    assert same is Y
    np.testing.assert_array_equal(Y.view(np.uint8), (X - mean).view(np.uint8))
    np.testing.assert_array_equal(got2, got)


@pytest.mark.parametrize("variances", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_centring_is_skipped_where_it_would_not_pay(dtype, variances):
    # Rows (a+1, a+1) and (a-1, a-1): the mean is (a, a), |mean|^2 = 2 a^2,
    # and every row lies at squared distance 2 from it. Centring pays where
    # |mean|^2 > 2 * 2, that is where a > sqrt(2).
    from centroid import _core

    for a, pays in [(1.25, False), (1.375, False), (1.5, True), (40.0, True)]:
        X = np.tile(np.array([[a + 1, a + 1], [a - 1, a - 1]], dtype=dtype), (1000, 1))
        before = X.copy()
        out, shift, var, finite = _core.center(X, True, variances=variances, when_it_pays=True)
        assert finite is True
        assert (var is not None) == variances
        if variances:
            np.testing.assert_array_equal(var, np.var(X, axis=0))
        if pays:
            np.testing.assert_array_equal(shift, [a, a])
            np.testing.assert_array_equal(out, X - np.array([a, a], dtype=dtype))
        else:
            assert shift is None, a
            assert out is X
        np.testing.assert_array_equal(X, before)
    # Means that are not finite are reported as before.
    X[3, 1] = np.nan
    out, shift, _, finite = _core.center(X, True, when_it_pays=True)
    assert out is X and finite is False and np.isnan(shift[1])


@pytest.mark.parametrize("copy_x", [True, False])
def test_uncentred_fit_matches_scikit_learn(copy_x):
    # Clusters around the origin: the fit runs on X as it is, and must still
    # give scikit-learn's labels, centres and inertia from the same centres,
    # leave X untouched, and stop where scikit-learn stops (its tolerance
    # from the same variances).
    from sklearn.cluster import KMeans as SkKMeans

    rng = np.random.default_rng(3)
    centres = rng.normal(scale=4.0, size=(6, 12))
    X = (centres[rng.integers(0, 6, size=4000)] + rng.normal(size=(4000, 12))).astype(np.float64)
    before = X.copy()
    init = X[:6].copy()
    from centroid import _core

    assert _core.center(X, True, variances=True, when_it_pays=True)[1] is None
    ours = KMeans(6, init=init, n_init=1, tol=1e-4, copy_x=copy_x).fit(X)
    theirs = SkKMeans(6, init=init, n_init=1, tol=1e-4).fit(before.copy())
    np.testing.assert_array_equal(X, before)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-10)
    assert ours.n_iter_ == theirs.n_iter_


@pytest.mark.parametrize("copy", [True, False])
def test_a_centring_that_overflows_is_reported(copy):
    # Finite values whose column mean is finite but whose centred value is
    # not (3.4e38 less a mean of -2.75e37 overflows float32): the centring
    # says so, so that a fit would not be told the values are finite.
    from centroid import _core

    X = np.zeros((4, 2), dtype=np.float32)
    X[:, 0] = [3.4e38, -1.5e38, -1.5e38, -1.5e38]
    centred, mean, _, finite = _core.center(X.copy(), copy)
    assert np.isfinite(mean).all()
    assert np.isinf(centred[0, 0])
    assert finite is False
    ok, _, _, finite_ok = _core.center(X[1:] / 1e30, copy)
    assert finite_ok is True and np.isfinite(ok).all()
    # The fit centres only where centring pays (|mean|^2 more than twice the
    # rows' mean squared distance to the mean, from the variances or from a
    # sample of rows), which a centring that overflows does not where the
    # overflowing row is counted: a row x with |x - mean| > MAX while |x| and
    # |n mean| are at most MAX has a squared distance above MAX^2, so the
    # spread exceeds MAX^2 / n, and |mean|^2 is at most MAX^2 / n^2. (A
    # sample that misses it centres, and the fit refuses the row as above.)
    untouched, shift, _, finite = _core.center(X, copy, when_it_pays=True)
    assert untouched is X and shift is None and finite is True


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [2, 3, 65, 130])
def test_column_var_is_numpys_variance(dtype, d):
    # scikit-learn's tolerance is tol * mean(var(X, axis=0)); ours must be
    # NumPy's variances bit for bit, so fits stop where scikit-learn's do.
    from centroid import _core

    rng = np.random.default_rng(10 + d)
    X = (rng.normal(size=(5000, d)) * 1000 + 7).astype(dtype)
    X[0] = 3e5  # makes the sums depend on the order of additions
    X[:, 1] = 2.5  # no variance at all
    want = np.var(X, axis=0)
    got = _core.column_var(X)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    with pytest.raises(ValueError, match="two columns"):
        _core.column_var(X[:, :1].copy())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_integer_data_is_centred_by_the_rounded_mean(dtype):
    # Integer data (pixels) is centred by NumPy's mean rounded to the
    # nearest integer, so the centred values are still exact integers.
    from centroid import _core

    rng = np.random.default_rng(5)
    X = rng.integers(0, 256, size=(3000, 20)).astype(dtype)
    X[:, 4] = 7  # a mean that is an integer already
    X[:2, 5], X[2:, 5] = 1, 0  # a mean below one half
    mean = np.round(X.mean(axis=0))
    centred, got, var, _ = _core.center(X, True, variances=True)
    np.testing.assert_array_equal(got, mean)
    np.testing.assert_array_equal(centred, X - mean)
    # The variances are those of the data, about NumPy's (unrounded) mean.
    np.testing.assert_array_equal(var, np.var(X, axis=0))
    assert np.all(centred == np.round(centred))
    # One value off the integers: NumPy's mean, to the bit, again.
    X[5, 3] += 0.5
    _, got, _, _ = _core.center(X, True)
    np.testing.assert_array_equal(got.view(np.uint8), X.mean(axis=0).view(np.uint8))


def test_pixel_data_fits_like_scikit_learn():
    # Integer pixels (k d >= 1024) are pruned once labels settle, with exact
    # sums; labels and centres still match scikit-learn's from the same
    # initial centres.
    rng = np.random.default_rng(11)
    proto = rng.integers(0, 256, size=(12, 128))
    X = np.clip(proto[rng.integers(0, 12, 6000)] + rng.integers(-90, 91, size=(6000, 128)), 0, 255).astype(np.float32)
    init = X[:12].copy()
    ours = KMeans(12, init=init, n_init=1, max_iter=50).fit(X)
    ref = SkKMeans(12, init=init, n_init=1, max_iter=50).fit(X)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-5, atol=1e-3)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2000, 5, 4, 100), (5000, 17, 9, 256), (1500, 3, 20, 1024)])
def test_minibatch_batches_and_results_are_scikit_learns(shape, dtype, weighted):
    # The batches come from a cumulative sum built once per fit: the same
    # indices as scikit-learn's per-step RandomState.choice(p=...), so centres,
    # labels, inertia and step counts match from the same seed and initial
    # centres (our k-means++ seeding is our own, so the centres are given).
    n, d, k, batch = shape
    X, _ = make_blobs(n, n_features=d, centers=k, cluster_std=1.5, random_state=n + d)
    X = X.astype(dtype)
    w = np.random.default_rng(d).uniform(0.2, 3.0, n).astype(dtype) if weighted else None
    init = X[np.random.default_rng(n).choice(n, k, replace=False)]
    kw = dict(n_clusters=k, init=init, n_init=1, batch_size=batch, random_state=7, max_iter=20)
    ours = MiniBatchKMeans(**kw).fit(X, sample_weight=w)
    ref = SkMiniBatchKMeans(**kw).fit(X, sample_weight=w)
    assert ours.n_steps_ == ref.n_steps_
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=rtol, atol=rtol)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=rtol)


def test_minibatch_batch_indices_are_those_of_random_state_choice():
    from centroid.sklearn import _batch_sampler

    rng = np.random.default_rng(3)
    for n, weights in [(1, np.ones(1)), (10, np.ones(10)), (1000, rng.uniform(0, 1, 1000)), (997, rng.integers(0, 3, 997))]:
        for dtype in (np.float32, np.float64):
            p = (weights / weights.sum()).astype(dtype)
            draw = _batch_sampler(n, p)
            ours, ref = np.random.RandomState(11), np.random.RandomState(11)
            for size in (1, 7, 1024):
                np.testing.assert_array_equal(draw(ours, size), ref.choice(n, size, p=p, replace=True))
            # The generators stay in step: they consumed the same numbers.
            assert ours.random_sample() == ref.random_sample()


def test_minibatch_bad_weights_fail_as_before():
    X = np.random.default_rng(0).normal(size=(50, 2))
    w = np.ones(50)
    w[3] = -1.0
    with pytest.raises(ValueError):
        MiniBatchKMeans(2, n_init=1, random_state=0).fit(X, sample_weight=w)


def test_kmeans_with_an_empty_cluster_matches_scikit_learn():
    # The third initial centre is far from every point: the first iteration
    # leaves it empty and both libraries move it to the farthest point
    # (no ties), then carry on to the same centres.
    X, _ = make_blobs(600, n_features=3, centers=3, cluster_std=1.0, random_state=5)
    init = np.vstack([X[:2], [[500.0, 500.0, 500.0]]])
    ours = KMeans(3, init=init, n_init=1, max_iter=50).fit(X)
    ref = SkKMeans(3, init=init, n_init=1, max_iter=50).fit(X)
    one = KMeans(3, init=init, n_init=1, max_iter=1).fit(X)
    ref_one = SkKMeans(3, init=init, n_init=1, max_iter=1).fit(X)
    np.testing.assert_allclose(one.cluster_centers_, ref_one.cluster_centers_, rtol=1e-12, atol=1e-12)
    assert (one.labels_ == 2).sum() >= 1  # the relocated centre took points
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert ours.n_iter_ == ref.n_iter_


@pytest.mark.parametrize("copy_x", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")])
def test_nan_or_infinity_gives_scikit_learns_error_and_leaves_the_data_alone(copy_x, dtype, bad, word):
    # KMeans.fit finds non-finite values from its centring's column sums
    # (no separate read): the error must still be scikit-learn's own, and
    # with copy_x=False the caller's array must not have been centred.
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 5)).astype(dtype)
    X[31, 3] = bad
    with pytest.raises(ValueError) as theirs:
        sklearn_cluster.KMeans(3, n_init=1, copy_x=copy_x).fit(X.copy())
    mine = X.copy()
    with pytest.raises(ValueError) as ours:
        KMeans(3, n_init=1, copy_x=copy_x).fit(mine)
    assert word in str(ours.value)
    assert str(ours.value) == str(theirs.value)
    np.testing.assert_array_equal(mine, X)
    # Sparse and single-column data take the other path to the same test.
    with pytest.raises(ValueError, match=word):
        KMeans(3, n_init=1).fit(X[:, 3:4].copy())
