//! The AMX engine of the bf16 kernel: the tile configuration and the block
//! products on the tile unit (`tdpbf16ps`).
//!
//! # Safety
//!
//! Every `unsafe fn` here has one contract: the CPU runs AVX-512F/BW/DQ/VL,
//! FMA and the tile unit with the tile state granted (what an `AmxBf16`
//! token proves; `run` holds one for this engine), and the slices and
//! pointers it is given are valid for the extents its documentation names.

use std::arch::asm;
use std::arch::x86_64::*;

use super::{x_step, Bf16Centres, BLOCK_CENTRES, BLOCK_ROWS, TILE_DEPTH, TILE_VALUES};

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
/// `[x_lo | x_hi]` are in `xt` (depth steps from `first_step` on, the third
/// segment read from the second): two 16-row groups of `2 dpad / 32` tiles
/// in the pair-interleaved layout of the products' right operand.
/// Centres on the left make each stored tile row hold sixteen rows' values
/// for one centre, so the scans that follow run down vector lanes of rows.
///
/// Meanwhile the `ahead` bytes at `next` (the next block's rows) are
/// prefetched into L2, spread over the products: wide rows are read from
/// memory at about the rate the tile unit consumes them.
#[inline(always)]
pub(super) unsafe fn block_dots(
    c: &Bf16Centres,
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
        let seg = c.dpad / TILE_DEPTH;
        let x1 = xt.add(2 * seg * TILE_VALUES);
        let tiles = c.packed.as_slice().as_ptr();
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
                    x0 = in(reg) xt.add(x_step(s, seg) * TILE_VALUES),
                    x1 = in(reg) x1.add(x_step(s, seg) * TILE_VALUES),
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
