//! The element types centroid computes in: `f32` (the default) and `f64`.
//!
//! Everything numeric is generic over [`Float`], so one code path serves both
//! precisions. Sums over many points are always accumulated in `f64`.
//!
//! `Float` is sealed: its supertrait `sealed::Sealed` cannot be named
//! outside this crate, so only `f32` and `f64` implement it. The sealed
//! trait carries what the kernels need of each type (its vector types on
//! every instruction set, and its `f32` view for the f32-only AMX kernel),
//! so kernels are generic over `Float` with no run-time dtype dispatch.

use std::fmt::{Debug, Display};

/// The element type of data and centres: `f32` or `f64` (sealed).
pub trait Float:
    sealed::Sealed
    + num_traits::Float
    + num_traits::FromPrimitive
    + num_traits::ToPrimitive
    + bytemuck::Pod
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + 'static
{
    /// The dtype name used in checkpoints and error messages.
    const DTYPE: DType;

    /// Converts from `f64`, rounding to nearest.
    fn from_f64_lossy(v: f64) -> Self;
    /// Widens to `f64` exactly.
    fn to_f64_exact(self) -> f64;
}

pub(crate) mod sealed {
    use crate::kernels::simd::{self, Simd};

    /// The kernels' view of an element type. Public in a private module,
    /// so [`Float`](super::Float) can require it and no other crate can
    /// implement it.
    pub trait Sealed: Sized {
        /// Plain arrays, any target.
        type Portable: Simd<T = Self>;
        /// AVX2 + FMA vectors.
        #[cfg(target_arch = "x86_64")]
        type Avx2: Simd<T = Self>;
        /// AVX-512F vectors.
        #[cfg(target_arch = "x86_64")]
        type Avx512: Simd<T = Self>;

        /// The values as `f32` when this type is `f32`: how the f32-only
        /// AMX kernel is reached from generic code.
        fn as_f32(values: &[Self]) -> Option<&[f32]>;
        /// [`Sealed::as_f32`] for a mutable slice.
        fn as_f32_mut(values: &mut [Self]) -> Option<&mut [f32]>;
    }

    impl Sealed for f32 {
        type Portable = simd::PortableF32;
        #[cfg(target_arch = "x86_64")]
        type Avx2 = simd::Avx2F32;
        #[cfg(target_arch = "x86_64")]
        type Avx512 = simd::Avx512F32;

        fn as_f32(values: &[f32]) -> Option<&[f32]> {
            Some(values)
        }
        fn as_f32_mut(values: &mut [f32]) -> Option<&mut [f32]> {
            Some(values)
        }
    }

    impl Sealed for f64 {
        type Portable = simd::PortableF64;
        #[cfg(target_arch = "x86_64")]
        type Avx2 = simd::Avx2F64;
        #[cfg(target_arch = "x86_64")]
        type Avx512 = simd::Avx512F64;

        fn as_f32(_: &[f64]) -> Option<&[f32]> {
            None
        }
        fn as_f32_mut(_: &mut [f64]) -> Option<&mut [f32]> {
            None
        }
    }
}

impl Float for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn from_f64_lossy(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64_exact(self) -> f64 {
        self as f64
    }
}

impl Float for f64 {
    const DTYPE: DType = DType::F64;
    #[inline(always)]
    fn from_f64_lossy(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64_exact(self) -> f64 {
        self
    }
}

/// A floating-point element type, as a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F64,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }
}

impl Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether every value of `v` (finite) is a whole multiple of `2^q`,
/// `q` within `-1000..=1000`. For f32 values and `|q| <= 100` the test runs
/// in f32 (twice the lanes of f64): `|v| * 2^-q` is then exact (the
/// reciprocal is a power of two in f32's normal range; a non-zero
/// product that underflows is below 1, so no multiple, and caught), and
/// adding and subtracting `2^23` keeps exactly the whole numbers below
/// `2^23`, as [`is_multiple_of_pow2`] does with `2^52` in f64. Blocks of
/// 1024 values have no early exit, so that the test vectorises.
pub(crate) fn all_multiples_of_pow2<T: Float>(v: &[T], q: i32) -> bool {
    if let Some(v) = T::as_f32(v).filter(|_| q.abs() <= 100) {
        const BIG: f32 = (1u32 << 23) as f32;
        let inv = 2f32.powi(-q);
        return v.chunks(1024).all(|b| {
            b.iter().fold(true, |on, &x| {
                let a = x.abs();
                let s = a * inv;
                on & ((s >= BIG) | (((s + BIG) - BIG == s) & ((s != 0.0) | (a == 0.0))))
            })
        });
    }
    let unit = 2f64.powi(q);
    v.chunks(1024).all(|b| {
        b.iter().fold(true, |on, x| {
            on & is_multiple_of_pow2(x.to_f64_exact().abs(), unit)
        })
    })
}

/// Whether `a >= 0` is a whole multiple of `unit`, a power of two within
/// `2^-1000..=2^1000`, with `a / unit < 2^52` or `a / unit` past f64's
/// fraction bits (then a whole number anyway): adding `2^52` rounds away
/// any fraction of `a / unit` and subtracting it gives back `a / unit` only
/// if it had none. `a / unit` is taken as `a * (1 / unit)`: the reciprocal
/// of such a power of two is exact, and so the product is the quotient, to
/// the bit, at a fraction of a division's cost. A non-zero `a` whose
/// quotient underflows to 0 is no multiple. Branch-free arithmetic that
/// vectorises, unlike `fract`'s call to `trunc`.
#[inline(always)]
pub(crate) fn is_multiple_of_pow2(a: f64, unit: f64) -> bool {
    const BIG: f64 = (1u64 << 52) as f64;
    let s = a * (1.0 / unit);
    (s >= BIG) | (((s + BIG) - BIG == s) & ((s != 0.0) | (a == 0.0)))
}
