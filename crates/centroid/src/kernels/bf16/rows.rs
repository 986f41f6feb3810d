//! The rows' side of the bf16 kernel, shared by both product engines:
//! aligned buffers, the per-thread scratch, the conversion of rows to
//! `[x_lo | x_hi | x_hi]` bf16 and their transposition into pairs of 16
//! rows (the layout both `tdpbf16ps` and `vdpbf16ps` take).
//!
//! # Safety
//!
//! Every `unsafe fn` here has one contract: the CPU runs AVX-512F/BW/DQ/VL
//! and FMA (what either engine's token proves; `run` holds one), and the
//! slices and pointers it is given are valid for the extents its
//! documentation names.

use std::arch::x86_64::*;

use super::{first_lanes, BLOCK_ROWS};

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

/// A thread's buffers for one chunk: the block's rows as `[x_lo | x_hi |
/// x_hi]` bf16 (`BLOCK_ROWS x 3 dpad`, zero padding kept: a buffer is
/// reused only for the same depth), the same in the tile layout, and the
/// dot products (`kpad x BLOCK_ROWS`).
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) rows: Aligned<u16>,
    pub(super) xt: Aligned<u16>,
    pub(super) dots: Aligned<f32>,
}

impl Scratch {
    pub(super) fn fit(&mut self, depth: usize, kpad: usize) {
        if self.rows.len != BLOCK_ROWS * depth {
            self.rows = Aligned::zeroed(BLOCK_ROWS * depth);
            self.xt = Aligned::zeroed(BLOCK_ROWS * depth);
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
                _mm512_storeu_si512(dst.add((4 * l + q) * 16) as *mut _, v);
            }
        }
    }
}

/// Writes row `x` as `[x_lo | x_hi | x_hi]` bf16 (padding untouched, zero)
/// and returns an upper bound of `||x||` and whether every `x_lo` is zero
/// (values with at most 8 significant bits, such as pixel intensities).
/// Sixteen values at a time: the same rounding as [`split`](super::split), in integer
/// lanes.
#[inline(always)]
pub(super) unsafe fn convert_row(x: &[f32], dpad: usize, out: &mut [u16]) -> (f64, bool) {
    // SAFETY: the module contract (see the top of this file): the CPU runs AVX-512F/BW/DQ/VL
    // and FMA, and the pointers are valid as documented above.
    unsafe {
        let d = x.len();
        debug_assert!(out.len() >= 3 * dpad && d <= dpad);
        let one = _mm512_set1_epi32(1);
        let half = _mm512_set1_epi32(0x7fff);
        let upper = _mm512_set1_epi32(0xffff_0000u32 as i32);
        let round = |b: __m512i| {
            let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), one);
            _mm512_and_si512(_mm512_add_epi32(b, _mm512_add_epi32(half, lsb)), upper)
        };
        let (o, xp) = (out.as_mut_ptr(), x.as_ptr());
        let mut sq0 = _mm512_setzero_pd();
        let mut sq1 = _mm512_setzero_pd();
        let mut lo_bits = _mm256_setzero_si256();
        let mut p = 0;
        while p < d {
            let m = first_lanes(d - p);
            let v = _mm512_maskz_loadu_ps(m, xp.add(p));
            let hi = round(_mm512_castps_si512(v));
            let lo = round(_mm512_castps_si512(_mm512_sub_ps(
                v,
                _mm512_castsi512_ps(hi),
            )));
            let hi16 = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(hi));
            let lo16 = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(lo));
            _mm256_mask_storeu_epi16(o.add(p) as *mut i16, m, lo16);
            lo_bits = _mm256_or_si256(lo_bits, lo16);
            _mm256_mask_storeu_epi16(o.add(dpad + p) as *mut i16, m, hi16);
            _mm256_mask_storeu_epi16(o.add(2 * dpad + p) as *mut i16, m, hi16);
            let v0 = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
            let v1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                _mm512_castps_pd(v),
            )));
            sq0 = _mm512_fmadd_pd(v0, v0, sq0);
            sq1 = _mm512_fmadd_pd(v1, v1, sq1);
            p += 16;
        }
        let s = _mm512_reduce_add_pd(_mm512_add_pd(sq0, sq1));
        // f64 rounding of a sum of d squares is far below this factor.
        let lo_zero = _mm256_testz_si256(lo_bits, lo_bits) != 0;
        (s.sqrt() * (1.0 + 1e-6), lo_zero)
    }
}
