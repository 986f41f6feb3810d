//! What `input_fn` returns, and how it becomes a validated batch.
//!
//! An input function returns either one batch, which is yielded for every
//! step (as a constant tensor is in TensorFlow), or an iterator of batches,
//! one per step until it ends. A batch is a dense row-major matrix, borrowed
//! from the caller where possible; named feature columns, joined column-wise
//! in sorted key order (or `feature_columns` order); or a sparse CSR matrix
//! (TF-IDF and the like), which the kernels read without densifying.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::float::{DType, Float};

mod batch;
mod sparse;

pub use batch::{Batch, Rows};
pub use sparse::Sparse;

/// Values of one element type, borrowed or owned.
#[derive(Clone, Debug)]
pub enum Data<'a> {
    /// float32 values.
    F32(Cow<'a, [f32]>),
    /// float64 values.
    F64(Cow<'a, [f64]>),
}

impl<'a> Data<'a> {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
        }
    }
    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
        }
    }
}

impl<'a> From<&'a [f32]> for Data<'a> {
    fn from(v: &'a [f32]) -> Self {
        Data::F32(Cow::Borrowed(v))
    }
}
impl<'a> From<&'a [f64]> for Data<'a> {
    fn from(v: &'a [f64]) -> Self {
        Data::F64(Cow::Borrowed(v))
    }
}
impl From<Vec<f32>> for Data<'static> {
    fn from(v: Vec<f32>) -> Self {
        Data::F32(Cow::Owned(v))
    }
}
impl From<Vec<f64>> for Data<'static> {
    fn from(v: Vec<f64>) -> Self {
        Data::F64(Cow::Owned(v))
    }
}

/// A dense row-major `rows x cols` batch of either element type.
#[derive(Clone, Debug)]
pub struct Dense<'a> {
    data: Data<'a>,
    rows: usize,
    cols: usize,
}

impl<'a> Dense<'a> {
    /// A `rows x cols` batch over `data`; the length must match.
    pub fn new(data: impl Into<Data<'a>>, rows: usize, cols: usize) -> Result<Self> {
        let data = data.into();
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(Error::InvalidShape(format!(
                "a batch of {rows} rows x {cols} columns needs {} values, got {}",
                rows.saturating_mul(cols),
                data.len()
            )));
        }
        Ok(Self { data, rows, cols })
    }

    /// A batch from a list of rows, which must all have the same width.
    pub fn from_rows<T: Copy>(rows: &[Vec<T>]) -> Result<Self>
    where
        Data<'static>: From<Vec<T>>,
    {
        let cols = rows.first().map_or(0, |r| r.len());
        let mut flat = Vec::with_capacity(rows.len() * cols);
        for (i, r) in rows.iter().enumerate() {
            if r.len() != cols {
                return Err(Error::InvalidShape(format!(
                    "ragged rows: row {i} has {} values, row 0 has {cols}",
                    r.len()
                )));
            }
            flat.extend_from_slice(r);
        }
        Dense::new(Data::from(flat), rows.len(), cols)
    }

    /// Rows (examples).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns (features).
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }
    /// The values, row-major.
    pub fn data(&self) -> &Data<'a> {
        &self.data
    }

    /// The batch as `T`: a borrowed view when it already is `T`, else a
    /// converted copy.
    pub fn to_type<T: Float>(&self) -> Cow<'_, [T]> {
        match &self.data {
            Data::F32(v) => cast_slice_or_convert(v),
            Data::F64(v) => cast_slice_or_convert(v),
        }
    }

    /// The batch as `T`, like [`Dense::to_type`], but refusing values that a
    /// narrowing conversion (float64 data, float32 model) turns infinite.
    /// `what` names the batch in messages.
    pub fn to_type_checked<T: Float>(&self, what: &str) -> Result<Cow<'_, [T]>> {
        let values = self.to_type::<T>();
        if self.dtype() != T::DTYPE {
            if let Some(idx) = values.iter().position(|x| !x.is_finite()) {
                let original = match &self.data {
                    Data::F32(v) => v[idx] as f64,
                    Data::F64(v) => v[idx],
                };
                return Err(Error::data(format!(
                    "{what}: row {}, column {} is {original:e}, outside the range of {} (the model's element type)",
                    idx / self.cols.max(1),
                    idx % self.cols.max(1),
                    T::DTYPE
                )));
            }
        }
        Ok(values)
    }

    /// Checks that the batch can be trained on or scored: not empty, of the
    /// expected width, and finite everywhere. `what` names the batch in
    /// messages ("batch 3").
    pub fn validate(&self, expected_cols: Option<usize>, what: &str) -> Result<()> {
        self.validate_with_norms(expected_cols, None, what)
    }

    /// [`Dense::validate`] and, with `sq_norm_limit`,
    /// [`Dense::check_row_norms`], in one read of the values where they
    /// pass: a NaN or infinite value makes its row's squared norm NaN or
    /// infinite, which no limit passes. The errors are those of the two
    /// checks made one after the other.
    pub fn validate_with_norms(
        &self,
        expected_cols: Option<usize>,
        sq_norm_limit: Option<f64>,
        what: &str,
    ) -> Result<()> {
        check_shape(self.rows, self.cols, expected_cols, what)?;
        let clean = match &self.data {
            Data::F32(v) => rows_clean(v, self.cols, sq_norm_limit),
            Data::F64(v) => rows_clean(v, self.cols, sq_norm_limit),
        };
        if clean {
            return Ok(());
        }
        match &self.data {
            Data::F32(v) => check_finite(v, self.cols, what)?,
            Data::F64(v) => check_finite(v, self.cols, what)?,
        }
        sq_norm_limit.map_or(Ok(()), |limit| self.check_row_norms(limit, what))
    }
}

impl<'a> Dense<'a> {
    /// Checks that no row's squared norm (summed in f64) exceeds `limit`:
    /// squared Euclidean distances of rows beyond it overflow the model's
    /// element type. Rows must already be finite.
    pub fn check_row_norms(&self, limit: f64, what: &str) -> Result<()> {
        match &self.data {
            Data::F32(v) => row_norms_within(v, self.cols, limit, what),
            Data::F64(v) => row_norms_within(v, self.cols, limit, what),
        }
    }
}

/// A batch that can be trained on or scored is not empty and, when the
/// model's width is known, has that many columns.
fn check_shape(rows: usize, cols: usize, expected_cols: Option<usize>, what: &str) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Err(Error::data(format!(
            "{what} is empty ({rows} rows x {cols} columns)"
        )));
    }
    match expected_cols {
        Some(d) if d != cols => Err(Error::data(format!(
            "{what} has {cols} columns but the model has {d} features"
        ))),
        _ => Ok(()),
    }
}

/// Rows checked per parallel task by the whole-batch scans.
const SCAN_BLOCK_VALUES: usize = 1 << 16;

fn row_norms_within<T: Float>(v: &[T], cols: usize, limit: f64, what: &str) -> Result<()> {
    let cols = cols.max(1);
    let sq_norm = crate::kernels::sq_norm_f64::<T>;
    // The common case is a clean batch: scan in parallel, locate serially.
    if rows_clean(v, cols, Some(limit)) {
        return Ok(());
    }
    for (r, row) in v.chunks_exact(cols).enumerate() {
        let sq = sq_norm(row);
        if sq > limit {
            return Err(Error::data(format!(
                "{what}: row {r} has squared norm {sq:e}, beyond {limit:e}, where squared distances would overflow the model's element type; use float64 data or scale it down"
            )));
        }
    }
    Ok(())
}

/// Whether every value of `v` (rows of `cols` values) is finite and, with
/// a `limit`, every row's squared norm at most `limit`: the whole-batch
/// checks' common case, a parallel read of blocks of whole rows
/// ([`block_clean`](crate::kernels::block_clean)).
fn rows_clean<T: Float>(v: &[T], cols: usize, limit: Option<f64>) -> bool {
    let cols = cols.max(1);
    let block = SCAN_BLOCK_VALUES.div_ceil(cols) * cols;
    v.par_chunks(block)
        .all(|b| crate::kernels::block_clean(b, cols, limit))
}

fn cast_slice_or_convert<'s, S: Float, T: Float>(v: &'s [S]) -> Cow<'s, [T]> {
    if S::DTYPE == T::DTYPE {
        // Same type: reinterpret without copying.
        Cow::Borrowed(bytemuck::cast_slice(v))
    } else {
        Cow::Owned(
            v.iter()
                .map(|x| T::from_f64_lossy(x.to_f64_exact()))
                .collect(),
        )
    }
}

fn check_finite<T: Float>(v: &[T], cols: usize, what: &str) -> Result<()> {
    // The common case is a clean batch: scan quickly, locate only on failure.
    if rows_clean(v, cols, None) {
        return Ok(());
    }
    let idx = v.iter().position(|x| !x.is_finite()).unwrap_or(0);
    let bad = v[idx];
    let kind = if bad.is_nan() { "NaN" } else { "infinite" };
    Err(Error::data(format!(
        "{what}: row {}, column {} is {kind}",
        idx / cols,
        idx % cols
    )))
}

/// One named feature column: `[N]` (width 1) or `[N, d]`.
#[derive(Clone, Debug)]
pub struct Column<'a> {
    /// The column's values, `N x width`.
    pub values: Dense<'a>,
}

impl<'a> Column<'a> {
    /// A `[N]` column.
    pub fn vector(data: impl Into<Data<'a>>) -> Self {
        let data = data.into();
        let n = data.len();
        Column {
            values: Dense {
                data,
                rows: n,
                cols: 1,
            },
        }
    }
    /// A `[N, d]` column.
    pub fn matrix(data: impl Into<Data<'a>>, rows: usize, cols: usize) -> Result<Self> {
        Ok(Column {
            values: Dense::new(data, rows, cols)?,
        })
    }
}

/// One batch as input_fn gives it.
#[derive(Clone, Debug)]
pub enum Features<'a> {
    /// One dense matrix of every feature.
    Dense(Dense<'a>),
    /// Named columns, joined by name (or in `feature_columns` order).
    Columns(BTreeMap<String, Column<'a>>),
    /// One sparse (CSR) matrix of every feature.
    Sparse(Sparse<'a>),
}

impl<'a> From<Dense<'a>> for Features<'a> {
    fn from(d: Dense<'a>) -> Self {
        Features::Dense(d)
    }
}

impl<'a> From<Sparse<'a>> for Features<'a> {
    fn from(s: Sparse<'a>) -> Self {
        Features::Sparse(s)
    }
}

impl<'a> Features<'a> {
    /// The batch as one matrix. A dense or sparse batch passes through
    /// without a copy; columns are joined in sorted key order, or in
    /// `feature_columns` order (only those keys) when given.
    pub fn into_batch(self, feature_columns: Option<&[String]>) -> Result<Batch<'a>> {
        match self {
            Features::Dense(d) => Ok(Batch::Dense(d)),
            Features::Columns(map) => join_columns(map, feature_columns).map(Batch::Dense),
            Features::Sparse(s) => Ok(Batch::Sparse(s)),
        }
    }
}

fn join_columns<'a>(
    mut map: BTreeMap<String, Column<'a>>,
    feature_columns: Option<&[String]>,
) -> Result<Dense<'a>> {
    let keys: Vec<String> = match feature_columns {
        Some(cols) => {
            for c in cols {
                if !map.contains_key(c) {
                    let have: Vec<&str> = map.keys().map(String::as_str).collect();
                    return Err(Error::data(format!(
                        "feature column {c:?} is not in the input (it has: {})",
                        have.join(", ")
                    )));
                }
            }
            cols.to_vec()
        }
        None => map.keys().cloned().collect(),
    };
    if keys.is_empty() {
        return Err(Error::data("the input has no feature columns"));
    }
    let columns: Vec<Column<'a>> = keys.iter().filter_map(|k| map.remove(k)).collect();
    let rows = columns[0].values.rows;
    for (k, c) in keys.iter().zip(&columns) {
        if c.values.rows != rows {
            return Err(Error::InvalidShape(format!(
                "feature column {k:?} has {} rows but {:?} has {rows}",
                c.values.rows, keys[0]
            )));
        }
    }
    if columns.len() == 1 {
        return Ok(columns
            .into_iter()
            .next()
            .map(|c| c.values)
            .expect("one column"));
    }
    let cols: usize = columns.iter().map(|c| c.values.cols).sum();
    let all_f32 = columns.iter().all(|c| c.values.dtype() == DType::F32);
    if all_f32 {
        Ok(Dense::new(
            Data::from(interleave::<f32>(&columns, rows, cols)),
            rows,
            cols,
        )?)
    } else {
        Ok(Dense::new(
            Data::from(interleave::<f64>(&columns, rows, cols)),
            rows,
            cols,
        )?)
    }
}

fn interleave<T: Float>(columns: &[Column<'_>], rows: usize, cols: usize) -> Vec<T> {
    let typed: Vec<(Cow<'_, [T]>, usize)> = columns
        .iter()
        .map(|c| (c.values.to_type::<T>(), c.values.cols))
        .collect();
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for (v, w) in &typed {
            out.extend_from_slice(&v[r * w..(r + 1) * w]);
        }
    }
    out
}

/// What an input function returns.
pub enum Input<'a> {
    /// One batch, yielded for every step without end.
    Constant(Features<'a>),
    /// One batch per step until the iterator ends.
    Batches(Box<dyn Iterator<Item = Result<Features<'a>>> + 'a>),
}

impl<'a> Input<'a> {
    /// One dense batch, repeated every step.
    pub fn constant(batch: impl Into<Features<'a>>) -> Self {
        Input::Constant(batch.into())
    }
    /// A sequence of batches.
    pub fn batches<I>(it: I) -> Self
    where
        I: IntoIterator<Item = Result<Features<'a>>>,
        I::IntoIter: 'a,
    {
        Input::Batches(Box::new(it.into_iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One read for both checks passes clean rows and, on damaged ones,
    /// gives the errors the two checks give one after the other: a NaN or
    /// infinite value by its row and column (before any norm), then a row
    /// beyond the limit by its row; in f32 and f64, at widths below and
    /// past one vector register, with the bad value in the last row.
    #[test]
    fn one_read_checks_values_and_norms_and_says_where() {
        for cols in [1, 3, 8, 19] {
            let rows = 5000;
            let clean: Vec<f64> = (0..rows * cols).map(|i| (i % 97) as f64 - 48.0).collect();
            let limit = 48.0 * 48.0 * cols as f64;
            let check = |v: &[f64], limit: Option<f64>| -> Result<()> {
                let as32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                let r64 = Dense::new(v, rows, cols)?.validate_with_norms(Some(cols), limit, "X");
                let r32 =
                    Dense::new(&as32[..], rows, cols)?.validate_with_norms(Some(cols), limit, "X");
                assert_eq!(
                    r64.as_ref().map_err(|e| e.to_string()),
                    r32.as_ref().map_err(|e| e.to_string())
                );
                r64
            };
            check(&clean, Some(limit)).unwrap();
            check(&clean, None).unwrap();
            let last = (rows - 1) * cols + cols - 1;
            for (bad, kind) in [(f64::NAN, "NaN"), (f64::INFINITY, "infinite")] {
                let mut v = clean.clone();
                v[last] = bad;
                // A row beyond the limit earlier on: the value is reported.
                v[0] = 1e3;
                for limit in [Some(limit), None] {
                    let e = check(&v, limit).unwrap_err().to_string();
                    assert!(
                        e.contains(&format!("row {}, column {} is {kind}", rows - 1, cols - 1)),
                        "{e}"
                    );
                }
            }
            let mut v = clean.clone();
            v[last] = 1e3;
            let e = check(&v, Some(limit)).unwrap_err().to_string();
            assert!(
                e.contains(&format!("row {} has squared norm", rows - 1)),
                "{e}"
            );
            check(&v, None).unwrap();
            // Exactly at the limit passes.
            let mut v = clean.clone();
            v[..cols].fill(48.0);
            check(&v, Some(limit)).unwrap();
        }
    }
}
