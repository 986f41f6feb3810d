//! AMX candidates, exact decisions: the assignment kernel for f32 data on
//! x86-64 Linux processors with AMX-BF16 (Sapphire Rapids and later).
//!
//! The tile unit multiplies bf16 matrices about ten times faster than the
//! AVX-512 kernel's f32 fused multiply-adds, but bf16 keeps 8 bits. So:
//!
//! - **Split products.** Each f32 value `v` is split into bf16 `hi = bf16(v)`
//!   and `lo = bf16(v - hi)`. The dot products are taken over the
//!   concatenated vectors `[x_lo | x_hi | x_hi] . [c_hi | c_lo | c_hi]`: one
//!   `tdpbf16ps` GEMM of depth `3 dpad` (d padded to 32) accumulating in f32,
//!   whose omitted terms are below `3.1 * 2^-16 |x_p| |c_p|` each. The two
//!   small segments come first so that their roundings happen on small sums.
//! - **A rigorous margin.** Let `V_j = ||c_j||^2 / 2 - x.c_j` (or `-x.c^_j`
//!   under cosine), whose argmin is the nearest centre, and `A_j` its tile
//!   approximation. With `S = sum_p |x_p| |c_jp| <= ||x|| ||c_j||`, the split,
//!   the tile unit's roundings and this module's own f32 arithmetic bound
//!   `|A_j - V_j|` by `E_j = eps (||x|| ||c_j|| + |b_j|) + eta` (see
//!   [`AmxCentres::new`]). The nearest centre `j*` then satisfies
//!   `A_j* - E_j* <= U = min_j (A_j + E_j)`: the row's candidates are
//!   `{j : A_j - E_j <= U}`.
//! - **Exact decisions.** A single candidate is the nearest centre. Several
//!   (near ties, duplicate centres) are decided by f64 distances, lowest
//!   index on ties; so are rows the margin cannot bound (non-finite or
//!   enormous values).
//!
//! The labels are therefore the exact nearest centres, where the AVX-512
//! kernel may split a near tie by its rounding (the two agree everywhere
//! else). Each row's distance is then computed directly, `||x - c||^2` (or
//! `1 - x.c^ / ||x||`) in f32 with lanes over the dimensions, which avoids the
//! cancellation of `||x||^2 - 2 x.c + ||c||^2`; the sums are added as the
//! AVX-512 kernel adds them (row order, `scale * x` in f64).
//!
//! Tiles are configured at the start of every chunk and released at its end,
//! on the thread that runs it; the operating system is asked once per
//! process for permission to use the tile state. `CENTROID_AMX=0` in the
//! environment turns the path off.

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{ClusterStats, Metric};

/// The smallest `k` and `d` served (measured on the target machines: at
/// `d = 64, k = 128` both kernels take the same time, below it AVX-512 is
/// faster, above it this one, by 1.7x at `d = 128, k = 1000` and 2x at
/// `d = 784, k = 100`).
const MIN_K: usize = 32;
const MIN_D: usize = 64;

/// Rows per tile block: two 16-row A tiles.
const BLOCK_ROWS: usize = 32;
/// Centres per step: two 16-centre B tiles.
const BLOCK_CENTRES: usize = 32;
/// bf16 values per tile row (64 bytes), the depth of one `tdpbf16ps`.
const TILE_DEPTH: usize = 32;
/// bf16 values in one 16 x 64-byte tile.
const TILE_VALUES: usize = 16 * TILE_DEPTH;
/// The largest padded `k` served: the per-block dot products
/// (`BLOCK_ROWS x kpad` f32) stay within 8 MiB per thread.
const MAX_KPAD: usize = 1 << 16;
/// Rows and centres whose norm product exceeds this are decided exactly:
/// every intermediate of the tile products then stays finite.
const MAX_NORM_PRODUCT: f64 = 1e36;
/// f32 unit roundoff.
const U32: f64 = 1.0 / (1u64 << 24) as f64;

/// Whether this process can run the AMX kernel: the CPU has AMX-TILE and
/// AMX-BF16 (and AVX-512 for the rest of the kernel), the operating system
/// granted the tile state, and `CENTROID_AMX` is not `0`.
pub(crate) fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(detect)
}

fn detect() -> bool {
    if std::env::var("CENTROID_AMX").is_ok_and(|v| v.trim() == "0") {
        return false;
    }
    if !(is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("fma"))
    {
        return false;
    }
    // CPUID leaf 7, sub-leaf 0: EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
    #[allow(unused_unsafe)]
    let leaf7 = unsafe { __cpuid_count(7, 0) };
    if leaf7.edx & (1 << 22) == 0 || leaf7.edx & (1 << 24) == 0 {
        return false;
    }
    request_tile_permission()
}

#[cfg(target_os = "linux")]
fn request_tile_permission() -> bool {
    // Linux hands out the 8 KiB tile state only on request
    // (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)), once per
    // process; without it the first tile instruction faults.
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    r == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_permission() -> bool {
    false
}

/// Rounds an f32 to bf16 (nearest, ties to even), as the upper 16 bits.
#[inline(always)]
fn bf16_bits(v: f32) -> u32 {
    let b = v.to_bits();
    b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000
}

/// `(hi, lo)` bf16 halves of `v`: `hi = bf16(v)`, `lo = bf16(v - hi)`
/// (`v - hi` is exact in f32).
#[inline(always)]
fn split(v: f32) -> (u16, u16) {
    let hi = bf16_bits(v);
    let lo = bf16_bits(v - f32::from_bits(hi));
    ((hi >> 16) as u16, (lo >> 16) as u16)
}

/// A 64-byte aligned, zero-initialised buffer.
struct Aligned<T> {
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
    fn zeroed(len: usize) -> Self {
        let pad = 64 / std::mem::size_of::<T>();
        let buf = vec![T::default(); len + pad];
        let offset = buf.as_ptr().align_offset(64).min(pad);
        Self { buf, offset, len }
    }
    fn as_slice(&self) -> &[T] {
        &self.buf[self.offset..self.offset + self.len]
    }
    fn as_mut_slice(&mut self) -> &mut [T] {
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
struct Scratch {
    rows: Aligned<u16>,
    xt: Aligned<u16>,
    dots: Aligned<f32>,
}

impl Scratch {
    fn fit(&mut self, depth: usize, kpad: usize) {
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
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// Centres packed for the tile unit, with the per-centre terms of the margin.
#[derive(Debug)]
pub(crate) struct AmxCentres {
    k: usize,
    d: usize,
    /// `d` rounded up to [`TILE_DEPTH`].
    dpad: usize,
    /// `k` rounded up to [`BLOCK_CENTRES`].
    kpad: usize,
    metric: Metric,
    /// The centres as the tile products' left operand: for each group of 16
    /// centres, `3 dpad / 32` tiles of 16 centres x 32 bf16 of
    /// `[c_hi | c_lo | c_hi]`, each tile contiguous.
    tiles: Aligned<u16>,
    /// The margins of the full products and of the coarse `x_hi . c_hi`
    /// alone.
    fine: Margin,
    coarse: Margin,
    /// Extra candidates per row above which the coarse products cost more
    /// (in exact decisions) than the two segments they skip.
    coarse_limit: f64,
    /// Whether chunks start coarse; cleared by a chunk that found it too
    /// costly. The labels do not depend on it (see [`run_impl`]).
    try_coarse: std::sync::atomic::AtomicBool,
    /// Upper bounds of `||c_j||`.
    norms: Vec<f32>,
    /// Largest of `norms`.
    max_norm: f64,
}

/// One product mode's margin terms.
#[derive(Debug)]
struct Margin {
    /// `b_j + eps |b_j|` and `b_j - eps |b_j|`.
    bias_up: Vec<f32>,
    bias_down: Vec<f32>,
    /// Relative margin, see [`AmxCentres::new`].
    eps: f64,
}

impl Margin {
    fn new(eps: f64, kpad: usize) -> Self {
        Self {
            bias_up: vec![0.0; kpad],
            bias_down: vec![0.0; kpad],
            eps,
        }
    }
    fn set(&mut self, j: usize, b: f32) {
        let slack = self.eps * (b as f64).abs();
        self.bias_up[j] = (b as f64 + slack) as f32;
        self.bias_down[j] = (b as f64 - slack) as f32;
    }
}

impl AmxCentres {
    /// Packs the `k x d` centres (as the kernels see them: normalised under
    /// cosine) with the AVX-512 kernel's squared norms, or `None` when the
    /// tile unit is unavailable or would not pay off for this shape.
    pub(crate) fn new(
        centres: &[f32],
        sq_norms: &[f32],
        k: usize,
        d: usize,
        metric: Metric,
    ) -> Option<Self> {
        // Below these sizes the AVX-512 kernel is as fast: its work per row
        // is small, while each tile product here is short (few depth steps
        // to hide the tile unit's latency) and each row carries fixed costs
        // (conversion, two scans of its k values, the exact distance).
        if k < MIN_K || d < MIN_D || k.next_multiple_of(BLOCK_CENTRES) > MAX_KPAD || !available() {
            return None;
        }
        let dpad = d.next_multiple_of(TILE_DEPTH);
        let kpad = k.next_multiple_of(BLOCK_CENTRES);
        let depth = 3 * dpad;
        let steps = depth / TILE_DEPTH;
        let mut tiles = Aligned::<u16>::zeroed(kpad / 16 * steps * TILE_VALUES);
        let t = tiles.as_mut_slice();
        let mut norms = vec![0.0f32; kpad];
        let mut max_norm = 0.0f64;
        // eps: the split (3.1 * 2^-16), the tile unit's f32 accumulation
        // (1.04 dpad roundings on sums of at most S, the small segments'
        // roundings being 2^-7 smaller), and 16 more roundings for the
        // bias (||c||^2 / 2 rounded to f32), the subtraction and the
        // comparisons done here in f32.
        let mut fine = Margin::new(3.1 / 65536.0 + (1.04 * dpad as f64 + 16.0) * U32, kpad);
        // The coarse products omit x_hi (c_lo + c_rest) + (x_lo + x_rest) c,
        // below 2^-7 * 1.01 |x_p| |c_p| each, and round dpad times.
        let mut coarse = Margin::new(1.01 / 128.0 + (1.04 * dpad as f64 + 16.0) * U32, kpad);
        for j in 0..k {
            let row = &centres[j * d..(j + 1) * d];
            let (g, n) = (j / 16, j % 16);
            let mut sq = 0.0f64;
            for (p, &v) in row.iter().enumerate() {
                sq += v as f64 * v as f64;
                let (hi, lo) = split(v);
                for (pos, bits) in [(p, hi), (dpad + p, lo), (2 * dpad + p, hi)] {
                    let (step, col) = (pos / TILE_DEPTH, pos % TILE_DEPTH);
                    t[((g * steps + step) * 16 + n) * TILE_DEPTH + col] = bits;
                }
            }
            let norm = sq.sqrt() * (1.0 + 1e-6);
            if !norm.is_finite() || norm * norm > MAX_NORM_PRODUCT {
                return None;
            }
            norms[j] = norm as f32;
            max_norm = max_norm.max(norm);
            let b = match metric {
                Metric::SquaredEuclidean => sq_norms[j] * 0.5,
                Metric::Cosine => 0.0,
            };
            fine.set(j, b);
            coarse.set(j, b);
        }
        Some(Self {
            k,
            d,
            dpad,
            kpad,
            metric,
            tiles,
            fine,
            coarse,
            // Skipping two segments saves about dpad kpad / 108 cycles per
            // row (the tile unit's measured rate); an extra candidate costs
            // about 0.3 d + 30 cycles of f64 distance.
            coarse_limit: (dpad * kpad) as f64 / 108.0 / (0.3 * d as f64 + 30.0),
            try_coarse: std::sync::atomic::AtomicBool::new(true),
            norms,
            max_norm,
        })
    }
}

/// One chunk's work for [`run`].
pub(crate) struct Chunk<'a> {
    /// `rows x d`, row-major.
    pub(crate) x: &'a [f32],
    /// The centres as the kernels see them, `k x d` row-major.
    pub(crate) centres: &'a [f32],
    pub(crate) labels: &'a mut [u32],
    pub(crate) scores: &'a mut [f32],
    pub(crate) weights: Option<&'a [f32]>,
    /// When given, the rows are added to these sums.
    pub(crate) part: Option<&'a mut ClusterStats>,
}

/// Labels and distances of a chunk's rows, and with `part` their sums.
pub(crate) fn run(c: &AmxCentres, chunk: Chunk<'_>) {
    let rows = chunk.labels.len();
    assert!(chunk.x.len() == rows * c.d && chunk.scores.len() == rows);
    assert!(chunk.centres.len() == c.k * c.d);
    assert!(chunk.weights.is_none_or(|w| w.len() == rows));
    // SAFETY: `AmxCentres` exists only where `available()` held (the CPU has
    // AVX-512F/BW/DQ/VL, FMA, AMX-TILE and AMX-BF16, and the OS granted the tile
    // state); the asserts above keep every access in bounds.
    unsafe { run_impl(c, chunk) }
}

#[repr(C, align(64))]
struct TileConfig([u8; 64]);

/// Palette 1, tiles 0-7 all 16 rows x 64 bytes: 0-3 the f32 accumulators,
/// 4-5 the row tiles, 6-7 the centre tiles.
#[inline(always)]
unsafe fn configure_tiles() {
    let mut cfg = TileConfig([0; 64]);
    cfg.0[0] = 1;
    for t in 0..8 {
        cfg.0[16 + 2 * t] = 64;
        cfg.0[48 + t] = 16;
    }
    asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
}

#[inline(always)]
unsafe fn release_tiles() {
    asm!("tilerelease", options(nostack, nomem));
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
unsafe fn block_dots(
    c: &AmxCentres,
    xt: *const u16,
    dots: *mut f32,
    first_step: usize,
    next: *const u8,
    ahead: usize,
) {
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

/// Transposes 16 x 16 u32: `src` row `i` at `src + i * stride` (u32s),
/// written as `dst` row `j` = column `j` of the source, contiguous.
#[inline(always)]
unsafe fn transpose16(src: *const u32, stride: usize, dst: *mut u32) {
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

/// Writes row `x` as `[x_lo | x_hi | x_hi]` bf16 (padding untouched, zero)
/// and returns an upper bound of `||x||` and whether every `x_lo` is zero
/// (values with at most 8 significant bits, such as pixel intensities).
/// Sixteen values at a time: the same rounding as [`split`], in integer
/// lanes.
#[inline(always)]
unsafe fn convert_row(x: &[f32], dpad: usize, out: &mut [u16]) -> (f64, bool) {
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
        let m: __mmask16 = if d - p >= 16 {
            0xffff
        } else {
            (1u16 << (d - p)) - 1
        };
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

/// The exact nearest of `candidates` (ascending) to row `x`, lowest index
/// on ties: squared distances (or, under cosine, minus the dot products with
/// the normalised centres) in f64, where the rounding of d products of f32
/// values is far below any difference the margin lets through. Centre 0
/// when none compares below +inf (NaN rows), as every kernel does.
#[inline(always)]
unsafe fn nearest_exactly(c: &AmxCentres, centres: &[f32], x: &[f32], candidates: &[u32]) -> u32 {
    let d = c.d;
    let mut best = f64::INFINITY;
    let mut label = 0u32;
    for &j in candidates {
        let cj = centres.as_ptr().add(j as usize * d);
        let (mut acc0, mut acc1) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        let mut p = 0;
        while p < d {
            let m: __mmask16 = if d - p >= 16 {
                0xffff
            } else {
                (1u16 << (d - p)) - 1
            };
            let xv = _mm512_maskz_loadu_ps(m, x.as_ptr().add(p));
            let cv = _mm512_maskz_loadu_ps(m, cj.add(p));
            let (x0, x1) = widen(xv);
            let (c0, c1) = widen(cv);
            match c.metric {
                Metric::SquaredEuclidean => {
                    let (t0, t1) = (_mm512_sub_pd(x0, c0), _mm512_sub_pd(x1, c1));
                    acc0 = _mm512_fmadd_pd(t0, t0, acc0);
                    acc1 = _mm512_fmadd_pd(t1, t1, acc1);
                }
                Metric::Cosine => {
                    acc0 = _mm512_fnmadd_pd(x0, c0, acc0);
                    acc1 = _mm512_fnmadd_pd(x1, c1, acc1);
                }
            }
            p += 16;
        }
        let v = _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
        if v < best {
            best = v;
            label = j;
        }
    }
    label
}

/// The two halves of sixteen f32 lanes as f64.
#[inline(always)]
unsafe fn widen(v: __m512) -> (__m512d, __m512d) {
    (
        _mm512_cvtps_pd(_mm512_castps512_ps256(v)),
        _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
            _mm512_castps_pd(v),
        ))),
    )
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
unsafe fn run_impl(c: &AmxCentres, chunk: Chunk<'_>) {
    let Chunk {
        x,
        centres,
        labels,
        scores,
        weights,
        mut part,
    } = chunk;
    let (d, k, dpad) = (c.d, c.k, c.dpad);
    let rows = labels.len();
    let depth = 3 * dpad;
    let steps = depth / TILE_DEPTH;
    let mut scratch = SCRATCH.with(|s| s.take());
    scratch.fit(depth, c.kpad);
    let mut norms = [0.0f64; BLOCK_ROWS];
    let mut candidates = Candidates::default();
    let all: Vec<u32> = (0..k as u32).collect();
    // Whatever the mode, each label is the exact nearest centre (a unique
    // candidate is it; several are decided in f64, and the coarse set holds
    // the fine one and no centre that could win an f64 comparison against
    // it), so the mode may follow timing-free heuristics shared between
    // threads without changing any result.
    let mut coarse = c.try_coarse.load(std::sync::atomic::Ordering::Relaxed);
    // Four running loss sums (row i into i % 4, combined in a fixed order
    // at the end) keep the additions off one long dependency chain.
    let mut loss = [0.0f64; 4];
    configure_tiles();
    for r0 in (0..rows).step_by(BLOCK_ROWS) {
        let nr = BLOCK_ROWS.min(rows - r0);
        // Rows past `nr` keep earlier values: their products are computed
        // and never read.
        let xrows = scratch.rows.as_mut_slice();
        let mut lo_zero = true;
        for r in 0..nr {
            let row = &x[(r0 + r) * d..(r0 + r + 1) * d];
            let (norm, zero) = convert_row(row, dpad, &mut xrows[r * depth..(r + 1) * depth]);
            norms[r] = norm;
            lo_zero &= zero;
        }
        // Coarse blocks take x_hi . c_hi alone (the last segment); when no
        // row of the block has a low half, the first segment (x_lo . c_hi)
        // is zero and is skipped.
        let seg = dpad / TILE_DEPTH;
        let (first_step, margin, saved) = if coarse {
            (2 * seg, &c.coarse, if lo_zero { 1.0 } else { 2.0 })
        } else if lo_zero {
            (seg, &c.fine, 0.0)
        } else {
            (0, &c.fine, 0.0)
        };
        // Pairs of bf16 along the depth are one u32: transposing 16 rows x
        // 16 pairs gives the right operand's pair-interleaved layout.
        let (src, xt) = (xrows.as_ptr(), scratch.xt.as_mut_slice().as_mut_ptr());
        for g in 0..2 {
            for st in 0..steps {
                transpose16(
                    src.add(g * 16 * depth + st * TILE_DEPTH) as *const u32,
                    depth / 2,
                    xt.add((g * steps + st) * TILE_VALUES) as *mut u32,
                );
            }
        }
        let dots = scratch.dots.as_mut_slice().as_mut_ptr();
        let next = (r0 + BLOCK_ROWS).min(rows);
        let ahead = (BLOCK_ROWS.min(rows - next)) * d * 4;
        block_dots(
            c,
            xt,
            dots,
            first_step,
            x.as_ptr().add(next * d) as *const u8,
            ahead,
        );
        let mut extra = 0;
        for g in 0..2 {
            let lanes = nr.saturating_sub(g * 16).min(16);
            if lanes > 0 {
                extra += decide_lanes(
                    c,
                    margin,
                    centres,
                    &x[(r0 + g * 16) * d..(r0 + g * 16 + lanes) * d],
                    &norms[g * 16..g * 16 + lanes],
                    dots.add(g * 16),
                    &mut labels[r0 + g * 16..r0 + g * 16 + lanes],
                    &mut candidates,
                    &all,
                );
            }
        }
        if coarse && extra as f64 > c.coarse_limit * saved * 0.5 * nr as f64 {
            coarse = false;
            c.try_coarse
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        // Finished while the block's rows are still in cache.
        finish(
            c,
            x,
            centres,
            r0..r0 + nr,
            labels,
            scores,
            weights,
            part.as_deref_mut(),
            &mut loss,
        );
    }
    release_tiles();
    SCRATCH.with(|s| s.set(scratch));
    if let Some(p) = part {
        p.loss += (loss[0] + loss[1]) + (loss[2] + loss[3]);
    }
}

/// Labels of up to 16 rows (`x`, their norm bounds `norms`) from their
/// approximate dot products (`dots[j * 32 + lane]`): one vector lane per
/// row, so the bound `U` of each row is a lane-wise minimum and the
/// candidate test one comparison per centre for all rows. A row with one
/// candidate takes it; others are decided exactly (see the module docs).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn decide_lanes(
    c: &AmxCentres,
    margin: &Margin,
    centres: &[f32],
    x: &[f32],
    norms: &[f64],
    dots: *const f32,
    labels: &mut [u32],
    candidates: &mut Candidates,
    all: &[u32],
) -> usize {
    let (d, k) = (c.d, c.k);
    let lanes = labels.len();
    let mut er = [0.0f32; 16];
    let mut eta2 = [0.0f32; 16];
    let mut bounded = 0u32;
    // eta: flushed subnormal inputs and results of the tile unit, each below
    // 2^-126 times a norm (or alone); negligible unless the data are tiny.
    let tiny = (2.0f64).powi(-126);
    for l in 0..lanes {
        let nx = norms[l];
        if nx.is_finite() && nx * c.max_norm <= MAX_NORM_PRODUCT {
            bounded |= 1 << l;
            er[l] = (margin.eps * nx * (1.0 + 1e-6)) as f32;
            let eta =
                tiny * ((2 * c.dpad) as f64 * (nx + c.max_norm) + (4 * c.dpad + d + 8) as f64);
            eta2[l] = (2.0 * eta) as f32;
        }
    }
    let erv = _mm512_loadu_ps(er.as_ptr());
    let (up, down, nrm) = (
        margin.bias_up.as_ptr(),
        margin.bias_down.as_ptr(),
        c.norms.as_ptr(),
    );
    // A_j + E_j = er n_j - (dot_j - b_up_j); four running minima so that
    // the loop is not bound by the latency of one.
    let upper = |j: usize| {
        let q = _mm512_sub_ps(
            _mm512_loadu_ps(dots.add(j * BLOCK_ROWS)),
            _mm512_set1_ps(*up.add(j)),
        );
        _mm512_fmsub_ps(erv, _mm512_set1_ps(*nrm.add(j)), q)
    };
    let mut u = [_mm512_set1_ps(f32::INFINITY); 4];
    let mut j = 0;
    while j + 4 <= k {
        for (t, ut) in u.iter_mut().enumerate() {
            *ut = _mm512_min_ps(*ut, upper(j + t));
        }
        j += 4;
    }
    while j < k {
        u[0] = _mm512_min_ps(u[0], upper(j));
        j += 1;
    }
    let u = _mm512_min_ps(_mm512_min_ps(u[0], u[1]), _mm512_min_ps(u[2], u[3]));
    // The threshold, nudged up by its own f32 rounding.
    let abs_u = _mm512_abs_ps(u);
    let thr = _mm512_add_ps(
        _mm512_fmadd_ps(abs_u, _mm512_set1_ps((8.0 * U32) as f32), u),
        _mm512_loadu_ps(eta2.as_ptr()),
    );
    // A_j - E_j = -(er n_j) - (dot_j - b_down_j) <= thr: each row's
    // candidates, in ascending order (few per row: the loop mostly tests an
    // empty mask).
    candidates.clear();
    for j in 0..k {
        let q = _mm512_sub_ps(
            _mm512_loadu_ps(dots.add(j * BLOCK_ROWS)),
            _mm512_set1_ps(*down.add(j)),
        );
        let lower = _mm512_fnmsub_ps(erv, _mm512_set1_ps(*nrm.add(j)), q);
        let mut m = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(lower, thr) as u32;
        while m != 0 {
            candidates.push(m.trailing_zeros() as usize, j as u32);
            m &= m - 1;
        }
    }
    candidates.group();
    let mut extra = 0;
    for l in 0..lanes {
        let row = &x[l * d..(l + 1) * d];
        let mine = candidates.of(l);
        labels[l] = match mine.len() {
            _ if bounded & (1 << l) == 0 => nearest_exactly(c, centres, row, all),
            0 => nearest_exactly(c, centres, row, all),
            1 => mine[0],
            n => {
                extra += n - 1;
                nearest_exactly(c, centres, row, mine)
            }
        };
    }
    extra
}

/// Candidate centres of 16 lanes (rows): pushed as found, in ascending
/// centre order, then grouped by lane.
#[derive(Default)]
struct Candidates {
    found: Vec<(u8, u32)>,
    counts: [usize; 16],
    start: [usize; 17],
    grouped: Vec<u32>,
}

impl Candidates {
    fn clear(&mut self) {
        self.found.clear();
        self.counts = [0; 16];
    }
    #[inline(always)]
    fn push(&mut self, lane: usize, j: u32) {
        self.found.push((lane as u8, j));
        self.counts[lane] += 1;
    }
    fn group(&mut self) {
        self.start[0] = 0;
        for l in 0..16 {
            self.start[l + 1] = self.start[l] + self.counts[l];
        }
        self.grouped.resize(self.found.len(), 0);
        let mut next = self.start;
        for &(l, j) in &self.found {
            self.grouped[next[l as usize]] = j;
            next[l as usize] += 1;
        }
    }
    fn of(&self, lane: usize) -> &[u32] {
        &self.grouped[self.start[lane]..self.start[lane + 1]]
    }
}

/// Distances of the chosen centres of rows `range`, computed directly, and
/// with `part` the rows added to the sums (as the AVX-512 kernel's
/// finishing pass adds them: row order, `scale * x` in f64).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn finish(
    c: &AmxCentres,
    x: &[f32],
    centres: &[f32],
    range: std::ops::Range<usize>,
    labels: &[u32],
    scores: &mut [f32],
    weights: Option<&[f32]>,
    mut part: Option<&mut ClusterStats>,
    loss: &mut [f64; 4],
) {
    let d = c.d;
    for i in range {
        let row = &x[i * d..(i + 1) * d];
        let j = labels[i] as usize;
        let cj = &centres[j * d..(j + 1) * d];
        let s = &mut scores[i];
        let inv = match c.metric {
            Metric::SquaredEuclidean => {
                *s = sq_diff(row, cj);
                1.0
            }
            Metric::Cosine => {
                let inv = super::inv_norm(row);
                *s = 1.0 - dot(row, cj) * inv as f32;
                inv
            }
        };
        if let Some(p) = part.as_deref_mut() {
            let w = weights.map_or(1.0, |w| w[i] as f64);
            let scale = w * inv;
            let acc = &mut p.sums[j * d..(j + 1) * d];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += scale * v as f64;
            }
            p.weights[j] += w;
            p.counts[j] += 1;
            loss[i % 4] += w * *s as f64;
        }
    }
}

/// `||a - b||^2` in f32, 16 lanes over the dimensions.
#[inline(always)]
unsafe fn sq_diff(a: &[f32], b: &[f32]) -> f32 {
    let d = a.len();
    let mut acc = _mm512_setzero_ps();
    let mut p = 0;
    while p < d {
        let m: __mmask16 = if d - p >= 16 {
            0xffff
        } else {
            (1u16 << (d - p)) - 1
        };
        let t = _mm512_sub_ps(
            _mm512_maskz_loadu_ps(m, a.as_ptr().add(p)),
            _mm512_maskz_loadu_ps(m, b.as_ptr().add(p)),
        );
        acc = _mm512_fmadd_ps(t, t, acc);
        p += 16;
    }
    _mm512_reduce_add_ps(acc)
}

/// `a . b` in f32, 16 lanes over the dimensions.
#[inline(always)]
unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let d = a.len();
    let mut acc = _mm512_setzero_ps();
    let mut p = 0;
    while p < d {
        let m: __mmask16 = if d - p >= 16 {
            0xffff
        } else {
            (1u16 << (d - p)) - 1
        };
        acc = _mm512_fmadd_ps(
            _mm512_maskz_loadu_ps(m, a.as_ptr().add(p)),
            _mm512_maskz_loadu_ps(m, b.as_ptr().add(p)),
            acc,
        );
        p += 16;
    }
    _mm512_reduce_add_ps(acc)
}

#[cfg(test)]
mod tests {
    //! The AMX kernel against f64 brute force (labels exact, distances to
    //! f32 precision, sums those of the labels added in the kernels' order)
    //! and against the AVX-512 kernel (the same labels but on near ties), on
    //! shapes that exercise padding, many centre blocks, near ties, exact
    //! ties, non-finite rows and thread counts.
    #![allow(clippy::needless_range_loop)]
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::super::block::Path;
    use super::super::*;
    use super::split;
    use crate::matrix::MatRef;

    fn prepared(c: &[f32], k: usize, d: usize, metric: Metric) -> Option<PreparedCentres<f32>> {
        let p = PreparedCentres::new(MatRef::new(c, k, d).unwrap(), metric);
        if p.amx.is_none() {
            eprintln!("AMX not available here (or shape too small): skipped");
            return None;
        }
        Some(p)
    }

    /// f64 distances of one row to every centre, by the kernel's criterion
    /// (squared distance, or minus the dot product with the normalised
    /// centre under cosine).
    fn exact_row(row: &[f32], centres: &[f32], d: usize, metric: Metric) -> Vec<f64> {
        centres
            .chunks_exact(d)
            .map(|c| match metric {
                Metric::SquaredEuclidean => row
                    .iter()
                    .zip(c)
                    .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                    .sum(),
                Metric::Cosine => -row
                    .iter()
                    .zip(c)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>(),
            })
            .collect()
    }

    /// Runs the AMX kernel on one problem: every label is the exact nearest
    /// centre (f64 brute force), differs from the AVX-512 kernel's only on
    /// near ties that kernel's rounding cannot split, the distances are
    /// accurate to f32, and the sums are those of the labels.
    fn compare(what: &str, x: &[f32], c: &[f32], n: usize, d: usize, k: usize, metric: Metric) {
        let Some(centres) = prepared(c, k, d, metric) else {
            return;
        };
        let xm = MatRef::new(x, n, d).unwrap();
        let w: Vec<f32> = (0..n).map(|i| 0.5 + (i % 3) as f32).collect();
        let (mut l_amx, mut l_ref) = (vec![0u32; n], vec![0u32; n]);
        let (mut s_amx, mut s_ref) = (vec![0f32; n], vec![0f32; n]);
        assign_on(None, xm, &centres, &mut l_amx, &mut s_amx);
        assign_on(Some(Path::Avx512), xm, &centres, &mut l_ref, &mut s_ref);
        // The other product mode gives the same labels and distances.
        let amx = centres.amx.as_deref().unwrap();
        let coarse = amx.try_coarse.load(std::sync::atomic::Ordering::Relaxed);
        amx.try_coarse
            .store(!coarse, std::sync::atomic::Ordering::Relaxed);
        let (mut l_other, mut s_other) = (vec![0u32; n], vec![0f32; n]);
        assign_on(None, xm, &centres, &mut l_other, &mut s_other);
        assert_eq!(l_other, l_amx, "{what}: labels in both product modes");
        assert_eq!(s_other, s_amx, "{what}: distances in both product modes");
        // The sums of each 2048-row chunk, added in chunk order (as the
        // kernels reduce them).
        let mut want = ClusterStats::new(k, d);
        let mut chunk = ClusterStats::new(k, d);
        let mut exact_loss = 0.0;
        for i in 0..n {
            if i % CHUNK_ROWS == 0 && i > 0 {
                want.merge(&chunk);
                chunk.clear();
            }
            let row = &x[i * d..(i + 1) * d];
            let all = exact_row(row, &centres.centres, d, metric);
            let best = all.iter().cloned().fold(f64::INFINITY, f64::min);
            let (l, r) = (l_amx[i] as usize, l_ref[i] as usize);
            assert!(
                all[l] <= best + 1e-12 * best.abs(),
                "{what}: row {i} label {l} at {} but the nearest is at {best}",
                all[l]
            );
            if l != r {
                let xs: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum();
                let tol = 2e-5 * (xs + centres.sq_norms()[l] as f64 + 1.0) * (d as f64).sqrt();
                assert!(
                    (all[l] - all[r]).abs() <= tol,
                    "{what}: row {i}: AMX label {l} ({}) vs AVX-512 label {r} ({}) is no near tie",
                    all[l],
                    all[r]
                );
            }
            let exact = match metric {
                Metric::SquaredEuclidean => all[l],
                Metric::Cosine => 1.0 + all[l] * inv_norm(row),
            };
            exact_loss += w[i] as f64 * exact;
            let scale = match metric {
                Metric::SquaredEuclidean => exact + 1e-30,
                Metric::Cosine => 1.0,
            };
            assert!(
                (s_amx[i] as f64 - exact).abs() <= 1e-5 * scale,
                "{what}: row {i} distance {} vs exact {exact}",
                s_amx[i]
            );
            let scale = w[i] as f64
                * match metric {
                    Metric::SquaredEuclidean => 1.0,
                    Metric::Cosine => inv_norm(row),
                };
            for p in 0..d {
                chunk.sums[l * d + p] += scale * row[p] as f64;
            }
            chunk.weights[l] += w[i] as f64;
            chunk.counts[l] += 1;
        }
        want.merge(&chunk);
        let mut got = ClusterStats::new(k, d);
        let mut labels = vec![0u32; n];
        assign_accumulate_on(
            None,
            PARTIAL_BYTES,
            xm,
            Some(&w),
            &centres,
            Some(&mut labels),
            &mut got,
        );
        assert_eq!(labels, l_amx, "{what}: accumulate's labels");
        assert_eq!(got.counts, want.counts, "{what}: counts");
        assert_eq!(got.weights, want.weights, "{what}: weights");
        if let Some(i) = (0..k * d).find(|&i| got.sums[i] != want.sums[i]) {
            panic!("{what}: sum {i}: {} vs {}", got.sums[i], want.sums[i]);
        }
        // Cosine distances are `1 - cos`, absolute f32 precision per row.
        let scale = match metric {
            Metric::SquaredEuclidean => exact_loss.abs(),
            Metric::Cosine => w.iter().map(|&v| v as f64).sum(),
        };
        assert!(
            (got.loss - exact_loss).abs() <= 1e-5 * scale,
            "{what}: loss {} vs exact {exact_loss}",
            got.loss
        );
    }

    fn uniform(rng: &mut ChaCha8Rng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| rng.gen_range(lo..hi)).collect()
    }

    #[test]
    fn labels_are_exact_on_random_shapes() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for &(n, d, k) in &[
            (100, 64, 32),
            (257, 65, 33),
            (2100, 95, 64),
            (4500, 97, 100),
            (700, 64, 257),
            (3000, 128, 1000),
            (300, 300, 2000),
            (500, 784, 100),
        ] {
            for metric in [Metric::SquaredEuclidean, Metric::Cosine] {
                let x = uniform(&mut rng, n * d, -3.0, 3.0);
                let c = uniform(&mut rng, k * d, -3.0, 3.0);
                compare(
                    &format!("{n}x{d} k={k} {metric:?}"),
                    &x,
                    &c,
                    n,
                    d,
                    k,
                    metric,
                );
            }
        }
    }

    #[test]
    fn near_ties_far_from_the_origin_are_decided_exactly() {
        // Pixel-like data (large, all positive) whose centres are close to
        // one another: many rows have several candidates, and rows exactly
        // halfway between two centres tie in exact arithmetic.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (n, d, k) = (3000, 96, 64);
        let base = uniform(&mut rng, d, 100.0, 200.0);
        let mut c = Vec::with_capacity(k * d);
        for _ in 0..k {
            c.extend(base.iter().map(|&b| b + rng.gen_range(-0.5f32..0.5)));
        }
        let mut x = Vec::with_capacity(n * d);
        for i in 0..n {
            let (a, b) = (i % k, (i * 7 + 3) % k);
            for p in 0..d {
                let v = match i % 3 {
                    0 => 0.5 * (c[a * d + p] + c[b * d + p]),
                    1 => c[a * d + p] + rng.gen_range(-0.01f32..0.01),
                    _ => base[p] + rng.gen_range(-1.0f32..1.0),
                };
                x.push(v);
            }
        }
        compare("near ties", &x, &c, n, d, k, Metric::SquaredEuclidean);
        compare("near ties cosine", &x, &c, n, d, k, Metric::Cosine);
    }

    #[test]
    fn pixel_rows_skip_the_low_segment_and_stay_exact() {
        // Integers 0..=255 have no low bf16 half: blocks of them skip the
        // first product segment; a block mixing them with other rows does
        // not.
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let (n, d, k) = (2500, 100, 50);
        let mut x: Vec<f32> = (0..n * d).map(|_| rng.gen_range(0..=255) as f32).collect();
        for v in &mut x[40 * d..41 * d] {
            *v += 0.3;
        }
        let c = uniform(&mut rng, k * d, 0.0, 255.0);
        compare("pixels", &x, &c, n, d, k, Metric::SquaredEuclidean);
        compare("pixels cosine", &x, &c, n, d, k, Metric::Cosine);
    }

    #[test]
    fn duplicate_centres_go_to_the_first_copy() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (n, d, k) = (1000, 72, 48);
        let mut c = uniform(&mut rng, k * d, -1.0, 1.0);
        // Centres 5, 20 and 47 are copies of centre 30.
        for j in [5, 20, 47] {
            let src: Vec<f32> = c[30 * d..31 * d].to_vec();
            c[j * d..(j + 1) * d].copy_from_slice(&src);
        }
        let mut x = uniform(&mut rng, n * d, -1.0, 1.0);
        for i in (0..n).step_by(4) {
            let src: Vec<f32> = c[30 * d..31 * d].to_vec();
            x[i * d..(i + 1) * d].copy_from_slice(&src);
        }
        compare("duplicates", &x, &c, n, d, k, Metric::SquaredEuclidean);
        let Some(centres) = prepared(&c, k, d, Metric::SquaredEuclidean) else {
            return;
        };
        let mut labels = vec![0u32; n];
        let mut scores = vec![0f32; n];
        assign(
            MatRef::new(&x, n, d).unwrap(),
            &centres,
            &mut labels,
            &mut scores,
        );
        for i in (0..n).step_by(4) {
            assert_eq!(
                labels[i], 5,
                "row {i} is centre 30's copy: lowest copy wins"
            );
            assert_eq!(scores[i], 0.0);
        }
    }

    #[test]
    fn non_finite_tiny_and_huge_rows() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (n, d, k) = (64, 64, 40);
        let c = uniform(&mut rng, k * d, -1.0, 1.0);
        let mut x = uniform(&mut rng, n * d, -1.0, 1.0);
        for v in &mut x[20 * d..21 * d] {
            *v *= 3e18; // beyond the margin's range: decided exactly
        }
        for v in &mut x[21 * d..22 * d] {
            *v *= 1e-30; // subnormal halves, flushed by the tile unit
        }
        compare(
            "tiny and huge rows",
            &x,
            &c,
            n,
            d,
            k,
            Metric::SquaredEuclidean,
        );
        x[3 * d + 7] = f32::NAN;
        let Some(centres) = prepared(&c, k, d, Metric::SquaredEuclidean) else {
            return;
        };
        let mut labels = vec![7u32; n];
        let mut scores = vec![0f32; n];
        assign(
            MatRef::new(&x, n, d).unwrap(),
            &centres,
            &mut labels,
            &mut scores,
        );
        assert_eq!(labels[3], 0, "a NaN row goes to centre 0, as on every path");
    }

    #[test]
    fn one_and_two_threads_give_bit_identical_results() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (n, d, k) = (3 * CHUNK_ROWS + 123, 70, 70);
        let x = uniform(&mut rng, n * d, -2.0, 2.0);
        let c = uniform(&mut rng, k * d, -2.0, 2.0);
        let w: Vec<f32> = (0..n).map(|_| rng.gen_range(0.5f32..2.0)).collect();
        for metric in [Metric::SquaredEuclidean, Metric::Cosine] {
            let Some(centres) = prepared(&c, k, d, metric) else {
                return;
            };
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let xm = MatRef::new(&x, n, d).unwrap();
                    let mut labels = vec![0u32; n];
                    let mut stats = ClusterStats::new(k, d);
                    assign_accumulate(xm, Some(&w), &centres, Some(&mut labels), &mut stats);
                    let mut scores = vec![0f32; n];
                    assign(xm, &centres, &mut labels, &mut scores);
                    (labels, stats, scores)
                })
            };
            let (one, two) = (run(1), run(2));
            assert_eq!(one.0, two.0, "{metric:?} labels");
            assert_eq!(one.1, two.1, "{metric:?} statistics");
            assert_eq!(one.2, two.2, "{metric:?} distances");
        }
    }

    #[test]
    fn transpose_of_sixteen_by_sixteen() {
        if !super::available() {
            return;
        }
        let stride = 21;
        let src: Vec<u32> = (0..16 * stride as u32).collect();
        let mut dst = vec![0u32; 256];
        unsafe { super::transpose16(src.as_ptr(), stride, dst.as_mut_ptr()) };
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(dst[j * 16 + i], src[i * stride + j], "({i}, {j})");
            }
        }
    }

    #[test]
    fn bf16_split_recovers_sixteen_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..10_000 {
            let v: f32 = rng.gen_range(-1e6f32..1e6) * rng.gen_range(0.0f32..1.0).powi(4);
            let (hi, lo) = split(v);
            let back =
                f32::from_bits((hi as u32) << 16) as f64 + f32::from_bits((lo as u32) << 16) as f64;
            assert!(
                (back - v as f64).abs() <= (v as f64).abs() * 2f64.powi(-16),
                "{v}: {back}"
            );
        }
        // Ties round to even; 1 + 2^-8 is halfway between bf16 neighbours.
        assert_eq!(split(1.0 + 2f32.powi(-8)).0, 0x3f80);
        assert_eq!(split(1.0 + 3.0 * 2f32.powi(-8)).0, 0x3f82);
    }
}
