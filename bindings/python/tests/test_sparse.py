"""Sparse (scipy.sparse) input to centroid.sklearn, against dense input and
scikit-learn."""

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")
pytest.importorskip("sklearn")
from sklearn.cluster import KMeans as SkKMeans  # noqa: E402

from centroid import _core  # noqa: E402
from centroid.sklearn import KMeans, MiniBatchKMeans  # noqa: E402


def _tfidf_like(n=3000, d=400, density=0.02, dtype=np.float64, seed=0, topics=8):
    """Rows with L2 norm 1 and clusters: each row draws most of its
    non-zeros from its topic's block of columns, a few from anywhere (so that
    rows share columns and distances have no exact ties)."""
    rng = np.random.default_rng(seed)
    per_row = max(2, int(density * d))
    block = d // topics
    indptr, indices, data = [0], [], []
    for _ in range(n):
        t = rng.integers(topics)
        own = rng.choice(block, size=min(block, per_row), replace=False) + t * block
        cols = np.unique(np.concatenate([own, rng.integers(0, d, size=2)]))
        vals = rng.random(len(cols)) + 0.1
        vals /= np.sqrt(np.sum(vals * vals))
        indices.extend(cols)
        data.extend(vals)
        indptr.append(len(indices))
    return sp.csr_matrix((np.array(data, dtype=dtype), np.array(indices), np.array(indptr)), shape=(n, d))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_fit_matches_scikit_learn_from_the_same_centres(dtype):
    x = _tfidf_like(dtype=dtype)
    # Dense noise on the initial centres: rows sharing no column with any
    # centre would otherwise tie between them all (distance 2).
    init = x[:12].toarray() + 0.02 * np.random.default_rng(1).random((12, x.shape[1]))
    ours = KMeans(n_clusters=12, init=init, n_init=1, max_iter=30, tol=0).fit(x)
    theirs = SkKMeans(n_clusters=12, init=init, n_init=1, max_iter=30, tol=0).fit(x)
    assert ours.cluster_centers_.dtype == dtype
    assert np.mean(ours.labels_ == theirs.labels_) > 0.99
    np.testing.assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-5)
    # Labels, transform and score on sparse data agree with the dense path.
    dense = x.toarray()
    np.testing.assert_array_equal(ours.predict(x), ours.predict(dense))
    np.testing.assert_allclose(ours.transform(x), ours.transform(dense), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.score(x), ours.score(dense), rtol=1e-5)


def test_every_sparse_format_and_array_type_gives_the_csr_result():
    x = _tfidf_like(n=800, d=60, density=0.1)
    init = x[:5].toarray()
    want = KMeans(n_clusters=5, init=init, n_init=1).fit(x)
    for other in (x.tocsc(), x.tocoo(), x.tolil(), sp.csr_array(x), sp.csc_array(x)):
        got = KMeans(n_clusters=5, init=init, n_init=1).fit(other)
        np.testing.assert_array_equal(got.labels_, want.labels_)
        np.testing.assert_array_equal(got.cluster_centers_, want.cluster_centers_)


def test_unsorted_and_duplicate_indices_are_sorted_on_a_copy():
    # Row 0 holds columns 3 and 1 (out of order); row 1 holds column 2 twice.
    data = np.array([1.0, 2.0, 0.5, 0.5, 4.0])
    indices = np.array([3, 1, 2, 2, 0], dtype=np.int32)
    indptr = np.array([0, 2, 4, 5])
    x = sp.csr_matrix((data, indices, indptr), shape=(3, 4))
    before = (x.indices.copy(), x.data.copy())
    km = KMeans(n_clusters=3, init=np.eye(3, 4), n_init=1).fit(x)
    # The rows are (0, 2, 0, 1), (0, 0, 1, 0) (the duplicates summed) and
    # (4, 0, 0, 0): nearest to the unit vectors e1, e2 and e0 (squared
    # distances 2, 0 and 9), so each row becomes its own centre.
    np.testing.assert_array_equal(km.labels_, [1, 2, 0])
    np.testing.assert_array_equal(km.cluster_centers_, [[4, 0, 0, 0], [0, 2, 0, 1], [0, 0, 1, 0]])
    np.testing.assert_array_equal(km.predict(x), km.predict(x.toarray()))
    np.testing.assert_array_equal(x.indices, before[0])
    np.testing.assert_array_equal(x.data, before[1])


def test_the_core_refuses_bad_csr_arrays_with_the_row_named():
    from types import SimpleNamespace

    centres = np.zeros((1, 4))

    def csr(indptr, indices, data):
        return SimpleNamespace(
            shape=(2, 4),
            indptr=np.array(indptr, dtype=np.int64),
            indices=np.array(indices, dtype=np.int32),
            data=np.array(data, dtype=np.float64),
        )

    with pytest.raises(ValueError, match="row 1 .*column index 7"):
        _core.sparse_labels_inertia(csr([0, 1, 2], [0, 7], [1.0, 1.0]), None, centres)
    with pytest.raises(ValueError, match="row 0 .*out of order"):
        _core.sparse_labels_inertia(csr([0, 2, 2], [2, 1], [1.0, 1.0]), None, centres)
    with pytest.raises(ValueError, match="row 1, column 3 .*not finite"):
        _core.sparse_labels_inertia(csr([0, 1, 2], [0, 3], [1.0, np.inf]), None, centres)
    with pytest.raises(ValueError, match="indptr"):
        _core.sparse_labels_inertia(csr([0, 2, 1], [0, 1], [1.0, 1.0]), None, centres)


def test_nan_in_sparse_data_is_a_value_error():
    x = _tfidf_like(n=50, d=10, density=0.3)
    x.data[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        KMeans(n_clusters=2, n_init=1).fit(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_minibatch_fit_and_partial_fit_on_sparse_data_match_dense(dtype):
    x = _tfidf_like(n=2000, d=80, density=0.05, dtype=dtype)
    dense = x.toarray()
    init = dense[:6] + dtype(0.02) * np.random.default_rng(1).random((6, 80), dtype=dtype)
    a = MiniBatchKMeans(n_clusters=6, init=init, n_init=1, batch_size=256, random_state=0).fit(x)
    b = MiniBatchKMeans(n_clusters=6, init=init, n_init=1, batch_size=256, random_state=0).fit(dense)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-4, atol=1e-6)
    p = MiniBatchKMeans(n_clusters=6, init=init, n_init=1, random_state=0)
    q = MiniBatchKMeans(n_clusters=6, init=init, n_init=1, random_state=0)
    for s in range(0, 2000, 500):
        p.partial_fit(x[s : s + 500])
        q.partial_fit(dense[s : s + 500])
    np.testing.assert_allclose(p.cluster_centers_, q.cluster_centers_, rtol=1e-4, atol=1e-6)


def test_kmeans_plus_plus_picks_the_same_rows_dense_or_sparse():
    x = _tfidf_like(n=1500, d=50, density=0.2)
    a = KMeans(n_clusters=8, random_state=3, n_init=1, max_iter=1).fit(x)
    b = KMeans(n_clusters=8, random_state=3, n_init=1, max_iter=1).fit(x.toarray())
    # Same seeding, one Lloyd step each: the same centres (sparse data is not
    # centred, dense data is, hence the tolerance).
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-6, atol=1e-9)


def test_the_estimator_input_fn_may_return_a_sparse_matrix(tmp_path):
    import centroid

    x = _tfidf_like(n=600, d=30, density=0.2, dtype=np.float32)
    init = x[:4].toarray()

    def train(name, input_fn, mini_batch=False):
        est = centroid.KMeansClustering(
            4, model_dir=str(tmp_path / name), initial_clusters=init, use_mini_batch=mini_batch
        )
        est.train(input_fn=input_fn, steps=5)
        return est

    a = train("sparse", lambda: x)
    b = train("dense", lambda: x.toarray())
    np.testing.assert_array_equal(a.cluster_centers(), b.cluster_centers())
    # An iterator of sparse batches too.
    c = train("batches", lambda: iter([x[:300], x[300:]]), mini_batch=True)
    assert c.cluster_centers().shape == (4, 30)


# The Estimator on sparse input: its CSR rows reach the core's sparse
# kernels without being densified.


def _noisy_init(x, k):
    # Dense noise on rows of the data, so that rows sharing no column with
    # any centre do not tie between centres.
    return (x[:k].toarray() + 0.02 * np.random.default_rng(1).random((k, x.shape[1]))).astype(x.dtype)


def test_estimator_on_sparse_input_runs_scikit_learns_lloyd(tmp_path):
    from centroid import KMeansClustering

    x = _tfidf_like(n=2000, d=300, dtype=np.float32)
    init = _noisy_init(x, 10)
    est = KMeansClustering(10, model_dir=str(tmp_path / "sparse"), initial_clusters=init, use_mini_batch=False)
    est.train(lambda: x, steps=8)
    ref = SkKMeans(n_clusters=10, init=init, n_init=1, max_iter=8, tol=0, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(est.cluster_centers(), ref.cluster_centers_, rtol=1e-4, atol=1e-6)
    labels = np.array(list(est.predict_cluster_index(lambda: x)))
    np.testing.assert_array_equal(labels, ref.predict(x))
    np.testing.assert_allclose(est.score(lambda: x), -ref.score(x), rtol=1e-4)
    dist = np.concatenate([np.atleast_2d(d) for d in est.transform(lambda: x)])
    np.testing.assert_allclose(dist, ref.transform(x) ** 2, rtol=1e-4, atol=1e-5)

    # The same rows given dense train the same model.
    dense = KMeansClustering(10, model_dir=str(tmp_path / "dense"), initial_clusters=init, use_mini_batch=False)
    dense.train(lambda: x.toarray(), steps=8)
    np.testing.assert_allclose(est.cluster_centers(), dense.cluster_centers(), rtol=1e-5, atol=1e-7)


def test_estimator_takes_every_sparse_format_as_the_same_csr(tmp_path):
    from centroid import KMeansClustering

    x = _tfidf_like(n=600, d=80, density=0.1, dtype=np.float32)
    init = _noisy_init(x, 4)

    def centres(data, name):
        est = KMeansClustering(4, model_dir=str(tmp_path / name), initial_clusters=init, use_mini_batch=False)
        est.train(lambda: data, steps=3)
        return est.cluster_centers()

    want = centres(x, "csr")
    for i, other in enumerate((x.tocsc(), x.tocoo(), sp.csr_array(x), sp.lil_matrix(x))):
        np.testing.assert_array_equal(centres(other, f"f{i}"), want)
    # Integer values become float32, as dense integer arrays do.
    ints = sp.csr_matrix((np.ones(x.nnz, dtype=np.int64), x.indices, x.indptr), shape=x.shape)
    np.testing.assert_array_equal(centres(ints, "int"), centres(ints.astype(np.float32), "f32"))


def test_estimator_trains_on_sparse_data_too_wide_to_densify(tmp_path):
    # 3,000 x 3,000,000: dense, this would be 36 GB of float32; as CSR it is
    # 18,000 values. Three groups of rows live in disjoint column ranges; the
    # rows of a group share its first 3 columns, so each row is nearer to
    # any row of its group (squared distance <= 6) than to any other (12).
    from centroid import KMeansClustering

    n, d, per_row = 3000, 3_000_000, 6
    rng = np.random.default_rng(0)
    group = np.arange(n) % 3
    own = np.concatenate([np.tile([0, 1, 2], (n, 1)), rng.integers(3, 1000, size=(n, 3))], axis=1)
    cols = np.sort(own + group[:, None] * 1_000_000, axis=1)
    x = sp.csr_matrix(
        (np.ones(n * per_row, dtype=np.float32), cols.ravel(), np.arange(0, n * per_row + 1, per_row)), shape=(n, d)
    )
    x.sum_duplicates()
    est = KMeansClustering(3, model_dir=str(tmp_path), initial_clusters=x[:3].toarray(), use_mini_batch=False)
    est.train(lambda: x, steps=3)
    labels = np.array(list(est.predict_cluster_index(lambda: x)))
    # Each group is one cluster: rows of a group share columns only with
    # their own group.
    for g in range(3):
        assert len(set(labels[group == g])) == 1
    assert len(set(labels)) == 3


def test_estimator_on_sparse_mini_batches_and_cosine(tmp_path):
    from centroid import KMeansClustering

    x = _tfidf_like(n=1200, d=120, density=0.05, dtype=np.float32)
    init = _noisy_init(x, 6)

    def batches(data):
        return lambda: iter([data[i : i + 200] for i in range(0, data.shape[0], 200)])

    for metric in ("squared_euclidean", "cosine"):
        a = KMeansClustering(6, model_dir=str(tmp_path / f"s-{metric}"), initial_clusters=init, distance_metric=metric)
        b = KMeansClustering(6, model_dir=str(tmp_path / f"d-{metric}"), initial_clusters=init, distance_metric=metric)
        a.train(batches(x))
        b.train(batches(x.toarray()))
        np.testing.assert_allclose(a.cluster_centers(), b.cluster_centers(), rtol=1e-5, atol=1e-7)


def test_estimator_names_the_bad_value_of_a_sparse_batch(tmp_path):
    from centroid import KMeansClustering

    x = _tfidf_like(n=50, d=20, density=0.2, dtype=np.float32)
    x.data[x.indptr[7] + 1] = np.nan
    col = x.indices[x.indptr[7] + 1]
    est = KMeansClustering(3, model_dir=str(tmp_path), initial_clusters="random")
    with pytest.raises(ValueError, match=f"row 7, column {col}"):
        est.train(lambda: x, steps=1)
