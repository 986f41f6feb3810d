//! Data files as batches of rows.
//!
//! Every format opens into a [`Source`]: something that knows its width and
//! column names, and can either stream its rows in batches (memory bounded by
//! the batch size) or hand over all rows at once (borrowed from the memory map
//! for NPY files whose element type the model can use as it is).

use std::path::{Path, PathBuf};

use centroid::{DType, Data, Dense, Error, Result};

pub mod csv;
pub mod npy;
pub mod parquet;

/// A file format the command line reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Npy,
    Parquet,
}

impl Format {
    /// The format a path's extension names, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" | "txt" => Some(Format::Csv),
            "npy" => Some(Format::Npy),
            "parquet" | "pq" => Some(Format::Parquet),
            _ => None,
        }
    }

    /// The explicit format, else the one the extension names, else an error.
    pub fn resolve(explicit: Option<Format>, path: &Path) -> Result<Format> {
        explicit.or_else(|| Format::from_path(path)).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "cannot tell the format of {} from its extension: name it .csv, .npy or .parquet, or pass --format",
                path.display()
            ))
        })
    }
}

/// How to open a data file.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    pub format: Option<Format>,
    /// Columns to use, by name (or, for a CSV file without a header, by
    /// 0-based position); None = all numeric columns.
    pub columns: Option<Vec<String>>,
    /// Element type of the batches; None = the file's own float type (f64
    /// for f64 files, f32 for everything else).
    pub dtype: Option<DType>,
}

/// A data file opened for reading.
pub trait Source {
    /// The file, for messages.
    fn path(&self) -> &Path;
    /// Number of features per row (after column selection).
    fn width(&self) -> usize;
    /// Number of rows, when the file says so without being read.
    fn rows(&self) -> Option<usize>;
    /// Element type of the batches this source yields.
    fn dtype(&self) -> DType;
    /// One pass over the rows in batches of at most `batch_size` rows.
    fn batches(
        &self,
        batch_size: usize,
    ) -> Result<Box<dyn Iterator<Item = Result<Dense<'static>>> + '_>>;
    /// The file cut into runs of consecutive rows, of about `target_rows`
    /// each where the format allows (Parquet: its row groups), that
    /// [`Source::read_block`] reads without reading the rows before them.
    /// For the shuffled stream (`crate::stream`).
    fn blocks(&self, target_rows: usize) -> Result<Vec<Block>>;
    /// Rows `skip..` of `block`, in pieces of at most `chunk` rows.
    fn read_block(
        &self,
        block: &Block,
        skip: usize,
        chunk: usize,
    ) -> Result<Box<dyn Iterator<Item = Result<Dense<'static>>> + '_>>;
    /// All rows as one batch; borrowed from the file where it can be.
    fn read_all(&self) -> Result<Dense<'_>> {
        let mut parts = Vec::new();
        for b in self.batches(64 * 1024)? {
            parts.push(b?);
        }
        concat(parts, self.width(), self.dtype(), self.path())
    }
}

/// A run of consecutive rows of a file (see [`Source::blocks`]).
#[derive(Clone, Debug)]
pub struct Block {
    /// 0-based index of the block's first row in the file.
    pub first_row: usize,
    pub rows: usize,
    /// Where the block starts, in the terms of its format.
    pub(crate) start: BlockStart,
}

#[derive(Clone, Debug)]
pub(crate) enum BlockStart {
    /// Found from `first_row` (NPY).
    Row,
    /// A record boundary in a text file.
    Text(::csv::Position),
    /// A Parquet row group.
    RowGroup(usize),
}

/// Blocks of `target` rows (the last shorter) over `rows` rows.
pub(crate) fn row_blocks(rows: usize, target: usize) -> Vec<Block> {
    let target = target.max(1);
    (0..rows.div_ceil(target))
        .map(|i| Block {
            first_row: i * target,
            rows: target.min(rows - i * target),
            start: BlockStart::Row,
        })
        .collect()
}

/// Opens `path` in the format the options or its extension name.
pub fn open(path: &Path, opts: &ReadOptions) -> Result<Box<dyn Source>> {
    let format = Format::resolve(opts.format, path)?;
    if !path.exists() {
        return Err(Error::Io {
            action: "cannot open data file",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    match format {
        Format::Csv => Ok(Box::new(csv::CsvSource::open(path, opts)?)),
        Format::Npy => Ok(Box::new(npy::NpySource::open(path, opts)?)),
        Format::Parquet => Ok(Box::new(parquet::ParquetSource::open(path, opts)?)),
    }
}

thread_local! {
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current thread is inside [`guard_decoder`]: the panic hook
/// stays quiet there, since the panic becomes an ordinary error.
pub fn in_guarded_decoder() -> bool {
    DECODING.with(|d| d.get())
}

/// Runs a third-party decoder over a file that may be malformed. A panic in
/// it (a bug on input it did not expect) becomes the ordinary one-line data
/// error naming the file, not a crash.
pub(crate) fn guard_decoder<T>(
    path: &Path,
    what: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let was = DECODING.with(|d| d.replace(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    DECODING.with(|d| d.set(was));
    out.unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown fault".into());
        Err(Error::InvalidData(format!(
            "{}: cannot read {what}: the file is malformed ({})",
            path.display(),
            msg.split_whitespace().collect::<Vec<_>>().join(" ")
        )))
    })
}

/// A borrowed view of an owned or borrowed batch (no copy).
pub fn borrow<'b>(d: &'b Dense<'_>) -> Dense<'b> {
    let dense = match d.data() {
        Data::F32(v) => Dense::new(&v[..], d.rows(), d.cols()),
        Data::F64(v) => Dense::new(&v[..], d.rows(), d.cols()),
    };
    dense.expect("same shape as an existing batch")
}

/// Joins batches of equal width into one.
pub fn concat(
    parts: Vec<Dense<'static>>,
    width: usize,
    dtype: DType,
    path: &Path,
) -> Result<Dense<'static>> {
    let rows: usize = parts.iter().map(|p| p.rows()).sum();
    if rows == 0 {
        return Err(Error::InvalidData(format!(
            "{} holds no data rows",
            path.display()
        )));
    }
    match dtype {
        DType::F32 => {
            let mut out = Vec::with_capacity(rows * width);
            for p in &parts {
                out.extend_from_slice(&p.to_type::<f32>());
            }
            Dense::new(out, rows, width)
        }
        DType::F64 => {
            let mut out = Vec::with_capacity(rows * width);
            for p in &parts {
                out.extend_from_slice(&p.to_type::<f64>());
            }
            Dense::new(out, rows, width)
        }
    }
}

/// Values accumulated for one batch in the batch's element type.
pub(crate) enum Buffer {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Buffer {
    pub fn with_capacity(dtype: DType, n: usize) -> Self {
        match dtype {
            DType::F32 => Buffer::F32(Vec::with_capacity(n)),
            DType::F64 => Buffer::F64(Vec::with_capacity(n)),
        }
    }
    /// Makes room for one more row of `width` values, or says the batch
    /// does not fit in memory.
    pub fn reserve_row(&mut self, width: usize, path: &Path) -> Result<()> {
        let ok = match self {
            Buffer::F32(b) => b.try_reserve(width).is_ok(),
            Buffer::F64(b) => b.try_reserve(width).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidData(format!(
                "{}: a batch of rows of {width} values does not fit in memory; use a smaller --batch-size",
                path.display()
            )))
        }
    }
    #[inline]
    pub fn push(&mut self, v: f64) {
        match self {
            Buffer::F32(b) => b.push(v as f32),
            Buffer::F64(b) => b.push(v),
        }
    }
    pub fn into_dense(self, rows: usize, cols: usize) -> Result<Dense<'static>> {
        match self {
            Buffer::F32(b) => Dense::new(b, rows, cols),
            Buffer::F64(b) => Dense::new(b, rows, cols),
        }
    }
}

/// The error for a value that cannot be clustered, located in the file.
pub(crate) fn non_finite(path: &Path, place: String, v: f64) -> Error {
    let kind = if v.is_nan() { "NaN" } else { "infinite" };
    Error::InvalidData(format!("{}: {place} is {kind}", path.display()))
}

/// The error for a finite value beyond float32's range, located in the file.
pub(crate) fn too_large_for_f32(path: &Path, place: String, v: f64) -> Error {
    Error::InvalidData(format!(
        "{}: {place} is {v:e}, beyond float32's range; use --dtype f64 or scale the data down",
        path.display()
    ))
}

/// An I/O error while reading `path`.
pub(crate) fn read_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        action: "cannot read",
        path: PathBuf::from(path),
        source,
    }
}

/// Resolves a `--columns` selection against the available names.
pub(crate) fn select_columns(
    path: &Path,
    available: &[String],
    wanted: &[String],
) -> Result<Vec<usize>> {
    wanted
        .iter()
        .map(|w| {
            available.iter().position(|a| a == w).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{}: unknown column {w:?} (the file has: {})",
                    path.display(),
                    available.join(", ")
                ))
            })
        })
        .collect()
}
