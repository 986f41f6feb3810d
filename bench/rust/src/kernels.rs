//! Times one Lloyd iteration's kernel work on synthetic Gaussian blobs with
//! a fixed seed, the centres prepared afresh each time as a training step
//! does: `assign_accumulate`, or with `--assign` the labels alone
//! (`assign`, the kernel of a pass that moves only the changed rows).
//!
//! Usage: `cargo run --release -p centroid-bench --bin kernels -- [--threads N]
//! [--reps R] [--f64] [--cosine] [--assign] [--shape NxDxK ...]`. Prints seconds per iteration (the
//! median of R timed runs after one warm-up, plus the fastest) and the
//! effective GFLOP/s `2 n k d / time`.

use std::time::Instant;

use centroid::kernels::{assign, assign_accumulate, ClusterStats, PreparedCentres};
use centroid::{Float, MatRef, Metric};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The shapes the speed targets are stated for: (n, d, k).
const DEFAULT_SHAPES: [(usize, usize, usize); 3] =
    [(1_000_000, 8, 16), (300_000, 32, 256), (200_000, 128, 1000)];

struct Args {
    threads: usize,
    reps: usize,
    f64: bool,
    cosine: bool,
    /// Time `assign` (labels and scores only) instead of the fused pass.
    assign: bool,
    shapes: Vec<(usize, usize, usize)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        threads: 2,
        reps: 7,
        f64: false,
        cosine: false,
        assign: false,
        shapes: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--threads" => {
                args.threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--reps" => {
                args.reps = value("--reps")?
                    .parse()
                    .map_err(|e| format!("--reps: {e}"))?
            }
            "--f64" => args.f64 = true,
            "--cosine" => args.cosine = true,
            "--assign" => args.assign = true,
            "--shape" => {
                let v = value("--shape")?;
                let parts: Vec<usize> = v
                    .split('x')
                    .map(|p| p.parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--shape {v}: {e}"))?;
                match parts[..] {
                    [n, d, k] if n > 0 && d > 0 && k > 0 => args.shapes.push((n, d, k)),
                    _ => return Err(format!("--shape {v}: expected NxDxK, all positive")),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.shapes.is_empty() {
        args.shapes = DEFAULT_SHAPES.to_vec();
    }
    if args.reps == 0 || args.threads == 0 {
        return Err("--reps and --threads must be positive".into());
    }
    Ok(args)
}

/// `n x d` points around `blobs` centres drawn uniformly from `[-10, 10]^d`,
/// unit Gaussian noise (Box-Muller), fixed seed.
fn gaussian_blobs<T: Float>(n: usize, d: usize, blobs: usize, seed: u64) -> Vec<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f64> = (0..blobs * d).map(|_| rng.gen_range(-10.0..10.0)).collect();
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let b = rng.gen_range(0..blobs);
        for p in 0..d {
            let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            out.push(T::from_f64_lossy(centres[b * d + p] + z));
        }
    }
    out
}

/// CPU seconds this process has used (user + system), from /proc; `None`
/// where that is not available. On a shared machine wall time includes
/// waiting for a core; CPU time does not (but includes rayon's idle spinning).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn run<T: Float>(args: &Args, pool: &rayon::ThreadPool) {
    let metric = if args.cosine {
        Metric::Cosine
    } else {
        Metric::SquaredEuclidean
    };
    for &(n, d, k) in &args.shapes {
        let data = gaussian_blobs::<T>(n, d, k, 42);
        let x = MatRef::new(&data, n, d).expect("shape");
        // Initial centres: k rows spread through the data.
        let stride = n / k;
        let centres: Vec<T> = (0..k)
            .flat_map(|j| x.row(j * stride).iter().copied())
            .collect();
        let centres = MatRef::new(&centres, k, d).expect("shape");
        let mut labels = vec![0u32; n];
        let mut stats = ClusterStats::new(k, d);
        let mut scores = vec![T::zero(); if args.assign { n } else { 0 }];
        let mut step = || {
            let t = Instant::now();
            let prepared = PreparedCentres::new(centres, metric);
            if args.assign {
                assign(x, &prepared, &mut labels, &mut scores);
            } else {
                assign_accumulate(x, None, &prepared, Some(&mut labels), &mut stats);
            }
            t.elapsed().as_secs_f64()
        };
        let mut cpu = 0.0;
        let mut times: Vec<f64> = pool.install(|| {
            step();
            let cpu0 = process_cpu_seconds();
            let t: Vec<f64> = (0..args.reps).map(|_| step()).collect();
            if let (Some(a), Some(b)) = (cpu0, process_cpu_seconds()) {
                cpu = (b - a) / args.reps as f64;
            }
            t
        });
        let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
        let med = median(&mut times);
        let flops = 2.0 * n as f64 * k as f64 * d as f64;
        println!(
            "{n:>9} x {d:<4} k={k:<5} {dtype} {metric:?} threads={threads}: median {med:.4} s/iter ({:.1} GFLOP/s), best {best:.4} s ({:.1} GFLOP/s), CPU {cpu:.4} s/iter, loss {:.6e}",
            flops / med / 1e9,
            flops / best / 1e9,
            stats.loss,
            dtype = T::DTYPE,
            threads = args.threads,
        );
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kernels bench: {e}");
            std::process::exit(2);
        }
    };
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kernels bench: cannot start {} threads: {e}", args.threads);
            std::process::exit(1);
        }
    };
    if args.f64 {
        run::<f64>(&args, &pool);
    } else {
        run::<f32>(&args, &pool);
    }
}
