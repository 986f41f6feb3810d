#!/usr/bin/env python3
"""Fixed per-fit cost of centroid.sklearn.KMeans and k-means++ seeding time.

compare.py divides whole fits by the iterations run, so a fixed cost per fit
(validation, centring, counting clusters, the final inertia) counts against
every iteration. This times fits of 1 and 21 iterations (their difference
over 20 is the cost of one iteration, the rest is fixed), the bare
`_core.lloyd` call, and greedy k-means++ seeding against scikit-learn's
`kmeans_plusplus` with the same number of local trials, in the same run.

    python bench/overhead.py [--threads 2] [--repeat 5] [--no-seeding]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

os.environ.setdefault("OPENBLAS_CORETYPE", "SkylakeX")


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import threads_from_argv  # noqa: E402

os.environ["RAYON_NUM_THREADS"] = threads_from_argv()

import warnings  # noqa: E402

import numpy as np  # noqa: E402

import datasets  # noqa: E402


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def fits(name, x, k, iters, repeat):
    import centroid.sklearn as csk
    from centroid import _core

    rng = np.random.default_rng(3)
    c0 = np.ascontiguousarray(x[rng.choice(len(x), k, replace=False)])
    for it in iters:
        t = median_time(lambda: csk.KMeans(n_clusters=k, init=c0, n_init=1, max_iter=it, tol=0.0).fit(x), repeat)
        xc = x - x.mean(axis=0)
        c0c = c0 - x.mean(axis=0)
        t_core = median_time(lambda: _core.lloyd(xc, None, c0c, it, 0.0), repeat)
        print(f"{name}: fit max_iter={it}: {t * 1e3:8.1f} ms   _core.lloyd alone: {t_core * 1e3:8.1f} ms", flush=True)


def seeding(name, x, k, threads, repeat):
    from sklearn.cluster import kmeans_plusplus
    from threadpoolctl import threadpool_limits

    from centroid import _core

    trials = 2 + int(math.log(k))

    def sk():
        with threadpool_limits(limits=threads):
            return kmeans_plusplus(x, k, n_local_trials=trials, random_state=0)

    t_sk = median_time(sk, repeat)
    t_c = median_time(lambda: _core.kmeans_plus_plus(x, None, k, trials - 1, 0), repeat)
    print(f"{name}: k-means++ sklearn {t_sk:.3f} s, centroid {t_c:.3f} s, speed-up {t_sk / t_c:.2f}x", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-fits", action="store_true")
    ap.add_argument("--no-seeding", action="store_true")
    args = ap.parse_args()
    # Random initial centres leave some of the 1000 clusters empty: that
    # warning is expected here.
    warnings.simplefilter("ignore")
    big = datasets.blobs(1_000_000, 8, 16, seed=1)
    wide = datasets.blobs(200_000, 128, 1000, seed=1)
    if not args.no_fits:
        fits("blobs-1M-8-k16", big, 16, (1, 21), args.repeat)
        fits("blobs-200k-128-k1000", wide, 1000, (1,), args.repeat)
    if not args.no_seeding:
        try:
            seeding("fashion-mnist-k100", datasets.fashion_mnist(), 100, args.threads, args.repeat)
        except FileNotFoundError as e:
            print(f"skipping fashion-mnist: {e}", file=sys.stderr)
        seeding("blobs-200k-128-k1000", wide, 1000, args.threads, max(1, args.repeat // 2))


if __name__ == "__main__":
    main()
