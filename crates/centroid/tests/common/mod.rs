#![allow(dead_code)]
//! Shared helpers for the integration tests: seeded data and brute force.

use centroid::{Dense, Input, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A standard normal draw (Box-Muller).
pub fn normal(r: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = r.gen_range(f64::EPSILON..1.0);
    let u2: f64 = r.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Well-separated 2-D blobs as in the reference Estimator's tests: `n` points
/// around `k` centres of norm ~500 with offsets of s.d. `sd`. Returns the
/// points (row-major), the true centres, each point's true cluster, and the
/// sum of squared offsets.
pub struct Blobs {
    pub points: Vec<f32>,
    pub centres: Vec<[f64; 2]>,
    pub labels: Vec<usize>,
    pub offsets_sq: f64,
}

pub fn blobs(n: usize, k: usize, sd: f64, seed: u64) -> Blobs {
    let mut r = rng(seed);
    let centres: Vec<[f64; 2]> = (0..k)
        .map(|j| {
            let a = 2.0 * std::f64::consts::PI * j as f64 / k as f64 + 0.3;
            let norm = 500.0 + 20.0 * j as f64;
            [norm * a.cos(), norm * a.sin()]
        })
        .collect();
    let mut points = Vec::with_capacity(2 * n);
    let mut labels = Vec::with_capacity(n);
    let mut offsets_sq = 0.0;
    for i in 0..n {
        let j = i % k;
        let (dx, dy) = (sd * normal(&mut r), sd * normal(&mut r));
        let p = [(centres[j][0] + dx) as f32, (centres[j][1] + dy) as f32];
        offsets_sq += (p[0] as f64 - centres[j][0]).powi(2) + (p[1] as f64 - centres[j][1]).powi(2);
        points.extend_from_slice(&p);
        labels.push(j);
    }
    Blobs {
        points,
        centres,
        labels,
        offsets_sq,
    }
}

/// An input_fn giving the whole data set as one constant batch.
pub fn constant<'a>(data: &'a [f32], cols: usize) -> impl FnMut() -> Result<Input<'a>> {
    move || Ok(Input::constant(Dense::new(data, data.len() / cols, cols)?))
}

/// An input_fn giving endless batches of `batch` rows drawn at random (with
/// a fixed seed per call, so every call yields the same sequence).
pub fn random_batches(
    data: &[f32],
    cols: usize,
    batch: usize,
    seed: u64,
) -> impl FnMut() -> Result<Input<'static>> + '_ {
    move || {
        let n = data.len() / cols;
        let mut r = rng(seed);
        let data = data.to_vec();
        Ok(Input::batches(std::iter::from_fn(move || {
            let mut b = Vec::with_capacity(batch * cols);
            for _ in 0..batch {
                let i = r.gen_range(0..n);
                b.extend_from_slice(&data[i * cols..(i + 1) * cols]);
            }
            Some(Dense::new(b, batch, cols).map(Into::into))
        })))
    }
}

/// Nearest centre by brute force in f64: (index, squared distance).
pub fn nearest(row: &[f32], centres: &[f64], cols: usize) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (j, c) in centres.chunks(cols).enumerate() {
        let d: f64 = row
            .iter()
            .zip(c)
            .map(|(&x, &c)| (x as f64 - c).powi(2))
            .sum();
        if d < best.1 {
            best = (j, d);
        }
    }
    best
}

pub fn centres_f64(est: &centroid::KMeansClustering) -> Vec<f64> {
    est.cluster_centers().unwrap().to_type::<f64>().into_owned()
}
