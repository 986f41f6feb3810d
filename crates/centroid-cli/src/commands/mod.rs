//! The subcommands, one file each, each a thin layer over the Estimator.
//! What they share is here: opening the data for a saved model and turning
//! a data source into the Estimator's batches.

use std::path::Path;

use centroid::{Dense, Features, Result};

use crate::cli::{Cli, Command, DataArgs};
use crate::readers::{self, ReadOptions, Source};
use crate::saved::{self, Loaded, ModelSignature};

mod evaluate;
mod inspect;
mod plot;
mod predict;
mod train;
mod train_plan;
mod transform;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train::run(a, cli.quiet),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Transform(a) => transform::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Plot(a) => plot::run(a),
    }
}

/// How to read the data: the flags' columns and element type, else the
/// saved model's (a new model: the file's own).
fn read_options(data: &DataArgs, saved: Option<&ModelSignature>) -> ReadOptions {
    ReadOptions {
        format: data.format,
        columns: data
            .columns
            .clone()
            .or_else(|| saved.and_then(|s| s.feature_columns.clone())),
        dtype: data.dtype.map(Into::into).or(saved.map(|s| s.dtype)),
    }
}

/// Opens the data for a saved model: its columns and element type unless
/// the flags say otherwise, and checked against its width.
fn open_for_model(data: &DataArgs, model_dir: &Path, loaded: &Loaded) -> Result<Box<dyn Source>> {
    let sig = &loaded.signature;
    let source = readers::open(&data.data, &read_options(data, Some(sig)))?;
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
