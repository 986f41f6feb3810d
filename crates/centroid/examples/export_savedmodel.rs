//! Writes a SavedModel for given centres: the driver of the TensorFlow
//! interoperability test (tests/export/test_savedmodel_tf.py), usable by hand.
//!
//! Usage:
//!   export_savedmodel OUT_DIR METRIC DTYPE FEATURES CENTRES_FILE K [--text]
//!
//! METRIC is `squared_euclidean` or `cosine`; DTYPE `float32` or `float64`;
//! FEATURES is `name:width[,name:width...]` (widths sum to d); CENTRES_FILE
//! holds k*d little-endian float64 values, row-major (float32 models round
//! them to nearest).

use std::path::Path;
use std::process::ExitCode;

use centroid::export::{write_saved_model, ServingInputReceiver};
use centroid::{MatRef, Metric};

fn run(args: &[String]) -> Result<(), String> {
    let [out, metric, dtype, features, centres_file, k, rest @ ..] = args else {
        return Err(
            "usage: export_savedmodel OUT_DIR METRIC DTYPE FEATURES CENTRES_FILE K [--text]".into(),
        );
    };
    let as_text = match rest {
        [] => false,
        [flag] if flag == "--text" => true,
        _ => return Err(format!("unexpected arguments {rest:?}")),
    };
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
    };
    let k: usize = k.parse().map_err(|e| format!("bad K {k:?}: {e}"))?;
    let bytes =
        std::fs::read(centres_file).map_err(|e| format!("cannot read {centres_file}: {e}"))?;
    if bytes.len() % 8 != 0 || k == 0 || (bytes.len() / 8) % k != 0 {
        return Err(format!(
            "{centres_file} holds {} bytes, not k={k} rows of float64",
            bytes.len()
        ));
    }
    let values: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8 bytes")))
        .collect();
    let d = values.len() / k;
    let out = Path::new(out);
    let result = match dtype.as_str() {
        "float64" => write_saved_model(
            out,
            MatRef::new(&values, k, d).map_err(|e| e.to_string())?,
            metric,
            &serving_input,
            as_text,
        ),
        "float32" => {
            let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            write_saved_model(
                out,
                MatRef::new(&values, k, d).map_err(|e| e.to_string())?,
                metric,
                &serving_input,
                as_text,
            )
        }
        other => return Err(format!("unknown dtype {other:?}; use float32 or float64")),
    };
    result.map_err(|e| e.to_string())
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
