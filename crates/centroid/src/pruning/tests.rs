//! Pruned Lloyd against the unpruned loop (bit for bit), the rounding bound
//! against the real kernels, and that pruning really skips rows.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::batch::{lloyd_with, LloydFit, Pruning};
use crate::kernels::CHUNK_ROWS;

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// `n` rows around `k` centres drawn in `[-scale, scale]^d`, each row the
/// centre plus uniform noise of width `spread`, all shifted by `offset`;
/// returns the rows and the first `k` rows' indices' values as centres (so
/// the start is data-like, as k-means++ would give).
fn blobs<T: Float>(
    seed: u64,
    n: usize,
    d: usize,
    k: usize,
    scale: f64,
    spread: f64,
    offset: f64,
) -> Vec<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f64> = (0..k * d).map(|_| rng.gen_range(-scale..=scale)).collect();
    let mut x = Vec::with_capacity(n * d);
    for _ in 0..n {
        let j = rng.gen_range(0..k);
        for p in 0..d {
            let v = offset + centres[j * d + p] + rng.gen_range(-spread..=spread);
            x.push(T::from_f64_lossy(v));
        }
    }
    x
}

/// Runs Lloyd unpruned and pruned (1 and 2 threads) and asserts that the
/// results are the same to the bit; returns the pruned run's rows
/// recomputed per iteration.
fn same_fit<T: Float>(
    x: &[T],
    d: usize,
    w: Option<&[T]>,
    init: &[T],
    max_iter: usize,
    tol: f64,
) -> (LloydFit<T>, Vec<usize>) {
    let n = x.len() / d;
    let k = init.len() / d;
    let xm = MatRef::new(x, n, d).unwrap();
    let c = MatRef::new(init, k, d).unwrap();
    let (plain, all) = in_pool(2, || {
        lloyd_with(xm, w, c, max_iter, tol, Pruning::Off).unwrap()
    });
    assert!(
        all.iter().all(|&r| r == n),
        "the plain loop labels every row"
    );
    for threads in [1, 2] {
        let (pruned, _) = in_pool(threads, || {
            lloyd_with(xm, w, c, max_iter, tol, Pruning::On).unwrap()
        });
        assert_eq!(pruned.labels, plain.labels, "labels ({threads} threads)");
        let bits = |m: &crate::matrix::Matrix<T>| -> Vec<u64> {
            m.as_slice()
                .iter()
                .map(|v| v.to_f64_exact().to_bits())
                .collect()
        };
        assert_eq!(bits(&pruned.centres), bits(&plain.centres), "centres");
        assert_eq!(pruned.inertia.to_bits(), plain.inertia.to_bits());
        assert_eq!(pruned.n_iter, plain.n_iter);
        assert_eq!(pruned.stop, plain.stop);
        let lb = |f: &LloydFit<T>| -> Vec<u64> {
            f.iteration_losses.iter().map(|v| v.to_bits()).collect()
        };
        assert_eq!(lb(&pruned), lb(&plain), "iteration losses");
    }
    in_pool(2, || {
        lloyd_with(xm, w, c, max_iter, tol, Pruning::On).unwrap()
    })
}

#[test]
fn well_separated_blobs_f32_and_f64_many_chunks() {
    let (n, d, k) = (3 * CHUNK_ROWS + 123, 3, 5);
    let x: Vec<f32> = blobs(1, n, d, k, 10.0, 1.0, 0.0);
    let (fit, rows) = same_fit(&x, d, None, &x[..k * d], 30, 0.0);
    assert!(fit.n_iter > 2, "{}", fit.n_iter);
    assert_eq!(rows[0], n, "the first pass has no bounds");
    let x: Vec<f64> = blobs(2, n, d, k, 10.0, 1.0, 0.0);
    same_fit(&x, d, None, &x[..k * d], 30, 0.0);
}

#[test]
fn widths_1_128_784_and_k_1_2_1000() {
    // d = 1, k = 2 (one chunk) and k = 1.
    let x: Vec<f32> = blobs(3, 1500, 1, 2, 5.0, 3.0, 0.0);
    same_fit(&x, 1, None, &x[..2], 20, 0.0);
    let (fit, rows) = same_fit(&x, 1, None, &x[..1], 5, 0.0);
    assert_eq!(fit.n_iter, 2, "k = 1 converges at once");
    assert_eq!(rows[1], 0, "with one centre no row is recomputed");
    // d = 128 (the AMX kernel's shapes on a processor with it: k >= 32).
    let x: Vec<f32> = blobs(4, 2500, 128, 40, 1.0, 0.8, 0.0);
    same_fit(&x, 128, None, &x[..40 * 128], 10, 0.0);
    let x: Vec<f64> = blobs(5, 700, 128, 8, 1.0, 0.8, 0.0);
    same_fit(&x, 128, None, &x[..8 * 128], 10, 0.0);
    // d = 784, pixel-like values.
    let x: Vec<f32> = blobs(6, 600, 784, 10, 100.0, 60.0, 128.0);
    same_fit(&x, 784, None, &x[..10 * 784], 8, 0.0);
    // k = 1000.
    let x: Vec<f32> = blobs(7, 2 * CHUNK_ROWS + 5, 3, 300, 50.0, 2.0, 0.0);
    same_fit(&x, 3, None, &x[..1000 * 3], 6, 0.0);
}

#[test]
fn weighted_rows_and_zero_weights() {
    let (n, d, k) = (2 * CHUNK_ROWS + 77, 4, 6);
    let x: Vec<f32> = blobs(8, n, d, k, 8.0, 2.0, 0.0);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let w: Vec<f32> = (0..n)
        .map(|i| {
            if i % 7 == 0 {
                0.0
            } else {
                rng.gen_range(0.1..3.0)
            }
        })
        .collect();
    same_fit(&x, d, Some(&w), &x[..k * d], 30, 0.0);
    let x: Vec<f64> = blobs(10, n, d, k, 8.0, 2.0, 0.0);
    let w: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    same_fit(&x, d, Some(&w), &x[..k * d], 30, 1e-9);
}

/// Rows on the bisector of two centres, exactly or within a few ulps,
/// duplicate centres (whose second copy empties and is relocated), and a
/// large offset from the origin so that the kernels' rounding is of the
/// order of the gaps.
fn near_ties<T: Float>(offset: f64, d: usize) -> (Vec<T>, Vec<T>) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let n = CHUNK_ROWS + 900;
    let mut x = Vec::with_capacity(n * d);
    for i in 0..n {
        let t = match i % 4 {
            0 => 0.0,                        // on the bisector
            1 => rng.gen_range(-1e-6..1e-6), // a few ulps away
            2 => rng.gen_range(-1.0..1.0),   // anywhere between
            _ => {
                if i % 8 == 3 {
                    -1.0
                } else {
                    1.0
                }
            } // on a centre
        };
        x.push(T::from_f64_lossy(offset + t));
        for _ in 1..d {
            x.push(T::from_f64_lossy(offset + rng.gen_range(-0.5..0.5)));
        }
    }
    let mut init = Vec::new();
    for (j, first) in [-1.0, 1.0, 1.0, 0.25].into_iter().enumerate() {
        init.push(T::from_f64_lossy(offset + first));
        for p in 1..d {
            init.push(T::from_f64_lossy(offset + 0.01 * ((j + p) % 3) as f64));
        }
    }
    (x, init)
}

#[test]
fn near_ties_duplicates_and_large_offsets() {
    for offset in [0.0, 1e4] {
        for d in [1, 3, 20] {
            let (x, init) = near_ties::<f32>(offset, d);
            same_fit(&x, d, None, &init, 15, 0.0);
            let (x, init) = near_ties::<f64>(offset, d);
            same_fit(&x, d, None, &init, 15, 0.0);
        }
    }
    // Every row duplicated on the exact midpoint of two duplicate-free
    // centres, k = 2: the kernel's tie rule (lowest index) must survive.
    let x = vec![1e4f32 + 0.5; 3 * 2000];
    let init = [1e4f32, 1e4, 1e4, 1e4 + 1.0, 1e4 + 1.0, 1e4 + 1.0];
    same_fit(&x, 3, None, &init, 5, 0.0);
}

#[test]
fn relocation_mid_run_resets_the_bounds() {
    // Centre 2 starts far from every row: it empties in the first
    // iteration, takes the farthest row, and the run goes on.
    let (n, d) = (2 * CHUNK_ROWS, 2);
    let x: Vec<f64> = blobs(12, n, d, 3, 10.0, 2.0, 0.0);
    let mut init = x[..2 * d].to_vec();
    init.extend_from_slice(&[1e3, 1e3]);
    let (fit, rows) = same_fit(&x, d, None, &init, 20, 0.0);
    assert!(fit.n_iter >= 3);
    assert_eq!(rows[1], n, "after the relocation every row is recomputed");
}

#[test]
fn pruning_skips_most_rows_after_a_few_iterations() {
    let (n, d, k) = (4 * CHUNK_ROWS, 16, 20);
    let x: Vec<f32> = blobs(13, n, d, k, 10.0, 1.5, 0.0);
    let (fit, rows) = same_fit(&x, d, None, &x[..k * d], 12, 0.0);
    // The first pass, and the one after a relocation (the first rows as
    // initial centres leave some clusters empty), recompute every row.
    let fresh = rows.iter().rposition(|&r| r == n).unwrap();
    assert!(rows.len() >= fresh + 5, "{rows:?}");
    for (it, &r) in rows.iter().enumerate().skip(fresh + 2) {
        assert!(
            r * 10 < n,
            "iteration {it}: {r} of {n} rows recomputed: {rows:?}"
        );
    }
    assert!(fit.n_iter >= 5);
}

/// The bound of the module comment against the real kernels: on rows and
/// centres far from the origin, every value of `kernels::distances` is
/// within `Ed` of the exact squared distance, and `kernels::assign` picks
/// the exact nearest centre whenever it wins by more than `tie`.
fn rounding_bound_holds<T: Float>(seed: u64, n: usize, d: usize, k: usize, offset: f64) {
    let x: Vec<T> = blobs(seed, n, d, k, 50.0, 50.0, offset);
    let c: Vec<T> = blobs(seed + 1, k, d, k, 50.0, 50.0, offset);
    let xm = MatRef::new(&x, n, d).unwrap();
    let cm = MatRef::new(&c, k, d).unwrap();
    let prepared = PreparedCentres::new(cm, crate::kernels::Metric::SquaredEuclidean);
    let r = Rounding::new::<T>(d).unwrap();
    let cmax = (0..k).map(|j| norm_up(cm.row(j))).fold(0.0, f64::max);
    let mut dist = vec![T::zero(); n * k];
    kernels::distances(xm, &prepared, &mut dist);
    let mut labels = vec![0u32; n];
    let mut scores = vec![T::zero(); n];
    kernels::assign(xm, &prepared, &mut labels, &mut scores);
    let mut decided = 0;
    for i in 0..n {
        let m = Rounding::m(norm_up(xm.row(i)), cmax);
        // For f32 inputs the f64 squared distance is within 2^-50 of exact.
        let exact: Vec<f64> = (0..k)
            .map(|j| crate::batch::sq_dist(xm.row(i), cm.row(j)))
            .collect();
        for j in 0..k {
            let err = (dist[i * k + j].to_f64_exact() - exact[j]).abs();
            assert!(
                err <= r.dist_err(m),
                "row {i} centre {j}: {err} > {}",
                r.dist_err(m)
            );
        }
        let mut best = 0;
        for j in 1..k {
            if exact[j] < exact[best] {
                best = j;
            }
        }
        let gap = (0..k)
            .filter(|&j| j != best)
            .map(|j| exact[j] - exact[best])
            .fold(f64::INFINITY, f64::min);
        if gap > r.tie(m) {
            decided += 1;
            assert_eq!(labels[i] as usize, best, "row {i}: gap {gap}");
        }
    }
    assert!(decided > n / 4, "only {decided} of {n} rows tested");
}

#[test]
fn rounding_bound_holds_on_every_kernel_path() {
    // Lane kernel (d <= 16, k <= 64), tile kernel, and on a processor with
    // AMX its kernel (f32, k >= 32, d >= 64).
    rounding_bound_holds::<f32>(20, 3000, 3, 8, 1e3);
    rounding_bound_holds::<f32>(21, 1000, 40, 100, 1e3);
    rounding_bound_holds::<f32>(22, 1000, 128, 64, 1e2);
    rounding_bound_holds::<f64>(23, 1000, 40, 100, 1e6);
}
