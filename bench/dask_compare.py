"""centroid.dask.KMeans against dask-ml's KMeans on the same LocalCluster,
and against single-process centroid.

Same data (Gaussian blobs, float32, persisted on the cluster), same explicit
initial centres, same number of Lloyd iterations (tolerance 0). Prints the
seconds per iteration of each, the ratios the targets are stated in, and the
time of k-means|| initialisation (same k, oversampling factor, and rounds)
against dask-ml's.

    python bench/dask_compare.py                       # 2,000,000 x 32, k = 64
    python bench/dask_compare.py --rows 200000         # a smoke-size run
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import processor_model  # noqa: E402


def _block_min_sq(block, centres):
    b = block.astype(np.float64)
    d = (b * b).sum(1)[:, None] - 2.0 * b @ centres.T + (centres * centres).sum(1)[None, :]
    return np.maximum(d, 0.0).min(axis=1)


def exact_inertia(X, centres) -> float:
    """Sum of squared distances to the nearest of `centres`, in float64,
    independent of both libraries."""
    c = np.asarray(centres, dtype=np.float64)
    return float(X.map_blocks(_block_min_sq, c, dtype=np.float64, drop_axis=1).sum().compute())


_SINGLE = """
import sys, time, numpy as np
from centroid import _core
x, init = np.load(sys.argv[1]), np.load(sys.argv[2])
iters = int(sys.argv[3])
_core.lloyd(x, None, init, 1, 0.0)  # warm-up
t0 = time.perf_counter()
_, _, inertia, n_iter, *_ = _core.lloyd(x, None, init, iters, 0.0)
print((time.perf_counter() - t0) / n_iter, n_iter, inertia)
"""


def single_process(x, init, iters: int, threads: int):
    """Seconds per iteration, iterations and inertia of `_core.lloyd` on `x`
    in a fresh process whose thread pool has `threads` threads."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        xp, ip = os.path.join(tmp, "x.npy"), os.path.join(tmp, "init.npy")
        np.save(xp, x)
        np.save(ip, init)
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        out = subprocess.run([sys.executable, "-c", _SINGLE, xp, ip, str(iters)], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1]), float(out[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--dims", type=int, default=32)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per worker")
    ap.add_argument("--partitions", type=int, default=None, help="default: 4 per worker")
    ap.add_argument("--init-rounds", type=int, default=5, help="k-means|| rounds for both libraries")
    ap.add_argument("--skip-dask-ml", action="store_true")
    args = ap.parse_args()

    # Each worker's kernels use --threads threads, as dask-ml's NumPy does.
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))

    import dask
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    from centroid import _core
    from centroid import _partitioned as driver
    from centroid.dask import DaskPartitions, KMeans

    n, d, k = args.rows, args.dims, args.k
    total_threads = args.workers * args.threads
    parts_n = args.partitions or 4 * args.workers
    chunk = -(-n // parts_n)
    print(f"centroid.dask vs dask-ml: {n:,} x {d} float32, k = {k}, {args.iters} iterations (tol 0), "
          f"{args.workers} workers x {args.threads} thread(s), {parts_n} partitions; CPU: {processor_model()}")

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=args.threads, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    try:
        rs = da.random.RandomState(0)
        centres = rs.uniform(-10, 10, size=(k, d), chunks=(k, d)).astype(np.float32).compute()
        labels = rs.randint(0, k, size=n, chunks=chunk)
        X = (da.from_array(centres)[labels] + rs.normal(size=(n, d), chunks=(chunk, d))).astype(np.float32)
        X = X.rechunk((chunk, d)).persist()
        wait(X)
        init = np.ascontiguousarray(X[:: max(1, n // k)][:k].compute())

        # centroid.dask: per-iteration time from the iteration callback
        # (excludes the final inertia pass and the version check).
        km = KMeans(k, init=init, max_iter=args.iters, tol=0)
        stamps = []
        km._on_iteration = lambda i: stamps.append(time.perf_counter())
        t0 = time.perf_counter()
        km.fit(X)
        t_fit = time.perf_counter() - t0
        per_ours = (stamps[-1] - t0) / len(stamps) if stamps else float("nan")
        # Warm run done (workers imported centroid); time again.
        stamps.clear()
        t0 = time.perf_counter()
        km.fit(X)
        per_ours = (stamps[-1] - t0) / len(stamps)
        t_fit = time.perf_counter() - t0

        # Single-process centroid on the same data and centres, with as many
        # threads as the whole cluster has (workers x threads), in a process
        # of its own (this one's thread pool is sized for one worker).
        per_single, n_iter_single, single_inertia = single_process(X.compute(), init, args.iters, total_threads)

        # k-means|| initialisation.
        parts = DaskPartitions(X)
        t0 = time.perf_counter()
        driver.kmeans_parallel_init(parts, k, seed=0, oversampling_factor=2.0, rounds=args.init_rounds)
        t_init_ours = time.perf_counter() - t0

        per_theirs = t_init_theirs = float("nan")
        theirs_inertia = float("nan")
        if not args.skip_dask_ml:
            try:
                from dask_ml.cluster import KMeans as DaskMLKMeans
                from dask_ml.cluster.k_means import init_scalable

                theirs = DaskMLKMeans(n_clusters=k, init=init, max_iter=args.iters, tol=0, n_init=1)
                theirs.fit(X)  # warm-up
                t0 = time.perf_counter()
                theirs.fit(X)
                per_theirs = (time.perf_counter() - t0) / max(1, theirs.n_iter_)
                theirs_inertia = exact_inertia(X, theirs.cluster_centers_)
                t0 = time.perf_counter()
                # dask-ml's k-means|| draws from a dask RandomState.
                init_scalable(X, k, da.random.RandomState(0), max_iter=args.init_rounds, oversampling_factor=2)
                t_init_theirs = time.perf_counter() - t0
            except Exception as e:  # noqa: BLE001 - report and carry on
                print(f"dask-ml failed: {type(e).__name__}: {e}")

        print()
        print(f"{'':28}{'s / iteration':>14}")
        print(f"{'centroid.dask.KMeans':28}{per_ours:14.4f}   (fit {t_fit:.2f} s, {km.n_iter_} iterations, "
              f"inertia {km.inertia_:.6g}, float64 check {exact_inertia(X, km.cluster_centers_):.6g})")
        print(f"{'dask-ml KMeans':28}{per_theirs:14.4f}   (float64 inertia of its centres {theirs_inertia:.6g})")
        print(f"{'centroid single process':28}{per_single:14.4f}   (_core.lloyd, {total_threads} "
              f"thread(s), {n_iter_single} iterations, inertia {single_inertia:.6g})")
        print()
        ratio = per_ours / per_theirs
        allowed = 1.5 * per_single + 0.05
        print(f"per iteration vs dask-ml: {ratio:.3f}x (target <= 0.25x: {'met' if ratio <= 0.25 else 'NOT met'})")
        print(f"overhead vs single process: {per_ours:.4f} s vs allowed 1.5 x {per_single:.4f} + 0.05 = "
              f"{allowed:.4f} s ({'met' if per_ours <= allowed else 'NOT met'})")
        print(f"k-means|| ({args.init_rounds} rounds, oversampling 2): centroid {t_init_ours:.2f} s, "
              f"dask-ml {t_init_theirs:.2f} s")
        print(f"centroid {_core.VERSION}, dask {dask.__version__}")
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
