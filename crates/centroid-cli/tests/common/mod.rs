//! Shared helpers for the command-line tests: data generation with a known
//! cluster structure, file writers independent of the program's readers, and
//! brute-force references.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub fn centroid() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_centroid"));
    c.env_remove("RUST_BACKTRACE");
    c
}

/// SplitMix64: a tiny deterministic generator, so the tests need no crate.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// Well-separated blobs: `per` points in a box of half-width 1 around each
/// of `centres`; returns the rows and each row's blob. Rows are interleaved
/// (blob 0, 1, 2, 0, 1, 2, ...) so any batch holds every blob.
pub fn blobs(centres: &[Vec<f64>], per: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..per {
        for (j, c) in centres.iter().enumerate() {
            rows.push(c.iter().map(|m| m + rng.uniform()).collect());
            labels.push(j);
        }
    }
    (rows, labels)
}

pub fn three_blobs() -> (Vec<Vec<f64>>, Vec<usize>) {
    blobs(&[vec![0.0, 0.0], vec![20.0, 0.0], vec![0.0, 20.0]], 40, 7)
}

pub fn blob_means(rows: &[Vec<f64>], labels: &[usize], k: usize) -> Vec<Vec<f64>> {
    let d = rows[0].len();
    let mut sums = vec![vec![0.0; d]; k];
    let mut counts = vec![0usize; k];
    for (r, &l) in rows.iter().zip(labels) {
        counts[l] += 1;
        for j in 0..d {
            sums[l][j] += r[j];
        }
    }
    sums.into_iter()
        .zip(counts)
        .map(|(s, c)| s.into_iter().map(|v| v / c as f64).collect())
        .collect()
}

pub fn write_csv(path: &Path, header: Option<&[&str]>, rows: &[Vec<f64>], delimiter: char) {
    let mut s = String::new();
    if let Some(h) = header {
        s.push_str(&h.join(&delimiter.to_string()));
        s.push('\n');
    }
    for r in rows {
        let fields: Vec<String> = r.iter().map(|v| format!("{v}")).collect();
        s.push_str(&fields.join(&delimiter.to_string()));
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// Writes an .npy file by hand (version 1.0 header, padded to 64 bytes).
pub fn write_npy_bytes(path: &Path, descr: &str, fortran: bool, shape: &[usize], data: &[u8]) {
    let shape_s = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape_s}, }}",
        if fortran { "True" } else { "False" }
    );
    let mut h = dict.into_bytes();
    let pad = (64 - (10 + h.len() + 1) % 64) % 64;
    h.resize(h.len() + pad, b' ');
    h.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap();
}

pub fn write_npy_f32(path: &Path, rows: &[Vec<f64>]) {
    let d = rows[0].len();
    let bytes: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|v| (*v as f32).to_le_bytes())
        .collect();
    write_npy_bytes(path, "<f4", false, &[rows.len(), d], &bytes);
}

/// Float64 in Fortran (column-major) order.
pub fn write_npy_f64_fortran(path: &Path, rows: &[Vec<f64>]) {
    let d = rows[0].len();
    let mut bytes = Vec::new();
    for j in 0..d {
        for r in rows {
            bytes.extend_from_slice(&r[j].to_le_bytes());
        }
    }
    write_npy_bytes(path, "<f8", true, &[rows.len(), d], &bytes);
}

/// Reads an .npy the test wrote or the program wrote: (descr, shape, data
/// as f64).
pub fn read_npy(path: &Path) -> (String, Vec<usize>, Vec<f64>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..6], b"\x93NUMPY");
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hl]).unwrap();
    let descr = header
        .split("'descr': '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    let shape_s = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data = &b[10 + hl..];
    let values: Vec<f64> = match descr.as_str() {
        "<i8" => data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        "<f4" => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        "<f8" => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        other => panic!("unexpected descr {other}"),
    };
    assert_eq!(values.len(), shape.iter().product::<usize>());
    (descr, shape, values)
}

/// The centres stored in the model's latest checkpoint, read through the
/// checkpoint module (not through the command line).
pub fn saved_centres(model_dir: &Path) -> Vec<Vec<f64>> {
    let loaded = centroid::model_dir::load_latest_good(model_dir)
        .unwrap()
        .unwrap();
    let c = loaded.state.clusters();
    let d = c.cols();
    c.to_type::<f64>().chunks(d).map(|r| r.to_vec()).collect()
}

pub fn sq_norm(a: &[f64]) -> f64 {
    a.iter().map(|x| x * x).sum()
}

pub fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Brute force: index of the nearest centre (lowest index on ties), and
/// the squared distance to it.
pub fn nearest(row: &[f64], centres: &[Vec<f64>]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (j, c) in centres.iter().enumerate() {
        let d = sq_dist(row, c);
        if d < best.1 {
            best = (j, d);
        }
    }
    best
}

/// Checks that `pred` partitions the rows exactly as `truth` does (up to a
/// renaming of the clusters).
pub fn assert_same_partition(pred: &[usize], truth: &[usize], k: usize) {
    assert_eq!(pred.len(), truth.len());
    let mut map = vec![None; k];
    for (&p, &t) in pred.iter().zip(truth) {
        match map[t] {
            None => map[t] = Some(p),
            Some(q) => assert_eq!(q, p, "blob {t} split between clusters {q} and {p}"),
        }
    }
    let mut used: Vec<usize> = map.iter().map(|m| m.unwrap()).collect();
    used.sort_unstable();
    used.dedup();
    assert_eq!(used.len(), k, "two blobs share a cluster: {map:?}");
}

pub fn parse_index_csv(text: &str) -> Vec<usize> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("cluster_index"));
    lines.map(|l| l.trim().parse().unwrap()).collect()
}

pub fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn p(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
