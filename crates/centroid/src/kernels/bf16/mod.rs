//! bf16 candidates, exact decisions: the assignment kernel for f32 data on
//! x86-64 processors with AMX-BF16 (Sapphire Rapids and later, Linux) or
//! AVX512-BF16 (AMD Zen 4 and later; Intel Cooper Lake).
//!
//! bf16 products run two (`vdpbf16ps`) to ten (the AMX tile unit) times
//! faster than the AVX-512 kernel's f32 fused multiply-adds, but bf16 keeps
//! 8 bits. So:
//!
//! - **Split products.** Each f32 value `v` is split into bf16 `hi = bf16(v)`
//!   and `lo = bf16(v - hi)`. The dot products are taken over the
//!   concatenated vectors `[x_lo | x_hi | x_hi] . [c_hi | c_lo | c_hi]`: one
//!   GEMM of depth `3 dpad` (d padded to 32) accumulating in f32,
//!   whose omitted terms are below `3.1 * 2^-16 |x_p| |c_p|` each. The two
//!   small segments come first so that their roundings happen on small sums.
//!   The coarse products take the last segment alone, `x_hi . c_hi`, with a
//!   wider margin (more candidates) for a third of the work.
//! - **Two engines** compute the products, with the same roundings (one per
//!   depth element, along the depth in order; see `dots.rs`): the tile unit
//!   (`tiles.rs`, `tdpbf16ps`) where the processor has AMX, else AVX512-BF16
//!   (`dots.rs`, `vdpbf16ps`). Both take the rows in the layout `rows.rs`
//!   makes, and leave the products where `decide.rs` reads them.
//! - **A rigorous margin.** Let `V_j = ||c_j||^2 / 2 - x.c_j` (or `-x.c^_j`
//!   under cosine), whose argmin is the nearest centre, and `A_j` its bf16
//!   approximation. With `S = sum_p |x_p| |c_jp| <= ||x|| ||c_j||`, the split,
//!   the products' roundings and this module's own f32 arithmetic bound
//!   `|A_j - V_j|` by `E_j = ||x|| w_j + e_b |b_j| + eta`, with `w_j` a
//!   multiple of `||c_j||` for the full products and, for the coarse ones,
//!   mostly the centre's own bf16 rounding `||c_j - c_hi_j||` (Cauchy-Schwarz;
//!   see [`Bf16Centres::new`]). The nearest centre `j*` then satisfies
//!   `A_j* - E_j* <= U = min_j (A_j + E_j)`: the row's candidates are
//!   `{j : A_j - E_j <= U}`.
//! - **Exact decisions.** A single candidate is the nearest centre. Several
//!   (near ties, duplicate centres) are decided by f64 distances, lowest
//!   index on ties; so are rows the margin cannot bound (non-finite or
//!   enormous values).
//!
//! The labels are therefore the exact nearest centres, where the AVX-512
//! kernel may split a near tie by its rounding (the two agree everywhere
//! else), and both engines give the same labels, distances and sums. Each
//! row's distance is then computed directly, `||x - c||^2` (or
//! `1 - x.c^ / ||x||`) in f32 with lanes over the dimensions, which avoids the
//! cancellation of `||x||^2 - 2 x.c + ||c||^2`; the sums are added as the
//! AVX-512 kernel adds them (row order, `scale * x` in f64).
//!
//! Tiles are configured at the start of every chunk and released at its end,
//! on the thread that runs it; the operating system is asked once per
//! process for permission to use the tile state.
//!
//! Which engine runs: the tile unit where the processor has AMX and
//! `CENTROID_AMX` is not `0`; else the vector products on AMD processors
//! with AVX512-BF16, where they outrun f32 (see [`vector_products_pay`]),
//! or anywhere with AVX512-BF16 when `CENTROID_BF16=1`; else none (the f32
//! kernels run). `CENTROID_BF16=0` turns both engines off.

mod decide;
mod dots;
mod rows;
#[cfg(test)]
mod tests;
mod tiles;

use std::arch::x86_64::__mmask16;

use super::isa::{AmxBf16, Avx512Bf16};
use super::scalar::{ClusterStats, Metric};
use decide::{decide_lanes, finish, Candidates};
use rows::{convert_row, transpose16, Aligned, SCRATCH};
use tiles::{configure_tiles, release_tiles};

/// Which unit computes the bf16 products; the token proves this process
/// runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Engine {
    /// The AMX tile unit (`tdpbf16ps`), `tiles.rs`.
    Tiles(AmxBf16),
    /// AVX512-BF16 vector products (`vdpbf16ps`), `dots.rs`.
    Dots(Avx512Bf16),
}

impl Engine {
    /// The engine this process uses by default, if any: the tile unit where
    /// it runs; else the vector products where they outrun the f32 kernel
    /// (see [`vector_products_pay`]).
    pub(crate) fn detect() -> Option<Self> {
        AmxBf16::detect().map(Engine::Tiles).or_else(|| {
            Avx512Bf16::detect()
                .filter(|_| vector_products_pay())
                .map(Engine::Dots)
        })
    }

    /// The smallest `k` and `d` this engine serves. Tile unit (measured on
    /// Sapphire Rapids): at `d = 64, k = 128` it and the AVX-512 kernel take
    /// the same time, below it AVX-512 is faster, above it the tile unit, by
    /// 1.7x at `d = 128, k = 1000` and 2x at `d = 784, k = 100`.
    fn min_shape(self) -> (usize, usize) {
        match self {
            Engine::Tiles(_) => (32, 64),
            Engine::Dots(_) => (DOTS_MIN_K, DOTS_MIN_D),
        }
    }

    /// The multiple `k` is padded to: the tile unit's step takes two
    /// 16-centre tiles; the vector products take centres in register
    /// groups of [`dots::GROUP`], and every padded centre costs a full
    /// row of products (k = 100 pads to 104 there, not 128).
    fn centre_block(self) -> usize {
        match self {
            Engine::Tiles(_) => BLOCK_CENTRES,
            Engine::Dots(_) => dots::GROUP,
        }
    }

    /// bf16 products per cycle and core, for the choice between coarse and
    /// fine products: the tile unit's measured rate; one 512-bit
    /// `vdpbf16ps` (32 products) per cycle.
    fn products_per_cycle(self) -> f64 {
        match self {
            Engine::Tiles(_) => 108.0,
            Engine::Dots(_) => 32.0,
        }
    }
}

/// Whether `vdpbf16ps` outruns the f32 kernel's fused multiply-adds here,
/// so that the AVX512-BF16 engine is the default where there is no tile
/// unit: `CENTROID_BF16=1` says yes, otherwise the processor's vendor does.
///
/// - AMD Zen 4 and later issue one 512-bit `vdpbf16ps` (32 products) per
///   cycle, like one 512-bit f32 FMA (16 products): the coarse products
///   take half the f32 kernel's time.
/// - Intel's (Sapphire Rapids, measured; Cooper Lake, by Intel's tables)
///   issue one every two cycles while two f32 FMAs issue per cycle: 37
///   against 78 billion products per second on one Sapphire Rapids core,
///   so the f32 kernel stays (the tile unit serves these processors where
///   it exists).
///
/// The choice depends on the machine only, never on timing, so results
/// stay the same from run to run; the labels are the exact nearest centres
/// either way, but the f32 kernel may split a near tie by its rounding.
fn vector_products_pay() -> bool {
    // Asked once per process, like the engines' tokens: centres are
    // prepared every iteration.
    static PAY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PAY.get_or_init(|| match std::env::var("CENTROID_BF16") {
        Ok(v) if v.trim() == "1" => true,
        _ => cpu_vendor_is_amd(),
    })
}

/// Whether CPUID names the vendor `AuthenticAMD`.
fn cpu_vendor_is_amd() -> bool {
    // (`__cpuid` is a safe function on current compilers.)
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 processor and only reads
    // identification registers.
    let leaf0 = unsafe { std::arch::x86_64::__cpuid(0) };
    let mut name = [0u8; 12];
    name[..4].copy_from_slice(&leaf0.ebx.to_le_bytes());
    name[4..8].copy_from_slice(&leaf0.edx.to_le_bytes());
    name[8..].copy_from_slice(&leaf0.ecx.to_le_bytes());
    &name == b"AuthenticAMD"
}

/// The smallest `k` and `d` the AVX512-BF16 engine serves.
const DOTS_MIN_K: usize = 32;
const DOTS_MIN_D: usize = 64;

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

/// The step of the rows' `[x_lo | x_hi]` that depth step `step` of the
/// products `[x_lo | x_hi | x_hi] . [c_hi | c_lo | c_hi]` reads, with `seg`
/// steps per segment (tiles of 32 values, or pairs): the third segment is
/// the second again.
#[inline(always)]
fn x_step(step: usize, seg: usize) -> usize {
    if step >= 2 * seg {
        step - seg
    } else {
        step
    }
}

/// The mask of the first `min(rest, 16)` of sixteen f32 lanes.
#[inline(always)]
fn first_lanes(rest: usize) -> __mmask16 {
    if rest >= 16 {
        0xffff
    } else {
        (1u16 << rest) - 1
    }
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

/// Centres packed for one engine's products, with the per-centre terms of
/// the margin.
#[derive(Debug)]
pub(crate) struct Bf16Centres {
    /// The engine, with the proof that this process runs it.
    engine: Engine,
    k: usize,
    d: usize,
    /// `d` rounded up to [`TILE_DEPTH`].
    dpad: usize,
    /// `k` rounded up to the engine's [`Engine::centre_block`].
    kpad: usize,
    metric: Metric,
    /// The centres' `[c_hi | c_lo | c_hi]` in bf16, as the engine takes
    /// them. Tiles: the products' right operand, for each group of 16
    /// centres `3 dpad / 32` tiles of 16 pairs along the depth x 16 centres,
    /// each tile contiguous. Dots: see [`dots::packed_index`].
    packed: Aligned<u16>,
    /// The margins of the full products and of the coarse `x_hi . c_hi`
    /// alone.
    fine: Margin,
    coarse: Margin,
    /// The coarse margin of blocks whose rows are exact in bf16.
    coarse_whole: Margin,
    /// Extra candidates per row above which the coarse products cost more
    /// (in exact decisions) than the two segments they skip.
    coarse_limit: f64,
    /// Whether chunks start coarse; cleared by a chunk that found it too
    /// costly. The labels do not depend on it (see [`run_impl`]).
    try_coarse: std::sync::atomic::AtomicBool,
    /// Largest upper bound of `||c_j||`.
    max_norm: f64,
}

/// One product mode's margin terms: `E_j = ||x|| w_j + e_b |b_j| + eta`,
/// the `|b_j|` term folded into the biases (see [`Bf16Centres::new`]).
#[derive(Debug)]
struct Margin {
    /// `b_j + e_b |b_j|` and `b_j - e_b |b_j|`.
    bias_up: Vec<f32>,
    bias_down: Vec<f32>,
    /// `w_j`, rounded up.
    weights: Vec<f32>,
}

impl Margin {
    fn new(kpad: usize) -> Self {
        Self {
            bias_up: vec![0.0; kpad],
            bias_down: vec![0.0; kpad],
            weights: vec![0.0; kpad],
        }
    }
    /// Centre `j`'s terms: its bias `b`, `w_j = weight` and `e_b`.
    fn set(&mut self, j: usize, b: f32, weight: f64, bias_eps: f64) {
        let slack = bias_eps * (b as f64).abs();
        self.bias_up[j] = (b as f64 + slack) as f32;
        self.bias_down[j] = (b as f64 - slack) as f32;
        // The extra millionth covers the rounding to f32.
        self.weights[j] = (weight * (1.0 + 1e-6)) as f32;
    }
}

impl Bf16Centres {
    /// Packs the `k x d` centres (as the kernels see them: normalised under
    /// cosine) with the AVX-512 kernel's squared norms, or `None` when no
    /// engine runs here or none would pay off for this shape.
    pub(crate) fn new(
        centres: &[f32],
        sq_norms: &[f32],
        k: usize,
        d: usize,
        metric: Metric,
    ) -> Option<Self> {
        Self::on(Engine::detect()?, centres, sq_norms, k, d, metric)
    }

    /// [`Self::new`] on a given engine.
    pub(crate) fn on(
        engine: Engine,
        centres: &[f32],
        sq_norms: &[f32],
        k: usize,
        d: usize,
        metric: Metric,
    ) -> Option<Self> {
        // Below these sizes the AVX-512 kernel is as fast: its work per row
        // is small, while each bf16 product here is short (few depth steps
        // to hide the products' latency) and each row carries fixed costs
        // (conversion, two scans of its k values, the exact distance).
        let (min_k, min_d) = engine.min_shape();
        let kpad = k.next_multiple_of(engine.centre_block());
        if k < min_k || d < min_d || kpad > MAX_KPAD {
            return None;
        }
        let dpad = d.next_multiple_of(TILE_DEPTH);
        let depth = 3 * dpad;
        let steps = depth / TILE_DEPTH;
        let mut packed = Aligned::<u16>::zeroed(kpad * depth);
        let t = packed.as_mut_slice();
        let mut max_norm = 0.0f64;
        // rounding: the tile unit's f32 accumulation (1.04 dpad roundings on
        // sums of at most S, the small segments' roundings being 2^-7
        // smaller), and 16 more roundings for the bias (||c||^2 / 2 rounded
        // to f32), the subtraction and the comparisons done here in f32.
        let rounding = (1.04 * dpad as f64 + 16.0) * U32;
        let mut fine = Margin::new(kpad);
        let mut coarse = Margin::new(kpad);
        let mut coarse_whole = Margin::new(kpad);
        for j in 0..k {
            let row = &centres[j * d..(j + 1) * d];
            let (g, n) = (j / 16, j % 16);
            let mut sq = 0.0f64;
            // ||c_j - c_hi_j||^2: each difference is exact in f32.
            let mut sq_rest = 0.0f64;
            for (p, &v) in row.iter().enumerate() {
                sq += v as f64 * v as f64;
                let (hi, lo) = split(v);
                let rest = v - f32::from_bits((hi as u32) << 16);
                sq_rest += rest as f64 * rest as f64;
                for (pos, bits) in [(p, hi), (dpad + p, lo), (2 * dpad + p, hi)] {
                    let at = match engine {
                        Engine::Tiles(_) => {
                            // The products' right operand: a tile row per
                            // pair of depth values, the 16 centres' pairs
                            // side by side.
                            let (step, col) = (pos / TILE_DEPTH, pos % TILE_DEPTH);
                            ((g * steps + step) * 16 + col / 2) * TILE_DEPTH + 2 * n + col % 2
                        }
                        Engine::Dots(_) => dots::packed_index(j, pos, depth),
                    };
                    t[at] = bits;
                }
            }
            let norm = sq.sqrt() * (1.0 + 1e-6);
            if !norm.is_finite() || norm * norm > MAX_NORM_PRODUCT {
                return None;
            }
            max_norm = max_norm.max(norm);
            let b = match metric {
                Metric::SquaredEuclidean => sq_norms[j] * 0.5,
                Metric::Cosine => 0.0,
            };
            // The full products omit terms below 3.1 * 2^-16 |x_p| |c_p|
            // each (the split): with S <= ||x|| ||c_j||, w_j = (3.1 * 2^-16
            // + rounding) ||c_j||.
            let split_eps = 3.1 / 65536.0 + rounding;
            fine.set(j, b, split_eps * norm, split_eps);
            // The coarse products omit x_hi . (c_j - c_hi_j) + (x - x_hi) . c_j.
            // By Cauchy-Schwarz the first is at most ||x_hi|| ||c_j - c_hi_j||
            // (||x_hi|| <= (1 + 2^-8) ||x||), and each |x_p - x_hi_p| is at
            // most 2^-8 |x_p| (half a bf16 step at the bottom of a binade),
            // so the second is at most 2^-8 S. The centre's own rounding,
            // about a fifth of the 2^-8 ||c_j|| that a per-value bound
            // gives, is what most of the margin of whole rows is.
            let rest = sq_rest.sqrt() * (1.0 + 1e-6);
            coarse.set(
                j,
                b,
                1.01 * (rest + norm / 256.0) + rounding * norm,
                rounding,
            );
            // Rows whose values are bf16 already (x = x_hi but for
            // subnormal remainders, which eta covers) leave the first term
            // alone (pixel intensities and other small whole numbers).
            coarse_whole.set(j, b, 1.01 * rest + rounding * norm, rounding);
        }
        Some(Self {
            engine,
            k,
            d,
            dpad,
            kpad,
            metric,
            packed,
            fine,
            coarse,
            coarse_whole,
            // Skipping two segments saves about dpad kpad / rate cycles per
            // row; an extra candidate costs about 0.3 d + 30 cycles of f64
            // distance.
            coarse_limit: (dpad * kpad) as f64
                / engine.products_per_cycle()
                / (0.3 * d as f64 + 30.0),
            try_coarse: std::sync::atomic::AtomicBool::new(true),
            max_norm,
        })
    }
}

impl Bf16Centres {
    /// Whether the AVX512-BF16 vector products compute them (not the tile
    /// unit).
    pub(crate) fn on_vector_products(&self) -> bool {
        matches!(self.engine, Engine::Dots(_))
    }
}

/// One chunk's work for [`run`].
pub(crate) struct Chunk<'a> {
    /// `rows x d`, row-major.
    pub(crate) x: &'a [f32],
    /// The centres as the kernels see them, `k x d` row-major.
    pub(crate) centres: &'a [f32],
    pub(crate) labels: &'a mut [u32],
    /// Each row's distance to its centre, when wanted (and for the loss of
    /// `part` without `exact_loss`).
    pub(crate) scores: Option<&'a mut [f32]>,
    pub(crate) weights: Option<&'a [f32]>,
    /// When given, the rows are added to these sums.
    pub(crate) part: Option<&'a mut ClusterStats>,
    /// With `part`: the rows added as [`crate::kernels::add_labelled`] adds
    /// them, to the same bits (see [`crate::kernels::assign_add_labelled`]), the
    /// scores left unset.
    pub(crate) exact_loss: bool,
}

/// Labels and distances of a chunk's rows, and with `part` their sums.
pub(crate) fn run(c: &Bf16Centres, chunk: Chunk<'_>) {
    let rows = chunk.labels.len();
    assert!(chunk.x.len() == rows * c.d);
    assert!(chunk.scores.as_ref().is_none_or(|s| s.len() == rows));
    assert!(chunk.centres.len() == c.k * c.d);
    assert!(chunk.weights.is_none_or(|w| w.len() == rows));
    // SAFETY: `c.engine` holds a token that proves the CPU has
    // AVX-512F/BW/DQ/VL, FMA and the engine's products (AMX-TILE and
    // AMX-BF16 with the tile state granted, or AVX512-BF16); the asserts
    // above keep every access to the rows, centres and outputs in bounds.
    unsafe { run_impl(c, chunk) }
}

/// [`run`]'s body, compiled for the vector features the rows' and the
/// decisions' helpers use.
///
/// # Safety
///
/// The chunk is shaped as [`run`] asserts; `c.engine` shows the CPU runs it.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16")]
unsafe fn run_impl(c: &Bf16Centres, chunk: Chunk<'_>) {
    // SAFETY: the engine's token proves the CPU runs AVX-512F/BW/DQ/VL, FMA,
    // AVX512-BF16 and the engine, and `run` asserted the shapes that keep every access in
    // bounds.
    unsafe {
        let Chunk {
            x,
            centres,
            labels,
            mut scores,
            weights,
            mut part,
            exact_loss,
        } = chunk;
        let (d, k, dpad) = (c.d, c.k, c.dpad);
        let rows = labels.len();
        // The rows' depth: `[x_lo | x_hi]`, the products' third segment
        // read from the second (`x_step`).
        let xdepth = 2 * dpad;
        let xsteps = xdepth / TILE_DEPTH;
        let mut scratch = SCRATCH.with(|s| s.take());
        scratch.fit(xdepth, c.kpad, matches!(c.engine, Engine::Dots(_)));
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
        let mut chain = match (&part, exact_loss) {
            (Some(p), true) => Some(p.loss),
            _ => None,
        };
        let tiles = matches!(c.engine, Engine::Tiles(_));
        if tiles {
            configure_tiles();
        }
        for r0 in (0..rows).step_by(BLOCK_ROWS) {
            let nr = BLOCK_ROWS.min(rows - r0);
            // Rows past `nr` keep earlier values: their products are computed
            // and never read.
            let xrows = scratch.rows.as_mut_slice();
            let mut lo_zero = true;
            for r in 0..nr {
                let row = &x[(r0 + r) * d..(r0 + r + 1) * d];
                let (norm, zero) = convert_row(row, dpad, &mut xrows[r * xdepth..(r + 1) * xdepth]);
                norms[r] = norm;
                lo_zero &= zero;
            }
            // Coarse blocks take x_hi . c_hi alone (the last segment); when no
            // row of the block has a low half, the first segment (x_lo . c_hi)
            // is zero and is skipped.
            let seg = dpad / TILE_DEPTH;
            let (first_step, margin, saved) = if coarse && lo_zero {
                (2 * seg, &c.coarse_whole, 1.0)
            } else if coarse {
                (2 * seg, &c.coarse, 2.0)
            } else if lo_zero {
                (seg, &c.fine, 0.0)
            } else {
                (0, &c.fine, 0.0)
            };
            let dots = scratch.dots.as_mut_slice().as_mut_ptr();
            let next = (r0 + BLOCK_ROWS).min(rows);
            let ahead = (BLOCK_ROWS.min(rows - next)) * d * 4;
            let next = x.as_ptr().add(next * d) as *const u8;
            let src = xrows.as_ptr();
            match c.engine {
                // The tile unit reads the rows as they are (left operand).
                Engine::Tiles(_) => {
                    tiles::block_dots(c, src, xdepth, dots, first_step, next, ahead)
                }
                Engine::Dots(_) => {
                    // Pairs of bf16 along the depth are one u32: transposing
                    // 16 rows x 16 pairs gives, for each pair, the 16 rows'
                    // values as one vector for `vdpbf16ps`.
                    // Only the steps the products read, from the one
                    // the first product step reads on: x_hi alone unless
                    // the block starts in the first segment (x_lo . c_hi).
                    let xt = scratch.xt.as_mut_slice().as_mut_ptr();
                    let read_from = x_step(first_step, seg);
                    for g in 0..2 {
                        for st in read_from..xsteps {
                            transpose16(
                                src.add(g * 16 * xdepth + st * TILE_DEPTH) as *const u32,
                                xdepth / 2,
                                xt.add((g * xsteps + st) * TILE_VALUES) as *mut u32,
                            );
                        }
                    }
                    dots::block_dots(c, xt, dots, first_step, next, ahead)
                }
            }
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
                scores.as_deref_mut(),
                weights,
                part.as_deref_mut(),
                &mut loss,
                chain.as_mut(),
            );
        }
        if tiles {
            release_tiles();
        }
        SCRATCH.with(|s| s.set(scratch));
        if let Some(p) = part {
            match chain {
                Some(chain) => p.loss = chain,
                None => p.loss += (loss[0] + loss[1]) + (loss[2] + loss[3]),
            }
        }
    }
}
