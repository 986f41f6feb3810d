//! The tile unit's side of the AMX kernel: aligned buffers, the tile
//! configuration, the block products, and the conversion of rows to the
//! products' bf16 layout.
//!
//! # Safety
//!
//! Every `unsafe fn` here has one contract: the CPU runs AVX-512F/BW/DQ/VL,
//! FMA and the tile unit with the tile state granted (what an `AmxBf16`
//! token proves; `run` holds one), and the slices and pointers it is given
//! are valid for the extents its documentation names.

use std::arch::asm;
use std::arch::x86_64::*;

use super::{first_lanes, AmxCentres, BLOCK_CENTRES, BLOCK_ROWS, TILE_DEPTH, TILE_VALUES};

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

#[repr(C, align(64))]
struct TileConfig([u8; 64]);

/// Palette 1, tiles 0-7 all 16 rows x 64 bytes: 0-3 the f32 accumulators,
/// 4-5 the row tiles, 6-7 the centre tiles.
#[inline(always)]
pub(super) unsafe fn configure_tiles() {
    // SAFETY: the module contract (see the top of this file): the CPU runs what an `AmxBf16` token
    // proves, and the pointers are valid as documented above.
    unsafe {
        let mut cfg = TileConfig([0; 64]);
        cfg.0[0] = 1;
        for t in 0..8 {
            cfg.0[16 + 2 * t] = 64;
            cfg.0[48 + t] = 16;
        }
        asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
    }
}

#[inline(always)]
pub(super) unsafe fn release_tiles() {
    // SAFETY: the module contract (see the top of this file): the CPU runs what an `AmxBf16` token
    // proves, and the pointers are valid as documented above.
    unsafe {
        asm!("tilerelease", options(nostack, nomem));
    }
}

/// `dots[j * 32 + r] ~ c_j . x_r` for every centre and the 32 rows whose
/// `[x_lo | x_hi | x_hi]` are in `xt` (depth steps from `first_step` on): two 16-row groups of `3 dpad / 32`
/// tiles in the pair-interleaved layout of the products' right operand.
/// Centres on the left make each stored tile row hold sixteen rows' values
/// for one centre, so the scans that follow run down vector lanes of rows.
///
/// Meanwhile the `ahead` bytes at `next` (the next block's rows) are
/// prefetched into L2, spread over the products: wide rows are read from
/// memory at about the rate the tile unit consumes them.
#[inline(always)]
pub(super) unsafe fn block_dots(
    c: &AmxCentres,
    xt: *const u16,
    dots: *mut f32,
    first_step: usize,
    next: *const u8,
    ahead: usize,
) {
    // SAFETY: the module contract (see the top of this file): the CPU runs what an `AmxBf16` token
    // proves, and the pointers are valid as documented above.
    unsafe {
        let steps = 3 * c.dpad / TILE_DEPTH;
        let iterations = c.kpad / BLOCK_CENTRES * (steps - first_step);
        let lines = ahead.div_ceil(64);
        let per_iteration = lines.div_ceil(iterations.max(1));
        let mut line = 0;
        let stride = 64usize;
        let d_stride = BLOCK_ROWS * 4;
        let x1 = xt.add(steps * TILE_VALUES);
        let tiles = c.tiles.as_slice().as_ptr();
        for pair in 0..c.kpad / BLOCK_CENTRES {
            let c0 = tiles.add(2 * pair * steps * TILE_VALUES);
            let c1 = c0.add(steps * TILE_VALUES);
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            for s in first_step..steps {
                for _ in 0..per_iteration {
                    if line < lines {
                        _mm_prefetch::<_MM_HINT_T1>(next.add(line * 64) as *const i8);
                        line += 1;
                    }
                }
                asm!(
                    "tileloadd tmm4, [{c0} + {st}*1]",
                    "tileloadd tmm6, [{x0} + {st}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{x1} + {st}*1]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{c1} + {st}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    c0 = in(reg) c0.add(s * TILE_VALUES),
                    c1 = in(reg) c1.add(s * TILE_VALUES),
                    x0 = in(reg) xt.add(s * TILE_VALUES),
                    x1 = in(reg) x1.add(s * TILE_VALUES),
                    st = in(reg) stride,
                    options(nostack, readonly)
                );
            }
            let out = dots.add(pair * BLOCK_CENTRES * BLOCK_ROWS);
            asm!(
                "tilestored [{o0} + {sd}*1], tmm0",
                "tilestored [{o1} + {sd}*1], tmm1",
                "tilestored [{o2} + {sd}*1], tmm2",
                "tilestored [{o3} + {sd}*1], tmm3",
                o0 = in(reg) out,
                o1 = in(reg) out.add(16),
                o2 = in(reg) out.add(16 * BLOCK_ROWS),
                o3 = in(reg) out.add(16 * BLOCK_ROWS + 16),
                sd = in(reg) d_stride,
                options(nostack)
            );
        }
    }
}

/// Transposes 16 x 16 u32: `src` row `i` at `src + i * stride` (u32s),
/// written as `dst` row `j` = column `j` of the source, contiguous.
#[inline(always)]
pub(super) unsafe fn transpose16(src: *const u32, stride: usize, dst: *mut u32) {
    // SAFETY: the module contract (see the top of this file): the CPU runs what an `AmxBf16` token
    // proves, and the pointers are valid as documented above.
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
    // SAFETY: the module contract (see the top of this file): the CPU runs what an `AmxBf16` token
    // proves, and the pointers are valid as documented above.
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
