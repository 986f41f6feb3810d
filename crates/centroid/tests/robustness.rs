//! Adversarial input: arguments at their limits, data that overflows, hostile
//! or damaged checkpoints, odd model directories. Each case must end in an
//! `Error` that says what and where, never a panic, an abort or a silently
//! wrong model.

mod common;

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;

use centroid::checkpoint::{self, ModelSignature};
use centroid::{
    AnyState, DType, Dense, Error, EvalArgs, InitialClusters, Input, KMeansClustering,
    KMeansParams, Matrix, ModelState, PredictArgs, RunConfig, Tensor, TrainArgs,
};
use common::*;
use rand::Rng;

fn config() -> RunConfig {
    RunConfig {
        save_checkpoints_secs: None,
        ..Default::default()
    }
}

fn est(p: KMeansParams, dir: &Path) -> KMeansClustering {
    KMeansClustering::new(p, Some(dir.to_path_buf()), Some(config())).unwrap()
}

fn steps(n: u64) -> TrainArgs<'static> {
    TrainArgs {
        steps: Some(n),
        ..Default::default()
    }
}

fn full_batch(k: usize) -> KMeansParams {
    let mut p = KMeansParams::new(k);
    p.use_mini_batch = false;
    p
}

fn array(rows: &[Vec<f32>]) -> InitialClusters {
    InitialClusters::Array(Dense::from_rows(rows).unwrap())
}

/// An input_fn giving `batches` copies of one batch, then the end.
fn finite<'a>(
    data: &'a [f32],
    cols: usize,
    batches: usize,
) -> impl FnMut() -> centroid::Result<Input<'a>> {
    move || {
        let b = Dense::new(data, data.len() / cols, cols)?;
        Ok(Input::batches(
            (0..batches).map(move |_| Ok(b.clone().into())),
        ))
    }
}

fn global_step(e: &KMeansClustering) -> i64 {
    match e.get_variable_value("global_step").unwrap() {
        Tensor::I64 { values, .. } => values[0],
        other => panic!("{other:?}"),
    }
}

fn clusters_f64(e: &KMeansClustering) -> Vec<f64> {
    e.cluster_centers().unwrap().to_type::<f64>().into_owned()
}

fn err_text<T: std::fmt::Debug>(r: centroid::Result<T>) -> String {
    r.unwrap_err().to_string()
}

// ---------------------------------------------------------------- arguments

#[test]
fn steps_and_max_steps_beyond_i64_mean_no_limit() {
    // 4 rows on a line, 2 centres; the input gives 3 batches and ends.
    let x = [0.0f32, 2.0, 10.0, 14.0];
    for args in [
        TrainArgs {
            steps: Some(u64::MAX),
            ..Default::default()
        },
        TrainArgs {
            max_steps: Some(u64::MAX),
            ..Default::default()
        },
        TrainArgs {
            steps: Some(1 << 63),
            ..Default::default()
        },
    ] {
        let d = tempfile::tempdir().unwrap();
        let mut p = full_batch(2);
        p.initial_clusters = array(&[vec![3.0], vec![9.0]]);
        let mut e = est(p, d.path());
        e.train(finite(&x, 1, 3), args).unwrap();
        // Three steps ran (the input's end stopped them), not none.
        assert_eq!(global_step(&e), 3);
        assert_eq!(clusters_f64(&e), vec![1.0, 12.0]);
    }
}

#[test]
fn save_and_log_intervals_beyond_i64_do_not_misfire() {
    let x = [0.0f32, 2.0, 10.0, 14.0];
    let d = tempfile::tempdir().unwrap();
    let c = RunConfig {
        save_checkpoints_steps: Some(u64::MAX),
        save_checkpoints_secs: None,
        log_step_count_steps: Some(u64::MAX),
        keep_checkpoint_max: 0,
        ..Default::default()
    };
    let mut p = full_batch(2);
    p.initial_clusters = array(&[vec![3.0], vec![9.0]]);
    let mut e = KMeansClustering::new(p, Some(d.path().into()), Some(c)).unwrap();
    e.train(finite(&x, 1, 3), TrainArgs::default()).unwrap();
    // u64::MAX as i64 is -1, and every step is a multiple of -1: only the
    // final checkpoint may exist.
    assert_eq!(
        checkpoint::list(d.path()),
        vec![checkpoint::checkpoint_path(d.path(), 3)]
    );
}

#[test]
fn out_of_range_parameters_are_refused_at_construction() {
    let d = tempfile::tempdir().unwrap();
    let mk = |p: KMeansParams| KMeansClustering::new(p, Some(d.path().into()), Some(config()));
    let mut p = KMeansParams::new(2);
    p.kmeans_plus_plus_num_retries = i64::MAX;
    let e = err_text(mk(p));
    assert!(
        e.contains("kmeans_plus_plus_num_retries must be at most 10000"),
        "{e}"
    );
    let mut p = KMeansParams::new(2);
    p.mini_batch_steps_per_iteration = u64::MAX;
    let e = err_text(mk(p));
    assert!(
        e.contains("mini_batch_steps_per_iteration must be at most"),
        "{e}"
    );
    let mut p = KMeansParams::new(2);
    p.feature_columns = Some(vec!["a".into(), "b".into(), "a".into()]);
    let e = err_text(mk(p));
    assert!(e.contains("names \"a\" twice (positions 0 and 2)"), "{e}");
    let mut p = KMeansParams::new(2);
    p.relative_tolerance = Some(-1.0);
    assert!(mk(p).is_err());
    // The public seeding entry point refuses too, rather than allocating
    // 2^63 candidates.
    let x = centroid::MatRef::new(&[0.0f32, 1.0, 2.0], 3, 1).unwrap();
    let e = err_text(centroid::seeding::kmeans_plus_plus(
        x,
        None,
        2,
        i64::MAX,
        centroid::Metric::SquaredEuclidean,
        0,
    ));
    assert!(e.contains("at most 10000"), "{e}");
}

#[test]
fn many_kmeans_plus_plus_retries_on_few_rows_pick_distinct_rows() {
    // 10 000 candidates per centre from 6 rows: candidates repeat, the
    // scoring sees each row once, and the three groups are found.
    let x = [0.0f32, 0.1, 0.2, 50.0, 50.1, 100.0];
    let d = tempfile::tempdir().unwrap();
    let mut p = full_batch(3);
    p.initial_clusters = InitialClusters::KMeansPlusPlus;
    p.kmeans_plus_plus_num_retries = 10_000;
    let mut e = est(p, d.path());
    e.train(finite(&x, 1, 1), TrainArgs::default()).unwrap();
    let mut c = clusters_f64(&e);
    c.sort_by(f64::total_cmp);
    // After one Lloyd step from one row per group: the group means.
    let means = [0.1, 50.05, 100.0];
    for (got, want) in c.iter().zip(means) {
        assert!((got - want).abs() < 1e-5, "{c:?}");
    }
}

#[test]
fn a_huge_num_clusters_is_an_error_not_an_allocation() {
    let x = [0.0f32, 1.0, 2.0, 3.0];
    let k = usize::MAX / 4;
    for init in [InitialClusters::Random, InitialClusters::KMeansPlusPlus] {
        let d = tempfile::tempdir().unwrap();
        let mut p = KMeansParams::new(k);
        p.initial_clusters = init.clone();
        // A constant batch and a finite sequence of batches.
        let e = err_text(est(p.clone(), d.path()).train(common::constant(&x, 1), steps(1)));
        assert!(e.contains(&format!("{k}")), "{init:?}: {e}");
        let e = err_text(est(p, d.path()).train(finite(&x, 1, 2), steps(1)));
        assert!(e.contains(&format!("{k}")), "{init:?}: {e}");
        assert!(checkpoint::latest(d.path()).is_none());
    }
    // A callable that gives one row per batch runs out of input.
    let d = tempfile::tempdir().unwrap();
    let mut p = KMeansParams::new(k);
    p.initial_clusters = InitialClusters::Callable(Arc::new(
        |b: &Dense<'_>, _k: usize| -> centroid::Result<Dense<'static>> {
            Dense::new(b.to_type::<f32>()[..1].to_vec(), 1, 1)
        },
    ));
    let e = err_text(est(p, d.path()).train(finite(&x, 1, 3), steps(1)));
    assert!(e.contains("the input ended after 3 of num_clusters"), "{e}");
}

// ---------------------------------------------------------------- data

#[test]
fn float64_values_beyond_float32_are_refused_not_made_infinite() {
    // Under squared Euclidean such rows fail the norm limit first; under
    // cosine (no norm limit) the conversion itself is checked.
    use centroid::Metric::{Cosine, SquaredEuclidean};
    for (metric, too_big) in [
        (SquaredEuclidean, "has squared norm inf, beyond 8.50705866"),
        (Cosine, "column 0 is 1e300, outside the range of float32"),
    ] {
        let x = [1.0f32, 2.0, 10.0, 14.0];
        let d = tempfile::tempdir().unwrap();
        let mut p = full_batch(2);
        p.distance_metric = metric;
        p.initial_clusters = array(&[vec![3.0], vec![9.0]]);
        let mut e = est(p.clone(), d.path());
        e.train(finite(&x, 1, 1), TrainArgs::default()).unwrap();
        let before = std::fs::read(e.latest_checkpoint().unwrap()).unwrap();

        // The float32 model meets float64 rows, one of them beyond f32::MAX.
        let big = vec![1.0f64, 2.0, 1e300];
        let input = || {
            Ok(Input::batches(vec![Ok(
                Dense::new(big.clone(), 3, 1)?.into()
            )]))
        };
        let want =
            format!("input batch 0: row 2 {too_big}").replace("row 2 column", "row 2, column");
        let e1 = err_text(e.train(input, steps(1)));
        assert!(e1.contains(&want), "{e1}");
        let e2 = err_text(e.evaluate(input, EvalArgs::default()));
        assert!(e2.contains(&want), "{e2}");
        let first = e
            .predict(input, PredictArgs::default())
            .unwrap()
            .next()
            .unwrap();
        let e3 = err_text(first);
        assert!(e3.contains(&want), "{e3}");
        assert_eq!(
            std::fs::read(e.latest_checkpoint().unwrap()).unwrap(),
            before
        );

        // An initial array in float64 beyond float32, for float32 data.
        let d = tempfile::tempdir().unwrap();
        let mut q = p.clone();
        q.initial_clusters =
            InitialClusters::Array(Dense::from_rows(&[vec![1.0f64], vec![-1e39]]).unwrap());
        let e4 = err_text(est(q, d.path()).train(finite(&x, 1, 1), steps(1)));
        assert!(e4.contains("initial_clusters array: row 1"), "{e4}");
        assert!(e4.contains("squared norm") || e4.contains("-1e39"), "{e4}");

        // A callable returning float64 rows beyond float32.
        let mut q = p.clone();
        q.initial_clusters = InitialClusters::Callable(Arc::new(
            |_: &Dense<'_>, _k: usize| -> centroid::Result<Dense<'static>> {
                Dense::new(vec![1.0f64, 1e40], 2, 1)
            },
        ));
        let e5 = err_text(est(q, d.path()).train(finite(&x, 1, 1), steps(1)));
        assert!(
            e5.contains("initial_clusters function's result: row 1"),
            "{e5}"
        );
        assert!(e5.contains("squared norm") || e5.contains("1e40"), "{e5}");
        assert!(checkpoint::latest(d.path()).is_none());
    }
}

#[test]
fn float32_data_whose_squares_overflow_is_refused_and_never_checkpointed() {
    // 3e19^2 = 9e38 > f32::MAX: squared distances would be infinite (or
    // NaN, or silently clamped to 0). (5e18)^2 = 2.5e37 is within the
    // limit f32::MAX / 4.
    let x = [0.0f32, 5e18, 3e19, -3e19];
    for mini in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let mut p = KMeansParams::new(2);
        p.use_mini_batch = mini;
        p.initial_clusters = array(&[vec![-5e18], vec![5e18]]);
        let e = err_text(est(p, d.path()).train(finite(&x, 1, 2), steps(2)));
        assert!(
            e.contains("input batch 0: row 2 has squared norm 9") && e.contains("use float64 data"),
            "{e}"
        );
        assert!(checkpoint::latest(d.path()).is_none(), "mini={mini}");
    }
    // The same numbers in float64 are fine.
    let x64 = [0.0f64, 5e18, 3e19, -3e19];
    let d = tempfile::tempdir().unwrap();
    let mut p = full_batch(2);
    p.initial_clusters =
        InitialClusters::Array(Dense::from_rows(&[vec![-5e18f64], vec![5e18]]).unwrap());
    let mut e = est(p, d.path());
    e.train(
        || Ok(Input::constant(Dense::new(x64.as_slice(), 4, 1)?)),
        steps(1),
    )
    .unwrap();
    // 0 is as far from both centres and goes to the first; -3e19 too;
    // 5e18 and 3e19 go to the second. Means: -1.5e19 and 1.75e19, exactly.
    assert_eq!(clusters_f64(&e), vec![-1.5e19, 1.75e19]);
}

#[test]
fn feature_columns_with_mismatched_rows_name_both_columns() {
    use centroid::{Column, Features};
    use std::collections::BTreeMap;
    let d = tempfile::tempdir().unwrap();
    let input = || {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), Column::vector(vec![1.0f32, 2.0, 3.0]));
        m.insert(
            "b".to_string(),
            Column::matrix(vec![1.0f32, 2.0, 3.0, 4.0], 2, 2)?,
        );
        Ok(Input::constant(Features::Columns(m)))
    };
    let e = err_text(est(KMeansParams::new(1), d.path()).train(input, steps(1)));
    assert!(
        e.contains("feature column \"b\" has 2 rows but \"a\" has 3"),
        "{e}"
    );
}

#[test]
fn a_callable_initialiser_returning_bad_rows_is_refused() {
    let x = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
    let cases: Vec<(Dense<'static>, &str)> = vec![
        (
            Dense::new(vec![0.0f32; 3], 1, 3).unwrap(),
            "has 3 columns but the model has 2 features",
        ),
        (
            Dense::new(vec![0.0f32, f32::NAN], 1, 2).unwrap(),
            "row 0, column 1 is NaN",
        ),
        (
            Dense::new(vec![0.0f32; 6], 3, 2).unwrap(),
            "returned 3 rows but only 2 centres were still needed",
        ),
        (
            Dense::new(Vec::<f32>::new(), 0, 2).unwrap(),
            "returned no rows for the (constant) input batch",
        ),
    ];
    for (ret, want) in cases {
        let d = tempfile::tempdir().unwrap();
        let mut p = KMeansParams::new(2);
        p.initial_clusters = InitialClusters::Callable(Arc::new(
            move |_: &Dense<'_>, _k: usize| -> centroid::Result<Dense<'static>> { Ok(ret.clone()) },
        ));
        let e = err_text(est(p, d.path()).train(common::constant(&x, 2), steps(1)));
        assert!(e.contains(want), "{e}");
        assert!(checkpoint::latest(d.path()).is_none());
    }
}

#[test]
fn degenerate_shapes_train_and_predict() {
    // One row, one feature, one centre, in every update mode.
    for (mini, s) in [(false, 1), (true, 1), (true, 2)] {
        for init in [InitialClusters::Random, InitialClusters::KMeansPlusPlus] {
            let d = tempfile::tempdir().unwrap();
            let mut p = KMeansParams::new(1);
            p.use_mini_batch = mini;
            p.mini_batch_steps_per_iteration = s;
            p.initial_clusters = init;
            let mut e = est(p, d.path());
            e.train(common::constant(&[7.5f32], 1), steps(3)).unwrap();
            assert_eq!(clusters_f64(&e), vec![7.5]);
            assert_eq!(e.score(common::constant(&[5.5f32], 1)).unwrap(), 4.0);
        }
    }
    // A wide row: d = 200 000, two centres from two rows.
    let dd = 200_000;
    let x: Vec<f32> = (0..2 * dd)
        .map(|i| if i < dd { 1.0 } else { -1.0 })
        .collect();
    let t = tempfile::tempdir().unwrap();
    let mut e = est(full_batch(2), t.path());
    e.train(common::constant(&x, dd), steps(1)).unwrap();
    let mut c = clusters_f64(&e);
    c.sort_by(f64::total_cmp);
    assert_eq!(&c[..dd], vec![-1.0; dd].as_slice());
    assert_eq!(&c[dd..], vec![1.0; dd].as_slice());
}

#[test]
fn identical_points_give_identical_centres_in_every_init_mode() {
    let x = [3.0f32, -1.0].repeat(5);
    let inits = [
        InitialClusters::Random,
        InitialClusters::KMeansPlusPlus,
        array(&[vec![0.0, 0.0], vec![1.0, 1.0], vec![9.0, 9.0]]),
    ];
    for init in inits {
        let d = tempfile::tempdir().unwrap();
        let mut p = full_batch(3);
        p.initial_clusters = init.clone();
        let mut e = est(p, d.path());
        e.train(common::constant(&x, 2), steps(2)).unwrap();
        let c = clusters_f64(&e);
        let pred: Vec<i64> = e
            .predict_cluster_index(common::constant(&x, 2))
            .unwrap()
            .flat_map(|b| b.unwrap())
            .collect();
        match &init {
            // Every centre is one of the points; ties go to index 0.
            InitialClusters::Random | InitialClusters::KMeansPlusPlus => {
                assert_eq!(c, [3.0, -1.0].repeat(3), "{init:?}");
                assert_eq!(pred, vec![0; 5]);
            }
            // (1, 1) is nearest; the others keep their centres.
            _ => {
                assert_eq!(c, vec![0.0, 0.0, 3.0, -1.0, 9.0, 9.0]);
                assert_eq!(pred, vec![1; 5]);
            }
        }
        assert_eq!(e.score(common::constant(&x, 2)).unwrap(), 0.0);
    }
}

#[test]
fn zero_vectors_under_cosine_stay_finite() {
    // Zero rows are at distance 1 from every centre; a centre of zero rows
    // only stays zero (and finite).
    let x = [0.0f32, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 3.0];
    for (mini, s) in [(false, 1), (true, 1), (true, 2)] {
        for init in [InitialClusters::Random, InitialClusters::KMeansPlusPlus] {
            let d = tempfile::tempdir().unwrap();
            let mut p = KMeansParams::new(3);
            p.distance_metric = centroid::Metric::Cosine;
            p.use_mini_batch = mini;
            p.mini_batch_steps_per_iteration = s;
            p.initial_clusters = init;
            let mut e = est(p, d.path());
            e.train(common::constant(&x, 2), steps(4)).unwrap();
            assert!(clusters_f64(&e).iter().all(|v| v.is_finite()));
            let dist: Vec<f32> = e
                .transform(common::constant(&x[..2], 2))
                .unwrap()
                .flat_map(|b| b.unwrap().to_type::<f32>().into_owned())
                .collect();
            assert_eq!(dist, vec![1.0; 3]);
            let loss = e
                .evaluate(common::constant(&x, 2), EvalArgs::default())
                .unwrap()
                .loss;
            assert!(loss.is_finite() && loss >= 2.0 - 1e-6, "{loss}");
        }
    }
}

#[test]
fn k_larger_than_n_in_every_init_mode() {
    let x = [0.0f32, 1.0];
    let d = tempfile::tempdir().unwrap();
    // k-means++ needs k rows in its first batch, constant or not.
    let mut p = KMeansParams::new(3);
    p.initial_clusters = InitialClusters::KMeansPlusPlus;
    for e in [
        err_text(est(p.clone(), d.path()).train(common::constant(&x, 1), steps(1))),
        err_text(est(p, d.path()).train(finite(&x, 1, 5), steps(1))),
    ] {
        assert!(
            e.contains("needs at least num_clusters = 3 rows in the first batch, got 2"),
            "{e}"
        );
    }
    // An explicit array may hold more centres than the data has rows.
    let mut p = full_batch(1);
    p.initial_clusters = array(&[vec![0.0], vec![1.0], vec![5.0]]);
    let mut e = est(p, d.path());
    e.train(common::constant(&x, 1), steps(1)).unwrap();
    assert_eq!(clusters_f64(&e), vec![0.0, 1.0, 5.0]);
    // A callable giving one row per call fills k = 3 from a 2-row constant
    // batch by being called three times.
    let t = tempfile::tempdir().unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let mut p = full_batch(3);
    p.initial_clusters = InitialClusters::Callable(Arc::new(
        move |b: &Dense<'_>, k: usize| -> centroid::Result<Dense<'static>> {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let v = b.to_type::<f32>()[0] + k as f32;
            Dense::new(vec![v], 1, 1)
        },
    ));
    let mut e = est(p, t.path());
    e.train(common::constant(&x, 1), steps(1)).unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    // Initial centres 3, 2, 1; data 0 and 1 both go to centre 1 -> mean 0.5.
    assert_eq!(clusters_f64(&e), vec![3.0, 2.0, 0.5]);
}

// ---------------------------------------------------------------- model_dir

#[test]
fn a_model_dir_that_is_a_file_or_cannot_be_created() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("a_file");
    std::fs::write(&file, b"not a folder").unwrap();
    let e = err_text(KMeansClustering::new(
        KMeansParams::new(2),
        Some(file.clone()),
        None,
    ));
    assert!(e.contains("a_file exists and is not a folder"), "{e}");

    // Becomes a file after construction.
    let dir = t.path().join("later");
    let mut e = est(full_batch(1), &dir);
    std::fs::write(&dir, b"now a file").unwrap();
    let msg = err_text(e.train(common::constant(&[1.0f32], 1), steps(1)));
    assert!(msg.contains("later exists and is not a folder"), "{msg}");

    // Below a file: cannot be created. The error names the folder.
    let below = file.join("model");
    let mut e = est(full_batch(1), &below);
    let msg = err_text(e.train(common::constant(&[1.0f32], 1), steps(1)));
    assert!(
        msg.contains("cannot create model_dir") && msg.contains("a_file/model"),
        "{msg}"
    );
    assert!(matches!(e.cluster_centers(), Err(Error::NoCheckpoint(_))));
}

#[test]
fn an_index_naming_missing_files_falls_back_to_the_files_on_disk() {
    let x = [0.0f32, 2.0, 10.0, 14.0];
    let d = tempfile::tempdir().unwrap();
    let mut p = full_batch(2);
    p.initial_clusters = array(&[vec![3.0], vec![9.0]]);
    let mut e = est(p.clone(), d.path());
    e.train(common::constant(&x, 1), steps(2)).unwrap();
    std::fs::write(
        d.path().join("checkpoint"),
        "model_checkpoint_path: \"model.ckpt-99\"\nall_model_checkpoint_paths: \"../../elsewhere/model.ckpt-98.safetensors\"\n",
    )
    .unwrap();
    assert_eq!(
        e.latest_checkpoint(),
        Some(checkpoint::checkpoint_path(d.path(), 2))
    );
    // Training resumes from step 2; it does not start a new model.
    let init_calls = Cell::new(0);
    let input = || {
        init_calls.set(init_calls.get() + 1);
        Ok(Input::constant(Dense::new(&x[..], 4, 1)?))
    };
    e.train(input, steps(1)).unwrap();
    assert_eq!(init_calls.get(), 1);
    assert_eq!(global_step(&e), 3);
    // A garbage index is read the same way.
    std::fs::write(d.path().join("checkpoint"), [0xffu8, 0xfe, 0x00, 0x3a]).unwrap();
    assert_eq!(
        e.latest_checkpoint(),
        Some(checkpoint::checkpoint_path(d.path(), 3))
    );
}

#[test]
fn keep_checkpoint_max_one_keeps_only_the_newest() {
    let x = [0.0f32, 2.0, 10.0, 14.0];
    let d = tempfile::tempdir().unwrap();
    let c = RunConfig {
        save_checkpoints_steps: Some(1),
        save_checkpoints_secs: None,
        keep_checkpoint_max: 1,
        ..Default::default()
    };
    let mut e = KMeansClustering::new(full_batch(2), Some(d.path().into()), Some(c)).unwrap();
    e.train(common::constant(&x, 1), steps(4)).unwrap();
    assert_eq!(
        checkpoint::list(d.path()),
        vec![checkpoint::checkpoint_path(d.path(), 4)]
    );
    let files: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("model.ckpt"))
        .collect();
    assert_eq!(files, vec!["model.ckpt-4.safetensors"]);
}

#[test]
fn resuming_below_a_damaged_newer_checkpoint_makes_the_new_one_latest() {
    let x = [0.0f32, 2.0, 10.0, 14.0];
    let d = tempfile::tempdir().unwrap();
    let c = RunConfig {
        save_checkpoints_steps: Some(2),
        save_checkpoints_secs: None,
        keep_checkpoint_max: 0,
        ..Default::default()
    };
    let mut p = full_batch(2);
    p.initial_clusters = array(&[vec![3.0], vec![9.0]]);
    let mut e = KMeansClustering::new(p, Some(d.path().into()), Some(c)).unwrap();
    e.train(common::constant(&x, 1), steps(4)).unwrap();
    // Damage step 4: training resumes from step 2 and writes step 3.
    let p4 = checkpoint::checkpoint_path(d.path(), 4);
    let mut bytes = std::fs::read(&p4).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&p4, bytes).unwrap();
    e.train(common::constant(&x, 1), steps(1)).unwrap();
    assert_eq!(
        e.latest_checkpoint(),
        Some(checkpoint::checkpoint_path(d.path(), 3))
    );
    assert_eq!(global_step(&e), 3);
}

// ---------------------------------------------------------------- checkpoints

fn signature(k: usize, d: usize, dtype: DType, mini: bool, s: u64) -> ModelSignature {
    ModelSignature {
        num_clusters: k,
        num_features: d,
        dtype,
        distance_metric: "squared_euclidean".into(),
        use_mini_batch: mini,
        mini_batch_steps_per_iteration: s,
        initial_clusters: "random".into(),
        random_seed: 0,
        kmeans_plus_plus_num_retries: 2,
        relative_tolerance: None,
        feature_columns: None,
    }
}

fn state(k: usize, d: usize, step: i64) -> ModelState<f32> {
    ModelState {
        clusters: Matrix::new((0..k * d).map(|i| i as f32).collect(), k, d).unwrap(),
        initialized: true,
        global_step: step,
        cluster_counts: None,
        clusters_updated: None,
        update_in_steps: None,
    }
}

/// Writes a hostile but well-formed (checksummed) checkpoint.
fn write_state(dir: &Path, s: ModelState<f32>, sig: &ModelSignature) -> std::path::PathBuf {
    checkpoint::save(dir, &AnyState::F32(s), sig, 0).unwrap()
}

#[test]
fn hostile_checkpoint_values_are_refused_on_load() {
    let t = tempfile::tempdir().unwrap();
    let mini = signature(3, 2, DType::F32, true, 1);
    let asyn = signature(3, 2, DType::F32, true, 2);
    let full = signature(3, 2, DType::F32, false, 1);
    let mut cases: Vec<(ModelState<f32>, ModelSignature, &str)> = Vec::new();
    let mut s = state(3, 2, 5);
    s.cluster_counts = Some(vec![1, -2, 1]);
    cases.push((
        s,
        mini.clone(),
        "`cluster_counts` of cluster 1 is negative (-2)",
    ));
    let mut s = state(3, 2, 5);
    s.cluster_counts = Some(vec![0; 3]);
    s.clusters_updated = Some(s.clusters.clone());
    s.update_in_steps = Some(i64::MIN);
    cases.push((s, asyn.clone(), "`update_in_steps` is negative"));
    cases.push((
        state(3, 2, -1),
        full.clone(),
        "`global_step` is negative (-1)",
    ));
    let mut s = state(3, 2, 5);
    s.clusters.as_mut_slice()[3] = f32::NAN;
    cases.push((s, full.clone(), "`clusters` row 1, column 1 is not finite"));
    cases.push((
        state(0, 2, 5),
        signature(0, 2, DType::F32, false, 1),
        "at least one centre",
    ));
    cases.push((
        state(3, 0, 5),
        signature(3, 0, DType::F32, false, 1),
        "at least one centre and one feature",
    ));
    cases.push((
        state(3, 2, 5),
        signature(4, 2, DType::F32, false, 1),
        "the parameters say 4 x 2 float32 but `clusters` is 3 x 2 float32",
    ));
    cases.push((
        state(3, 2, 5),
        signature(3, 2, DType::F64, false, 1),
        "say 3 x 2 float64",
    ));
    // The async mode without its working copy; mini-batch without counts;
    // full batch with counts.
    let mut s = state(3, 2, 5);
    s.cluster_counts = Some(vec![0; 3]);
    cases.push((s, asyn, "variable `clusters_updated` is missing"));
    cases.push((state(3, 2, 5), mini, "variable `cluster_counts` is missing"));
    let mut s = state(3, 2, 5);
    s.cluster_counts = Some(vec![1; 3]);
    cases.push((s, full, "variable `cluster_counts` is present"));
    let mut s = state(3, 2, 5);
    s.initialized = false;
    cases.push((
        s,
        signature(3, 2, DType::F32, false, 1),
        "`initialized` is false",
    ));

    for (i, (s, sig, want)) in cases.into_iter().enumerate() {
        let dir = t.path().join(format!("case{i}"));
        let path = write_state(&dir, s, &sig);
        let e = err_text(checkpoint::load(&path));
        assert!(
            e.contains("damaged checkpoint") && e.contains(want),
            "case {i}: {e}"
        );
        // The Estimator refuses the directory rather than starting afresh.
        let mut p = KMeansParams::new(sig.num_clusters.max(1));
        p.use_mini_batch = sig.use_mini_batch;
        p.mini_batch_steps_per_iteration = sig.mini_batch_steps_per_iteration;
        let mut e = est(p, &dir);
        let msg = err_text(e.train(
            common::constant(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], 2),
            steps(1),
        ));
        assert!(msg.contains(want), "case {i}: {msg}");
    }
}

/// The bytes of a small real checkpoint: k = 3, d = 2, full batch or
/// mini-batch with `s` steps per iteration (s = 2: every variable).
fn real_checkpoint(dir: &Path, mini: bool, s: u64) -> Vec<u8> {
    let x: Vec<f32> = (0..40).map(|i| ((i * 7) % 13) as f32).collect();
    let mut p = KMeansParams::new(3);
    p.use_mini_batch = mini;
    p.mini_batch_steps_per_iteration = s;
    let mut e = est(p, dir);
    e.train(common::constant(&x, 2), steps(3)).unwrap();
    std::fs::read(e.latest_checkpoint().unwrap()).unwrap()
}

/// Replaces `from` by `to` (same length) in the safetensors JSON header.
fn edit_header(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(header.contains(from), "{from} not in {header}");
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(header.replacen(from, to, 1).as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn a_safetensors_header_that_lies_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let full = real_checkpoint(&t.path().join("full"), false, 1);
    let good = real_checkpoint(&t.path().join("async"), true, 2);
    let cases = [
        // Same byte count, other shape: the checksum still matches, and a
        // full-batch model has no other variable to disagree with.
        (
            &full,
            "\"clusters\":{\"dtype\":\"F32\",\"shape\":[3,2]",
            "\"clusters\":{\"dtype\":\"F32\",\"shape\":[2,3]",
            "the parameters say 3 x 2 float32 but `clusters` is 2 x 3",
        ),
        (
            &full,
            "\"clusters\":{\"dtype\":\"F32\",\"shape\":[3,2]",
            "\"clusters\":{\"dtype\":\"F32\",\"shape\":[6,1]",
            "but `clusters` is 6 x 1",
        ),
        (
            &good,
            "\"clusters\":{\"dtype\":\"F32\",\"shape\":[3,2]",
            "\"clusters\":{\"dtype\":\"F32\",\"shape\":[2,3]",
            "`cluster_counts` does not have one entry per cluster",
        ),
        // More values than there are bytes.
        (
            &good,
            "\"clusters\":{\"dtype\":\"F32\",\"shape\":[3,2]",
            "\"clusters\":{\"dtype\":\"F32\",\"shape\":[3,9]",
            "safetensors",
        ),
        // Another dtype of the same size.
        (
            &good,
            "\"clusters\":{\"dtype\":\"F32\"",
            "\"clusters\":{\"dtype\":\"I32\"",
            "unsupported dtype",
        ),
        (
            &good,
            "\"cluster_counts\":{\"dtype\":\"I64\"",
            "\"cluster_counts\":{\"dtype\":\"F64\"",
            "`cluster_counts` has dtype",
        ),
        (
            &full,
            "\"initialized\":{\"dtype\":\"BOOL\"",
            "\"initialized\":{\"dtype\":\"U8\"  ",
            "`initialized` should be one bool",
        ),
        (
            &full,
            "\"global_step\":{\"dtype\":\"I64\",\"shape\":[]",
            "\"global_step\":{\"dtype\":\"F64\",\"shape\":[]",
            "`global_step` has dtype",
        ),
    ];
    for (i, (base, from, to, want)) in cases.iter().enumerate() {
        let bytes = edit_header(base, from, to);
        let path = t.path().join(format!("lie{i}.safetensors"));
        std::fs::write(&path, bytes).unwrap();
        let e = err_text(checkpoint::load(&path));
        assert!(
            e.contains("damaged checkpoint") && e.contains(want),
            "case {i}: {e}"
        );
    }
    // A header length far beyond the file.
    let mut bytes = good.clone();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let path = t.path().join("len.safetensors");
    std::fs::write(&path, bytes).unwrap();
    assert!(err_text(checkpoint::load(&path)).contains("not a safetensors file"));
    // Truncated to nothing, and an empty file.
    for len in [0, 7, 8, 9] {
        std::fs::write(&path, &good[..len]).unwrap();
        assert!(checkpoint::load(&path).is_err());
    }
}

#[test]
fn fuzzed_checkpoints_load_or_fail_but_never_panic() {
    let t = tempfile::tempdir().unwrap();
    let good = real_checkpoint(&t.path().join("m"), true, 2);
    let header_end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let path = t.path().join("fuzz.safetensors");
    let mut r = rng(2024);
    let (mut ok, mut failed) = (0, 0);
    let x = [1.0f32, 2.0, 3.0, 4.0];
    for round in 0..3000 {
        let mut bytes = good.clone();
        match round % 5 {
            0 => bytes.truncate(r.gen_range(0..good.len())),
            1 => {
                for _ in 0..r.gen_range(1..=4) {
                    let i = r.gen_range(0..bytes.len());
                    bytes[i] ^= 1 << r.gen_range(0..8);
                }
            }
            2 => {
                // Inside the JSON header, where the checksum does not reach.
                let i = r.gen_range(8..header_end);
                bytes[i] = r.gen();
            }
            3 => {
                // A digit of the header replaced by another: shapes, offsets
                // and lengths that lie.
                let digits: Vec<usize> = (8..header_end)
                    .filter(|&i| bytes[i].is_ascii_digit())
                    .collect();
                let i = digits[r.gen_range(0..digits.len())];
                bytes[i] = b'0' + r.gen_range(0..10u8);
            }
            _ => {
                let v: u64 = if r.gen() {
                    r.gen()
                } else {
                    r.gen_range(0..2 * good.len() as u64)
                };
                bytes[..8].copy_from_slice(&v.to_le_bytes());
            }
        }
        // Every tenth round goes through a file, the others stay in memory.
        let from_file = round % 10 == 0;
        if from_file {
            std::fs::write(&path, &bytes).unwrap();
        }
        let outcome = std::panic::catch_unwind(|| {
            let loaded = if from_file {
                checkpoint::load(&path)
            } else {
                checkpoint::load_bytes(&path, &bytes)
            };
            match loaded {
                Ok(l) => {
                    // Whatever loads must be usable.
                    let names = checkpoint::variable_names(&l.state);
                    for n in &names {
                        checkpoint::variable(&l.state, n).unwrap();
                    }
                    if l.state.d() == 2 {
                        let model = centroid::ModelFn::new(
                            KMeansParams::new(l.state.k()).validate().unwrap(),
                        );
                        if let AnyState::F32(s) = &l.state {
                            let loss = model.loss(s, centroid::MatRef::new(&x, 2, 2).unwrap());
                            assert!(loss.is_finite());
                        }
                    }
                    true
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    false
                }
            }
        });
        match outcome {
            Ok(true) => ok += 1,
            Ok(false) => failed += 1,
            Err(_) => panic!("round {round}: checkpoint::load panicked on {bytes:?}"),
        }
    }
    // Most damage is caught; the checksum does not cover the header, so a
    // harmless header change (whitespace, a digit of a metadata number) may
    // still load.
    assert!(failed > 2000, "ok {ok}, failed {failed}");
}

#[test]
fn global_step_and_counts_at_the_int64_limit_do_not_wrap() {
    let x = [0.0f32, 0.0, 1.0, 1.0, 4.0, 4.0, 5.0, 5.0];
    // A full-batch model one step short of i64::MAX: one more step is
    // possible, the next is refused rather than wrapped to i64::MIN.
    let t = tempfile::tempdir().unwrap();
    write_state(
        t.path(),
        state(3, 2, i64::MAX - 1),
        &signature(3, 2, DType::F32, false, 1),
    );
    let mut e = est(full_batch(3), t.path());
    let msg = err_text(e.train(common::constant(&x, 2), TrainArgs::default()));
    assert!(
        msg.contains("global_step has reached its largest value (9223372036854775807)"),
        "{msg}"
    );
    // The refused call saved nothing; a bounded call saves step i64::MAX.
    assert_eq!(global_step(&e), i64::MAX - 1);
    e.train(common::constant(&x, 2), steps(5)).unwrap();
    assert_eq!(global_step(&e), i64::MAX);
    assert_eq!(
        e.latest_checkpoint(),
        Some(checkpoint::checkpoint_path(t.path(), i64::MAX))
    );

    // Mini-batch counts at i64::MAX saturate instead of wrapping negative
    // (which would flip the sign of the learning rate).
    let t = tempfile::tempdir().unwrap();
    let mut s = state(3, 2, 5);
    s.cluster_counts = Some(vec![i64::MAX, i64::MAX - 1, 7]);
    write_state(t.path(), s, &signature(3, 2, DType::F32, true, 1));
    let mut p = KMeansParams::new(3);
    p.use_mini_batch = true;
    let mut e = est(p, t.path());
    e.train(common::constant(&x, 2), steps(1)).unwrap();
    // Centres (0,1), (2,3), (4,5): rows (0,0), (1,1) -> 0; (4,4), (5,5) -> 2.
    match e.get_variable_value("cluster_counts").unwrap() {
        Tensor::I64 { values, .. } => assert_eq!(values, vec![i64::MAX, i64::MAX - 1, 9]),
        other => panic!("{other:?}"),
    }
    let c = clusters_f64(&e);
    // Cluster 2: (4,5) + ((9,9) - 2*(4,5)) / 9 = (4 + 1/9, 5 - 1/9).
    assert!(
        (c[4] - (4.0 + 1.0 / 9.0)).abs() < 1e-6 && (c[5] - (5.0 - 1.0 / 9.0)).abs() < 1e-6,
        "{c:?}"
    );
    // Cluster 0 moves towards (0.5, 0.5) at the rate 1 / i64::MAX: a
    // wrapped, negative count would move it away (below 0).
    assert!(c[0] > 0.0 && c[0] < 1e-18, "{c:?}");
    assert_eq!(&c[1..4], &[1.0, 2.0, 3.0]);
}

#[test]
fn bad_evaluation_names_and_an_empty_input_for_an_array_are_named() {
    let x = [0.0f32, 2.0, 10.0, 14.0];
    let d = tempfile::tempdir().unwrap();
    let mut p = full_batch(2);
    p.initial_clusters = array(&[vec![3.0], vec![9.0]]);
    let mut e = est(p, d.path());
    // No batch at all: the array's width cannot be checked.
    let empty = || Ok(Input::batches(Vec::new()));
    let msg = err_text(e.train(empty, steps(1)));
    assert!(
        msg.contains("initial_clusters' width cannot be checked"),
        "{msg}"
    );
    assert!(checkpoint::latest(d.path()).is_none());
    // A bad name is refused before any work, even before a checkpoint exists.
    for name in ["", "..", "a/b", "nul\0"] {
        let args = EvalArgs {
            name: Some(name.into()),
            ..Default::default()
        };
        let msg = err_text(e.evaluate(common::constant(&x, 1), args));
        assert!(
            msg.contains("must be a plain folder name"),
            "{name:?}: {msg}"
        );
    }
    e.train(common::constant(&x, 1), steps(1)).unwrap();
    let args = EvalArgs {
        name: Some("ok".into()),
        ..Default::default()
    };
    assert_eq!(
        e.evaluate(common::constant(&x, 1), args).unwrap().loss,
        10.0
    );
    assert!(d.path().join("eval_ok/metrics.jsonl").is_file());
}

// ---------------------------------------------------------------- kernels

/// A float32 squared distance that overflows (here 4e38 > f32::MAX) must
/// come out of `assign` as +inf and make `assign_accumulate`'s loss
/// infinite: once ||x||^2 = inf minus an infinite 2 x.c gave NaN, which the
/// clamp at 0 turned into a perfect fit. Checked on the narrow (d = 1) and
/// the wide (d = 20) kernels. The Estimator refuses such rows anyway (its
/// squared-norm limit); the public kernels must still not lie.
#[test]
fn kernels_report_overflowing_squared_distances_as_infinite() {
    use centroid::kernels::{self, ClusterStats, PreparedCentres};
    for d in [1usize, 20] {
        let rows = [0.0f32, 1e19, 3e19, -3e19];
        let cs = [-1e19f32, 1e19];
        let x: Vec<f32> = rows
            .iter()
            .flat_map(|&v| std::iter::repeat_n(v, d))
            .collect();
        let c: Vec<f32> = cs.iter().flat_map(|&v| std::iter::repeat_n(v, d)).collect();
        let prepared = PreparedCentres::new(
            centroid::MatRef::new(&c, 2, d).unwrap(),
            centroid::Metric::SquaredEuclidean,
        );
        let xm = centroid::MatRef::new(&x, 4, d).unwrap();
        let mut labels = [0u32; 4];
        let mut scores = [0f32; 4];
        kernels::assign(xm, &prepared, &mut labels, &mut scores);
        let mut stats = ClusterStats::new(2, d);
        kernels::assign_accumulate(xm, None, &prepared, None, &mut stats);
        // d (3e19 - 1e19)^2 >= 4e38 exceeds f32::MAX.
        assert_eq!(scores[2], f32::INFINITY, "d = {d}: {scores:?}");
        assert_eq!(scores[3], f32::INFINITY, "d = {d}: {scores:?}");
        assert_eq!(stats.loss, f64::INFINITY, "d = {d}");
    }
}
