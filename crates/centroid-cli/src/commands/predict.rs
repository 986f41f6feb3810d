//! `centroid predict`: the nearest cluster of every row (and, on request,
//! the distance to every centre), streamed to CSV or NPY. `transform` is
//! the same pass with the distances only.

use std::path::Path;

use centroid::{DType, Error, Input, PredictArgs, PredictKeys, Result};

use super::{epoch_batches, open_for_model};
use crate::cli::{self, PredictInputArgs, PredictKey};
use crate::readers::{self, Source};
use crate::saved;
use crate::writers::{NpyElem, TableWriter};

pub fn run(a: cli::PredictArgs) -> Result<()> {
    write_predictions(&a.input, a.output.as_deref(), &a.keys, false)
}

/// Streams the data through the saved model and writes `keys` for every
/// row: to `output` (CSV or NPY by its extension), or as CSV on standard
/// output. A single column goes to NPY as a 1-D array unless `always_2d`.
pub(super) fn write_predictions(
    input: &PredictInputArgs,
    output: Option<&Path>,
    keys: &[PredictKey],
    always_2d: bool,
) -> Result<()> {
    let PredictInputArgs {
        data,
        model,
        batch_size,
    } = input;
    let want_index = keys.contains(&PredictKey::ClusterIndex);
    let want_distances = keys.contains(&PredictKey::AllDistances);
    let loaded = saved::require(&model.model_dir)?;
    let k = loaded.signature.num_clusters;
    let dist_elem = if loaded.signature.dtype == DType::F64 {
        NpyElem::F64
    } else {
        NpyElem::F32
    };
    let mut header = Vec::new();
    if want_index {
        header.push(PredictKey::ClusterIndex.name().to_string());
    }
    if want_distances {
        header.extend((0..k).map(|j| format!("distance_{j}")));
    }
    let elem = if want_index { NpyElem::I64 } else { dist_elem };
    if want_index
        && want_distances
        && output.and_then(readers::Format::from_path) == Some(readers::Format::Npy)
    {
        return Err(Error::InvalidArgument(
            "an .npy file holds one array: give --keys cluster_index or --keys all_distances, or write .csv".into(),
        ));
    }
    let source = open_for_model(data, &model.model_dir, &loaded)?;
    let est = saved::estimator(&model.model_dir, &loaded, model.threads)?;
    let mut out = TableWriter::create(output, None, &header, elem)?;
    out.set_f32_text(dist_elem == NpyElem::F32);
    if always_2d {
        if let TableWriter::Npy { vector, .. } = &mut out {
            *vector = false;
        }
    }
    let is_index: Vec<bool> = (0..header.len()).map(|c| want_index && c == 0).collect();
    let src: &dyn Source = &*source;
    let batch_size = (*batch_size).max(1);
    let predictions = est.predict(
        || Ok(Input::batches(epoch_batches(src, batch_size, Some(1)))),
        PredictArgs {
            predict_keys: Some(PredictKeys::from_names(
                &keys.iter().map(|key| key.name()).collect::<Vec<_>>(),
            )?),
            checkpoint_path: model.checkpoint.clone(),
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
        // Only the requested outputs are written, each checked to be there.
        let missing = |what: &str| Error::InvalidArgument(format!("no {what} computed"));
        let index = match &batch.cluster_index {
            Some(idx) if want_index => Some(idx),
            None if want_index => return Err(missing("cluster indices")),
            _ => None,
        };
        let dist = match &batch.all_distances {
            Some(d) if want_distances => Some(d.to_type::<f64>()),
            None if want_distances => return Err(missing("distances")),
            _ => None,
        };
        for r in 0..n {
            if let Some(idx) = index {
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
