//! AVX-512F: 16 x f32 and 8 x f64. The one-instruction methods come from
//! one macro; the rest differ in more than names (the f32 sums widen to
//! f64 in halves, the transposition plans differ).
//!
//! Only AVX-512F is assumed: where an intrinsic would need VL or DQ, a
//! `_compat` helper does the same with F alone.

use super::transpose::Plan;
use super::Simd;
use std::arch::x86_64::*;

/// AVX-512F, 16 x f32.
#[derive(Clone, Copy)]
pub struct Avx512F32;
/// AVX-512F, 8 x f64.
#[derive(Clone, Copy)]
pub struct Avx512F64;

/// Implements [`Simd`] for one AVX-512 vector type: the methods that are one
/// intrinsic each, then the type's own (`$own`).
///
/// SAFETY (every method): the trait's contract, that the caller runs
/// AVX-512F and keeps the pointers valid for the values the method reads or
/// writes, covers each call.
macro_rules! avx512_impl {
    (
        $name:ident: $t:ty, $v:ty, $m:ty, $lanes:literal;
        $set1:ident, $loadu:ident, $storeu:ident, $fnmadd:ident, $fmadd:ident,
        $add:ident, $max:ident, $cmp:ident, $blend:ident;
        $setzero:ident, $maskz_loadu:ident, $reduce_add:ident, $widen8:ident;
        $($own:tt)*
    ) => {
        impl Simd for $name {
            type T = $t;
            type V = $v;
            type M = $m;
            const LANES: usize = $lanes;

            x86_one_instruction_methods!(
                $t, $v, $m;
                $set1, $loadu, $storeu, $fnmadd, $fmadd, $add, $max, $cmp
            );
            #[inline(always)]
            unsafe fn select(m: $m, t: $v, f: $v) -> $v {
                // SAFETY: see the macro.
                unsafe { $blend(m, f, t) }
            }
            #[inline(always)]
            unsafe fn first_lane(m: $m) -> u32 {
                (m as u32 | 1 << $lanes).trailing_zeros()
            }

            #[inline(always)]
            unsafe fn accumulate_row(acc: *mut f64, row: *const $t, d: usize, scale: f64) {
                // SAFETY: see the macro; whole vectors stay within the first
                // `d` values, and the masks keep the tail's loads and stores
                // to them.
                unsafe {
                    // The sums are read and written with whole vectors but in
                    // the tail: a masked store forwards to no later load, so
                    // when a cluster repeats within a few rows (few centres)
                    // every load of its sums would wait for the store to
                    // retire. `1 * x` is exact, so a scale of 1 (unweighted
                    // squared Euclidean rows) skips the multiply, same bits.
                    let whole = d - d % 8;
                    let s = _mm512_set1_pd(scale);
                    let mut p = 0;
                    if scale == 1.0 {
                        while p < whole {
                            let x = $widen8(0xff, row.add(p));
                            let a = _mm512_loadu_pd(acc.add(p));
                            _mm512_storeu_pd(acc.add(p), _mm512_add_pd(a, x));
                            p += 8;
                        }
                    } else {
                        while p < whole {
                            let x = $widen8(0xff, row.add(p));
                            let a = _mm512_loadu_pd(acc.add(p));
                            _mm512_storeu_pd(acc.add(p), _mm512_add_pd(a, _mm512_mul_pd(s, x)));
                            p += 8;
                        }
                    }
                    if p < d {
                        let m = tail_mask(d - p, 8) as __mmask8;
                        let x = $widen8(m, row.add(p));
                        let a = _mm512_maskz_loadu_pd(m, acc.add(p));
                        _mm512_mask_storeu_pd(acc.add(p), m, _mm512_add_pd(a, _mm512_mul_pd(s, x)));
                    }
                }
            }
            #[inline(always)]
            unsafe fn accumulate_padded(
                acc: *mut f64,
                row: *const $t,
                d: usize,
                scale: Option<f64>,
            ) {
                // SAFETY: see the macro; `acc` has room for `d` rounded up
                // to whole vectors of 8 (the trait's contract), the row's
                // loads are masked to its `d` values.
                unsafe {
                    let mut p = 0;
                    while p < d {
                        let x = $widen8(tail_mask(d - p, 8) as __mmask8, row.add(p));
                        let x = match scale {
                            Some(s) => _mm512_mul_pd(_mm512_set1_pd(s), x),
                            None => x,
                        };
                        _mm512_storeu_pd(acc.add(p), _mm512_add_pd(_mm512_loadu_pd(acc.add(p)), x));
                        p += 8;
                    }
                }
            }
            #[inline(always)]
            unsafe fn reduce_add(v: $v) -> $t {
                // SAFETY: see the macro.
                unsafe { $reduce_add(v) }
            }
            #[inline(always)]
            unsafe fn sq_norm(row: *const $t, d: usize) -> $t {
                // SAFETY: see the macro; the loads are masked to the row's
                // `d` values.
                unsafe {
                    // Whole vectors unmasked, the tail masked (zero lanes add
                    // nothing): the same additions as masking every step,
                    // without a mask to compute per step. Four running sums,
                    // so that a wide row (784 values: 49 vectors) is not one
                    // chain of dependent fused multiply-adds, each waiting
                    // on the last (a sum of squares in any order is within
                    // the kernels' rounding bound: see `pruning.rs`).
                    let mut acc = [$setzero(); 4];
                    let whole = d - d % $lanes;
                    let quad = d - d % (4 * $lanes);
                    let mut p = 0;
                    while p < quad {
                        for (i, a) in acc.iter_mut().enumerate() {
                            let x = $loadu(row.add(p + i * $lanes));
                            *a = $fmadd(x, x, *a);
                        }
                        p += 4 * $lanes;
                    }
                    let mut i = 0;
                    while p < whole {
                        let x = $loadu(row.add(p));
                        acc[i] = $fmadd(x, x, acc[i]);
                        p += $lanes;
                        i += 1;
                    }
                    if p < d {
                        let x = $maskz_loadu(tail_mask(d - p, $lanes) as $m, row.add(p));
                        acc[3] = $fmadd(x, x, acc[3]);
                    }
                    $reduce_add($add($add(acc[0], acc[1]), $add(acc[2], acc[3])))
                }
            }

            $($own)*
        }
    };
}

/// The mask of the first `min(rest, lanes)` lanes.
#[inline(always)]
fn tail_mask(rest: usize, lanes: usize) -> u32 {
    if rest >= lanes {
        (1u32 << lanes) - 1
    } else {
        (1u32 << rest) - 1
    }
}

/// Up to eight f32 at `p` (the lanes in `m`, others 0) widened to f64.
///
/// # Safety
///
/// The CPU runs AVX-512F; `p` is valid for the lanes in `m`.
#[inline(always)]
unsafe fn widen8_f32(m: __mmask8, p: *const f32) -> __m512d {
    // SAFETY: this function's contract.
    unsafe { _mm512_cvtps_pd(_mm256_maskz_loadu_ps_compat(m, p)) }
}

/// Up to eight f64 at `p` (the lanes in `m`, others 0).
///
/// # Safety
///
/// The CPU runs AVX-512F; `p` is valid for the lanes in `m`.
#[inline(always)]
unsafe fn widen8_f64(m: __mmask8, p: *const f64) -> __m512d {
    // SAFETY: this function's contract.
    unsafe { _mm512_maskz_loadu_pd(m, p) }
}

avx512_impl!(
    Avx512F32: f32, __m512, __mmask16, 16;
    _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fnmadd_ps, _mm512_fmadd_ps,
    _mm512_add_ps, _mm512_max_ps, _mm512_cmp_ps_mask, _mm512_mask_blend_ps;
    _mm512_setzero_ps, _mm512_maskz_loadu_ps, _mm512_reduce_add_ps, widen8_f32;
    #[inline(always)]
    unsafe fn reduce_min(v: __m512) -> f32 {
        // SAFETY: see the macro.
        unsafe {
            let h = _mm256_min_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps_compat(v));
            let q = _mm_min_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
            let q = _mm_min_ps(q, _mm_movehl_ps(q, q));
            let q = _mm_min_ss(q, _mm_shuffle_ps::<0b01>(q, q));
            _mm_cvtss_f32(q)
        }
    }
    #[inline(always)]
    unsafe fn load_columns<const D: usize>(x: *const f32) -> [__m512; D] {
        // SAFETY: see the macro.
        unsafe {
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
    }
    #[inline(always)]
    unsafe fn accumulate_lanes(acc: *mut f64, v: __m512, w: Option<*const f32>) {
        // SAFETY: see the macro.
        unsafe {
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
    }
    #[inline(always)]
    unsafe fn store_indices(p: *mut u32, v: __m512) {
        // SAFETY: see the macro.
        unsafe {
            _mm512_storeu_si512(p as _, _mm512_cvttps_epi32(v))
        }
    }
);

/// The `m` lanes of eight f32 at `p` (others 0), with AVX-512F alone
/// (`_mm256_maskz_loadu_ps` needs AVX-512VL).
#[inline(always)]
unsafe fn _mm256_maskz_loadu_ps_compat(m: u8, p: *const f32) -> __m256 {
    // SAFETY: the caller runs AVX-512F and `p` is valid for the lanes in `m`.
    unsafe { _mm512_castps512_ps256(_mm512_maskz_loadu_ps(m as __mmask16, p)) }
}

/// The upper 256 bits of a 512-bit f32 vector with AVX-512F alone
/// (`_mm512_extractf32x8_ps` needs AVX-512DQ).
#[inline(always)]
unsafe fn _mm512_extractf32x8_ps_compat(v: __m512) -> __m256 {
    // SAFETY: the caller runs AVX-512F.
    unsafe { _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))) }
}

avx512_impl!(
    Avx512F64: f64, __m512d, __mmask8, 8;
    _mm512_set1_pd, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_fnmadd_pd, _mm512_fmadd_pd,
    _mm512_add_pd, _mm512_max_pd, _mm512_cmp_pd_mask, _mm512_mask_blend_pd;
    _mm512_setzero_pd, _mm512_maskz_loadu_pd, _mm512_reduce_add_pd, widen8_f64;
    #[inline(always)]
    unsafe fn reduce_min(v: __m512d) -> f64 {
        // SAFETY: see the macro.
        unsafe {
            let h = _mm256_min_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd::<1>(v));
            let q = _mm_min_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd::<1>(h));
            let q = _mm_min_sd(q, _mm_unpackhi_pd(q, q));
            _mm_cvtsd_f64(q)
        }
    }
    #[inline(always)]
    unsafe fn load_columns<const D: usize>(x: *const f64) -> [__m512d; D] {
        // SAFETY: see the macro.
        unsafe {
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
    }
    #[inline(always)]
    unsafe fn accumulate_lanes(acc: *mut f64, v: __m512d, w: Option<*const f64>) {
        // SAFETY: see the macro.
        unsafe {
            let s = match w {
                Some(w) => _mm512_mul_pd(_mm512_loadu_pd(w), v),
                None => v,
            };
            _mm512_storeu_pd(acc, _mm512_add_pd(_mm512_loadu_pd(acc), s));
        }
    }
    #[inline(always)]
    unsafe fn store_indices(p: *mut u32, v: __m512d) {
        // SAFETY: see the macro.
        unsafe {
            _mm256_storeu_si256(p as _, _mm512_cvttpd_epi32(v))
        }
    }
);
