//! `train`'s flags turned into what the Estimator needs: the parameters,
//! the run configuration, and how long and on which batches to train.
//!
//! [`plan`] is a pure function of the flags, the saved model's parameters
//! and what is known of the data (reading a file of initial centres is
//! handed in), so every rule and every refusal is unit-tested below
//! without files.

use std::path::Path;

use centroid::{
    Dense, Error, InitialClusters, KMeansParams, Mode, Result, RunConfig, ValidKMeansParams,
};

use crate::cli::{InitArg, InitMethod, TrainArgs};

/// Full-batch training without --steps/--max-steps runs at most this many
/// steps per call (the constant input never ends by itself).
pub const DEFAULT_FULL_BATCH_STEPS: u64 = 100;
/// The relative tolerance a new full-batch model gets unless one is given.
pub const DEFAULT_FULL_BATCH_TOLERANCE: f64 = 1e-4;
/// Rows per mini-batch unless --batch-size is given.
pub const DEFAULT_BATCH_SIZE: usize = 1024;

/// What `train` knows of the data file before training.
#[derive(Clone, Copy, Debug)]
pub struct DataFacts<'a> {
    pub path: &'a Path,
    /// Features per row.
    pub width: usize,
    /// Rows, when the file says so without being read.
    pub rows: Option<usize>,
}

/// Everything one `train` call does, decided before it starts.
#[derive(Debug)]
pub struct TrainPlan {
    pub params: ValidKMeansParams,
    pub config: RunConfig,
    pub steps: Option<u64>,
    pub max_steps: Option<u64>,
    /// Passes over the file in mini-batch mode; None: unbounded.
    pub epochs: Option<u64>,
    /// Rows per mini-batch.
    pub batch_size: usize,
    /// --init was given for a model that is already initialised.
    pub init_ignored: bool,
}

impl TrainPlan {
    /// The global step training ends at, at the latest, when that is known
    /// (for the progress bar).
    pub fn last_step(&self, start_step: i64, rows: Option<usize>) -> Option<i64> {
        let mut last = match (self.steps, self.max_steps) {
            (Some(s), _) => Some(start_step + s as i64),
            (_, Some(m)) => Some(m as i64),
            _ => None,
        };
        if let (true, Some(e), Some(n)) = (self.params.mode().use_mini_batch(), self.epochs, rows) {
            let per_epoch = n.div_ceil(self.batch_size) as i64;
            let by_epochs = start_step + per_epoch * e as i64;
            last = Some(last.map_or(by_epochs, |l| l.min(by_epochs)));
        }
        last
    }
}

/// Decides a `train` call. `saved` is the parameters of the model already
/// in --model-dir (None for a new model): the flags given change them, and a
/// change the model cannot take is left for the Estimator to refuse, naming
/// both values. `read_centres` reads `--init FILE` in the data's element
/// type; it is called only for a new model.
pub fn plan(
    a: &TrainArgs,
    saved: Option<&KMeansParams>,
    data: DataFacts<'_>,
    read_centres: &mut dyn FnMut(&Path) -> Result<Dense<'static>>,
) -> Result<TrainPlan> {
    let new_model = saved.is_none();
    let mut params = saved.cloned().unwrap_or_else(|| KMeansParams::new(0));
    if let Some(k) = a.num_clusters {
        params = params.num_clusters(k);
    }
    if let Some(d) = a.distance {
        params = params.distance_metric(d.into());
    }
    let mut use_mini_batch = params.get_mode().use_mini_batch();
    if a.mini_batch || a.full_batch {
        use_mini_batch = a.mini_batch;
    } else if new_model {
        use_mini_batch = false;
    }
    let steps_per_iteration = a
        .steps_per_iteration
        .unwrap_or(params.get_mode().steps_per_iteration());
    params = params.mode(Mode::from_flags(use_mini_batch, steps_per_iteration)?);
    if let Some(seed) = a.seed {
        params = params.random_seed(seed);
    }
    if let Some(t) = a.relative_tolerance {
        params = params.relative_tolerance(Some(t));
    } else if new_model && !use_mini_batch {
        params = params.relative_tolerance(Some(DEFAULT_FULL_BATCH_TOLERANCE));
    }
    if a.data.columns.is_some() {
        params = params.feature_columns(a.data.columns.clone());
    }

    let mut init_ignored = false;
    if new_model {
        let initial_clusters = match &a.init {
            None | Some(InitArg::Method(InitMethod::Random)) => InitialClusters::Random,
            Some(InitArg::Method(InitMethod::KMeansPlusPlus)) => InitialClusters::KMeansPlusPlus,
            Some(InitArg::File(path)) => {
                let centres = read_centres(path)?;
                if centres.cols() != data.width {
                    return Err(Error::InvalidData(format!(
                        "the initial centres in {} have {} columns but {} has {}",
                        path.display(),
                        centres.cols(),
                        data.path.display(),
                        data.width
                    )));
                }
                if let Some(k) = a.num_clusters.filter(|&k| k != centres.rows()) {
                    return Err(Error::InvalidArgument(format!(
                        "--num-clusters {k} disagrees with the {} rows of {}",
                        centres.rows(),
                        path.display()
                    )));
                }
                params = params.num_clusters(centres.rows());
                InitialClusters::Array(centres)
            }
        };
        params = params.initial_clusters(initial_clusters);
        if params.get_num_clusters() == 0 {
            return Err(Error::InvalidArgument(
                "a new model needs --num-clusters K (or --init with a file of centres)".into(),
            ));
        }
        if let Some(n) = data.rows.filter(|&n| params.get_num_clusters() > n) {
            return Err(Error::InvalidData(format!(
                "num_clusters = {} is larger than the {n} rows of {}",
                params.get_num_clusters(),
                data.path.display()
            )));
        }
    } else {
        init_ignored = a.init.is_some();
    }
    // Each value in its domain; whether the saved model can take a change
    // is the Estimator's to judge.
    let params = params.check()?;

    let config = RunConfig {
        num_threads: a.threads,
        log_step_count_steps: Some(a.log_step_count_steps.max(1)),
        keep_checkpoint_max: a.keep_checkpoint_max,
        save_checkpoints_steps: a.save_checkpoints_steps,
        save_checkpoints_secs: if a.save_checkpoints_steps.is_some() {
            None
        } else {
            RunConfig::default().save_checkpoints_secs
        },
        ..RunConfig::default()
    };

    let mini = params.mode().use_mini_batch();
    let (steps, max_steps) = match (a.steps, a.max_steps) {
        (None, None) if !mini => (Some(DEFAULT_FULL_BATCH_STEPS), None),
        other => other,
    };
    let batch_size = a.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
    if batch_size == 0 {
        return Err(Error::InvalidArgument(
            "--batch-size must be at least 1".into(),
        ));
    }
    let epochs = match (a.epochs, steps, max_steps) {
        (Some(0), _, _) => {
            return Err(Error::InvalidArgument("--epochs must be at least 1".into()))
        }
        (Some(e), _, _) => Some(e),
        (None, None, None) => Some(1),
        (None, _, _) => None,
    };
    if !mini && a.epochs.is_some() {
        return Err(Error::InvalidArgument(
            "--epochs applies to --mini-batch training; full batch runs --steps Lloyd iterations"
                .into(),
        ));
    }
    if !mini && (a.no_shuffle || a.shuffle_buffer.is_some()) {
        return Err(Error::InvalidArgument(
            "--shuffle-buffer and --no-shuffle apply to --mini-batch training".into(),
        ));
    }
    Ok(TrainPlan {
        params,
        config,
        steps,
        max_steps,
        epochs,
        batch_size,
        init_ignored,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use centroid::Metric;
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    /// `centroid train --data d.csv --model-dir m EXTRA...`, parsed as the
    /// binary parses it.
    fn flags(extra: &[&str]) -> TrainArgs {
        let argv = ["centroid", "train", "--data", "d.csv", "--model-dir", "m"];
        let cli = Cli::try_parse_from(argv.iter().chain(extra)).unwrap();
        match cli.command {
            Command::Train(a) => a,
            other => panic!("parsed as {other:?}"),
        }
    }

    /// `d.csv`: 100 rows of 2 features.
    fn data() -> DataFacts<'static> {
        DataFacts {
            path: Path::new("d.csv"),
            width: 2,
            rows: Some(100),
        }
    }

    /// A reader for --init FILE that must not be called.
    fn no_file(path: &Path) -> Result<Dense<'static>> {
        panic!("read {} although no centres file applies", path.display())
    }

    /// A reader for --init FILE giving `rows` x `cols` centres.
    fn centres(rows: usize, cols: usize) -> impl FnMut(&Path) -> Result<Dense<'static>> {
        move |_| Dense::new(vec![1f32; rows * cols], rows, cols)
    }

    fn plan_new(extra: &[&str]) -> Result<TrainPlan> {
        plan(&flags(extra), None, data(), &mut no_file)
    }

    /// The parameters of a saved mini-batch model with settings that differ
    /// from every default.
    fn saved_mini_batch() -> KMeansParams {
        KMeansParams::new(3)
            .mode(Mode::Async {
                steps_per_iteration: 4,
            })
            .random_seed(9)
            .relative_tolerance(None)
            .distance_metric(Metric::Cosine)
            .initial_clusters(InitialClusters::KMeansPlusPlus)
            .feature_columns(Some(vec!["x".into(), "y".into()]))
    }

    #[test]
    fn a_new_model_trains_full_batch_to_convergence_by_default() {
        let p = plan_new(&["-k", "3"]).unwrap();
        assert_eq!(p.params.num_clusters(), 3);
        assert!(!p.params.mode().use_mini_batch());
        assert!(matches!(
            p.params.initial_clusters(),
            InitialClusters::Random
        ));
        assert_eq!(p.params.distance_metric(), Metric::SquaredEuclidean);
        assert_eq!(p.params.random_seed(), 0);
        assert_eq!(p.params.relative_tolerance(), Some(1e-4));
        assert_eq!(p.params.feature_columns(), None);
        assert_eq!((p.steps, p.max_steps, p.epochs), (Some(100), None, None));
        assert_eq!(p.batch_size, 1024);
        assert!(!p.init_ignored);
        assert_eq!(p.config.num_threads, None);
        assert_eq!(p.config.log_step_count_steps, Some(100));
        assert_eq!(p.config.keep_checkpoint_max, 5);
        assert_eq!(p.config.save_checkpoints_steps, None);
        assert_eq!(
            p.config.save_checkpoints_secs,
            RunConfig::default().save_checkpoints_secs
        );
    }

    #[test]
    fn every_flag_reaches_the_parameters_and_configuration() {
        let p = plan_new(&[
            "-k",
            "4",
            "--mini-batch",
            "--batch-size",
            "50",
            "--steps-per-iteration",
            "3",
            "--distance",
            "cosine",
            "--init",
            "kmeans_plus_plus",
            "--seed",
            "11",
            "--relative-tolerance",
            "0.5",
            "--columns",
            "b,a",
            "--threads",
            "2",
            "--log-step-count-steps",
            "0",
            "--save-checkpoints-steps",
            "7",
            "--keep-checkpoint-max",
            "0",
            "--max-steps",
            "40",
        ])
        .unwrap();
        let q = &p.params;
        assert_eq!(q.num_clusters(), 4);
        assert!(q.mode().use_mini_batch());
        assert_eq!(q.mode().steps_per_iteration(), 3);
        assert_eq!(q.distance_metric(), Metric::Cosine);
        assert!(matches!(
            q.initial_clusters(),
            InitialClusters::KMeansPlusPlus
        ));
        assert_eq!(q.random_seed(), 11);
        assert_eq!(q.relative_tolerance(), Some(0.5));
        assert_eq!(
            q.feature_columns(),
            Some(&["b".to_string(), "a".to_string()][..])
        );
        assert_eq!(p.batch_size, 50);
        // --max-steps alone: no step count, and no bound on the passes.
        assert_eq!((p.steps, p.max_steps, p.epochs), (None, Some(40), None));
        assert_eq!(p.config.num_threads, Some(2));
        // 0 would mean "never"; the command line logs every step instead.
        assert_eq!(p.config.log_step_count_steps, Some(1));
        assert_eq!(p.config.keep_checkpoint_max, 0);
        // Saving by steps replaces saving by time (the two exclude each other).
        assert_eq!(p.config.save_checkpoints_steps, Some(7));
        assert_eq!(p.config.save_checkpoints_secs, None);
    }

    #[test]
    fn a_new_mini_batch_model_makes_one_pass_without_a_tolerance() {
        let p = plan_new(&["-k", "3", "--mini-batch"]).unwrap();
        assert!(p.params.mode().use_mini_batch());
        assert_eq!(p.params.relative_tolerance(), None);
        assert_eq!((p.steps, p.max_steps, p.epochs), (None, None, Some(1)));
        // --steps alone: no bound on the passes.
        let p = plan_new(&["-k", "3", "--mini-batch", "--steps", "5"]).unwrap();
        assert_eq!((p.steps, p.max_steps, p.epochs), (Some(5), None, None));
        // k-means++ draws from a sample of the whole file, not the first
        // batch: a batch smaller than k is fine.
        let p = plan_new(&[
            "-k",
            "5",
            "--mini-batch",
            "--batch-size",
            "3",
            "--init",
            "kmeans_plus_plus",
        ])
        .unwrap();
        assert_eq!((p.params.num_clusters(), p.batch_size), (5, 3));
    }

    #[test]
    fn a_resumed_model_keeps_its_settings_unless_a_flag_changes_them() {
        let saved = saved_mini_batch();
        let p = plan(&flags(&[]), Some(&saved), data(), &mut no_file).unwrap();
        assert_eq!(p.params.num_clusters(), 3);
        assert!(p.params.mode().use_mini_batch());
        assert_eq!(p.params.mode().steps_per_iteration(), 4);
        assert_eq!(p.params.random_seed(), 9);
        assert_eq!(p.params.distance_metric(), Metric::Cosine);
        // No tolerance is made up for a model that had none.
        assert_eq!(p.params.relative_tolerance(), None);
        assert_eq!(p.params.feature_columns(), saved.get_feature_columns());
        assert!(matches!(
            p.params.initial_clusters(),
            InitialClusters::KMeansPlusPlus
        ));
        assert_eq!((p.steps, p.epochs), (None, Some(1)));

        // Flags change what they name (the Estimator judges whether the
        // saved model can take it); --init is noted and ignored, its file
        // never read.
        let p = plan(
            &flags(&["-k", "5", "--full-batch", "--init", "c.npy", "--seed", "1"]),
            Some(&saved),
            data(),
            &mut no_file,
        )
        .unwrap();
        assert_eq!(p.params.num_clusters(), 5);
        assert!(!p.params.mode().use_mini_batch());
        assert_eq!(p.params.random_seed(), 1);
        assert_eq!(p.params.relative_tolerance(), None);
        assert!(p.init_ignored);
        assert!(matches!(
            p.params.initial_clusters(),
            InitialClusters::KMeansPlusPlus
        ));
        // A resumed model's k-means++ is done: a batch smaller than k is fine.
        let p = plan(
            &flags(&["--batch-size", "2"]),
            Some(&saved),
            data(),
            &mut no_file,
        );
        assert_eq!(p.unwrap().batch_size, 2);
    }

    #[test]
    fn initial_centres_from_a_file_set_k() {
        let a = flags(&["--init", "c.npy"]);
        let mut read = Vec::new();
        let p = plan(&a, None, data(), &mut |path: &Path| {
            read.push(path.to_path_buf());
            centres(3, 2)(path)
        })
        .unwrap();
        assert_eq!(read, vec![PathBuf::from("c.npy")]);
        assert_eq!(p.params.num_clusters(), 3);
        match p.params.initial_clusters() {
            InitialClusters::Array(c) => assert_eq!((c.rows(), c.cols()), (3, 2)),
            other => panic!("{other:?}"),
        }
        // -k may repeat the file's row count.
        let p = plan(
            &flags(&["-k", "3", "--init", "c.npy"]),
            None,
            data(),
            &mut centres(3, 2),
        );
        assert_eq!(p.unwrap().params.num_clusters(), 3);
    }

    /// The kind of mistake an error reports.
    fn kind(e: &Error) -> &'static str {
        match e {
            Error::InvalidArgument(_) => "argument",
            Error::InvalidData(_) => "data",
            _ => "other",
        }
    }

    #[test]
    fn refusals_name_the_flag_and_the_values() {
        let width_3 = DataFacts { width: 3, ..data() };
        let rows_5 = DataFacts {
            rows: Some(5),
            ..data()
        };
        let rows_2 = DataFacts {
            rows: Some(2),
            ..data()
        };
        #[rustfmt::skip]
        let cases: &[(&[&str], DataFacts, &str, &str)] = &[
            (&[], data(), "argument",
             "a new model needs --num-clusters K (or --init with a file of centres)"),
            (&["-k", "0"], data(), "argument", "a new model needs --num-clusters K"),
            (&["-k", "10"], rows_5, "data", "num_clusters = 10 is larger than the 5 rows of d.csv"),
            (&["--init", "c.npy"], width_3, "data",
             "the initial centres in c.npy have 2 columns but d.csv has 3"),
            (&["-k", "4", "--init", "c.npy"], data(), "argument",
             "--num-clusters 4 disagrees with the 3 rows of c.npy"),
            (&["--init", "c.npy"], rows_2, "data", "num_clusters = 3 is larger than the 2 rows"),
            (&["-k", "3", "--mini-batch", "--batch-size", "0"], data(), "argument",
             "--batch-size must be at least 1"),
            (&["-k", "3", "--batch-size", "0"], data(), "argument", "--batch-size must be at least 1"),
            (&["-k", "3", "--no-shuffle"], data(), "argument",
             "--shuffle-buffer and --no-shuffle apply to --mini-batch training"),
            (&["-k", "3", "--full-batch", "--shuffle-buffer", "64"], data(), "argument",
             "--shuffle-buffer and --no-shuffle apply to --mini-batch training"),
            (&["-k", "3", "--mini-batch", "--epochs", "0"], data(), "argument",
             "--epochs must be at least 1"),
            (&["-k", "3", "--epochs", "2"], data(), "argument",
             "--epochs applies to --mini-batch training; full batch runs --steps Lloyd iterations"),
        ];
        for (extra, data, want_kind, message) in cases {
            let e = plan(&flags(extra), None, *data, &mut centres(3, 2)).unwrap_err();
            assert_eq!(kind(&e), *want_kind, "{extra:?}: {e}");
            assert!(e.to_string().contains(message), "{extra:?}: {e}");
        }
        // A file that cannot be read: the reader's error, as it is.
        let unreadable = || Error::InvalidData("c.npy: not a valid .npy file".into());
        let e = plan(
            &flags(&["--init", "c.npy"]),
            None,
            data(),
            &mut |_: &Path| Err(unreadable()),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), unreadable().to_string());
    }

    #[test]
    fn the_last_step_is_known_from_steps_max_steps_or_epochs() {
        // 2500 rows in batches of 1024 are 3 steps per pass.
        #[rustfmt::skip]
        let cases: &[(&[&str], Option<usize>, Option<i64>)] = &[
            (&["-k", "3"], Some(2500), Some(10 + 100)),
            (&["-k", "3", "--steps", "7"], Some(2500), Some(17)),
            (&["-k", "3", "--max-steps", "12"], Some(2500), Some(12)),
            (&["-k", "3", "--mini-batch"], Some(2500), Some(10 + 3)),
            (&["-k", "3", "--mini-batch", "--epochs", "4"], Some(2500), Some(10 + 12)),
            (&["-k", "3", "--mini-batch", "--epochs", "4", "--steps", "5"], Some(2500), Some(15)),
            (&["-k", "3", "--mini-batch", "--epochs", "4", "--max-steps", "30"], Some(2500), Some(22)),
            (&["-k", "3", "--mini-batch"], None, None),
            (&["-k", "3", "--mini-batch", "--steps", "5"], None, Some(15)),
        ];
        for (extra, rows, want) in cases {
            let p = plan(&flags(extra), None, data(), &mut no_file);
            assert_eq!(p.unwrap().last_step(10, *rows), *want, "{extra:?}");
        }
    }
}
