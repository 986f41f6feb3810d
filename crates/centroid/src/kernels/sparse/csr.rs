//! The borrowed CSR matrix the sparse kernels take, checked once when it
//! is made.

use rayon::prelude::*;

use super::CHUNK_ROWS;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::matrix::Matrix;

/// A borrowed CSR matrix (scipy's layout): row `i`'s non-zeros are
/// `data[indptr[i]..indptr[i + 1]]` in the columns named by `indices`,
/// which increase strictly within a row. [`CsrRef::new`] checks all of it
/// and that every value is finite, so the kernels never see a bad index.
#[derive(Clone, Copy, Debug)]
pub struct CsrRef<'a, T> {
    rows: usize,
    cols: usize,
    indptr: &'a [i64],
    indices: &'a [i32],
    data: &'a [T],
}

impl<'a, T: Float> CsrRef<'a, T> {
    /// Views the three arrays as a `rows x cols` CSR matrix; every error
    /// names the row (and column) that is wrong.
    pub fn new(
        rows: usize,
        cols: usize,
        indptr: &'a [i64],
        indices: &'a [i32],
        data: &'a [T],
    ) -> Result<Self> {
        if indptr.len() != rows + 1 {
            return Err(Error::InvalidShape(format!(
                "indptr has {} entries; a sparse matrix of {rows} rows needs {}",
                indptr.len(),
                rows + 1
            )));
        }
        if indices.len() != data.len() {
            return Err(Error::InvalidShape(format!(
                "the sparse matrix has {} column indices but {} values",
                indices.len(),
                data.len()
            )));
        }
        if indptr[0] != 0 {
            return Err(Error::InvalidData(format!(
                "indptr[0] is {}, not 0",
                indptr[0]
            )));
        }
        let nnz = data.len() as i64;
        if let Some(i) = (0..rows).find(|&i| indptr[i + 1] < indptr[i] || indptr[i + 1] > nnz) {
            return Err(Error::InvalidData(format!(
                "indptr[{}] = {} is out of order or past the {nnz} stored values (row {i})",
                i + 1,
                indptr[i + 1]
            )));
        }
        if indptr[rows] != nnz {
            return Err(Error::InvalidData(format!(
                "indptr ends at {} but there are {nnz} stored values",
                indptr[rows]
            )));
        }
        let x = Self {
            rows,
            cols,
            indptr,
            indices,
            data,
        };
        // Checked a chunk of rows per task; the first failing chunk, in
        // order, names the error, as a serial scan would.
        let first_bad = (0..rows.div_ceil(CHUNK_ROWS))
            .into_par_iter()
            .map(|ci| {
                let end = ((ci + 1) * CHUNK_ROWS).min(rows);
                (ci * CHUNK_ROWS..end).find_map(|i| x.check_row(i).err())
            })
            .find_first(|e| e.is_some())
            .flatten();
        match first_bad {
            Some(e) => Err(e),
            None => Ok(x),
        }
    }

    fn check_row(&self, i: usize) -> Result<()> {
        let (idx, vals) = self.row(i);
        let mut prev: i64 = -1;
        for (&c, &v) in idx.iter().zip(vals) {
            let c64 = c as i64;
            if c64 < 0 || c64 >= self.cols as i64 {
                return Err(Error::InvalidData(format!(
                    "row {i} of the sparse matrix has column index {c}, outside 0..{}",
                    self.cols
                )));
            }
            if c64 <= prev {
                return Err(Error::InvalidData(format!(
                    "row {i} of the sparse matrix has column indices out of order or repeated \
                     ({prev} then {c}); sort them (scipy: sum_duplicates())"
                )));
            }
            if !v.is_finite() {
                return Err(Error::InvalidData(format!(
                    "row {i}, column {c} of the data is not finite"
                )));
            }
            prev = c64;
        }
        Ok(())
    }

    #[inline]
    pub fn rows(&self) -> usize {
        self.rows
    }
    #[inline]
    pub fn cols(&self) -> usize {
        self.cols
    }
    #[inline]
    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// Row `i`'s column indices and values.
    #[inline]
    pub fn row(&self, i: usize) -> (&'a [i32], &'a [T]) {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        (&self.indices[a..b], &self.data[a..b])
    }

    /// Writes row `i` into `out` (`cols` values), zeros included.
    pub fn row_dense(&self, i: usize, out: &mut [T]) {
        out.fill(T::zero());
        let (idx, vals) = self.row(i);
        for (&c, &v) in idx.iter().zip(vals) {
            out[c as usize] = v;
        }
    }

    /// The whole matrix, densified (tests and small inputs only).
    pub fn to_dense(&self) -> Matrix<T> {
        let mut out = vec![T::zero(); self.rows * self.cols];
        for (i, row) in out.chunks_exact_mut(self.cols.max(1)).enumerate() {
            self.row_dense(i, row);
        }
        Matrix::new(out, self.rows, self.cols).expect("shape matches")
    }
}
