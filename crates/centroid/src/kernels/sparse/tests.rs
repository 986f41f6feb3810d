use super::panel::panel_width;
use super::*;
use crate::kernels::Metric;
use crate::matrix::MatRef;
use crate::params::Retries;

/// A deterministic sparse matrix: about one value in `every` is non-zero.
fn sparse(n: usize, d: usize, every: usize, phase: f64) -> (Vec<i64>, Vec<i32>, Vec<f64>) {
    let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
    for i in 0..n {
        for c in 0..d {
            let h = (i * 31 + c * 17 + (phase * 7.0) as usize) % every;
            if h == 0 {
                indices.push(c as i32);
                data.push(((i * d + c) as f64 * 0.618 + phase).sin() * 3.0);
            }
        }
        indptr.push(indices.len() as i64);
    }
    (indptr, indices, data)
}

use crate::in_pool;

fn brute_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum()
}

#[test]
fn assign_and_distances_match_a_dense_brute_force() {
    // 37 centres: two full panels and a ragged one.
    let (n, d, k) = (2 * CHUNK_ROWS + 101, 40, 37);
    let (ip, ix, dv) = sparse(n, d, 7, 0.0);
    let x = CsrRef::new(n, d, &ip, &ix, &dv).unwrap();
    let dense = x.to_dense();
    let cflat: Vec<f64> = (0..k * d).map(|i| (i as f64 * 0.37).cos()).collect();
    let c = MatRef::new(&cflat, k, d).unwrap();
    // Narrow panels (16 centres) and one wide panel (all 37, padded).
    for width in [PANEL, 40] {
        let prepared = SparseCentres::with_width(c, width);
        let (mut labels, mut scores) = (vec![0u32; n], vec![0.0f64; n]);
        assign(x, &prepared, &mut labels, &mut scores);
        let mut all = vec![0.0f64; n * k];
        distances(x, &prepared, &mut all);
        for i in 0..n {
            let want: Vec<f64> = (0..k).map(|j| brute_dist(dense.row(i), c.row(j))).collect();
            for j in 0..k {
                assert!((all[i * k + j] - want[j]).abs() <= 1e-9 * (1.0 + want[j]));
            }
            let best = want.iter().cloned().fold(f64::INFINITY, f64::min);
            assert!(
                want[labels[i] as usize] <= best + 1e-9 * (1.0 + best),
                "row {i}"
            );
            assert!((scores[i] - best).abs() <= 1e-9 * (1.0 + best));
        }
    }
}

#[test]
fn wide_data_gets_one_panel_of_all_centres() {
    assert_eq!(panel_width::<f32>(100, 100_000), 104);
    assert_eq!(panel_width::<f32>(100, 1000), PANEL);
    assert_eq!(panel_width::<f64>(8, 100_000), PANEL);
}

#[test]
fn a_row_equal_to_a_centre_is_at_distance_zero() {
    let (n, d) = (50, 30);
    let (ip, ix, dv) = sparse(n, d, 3, 1.0);
    let dv32: Vec<f32> = dv.iter().map(|&v| v as f32 * 1.1).collect();
    let x = CsrRef::new(n, d, &ip, &ix, &dv32).unwrap();
    let dense = x.to_dense();
    let c = MatRef::new(&dense.as_slice()[5 * d..8 * d], 3, d).unwrap();
    for width in [PANEL, 8] {
        let mut out = vec![1.0f32; n * 3];
        distances(x, &SparseCentres::with_width(c, width), &mut out);
        assert_eq!(out[5 * 3], 0.0);
        assert_eq!(out[6 * 3 + 1], 0.0);
        assert_eq!(out[7 * 3 + 2], 0.0);
    }
}

#[test]
fn sums_match_brute_force_and_ignore_the_thread_count() {
    let (n, d, k) = (3 * CHUNK_ROWS + 7, 25, 5);
    let (ip, ix, dv) = sparse(n, d, 4, 2.0);
    let x = CsrRef::new(n, d, &ip, &ix, &dv).unwrap();
    let dense = x.to_dense();
    let w: Vec<f64> = (0..n).map(|i| 0.5 + (i % 3) as f64).collect();
    let cflat: Vec<f64> = (0..k * d).map(|i| (i as f64 * 0.9).sin()).collect();
    let prepared = SparseCentres::new(MatRef::new(&cflat, k, d).unwrap());
    let run = |t| {
        in_pool(t, || {
            let mut stats = ClusterStats::new(k, d);
            let mut labels = vec![0u32; n];
            assign_accumulate(x, Some(&w), &prepared, Some(&mut labels), &mut stats);
            (labels, stats)
        })
    };
    let (l1, s1) = run(1);
    let (l2, s2) = run(2);
    assert_eq!(l1, l2);
    assert_eq!(
        s1.sums.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        s2.sums.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(s1.loss.to_bits(), s2.loss.to_bits());
    let mut sums = vec![0.0f64; k * d];
    let mut weights = vec![0.0f64; k];
    let mut loss = 0.0;
    for i in 0..n {
        let j = l1[i] as usize;
        for c in 0..d {
            sums[j * d + c] += w[i] * dense.row(i)[c];
        }
        weights[j] += w[i];
        loss += w[i] * brute_dist(dense.row(i), &cflat[j * d..(j + 1) * d]);
    }
    for (a, b) in s1.sums.iter().zip(&sums) {
        assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()));
    }
    assert_eq!(s1.weights, weights);
    assert_eq!(s1.counts.iter().sum::<u64>(), n as u64);
    assert!((s1.loss - loss).abs() <= 1e-9 * loss);
}

#[test]
fn kmeans_plus_plus_is_deterministic_and_picks_distinct_rows() {
    let (n, d, k) = (CHUNK_ROWS + 500, 20, 12);
    let (ip, ix, dv) = sparse(n, d, 5, 3.0);
    let x = CsrRef::new(n, d, &ip, &ix, &dv).unwrap();
    let a = in_pool(1, || kmeans_plus_plus(x, None, k, 3, 42).unwrap());
    let b = in_pool(2, || kmeans_plus_plus(x, None, k, 3, 42).unwrap());
    assert_eq!(a.as_slice(), b.as_slice());
    let dense = x.to_dense();
    for j in 0..k {
        // Every centre is one of the rows, and no two are the same.
        assert!((0..n).any(|i| dense.row(i) == a.row(j)));
        for m in 0..j {
            assert_ne!(a.row(j), a.row(m));
        }
    }
}

#[test]
fn kmeans_plus_plus_picks_the_rows_the_dense_seeding_picks() {
    // Well-separated distinct rows: the distances' last bits cannot
    // change a draw, so both must follow the same random stream.
    let (n, d, k) = (600, 12, 9);
    let (ip, ix, dv) = sparse(n, d, 3, 0.5);
    let x = CsrRef::new(n, d, &ip, &ix, &dv).unwrap();
    let dense = x.to_dense();
    let w: Vec<f64> = (0..n).map(|i| 0.5 + (i % 7) as f64).collect();
    for weights in [None, Some(&w[..])] {
        let a = kmeans_plus_plus(x, weights, k, 3, 7).unwrap();
        let b = crate::seeding::kmeans_plus_plus(
            dense.view(),
            weights,
            k,
            Retries::Count(3),
            Metric::SquaredEuclidean,
            7,
        )
        .unwrap();
        assert_eq!(a.as_slice(), b.as_slice());
    }
}

#[test]
fn bad_matrices_are_errors_that_name_the_row() {
    let data = [1.0f64, 2.0, 3.0];
    let indptr = [0i64, 2, 3];
    let err =
        |ix: &[i32], dv: &[f64], ip: &[i64]| CsrRef::new(2, 4, ip, ix, dv).unwrap_err().to_string();
    assert!(err(&[0, 4, 1], &data, &indptr).contains("row 0"));
    assert!(err(&[2, 1, 1], &data, &indptr).contains("out of order"));
    assert!(err(&[0, 1, -1], &data, &indptr).contains("row 1"));
    assert!(err(&[0, 1, 1], &[1.0, f64::NAN, 3.0], &indptr).contains("row 0, column 1"));
    assert!(err(&[0, 1, 1], &data, &[0, 3, 2]).contains("out of order"));
    assert!(err(&[0, 1, 1], &data, &[0, 2]).contains("indptr"));
    assert!(CsrRef::new(2, 4, &indptr, &[0, 1, 1], &data).is_ok());
}
