//! The Estimator on sparse (CSR) input: the same model as on the same rows
//! given dense, checked against brute force, and clear errors on bad CSR.

mod common;

use centroid::{
    Dense, Error, EvalArgs, Input, KMeansClustering, KMeansParams, Metric, Mode, PredictArgs,
    PredictKeys, RunConfig, Sparse, TrainArgs,
};
use common::*;
use rand::Rng;

const D: usize = 20;
const K: usize = 4;

/// "Topic" data: row `i` belongs to topic `i % K`, whose 5 features carry
/// values around 4; two more features anywhere carry small noise. About
/// 7 of 20 values per row are stored.
struct Topics {
    dense: Vec<f32>,
    indptr: Vec<i64>,
    indices: Vec<i32>,
    values: Vec<f32>,
    rows: usize,
}

fn topics(rows: usize, seed: u64) -> Topics {
    let mut r = rng(seed);
    let mut dense = vec![0f32; rows * D];
    for i in 0..rows {
        let topic = i % K;
        for c in 5 * topic..5 * topic + 5 {
            dense[i * D + c] = (4.0 + normal(&mut r)).abs() as f32 + 0.25;
        }
        for _ in 0..2 {
            let c = r.gen_range(0..D);
            dense[i * D + c] += r.gen_range(0.1..0.5f32);
        }
    }
    let (mut indptr, mut indices, mut values) = (vec![0i64], Vec::new(), Vec::new());
    for row in dense.chunks(D) {
        for (c, &v) in row.iter().enumerate() {
            if v != 0.0 {
                indices.push(c as i32);
                values.push(v);
            }
        }
        indptr.push(indices.len() as i64);
    }
    Topics {
        dense,
        indptr,
        indices,
        values,
        rows,
    }
}

impl Topics {
    fn sparse(&self) -> Sparse<'_> {
        Sparse::new(
            &self.indptr[..],
            &self.indices[..],
            &self.values[..],
            self.rows,
            D,
        )
        .unwrap()
    }
    fn sparse_input<'t>(&'t self) -> impl FnMut() -> centroid::Result<Input<'t>> + 't {
        move || Ok(Input::constant(self.sparse()))
    }
    fn dense_input<'t>(&'t self) -> impl FnMut() -> centroid::Result<Input<'t>> + 't {
        move || Ok(Input::constant(Dense::new(&self.dense[..], self.rows, D)?))
    }
}

fn estimator(mode: Mode, metric: Metric, dir: &std::path::Path) -> KMeansClustering {
    let p = KMeansParams::new(K)
        .mode(mode)
        .distance_metric(metric)
        .random_seed(7)
        .check()
        .unwrap();
    let config = RunConfig {
        save_checkpoints_secs: None,
        save_checkpoints_steps: None,
        ..Default::default()
    };
    KMeansClustering::new(p, Some(dir.to_path_buf()), Some(config)).unwrap()
}

fn steps(n: u64) -> TrainArgs<'static> {
    TrainArgs {
        steps: Some(n),
        ..Default::default()
    }
}

fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs() / scale))
}

#[test]
fn sparse_training_gives_the_model_dense_training_gives() {
    let t = topics(600, 1);
    for mode in [
        Mode::FullBatch,
        Mode::MiniBatch,
        Mode::Async {
            steps_per_iteration: 3,
        },
    ] {
        let (ds, dd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut on_sparse = estimator(mode, Metric::SquaredEuclidean, ds.path());
        let mut on_dense = estimator(mode, Metric::SquaredEuclidean, dd.path());
        on_sparse.train(t.sparse_input(), steps(8)).unwrap();
        on_dense.train(t.dense_input(), steps(8)).unwrap();
        let (cs, cd) = (centres_f64(&on_sparse), centres_f64(&on_dense));
        // The sparse kernels sum in f64 in another order than the dense
        // ones; the labels are the same, so the centres agree to f32
        // rounding.
        assert!(max_rel_diff(&cs, &cd) < 1e-6, "{mode:?}: {cs:?} vs {cd:?}");

        // Labels and loss against brute force on the dense rows, with the
        // model's own centres.
        let labels: Vec<i64> = on_sparse
            .predict_cluster_index(t.sparse_input())
            .unwrap()
            .flat_map(Result::unwrap)
            .collect();
        let mut loss = 0.0;
        for (i, row) in t.dense.chunks(D).enumerate() {
            let (j, dist) = nearest(row, &cs, D);
            assert_eq!(labels[i], j as i64, "{mode:?}: row {i}");
            loss += dist;
        }
        let score = on_sparse.score(t.sparse_input()).unwrap();
        assert!(
            (score - loss).abs() <= 1e-9 * loss,
            "{mode:?}: score {score} vs brute force {loss}"
        );
        let dense_score = on_dense.score(t.dense_input()).unwrap();
        assert!((score - dense_score).abs() <= 1e-5 * loss);
    }
}

#[test]
fn sparse_distances_match_brute_force() {
    let t = topics(300, 2);
    let dir = tempfile::tempdir().unwrap();
    let mut est = estimator(Mode::FullBatch, Metric::SquaredEuclidean, dir.path());
    est.train(t.sparse_input(), steps(3)).unwrap();
    let centres = centres_f64(&est);
    let args = PredictArgs {
        predict_keys: Some(PredictKeys::from_names(&["all_distances"]).unwrap()),
        ..Default::default()
    };
    let mut row = 0;
    for batch in est.predict(t.sparse_input(), args).unwrap() {
        let all = batch.unwrap().all_distances.unwrap();
        let all = all.to_type::<f64>();
        for got in all.chunks(K) {
            let x = &t.dense[row * D..(row + 1) * D];
            for (j, &g) in got.iter().enumerate() {
                let want: f64 = x
                    .iter()
                    .zip(&centres[j * D..(j + 1) * D])
                    .map(|(&a, &c)| (a as f64 - c).powi(2))
                    .sum();
                assert!(
                    (g - want).abs() <= 1e-5 * want.max(1.0),
                    "row {row}, centre {j}: {g} vs {want}"
                );
            }
            row += 1;
        }
    }
    assert_eq!(row, t.rows);
}

#[test]
fn sparse_seeding_picks_the_rows_dense_seeding_picks() {
    // k-means++ and random initialisation draw the same rows from the same
    // data, dense or sparse: after zero training steps the two models'
    // centres are rows of the data, and the same ones.
    let t = topics(200, 3);
    for init in [
        centroid::InitialClusters::KMeansPlusPlus,
        centroid::InitialClusters::Random,
    ] {
        let build = |dir: &std::path::Path| {
            let p = KMeansParams::new(K)
                .initial_clusters(init.clone())
                .random_seed(11)
                .check()
                .unwrap();
            KMeansClustering::new(p, Some(dir.to_path_buf()), None).unwrap()
        };
        let (ds, dd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut a, mut b) = (build(ds.path()), build(dd.path()));
        a.train(t.sparse_input(), steps(1)).unwrap();
        b.train(t.dense_input(), steps(1)).unwrap();
        let (ca, cb) = (centres_f64(&a), centres_f64(&b));
        assert!(max_rel_diff(&ca, &cb) < 1e-6, "{ca:?} vs {cb:?}");
    }
}

#[test]
fn cosine_on_sparse_input_is_cosine_on_the_dense_rows() {
    let t = topics(400, 4);
    let (ds, dd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = estimator(Mode::FullBatch, Metric::Cosine, ds.path());
    let mut b = estimator(Mode::FullBatch, Metric::Cosine, dd.path());
    a.train(t.sparse_input(), steps(5)).unwrap();
    b.train(t.dense_input(), steps(5)).unwrap();
    // Under cosine the sparse batch is densified before the kernels: the
    // same computation, bit for bit.
    assert_eq!(centres_f64(&a), centres_f64(&b));
    let ea = a.evaluate(t.sparse_input(), EvalArgs::default()).unwrap();
    let eb = b.evaluate(t.dense_input(), EvalArgs::default()).unwrap();
    assert_eq!(ea.loss, eb.loss);
}

#[test]
fn an_iterator_of_sparse_batches_trains_like_dense_batches() {
    let t = topics(400, 5);
    let batches = |sparse: bool| {
        let t = &t;
        move || {
            Ok(Input::batches((0..8).map(move |b| {
                let (lo, hi) = (b * 50, b * 50 + 50);
                if sparse {
                    let base = t.indptr[lo];
                    let indptr: Vec<i64> = t.indptr[lo..=hi].iter().map(|p| p - base).collect();
                    let (a, z) = (t.indptr[lo] as usize, t.indptr[hi] as usize);
                    Sparse::new(indptr, &t.indices[a..z], &t.values[a..z], 50, D).map(Into::into)
                } else {
                    Dense::new(&t.dense[lo * D..hi * D], 50, D).map(Into::into)
                }
            })))
        }
    };
    let (ds, dd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = estimator(Mode::MiniBatch, Metric::SquaredEuclidean, ds.path());
    let mut b = estimator(Mode::MiniBatch, Metric::SquaredEuclidean, dd.path());
    a.train(batches(true), TrainArgs::default()).unwrap();
    b.train(batches(false), TrainArgs::default()).unwrap();
    assert!(max_rel_diff(&centres_f64(&a), &centres_f64(&b)) < 1e-6);
}

fn train_error(indptr: Vec<i64>, indices: Vec<i32>, values: Vec<f32>, cols: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut est = estimator(Mode::FullBatch, Metric::SquaredEuclidean, dir.path());
    let rows = indptr.len() - 1;
    let input = || {
        Ok(Input::constant(Sparse::new(
            indptr.clone(),
            indices.clone(),
            values.clone(),
            rows,
            cols,
        )?))
    };
    match est.train(input, steps(1)) {
        Err(e @ Error::InvalidData(_)) | Err(e @ Error::InvalidShape(_)) => e.to_string(),
        Err(other) => panic!("unexpected error kind: {other:?}"),
        Ok(_) => panic!("bad sparse input was accepted"),
    }
}

#[test]
fn bad_sparse_batches_are_refused_with_the_row_at_fault() {
    // Six rows, one stored value each, in column 0..6 of 8; k = 4.
    let good = || {
        (
            (0..=6).collect::<Vec<i64>>(),
            (0..6).collect::<Vec<i32>>(),
            vec![1f32; 6],
        )
    };

    let (p, i, mut v) = good();
    v[4] = f32::NAN;
    let msg = train_error(p, i, v, 8);
    assert!(msg.contains("row 4") && msg.contains("column 4"), "{msg}");

    let (p, mut i, v) = good();
    i[2] = 9;
    let msg = train_error(p, i, v, 8);
    assert!(
        msg.contains("row 2") && msg.contains("column index 9"),
        "{msg}"
    );

    // Two values in row 1, in decreasing column order.
    let msg = train_error(
        vec![0, 1, 3, 4, 5, 6],
        vec![0, 5, 2, 3, 4, 6],
        vec![1.0; 6],
        8,
    );
    assert!(
        msg.contains("row 1") && msg.contains("out of order"),
        "{msg}"
    );

    let (mut p, i, v) = good();
    p[3] = 7;
    let msg = train_error(p, i, v, 8);
    assert!(msg.contains("indptr"), "{msg}");

    let msg = train_error(vec![0], vec![], vec![], 8);
    assert!(msg.contains("empty"), "{msg}");

    // A model of width 8 refuses a sparse batch of width 9.
    let dir = tempfile::tempdir().unwrap();
    let mut est = estimator(Mode::FullBatch, Metric::SquaredEuclidean, dir.path());
    let (p, i, v) = good();
    est.train(
        || {
            Ok(Input::constant(Sparse::new(
                p.clone(),
                i.clone(),
                v.clone(),
                6,
                8,
            )?))
        },
        steps(1),
    )
    .unwrap();
    let (p, i, v) = good();
    let err = est
        .score(|| {
            Ok(Input::constant(Sparse::new(
                p.clone(),
                i.clone(),
                v.clone(),
                6,
                9,
            )?))
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("9 columns but the model has 8"),
        "{err}"
    );

    // Lengths that do not fit together fail when the batch is made.
    assert!(matches!(
        Sparse::new(vec![0i64, 1], vec![0i32, 1], vec![1f32], 1, 4),
        Err(Error::InvalidShape(_))
    ));
    assert!(matches!(
        Sparse::new(vec![0i64, 1, 1], vec![0i32], vec![1f32], 1, 4),
        Err(Error::InvalidShape(_))
    ));
}
