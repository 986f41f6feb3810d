//! The command line's grammar (clap derive).

use std::path::PathBuf;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DistanceArg {
    #[value(name = "squared_euclidean")]
    SquaredEuclidean,
    #[value(name = "cosine")]
    Cosine,
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
    #[arg(long, value_name = "random|kmeans_plus_plus|CENTRES.npy")]
    pub init: Option<String>,

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
    #[arg(long, value_name = "DIR")]
    pub model_dir: PathBuf,
    /// Evaluate this checkpoint instead of the latest.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Keep this evaluation's metrics apart (model_dir/eval_NAME).
    #[arg(long)]
    pub name: Option<String>,
    /// Stream the file in batches of N rows; the loss is then the mean over
    /// batches of each batch's sum, as the Estimator reports it. Default: the
    /// whole file is one batch, so the loss is the sum over all rows.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, value_name = "DIR")]
    pub model_dir: PathBuf,
    /// Output file (.csv or .npy); CSV on standard output when absent.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// What to write: cluster_index, all_distances, or both.
    #[arg(long, value_delimiter = ',', default_value = "cluster_index")]
    pub keys: Vec<String>,
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Rows per batch while streaming.
    #[arg(long, value_name = "N", default_value_t = 16384)]
    pub batch_size: usize,
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct TransformArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, value_name = "DIR")]
    pub model_dir: PathBuf,
    /// Output file (.csv or .npy): one row of k distances per input row.
    #[arg(long, value_name = "PATH")]
    pub output: PathBuf,
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    #[arg(long, value_name = "N", default_value_t = 16384)]
    pub batch_size: usize,
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
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
