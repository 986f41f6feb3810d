//! CSV (and TSV, and other delimited text) files.
//!
//! The delimiter is sniffed from the first lines: the candidate that occurs
//! the same, non-zero number of times on every sampled line wins. The first
//! record is a header when none of its fields is a number. Rows stream
//! through the `csv` crate, so memory holds one batch at a time; every error
//! names the line it is on.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use centroid::{DType, Dense, Error, Result};

use super::{
    non_finite, read_error, select_columns, too_large_for_f32, Block, BlockStart, Buffer,
    ReadOptions, Source,
};

pub struct CsvSource {
    path: PathBuf,
    delimiter: u8,
    has_header: bool,
    /// Header names, or None for a file without a header.
    names: Option<Vec<String>>,
    /// Number of fields of every record.
    fields: usize,
    /// Indices of the fields used, in output order.
    selected: Vec<usize>,
    dtype: DType,
}

const DELIMITERS: [u8; 5] = [b',', b'\t', b';', b'|', b' '];

/// Picks the delimiter from a sample of the file's first lines.
fn sniff_delimiter(sample: &[u8]) -> u8 {
    let text = String::from_utf8_lossy(sample);
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .take(20)
        .collect();
    // The last line of the sample may be cut short.
    if lines.len() > 2 && !sample.ends_with(b"\n") {
        lines.pop();
    }
    let count = |line: &str, d: u8| -> usize {
        let mut in_quotes = false;
        let mut n = 0;
        let mut prev = 0u8;
        for &b in line.as_bytes() {
            if b == b'"' {
                in_quotes = !in_quotes;
            } else if b == d && !in_quotes && !(d == b' ' && prev == b' ') {
                n += 1;
            }
            prev = b;
        }
        n
    };
    let mut best = (b',', 0usize);
    for &d in &DELIMITERS {
        let counts: Vec<usize> = lines.iter().map(|l| count(l, d)).collect();
        let Some(&first) = counts.first() else {
            continue;
        };
        if first > 0 && counts.iter().all(|&c| c == first) && first > best.1 {
            best = (d, first);
        }
    }
    best.0
}

fn parse_number(field: &[u8]) -> Option<f64> {
    // The reader trims fields (csv::Trim::All).
    let s = std::str::from_utf8(field).ok()?;
    if s.is_empty() {
        return None;
    }
    s.parse::<f64>().ok()
}

impl CsvSource {
    pub fn open(path: &Path, opts: &ReadOptions) -> Result<Self> {
        let mut sample = Vec::with_capacity(64 * 1024);
        let file = File::open(path).map_err(|e| read_error(path, e))?;
        file.take(64 * 1024)
            .read_to_end(&mut sample)
            .map_err(|e| read_error(path, e))?;
        let delimiter = sniff_delimiter(&sample);

        let mut reader = reader_for(path, delimiter)?;
        let mut first = csv::ByteRecord::new();
        let got = reader
            .read_byte_record(&mut first)
            .map_err(|e| csv_error(path, e))?;
        if !got {
            return Err(Error::InvalidData(format!("{} is empty", path.display())));
        }
        let has_header = first.iter().all(|f| parse_number(f).is_none());
        let fields = first.len();
        let names = if has_header {
            Some(
                first
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).trim().to_string())
                    .collect::<Vec<_>>(),
            )
        } else {
            None
        };
        let selected = match (&opts.columns, &names) {
            (None, _) => (0..fields).collect(),
            (Some(wanted), Some(names)) => select_columns(path, names, wanted)?,
            (Some(wanted), None) => {
                // Without a header, columns are named by position.
                let positions: Vec<String> = (0..fields).map(|i| i.to_string()).collect();
                select_columns(path, &positions, wanted).map_err(|_| {
                    Error::InvalidArgument(format!(
                        "{} has no header, so --columns takes 0-based positions below {fields}; got {}",
                        path.display(),
                        wanted.join(",")
                    ))
                })?
            }
        };
        if has_header {
            // A header and no rows is an empty data set.
            let mut second = csv::ByteRecord::new();
            let more = reader
                .read_byte_record(&mut second)
                .map_err(|e| csv_error(path, e))?;
            if !more {
                return Err(Error::InvalidData(format!(
                    "{} has a header but no data rows",
                    path.display()
                )));
            }
        }
        Ok(CsvSource {
            path: path.to_path_buf(),
            delimiter,
            has_header,
            names,
            fields,
            selected,
            dtype: opts.dtype.unwrap_or(DType::F32),
        })
    }
}

fn reader_for(path: &Path, delimiter: u8) -> Result<csv::Reader<BufReader<File>>> {
    let file = File::open(path).map_err(|e| read_error(path, e))?;
    Ok(csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(BufReader::with_capacity(256 * 1024, file)))
}

/// A block ended before the rows counted when it was found.
fn changed(path: &Path) -> Error {
    Error::InvalidData(format!(
        "{}: the file has fewer rows than when it was opened (was it changed while training?)",
        path.display()
    ))
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e
        .position()
        .map(|p| format!(": line {}", p.line()))
        .unwrap_or_default();
    match e.into_kind() {
        csv::ErrorKind::Io(io) => read_error(path, io),
        csv::ErrorKind::Utf8 { err, .. } => {
            Error::InvalidData(format!("{}{line}: not valid text ({err})", path.display()))
        }
        other => Error::InvalidData(format!(
            "{}{line}: malformed CSV ({other:?})",
            path.display()
        )),
    }
}

impl Source for CsvSource {
    fn path(&self) -> &Path {
        &self.path
    }
    fn blocks(&self, target_rows: usize) -> Result<Vec<Block>> {
        self.scan_blocks(target_rows)
    }
    fn read_block(
        &self,
        block: &Block,
        skip: usize,
        chunk: usize,
    ) -> Result<Box<dyn Iterator<Item = Result<Dense<'static>>> + '_>> {
        self.block_reader(block, skip, chunk)
    }
    fn width(&self) -> usize {
        self.selected.len()
    }
    fn rows(&self) -> Option<usize> {
        None
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn batches(
        &self,
        batch_size: usize,
    ) -> Result<Box<dyn Iterator<Item = Result<Dense<'static>>> + '_>> {
        let mut reader = reader_for(&self.path, self.delimiter)?;
        let mut record = csv::ByteRecord::new();
        if self.has_header {
            reader
                .read_byte_record(&mut record)
                .map_err(|e| csv_error(&self.path, e))?;
        }
        let batch_size = batch_size.max(1);
        let mut done = false;
        Ok(Box::new(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let width = self.selected.len();
            // Room for the rows actually read, not for the batch asked for:
            // a huge --batch-size or a very wide file must not reserve
            // memory the data never fills. The buffer grows as rows arrive.
            let mut buf = Buffer::with_capacity(self.dtype, initial_capacity(batch_size, width));
            let mut rows = 0;
            while rows < batch_size {
                match reader.read_byte_record(&mut record) {
                    Ok(true) => {}
                    Ok(false) => {
                        done = true;
                        break;
                    }
                    Err(e) => {
                        done = true;
                        return Some(Err(csv_error(&self.path, e)));
                    }
                }
                if let Err(e) = buf
                    .reserve_row(width, &self.path)
                    .and_then(|_| self.parse_record(&record, &mut buf))
                {
                    done = true;
                    return Some(Err(e));
                }
                rows += 1;
            }
            if rows == 0 {
                return None;
            }
            Some(buf.into_dense(rows, width))
        })))
    }
}

impl CsvSource {
    /// One pass over the records (not parsing the numbers), noting where
    /// every `target_rows`-th one starts.
    fn scan_blocks(&self, target_rows: usize) -> Result<Vec<Block>> {
        let target = target_rows.max(1);
        let mut reader = reader_for(&self.path, self.delimiter)?;
        let mut record = csv::ByteRecord::new();
        if self.has_header {
            reader
                .read_byte_record(&mut record)
                .map_err(|e| csv_error(&self.path, e))?;
        }
        let mut blocks: Vec<Block> = Vec::new();
        let mut rows = 0;
        while reader
            .read_byte_record(&mut record)
            .map_err(|e| csv_error(&self.path, e))?
        {
            if rows % target == 0 {
                let start = record.position().cloned().ok_or_else(|| {
                    Error::InvalidData(format!(
                        "{}: no position for record {rows}",
                        self.path.display()
                    ))
                })?;
                blocks.push(Block {
                    first_row: rows,
                    rows: 0,
                    start: BlockStart::Text(start),
                });
            }
            if let Some(b) = blocks.last_mut() {
                b.rows += 1;
            }
            rows += 1;
        }
        Ok(blocks)
    }

    fn block_reader(
        &self,
        block: &Block,
        skip: usize,
        chunk: usize,
    ) -> Result<Box<dyn Iterator<Item = Result<Dense<'static>>> + '_>> {
        let BlockStart::Text(start) = &block.start else {
            return Err(Error::InvalidArgument(format!(
                "{}: not a block of this CSV file",
                self.path.display()
            )));
        };
        let mut reader = reader_for(&self.path, self.delimiter)?;
        reader
            .seek(start.clone())
            .map_err(|e| csv_error(&self.path, e))?;
        let mut record = csv::ByteRecord::new();
        let width = self.selected.len();
        let chunk = chunk.max(1);
        let mut left = block.rows;
        // Skipped records are read but not parsed.
        for _ in 0..skip.min(block.rows) {
            let more = reader
                .read_byte_record(&mut record)
                .map_err(|e| csv_error(&self.path, e))?;
            if !more {
                return Err(changed(&self.path));
            }
            left -= 1;
        }
        Ok(Box::new(std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            let n = chunk.min(left);
            let mut buf = Buffer::with_capacity(self.dtype, n * width);
            for _ in 0..n {
                let step = match reader.read_byte_record(&mut record) {
                    Ok(true) => self.parse_record(&record, &mut buf),
                    Ok(false) => Err(changed(&self.path)),
                    Err(e) => Err(csv_error(&self.path, e)),
                };
                if let Err(e) = step {
                    left = 0;
                    return Some(Err(e));
                }
            }
            left -= n;
            Some(buf.into_dense(n, width))
        })))
    }

    fn parse_record(&self, record: &csv::ByteRecord, buf: &mut Buffer) -> Result<()> {
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != self.fields {
            return Err(Error::InvalidData(format!(
                "{}: line {line} has {} fields, expected {} (as on the first line)",
                self.path.display(),
                record.len(),
                self.fields
            )));
        }
        for &i in &self.selected {
            let field = &record[i];
            // Named only on failure: formatting per field would dominate.
            let column = || match &self.names {
                Some(n) => format!("column {:?}", n[i]),
                None => format!("column {}", i + 1),
            };
            let Some(v) = parse_number(field) else {
                let text = String::from_utf8_lossy(field);
                let what = if text.trim().is_empty() {
                    "is empty".to_string()
                } else {
                    format!("{:?} is not a number", text.trim())
                };
                return Err(Error::InvalidData(format!(
                    "{}: line {line}, {}: {what}",
                    self.path.display(),
                    column()
                )));
            };
            if !v.is_finite() {
                return Err(non_finite(
                    &self.path,
                    format!("line {line}, {}", column()),
                    v,
                ));
            }
            if self.dtype == DType::F32 && (v as f32).is_infinite() {
                return Err(too_large_for_f32(
                    &self.path,
                    format!("line {line}, {}", column()),
                    v,
                ));
            }
            buf.push(v);
        }
        Ok(())
    }
}

/// Values to reserve for a batch before reading it: at most 64 Ki values
/// (or one row), never more than the batch can hold.
fn initial_capacity(batch_size: usize, width: usize) -> usize {
    batch_size.saturating_mul(width).min((64 * 1024).max(width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_for_rows_read_not_rows_asked() {
        assert_eq!(initial_capacity(1 << 40, 100_000), 100_000);
        assert_eq!(initial_capacity(usize::MAX, 3), 64 * 1024);
        assert_eq!(initial_capacity(2, 3), 6);
    }

    #[test]
    fn sniffs_common_delimiters() {
        assert_eq!(sniff_delimiter(b"a,b,c\n1,2,3\n4,5,6\n"), b',');
        assert_eq!(sniff_delimiter(b"a\tb\n1.5\t2\n"), b'\t');
        assert_eq!(sniff_delimiter(b"1;2,5;3\n4;5,5;6\n"), b';');
        assert_eq!(sniff_delimiter(b"1.0 2.0 3.0\n4.0 5.0 6.0\n"), b' ');
        // Commas inside quotes do not count.
        assert_eq!(sniff_delimiter(b"\"a,b\";c\n1;2\n"), b';');
        // A single column has no delimiter at all; any choice reads it.
        assert_eq!(sniff_delimiter(b"x\n1\n2\n"), b',');
    }
}
