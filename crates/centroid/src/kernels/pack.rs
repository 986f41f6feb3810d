//! Centres packed for the blocked kernels, and the job one chunk of rows
//! hands them.
//!
//! Centres are packed into panels of `LANES` centres stored dimension-major
//! (`panel[p][lane]`), so one vector load fetches dimension `p` of `LANES`
//! centres; the padding centres are zero with a bias of +inf, so they never
//! win. Panels are visited in blocks of at most 1 MiB, half the 2 MB L2,
//! because each block is re-read by every row group of a chunk.

use super::isa::Isa;
use super::rowdot;
use super::scalar::{ClusterStats, Metric};
use crate::float::Float;

/// Bytes of packed centres visited per block: half of the 2 MB L2 of the
/// target machines, leaving the rest for the chunk's rows and partial sums.
const CENTRE_BLOCK_BYTES: usize = 1 << 20;

/// Centres packed for one path: panels of `lanes` centres, dimension-major,
/// padded with zero centres whose bias is +inf so they never win.
#[derive(Clone, Debug)]
pub(crate) struct Packed<T> {
    pub(crate) isa: Isa,
    pub(crate) lanes: usize,
    pub(crate) panels: usize,
    /// Panels per L2 block.
    pub(crate) block_panels: usize,
    /// `len = panels * d * lanes` values starting at `offset` (64-byte
    /// aligned, so no vector load splits a cache line).
    buf: Vec<T>,
    offset: usize,
    len: usize,
    /// `panels * lanes` biases.
    pub(crate) bias: Vec<T>,
    /// The centres row-major for the row-dot kernel, when it takes the
    /// shape (see `rowdot.rs`).
    rows: Option<RowMajor<T>>,
}

/// Centres row-major, `kp` rows (`k` rounded up to the row-dot group, the
/// extra rows zero) of `stride` values (`d` rounded up to the vector width,
/// the extra values zero), so every vector load of a row is whole and the
/// padding adds nothing to a dot product.
#[derive(Clone, Debug)]
struct RowMajor<T> {
    buf: Vec<T>,
    offset: usize,
    len: usize,
    stride: usize,
}

impl<T: Float> Packed<T> {
    /// Packs the `k x d` row-major (already normalised under cosine) centres
    /// `centres` with squared norms `sq_norms` for the path `isa`.
    pub(crate) fn new(
        isa: Isa,
        centres: &[T],
        sq_norms: &[T],
        k: usize,
        d: usize,
        metric: Metric,
    ) -> Self {
        let lanes = isa.lanes::<T>();
        let panels = k.div_ceil(lanes);
        let len = panels * d * lanes;
        let align = 64 / std::mem::size_of::<T>();
        let mut buf = vec![T::zero(); len + align];
        let offset = buf.as_ptr().align_offset(64).min(align);
        let data = &mut buf[offset..offset + len];
        let half = T::from_f64_lossy(0.5);
        let mut bias = vec![T::infinity(); panels * lanes];
        for j in 0..k {
            let (q, lane) = (j / lanes, j % lanes);
            for p in 0..d {
                data[(q * d + p) * lanes + lane] = centres[j * d + p];
            }
            bias[j] = match metric {
                Metric::SquaredEuclidean => sq_norms[j] * half,
                Metric::Cosine => T::zero(),
            };
        }
        let panel_bytes = (d * lanes * std::mem::size_of::<T>()).max(1);
        let block_panels = (CENTRE_BLOCK_BYTES / panel_bytes).max(2) & !1;
        let rows = rowdot::takes(k, d).then(|| {
            let stride = d.div_ceil(lanes) * lanes;
            let kp = rowdot::padded_k(k);
            debug_assert!(kp <= panels * lanes, "the padding rows have +inf biases");
            let len = kp * stride;
            let mut buf = vec![T::zero(); len + align];
            let offset = buf.as_ptr().align_offset(64).min(align);
            for (j, c) in centres.chunks_exact(d).enumerate() {
                let at = offset + j * stride;
                buf[at..at + d].copy_from_slice(c);
            }
            RowMajor {
                buf,
                offset,
                len,
                stride,
            }
        });
        Self {
            isa,
            lanes,
            panels,
            block_panels,
            buf,
            offset,
            len,
            bias,
            rows,
        }
    }

    /// The row-major centres and their row stride, when the row-dot kernel
    /// takes this shape.
    pub(crate) fn rows(&self) -> Option<(&[T], usize)> {
        self.rows
            .as_ref()
            .map(|r| (&r.buf[r.offset..r.offset + r.len], r.stride))
    }

    /// The packed panels, `panels * d * lanes` values.
    pub(crate) fn data(&self) -> &[T] {
        &self.buf[self.offset..self.offset + self.len]
    }
}

/// A chunk of rows and the centres it is matched against.
pub(crate) struct Job<'a, T> {
    /// `rows x d`, row-major.
    pub(crate) x: &'a [T],
    pub(crate) d: usize,
    pub(crate) k: usize,
    pub(crate) metric: Metric,
    pub(crate) lanes: usize,
    pub(crate) panels: usize,
    pub(crate) block_panels: usize,
    pub(crate) data: &'a [T],
    pub(crate) bias: &'a [T],
    /// The centres row-major and their row stride, for the row-dot kernel
    /// (`None` when it does not take the shape).
    pub(crate) rows: Option<(&'a [T], usize)>,
}

impl<'a, T> Job<'a, T> {
    /// The same job on rows `start..end` of its chunk.
    pub(crate) fn sub(&self, start: usize, end: usize) -> Job<'a, T> {
        Job {
            x: &self.x[start * self.d..end * self.d],
            d: self.d,
            k: self.k,
            metric: self.metric,
            lanes: self.lanes,
            panels: self.panels,
            block_panels: self.block_panels,
            data: self.data,
            bias: self.bias,
            rows: self.rows,
        }
    }
}

/// One chunk's work, by operation.
pub(crate) enum Op<'o, T> {
    /// Labels and distances to the chosen centre.
    Assign {
        labels: &'o mut [u32],
        scores: &'o mut [T],
    },
    /// The same, then the rows added to `part`.
    Accumulate {
        weights: Option<&'o [T]>,
        labels: &'o mut [u32],
        scores: &'o mut [T],
        part: &'o mut ClusterStats,
    },
    /// All distances, `rows x k`.
    Distances { out: &'o mut [T] },
}
