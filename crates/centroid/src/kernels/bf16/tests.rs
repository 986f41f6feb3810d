//! The bf16 kernel, on each engine this CPU runs (AMX tiles, AVX512-BF16
//! vector products), against f64 brute force (labels exact, distances to
//! f32 precision, sums those of the labels added in the kernels' order),
//! against the AVX-512 kernel (the same labels but on near ties) and
//! against each other (the same bits), on shapes that exercise padding,
//! many centre blocks, near ties, exact ties, non-finite rows and thread
//! counts.
#![allow(clippy::needless_range_loop)]
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::super::isa::{require, AmxBf16, Avx512Bf16, Avx512F, Isa};
use super::super::*;
use super::{split, Bf16Centres, Engine};
use crate::matrix::MatRef;

/// The engines this CPU runs; the tests of the others skip, saying so (or
/// fail, where `CENTROID_REQUIRE` names them).
fn engines() -> Vec<Engine> {
    let mut found = Vec::new();
    match AmxBf16::detect() {
        Some(t) => found.push(Engine::Tiles(t)),
        None => require::skip("amx", "AMX-BF16 is not available here"),
    }
    match Avx512Bf16::detect() {
        Some(t) => found.push(Engine::Dots(t)),
        None => require::skip("avx512bf16", "AVX512-BF16 is not available here"),
    }
    found
}

/// Centres prepared as usual, then packed for `engine`'s products.
fn prepared(engine: Engine, c: &[f32], k: usize, d: usize, metric: Metric) -> PreparedCentres<f32> {
    let mut p = PreparedCentres::new(MatRef::new(c, k, d).unwrap(), metric);
    let packed = Bf16Centres::on(engine, &p.centres, &p.sq_norms, k, d, metric);
    assert!(
        packed.is_some(),
        "k = {k}, d = {d} is a shape {engine:?} serves"
    );
    p.bf16 = packed.map(std::sync::Arc::new);
    p
}

/// f64 distances of one row to every centre, by the kernel's criterion
/// (squared distance, or minus the dot product with the normalised
/// centre under cosine).
fn exact_row(row: &[f32], centres: &[f32], d: usize, metric: Metric) -> Vec<f64> {
    centres
        .chunks_exact(d)
        .map(|c| match metric {
            Metric::SquaredEuclidean => row
                .iter()
                .zip(c)
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum(),
            Metric::Cosine => -row
                .iter()
                .zip(c)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>(),
        })
        .collect()
}

/// Runs the bf16 kernel on one problem on every engine: see
/// [`compare_on`]; the engines give the same labels, distances and sums to
/// the bit.
fn compare(what: &str, x: &[f32], c: &[f32], n: usize, d: usize, k: usize, metric: Metric) {
    let results: Vec<_> = engines()
        .into_iter()
        .map(|e| {
            (
                e,
                compare_on(e, &format!("{what} on {e:?}"), x, c, n, d, k, metric),
            )
        })
        .collect();
    for pair in results.windows(2) {
        let ((e0, r0), (e1, r1)) = (&pair[0], &pair[1]);
        assert_eq!(r0.0, r1.0, "{what}: labels on {e0:?} and {e1:?}");
        assert_eq!(r0.1, r1.1, "{what}: distances on {e0:?} and {e1:?}");
        assert_eq!(r0.2, r1.2, "{what}: statistics on {e0:?} and {e1:?}");
    }
}

/// Runs the bf16 kernel on one problem on `engine`: every label is the
/// exact nearest centre (f64 brute force), differs from the AVX-512
/// kernel's only on near ties that kernel's rounding cannot split, the
/// distances are accurate to f32, and the sums are those of the labels.
/// Returns the labels, distances and statistics.
#[allow(clippy::too_many_arguments)]
fn compare_on(
    engine: Engine,
    what: &str,
    x: &[f32],
    c: &[f32],
    n: usize,
    d: usize,
    k: usize,
    metric: Metric,
) -> (Vec<u32>, Vec<f32>, ClusterStats) {
    let centres = prepared(engine, c, k, d, metric);
    let xm = MatRef::new(x, n, d).unwrap();
    let w: Vec<f32> = (0..n).map(|i| 0.5 + (i % 3) as f32).collect();
    let (mut l_bf16, mut l_ref) = (vec![0u32; n], vec![0u32; n]);
    let (mut s_bf16, mut s_ref) = (vec![0f32; n], vec![0f32; n]);
    assign_on(None, xm, &centres, &mut l_bf16, Some(&mut s_bf16));
    let avx512 = Isa::Avx512(Avx512F::detect().expect("AMX comes with AVX-512F"));
    assign_on(Some(avx512), xm, &centres, &mut l_ref, Some(&mut s_ref));
    // The other product mode gives the same labels and distances.
    let packed = centres.bf16.as_deref().unwrap();
    let coarse = packed.try_coarse.load(std::sync::atomic::Ordering::Relaxed);
    packed
        .try_coarse
        .store(!coarse, std::sync::atomic::Ordering::Relaxed);
    let (mut l_other, mut s_other) = (vec![0u32; n], vec![0f32; n]);
    assign_on(None, xm, &centres, &mut l_other, Some(&mut s_other));
    assert_eq!(l_other, l_bf16, "{what}: labels in both product modes");
    assert_eq!(s_other, s_bf16, "{what}: distances in both product modes");
    // Without distances, the same labels (the rows' direct distances are
    // skipped).
    let mut l_alone = vec![u32::MAX; n];
    assign_on(None, xm, &centres, &mut l_alone, None);
    assert_eq!(l_alone, l_bf16, "{what}: labels without distances");
    // The sums of each 2048-row chunk, added in chunk order (as the
    // kernels reduce them).
    let mut want = ClusterStats::new(k, d);
    let mut chunk = ClusterStats::new(k, d);
    let mut exact_loss = 0.0;
    for i in 0..n {
        if i % CHUNK_ROWS == 0 && i > 0 {
            want.merge(&chunk);
            chunk.clear();
        }
        let row = &x[i * d..(i + 1) * d];
        let all = exact_row(row, &centres.centres, d, metric);
        let best = all.iter().cloned().fold(f64::INFINITY, f64::min);
        let (l, r) = (l_bf16[i] as usize, l_ref[i] as usize);
        assert!(
            all[l] <= best + 1e-12 * best.abs(),
            "{what}: row {i} label {l} at {} but the nearest is at {best}",
            all[l]
        );
        if l != r {
            let xs: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum();
            let tol = 2e-5 * (xs + centres.sq_norms()[l] as f64 + 1.0) * (d as f64).sqrt();
            assert!(
                (all[l] - all[r]).abs() <= tol,
                "{what}: row {i}: bf16 label {l} ({}) vs AVX-512 label {r} ({}) is no near tie",
                all[l],
                all[r]
            );
        }
        let exact = match metric {
            Metric::SquaredEuclidean => all[l],
            Metric::Cosine => 1.0 + all[l] * inv_norm(row),
        };
        exact_loss += w[i] as f64 * exact;
        let scale = match metric {
            Metric::SquaredEuclidean => exact + 1e-30,
            Metric::Cosine => 1.0,
        };
        assert!(
            (s_bf16[i] as f64 - exact).abs() <= 1e-5 * scale,
            "{what}: row {i} distance {} vs exact {exact}",
            s_bf16[i]
        );
        let scale = w[i] as f64
            * match metric {
                Metric::SquaredEuclidean => 1.0,
                Metric::Cosine => inv_norm(row),
            };
        for p in 0..d {
            chunk.sums[l * d + p] += scale * row[p] as f64;
        }
        chunk.weights[l] += w[i] as f64;
        chunk.counts[l] += 1;
    }
    want.merge(&chunk);
    let mut got = ClusterStats::new(k, d);
    let mut labels = vec![0u32; n];
    assign_accumulate_on(
        None,
        PARTIAL_BYTES,
        xm,
        Some(&w),
        &centres,
        Some(&mut labels),
        &mut got,
    );
    assert_eq!(labels, l_bf16, "{what}: accumulate's labels");
    assert_eq!(got.counts, want.counts, "{what}: counts");
    assert_eq!(got.weights, want.weights, "{what}: weights");
    if let Some(i) = (0..k * d).find(|&i| got.sums[i] != want.sums[i]) {
        panic!("{what}: sum {i}: {} vs {}", got.sums[i], want.sums[i]);
    }
    // Cosine distances are `1 - cos`, absolute f32 precision per row.
    let scale = match metric {
        Metric::SquaredEuclidean => exact_loss.abs(),
        Metric::Cosine => w.iter().map(|&v| v as f64).sum(),
    };
    assert!(
        (got.loss - exact_loss).abs() <= 1e-5 * scale,
        "{what}: loss {} vs exact {exact_loss}",
        got.loss
    );
    (l_bf16, s_bf16, got)
}

fn uniform(rng: &mut ChaCha8Rng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(lo..hi)).collect()
}

#[test]
fn labels_are_exact_on_random_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for &(n, d, k) in &[
        (100, 64, 32),
        (257, 65, 33),
        (2100, 95, 64),
        (4500, 97, 100),
        (700, 64, 257),
        (3000, 128, 1000),
        (300, 300, 2000),
        (500, 784, 100),
    ] {
        for metric in [Metric::SquaredEuclidean, Metric::Cosine] {
            let x = uniform(&mut rng, n * d, -3.0, 3.0);
            let c = uniform(&mut rng, k * d, -3.0, 3.0);
            compare(
                &format!("{n}x{d} k={k} {metric:?}"),
                &x,
                &c,
                n,
                d,
                k,
                metric,
            );
        }
    }
}

#[test]
fn near_ties_far_from_the_origin_are_decided_exactly() {
    // Pixel-like data (large, all positive) whose centres are close to
    // one another: many rows have several candidates, and rows exactly
    // halfway between two centres tie in exact arithmetic.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (n, d, k) = (3000, 96, 64);
    let base = uniform(&mut rng, d, 100.0, 200.0);
    let mut c = Vec::with_capacity(k * d);
    for _ in 0..k {
        c.extend(base.iter().map(|&b| b + rng.gen_range(-0.5f32..0.5)));
    }
    let mut x = Vec::with_capacity(n * d);
    for i in 0..n {
        let (a, b) = (i % k, (i * 7 + 3) % k);
        for p in 0..d {
            let v = match i % 3 {
                0 => 0.5 * (c[a * d + p] + c[b * d + p]),
                1 => c[a * d + p] + rng.gen_range(-0.01f32..0.01),
                _ => base[p] + rng.gen_range(-1.0f32..1.0),
            };
            x.push(v);
        }
    }
    compare("near ties", &x, &c, n, d, k, Metric::SquaredEuclidean);
    compare("near ties cosine", &x, &c, n, d, k, Metric::Cosine);
}

#[test]
fn pixel_rows_skip_the_low_segment_and_stay_exact() {
    // Integers 0..=255 have no low bf16 half: blocks of them skip the
    // first product segment; a block mixing them with other rows does
    // not.
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let (n, d, k) = (2500, 100, 50);
    let mut x: Vec<f32> = (0..n * d).map(|_| rng.gen_range(0..=255) as f32).collect();
    for v in &mut x[40 * d..41 * d] {
        *v += 0.3;
    }
    let c = uniform(&mut rng, k * d, 0.0, 255.0);
    compare("pixels", &x, &c, n, d, k, Metric::SquaredEuclidean);
    compare("pixels cosine", &x, &c, n, d, k, Metric::Cosine);
}

/// Rows `x` (96 of width 128) against 40 constant centres: `A = 128.5 -
/// 2^-9` (bf16 128) at index 17, `B = 128.5 + 2^-9` (bf16 129) at index 3,
/// the others far; asserts that every row goes to A, and that the kernel
/// agrees with the reference. B comes first, so a missed A shows as a
/// wrong label.
fn nearest_is_a_not_b(what: &str, x: &[f32]) {
    let (n, d, k) = (96, 128, 40);
    let (a, b) = (128.5f32 - 1.0 / 512.0, 128.5f32 + 1.0 / 512.0);
    let mut c = Vec::with_capacity(k * d);
    for j in 0..k {
        let v = match j {
            3 => b,
            17 => a,
            // Far from every row.
            _ => 250.0 - j as f32,
        };
        c.extend(std::iter::repeat_n(v, d));
    }
    let Some(&engine) = engines().first() else {
        return;
    };
    let centres = prepared(engine, &c, k, d, Metric::SquaredEuclidean);
    let xm = MatRef::new(x, n, d).unwrap();
    let mut labels = vec![0u32; n];
    assign_on(None, xm, &centres, &mut labels, None);
    assert!(labels.iter().all(|&l| l == 17), "{what}: labels {labels:?}");
    compare(what, x, &c, n, d, k, Metric::SquaredEuclidean);
}

#[test]
fn whole_rows_keep_their_nearest_centre_in_the_coarse_margin() {
    // Rows of 128s (exact in bf16, x_lo = 0), with A and B 0.5 -+ 2^-9
    // away in every coordinate: A rounds down to 128 in bf16, B up to 129,
    // so the coarse products make A look 63.75 d too far and B 63.75 d too
    // near, 127.5 d apart, while A is nearer by d 2^-9. The margin for such
    // rows (1.01 ||x|| ||c - c_hi|| and a few roundings, about 129 d for
    // the pair: Cauchy-Schwarz is exact for these parallel vectors) keeps A
    // a candidate; 0.9 of it would give B.
    let d = 128;
    let mut x = vec![128.0f32; 96 * d];
    // One block whose rows are not all whole (its margin is the full
    // coarse one), the others whole.
    for v in &mut x[70 * d..71 * d] {
        *v = 128.25;
    }
    nearest_is_a_not_b("whole rows", &x);
}

#[test]
fn rows_off_the_bf16_grid_keep_their_nearest_centre_in_the_coarse_margin() {
    // Rows of A itself (x_hi = 128, x - x_hi = 0.5 - 2^-9: not whole). Per
    // coordinate the coarse products omit x_hi (c - c_hi) + (x - x_hi) c:
    // 128 (0.5 - 2^-9) + (0.5 - 2^-9) A = 127.75 for A, and
    // -128 (0.5 - 2^-9) + (0.5 - 2^-9) B = 0.25 for B, so they rank B first
    // by 127.5 d. The margin of each (1.01 ||x|| (||c - c_hi|| + 2^-8
    // ||c||), about 129.8 d) keeps A a candidate; 0.45 of it would give B.
    let a = 128.5f32 - 1.0 / 512.0;
    nearest_is_a_not_b("rows off the grid", &vec![a; 96 * 128]);
}

#[test]
fn duplicate_centres_go_to_the_first_copy() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (n, d, k) = (1000, 72, 48);
    let mut c = uniform(&mut rng, k * d, -1.0, 1.0);
    // Centres 5, 20 and 47 are copies of centre 30.
    for j in [5, 20, 47] {
        let src: Vec<f32> = c[30 * d..31 * d].to_vec();
        c[j * d..(j + 1) * d].copy_from_slice(&src);
    }
    let mut x = uniform(&mut rng, n * d, -1.0, 1.0);
    for i in (0..n).step_by(4) {
        let src: Vec<f32> = c[30 * d..31 * d].to_vec();
        x[i * d..(i + 1) * d].copy_from_slice(&src);
    }
    compare("duplicates", &x, &c, n, d, k, Metric::SquaredEuclidean);
    for engine in engines() {
        let centres = prepared(engine, &c, k, d, Metric::SquaredEuclidean);
        let mut labels = vec![0u32; n];
        let mut scores = vec![0f32; n];
        assign(
            MatRef::new(&x, n, d).unwrap(),
            &centres,
            &mut labels,
            &mut scores,
        );
        for i in (0..n).step_by(4) {
            assert_eq!(
                labels[i], 5,
                "{engine:?}: row {i} is centre 30's copy: lowest copy wins"
            );
            assert_eq!(scores[i], 0.0);
        }
    }
}

#[test]
fn non_finite_tiny_and_huge_rows() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (n, d, k) = (64, 64, 40);
    let c = uniform(&mut rng, k * d, -1.0, 1.0);
    let mut x = uniform(&mut rng, n * d, -1.0, 1.0);
    for v in &mut x[20 * d..21 * d] {
        *v *= 3e18; // beyond the margin's range: decided exactly
    }
    for v in &mut x[21 * d..22 * d] {
        *v *= 1e-30; // subnormal halves, flushed by the tile unit
    }
    compare(
        "tiny and huge rows",
        &x,
        &c,
        n,
        d,
        k,
        Metric::SquaredEuclidean,
    );
    x[3 * d + 7] = f32::NAN;
    for engine in engines() {
        let centres = prepared(engine, &c, k, d, Metric::SquaredEuclidean);
        let mut labels = vec![7u32; n];
        let mut scores = vec![0f32; n];
        assign(
            MatRef::new(&x, n, d).unwrap(),
            &centres,
            &mut labels,
            &mut scores,
        );
        assert_eq!(
            labels[3], 0,
            "{engine:?}: a NaN row goes to centre 0, as on every path"
        );
    }
}

#[test]
fn one_and_two_threads_give_bit_identical_results() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (n, d, k) = (3 * CHUNK_ROWS + 123, 70, 70);
    let x = uniform(&mut rng, n * d, -2.0, 2.0);
    let c = uniform(&mut rng, k * d, -2.0, 2.0);
    let w: Vec<f32> = (0..n).map(|_| rng.gen_range(0.5f32..2.0)).collect();
    for (engine, metric) in engines()
        .into_iter()
        .flat_map(|e| [(e, Metric::SquaredEuclidean), (e, Metric::Cosine)])
    {
        let centres = prepared(engine, &c, k, d, metric);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let xm = MatRef::new(&x, n, d).unwrap();
                let mut labels = vec![0u32; n];
                let mut stats = ClusterStats::new(k, d);
                assign_accumulate(xm, Some(&w), &centres, Some(&mut labels), &mut stats);
                let mut scores = vec![0f32; n];
                assign(xm, &centres, &mut labels, &mut scores);
                (labels, stats, scores)
            })
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one.0, two.0, "{engine:?} {metric:?} labels");
        assert_eq!(one.1, two.1, "{engine:?} {metric:?} statistics");
        assert_eq!(one.2, two.2, "{engine:?} {metric:?} distances");
    }
}

#[test]
fn transpose_of_sixteen_by_sixteen() {
    if engines().is_empty() {
        return;
    }
    let stride = 21;
    let src: Vec<u32> = (0..16 * stride as u32).collect();
    let mut dst = vec![0u32; 256];
    // SAFETY: either engine's token implies AVX-512F; `src` holds 16 rows
    // of `stride` values and `dst` 256.
    unsafe { super::transpose16(src.as_ptr(), stride, dst.as_mut_ptr()) };
    for i in 0..16 {
        for j in 0..16 {
            assert_eq!(dst[j * 16 + i], src[i * stride + j], "({i}, {j})");
        }
    }
}

/// `convert_row` against `split`, value by value: `[x_lo | x_hi]` with the
/// padding zeroed (also over a buffer left dirty by a wider row), whether
/// every low half is zero, and a norm bound that holds and is tight.
#[test]
fn rows_convert_to_the_split_halves_with_a_norm_bound() {
    if engines().is_empty() {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let dpad = 96;
    let mut out = vec![0xffffu16; 2 * dpad];
    for (d, kind) in [(90, 0), (70, 0), (96, 1), (33, 1), (1, 0), (64, 2)] {
        let x: Vec<f32> = (0..d)
            .map(|_| match kind {
                // Continuous values over many magnitudes.
                0 => rng.gen_range(-1e4f32..1e4) * rng.gen_range(0.0f32..1.0).powi(6),
                // Pixel intensities: eight significant bits, no low half.
                1 => rng.gen_range(0..256) as f32,
                // Small values whose squares fall below f32's range, some
                // with a subnormal low half.
                _ => rng.gen_range(1.0f32..2.0) * 2f32.powi(-110),
            })
            .collect();
        // SAFETY: either engine's token implies AVX-512F/BW/DQ/VL, FMA and
        // AVX512-BF16; `out` holds 2 dpad values, dpad >= d, dpad % 32 == 0.
        let (norm, lo_zero) = unsafe { super::rows::convert_row(&x, dpad, &mut out) };
        for (p, &v) in x.iter().enumerate() {
            let (hi, lo) = split(v);
            // A subnormal v - hi reads as a zero of its sign (the products
            // flush it too).
            let rest = v - f32::from_bits((hi as u32) << 16);
            let lo = if rest.abs() < f32::MIN_POSITIVE {
                (rest.to_bits() >> 16) as u16 & 0x8000
            } else {
                lo
            };
            assert_eq!((out[p], out[dpad + p]), (lo, hi), "d {d}, column {p}: {v}");
        }
        for p in d..dpad {
            assert_eq!((out[p], out[dpad + p]), (0, 0), "d {d}: padding {p}");
        }
        assert_eq!(lo_zero, kind == 1, "d {d}");
        let exact = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        assert!(norm >= exact, "d {d}: {norm} against {exact}");
        if kind < 2 {
            assert!(
                norm <= exact * (1.0 + 1e-5),
                "d {d}: {norm} against {exact}"
            );
        }
    }
    // Rows that overflow f32 squares, or hold a NaN, have no finite bound
    // (they are decided exactly).
    for v in [3e19f32, f32::NAN, f32::INFINITY] {
        let x = [1.0, v, 2.0];
        // SAFETY: as above.
        let (norm, _) = unsafe { super::rows::convert_row(&x, dpad, &mut out) };
        assert!(!norm.is_finite(), "{v}: {norm}");
    }
}

#[test]
fn bf16_split_recovers_sixteen_bits() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..10_000 {
        let v: f32 = rng.gen_range(-1e6f32..1e6) * rng.gen_range(0.0f32..1.0).powi(4);
        let (hi, lo) = split(v);
        let back =
            f32::from_bits((hi as u32) << 16) as f64 + f32::from_bits((lo as u32) << 16) as f64;
        assert!(
            (back - v as f64).abs() <= (v as f64).abs() * 2f64.powi(-16),
            "{v}: {back}"
        );
    }
    // Ties round to even; 1 + 2^-8 is halfway between bf16 neighbours.
    assert_eq!(split(1.0 + 2f32.powi(-8)).0, 0x3f80);
    assert_eq!(split(1.0 + 3.0 * 2f32.powi(-8)).0, 0x3f82);
}

/// The fused labelled pass ([`assign_add_labelled`]) on each engine against
/// `assign` and then `add_labelled` on each chunk, the chunks' partials
/// added in order: every label and every bit of the sums, weights, counts
/// and loss, weighted or not, under both metrics, over several chunks and
/// a ragged last one, at one and two threads.
#[test]
fn fused_labelled_pass_is_assign_then_add_labelled() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    for (n, d, k) in [(2 * CHUNK_ROWS + 77, 96, 40), (300, 784, 100), (70, 64, 33)] {
        let x: Vec<f32> = (0..n * d).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
        // Centres near rows, so that clusters are unequal and ties rare.
        let c: Vec<f32> = (0..k * d)
            .map(|i| x[(i * 7919) % (n * d)] + rng.gen_range(-0.1f32..0.1))
            .collect();
        let w: Vec<f32> = (0..n).map(|_| rng.gen_range(0.1f32..3.0)).collect();
        let xm = MatRef::new(&x, n, d).unwrap();
        for engine in engines() {
            for metric in [Metric::SquaredEuclidean, Metric::Cosine] {
                let centres = prepared(engine, &c, k, d, metric);
                for weights in [None, Some(&w[..])] {
                    let what = format!(
                        "n={n} d={d} k={k} {engine:?} {metric:?} weighted={}",
                        weights.is_some()
                    );
                    let mut labels = vec![0u32; n];
                    let mut scores = vec![0.0f32; n];
                    assign(xm, &centres, &mut labels, &mut scores);
                    let mut want = ClusterStats::new(k, d);
                    for start in (0..n).step_by(CHUNK_ROWS) {
                        let end = (start + CHUNK_ROWS).min(n);
                        let mut part = ClusterStats::new(k, d);
                        add_labelled(
                            xm.slice_rows(start, end),
                            weights.map(|w| &w[start..end]),
                            &labels[start..end],
                            centres.centres(),
                            &mut part,
                            true,
                        );
                        merge_in_order(&mut want, std::slice::from_ref(&part));
                    }
                    for threads in [1, 2] {
                        let mut got_labels = vec![u32::MAX; n];
                        let mut got = ClusterStats::new(k, d);
                        got.loss = 123.0; // must be reset
                        let ran = crate::in_pool(threads, || {
                            assign_add_labelled(
                                xm,
                                weights,
                                &centres,
                                &mut got_labels,
                                &mut got,
                                &mut Partials::default(),
                            )
                        });
                        let what = format!("{what} threads={threads}");
                        assert!(ran, "{what}: the bf16 path takes the shape");
                        assert_eq!(got_labels, labels, "{what}: labels");
                        assert_eq!(got.counts, want.counts, "{what}: counts");
                        let same = |a: &[f64], b: &[f64], name: &str| {
                            if let Some(i) =
                                (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits())
                            {
                                panic!("{what}: {name} {i}: {} vs {}", a[i], b[i]);
                            }
                        };
                        same(&got.weights, &want.weights, "weight");
                        same(&got.sums, &want.sums, "sum");
                        assert_eq!(
                            got.loss.to_bits(),
                            want.loss.to_bits(),
                            "{what}: loss {} vs {}",
                            got.loss,
                            want.loss
                        );
                    }
                }
            }
        }
    }
}

/// Centres that do not take the bf16 path leave the fused labelled pass to
/// its caller: nothing is done and `false` returned.
#[test]
fn fused_labelled_pass_declines_other_paths() {
    let (n, d, k) = (50, 20, 5); // d < 64, k < 32: never the bf16 path
    let x: Vec<f32> = (0..n * d).map(|i| (i % 13) as f32).collect();
    let centres = PreparedCentres::new(
        MatRef::new(&x[..k * d], k, d).unwrap(),
        Metric::SquaredEuclidean,
    );
    let mut labels = vec![7u32; n];
    let mut stats = ClusterStats::new(k, d);
    stats.loss = 5.0;
    let xm = MatRef::new(&x, n, d).unwrap();
    assert!(!assign_add_labelled(
        xm,
        None,
        &centres,
        &mut labels,
        &mut stats,
        &mut Partials::default()
    ));
    assert!(labels.iter().all(|&l| l == 7) && stats.loss == 5.0);
}
