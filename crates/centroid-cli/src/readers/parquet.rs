//! Parquet files, read through the arrow reader of the `parquet` crate.
//!
//! Only the selected columns are decoded (a projection), one record batch at
//! a time, so memory is bounded by the batch size and a row group's
//! compressed column chunks. Without `--columns` every numeric column is used
//! and the others are skipped with a note.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use centroid::{DType, Dense, Error, Result};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::arrow::ProjectionMask;

use super::{
    guard_decoder, non_finite, read_error, select_columns, too_large_for_f32, Block, BlockStart,
    Buffer, ReadOptions, Source,
};

pub struct ParquetSource {
    path: PathBuf,
    rows: usize,
    /// Names of the selected columns, in output order.
    names: Vec<String>,
    /// Root indices of the selected columns in the file's schema.
    indices: Vec<usize>,
    dtype: DType,
}

fn parquet_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidData(format!("{}: cannot read Parquet: {e}", path.display()))
}

fn is_numeric(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Boolean
    )
}

fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|e| read_error(path, e))?;
    guard_decoder(path, "Parquet", || {
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))
    })
}

impl ParquetSource {
    pub fn open(path: &Path, opts: &ReadOptions) -> Result<Self> {
        let b = builder(path)?;
        let schema = b.schema().clone();
        let rows = usize::try_from(b.metadata().file_metadata().num_rows()).unwrap_or(0);
        let all: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let (indices, skipped) = match &opts.columns {
            Some(wanted) => {
                let idx = select_columns(path, &all, wanted)?;
                for &i in &idx {
                    let f = schema.field(i);
                    if !is_numeric(f.data_type()) {
                        return Err(Error::InvalidArgument(format!(
                            "{}: column {:?} is {}, not numeric",
                            path.display(),
                            f.name(),
                            f.data_type()
                        )));
                    }
                }
                (idx, Vec::new())
            }
            None => {
                let (num, other): (Vec<usize>, Vec<usize>) =
                    (0..all.len()).partition(|&i| is_numeric(schema.field(i).data_type()));
                (num, other.into_iter().map(|i| all[i].clone()).collect())
            }
        };
        // Batches are read by column name: a name used twice would read
        // the first column twice.
        if let Some(&i) = indices
            .iter()
            .find(|&&i| all.iter().filter(|n| **n == all[i]).count() > 1)
        {
            return Err(Error::InvalidData(format!(
                "{}: the column name {:?} appears more than once; give the columns distinct names",
                path.display(),
                all[i]
            )));
        }
        if indices.is_empty() {
            return Err(Error::InvalidData(format!(
                "{} has no numeric columns",
                path.display()
            )));
        }
        if rows == 0 {
            return Err(Error::InvalidData(format!(
                "{} holds no rows",
                path.display()
            )));
        }
        let all_f64 = indices
            .iter()
            .all(|&i| schema.field(i).data_type() == &DataType::Float64);
        let dtype = opts
            .dtype
            .unwrap_or(if all_f64 { DType::F64 } else { DType::F32 });
        let names = indices.iter().map(|&i| all[i].clone()).collect();
        if !skipped.is_empty() {
            eprintln!(
                "centroid: note: {}: leaving out non-numeric columns {} (pick columns with --columns)",
                path.display(),
                skipped.join(", ")
            );
        }
        Ok(ParquetSource {
            path: path.to_path_buf(),
            rows,
            names,
            indices,
            dtype,
        })
    }

    fn convert(&self, batch: &RecordBatch, first_row: usize) -> Result<Dense<'static>> {
        let n = batch.num_rows();
        let columns: Vec<(ArrayRef, Vec<f64>)> = self
            .names
            .iter()
            .map(|name| {
                let col = batch
                    .column_by_name(name)
                    .ok_or_else(|| {
                        parquet_error(&self.path, format!("column {name:?} missing from a batch"))
                    })?
                    .clone();
                if col.null_count() > 0 {
                    let r = (0..n).find(|&r| col.is_null(r)).unwrap_or(0);
                    return Err(Error::InvalidData(format!(
                        "{}: row {}, column {name:?} is null",
                        self.path.display(),
                        first_row + r
                    )));
                }
                let values = to_f64(&col).ok_or_else(|| {
                    parquet_error(
                        &self.path,
                        format!("column {name:?} of type {} is not numeric", col.data_type()),
                    )
                })?;
                Ok((col, values))
            })
            .collect::<Result<_>>()?;
        let width = self.names.len();
        let mut buf = Buffer::with_capacity(self.dtype, n * width);
        for r in 0..n {
            for (j, (_, values)) in columns.iter().enumerate() {
                let v = values[r];
                if !v.is_finite() {
                    return Err(non_finite(
                        &self.path,
                        format!("row {}, column {:?}", first_row + r, self.names[j]),
                        v,
                    ));
                }
                if self.dtype == DType::F32 && (v as f32).is_infinite() {
                    return Err(too_large_for_f32(
                        &self.path,
                        format!("row {}, column {:?}", first_row + r, self.names[j]),
                        v,
                    ));
                }
                buf.push(v);
            }
        }
        buf.into_dense(n, width)
    }
}

fn to_f64(col: &ArrayRef) -> Option<Vec<f64>> {
    macro_rules! prim {
        ($t:ty) => {
            col.as_primitive::<$t>()
                .values()
                .iter()
                .map(|&v| v as f64)
                .collect()
        };
    }
    Some(match col.data_type() {
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        DataType::Float32 => prim!(Float32Type),
        DataType::Float64 => prim!(Float64Type),
        DataType::Float16 => col
            .as_primitive::<Float16Type>()
            .values()
            .iter()
            .map(|v| v.to_f64())
            .collect(),
        DataType::Boolean => col
            .as_boolean()
            .values()
            .iter()
            .map(|b| b as u8 as f64)
            .collect(),
        _ => return None,
    })
}

impl Source for ParquetSource {
    fn path(&self) -> &Path {
        &self.path
    }
    fn blocks(&self, _target_rows: usize) -> Result<Vec<Block>> {
        // Row groups are the units a Parquet file can be read from without
        // decoding what comes before; cutting them finer would decode the
        // start of a group once per piece.
        let b = builder(&self.path)?;
        let mut first_row = 0;
        let mut blocks = Vec::new();
        for (g, rg) in b.metadata().row_groups().iter().enumerate() {
            let rows = usize::try_from(rg.num_rows()).unwrap_or(0);
            if rows > 0 {
                blocks.push(Block {
                    first_row,
                    rows,
                    start: BlockStart::RowGroup(g),
                });
            }
            first_row += rows;
        }
        Ok(blocks)
    }
    fn read_block(
        &self,
        block: &Block,
        skip: usize,
        chunk: usize,
    ) -> Result<Box<dyn Iterator<Item = Result<Dense<'static>>> + '_>> {
        let BlockStart::RowGroup(group) = block.start else {
            return Err(Error::InvalidArgument(format!(
                "{}: not a block of this Parquet file",
                self.path.display()
            )));
        };
        let skip = skip.min(block.rows);
        let b = builder(&self.path)?;
        let mask = ProjectionMask::roots(b.parquet_schema(), self.indices.iter().copied());
        let mut b = b
            .with_projection(mask)
            .with_row_groups(vec![group])
            .with_batch_size(chunk.max(1));
        if skip > 0 {
            b = b.with_row_selection(RowSelection::from(vec![
                RowSelector::skip(skip),
                RowSelector::select(block.rows - skip),
            ]));
        }
        let mut reader = b.build().map_err(|e| parquet_error(&self.path, e))?;
        let mut first_row = block.first_row + skip;
        let mut done = false;
        Ok(Box::new(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let out = match reader.next()? {
                Ok(batch) => self.convert(&batch, first_row),
                Err(e) => Err(parquet_error(&self.path, e)),
            };
            match &out {
                Ok(d) => first_row += d.rows(),
                Err(_) => done = true,
            }
            Some(out)
        })))
    }
    fn width(&self) -> usize {
        self.names.len()
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
        let b = builder(&self.path)?;
        let mut reader = guard_decoder(&self.path, "Parquet", || {
            let mask = ProjectionMask::roots(b.parquet_schema(), self.indices.iter().copied());
            b.with_projection(mask)
                .with_batch_size(batch_size.max(1))
                .build()
                .map_err(|e| parquet_error(&self.path, e))
        })?;
        let mut first_row = 0;
        let mut done = false;
        Ok(Box::new(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let next = guard_decoder(&self.path, "Parquet", || Ok(reader.next()));
            let out = match next {
                Ok(None) => return None,
                Ok(Some(Ok(batch))) => {
                    guard_decoder(&self.path, "Parquet", || self.convert(&batch, first_row))
                }
                Ok(Some(Err(e))) => Err(parquet_error(&self.path, e)),
                Err(e) => Err(e),
            };
            match &out {
                Ok(d) => first_row += d.rows(),
                Err(_) => done = true,
            }
            Some(out)
        })))
    }
}
