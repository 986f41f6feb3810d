"""centroid.dask and the Estimator on dask input, on a LocalCluster of two
worker processes with one thread each.

Expected values come from the single-machine implementations
(`centroid.sklearn.KMeans`, the Estimator on NumPy) and from a brute-force
nearest-centre reference, never from this module's own output.
"""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

pytest.importorskip("dask")
pytest.importorskip("distributed")
pytest.importorskip("sklearn")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

import centroid  # noqa: E402
from centroid import _core  # noqa: E402
from centroid import _partitioned as driver  # noqa: E402
from centroid.dask import DaskPartitions, KMeans, from_npy  # noqa: E402
from centroid.sklearn import KMeans as SingleMachineKMeans  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def blobs(n, d, k, seed=0, dtype=np.float64, spread=0.6):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(k, d))
    labels = rng.integers(0, k, size=n)
    return (centres[labels] + rng.normal(scale=spread, size=(n, d))).astype(dtype)


def brute_labels(x, c):
    d = ((x[:, None, :].astype(np.float64) - c[None, :, :].astype(np.float64)) ** 2).sum(axis=2)
    return d.argmin(axis=1)


def test_partition_task_matches_brute_force(client):
    x = blobs(3000, 4, 5, seed=1)
    c = x[[3, 100, 900, 1700, 2500]].copy()
    parts = DaskPartitions(da.from_array(x, chunks=(700, 4)))
    merged = driver.merged_stats(parts, c)
    labels = brute_labels(x, c)
    expected = np.zeros_like(c)
    np.add.at(expected, labels, x)
    np.testing.assert_array_equal(merged["counts"], np.bincount(labels, minlength=5))
    np.testing.assert_allclose(merged["sums"], expected, rtol=1e-12, atol=1e-9)
    d2 = ((x - c[labels]) ** 2).sum()
    np.testing.assert_allclose(merged["loss"], d2, rtol=1e-9)


def test_same_centres_and_labels_as_single_machine(client):
    x = blobs(4000, 5, 6, seed=2)
    init = x[[0, 1, 2, 3, 4, 5]].copy()
    ref = SingleMachineKMeans(6, init=init, n_init=1, max_iter=100, tol=1e-4).fit(x)
    km = KMeans(6, init=init, max_iter=100, tol=1e-4).fit(da.from_array(x, chunks=(900, 5)))
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(km.labels_.compute(), ref.labels_)
    assert km.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=1e-9)
    np.testing.assert_array_equal(km.predict(da.from_array(x, chunks=1000)).compute(), ref.labels_)
    np.testing.assert_allclose(km.transform(da.from_array(x[:50])).compute(), ref.transform(x[:50]), rtol=1e-9)
    np.testing.assert_allclose(float(km.score(da.from_array(x, chunks=1000))), ref.score(x), rtol=1e-9)


def test_empty_cluster_refilled_as_single_machine(client):
    x = blobs(2000, 3, 4, seed=3)
    init = np.vstack([x[:3], [[1e3, 1e3, 1e3]]])  # the last centre attracts no row
    ref = SingleMachineKMeans(4, init=init, n_init=1, max_iter=50, tol=0).fit(x)
    km = KMeans(4, init=init, max_iter=50, tol=0).fit(da.from_array(x, chunks=(600, 3)))
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(km.labels_.compute(), ref.labels_)


def test_one_worker_and_two_workers_give_identical_bits(client):
    x = blobs(5000, 4, 8, seed=4, dtype=np.float32)
    X = da.from_array(x, chunks=(800, 4))
    two = KMeans(8, random_state=7, max_iter=30).fit(X)
    with dask.config.set(scheduler="synchronous"):
        local = KMeans(8, random_state=7, max_iter=30).fit(X)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as one_cluster:
        with Client(one_cluster, set_as_default=False) as one:
            with dask.config.set(scheduler=one.get):
                single = KMeans(8, random_state=7, max_iter=30).fit(X)
    for other in (local, single):
        np.testing.assert_array_equal(other.cluster_centers_, two.cluster_centers_)
        assert other.n_iter_ == two.n_iter_
        assert other.inertia_ == two.inertia_


def test_kmeans_parallel_does_not_depend_on_partitioning(client):
    x = blobs(4000, 3, 5, seed=5)
    four = DaskPartitions(da.from_array(x, chunks=(1000, 3)))
    eight = DaskPartitions(da.from_array(x, chunks=(500, 3)))
    a = driver.kmeans_parallel_init(four, 5, seed=11)
    b = driver.kmeans_parallel_init(eight, 5, seed=11)
    np.testing.assert_array_equal(a, b)
    # Every centre is a row of the data.
    assert all((x == row).all(axis=1).any() for row in a)
    fa = KMeans(5, random_state=3).fit(da.from_array(x, chunks=(1000, 3)))
    fb = KMeans(5, random_state=3).fit(da.from_array(x, chunks=(500, 3)))
    np.testing.assert_allclose(fa.cluster_centers_, fb.cluster_centers_, rtol=1e-12)


def test_initialisations_find_the_blobs(client):
    centres = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0], [50.0, 50.0]])
    rng = np.random.default_rng(6)
    x = centres[rng.integers(0, 4, 4000)] + rng.normal(scale=0.5, size=(4000, 2))
    for init in ("k-means||", "k-means++", "random"):
        km = KMeans(4, init=init, n_init=3 if init == "random" else 1, random_state=0).fit(
            da.from_array(x, chunks=(1000, 2))
        )
        found = km.cluster_centers_[np.argsort(km.cluster_centers_ @ [1.0, 0.001])]
        expected = centres[np.argsort(centres @ [1.0, 0.001])]
        np.testing.assert_allclose(found, expected, atol=0.1, err_msg=init)


def test_memory_mapped_npy_equals_in_memory(client, tmp_path):
    x = blobs(3000, 4, 5, seed=7, dtype=np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    a = KMeans(5, random_state=1).fit(from_npy(path, chunk_rows=700))
    b = KMeans(5, random_state=1).fit(da.from_array(x, chunks=(700, 4)))
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_.compute(), b.labels_.compute())


def test_parquet_dataframe_equals_array(client, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    import dask.dataframe as dd

    x = blobs(2000, 3, 4, seed=8)
    df = pd.DataFrame(x, columns=["a", "b", "c"])
    dd.from_pandas(df, npartitions=3).to_parquet(tmp_path / "pq")
    ddf = dd.read_parquet(tmp_path / "pq")
    lengths = [len(p) for p in ddf.partitions]
    a = KMeans(4, random_state=2).fit(ddf)
    b = KMeans(4, random_state=2).fit(da.from_array(x, chunks=(tuple(lengths), 3)))
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert list(a.feature_names_in_) == ["a", "b", "c"]
    assert a.n_features_in_ == 3


def test_estimator_on_dask_equals_numpy(client, tmp_path):
    x = blobs(3000, 4, 5, seed=9, dtype=np.float64)
    init = x[:5].copy()
    for mini in (False, True):
        ref = centroid.KMeansClustering(
            5, model_dir=tmp_path / f"np{mini}", initial_clusters=init, use_mini_batch=mini
        )
        if mini:
            # Mini-batch on dask: step g reads partition g mod P; the NumPy
            # reference reads the same blocks in the same order.
            blocks = [x[i : i + 1000] for i in range(0, 3000, 1000)]
            ref.train(lambda: iter(blocks * 3), steps=7)
        else:
            ref.train(lambda: x, steps=6)
        est = centroid.KMeansClustering(
            5, model_dir=tmp_path / f"dask{mini}", initial_clusters=init, use_mini_batch=mini
        )
        est.train(lambda: da.from_array(x, chunks=(1000, 4)), steps=4)
        est.train(lambda: da.from_array(x, chunks=(1000, 4)), steps=(7 if mini else 6) - 4)  # resumes
        np.testing.assert_allclose(est.cluster_centers(), ref.cluster_centers(), rtol=1e-9, atol=1e-12)
        assert est.get_variable_value("global_step") == ref.get_variable_value("global_step")
    labels = list(est.predict_cluster_index(lambda: da.from_array(x, chunks=(700, 4))))
    np.testing.assert_array_equal(labels, brute_labels(x, est.cluster_centers()))


def test_worker_versions_must_match():
    driver.check_versions("1.2.0", {"tcp://a:1": "1.2.0", "tcp://b:2": "1.2.0"})
    with pytest.raises(RuntimeError, match=r"tcp://b:2 runs centroid 0\.9\.0 but this driver runs centroid 1\.2\.0"):
        driver.check_versions("1.2.0", {"tcp://a:1": "1.2.0", "tcp://b:2": "0.9.0"})


def test_workers_run_the_drivers_version(client):
    versions = client.run(lambda: __import__("centroid")._core.VERSION)
    assert set(versions.values()) == {_core.VERSION}


# ------------------------------------------------------------ bad input


def test_non_numeric_column_is_named(client):
    pd = pytest.importorskip("pandas")
    import dask.dataframe as dd

    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "name": ["x", "y", "z"]})
    with pytest.raises(ValueError, match="column 'name'"):
        KMeans(2).fit(dd.from_pandas(df, npartitions=2))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_value_names_partition_and_row(client, bad):
    x = blobs(2000, 3, 2, seed=10)
    x[1234, 2] = bad  # partition 2 of 500-row chunks, local row 234
    init = x[:2].copy()
    with pytest.raises(ValueError, match=r"partition 2 \(global rows 1000 to 1499\): .*row 234, column 2 of the data is not finite"):
        KMeans(2, init=init).fit(da.from_array(x, chunks=(500, 3)))


def test_mismatched_widths(client):
    x = blobs(500, 3, 2, seed=11)
    with pytest.raises(ValueError, match="shape"):
        KMeans(2, init=np.zeros((2, 4))).fit(da.from_array(x, chunks=100))
    km = KMeans(2, random_state=0).fit(da.from_array(x, chunks=100))
    with pytest.raises(ValueError, match="fitted on 3 features"):
        km.predict(da.from_array(np.zeros((10, 4))))


def test_more_clusters_than_rows(client):
    with pytest.raises(ValueError, match="n_clusters=5 is larger than the number of rows \\(4\\)"):
        KMeans(5).fit(da.from_array(np.zeros((4, 2))))


def test_empty_collection(client):
    with pytest.raises(ValueError, match="empty"):
        KMeans(2).fit(da.from_array(np.zeros((0, 3))))


# Last: it kills a worker process (its nanny starts a new one).
def test_worker_killed_mid_fit_gives_identical_centres(client):
    rng = np.random.default_rng(12)
    x = rng.uniform(size=(20000, 6))  # no structure: many iterations
    X = da.from_array(x, chunks=(2000, 6))
    init = x[:12].copy()
    undisturbed = KMeans(12, init=init, max_iter=25, tol=0).fit(X)
    assert undisturbed.n_iter_ >= 10
    pids = client.run(os.getpid)
    victim = pids[sorted(pids)[0]]
    killed = []

    def kill_during_next_iteration(iteration):
        if iteration == 3:
            threading.Timer(0.01, lambda: (os.kill(victim, signal.SIGKILL), killed.append(victim))).start()

    km = KMeans(12, init=init, max_iter=25, tol=0)
    km._on_iteration = kill_during_next_iteration
    km.fit(X)
    assert killed == [victim]
    np.testing.assert_array_equal(km.cluster_centers_, undisturbed.cluster_centers_)
    assert km.n_iter_ == undisturbed.n_iter_
