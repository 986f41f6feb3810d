//! One chunk's operation on one instruction set: the kernels of `tile.rs`
//! and `lanes.rs` compiled once per path under the matching
//! `#[target_feature]`, and [`run`], the safe entry point that picks one.
//!
//! The per-path entry points are unsafe only because of their target
//! features; each takes the capability token of `isa.rs` for them, so the
//! only way to reach one is through an [`Isa`] made after runtime detection.

use super::isa::Isa;
#[cfg(target_arch = "x86_64")]
use super::isa::{Avx2Fma, Avx512F};
use super::lanes::run_lanes;
use super::pack::{Job, Op};
use super::rowdot;
use super::simd::Simd;
use super::tile::{argmin_chunk, distances_body, finish_rows, SMALL_D};
use crate::float::Float;

/// Rows per tile, by path and by `d` (wide, at most [`SMALL_D`]): small `d`
/// keeps fewer rows so that a row group's accumulators and its running
/// minima all fit in the register file.
#[cfg(target_arch = "x86_64")]
const AVX512_TILE_ROWS: (usize, usize) = (12, 4);
#[cfg(target_arch = "x86_64")]
const AVX2_TILE_ROWS: (usize, usize) = (4, 2);
const PORTABLE_TILE_ROWS: usize = 2;

/// Rows per row-dot tile, by path: `rows x rowdot::GROUP` accumulators plus
/// one vector per row stay in registers (32 on AVX-512, 16 on AVX2).
#[cfg(target_arch = "x86_64")]
const AVX512_ROWDOT_ROWS: usize = 4;
#[cfg(target_arch = "x86_64")]
const AVX2_ROWDOT_ROWS: usize = 2;
const PORTABLE_ROWDOT_ROWS: usize = 2;

/// The tile kernel's operation on `MR`-row tiles.
///
/// # Safety
///
/// The CPU runs `S`'s instruction set, and `job` satisfies the bounds that
/// [`run`] asserts.
#[inline(always)]
unsafe fn run_body<S: Simd, const MR: usize>(job: &Job<'_, S::T>, op: Op<'_, S::T>) {
    // SAFETY: this function's own contract, passed on unchanged.
    unsafe {
        match op {
            Op::Assign { labels, scores } => {
                argmin_chunk::<S, MR>(job, labels, scores);
                finish_rows::<S>(job, None, labels, scores, None);
            }
            Op::Accumulate {
                weights,
                labels,
                scores,
                part,
            } => {
                argmin_chunk::<S, MR>(job, labels, scores);
                finish_rows::<S>(job, weights, labels, scores, Some(part));
            }
            Op::Distances { out } => distances_body::<S, MR>(job, out),
        }
    }
}

/// The lane kernel or the row-dot kernel (`DOT`-row tiles) when one takes
/// the shape, else the tile kernel with `WIDE`-row tiles (or `SMALL`-row
/// ones for `d <= SMALL_D`).
///
/// # Safety
///
/// The CPU runs `S`'s instruction set, and `job` satisfies the bounds that
/// [`run`] asserts.
#[inline(always)]
unsafe fn run_path<S: Simd, const WIDE: usize, const SMALL: usize, const DOT: usize>(
    job: &Job<'_, S::T>,
    op: Op<'_, S::T>,
) {
    // SAFETY: this function's own contract, passed on unchanged.
    unsafe {
        let Some(op) = run_lanes::<S>(job, op) else {
            return;
        };
        let Some(op) = rowdot::run::<S, DOT>(job, op) else {
            return;
        };
        if job.d <= SMALL_D {
            run_body::<S, SMALL>(job, op)
        } else {
            run_body::<S, WIDE>(job, op)
        }
    }
}

/// # Safety
///
/// `job` satisfies the bounds that [`run`] asserts; `S` is an AVX-512
/// vector type (the token proves the CPU runs it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<S: Simd>(_: Avx512F, job: &Job<'_, S::T>, op: Op<'_, S::T>) {
    // SAFETY: the token proves AVX-512F, which this function is compiled
    // for; the caller keeps `job` in bounds.
    unsafe {
        run_path::<S, { AVX512_TILE_ROWS.0 }, { AVX512_TILE_ROWS.1 }, AVX512_ROWDOT_ROWS>(job, op)
    }
}

/// # Safety
///
/// `job` satisfies the bounds that [`run`] asserts; `S` is an AVX2 vector
/// type (the token proves the CPU runs it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<S: Simd>(_: Avx2Fma, job: &Job<'_, S::T>, op: Op<'_, S::T>) {
    // SAFETY: the token proves AVX2 and FMA, which this function is
    // compiled for; the caller keeps `job` in bounds.
    unsafe { run_path::<S, { AVX2_TILE_ROWS.0 }, { AVX2_TILE_ROWS.1 }, AVX2_ROWDOT_ROWS>(job, op) }
}

/// # Safety
///
/// `job` satisfies the bounds that [`run`] asserts.
unsafe fn run_portable<S: Simd>(job: &Job<'_, S::T>, op: Op<'_, S::T>) {
    // SAFETY: the portable vectors are plain arrays that any CPU runs; the
    // caller keeps every pointer the tiles form inside `x`, `data` and
    // `bias`.
    unsafe {
        let Some(op) = run_lanes::<S>(job, op) else {
            return;
        };
        if let Some(op) = rowdot::run::<S, PORTABLE_ROWDOT_ROWS>(job, op) {
            run_body::<S, PORTABLE_TILE_ROWS>(job, op)
        }
    }
}

/// Runs one chunk's operation on the path `isa`, which must be the one the
/// job's centres were packed for.
pub(crate) fn run<F: Float>(isa: Isa, job: &Job<'_, F>, op: Op<'_, F>) {
    assert_eq!(
        job.lanes,
        isa.lanes::<F>(),
        "centres packed for another path"
    );
    assert!(
        job.data.len() >= job.panels * job.d * job.lanes
            && job.bias.len() >= job.panels * job.lanes
    );
    assert!(job.k <= job.panels * job.lanes);
    // The row-dot kernel reads `k` rounded up to its group of rows of
    // `stride` values, and the biases of all of them.
    if let Some((rows, stride)) = job.rows {
        let kp = rowdot::padded_k(job.k);
        assert!(stride >= job.d && stride % job.lanes == 0 && rows.len() >= kp * stride);
        assert!(job.bias.len() >= kp);
    }
    // The kernels read `rows x d` values of `x` and write one label and
    // score (or `k` distances) per row, through raw pointers.
    match &op {
        Op::Assign { labels, scores } => {
            assert!(scores.len() == labels.len() && job.x.len() == labels.len() * job.d);
        }
        Op::Accumulate {
            weights,
            labels,
            scores,
            part,
        } => {
            assert!(scores.len() == labels.len() && job.x.len() == labels.len() * job.d);
            assert!(weights.is_none_or(|w| w.len() == labels.len()));
            assert!((part.k, part.d) == (job.k, job.d));
        }
        Op::Distances { out } => {
            assert!(job.k == 0 || job.x.len() == out.len() / job.k * job.d);
        }
    }
    match isa {
        // SAFETY: the token in `isa` proves the CPU has the features, and
        // the asserts above keep every load inside the rows and the packed
        // centres.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => unsafe { run_avx512::<F::Avx512>(token, job, op) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(token) => unsafe { run_avx2::<F::Avx2>(token, job, op) },
        // SAFETY: the asserts above keep every load in bounds.
        Isa::Portable => unsafe { run_portable::<F::Portable>(job, op) },
    }
}
