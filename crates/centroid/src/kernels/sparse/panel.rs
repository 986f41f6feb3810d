//! Dense centres laid out for sparse rows (transposed panels), and the
//! distance loop every sparse entry point runs.

use super::CsrRef;
use crate::float::Float;
use crate::kernels::isa::prefetch;
use crate::matrix::MatRef;

/// Centres per panel when a panel fits in cache: the dot products one pass
/// over a row's non-zeros computes.
pub const PANEL: usize = 16;

/// The largest panel (bytes) kept narrow: about an L2 cache.
const PANEL_CACHE_BYTES: usize = 1 << 20;

/// The panel width for `k` centres of width `d`: [`PANEL`] when such a
/// panel fits in [`PANEL_CACHE_BYTES`], else all `k` (rounded up to 8).
pub(super) fn panel_width<T>(k: usize, d: usize) -> usize {
    if k <= PANEL || d * PANEL * std::mem::size_of::<T>() <= PANEL_CACHE_BYTES {
        PANEL
    } else {
        k.div_ceil(8) * 8
    }
}

/// `sum v^2` over a row's values, in f64, in stored order.
#[inline]
fn sq_norm<T: Float>(vals: &[T]) -> f64 {
    vals.iter()
        .map(|v| v.to_f64_exact() * v.to_f64_exact())
        .sum()
}

/// Dense centres laid out for sparse rows: panel `p` holds centres
/// `p * w ..` transposed (`d` rows of `w` values, zero-padded), with the
/// centres' squared norms in f64.
#[derive(Clone, Debug)]
pub struct SparseCentres<T> {
    k: usize,
    d: usize,
    /// Centres per panel.
    w: usize,
    panels: Vec<T>,
    sq_norms: Vec<f64>,
}

impl<T: Float> SparseCentres<T> {
    pub fn new(centres: MatRef<'_, T>) -> Self {
        Self::with_width(centres, panel_width::<T>(centres.rows(), centres.cols()))
    }

    /// Panels of `w` centres (tests run both layouts).
    pub(super) fn with_width(centres: MatRef<'_, T>, w: usize) -> Self {
        let (k, d) = (centres.rows(), centres.cols());
        let w = w.max(1);
        let n_panels = k.div_ceil(w);
        let mut panels = vec![T::zero(); n_panels * d * w];
        for (p, block) in panels.chunks_exact_mut((d * w).max(1)).enumerate() {
            // Row by row of the panel, so writes are sequential.
            let j0 = p * w;
            let width = w.min(k - j0);
            for (c, out) in block.chunks_exact_mut(w).enumerate() {
                for (q, o) in out[..width].iter_mut().enumerate() {
                    *o = centres.row(j0 + q)[c];
                }
            }
        }
        let sq_norms = (0..k).map(|j| sq_norm(centres.row(j))).collect();
        Self {
            k,
            d,
            w,
            panels,
            sq_norms,
        }
    }
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn d(&self) -> usize {
        self.d
    }
    /// `||c_j||^2` in f64.
    pub fn sq_norms(&self) -> &[f64] {
        &self.sq_norms
    }
    fn panel(&self, p: usize) -> &[T] {
        let size = self.d * self.w;
        &self.panels[p * size..(p + 1) * size]
    }
}

/// The dot products of one sparse row with the `PANEL` centres of `panel`
/// (fixed width: the compiler keeps them in registers).
#[inline]
fn panel_dots<T: Float>(idx: &[i32], vals: &[T], panel: &[T]) -> [f64; PANEL] {
    let mut acc = [0.0f64; PANEL];
    for (&c, &v) in idx.iter().zip(vals) {
        let col: &[T; PANEL] = panel[c as usize * PANEL..][..PANEL]
            .try_into()
            .expect("a panel row is PANEL values");
        let v = v.to_f64_exact();
        for (a, &c) in acc.iter_mut().zip(col) {
            *a += v * c.to_f64_exact();
        }
    }
    acc
}

/// How many non-zeros ahead [`wide_dots`] asks for the centre column.
const PREFETCH_AHEAD: usize = 4;

/// The dot products of one sparse row with the `acc.len()` centres of a
/// wide `panel`, into `acc`. A wide panel lives far out in the cache
/// hierarchy and each non-zero reads a run of `w` values at an unpredictable
/// column: the run for the non-zero [`PREFETCH_AHEAD`] places on is
/// requested early, so several misses are in flight at once.
#[inline]
fn wide_dots<T: Float>(idx: &[i32], vals: &[T], panel: &[T], acc: &mut [f64]) {
    let w = acc.len();
    acc.fill(0.0);
    for (p, (&c, &v)) in idx.iter().zip(vals).enumerate() {
        if let Some(&ahead) = idx.get(p + PREFETCH_AHEAD) {
            prefetch(&panel[ahead as usize * w..][..w]);
        }
        let col = &panel[c as usize * w..][..w];
        let v = v.to_f64_exact();
        for (a, &c) in acc.iter_mut().zip(col) {
            *a += v * c.to_f64_exact();
        }
    }
}

/// Runs `f(row, j, distance)` for every row `start..end` of `x` and every
/// centre, panel by panel (each panel over all the rows), centres in
/// increasing order for a given row.
pub(super) fn for_each_distance<T: Float>(
    x: CsrRef<'_, T>,
    start: usize,
    end: usize,
    centres: &SparseCentres<T>,
    mut f: impl FnMut(usize, usize, f64),
) {
    let row_norms: Vec<f64> = (start..end).map(|i| sq_norm(x.row(i).1)).collect();
    let w = centres.w;
    let mut wide = vec![0.0f64; if w == PANEL { 0 } else { w }];
    for p in 0..centres.k.div_ceil(w) {
        let panel = centres.panel(p);
        let j0 = p * w;
        let width = w.min(centres.k - j0);
        let cn = &centres.sq_norms[j0..j0 + width];
        for (r, &rn) in row_norms.iter().enumerate() {
            let (idx, vals) = x.row(start + r);
            // The same sums in the same order either way.
            let fixed;
            let acc: &[f64] = if w == PANEL {
                fixed = panel_dots(idx, vals, panel);
                &fixed
            } else {
                wide_dots(idx, vals, panel, &mut wide);
                &wide
            };
            for (q, (&dot, &c)) in acc.iter().zip(cn).enumerate() {
                f(r, j0 + q, (rn - 2.0 * dot + c).max(0.0));
            }
        }
    }
}
