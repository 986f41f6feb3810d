//! Principal component analysis to two dimensions, for plots.
//!
//! Subspace (block power) iteration on the centred data, never forming the
//! d x d covariance: each round costs two passes of n x d multiply-adds, so
//! it stays cheap at d = 784 where a covariance would cost n d^2.

/// The top two principal axes of a data set.
#[derive(Clone, Debug)]
pub struct Pca {
    pub mean: Vec<f64>,
    /// Two orthonormal axes, each of length d.
    pub axes: [Vec<f64>; 2],
    /// Fraction of the total variance along each axis.
    pub explained: [f64; 2],
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalise(v: &mut [f64]) -> f64 {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    n
}

impl Pca {
    /// Fits on `rows x d` row-major values. Works for d = 1 (the second axis
    /// is then zero) and for data with no variance (axes along coordinates).
    pub fn fit(x: &[f64], rows: usize, d: usize) -> Pca {
        let mut mean = vec![0.0; d];
        for r in x.chunks_exact(d) {
            mean.iter_mut().zip(r).for_each(|(m, v)| *m += v);
        }
        mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
        let centred: Vec<f64> = x
            .chunks_exact(d)
            .flat_map(|r| r.iter().zip(&mean).map(|(v, m)| v - m))
            .collect();
        let total: f64 = centred.iter().map(|v| v * v).sum();

        // Fixed, generic start vectors (deterministic; unlikely to be
        // orthogonal to the leading axes).
        let mut q: [Vec<f64>; 2] = [
            (0..d)
                .map(|j| 1.0 + ((j as f64) * 0.618_034).fract())
                .collect(),
            (0..d)
                .map(|j| ((j as f64 + 1.0) * 2.399_963).sin())
                .collect(),
        ];
        orthonormalise(&mut q);
        let mut projected = vec![0.0; rows * 2];
        for _ in 0..300 {
            // z = X q  (rows x 2), then q' = X^T z (d x 2).
            for (r, row) in centred.chunks_exact(d).enumerate() {
                projected[2 * r] = dot(row, &q[0]);
                projected[2 * r + 1] = dot(row, &q[1]);
            }
            let mut next = [vec![0.0; d], vec![0.0; d]];
            for (r, row) in centred.chunks_exact(d).enumerate() {
                let (a, b) = (projected[2 * r], projected[2 * r + 1]);
                for j in 0..d {
                    next[0][j] += a * row[j];
                    next[1][j] += b * row[j];
                }
            }
            orthonormalise(&mut next);
            let change = 2.0 - dot(&next[0], &q[0]).abs() - dot(&next[1], &q[1]).abs();
            q = next;
            if change < 1e-12 {
                break;
            }
        }
        // Order by variance and fix signs (largest component positive).
        let var = |v: &[f64]| -> f64 {
            centred
                .chunks_exact(d)
                .map(|row| dot(row, v).powi(2))
                .sum::<f64>()
        };
        let (mut v0, mut v1) = (var(&q[0]), var(&q[1]));
        if v1 > v0 {
            q.swap(0, 1);
            std::mem::swap(&mut v0, &mut v1);
        }
        for axis in q.iter_mut() {
            let big = axis
                .iter()
                .copied()
                .fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
            if big < 0.0 {
                axis.iter_mut().for_each(|v| *v = -*v);
            }
        }
        let explained = if total > 0.0 {
            [v0 / total, v1 / total]
        } else {
            [0.0, 0.0]
        };
        Pca {
            mean,
            axes: q,
            explained,
        }
    }

    /// The 2-D coordinates of one row.
    pub fn project(&self, row: &[f64]) -> (f64, f64) {
        let mut p = (0.0, 0.0);
        for j in 0..row.len() {
            let c = row[j] - self.mean[j];
            p.0 += c * self.axes[0][j];
            p.1 += c * self.axes[1][j];
        }
        p
    }
}

/// Gram-Schmidt on two vectors; a vector that vanishes is replaced by a
/// coordinate axis orthogonal to the other (data of rank < 2).
fn orthonormalise(q: &mut [Vec<f64>; 2]) {
    let d = q[0].len();
    if normalise(&mut q[0]) == 0.0 {
        q[0] = unit(d, 0);
    }
    let p = dot(&q[0], &q[1]);
    let first = q[0].clone();
    q[1].iter_mut().zip(&first).for_each(|(v, a)| *v -= p * a);
    if normalise(&mut q[1]) < 1e-300 || d == 1 {
        q[1] = if d == 1 {
            vec![0.0]
        } else {
            least_aligned_axis(&q[0])
        };
    }
}

fn unit(d: usize, j: usize) -> Vec<f64> {
    let mut v = vec![0.0; d];
    v[j] = 1.0;
    v
}

fn least_aligned_axis(a: &[f64]) -> Vec<f64> {
    let j = (0..a.len())
        .min_by(|&i, &k| a[i].abs().total_cmp(&a[k].abs()))
        .unwrap_or(0);
    let mut v = unit(a.len(), j);
    let p = dot(&v, a);
    v.iter_mut().zip(a).for_each(|(x, y)| *x -= p * y);
    normalise(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on a stretched, rotated ellipse: the axes are known exactly.
    #[test]
    fn finds_known_axes() {
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let mut x = Vec::new();
        for i in 0..360 {
            let t = (i as f64).to_radians();
            let (a, b) = (5.0 * t.cos(), 1.0 * t.sin());
            // Rotate in the (0, 1) plane, third coordinate constant + offset.
            x.extend_from_slice(&[10.0 + c * a - s * b, -3.0 + s * a + c * b, 7.0]);
        }
        let p = Pca::fit(&x, 360, 3);
        assert!((p.mean[0] - 10.0).abs() < 1e-9 && (p.mean[1] + 3.0).abs() < 1e-9);
        let a0 = &p.axes[0];
        assert!(
            (a0[0].abs() - c).abs() < 1e-6 && (a0[1].abs() - s).abs() < 1e-6 && a0[2].abs() < 1e-9,
            "{a0:?}"
        );
        let a1 = &p.axes[1];
        assert!(
            (a1[0].abs() - s).abs() < 1e-6 && (a1[1].abs() - c).abs() < 1e-6,
            "{a1:?}"
        );
        // Variances 25/2 and 1/2: fractions 25/26 and 1/26.
        assert!(
            (p.explained[0] - 25.0 / 26.0).abs() < 1e-6,
            "{:?}",
            p.explained
        );
        assert!((p.explained[1] - 1.0 / 26.0).abs() < 1e-6);
    }

    #[test]
    fn handles_degenerate_data() {
        let p = Pca::fit(&[1.0, 2.0, 3.0], 3, 1);
        assert_eq!(p.project(&[2.0]).1, 0.0);
        assert!((p.project(&[3.0]).0 - 1.0).abs() < 1e-12);
        let p = Pca::fit(&[1.0, 1.0, 1.0, 1.0], 2, 2);
        assert!(p.project(&[1.0, 1.0]).0.is_finite());
    }
}
