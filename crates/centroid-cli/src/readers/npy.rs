//! NumPy `.npy` files.
//!
//! The header is parsed here (it is a small Python dict literal). The whole
//! array is reached through a memory map, so a file larger than memory can be
//! clustered in full-batch mode without being read in; native-endian f32/f64
//! data in C order is used in place without a copy. Batches for streaming are
//! read with positioned reads instead, so that mini-batch training touches
//! only one batch worth of address space.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use centroid::{DType, Dense, Error, Result};

use super::{
    non_finite, read_error, row_blocks, select_columns, Block, Buffer, ReadOptions, Source,
};

/// The element type stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::I8 | Elem::U8 | Elem::Bool => 1,
            Elem::I16 | Elem::U16 => 2,
            Elem::F32 | Elem::I32 | Elem::U32 => 4,
            Elem::F64 | Elem::I64 | Elem::U64 => 8,
        }
    }
    fn is_float(self) -> bool {
        matches!(self, Elem::F32 | Elem::F64)
    }
}

/// What the header says.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub elem: Elem,
    pub little_endian: bool,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Byte offset of the first element.
    pub data_offset: usize,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::InvalidData(format!("{}: not a valid .npy file: {msg}", path.display()))
}

/// Parses the descr string, e.g. `<f4`, `|u1`, `>i8`.
fn parse_descr(path: &Path, descr: &str) -> Result<(Elem, bool)> {
    let (order, code) = match descr.as_bytes().first() {
        Some(b'<' | b'>' | b'|' | b'=') => (descr.as_bytes()[0], &descr[1..]),
        _ => (b'=', descr),
    };
    let elem = match code {
        "f4" => Elem::F32,
        "f8" => Elem::F64,
        "i1" => Elem::I8,
        "i2" => Elem::I16,
        "i4" => Elem::I32,
        "i8" => Elem::I64,
        "u1" => Elem::U8,
        "u2" => Elem::U16,
        "u4" => Elem::U32,
        "u8" => Elem::U64,
        "b1" => Elem::Bool,
        _ => {
            return Err(Error::InvalidData(format!(
            "{}: element type {descr:?} is not supported (use float32, float64, integers or uint8)",
            path.display()
        )))
        }
    };
    let little_endian = match order {
        b'>' => false,
        b'<' => true,
        _ => cfg!(target_endian = "little"),
    };
    Ok((elem, little_endian))
}

/// Parses the header at the start of `bytes` (at least the whole header).
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "the magic string \\x93NUMPY is missing"));
    }
    let major = bytes[6];
    let (len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad(path, "the header is cut short"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(path, format!("format version {v} is not supported"))),
    };
    let end = start + len;
    if bytes.len() < end {
        return Err(bad(path, "the header is cut short"));
    }
    let text =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| bad(path, "the header is not text"))?;
    let dict = HeaderDict::parse(text).map_err(|m| bad(path, m))?;
    let (elem, little_endian) = match &dict.descr {
        HeaderValue::Str(d) => parse_descr(path, d)?,
        _ => {
            return Err(Error::InvalidData(format!(
                "{}: structured arrays are not supported; save a plain 2-D numeric array",
                path.display()
            )))
        }
    };
    let fortran_order = match dict.fortran_order {
        HeaderValue::Bool(b) => b,
        _ => return Err(bad(path, "fortran_order is not True or False")),
    };
    let shape = match dict.shape {
        HeaderValue::Tuple(dims) => dims,
        _ => return Err(bad(path, "shape is not a tuple of integers")),
    };
    Ok(Header {
        elem,
        little_endian,
        fortran_order,
        shape,
        data_offset: end,
    })
}

/// A value of the header dictionary.
#[derive(Debug, PartialEq)]
enum HeaderValue {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
    /// Anything else (a list: a structured dtype).
    Other,
}

/// The header dictionary, parsed as the Python literal it is: exactly the
/// keys `descr`, `fortran_order` and `shape`, each once.
struct HeaderDict {
    descr: HeaderValue,
    fortran_order: HeaderValue,
    shape: HeaderValue,
}

impl HeaderDict {
    fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut p = LiteralParser {
            s: text.as_bytes(),
            i: 0,
        };
        p.expect(b'{')?;
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        loop {
            p.skip_ws();
            if p.eat(b'}') {
                break;
            }
            let key = p.string()?;
            p.skip_ws();
            p.expect(b':')?;
            let value = p.value()?;
            let slot = match key.as_str() {
                "descr" => &mut descr,
                "fortran_order" => &mut fortran,
                "shape" => &mut shape,
                other => return Err(format!("unexpected key {other:?} in the header")),
            };
            if slot.replace(value).is_some() {
                return Err(format!("the header has {key:?} twice"));
            }
            p.skip_ws();
            if p.eat(b',') {
                continue;
            }
            p.skip_ws();
            p.expect(b'}')?;
            break;
        }
        p.skip_ws();
        if p.i != p.s.len() {
            return Err("text after the header dictionary".into());
        }
        let missing = |k: &str| format!("the header has no {k:?}");
        Ok(HeaderDict {
            descr: descr.ok_or_else(|| missing("descr"))?,
            fortran_order: fortran.ok_or_else(|| missing("fortran_order"))?,
            shape: shape.ok_or_else(|| missing("shape"))?,
        })
    }
}

/// Just enough of Python's literal syntax for NPY headers.
struct LiteralParser<'t> {
    s: &'t [u8],
    i: usize,
}

impl LiteralParser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        self.skip_ws();
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "malformed header: expected {:?} at byte {}",
                c as char, self.i
            ))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        self.skip_ws();
        let q = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => {
                return Err(format!(
                    "malformed header: expected a string at byte {}",
                    self.i
                ))
            }
        };
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != q {
            if self.s[self.i] == b'\\' {
                return Err("escapes in header strings are not supported".into());
            }
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return Err("malformed header: a string is not closed".into());
        }
        let out = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.i += 1;
        Ok(out)
    }
    fn word(&mut self) -> &[u8] {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        &self.s[start..self.i]
    }
    fn value(&mut self) -> std::result::Result<HeaderValue, String> {
        self.skip_ws();
        match self.s.get(self.i) {
            Some(b'\'' | b'"') => Ok(HeaderValue::Str(self.string()?)),
            Some(b'(') => {
                self.i += 1;
                let mut dims = Vec::new();
                loop {
                    self.skip_ws();
                    if self.eat(b')') {
                        break;
                    }
                    let w = self.word();
                    let digits = w.strip_suffix(b"L").unwrap_or(w);
                    let text = std::str::from_utf8(digits).unwrap_or("");
                    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(format!("bad dimension at byte {}", self.i));
                    }
                    let v: usize = text
                        .parse()
                        .map_err(|_| format!("dimension {text} is too large"))?;
                    dims.push(v);
                    self.skip_ws();
                    if self.eat(b',') {
                        continue;
                    }
                    self.expect(b')')?;
                    break;
                }
                Ok(HeaderValue::Tuple(dims))
            }
            Some(b'[') => {
                // A structured dtype: skip to the matching bracket.
                let mut depth = 0usize;
                while let Some(&c) = self.s.get(self.i) {
                    self.i += 1;
                    match c {
                        b'[' | b'(' => depth += 1,
                        b']' | b')' => {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(HeaderValue::Other);
                            }
                        }
                        _ => {}
                    }
                }
                Err("malformed header: a list is not closed".into())
            }
            _ => match self.word() {
                b"True" => Ok(HeaderValue::Bool(true)),
                b"False" => Ok(HeaderValue::Bool(false)),
                w => Err(format!(
                    "malformed header: unexpected {:?}",
                    String::from_utf8_lossy(w)
                )),
            },
        }
    }
}

pub struct NpySource {
    path: PathBuf,
    file: File,
    header: Header,
    rows: usize,
    /// Values per row in the file.
    file_cols: usize,
    /// Columns used, in output order.
    selected: Vec<usize>,
    dtype: DType,
    /// The memory map, made on the first `read_all`.
    map: std::cell::OnceCell<memmap2::Mmap>,
}

impl NpySource {
    pub fn open(path: &Path, opts: &ReadOptions) -> Result<Self> {
        let file = File::open(path).map_err(|e| read_error(path, e))?;
        let file_len = file.metadata().map_err(|e| read_error(path, e))?.len() as usize;
        let mut head = vec![0u8; file_len.min(1 << 20)];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| read_error(path, e))?;
        let header = parse_header(path, &head)?;
        let (rows, file_cols) = match header.shape.as_slice() {
            [] => {
                return Err(Error::InvalidData(format!(
                    "{} holds a scalar, not rows of data",
                    path.display()
                )))
            }
            [n] => (*n, 1),
            [n, d] => (*n, *d),
            [n, rest @ ..] if !header.fortran_order => (
                *n,
                rest.iter()
                    .try_fold(1usize, |acc, &v| acc.checked_mul(v))
                    .ok_or_else(|| bad(path, "the shape is too large"))?,
            ),
            _ => {
                return Err(Error::InvalidData(format!(
                    "{}: a Fortran-order array of more than 2 dimensions is not supported",
                    path.display()
                )))
            }
        };
        let need = rows
            .checked_mul(file_cols)
            .and_then(|v| v.checked_mul(header.elem.size()))
            .and_then(|v| v.checked_add(header.data_offset))
            .ok_or_else(|| bad(path, "the shape is too large"))?;
        if file_len < need {
            return Err(Error::InvalidData(format!(
                "{}: the file is cut short: shape {:?} needs {need} bytes, the file has {file_len}",
                path.display(),
                header.shape
            )));
        }
        if rows == 0 || file_cols == 0 {
            return Err(Error::InvalidData(format!(
                "{} is empty (shape {:?})",
                path.display(),
                header.shape
            )));
        }
        let selected = match &opts.columns {
            None => (0..file_cols).collect(),
            Some(wanted) => {
                let positions: Vec<String> = (0..file_cols).map(|i| i.to_string()).collect();
                select_columns(path, &positions, wanted).map_err(|_| {
                    Error::InvalidArgument(format!(
                        "{}: an .npy file has no column names, so --columns takes 0-based positions below {file_cols}; got {}",
                        path.display(),
                        wanted.join(",")
                    ))
                })?
            }
        };
        let dtype = opts.dtype.unwrap_or(if header.elem == Elem::F64 {
            DType::F64
        } else {
            DType::F32
        });
        Ok(NpySource {
            path: path.to_path_buf(),
            file,
            header,
            rows,
            file_cols,
            selected,
            dtype,
            map: Default::default(),
        })
    }

    fn all_columns(&self) -> bool {
        self.selected.len() == self.file_cols
            && self.selected.iter().enumerate().all(|(i, &c)| i == c)
    }

    /// Converts rows `r0..r1` from raw bytes: `raw` holds the rows in C order
    /// (`(r1-r0) x file_cols`), or, in Fortran order, the columns' segments
    /// one after another (`file_cols x (r1-r0)`).
    fn convert(&self, raw: &[u8], r0: usize, r1: usize, c_order: bool) -> Result<Dense<'static>> {
        let n = r1 - r0;
        let size = self.header.elem.size();
        let mut buf = Buffer::with_capacity(self.dtype, n * self.selected.len());
        for r in 0..n {
            for &c in &self.selected {
                let idx = if c_order {
                    r * self.file_cols + c
                } else {
                    c * n + r
                };
                let v = decode(
                    &raw[idx * size..(idx + 1) * size],
                    self.header.elem,
                    self.header.little_endian,
                );
                if !v.is_finite() {
                    return Err(non_finite(
                        &self.path,
                        format!("row {}, column {c}", r0 + r),
                        v,
                    ));
                }
                if self.dtype == DType::F32 && (v as f32).is_infinite() {
                    return Err(super::too_large_for_f32(
                        &self.path,
                        format!("row {}, column {c}", r0 + r),
                        v,
                    ));
                }
                buf.push(v);
            }
        }
        buf.into_dense(n, self.selected.len())
    }

    /// Reads rows `r0..r1` with positioned reads.
    fn read_rows(&self, r0: usize, r1: usize) -> Result<Dense<'static>> {
        let size = self.header.elem.size();
        let n = r1 - r0;
        let mut raw = vec![0u8; n * self.file_cols * size];
        if !self.header.fortran_order {
            let at = self.header.data_offset + r0 * self.file_cols * size;
            self.file
                .read_exact_at(&mut raw, at as u64)
                .map_err(|e| read_error(&self.path, e))?;
        } else {
            // Column c of the file is contiguous: read each column's segment.
            for c in 0..self.file_cols {
                let at = self.header.data_offset + (c * self.rows + r0) * size;
                let seg = &mut raw[c * n * size..(c + 1) * n * size];
                self.file
                    .read_exact_at(seg, at as u64)
                    .map_err(|e| read_error(&self.path, e))?;
            }
        }
        self.convert(&raw, r0, r1, !self.header.fortran_order)
    }
}

#[inline]
fn decode(b: &[u8], elem: Elem, little: bool) -> f64 {
    macro_rules! num {
        ($t:ty, $n:expr) => {{
            let mut a = [0u8; $n];
            a.copy_from_slice(b);
            if little {
                <$t>::from_le_bytes(a) as f64
            } else {
                <$t>::from_be_bytes(a) as f64
            }
        }};
    }
    match elem {
        Elem::F32 => num!(f32, 4),
        Elem::F64 => num!(f64, 8),
        Elem::I8 => b[0] as i8 as f64,
        Elem::U8 => b[0] as f64,
        Elem::Bool => (b[0] != 0) as u8 as f64,
        Elem::I16 => num!(i16, 2),
        Elem::U16 => num!(u16, 2),
        Elem::I32 => num!(i32, 4),
        Elem::U32 => num!(u32, 4),
        Elem::I64 => num!(i64, 8),
        Elem::U64 => num!(u64, 8),
    }
}

impl Source for NpySource {
    fn path(&self) -> &Path {
        &self.path
    }
    fn width(&self) -> usize {
        self.selected.len()
    }
    fn rows(&self) -> Option<usize> {
        Some(self.rows)
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn batches(
        &self,
        batch_size: usize,
    ) -> Result<Box<dyn Iterator<Item = Result<Dense<'static>>> + '_>> {
        let batch_size = batch_size.max(1);
        let mut r0 = 0;
        Ok(Box::new(std::iter::from_fn(move || {
            if r0 >= self.rows {
                return None;
            }
            let r1 = (r0 + batch_size).min(self.rows);
            let out = self.read_rows(r0, r1);
            r0 = if out.is_ok() { r1 } else { self.rows };
            Some(out)
        })))
    }

    fn blocks(&self, target_rows: usize) -> Result<Vec<Block>> {
        Ok(row_blocks(self.rows, target_rows))
    }

    fn read_block(
        &self,
        block: &Block,
        skip: usize,
        chunk: usize,
    ) -> Result<Box<dyn Iterator<Item = Result<Dense<'static>>> + '_>> {
        let (chunk, end) = (chunk.max(1), block.first_row + block.rows);
        let mut r0 = block.first_row + skip.min(block.rows);
        Ok(Box::new(std::iter::from_fn(move || {
            if r0 >= end {
                return None;
            }
            let r1 = (r0 + chunk).min(end);
            let out = self.read_rows(r0, r1);
            r0 = if out.is_ok() { r1 } else { end };
            Some(out)
        })))
    }

    fn read_all(&self) -> Result<Dense<'_>> {
        // SAFETY (of the map): the file is opened read-only and centroid does
        // not write it. Another program truncating it while it is mapped
        // makes reads past the new end fault (SIGBUS); that cannot be checked
        // for between accesses without copying, so the fault itself is
        // turned into a one-line error naming the file (`sigbus`).
        if self.map.get().is_none() {
            crate::sigbus::report_as_truncated(&self.path);
            let map =
                unsafe { memmap2::Mmap::map(&self.file) }.map_err(|e| read_error(&self.path, e))?;
            let _ = self.map.set(map);
        }
        let map = self.map.get().expect("just set");
        let size = self.header.elem.size();
        let bytes = &map
            [self.header.data_offset..self.header.data_offset + self.rows * self.file_cols * size];
        let native = self.header.little_endian == cfg!(target_endian = "little");
        let in_place = native
            && !self.header.fortran_order
            && self.all_columns()
            && self.header.elem.is_float();
        if in_place {
            let _ = map.advise(memmap2::Advice::Sequential);
            match (self.header.elem, self.dtype) {
                (Elem::F32, DType::F32) => {
                    if let Ok(v) = bytemuck::try_cast_slice::<u8, f32>(bytes) {
                        check_finite(&self.path, v, self.file_cols)?;
                        return Dense::new(v, self.rows, self.file_cols);
                    }
                }
                (Elem::F64, DType::F64) => {
                    if let Ok(v) = bytemuck::try_cast_slice::<u8, f64>(bytes) {
                        check_finite(&self.path, v, self.file_cols)?;
                        return Dense::new(v, self.rows, self.file_cols);
                    }
                }
                _ => {}
            }
        }
        self.convert(bytes, 0, self.rows, !self.header.fortran_order)
    }
}

fn check_finite<T: centroid::Float>(path: &Path, v: &[T], cols: usize) -> Result<()> {
    if v.iter().all(|x| x.is_finite()) {
        return Ok(());
    }
    let i = v.iter().position(|x| !x.is_finite()).unwrap_or(0);
    Err(non_finite(
        path,
        format!("row {}, column {}", i / cols, i % cols),
        v[i].to_f64_exact(),
    ))
}

/// The tests' hand-written NPY files, shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/common/npy.rs"]
mod npy_file;

#[cfg(test)]
mod tests {
    use super::npy_file::header_bytes;
    use super::*;

    #[test]
    fn the_header_is_parsed_as_a_literal() {
        let path = Path::new("x.npy");
        let parse = |d: &str| parse_header(path, &header_bytes(d));
        // 'shape' inside another value does not win.
        let h = parse("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }").unwrap();
        assert_eq!(h.shape, [3, 2]);
        for bad in [
            "{'descr': '<f4', 'fortran_order': Falsehood, 'shape': (3, 2), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), 'shape': (1, 2)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), 'x': 1}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551616, 2)}",
            "{'descr': '<f4', 'fortran_order': False}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, -2)}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_shape_whose_product_overflows_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let mut bytes = header_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 9223372036854775809, 2), }",
        );
        bytes.extend_from_slice(&[0u8; 8]);
        std::fs::write(&path, bytes).unwrap();
        let err = NpySource::open(&path, &ReadOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("too large"), "{err}");
    }

    #[test]
    fn parses_headers_numpy_writes() {
        let p = Path::new("x.npy");
        let bytes = header_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (150, 4), }");
        let h = parse_header(p, &bytes).unwrap();
        assert_eq!(h.elem, Elem::F32);
        assert!(h.little_endian && !h.fortran_order);
        assert_eq!(h.shape, vec![150, 4]);
        assert_eq!(h.data_offset, bytes.len());
        assert_eq!(h.data_offset % 64, 0);
        let h = parse_header(
            p,
            &header_bytes("{'descr': '>i8', 'fortran_order': True, 'shape': (7,), }"),
        )
        .unwrap();
        assert_eq!(
            (h.elem, h.little_endian, h.fortran_order, h.shape),
            (Elem::I64, false, true, vec![7])
        );
        let h = parse_header(
            p,
            &header_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 28, 28), }"),
        )
        .unwrap();
        assert_eq!((h.elem, h.shape), (Elem::U8, vec![2, 28, 28]));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        let p = Path::new("x.npy");
        assert!(parse_header(p, b"PK\x03\x04 not numpy").is_err());
        let e = parse_header(
            p,
            &header_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("structured"), "{e}");
        let e = parse_header(
            p,
            &header_bytes("{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
    }
}

#[cfg(test)]
mod map_tests {
    use std::borrow::Cow;

    use centroid::Data;

    use super::*;

    fn write(path: &Path, descr: &str, fortran: bool, rows: usize, cols: usize, data: &[u8]) {
        super::npy_file::write_npy_bytes(path, descr, fortran, &[rows, cols], data);
    }

    #[test]
    fn native_f32_is_used_in_place_and_others_are_converted() {
        let dir = tempfile::tempdir().unwrap();
        let values = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let c_path = dir.path().join("c.npy");
        write(&c_path, "<f4", false, 3, 2, &bytes);
        let src = NpySource::open(&c_path, &ReadOptions::default()).unwrap();
        let all = src.read_all().unwrap();
        // Borrowed from the memory map: no copy of the file was made.
        assert!(matches!(all.data(), Data::F32(Cow::Borrowed(_))));
        assert_eq!(&*all.to_type::<f32>(), &values);

        // The same bytes in Fortran order are the transposed matrix.
        let f_path = dir.path().join("f.npy");
        write(&f_path, "<f4", true, 3, 2, &bytes);
        let src = NpySource::open(&f_path, &ReadOptions::default()).unwrap();
        let all = src.read_all().unwrap();
        assert!(matches!(all.data(), Data::F32(Cow::Owned(_))));
        assert_eq!(&*all.to_type::<f32>(), &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        // Streaming gives the same rows, batch by batch.
        let streamed: Vec<f32> = src
            .batches(2)
            .unwrap()
            .flat_map(|b| b.unwrap().to_type::<f32>().into_owned())
            .collect();
        assert_eq!(streamed, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);

        // Big-endian i16 with a column selection.
        let be: Vec<u8> = [1i16, -2, 300, 4, 5, -600]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let b_path = dir.path().join("b.npy");
        write(&b_path, ">i2", false, 3, 2, &be);
        let opts = ReadOptions {
            columns: Some(vec!["1".into()]),
            ..Default::default()
        };
        let src = NpySource::open(&b_path, &opts).unwrap();
        assert_eq!(
            &*src.read_all().unwrap().to_type::<f32>(),
            &[-2.0, 4.0, -600.0]
        );
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.npy");
        write(&path, "<f8", false, 10, 3, &[0u8; 16]);
        let e = NpySource::open(&path, &ReadOptions::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("cut short"), "{e}");
    }
}
