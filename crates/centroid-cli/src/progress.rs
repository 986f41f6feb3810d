//! Training progress: a bar on a terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub enum Progress {
    Quiet,
    Bar(ProgressBar),
    Log {
        every: u64,
        started: Instant,
        first_step: i64,
        last: (Instant, i64),
        last_step: Option<i64>,
    },
}

impl Progress {
    /// `start_step`: the global step before training; `last_step`: the step
    /// training stops at at the latest, when known.
    pub fn new(quiet: bool, every: u64, start_step: i64, last_step: Option<i64>) -> Self {
        if quiet {
            return Progress::Quiet;
        }
        if std::io::stderr().is_terminal() {
            let bar = match last_step {
                Some(l) => {
                    let bar = ProgressBar::with_draw_target(
                        Some(l.max(0) as u64),
                        ProgressDrawTarget::stderr(),
                    );
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} step {pos}/{len} [{bar:30}] {rate} ~{eta} left  loss {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .with_key("rate", rate)
                        .progress_chars("=> "),
                    );
                    bar
                }
                None => {
                    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} step {pos} {rate}  loss {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner())
                            .with_key("rate", rate),
                    );
                    bar
                }
            };
            bar.set_position(start_step.max(0) as u64);
            bar.reset_eta();
            bar.enable_steady_tick(Duration::from_millis(200));
            Progress::Bar(bar)
        } else {
            let now = Instant::now();
            Progress::Log {
                every: every.max(1),
                started: now,
                first_step: start_step,
                last: (now, start_step),
                last_step,
            }
        }
    }

    pub fn step(&mut self, step: i64, loss: f64) {
        match self {
            Progress::Quiet => {}
            Progress::Bar(bar) => {
                bar.set_position(step.max(0) as u64);
                bar.set_message(format!("{loss:.6e}"));
            }
            Progress::Log {
                every,
                started,
                first_step,
                last,
                last_step,
            } => {
                if step % *every as i64 != 0 {
                    return;
                }
                let secs = last.0.elapsed().as_secs_f64();
                let rate = if secs > 0.0 {
                    (step - last.1) as f64 / secs
                } else {
                    f64::INFINITY
                };
                let mut line = format!("step {step}: loss = {loss:.6e} ({rate:.1} steps/s");
                if let Some(l) = last_step {
                    let done = (step - *first_step) as f64;
                    let overall = started.elapsed().as_secs_f64();
                    if done > 0.0 && *l > step {
                        let left = overall / done * (*l - step) as f64;
                        line.push_str(&format!(", at most {} left", human_secs(left)));
                    }
                }
                line.push(')');
                eprintln!("{line}");
                *last = (Instant::now(), step);
            }
        }
    }

    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Steps per second with one decimal (indicatif's own shows four).
fn rate(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:.1} steps/s", state.per_sec());
}

fn human_secs(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        format!("{:.0} min {:.0} s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!(
            "{:.0} h {:.0} min",
            (s / 3600.0).floor(),
            (s % 3600.0) / 60.0
        )
    }
}
