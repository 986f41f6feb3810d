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

/// The finest grid of `v` (finite values): the largest `q` such that every
/// value is a whole multiple of `2^q`, that is the smallest exponent of any
/// value's lowest set bit; `i32::MAX` when every value is zero. Read from
/// the bits: a value is its significand (with the hidden bit, or without it
/// below the normal range) times `2^(e - bias - fraction bits)`, and the
/// significand's lowest set bit, isolated by `s & -s`, is a power of two
/// that converts exactly to a float whose exponent field gives its
/// position. A zero is given the all-ones exponent, whose "grid" (one past
/// any finite value's) then stands for none. Integer and conversion
/// operations in independent lanes, without branches, so that it
/// vectorises; one read of the values (the pruned Lloyd loop's exact-sum
/// test, [`crate::pruning`]).
#[inline(always)]
pub(crate) fn finest_grid<T: Float>(v: &[T]) -> i32 {
    let low = if let Some(v) = T::as_f32(v) {
        // A zero's 128 is past the largest finite f32's grid (127).
        min_in_lanes(v, |x: f32| {
            let bits = x.to_bits() & 0x7fff_ffff;
            let exp = (bits >> 23) | (((bits == 0) as u32) * 0xff);
            let sig = (bits & 0x007f_ffff) | (((exp != 0) as u32) << 23);
            let lsb = sig & sig.wrapping_neg();
            let lsb_exp = ((lsb as i32 as f32).to_bits() >> 23) as i32 - 127;
            (exp as i32).max(1) - 150 + lsb_exp
        })
        .filter(|&q| q < 128)
    } else {
        // A zero's 1024 is past the largest finite f64's grid (1023).
        min_in_lanes(v, |x: T| {
            let bits = x.to_f64_exact().to_bits() & 0x7fff_ffff_ffff_ffff;
            let exp = (bits >> 52) | (((bits == 0) as u64) * 0x7ff);
            let sig = (bits & 0x000f_ffff_ffff_ffff) | (((exp != 0) as u64) << 52);
            let lsb = sig & sig.wrapping_neg();
            let lsb_exp = ((lsb as i64 as f64).to_bits() >> 52) as i32 - 1023;
            (exp as i32).max(1) - 1075 + lsb_exp
        })
        .filter(|&q| q < 1024)
    };
    low.unwrap_or(i32::MAX)
}

/// The smallest `f(x)` over `v` (`None` when empty), in sixteen
/// independent lanes so that the loop vectorises.
#[inline(always)]
fn min_in_lanes<V: Copy>(v: &[V], f: impl Fn(V) -> i32) -> Option<i32> {
    let mut lanes = [i32::MAX; 16];
    let mut blocks = v.chunks_exact(16);
    for b in &mut blocks {
        for (m, &x) in lanes.iter_mut().zip(b) {
            *m = (*m).min(f(x));
        }
    }
    for (m, &x) in lanes.iter_mut().zip(blocks.remainder()) {
        *m = (*m).min(f(x));
    }
    if v.is_empty() {
        None
    } else {
        lanes.into_iter().min()
    }
}
