//! AVX2 + FMA: 8 x f32 and 4 x f64, one macro for both (they differ only
//! in the intrinsics' names, the lane count and the horizontal minimum).

use super::Simd;
use std::arch::x86_64::*;

/// AVX2 + FMA, 8 x f32.
#[derive(Clone, Copy)]
pub struct Avx2F32;
/// AVX2 + FMA, 4 x f64.
#[derive(Clone, Copy)]
pub struct Avx2F64;

/// Implements [`Simd`] for one AVX2 vector type. Comparison results are
/// vectors (all-ones lanes), as AVX2 has no mask registers; centre indices
/// are gathered by 32-bit offsets and stored by truncating conversion.
macro_rules! avx2_impl {
    (
        $name:ident: $t:ty, $v:ty, $lanes:literal;
        $set1:ident, $loadu:ident, $storeu:ident, $fnmadd:ident, $fmadd:ident,
        $add:ident, $max:ident, $cmp:ident, $blendv:ident, $movemask:ident;
        offsets: $iv:ty, $setr_epi32:ident($($o:literal),*), $mullo:ident,
        $set1_epi32:ident, $add_epi32:ident, $gather:ident;
        indices: $cvtt:ident, $store_int:ident;
        reduce_min: |$rv:ident| $reduce_min:block
    ) => {
        // SAFETY (every method): the trait's contract, that the caller runs
        // AVX2 and FMA and keeps the pointers valid for `LANES` values (for
        // `load_columns`, `LANES` rows of `D` values), covers each call.
        impl Simd for $name {
            type T = $t;
            type V = $v;
            type M = $v;
            const LANES: usize = $lanes;

            x86_one_instruction_methods!(
                $t, $v, $v;
                $set1, $loadu, $storeu, $fnmadd, $fmadd, $add, $max, $cmp
            );
            #[inline(always)]
            unsafe fn select(m: $v, t: $v, f: $v) -> $v {
                // SAFETY: see the impl.
                unsafe { $blendv(f, t, m) }
            }
            #[inline(always)]
            unsafe fn reduce_min($rv: $v) -> $t {
                // SAFETY: see the impl.
                unsafe { $reduce_min }
            }
            #[inline(always)]
            unsafe fn first_lane(m: $v) -> u32 {
                // SAFETY: see the impl.
                unsafe { ($movemask(m) as u32 | 1 << $lanes).trailing_zeros() }
            }
            #[inline(always)]
            unsafe fn load_columns<const D: usize>(x: *const $t) -> [$v; D] {
                // SAFETY: see the impl; the gathers read rows `0..LANES`
                // of `D` values at `x`.
                unsafe {
                    let rows: $iv = $setr_epi32($($o),*);
                    let rows = $mullo(rows, $set1_epi32(D as i32));
                    std::array::from_fn(|p| {
                        let at = $add_epi32(rows, $set1_epi32(p as i32));
                        $gather::<{ std::mem::size_of::<$t>() as i32 }>(x as _, at)
                    })
                }
            }
            #[inline(always)]
            unsafe fn store_indices(p: *mut u32, v: $v) {
                // SAFETY: see the impl; `p` has room for `LANES` indices.
                unsafe { $store_int(p as _, $cvtt(v)) }
            }
        }
    };
}

avx2_impl!(
    Avx2F32: f32, __m256, 8;
    _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fnmadd_ps, _mm256_fmadd_ps,
    _mm256_add_ps, _mm256_max_ps, _mm256_cmp_ps, _mm256_blendv_ps, _mm256_movemask_ps;
    offsets: __m256i, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_mullo_epi32,
    _mm256_set1_epi32, _mm256_add_epi32, _mm256_i32gather_ps;
    indices: _mm256_cvttps_epi32, _mm256_storeu_si256;
    reduce_min: |v| {
        let q = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let q = _mm_min_ps(q, _mm_movehl_ps(q, q));
        let q = _mm_min_ss(q, _mm_shuffle_ps::<0b01>(q, q));
        _mm_cvtss_f32(q)
    }
);

avx2_impl!(
    Avx2F64: f64, __m256d, 4;
    _mm256_set1_pd, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_fnmadd_pd, _mm256_fmadd_pd,
    _mm256_add_pd, _mm256_max_pd, _mm256_cmp_pd, _mm256_blendv_pd, _mm256_movemask_pd;
    offsets: __m128i, _mm_setr_epi32(0, 1, 2, 3), _mm_mullo_epi32,
    _mm_set1_epi32, _mm_add_epi32, _mm256_i32gather_pd;
    indices: _mm256_cvttpd_epi32, _mm_storeu_si128;
    reduce_min: |v| {
        let q = _mm_min_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
        let q = _mm_min_sd(q, _mm_unpackhi_pd(q, q));
        _mm_cvtsd_f64(q)
    }
);
