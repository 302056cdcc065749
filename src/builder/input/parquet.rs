//! Parquet input → arrow, with the parquet crate's arrow reader: only the schema's columns are
//! read, and each is converted to its schema type by `conform`. Rows are numbered from 1.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::conform::{RawSource, conform_batch};
use super::{BATCH_ROWS, BatchReader, InputBatch, InputStats, ReadContext, ReadError};

pub struct ParquetReader {
    file_name: String,
    file_index: u32,
    reader: ParquetRecordBatchReader,
    context: ReadContext,
    /// For each schema field, its column in the projected batches.
    source_columns: Vec<Option<usize>>,
    rows_read: u64,
    bytes_per_row: f64,
    /// Columns outside the schema, counted into the stats on the first batch.
    pending_ignored: BTreeMap<String, u64>,
}

impl ParquetReader {
    pub fn new(
        file_name: String,
        file_index: u32,
        path: PathBuf,
        context: ReadContext,
    ) -> Result<ParquetReader, ReadError> {
        let io_error = |message: String| ReadError::Io {
            file: file_name.clone(),
            message,
        };
        let file = File::open(&path).map_err(|err| io_error(err.to_string()))?;
        let file_size = file.metadata().map(|meta| meta.len()).unwrap_or(0);
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|err| io_error(format!("not a readable parquet file: {err}")))?;
        let file_schema = builder.schema().clone();
        let schema = &context.schema;
        let wanted: Vec<usize> = (0..file_schema.fields().len())
            .filter(|&index| {
                schema
                    .field_index(file_schema.field(index).name())
                    .is_some()
            })
            .collect();
        if !wanted
            .iter()
            .any(|&index| file_schema.field(index).name() == &schema.spec.id_field)
        {
            return Err(io_error(format!(
                "no column `{}` (the id field)",
                schema.spec.id_field
            )));
        }
        let total_rows = builder.metadata().file_metadata().num_rows().max(1) as f64;
        let ignored: Vec<String> = file_schema
            .fields()
            .iter()
            .filter(|field| schema.field_index(field.name()).is_none())
            .map(|field| field.name().clone())
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
        let reader = builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|err| io_error(err.to_string()))?;
        let projected_names: Vec<&String> = wanted
            .iter()
            .map(|&index| file_schema.field(index).name())
            .collect();
        let source_columns = schema
            .spec
            .fields
            .iter()
            .map(|field| projected_names.iter().position(|name| **name == field.name))
            .collect();
        Ok(ParquetReader {
            file_name,
            file_index,
            reader,
            context,
            source_columns,
            rows_read: 0,
            bytes_per_row: file_size as f64 / total_rows,
            pending_ignored: ignored
                .into_iter()
                .map(|name| (name, total_rows as u64))
                .collect(),
        })
    }
}

impl BatchReader for ParquetReader {
    fn next_batch(&mut self, stats: &mut InputStats) -> Result<Option<InputBatch>, ReadError> {
        for (name, count) in std::mem::take(&mut self.pending_ignored) {
            stats.ignore_field(&name, count);
        }
        let Some(read) = self.reader.next() else {
            return Ok(None);
        };
        let raw = read.map_err(|err| ReadError::Io {
            file: self.file_name.clone(),
            message: format!("row {}: {err}", self.rows_read + 1),
        })?;
        let first_row = self.rows_read + 1;
        self.rows_read += raw.num_rows() as u64;
        self.context.bytes_read.fetch_add(
            (raw.num_rows() as f64 * self.bytes_per_row) as u64,
            Ordering::Relaxed,
        );
        let source = RawSource {
            file_name: &self.file_name,
            file_index: self.file_index,
            first_line: first_row,
            skip_invalid: self.context.skip_invalid,
        };
        conform_batch(
            &raw,
            &self.source_columns,
            &self.context.schema,
            &source,
            stats,
        )
        .map(Some)
    }
}
