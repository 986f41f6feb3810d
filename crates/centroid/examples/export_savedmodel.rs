//! Writes a SavedModel for given centres: the driver of the TensorFlow
//! interoperability test (tests/export/test_savedmodel_tf.py), usable by hand.
//!
//! Usage:
//!   export_savedmodel OUT_DIR METRIC DTYPE FEATURES CENTRES_FILE K [--text]
//!                     [--predict DATA_FILE OUT_PREFIX]
//!
//! METRIC is `squared_euclidean` or `cosine`; DTYPE `float32` or `float64`;
//! FEATURES is `name:width[,name:width...]` (widths sum to d); CENTRES_FILE
//! holds k*d little-endian float64 values, row-major (float32 models round
//! them to nearest). `--predict` also runs the kernels `predict` uses on the
//! rows of DATA_FILE (float64, row-major, width d) and writes
//! OUT_PREFIX.distances.f64 (n x k, float64) and OUT_PREFIX.index.i64.

use std::path::Path;
use std::process::ExitCode;

use centroid::export::{write_saved_model, ServingInputReceiver};
use centroid::kernels::{self, PreparedCentres};
use centroid::{Float, MatRef, Metric};

struct Predict {
    data_file: String,
    out_prefix: String,
}

fn run(args: &[String]) -> Result<(), String> {
    let [out, metric, dtype, features, centres_file, k, rest @ ..] = args else {
        return Err(
            "usage: export_savedmodel OUT_DIR METRIC DTYPE FEATURES CENTRES_FILE K [--text] \
                    [--predict DATA_FILE OUT_PREFIX]"
                .into(),
        );
    };
    let mut as_text = false;
    let mut predict = None;
    let mut rest = rest.iter();
    while let Some(flag) = rest.next() {
        match flag.as_str() {
            "--text" => as_text = true,
            "--predict" => {
                let (Some(data_file), Some(out_prefix)) = (rest.next(), rest.next()) else {
                    return Err("--predict needs DATA_FILE OUT_PREFIX".into());
                };
                predict = Some(Predict {
                    data_file: data_file.clone(),
                    out_prefix: out_prefix.clone(),
                });
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let metric = match metric.as_str() {
        "squared_euclidean" => Metric::SquaredEuclidean,
        "cosine" => Metric::Cosine,
        other => {
            return Err(format!(
                "unknown metric {other:?}; use squared_euclidean or cosine"
            ))
        }
    };
    let mut feature_list = Vec::new();
    for item in features.split(',') {
        let (name, width) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("feature {item:?} is not name:width"))?;
        let width: usize = width
            .parse()
            .map_err(|e| format!("feature {item:?}: bad width: {e}"))?;
        feature_list.push((name.to_owned(), width));
    }
    let serving_input = ServingInputReceiver {
        features: feature_list,
        ..Default::default()
    };
    let k: usize = k.parse().map_err(|e| format!("bad K {k:?}: {e}"))?;
    let values = read_f64s(centres_file)?;
    if k == 0 || values.len() % k != 0 {
        return Err(format!(
            "{centres_file} holds {} values, not k={k} rows",
            values.len()
        ));
    }
    let d = values.len() / k;
    let out = Path::new(out);
    match dtype.as_str() {
        "float64" => export_and_predict(
            out,
            values,
            k,
            d,
            metric,
            &serving_input,
            as_text,
            predict.as_ref(),
        ),
        "float32" => {
            let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            export_and_predict(
                out,
                values,
                k,
                d,
                metric,
                &serving_input,
                as_text,
                predict.as_ref(),
            )
        }
        other => Err(format!("unknown dtype {other:?}; use float32 or float64")),
    }
}

#[allow(clippy::too_many_arguments)]
fn export_and_predict<T: Float>(
    out: &Path,
    centres: Vec<T>,
    k: usize,
    d: usize,
    metric: Metric,
    serving_input: &ServingInputReceiver,
    as_text: bool,
    predict: Option<&Predict>,
) -> Result<(), String> {
    let view = MatRef::new(&centres, k, d).map_err(|e| e.to_string())?;
    write_saved_model(out, view, metric, serving_input, as_text).map_err(|e| e.to_string())?;
    let Some(predict) = predict else {
        return Ok(());
    };
    let data: Vec<T> = read_f64s(&predict.data_file)?
        .into_iter()
        .map(T::from_f64_lossy)
        .collect();
    let x = MatRef::from_rows(&data, d).map_err(|e| format!("{}: {e}", predict.data_file))?;
    // Exactly the calls predict makes (model.rs): prepared centres, then
    // assign for the index and distances for all_distances.
    let prepared = PreparedCentres::new(view, metric);
    let n = x.rows();
    let mut labels = vec![0u32; n];
    let mut scores = vec![T::zero(); n];
    kernels::assign(x, &prepared, &mut labels, &mut scores);
    let mut distances = vec![T::zero(); n * k];
    kernels::distances(x, &prepared, &mut distances);
    let distance_bytes: Vec<u8> = distances
        .iter()
        .flat_map(|v| v.to_f64_exact().to_le_bytes())
        .collect();
    let index_bytes: Vec<u8> = labels
        .iter()
        .flat_map(|&j| i64::from(j).to_le_bytes())
        .collect();
    for (suffix, bytes) in [
        ("distances.f64", distance_bytes),
        ("index.i64", index_bytes),
    ] {
        let path = format!("{}.{suffix}", predict.out_prefix);
        std::fs::write(&path, bytes).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    Ok(())
}

fn read_f64s(path: &str) -> Result<Vec<f64>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    if bytes.len() % 8 != 0 {
        return Err(format!(
            "{path} holds {} bytes, not whole float64 values",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("export_savedmodel: {message}");
            ExitCode::from(2)
        }
    }
}
