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

use super::rows::transpose16_to;
use super::{x_step, Bf16Centres, BLOCK_CENTRES, BLOCK_ROWS, TILE_DEPTH, TILE_VALUES};

#[repr(C, align(64))]
struct TileConfig([u8; 64]);

/// Palette 1, tiles 0-7 all 16 rows x 64 bytes: 0-3 the f32 accumulators,
/// 4-5 the row tiles (left operand), 6-7 the centre tiles (right operand).
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

/// The C tiles' rows x centres, transposed into the decisions' centres x
/// rows (`dots[j * 32 + r]`).
#[repr(C, align(64))]
struct Staged([u32; 256]);

/// Stores accumulator `tmm{T}` (16 rows x 16 centres) into `dots` at `out`
/// as 16 centres x 16 rows, rows `BLOCK_ROWS` f32 apart.
macro_rules! store_transposed {
    ($t:literal, $staged:expr, $out:expr) => {{
        let staged: &mut Staged = $staged;
        asm!(
            concat!("tilestored [{o} + {sd}*1], tmm", $t),
            o = in(reg) staged.0.as_mut_ptr(),
            sd = in(reg) 64usize,
            options(nostack)
        );
        transpose16_to(staged.0.as_ptr(), 16, $out as *mut u32, BLOCK_ROWS);
    }};
}

/// `dots[j * 32 + r] ~ c_j . x_r` for every centre and the 32 rows whose
/// `[x_lo | x_hi]` start at `xrows` (`xdepth` bf16 apart), over the depth
/// steps from `first_step` on (the third segment read from the second).
/// The rows are the products' left operand as they are, the centres the
/// right one; each accumulator (16 rows x 16 centres) is transposed on its
/// way out, so that the scans that follow run down vector lanes of rows.
///
/// Meanwhile the `ahead` bytes at `next` (the next block's rows) are
/// prefetched into L2, spread over the products: wide rows are read from
/// memory at about the rate the tile unit consumes them.
#[inline(always)]
pub(super) unsafe fn block_dots(
    c: &Bf16Centres,
    xrows: *const u16,
    xdepth: usize,
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
        let pitch = xdepth * 2;
        let seg = c.dpad / TILE_DEPTH;
        let x1 = xrows.add(16 * xdepth);
        let tiles = c.packed.as_slice().as_ptr();
        let mut staged = Staged([0; 256]);
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
                let xs = x_step(s, seg) * TILE_DEPTH;
                asm!(
                    "tileloadd tmm4, [{x0} + {xp}*1]",
                    "tileloadd tmm6, [{c0} + {st}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{c1} + {st}*1]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{x1} + {xp}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    c0 = in(reg) c0.add(s * TILE_VALUES),
                    c1 = in(reg) c1.add(s * TILE_VALUES),
                    x0 = in(reg) xrows.add(xs),
                    x1 = in(reg) x1.add(xs),
                    st = in(reg) stride,
                    xp = in(reg) pitch,
                    options(nostack, readonly)
                );
            }
            // tmm0: rows 0-15 x centres 0-15 of the pair, tmm1: rows 0-15 x
            // centres 16-31, tmm2 and tmm3: rows 16-31.
            let out = dots.add(pair * BLOCK_CENTRES * BLOCK_ROWS);
            store_transposed!(0, &mut staged, out);
            store_transposed!(1, &mut staged, out.add(16 * BLOCK_ROWS));
            store_transposed!(2, &mut staged, out.add(16));
            store_transposed!(3, &mut staged, out.add(16 * BLOCK_ROWS + 16));
        }
    }
}
