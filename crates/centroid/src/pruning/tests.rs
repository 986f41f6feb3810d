//! Pruned Lloyd against the unpruned loop (bit for bit), the rounding bound
//! against the real kernels, and that pruning really skips rows.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::batch::{lloyd_with, LloydFit, Pruning};
use crate::float::finest_grid;
use crate::kernels::{Metric, CHUNK_ROWS};

use crate::in_pool;

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

/// [`blobs`] around 128 rounded to whole numbers in 0..=255: pixels, whose
/// sums are exact.
fn pixel_blobs(seed: u64, n: usize, d: usize, k: usize, scale: f64, spread: f64) -> Vec<f32> {
    blobs::<f32>(seed, n, d, k, scale, spread, 128.0)
        .into_iter()
        .map(|v| v.round().clamp(0.0, 255.0))
        .collect()
}

fn bits<T: Float>(m: &crate::matrix::Matrix<T>) -> Vec<u64> {
    m.as_slice()
        .iter()
        .map(|v| v.to_f64_exact().to_bits())
        .collect()
}

/// Asserts that two fits are the same to the bit, but for the final
/// inertia: a loop that ends pruning over exact sums takes it from the
/// sums (`Pruner::inertia`), another rounding of the same exact quantities
/// than summing every row's distance, so it agrees to about `d` f64
/// roundings.
fn assert_same<T: Float>(a: &LloydFit<T>, b: &LloydFit<T>, what: &str) {
    assert_eq!(a.labels, b.labels, "labels ({what})");
    assert_eq!(bits(&a.centres), bits(&b.centres), "centres ({what})");
    assert!(
        (a.inertia - b.inertia).abs() <= 1e-12 * b.inertia.abs(),
        "inertia ({what}): {} vs {}",
        a.inertia,
        b.inertia
    );
    assert_eq!(a.n_iter, b.n_iter, "n_iter ({what})");
    assert_eq!(a.stop, b.stop, "stop ({what})");
    let lb =
        |f: &LloydFit<T>| -> Vec<u64> { f.iteration_losses.iter().map(|v| v.to_bits()).collect() };
    assert_eq!(lb(a), lb(b), "iteration losses ({what})");
}

/// Runs Lloyd unpruned and pruned (1 and 2 threads, losses tracked and
/// not) and asserts that the results are the same to the bit; returns the
/// pruned run's (losses tracked) rows recomputed per iteration.
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
    for losses in [true, false] {
        let (plain, all) = in_pool(2, || {
            lloyd_with(xm, w, c, max_iter, tol, losses, Pruning::Off).unwrap()
        });
        assert!(
            all.iter().all(|&r| r == n),
            "the plain loop labels every row"
        );
        assert_eq!(
            plain.iteration_losses.len(),
            if losses { plain.n_iter } else { 0 }
        );
        for threads in [1, 2] {
            let (pruned, _) = in_pool(threads, || {
                lloyd_with(xm, w, c, max_iter, tol, losses, Pruning::On).unwrap()
            });
            assert_same(
                &pruned,
                &plain,
                &format!("{threads} threads, losses {losses}"),
            );
        }
    }
    in_pool(2, || {
        lloyd_with(xm, w, c, max_iter, tol, true, Pruning::On).unwrap()
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
        // d >= 64 keeps a lower bound per group of centres.
        for d in [1, 3, 20, 70] {
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
    let cmax = norms_up(cm).into_iter().fold(0.0, f64::max);
    let xnorms = norms_up(xm);
    let mut dist = vec![T::zero(); n * k];
    kernels::distances(xm, &prepared, &mut dist);
    let mut labels = vec![0u32; n];
    let mut scores = vec![T::zero(); n];
    kernels::assign(xm, &prepared, &mut labels, &mut scores);
    let mut decided = 0;
    for i in 0..n {
        let m = Rounding::m(xnorms[i], cmax);
        // For f32 inputs the f64 squared distance is within 2^-50 of exact.
        let exact: Vec<f64> = (0..k)
            .map(|j| crate::kernels::sq_dist_blocked(xm.row(i), cm.row(j)))
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
    // AMX or (on AMD) AVX512-BF16 the bf16 kernel (f32, k >= 32, d >= 64;
    // both engines compute distances with the same code).
    rounding_bound_holds::<f32>(20, 3000, 3, 8, 1e3);
    rounding_bound_holds::<f32>(21, 1000, 40, 100, 1e3);
    rounding_bound_holds::<f32>(22, 1000, 128, 64, 1e2);
    // The row-dot kernel (k <= 16, d > 16).
    rounding_bound_holds::<f32>(24, 1000, 40, 10, 1e3);
    rounding_bound_holds::<f32>(25, 300, 784, 16, 1e2);
    rounding_bound_holds::<f64>(26, 500, 33, 5, 1e6);
    rounding_bound_holds::<f64>(23, 1000, 40, 100, 1e6);
}

#[test]
fn the_exactness_test_of_the_sums() {
    // 2^53 is the first integer whose neighbours f64 cannot hold.
    assert!(sums_are_exact(1 << 20, 0, (1u64 << 32) as f64 - 1.0));
    assert!(!sums_are_exact(1 << 20, 0, (1u64 << 33) as f64));
    // Multiples of 2^-31 (f32 values of i / 255 below 1/128 carry such bits).
    assert!(sums_are_exact(70_000, -31, 1.0));
    assert!(!sums_are_exact(1 << 23, -31, 1.0));
    assert!(sums_are_exact(5, i32::MAX, 0.0), "all zero");
    // The check on real rows: pixels and pixels / 255 pass; f64 noise,
    // whose values use all 53 bits at every scale, does not.
    fn exact<T: Float>(x: &[T], d: usize) -> bool {
        Pruner::new(MatRef::new(x, x.len() / d, d).unwrap(), true)
            .unwrap()
            .exact_sums()
    }
    let mut rng = ChaCha8Rng::seed_from_u64(30);
    let pixels: Vec<f32> = (0..784 * 500)
        .map(|_| rng.gen_range(0..256) as f32)
        .collect();
    assert!(exact(&pixels, 784));
    let scaled: Vec<f32> = pixels.iter().map(|&v| v / 255.0).collect();
    assert!(exact(&scaled, 784));
    let noise: Vec<f64> = (0..784 * 500).map(|_| rng.gen_range(-1.0..1.0)).collect();
    assert!(!exact(&noise, 784));
    // Integers past 2^53 / n: their sums would round.
    let big: Vec<f64> = (0..1000).map(|i| ((1u64 << 50) + i) as f64).collect();
    assert!(!exact(&big, 10));
    assert!(exact(&big[..20], 10), "2 rows: sums below 2^52");
    let unchecked = Pruner::new(MatRef::new(&pixels, 500, 784).unwrap(), false).unwrap();
    assert!(!unchecked.exact_sums(), "not claimed unless checked");
}

/// Integer pixels: the pruned loop moves changed rows between exact sums
/// instead of summing afresh, and gives the bits of the unpruned loop and of
/// `lloyd`'s automatic choice (exact sums leave no room for the order of the
/// additions to show), while reading few rows after the first iterations.
#[test]
fn exact_sums_move_rows_and_keep_every_bit() {
    let (n, d, k) = (3 * CHUNK_ROWS + 17, 64, 24);
    let x = pixel_blobs(31, n, d, k, 100.0, 40.0);
    let xm = MatRef::new(&x, n, d).unwrap();
    assert!(Pruner::new(xm, true).unwrap().exact_sums());
    let c = MatRef::new(&x[..k * d], k, d).unwrap();
    let (plain, _) = in_pool(2, || {
        lloyd_with(xm, None, c, 25, 0.0, false, Pruning::Off).unwrap()
    });
    let mut inertia_bits = Vec::new();
    for threads in [1, 2] {
        let (pruned, rows) = in_pool(threads, || {
            lloyd_with(xm, None, c, 25, 0.0, false, Pruning::On).unwrap()
        });
        assert_same(&pruned, &plain, &format!("pruned, {threads} threads"));
        inertia_bits.push(pruned.inertia.to_bits());
        let (auto, _) = in_pool(threads, || {
            lloyd_with(xm, None, c, 25, 0.0, false, Pruning::Auto).unwrap()
        });
        assert_same(&auto, &plain, &format!("automatic, {threads} threads"));
        assert!(pruned.n_iter >= 5, "{}", pruned.n_iter);
        let last = rows[rows.len() - 1];
        assert!(last * 10 < n, "{last} of {n} rows recomputed: {rows:?}");
    }
    assert_eq!(
        inertia_bits[0], inertia_bits[1],
        "the inertia from the sums is the same at 1 and 2 threads"
    );
    // The same rows as f64 (exact too), and scaled by 1/255 in f32.
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    same_fit(&x64, d, None, &x64[..k * d], 25, 0.0);
    let scaled: Vec<f32> = x.iter().map(|&v| v / 255.0).collect();
    same_fit(&scaled, d, None, &scaled[..k * d], 25, 0.0);
}

/// A fit's unpruned passes over exact sums, once few labels change, label
/// the rows and move those that changed between the clusters' sums
/// (`LloydPasses::scan_for_moves`). Each pass of the loop, moved, pruned or
/// neither, must give the labels, sums, weights and counts of the fused
/// kernel run afresh on every row with the same centres, to the bit, at 1
/// and 2 threads.
#[test]
fn unpruned_passes_on_exact_sums_move_rows_bit_for_bit() {
    use crate::batch::{update_centres, LloydPasses, Unpruned};
    use crate::kernels::{assign_accumulate, ClusterStats};
    // Overlapping clusters of whole numbers: labels keep changing for many
    // passes, a few percent in each.
    let (n, d, k) = (3 * CHUNK_ROWS + 17, 128, 10);
    let x = pixel_blobs(5, n, d, k, 10.0, 100.0);
    let xm = MatRef::new(&x, n, d).unwrap();
    assert!(Pruner::new(xm, true).unwrap().exact_sums());
    for threads in [1, 2] {
        let (moved, passes_run) = in_pool(threads, || {
            let mut passes = LloydPasses::new(xm, k, Pruning::Auto, Unpruned::Fused, true);
            let mut centres = crate::matrix::Matrix::new(x[..k * d].to_vec(), k, d).unwrap();
            let mut stats = ClusterStats::new(k, d);
            let mut run = 0;
            for pass in 0..40 {
                let prepared = PreparedCentres::new(centres.view(), Metric::SquaredEuclidean);
                let rows = passes.pass(xm, None, &prepared, &mut stats, false);
                let mut want_labels = vec![0; n];
                let mut want = ClusterStats::new(k, d);
                assign_accumulate(xm, None, &prepared, Some(&mut want_labels), &mut want);
                let what = format!("pass {pass}, {threads} threads");
                assert!(passes.labels == want_labels, "labels, {what}");
                let b = |v: &[f64]| v.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
                assert_eq!(b(&stats.sums), b(&want.sums), "sums, {what}");
                assert_eq!(b(&stats.weights), b(&want.weights), "weights, {what}");
                assert_eq!(stats.counts, want.counts, "counts, {what}");
                assert!(
                    want.counts.iter().all(|&c| c > 0),
                    "no empty cluster, {what}"
                );
                run += 1;
                if passes.end_pass(xm, rows) == Some(0) {
                    break;
                }
                update_centres(&mut centres, &stats);
            }
            (passes.moved_passes, run)
        });
        assert!(
            moved >= 3,
            "{moved} of {passes_run} passes moved rows ({threads} threads)"
        );
    }
}

/// The lowest power of two `v` (finite, non-zero) is a multiple of, from
/// its bits: `v = m 2^e` with `m` odd, so `v` is a multiple of `2^q` exactly
/// when `q <= e`.
fn lowest_power(v: f64) -> i32 {
    let bits = v.abs().to_bits();
    let biased = (bits >> 52) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    let (m, e) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), biased - 1075)
    };
    e + m.trailing_zeros() as i32
}

#[test]
fn the_finest_grid_agrees_with_the_bits_in_f32_and_f64() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Whole numbers, halves, values near f32's and f64's ends (subnormals
    // included), and noise at many scales.
    let mut values: Vec<f64> = vec![0.0, 1.0, 3.0, 2.5, 255.0, 1.0 / 255.0, 1e-45, 1e-40, 3e38];
    values.extend([f64::MIN_POSITIVE, 5e-324, 1e300, (1u64 << 52) as f64 + 2.0]);
    for _ in 0..400 {
        let scale = 2f64.powi(rng.gen_range(-140..120));
        values.push((rng.gen_range(0..1 << 20) as f64) * scale);
        values.push(rng.gen_range(-1.0..1.0) * scale);
    }
    for &v in &values {
        let want = if v == 0.0 { i32::MAX } else { lowest_power(v) };
        assert_eq!(finest_grid(&[v, -v, 0.0]), want, "f64 {v:e}");
        let v32 = v as f32;
        if v32.is_finite() {
            let want = if v32 == 0.0 {
                i32::MAX
            } else {
                lowest_power(v32 as f64)
            };
            assert_eq!(finest_grid(&[0.0, v32, -v32]), want, "f32 {v32:e}");
        }
    }
    // The finest value decides, wherever it sits in a long slice; all
    // zeros (or nothing) sit on every grid.
    let mut long = vec![4.0f32; 5000];
    assert_eq!(finest_grid(&long), 2);
    long[4321] = 6.0;
    assert_eq!(finest_grid(&long), 1);
    long[17] = 0.375;
    assert_eq!(finest_grid(&long), -3);
    assert_eq!(finest_grid(&[0.0f64; 9]), i32::MAX);
    assert_eq!(finest_grid::<f32>(&[]), i32::MAX);
}

#[test]
fn group_bounds_round_down_to_f32() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut values = vec![0.0, -1.0, 1e-50, 1e50, f64::MAX, f64::INFINITY, 1.0 + 1e-12];
    for _ in 0..1000 {
        values.push(rng.gen_range(0.0..1.0) * 2f64.powi(rng.gen_range(-160..140)));
    }
    for v in values {
        let f = f32_down(v);
        let floor = v.max(0.0);
        assert!(f as f64 <= floor, "{v:e} -> {f:e}");
        // And the largest such f32 (or f32::MAX beyond its range).
        let next = f.next_up();
        assert!(
            next as f64 > floor || f == f32::MAX || f == f32::INFINITY,
            "{v:e} -> {f:e}"
        );
    }
}

#[test]
fn a_distance_value_gives_a_lower_bound_below_its_square_root_and_close_to_it() {
    // `lower_bound` (branch-free) against the composition it replaces, and
    // against what it must be: an f32 whose square is at most `v - err`,
    // within a few f32 roundings of the square root, +inf for +inf, 0 where
    // the error swallows the value.
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let mut cases = vec![
        (0.0, 0.0),
        (0.0, 1.0),
        (1.0, 2.0),
        (4.0, 0.0),
        (f64::INFINITY, 1e3),
        (f32::MAX as f64, 1.0),
        (1e-300, 0.0),
    ];
    for _ in 0..20_000 {
        let v = rng.gen_range(0.0..1.0) * 2f64.powi(rng.gen_range(-140..120));
        let err = v * rng.gen_range(0.0..1e-3) * f64::from(rng.gen_range(0..2));
        cases.push((v, err));
    }
    for (v, err) in cases {
        let f = lower_bound(v, err);
        let composed = if v.is_infinite() {
            f32::INFINITY
        } else {
            f32_down(down(down(v - err).max(0.0).sqrt()))
        };
        assert_eq!(f.to_bits(), composed.to_bits(), "v {v:e} err {err:e}");
        if v.is_infinite() {
            assert_eq!(f, f32::INFINITY);
            continue;
        }
        let f = f as f64;
        // f * f is exact in f64 (two 24-bit significands).
        assert!(
            f * f <= v - err || f == 0.0,
            "v {v:e} err {err:e}: {f:e} too large"
        );
        let room = v - err;
        if room > 1e-30 {
            assert!(
                f * f >= room * (1.0 - 1e-6),
                "v {v:e} err {err:e}: {f:e} looser than a few roundings"
            );
        } else {
            assert!(f * f <= 1e-30);
        }
    }
}

/// Separated blobs prune from the first pass; points spread evenly through
/// a wide box, where clusters overlap and bounds fail, prune from the
/// second pass only where no AMX tile unit computes the full passes (group
/// bounds then save most products), and never on it; all give the unpruned
/// loop's labels.
#[test]
fn many_centres_prune_at_once_only_where_clusters_are_separated() {
    let (n, d, k) = (2 * CHUNK_ROWS + 5, 80, 40);
    let separated: Vec<f32> = blobs(41, n, d, k, 100.0, 2.0, 0.0);
    let overlapping: Vec<f32> = blobs(42, n, d, 1, 0.0, 100.0, 0.0);
    for (name, x, want) in [
        ("separated", &separated, true),
        ("overlapping", &overlapping, false),
    ] {
        let xm = MatRef::new(x, n, d).unwrap();
        // Every `n / k`-th row as a centre: one near most blobs' centres.
        let rows: Vec<f32> = (0..k)
            .flat_map(|j| x[(j * n / k) * d..(j * n / k + 1) * d].iter().copied())
            .collect();
        let c = MatRef::new(&rows, k, d).unwrap();
        let prepared = PreparedCentres::new(c, crate::kernels::Metric::SquaredEuclidean);
        assert_eq!(well_separated(xm, &prepared), want, "{name}");
        let want = want || !prepared.on_bf16_products();
        let (auto, kernel_rows) = in_pool(2, || {
            lloyd_with(xm, None, c, 6, 0.0, false, Pruning::Auto).unwrap()
        });
        let (plain, _) = in_pool(2, || {
            lloyd_with(xm, None, c, 6, 0.0, false, Pruning::Off).unwrap()
        });
        assert_eq!(auto.labels, plain.labels, "{name}");
        let pruned_some = kernel_rows.iter().any(|&r| r < n);
        assert_eq!(pruned_some, want, "{name}: {kernel_rows:?}");
    }
}

/// The inertia taken from exact sums (`Pruner::inertia`) agrees with every
/// row's distance summed in f64, on pixels; on continuous values, whose
/// squared norms do not sum exactly, it declines.
#[test]
fn the_inertia_from_exact_sums_matches_every_row_summed() {
    let (n, d, k) = (2 * CHUNK_ROWS + 9, 96, 7);
    let x: Vec<f32> = pixel_blobs(41, n, d, k, 100.0, 40.0)
        .into_iter()
        .map(|v| v - 73.0)
        .collect();
    let labels: Vec<usize> = (0..n).map(|i| (i * 5 + i / 3) % k).collect();
    let sums_and_means = |x: &[f32]| {
        let mut stats = ClusterStats::new(k, d);
        for (i, &j) in labels.iter().enumerate() {
            for p in 0..d {
                stats.sums[j * d + p] += x[i * d + p] as f64;
            }
            stats.weights[j] += 1.0;
            stats.counts[j] += 1;
        }
        let means: Vec<f32> = (0..k * d)
            .map(|v| (stats.sums[v] / stats.weights[v / d]) as f32)
            .collect();
        (stats, means)
    };
    // Every row's squared distance (each difference exact in f64), added
    // with Neumaier's compensation: a plain sum of these 2 million terms
    // could itself stray by more than 1e-12.
    let brute = |x: &[f32], c: &[f32]| -> f64 {
        let (mut total, mut lost) = (0.0f64, 0.0f64);
        for (i, &j) in labels.iter().enumerate() {
            for p in 0..d {
                let t = x[i * d + p] as f64 - c[j * d + p] as f64;
                let sq = t * t;
                let next = total + sq;
                lost += if total.abs() >= sq {
                    (total - next) + sq
                } else {
                    (sq - next) + total
                };
                total = next;
            }
        }
        total + lost
    };
    let (stats, means) = sums_and_means(&x);
    let xm = MatRef::new(&x, n, d).unwrap();
    let pruner = Pruner::new(xm, true).unwrap();
    let got = pruner
        .inertia(&stats, MatRef::new(&means, k, d).unwrap())
        .expect("pixels have exact sums and squared norms");
    let want = brute(&x, &means);
    assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
    // Centres away from the means: the same identity holds.
    let moved: Vec<f32> = means
        .iter()
        .enumerate()
        .map(|(v, &m)| m + (v % 3) as f32 - 1.0)
        .collect();
    let got = pruner
        .inertia(&stats, MatRef::new(&moved, k, d).unwrap())
        .unwrap();
    let want = brute(&x, &moved);
    assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
    // Far from the origin the inertia is a small part of the squared
    // norms (here about 2e-4): the terms cancel, and a plain f64 sum of
    // them could not be bounded within 1e-12; the compensated one is.
    let far: Vec<f32> = x.iter().map(|&v| v + 3000.0).collect();
    let (stats, means) = sums_and_means(&far);
    let pruner = Pruner::new(MatRef::new(&far, n, d).unwrap(), true).unwrap();
    let got = pruner
        .inertia(&stats, MatRef::new(&means, k, d).unwrap())
        .expect("whole numbers far from the origin still have exact sums");
    let want = brute(&far, &means);
    assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
    // Continuous values: the squared norms' total rounds, so no answer.
    let noise: Vec<f32> = blobs::<f32>(42, n, d, k, 1.0, 0.7, 0.0);
    let (stats, means) = sums_and_means(&noise);
    let pruner = Pruner::new(MatRef::new(&noise, n, d).unwrap(), true).unwrap();
    assert!(pruner
        .inertia(&stats, MatRef::new(&means, k, d).unwrap())
        .is_none());
}

/// Every row's bounds after a pass that starts with distances (no bounds
/// before it: the upper bound then comes from the kernel distance plus its
/// proven error) hold against the exact distances, worked out here in
/// f64 from the rows and centres: `upper >= ||x - c_label||` and each group
/// bound at most the distance to every other centre of its group. On
/// near ties at a large offset (where the kernels' rounding is of the
/// order of the gaps), on blobs, narrow and wide, f32 and f64.
#[test]
fn a_fresh_pass_leaves_bounds_that_hold() {
    fn check<T: Float>(x: &[T], c: &[T], d: usize, what: &str) {
        let (n, k) = (x.len() / d, c.len() / d);
        let x = MatRef::new(x, n, d).unwrap();
        let centres = MatRef::new(c, k, d).unwrap();
        let prepared = PreparedCentres::new(centres, crate::kernels::Metric::SquaredEuclidean);
        let mut pruner = Pruner::new(x, false).unwrap().start_with_distances();
        let (pass, norms, bounds, churned) = pruner.begin_pass(&prepared).unwrap();
        let mut labels = vec![0u32; n];
        match bounds {
            BoundsMut::One(b) => {
                label_every_chunk(&pass, norms, x, &mut labels, b, churned);
                assert_bounds_hold(x, centres, &pass.group_of, &labels, b, what);
            }
            BoundsMut::Grouped(b) => {
                label_every_chunk(&pass, norms, x, &mut labels, b, churned);
                assert_bounds_hold(x, centres, &pass.group_of, &labels, b, what);
            }
        }
    }
    for d in [3, 70] {
        let (x, c) = near_ties::<f32>(1e3, d);
        check(&x, &c, d, &format!("near ties f32 d={d}"));
        let (x, c) = near_ties::<f64>(1e6, d);
        check(&x, &c, d, &format!("near ties f64 d={d}"));
        let x = blobs::<f32>(5, 3000, d, 10, 10.0, 3.0, 0.0);
        check(&x, &x[..10 * d], d, &format!("blobs f32 d={d}"));
    }
}

/// A pass whose bounds are valid (centres moved since the last one) and
/// grouped (wide rows): rows whose tightened bounds fail get distances only
/// to the groups their bounds no longer rule out (or, with few centres,
/// every bound renewed). Every label is still `kernels::assign`'s on the
/// moved centres, every new bound holds against f64 distances, and the
/// pass computed fewer distances than a full one. Near ties far from the
/// origin (rounding of the order of the gaps, duplicate centres), blobs
/// with k = 10 (every bound renewed) and k = 40 (groups of about three),
/// f32 and f64.
#[test]
fn a_grouped_pass_keeps_the_kernels_labels_and_bounds_that_hold() {
    fn check<T: Float>(x: &[T], c0: &[T], c1: &[T], d: usize, what: &str, saves: bool) {
        let (n, k) = (x.len() / d, c0.len() / d);
        let x = MatRef::new(x, n, d).unwrap();
        let mut pruner = Pruner::new(x, false).unwrap().start_with_distances();
        let mut labels = vec![0u32; n];
        let first = PreparedCentres::new(MatRef::new(c0, k, d).unwrap(), Metric::SquaredEuclidean);
        let (pass, norms, bounds, churned) = pruner.begin_pass(&first).unwrap();
        let BoundsMut::Grouped(b) = bounds else {
            panic!("{what}: wide rows keep a bound per group");
        };
        label_every_chunk(&pass, norms, x, &mut labels, b, churned);
        let centres = MatRef::new(c1, k, d).unwrap();
        let moved = PreparedCentres::new(centres, Metric::SquaredEuclidean);
        let (pass, norms, bounds, churned) = pruner.begin_pass(&moved).unwrap();
        let BoundsMut::Grouped(b) = bounds else {
            panic!("{what}: wide rows keep a bound per group");
        };
        let recomputed = label_every_chunk(&pass, norms, x, &mut labels, b, churned);
        // Near ties fail their bounds whatever the pass does.
        assert!(
            !saves || (recomputed > 0 && recomputed < n / 2),
            "{what}: {recomputed} of {n} rows' worth of distances"
        );
        let mut want = vec![0u32; n];
        let mut scores = vec![T::zero(); n];
        kernels::assign(x, &moved, &mut want, &mut scores);
        let differ = labels.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{what}: labels differ from the kernel's");
        assert_bounds_hold(x, centres, &pass.group_of, &labels, b, what);
    }
    /// `c` with every value moved by up to `step` (seeded).
    fn moved<T: Float>(c: &[T], step: f64, seed: u64) -> Vec<T> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        c.iter()
            .map(|&v| T::from_f64_lossy(v.to_f64_exact() + rng.gen_range(-step..=step)))
            .collect()
    }
    /// Near ties at `offset` with centres moved by up to `step`, and blobs
    /// with k = 10 and 40 (seeds: the near ties' move, the blobs, their
    /// move).
    fn cases<T: Float>(d: usize, offset: f64, step: f64, seeds: [u64; 3], ty: &str) {
        let (x, c) = near_ties::<T>(offset, d);
        let what = format!("near ties {ty} d={d}");
        check(&x, &c, &moved(&c, step, seeds[0]), d, &what, false);
        for k in [10, 40] {
            let x = blobs::<T>(seeds[1], 3000, d, k, 10.0, 3.0, 0.0);
            let c = &x[..k * d];
            let what = format!("blobs {ty} d={d} k={k}");
            check(&x, c, &moved(c, 0.05, seeds[2]), d, &what, true);
        }
    }
    for d in [70, 128] {
        cases::<f32>(d, 1e3, 1e-4, [1, 5, 3], "f32");
        cases::<f64>(d, 1e6, 1e-7, [2, 6, 4], "f64");
    }
}

/// One pass of `label_chunk` over every chunk of `x`; returns the rows'
/// worth of distances it computed.
fn label_every_chunk<T: Float, const G: usize>(
    pass: &PassCentres<'_, T>,
    norms: &[f64],
    x: MatRef<'_, T>,
    labels: &mut [u32],
    bounds: &mut [RowBounds<G>],
    churned: &[std::sync::atomic::AtomicBool],
) -> usize {
    labels
        .chunks_mut(CHUNK_ROWS)
        .zip(bounds.chunks_mut(CHUNK_ROWS))
        .enumerate()
        .map(|(c, (l, b))| label_chunk(pass, norms, x, c * CHUNK_ROWS, l, b, &churned[c]))
        .sum()
}

/// Every row's bounds hold against the exact distances, worked out here in
/// f64 from the rows and centres: `upper >= ||x - c_label||`, and each group
/// bound at most the distance to every other centre of its group (within
/// a few ulps of f64, the exact distance's own rounding).
fn assert_bounds_hold<T: Float, const G: usize>(
    x: MatRef<'_, T>,
    centres: MatRef<'_, T>,
    group_of: &[u8],
    labels: &[u32],
    bounds: &[RowBounds<G>],
    what: &str,
) {
    assert_eq!(bounds.len(), x.rows(), "{what}");
    let exact = |i: usize, j: usize| -> f64 {
        x.row(i)
            .iter()
            .zip(centres.row(j))
            .map(|(&a, &b)| (a.to_f64_exact() - b.to_f64_exact()).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let slack = 1.0 + 1e-12;
    for (i, b) in bounds.iter().enumerate() {
        let a = labels[i] as usize;
        assert!(
            b.upper * slack >= exact(i, a),
            "{what}: row {i} upper {} < {}",
            b.upper,
            exact(i, a)
        );
        for j in (0..centres.rows()).filter(|&j| j != a) {
            let g = group_of[j] as usize;
            assert!(
                b.lower[g] as f64 <= exact(i, j) * slack,
                "{what}: row {i} group {g} lower {} > {} (centre {j})",
                b.lower[g],
                exact(i, j)
            );
        }
    }
}

/// The first fused pass that scans each block as the kernel leaves it gives
/// the labels and clusters' sums of the plain fused pass and the scan of a
/// separate read (norms, largest value, grid, total of squares), at 1 and 2
/// threads, on the row-dot kernel (k = 10, d = 784), the bf16 path where
/// the processor has one (k = 40, d = 96) and the tile kernel (k = 40,
/// d = 20), with pixels (exact sums) and continuous values.
#[test]
fn a_pass_that_scans_as_it_goes_matches_a_pass_and_a_scan() {
    use crate::kernels::{assign_accumulate_reusing, assign_accumulate_scanning, Partials};
    let n = 2 * CHUNK_ROWS + 37;
    for (s, &(d, k)) in [(784, 10), (96, 40), (20, 40)].iter().enumerate() {
        let pixels = pixel_blobs(40 + s as u64, n, d, k, 100.0, 30.0);
        let continuous = blobs::<f32>(50 + s as u64, n, d, k, 10.0, 3.0, 0.0);
        for (x, pixel) in [(&pixels, true), (&continuous, false)] {
            let xm = MatRef::new(x, n, d).unwrap();
            let c = MatRef::new(&x[..k * d], k, d).unwrap();
            let prepared = PreparedCentres::new(c, Metric::SquaredEuclidean);
            let reference = Pruner::new(xm, true).unwrap();
            assert!(reference.exact_sums() || !pixel, "d={d} k={k}");
            let mut plain_labels = vec![0u32; n];
            let mut plain = ClusterStats::new(k, d);
            assign_accumulate_reusing(
                xm,
                None,
                &prepared,
                Some(&mut plain_labels),
                &mut plain,
                &mut Partials::default(),
            );
            for threads in [1, 2] {
                let (labels, stats, scanned) = in_pool(threads, || {
                    let mut labels = vec![0u32; n];
                    let mut stats = ClusterStats::new(k, d);
                    let scanned = scanned_by(xm, |after| {
                        assign_accumulate_scanning(
                            xm,
                            &prepared,
                            &mut labels,
                            &mut stats,
                            &mut Partials::default(),
                            &|a, b| {
                                assert_eq!(a / CHUNK_ROWS, (b - 1) / CHUNK_ROWS, "one chunk");
                                after(a, b)
                            },
                        )
                    });
                    (labels, stats, scanned.unwrap())
                });
                let what = format!("d={d} k={k} pixels={pixel} threads={threads}");
                assert_eq!(labels, plain_labels, "{what}");
                assert_eq!(stats.counts, plain.counts, "{what}");
                let sum_bits =
                    |s: &ClusterStats| s.sums.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(sum_bits(&stats), sum_bits(&plain), "{what}");
                let norm_bits =
                    |p: &Pruner<f32>| p.norms.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(norm_bits(&scanned), norm_bits(&reference), "{what}");
                assert_eq!(scanned.exact_sums(), reference.exact_sums(), "{what}");
                assert_eq!(
                    scanned.sq_norm_total.map(f64::to_bits),
                    reference.sq_norm_total.map(f64::to_bits),
                    "{what}"
                );
            }
        }
    }
}

/// `two_sum` and `two_product` give a rounded result and its exact error:
/// on whole numbers below 2^53, whose exact sums and products integer
/// arithmetic gives, the two parts add up to the exact value.
#[test]
fn sums_and_products_split_into_a_rounded_part_and_its_exact_error() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let exact = |hi: f64, lo: f64| hi as i128 + lo as i128;
    for _ in 0..20_000 {
        let bits_a = rng.gen_range(1..=53);
        let bits_b = rng.gen_range(1..=53);
        let a = (rng.gen::<u64>() >> (64 - bits_a)) as i64 * if rng.gen() { 1 } else { -1 };
        let b = (rng.gen::<u64>() >> (64 - bits_b)) as i64 * if rng.gen() { 1 } else { -1 };
        let (fa, fb) = (a as f64, b as f64);
        let (s, e) = two_sum(fa, fb);
        assert_eq!(s, fa + fb);
        assert_eq!(exact(s, e), a as i128 + b as i128, "{a} + {b}");
        let (p, e) = two_product(fa, fb);
        assert_eq!(p, fa * fb);
        // Both parts are whole numbers: the product's last bit is at
        // least 2^0.
        assert_eq!(e.fract(), 0.0, "{a} * {b}");
        assert_eq!(exact(p, e), a as i128 * b as i128, "{a} * {b}");
    }
}

/// Group bounds would hold where every row stays nearer its own centre,
/// grown by that centre's drift, than any other centre shrunk by its
/// group's largest drift. Four centres on one axis, 100 apart, in 64
/// dimensions (four groups), each with rows at distance 1 from it: with no
/// drift a row's own centre is at 1 and the next at 99 or more, so every
/// row passes; with every centre moved by 60, 1 + 60 exceeds 99 - 60, so
/// none does. (Worked by hand; the filter's arithmetic is plain f64.)
#[test]
fn group_bounds_would_hold_compares_drifted_distances() {
    let (d, k) = (64, 4);
    assert!(keeps_group_bounds(k, d));
    let centre = |j: usize| -> Vec<f32> {
        let mut c = vec![0.0f32; d];
        c[0] = 100.0 * j as f32;
        c
    };
    let centres: Vec<f32> = (0..k).flat_map(centre).collect();
    let x: Vec<f32> = (0..400)
        .flat_map(|i| {
            let mut row = centre(i % k);
            row[1 + i % (d - 1)] = if i % 2 == 0 { 1.0 } else { -1.0 };
            row
        })
        .collect();
    let xm = MatRef::new(&x, 400, d).unwrap();
    let prepared = PreparedCentres::new(
        MatRef::new(&centres, k, d).unwrap(),
        crate::kernels::Metric::SquaredEuclidean,
    );
    assert!(group_bounds_would_hold(xm, &prepared, &centres), "no drift");
    let mut moved = centres.clone();
    for j in 0..k {
        moved[j * d + 2] += 60.0;
    }
    assert!(!group_bounds_would_hold(xm, &prepared, &moved), "drift 60");
    // Drift 40: 1 + 40 < 99 - 40, every row passes.
    let mut near = centres.clone();
    for j in 0..k {
        near[j * d + 2] += 40.0;
    }
    assert!(group_bounds_would_hold(xm, &prepared, &near), "drift 40");
    assert!(
        !group_bounds_would_hold(xm, &prepared, &centres[..d]),
        "no last centres"
    );
}

/// Overlapping clusters of pixels in wide rows with many centres: on
/// AVX512-BF16 vector products (AMD Zen 4) the full passes run until labels
/// settle, then group bounds start where they would hold and prune the
/// passes after; where they keep reading nearly every row, the loop hands
/// back to full passes. Every run gives the unpruned loop's bits, at 1 and
/// 2 threads. Elsewhere (tile unit, f32 kernels) only the bits are checked.
#[test]
fn settled_labels_start_group_bounds_on_vector_bf16_products() {
    let (n, d, k) = (6 * CHUNK_ROWS + 5, 96, 40);
    // (scale, spread, true clusters, whether the pruner keeps going).
    for (scale, spread, true_k, keeps) in [(20.0, 40.0, 40, true), (25.0, 60.0, 60, false)] {
        let x = pixel_blobs(43, n, d, true_k, scale, spread);
        let xm = MatRef::new(&x, n, d).unwrap();
        let rows: Vec<f32> = (0..k)
            .flat_map(|j| x[(j * n / k) * d..(j * n / k + 1) * d].iter().copied())
            .collect();
        let c = MatRef::new(&rows, k, d).unwrap();
        let prepared = PreparedCentres::new(c, crate::kernels::Metric::SquaredEuclidean);
        assert!(!well_separated(xm, &prepared), "the clusters overlap");
        let what = format!("scale {scale}, spread {spread}");
        let (plain, _) = in_pool(2, || {
            lloyd_with(xm, None, c, 30, 0.0, false, Pruning::Off).unwrap()
        });
        for threads in [1, 2] {
            let (auto, kernel_rows) = in_pool(threads, || {
                lloyd_with(xm, None, c, 30, 0.0, false, Pruning::Auto).unwrap()
            });
            assert_same(&auto, &plain, &format!("{what}, {threads} threads"));
            if !prepared.on_vector_bf16_products() {
                continue;
            }
            // Full passes while labels settle (and the pass that starts
            // the bounds), then pruned ones.
            let first_pruned = kernel_rows.iter().position(|&r| r < n);
            assert!(
                first_pruned.is_some_and(|p| p >= 4),
                "{what}: {kernel_rows:?}"
            );
            let last = kernel_rows[kernel_rows.len() - 1];
            assert_eq!(last < n, keeps, "{what}: {kernel_rows:?}");
        }
    }
    if crate::kernels::Avx512Bf16::detect().is_none() {
        crate::kernels::require::skip(
            "avx512bf16",
            "AVX512-BF16 is not available here: the settled start was not exercised",
        );
    } else if !PreparedCentres::new(
        MatRef::new(&vec![1.0f32; k * d], k, d).unwrap(),
        crate::kernels::Metric::SquaredEuclidean,
    )
    .on_vector_bf16_products()
    {
        eprintln!(
            "the default bf16 engine here is the tile unit or none (CENTROID_BF16=1 \
             selects the vector products): only the bits were checked"
        );
    }
}
