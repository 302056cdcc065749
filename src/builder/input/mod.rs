//! Input files → arrow record batches in the schema's input layout, a bounded batch at a time.
//!
//! Each reader reports bad records with `file:line` and the reason. In strict mode the first
//! bad record stops the build; with `skip_invalid` bad records are counted, the first few are
//! kept for the summary, and reading goes on.

mod conform;
mod csv;
mod json;
mod parquet;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::record_batch::RecordBatch;

use crate::schema::IndexSchema;

/// Rows per batch; batches also end early once they hold `MAX_BATCH_BYTES` of input.
pub const BATCH_ROWS: usize = 8192;
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Bad records kept verbatim for the summary when skipping.
pub const REPORTED_INVALID: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    JsonLines,
    Csv,
    Parquet,
}

impl InputFormat {
    /// From the file name: `.jsonl`, `.ndjson`, `.json`, `.csv` (each optionally `.gz`), or
    /// `.parquet`.
    pub fn detect(path: &Path) -> Result<(InputFormat, bool), String> {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let (stem, gzipped) = match name.strip_suffix(".gz") {
            Some(stem) => (stem.to_string(), true),
            None => (name.clone(), false),
        };
        let format =
            if stem.ends_with(".jsonl") || stem.ends_with(".ndjson") || stem.ends_with(".json") {
                InputFormat::JsonLines
            } else if stem.ends_with(".csv") {
                InputFormat::Csv
            } else if stem.ends_with(".parquet") && !gzipped {
                InputFormat::Parquet
            } else {
                return Err(format!(
                    "{}: cannot tell the input format from the name: use .jsonl, .ndjson, .json or \
                 .csv (each optionally .gz), or .parquet",
                    path.display()
                ));
            };
        Ok((format, gzipped))
    }
}

/// One bad input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: String,
    /// 1-based line (JSON Lines, CSV) or row (Parquet) number.
    pub line: u64,
    /// 1-based column within the line, when known.
    pub column: Option<u64>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(column) = self.column {
            write!(f, ":{column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadError {
    /// A bad record in strict mode.
    Invalid(InputError),
    /// The file itself cannot be read.
    Io { file: String, message: String },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Invalid(err) => err.fmt(f),
            ReadError::Io { file, message } => write!(f, "{file}: {message}"),
        }
    }
}

/// A batch of input documents in `IndexSchema::input_arrow` layout.
#[derive(Debug, Clone)]
pub struct InputBatch {
    pub batch: RecordBatch,
    /// Index of the input file in the build's input list.
    pub file: u32,
    /// The line (or row) number of each row, for messages and as its position in input order.
    pub lines: Vec<u64>,
}

/// What reading saw besides documents, merged over all files.
#[derive(Debug, Default, Clone)]
pub struct InputStats {
    pub ignored_fields: BTreeMap<String, u64>,
    /// Per schema field: some document gave it as an array (or list column).
    pub saw_array: Vec<bool>,
    pub invalid: u64,
    pub invalid_examples: Vec<InputError>,
}

impl InputStats {
    pub fn new(fields: usize) -> InputStats {
        InputStats {
            saw_array: vec![false; fields],
            ..InputStats::default()
        }
    }

    /// Records a bad record when skipping; returns it as an error in strict mode.
    pub fn invalid(&mut self, skip_invalid: bool, error: InputError) -> Result<(), ReadError> {
        if !skip_invalid {
            return Err(ReadError::Invalid(error));
        }
        self.invalid += 1;
        if self.invalid_examples.len() < REPORTED_INVALID {
            self.invalid_examples.push(error);
        }
        Ok(())
    }

    pub fn ignore_field(&mut self, name: &str, documents: u64) {
        match self.ignored_fields.get_mut(name) {
            Some(count) => *count += documents,
            None => {
                self.ignored_fields.insert(name.to_string(), documents);
            }
        }
    }
}

/// Everything a reader needs besides its file.
#[derive(Clone)]
pub struct ReadContext {
    pub schema: Arc<IndexSchema>,
    pub skip_invalid: bool,
    /// Bytes of input files read so far (compressed bytes for `.gz`), for progress.
    pub bytes_read: Arc<AtomicU64>,
}

/// A source of batches from one file.
pub trait BatchReader: Send {
    fn next_batch(&mut self, stats: &mut InputStats) -> Result<Option<InputBatch>, ReadError>;
}

pub fn open(
    path: &Path,
    file_index: u32,
    context: &ReadContext,
) -> Result<Box<dyn BatchReader>, ReadError> {
    let file_name = path.display().to_string();
    let (format, gzipped) = InputFormat::detect(path).map_err(|message| ReadError::Io {
        file: file_name.clone(),
        message,
    })?;
    let io_error = |err: io::Error| ReadError::Io {
        file: file_name.clone(),
        message: err.to_string(),
    };
    Ok(match format {
        InputFormat::JsonLines => Box::new(json::JsonLinesReader::new(
            file_name.clone(),
            file_index,
            open_text(path, gzipped, context).map_err(io_error)?,
            context.clone(),
        )),
        InputFormat::Csv => Box::new(csv::CsvReader::new(
            file_name.clone(),
            file_index,
            open_text(path, gzipped, context).map_err(io_error)?,
            context.clone(),
        )?),
        InputFormat::Parquet => Box::new(parquet::ParquetReader::new(
            file_name.clone(),
            file_index,
            PathBuf::from(path),
            context.clone(),
        )?),
    })
}

/// Opens a text input, transparently gunzipping, counting raw bytes for progress.
fn open_text(
    path: &Path,
    gzipped: bool,
    context: &ReadContext,
) -> io::Result<Box<dyn BufRead + Send>> {
    let file = CountingRead {
        inner: File::open(path)?,
        counter: context.bytes_read.clone(),
    };
    const BUFFER: usize = 256 * 1024;
    Ok(if gzipped {
        Box::new(BufReader::with_capacity(
            BUFFER,
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(BUFFER, file)),
        ))
    } else {
        Box::new(BufReader::with_capacity(BUFFER, file))
    })
}

struct CountingRead<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.counter.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}
