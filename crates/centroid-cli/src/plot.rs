//! `centroid plot`: a PNG with the clusters (the data projected on its first
//! two principal axes, coloured by nearest centre, centres marked) beside
//! the training loss curve the Estimator recorded.

use std::path::Path;

use centroid::{Error, Features, Input, PredictArgs, PredictKeys, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::cli::PlotArgs;
use crate::commands::{open_for_model, read_train_losses};
use crate::pca::Pca;
use crate::readers::Source;
use crate::saved;

/// DejaVu Sans (Bitstream Vera licence, see assets/), embedded so that the
/// plot needs no system font.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Rows used to fit the projection (the plot itself shows up to --max-points).
const PCA_FIT_ROWS: usize = 4000;

/// Matplotlib's "tab10" palette, then evenly spread hues for larger k.
fn colour(j: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    if j < 10 {
        let (r, g, b) = TAB10[j];
        return RGBColor(r, g, b);
    }
    let hue = ((j as f64) * 0.618_033_988_75).fract();
    let (r, g, b) = hsl_to_rgb(hue, 0.65, 0.5);
    RGBColor(r, g, b)
}

fn hsl_to_rgb(h: f64, s: f64, l: f64) -> (u8, u8, u8) {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let hp = h * 6.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let to = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    (to(r), to(g), to(b))
}

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

fn draw_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        action: "cannot draw",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

pub fn plot_command(a: PlotArgs) -> Result<()> {
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
                crate::readers::borrow(&sample),
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
    let losses = read_train_losses(&a.model_dir)?;

    let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    let out = &a.output;
    {
        let root = BitMapBackend::new(out, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(out, e))?;
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
        let root = root
            .titled(&title, ("sans-serif", 26).into_font().color(&BLACK))
            .map_err(|e| draw_err(out, e))?;
        let (left, right) = root.split_horizontally((w as f64 * 0.58) as u32);
        draw_clusters(&left, &points, &labels, &centre_points, &pca, n, total, k)
            .map_err(|e| draw_err(out, e))?;
        draw_losses(&right, &losses).map_err(|e| draw_err(out, e))?;
        root.present().map_err(|e| draw_err(out, e))?;
    }
    println!(
        "wrote {} ({w}x{h}): {n} of {total} rows, {k} clusters, {} recorded losses",
        out.display(),
        losses.len()
    );
    Ok(())
}

/// A tick label with as many decimals as the axis span needs.
fn tick(v: f64, span: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-3) {
        return format!("{v:.2e}");
    }
    let decimals = if span > 0.0 {
        (2.0 - span.log10().floor()).clamp(0.0, 6.0) as usize
    } else {
        2
    };
    format!("{v:.decimals$}")
}

/// The centred mean over `window` (odd) steps, shrinking at the ends.
fn moving_average(losses: &[(i64, f64)], window: usize) -> Vec<(f64, f64)> {
    let half = window / 2;
    let mut prefix = vec![0.0; losses.len() + 1];
    for (i, l) in losses.iter().enumerate() {
        prefix[i + 1] = prefix[i] + l.1;
    }
    (0..losses.len())
        .map(|i| {
            let (a, b) = (i.saturating_sub(half), (i + half + 1).min(losses.len()));
            (losses[i].0 as f64, (prefix[b] - prefix[a]) / (b - a) as f64)
        })
        .collect()
}

fn padded_range(vals: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return -1.0..1.0;
    }
    let pad = ((hi - lo) * 0.06).max(1e-9);
    (lo - pad)..(hi + pad)
}

#[allow(clippy::too_many_arguments)]
fn draw_clusters(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    points: &[(f64, f64)],
    labels: &[usize],
    centres: &[(f64, f64)],
    pca: &Pca,
    shown: usize,
    total: usize,
    k: usize,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let all = points.iter().chain(centres);
    let xr = padded_range(all.clone().map(|p| p.0));
    let yr = padded_range(all.map(|p| p.1));
    let caption = if shown < total {
        format!("clusters ({shown} of {total} rows, projected on 2 principal axes)")
    } else {
        format!("clusters ({total} rows, projected on 2 principal axes)")
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xr, yr)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "PC 1 ({:.1}% of variance)",
            pca.explained[0] * 100.0
        ))
        .y_desc(format!(
            "PC 2 ({:.1}% of variance)",
            pca.explained[1] * 100.0
        ))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    let radius = if shown > 5000 {
        2
    } else if shown > 500 {
        3
    } else {
        4
    };
    let alpha = if shown > 5000 { 0.45 } else { 0.75 };
    chart.draw_series(
        points
            .iter()
            .zip(labels)
            .map(|(&p, &l)| Circle::new(p, radius, colour(l).mix(alpha).filled())),
    )?;
    // Centres: a large disc of the cluster's colour in a black ring, with
    // its index beside it (up to 30 clusters, beyond which labels clutter).
    chart.draw_series(centres.iter().enumerate().map(|(j, &c)| {
        EmptyElement::at(c)
            + Circle::new((0, 0), 11, BLACK.filled())
            + Circle::new((0, 0), 8, colour(j).filled())
            + Cross::new((0, 0), 4, WHITE.stroke_width(2))
    }))?;
    if k <= 30 {
        chart.draw_series(centres.iter().enumerate().map(|(j, &c)| {
            EmptyElement::at(c)
                + Text::new(
                    format!("{j}"),
                    (13, -20),
                    ("sans-serif", 16).into_font().color(&BLACK),
                )
        }))?;
    }
    Ok(())
}

fn draw_losses(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    losses: &[(i64, f64)],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    if losses.is_empty() {
        area.draw(&Text::new(
            "no training losses recorded",
            (40, 80),
            ("sans-serif", 18),
        ))?;
        return Ok(());
    }
    let x0 = losses.first().map_or(0, |l| l.0) as f64;
    let x1 = losses.last().map_or(1, |l| l.0) as f64;
    let xr = if x1 > x0 {
        x0..x1
    } else {
        (x0 - 1.0)..(x1 + 1.0)
    };
    let lo = losses.iter().map(|l| l.1).fold(f64::INFINITY, f64::min);
    let hi = losses.iter().map(|l| l.1).fold(f64::NEG_INFINITY, f64::max);
    let line = RGBColor(31, 119, 180);
    // Mini-batch losses are noisy: past 200 steps draw them thin and pale,
    // with a centred moving average on top. (Thin lines also avoid the
    // spikes that wide polylines draw at sharp turns.)
    let window = if losses.len() > 200 {
        (losses.len() / 50) | 1
    } else {
        1
    };
    let smoothed = moving_average(losses, window);
    let caption = if window > 1 {
        format!(
            "training loss per step ({} steps; dark: mean of {window})",
            losses.len()
        )
    } else {
        format!("training loss per step ({} steps)", losses.len())
    };
    macro_rules! draw_curve {
        ($chart:expr) => {
            if window > 1 {
                $chart.draw_series(LineSeries::new(
                    losses.iter().map(|&(s, l)| (s as f64, l)),
                    line.mix(0.35).stroke_width(1),
                ))?;
                $chart.draw_series(LineSeries::new(
                    smoothed.iter().copied(),
                    RGBColor(8, 48, 107).stroke_width(2),
                ))?;
            } else {
                $chart.draw_series(LineSeries::new(
                    losses.iter().map(|&(s, l)| (s as f64, l)),
                    line.stroke_width(2),
                ))?;
                $chart.draw_series(
                    losses
                        .iter()
                        .map(|&(s, l)| Circle::new((s as f64, l), 3, line.filled())),
                )?;
            }
        };
    }
    if lo > 0.0 && hi / lo > 30.0 {
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d(xr, (lo * 0.8..hi * 1.25).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("global step")
            .y_desc("loss (log scale)")
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 13))
            .y_label_formatter(&|v| format!("{v:.3e}"))
            .x_label_formatter(&|v| tick(*v, x1 - x0))
            .light_line_style(RGBColor(240, 240, 240))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        draw_curve!(chart);
    } else {
        let pad = ((hi - lo) * 0.08).max(hi.abs() * 1e-6).max(1e-12);
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d(xr, (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc("global step")
            .y_desc("loss (sum of distances in the step's batch)")
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 13))
            .y_label_formatter(&|v| tick(*v, hi - lo))
            .x_label_formatter(&|v| tick(*v, x1 - x0))
            .light_line_style(RGBColor(240, 240, 240))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        draw_curve!(chart);
    }
    Ok(())
}
