//! The few vector operations the blocked kernels need, once per instruction
//! set: AVX-512F, AVX2+FMA (x86-64 only) and a portable fallback written on
//! plain arrays that any target compiles.
//!
//! Every method is `#[inline(always)]` and `unsafe`: the x86 ones are only
//! sound inside a function compiled with the matching `#[target_feature]`
//! (the dispatch in `block.rs` guarantees that), and the loads and stores read
//! `LANES` values through raw pointers the caller keeps in bounds.
//!
//! Centre indices travel through the argmin as floats of the element type
//! (exact below 2^24 for f32), so one vector type and one mask type serve both
//! the values and the indices.

use crate::float::Float;
#[allow(unused_imports)]
use num_traits::{Float as _, One as _, Zero as _};

/// One instruction set's vectors of one element type.
pub(crate) trait Simd: Copy {
    /// The element type.
    type T: Float;
    /// A vector of `LANES` elements.
    type V: Copy;
    /// The result of a lane-wise comparison.
    type M: Copy;
    const LANES: usize;

    unsafe fn splat(v: Self::T) -> Self::V;
    unsafe fn load(p: *const Self::T) -> Self::V;
    unsafe fn store(p: *mut Self::T, v: Self::V);
    /// `c - a * b` (fused where the instruction set has FMA).
    unsafe fn fnmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `c + a * b` (fused where the instruction set has FMA).
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// `a < b` lane-wise (false where either is NaN).
    unsafe fn lt(a: Self::V, b: Self::V) -> Self::M;
    /// `a == b` lane-wise.
    unsafe fn eq(a: Self::V, b: Self::V) -> Self::M;
    /// `m ? t : f` lane-wise.
    unsafe fn select(m: Self::M, t: Self::V, f: Self::V) -> Self::V;
    /// The smallest lane.
    unsafe fn reduce_min(v: Self::V) -> Self::T;
    /// The lowest lane set in `m` (`LANES` or more when none is).
    unsafe fn first_lane(m: Self::M) -> u32;

    /// `acc[p] += scale * row[p]` for `p < d`, in f64 (multiply, then add:
    /// the same rounding on every path).
    #[inline(always)]
    unsafe fn accumulate_row(acc: *mut f64, row: *const Self::T, d: usize, scale: f64) {
        for p in 0..d {
            *acc.add(p) += scale * (*row.add(p)).to_f64_exact();
        }
    }

    /// [`accumulate_row`], or with `scale = None` the same without the
    /// multiply (the bits of `scale = 1`), into sums `acc` that have room
    /// for `d` rounded up to a multiple of 8: the lanes past `d` may be
    /// added to (0, or NaN where `scale` is not finite) and are to be
    /// ignored. Whole-vector loads and stores are then possible: a masked
    /// store forwards to no later load, so a masked read-modify-write of
    /// the same sums stalls whenever a cluster repeats within a few rows.
    ///
    /// [`accumulate_row`]: Simd::accumulate_row
    #[inline(always)]
    unsafe fn accumulate_padded(acc: *mut f64, row: *const Self::T, d: usize, scale: Option<f64>) {
        match scale {
            Some(s) => Self::accumulate_row(acc, row, d, s),
            None => {
                for p in 0..d {
                    *acc.add(p) += (*row.add(p)).to_f64_exact();
                }
            }
        }
    }

    /// `LANES` consecutive rows of `D` values each, starting at `x`,
    /// transposed: vector `p` holds value `p` of every row (row `r` in lane
    /// `r`).
    #[inline(always)]
    unsafe fn load_columns<const D: usize>(x: *const Self::T) -> [Self::V; D] {
        let mut buf = [Self::T::zero(); MAX_LANES];
        std::array::from_fn(|p| {
            for (r, b) in buf[..Self::LANES].iter_mut().enumerate() {
                *b = *x.add(r * D + p);
            }
            Self::load(buf.as_ptr())
        })
    }

    /// `acc[l] += w[l] * v[l]` (`acc[l] += v[l]` without `w`) for every
    /// lane `l`, in f64 (multiply, then add).
    #[inline(always)]
    unsafe fn accumulate_lanes(acc: *mut f64, v: Self::V, w: Option<*const Self::T>) {
        let mut buf = [Self::T::zero(); MAX_LANES];
        Self::store(buf.as_mut_ptr(), v);
        for (l, b) in buf[..Self::LANES].iter().enumerate() {
            let s = b.to_f64_exact();
            *acc.add(l) += match w {
                Some(w) => (*w.add(l)).to_f64_exact() * s,
                None => s,
            };
        }
    }

    /// Asks for the cache line holding `p` to be brought into L1 (a hint:
    /// `p` may point anywhere, nothing is read through it).
    #[inline(always)]
    unsafe fn prefetch(_p: *const Self::T) {}

    /// Stores the lanes of `v`, small non-negative whole numbers held as
    /// floats (centre indices), as `u32`s at `p`.
    #[inline(always)]
    unsafe fn store_indices(p: *mut u32, v: Self::V) {
        let mut buf = [Self::T::zero(); MAX_LANES];
        Self::store(buf.as_mut_ptr(), v);
        for (i, b) in buf[..Self::LANES].iter().enumerate() {
            *p.add(i) = b.to_f64_exact() as u32;
        }
    }

    /// `sum_p row[p]^2` (summation order is the path's own).
    #[inline(always)]
    unsafe fn sq_norm(row: *const Self::T, d: usize) -> Self::T {
        super::block::sq_norm(std::slice::from_raw_parts(row, d))
    }
}

/// `(smallest value, lowest index holding it)` of a vector of values and one
/// of their indices (as floats). The index is +inf when no lane compares
/// equal to the minimum (all NaN); callers map that to centre 0.
#[inline(always)]
pub(crate) unsafe fn argmin<S: Simd>(values: S::V, indices: S::V) -> (S::T, S::T) {
    let m = S::reduce_min(values);
    let at_min = S::eq(values, S::splat(m));
    let idx = S::reduce_min(S::select(at_min, indices, S::splat(S::T::infinity())));
    (m, idx)
}

/// Widest vector any path uses, in elements (AVX-512 f32).
pub(crate) const MAX_LANES: usize = 16;

/// Width of the portable fallback's arrays: wide enough for the compiler to
/// vectorise them on any SIMD target, narrow enough to stay in registers.
pub(crate) const PORTABLE_LANES: usize = 8;

macro_rules! portable_impl {
    ($name:ident, $t:ty) => {
        /// Plain arrays; the compiler vectorises them where it can.
        #[derive(Clone, Copy)]
        pub(crate) struct $name;

        impl Simd for $name {
            type T = $t;
            type V = [$t; PORTABLE_LANES];
            type M = [bool; PORTABLE_LANES];
            const LANES: usize = PORTABLE_LANES;

            #[inline(always)]
            unsafe fn splat(v: $t) -> Self::V {
                [v; PORTABLE_LANES]
            }
            #[inline(always)]
            unsafe fn load(p: *const $t) -> Self::V {
                (p as *const Self::V).read_unaligned()
            }
            #[inline(always)]
            unsafe fn store(p: *mut $t, v: Self::V) {
                (p as *mut Self::V).write_unaligned(v)
            }
            #[inline(always)]
            unsafe fn fnmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
                std::array::from_fn(|i| c[i] - a[i] * b[i])
            }
            #[inline(always)]
            unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
                std::array::from_fn(|i| c[i] + a[i] * b[i])
            }
            #[inline(always)]
            unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
                std::array::from_fn(|i| a[i] + b[i])
            }
            #[inline(always)]
            unsafe fn max(a: Self::V, b: Self::V) -> Self::V {
                std::array::from_fn(|i| if a[i] > b[i] { a[i] } else { b[i] })
            }
            #[inline(always)]
            unsafe fn lt(a: Self::V, b: Self::V) -> Self::M {
                std::array::from_fn(|i| a[i] < b[i])
            }
            #[inline(always)]
            unsafe fn eq(a: Self::V, b: Self::V) -> Self::M {
                std::array::from_fn(|i| a[i] == b[i])
            }
            #[inline(always)]
            unsafe fn select(m: Self::M, t: Self::V, f: Self::V) -> Self::V {
                std::array::from_fn(|i| if m[i] { t[i] } else { f[i] })
            }
            #[inline(always)]
            unsafe fn reduce_min(v: Self::V) -> $t {
                // NaN lanes lose, like the x86 paths' `min`.
                v.iter()
                    .fold(<$t>::INFINITY, |m, &x| if x < m { x } else { m })
            }
            #[inline(always)]
            unsafe fn first_lane(m: Self::M) -> u32 {
                m.iter().position(|&b| b).unwrap_or(PORTABLE_LANES) as u32
            }
        }
    };
}

portable_impl!(PortableF32, f32);
portable_impl!(PortableF64, f64);

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::*;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    /// How [`Simd::load_columns`] transposes a block of `lanes` rows of `d`
    /// values with two-source permutes (AVX-512). Each row is padded to
    /// `dp`, the power of two at or above `d`, so that a vector holds
    /// `lanes / dp` whole rows (loaded with an expanding load when
    /// `d < dp`); then `stages = log2(dp)` rounds of permutes each swap one
    /// bit of the vector index (a row bit) with one bit of the lane (a
    /// dimension bit), after which vector `p` holds dimension `p` of row
    /// `r` in lane `r`: `dp * log2(dp)` permutes per block, fewer in the
    /// last round, which only makes the `d` vectors wanted.
    pub(super) struct Transpose {
        pub(super) dp: usize,
        pub(super) stages: usize,
        /// The expanding load's mask: `d` lanes of every `dp`.
        pub(super) load_mask: u32,
        /// Per round and output vector `o`: the permute's indices into
        /// vectors `o` and `o ^ (1 << round)` (the lower index first, so
        /// `lanes..2 lanes` index the higher).
        pub(super) idx: [[[u32; 16]; 16]; 4],
    }

    /// The [`Transpose`] for `lanes` rows of `d` values; an empty one
    /// (`dp = 0`) when `d > lanes`. Only evaluated as a constant, so its
    /// checks run at compile time.
    pub(super) const fn transpose_plan(lanes: usize, d: usize) -> Transpose {
        assert!(d >= 1 && lanes <= 16);
        if d > lanes {
            return Transpose {
                dp: 0,
                stages: 0,
                load_mask: 0,
                idx: [[[0; 16]; 16]; 4],
            };
        }
        let mut dp = 1;
        while dp < d {
            dp *= 2;
        }
        let rows_per_vector = lanes / dp;
        let mut load_mask = 0u32;
        let mut q = 0;
        while q < rows_per_vector {
            load_mask |= ((1u32 << d) - 1) << (q * dp);
            q += 1;
        }
        // Which element each lane of each vector holds, as `r * 16 + p`.
        let mut state = [[0u32; 16]; 16];
        let mut v = 0;
        while v < dp {
            let mut l = 0;
            while l < lanes {
                state[v][l] = ((v * rows_per_vector + l / dp) * 16 + l % dp) as u32;
                l += 1;
            }
            v += 1;
        }
        let mut idx = [[[0u32; 16]; 16]; 4];
        let mut stages = 0;
        let mut bit = 1;
        while bit < dp {
            let mut next = [[0u32; 16]; 16];
            let mut o = 0;
            while o < dp {
                // The elements of vectors `o & !bit` and `o | bit` whose
                // dimension has `bit` as `o` has it, in element order.
                let mut ids = [0u32; 16];
                let mut src = [0u32; 16];
                let mut n = 0;
                let mut h = 0;
                while h < 2 {
                    let from = if h == 0 { o & !bit } else { o | bit };
                    let mut l = 0;
                    while l < lanes {
                        let id = state[from][l];
                        if (id as usize % 16) & bit == o & bit {
                            // Insertion sort by element.
                            let mut at = n;
                            while at > 0 && ids[at - 1] > id {
                                ids[at] = ids[at - 1];
                                src[at] = src[at - 1];
                                at -= 1;
                            }
                            ids[at] = id;
                            src[at] = (h * lanes + l) as u32;
                            n += 1;
                        }
                        l += 1;
                    }
                    h += 1;
                }
                assert!(n == lanes);
                next[o] = ids;
                idx[stages][o] = src;
                o += 1;
            }
            state = next;
            stages += 1;
            bit *= 2;
        }
        // Vector `p` now holds dimension `p` of row `r` in lane `r`.
        let mut p = 0;
        while p < dp {
            let mut r = 0;
            while r < lanes {
                assert!(state[p][r] == (r * 16 + p) as u32);
                r += 1;
            }
            p += 1;
        }
        Transpose {
            dp,
            stages,
            load_mask,
            idx,
        }
    }

    /// The transposition plans for rows of `D` values.
    struct Plan<const D: usize>;

    impl<const D: usize> Plan<D> {
        const F32: Transpose = transpose_plan(16, D);
        const F64: Transpose = transpose_plan(8, D);
    }

    /// AVX-512F, 16 x f32.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512F32;
    /// AVX-512F, 8 x f64.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512F64;
    /// AVX2 + FMA, 8 x f32.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2F32;
    /// AVX2 + FMA, 4 x f64.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2F64;

    impl Simd for Avx512F32 {
        type T = f32;
        type V = __m512;
        type M = __mmask16;
        const LANES: usize = 16;

        #[inline(always)]
        unsafe fn splat(v: f32) -> __m512 {
            _mm512_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn fnmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fnmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: __m512, b: __m512) -> __m512 {
            _mm512_max_ps(a, b)
        }
        #[inline(always)]
        unsafe fn lt(a: __m512, b: __m512) -> __mmask16 {
            _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b)
        }
        #[inline(always)]
        unsafe fn eq(a: __m512, b: __m512) -> __mmask16 {
            _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b)
        }
        #[inline(always)]
        unsafe fn select(m: __mmask16, t: __m512, f: __m512) -> __m512 {
            _mm512_mask_blend_ps(m, f, t)
        }
        #[inline(always)]
        unsafe fn reduce_min(v: __m512) -> f32 {
            let h = _mm256_min_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps_compat(v));
            let q = _mm_min_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
            let q = _mm_min_ps(q, _mm_movehl_ps(q, q));
            let q = _mm_min_ss(q, _mm_shuffle_ps::<0b01>(q, q));
            _mm_cvtss_f32(q)
        }
        #[inline(always)]
        unsafe fn first_lane(m: __mmask16) -> u32 {
            (m as u32 | 1 << 16).trailing_zeros()
        }
        #[inline(always)]
        unsafe fn accumulate_row(acc: *mut f64, row: *const f32, d: usize, scale: f64) {
            let s = _mm512_set1_pd(scale);
            let mut p = 0;
            while p < d {
                let m = if d - p >= 8 {
                    0xff
                } else {
                    (1u8 << (d - p)) - 1
                };
                let x = _mm512_maskz_loadu_ps(m as __mmask16, row.add(p));
                let x = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
                let a = _mm512_maskz_loadu_pd(m, acc.add(p));
                _mm512_mask_storeu_pd(acc.add(p), m, _mm512_add_pd(a, _mm512_mul_pd(s, x)));
                p += 8;
            }
        }
        #[inline(always)]
        unsafe fn accumulate_padded(acc: *mut f64, row: *const f32, d: usize, scale: Option<f64>) {
            let mut p = 0;
            while p < d {
                let m = if d - p >= 8 {
                    0xff
                } else {
                    (1u8 << (d - p)) - 1
                };
                let x = _mm512_cvtps_pd(_mm256_maskz_loadu_ps_compat(m, row.add(p)));
                let x = match scale {
                    Some(s) => _mm512_mul_pd(_mm512_set1_pd(s), x),
                    None => x,
                };
                _mm512_storeu_pd(acc.add(p), _mm512_add_pd(_mm512_loadu_pd(acc.add(p)), x));
                p += 8;
            }
        }
        #[inline(always)]
        unsafe fn load_columns<const D: usize>(x: *const f32) -> [__m512; D] {
            let t = &Plan::<D>::F32;
            let per = 16 / t.dp * D;
            let mut v = [_mm512_setzero_ps(); 16];
            for (i, v) in v[..t.dp].iter_mut().enumerate() {
                *v = if D == t.dp {
                    _mm512_loadu_ps(x.add(i * 16))
                } else {
                    _mm512_maskz_expandloadu_ps(t.load_mask as __mmask16, x.add(i * per))
                };
            }
            for s in 0..t.stages {
                let bit = 1 << s;
                let outs = if s + 1 == t.stages { D } else { t.dp };
                let mut next = [_mm512_setzero_ps(); 16];
                for (o, n) in next[..outs].iter_mut().enumerate() {
                    let idx = _mm512_loadu_si512(t.idx[s][o].as_ptr() as _);
                    *n = _mm512_permutex2var_ps(v[o & !bit], idx, v[o | bit]);
                }
                v = next;
            }
            std::array::from_fn(|p| v[p])
        }
        #[inline(always)]
        unsafe fn accumulate_lanes(acc: *mut f64, v: __m512, w: Option<*const f32>) {
            let halves = [_mm512_castps512_ps256(v), _mm512_extractf32x8_ps_compat(v)];
            for (h, half) in halves.into_iter().enumerate() {
                let s = _mm512_cvtps_pd(half);
                let s = match w {
                    Some(w) => _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(w.add(8 * h))), s),
                    None => s,
                };
                let a = acc.add(8 * h);
                _mm512_storeu_pd(a, _mm512_add_pd(_mm512_loadu_pd(a), s));
            }
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f32) {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
        }
        #[inline(always)]
        unsafe fn store_indices(p: *mut u32, v: __m512) {
            _mm512_storeu_si512(p as _, _mm512_cvttps_epi32(v))
        }
        #[inline(always)]
        unsafe fn sq_norm(row: *const f32, d: usize) -> f32 {
            let mut acc = _mm512_setzero_ps();
            let mut p = 0;
            while p < d {
                let m = if d - p >= 16 {
                    0xffff
                } else {
                    (1u16 << (d - p)) - 1
                };
                let x = _mm512_maskz_loadu_ps(m, row.add(p));
                acc = _mm512_fmadd_ps(x, x, acc);
                p += 16;
            }
            _mm512_reduce_add_ps(acc)
        }
    }

    /// The `m` lanes of eight f32 at `p` (others 0), with AVX-512F alone
    /// (`_mm256_maskz_loadu_ps` needs AVX-512VL).
    #[inline(always)]
    unsafe fn _mm256_maskz_loadu_ps_compat(m: u8, p: *const f32) -> __m256 {
        _mm512_castps512_ps256(_mm512_maskz_loadu_ps(m as __mmask16, p))
    }

    /// The upper 256 bits of a 512-bit f32 vector with AVX-512F alone
    /// (`_mm512_extractf32x8_ps` needs AVX-512DQ).
    #[inline(always)]
    unsafe fn _mm512_extractf32x8_ps_compat(v: __m512) -> __m256 {
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)))
    }

    impl Simd for Avx512F64 {
        type T = f64;
        type V = __m512d;
        type M = __mmask8;
        const LANES: usize = 8;

        #[inline(always)]
        unsafe fn splat(v: f64) -> __m512d {
            _mm512_set1_pd(v)
        }
        #[inline(always)]
        unsafe fn load(p: *const f64) -> __m512d {
            _mm512_loadu_pd(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f64, v: __m512d) {
            _mm512_storeu_pd(p, v)
        }
        #[inline(always)]
        unsafe fn fnmadd(a: __m512d, b: __m512d, c: __m512d) -> __m512d {
            _mm512_fnmadd_pd(a, b, c)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m512d, b: __m512d, c: __m512d) -> __m512d {
            _mm512_fmadd_pd(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m512d, b: __m512d) -> __m512d {
            _mm512_add_pd(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: __m512d, b: __m512d) -> __m512d {
            _mm512_max_pd(a, b)
        }
        #[inline(always)]
        unsafe fn lt(a: __m512d, b: __m512d) -> __mmask8 {
            _mm512_cmp_pd_mask::<_CMP_LT_OQ>(a, b)
        }
        #[inline(always)]
        unsafe fn eq(a: __m512d, b: __m512d) -> __mmask8 {
            _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(a, b)
        }
        #[inline(always)]
        unsafe fn select(m: __mmask8, t: __m512d, f: __m512d) -> __m512d {
            _mm512_mask_blend_pd(m, f, t)
        }
        #[inline(always)]
        unsafe fn reduce_min(v: __m512d) -> f64 {
            let h = _mm256_min_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd::<1>(v));
            let q = _mm_min_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd::<1>(h));
            let q = _mm_min_sd(q, _mm_unpackhi_pd(q, q));
            _mm_cvtsd_f64(q)
        }
        #[inline(always)]
        unsafe fn first_lane(m: __mmask8) -> u32 {
            (m as u32 | 1 << 8).trailing_zeros()
        }
        #[inline(always)]
        unsafe fn accumulate_row(acc: *mut f64, row: *const f64, d: usize, scale: f64) {
            let s = _mm512_set1_pd(scale);
            let mut p = 0;
            while p < d {
                let m = if d - p >= 8 {
                    0xff
                } else {
                    (1u8 << (d - p)) - 1
                };
                let x = _mm512_maskz_loadu_pd(m, row.add(p));
                let a = _mm512_maskz_loadu_pd(m, acc.add(p));
                _mm512_mask_storeu_pd(acc.add(p), m, _mm512_add_pd(a, _mm512_mul_pd(s, x)));
                p += 8;
            }
        }
        #[inline(always)]
        unsafe fn accumulate_padded(acc: *mut f64, row: *const f64, d: usize, scale: Option<f64>) {
            let mut p = 0;
            while p < d {
                let m = if d - p >= 8 {
                    0xff
                } else {
                    (1u8 << (d - p)) - 1
                };
                let x = _mm512_maskz_loadu_pd(m, row.add(p));
                let x = match scale {
                    Some(s) => _mm512_mul_pd(_mm512_set1_pd(s), x),
                    None => x,
                };
                _mm512_storeu_pd(acc.add(p), _mm512_add_pd(_mm512_loadu_pd(acc.add(p)), x));
                p += 8;
            }
        }
        #[inline(always)]
        unsafe fn load_columns<const D: usize>(x: *const f64) -> [__m512d; D] {
            if D > 8 {
                // Rows wider than a vector: gather.
                let rows = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let rows = _mm256_mullo_epi32(rows, _mm256_set1_epi32(D as i32));
                return std::array::from_fn(|p| {
                    let at = _mm256_add_epi32(rows, _mm256_set1_epi32(p as i32));
                    _mm512_i32gather_pd::<8>(at, x as _)
                });
            }
            let t = &Plan::<D>::F64;
            let per = 8 / t.dp * D;
            let mut v = [_mm512_setzero_pd(); 8];
            for (i, v) in v[..t.dp].iter_mut().enumerate() {
                *v = if D == t.dp {
                    _mm512_loadu_pd(x.add(i * 8))
                } else {
                    _mm512_maskz_expandloadu_pd(t.load_mask as __mmask8, x.add(i * per))
                };
            }
            for s in 0..t.stages {
                let bit = 1 << s;
                let outs = if s + 1 == t.stages { D } else { t.dp };
                let mut next = [_mm512_setzero_pd(); 8];
                for (o, n) in next[..outs].iter_mut().enumerate() {
                    let idx = _mm512_loadu_si512(t.idx[s][o].as_ptr() as _);
                    // f64 lanes take 64-bit indices: widen the 32-bit ones.
                    let idx = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(idx));
                    *n = _mm512_permutex2var_pd(v[o & !bit], idx, v[o | bit]);
                }
                v = next;
            }
            std::array::from_fn(|p| v[p])
        }
        #[inline(always)]
        unsafe fn accumulate_lanes(acc: *mut f64, v: __m512d, w: Option<*const f64>) {
            let s = match w {
                Some(w) => _mm512_mul_pd(_mm512_loadu_pd(w), v),
                None => v,
            };
            _mm512_storeu_pd(acc, _mm512_add_pd(_mm512_loadu_pd(acc), s));
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f64) {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
        }
        #[inline(always)]
        unsafe fn store_indices(p: *mut u32, v: __m512d) {
            _mm256_storeu_si256(p as _, _mm512_cvttpd_epi32(v))
        }
        #[inline(always)]
        unsafe fn sq_norm(row: *const f64, d: usize) -> f64 {
            let mut acc = _mm512_setzero_pd();
            let mut p = 0;
            while p < d {
                let m = if d - p >= 8 {
                    0xff
                } else {
                    (1u8 << (d - p)) - 1
                };
                let x = _mm512_maskz_loadu_pd(m, row.add(p));
                acc = _mm512_fmadd_pd(x, x, acc);
                p += 8;
            }
            _mm512_reduce_add_pd(acc)
        }
    }

    impl Simd for Avx2F32 {
        type T = f32;
        type V = __m256;
        type M = __m256;
        const LANES: usize = 8;

        #[inline(always)]
        unsafe fn splat(v: f32) -> __m256 {
            _mm256_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn fnmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fnmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: __m256, b: __m256) -> __m256 {
            _mm256_max_ps(a, b)
        }
        #[inline(always)]
        unsafe fn lt(a: __m256, b: __m256) -> __m256 {
            _mm256_cmp_ps::<_CMP_LT_OQ>(a, b)
        }
        #[inline(always)]
        unsafe fn eq(a: __m256, b: __m256) -> __m256 {
            _mm256_cmp_ps::<_CMP_EQ_OQ>(a, b)
        }
        #[inline(always)]
        unsafe fn select(m: __m256, t: __m256, f: __m256) -> __m256 {
            _mm256_blendv_ps(f, t, m)
        }
        #[inline(always)]
        unsafe fn reduce_min(v: __m256) -> f32 {
            let q = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let q = _mm_min_ps(q, _mm_movehl_ps(q, q));
            let q = _mm_min_ss(q, _mm_shuffle_ps::<0b01>(q, q));
            _mm_cvtss_f32(q)
        }
        #[inline(always)]
        unsafe fn first_lane(m: __m256) -> u32 {
            (_mm256_movemask_ps(m) as u32 | 1 << 8).trailing_zeros()
        }
        #[inline(always)]
        unsafe fn load_columns<const D: usize>(x: *const f32) -> [__m256; D] {
            let rows = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let rows = _mm256_mullo_epi32(rows, _mm256_set1_epi32(D as i32));
            std::array::from_fn(|p| {
                let at = _mm256_add_epi32(rows, _mm256_set1_epi32(p as i32));
                _mm256_i32gather_ps::<4>(x as _, at)
            })
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f32) {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
        }
        #[inline(always)]
        unsafe fn store_indices(p: *mut u32, v: __m256) {
            _mm256_storeu_si256(p as _, _mm256_cvttps_epi32(v))
        }
    }

    impl Simd for Avx2F64 {
        type T = f64;
        type V = __m256d;
        type M = __m256d;
        const LANES: usize = 4;

        #[inline(always)]
        unsafe fn splat(v: f64) -> __m256d {
            _mm256_set1_pd(v)
        }
        #[inline(always)]
        unsafe fn load(p: *const f64) -> __m256d {
            _mm256_loadu_pd(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f64, v: __m256d) {
            _mm256_storeu_pd(p, v)
        }
        #[inline(always)]
        unsafe fn fnmadd(a: __m256d, b: __m256d, c: __m256d) -> __m256d {
            _mm256_fnmadd_pd(a, b, c)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m256d, b: __m256d, c: __m256d) -> __m256d {
            _mm256_fmadd_pd(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m256d, b: __m256d) -> __m256d {
            _mm256_add_pd(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: __m256d, b: __m256d) -> __m256d {
            _mm256_max_pd(a, b)
        }
        #[inline(always)]
        unsafe fn lt(a: __m256d, b: __m256d) -> __m256d {
            _mm256_cmp_pd::<_CMP_LT_OQ>(a, b)
        }
        #[inline(always)]
        unsafe fn eq(a: __m256d, b: __m256d) -> __m256d {
            _mm256_cmp_pd::<_CMP_EQ_OQ>(a, b)
        }
        #[inline(always)]
        unsafe fn select(m: __m256d, t: __m256d, f: __m256d) -> __m256d {
            _mm256_blendv_pd(f, t, m)
        }
        #[inline(always)]
        unsafe fn reduce_min(v: __m256d) -> f64 {
            let q = _mm_min_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
            let q = _mm_min_sd(q, _mm_unpackhi_pd(q, q));
            _mm_cvtsd_f64(q)
        }
        #[inline(always)]
        unsafe fn first_lane(m: __m256d) -> u32 {
            (_mm256_movemask_pd(m) as u32 | 1 << 4).trailing_zeros()
        }
        #[inline(always)]
        unsafe fn load_columns<const D: usize>(x: *const f64) -> [__m256d; D] {
            let rows = _mm_setr_epi32(0, 1, 2, 3);
            let rows = _mm_mullo_epi32(rows, _mm_set1_epi32(D as i32));
            std::array::from_fn(|p| {
                let at = _mm_add_epi32(rows, _mm_set1_epi32(p as i32));
                _mm256_i32gather_pd::<8>(x as _, at)
            })
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f64) {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
        }
        #[inline(always)]
        unsafe fn store_indices(p: *mut u32, v: __m256d) {
            _mm_storeu_si128(p as _, _mm256_cvttpd_epi32(v))
        }
    }
}
