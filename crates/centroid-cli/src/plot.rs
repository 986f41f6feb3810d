//! Drawing `centroid plot`'s figure: a PNG with the clusters (points in
//! the plane of two principal axes, coloured by nearest centre, centres
//! marked) beside the training loss curve. Knows nothing of models or
//! files beyond the image it writes; [`crate::commands`] computes the
//! [`Figure`].

use std::path::Path;

use centroid::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// DejaVu Sans (Bitstream Vera licence, see assets/), embedded so that the
/// plot needs no system font.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// What the figure shows.
pub struct Figure<'a> {
    pub title: String,
    /// The sampled rows, projected.
    pub points: &'a [(f64, f64)],
    /// Each point's cluster.
    pub labels: &'a [usize],
    /// The centres, projected.
    pub centres: &'a [(f64, f64)],
    /// The share of the variance each of the two axes explains.
    pub explained: [f64; 2],
    /// Rows shown, of rows in the file.
    pub shown: usize,
    pub total: usize,
    /// The per-step training losses: (global step, loss).
    pub losses: &'a [(i64, f64)],
}

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

fn draw_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        action: "cannot draw",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Draws `figure` into a PNG of `width x height` pixels at `out`.
pub fn draw(out: &Path, (width, height): (u32, u32), figure: &Figure<'_>) -> Result<()> {
    let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    let root = BitMapBackend::new(out, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(out, e))?;
    let root = root
        .titled(&figure.title, ("sans-serif", 26).into_font().color(&BLACK))
        .map_err(|e| draw_err(out, e))?;
    let (left, right) = root.split_horizontally((width as f64 * 0.58) as u32);
    draw_clusters(&left, figure).map_err(|e| draw_err(out, e))?;
    draw_losses(&right, figure.losses).map_err(|e| draw_err(out, e))?;
    root.present().map_err(|e| draw_err(out, e))
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

fn draw_clusters(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    figure: &Figure<'_>,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (points, centres) = (figure.points, figure.centres);
    let (shown, total, k) = (figure.shown, figure.total, centres.len());
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
            figure.explained[0] * 100.0
        ))
        .y_desc(format!(
            "PC 2 ({:.1}% of variance)",
            figure.explained[1] * 100.0
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
            .zip(figure.labels)
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
