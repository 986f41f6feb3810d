//! NPY files written and read by hand (format version 1.0), independent of
//! the program's own reader and writer. Used by the integration tests (through
//! `common`) and by the NPY reader's unit tests (through `#[path]`), so it
//! needs nothing but std.
#![allow(dead_code)]

use std::path::Path;

/// The magic, the header length and the header `dict`, padded with spaces
/// and a newline so that the data starts at a multiple of 64 bytes.
pub fn header_bytes(dict: &str) -> Vec<u8> {
    let mut h = dict.as_bytes().to_vec();
    let pad = (64 - (10 + h.len() + 1) % 64) % 64;
    h.resize(h.len() + pad, b' ');
    h.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(&h);
    out
}

/// Writes an .npy file of `shape` whose elements are `data` as given.
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
    let mut out = header_bytes(&dict);
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap();
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
