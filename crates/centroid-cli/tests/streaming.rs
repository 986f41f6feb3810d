//! Mini-batch training streams: a file four times larger than the address
//! space the process may use (`ulimit -v`) trains to the end. The same limit
//! makes reading the whole file fail, which shows the limit binds.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::*;

/// Virtual memory the process may use, in KiB. The binary needs about 30 MiB
/// to start and stream (measured with the debug build).
const LIMIT_KIB: u64 = 48 * 1024;
const D: usize = 16;
const CENTRES: [f32; 4] = [0.0, 20.0, -20.0, 40.0];

/// A block of rows: blob j has every coordinate near CENTRES[j]. Rows cycle
/// through the blobs.
fn block(rows: usize) -> Vec<[f32; D]> {
    let mut rng = Rng::new(5);
    (0..rows)
        .map(|r| {
            let c = CENTRES[r % 4];
            let mut row = [0f32; D];
            for v in row.iter_mut() {
                *v = c + (rng.uniform() as f32) * 0.5;
            }
            row
        })
        .collect()
}

fn run_limited(args: &str) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_centroid");
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {LIMIT_KIB}; exec {bin} {args}"))
        .env("MALLOC_ARENA_MAX", "2")
        .output()
        .unwrap()
}

fn check_trained(model: &Path, out: &std::process::Output, expect_steps: i64) {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = json(&out.stdout);
    assert_eq!(t["global_step"].as_i64().unwrap(), expect_steps);
    // The centres found the blobs.
    let centres = saved_centres(model);
    for c in CENTRES {
        let target = vec![c as f64; D];
        let (_, d2) = nearest(&target, &centres);
        assert!(d2 < 0.1 * D as f64, "no centre near {c}: {centres:?}");
    }
}

#[test]
fn npy_four_times_the_memory_limit_trains_in_mini_batches() {
    let dir = tmp();
    let path = p(&dir, "big.npy");
    let rows_per_block = 65536;
    let blocks = 48; // 3 Mi rows x 16 x f32 = 192 MiB
    let n = rows_per_block * blocks;
    let b: Vec<u8> = block(rows_per_block)
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    write_npy_bytes(&path, "<f4", false, &[n, D], &[]);
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        for _ in 0..blocks {
            f.write_all(&b).unwrap();
        }
    }
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size >= 4 * LIMIT_KIB * 1024, "file of {size} bytes");

    let model = p(&dir, "m");
    let out = run_limited(&format!(
        "train --mini-batch --batch-size 8192 -k 4 --init kmeans_plus_plus --json -q --data {} --model-dir {}",
        path.display(),
        model.display()
    ));
    check_trained(&model, &out, (n / 8192) as i64);
}

#[test]
fn csv_four_times_the_memory_limit_trains_in_mini_batches() {
    let dir = tmp();
    let path = p(&dir, "big.csv");
    let rows_per_block = 8192;
    let mut text = String::new();
    for row in block(rows_per_block) {
        let fields: Vec<String> = row.iter().map(|v| format!("{v:.3}")).collect();
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    let mut blocks = 0;
    {
        let mut f = std::fs::File::create(&path).unwrap();
        let header: Vec<String> = (0..D).map(|j| format!("f{j}")).collect();
        writeln!(f, "{}", header.join(",")).unwrap();
        while (blocks * text.len()) < (4 * LIMIT_KIB * 1024) as usize {
            f.write_all(text.as_bytes()).unwrap();
            blocks += 1;
        }
    }
    let n = rows_per_block * blocks;

    let model = p(&dir, "m");
    let out = run_limited(&format!(
        "train --mini-batch --batch-size 8192 -k 4 --init kmeans_plus_plus --json -q --data {} --model-dir {}",
        path.display(),
        model.display()
    ));
    check_trained(&model, &out, n.div_ceil(8192) as i64);

    // Control: reading the whole file (full batch) does not fit the limit.
    let out = run_limited(&format!(
        "train --full-batch --steps 1 -k 4 -q --data {} --model-dir {}",
        path.display(),
        p(&dir, "m2").display()
    ));
    assert!(
        !out.status.success(),
        "the limit does not bind: full batch fitted"
    );
}
