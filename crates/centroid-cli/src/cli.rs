//! The command line's grammar (clap derive).

use std::path::PathBuf;

use centroid::{DType, Metric, ALL_DISTANCES, CLUSTER_INDEX};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::readers::Format;

/// K-means clustering from the command line: train a model on a CSV, NPY or
/// Parquet file, resume it, evaluate it, predict with it, and plot it.
#[derive(Parser, Debug)]
#[command(name = "centroid", version, max_term_width = 100)]
pub struct Cli {
    /// Print no progress bar or log lines (results and errors still print).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model (a new one, or resume the one in --model-dir).
    Train(TrainArgs),
    /// Print the model's loss on a data set as JSON.
    Evaluate(EvaluateArgs),
    /// Write the nearest cluster of every row.
    Predict(PredictArgs),
    /// Write the distance of every row to every centre.
    Transform(TransformArgs),
    /// Show a model's parameters, variables and checkpoints.
    Inspect(InspectArgs),
    /// Draw the clusters (2-D PCA projection) and the training loss curve.
    Plot(PlotArgs),
}

/// Where the data comes from and how to read it.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Data file: .csv (header and delimiter detected), .npy or .parquet.
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,

    /// Read the data as this format whatever its extension.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Use only these columns, in this order (names from the CSV header or
    /// Parquet schema; 0-based positions for NPY and header-less CSV).
    /// Default: the columns the model was trained on, else all numeric ones.
    #[arg(long, value_delimiter = ',', value_name = "a,b,c")]
    pub columns: Option<Vec<String>>,

    /// Element type to compute in (default: the model's, else f64 for f64
    /// files and f32 for everything else).
    #[arg(long, value_enum)]
    pub dtype: Option<DTypeArg>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    F32,
    F64,
}

impl From<DTypeArg> for DType {
    fn from(d: DTypeArg) -> DType {
        match d {
            DTypeArg::F32 => DType::F32,
            DTypeArg::F64 => DType::F64,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DistanceArg {
    #[value(name = "squared_euclidean")]
    SquaredEuclidean,
    #[value(name = "cosine")]
    Cosine,
}

impl From<DistanceArg> for Metric {
    fn from(d: DistanceArg) -> Metric {
        match d {
            DistanceArg::SquaredEuclidean => Metric::SquaredEuclidean,
            DistanceArg::Cosine => Metric::Cosine,
        }
    }
}

/// The ways `--init` can place the first centres without a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InitMethod {
    #[value(name = "random")]
    Random,
    #[value(name = "kmeans_plus_plus")]
    KMeansPlusPlus,
}

/// `--init`: a method by name, or else a file of centres. A file whose name
/// is a method's name can be given as `./random`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitArg {
    Method(InitMethod),
    File(PathBuf),
}

fn parse_init(s: &str) -> Result<InitArg, String> {
    Ok(match InitMethod::from_str(s, false) {
        Ok(method) => InitArg::Method(method),
        Err(_) => InitArg::File(PathBuf::from(s)),
    })
}

/// One output of `predict`, named as the Estimator names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PredictKey {
    #[value(name = "cluster_index")]
    ClusterIndex,
    #[value(name = "all_distances")]
    AllDistances,
}

impl PredictKey {
    /// The Estimator's name for this output.
    pub fn name(self) -> &'static str {
        match self {
            PredictKey::ClusterIndex => CLUSTER_INDEX,
            PredictKey::AllDistances => ALL_DISTANCES,
        }
    }
}

/// The trained model a command reads, and how to run it: the flags that
/// `evaluate`, `predict` and `transform` share.
#[derive(Args, Debug)]
pub struct SavedModelArgs {
    /// The model directory `train` wrote.
    #[arg(long, value_name = "DIR")]
    pub model_dir: PathBuf,

    /// Use this checkpoint instead of the latest.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,

    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// What `predict` and `transform` read: the data, the model, and the rows
/// per batch as the file streams through it.
#[derive(Args, Debug)]
pub struct PredictInputArgs {
    #[command(flatten)]
    pub data: DataArgs,

    #[command(flatten)]
    pub model: SavedModelArgs,

    /// Rows per batch while streaming.
    #[arg(long, value_name = "N", default_value_t = 16384)]
    pub batch_size: usize,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,

    /// Folder for checkpoints and training logs; training resumes from it.
    #[arg(long, value_name = "DIR")]
    pub model_dir: PathBuf,

    /// Number of clusters k (required for a new model unless --init gives
    /// the centres).
    #[arg(long, short = 'k', value_name = "K")]
    pub num_clusters: Option<usize>,

    /// Initial centres: random, kmeans_plus_plus, or a file of k rows
    /// (.npy, .csv or .parquet).
    #[arg(long, value_name = "random|kmeans_plus_plus|CENTRES.npy", value_parser = parse_init)]
    pub init: Option<InitArg>,

    /// Distance metric.
    #[arg(long, value_enum)]
    pub distance: Option<DistanceArg>,

    /// One Lloyd iteration per step over the whole file (the default for a
    /// new model).
    #[arg(long, conflicts_with = "mini_batch")]
    pub full_batch: bool,

    /// One update per batch of --batch-size rows, streamed from the file
    /// with memory bounded by the batch size.
    #[arg(long)]
    pub mini_batch: bool,

    /// Rows per mini-batch [default: 1024].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,

    /// Mini-batch: rows shuffled together. The file's blocks are visited in
    /// a seeded random order each epoch and read into a buffer of this many
    /// rows (rounded up to whole batches), whose rows are shuffled [default:
    /// 64 batches, at most 16 MiB of rows, at least one batch].
    #[arg(long, value_name = "N", conflicts_with = "no_shuffle")]
    pub shuffle_buffer: Option<usize>,

    /// Mini-batch: read the file in its own order (no shuffling).
    #[arg(long)]
    pub no_shuffle: bool,

    /// Mini-batch steps per centre update (> 1: asynchronous full batch).
    #[arg(long, value_name = "S")]
    pub steps_per_iteration: Option<u64>,

    /// Run this many more steps. Default: 100 in full-batch mode; one pass
    /// over the file (--epochs 1) in mini-batch mode.
    #[arg(long, value_name = "N", conflicts_with = "max_steps")]
    pub steps: Option<u64>,

    /// Stop at this global step (counted over all runs in --model-dir).
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u64>,

    /// Passes over the file in mini-batch mode (default: 1 without --steps,
    /// unbounded with --steps or --max-steps).
    #[arg(long, value_name = "N")]
    pub epochs: Option<u64>,

    /// Stop when the loss changes by less than this, relative (default for a
    /// new full-batch model: 1e-4).
    #[arg(long, value_name = "X")]
    pub relative_tolerance: Option<f64>,

    /// Random seed [default: 0].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Log a line every N steps when standard error is not a terminal.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub log_step_count_steps: u64,

    /// Also save a checkpoint every N steps (default: every 600 s and at
    /// the end).
    #[arg(long, value_name = "N")]
    pub save_checkpoints_steps: Option<u64>,

    /// Checkpoints to keep (0 keeps all).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub keep_checkpoint_max: usize,

    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: SavedModelArgs,
    /// Keep this evaluation's metrics apart (model_dir/eval_NAME).
    #[arg(long)]
    pub name: Option<String>,
    /// Stream the file in batches of N rows; the loss is then the mean over
    /// batches of each batch's sum, as the Estimator reports it. Default: the
    /// whole file is one batch, so the loss is the sum over all rows.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    pub input: PredictInputArgs,
    /// Output file (.csv or .npy); CSV on standard output when absent.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// What to write: cluster_index, all_distances, or both.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "cluster_index"
    )]
    pub keys: Vec<PredictKey>,
}

#[derive(Args, Debug)]
pub struct TransformArgs {
    #[command(flatten)]
    pub input: PredictInputArgs,
    /// Output file (.csv or .npy): one row of k distances per input row.
    #[arg(long, value_name = "PATH")]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The model directory `train` wrote.
    #[arg(long, value_name = "DIR")]
    pub model_dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The model directory `train` wrote.
    #[arg(long, value_name = "DIR")]
    pub model_dir: PathBuf,
    /// The PNG file to write.
    #[arg(long, value_name = "PATH.png")]
    pub output: PathBuf,
    /// Plot at most this many rows (evenly spaced through the file).
    #[arg(long, value_name = "N", default_value_t = 20000)]
    pub max_points: usize,
    /// Image width and height in pixels.
    #[arg(long, value_name = "WxH", default_value = "1600x700")]
    pub size: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["centroid"].iter().chain(args))
    }

    #[test]
    fn init_is_a_method_by_name_or_else_a_file() {
        let init = |value: &str| {
            let cli = parse(&["train", "--data", "d", "--model-dir", "m", "--init", value]);
            match cli.unwrap().command {
                Command::Train(a) => a.init,
                other => panic!("parsed as {other:?}"),
            }
        };
        assert_eq!(init("random"), Some(InitArg::Method(InitMethod::Random)));
        assert_eq!(
            init("kmeans_plus_plus"),
            Some(InitArg::Method(InitMethod::KMeansPlusPlus))
        );
        for file in ["centres.npy", "./random", "kmeans++", "Random"] {
            assert_eq!(init(file), Some(InitArg::File(file.into())), "{file}");
        }
    }

    #[test]
    fn predict_keys_are_the_estimators_names() {
        let keys = |args: &[&str]| {
            let mut argv = vec!["predict", "--data", "d", "--model-dir", "m"];
            argv.extend(args);
            match parse(&argv).map(|c| c.command) {
                Ok(Command::Predict(a)) => Ok(a.keys),
                Ok(other) => panic!("parsed as {other:?}"),
                Err(e) => Err(e.kind()),
            }
        };
        assert_eq!(keys(&[]), Ok(vec![PredictKey::ClusterIndex]));
        assert_eq!(
            keys(&["--keys", "all_distances,cluster_index"]),
            Ok(vec![PredictKey::AllDistances, PredictKey::ClusterIndex])
        );
        assert_eq!(
            keys(&["--keys", "cluster_index,distances"]),
            Err(clap::error::ErrorKind::InvalidValue)
        );
        // Every value clap accepts is a name the Estimator knows.
        for key in PredictKey::value_variants() {
            let flag_name = key.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(flag_name.as_deref(), Some(key.name()));
        }
        assert_eq!(PredictKey::ClusterIndex.name(), CLUSTER_INDEX);
        assert_eq!(PredictKey::AllDistances.name(), ALL_DISTANCES);
    }

    #[test]
    fn the_shared_flags_mean_the_same_in_every_command() {
        let shared = ["--model-dir", "m", "--checkpoint", "c", "--threads", "3"];
        for (cmd, own) in [
            ("evaluate", &[][..]),
            ("predict", &[][..]),
            ("transform", &["--output", "o.npy"][..]),
        ] {
            let argv: Vec<&str> = [cmd, "--data", "d"]
                .iter()
                .chain(&shared)
                .chain(own)
                .copied()
                .collect();
            let cli = parse(&argv).unwrap_or_else(|e| panic!("{cmd}: {e}"));
            let model = match &cli.command {
                Command::Evaluate(a) => &a.model,
                Command::Predict(a) => &a.input.model,
                Command::Transform(a) => &a.input.model,
                other => panic!("parsed as {other:?}"),
            };
            assert_eq!(model.model_dir, PathBuf::from("m"), "{cmd}");
            assert_eq!(model.checkpoint, Some(PathBuf::from("c")), "{cmd}");
            assert_eq!(model.threads, Some(3), "{cmd}");
        }
    }
}
