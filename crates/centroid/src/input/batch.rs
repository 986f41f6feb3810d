//! One batch, dense or sparse, on its way to the kernels: [`Batch`] is what
//! a batch source hands out; [`TypedBatch`] its values in the model's
//! element type; [`Rows`] the view the model's kernels take.

use std::borrow::Cow;

use super::{cast_slice_or_convert, Data, Dense, Sparse};
use crate::error::{Error, Result};
use crate::float::{DType, Float};
use crate::kernels::sparse::CsrRef;
use crate::kernels::Metric;
use crate::matrix::{MatRef, Matrix};

/// One batch ready to be validated and used: dense or sparse.
#[derive(Clone, Debug)]
pub enum Batch<'a> {
    /// Row-major values.
    Dense(Dense<'a>),
    /// CSR rows.
    Sparse(Sparse<'a>),
}

impl<'a> Batch<'a> {
    /// Rows (examples).
    pub fn rows(&self) -> usize {
        match self {
            Batch::Dense(d) => d.rows(),
            Batch::Sparse(s) => s.rows(),
        }
    }
    /// Columns (features).
    pub fn cols(&self) -> usize {
        match self {
            Batch::Dense(d) => d.cols(),
            Batch::Sparse(s) => s.cols(),
        }
    }
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Batch::Dense(d) => d.dtype(),
            Batch::Sparse(s) => s.dtype(),
        }
    }
    /// See [`Dense::validate`] and [`Sparse::validate`].
    pub fn validate(&self, expected_cols: Option<usize>, what: &str) -> Result<()> {
        match self {
            Batch::Dense(d) => d.validate(expected_cols, what),
            Batch::Sparse(s) => s.validate(expected_cols, what),
        }
    }
    /// [`Batch::validate`], then, with `sq_norm_limit`,
    /// [`Batch::check_row_norms`] (dense rows: one read where both pass,
    /// see [`Dense::validate_with_norms`]).
    pub fn validate_with_norms(
        &self,
        expected_cols: Option<usize>,
        sq_norm_limit: Option<f64>,
        what: &str,
    ) -> Result<()> {
        match self {
            Batch::Dense(d) => d.validate_with_norms(expected_cols, sq_norm_limit, what),
            Batch::Sparse(s) => {
                s.validate(expected_cols, what)?;
                sq_norm_limit.map_or(Ok(()), |limit| s.check_row_norms(limit, what))
            }
        }
    }
    /// See [`Dense::check_row_norms`].
    pub fn check_row_norms(&self, limit: f64, what: &str) -> Result<()> {
        match self {
            Batch::Dense(d) => d.check_row_norms(limit, what),
            Batch::Sparse(s) => s.check_row_norms(limit, what),
        }
    }
    /// The batch as dense rows: borrowed when it is dense, else a copy.
    pub fn to_dense(&self) -> Result<Cow<'_, Dense<'a>>> {
        match self {
            Batch::Dense(d) => Ok(Cow::Borrowed(d)),
            Batch::Sparse(s) => Ok(Cow::Owned(s.to_dense()?)),
        }
    }

    /// The values as `T` for the kernels of `metric`, refusing values that
    /// narrowing to `T` makes infinite (see [`Dense::to_type_checked`]).
    /// Sparse rows stay sparse under squared Euclidean; the cosine kernels
    /// are dense only, so under cosine a sparse batch is densified here.
    pub(crate) fn typed<T: Float>(&self, what: &str, metric: Metric) -> Result<TypedBatch<'_, T>> {
        match self {
            Batch::Dense(d) => Ok(TypedBatch::Dense {
                values: d.to_type_checked::<T>(what)?,
                rows: d.rows(),
                cols: d.cols(),
            }),
            Batch::Sparse(s) if metric == Metric::Cosine => {
                let dense = s.to_dense()?;
                let values = dense.to_type_checked::<T>(what)?.into_owned();
                Ok(TypedBatch::Dense {
                    values: Cow::Owned(values),
                    rows: s.rows(),
                    cols: s.cols(),
                })
            }
            Batch::Sparse(s) => {
                let values = match &s.data {
                    Data::F32(v) => cast_slice_or_convert::<f32, T>(v),
                    Data::F64(v) => cast_slice_or_convert::<f64, T>(v),
                };
                if s.dtype() != T::DTYPE {
                    if let Some(p) = values.iter().position(|x| !x.is_finite()) {
                        let row = s.indptr.partition_point(|&e| e <= p as i64) - 1;
                        return Err(Error::data(format!(
                            "{what}: row {row}, column {} is outside the range of {} (the model's element type)",
                            s.indices[p],
                            T::DTYPE
                        )));
                    }
                }
                Ok(TypedBatch::Sparse {
                    indptr: &s.indptr,
                    indices: &s.indices,
                    values,
                    rows: s.rows(),
                    cols: s.cols(),
                })
            }
        }
    }
}

/// A batch's values as the model's element type `T` (borrowed when they
/// already are): what [`TypedBatch::rows`] views.
pub(crate) enum TypedBatch<'b, T: Float> {
    Dense {
        values: Cow<'b, [T]>,
        rows: usize,
        cols: usize,
    },
    Sparse {
        indptr: &'b [i64],
        indices: &'b [i32],
        values: Cow<'b, [T]>,
        rows: usize,
        cols: usize,
    },
}

impl<T: Float> TypedBatch<'_, T> {
    /// The rows for the kernels.
    pub(crate) fn rows(&self) -> Result<Rows<'_, T>> {
        match self {
            TypedBatch::Dense { values, rows, cols } => {
                Ok(Rows::Dense(MatRef::new(values, *rows, *cols)?))
            }
            TypedBatch::Sparse {
                indptr,
                indices,
                values,
                rows,
                cols,
            } => Ok(Rows::Csr(CsrRef::new(
                *rows, *cols, indptr, indices, values,
            )?)),
        }
    }
}

/// Rows the model's kernels take: dense row-major, or CSR (squared
/// Euclidean only; the cosine kernels are dense).
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a, T> {
    /// Row-major values.
    Dense(MatRef<'a, T>),
    /// Compressed sparse rows.
    Csr(CsrRef<'a, T>),
}

impl<'a, T: Float> Rows<'a, T> {
    /// Rows (examples).
    pub fn rows(&self) -> usize {
        match self {
            Rows::Dense(m) => m.rows(),
            Rows::Csr(c) => c.rows(),
        }
    }
    /// Columns (features).
    pub fn cols(&self) -> usize {
        match self {
            Rows::Dense(m) => m.cols(),
            Rows::Csr(c) => c.cols(),
        }
    }
    /// Appends row `i`, densified, to `out`.
    pub(crate) fn push_row_to(&self, i: usize, out: &mut Matrix<T>) {
        match self {
            Rows::Dense(m) => out.push_row(m.row(i)),
            Rows::Csr(c) => {
                let mut row = vec![T::zero(); c.cols()];
                c.row_dense(i, &mut row);
                out.push_row(&row);
            }
        }
    }
}

impl<'a, T> From<MatRef<'a, T>> for Rows<'a, T> {
    fn from(m: MatRef<'a, T>) -> Self {
        Rows::Dense(m)
    }
}

impl<'a, T> From<CsrRef<'a, T>> for Rows<'a, T> {
    fn from(c: CsrRef<'a, T>) -> Self {
        Rows::Csr(c)
    }
}
