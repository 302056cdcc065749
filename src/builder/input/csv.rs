//! CSV with a header row → arrow, with arrow-csv. Every column is read as text and converted to
//! its schema type by `conform`, so a value that does not convert is reported with its line
//! (lines are counted as records + 1 for the header: a quoted field spanning lines shifts it).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::sync::Arc;

use arrow::csv::ReaderBuilder;
use arrow::csv::reader::Format;
use arrow::datatypes::{DataType, Field, Schema};

use super::conform::{RawSource, conform_batch};
use super::{BATCH_ROWS, BatchReader, InputBatch, InputStats, ReadContext, ReadError};

pub struct CsvReader {
    file_name: String,
    file_index: u32,
    reader: arrow::csv::reader::BufReader<Box<dyn BufRead + Send>>,
    context: ReadContext,
    /// For each schema field, its column in the file.
    source_columns: Vec<Option<usize>>,
    ignored_columns: Vec<String>,
    records_read: u64,
}

impl CsvReader {
    pub fn new(
        file_name: String,
        file_index: u32,
        input: Box<dyn BufRead + Send>,
        context: ReadContext,
    ) -> Result<CsvReader, ReadError> {
        let io_error = |message: String| ReadError::Io {
            file: file_name.clone(),
            message,
        };
        let header = read_header(&file_name).map_err(&io_error)?;
        let schema = &context.schema;
        let source_columns: Vec<Option<usize>> = schema
            .spec
            .fields
            .iter()
            .map(|field| header.iter().position(|name| name == &field.name))
            .collect();
        if source_columns[schema.id_index].is_none() {
            return Err(io_error(format!(
                "the header has no column `{}` (the id field)",
                schema.spec.id_field
            )));
        }
        let ignored_columns = header
            .iter()
            .filter(|name| schema.field_index(name).is_none())
            .cloned()
            .collect();
        let text_schema = Arc::new(Schema::new(
            header
                .iter()
                .map(|name| Field::new(name, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let reader = ReaderBuilder::new(text_schema)
            .with_header(true)
            .with_batch_size(BATCH_ROWS)
            .with_truncated_rows(true)
            .build_buffered(input)
            .map_err(|err| io_error(err.to_string()))?;
        Ok(CsvReader {
            file_name,
            file_index,
            reader,
            context,
            source_columns,
            ignored_columns,
            records_read: 0,
        })
    }
}

fn read_header(file_name: &str) -> Result<Vec<String>, String> {
    let path = std::path::Path::new(file_name);
    let file = File::open(path).map_err(|err| err.to_string())?;
    let reader: Box<dyn std::io::Read> = if file_name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let (schema, _) = Format::default()
        .with_header(true)
        .infer_schema(reader, Some(0))
        .map_err(|err| format!("reading the header: {err}"))?;
    Ok(schema
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect())
}

impl BatchReader for CsvReader {
    fn next_batch(&mut self, stats: &mut InputStats) -> Result<Option<InputBatch>, ReadError> {
        let Some(read) = self.reader.next() else {
            return Ok(None);
        };
        let raw = read.map_err(|err| ReadError::Io {
            file: self.file_name.clone(),
            message: err.to_string(),
        })?;
        let first_line = self.records_read + 2;
        self.records_read += raw.num_rows() as u64;
        for name in &self.ignored_columns {
            stats.ignore_field(name, raw.num_rows() as u64);
        }
        let source = RawSource {
            file_name: &self.file_name,
            file_index: self.file_index,
            first_line,
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
