//! The rows' side of the bf16 kernel, shared by both product engines:
//! aligned buffers, the per-thread scratch, the conversion of rows to
//! `[x_lo | x_hi]` bf16 and their transposition into pairs of 16
//! rows (the layout both `tdpbf16ps` and `vdpbf16ps` take).
//!
//! # Safety
//!
//! Every `unsafe fn` here has one contract: the CPU runs AVX-512F/BW/DQ/VL,
//! FMA and AVX512-BF16 (what either engine's token proves; `run` holds one), and the
//! slices and pointers it is given are valid for the extents its
//! documentation names.

use std::arch::x86_64::*;

use super::{first_lanes, BLOCK_ROWS, U32};

/// A 64-byte aligned, zero-initialised buffer.
pub(super) struct Aligned<T> {
    buf: Vec<T>,
    offset: usize,
    len: usize,
}

impl<T> Aligned<T> {
    const fn empty() -> Self {
        Self {
            buf: Vec::new(),
            offset: 0,
            len: 0,
        }
    }
}

impl<T> Default for Aligned<T> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<T: Copy + Default> Aligned<T> {
    pub(super) fn zeroed(len: usize) -> Self {
        let pad = 64 / std::mem::size_of::<T>();
        let buf = vec![T::default(); len + pad];
        let offset = buf.as_ptr().align_offset(64).min(pad);
        Self { buf, offset, len }
    }
    pub(super) fn as_slice(&self) -> &[T] {
        &self.buf[self.offset..self.offset + self.len]
    }
    pub(super) fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.buf[self.offset..self.offset + self.len]
    }
}

impl<T> std::fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Aligned({} values)", self.len)
    }
}

/// A thread's buffers for one chunk: the block's rows as `[x_lo | x_hi]`
/// bf16 (`BLOCK_ROWS x 2 dpad`, padding included, each block's rows written
/// whole), the same transposed into pairs (the AVX512-BF16 engine only),
/// and the dot products (`kpad x BLOCK_ROWS`).
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) rows: Aligned<u16>,
    pub(super) xt: Aligned<u16>,
    pub(super) dots: Aligned<f32>,
}

impl Scratch {
    /// Buffers for rows `depth` bf16 wide, the transposed copy only with
    /// `transposed`, and `kpad` centres.
    pub(super) fn fit(&mut self, depth: usize, kpad: usize, transposed: bool) {
        let len = BLOCK_ROWS * depth;
        if self.rows.len != len {
            self.rows = Aligned::zeroed(len);
        }
        if transposed && self.xt.len != len {
            self.xt = Aligned::zeroed(len);
        }
        if self.dots.len < BLOCK_ROWS * kpad {
            self.dots = Aligned::zeroed(BLOCK_ROWS * kpad);
        }
    }
}

thread_local! {
    /// Reused across chunks: fresh buffers of this size would come from
    /// mmap, page-faulted and zeroed on every chunk.
    pub(super) static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// Transposes 16 x 16 u32: `src` row `i` at `src + i * stride` (u32s),
/// written as `dst` row `j` = column `j` of the source, contiguous.
#[inline(always)]
pub(super) unsafe fn transpose16(src: *const u32, stride: usize, dst: *mut u32) {
    // SAFETY: as `transpose16_to`'s.
    unsafe { transpose16_to(src, stride, dst, 16) }
}

/// [`transpose16`] with `dst` row `j` at `dst + j * dst_stride` (u32s).
#[inline(always)]
pub(super) unsafe fn transpose16_to(
    src: *const u32,
    stride: usize,
    dst: *mut u32,
    dst_stride: usize,
) {
    // SAFETY: the module contract (see the top of this file): the CPU runs AVX-512F/BW/DQ/VL
    // and FMA, and the pointers are valid as documented above.
    unsafe {
        let r: [__m512i; 16] =
            std::array::from_fn(|i| _mm512_loadu_si512(src.add(i * stride) as *const _));
        let mut a = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        // b[4i + q], 128-bit lane L: column 4L + q of rows 4i..4i+3.
        let mut b = [_mm512_setzero_si512(); 16];
        for i in 0..4 {
            b[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
            b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
            b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
            b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
        }
        for q in 0..4 {
            let (b0, b1, b2, b3) = (b[q], b[4 + q], b[8 + q], b[12 + q]);
            let lo01 = _mm512_shuffle_i32x4::<0x44>(b0, b1);
            let lo23 = _mm512_shuffle_i32x4::<0x44>(b2, b3);
            let hi01 = _mm512_shuffle_i32x4::<0xee>(b0, b1);
            let hi23 = _mm512_shuffle_i32x4::<0xee>(b2, b3);
            let cols = [
                _mm512_shuffle_i32x4::<0x88>(lo01, lo23),
                _mm512_shuffle_i32x4::<0xdd>(lo01, lo23),
                _mm512_shuffle_i32x4::<0x88>(hi01, hi23),
                _mm512_shuffle_i32x4::<0xdd>(hi01, hi23),
            ];
            for (l, v) in cols.into_iter().enumerate() {
                _mm512_storeu_si512(dst.add((4 * l + q) * dst_stride) as *mut _, v);
            }
        }
    }
}

/// Writes row `x` as `[x_lo | x_hi]` bf16 (`2 dpad` values, the padding
/// zeroed) and returns an upper bound of `||x||` and whether every `x_lo` is
/// zero (values with at most 8 significant bits, such as pixel
/// intensities). The products' third segment, `x_hi` again, is read from
/// the second (see [`x_step`](super::x_step)).
///
/// Thirty-two values at a time: `vcvtne2ps2bf16` rounds to nearest, ties to
/// even, as [`split`](super::split) does, so `hi` and `lo` are its halves;
/// the two differ only where an input or `v - hi` is subnormal, which the
/// instruction reads as zero and both engines' products flush anyway (the
/// margin's `eta`). Two f32 conversions per 16 values: the f64 widening of
/// an exact norm would be a third of this loop's vector work, and the norm
/// only needs a bound.
#[inline(always)]
pub(super) unsafe fn convert_row(x: &[f32], dpad: usize, out: &mut [u16]) -> (f64, bool) {
    // SAFETY: the module contract (see the top of this file); `out` holds
    // `2 dpad` values, `dpad` a multiple of 32 and at least `d`.
    unsafe {
        let d = x.len();
        debug_assert!(out.len() >= 2 * dpad && d <= dpad && dpad.is_multiple_of(32));
        let (o, xp) = (out.as_mut_ptr(), x.as_ptr());
        let mut sq0 = _mm512_setzero_ps();
        let mut sq1 = _mm512_setzero_ps();
        let mut lo_bits = _mm512_setzero_si512();
        let widen = |h: __m256i| _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h));
        let mut p = 0;
        while p < dpad {
            // Lanes past `d` load as zero and fill the padding.
            let v0 = _mm512_maskz_loadu_ps(first_lanes(d.saturating_sub(p)), xp.add(p));
            let v1 = _mm512_maskz_loadu_ps(first_lanes(d.saturating_sub(p + 16)), xp.add(p + 16));
            let hi: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(v1, v0));
            let h0 = _mm512_castsi512_ps(widen(_mm512_castsi512_si256(hi)));
            let h1 = _mm512_castsi512_ps(widen(_mm512_extracti64x4_epi64::<1>(hi)));
            // v - hi is exact in f32.
            let lo: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(
                _mm512_sub_ps(v1, h1),
                _mm512_sub_ps(v0, h0),
            ));
            _mm512_storeu_si512(o.add(p) as *mut _, lo);
            _mm512_storeu_si512(o.add(dpad + p) as *mut _, hi);
            lo_bits = _mm512_or_si512(lo_bits, lo);
            sq0 = _mm512_fmadd_ps(v0, v0, sq0);
            sq1 = _mm512_fmadd_ps(v1, v1, sq1);
            p += 32;
        }
        let lo_zero = _mm512_test_epi32_mask(lo_bits, lo_bits) == 0;
        // The f32 sum of the squares: at most dpad / 32 fused additions per
        // lane, one to join the two sums and four in the reduction, so
        // within gamma_m (m = dpad / 32 + 5, below 2 m u) of the exact sum
        // of non-negative terms; each of the d squares and m roundings that
        // fall below the normal range loses less than 2^-126 (also with
        // flush-to-zero). An overflow or a NaN makes the bound non-finite,
        // and the row is decided exactly.
        let s = _mm512_reduce_add_ps(_mm512_add_ps(sq0, sq1)) as f64;
        let m = (dpad / 32 + 5) as f64;
        let tiny = (d as f64 + m) * (2.0f64).powi(-126);
        let bound = s * (1.0 + 2.0 * m * U32) + tiny;
        (bound.sqrt() * (1.0 + 1e-6), lo_zero)
    }
}
