//! The subcommands, each a thin layer over the Estimator.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use centroid::checkpoint;
use centroid::{
    DType, Dense, Error, EvalArgs, Features, InitialClusters, Input, KMeansClustering,
    KMeansParams, Metric, PredictArgs, Result, RunConfig, TrainArgs, ALL_DISTANCES, CLUSTER_INDEX,
};
use serde_json::json;

use crate::cli::{self, Cli, Command, DTypeArg, DataArgs, DistanceArg};
use crate::progress::Progress;
use crate::readers::{self, ReadOptions, Source};
use crate::saved;
use crate::stream::{self, decode_position, FileStream, StreamSettings};
use crate::writers::{NpyElem, TableWriter};

/// Full-batch training without --steps/--max-steps runs at most this many
/// steps per call (the constant input never ends by itself).
pub const DEFAULT_FULL_BATCH_STEPS: u64 = 100;
/// The relative tolerance a new full-batch model gets unless one is given.
pub const DEFAULT_FULL_BATCH_TOLERANCE: f64 = 1e-4;
/// Rows per mini-batch unless --batch-size is given.
pub const DEFAULT_BATCH_SIZE: usize = 1024;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train(a, cli.quiet),
        Command::Evaluate(a) => evaluate(a),
        Command::Predict(a) => predict(a),
        Command::Transform(a) => transform(a),
        Command::Inspect(a) => inspect(a),
        Command::Plot(a) => crate::plot::plot_command(a),
    }
}

fn dtype_of(arg: Option<DTypeArg>) -> Option<DType> {
    arg.map(|d| match d {
        DTypeArg::F32 => DType::F32,
        DTypeArg::F64 => DType::F64,
    })
}

/// Opens the data for a saved model: its columns and element type unless
/// the flags say otherwise, and checked against its width.
pub fn open_for_model(
    data: &DataArgs,
    model_dir: &Path,
    loaded: &checkpoint::Loaded,
) -> Result<Box<dyn Source>> {
    let sig = &loaded.signature;
    let opts = ReadOptions {
        format: data.format,
        columns: data.columns.clone().or_else(|| sig.feature_columns.clone()),
        dtype: dtype_of(data.dtype).or(Some(sig.dtype)),
    };
    let source = readers::open(&data.data, &opts)?;
    saved::check_width(source.width(), &data.data, sig, model_dir)?;
    Ok(source)
}

/// One pass (or several) over a source as the Estimator's batch input.
fn epoch_batches<'s>(
    source: &'s dyn Source,
    batch_size: usize,
    epochs: Option<u64>,
) -> impl Iterator<Item = Result<Features<'s>>> + 's {
    let passes: Box<dyn Iterator<Item = u64>> = match epochs {
        Some(n) => Box::new(0..n),
        None => Box::new(0..),
    };
    passes
        .flat_map(
            move |_| -> Box<dyn Iterator<Item = Result<Dense<'static>>> + 's> {
                match source.batches(batch_size) {
                    Ok(it) => it,
                    Err(e) => Box::new(std::iter::once(Err(e))),
                }
            },
        )
        .map(|b| b.map(Features::Dense))
}

fn train(a: cli::TrainArgs, quiet: bool) -> Result<()> {
    let resumed = saved::latest(&a.model_dir)?;
    let start_step = resumed.as_ref().map_or(0, |l| l.state.global_step());
    let saved_input = resumed.as_ref().and_then(|l| l.input_state.clone());
    let saved_sig = resumed.map(|l| l.signature);
    let sig = saved_sig.as_ref();

    // Parameters: the saved model's, with what the flags change (a change
    // the model cannot take is refused by the Estimator, naming both).
    let mut params = match sig {
        Some(s) => saved::params_of(s)?,
        None => KMeansParams::new(0),
    };
    if let Some(k) = a.num_clusters {
        params.num_clusters = k;
    }
    if let Some(d) = a.distance {
        params.distance_metric = match d {
            DistanceArg::SquaredEuclidean => Metric::SquaredEuclidean,
            DistanceArg::Cosine => Metric::Cosine,
        };
    }
    if a.mini_batch || a.full_batch {
        params.use_mini_batch = a.mini_batch;
    } else if sig.is_none() {
        params.use_mini_batch = false;
    }
    if let Some(s) = a.steps_per_iteration {
        params.mini_batch_steps_per_iteration = s;
    }
    if let Some(seed) = a.seed {
        params.random_seed = seed;
    }
    if let Some(t) = a.relative_tolerance {
        params.relative_tolerance = Some(t);
    } else if sig.is_none() && !params.use_mini_batch {
        params.relative_tolerance = Some(DEFAULT_FULL_BATCH_TOLERANCE);
    }
    if a.data.columns.is_some() {
        params.feature_columns = a.data.columns.clone();
    }

    let opts = ReadOptions {
        format: a.data.format,
        columns: params.feature_columns.clone(),
        dtype: dtype_of(a.data.dtype).or(sig.map(|s| s.dtype)),
    };
    let source = readers::open(&a.data.data, &opts)?;
    if let Some(s) = sig {
        saved::check_width(source.width(), &a.data.data, s, &a.model_dir)?;
    }

    if sig.is_none() {
        match a.init.as_deref() {
            None | Some("random") => params.initial_clusters = InitialClusters::Random,
            Some("kmeans_plus_plus") => params.initial_clusters = InitialClusters::KMeansPlusPlus,
            Some(path) => {
                let centres = read_centres(Path::new(path), source.dtype())?;
                if centres.cols() != source.width() {
                    return Err(Error::InvalidData(format!(
                        "the initial centres in {path} have {} columns but {} has {}",
                        centres.cols(),
                        a.data.data.display(),
                        source.width()
                    )));
                }
                if a.num_clusters.is_some_and(|k| k != centres.rows()) {
                    return Err(Error::InvalidArgument(format!(
                        "--num-clusters {} disagrees with the {} rows of {path}",
                        a.num_clusters.unwrap_or(0),
                        centres.rows()
                    )));
                }
                params.num_clusters = centres.rows();
                params.initial_clusters = InitialClusters::Array(centres);
            }
        }
        if params.num_clusters == 0 {
            return Err(Error::InvalidArgument(
                "a new model needs --num-clusters K (or --init with a file of centres)".into(),
            ));
        }
        if let Some(n) = source.rows() {
            if params.num_clusters > n {
                return Err(Error::InvalidData(format!(
                    "num_clusters = {} is larger than the {n} rows of {}",
                    params.num_clusters,
                    a.data.data.display()
                )));
            }
        }
    } else if a.init.is_some() && !quiet {
        eprintln!(
            "centroid: note: --init is ignored: the model in {} is already initialised",
            a.model_dir.display()
        );
    }

    let config = RunConfig {
        num_threads: a.threads,
        log_step_count_steps: Some(a.log_step_count_steps.max(1)),
        keep_checkpoint_max: a.keep_checkpoint_max,
        save_checkpoints_steps: a.save_checkpoints_steps,
        save_checkpoints_secs: if a.save_checkpoints_steps.is_some() {
            None
        } else {
            RunConfig::default().save_checkpoints_secs
        },
        ..RunConfig::default()
    };
    let mut est = KMeansClustering::new(params, Some(a.model_dir.clone()), Some(config))?;
    saved::quiet_warnings(&mut est);
    let mini = est.params().use_mini_batch;

    let (steps, max_steps) = match (a.steps, a.max_steps) {
        (None, None) if !mini => (Some(DEFAULT_FULL_BATCH_STEPS), None),
        other => other,
    };
    let batch_size = a.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
    if batch_size == 0 {
        return Err(Error::InvalidArgument(
            "--batch-size must be at least 1".into(),
        ));
    }
    let epochs = match (a.epochs, steps, max_steps) {
        (Some(0), _, _) => {
            return Err(Error::InvalidArgument("--epochs must be at least 1".into()))
        }
        (Some(e), _, _) => Some(e),
        (None, None, None) => Some(1),
        (None, _, _) => None,
    };
    if !mini && a.epochs.is_some() {
        return Err(Error::InvalidArgument(
            "--epochs applies to --mini-batch training; full batch runs --steps Lloyd iterations"
                .into(),
        ));
    }

    // The step training ends at at the latest, for the progress bar.
    let mut last_step = match (steps, max_steps) {
        (Some(s), _) => Some(start_step + s as i64),
        (_, Some(m)) => Some(m as i64),
        _ => None,
    };
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
    } else if a.no_shuffle || a.shuffle_buffer.is_some() {
        return Err(Error::InvalidArgument(
            "--shuffle-buffer and --no-shuffle apply to --mini-batch training".into(),
        ));
    }
    // A new model's first input initialises it: random and k-means++ draw
    // from a sample of the whole file (None here: the first row, which
    // initial centres from a file only need for its width).
    let init_sample = (sig.is_none() && mini).then(|| {
        matches!(
            est.params().initial_clusters,
            InitialClusters::KMeansPlusPlus | InitialClusters::Random
        )
        .then(|| (est.params().num_clusters.saturating_mul(100)).max(batch_size))
    });

    if let (true, Some(e), Some(n)) = (
        mini,
        epochs,
        stream.as_ref().map(|(s, _)| s.batches_per_epoch()),
    ) {
        let per_epoch = n as i64;
        let by_epochs = start_step + per_epoch * e as i64;
        last_step = Some(last_step.map_or(by_epochs, |l| l.min(by_epochs)));
    }

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
    let k = est.params().num_clusters;
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
    let global_step = latest
        .as_deref()
        .and_then(checkpoint::step_of)
        .unwrap_or(last.0);
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
            "num_clusters": p.num_clusters,
            "num_features": source.width(),
            "distance_metric": p.distance_metric.name(),
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
            p.num_clusters,
            plural(p.num_clusters as u64),
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

fn evaluate(a: cli::EvaluateArgs) -> Result<()> {
    let loaded = match &a.checkpoint {
        Some(p) => checkpoint::load(&checkpoint::resolve(p))?,
        None => saved::require(&a.model_dir)?,
    };
    let source = open_for_model(&a.data, &a.model_dir, &loaded)?;
    let est = saved::estimator(&a.model_dir, &loaded, a.threads)?;
    let args = EvalArgs {
        checkpoint_path: a.checkpoint.clone(),
        name: a.name.clone(),
        ..Default::default()
    };
    let result = match a.batch_size {
        Some(0) => {
            return Err(Error::InvalidArgument(
                "--batch-size must be at least 1".into(),
            ))
        }
        Some(bs) => {
            let src: &dyn Source = &*source;
            est.evaluate(|| Ok(Input::batches(epoch_batches(src, bs, Some(1)))), args)?
        }
        None => {
            let all = source.read_all()?;
            est.evaluate(
                || {
                    Ok(Input::batches(std::iter::once(Ok(Features::Dense(
                        readers::borrow(&all),
                    )))))
                },
                args,
            )?
        }
    };
    println!(
        "{}",
        json!({"score": result.score, "loss": result.loss, "global_step": result.global_step})
    );
    Ok(())
}

fn predict(a: cli::PredictArgs) -> Result<()> {
    let mut want_index = false;
    let mut want_distances = false;
    for k in &a.keys {
        match k.as_str() {
            CLUSTER_INDEX => want_index = true,
            ALL_DISTANCES => want_distances = true,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown --keys entry {other:?}; accepted: {CLUSTER_INDEX}, {ALL_DISTANCES}"
                )))
            }
        }
    }
    let loaded = saved::require(&a.model_dir)?;
    let k = loaded.signature.num_clusters;
    let dist_elem = if loaded.signature.dtype == DType::F64 {
        NpyElem::F64
    } else {
        NpyElem::F32
    };
    let mut header = Vec::new();
    if want_index {
        header.push(CLUSTER_INDEX.to_string());
    }
    if want_distances {
        header.extend((0..k).map(|j| format!("distance_{j}")));
    }
    let elem = if want_index { NpyElem::I64 } else { dist_elem };
    if want_index
        && want_distances
        && a.output.as_deref().and_then(readers::Format::from_path) == Some(readers::Format::Npy)
    {
        return Err(Error::InvalidArgument(
            "an .npy file holds one array: give --keys cluster_index or --keys all_distances, or write .csv".into(),
        ));
    }
    let source = open_for_model(&a.data, &a.model_dir, &loaded)?;
    let est = saved::estimator(&a.model_dir, &loaded, a.threads)?;
    let mut out = TableWriter::create(a.output.as_deref(), None, &header, elem)?;
    out.set_f32_text(dist_elem == NpyElem::F32);
    let is_index: Vec<bool> = header.iter().map(|h| h == CLUSTER_INDEX).collect();
    let keys: Vec<String> = a.keys.clone();
    let src: &dyn Source = &*source;
    let batch_size = a.batch_size.max(1);
    let predictions = est.predict(
        || Ok(Input::batches(epoch_batches(src, batch_size, Some(1)))),
        PredictArgs {
            predict_keys: Some(keys),
            checkpoint_path: a.checkpoint.clone(),
            ..Default::default()
        },
    )?;
    let cols = header.len();
    let mut values: Vec<f64> = Vec::new();
    for batch in predictions {
        let batch = batch?;
        let n = batch.rows();
        values.clear();
        values.reserve(n * cols);
        let dist = batch.all_distances.as_ref().map(|d| d.to_type::<f64>());
        for r in 0..n {
            if let Some(idx) = &batch.cluster_index {
                values.push(idx[r] as f64);
            }
            if let Some(d) = &dist {
                values.extend_from_slice(&d[r * k..(r + 1) * k]);
            }
        }
        out.write_rows(&values, cols, &is_index)?;
    }
    out.finish()
}

fn transform(a: cli::TransformArgs) -> Result<()> {
    let loaded = saved::require(&a.model_dir)?;
    let k = loaded.signature.num_clusters;
    let elem = if loaded.signature.dtype == DType::F64 {
        NpyElem::F64
    } else {
        NpyElem::F32
    };
    let header: Vec<String> = (0..k).map(|j| format!("distance_{j}")).collect();
    let source = open_for_model(&a.data, &a.model_dir, &loaded)?;
    let est = saved::estimator(&a.model_dir, &loaded, a.threads)?;
    let mut out = TableWriter::create(Some(&a.output), None, &header, elem)?;
    out.set_f32_text(elem == NpyElem::F32);
    // k = 1 would otherwise be written as a 1-D array; keep it n x 1.
    if let TableWriter::Npy { vector, .. } = &mut out {
        *vector = false;
    }
    let is_index = vec![false; k];
    let src: &dyn Source = &*source;
    let batch_size = a.batch_size.max(1);
    let args = PredictArgs {
        predict_keys: Some(vec![ALL_DISTANCES.to_string()]),
        checkpoint_path: a.checkpoint.clone(),
        ..Default::default()
    };
    for batch in est.predict(
        || Ok(Input::batches(epoch_batches(src, batch_size, Some(1)))),
        args,
    )? {
        let batch = batch?;
        let d = batch
            .all_distances
            .ok_or_else(|| Error::InvalidArgument("no distances computed".into()))?;
        out.write_rows(&d.to_type::<f64>(), k, &is_index)?;
    }
    out.finish()
}

fn inspect(a: cli::InspectArgs) -> Result<()> {
    let loaded = saved::require(&a.model_dir)?;
    let sig = &loaded.signature;
    let variables: Vec<serde_json::Value> = checkpoint::variable_names(&loaded.state)
        .into_iter()
        .filter_map(|name| {
            checkpoint::variable(&loaded.state, &name)
                .map(|t| json!({"name": name, "shape": t.shape(), "dtype": t.dtype_name()}))
        })
        .collect();
    let checkpoints: Vec<serde_json::Value> = checkpoint::list(&a.model_dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::metadata(&p).map(|m| m.len()).ok();
            // Every listed checkpoint is read back, so a damaged one shows.
            let damaged = checkpoint::load(&p).err().map(|e| e.to_string());
            json!({"path": p, "global_step": checkpoint::step_of(&p), "bytes": bytes, "damaged": damaged})
        })
        .collect();
    let losses = read_train_losses(&a.model_dir).unwrap_or_default();
    let params = json!({
        "num_clusters": sig.num_clusters,
        "num_features": sig.num_features,
        "dtype": sig.dtype,
        "distance_metric": sig.distance_metric,
        "use_mini_batch": sig.use_mini_batch,
        "mini_batch_steps_per_iteration": sig.mini_batch_steps_per_iteration,
        "initial_clusters": sig.initial_clusters,
        "random_seed": sig.random_seed,
        "kmeans_plus_plus_num_retries": sig.kmeans_plus_plus_num_retries,
        "relative_tolerance": sig.relative_tolerance,
        "feature_columns": sig.feature_columns,
    });
    let global_step = loaded.state.global_step();
    if a.json {
        let out = json!({
            "model_dir": a.model_dir,
            "global_step": global_step,
            "latest_checkpoint": loaded.path,
            "parameters": params,
            "variables": variables,
            "checkpoints": checkpoints,
            "recorded_train_losses": losses.len(),
            "last_train_loss": losses.last().map(|l| l.1),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!("model directory: {}", a.model_dir.display());
    println!("global step:     {global_step}");
    println!("latest checkpoint: {}", loaded.path.display());
    println!("parameters:");
    if let Some(map) = params.as_object() {
        for (k, v) in map {
            println!("  {k:<32} {v}");
        }
    }
    println!("variables:");
    for v in &variables {
        println!(
            "  {:<20} {:<8} {}",
            v["name"].as_str().unwrap_or(""),
            v["dtype"].as_str().unwrap_or(""),
            v["shape"]
        );
    }
    println!("checkpoints:");
    for c in &checkpoints {
        let damaged = match c["damaged"].as_str() {
            Some(reason) => format!(" DAMAGED: {reason}"),
            None => String::new(),
        };
        println!(
            "  step {:<10} {} ({} bytes){damaged}",
            c["global_step"],
            c["path"].as_str().unwrap_or(""),
            c["bytes"]
        );
    }
    if let Some((s, l)) = losses.last() {
        println!(
            "training losses recorded: {} (last: step {s}, loss {l:.6e})",
            losses.len()
        );
    }
    Ok(())
}

/// The per-step losses the Estimator records in `model_dir/train_losses.csv`.
pub fn read_train_losses(model_dir: &Path) -> Result<Vec<(i64, f64)>> {
    let path: PathBuf = model_dir.join(centroid::TRAIN_LOSSES_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                action: "cannot read",
                path,
                source: e,
            })
        }
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let mut parts = line.split(',');
        let (Some(s), Some(l)) = (parts.next(), parts.next()) else {
            continue;
        };
        match (s.trim().parse::<i64>(), l.trim().parse::<f64>()) {
            (Ok(s), Ok(l)) => out.push((s, l)),
            _ => {
                return Err(Error::InvalidData(format!(
                    "{}: line {} is not `global_step,loss`",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(out)
}
