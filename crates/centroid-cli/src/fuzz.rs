//! A mutation fuzzer for every reader of untrusted bytes: the CSV, NPY and
//! Parquet readers, checkpoints and the checkpoint index. It runs on stable
//! Rust as an ordinary test: seed files are mutated (bit flips, random
//! bytes, truncations, splices, duplicated or deleted runs, length fields
//! set to extremes) and each result is read as a user's file would be. A
//! case passes when it reads or fails with a one-line error; a panic fails
//! the test naming the case (an abort or a hang fails it too, by ending the
//! test process or never finishing).
//!
//! CI runs `FUZZ_CASES` cases per reader (default 2,000, a few seconds);
//! `FUZZ_CASES=200000 cargo test --release -p centroid-cli fuzz` runs more.
//! Every input that ever crashed a reader is kept in `tests/fuzz_regressions`
//! and replayed first.

use std::path::{Path, PathBuf};

use centroid::model_dir;

use crate::readers::{self, Format, ReadOptions};

/// SplitMix64: small, deterministic, no crate needed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// One to four mutations of `seed`, drawing splices from `others`.
fn mutate(seed: &[u8], others: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = rng.next() as u8;
            }
            2 => b.truncate(rng.below(len + 1)),
            3 if !others.is_empty() => {
                let o = &others[rng.below(others.len())];
                let from = rng.below(o.len());
                let take = rng.below(o.len() - from + 1).min(64);
                let at = rng.below(len + 1);
                b.splice(at..at, o[from..from + take].iter().copied());
            }
            4 if len > 0 => {
                let from = rng.below(len);
                let take = rng.below(len - from + 1).min(32);
                let run = b[from..from + take].to_vec();
                let at = rng.below(len + 1);
                b.splice(at..at, run);
            }
            5 if len > 0 => {
                let from = rng.below(len);
                let take = rng.below(len - from + 1).min(16);
                b.drain(from..from + take);
            }
            _ if len >= 8 => {
                // A length or count field set to an extreme.
                let width = [1usize, 2, 4, 8][rng.below(4)];
                let i = rng.below(len - width + 1);
                let extreme: u64 =
                    [0, 1, u64::MAX, i64::MAX as u64, 1 << 31, 0x7fff_ffff][rng.below(6)];
                b[i..i + width].copy_from_slice(&extreme.to_le_bytes()[..width]);
            }
            _ => {}
        }
    }
    b
}

fn cases() -> usize {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Runs `read` on every case; panics name the seed and case to replay.
fn fuzz(name: &str, seeds: &[Vec<u8>], read: &dyn Fn(&[u8]) -> Result<(), String>) {
    for file in regressions(name) {
        let bytes = std::fs::read(&file).unwrap();
        check(name, &format!("{}", file.display()), &bytes, read);
    }
    let mut rng = Rng(0x5eed ^ name.len() as u64);
    for case in 0..cases() {
        let seed = &seeds[case % seeds.len()];
        let bytes = mutate(seed, seeds, &mut rng);
        check(name, &format!("case {case}"), &bytes, read);
    }
}

fn check(name: &str, case: &str, bytes: &[u8], read: &dyn Fn(&[u8]) -> Result<(), String>) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(bytes)));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(msg)) => assert!(
            !msg.contains('\n') && !msg.is_empty(),
            "{name} {case}: the error is not one line: {msg:?}"
        ),
        Err(_) => {
            let keep = std::env::temp_dir().join(format!("centroid-fuzz-{name}-crash.bin"));
            let _ = std::fs::write(&keep, bytes);
            panic!("{name} {case} panicked; input saved to {}", keep.display());
        }
    }
}

fn regressions(name: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(name);
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Opens `bytes` as a data file and reads it every way the commands do.
fn read_data(dir: &Path, format: Format, ext: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(format!("case.{ext}"));
    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    let opts = ReadOptions {
        format: Some(format),
        ..Default::default()
    };
    let source = readers::open(&path, &opts).map_err(|e| e.to_string())?;
    for b in source.batches(3).map_err(|e| e.to_string())? {
        b.map_err(|e| e.to_string())?;
    }
    source.read_all().map_err(|e| e.to_string())?;
    Ok(())
}

fn csv_seeds() -> Vec<Vec<u8>> {
    vec![
        b"x,y,z\n1,2,3\n4.5,-6e3,7\n8,9,10\n".to_vec(),
        b"1\t2\n3\t4\n5\t6\n".to_vec(),
        b"# comment\n\"a\";\"b\"\n1,5;2\n3;4\n".to_vec(),
        b"1 2 3\n4 5 6\n".to_vec(),
    ]
}

fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
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
    out
}

fn npy_seeds() -> Vec<Vec<u8>> {
    let f32s: Vec<u8> = (0..6)
        .flat_map(|i| (i as f32 * 1.5).to_le_bytes())
        .collect();
    let f64s: Vec<u8> = (0..6)
        .flat_map(|i| (i as f64 - 2.0).to_le_bytes())
        .collect();
    let i64s: Vec<u8> = (0..6i64).flat_map(|i| (i * 7).to_be_bytes()).collect();
    vec![
        npy("<f4", false, "(3, 2)", &f32s),
        npy("<f8", true, "(2, 3)", &f64s),
        npy(">i8", false, "(6,)", &i64s),
        npy("|u1", false, "(2, 1, 3)", &[1, 2, 3, 4, 5, 6]),
    ]
}

fn parquet_seeds() -> Vec<Vec<u8>> {
    use arrow_array::{ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch};
    use std::sync::Arc;
    let mut out = Vec::new();
    for compression in [
        parquet::basic::Compression::UNCOMPRESSED,
        parquet::basic::Compression::SNAPPY,
    ] {
        let x: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.5, -3.0, 4.0, 5.0]));
        let y: ArrayRef = Arc::new(Float32Array::from(vec![0.5f32, 1.0, 1.5, 2.0, 2.5]));
        let id: ArrayRef = Arc::new(Int64Array::from(vec![1i64, 2, 3, 4, 5]));
        let batch = RecordBatch::try_from_iter([("x", x), ("y", y), ("id", id)]).unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .set_compression(compression)
            .build();
        let mut bytes = Vec::new();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        out.push(bytes);
    }
    out
}

/// Six rows of two features as one constant batch.
fn constant_input(data: &[f32]) -> centroid::Result<centroid::Input<'_>> {
    Ok(centroid::Input::constant(centroid::Dense::new(data, 6, 2)?))
}

/// A small trained model's checkpoint directory: (index text, checkpoint).
fn checkpoint_seeds(dir: &Path) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut seeds = Vec::new();
    let data: Vec<f32> = vec![1., 2., 1.5, 1.8, 5., 8., 8., 8., 1., 0.6, 9., 11.];
    for mini in [false, true] {
        let model = dir.join(format!("seed-model-{mini}"));
        let mode = centroid::Mode::from_flags(mini, if mini { 2 } else { 1 }).unwrap();
        let p = centroid::KMeansParams::new(2).mode(mode).check().unwrap();
        let mut est = centroid::KMeansClustering::new(p, Some(model.clone()), None).unwrap();
        est.train(
            || constant_input(&data),
            centroid::TrainArgs {
                steps: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        seeds.push(std::fs::read(model_dir::checkpoint_path(&model, 2)).unwrap());
        if !mini {
            let index = std::fs::read(model.join(model_dir::INDEX_FILE)).unwrap();
            seeds.push(index);
        }
    }
    let index = seeds.remove(1);
    (index, seeds)
}

#[test]
fn fuzz_csv() {
    let dir = tempfile::tempdir().unwrap();
    fuzz("csv", &csv_seeds(), &|b| {
        read_data(dir.path(), Format::Csv, "csv", b)
    });
}

#[test]
fn fuzz_npy() {
    let dir = tempfile::tempdir().unwrap();
    fuzz("npy", &npy_seeds(), &|b| {
        read_data(dir.path(), Format::Npy, "npy", b)
    });
}

#[test]
fn fuzz_parquet() {
    let dir = tempfile::tempdir().unwrap();
    fuzz("parquet", &parquet_seeds(), &|b| {
        read_data(dir.path(), Format::Parquet, "parquet", b)
    });
}

#[test]
fn fuzz_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (_, seeds) = checkpoint_seeds(dir.path());
    fuzz("checkpoint", &seeds, &|b| {
        model_dir::load_bytes(Path::new("model.ckpt-2.safetensors"), b)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}

#[test]
fn fuzz_checkpoint_index() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = checkpoint_seeds(dir.path());
    let model = dir.path().join("seed-model-false");
    fuzz("checkpoint_index", &[index], &|b| {
        std::fs::write(model.join(model_dir::INDEX_FILE), b).map_err(|e| e.to_string())?;
        model_dir::load_latest_good_reporting(&model)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}
