//! `centroid train`: a new model, or more steps of the one in --model-dir.
//! The flags are decided in [`super::train_plan`]; this file does the
//! reading, the training loop's progress and interrupt, and the report.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use centroid::{
    DType, Dense, Error, Features, InitialClusters, Input, KMeansClustering, KMeansParams, Result,
    TrainArgs,
};
use serde_json::json;

use super::read_options;
use super::train_plan::{self, DataFacts};
use crate::cli;
use crate::progress::Progress;
use crate::readers::{self, ReadOptions, Source};
use crate::saved;
use crate::stream::{self, decode_position, FileStream, StreamSettings};

pub fn run(a: cli::TrainArgs, quiet: bool) -> Result<()> {
    let resumed = saved::latest(&a.model_dir)?;
    let start_step = resumed.as_ref().map_or(0, |l| l.state.global_step());
    let saved_input = resumed.as_ref().and_then(|l| l.input_state.clone());
    let sig = resumed.as_ref().map(|l| &l.signature);
    let saved_params = sig.map(KMeansParams::from_signature);

    let source = readers::open(&a.data.data, &read_options(&a.data, sig))?;
    if let Some(s) = sig {
        saved::check_width(source.width(), &a.data.data, s, &a.model_dir)?;
    }
    let facts = DataFacts {
        path: &a.data.data,
        width: source.width(),
        rows: source.rows(),
    };
    let dtype = source.dtype();
    let plan = train_plan::plan(&a, saved_params.as_ref(), facts, &mut |path| {
        read_centres(path, dtype)
    })?;
    if plan.init_ignored && !quiet {
        eprintln!(
            "centroid: note: --init is ignored: the model in {} is already initialised",
            a.model_dir.display()
        );
    }
    let (steps, max_steps, epochs) = (plan.steps, plan.max_steps, plan.epochs);
    let batch_size = plan.batch_size;
    let mut est = KMeansClustering::new(
        plan.params.clone(),
        Some(a.model_dir.clone()),
        Some(plan.config.clone()),
    )?;
    saved::quiet_warnings(&mut est);
    let mini = est.params().mode().use_mini_batch();

    // Mini-batch: the shuffled (or plain) stream, from where the last run
    // stopped, and for a new model a sample of the whole file to start from.
    let mut stream = None;
    if mini {
        let settings = StreamSettings::new(
            batch_size,
            !a.no_shuffle,
            a.shuffle_buffer,
            source.width(),
            source.dtype(),
            est.seed(),
        )?;
        let mut s = FileStream::new(&*source, settings, epochs)?;
        let pos = match decode_position(&settings, s.file_rows(), saved_input.as_deref()) {
            Ok(p) => p,
            Err((p, note)) => {
                if !quiet {
                    eprintln!("centroid: note: {note}");
                }
                p
            }
        };
        s.start_at(pos);
        stream = Some((s, settings));
    }
    // A new model's first input initialises it: random and k-means++ draw
    // from a sample of the whole file (None here: the first row, which
    // initial centres from a file only need for its width).
    let init_sample = (sig.is_none() && mini).then(|| {
        matches!(
            est.params().initial_clusters(),
            InitialClusters::KMeansPlusPlus | InitialClusters::Random
        )
        .then(|| (est.params().num_clusters().saturating_mul(100)).max(batch_size))
    });
    // The stream knows the file's length even where the reader does not
    // (CSV): its passes bound the last step.
    let rows = match &stream {
        Some((s, _)) => Some(s.file_rows()),
        None => source.rows(),
    };
    let last_step = plan.last_step(start_step, rows);

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        // Ctrl-C, SIGTERM and SIGHUP (ctrlc's "termination" feature) all
        // stop after the current step and save it; a second one exits at
        // once. Failing to install the handler only loses the graceful save.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let mut progress = Progress::new(quiet, a.log_step_count_steps, start_step, last_step);
    let mut steps_run = 0u64;
    let mut last = (start_step, f64::NAN);
    let mut on_step = |step: i64, loss: f64| {
        steps_run += 1;
        last = (step, loss);
        progress.step(step, loss);
    };
    let flag = Arc::clone(&interrupted);
    let mut interrupt = move || flag.load(Ordering::SeqCst);

    let whole = if mini { None } else { Some(source.read_all()?) };
    let src: &dyn Source = &*source;
    let seed = est.seed();
    let k = est.params().num_clusters();
    let (stream, mut input_state) = match stream {
        Some((s, settings)) => {
            let (pos, rows) = (s.position(), s.file_rows());
            let f = move || Some(stream::encode_position(&settings, rows, pos.get()));
            (Some(s), Some(f))
        }
        None => (None, None),
    };
    let result = {
        let args = TrainArgs {
            steps,
            max_steps,
            on_step: Some(&mut on_step),
            interrupt: Some(&mut interrupt),
            input_state: input_state
                .as_mut()
                .map(|f| f as &mut dyn FnMut() -> Option<String>),
            ..Default::default()
        };
        let mut stream = stream;
        let mut init_sample = init_sample;
        let input_fn = || -> Result<Input<'_>> {
            if let Some(all) = &whole {
                return Ok(Input::constant(readers::borrow(all)));
            }
            // A new model's first call initialises it: from a sample of the
            // whole file, not from the first batch of a sorted file.
            if let Some(sample_rows) = init_sample.take() {
                let Some(m) = sample_rows else {
                    let first = src.batches(1)?.take(1);
                    return Ok(Input::batches(first.map(|b| b.map(Features::Dense))));
                };
                let sample = stream::reservoir_sample(src, m, seed)?;
                if sample.rows() < k {
                    return Err(Error::InvalidData(format!(
                        "num_clusters = {k} is larger than the {} rows of {}",
                        sample.rows(),
                        src.path().display()
                    )));
                }
                return Ok(Input::batches(std::iter::once(Ok(Features::Dense(sample)))));
            }
            let s = stream.take().ok_or_else(|| {
                Error::InvalidArgument("the training stream was asked for twice".into())
            })?;
            Ok(Input::batches(s.map(|b| b.map(Features::Dense))))
        };
        est.train(input_fn, args).map(|_| ())
    };
    progress.finish();
    result?;

    let latest = est.latest_checkpoint();
    let global_step = latest.as_deref().and_then(saved::step_of).unwrap_or(last.0);
    let final_loss = if steps_run > 0 { Some(last.1) } else { None };
    let p = est.params();
    if a.json {
        let out = json!({
            "model_dir": a.model_dir,
            "global_step": global_step,
            "steps_run": steps_run,
            "resumed_from_step": if sig.is_some() { Some(start_step) } else { None },
            "final_loss": final_loss,
            "checkpoint": latest,
            "num_clusters": p.num_clusters(),
            "num_features": source.width(),
            "distance_metric": p.distance_metric().name(),
            "mode": if mini { "mini_batch" } else { "full_batch" },
        });
        println!("{out}");
    } else {
        let from = if sig.is_some() {
            format!(" (resumed from step {start_step})")
        } else {
            String::new()
        };
        let loss = final_loss.map_or("no steps run".to_string(), |l| format!("last loss {l:.6e}"));
        println!(
            "trained {} cluster{} on {} feature{}: {steps_run} step{} to global step {global_step}{from}, {loss}",
            p.num_clusters(),
            plural(p.num_clusters() as u64),
            source.width(),
            plural(source.width() as u64),
            plural(steps_run)
        );
        if let Some(c) = latest {
            println!("checkpoint: {}", c.display());
        }
    }
    Ok(())
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Reads a file of initial centres (any data format) as an owned batch.
fn read_centres(path: &Path, dtype: DType) -> Result<Dense<'static>> {
    let opts = ReadOptions {
        dtype: Some(dtype),
        ..Default::default()
    };
    let source = readers::open(path, &opts)?;
    let parts = source.batches(1 << 16)?.collect::<Result<Vec<_>>>()?;
    readers::concat(parts, source.width(), dtype, path)
}
