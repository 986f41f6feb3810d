//! Which instruction sets this CPU runs, and capability tokens that prove it.
//!
//! A token ([`Avx2Fma`], [`Avx512F`], [`AmxBf16`], [`Avx512Bf16`]) is a zero-sized value
//! that only this module can make, and only after the runtime check for its
//! features succeeded. The unsafe entry points compiled for an instruction
//! set take the token as an argument, so the safe functions that call them
//! (`dispatch::run`, `bf16::run`) cannot be reached on a CPU without the
//! features: holding an [`Isa`] or a `Bf16Centres` is the proof.

use crate::float::Float;
use crate::kernels::simd::Simd;

/// Defines `$name`, a safe function that runs `$body` (an
/// `#[inline(always)]` function of the same arguments, generic over
/// `T: Float`) compiled for the widest instruction set [`Isa::detect`]
/// finds: for plain loops whose baseline build is narrow, where the
/// compiler's vectorisation needs only the wider target, not intrinsics.
macro_rules! widest_isa {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:ident;) => {
        $(#[$meta])*
        $vis fn $name<T: Float>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            fn avx512<T: Float>(_: $crate::kernels::isa::Avx512F, $($arg: $ty),*) $(-> $ret)? {
                $body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2<T: Float>(_: $crate::kernels::isa::Avx2Fma, $($arg: $ty),*) $(-> $ret)? {
                $body($($arg),*)
            }
            match $crate::kernels::isa::Isa::detect() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the token proves the CPU runs AVX-512F.
                $crate::kernels::isa::Isa::Avx512(t) => unsafe { avx512(t, $($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the token proves the CPU runs AVX2 and FMA.
                $crate::kernels::isa::Isa::Avx2(t) => unsafe { avx2(t, $($arg),*) },
                $crate::kernels::isa::Isa::Portable => $body($($arg),*),
            }
        }
    };
}
pub(crate) use widest_isa;

/// Proof that this CPU runs AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Avx2Fma(());

/// Proof that this CPU runs AVX-512F.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Avx512F(());

/// Proof that this process may run the AMX kernel: the CPU has AMX-TILE and
/// AMX-BF16, AVX-512F/BW/DQ/VL, FMA and AVX512-BF16 (every processor with
/// AMX-BF16 has it) for the rest of that kernel, the
/// operating system granted the tile state, and neither `CENTROID_AMX` nor
/// `CENTROID_BF16` is `0`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AmxBf16(());

/// Proof that this process may run the bf16 kernel's vector products: the
/// CPU has AVX512-BF16 (`vdpbf16ps`; Zen 4, Cooper Lake, Sapphire Rapids)
/// and AVX-512F/BW/DQ/VL and FMA for the rest of that kernel, and
/// `CENTROID_BF16` is not `0`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Avx512Bf16(());

#[cfg(target_arch = "x86_64")]
impl Avx2Fma {
    pub(crate) fn detect() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
            .then_some(Avx2Fma(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl Avx512F {
    pub(crate) fn detect() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx512f").then_some(Avx512F(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl AmxBf16 {
    /// The token, checked once per process (asking the operating system for
    /// the tile state is a one-time system call).
    pub(crate) fn detect() -> Option<Self> {
        static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        OK.get_or_init(amx_usable).then_some(AmxBf16(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl Avx512Bf16 {
    /// The token, checked once per process (like the tile unit's).
    pub(crate) fn detect() -> Option<Self> {
        static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        OK.get_or_init(|| !switched_off("CENTROID_BF16") && avx512_for_bf16())
            .then_some(Avx512Bf16(()))
    }
}

/// Whether the environment variable `name` is `0`.
#[cfg(target_arch = "x86_64")]
fn switched_off(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim() == "0")
}

/// What both bf16 engines use around their products: the AVX-512 subsets,
/// FMA, and AVX512-BF16 (the rows' conversion, `vcvtne2ps2bf16`; every
/// processor with AMX-BF16 has it).
#[cfg(target_arch = "x86_64")]
fn avx512_for_bf16() -> bool {
    use std::arch::is_x86_feature_detected;
    is_x86_feature_detected!("avx512bf16")
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
fn amx_usable() -> bool {
    if switched_off("CENTROID_AMX") || switched_off("CENTROID_BF16") || !avx512_for_bf16() {
        return false;
    }
    // CPUID leaf 7, sub-leaf 0: EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
    // (`__cpuid_count` is a safe function on current compilers.)
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 processor and only reads
    // identification registers.
    let leaf7 = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
    if leaf7.edx & (1 << 22) == 0 || leaf7.edx & (1 << 24) == 0 {
        return false;
    }
    request_tile_permission()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> bool {
    // Linux hands out the 8 KiB tile state only on request
    // (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)), once per
    // process; without it the first tile instruction faults.
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments; it touches no
    // memory of this process.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    r == 0
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_tile_permission() -> bool {
    false
}

/// An instruction-set path of the blocked kernels, with the proof that this
/// CPU runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// Plain arrays, any target.
    Portable,
    /// AVX2 + FMA (x86-64).
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2Fma),
    /// AVX-512F (x86-64).
    #[cfg(target_arch = "x86_64")]
    Avx512(Avx512F),
}

impl Isa {
    /// The fastest path this CPU runs.
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(t) = Avx512F::detect() {
                return Isa::Avx512(t);
            }
            if let Some(t) = Avx2Fma::detect() {
                return Isa::Avx2(t);
            }
        }
        Isa::Portable
    }

    /// Every path this CPU runs, slowest first.
    #[allow(dead_code)] // the tests and benchmarks compare the paths
    pub(crate) fn all() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut paths = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            paths.extend(Avx2Fma::detect().map(Isa::Avx2));
            paths.extend(Avx512F::detect().map(Isa::Avx512));
        }
        paths
    }

    /// Centres per panel on this path for element type `F`.
    pub(crate) fn lanes<F: Float>(self) -> usize {
        match self {
            Isa::Portable => <F::Portable as Simd>::LANES,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(_) => <F::Avx2 as Simd>::LANES,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(_) => <F::Avx512 as Simd>::LANES,
        }
    }
}

/// Asks the processor to start loading the 64-byte line at `at` into L2.
/// Only a hint: `at` may lie past the end of its allocation (the address is
/// formed with `wrapping_add` by callers, and a prefetch never faults), and
/// off x86-64 it does nothing.
#[inline(always)]
pub(crate) fn prefetch_line_l2<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        // SAFETY: SSE is part of the x86-64 baseline every build of this
        // crate targets, and a prefetch neither reads architecturally
        // visible state nor faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(at.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Asks the processor to start loading `values` into cache, one request per
/// 64-byte line. Only a hint: results never depend on it, and off x86-64
/// it does nothing. The sparse kernels use it to overlap the cache misses of
/// the next non-zeros' centre columns with the current one's arithmetic.
#[inline(always)]
pub(crate) fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let base = values.as_ptr().cast::<i8>();
        for offset in (0..std::mem::size_of_val(values)).step_by(64) {
            // SAFETY: SSE is part of the x86-64 baseline every build of this
            // crate targets; `base + offset` stays inside `values`; and a
            // prefetch neither reads architecturally visible state nor
            // faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// The instruction-set paths a test run must exercise, from
/// `CENTROID_REQUIRE` (comma-separated: `avx2`, `avx512`, `avx512bf16`,
/// `amx`). A test of
/// a path this processor lacks skips, saying so; a path named here turns
/// that skip into a failure, so a run can prove which kernels it tested.
#[cfg(test)]
pub(crate) mod require {
    /// The names `CENTROID_REQUIRE` takes, one per path with tests that skip.
    pub(crate) const PATHS: [&str; 4] = ["avx2", "avx512", "avx512bf16", "amx"];

    /// The paths named in `spec`; an unknown name is an error, so a typo
    /// (or a path this build has no kernel for) cannot pass unnoticed.
    pub(crate) fn parse(spec: &str) -> Result<Vec<&'static str>, String> {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                PATHS
                    .iter()
                    .copied()
                    .find(|p| p.eq_ignore_ascii_case(s))
                    .ok_or_else(|| {
                        format!(
                            "CENTROID_REQUIRE names {s:?}, which this build has no kernel for (known: {})",
                            PATHS.join(", ")
                        )
                    })
            })
            .collect()
    }

    /// The paths `CENTROID_REQUIRE` names; panics on a name it does not know.
    fn required() -> Vec<&'static str> {
        let spec = std::env::var("CENTROID_REQUIRE").unwrap_or_default();
        parse(&spec).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reports a test skipped because `path` is not available here, or
    /// fails it when `CENTROID_REQUIRE` names `path`.
    pub(crate) fn skip(path: &str, why: &str) {
        if required().contains(&path) {
            panic!("CENTROID_REQUIRE names {path}, but {why}");
        }
        eprintln!("{why}: skipped (CENTROID_REQUIRE={path} makes this a failure)");
    }

    /// Checks every path `CENTROID_REQUIRE` names against what this
    /// processor runs (`available`), failing on the first one it lacks; a
    /// name this build has no kernel for fails even where every path runs.
    pub(crate) fn check(available: &[&str]) {
        required();
        for path in PATHS {
            if !available.contains(&path) {
                skip(path, &format!("this processor has no {path} path"));
            }
        }
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(parse("avx512, AMX"), Ok(vec!["avx512", "amx"]));
        assert_eq!(parse("avx512,,avx2"), Ok(vec!["avx512", "avx2"]));
        assert_eq!(parse("avx512bf16"), Ok(vec!["avx512bf16"]));
        let e = parse("avx512,avx512fp16").unwrap_err();
        assert!(
            e.contains("\"avx512fp16\"") && e.contains("no kernel"),
            "{e}"
        );
    }
}
