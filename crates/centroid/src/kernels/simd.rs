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
    }
}
