//! Training lifecycle: resume, checkpoints, hooks, stopping, errors.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use centroid::{
    CheckpointSaverListener, Column, Dense, Error, EvalArgs, Features, InitialClusters, Input,
    KMeansClustering, KMeansParams, Mode, ParamError, PredictArgs, PredictKeys, RunConfig,
    RunContext, RunValues, SessionRunHook, Tensor, TrainArgs,
};
use common::*;

fn config(steps: Option<u64>) -> RunConfig {
    RunConfig {
        save_checkpoints_secs: None,
        save_checkpoints_steps: steps,
        ..Default::default()
    }
}

fn est(p: KMeansParams, dir: &Path, c: RunConfig) -> KMeansClustering {
    KMeansClustering::new(p.check().unwrap(), Some(dir.to_path_buf()), Some(c)).unwrap()
}

fn steps(n: u64) -> TrainArgs<'static> {
    TrainArgs {
        steps: Some(n),
        ..Default::default()
    }
}

fn params(mini: bool, s: u64) -> KMeansParams {
    let mut p = KMeansParams::new(4);
    p = p.initial_clusters(InitialClusters::KMeansPlusPlus);
    p = p.mode(Mode::from_flags(mini, s).unwrap());
    p = p.random_seed(42);
    p
}

fn raw_clusters(e: &KMeansClustering) -> Vec<u32> {
    match e.get_variable_value("clusters").unwrap() {
        Tensor::F32 { values, .. } => values.iter().map(|v| v.to_bits()).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn resume_equals_a_straight_run_bit_for_bit() {
    let b = blobs(500, 4, 40.0, 1);
    for (mini, s) in [(false, 1), (true, 1), (true, 3)] {
        let d1 = tempfile::tempdir().unwrap();
        let mut first = est(params(mini, s), d1.path(), config(None));
        first.train(constant(&b.points, 2), steps(10)).unwrap();
        drop(first);
        let mut again = est(params(mini, s), d1.path(), config(None));
        again.train(constant(&b.points, 2), steps(10)).unwrap();

        let d2 = tempfile::tempdir().unwrap();
        let mut straight = est(params(mini, s), d2.path(), config(None));
        straight.train(constant(&b.points, 2), steps(20)).unwrap();
        assert_eq!(
            raw_clusters(&again),
            raw_clusters(&straight),
            "mini={mini} S={s}"
        );
        assert_eq!(
            again.get_variable_value("global_step").unwrap(),
            Tensor::I64 {
                values: vec![20],
                shape: vec![]
            }
        );
        if mini {
            assert_eq!(
                again.get_variable_value("cluster_counts").unwrap(),
                straight.get_variable_value("cluster_counts").unwrap()
            );
        }
    }
}

#[test]
fn one_and_two_threads_give_identical_centres() {
    let b = blobs(20_000, 8, 60.0, 2);
    let mut results = Vec::new();
    for threads in [1, 2] {
        let d = tempfile::tempdir().unwrap();
        let mut p = params(false, 1);
        p = p.num_clusters(8);
        let c = RunConfig {
            num_threads: Some(threads),
            ..config(None)
        };
        let mut e = est(p, d.path(), c);
        e.train(constant(&b.points, 2), steps(5)).unwrap();
        let ev = e
            .evaluate(constant(&b.points, 2), EvalArgs::default())
            .unwrap();
        results.push((raw_clusters(&e), ev.loss.to_bits()));
    }
    assert_eq!(results[0], results[1]);
}

#[test]
fn same_seed_same_centres_other_seed_other_centres() {
    let b = blobs(400, 4, 80.0, 3);
    let run = |seed: u64| {
        let d = tempfile::tempdir().unwrap();
        let mut p = params(true, 1);
        p = p.initial_clusters(InitialClusters::Random);
        p = p.random_seed(seed);
        let mut e = est(p, d.path(), config(None));
        e.train(constant(&b.points, 2), steps(1)).unwrap();
        raw_clusters(&e)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn config_random_seed_overrides_the_constructor_seed() {
    let b = blobs(400, 4, 80.0, 3);
    let run = |seed: u64, config_seed: Option<u64>| {
        let d = tempfile::tempdir().unwrap();
        let mut p = params(true, 1);
        p = p.initial_clusters(InitialClusters::Random);
        p = p.random_seed(seed);
        let mut e = est(
            p,
            d.path(),
            RunConfig {
                random_seed: config_seed,
                ..config(None)
            },
        );
        e.train(constant(&b.points, 2), steps(1)).unwrap();
        raw_clusters(&e)
    };
    assert_eq!(run(1, Some(9)), run(2, Some(9)));
    assert_eq!(run(9, None), run(1, Some(9)));
}

#[test]
fn checkpoints_every_n_steps_keep_the_newest() {
    let b = blobs(200, 4, 40.0, 4);
    let d = tempfile::tempdir().unwrap();
    let c = RunConfig {
        keep_checkpoint_max: 3,
        ..config(Some(2))
    };
    let mut e = est(params(false, 1), d.path(), c);
    e.train(constant(&b.points, 2), steps(11)).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("model.ckpt-"))
        .collect();
    names.sort();
    // Saves at 2, 4, 6, 8, 10 and the end (11); the newest three stay.
    assert_eq!(
        names,
        [
            "model.ckpt-10.safetensors",
            "model.ckpt-11.safetensors",
            "model.ckpt-8.safetensors"
        ]
    );
    let index = std::fs::read_to_string(d.path().join("checkpoint")).unwrap();
    assert!(
        index.starts_with("model_checkpoint_path: \"model.ckpt-11.safetensors\"\n"),
        "{index}"
    );
    assert_eq!(index.matches("all_model_checkpoint_paths").count(), 3);
    assert_eq!(
        e.latest_checkpoint().unwrap(),
        d.path().join("model.ckpt-11.safetensors")
    );
    // No temporary files left behind.
    assert!(std::fs::read_dir(d.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp")));
    // The per-step losses were recorded, one line per step.
    let losses = std::fs::read_to_string(d.path().join(centroid::TRAIN_LOSSES_FILE)).unwrap();
    assert_eq!(losses.lines().count(), 12);
    assert!(losses.starts_with("global_step,loss\n1,"));
}

#[test]
fn input_state_is_saved_with_each_checkpoint_and_read_back() {
    let b = blobs(200, 4, 40.0, 4);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(params(true, 1), d.path(), config(Some(2)));
    // The feeder reports how many batches it has handed out; each save
    // records the count at that moment.
    let served = std::cell::Cell::new(0u64);
    let mut state = || Some(format!("served {}", served.get()));
    let input_fn = || {
        let points = &b.points;
        let served = &served;
        Ok(Input::batches((0..).map(move |_| {
            served.set(served.get() + 1);
            Ok(Features::Dense(Dense::new(&points[..], 200, 2).unwrap()))
        })))
    };
    let args = TrainArgs {
        steps: Some(5),
        input_state: Some(&mut state),
        ..Default::default()
    };
    e.train(input_fn, args).unwrap();
    // Initialisation took one batch of its own; steps 2, 4 and the end (5)
    // were saved after 3, 5 and 6 batches.
    for (step, want) in [(2, "served 3"), (4, "served 5"), (5, "served 6")] {
        let path = d.path().join(format!("model.ckpt-{step}.safetensors"));
        let loaded = centroid::model_dir::load(&path).unwrap();
        assert_eq!(loaded.input_state.as_deref(), Some(want), "step {step}");
    }
    // Without the callback (and in checkpoints written before it existed)
    // there is none.
    e.train(constant(&b.points, 2), steps(1)).unwrap();
    let loaded = centroid::model_dir::load_latest_good(d.path())
        .unwrap()
        .unwrap();
    assert_eq!(loaded.state.global_step(), 6);
    assert_eq!(loaded.input_state, None);
}

#[test]
fn a_damaged_checkpoint_is_detected_and_the_previous_one_used() {
    let b = blobs(200, 4, 40.0, 5);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(params(false, 1), d.path(), config(Some(1)));
    e.train(constant(&b.points, 2), steps(3)).unwrap();
    let latest = e.latest_checkpoint().unwrap();
    let mut bytes = std::fs::read(&latest).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40; // flip a bit inside the tensor data
    std::fs::write(&latest, &bytes).unwrap();
    let err = centroid::model_dir::load(&latest).unwrap_err();
    assert!(
        matches!(err, Error::CorruptCheckpoint { .. }) && err.to_string().contains("checksum"),
        "{err}"
    );
    // Training resumes from step 2, the newest intact checkpoint.
    assert_eq!(
        e.get_variable_value("global_step").unwrap(),
        Tensor::I64 {
            values: vec![2],
            shape: vec![]
        }
    );
    // Truncated files are refused too.
    std::fs::write(&latest, &bytes[..10]).unwrap();
    assert!(matches!(
        centroid::model_dir::load(&latest),
        Err(Error::CorruptCheckpoint { .. })
    ));
}

#[test]
fn a_model_dir_of_another_model_is_refused() {
    let b = blobs(200, 4, 40.0, 6);
    let d = tempfile::tempdir().unwrap();
    est(params(false, 1), d.path(), config(None))
        .train(constant(&b.points, 2), steps(1))
        .unwrap();
    let mut other = params(false, 1);
    other = other.num_clusters(3);
    let err = est(other, d.path(), config(None))
        .train(constant(&b.points, 2), steps(1))
        .unwrap_err();
    assert!(
        err.to_string().contains("num_clusters 4 on disk vs 3 here"),
        "{err}"
    );
    let mut cos = params(false, 1);
    cos = cos.distance_metric(centroid::Metric::Cosine);
    let err = est(cos, d.path(), config(None))
        .cluster_centers()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("\"squared_euclidean\" on disk vs \"cosine\" here"),
        "{err}"
    );
    let err = est(params(true, 1), d.path(), config(None))
        .train(constant(&b.points, 2), steps(1))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("full batch on disk vs mini-batch here"),
        "{err}"
    );
    // Data of another width.
    let wide: Vec<f32> = (0..30).map(|i| i as f32).collect();
    let err = est(params(false, 1), d.path(), config(None))
        .train(constant(&wide, 3), steps(1))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("has 3 columns but the model has 2 features"),
        "{err}"
    );
}

#[test]
fn steps_and_max_steps() {
    let b = blobs(200, 4, 40.0, 7);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(params(false, 1), d.path(), config(None));
    let gs = |e: &KMeansClustering| match e.get_variable_value("global_step").unwrap() {
        Tensor::I64 { values, .. } => values[0],
        _ => unreachable!(),
    };
    e.train(constant(&b.points, 2), steps(3)).unwrap();
    assert_eq!(gs(&e), 3);
    e.train(constant(&b.points, 2), steps(2)).unwrap();
    assert_eq!(gs(&e), 5);
    e.train(
        constant(&b.points, 2),
        TrainArgs {
            max_steps: Some(7),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(gs(&e), 7);
    let before = std::fs::read(e.latest_checkpoint().unwrap()).unwrap();
    e.train(
        constant(&b.points, 2),
        TrainArgs {
            max_steps: Some(4),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(gs(&e), 7);
    assert_eq!(
        std::fs::read(e.latest_checkpoint().unwrap()).unwrap(),
        before
    );
    let cases = [
        (
            TrainArgs {
                steps: Some(1),
                max_steps: Some(9),
                ..Default::default()
            },
            ParamError::StepsAndMaxSteps,
        ),
        (
            TrainArgs {
                steps: Some(0),
                ..Default::default()
            },
            ParamError::NoSteps,
        ),
        (
            TrainArgs {
                max_steps: Some(0),
                ..Default::default()
            },
            ParamError::NoMaxSteps,
        ),
    ];
    for (bad, want) in cases {
        match e.train(constant(&b.points, 2), bad) {
            Err(Error::Param(got)) => assert_eq!(got, want),
            other => panic!("expected {want:?}, got {:?}", other.err()),
        }
    }
}

#[test]
fn a_finite_input_ends_training() {
    let b = blobs(200, 4, 40.0, 8);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(params(true, 1), d.path(), config(None));
    let pts = b.points.clone();
    let input = move || {
        let pts = pts.clone();
        Ok(Input::batches((0..4).map(move |i| {
            Ok(Dense::new(pts[i * 100..(i + 1) * 100].to_vec(), 50, 2)?.into())
        })))
    };
    e.train(input, TrainArgs::default()).unwrap();
    // Four batches, four steps: initialisation does not eat them.
    assert_eq!(
        e.get_variable_value("global_step").unwrap(),
        Tensor::I64 {
            values: vec![4],
            shape: vec![]
        }
    );
}

#[test]
fn relative_tolerance_stops_even_at_zero_loss() {
    // Four distinct points and k = 4: the loss is 0 from the first step on.
    let pts = [0.0f32, 0.0, 1.0, 0.0, 0.0, 1.0, 5.0, 5.0];
    let d = tempfile::tempdir().unwrap();
    let mut p = params(false, 1);
    p = p.relative_tolerance(Some(1e-6));
    let mut e = est(p, d.path(), config(None));
    e.train(constant(&pts, 2), TrainArgs::default()).unwrap();
    // Step 1 never stops (no previous loss in this call); step 2 does.
    assert_eq!(
        e.get_variable_value("global_step").unwrap(),
        Tensor::I64 {
            values: vec![2],
            shape: vec![]
        }
    );
    assert_eq!(e.score(constant(&pts, 2)).unwrap(), 0.0);
}

struct StopAfter {
    n: i64,
    calls: Vec<String>,
}

impl SessionRunHook for StopAfter {
    fn begin(&mut self) -> centroid::Result<()> {
        self.calls.push("begin".into());
        Ok(())
    }
    fn before_run(&mut self, ctx: &mut RunContext) -> centroid::Result<()> {
        self.calls.push(format!("before {}", ctx.global_step()));
        Ok(())
    }
    fn after_run(&mut self, ctx: &mut RunContext, v: &RunValues) -> centroid::Result<()> {
        assert!(v.loss.is_finite() && v.loss > 0.0);
        self.calls.push(format!("after {}", v.global_step));
        if v.global_step >= self.n {
            ctx.request_stop();
        }
        Ok(())
    }
    fn end(&mut self) -> centroid::Result<()> {
        self.calls.push("end".into());
        Ok(())
    }
}

#[derive(Default)]
struct Recorder(Vec<String>);

impl CheckpointSaverListener for Recorder {
    fn begin(&mut self) -> centroid::Result<()> {
        self.0.push("begin".into());
        Ok(())
    }
    fn before_save(&mut self, s: i64) -> centroid::Result<()> {
        self.0.push(format!("before_save {s}"));
        Ok(())
    }
    fn after_save(&mut self, s: i64) -> centroid::Result<()> {
        self.0.push(format!("after_save {s}"));
        Ok(())
    }
    fn end(&mut self, s: i64) -> centroid::Result<()> {
        self.0.push(format!("end {s}"));
        Ok(())
    }
}

#[test]
fn hooks_stop_training_and_listeners_wrap_every_save() {
    let b = blobs(200, 4, 40.0, 9);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(params(false, 1), d.path(), config(Some(2)));
    let mut hook = StopAfter {
        n: 3,
        calls: vec![],
    };
    let mut listener = Recorder::default();
    e.train(
        constant(&b.points, 2),
        TrainArgs {
            steps: Some(100),
            hooks: vec![Box::new(&mut hook)],
            saving_listeners: vec![Box::new(&mut listener)],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        hook.calls,
        ["begin", "before 0", "after 1", "before 1", "after 2", "before 2", "after 3", "end"]
    );
    assert_eq!(
        listener.0,
        [
            "begin",
            "before_save 2",
            "after_save 2",
            "before_save 3",
            "after_save 3",
            "end 3"
        ]
    );
}

#[test]
fn interrupting_saves_the_last_finished_step() {
    let b = blobs(200, 4, 40.0, 10);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(params(false, 1), d.path(), config(None));
    let mut polls = 0;
    let mut interrupt = || {
        polls += 1;
        polls == 4
    };
    let err = e
        .train(
            constant(&b.points, 2),
            TrainArgs {
                steps: Some(100),
                interrupt: Some(&mut interrupt),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Interrupted { global_step: 4 }),
        "{err}"
    );
    assert_eq!(
        e.latest_checkpoint().unwrap(),
        d.path().join("model.ckpt-4.safetensors")
    );
}

#[test]
fn bad_batches_give_errors_that_say_where_and_change_nothing() {
    let b = blobs(200, 4, 40.0, 11);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(params(true, 1), d.path(), config(None));
    e.train(constant(&b.points, 2), steps(2)).unwrap();
    let before = std::fs::read(e.latest_checkpoint().unwrap()).unwrap();
    let mut bad = b.points[..20].to_vec();
    bad[7] = f32::NAN;
    let good = b.points[..20].to_vec();
    let bad2 = bad.clone();
    let input = move || {
        let (g, b) = (good.clone(), bad2.clone());
        Ok(Input::batches(vec![
            Ok(Dense::new(g, 10, 2)?.into()),
            Ok(Dense::new(b, 10, 2)?.into()),
        ]))
    };
    let err = e.train(input, steps(5)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid data: input batch 1: row 3, column 1 is NaN"
    );
    assert_eq!(
        std::fs::read(e.latest_checkpoint().unwrap()).unwrap(),
        before
    );

    let mut inf = b.points[..20].to_vec();
    inf[0] = f32::INFINITY;
    let err = e
        .evaluate(constant(&inf, 2), EvalArgs::default())
        .unwrap_err();
    assert!(
        err.to_string().contains("row 0, column 0 is infinite"),
        "{err}"
    );

    let empty: Vec<f32> = vec![];
    let err = e
        .evaluate(
            || Ok(Input::constant(Dense::new(empty.as_slice(), 0, 2)?)),
            EvalArgs::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");

    let err = Dense::from_rows(&[vec![1.0f32, 2.0], vec![3.0]]).unwrap_err();
    assert!(
        err.to_string()
            .contains("ragged rows: row 1 has 1 values, row 0 has 2"),
        "{err}"
    );
}

#[test]
fn k_larger_than_the_data_is_an_error() {
    let pts = [0.0f32, 1.0, 2.0];
    let d = tempfile::tempdir().unwrap();
    let mut p = KMeansParams::new(5);
    p = p.mode(Mode::FullBatch);
    let err = est(p, d.path(), config(None))
        .train(constant(&pts, 1), steps(1))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("num_clusters = 5 is larger than the 3 rows"),
        "{err}"
    );
    let mut p = KMeansParams::new(5);
    p = p.initial_clusters(InitialClusters::Random);
    let input = || {
        Ok(Input::batches(vec![Ok(Dense::new(
            vec![0.0f32, 1.0],
            2,
            1,
        )?
        .into())]))
    };
    let err = est(p, d.path(), config(None))
        .train(input, steps(1))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the input ended after 2 of num_clusters = 5 initial centres"),
        "{err}"
    );
}

#[test]
fn bad_arguments_are_refused_at_construction() {
    let d = tempfile::tempdir().unwrap();
    let err = centroid::Metric::from_name("manhattan").unwrap_err();
    assert!(
        matches!(&err, Error::Param(ParamError::UnknownDistanceMetric(n)) if n == "manhattan"),
        "{err}"
    );
    // The message names the accepted values.
    assert!(
        err.to_string()
            .contains("\"squared_euclidean\", \"cosine\""),
        "{err}"
    );
    let err = InitialClusters::from_name("kmeans++").unwrap_err();
    assert!(
        matches!(&err, Error::Param(ParamError::UnknownInitialClusters(n)) if n == "kmeans++"),
        "{err}"
    );
    assert!(
        err.to_string().contains("\"random\", \"kmeans_plus_plus\""),
        "{err}"
    );
    let mk = |p: KMeansParams, c: RunConfig| {
        KMeansClustering::new(p.check()?, Some(d.path().to_path_buf()), Some(c))
    };
    assert!(matches!(
        mk(KMeansParams::new(0), RunConfig::default()),
        Err(Error::Param(ParamError::NoClusters))
    ));
    assert!(matches!(
        Mode::from_flags(true, 0),
        Err(Error::Param(ParamError::NoStepsPerIteration))
    ));
    let p = KMeansParams::new(2).mode(Mode::Async {
        steps_per_iteration: 0,
    });
    assert!(matches!(
        mk(p, RunConfig::default()),
        Err(Error::Param(ParamError::NoStepsPerIteration))
    ));
    let p = KMeansParams::new(2).relative_tolerance(Some(f64::NAN));
    assert!(matches!(
        mk(p, RunConfig::default()),
        Err(Error::Param(ParamError::BadRelativeTolerance(t))) if t.is_nan()
    ));
    let c = RunConfig {
        save_checkpoints_steps: Some(10),
        ..Default::default()
    };
    assert!(matches!(
        mk(KMeansParams::new(2), c),
        Err(Error::Param(ParamError::TwoCheckpointSchedules))
    ));
    let c = RunConfig {
        model_dir: Some("/somewhere/else".into()),
        ..Default::default()
    };
    assert!(matches!(
        mk(KMeansParams::new(2), c),
        Err(Error::Param(ParamError::ModelDirsDiffer(a, b)))
            if a == d.path() && b == Path::new("/somewhere/else")
    ));
    // config.model_dir alone is used.
    let c = RunConfig {
        model_dir: Some(d.path().to_path_buf()),
        ..Default::default()
    };
    let e = KMeansClustering::new(KMeansParams::new(2).check().unwrap(), None, Some(c)).unwrap();
    assert_eq!(e.model_dir(), d.path());
    // No model_dir at all: a fresh temporary one.
    let e = KMeansClustering::new(KMeansParams::new(2).check().unwrap(), None, None).unwrap();
    assert!(e.model_dir().is_dir() && std::fs::read_dir(e.model_dir()).unwrap().next().is_none());
    std::fs::remove_dir(e.model_dir()).unwrap();
}

#[test]
fn nothing_to_read_before_training() {
    let d = tempfile::tempdir().unwrap();
    let e = est(params(false, 1), d.path(), config(None));
    assert!(e.latest_checkpoint().is_none());
    assert!(matches!(e.cluster_centers(), Err(Error::NoCheckpoint(_))));
    assert!(matches!(
        e.get_variable_names(),
        Err(Error::NoCheckpoint(_))
    ));
    let pts = [1.0f32, 2.0];
    assert!(matches!(
        e.evaluate(constant(&pts, 2), EvalArgs::default()),
        Err(Error::NoCheckpoint(_))
    ));
    assert!(matches!(
        e.predict(constant(&pts, 2), PredictArgs::default()),
        Err(Error::NoCheckpoint(_))
    ));
}

#[test]
fn predict_keys_and_evaluation_names() {
    let b = blobs(100, 4, 40.0, 12);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(params(false, 1), d.path(), config(None));
    e.train(constant(&b.points, 2), steps(2)).unwrap();
    let only = PredictArgs {
        predict_keys: Some(PredictKeys::ALL_DISTANCES),
        ..Default::default()
    };
    let p = e
        .predict(constant(&b.points, 2), only)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert!(p.cluster_index.is_none() && p.all_distances.as_ref().unwrap().cols() == 4);
    let err = PredictKeys::from_names(&["labels"]).unwrap_err();
    assert!(
        matches!(&err, Error::Param(ParamError::UnknownPredictKey(k)) if k == "labels"),
        "{err}"
    );
    let t: Vec<Dense> = e
        .transform(constant(&b.points, 2))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!((t[0].rows(), t[0].cols()), (100, 4));
    // Evaluations with names are kept apart on disk.
    let r = e
        .evaluate(
            constant(&b.points, 2),
            EvalArgs {
                name: Some("test".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let line = std::fs::read_to_string(d.path().join("eval_test/metrics.jsonl")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["global_step"], 2);
    assert_eq!(v["loss"].as_f64().unwrap(), r.loss);
    // An evaluation of an older checkpoint by path.
    let old = e.evaluate(
        constant(&b.points, 2),
        EvalArgs {
            checkpoint_path: Some(d.path().join("model.ckpt-2")),
            ..Default::default()
        },
    );
    assert_eq!(old.unwrap().global_step, 2);
    let missing = e.evaluate(
        constant(&b.points, 2),
        EvalArgs {
            checkpoint_path: Some(d.path().join("model.ckpt-99")),
            ..Default::default()
        },
    );
    assert!(matches!(missing, Err(Error::Io { .. })));
}

#[test]
fn evaluate_averages_batch_losses_and_respects_steps() {
    let b = blobs(300, 4, 40.0, 13);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(params(false, 1), d.path(), config(None));
    e.train(constant(&b.points, 2), steps(3)).unwrap();
    let centres = centres_f64(&e);
    let batch_loss = |rows: &[f32]| {
        rows.chunks(2)
            .map(|r| nearest(r, &centres, 2).1)
            .sum::<f64>()
    };
    let pts = b.points.clone();
    let three = move || {
        let pts = pts.clone();
        Ok(Input::batches((0..3).map(move |i| {
            Ok(Dense::new(pts[i * 200..(i + 1) * 200].to_vec(), 100, 2)?.into())
        })))
    };
    let want = (0..3)
        .map(|i| batch_loss(&b.points[i * 200..(i + 1) * 200]))
        .sum::<f64>()
        / 3.0;
    let got = e.evaluate(three.clone(), EvalArgs::default()).unwrap().loss;
    assert!((got - want).abs() <= 1e-5 * want, "{got} vs {want}");
    let one = e
        .evaluate(
            three,
            EvalArgs {
                steps: Some(1),
                ..Default::default()
            },
        )
        .unwrap()
        .loss;
    let want1 = batch_loss(&b.points[..200]);
    assert!((one - want1).abs() <= 1e-5 * want1);
}

#[test]
fn feature_dicts_join_in_sorted_order_or_feature_columns_order() {
    // Columns "b" (x) and "a" (y): sorted order puts "a" first.
    let xs: Vec<f32> = vec![0.0, 0.1, 10.0, 10.1];
    let ys: Vec<f32> = vec![5.0, 5.1, 5.0, 5.1];
    let dict = |xs: Vec<f32>, ys: Vec<f32>| {
        move || {
            let mut m = BTreeMap::new();
            m.insert("b".to_string(), Column::vector(xs.clone()));
            m.insert("a".to_string(), Column::vector(ys.clone()));
            Ok(Input::Constant(Features::Columns(m)))
        }
    };
    let d = tempfile::tempdir().unwrap();
    let mut p = KMeansParams::new(2);
    p = p.mode(Mode::FullBatch);
    p = p.initial_clusters(InitialClusters::Array(
        Dense::new(vec![5.0f32, 0.0, 5.0, 10.0], 2, 2).unwrap(),
    ));
    let mut e = est(p.clone(), d.path(), config(None));
    e.train(dict(xs.clone(), ys.clone()), steps(1)).unwrap();
    // Rows are (a, b) = (y, x): centres (5.05, 0.05) and (5.05, 10.05).
    let c = centres_f64(&e);
    assert!(
        (c[0] - 5.05).abs() < 1e-5 && (c[1] - 0.05).abs() < 1e-5 && (c[3] - 10.05).abs() < 1e-5,
        "{c:?}"
    );

    let d2 = tempfile::tempdir().unwrap();
    p = p.feature_columns(Some(vec!["b".into()]));
    p = p.initial_clusters(InitialClusters::Array(
        Dense::new(vec![0.0f32, 10.0], 2, 1).unwrap(),
    ));
    let mut e = est(p, d2.path(), config(None));
    e.train(dict(xs, ys), steps(1)).unwrap();
    let c = centres_f64(&e);
    assert!(
        (c[0] - 0.05).abs() < 1e-6 && (c[1] - 10.05).abs() < 1e-5,
        "{c:?}"
    );
}

#[test]
fn f64_data_trains_f64_centres() {
    let pts: Vec<f64> = vec![0.0, 0.5, 10.0, 10.5];
    let d = tempfile::tempdir().unwrap();
    let mut p = KMeansParams::new(2);
    p = p.mode(Mode::FullBatch);
    p = p.initial_clusters(InitialClusters::Array(
        Dense::new(vec![1.0f32, 9.0], 2, 1).unwrap(),
    ));
    let mut e = est(p, d.path(), config(None));
    e.train(
        || Ok(Input::constant(Dense::new(pts.as_slice(), 4, 1)?)),
        steps(1),
    )
    .unwrap();
    assert_eq!(
        e.get_variable_value("clusters").unwrap(),
        Tensor::F64 {
            values: vec![0.25, 10.25],
            shape: vec![2, 1]
        }
    );
}

#[test]
fn a_callable_initialiser_is_called_on_successive_batches() {
    let pts: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let d = tempfile::tempdir().unwrap();
    let mut p = KMeansParams::new(3);
    p = p.mode(Mode::FullBatch);
    // Takes the last row of each batch it is given.
    p = p.initial_clusters(InitialClusters::Callable(std::sync::Arc::new(
        |b: &Dense<'_>, remaining: usize| {
            assert!(remaining >= 1);
            let v = b.to_type::<f32>();
            Dense::new(vec![v[v.len() - 1]], 1, 1)
        },
    )));
    let mut e = est(p, d.path(), config(None));
    let input = || {
        let pts = pts.clone();
        Ok(Input::batches((0..3).map(move |i| {
            Ok(Dense::new(pts[i * 4..i * 4 + 4].to_vec(), 4, 1)?.into())
        })))
    };
    e.train(input, steps(1)).unwrap();
    // Centres 3, 7, 11; one Lloyd step on the first batch {0,1,2,3}: all go
    // to centre 0 whose mean is 1.5; the others keep their place.
    assert_eq!(centres_f64(&e), vec![1.5, 7.0, 11.0]);

    let d2 = tempfile::tempdir().unwrap();
    let mut p = KMeansParams::new(2);
    p = p.initial_clusters(InitialClusters::Callable(std::sync::Arc::new(
        |_: &Dense<'_>, _: usize| Dense::new(vec![1.0f32, 2.0, 3.0], 3, 1),
    )));
    let err = est(p, d2.path(), config(None))
        .train(constant(&pts, 1), steps(1))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("returned 3 rows but only 2 centres were still needed"),
        "{err}"
    );
}

#[test]
fn initial_array_width_must_match_the_data() {
    let pts: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let d = tempfile::tempdir().unwrap();
    let mut p = KMeansParams::new(7);
    p = p.initial_clusters(InitialClusters::Array(
        Dense::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).unwrap(),
    ));
    let e = KMeansClustering::new(
        p.clone().check().unwrap(),
        Some(d.path().to_path_buf()),
        None,
    )
    .unwrap();
    assert_eq!(e.params().num_clusters(), 2, "k comes from the array");
    let err = est(p, d.path(), config(None))
        .train(constant(&pts, 2), steps(1))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("initial_clusters has 3 columns but the data has 2"),
        "{err}"
    );
}

#[test]
fn export_writes_a_timestamped_saved_model_of_the_chosen_checkpoint() {
    use centroid::export::ServingInputReceiver;
    let b = blobs(100, 4, 40.0, 14);
    let d = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = est(params(false, 1), d.path(), config(Some(1)));
    let receiver = ServingInputReceiver::single("x", 2);
    let err = e
        .export_saved_model(out.path(), &receiver, &[], false, None)
        .unwrap_err();
    assert!(matches!(err, Error::NoCheckpoint(_)), "{err}");
    let mut e = e;
    e.train(constant(&b.points, 2), steps(2)).unwrap();
    let asset = d.path().join("note.txt");
    std::fs::write(&asset, "hello").unwrap();
    let dir = e
        .export_saved_model(
            out.path(),
            &receiver,
            &[("note.txt".into(), asset)],
            false,
            Some(&d.path().join("model.ckpt-1")),
        )
        .unwrap();
    let secs: u64 = dir.file_name().unwrap().to_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now - secs < 60);
    assert!(dir.join("saved_model.pb").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.join("assets.extra/note.txt")).unwrap(),
        "hello"
    );
    let text = e
        .export_saved_model(out.path(), &receiver, &[], true, None)
        .unwrap();
    assert_ne!(text, dir);
    let pbtxt = std::fs::read_to_string(text.join("saved_model.pbtxt")).unwrap();
    assert!(pbtxt.contains("serving_default") && pbtxt.contains("all_distances"));
    // A receiver of the wrong width is refused.
    let err = e
        .export_saved_model(
            out.path(),
            &ServingInputReceiver::single("x", 3),
            &[],
            false,
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains('3'), "{err}");
}

// ------------------------------------------------------------------------
// Spec conformance, behaviour by behaviour, on a four-point line whose
// every step is worked out by hand: x = 0, 2, 10, 14 with centres 3 and 9
// assigns {0, 2} and {10, 14}; the means are 1 and 12.

const LINE: [f32; 4] = [0.0, 2.0, 10.0, 14.0];

fn line_params(mini: bool, s: u64) -> KMeansParams {
    let mut p = KMeansParams::new(2);
    p = p.mode(Mode::from_flags(mini, s).unwrap());
    p = p.initial_clusters(InitialClusters::Array(
        Dense::from_rows(&[vec![3.0f32], vec![9.0]]).unwrap(),
    ));
    p
}

fn f32s(t: Tensor) -> Vec<f32> {
    match t {
        Tensor::F32 { values, .. } => values,
        other => panic!("{other:?}"),
    }
}

fn i64s(t: Tensor) -> Vec<i64> {
    match t {
        Tensor::I64 { values, .. } => values,
        other => panic!("{other:?}"),
    }
}

#[test]
fn variable_names_and_values_per_mode_after_one_step() {
    let d = tempfile::tempdir().unwrap();
    let mut e = est(line_params(false, 1), &d.path().join("full"), config(None));
    e.train(constant(&LINE, 1), steps(1)).unwrap();
    assert_eq!(
        e.get_variable_names().unwrap(),
        ["clusters", "initialized", "global_step"]
    );
    assert_eq!(f32s(e.get_variable_value("clusters").unwrap()), [1.0, 12.0]);
    assert_eq!(
        e.get_variable_value("initialized").unwrap(),
        Tensor::Bool {
            values: vec![true],
            shape: vec![]
        }
    );
    let err = e
        .get_variable_value("cluster_counts")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no variable \"cluster_counts\"")
            && err.contains("clusters, initialized, global_step"),
        "{err}"
    );

    // Sculley: counts start at 1; C0 = 3 + (2 - 2*3)/3 = 5/3, C1 = 9 + (24 - 18)/3 = 11.
    let mut e = est(line_params(true, 1), &d.path().join("s1"), config(None));
    e.train(constant(&LINE, 1), steps(1)).unwrap();
    assert_eq!(
        e.get_variable_names().unwrap(),
        ["clusters", "initialized", "global_step", "cluster_counts"]
    );
    assert_eq!(
        i64s(e.get_variable_value("cluster_counts").unwrap()),
        [3, 3]
    );
    assert_eq!(
        f32s(e.get_variable_value("clusters").unwrap()),
        [5.0 / 3.0, 11.0]
    );

    // S = 3: the master centres stay; the working copy takes the batch
    // means (counts start at 0); two steps remain before the publish.
    let mut e = est(line_params(true, 3), &d.path().join("s3"), config(None));
    e.train(constant(&LINE, 1), steps(1)).unwrap();
    assert_eq!(
        e.get_variable_names().unwrap(),
        [
            "clusters",
            "initialized",
            "global_step",
            "cluster_counts",
            "clusters_updated",
            "update_in_steps"
        ]
    );
    assert_eq!(f32s(e.get_variable_value("clusters").unwrap()), [3.0, 9.0]);
    assert_eq!(
        f32s(e.get_variable_value("clusters_updated").unwrap()),
        [1.0, 12.0]
    );
    assert_eq!(
        i64s(e.get_variable_value("cluster_counts").unwrap()),
        [2, 2]
    );
    assert_eq!(i64s(e.get_variable_value("update_in_steps").unwrap()), [2]);
    assert_eq!(i64s(e.get_variable_value("global_step").unwrap()), [1]);
}

#[test]
fn train_one_step_initialises_from_its_own_call_and_then_updates_once() {
    // Each input_fn call yields batch A, then batch B. Initialisation takes
    // A's first two rows (0 and 2); the single training step must run on A
    // again, from a fresh call: {0} -> 0 and {2, 10, 14} -> 26/3.
    let a = LINE.to_vec();
    let b = vec![100.0f32, 200.0, 300.0, 400.0];
    let calls = std::cell::Cell::new(0);
    let input = || {
        calls.set(calls.get() + 1);
        let (a, b) = (a.clone(), b.clone());
        Ok(Input::batches(vec![
            Ok(Dense::new(a, 4, 1)?.into()),
            Ok(Dense::new(b, 4, 1)?.into()),
        ]))
    };
    let init_calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = init_calls.clone();
    let mut p = line_params(false, 1);
    p = p.initial_clusters(InitialClusters::Callable(std::sync::Arc::new(
        move |batch: &Dense<'_>, k: usize| -> centroid::Result<Dense<'static>> {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Dense::new(batch.to_type::<f32>()[..k].to_vec(), k, 1)
        },
    )));
    let d = tempfile::tempdir().unwrap();
    let mut e = est(p, d.path(), config(None));
    e.train(input, steps(1)).unwrap();
    assert_eq!(calls.get(), 2);
    assert_eq!(init_calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Initialisation did not count as a step.
    assert_eq!(i64s(e.get_variable_value("global_step").unwrap()), [1]);
    assert_eq!(
        f32s(e.get_variable_value("clusters").unwrap()),
        [0.0, 26.0 / 3.0]
    );

    // A restored model never initialises again, even when its input could
    // not initialise it (one row for two centres).
    let one_row = [5.0f32];
    e.train(constant(&one_row, 1), steps(1)).unwrap();
    assert_eq!(init_calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(i64s(e.get_variable_value("global_step").unwrap()), [2]);
    // 5 is nearer 26/3 than 0: that centre becomes 5, the other stays.
    assert_eq!(f32s(e.get_variable_value("clusters").unwrap()), [0.0, 5.0]);
}

#[test]
fn a_one_epoch_input_trains_one_step_on_a_fresh_model() {
    // The reference spends its only batch on initialisation; we do not.
    let d = tempfile::tempdir().unwrap();
    let mut e = est(line_params(false, 1), d.path(), config(None));
    let input = || {
        Ok(Input::batches(vec![
            Ok(Dense::new(&LINE[..], 4, 1)?.into()),
        ]))
    };
    e.train(input, TrainArgs::default()).unwrap();
    assert_eq!(i64s(e.get_variable_value("global_step").unwrap()), [1]);
    assert_eq!(f32s(e.get_variable_value("clusters").unwrap()), [1.0, 12.0]);
}

#[test]
fn relative_tolerance_compares_losses_within_one_call_only() {
    // Losses: 36 (centres 3, 9), then 10, 10, ... (centres 1, 12).
    let d = tempfile::tempdir().unwrap();
    let mut p = line_params(false, 1);
    p = p.relative_tolerance(Some(1e-6));
    let mut e = est(p, d.path(), config(None));
    let mut losses = Vec::new();
    let mut record = |s: i64, l: f64| losses.push((s, l));
    e.train(
        constant(&LINE, 1),
        TrainArgs {
            on_step: Some(&mut record),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(losses, [(1, 36.0), (2, 10.0), (3, 10.0)]);
    // A new call never stops on its first step, though its loss equals the
    // last loss of the previous call: it stops on its second.
    let mut losses = Vec::new();
    let mut record = |s: i64, l: f64| losses.push((s, l));
    e.train(
        constant(&LINE, 1),
        TrainArgs {
            on_step: Some(&mut record),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(losses, [(4, 10.0), (5, 10.0)]);
}

#[test]
fn evaluate_predict_and_score_read_a_constant_batch_once() {
    let d = tempfile::tempdir().unwrap();
    let mut e = est(line_params(false, 1), d.path(), config(None));
    e.train(constant(&LINE, 1), steps(2)).unwrap();
    // Centres 1 and 12: distances 1, 1, 4, 4.
    for s in [None, Some(1), Some(5)] {
        let r = e
            .evaluate(
                constant(&LINE, 1),
                EvalArgs {
                    steps: s,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            (r.loss, r.score, r.global_step),
            (10.0, 10.0, 2),
            "steps {s:?}"
        );
    }
    assert_eq!(e.score(constant(&LINE, 1)).unwrap(), 10.0);
    let batches: Vec<_> = e
        .predict(constant(&LINE, 1), PredictArgs::default())
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(batches.len(), 1);
    assert_eq!(
        batches[0].cluster_index.as_deref(),
        Some(&[0i64, 0, 1, 1][..])
    );
    assert_eq!(
        batches[0]
            .all_distances
            .as_ref()
            .unwrap()
            .to_type::<f32>()
            .as_ref(),
        &[1.0, 144.0, 1.0, 100.0, 81.0, 4.0, 169.0, 4.0]
    );
    let idx: Vec<Vec<i64>> = e
        .predict_cluster_index(constant(&LINE, 1))
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(idx, [vec![0, 0, 1, 1]]);
    // predict_keys: empty and unknown keys are refused, naming the accepted.
    let empty: [&str; 0] = [];
    let err = PredictKeys::from_names(&empty).unwrap_err();
    assert!(
        matches!(err, Error::Param(ParamError::NoPredictKeys)),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("accepted: \"cluster_index\", \"all_distances\""),
        "{err}"
    );
    let err = PredictKeys::from_names(&["cluster_index", "score"]).unwrap_err();
    assert!(
        matches!(&err, Error::Param(ParamError::UnknownPredictKey(k)) if k == "score"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("accepted: \"cluster_index\", \"all_distances\""),
        "{err}"
    );
    let only = e
        .predict(
            constant(&LINE, 1),
            PredictArgs {
                predict_keys: Some(PredictKeys::from_names(&["cluster_index"]).unwrap()),
                ..Default::default()
            },
        )
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert!(only.all_distances.is_none() && only.cluster_index.is_some());
    assert!(e
        .evaluate(
            constant(&LINE, 1),
            EvalArgs {
                steps: Some(0),
                ..Default::default()
            }
        )
        .is_err());
}

/// A hook and listener that write into one shared log.
struct Logged {
    name: &'static str,
    log: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
}

impl Logged {
    fn push(&self, what: String) {
        self.log.borrow_mut().push(format!("{} {what}", self.name));
    }
}

impl SessionRunHook for Logged {
    fn begin(&mut self) -> centroid::Result<()> {
        self.push("begin".into());
        Ok(())
    }
    fn before_run(&mut self, ctx: &mut RunContext) -> centroid::Result<()> {
        self.push(format!("before {}", ctx.global_step()));
        Ok(())
    }
    fn after_run(&mut self, _: &mut RunContext, v: &RunValues) -> centroid::Result<()> {
        self.push(format!("after {}", v.global_step));
        Ok(())
    }
    fn end(&mut self) -> centroid::Result<()> {
        self.push("end".into());
        Ok(())
    }
}

impl CheckpointSaverListener for Logged {
    fn begin(&mut self) -> centroid::Result<()> {
        self.push("begin".into());
        Ok(())
    }
    fn before_save(&mut self, s: i64) -> centroid::Result<()> {
        self.push(format!("before_save {s}"));
        Ok(())
    }
    fn after_save(&mut self, s: i64) -> centroid::Result<()> {
        self.push(format!("after_save {s}"));
        Ok(())
    }
    fn end(&mut self, s: i64) -> centroid::Result<()> {
        self.push(format!("end {s}"));
        Ok(())
    }
}

#[test]
fn hooks_and_listeners_run_in_the_order_given_around_every_call() {
    let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mk = |name| Logged {
        name,
        log: log.clone(),
    };
    let (mut h1, mut h2, mut l1, mut l2) = (mk("h1"), mk("h2"), mk("l1"), mk("l2"));
    let d = tempfile::tempdir().unwrap();
    let mut e = est(line_params(false, 1), d.path(), config(Some(2)));
    e.train(
        constant(&LINE, 1),
        TrainArgs {
            steps: Some(3),
            hooks: vec![Box::new(&mut h1), Box::new(&mut h2)],
            saving_listeners: vec![Box::new(&mut l1), Box::new(&mut l2)],
            ..Default::default()
        },
    )
    .unwrap();
    let want = [
        "h1 begin",
        "h2 begin",
        "l1 begin",
        "l2 begin",
        "h1 before 0",
        "h2 before 0",
        "h1 after 1",
        "h2 after 1",
        "h1 before 1",
        "h2 before 1",
        "h1 after 2",
        "h2 after 2",
        "l1 before_save 2",
        "l2 before_save 2",
        "l1 after_save 2",
        "l2 after_save 2",
        "h1 before 2",
        "h2 before 2",
        "h1 after 3",
        "h2 after 3",
        "l1 before_save 3",
        "l2 before_save 3",
        "l1 after_save 3",
        "l2 after_save 3",
        "l1 end 3",
        "l2 end 3",
        "h1 end",
        "h2 end",
    ];
    assert_eq!(*log.borrow(), want);

    // evaluate and predict: begin and end around the call; the last
    // before_run meets the end of the input (as the reference's
    // end-of-input does) and has no after_run.
    log.borrow_mut().clear();
    let (mut h1, mut h2) = (mk("h1"), mk("h2"));
    e.evaluate(
        constant(&LINE, 1),
        EvalArgs {
            hooks: vec![Box::new(&mut h1), Box::new(&mut h2)],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        *log.borrow(),
        [
            "h1 begin",
            "h2 begin",
            "h1 before 3",
            "h2 before 3",
            "h1 after 3",
            "h2 after 3",
            "h1 before 3",
            "h2 before 3",
            "h1 end",
            "h2 end"
        ]
    );
    log.borrow_mut().clear();
    let mut h1 = mk("h1");
    let two = || {
        Ok(Input::batches(vec![
            Ok(Dense::new(&LINE[..2], 2, 1)?.into()),
            Ok(Dense::new(&LINE[2..], 2, 1)?.into()),
        ]))
    };
    let n: usize = e
        .predict(
            two,
            PredictArgs {
                hooks: vec![Box::new(&mut h1)],
                ..Default::default()
            },
        )
        .unwrap()
        .map(|b| b.unwrap().rows())
        .sum();
    assert_eq!(n, 4);
    assert_eq!(
        *log.borrow(),
        [
            "h1 begin",
            "h1 before 3",
            "h1 after 3",
            "h1 before 3",
            "h1 after 3",
            "h1 before 3",
            "h1 end"
        ]
    );
}

#[test]
fn an_interrupt_right_after_a_save_does_not_save_twice() {
    let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut l = Logged {
        name: "l",
        log: log.clone(),
    };
    let d = tempfile::tempdir().unwrap();
    let mut e = est(line_params(false, 1), d.path(), config(Some(1)));
    let mut polls = 0;
    let mut interrupt = || {
        polls += 1;
        polls == 2
    };
    let err = e
        .train(
            constant(&LINE, 1),
            TrainArgs {
                interrupt: Some(&mut interrupt),
                saving_listeners: vec![Box::new(&mut l)],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Interrupted { global_step: 2 }),
        "{err}"
    );
    assert_eq!(
        *log.borrow(),
        [
            "l begin",
            "l before_save 1",
            "l after_save 1",
            "l before_save 2",
            "l after_save 2"
        ]
    );
    assert_eq!(
        e.latest_checkpoint().unwrap(),
        d.path().join("model.ckpt-2.safetensors")
    );
    assert_eq!(f32s(e.get_variable_value("clusters").unwrap()), [1.0, 12.0]);
}

#[test]
fn no_checkpoint_is_written_before_valid_centres_exist() {
    struct FailFirst;
    impl SessionRunHook for FailFirst {
        fn before_run(&mut self, _: &mut RunContext) -> centroid::Result<()> {
            Err(Error::callback("hook", "refused"))
        }
    }
    let d = tempfile::tempdir().unwrap();
    // Initialisation fails: k-means++ needs 5 rows.
    let mut p = KMeansParams::new(5);
    p = p.initial_clusters(InitialClusters::KMeansPlusPlus);
    assert!(est(p, d.path(), config(Some(1)))
        .train(constant(&LINE, 1), steps(3))
        .is_err());
    // Initialisation succeeds but the first step is refused by a hook.
    let mut hook = FailFirst;
    let err = est(line_params(false, 1), d.path(), config(Some(1)))
        .train(
            constant(&LINE, 1),
            TrainArgs {
                steps: Some(3),
                hooks: vec![Box::new(&mut hook)],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    // Nothing but the writer's lock file.
    let names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [".lock"]);
}

#[test]
fn an_incompatible_model_dir_names_both_sides() {
    let d = tempfile::tempdir().unwrap();
    let mut p = line_params(true, 2);
    p = p.feature_columns(Some(vec!["a".into(), "b".into()]));
    let cols = || {
        let mut m = BTreeMap::new();
        m.insert(
            "a".to_string(),
            Column::vector(vec![0.0f32, 2.0, 10.0, 14.0]),
        );
        m.insert("b".to_string(), Column::vector(vec![0.0f32, 0.0, 0.0, 0.0]));
        Ok(Input::constant(Features::Columns(m)))
    };
    p = p.initial_clusters(InitialClusters::Array(
        Dense::from_rows(&[vec![3.0f32, 0.0], vec![9.0, 0.0]]).unwrap(),
    ));
    est(p.clone(), d.path(), config(None))
        .train(cols, steps(1))
        .unwrap();
    let mut q = p.clone();
    q = q.feature_columns(Some(vec!["b".into(), "a".into()]));
    let err = est(q, d.path(), config(None))
        .train(cols, steps(1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("feature_columns [\"a\", \"b\"] on disk vs [\"b\", \"a\"] here"),
        "{err}"
    );
    let mut q = p.clone();
    q = q.mode(Mode::Async {
        steps_per_iteration: 3,
    });
    let err = est(q, d.path(), config(None))
        .cluster_centers()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("asynchronous full batch (mini_batch_steps_per_iteration = 2) on disk vs asynchronous full batch (mini_batch_steps_per_iteration = 3) here"),
        "{err}"
    );
}

// ------------------------------------------------------------------------
// Determinism: every init mode x every update mode x both element types
// gives bit-identical variables at 1 and 2 threads. 5000 rows make three
// kernel chunks (2048 rows each), so two threads really split the work.

fn variables_bits(e: &KMeansClustering) -> Vec<(String, Vec<u64>)> {
    e.get_variable_names()
        .unwrap()
        .into_iter()
        .map(|n| {
            let bits = match e.get_variable_value(&n).unwrap() {
                Tensor::F32 { values, .. } => values.iter().map(|v| v.to_bits() as u64).collect(),
                Tensor::F64 { values, .. } => values.iter().map(|v| v.to_bits()).collect(),
                Tensor::I64 { values, .. } => values.iter().map(|&v| v as u64).collect(),
                Tensor::Bool { values, .. } => values.iter().map(|&v| v as u64).collect(),
            };
            (n, bits)
        })
        .collect()
}

#[test]
fn every_mode_is_bit_identical_at_one_and_two_threads() {
    let b = blobs(5000, 5, 70.0, 21);
    let pts32: Vec<f32> = b.points.clone();
    let pts64: Vec<f64> = b.points.iter().map(|&v| v as f64 * 1.000_000_1).collect();
    let inits = || {
        vec![
            InitialClusters::Random,
            InitialClusters::KMeansPlusPlus,
            InitialClusters::Array(Dense::new(b.points[..10].to_vec(), 5, 2).unwrap()),
            InitialClusters::Callable(std::sync::Arc::new(
                |batch: &Dense<'_>, k: usize| -> centroid::Result<Dense<'static>> {
                    // Every 997th row, up to two per batch.
                    let v = batch.to_type::<f64>();
                    let take = k.min(2);
                    let rows: Vec<f64> = (0..take)
                        .flat_map(|i| v[i * 997 * 2..i * 997 * 2 + 2].to_vec())
                        .collect();
                    Dense::new(rows, take, 2)
                },
            )),
        ]
    };
    for f64_data in [false, true] {
        for init in inits() {
            for (mini, s) in [(false, 1), (true, 1), (true, 3)] {
                let mut runs = Vec::new();
                for threads in [1, 2] {
                    let d = tempfile::tempdir().unwrap();
                    let mut p = KMeansParams::new(5);
                    p = p.initial_clusters(init.clone());
                    p = p.mode(Mode::from_flags(mini, s).unwrap());
                    p = p.random_seed(5);
                    let c = RunConfig {
                        num_threads: Some(threads),
                        ..config(None)
                    };
                    let mut e = est(p, d.path(), c);
                    // Batches of 2500 rows, alternating halves, without end.
                    let (p32, p64) = (&pts32, &pts64);
                    let input = move || {
                        let batches = (0..).map(move |i: usize| {
                            let h = i % 2;
                            let dense = if f64_data {
                                Dense::new(&p64[h * 5000..(h + 1) * 5000], 2500, 2)
                            } else {
                                Dense::new(&p32[h * 5000..(h + 1) * 5000], 2500, 2)
                            };
                            dense.map(Into::into)
                        });
                        Ok(Input::batches(batches))
                    };
                    e.train(input, steps(7)).unwrap();
                    let loss = e
                        .evaluate(
                            input,
                            EvalArgs {
                                steps: Some(2),
                                ..Default::default()
                            },
                        )
                        .unwrap()
                        .loss;
                    runs.push((variables_bits(&e), loss.to_bits()));
                }
                assert_eq!(
                    runs[0], runs[1],
                    "f64={f64_data} init={init:?} mini={mini} S={s}"
                );
                assert_eq!(runs[0].0[0].1.len(), 10);
            }
        }
    }
}

// ------------------------------------------------------------------------
// Checkpoints written before the signature was typed (format version 1, by
// the command line of that time) load, rebuild their parameters, and resume.

fn old_format_copy(name: &str) -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/format1")
        .join(name);
    let dst = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.path().join(entry.file_name())).unwrap();
    }
    dst
}

fn params_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    serde_json::from_str(header["__metadata__"]["params"].as_str().unwrap()).unwrap()
}

#[test]
fn checkpoints_of_the_untyped_signature_still_load() {
    use centroid::model_dir;
    use centroid::{InitKind, Metric, Retries};

    // Full batch from an array of centres: rows (0,0), (2,0), (10,1), (14,1)
    // from (3,0), (9,1); two Lloyd steps give (1,0) and (12,1).
    let d = old_format_copy("full_array");
    let loaded = model_dir::load_latest_good(d.path()).unwrap().unwrap();
    let sig = &loaded.signature;
    assert_eq!((sig.num_clusters, sig.num_features), (2, 2));
    assert_eq!(sig.distance_metric, Metric::SquaredEuclidean);
    assert_eq!(sig.mode, Mode::FullBatch);
    assert_eq!(sig.initial_clusters, InitKind::Array { rows: 2, cols: 2 });
    assert_eq!(sig.kmeans_plus_plus_num_retries, Retries::Count(2));
    assert_eq!((sig.random_seed, sig.relative_tolerance), (5, Some(1e-4)));
    let p = KMeansParams::from_signature(sig);
    assert!(matches!(
        p.clone().check().unwrap().initial_clusters(),
        InitialClusters::Restored(InitKind::Array { rows: 2, cols: 2 })
    ));
    let mut e = est(p, d.path(), config(None));
    let c = e.cluster_centers().unwrap().to_type::<f64>().into_owned();
    assert_eq!(c, vec![1.0, 0.0, 12.0, 1.0]);
    // Resuming writes the parameters back under the same names and values.
    let rows = [0.0f32, 0.0, 2.0, 0.0, 10.0, 1.0, 14.0, 1.0];
    e.train(constant(&rows, 2), steps(1)).unwrap();
    let old = model_dir::checkpoint_path(d.path(), 2);
    let new = model_dir::checkpoint_path(d.path(), 3);
    assert_eq!(e.latest_checkpoint(), Some(new.clone()));
    assert_eq!(params_json(&new), params_json(&old));
    assert_eq!(params_json(&old)["initial_clusters"], "array[2x2]");

    // Asynchronous mini-batch (S = 3) from k-means++, in float64: every
    // variable of the mode is there, and the mode comes back typed.
    let d = old_format_copy("async_kpp");
    let loaded = model_dir::load_latest_good(d.path()).unwrap().unwrap();
    let sig = &loaded.signature;
    assert_eq!(sig.dtype, centroid::DType::F64);
    assert_eq!(
        sig.mode,
        Mode::Async {
            steps_per_iteration: 3
        }
    );
    assert_eq!(sig.initial_clusters, InitKind::KMeansPlusPlus);
    let mut e = est(KMeansParams::from_signature(sig), d.path(), config(None));
    assert_eq!(
        e.get_variable_names().unwrap(),
        [
            "clusters",
            "initialized",
            "global_step",
            "cluster_counts",
            "clusters_updated",
            "update_in_steps"
        ]
    );
    let rows: Vec<f64> = vec![0.0, 0.0, 2.0, 0.0, 10.0, 1.0, 14.0, 1.0];
    e.train(
        move || Ok(Input::constant(Dense::new(rows.clone(), 4, 2)?)),
        steps(1),
    )
    .unwrap();
    let new = model_dir::checkpoint_path(d.path(), 6);
    assert_eq!(
        params_json(&new),
        params_json(&model_dir::checkpoint_path(d.path(), 5))
    );
}

/// Rows around `k` centres in `d` dimensions, with duplicates and rows
/// half-way between two centres (near ties).
fn wide_blobs(n: usize, d: usize, k: usize) -> Vec<f32> {
    let mut r = rng(11);
    let centres: Vec<f64> = (0..k * d).map(|_| 60.0 * normal(&mut r)).collect();
    let mut x: Vec<f32> = Vec::with_capacity(n * d);
    for i in 0..n {
        let (a, b) = (i % k, (i / 3 + 1) % k);
        for p in 0..d {
            let v = match i % 40 {
                0 => 0.5 * (centres[a * d + p] + centres[b * d + p]),
                1 if i > 0 => x[(i - 1) * d + p] as f64,
                _ => centres[a * d + p] + 6.0 * normal(&mut r),
            };
            x.push(v as f32);
        }
    }
    x
}

/// A full-batch train() call on a constant input carries labels and bounds
/// from step to step and skips rows whose label cannot change; an iterator
/// input, and every new call, starts afresh. Either way the steps give the
/// same bits: losses and centres, resumed or not, at 1 or 2 threads. On
/// whole numbers (pixels), whose sums are exact, the steps move the rows
/// that change cluster and take the loss from the sums; the bits still
/// agree.
#[test]
fn pruned_steps_equal_unpruned_steps_and_resume_bit_for_bit() {
    let shapes = [(6000, 32, 40), (6000, 160, 8)];
    for ((n, d, k), whole) in shapes.into_iter().flat_map(|s| [(s, false), (s, true)]) {
        let mut x = wide_blobs(n, d, k);
        if whole {
            x.iter_mut().for_each(|v| *v = (*v * 4.0).round());
        }
        let p = || {
            KMeansParams::new(k)
                .mode(Mode::FullBatch)
                .initial_clusters(InitialClusters::KMeansPlusPlus)
                .random_seed(5)
        };
        let train = |dir: &Path, threads: usize, steps: u64, iterator: bool| {
            let c = RunConfig {
                num_threads: Some(threads),
                ..config(None)
            };
            let mut e = est(p(), dir, c);
            let mut losses = Vec::new();
            let mut record = |_: i64, l: f64| losses.push(l.to_bits());
            let args = TrainArgs {
                steps: Some(steps),
                on_step: Some(&mut record),
                ..Default::default()
            };
            if iterator {
                // The same rows every step, but not a constant input.
                let x = &x;
                e.train(
                    move || {
                        Ok(Input::batches(std::iter::repeat_with(move || {
                            Dense::new(&x[..], n, d).map(Into::into)
                        })))
                    },
                    args,
                )
                .unwrap();
            } else {
                e.train(constant(&x, d), args).unwrap();
            }
            (raw_clusters(&e), losses)
        };
        let what = format!("{n} x {d}, k = {k}, whole numbers {whole}");
        let d1 = tempfile::tempdir().unwrap();
        let (straight, losses) = train(d1.path(), 1, 20, false);
        assert_eq!(losses.len(), 20);
        let d2 = tempfile::tempdir().unwrap();
        let (unpruned, unpruned_losses) = train(d2.path(), 1, 20, true);
        assert_eq!(unpruned, straight, "{what}: iterator input");
        assert_eq!(unpruned_losses, losses, "{what}: iterator input");
        let d3 = tempfile::tempdir().unwrap();
        let (two, two_losses) = train(d3.path(), 2, 20, false);
        assert_eq!(two, straight, "{what}: two threads");
        assert_eq!(two_losses, losses, "{what}: two threads");
        let d4 = tempfile::tempdir().unwrap();
        let (_, mut first) = train(d4.path(), 2, 7, false);
        let (resumed, rest) = train(d4.path(), 2, 13, false);
        first.extend(rest);
        assert_eq!(resumed, straight, "{what}: resumed after 7 steps");
        assert_eq!(first, losses, "{what}: resumed after 7 steps");
    }
}
