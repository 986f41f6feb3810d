//! The few vector operations the blocked kernels need, once per instruction
//! set: AVX-512F, AVX2+FMA (x86-64 only) and a portable fallback written on
//! plain arrays that any target compiles.
//!
//! Every method is `#[inline(always)]` and `unsafe`: the x86 ones are only
//! sound inside a function compiled with the matching `#[target_feature]`
//! (the entry points of `dispatch.rs` take a capability token for it), and the loads and stores read
//! `LANES` values through raw pointers the caller keeps in bounds.
//!
//! Centre indices travel through the argmin as floats of the element type
//! (exact below 2^24 for f32), so one vector type and one mask type serve both
//! the values and the indices.

use crate::float::Float;
#[allow(unused_imports)]
use num_traits::{Float as _, One as _, Zero as _};

/// One instruction set's vectors of one element type.
pub trait Simd: Copy {
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
        // SAFETY: the trait contract: the caller runs the instruction set and keeps the pointers
        // valid for the values read or written.
        unsafe {
            for p in 0..d {
                *acc.add(p) += scale * (*row.add(p)).to_f64_exact();
            }
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
        // SAFETY: the trait contract: the caller runs the instruction set and keeps the pointers
        // valid for the values read or written.
        unsafe {
            match scale {
                Some(s) => Self::accumulate_row(acc, row, d, s),
                None => {
                    for p in 0..d {
                        *acc.add(p) += (*row.add(p)).to_f64_exact();
                    }
                }
            }
        }
    }

    /// `LANES` consecutive rows of `D` values each, starting at `x`,
    /// transposed: vector `p` holds value `p` of every row (row `r` in lane
    /// `r`).
    #[inline(always)]
    unsafe fn load_columns<const D: usize>(x: *const Self::T) -> [Self::V; D] {
        // SAFETY: the trait contract: the caller runs the instruction set and keeps the pointers
        // valid for the values read or written.
        unsafe {
            let mut buf = [Self::T::zero(); MAX_LANES];
            std::array::from_fn(|p| {
                for (r, b) in buf[..Self::LANES].iter_mut().enumerate() {
                    *b = *x.add(r * D + p);
                }
                Self::load(buf.as_ptr())
            })
        }
    }

    /// `acc[l] += w[l] * v[l]` (`acc[l] += v[l]` without `w`) for every
    /// lane `l`, in f64 (multiply, then add).
    #[inline(always)]
    unsafe fn accumulate_lanes(acc: *mut f64, v: Self::V, w: Option<*const Self::T>) {
        // SAFETY: the trait contract: the caller runs the instruction set and keeps the pointers
        // valid for the values read or written.
        unsafe {
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
    }

    /// Asks for the cache line holding `p` to be brought into L1 (a hint:
    /// `p` may point anywhere, nothing is read through it).
    #[inline(always)]
    unsafe fn prefetch(_p: *const Self::T) {}

    /// Stores the lanes of `v`, small non-negative whole numbers held as
    /// floats (centre indices), as `u32`s at `p`.
    #[inline(always)]
    unsafe fn store_indices(p: *mut u32, v: Self::V) {
        // SAFETY: the trait contract: the caller runs the instruction set and keeps the pointers
        // valid for the values read or written.
        unsafe {
            let mut buf = [Self::T::zero(); MAX_LANES];
            Self::store(buf.as_mut_ptr(), v);
            for (i, b) in buf[..Self::LANES].iter().enumerate() {
                *p.add(i) = b.to_f64_exact() as u32;
            }
        }
    }

    /// The sum of the lanes of `v`, added as a balanced tree in a fixed
    /// order (the order is the path's own, the same on every call).
    #[inline(always)]
    unsafe fn reduce_add(v: Self::V) -> Self::T {
        // SAFETY: the trait contract: the caller runs the instruction set.
        unsafe {
            let mut buf = [Self::T::zero(); MAX_LANES];
            Self::store(buf.as_mut_ptr(), v);
            let mut n = Self::LANES;
            while n > 1 {
                n /= 2;
                for l in 0..n {
                    buf[l] += buf[l + n];
                }
            }
            buf[0]
        }
    }

    /// `sum_p row[p]^2` (summation order is the path's own).
    #[inline(always)]
    unsafe fn sq_norm(row: *const Self::T, d: usize) -> Self::T {
        // SAFETY: the caller keeps `row` valid for `d` values.
        crate::kernels::scalar::sq_norm(unsafe { std::slice::from_raw_parts(row, d) })
    }
}

/// `(smallest value, lowest index holding it)` of a vector of values and one
/// of their indices (as floats). The index is +inf when no lane compares
/// equal to the minimum (all NaN); callers map that to centre 0.
#[inline(always)]
pub(crate) unsafe fn argmin<S: Simd>(values: S::V, indices: S::V) -> (S::T, S::T) {
    // SAFETY: the trait contract: the caller runs the instruction set and keeps the pointers valid
    // for the values read or written.
    unsafe {
        let m = S::reduce_min(values);
        let at_min = S::eq(values, S::splat(m));
        let idx = S::reduce_min(S::select(at_min, indices, S::splat(S::T::infinity())));
        (m, idx)
    }
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
        pub struct $name;

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
                // SAFETY: the caller keeps `p` valid for `LANES` reads.
                unsafe { (p as *const Self::V).read_unaligned() }
            }
            #[inline(always)]
            unsafe fn store(p: *mut $t, v: Self::V) {
                // SAFETY: the caller keeps `p` valid for `LANES` writes.
                unsafe { (p as *mut Self::V).write_unaligned(v) }
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

/// The [`Simd`] methods that are one x86 intrinsic each (`splat` to `max`,
/// the two comparisons, `prefetch`), for the AVX2 and AVX-512 impls.
///
/// SAFETY (every method): the trait's contract, that the caller runs the
/// instruction set and keeps the pointers valid for `LANES` values, covers
/// each call.
#[cfg(target_arch = "x86_64")]
macro_rules! x86_one_instruction_methods {
    (
        $t:ty, $v:ty, $m:ty;
        $set1:ident, $loadu:ident, $storeu:ident, $fnmadd:ident, $fmadd:ident,
        $add:ident, $max:ident, $cmp:ident
    ) => {
        #[inline(always)]
        unsafe fn splat(v: $t) -> $v {
            // SAFETY: see the macro's documentation.
            unsafe { $set1(v) }
        }
        #[inline(always)]
        unsafe fn load(p: *const $t) -> $v {
            // SAFETY: see the macro's documentation.
            unsafe { $loadu(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut $t, v: $v) {
            // SAFETY: see the macro's documentation.
            unsafe { $storeu(p, v) }
        }
        #[inline(always)]
        unsafe fn fnmadd(a: $v, b: $v, c: $v) -> $v {
            // SAFETY: see the macro's documentation.
            unsafe { $fnmadd(a, b, c) }
        }
        #[inline(always)]
        unsafe fn fmadd(a: $v, b: $v, c: $v) -> $v {
            // SAFETY: see the macro's documentation.
            unsafe { $fmadd(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: $v, b: $v) -> $v {
            // SAFETY: see the macro's documentation.
            unsafe { $add(a, b) }
        }
        #[inline(always)]
        unsafe fn max(a: $v, b: $v) -> $v {
            // SAFETY: see the macro's documentation.
            unsafe { $max(a, b) }
        }
        #[inline(always)]
        unsafe fn lt(a: $v, b: $v) -> $m {
            // SAFETY: see the macro's documentation.
            unsafe { $cmp::<_CMP_LT_OQ>(a, b) }
        }
        #[inline(always)]
        unsafe fn eq(a: $v, b: $v) -> $m {
            // SAFETY: see the macro's documentation.
            unsafe { $cmp::<_CMP_EQ_OQ>(a, b) }
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const $t) {
            // SAFETY: a prefetch is a hint and reads nothing.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod transpose;

#[cfg(target_arch = "x86_64")]
pub use avx2::{Avx2F32, Avx2F64};
#[cfg(target_arch = "x86_64")]
pub use avx512::{Avx512F32, Avx512F64};
