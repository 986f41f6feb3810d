//! Writing results: CSV with a header (to a file or standard output) or NPY.
//!
//! Rows arrive batch by batch and are written as they come, so predicting on
//! a file larger than memory needs memory for one batch only. An NPY file's
//! row count is unknown until the end: the header is written with room to
//! spare and rewritten with the final shape.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use centroid::{Error, Result};

use crate::readers::Format;

/// The element type of an NPY output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyElem {
    I64,
    F32,
    F64,
}

impl NpyElem {
    fn descr(self) -> &'static str {
        match self {
            NpyElem::I64 => "<i8",
            NpyElem::F32 => "<f4",
            NpyElem::F64 => "<f8",
        }
    }
}

/// A table of numbers being written.
pub enum TableWriter {
    Csv {
        out: csv::Writer<Box<dyn Write>>,
        path: Option<PathBuf>,
        /// Write values as the shortest text that reads back as the same
        /// f32 (values computed in f32 have no more digits to show).
        f32_text: bool,
    },
    Npy {
        out: BufWriter<File>,
        path: PathBuf,
        elem: NpyElem,
        cols: usize,
        /// Whether to write a 1-D array (one value per row).
        vector: bool,
        rows: usize,
    },
}

/// Room for the NPY header: enough for any shape, a multiple of 64.
const NPY_HEADER_LEN: usize = 128;

fn npy_header(elem: NpyElem, rows: usize, cols: usize, vector: bool) -> Vec<u8> {
    let shape = if vector {
        format!("({rows},)")
    } else {
        format!("({rows}, {cols})")
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        elem.descr()
    );
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    let body_len = NPY_HEADER_LEN - 10;
    h.extend_from_slice(&(body_len as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    while h.len() < NPY_HEADER_LEN - 1 {
        h.push(b' ');
    }
    h.push(b'\n');
    h
}

fn write_error(path: Option<&Path>, source: std::io::Error) -> Error {
    Error::Io {
        action: "cannot write",
        path: path.map_or_else(|| PathBuf::from("<stdout>"), Path::to_path_buf),
        source,
    }
}

/// Whether an error is a closed pipe (`centroid predict ... | head`), which
/// ends the output quietly.
pub fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

impl TableWriter {
    /// A writer for `path` (format from `format` or the extension), or CSV on
    /// standard output when `path` is None. `header` names the columns; a
    /// single-column NPY output is written as a 1-D array.
    pub fn create(
        path: Option<&Path>,
        format: Option<Format>,
        header: &[String],
        elem: NpyElem,
    ) -> Result<Self> {
        let format = match path {
            None => Format::Csv,
            Some(p) => Format::resolve(format, p)?,
        };
        match (format, path) {
            (Format::Parquet, _) => Err(Error::InvalidArgument(
                "results are written as .csv or .npy, not Parquet".into(),
            )),
            (Format::Csv, _) => {
                let sink: Box<dyn Write> = match path {
                    None => Box::new(std::io::stdout().lock()),
                    Some(p) => Box::new(File::create(p).map_err(|e| Error::Io {
                        action: "cannot create",
                        path: p.to_path_buf(),
                        source: e,
                    })?),
                };
                let mut out = csv::WriterBuilder::new()
                    .buffer_capacity(256 * 1024)
                    .from_writer(sink);
                out.write_record(header)
                    .map_err(|e| csv_write_error(path, e))?;
                Ok(TableWriter::Csv {
                    out,
                    path: path.map(Path::to_path_buf),
                    f32_text: false,
                })
            }
            (Format::Npy, Some(p)) => {
                let file = File::create(p).map_err(|e| Error::Io {
                    action: "cannot create",
                    path: p.to_path_buf(),
                    source: e,
                })?;
                let mut out = BufWriter::with_capacity(256 * 1024, file);
                let vector = header.len() == 1;
                out.write_all(&npy_header(elem, 0, header.len(), vector))
                    .map_err(|e| write_error(Some(p), e))?;
                Ok(TableWriter::Npy {
                    out,
                    path: p.to_path_buf(),
                    elem,
                    cols: header.len(),
                    vector,
                    rows: 0,
                })
            }
            (Format::Npy, None) => unreachable!("standard output is always CSV"),
        }
    }

    /// Writes CSV values in f32's shortest form (for results computed in f32).
    pub fn set_f32_text(&mut self, on: bool) {
        if let TableWriter::Csv { f32_text, .. } = self {
            *f32_text = on;
        }
    }

    /// Appends rows given as `rows x cols` values, row-major, each value as
    /// f64 (exact for i64 indices below 2^53 and for f32).
    pub fn write_rows(&mut self, values: &[f64], cols: usize, is_index: &[bool]) -> Result<()> {
        match self {
            TableWriter::Csv {
                out,
                path,
                f32_text,
            } => {
                let mut fields: Vec<String> = Vec::with_capacity(cols);
                for row in values.chunks(cols) {
                    fields.clear();
                    for (j, v) in row.iter().enumerate() {
                        if is_index[j] {
                            fields.push(format!("{}", *v as i64));
                        } else {
                            if *f32_text {
                                fields.push(format!("{}", *v as f32));
                            } else {
                                fields.push(format!("{v}"));
                            }
                        }
                    }
                    out.write_record(&fields)
                        .map_err(|e| csv_write_error(path.as_deref(), e))?;
                }
                Ok(())
            }
            TableWriter::Npy {
                out,
                path,
                elem,
                cols: c,
                rows,
                ..
            } => {
                debug_assert_eq!(*c, cols);
                for v in values {
                    let r = match elem {
                        NpyElem::I64 => out.write_all(&(*v as i64).to_le_bytes()),
                        NpyElem::F32 => out.write_all(&(*v as f32).to_le_bytes()),
                        NpyElem::F64 => out.write_all(&v.to_le_bytes()),
                    };
                    r.map_err(|e| write_error(Some(path), e))?;
                }
                *rows += values.len() / cols.max(1);
                Ok(())
            }
        }
    }

    /// Flushes and, for NPY, writes the final shape.
    pub fn finish(self) -> Result<()> {
        match self {
            TableWriter::Csv { mut out, path, .. } => {
                out.flush().map_err(|e| write_error(path.as_deref(), e))
            }
            TableWriter::Npy {
                out,
                path,
                elem,
                cols,
                vector,
                rows,
            } => {
                let mut file = out
                    .into_inner()
                    .map_err(|e| write_error(Some(&path), e.into_error()))?;
                file.seek(SeekFrom::Start(0))
                    .map_err(|e| write_error(Some(&path), e))?;
                file.write_all(&npy_header(elem, rows, cols, vector))
                    .map_err(|e| write_error(Some(&path), e))?;
                file.sync_all().map_err(|e| write_error(Some(&path), e))
            }
        }
    }
}

fn csv_write_error(path: Option<&Path>, e: csv::Error) -> Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => write_error(path, io),
        other => write_error(path, std::io::Error::other(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readers::npy::parse_header;

    #[test]
    fn npy_header_is_readable_and_aligned() {
        let h = npy_header(NpyElem::I64, 123456789, 1, true);
        assert_eq!(h.len(), NPY_HEADER_LEN);
        let parsed = parse_header(Path::new("t.npy"), &h).unwrap();
        assert_eq!(parsed.shape, vec![123456789]);
        assert_eq!(parsed.data_offset, NPY_HEADER_LEN);
        let h = npy_header(NpyElem::F32, 5, 7, false);
        assert_eq!(
            parse_header(Path::new("t.npy"), &h).unwrap().shape,
            vec![5, 7]
        );
    }
}
