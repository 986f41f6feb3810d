//! `centroid plot`: samples the data, labels the sample with the model,
//! projects it on its first two principal axes and hands the figure to
//! [`crate::plot`], which draws it.

use centroid::{Error, Features, Input, PredictArgs, PredictKeys, Result};

use super::open_for_model;
use crate::cli::PlotArgs;
use crate::pca::Pca;
use crate::plot::{draw, Figure};
use crate::readers::{self, Source};
use crate::saved;

/// Rows used to fit the projection (the plot itself shows up to --max-points).
const PCA_FIT_ROWS: usize = 4000;

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let bad = || Error::InvalidArgument(format!("--size must look like 1600x700, got {s:?}"));
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if !(400..=10000).contains(&w) || !(300..=10000).contains(&h) {
        return Err(Error::InvalidArgument(format!(
            "--size {w}x{h} is out of range (400x300 to 10000x10000)"
        )));
    }
    Ok((w, h))
}

/// Every `stride`-th row of the source, with the stride doubled whenever more
/// than `max_rows` are kept, so memory stays bounded for any file length.
fn sample_rows(source: &dyn Source, max_rows: usize) -> Result<(Vec<f64>, usize, usize)> {
    let d = source.width();
    let max_rows = max_rows.max(2);
    let mut stride = match source.rows() {
        Some(n) => n.div_ceil(max_rows).max(1),
        None => 1,
    };
    let (mut kept, mut seen, mut total) = (Vec::new(), 0usize, 0usize);
    for batch in source.batches(1 << 14)? {
        let batch = batch?;
        let v = batch.to_type::<f64>();
        for row in v.chunks_exact(d) {
            if seen % stride == 0 {
                kept.extend_from_slice(row);
                if kept.len() / d > max_rows {
                    // Keep every other kept row: the rows at multiples of 2*stride.
                    kept = kept.chunks_exact(d).step_by(2).flatten().copied().collect();
                    stride *= 2;
                }
            }
            seen += 1;
            total += 1;
        }
    }
    Ok((kept, d, total))
}

pub fn run(a: PlotArgs) -> Result<()> {
    let (w, h) = parse_size(&a.size)?;
    if a.max_points == 0 {
        return Err(Error::InvalidArgument(
            "--max-points must be at least 1".into(),
        ));
    }
    let loaded = saved::require(&a.model_dir)?;
    let sig = loaded.signature.clone();
    let source = open_for_model(&a.data, &a.model_dir, &loaded)?;
    let est = saved::estimator(&a.model_dir, &loaded, None)?;
    let (rows, d, total) = sample_rows(&*source, a.max_points)?;
    let n = rows.len() / d;

    // The points' clusters, as the model assigns them.
    let sample = centroid::Dense::new(rows.clone(), n, d)?;
    let mut labels: Vec<usize> = Vec::with_capacity(n);
    let predictions = est.predict(
        || {
            Ok(Input::batches(std::iter::once(Ok(Features::Dense(
                readers::borrow(&sample),
            )))))
        },
        PredictArgs {
            predict_keys: Some(PredictKeys::CLUSTER_INDEX),
            ..Default::default()
        },
    )?;
    for b in predictions {
        labels.extend(
            b?.cluster_index
                .unwrap_or_default()
                .into_iter()
                .map(|i| i.max(0) as usize),
        );
    }
    let centres = loaded.state.clusters().to_type::<f64>().into_owned();
    let k = sig.num_clusters;

    let fit_stride = n.div_ceil(PCA_FIT_ROWS).max(1);
    let fit_rows: Vec<f64> = rows
        .chunks_exact(d)
        .step_by(fit_stride)
        .flatten()
        .copied()
        .collect();
    let pca = Pca::fit(&fit_rows, fit_rows.len() / d, d);
    let points: Vec<(f64, f64)> = rows.chunks_exact(d).map(|r| pca.project(r)).collect();
    let centre_points: Vec<(f64, f64)> = centres.chunks_exact(d).map(|c| pca.project(c)).collect();
    let losses = saved::read_train_losses(&a.model_dir)?;

    let title = format!(
        "{}: k = {k}, {}, {}, global step {}",
        a.model_dir.file_name().map_or_else(
            || a.model_dir.display().to_string(),
            |f| f.to_string_lossy().into()
        ),
        sig.distance_metric.name(),
        if sig.mode.use_mini_batch() {
            "mini-batch"
        } else {
            "full batch"
        },
        loaded.state.global_step()
    );
    let out = &a.output;
    let figure = Figure {
        title,
        points: &points,
        labels: &labels,
        centres: &centre_points,
        explained: pca.explained,
        shown: n,
        total,
        losses: &losses,
    };
    draw(out, (w, h), &figure)?;
    println!(
        "wrote {} ({w}x{h}): {n} of {total} rows, {k} clusters, {} recorded losses",
        out.display(),
        losses.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_within_their_bounds() {
        assert_eq!(parse_size("1600x700").unwrap(), (1600, 700));
        assert_eq!(parse_size(" 400 X 300 ").unwrap(), (400, 300));
        assert_eq!(parse_size("10000x10000").unwrap(), (10000, 10000));
        for (bad, says) in [
            ("1600", "must look like 1600x700"),
            ("axb", "must look like 1600x700"),
            ("-5x700", "must look like 1600x700"),
            ("399x700", "out of range"),
            ("1600x299", "out of range"),
            ("10001x700", "out of range"),
        ] {
            let e = parse_size(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn sampling_keeps_evenly_spaced_rows_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        let text: String = (0..100).map(|i| format!("{i},{}\n", 2 * i)).collect();
        std::fs::write(&path, format!("a,b\n{text}")).unwrap();
        let source = readers::open(&path, &Default::default()).unwrap();
        // A known row count gives a stride of ceil(100 / 30) = 4 from the
        // start; an unknown one starts at 1 and doubles whenever more than 30
        // rows are kept (at rows 30 and 60). Either way: rows 0, 4, ..., 96.
        let (rows, d, total) = sample_rows(&*source, 30).unwrap();
        assert_eq!((d, total), (2, 100));
        let want: Vec<f64> = (0..100)
            .step_by(4)
            .flat_map(|i| [i as f64, 2.0 * i as f64])
            .collect();
        assert_eq!(rows, want);
    }
}
