//! Mini-batch training from sorted files: the shuffled stream and the
//! whole-file initial sample give a model as good as full batch, and a run
//! resumed mid-epoch sees the batches one longer run would have seen.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;

const D: usize = 4;
const K: usize = 8;
const PER: usize = 1500;

/// K overlapping Gaussian clusters (unit spread, centres in [-4, 4]^D),
/// written one cluster after another, as exported data often is.
fn sorted_clusters() -> Vec<Vec<f64>> {
    let mut rng = Rng::new(2024);
    let centres: Vec<Vec<f64>> = (0..K)
        .map(|_| (0..D).map(|_| 4.0 * rng.uniform()).collect())
        .collect();
    let mut gauss = || {
        // Box-Muller from two uniforms in (0, 1].
        let u1 = 1.0 - (rng.uniform() + 1.0) / 2.0;
        let u2 = (rng.uniform() + 1.0) / 2.0;
        (-2.0 * u1.max(1e-300).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    let mut rows = Vec::with_capacity(K * PER);
    for c in &centres {
        for _ in 0..PER {
            rows.push(c.iter().map(|m| m + gauss()).collect());
        }
    }
    rows
}

/// Sum of squared distances to the nearest centre, in f64 (brute force).
fn inertia(rows: &[Vec<f64>], centres: &[Vec<f64>]) -> f64 {
    rows.iter().map(|r| nearest(r, centres).1).sum()
}

fn train(data: &Path, model: &Path, extra: &[&str]) {
    centroid()
        .args(["train", "-q", "--json", "--data"])
        .arg(data)
        .arg("--model-dir")
        .arg(model)
        .args(extra)
        .assert()
        .success();
}

#[test]
fn shuffled_stream_on_sorted_data_is_as_good_as_full_batch() {
    let rows = sorted_clusters();
    let dir = tmp();
    let data = p(&dir, "sorted.npy");
    write_npy_f32(&data, &rows);
    // All three start from the same centres (the first row of each
    // cluster), so only the order the rows are read in differs.
    let init = p(&dir, "init.npy");
    let firsts: Vec<Vec<f64>> = (0..K).map(|j| rows[j * PER].clone()).collect();
    write_npy_f32(&init, &firsts);
    let init = init.to_str().unwrap();
    let mini = [
        "--init",
        init,
        "--mini-batch",
        "--batch-size",
        "100",
        "--epochs",
        "2",
    ];
    train(&data, &p(&dir, "shuffled"), &mini);
    train(
        &data,
        &p(&dir, "plain"),
        &[&mini[..], &["--no-shuffle"]].concat(),
    );
    train(&data, &p(&dir, "full"), &["--init", init, "--full-batch"]);
    let score = |m: &str| inertia(&rows, &saved_centres(&p(&dir, m)));
    let (shuffled, plain, full) = (score("shuffled"), score("plain"), score("full"));
    // Full batch (Lloyd to convergence) is the reference; the shuffled
    // stream comes within 5 % of it, and does better than file order.
    assert!(
        shuffled <= 1.05 * full,
        "shuffled {shuffled:.1} vs full batch {full:.1}"
    );
    assert!(
        shuffled < plain,
        "shuffled {shuffled:.1} vs file order {plain:.1}"
    );
}

#[test]
fn a_new_model_starts_from_a_sample_of_the_whole_file() {
    // Eight blobs 100 apart, one after another: the first batches hold
    // blob 0 only, so centres chosen from them would all sit in blob 0.
    let centres: Vec<Vec<f64>> = (0..K).map(|j| vec![100.0 * j as f64, 0.0]).collect();
    let (mixed, _) = blobs(&centres, 500, 3);
    let mut rows = mixed.clone();
    rows.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let dir = tmp();
    let data = p(&dir, "sorted.csv");
    write_csv(&data, None, &rows, ',');
    for init in ["kmeans_plus_plus", "random"] {
        let model = p(&dir, init);
        train(
            &data,
            &model,
            &[
                "-k",
                "8",
                "--init",
                init,
                "--mini-batch",
                "--batch-size",
                "50",
            ],
        );
        train(&data, &model, &["--steps", "1"]);
        let got = saved_centres(&model);
        let covered = centres.iter().filter(|c| nearest(c, &got).1 < 4.0).count();
        // k-means++ finds every blob; random draws of 8 from 8 equal blobs
        // still land in more than one.
        if init == "kmeans_plus_plus" {
            assert_eq!(covered, K, "{got:?}");
        } else {
            assert!(covered >= 3, "{got:?}");
        }
    }
}

fn write_parquet_f64(path: &Path, rows: &[Vec<f64>], row_group: usize) {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch};
    let cols: Vec<(String, ArrayRef)> = (0..rows[0].len())
        .map(|j| {
            let a: ArrayRef = Arc::new(Float64Array::from(
                rows.iter().map(|r| r[j]).collect::<Vec<_>>(),
            ));
            (format!("f{j}"), a)
        })
        .collect();
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Two runs of `n` steps leave the same centres, bit for bit, as one run of
/// `2n` steps: the second run continues the first one's epoch order from the
/// position saved in the checkpoint.
fn resumed_equals_uninterrupted(data: &Path, dir: &tempfile::TempDir, n: u64, extra: &[&str]) {
    let base = [
        &["-k", "8", "--mini-batch", "--batch-size", "64"][..],
        extra,
    ]
    .concat();
    let n_s = n.to_string();
    let two_n = (2 * n).to_string();
    let once = p(dir, &format!("once{n}{}", extra.join("")));
    let twice = p(dir, &format!("twice{n}{}", extra.join("")));
    train(data, &once, &[&base[..], &["--steps", &two_n]].concat());
    train(data, &twice, &[&base[..], &["--steps", &n_s]].concat());
    // The batch size and buffer are flags of each call, not of the model.
    train(data, &twice, &[&base[..], &["--steps", &n_s]].concat());
    let (a, b) = (saved_centres(&once), saved_centres(&twice));
    assert_eq!(a, b, "{} after {n} + {n} steps, {extra:?}", data.display());
    // Control: the same first run, its checkpoint copied without the
    // stream position (as older checkpoints are), resumes from the top of
    // the file and ends elsewhere.
    let first = p(dir, &format!("first{n}{}", extra.join("")));
    let copy = p(dir, &format!("copy{n}{}", extra.join("")));
    train(data, &first, &[&base[..], &["--steps", &n_s]].concat());
    let loaded = centroid::model_dir::load_latest_good(&first)
        .unwrap()
        .unwrap();
    assert!(loaded.input_state.is_some());
    centroid::model_dir::save_checkpoint(&copy, &loaded.state, &loaded.signature, 0).unwrap();
    train(data, &copy, &[&base[..], &["--steps", &n_s]].concat());
    assert_ne!(
        saved_centres(&copy),
        a,
        "{} without a position",
        data.display()
    );
}

#[test]
fn resuming_mid_epoch_continues_the_epoch_order() {
    let rows = sorted_clusters();
    let dir = tmp();
    let npy = p(&dir, "sorted.npy");
    let csv = p(&dir, "sorted.csv");
    let pq = p(&dir, "sorted.parquet");
    write_npy_f32(&npy, &rows);
    write_csv(&csv, None, &rows, ',');
    write_parquet_f64(&pq, &rows, 1000);
    // 12000 rows in batches of 64: 188 per epoch. 20 stops inside the
    // first shuffle window, 150 inside a later one, 120 + 120 crosses into
    // the second epoch.
    for (data, n) in [(&npy, 20), (&npy, 150), (&csv, 120), (&pq, 120)] {
        resumed_equals_uninterrupted(data, &dir, n, &["--shuffle-buffer", "1000"]);
    }
    resumed_equals_uninterrupted(&npy, &dir, 100, &["--no-shuffle"]);
}

#[test]
fn shuffle_flags_are_for_mini_batch_and_checked() {
    let dir = tmp();
    let data = p(&dir, "d.csv");
    write_csv(&data, None, &three_blobs().0, ',');
    let fails = |extra: &[&str], says: &str| {
        let out = centroid()
            .args(["train", "-k", "3", "--data"])
            .arg(&data)
            .arg("--model-dir")
            .arg(p(&dir, "m"))
            .args(extra)
            .assert()
            .failure()
            .get_output()
            .stderr
            .clone();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(says), "{extra:?}: {text}");
    };
    fails(
        &["--full-batch", "--no-shuffle"],
        "apply to --mini-batch training",
    );
    fails(
        &["--mini-batch", "--shuffle-buffer", "0"],
        "--shuffle-buffer must be at least 1 row",
    );
    fails(
        &["--mini-batch", "--no-shuffle", "--shuffle-buffer", "9"],
        "cannot be used with",
    );
    let help = centroid()
        .args(["train", "--help"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let help = String::from_utf8(help).unwrap();
    assert!(help.contains("--shuffle-buffer") && help.contains("--no-shuffle"));
}
