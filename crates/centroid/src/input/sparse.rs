//! A sparse (CSR) batch as `input_fn` gives it.

use std::borrow::Cow;

use rayon::prelude::*;

use super::{check_shape, Data, Dense};
use crate::error::{Error, Result};
use crate::float::{DType, Float};
use crate::kernels::sparse::CsrRef;

/// A sparse `rows x cols` batch in CSR layout (scipy's): row `i`'s values
/// are `data[indptr[i]..indptr[i + 1]]`, in the columns `indices` names,
/// which must increase strictly within a row. [`Sparse::new`] checks the
/// lengths; [`Sparse::validate`] (run on every batch before it is used)
/// checks every index and value, naming the row at fault.
#[derive(Clone, Debug)]
pub struct Sparse<'a> {
    pub(super) indptr: Cow<'a, [i64]>,
    pub(super) indices: Cow<'a, [i32]>,
    pub(super) data: Data<'a>,
    rows: usize,
    cols: usize,
}

impl<'a> Sparse<'a> {
    /// A CSR batch over the three arrays of a scipy CSR matrix.
    pub fn new(
        indptr: impl Into<Cow<'a, [i64]>>,
        indices: impl Into<Cow<'a, [i32]>>,
        data: impl Into<Data<'a>>,
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        let (indptr, indices, data) = (indptr.into(), indices.into(), data.into());
        if indptr.len() != rows.saturating_add(1) {
            return Err(Error::InvalidShape(format!(
                "a sparse batch of {rows} rows needs {} indptr entries, got {}",
                rows.saturating_add(1),
                indptr.len()
            )));
        }
        if indices.len() != data.len() {
            return Err(Error::InvalidShape(format!(
                "a sparse batch has {} column indices but {} values",
                indices.len(),
                data.len()
            )));
        }
        if i32::try_from(cols).is_err() {
            return Err(Error::InvalidShape(format!(
                "a sparse batch of {cols} columns is wider than its int32 column indices can name"
            )));
        }
        Ok(Self {
            indptr,
            indices,
            data,
            rows,
            cols,
        })
    }
    /// Rows (examples).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns (features).
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Stored values.
    pub fn nnz(&self) -> usize {
        self.data.len()
    }
    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The batch's view in its own element type; checks every index and
    /// value (errors name the row and column).
    fn view<'s, T: Float>(&'s self, values: &'s [T]) -> Result<CsrRef<'s, T>> {
        CsrRef::new(self.rows, self.cols, &self.indptr, &self.indices, values)
    }

    /// Checks that the batch can be trained on or scored: not empty, of the
    /// expected width, with column indices in range and strictly increasing
    /// within each row, and finite values. `what` names the batch.
    pub fn validate(&self, expected_cols: Option<usize>, what: &str) -> Result<()> {
        check_shape(self.rows, self.cols, expected_cols, what)?;
        let checked = match &self.data {
            Data::F32(v) => self.view(v).map(drop),
            Data::F64(v) => self.view(v).map(drop),
        };
        checked.map_err(|e| Error::data(format!("{what} (sparse): {}", error_text(&e))))
    }

    /// Checks that no row's squared norm (summed in f64) exceeds `limit`,
    /// as [`Dense::check_row_norms`] does. Values must already be finite.
    pub fn check_row_norms(&self, limit: f64, what: &str) -> Result<()> {
        let sq_norm = |r: usize| -> f64 {
            let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
            match &self.data {
                Data::F32(v) => crate::kernels::sq_norm_f64(&v[a..b]),
                Data::F64(v) => crate::kernels::sq_norm_f64(&v[a..b]),
            }
        };
        // The common case is a clean batch: scan in parallel, locate serially.
        if (0..self.rows).into_par_iter().all(|r| sq_norm(r) <= limit) {
            return Ok(());
        }
        match (0..self.rows).find(|&r| sq_norm(r) > limit) {
            None => Ok(()),
            Some(r) => Err(Error::data(format!(
                "{what}: row {r} has squared norm {:e}, beyond {limit:e}, where squared distances would overflow the model's element type; use float64 data or scale it down",
                sq_norm(r)
            ))),
        }
    }

    /// The batch densified (for what only works on dense rows: an
    /// `initial_clusters` function, the cosine distance).
    pub fn to_dense(&self) -> Result<Dense<'static>> {
        let mut out = match &self.data {
            Data::F32(_) => Data::from(vec![0f32; self.rows.saturating_mul(self.cols)]),
            Data::F64(_) => Data::from(vec![0f64; self.rows.saturating_mul(self.cols)]),
        };
        for r in 0..self.rows {
            let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
            for p in a..b {
                let at = r * self.cols + self.indices[p] as usize;
                match (&mut out, &self.data) {
                    (Data::F32(o), Data::F32(v)) => o.to_mut()[at] = v[p],
                    (Data::F64(o), Data::F64(v)) => o.to_mut()[at] = v[p],
                    _ => unreachable!("out has the data's element type"),
                }
            }
        }
        Dense::new(out, self.rows, self.cols)
    }
}

/// The message of an error, without the kind prefix its Display adds.
fn error_text(e: &Error) -> String {
    match e {
        Error::InvalidData(m) | Error::InvalidShape(m) | Error::InvalidArgument(m) => m.clone(),
        other => other.to_string(),
    }
}
