//! Reliability of model_dir (issue 11): one writer, whole-file integrity,
//! symlink-safe writes, damaged-file fallback that says so, nothing stale
//! after a crash, every step's loss recorded.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use centroid::model_dir;
use centroid::{
    Error, InitialClusters, KMeansClustering, KMeansParams, Mode, ParamError, RunConfig,
    RunContext, RunValues, SessionRunHook, Tensor, TrainArgs,
};
use common::*;

fn params() -> KMeansParams {
    KMeansParams::new(4)
        .initial_clusters(InitialClusters::KMeansPlusPlus)
        .random_seed(42)
        .relative_tolerance(None)
}

fn config(every: Option<u64>, keep: usize) -> RunConfig {
    RunConfig {
        save_checkpoints_secs: None,
        save_checkpoints_steps: every,
        keep_checkpoint_max: keep,
        ..Default::default()
    }
}

fn est(dir: &Path, c: RunConfig) -> KMeansClustering {
    KMeansClustering::new(params().check().unwrap(), Some(dir.to_path_buf()), Some(c)).unwrap()
}

fn steps(n: u64) -> TrainArgs<'static> {
    TrainArgs {
        steps: Some(n),
        ..Default::default()
    }
}

fn global_step(e: &KMeansClustering) -> i64 {
    match e.get_variable_value("global_step").unwrap() {
        Tensor::I64 { values, .. } => values[0],
        other => panic!("{other:?}"),
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Replaces `from` by `to` (same length) in the file, once.
fn edit_in_place(path: &Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from} not in {}", path.display()));
    bytes[at..at + from.len()].copy_from_slice(to.as_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn falling_back_from_a_damaged_checkpoint_says_so() {
    let b = blobs(200, 4, 40.0, 5);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(d.path(), config(Some(1), 0));
    e.train(constant(&b.points, 2), steps(3)).unwrap();
    let newest = model_dir::checkpoint_path(d.path(), 3);
    let mut bytes = std::fs::read(&newest).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(&newest, &bytes).unwrap();

    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&seen);
    e.set_warning_handler(Arc::new(move |m: &str| sink.lock().unwrap().push(m.into())));
    assert_eq!(global_step(&e), 2);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains("model.ckpt-3.safetensors"), "{}", seen[0]);
    assert!(seen[0].contains("step 2"), "{}", seen[0]);
    // The checkpoint actually used, not the newest file.
    assert_eq!(
        e.latest_checkpoint(),
        Some(model_dir::checkpoint_path(d.path(), 2))
    );
}

#[test]
fn an_edited_header_parameter_is_refused() {
    let b = blobs(200, 4, 40.0, 5);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(d.path(), config(None, 0));
    e.train(constant(&b.points, 2), steps(2)).unwrap();
    let path = model_dir::checkpoint_path(d.path(), 2);
    model_dir::load(&path).unwrap();
    edit_in_place(&path, "\\\"random_seed\\\":42", "\\\"random_seed\\\":43");
    let err = model_dir::load(&path).unwrap_err();
    assert!(
        matches!(err, Error::CorruptCheckpoint { .. }) && err.to_string().contains("checksum"),
        "{err}"
    );
}

#[test]
fn a_checkpoint_under_another_step_s_name_is_refused() {
    let b = blobs(200, 4, 40.0, 5);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(d.path(), config(None, 0));
    e.train(constant(&b.points, 2), steps(2)).unwrap();
    let renamed = model_dir::checkpoint_path(d.path(), 7);
    std::fs::copy(model_dir::checkpoint_path(d.path(), 2), &renamed).unwrap();
    let err = model_dir::load(&renamed).unwrap_err();
    assert!(err.to_string().contains("step 7"), "{err}");
    assert!(err.to_string().contains("global_step 2"), "{err}");
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/checkpoint_v1")
        .join(name)
}

#[test]
fn format_1_checkpoints_stay_readable_and_resume() {
    // Written by centroid before format 2, from data.csv: two obvious
    // groups whose means are the converged centres.
    let full = model_dir::load(&fixture("full_batch/model.ckpt-3.safetensors")).unwrap();
    let mut centres = match model_dir::variable(&full.state, "clusters").unwrap() {
        Tensor::F32 { values, .. } => values
            .chunks(2)
            .map(|c| [c[0] as f64, c[1] as f64])
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    centres.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let means = [
        [(1.0 + 1.5 + 1.0) / 3.0, (2.0 + 1.8 + 0.6) / 3.0],
        [(5.0 + 8.0 + 9.0) / 3.0, (8.0 + 8.0 + 11.0) / 3.0],
    ];
    for (c, m) in centres.iter().zip(&means) {
        assert!(
            (c[0] - m[0]).abs() < 1e-5 && (c[1] - m[1]).abs() < 1e-5,
            "{c:?} vs {m:?}"
        );
    }
    let asynchronous =
        model_dir::load(&fixture("async_mini_batch/model.ckpt-4.safetensors")).unwrap();
    assert_eq!(
        model_dir::variable_names(&asynchronous.state),
        [
            "clusters",
            "initialized",
            "global_step",
            "cluster_counts",
            "clusters_updated",
            "update_in_steps"
        ]
    );
    // Training resumes from a format-1 checkpoint and writes format 2.
    let d = tempfile::tempdir().unwrap();
    for f in ["checkpoint", "model.ckpt-3.safetensors", "train_losses.csv"] {
        std::fs::copy(fixture("full_batch").join(f), d.path().join(f)).unwrap();
    }
    let data: Vec<f32> = vec![1., 2., 1.5, 1.8, 5., 8., 8., 8., 1., 0.6, 9., 11.];
    let p = KMeansParams::new(2)
        .mode(Mode::FullBatch)
        .relative_tolerance(None)
        .random_seed(7)
        .check()
        .unwrap();
    let mut e = KMeansClustering::new(p, Some(d.path().into()), Some(config(None, 0))).unwrap();
    e.train(constant(&data, 2), steps(1)).unwrap();
    let resumed = model_dir::checkpoint_path(d.path(), 4);
    let bytes = std::fs::read(&resumed).unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("\"format_version\":\"2\""));
}

#[test]
fn a_second_writer_is_refused_and_readers_need_no_lock() {
    let b = blobs(200, 4, 40.0, 5);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(d.path(), config(None, 0));
    e.train(constant(&b.points, 2), steps(1)).unwrap();
    let held = model_dir::ModelDirLock::acquire(d.path()).unwrap();
    let mut other = est(d.path(), config(None, 0));
    let err = other.train(constant(&b.points, 2), steps(1)).unwrap_err();
    assert!(matches!(err, Error::ModelDirBusy { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("process {}", std::process::id())),
        "{err}"
    );
    // Nothing was written by the refused run.
    assert_eq!(global_step(&other), 1);
    // Readers take no lock.
    other.cluster_centers().unwrap();
    drop(held);
    other.train(constant(&b.points, 2), steps(1)).unwrap();
    assert_eq!(global_step(&other), 2);
}

#[cfg(unix)]
#[test]
fn symlinks_inside_model_dir_are_never_written_through() {
    use std::os::unix::fs::symlink;
    let b = blobs(200, 4, 40.0, 5);
    let d = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let model = d.path().join("m");
    std::fs::create_dir(&model).unwrap();
    // Temporaries under the names the old code chose (pid and a counter).
    for n in 0..400 {
        for name in [
            "checkpoint",
            "model.ckpt-1.safetensors",
            "model.ckpt-2.safetensors",
        ] {
            let planted = model.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
            symlink(&victim, planted).unwrap();
        }
    }
    let mut e = est(&model, config(Some(1), 0));
    e.train(constant(&b.points, 2), steps(2)).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    // A symlinked train_losses.csv is refused, not appended to.
    std::fs::remove_file(model.join("train_losses.csv")).unwrap();
    symlink(&victim, model.join("train_losses.csv")).unwrap();
    let err = e.train(constant(&b.points, 2), steps(1)).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    // A symlinked eval folder is refused too.
    symlink(outside.path(), model.join("eval")).unwrap();
    let err = e
        .evaluate(constant(&b.points, 2), Default::default())
        .unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(!outside.path().join("metrics.jsonl").exists());
}

#[test]
fn training_cleans_up_what_a_killed_run_left() {
    let b = blobs(200, 4, 40.0, 5);
    let d = tempfile::tempdir().unwrap();
    let mut e = est(d.path(), config(Some(1), 0));
    e.train(constant(&b.points, 2), steps(5)).unwrap();
    // As after a kill between writing the index and pruning: the index
    // names only the newest, and temporaries are left over.
    std::fs::write(
        d.path().join("checkpoint"),
        "model_checkpoint_path: \"model.ckpt-5.safetensors\"\nall_model_checkpoint_paths: \"model.ckpt-5.safetensors\"\n",
    )
    .unwrap();
    std::fs::write(d.path().join(".model.ckpt-6.safetensors.tmp-99-0"), "part").unwrap();
    std::fs::write(d.path().join(".checkpoint.tmp-99-1"), "part").unwrap();
    let mut e = est(d.path(), config(Some(1), 2));
    e.train(constant(&b.points, 2), steps(1)).unwrap();
    // TensorBoard event files (one per train call) are not at issue here.
    let names: Vec<String> = names_in(d.path())
        .into_iter()
        .filter(|n| !n.starts_with("events.out.tfevents."))
        .collect();
    assert_eq!(
        names,
        [
            ".lock",
            "checkpoint",
            "model.ckpt-5.safetensors",
            "model.ckpt-6.safetensors",
            "train_losses.csv"
        ]
    );
}

/// Fails the run after the given global step, as a crash would stop it.
struct FailAfter(i64);
impl SessionRunHook for FailAfter {
    fn after_run(&mut self, _: &mut RunContext, v: &RunValues) -> centroid::Result<()> {
        if v.global_step == self.0 {
            return Err(Error::callback("test", "simulated crash"));
        }
        Ok(())
    }
}

fn loss_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(centroid::TRAIN_LOSSES_FILE))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn every_step_s_loss_is_recorded_and_a_resume_reads_as_one_run() {
    let b = blobs(400, 4, 60.0, 9);
    let straight = tempfile::tempdir().unwrap();
    let p = params().mode(Mode::MiniBatch).check().unwrap();
    let mk = |dir: &Path| {
        KMeansClustering::new(p.clone(), Some(dir.into()), Some(config(Some(3), 0))).unwrap()
    };
    mk(straight.path())
        .train(random_batches(&b.points, 2, 32, 1), steps(9))
        .unwrap();
    let expected = loss_lines(straight.path());
    assert_eq!(expected.len(), 10);

    let crashed = tempfile::tempdir().unwrap();
    let args = TrainArgs {
        steps: Some(9),
        hooks: vec![Box::new(FailAfter(5))],
        ..Default::default()
    };
    mk(crashed.path())
        .train(random_batches(&b.points, 2, 32, 1), args)
        .unwrap_err();
    // Steps 4 and 5 ran after the last checkpoint (step 3): still recorded.
    assert_eq!(loss_lines(crashed.path()), expected[..6]);
    // The input restarts with the resumed run here, as the CLI's file
    // input would not; compare with a straight run that does the same.
    mk(crashed.path())
        .train(random_batches(&b.points, 2, 32, 1), steps(6))
        .unwrap();
    let lines = loss_lines(crashed.path());
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[..4], expected[..4]);
    let steps_logged: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(steps_logged, ["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
}

#[test]
fn an_empty_or_nul_model_dir_and_a_file_as_export_base_are_refused_at_once() {
    let cases = [
        ("", ParamError::EmptyModelDir),
        (
            "models/a\0b",
            ParamError::NulInModelDir(PathBuf::from("models/a\0b")),
        ),
    ];
    for (bad, want) in cases {
        let valid = params().check().unwrap();
        match KMeansClustering::new(valid, Some(PathBuf::from(bad)), None) {
            Err(Error::Param(got)) => assert_eq!(got, want, "{bad:?}"),
            other => panic!("{bad:?}: expected {want:?}, got {:?}", other.err()),
        }
    }
    let c = RunConfig {
        num_threads: Some(8000),
        ..Default::default()
    };
    let d = tempfile::tempdir().unwrap();
    let err = KMeansClustering::new(params().check().unwrap(), Some(d.path().into()), Some(c))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Param(ParamError::TooManyThreads {
                got: 8000,
                max: 1024
            })
        ),
        "{err}"
    );

    let b = blobs(100, 4, 40.0, 14);
    let mut e = est(d.path(), config(None, 0));
    e.train(constant(&b.points, 2), steps(1)).unwrap();
    let file = d.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let receiver = centroid::ServingInputReceiver::single("x", 2);
    let err = e
        .export_saved_model(&file, &receiver, &[], false, None)
        .unwrap_err();
    assert!(
        err.to_string().contains("not-a-folder") && err.to_string().contains("not a folder"),
        "{err}"
    );
}

/// The JSON header of a safetensors file.
fn header_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    String::from_utf8(bytes[8..8 + n].to_vec()).unwrap()
}

#[test]
fn a_checkpoint_s_bytes_depend_on_its_contents_alone() {
    // Two identical runs write byte-identical checkpoints (the crash test
    // compares files bit for bit), and the metadata keys are in sorted
    // order rather than a per-process hash order.
    let b = blobs(200, 4, 40.0, 5);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for d in &dirs {
        let mut e = est(d.path(), config(Some(1), 0));
        e.train(constant(&b.points, 2), steps(3)).unwrap();
    }
    for step in 1..=3 {
        let name = format!("model.ckpt-{step}.safetensors");
        let (a, c) = (dirs[0].path().join(&name), dirs[1].path().join(&name));
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&c).unwrap(),
            "{name}"
        );
        let header = header_of(&a);
        let meta_at = header.find("\"__metadata__\":{").unwrap();
        let meta = &header[meta_at + 16..];
        let meta = &meta[..meta.find('}').unwrap()];
        // Keys are the strings right before a `":"`; the params value is
        // escaped JSON, whose quotes are `\"`, so split on `","` and `":"`.
        let keys: Vec<&str> = meta
            .trim_start_matches('"')
            .split("\",\"")
            .map(|kv| kv.split("\":\"").next().unwrap())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert!(keys.len() >= 5, "{keys:?}");
        assert_eq!(keys, sorted, "metadata keys out of order in {name}");
    }
}
