//! Reliability of the command line (issue 11): signals, one writer, damaged
//! checkpoints reported, no abort on huge requests, and the crash test:
//! SIGKILL at random moments, resume, same bits as an uninterrupted run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn bin() -> StdCommand {
    let mut c = StdCommand::new(env!("CARGO_BIN_EXE_centroid"));
    c.env_remove("RUST_BACKTRACE");
    c
}

/// Random 2-D points in four loose groups, as CSV.
fn write_points(path: &Path, n: usize, seed: u64) {
    let mut r = Rng::new(seed);
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let c = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0), (10.0, 10.0)][i % 4];
            vec![c.0 + 3.0 * r.uniform(), c.1 + 3.0 * r.uniform()]
        })
        .collect();
    write_csv(path, Some(&["x", "y"]), &rows, ',');
}

/// Mini-batch training that runs until stopped.
fn endless_training(data: &Path, model: &Path) -> Child {
    bin()
        .args([
            "train",
            "-q",
            "--mini-batch",
            "--batch-size",
            "8",
            "--num-clusters",
            "4",
        ])
        .args([
            "--max-steps",
            "1000000000",
            "--save-checkpoints-steps",
            "1000000",
        ])
        .arg("--data")
        .arg(data)
        .arg("--model-dir")
        .arg(model)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the run has recorded at least `steps` losses.
fn wait_for_steps(model: &Path, steps: usize) {
    let t0 = Instant::now();
    loop {
        let n = std::fs::read_to_string(model.join("train_losses.csv"))
            .map(|t| t.lines().count().saturating_sub(1))
            .unwrap_or(0);
        if n >= steps {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "training never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let ok = StdCommand::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn sigterm_saves_the_last_finished_step() {
    let dir = tmp();
    let data = p(&dir, "d.csv");
    write_points(&data, 200, 1);
    let model = p(&dir, "m");
    let child = endless_training(&data, &model);
    wait_for_steps(&model, 20);
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let step: i64 = stderr
        .split("checkpoint saved at global step ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(step >= 20, "{stderr}");
    let loaded = centroid::model_dir::load_latest_good(&model)
        .unwrap()
        .unwrap();
    assert_eq!(loaded.state.global_step(), step);
}

#[test]
fn a_second_trainer_is_refused_with_the_holder_s_pid() {
    let dir = tmp();
    let data = p(&dir, "d.csv");
    write_points(&data, 200, 2);
    let model = p(&dir, "m");
    let first = endless_training(&data, &model);
    wait_for_steps(&model, 5);
    let out = bin()
        .args([
            "train",
            "-q",
            "--num-clusters",
            "4",
            "--steps",
            "3",
            "--data",
        ])
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("process {}", first.id())) && stderr.lines().count() == 1,
        "{stderr}"
    );
    // Readers need no lock.
    let inspect = bin()
        .args(["inspect", "--model-dir"])
        .arg(&model)
        .output()
        .unwrap();
    signal(&first, "-TERM");
    let _ = first.wait_with_output();
    // inspect may run before the first save; either way it must not be refused.
    assert!(
        !String::from_utf8_lossy(&inspect.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
}

#[test]
fn a_damaged_checkpoint_is_reported_once_and_marked_by_inspect() {
    let dir = tmp();
    let data = p(&dir, "d.csv");
    write_points(&data, 100, 3);
    let model = p(&dir, "m");
    centroid()
        .args(["train", "-q", "--num-clusters", "4", "--steps", "3"])
        .args(["--relative-tolerance", "0", "--save-checkpoints-steps", "1"])
        .arg("--data")
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .assert()
        .success();
    let newest = model.join("model.ckpt-3.safetensors");
    let mut bytes = std::fs::read(&newest).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0x10;
    std::fs::write(&newest, bytes).unwrap();

    let out = centroid()
        .args(["inspect", "--model-dir"])
        .arg(&model)
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("model.ckpt-3.safetensors") && warnings[0].contains("step 2"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let marked: Vec<&str> = stdout.lines().filter(|l| l.contains("DAMAGED")).collect();
    assert_eq!(marked.len(), 1, "{stdout}");
    assert!(marked[0].contains("model.ckpt-3"), "{stdout}");
    assert!(stdout.contains("global step:     2"), "{stdout}");

    // Training resumes from step 2 and says so once too.
    let out = centroid()
        .args(["train", "-q", "--steps", "1", "--data"])
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.contains("warning")).count(),
        1,
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("to global step 3"));
}

#[test]
fn a_very_wide_csv_or_a_huge_batch_size_does_not_abort() {
    let dir = tmp();
    let wide = p(&dir, "wide.csv");
    let cols = 100_000;
    let mut text = String::new();
    for r in 0..3 {
        let row: Vec<String> = (0..cols).map(|c| ((r * 7 + c) % 5).to_string()).collect();
        text.push_str(&row.join(","));
        text.push('\n');
    }
    std::fs::write(&wide, text).unwrap();
    centroid()
        .args([
            "train",
            "-q",
            "--num-clusters",
            "2",
            "--steps",
            "1",
            "--data",
        ])
        .arg(&wide)
        .arg("--model-dir")
        .arg(p(&dir, "m1"))
        .assert()
        .success();

    let data = p(&dir, "d.csv");
    write_points(&data, 50, 4);
    centroid()
        .args(["train", "-q", "--mini-batch", "--num-clusters", "2"])
        .args(["--batch-size", "1099511627776", "--data"])
        .arg(&data)
        .arg("--model-dir")
        .arg(p(&dir, "m2"))
        .assert()
        .success();
}

/// Full-batch training whose every resume repeats the same steps: the
/// final checkpoint of a run killed and resumed many times must equal an
/// uninterrupted run's, bit for bit, and so must the recorded losses.
#[test]
fn sigkill_at_random_moments_then_resume_gives_the_same_bits() {
    let dir = tmp();
    let data = p(&dir, "d.csv");
    let mut r = Rng::new(11);
    let rows: Vec<Vec<f64>> = (0..4000)
        .map(|_| (0..8).map(|_| 10.0 * r.uniform()).collect())
        .collect();
    write_csv(&data, None, &rows, ',');
    let run = |model: &PathBuf| {
        let mut c = bin();
        c.args([
            "train",
            "-q",
            "--num-clusters",
            "12",
            "--init",
            "kmeans_plus_plus",
        ])
        .args(["--max-steps", "150", "--relative-tolerance", "0"])
        .args([
            "--save-checkpoints-steps",
            "4",
            "--keep-checkpoint-max",
            "3",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--model-dir")
        .arg(model)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        c
    };
    let straight = p(&dir, "straight");
    let t0 = Instant::now();
    let out = run(&straight).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full = t0.elapsed();

    let killed = p(&dir, "killed");
    let kills = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut rng = Rng::new(2026);
    for _ in 0..kills {
        let mut child = run(&killed).spawn().unwrap();
        let at = full.mul_f64((rng.uniform() + 1.0) / 2.0);
        std::thread::sleep(at);
        let _ = child.kill(); // SIGKILL; the run may have finished already
        let _ = child.wait();
    }
    let out = run(&killed).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let last = "model.ckpt-150.safetensors";
    assert_eq!(
        std::fs::read(straight.join(last)).unwrap(),
        std::fs::read(killed.join(last)).unwrap(),
        "the final checkpoints differ"
    );
    assert_eq!(
        std::fs::read_to_string(straight.join("train_losses.csv")).unwrap(),
        std::fs::read_to_string(killed.join("train_losses.csv")).unwrap(),
        "the recorded losses differ"
    );
    // Nothing stale: no temporaries, at most keep-checkpoint-max checkpoints.
    let names: Vec<String> = std::fs::read_dir(&killed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp-")), "{names:?}");
    let checkpoints = names
        .iter()
        .filter(|n| n.starts_with("model.ckpt-"))
        .count();
    assert!(checkpoints <= 3, "{names:?}");
}

#[test]
fn duplicate_parquet_column_names_are_refused_naming_the_column() {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch};
    use std::sync::Arc;
    let dir = tmp();
    let path = p(&dir, "dup.parquet");
    let a: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0]));
    let b: ArrayRef = Arc::new(Float64Array::from(vec![10.0, 20.0, 30.0]));
    let batch = RecordBatch::try_from_iter([("v", a), ("v", b)]).unwrap();
    let file = std::fs::File::create(&path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let out = centroid()
        .args([
            "train",
            "-q",
            "--num-clusters",
            "1",
            "--steps",
            "1",
            "--data",
        ])
        .arg(&path)
        .arg("--model-dir")
        .arg(p(&dir, "m"))
        .assert()
        .failure()
        .code(1)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"v\"") && stderr.contains("more than once"),
        "{stderr}"
    );
}

#[test]
fn a_mapped_npy_truncated_while_training_is_a_clear_error() {
    let dir = tmp();
    let path = p(&dir, "big.npy");
    let (n, d) = (20_000usize, 8usize);
    let mut r = Rng::new(5);
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..d).map(|_| r.uniform()).collect())
        .collect();
    write_npy_f32(&path, &rows);
    let model = p(&dir, "m");
    let child = bin()
        .args([
            "train",
            "-q",
            "--num-clusters",
            "8",
            "--relative-tolerance",
            "0",
        ])
        .args(["--max-steps", "100000000"])
        .arg("--data")
        .arg(&path)
        .arg("--model-dir")
        .arg(&model)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_steps(&model, 3);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(128)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("big.npy") && stderr.contains("shrank"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn smaller_defects_fail_at_once_with_the_place() {
    let dir = tmp();
    // A finite value beyond float32 names the file, line and column.
    let csv = p(&dir, "big.csv");
    std::fs::write(&csv, "a,b\n1,2\n3.5e38,4\n5,6\n").unwrap();
    let out = centroid()
        .args(["train", "-q", "--num-clusters", "1", "--data"])
        .arg(&csv)
        .arg("--model-dir")
        .arg(p(&dir, "m"))
        .assert()
        .failure()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("big.csv: line 3, column \"a\"") && stderr.contains("float32"),
        "{stderr}"
    );
    // An absurd thread count is refused, not attempted.
    let ok = p(&dir, "ok.csv");
    std::fs::write(&ok, "a,b\n1,2\n3,4\n5,6\n").unwrap();
    let out = centroid()
        .args([
            "train",
            "-q",
            "--num-clusters",
            "1",
            "--threads",
            "8000",
            "--data",
        ])
        .arg(&ok)
        .arg("--model-dir")
        .arg(p(&dir, "m2"))
        .timeout(Duration::from_secs(20))
        .assert()
        .failure()
        .get_output()
        .clone();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("num_threads = 8000"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
