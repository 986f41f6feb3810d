//! The fast kernels, on every instruction-set path this CPU runs, against the
//! one-pair-at-a-time reference and against sums worked out here row by row.
#![allow(clippy::needless_range_loop)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::isa::Isa;
use super::seeding_pass::LowBits;
use super::*;
use crate::float::{DType, Float};
use crate::matrix::MatRef;

/// Every path this processor runs; the ones it lacks are reported as
/// skipped, or fail the test when `CENTROID_REQUIRE` names them.
fn paths() -> Vec<Isa> {
    let all = Isa::all();
    let mut have = Vec::new();
    for p in &all {
        match p {
            Isa::Portable => {}
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(_) => have.push("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(_) => have.push("avx512"),
        }
    }
    #[cfg(target_arch = "x86_64")]
    if super::isa::AmxBf16::detect().is_some() {
        have.push("amx");
    }
    #[cfg(target_arch = "x86_64")]
    if super::isa::Avx512Bf16::detect().is_some() {
        have.push("avx512bf16");
    }
    super::isa::require::check(&have);
    all
}

fn random_matrix<T: Float>(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Vec<T> {
    (0..rows * cols)
        .map(|_| T::from_f64_lossy(rng.gen_range(-3.0..3.0)))
        .collect()
}

/// Relative precision a distance may differ by between two evaluation
/// orders: a few hundred ulps of the element type.
fn eps<T: Float>() -> f64 {
    match T::DTYPE {
        DType::F32 => 2e-5,
        DType::F64 => 1e-12,
    }
}

/// Checks `labels`/`scores` against the brute-force distances: each label
/// is the reference's, or a centre whose distance is within a tiny relative
/// epsilon of the minimum (a near tie the two evaluation orders may split),
/// and each score is the distance of its label.
fn check_assignment<T: Float>(
    what: &str,
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    labels: &[u32],
    scores: &[T],
) {
    let reference = Reference::new(x, centres);
    check_against(what, x, centres, &reference, labels, scores)
}

/// The brute-force answers for one problem.
struct Reference<T> {
    labels: Vec<u32>,
    scores: Vec<T>,
    /// `n x k`.
    all: Vec<T>,
}

impl<T: Float> Reference<T> {
    fn new(x: MatRef<'_, T>, centres: &PreparedCentres<T>) -> Self {
        let (n, k) = (x.rows(), centres.k());
        let mut labels = vec![0u32; n];
        let mut scores = vec![T::zero(); n];
        assign_reference(x, centres, &mut labels, &mut scores);
        let mut all = vec![T::zero(); n * k];
        distances_reference(x, centres, &mut all);
        Self {
            labels,
            scores,
            all,
        }
    }
}

fn check_against<T: Float>(
    what: &str,
    x: MatRef<'_, T>,
    centres: &PreparedCentres<T>,
    reference: &Reference<T>,
    labels: &[u32],
    scores: &[T],
) {
    let (n, k) = (x.rows(), centres.k());
    let (ref_labels, ref_scores, all) = (&reference.labels, &reference.scores, &reference.all);
    for i in 0..n {
        let row = x.row(i);
        let scale = match centres.metric() {
            Metric::SquaredEuclidean => {
                let xs = dot(row, row).to_f64_exact();
                let cs = centres.sq_norms()[labels[i] as usize].to_f64_exact();
                xs + cs + 1.0
            }
            Metric::Cosine => 1.0,
        };
        let tol = eps::<T>() * scale * (x.cols() as f64).sqrt().max(1.0);
        let j = labels[i] as usize;
        assert!(j < k, "{what}: row {i} label {j} out of range (k = {k})");
        let mine = all[i * k + j].to_f64_exact();
        let best = ref_scores[i].to_f64_exact();
        if labels[i] != ref_labels[i] {
            assert!(
                (mine - best).abs() <= tol,
                "{what}: row {i} label {} (distance {mine}) but reference {} (distance {best}), tolerance {tol}",
                labels[i],
                ref_labels[i]
            );
        }
        let s = scores[i].to_f64_exact();
        assert!(
            (s - mine).abs() <= tol,
            "{what}: row {i} score {s}, distance of its centre {j} is {mine}, tolerance {tol}"
        );
        if centres.metric() == Metric::SquaredEuclidean {
            assert!(s >= 0.0, "{what}: row {i} negative squared distance {s}");
        }
    }
}

/// The statistics of `labels` worked out one row at a time.
fn expected_stats<T: Float>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    metric: Metric,
    k: usize,
    labels: &[u32],
    scores: &[T],
) -> ClusterStats {
    let d = x.cols();
    let mut st = ClusterStats::new(k, d);
    for i in 0..x.rows() {
        let j = labels[i] as usize;
        let w = weights.map_or(1.0, |w| w[i].to_f64_exact());
        let row = x.row(i);
        let norm: f64 = row
            .iter()
            .map(|v| v.to_f64_exact().powi(2))
            .sum::<f64>()
            .sqrt();
        let scale = match metric {
            Metric::SquaredEuclidean => w,
            Metric::Cosine => w / norm.max(COSINE_NORM_FLOOR),
        };
        for p in 0..d {
            st.sums[j * d + p] += scale * row[p].to_f64_exact();
        }
        st.weights[j] += w;
        st.counts[j] += 1;
        st.loss += w * scores[i].to_f64_exact();
    }
    st
}

fn assert_stats_close(what: &str, got: &ClusterStats, want: &ClusterStats) {
    assert_eq!(got.counts, want.counts, "{what}: counts");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()));
    for (i, (a, b)) in got.weights.iter().zip(&want.weights).enumerate() {
        assert!(close(*a, *b), "{what}: weight {i}: {a} vs {b}");
    }
    for (i, (a, b)) in got.sums.iter().zip(&want.sums).enumerate() {
        assert!(close(*a, *b), "{what}: sum {i}: {a} vs {b}");
    }
    assert!(
        close(got.loss, want.loss),
        "{what}: loss {} vs {}",
        got.loss,
        want.loss
    );
}

/// Runs every kernel entry point on every path for one problem and checks
/// them against the reference.
fn check_all_paths<T: Float>(
    what: &str,
    x: MatRef<'_, T>,
    c: MatRef<'_, T>,
    weights: Option<&[T]>,
    metric: Metric,
) {
    let (n, k) = (x.rows(), c.rows());
    let centres = PreparedCentres::new(c, metric);
    let reference = Reference::new(x, &centres);
    let ref_dist = &reference.all;
    for path in paths() {
        let what = format!("{what} {path:?} {metric:?} {}", T::DTYPE);
        let mut labels = vec![0u32; n];
        let mut scores = vec![T::zero(); n];
        assign_on(Some(path), x, &centres, &mut labels, Some(&mut scores));
        check_against(
            &format!("assign {what}"),
            x,
            &centres,
            &reference,
            &labels,
            &scores,
        );

        let mut acc_labels = vec![u32::MAX; n];
        let mut stats = ClusterStats::new(k, x.cols());
        stats.loss = 123.0; // must be reset
        assign_accumulate_on(
            Some(path),
            PARTIAL_BYTES,
            x,
            weights,
            &centres,
            Some(&mut acc_labels),
            &mut stats,
        );
        assert_eq!(
            acc_labels, labels,
            "assign_accumulate {what}: labels differ from assign's"
        );
        let want = expected_stats(x, weights, metric, k, &labels, &scores);
        assert_stats_close(&format!("assign_accumulate {what}"), &stats, &want);

        let mut dist = vec![T::zero(); n * k];
        distances_on(Some(path), x, &centres, &mut dist);
        for (i, (a, b)) in dist.iter().zip(ref_dist).enumerate() {
            let (a, b) = (a.to_f64_exact(), b.to_f64_exact());
            let row = x.row(i / k);
            let scale = match metric {
                Metric::SquaredEuclidean => {
                    dot(row, row).to_f64_exact() + centres.sq_norms()[i % k].to_f64_exact() + 1.0
                }
                Metric::Cosine => 1.0,
            };
            let tol = eps::<T>() * scale * (x.cols() as f64).sqrt().max(1.0);
            assert!(
                (a - b).abs() <= tol,
                "distances {what}: entry {i}: {a} vs reference {b}"
            );
            if metric == Metric::SquaredEuclidean {
                assert!(a >= 0.0, "distances {what}: entry {i} negative");
            }
        }
    }
}

fn random_problem<T: Float>(seed: u64, n: usize, d: usize, k: usize, weighted: bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = random_matrix::<T>(&mut rng, n, d);
    let c = random_matrix::<T>(&mut rng, k, d);
    let w: Option<Vec<T>> = weighted.then(|| {
        (0..n)
            .map(|_| T::from_f64_lossy(rng.gen_range(0.1..3.0)))
            .collect()
    });
    let x = MatRef::new(&x, n, d).unwrap();
    let c = MatRef::new(&c, k, d).unwrap();
    for metric in [Metric::SquaredEuclidean, Metric::Cosine] {
        check_all_paths(&format!("n={n} d={d} k={k}"), x, c, w.as_deref(), metric);
    }
}

#[test]
fn every_path_matches_the_reference_on_random_shapes() {
    // (n, d, k): small and odd sizes around the tile and panel widths, the
    // small-d register path, several centre blocks, and more than one chunk.
    let shapes = [
        (1, 1, 1),
        (7, 1, 3),
        (33, 2, 17),
        (65, 3, 16),
        (100, 8, 16),
        (9, 15, 33),
        (50, 16, 31),
        (41, 17, 64),
        (30, 33, 129),
        (19, 64, 257),
        (12, 300, 40),
        (5, 300, 2000),
        (3, 128, 2000),
        (CHUNK_ROWS + 37, 5, 9),
        // The row-dot kernel (k <= 16, d > 16): one centre, k not a
        // multiple of its group, d not a multiple of any vector width, rows
        // not a multiple of its tile, Fashion-MNIST's width, several chunks.
        (13, 17, 1),
        (37, 20, 5),
        (29, 100, 10),
        (7, 33, 16),
        (45, 784, 10),
        (CHUNK_ROWS + 5, 40, 12),
        // Groups of five where five divides k (rowdot::group_for).
        (23, 40, 15),
        (11, 784, 5),
    ];
    for (s, &(n, d, k)) in shapes.iter().enumerate() {
        random_problem::<f32>(s as u64, n, d, k, s % 2 == 0);
        random_problem::<f64>(100 + s as u64, n, d, k, s % 2 == 1);
    }
}

#[test]
fn the_row_dot_kernel_takes_few_wide_centres() {
    // The shapes above that should run it do: without its row-major
    // centres, every path would fall back to the tile kernel unnoticed.
    let c = vec![0.5f32; 17 * 784];
    for (k, d, takes) in [
        (10, 784, true),
        (16, 17, true),
        (1, 17, true),
        (17, 784, false),
        (10, 16, false),
    ] {
        let centres = PreparedCentres::new(
            MatRef::new(&c[..k * d], k, d).unwrap(),
            Metric::SquaredEuclidean,
        );
        for path in paths() {
            let packed = centres.packing_for(path);
            assert_eq!(packed.rows().is_some(), takes, "k={k} d={d} {path:?}");
            if let Some((rows, stride)) = packed.rows() {
                assert_eq!(stride % path.lanes::<f32>(), 0);
                assert!(stride >= d && rows.len() >= k * stride);
            }
        }
    }
}

#[test]
fn many_centre_blocks_match_the_reference() {
    // d = 300 with k = 2000 f64 is 4.8 MB of centres: several L2 blocks, so
    // results from later blocks must replace earlier ones only when smaller.
    random_problem::<f64>(7, 6, 300, 2000, true);
    random_problem::<f32>(8, 6, 256, 1500, false);
}

#[test]
fn ties_go_to_the_lowest_index_on_every_path() {
    // Small integers: every product and sum is exact, so the equal distances
    // are equal on every path and the lowest index must win.
    for (path, pad) in paths().into_iter().flat_map(|p| [(p, 0), (p, 18)]) {
        for metric in [Metric::SquaredEuclidean, Metric::Cosine] {
            // Centres (1,0) (-1,0) (0,1) (0,-1) (2,0) (-3,3) (1,1) (1,-1).
            // Worked out by hand, squared Euclidean: (0,0) is at 1 from
            // centres 0..=3 -> 0; (1.5,0) at 0.25 from 0 and 4 -> 0;
            // (0.5,0.5) at 0.5 from 0, 2 and 6 -> 0; (-1,-1) at 1 from 1 and
            // 3 -> 1. Cosine: (0,0) is at 1 from all -> 0; (1.5,0) matches
            // centres 0 and 4 exactly -> 0; (0.5,0.5) matches 6; (-1,-1) is
            // at 1 - 1/sqrt(2) from 1 and 3 -> 1.
            let c: Vec<f32> = vec![
                1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0, 2.0, 0.0, -3.0, 3.0, 1.0, 1.0, 1.0, -1.0,
            ];
            let x: Vec<f32> = vec![0.0, 0.0, 1.5, 0.0, 0.5, 0.5, -1.0, -1.0];
            // The same points padded with zeros to d = 2 + pad: pad = 18
            // runs the row-dot kernel, and the distances are unchanged.
            let widen = |v: &[f32], rows: usize| -> Vec<f32> {
                v.chunks(2)
                    .flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0.0, pad)))
                    .take(rows * (2 + pad))
                    .collect()
            };
            let (c, x) = (widen(&c, 8), widen(&x, 4));
            let c = MatRef::new(&c, 8, 2 + pad).unwrap();
            let x = MatRef::new(&x, 4, 2 + pad).unwrap();
            let centres = PreparedCentres::new(c, metric);
            let mut labels = vec![9u32; 4];
            let mut scores = vec![0f32; 4];
            assign_on(Some(path), x, &centres, &mut labels, Some(&mut scores));
            match metric {
                Metric::SquaredEuclidean => {
                    assert_eq!(labels, vec![0, 0, 0, 1], "{path:?} pad {pad}");
                    assert_eq!(scores, vec![1.0, 0.25, 0.5, 1.0], "{path:?}");
                }
                Metric::Cosine => {
                    assert_eq!(labels, vec![0, 0, 6, 1], "{path:?}");
                    assert_eq!(scores[0], 1.0, "{path:?}");
                    assert_eq!(scores[1], 0.0, "{path:?}");
                    assert!(
                        (scores[3] - (1.0 - 0.5f32.sqrt())).abs() < 1e-6,
                        "{path:?}: {}",
                        scores[3]
                    );
                }
            }
            let mut stats = ClusterStats::new(8, 2 + pad);
            let mut acc_labels = vec![9u32; 4];
            assign_accumulate_on(
                Some(path),
                PARTIAL_BYTES,
                x,
                None,
                &centres,
                Some(&mut acc_labels),
                &mut stats,
            );
            assert_eq!(acc_labels, labels, "{path:?}");
        }
    }
}

#[test]
fn duplicate_centres_go_to_the_first_copy() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (n, d) = (300, 20);
    let base = random_matrix::<f32>(&mut rng, 40, d);
    // 120 centres: the 40 random ones three times over, so copies sit in
    // different lanes and different panels of every path.
    let mut c = base.clone();
    c.extend_from_slice(&base);
    c.extend_from_slice(&base);
    let x = random_matrix::<f32>(&mut rng, n, d);
    let (x, c) = (
        MatRef::new(&x, n, d).unwrap(),
        MatRef::new(&c, 120, d).unwrap(),
    );
    for metric in [Metric::SquaredEuclidean, Metric::Cosine] {
        let centres = PreparedCentres::new(c, metric);
        for path in paths() {
            let mut labels = vec![0u32; n];
            let mut scores = vec![0f32; n];
            assign_on(Some(path), x, &centres, &mut labels, Some(&mut scores));
            assert!(
                labels.iter().all(|&l| l < 40),
                "{path:?} {metric:?}: a later copy won a tie"
            );
            check_assignment(
                &format!("duplicates {path:?}"),
                x,
                &centres,
                &labels,
                &scores,
            );
        }
    }
}

#[test]
fn one_and_two_threads_give_bit_identical_results() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (n, d, k) = (3 * CHUNK_ROWS + 123, 12, 37);
    let x = random_matrix::<f32>(&mut rng, n, d);
    let c = random_matrix::<f32>(&mut rng, k, d);
    let w: Vec<f32> = (0..n).map(|_| rng.gen_range(0.5..2.0)).collect();
    let (x, c) = (
        MatRef::new(&x, n, d).unwrap(),
        MatRef::new(&c, k, d).unwrap(),
    );
    for metric in [Metric::SquaredEuclidean, Metric::Cosine] {
        let centres = PreparedCentres::new(c, metric);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut labels = vec![0u32; n];
                let mut stats = ClusterStats::new(k, d);
                assign_accumulate(x, Some(&w), &centres, Some(&mut labels), &mut stats);
                let mut pot_min = vec![f64::INFINITY; n];
                update_min_distances(
                    x,
                    &PreparedCentres::new(x.slice_rows(0, 1), metric),
                    &mut pot_min,
                );
                let pots = candidate_potentials(x, Some(&w), &pot_min, &centres);
                (labels, stats, pots)
            })
        };
        let (l1, s1, p1) = run(1);
        let (l2, s2, p2) = run(2);
        assert_eq!(l1, l2);
        assert_eq!(
            s1.sums.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            s2.sums.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(s1, s2);
        assert_eq!(s1.loss.to_bits(), s2.loss.to_bits());
        assert_eq!(
            p1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            p2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}

#[test]
fn merging_in_small_groups_changes_no_bit() {
    // A tiny partial budget merges after every `threads` chunks instead of
    // once: the same additions in the same order, so the same bits, at one
    // and at two threads.
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let (n, d, k) = (5 * CHUNK_ROWS + 7, 24, 70);
    let x = random_matrix::<f32>(&mut rng, n, d);
    let c = random_matrix::<f32>(&mut rng, k, d);
    let (x, c) = (
        MatRef::new(&x, n, d).unwrap(),
        MatRef::new(&c, k, d).unwrap(),
    );
    let centres = PreparedCentres::new(c, Metric::SquaredEuclidean);
    let run = |threads: usize, budget: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut stats = ClusterStats::new(k, d);
            assign_accumulate_on(None, budget, x, None, &centres, None, &mut stats);
            stats
        })
    };
    let bits = |s: &ClusterStats| {
        let mut b: Vec<u64> = s.sums.iter().map(|v| v.to_bits()).collect();
        b.extend(s.weights.iter().map(|v| v.to_bits()));
        b.push(s.loss.to_bits());
        b
    };
    let whole = run(2, PARTIAL_BYTES);
    for (threads, budget) in [(1, 0), (2, 0), (1, PARTIAL_BYTES)] {
        let other = run(threads, budget);
        assert_eq!(
            bits(&other),
            bits(&whole),
            "threads {threads}, budget {budget}"
        );
        assert_eq!(other.counts, whole.counts);
    }
}

#[test]
fn zero_rows_and_zero_centres() {
    let c = vec![1.0f32, 2.0];
    let centres = PreparedCentres::new(MatRef::new(&c, 1, 2).unwrap(), Metric::SquaredEuclidean);
    let empty: Vec<f32> = Vec::new();
    let x = MatRef::new(&empty, 0, 2).unwrap();
    let mut stats = ClusterStats::new(1, 2);
    assign_accumulate(x, None, &centres, None, &mut stats);
    assert_eq!(stats, ClusterStats::new(1, 2));

    let none = PreparedCentres::new(MatRef::new(&empty, 0, 2).unwrap(), Metric::SquaredEuclidean);
    let xs = vec![1.0f32, 1.0, 2.0, 2.0];
    let x = MatRef::new(&xs, 2, 2).unwrap();
    let mut labels = vec![5u32; 2];
    let mut scores = vec![0f32; 2];
    assign(x, &none, &mut labels, &mut scores);
    assert_eq!(labels, vec![0, 0]);
    assert!(scores.iter().all(|s| s.is_infinite()));
}

#[test]
fn zero_rows_under_cosine_stay_finite() {
    // A zero row has x^ = 0: cosine distance 1 to every centre, centre 0.
    let c = vec![1.0f64, 0.0, 0.0, 3.0];
    let xs = vec![0.0f64, 0.0, 0.0, 2.0];
    let centres = PreparedCentres::new(MatRef::new(&c, 2, 2).unwrap(), Metric::Cosine);
    for path in paths() {
        let mut labels = vec![9u32; 2];
        let mut scores = vec![0f64; 2];
        assign_on(
            Some(path),
            MatRef::new(&xs, 2, 2).unwrap(),
            &centres,
            &mut labels,
            Some(&mut scores),
        );
        assert_eq!(labels, vec![0, 1], "{path:?}");
        assert_eq!(scores[0], 1.0, "{path:?}");
        assert!(scores[1].abs() < 1e-15, "{path:?}: {}", scores[1]);
    }
}

#[test]
fn squared_distances_are_clamped_at_zero() {
    // Rows equal to centres of large norm: ||x||^2 - 2x.c + ||c||^2 cancels
    // to about 0 and rounds to either side of it; the kernels must clamp,
    // and the error must stay at the rounding level of ||x||^2.
    let (n, d) = (64, 37);
    let v: Vec<f32> = (0..n * d)
        .map(|i| 1000.0 + (i % 97) as f32 * 0.37 + (i / d) as f32)
        .collect();
    let x = MatRef::new(&v, n, d).unwrap();
    let centres = PreparedCentres::new(x, Metric::SquaredEuclidean);
    for path in paths() {
        let mut labels = vec![0u32; n];
        let mut scores = vec![-1f32; n];
        assign_on(Some(path), x, &centres, &mut labels, Some(&mut scores));
        let mut dist = vec![-1f32; n * n];
        distances_on(Some(path), x, &centres, &mut dist);
        for i in 0..n {
            let bound = 1e-5 * 2.0 * dot(x.row(i), x.row(i));
            assert!(
                scores[i] >= 0.0 && scores[i] <= bound,
                "{path:?} row {i}: {}",
                scores[i]
            );
            assert!(
                dist[i * n + i] >= 0.0 && dist[i * n + i] <= bound,
                "{path:?} row {i}: {}",
                dist[i * n + i]
            );
        }
        assert!(
            dist.iter().all(|&v| v >= 0.0),
            "{path:?}: a negative distance"
        );
    }
}

#[test]
fn seeding_potentials_match_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (n, d) = (CHUNK_ROWS + 500, 6);
    let x = random_matrix::<f64>(&mut rng, n, d);
    let x = MatRef::new(&x, n, d).unwrap();
    let first = PreparedCentres::new(x.slice_rows(10, 11), Metric::SquaredEuclidean);
    let mut min_dist = vec![f64::INFINITY; n];
    update_min_distances(x, &first, &mut min_dist);
    for i in 0..n {
        let want: f64 = x
            .row(i)
            .iter()
            .zip(x.row(10))
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        assert!(
            (min_dist[i] - want).abs() <= 1e-9 * (1.0 + want),
            "row {i}: {} vs {want}",
            min_dist[i]
        );
    }
    let cand_rows = [3usize, 700, 2100];
    let cands: Vec<f64> = cand_rows.iter().flat_map(|&r| x.row(r).to_vec()).collect();
    let cands = PreparedCentres::new(MatRef::new(&cands, 3, d).unwrap(), Metric::SquaredEuclidean);
    let weights: Vec<f64> = (0..n).map(|i| 0.5 + (i % 7) as f64).collect();
    let pots = candidate_potentials(x, Some(&weights), &min_dist, &cands);
    for (ci, &r) in cand_rows.iter().enumerate() {
        let want: f64 = (0..n)
            .map(|i| {
                let dc: f64 = x
                    .row(i)
                    .iter()
                    .zip(x.row(r))
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum();
                weights[i] * dc.min(min_dist[i])
            })
            .sum();
        assert!(
            (pots[ci] - want).abs() <= 1e-9 * want,
            "candidate {ci}: {} vs {want}",
            pots[ci]
        );
    }
}

#[test]
fn fold_and_score_is_an_update_then_a_scoring_pass() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let (n, d) = (2 * CHUNK_ROWS + 77, 7);
    let x = random_matrix::<f32>(&mut rng, n, d);
    let x = MatRef::new(&x, n, d).unwrap();
    let w: Vec<f32> = (0..n).map(|i| (i % 3) as f32).collect();
    let first = PreparedCentres::new(x.slice_rows(5, 6), Metric::SquaredEuclidean);
    let mut base = vec![f64::INFINITY; n];
    update_min_distances(x, &first, &mut base);
    // Fold row 40, score rows 41..44.
    let set = PreparedCentres::new(x.slice_rows(40, 44), Metric::SquaredEuclidean);
    let (fold, cands) = (
        PreparedCentres::new(x.slice_rows(40, 41), Metric::SquaredEuclidean),
        PreparedCentres::new(x.slice_rows(41, 44), Metric::SquaredEuclidean),
    );
    let mut two = base.clone();
    update_min_distances(x, &fold, &mut two);
    let want = candidate_potentials(x, Some(&w), &two, &cands);
    let mut one = base.clone();
    let got = fold_and_score(x, Some(&w), &mut one, &set, 1);
    assert_eq!(
        one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        two.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(got.m, 3);
    assert_eq!(
        got.potentials
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>(),
        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // Chunk sums: each chunk's terms in row order, recomputable per chunk.
    assert_eq!(got.chunk_potentials.len(), 3 * n.div_ceil(CHUNK_ROWS));
    for (ci, sums) in got.chunk_potentials.chunks_exact(3).enumerate() {
        let start = ci * CHUNK_ROWS;
        let rows = (n - start).min(CHUNK_ROWS);
        for (j, &s) in sums.iter().enumerate() {
            let terms = seeding_terms(x, Some(&w), &one, &set, 1 + j, start, rows);
            let mut acc = 0.0f64;
            for t in &terms {
                acc += t;
            }
            assert_eq!(acc.to_bits(), s.to_bits(), "chunk {ci}, candidate {j}");
            // Every term is a multiple of 2^min_lsb.
            let unit = 2f64.powi(got.min_lsb[j]);
            assert!(terms.iter().all(|&t| (t / unit).fract() == 0.0));
        }
    }
}

/// A pruned seeding run against the unpruned passes: the same centres
/// folded and scored in the same order must leave the same `min_dist` and
/// the same potentials, chunk sums and low bits, to the bit. Returns the
/// rows the pruned passes skipped.
fn pruned_passes_match<T: Float>(x: MatRef<'_, T>, w: Option<&[T]>, picks: &[usize]) -> usize {
    let n = x.rows();
    let mut bounds = SeedingBounds::new(x, Metric::SquaredEuclidean).unwrap();
    let (mut plain, mut pruned) = (vec![f64::INFINITY; n], vec![f64::INFINITY; n]);
    let bits = |v: &[f64]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let mut skipped = 0;
    // Step s folds pick s - 1 (none at first) and scores picks s..s + 4;
    // every third step folds without scoring, as update_min_distances does.
    for s in 0..picks.len() {
        let fold = usize::from(s > 0);
        let rows: Vec<usize> = picks[s - fold..(s + 4).min(picks.len())].to_vec();
        let rows = if s % 3 == 2 {
            rows[..fold].to_vec()
        } else {
            rows
        };
        let mut set = crate::matrix::Matrix::with_capacity(rows.len(), x.cols());
        for &r in &rows {
            set.push_row(x.row(r));
        }
        let set = PreparedCentres::new(set.view(), Metric::SquaredEuclidean);
        let want = fold_and_score(x, w, &mut plain, &set, fold);
        let got = fold_and_score_pruned(x, w, &mut pruned, &mut bounds, &set, fold);
        let what = format!("{} step {s}", T::DTYPE);
        assert_eq!(bits(&pruned), bits(&plain), "{what}: min_dist");
        assert_eq!(
            bits(&got.potentials),
            bits(&want.potentials),
            "{what}: potentials"
        );
        assert_eq!(
            bits(&got.chunk_potentials),
            bits(&want.chunk_potentials),
            "{what}: chunk sums"
        );
        assert_eq!(got.min_lsb, want.min_lsb, "{what}: low bits");
        assert_eq!(want.skipped_rows, 0);
        skipped += got.skipped_rows;
    }
    skipped
}

#[test]
fn pruned_seeding_passes_change_no_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    // Clustered data (most rows are skipped once each group has a centre),
    // at widths for the lane, row-dot and tile kernels, f32 and f64, at 1
    // and 2 threads.
    for (n, d, groups) in [
        (CHUNK_ROWS + 300, 5, 12),
        (CHUNK_ROWS + 77, 40, 10),
        (900, 130, 8),
    ] {
        let centres: Vec<f64> = (0..groups * d)
            .map(|_| rng.gen_range(-20.0..20.0))
            .collect();
        let data: Vec<f64> = (0..n * d)
            .map(|i| centres[(i / d % groups) * d + i % d] + rng.gen_range(-1.0..1.0))
            .collect();
        let picks: Vec<usize> = (0..3 * groups).map(|i| (i * 7919 + 13) % n).collect();
        let w: Vec<f64> = (0..n).map(|i| 0.5 + (i % 5) as f64).collect();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let x32: Vec<f32> = data.iter().map(|&v| v as f32).collect();
                let w32: Vec<f32> = w.iter().map(|&v| v as f32).collect();
                let x32 = MatRef::new(&x32, n, d).unwrap();
                let skipped = pruned_passes_match(x32, None, &picks)
                    + pruned_passes_match(x32, Some(&w32), &picks);
                assert!(skipped > n, "n={n} d={d}: only {skipped} rows skipped");
                let x64 = MatRef::new(&data, n, d).unwrap();
                let skipped = pruned_passes_match(x64, Some(&w), &picks);
                assert!(skipped > n, "f64 n={n} d={d}: only {skipped} rows skipped");
            });
        }
    }
}

#[test]
fn pruned_seeding_keeps_exact_ties_and_duplicates() {
    // Small integers on a line, many duplicates: every distance is exact,
    // and rows sit exactly halfway between centres (x = 2 between 0 and 4:
    // ||c - a|| = 2 sqrt(D)), the boundary of the skipping test, where the
    // fold must leave the distance (a tie) and the terms unchanged.
    let n = CHUNK_ROWS + 50;
    let d = 20;
    let data: Vec<f32> = (0..n)
        .flat_map(|i| {
            let v = [0.0f32, 2.0, 4.0, 4.0, 8.0, 1.0][i % 6];
            std::iter::once(v).chain(std::iter::repeat_n(1.0, d - 1))
        })
        .collect();
    let x = MatRef::new(&data, n, d).unwrap();
    // Rows 0 (value 0), 2 (4), 4 (8), 1 (2), 5 (1).
    let skipped = pruned_passes_match(x, None, &[0, 2, 4, 1, 5, 3, 6]);
    assert!(skipped > 0, "nothing skipped");
}

#[test]
fn low_bits_bound_the_lowest_set_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(32);
    for _ in 0..200 {
        let len = rng.gen_range(1..20);
        let f32s = rng.gen_bool(0.5);
        let vals: Vec<f64> = (0..len)
            .map(|_| {
                if rng.gen_bool(0.2) {
                    return 0.0;
                }
                let v = rng.gen::<f64>() * 2f64.powi(rng.gen_range(-30..30));
                if f32s {
                    v as f32 as f64
                } else {
                    v
                }
            })
            .collect();
        let mut lb = LowBits::NONE;
        for &v in &vals {
            lb.add(v);
        }
        let e = lb.exponent();
        if vals.iter().all(|&v| v == 0.0) {
            assert_eq!(e, i32::MAX);
            continue;
        }
        let unit = 2f64.powi(e);
        assert!(
            vals.iter().all(|&v| (v / unit).fract() == 0.0),
            "{vals:?}: {e}"
        );
        if f32s {
            // f32 values have 24 significant bits: the bound is that tight.
            let min_exp = vals
                .iter()
                .filter(|&&v| v > 0.0)
                .map(|&v| v.log2().floor() as i32)
                .min()
                .unwrap();
            assert!(e >= min_exp - 23, "{vals:?}: {e} < {min_exp} - 23");
        }
    }
}
