//! `centroid train`: a new model, or more steps of the one in --model-dir.
//! The flags are decided in [`super::train_plan`]; this file does the
//! reading, the training loop's progress and interrupt, and the report.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use centroid::{DType, Dense, Input, KMeansClustering, KMeansParams, Result, TrainArgs};
use serde_json::json;

use super::train_plan::{self, DataFacts};
use super::{epoch_batches, read_options};
use crate::cli;
use crate::progress::Progress;
use crate::readers::{self, ReadOptions, Source};
use crate::saved;

pub fn run(a: cli::TrainArgs, quiet: bool) -> Result<()> {
    let resumed = saved::latest(&a.model_dir)?;
    let start_step = resumed.as_ref().map_or(0, |l| l.state.global_step());
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
    let last_step = plan.last_step(start_step, source.rows());
    let (steps, max_steps, epochs) = (plan.steps, plan.max_steps, plan.epochs);
    let batch_size = plan.batch_size;
    let mut est = KMeansClustering::new(plan.params, Some(a.model_dir.clone()), Some(plan.config))?;
    let mini = est.params().mode().use_mini_batch();

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        // Failing to install the handler only loses the graceful save.
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
    let result = {
        let args = TrainArgs {
            steps,
            max_steps,
            on_step: Some(&mut on_step),
            interrupt: Some(&mut interrupt),
            ..Default::default()
        };
        let input_fn = || -> Result<Input<'_>> {
            Ok(match &whole {
                Some(all) => Input::constant(readers::borrow(all)),
                None => Input::batches(epoch_batches(src, batch_size, epochs)),
            })
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
