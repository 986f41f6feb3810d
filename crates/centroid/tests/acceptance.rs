//! The reference Estimator's own acceptance cases, on our implementation.

mod common;

use centroid::{
    Dense, Features, InitialClusters, Input, KMeansClustering, KMeansParams, Metric, Mode,
    PredictArgs, RunConfig, TrainArgs,
};
use common::*;

fn estimator(params: KMeansParams, dir: &std::path::Path) -> KMeansClustering {
    let config = RunConfig {
        save_checkpoints_secs: None,
        save_checkpoints_steps: Some(1000),
        ..Default::default()
    };
    KMeansClustering::new(
        params.check().unwrap(),
        Some(dir.to_path_buf()),
        Some(config),
    )
    .unwrap()
}

fn five_blobs_params(mini: bool, s: u64, tol: Option<f64>) -> KMeansParams {
    let mut p = KMeansParams::new(5);
    p = p.initial_clusters(InitialClusters::KMeansPlusPlus);
    p = p.mode(Mode::from_flags(mini, s).unwrap());
    p = p.relative_tolerance(tol);
    p
}

/// Score within `rel` of the sum of true offsets squared, and fresh points
/// near the true centres predicted into the true cluster.
fn check_five_blobs(est: &KMeansClustering, b: &Blobs, rel: f64) {
    let score = est.score(constant(&b.points, 2)).unwrap();
    assert!(
        (score - b.offsets_sq).abs() <= rel * b.offsets_sq,
        "score {score} vs true offsets {} (allowed {rel})",
        b.offsets_sq
    );
    // Fresh points: each true centre nudged by a small offset.
    let fresh: Vec<f32> = b
        .centres
        .iter()
        .flat_map(|c| [(c[0] + 3.0) as f32, (c[1] - 2.0) as f32])
        .collect();
    let idx: Vec<i64> = est
        .predict_cluster_index(constant(&fresh, 2))
        .unwrap()
        .flat_map(|r| r.unwrap())
        .collect();
    // The learned cluster of each true centre: the nearest learned centre,
    // found by brute force; every fresh point must land there, and the five
    // must be distinct.
    let learned = centres_f64(est);
    for (j, c) in b.centres.iter().enumerate() {
        let (near, _) = nearest(&[c[0] as f32, c[1] as f32], &learned, 2);
        assert_eq!(idx[j], near as i64, "fresh point near true centre {j}");
    }
    let mut distinct = idx.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "{idx:?}");
}

#[test]
fn five_blobs_full_batch() {
    let b = blobs(1000, 5, 20.0, 11);
    let dir = tempfile::tempdir().unwrap();
    let mut est = estimator(five_blobs_params(false, 1, None), dir.path());
    est.train(
        constant(&b.points, 2),
        TrainArgs {
            steps: Some(10),
            ..Default::default()
        },
    )
    .unwrap();
    check_five_blobs(&est, &b, 0.05);
}

#[test]
fn five_blobs_full_batch_with_relative_tolerance_is_within_one_percent() {
    let b = blobs(1000, 5, 20.0, 12);
    let dir = tempfile::tempdir().unwrap();
    let mut est = estimator(five_blobs_params(false, 1, Some(1e-4)), dir.path());
    // No step limit: only the tolerance stops training on a constant batch.
    est.train(constant(&b.points, 2), TrainArgs::default())
        .unwrap();
    check_five_blobs(&est, &b, 0.01);
    let step = est.get_variable_value("global_step").unwrap();
    match step {
        centroid::Tensor::I64 { values, .. } => {
            assert!(values[0] >= 2 && values[0] < 100, "{values:?}")
        }
        other => panic!("global_step is {other:?}"),
    }
}

#[test]
fn five_blobs_mini_batch() {
    let b = blobs(1000, 5, 20.0, 13);
    let dir = tempfile::tempdir().unwrap();
    let mut est = estimator(five_blobs_params(true, 1, None), dir.path());
    est.train(
        random_batches(&b.points, 2, 50, 5),
        TrainArgs {
            steps: Some(200),
            ..Default::default()
        },
    )
    .unwrap();
    check_five_blobs(&est, &b, 0.05);
}

#[test]
fn five_blobs_asynchronous_full_batch() {
    let b = blobs(1000, 5, 20.0, 14);
    let dir = tempfile::tempdir().unwrap();
    let mut est = estimator(five_blobs_params(true, 20, None), dir.path());
    est.train(
        random_batches(&b.points, 2, 50, 6),
        TrainArgs {
            steps: Some(200),
            ..Default::default()
        },
    )
    .unwrap();
    check_five_blobs(&est, &b, 0.05);
    let names = est.get_variable_names().unwrap();
    assert_eq!(
        names,
        [
            "clusters",
            "initialized",
            "global_step",
            "cluster_counts",
            "clusters_updated",
            "update_in_steps"
        ]
    );
}

fn normalize(v: [f64; 2]) -> [f64; 2] {
    let n = (v[0] * v[0] + v[1] * v[1]).sqrt();
    [v[0] / n, v[1] / n]
}

/// Cosine: the centres are the normalised means of the normalised points of
/// each group, and the score is n - sum of cosines to them.
fn cosine_case(points: &[[f64; 2]], groups: &[usize], k: usize) {
    let flat: Vec<f32> = points
        .iter()
        .flat_map(|p| [p[0] as f32, p[1] as f32])
        .collect();
    let mut expected = vec![[0.0f64; 2]; k];
    for (p, &g) in points.iter().zip(groups) {
        let u = normalize([p[0] as f32 as f64, p[1] as f32 as f64]);
        expected[g][0] += u[0];
        expected[g][1] += u[1];
    }
    let expected: Vec<[f64; 2]> = expected.into_iter().map(normalize).collect();
    let expected_score: f64 = points
        .iter()
        .zip(groups)
        .map(|(p, &g)| {
            let u = normalize(*p);
            1.0 - (u[0] * expected[g][0] + u[1] * expected[g][1])
        })
        .sum();

    let dir = tempfile::tempdir().unwrap();
    let mut p = KMeansParams::new(k);
    p = p.distance_metric(Metric::Cosine);
    p = p.mode(Mode::FullBatch);
    p = p.initial_clusters(InitialClusters::KMeansPlusPlus);
    let mut est = estimator(p, dir.path());
    est.train(
        constant(&flat, 2),
        TrainArgs {
            steps: Some(30),
            ..Default::default()
        },
    )
    .unwrap();
    let learned = centres_f64(&est);
    let idx: Vec<i64> = est
        .predict_cluster_index(constant(&flat, 2))
        .unwrap()
        .flat_map(|r| r.unwrap())
        .collect();
    // Map learned clusters to groups through the points' predictions.
    for g in 0..k {
        let j = idx[groups.iter().position(|&x| x == g).unwrap()] as usize;
        for (i, &gi) in groups.iter().enumerate() {
            assert_eq!(idx[i] as usize == j, gi == g, "point {i}");
        }
        let c = [learned[2 * j], learned[2 * j + 1]];
        assert!(
            (c[0] - expected[g][0]).abs() < 1e-5 && (c[1] - expected[g][1]).abs() < 1e-5,
            "{c:?} vs {:?}",
            expected[g]
        );
    }
    let score = est.score(constant(&flat, 2)).unwrap();
    assert!(
        (score - expected_score).abs() < 1e-5,
        "{score} vs {expected_score}"
    );
}

#[test]
fn cosine_eight_points() {
    let points = [
        [2.0, 1.0],
        [3.0, 1.5],
        [4.0, 0.5],
        [1.0, 0.3],
        [-1.0, 2.0],
        [-0.5, 3.0],
        [-1.5, 4.0],
        [-0.2, 1.0],
    ];
    cosine_case(&points, &[0, 0, 0, 0, 1, 1, 1, 1], 2);
}

#[test]
fn cosine_twelve_points() {
    let points = [
        [5.0, 1.0],
        [4.0, 2.0],
        [9.0, 1.0],
        [1.0, 0.1],
        [-1.0, 5.0],
        [-2.0, 8.0],
        [0.5, 4.0],
        [-0.1, 1.0],
        [-5.0, -4.0],
        [-3.0, -3.5],
        [-8.0, -6.0],
        [-0.5, -0.6],
    ];
    cosine_case(&points, &[0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2], 3);
}

#[test]
fn random_init_with_batch_size_one_takes_the_first_points_in_order() {
    let data: Vec<f32> = (0..20).flat_map(|i| [i as f32, (i * i) as f32]).collect();
    let single_rows = |data: &[f32]| {
        let data = data.to_vec();
        move || {
            let rows: Vec<centroid::Result<Features<'static>>> = data
                .chunks(2)
                .map(|r| Ok(Dense::new(r.to_vec(), 1, 2).unwrap().into()))
                .collect();
            Ok(Input::batches(rows))
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut p = KMeansParams::new(3);
    p = p.initial_clusters(InitialClusters::Random);
    let mut est = estimator(p, dir.path());
    // One mini-batch step on row 0, which is centre 0 itself: no change.
    est.train(
        single_rows(&data),
        TrainArgs {
            steps: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(centres_f64(&est), vec![0.0, 0.0, 1.0, 1.0, 2.0, 4.0]);
    assert_eq!(
        est.get_variable_value("cluster_counts").unwrap(),
        centroid::Tensor::I64 {
            values: vec![2, 1, 1],
            shape: vec![3]
        }
    );
}

#[test]
fn kmeans_plus_plus_with_a_small_first_batch_fails_clearly() {
    let data: Vec<f32> = (0..10).map(|i| i as f32).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut p = KMeansParams::new(4);
    p = p.initial_clusters(InitialClusters::KMeansPlusPlus);
    let mut est = estimator(p, dir.path());
    let input = || {
        let d = data.clone();
        Ok(Input::batches((0..5).map(move |i| {
            Ok(Dense::new(d[2 * i..2 * i + 2].to_vec(), 2, 1)
                .unwrap()
                .into())
        })))
    };
    let err = est
        .train(
            input,
            TrainArgs {
                steps: Some(1),
                ..Default::default()
            },
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("k-means++ needs at least num_clusters = 4 rows") && msg.contains("got 2"),
        "{msg}"
    );
    assert!(
        est.latest_checkpoint().is_none(),
        "no checkpoint after a failed initialisation"
    );
}

#[test]
fn predictions_match_brute_force() {
    let b = blobs(300, 4, 30.0, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut p = KMeansParams::new(4);
    p = p.mode(Mode::FullBatch);
    let mut est = estimator(p, dir.path());
    est.train(
        constant(&b.points, 2),
        TrainArgs {
            steps: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    let centres = centres_f64(&est);
    let preds: Vec<_> = est
        .predict(constant(&b.points, 2), PredictArgs::default())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(preds.len(), 1);
    let idx = preds[0].cluster_index.as_ref().unwrap();
    let dist = preds[0].all_distances.as_ref().unwrap().to_type::<f64>();
    let mut total = 0.0;
    for (i, row) in b.points.chunks(2).enumerate() {
        let (j, d) = nearest(row, &centres, 2);
        assert_eq!(idx[i], j as i64);
        total += d;
        for jj in 0..4 {
            let want: f64 = row
                .iter()
                .zip(&centres[2 * jj..2 * jj + 2])
                .map(|(&x, &c)| (x as f64 - c).powi(2))
                .sum();
            // The expansion ||x||^2 - 2x.c + ||c||^2 in f32 loses digits
            // relative to the norms, not to the distance.
            let scale: f64 = row.iter().map(|&x| (x as f64).powi(2)).sum::<f64>()
                + centres[2 * jj..2 * jj + 2]
                    .iter()
                    .map(|c| c * c)
                    .sum::<f64>();
            let got = dist[i * 4 + jj];
            assert!(
                (got - want).abs() <= 1e-6 * scale,
                "row {i} centre {jj}: {got} vs {want}"
            );
        }
    }
    let ev = est
        .evaluate(constant(&b.points, 2), Default::default())
        .unwrap();
    assert!(
        (ev.loss - total).abs() <= 1e-5 * total,
        "{} vs {total}",
        ev.loss
    );
    assert_eq!(ev.score, ev.loss);
    assert_eq!(ev.global_step, 3);
}
