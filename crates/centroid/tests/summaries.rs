//! TensorBoard event files written by `train` and `evaluate`: decoded here
//! record by record (TFRecord framing, then the Event protocol buffer) and
//! checked against losses computed by brute force in the test.

use std::path::Path;

use centroid::summary::Event;
use centroid::{
    Dense, EvalArgs, InitialClusters, Input, KMeansClustering, KMeansParams, Mode, RunConfig,
    TrainArgs,
};

/// Every event of every event file in `dir`, in file-name order.
fn events(dir: &Path) -> Vec<Event> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).unwrap();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            out.push(<Event as prost::Message>::decode(&rest[12..12 + n]).unwrap());
            rest = &rest[16 + n..];
        }
    }
    out
}

fn scalars(dir: &Path, tag: &str) -> Vec<(i64, f32)> {
    events(dir)
        .into_iter()
        .filter_map(|e| {
            let v = e.summary?.value.into_iter().find(|v| v.tag == tag)?;
            Some((e.step, v.simple_value?))
        })
        .collect()
}

/// Full-batch Lloyd by brute force: each step's loss with the centres
/// before it.
fn lloyd_losses(x: &[[f64; 2]], init: &[[f64; 2]], steps: usize) -> Vec<f64> {
    let mut c = init.to_vec();
    let mut losses = Vec::new();
    for _ in 0..steps {
        let mut sums = vec![[0.0; 2]; c.len()];
        let mut counts = vec![0usize; c.len()];
        let mut loss = 0.0;
        for p in x {
            let (j, d) = c
                .iter()
                .map(|q| (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2))
                .enumerate()
                .fold(
                    (0, f64::INFINITY),
                    |b, (j, d)| if d < b.1 { (j, d) } else { b },
                );
            loss += d;
            sums[j][0] += p[0];
            sums[j][1] += p[1];
            counts[j] += 1;
        }
        losses.push(loss);
        for j in 0..c.len() {
            if counts[j] > 0 {
                c[j] = [sums[j][0] / counts[j] as f64, sums[j][1] / counts[j] as f64];
            }
        }
    }
    losses
}

#[test]
fn train_and_evaluate_write_the_loss_where_tensorboard_reads_it() {
    let x: Vec<[f64; 2]> = (0..40)
        .map(|i| {
            let t = i as f64;
            [
                (t * 0.37).sin() * 3.0 + (i % 3) as f64 * 10.0,
                (t * 0.91).cos() * 2.0,
            ]
        })
        .collect();
    let init = [x[0], x[1], x[2]];
    let rows: Vec<Vec<f64>> = x.iter().map(|r| r.to_vec()).collect();
    let data = Dense::from_rows(&rows).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let params = KMeansParams::new(3)
        .mode(Mode::FullBatch)
        .initial_clusters(InitialClusters::Array(
            Dense::from_rows(&init.iter().map(|r| r.to_vec()).collect::<Vec<_>>()).unwrap(),
        ))
        .check()
        .unwrap();
    let config = RunConfig {
        save_summary_steps: Some(2),
        log_step_count_steps: Some(2),
        ..Default::default()
    };
    let mut est =
        KMeansClustering::new(params, Some(dir.path().to_path_buf()), Some(config)).unwrap();
    let input = || Ok(Input::constant(data.clone()));
    est.train(
        input,
        TrainArgs {
            steps: Some(6),
            ..Default::default()
        },
    )
    .unwrap();

    let losses = lloyd_losses(&x, &init, 6);
    let written = scalars(dir.path(), "loss");
    // After the first step, every 2 steps from there, and the last step.
    assert_eq!(
        written.iter().map(|s| s.0).collect::<Vec<_>>(),
        [1, 3, 5, 6]
    );
    for (step, value) in &written {
        let expected = losses[*step as usize - 1];
        assert!(
            ((*value as f64) - expected).abs() <= 1e-6 * expected,
            "step {step}: {value} vs {expected}"
        );
    }
    let rates = scalars(dir.path(), "global_step/sec");
    assert_eq!(rates.iter().map(|s| s.0).collect::<Vec<_>>(), [3, 5]);
    assert_eq!(
        events(dir.path())[0].file_version.as_deref(),
        Some("brain.Event:2")
    );

    let r = est
        .evaluate(
            input,
            EvalArgs {
                steps: Some(1),
                name: Some("holdout".into()),
                ..Default::default()
            },
        )
        .unwrap();
    for tag in ["loss", "score"] {
        let s = scalars(&dir.path().join("eval_holdout"), tag);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, 6);
        assert_eq!(s[0].1, r.loss as f32);
    }
}
