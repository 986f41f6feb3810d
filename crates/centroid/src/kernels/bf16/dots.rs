//! The AVX512-BF16 engine of the bf16 kernel: the block products with
//! `vdpbf16ps`, for processors without a tile unit (AMD Zen 4 and later,
//! Intel Cooper Lake; Sapphire Rapids when `CENTROID_AMX=0`).
//!
//! One `vdpbf16ps` on 512 bits takes 32 bf16 products, where an f32 fused
//! multiply-add takes 16: the coarse products (`x_hi . c_hi`, depth `dpad`)
//! cost half of the f32 kernel's, and the candidates they leave are decided
//! in f64 as on the tile unit.
//!
//! **Layout.** The row operand is the one the tile unit takes: for each
//! group of 16 rows and each pair `q` of bf16 along the depth, 16 rows' pairs
//! in one 64-byte vector (`rows::transpose16`). The centre operand is the
//! matching pair of one centre broadcast to all lanes, so each accumulator
//! lane is one (row, centre) dot product: the products land in the layout
//! `decide::decide_lanes` scans (`dots[j * 32 + row]`) with no shuffle.
//! Centres are packed in groups of [`GROUP`]: for each pair `q`, the group's
//! pairs are adjacent (32 bytes), so a group's depth is one linear stream.
//!
//! **Rounding.** Each `vdpbf16ps` lane adds two bf16 products, exact in f32,
//! to its accumulator with round-to-nearest (subnormal inputs and results
//! flushed to zero): at most one rounding per depth element, added along the
//! depth in order. That is the count of roundings the margin in
//! [`Bf16Centres::new`](super::Bf16Centres::new) allows for the tile unit, so
//! the same margins hold for both engines.
//!
//! # Safety
//!
//! Every `unsafe fn` here has one contract: the CPU runs AVX-512F/BW/DQ/VL,
//! FMA and AVX512-BF16 (what an `Avx512Bf16` token proves; `run` holds one
//! for this engine), and the pointers it is given are valid for the extents
//! its documentation names.

use std::arch::x86_64::*;

use super::{x_step, Bf16Centres, BLOCK_ROWS, TILE_DEPTH, TILE_VALUES};

/// Centres per register block: 2 row vectors x 8 centres = 16 accumulators,
/// enough independent chains to cover `vdpbf16ps`'s latency at two per
/// cycle, with registers left for the two row vectors.
pub(super) const GROUP: usize = 8;

/// The index (in u16) of centre `j`'s bf16 value at depth position `pos` in
/// this engine's packing, for a depth of `depth` values.
#[inline(always)]
pub(super) fn packed_index(j: usize, pos: usize, depth: usize) -> usize {
    let (group, lane) = (j / GROUP, j % GROUP);
    let pairs = depth / 2;
    ((group * pairs + pos / 2) * GROUP + lane) * 2 + pos % 2
}

/// `dots[j * 32 + r] ~ c_j . x_r` for every centre and the 32 rows whose
/// `[x_lo | x_hi]` are in `xt` (the row layout of
/// [`super::tiles::block_dots`]), over the depth from step `first_step`
/// (of [`TILE_DEPTH`] values) on.
///
/// Meanwhile the `ahead` bytes at `next` (the next block's rows) are
/// prefetched into L2, spread over the centre groups.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16")]
pub(super) unsafe fn block_dots(
    c: &Bf16Centres,
    xt: *const u16,
    dots: *mut f32,
    first_step: usize,
    next: *const u8,
    ahead: usize,
) {
    // SAFETY: the module contract (see the top of this file): the CPU runs
    // what an `Avx512Bf16` token proves; `xt` holds two groups of `2 dpad /
    // TILE_DEPTH` tiles, the packed centres `kpad / GROUP` groups of `pairs` pairs, and
    // `dots` `kpad x BLOCK_ROWS` values.
    unsafe {
        let depth = 3 * c.dpad;
        let pairs = depth / 2;
        let first_pair = first_step * TILE_DEPTH / 2;
        let groups = c.kpad / GROUP;
        let lines = ahead.div_ceil(64);
        let per_group = lines.div_ceil(groups.max(1));
        let mut line = 0;
        // Row vectors: pair q of rows 0..16 at x0 + 16 q (u32), of rows
        // 16..32 at x1 + 16 q.
        let x0 = xt as *const u32;
        let seg_pairs = c.dpad / 2;
        let x1 = xt.add(2 * c.dpad / TILE_DEPTH * TILE_VALUES) as *const u32;
        let packed = c.packed.as_slice().as_ptr() as *const u32;
        for g in 0..groups {
            for _ in 0..per_group {
                if line < lines {
                    _mm_prefetch::<_MM_HINT_T1>(next.add(line * 64) as *const i8);
                    line += 1;
                }
            }
            let cg = packed.add(g * pairs * GROUP);
            let mut a0 = [_mm512_setzero_ps(); GROUP];
            let mut a1 = [_mm512_setzero_ps(); GROUP];
            for q in first_pair..pairs {
                // The third segment is the second again.
                let xq = x_step(q, seg_pairs);
                let r0: __m512bh =
                    std::mem::transmute(_mm512_load_si512(x0.add(16 * xq) as *const _));
                let r1: __m512bh =
                    std::mem::transmute(_mm512_load_si512(x1.add(16 * xq) as *const _));
                let cq = cg.add(q * GROUP);
                for t in 0..GROUP {
                    let w: __m512bh = std::mem::transmute(_mm512_set1_epi32(*cq.add(t) as i32));
                    a0[t] = _mm512_dpbf16_ps(a0[t], r0, w);
                    a1[t] = _mm512_dpbf16_ps(a1[t], r1, w);
                }
            }
            let out = dots.add(g * GROUP * BLOCK_ROWS);
            for t in 0..GROUP {
                _mm512_store_ps(out.add(t * BLOCK_ROWS), a0[t]);
                _mm512_store_ps(out.add(t * BLOCK_ROWS + 16), a1[t]);
            }
        }
    }
}
