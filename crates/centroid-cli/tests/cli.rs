//! The `centroid` binary, run as a user runs it, on CSV, NPY and Parquet.
//! Expected values come from the data's construction (well-separated blobs)
//! and brute-force references computed here, never from the program.

mod common;

use std::sync::Arc;

use common::*;
use predicates::prelude::*;

/// Trains full batch with k-means++ and checks what every other command
/// says about the model against references.
fn full_lifecycle(data: &std::path::Path, rows: &[Vec<f64>], truth: &[usize], extra: &[&str]) {
    let dir = tmp();
    let model = p(&dir, "model");
    let out = centroid()
        .args(["train", "--data"])
        .arg(data)
        .arg("--model-dir")
        .arg(&model)
        .args([
            "--num-clusters",
            "3",
            "--init",
            "kmeans_plus_plus",
            "--json",
        ])
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let trained = json(&out);
    assert_eq!(trained["num_clusters"], 3);
    assert_eq!(trained["num_features"], rows[0].len());
    assert_eq!(trained["mode"], "full_batch");
    let global_step = trained["global_step"].as_i64().unwrap();
    assert!(
        global_step >= 2,
        "Lloyd needs at least 2 steps to see convergence: {trained}"
    );

    // On separated blobs Lloyd ends at the blob means.
    let centres = saved_centres(&model);
    let means = blob_means(rows, truth, 3);
    for m in &means {
        let (j, d2) = nearest(m, &centres);
        assert!(
            d2 < 1e-8,
            "blob mean {m:?} is {d2} from centre {j} ({centres:?})"
        );
    }

    // predict: to standard output, CSV with a header.
    let out = centroid()
        .args(["predict", "--data"])
        .arg(data)
        .arg("--model-dir")
        .arg(&model)
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let pred = parse_index_csv(&String::from_utf8(out).unwrap());
    let brute: Vec<usize> = rows.iter().map(|r| nearest(r, &centres).0).collect();
    assert_eq!(pred, brute);
    assert_same_partition(&pred, truth, 3);

    // evaluate: the whole file as one batch, so loss = the sum of squared
    // distances to the nearest centre.
    let out = centroid()
        .args(["evaluate", "--data"])
        .arg(data)
        .arg("--model-dir")
        .arg(&model)
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let ev = json(&out);
    let inertia: f64 = rows.iter().map(|r| nearest(r, &centres).1).sum();
    let score = ev["score"].as_f64().unwrap();
    // Distances in f32 as ||x||^2 - 2 x.c + ||c||^2 lose up to a few ulps of
    // the norms, so the tolerance scales with them.
    let norms: f64 = rows
        .iter()
        .map(|r| sq_norm(r) + sq_norm(&centres[nearest(r, &centres).0]))
        .sum();
    let tol = 1e-5 * inertia + 8.0 * f32::EPSILON as f64 * norms;
    assert!(
        (score - inertia).abs() <= tol,
        "score {score} vs brute force {inertia} (tolerance {tol})"
    );
    assert_eq!(ev["loss"].as_f64().unwrap(), score);
    assert_eq!(ev["global_step"].as_i64().unwrap(), global_step);

    // transform: distances to every centre, as NPY.
    let npy = p(&dir, "dist.npy");
    centroid()
        .args(["transform", "--data"])
        .arg(data)
        .arg("--model-dir")
        .arg(&model)
        .arg("--output")
        .arg(&npy)
        .args(extra)
        .assert()
        .success();
    let (_, shape, values) = read_npy(&npy);
    assert_eq!(shape, vec![rows.len(), 3]);
    for (r, row) in rows.iter().enumerate() {
        for (j, c) in centres.iter().enumerate() {
            let want = sq_dist(row, c);
            let got = values[r * 3 + j];
            let tol = 1e-5 * want + 8.0 * f32::EPSILON as f64 * (sq_norm(row) + sq_norm(c));
            assert!(
                (got - want).abs() <= tol,
                "row {r} centre {j}: {got} vs {want}"
            );
        }
    }

    // inspect --json: parameters, variables with shapes, checkpoints.
    let out = centroid()
        .args(["inspect", "--json", "--model-dir"])
        .arg(&model)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let info = json(&out);
    assert_eq!(info["global_step"].as_i64().unwrap(), global_step);
    assert_eq!(info["parameters"]["num_clusters"], 3);
    assert_eq!(info["parameters"]["use_mini_batch"], false);
    let vars = info["variables"].as_array().unwrap();
    let clusters = vars
        .iter()
        .find(|v| v["name"] == "clusters")
        .expect("clusters variable");
    assert_eq!(clusters["shape"], serde_json::json!([3, rows[0].len()]));
    assert!(vars
        .iter()
        .any(|v| v["name"] == "global_step" && v["dtype"] == "int64"));
    let cks = info["checkpoints"].as_array().unwrap();
    assert_eq!(
        cks.last().unwrap()["global_step"].as_i64().unwrap(),
        global_step
    );

    // plot: a PNG of the requested size.
    let png = p(&dir, "plot.png");
    centroid()
        .args(["plot", "--data"])
        .arg(data)
        .arg("--model-dir")
        .arg(&model)
        .arg("--output")
        .arg(&png)
        .args(["--size", "1000x500"])
        .args(extra)
        .assert()
        .success();
    let (w, h, _) = decode_png(&png);
    assert_eq!((w, h), (1000, 500));
}

fn decode_png(path: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    assert_eq!(info.color_type, png::ColorType::Rgb);
    (info.width, info.height, buf)
}

#[test]
fn every_command_on_csv() {
    let (rows, truth) = three_blobs();
    let dir = tmp();
    let path = p(&dir, "blobs.csv");
    write_csv(&path, Some(&["x", "y"]), &rows, ',');
    full_lifecycle(&path, &rows, &truth, &[]);
}

#[test]
fn every_command_on_headerless_semicolon_csv() {
    let (rows, truth) = three_blobs();
    let dir = tmp();
    let path = p(&dir, "blobs.txt");
    write_csv(&path, None, &rows, ';');
    full_lifecycle(&path, &rows, &truth, &["--format", "csv"]);
}

#[test]
fn every_command_on_npy_f32() {
    let (rows, truth) = three_blobs();
    let dir = tmp();
    let path = p(&dir, "blobs.npy");
    write_npy_f32(&path, &rows);
    full_lifecycle(&path, &rows, &truth, &[]);
}

#[test]
fn every_command_on_npy_f64_fortran_order() {
    let (rows, truth) = three_blobs();
    let dir = tmp();
    let path = p(&dir, "blobs.npy");
    write_npy_f64_fortran(&path, &rows);
    full_lifecycle(&path, &rows, &truth, &[]);
    // The model trained in f64, from the file's own type.
    let dir2 = tmp();
    let model = p(&dir2, "m");
    centroid()
        .args(["train", "-k", "3", "--data"])
        .arg(&path)
        .arg("--model-dir")
        .arg(&model)
        .assert()
        .success();
    let out = centroid()
        .args(["inspect", "--json", "--model-dir"])
        .arg(&model)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(json(&out)["parameters"]["dtype"], "f64");
}

#[test]
fn npy_integer_and_u8_data() {
    // Blobs at integer positions: u8 and i32 files hold them exactly.
    let (rows, truth) = blobs(
        &[vec![10.0, 10.0], vec![200.0, 10.0], vec![10.0, 200.0]],
        30,
        3,
    );
    let rows: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| r.iter().map(|v| v.round()).collect())
        .collect();
    let dir = tmp();
    let u8_path = p(&dir, "u8.npy");
    let bytes: Vec<u8> = rows.iter().flatten().map(|v| *v as u8).collect();
    write_npy_bytes(&u8_path, "|u1", false, &[rows.len(), 2], &bytes);
    full_lifecycle(&u8_path, &rows, &truth, &[]);
    let i32_path = p(&dir, "i32.npy");
    let bytes: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|v| (*v as i32).to_le_bytes())
        .collect();
    write_npy_bytes(&i32_path, "<i4", false, &[rows.len(), 2], &bytes);
    full_lifecycle(&i32_path, &rows, &truth, &[]);
}

fn write_parquet(path: &std::path::Path, rows: &[Vec<f64>], row_group: usize) {
    use arrow_array::{ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray};
    let x: ArrayRef = Arc::new(Float64Array::from(
        rows.iter().map(|r| r[0]).collect::<Vec<_>>(),
    ));
    let y: ArrayRef = Arc::new(Float64Array::from(
        rows.iter().map(|r| r[1]).collect::<Vec<_>>(),
    ));
    let id: ArrayRef = Arc::new(Int32Array::from((0..rows.len() as i32).collect::<Vec<_>>()));
    let name: ArrayRef = Arc::new(StringArray::from(
        rows.iter().map(|_| "p").collect::<Vec<_>>(),
    ));
    let batch =
        RecordBatch::try_from_iter([("id", id), ("x", x), ("name", name), ("y", y)]).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group))
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn every_command_on_parquet_with_columns() {
    let (rows, truth) = three_blobs();
    let dir = tmp();
    let path = p(&dir, "blobs.parquet");
    write_parquet(&path, &rows, 50);
    // --columns picks x and y (the id column would dominate the distances).
    full_lifecycle(&path, &rows, &truth, &["--columns", "x,y"]);
}

#[test]
fn later_commands_reuse_the_trained_columns() {
    let (rows, truth) = three_blobs();
    let dir = tmp();
    let path = p(&dir, "blobs.parquet");
    write_parquet(&path, &rows, 1000);
    let model = p(&dir, "m");
    centroid()
        .args([
            "train",
            "-k",
            "3",
            "--init",
            "kmeans_plus_plus",
            "--columns",
            "x,y",
            "--data",
        ])
        .arg(&path)
        .arg("--model-dir")
        .arg(&model)
        .assert()
        .success();
    // No --columns: the model's own are used.
    let out = centroid()
        .args(["predict", "--data"])
        .arg(&path)
        .arg("--model-dir")
        .arg(&model)
        .assert()
        .success();
    let pred = parse_index_csv(&String::from_utf8(out.get_output().stdout.clone()).unwrap());
    assert_same_partition(&pred, &truth, 3);
}

#[test]
fn second_train_resumes() {
    let (rows, _) = three_blobs();
    let dir = tmp();
    let path = p(&dir, "blobs.csv");
    write_csv(&path, Some(&["x", "y"]), &rows, ',');
    let model = p(&dir, "m");
    let run = |extra: &[&str]| {
        let out = centroid()
            .args([
                "train",
                "--json",
                "--mini-batch",
                "--batch-size",
                "30",
                "--data",
            ])
            .arg(&path)
            .arg("--model-dir")
            .arg(&model)
            .args(extra)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        json(&out)
    };
    let first = run(&["-k", "3", "--steps", "3"]);
    assert_eq!(first["global_step"], 3);
    assert_eq!(first["resumed_from_step"], serde_json::Value::Null);
    // The second run needs no -k or mode: it continues the saved model.
    let second = run(&["--steps", "2"]);
    assert_eq!(second["global_step"], 5);
    assert_eq!(second["resumed_from_step"], 3);
    assert_eq!(second["mode"], "mini_batch");
    // --epochs 1 over 120 rows in batches of 30 is 4 more steps.
    let third = run(&["--epochs", "1"]);
    assert_eq!(third["global_step"], 9);
    // --max-steps already reached: nothing runs.
    let fourth = run(&["--max-steps", "9"]);
    assert_eq!(fourth["global_step"], 9);
    assert_eq!(fourth["steps_run"], 0);
    // Every step's loss is recorded once.
    let losses = std::fs::read_to_string(model.join("train_losses.csv")).unwrap();
    let steps: Vec<i64> = losses
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(steps, (1..=9).collect::<Vec<_>>());
    // A different k is refused, naming both values.
    centroid()
        .args(["train", "-k", "4", "--data"])
        .arg(&path)
        .arg("--model-dir")
        .arg(&model)
        .assert()
        .failure()
        .stderr(predicate::str::contains("num_clusters 3 on disk vs 4 here"));
}

#[test]
fn mini_batch_streams_every_format() {
    let (rows, truth) = blobs(&[vec![0.0, 0.0], vec![20.0, 0.0], vec![0.0, 20.0]], 100, 11);
    let dir = tmp();
    let files = [p(&dir, "b.csv"), p(&dir, "b.npy"), p(&dir, "b.parquet")];
    write_csv(&files[0], Some(&["x", "y"]), &rows, ',');
    write_npy_f32(&files[1], &rows);
    write_parquet(&files[2], &rows, 64);
    for (i, f) in files.iter().enumerate() {
        let model = p(&dir, &format!("m{i}"));
        let mut cmd = centroid();
        cmd.args([
            "train",
            "--mini-batch",
            "--batch-size",
            "50",
            "--epochs",
            "3",
            "-k",
            "3",
            "--json",
        ])
        .args(["--init", "kmeans_plus_plus", "--data"])
        .arg(f)
        .arg("--model-dir")
        .arg(&model);
        if i == 2 {
            cmd.args(["--columns", "x,y"]);
        }
        let out = json(&cmd.assert().success().get_output().stdout);
        // 300 rows / 50 = 6 batches per epoch; the Parquet reader may split
        // batches at row groups, so it can only be at least that.
        let steps = out["global_step"].as_i64().unwrap();
        if i < 2 {
            assert_eq!(steps, 18, "{f:?}");
        } else {
            assert!(steps >= 18, "{f:?}: {steps}");
        }
        let out = centroid()
            .args(["predict", "--data"])
            .arg(f)
            .arg("--model-dir")
            .arg(&model)
            .assert()
            .success();
        let pred = parse_index_csv(&String::from_utf8(out.get_output().stdout.clone()).unwrap());
        assert_same_partition(&pred, &truth, 3);
    }
}

#[test]
fn predict_writes_csv_and_npy_files_with_the_requested_keys() {
    let (rows, _) = three_blobs();
    let dir = tmp();
    let data = p(&dir, "b.csv");
    write_csv(&data, Some(&["x", "y"]), &rows, ',');
    let model = p(&dir, "m");
    centroid()
        .args(["train", "-k", "3", "--data"])
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .assert()
        .success();
    let centres = saved_centres(&model);

    let npy = p(&dir, "idx.npy");
    centroid()
        .args(["predict", "--data"])
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .arg("--output")
        .arg(&npy)
        .assert()
        .success();
    let (descr, shape, values) = read_npy(&npy);
    assert_eq!((descr.as_str(), shape), ("<i8", vec![rows.len()]));
    let brute: Vec<f64> = rows.iter().map(|r| nearest(r, &centres).0 as f64).collect();
    assert_eq!(values, brute);

    let csv = p(&dir, "both.csv");
    centroid()
        .args(["predict", "--keys", "cluster_index,all_distances", "--data"])
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .arg("--output")
        .arg(&csv)
        .assert()
        .success();
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("cluster_index,distance_0,distance_1,distance_2")
    );
    for (row, line) in rows.iter().zip(lines) {
        let f: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(f[0] as usize, nearest(row, &centres).0);
        for j in 0..3 {
            let want = sq_dist(row, &centres[j]);
            assert!((f[1 + j] - want).abs() <= 1e-3 * (1.0 + want));
        }
    }
    // Two arrays do not fit one .npy file.
    centroid()
        .args(["predict", "--keys", "cluster_index,all_distances", "--data"])
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .arg("--output")
        .arg(p(&dir, "x.npy"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("one array"));
}

#[test]
fn initial_centres_from_a_file() {
    let (rows, truth) = three_blobs();
    let dir = tmp();
    let data = p(&dir, "b.csv");
    write_csv(&data, Some(&["x", "y"]), &rows, ',');
    let init = p(&dir, "init.npy");
    // Centres near the blobs, in a chosen order: cluster j must be blob j.
    write_npy_f32(&init, &[vec![1.0, 1.0], vec![19.0, 1.0], vec![1.0, 19.0]]);
    let model = p(&dir, "m");
    let out = centroid()
        .args(["train", "--json", "--init"])
        .arg(&init)
        .arg("--data")
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .assert()
        .success();
    assert_eq!(json(&out.get_output().stdout)["num_clusters"], 3);
    let out = centroid()
        .args(["predict", "--data"])
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .assert()
        .success();
    let pred = parse_index_csv(&String::from_utf8(out.get_output().stdout.clone()).unwrap());
    assert_eq!(pred, truth);
}

/// Runs a failing command and checks its one-line message.
fn fails_with(cmd: &mut assert_cmd::Command, needle: &str) {
    let out = cmd.assert().failure().get_output().clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(needle), "expected {needle:?} in {stderr:?}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr:?}"
    );
    assert!(stderr.starts_with("centroid: error: "), "{stderr:?}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr:?}"
    );
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let (rows, _) = three_blobs();
    let dir = tmp();
    let good = p(&dir, "good.csv");
    write_csv(&good, Some(&["x", "y"]), &rows, ',');
    let model = p(&dir, "m");
    centroid()
        .args(["train", "-k", "3", "--data"])
        .arg(&good)
        .arg("--model-dir")
        .arg(&model)
        .assert()
        .success();

    // A missing file.
    fails_with(
        centroid()
            .args(["train", "-k", "3", "--data"])
            .arg(p(&dir, "nope.csv"))
            .arg("--model-dir")
            .arg(p(&dir, "m2")),
        "nope.csv",
    );
    // A malformed line: its line number (header = line 1).
    let bad = p(&dir, "bad.csv");
    std::fs::write(&bad, "x,y\n1,2\n3,4\n5,oops\n7,8\n").unwrap();
    fails_with(
        centroid()
            .args(["train", "-k", "2", "--data"])
            .arg(&bad)
            .arg("--model-dir")
            .arg(p(&dir, "m3")),
        "line 4, column \"y\": \"oops\" is not a number",
    );
    let ragged = p(&dir, "ragged.csv");
    std::fs::write(&ragged, "x,y\n1,2\n3,4,5\n").unwrap();
    fails_with(
        centroid()
            .args(["train", "-k", "1", "--data"])
            .arg(&ragged)
            .arg("--model-dir")
            .arg(p(&dir, "m4")),
        "line 3 has 3 fields, expected 2",
    );
    // NaN, in CSV and in NPY.
    let nan = p(&dir, "nan.csv");
    std::fs::write(&nan, "x,y\n1,2\nNaN,4\n").unwrap();
    fails_with(
        centroid()
            .args(["train", "-k", "1", "--data"])
            .arg(&nan)
            .arg("--model-dir")
            .arg(p(&dir, "m5")),
        "line 3, column \"x\" is NaN",
    );
    let nan_npy = p(&dir, "nan.npy");
    write_npy_f32(&nan_npy, &[vec![1.0, 2.0], vec![3.0, f64::NAN]]);
    fails_with(
        centroid()
            .args(["train", "-k", "1", "--data"])
            .arg(&nan_npy)
            .arg("--model-dir")
            .arg(p(&dir, "m6")),
        "row 1, column 1 is NaN",
    );
    // A width that differs from the model's.
    let wide = p(&dir, "wide.csv");
    write_csv(&wide, Some(&["a", "b", "c"]), &[vec![1.0, 2.0, 3.0]], ',');
    fails_with(
        centroid()
            .args(["predict", "--data"])
            .arg(&wide)
            .arg("--model-dir")
            .arg(&model),
        "has 3 columns but the model",
    );
    // k larger than the data, known from the NPY header and found by the
    // Estimator for CSV.
    let small = p(&dir, "small.npy");
    write_npy_f32(&small, &rows[..5]);
    fails_with(
        centroid()
            .args(["train", "-k", "10", "--data"])
            .arg(&small)
            .arg("--model-dir")
            .arg(p(&dir, "m7")),
        "num_clusters = 10 is larger than the 5 rows",
    );
    let small_csv = p(&dir, "small.csv");
    write_csv(&small_csv, None, &rows[..5], ',');
    fails_with(
        centroid()
            .args(["train", "-k", "10", "--data"])
            .arg(&small_csv)
            .arg("--model-dir")
            .arg(p(&dir, "m8")),
        "larger than the 5 rows",
    );
    // An unknown column.
    fails_with(
        centroid()
            .args(["train", "-k", "2", "--columns", "x,z", "--data"])
            .arg(&good)
            .arg("--model-dir")
            .arg(p(&dir, "m9")),
        "unknown column \"z\" (the file has: x, y)",
    );
    // A damaged checkpoint (the only one): flip bytes in the middle.
    let ck = centroid::model_dir::latest(&model).unwrap();
    let mut bytes = std::fs::read(&ck).unwrap();
    let mid = bytes.len() - 8;
    for b in &mut bytes[mid..] {
        *b ^= 0xFF;
    }
    std::fs::write(&ck, bytes).unwrap();
    fails_with(
        centroid()
            .args(["predict", "--data"])
            .arg(&good)
            .arg("--model-dir")
            .arg(&model),
        "damaged checkpoint",
    );
    // A model directory with nothing in it.
    fails_with(
        centroid()
            .args(["evaluate", "--data"])
            .arg(&good)
            .arg("--model-dir")
            .arg(p(&dir, "empty")),
        "empty",
    );
    // k-means++ in mini-batch mode needs k rows in the first batch.
    fails_with(
        centroid()
            .args([
                "train",
                "-k",
                "5",
                "--mini-batch",
                "--batch-size",
                "3",
                "--init",
                "kmeans_plus_plus",
                "--data",
            ])
            .arg(&good)
            .arg("--model-dir")
            .arg(p(&dir, "m11")),
        "--batch-size 3 is smaller than k = 5",
    );
    // Not an NPY file at all.
    let fake = p(&dir, "fake.npy");
    std::fs::write(&fake, "x,y\n1,2\n").unwrap();
    fails_with(
        centroid()
            .args(["train", "-k", "1", "--data"])
            .arg(&fake)
            .arg("--model-dir")
            .arg(p(&dir, "m10")),
        "not a valid .npy file",
    );
}

#[test]
fn bundled_iris_trains_as_the_readme_shows() {
    let iris = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/iris.csv");
    let dir = tmp();
    let model = p(&dir, "iris");
    let out = centroid()
        .args([
            "train",
            "--data",
            iris,
            "-k",
            "3",
            "--init",
            "kmeans_plus_plus",
            "--json",
        ])
        .args(["--relative-tolerance", "0", "--steps", "60", "--model-dir"])
        .arg(&model)
        .assert()
        .success();
    let t = json(&out.get_output().stdout);
    assert_eq!(t["num_features"], 4);
    // Every centre is the mean of the rows nearest to it (Lloyd's fixed
    // point), checked by brute force on the file.
    let text = std::fs::read_to_string(iris).unwrap();
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 150);
    // scikit-learn 1.x: KMeans(3, n_init=10, random_state=0).fit(iris).inertia_
    // = 78.851441426146 (float64); this model computes in float32.
    let out = centroid()
        .args(["evaluate", "--data", iris, "--model-dir"])
        .arg(&model)
        .assert()
        .success();
    let score = json(&out.get_output().stdout)["score"].as_f64().unwrap();
    assert!(
        (score - 78.851441426146).abs() < 1e-4 * 78.85,
        "iris inertia {score}"
    );
    let centres = saved_centres(&model);
    let labels: Vec<usize> = rows.iter().map(|r| nearest(r, &centres).0).collect();
    let means = blob_means(&rows, &labels, 3);
    for (m, c) in means.iter().zip(&centres) {
        assert!(
            sq_dist(m, c) < 1e-6,
            "centre {c:?} is not the mean {m:?} of its rows"
        );
    }
}

#[test]
fn log_lines_when_not_a_terminal_and_quiet_silences_them() {
    let (rows, _) = three_blobs();
    let dir = tmp();
    let data = p(&dir, "b.csv");
    write_csv(&data, Some(&["x", "y"]), &rows, ',');
    // Standard error is a pipe here: plain lines every N steps.
    let out = centroid()
        .args([
            "train",
            "-k",
            "3",
            "--mini-batch",
            "--batch-size",
            "10",
            "--steps",
            "6",
        ])
        .args(["--log-step-count-steps", "2", "--data"])
        .arg(&data)
        .arg("--model-dir")
        .arg(p(&dir, "m"))
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let logged: Vec<&str> = stderr.lines().collect();
    assert_eq!(logged.len(), 3, "{stderr}");
    for (line, step) in logged.iter().zip([2, 4, 6]) {
        assert!(line.starts_with(&format!("step {step}: loss = ")), "{line}");
        assert!(line.contains("steps/s"), "{line}");
    }
    let out = centroid()
        .args([
            "train",
            "-q",
            "-k",
            "3",
            "--mini-batch",
            "--batch-size",
            "10",
            "--steps",
            "6",
        ])
        .args(["--log-step-count-steps", "1", "--data"])
        .arg(&data)
        .arg("--model-dir")
        .arg(p(&dir, "m2"))
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn interrupt_saves_the_last_step() {
    let (rows, _) = three_blobs();
    let dir = tmp();
    let data = p(&dir, "b.csv");
    write_csv(&data, Some(&["x", "y"]), &rows, ',');
    let model = p(&dir, "m");
    // A run that would take far longer than the test: stopped by SIGINT
    // once it has logged its first step (so the handler is in place).
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_centroid"))
        .args([
            "train",
            "-k",
            "3",
            "--relative-tolerance",
            "0",
            "--steps",
            "100000000",
        ])
        .args(["--log-step-count-steps", "1", "--data"])
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("step 1: loss"), "{first}");
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let code = child.wait().unwrap().code();
    let last = rest.last().cloned().unwrap_or_default();
    assert_eq!(code, Some(130), "{last}");
    assert!(
        last.starts_with("centroid: interrupted; checkpoint saved at global step "),
        "{last}"
    );
    let step: i64 = last
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(step > 0);
    let ck = centroid::model_dir::latest(&model).expect("a checkpoint was saved");
    assert_eq!(centroid::model_dir::step_of(&ck), Some(step));
}

#[test]
fn help_and_usage_errors() {
    let out = centroid()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let help = String::from_utf8(out).unwrap();
    for cmd in [
        "train",
        "evaluate",
        "predict",
        "transform",
        "inspect",
        "plot",
    ] {
        assert!(help.contains(cmd), "{help}");
    }
    let out = centroid()
        .args(["train", "--help"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let help = String::from_utf8(out).unwrap();
    for flag in [
        "--full-batch",
        "--mini-batch",
        "--batch-size",
        "--steps-per-iteration",
        "--max-steps",
        "--epochs",
    ] {
        assert!(help.contains(flag), "{flag} missing from {help}");
    }
    fails_usage(centroid().args(["train", "--data", "x.csv"]), "--model-dir");
    fails_usage(
        centroid().args([
            "train",
            "--data",
            "x.csv",
            "--model-dir",
            "m",
            "--distance",
            "manhattan",
        ]),
        "manhattan",
    );
    fails_usage(
        centroid().args([
            "train",
            "--data",
            "x.csv",
            "--model-dir",
            "m",
            "--steps",
            "2",
            "--max-steps",
            "3",
        ]),
        "--max-steps",
    );
}

fn fails_usage(cmd: &mut assert_cmd::Command, needle: &str) {
    let out = cmd.assert().code(2).get_output().clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(needle), "expected {needle:?} in {stderr:?}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr:?}"
    );
}

#[test]
fn cosine_distance_clusters_by_direction() {
    // Three directions, each at magnitudes from 1 to 50: squared Euclidean
    // would split by magnitude, cosine must split by direction.
    let dirs = [
        (1.0f64, 0.0f64),
        (0.0, 1.0),
        (
            -std::f64::consts::FRAC_1_SQRT_2,
            -std::f64::consts::FRAC_1_SQRT_2,
        ),
    ];
    let mut rng = Rng::new(9);
    let (mut rows, mut truth) = (Vec::new(), Vec::new());
    for i in 0..90 {
        let j = i % 3;
        let m = 1.0 + 49.0 * (rng.uniform() + 1.0) / 2.0;
        let a = 0.05 * rng.uniform();
        let (c, s) = (a.cos(), a.sin());
        let (x, y) = dirs[j];
        rows.push(vec![m * (c * x - s * y), m * (s * x + c * y)]);
        truth.push(j);
    }
    let dir = tmp();
    let data = p(&dir, "dirs.csv");
    write_csv(&data, Some(&["x", "y"]), &rows, ',');
    let model = p(&dir, "m");
    centroid()
        .args([
            "train",
            "-k",
            "3",
            "--distance",
            "cosine",
            "--init",
            "kmeans_plus_plus",
            "--data",
        ])
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .assert()
        .success();
    let out = centroid()
        .args(["predict", "--keys", "cluster_index,all_distances", "--data"])
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let centres = saved_centres(&model);
    let mut pred = Vec::new();
    for (row, line) in rows.iter().zip(text.lines().skip(1)) {
        let f: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        pred.push(f[0] as usize);
        // Distances are 1 - cos(angle) to each centre.
        for (j, c) in centres.iter().enumerate() {
            let cos = (row[0] * c[0] + row[1] * c[1]) / (sq_norm(row).sqrt() * sq_norm(c).sqrt());
            assert!(
                (f[1 + j] - (1.0 - cos)).abs() < 1e-5,
                "{} vs {}",
                f[1 + j],
                1.0 - cos
            );
        }
    }
    assert_same_partition(&pred, &truth, 3);
}

#[test]
fn asynchronous_mini_batch_keeps_its_working_copy() {
    let (rows, _) = three_blobs();
    let dir = tmp();
    let data = p(&dir, "b.csv");
    write_csv(&data, Some(&["x", "y"]), &rows, ',');
    let model = p(&dir, "m");
    centroid()
        .args([
            "train",
            "-k",
            "3",
            "--mini-batch",
            "--steps-per-iteration",
            "4",
            "--batch-size",
            "20",
        ])
        .args(["--steps", "6", "--data"])
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .assert()
        .success();
    let out = centroid()
        .args(["inspect", "--json", "--model-dir"])
        .arg(&model)
        .assert()
        .success();
    let info = json(&out.get_output().stdout);
    let names: Vec<&str> = info["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for v in [
        "clusters",
        "initialized",
        "global_step",
        "cluster_counts",
        "clusters_updated",
        "update_in_steps",
    ] {
        assert!(names.contains(&v), "{v} missing from {names:?}");
    }
    assert_eq!(info["parameters"]["mini_batch_steps_per_iteration"], 4);
    assert_eq!(info["global_step"], 6);
}

#[test]
fn thread_count_does_not_change_the_model() {
    let (rows, _) = blobs(
        &[
            vec![0.0, 0.0, 0.0],
            vec![5.0, 5.0, 0.0],
            vec![0.0, 5.0, 5.0],
        ],
        400,
        21,
    );
    let dir = tmp();
    let data = p(&dir, "b.npy");
    write_npy_f32(&data, &rows);
    let mut results = Vec::new();
    for threads in ["1", "2"] {
        let model = p(&dir, &format!("m{threads}"));
        centroid()
            .args([
                "train",
                "-k",
                "5",
                "--init",
                "kmeans_plus_plus",
                "--seed",
                "3",
                "--threads",
                threads,
            ])
            .args(["--relative-tolerance", "0", "--steps", "20", "--data"])
            .arg(&data)
            .arg("--model-dir")
            .arg(&model)
            .assert()
            .success();
        results.push(saved_centres(&model));
    }
    // Bit-identical, not merely close.
    assert_eq!(results[0], results[1]);
}

#[test]
fn parquet_nulls_and_nan_are_located() {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch};
    let dir = tmp();
    let write = |name: &str, y: Vec<Option<f64>>| {
        let x: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.0), Some(2.0), Some(3.0)]));
        let y: ArrayRef = Arc::new(Float64Array::from(y));
        let batch = RecordBatch::try_from_iter([("x", x), ("y", y)]).unwrap();
        let path = p(&dir, name);
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        path
    };
    let nulls = write("nulls.parquet", vec![Some(1.0), None, Some(3.0)]);
    fails_with(
        centroid()
            .args(["train", "-k", "1", "--data"])
            .arg(&nulls)
            .arg("--model-dir")
            .arg(p(&dir, "m1")),
        "row 1, column \"y\" is null",
    );
    let nan = write("nan.parquet", vec![Some(1.0), Some(2.0), Some(f64::NAN)]);
    fails_with(
        centroid()
            .args(["train", "-k", "1", "--data"])
            .arg(&nan)
            .arg("--model-dir")
            .arg(p(&dir, "m2")),
        "row 2, column \"y\" is NaN",
    );
}
