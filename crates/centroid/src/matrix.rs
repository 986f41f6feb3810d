//! Row-major matrices: borrowed views of the caller's data and owned results.

use crate::error::{Error, Result};
use crate::float::Float;

/// A borrowed row-major `rows x cols` matrix. Training reads the caller's
/// buffer through this view; it never needs a copy.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
}

impl<'a, T: Copy> MatRef<'a, T> {
    /// Views `data` as `rows x cols`; fails when the length does not match.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        match rows.checked_mul(cols) {
            Some(len) if len == data.len() => Ok(Self { data, rows, cols }),
            _ => Err(Error::InvalidShape(format!(
                "a {rows} x {cols} matrix needs {} values, got {}",
                rows.saturating_mul(cols),
                data.len()
            ))),
        }
    }

    /// Views `data` as rows of width `cols`.
    pub fn from_rows(data: &'a [T], cols: usize) -> Result<Self> {
        if cols == 0 {
            return Err(Error::InvalidShape(
                "rows must have at least one column".into(),
            ));
        }
        if !data.len().is_multiple_of(cols) {
            return Err(Error::InvalidShape(format!(
                "{} values do not make whole rows of width {cols}",
                data.len()
            )));
        }
        Ok(Self {
            data,
            rows: data.len() / cols,
            cols,
        })
    }

    #[inline]
    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    #[inline]
    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    #[inline]
    /// The values, row-major.
    pub fn as_slice(&self) -> &'a [T] {
        self.data
    }
    #[inline]
    /// Row `i`.
    pub fn row(&self, i: usize) -> &'a [T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
    /// Rows `start..end` as a view.
    #[inline]
    pub fn slice_rows(&self, start: usize, end: usize) -> MatRef<'a, T> {
        MatRef {
            data: &self.data[start * self.cols..end * self.cols],
            rows: end - start,
            cols: self.cols,
        }
    }
}

/// An owned row-major matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix<T> {
    data: Vec<T>,
    rows: usize,
    cols: usize,
}

impl<T: Float> Matrix<T> {
    /// A `rows x cols` matrix of `data` (row-major); the length must match.
    pub fn new(data: Vec<T>, rows: usize, cols: usize) -> Result<Self> {
        MatRef::new(&data, rows, cols)?;
        Ok(Self { data, rows, cols })
    }
    /// A `rows x cols` matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            data: vec![T::zero(); rows * cols],
            rows,
            cols,
        }
    }
    /// A borrowed view.
    pub fn view(&self) -> MatRef<'_, T> {
        MatRef {
            data: &self.data,
            rows: self.rows,
            cols: self.cols,
        }
    }
    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The values, row-major.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }
    /// The values, row-major, writable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }
    /// The values, row-major.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
    /// Row `i`, writable.
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }
    /// Appends one row; its width must match.
    pub(crate) fn push_row(&mut self, row: &[T]) {
        debug_assert_eq!(row.len(), self.cols);
        self.data.extend_from_slice(row);
        self.rows += 1;
    }
    pub(crate) fn with_capacity(rows: usize, cols: usize) -> Self {
        Self {
            data: Vec::with_capacity(rows * cols),
            rows: 0,
            cols,
        }
    }
}
