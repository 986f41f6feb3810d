//! `centroid`: the K-means Estimator as a command line.
//!
//! Every error ends here as one line on standard error and a non-zero exit
//! status; a panic (a bug, never a user's input) is reported the same way,
//! without a backtrace.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
#[cfg(test)]
mod fuzz;
mod pca;
mod plot;
mod progress;
mod readers;
mod saved;
mod sigbus;
mod stream;
mod writers;

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        if readers::in_guarded_decoder() {
            // Becomes an ordinary data error naming the file.
            return;
        }
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("centroid: internal error{at}: {msg} (please report this)");
    }));

    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match std::panic::catch_unwind(|| commands::run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) if writers::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Ok(Err(centroid::Error::Interrupted { global_step })) => {
            eprintln!("centroid: interrupted; checkpoint saved at global step {global_step}");
            ExitCode::from(130)
        }
        Ok(Err(e)) => {
            eprintln!("centroid: error: {}", one_line(&e.to_string()));
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::from(101),
    }
}

/// Help and version print as clap prints them; a usage error becomes one
/// line, like every other error.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        _ => {}
    }
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let message = message.join(" ");
    let message = message.trim_start_matches("error: ");
    eprintln!(
        "centroid: error: {} (see centroid --help)",
        one_line(message)
    );
    ExitCode::from(2)
}

/// Messages from nested sources may carry newlines; the contract is one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
