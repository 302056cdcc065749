//! Cold parquet files, written on their own thread. The main loop decides which file each cold
//! batch goes to (so it can compute `_addr` without waiting); this thread only encodes.
//!
//! The layout is tuned for reading one document at a time through a block cache: see
//! docs/format.md for the reasoning behind each number.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::format::layout::cold_parquet_path;
use crate::format::manifest::ParquetLayout;

pub const ZSTD_LEVEL: i32 = 3;

/// How cold pages are compressed. A cold document costs one page decode per column, and
/// parquet creates a fresh codec for every column chunk it reads: for zstd that is two contexts,
/// each probing the CPU (`cpuid`, a VM exit on virtual machines: 34 µs per codec on the build
/// machine, `cargo bench --bench machine_costs`), for LZ4 nothing. LZ4 halves the empty-cache
/// cold page (docs/benchmarks.md) for about 1.5× zstd's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColdCompression {
    /// LZ4 (parquet's `LZ4_RAW`): the fastest to read.
    #[default]
    Lz4,
    /// zstd level 3: the smallest files.
    Zstd,
}

impl std::str::FromStr for ColdCompression {
    type Err = String;

    fn from_str(text: &str) -> Result<ColdCompression, String> {
        match text {
            "lz4" => Ok(ColdCompression::Lz4),
            "zstd" => Ok(ColdCompression::Zstd),
            other => Err(format!(
                "unknown cold compression `{other}` (use `lz4` or `zstd`)"
            )),
        }
    }
}

impl ColdCompression {
    fn parquet(self) -> Compression {
        match self {
            ColdCompression::Lz4 => Compression::LZ4_RAW,
            ColdCompression::Zstd => {
                Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).expect("valid zstd level"))
            }
        }
    }

    fn description(self) -> String {
        match self {
            ColdCompression::Lz4 => "lz4".to_string(),
            ColdCompression::Zstd => format!("zstd({ZSTD_LEVEL})"),
        }
    }
}
pub const MAX_ROW_GROUP_ROWS: usize = 128 * 1024;
pub const MAX_ROW_GROUP_BYTES: usize = 128 * 1024 * 1024;
pub const DATA_PAGE_SIZE_LIMIT: usize = 16 * 1024;
pub const DATA_PAGE_ROW_LIMIT: usize = 1024;
/// Page limits are checked after each write batch: small batches keep pages close to the limit
/// even for long text values.
pub const WRITE_BATCH_ROWS: usize = 32;
/// A new cold file starts when the current one holds this much decoded arrow data.
pub const MAX_FILE_ARROW_BYTES: u64 = 2 * 1024 * 1024 * 1024;

pub fn writer_properties(compression: ColdCompression) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(compression.parquet())
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_column_index_truncate_length(Some(64))
        .set_statistics_truncate_length(Some(64))
        .set_data_page_size_limit(DATA_PAGE_SIZE_LIMIT)
        .set_data_page_row_count_limit(DATA_PAGE_ROW_LIMIT)
        .set_write_batch_size(WRITE_BATCH_ROWS)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(MAX_ROW_GROUP_BYTES))
        .set_created_by(format!("tierdex {}", env!("CARGO_PKG_VERSION")))
        .build()
}

pub fn layout_description(compression: ColdCompression) -> ParquetLayout {
    ParquetLayout {
        compression: compression.description(),
        max_row_group_rows: MAX_ROW_GROUP_ROWS as u64,
        max_row_group_bytes: MAX_ROW_GROUP_BYTES as u64,
        data_page_size_limit: DATA_PAGE_SIZE_LIMIT as u64,
        data_page_row_limit: DATA_PAGE_ROW_LIMIT as u64,
        dictionary: false,
        page_index: true,
    }
}

/// A finished cold file, relative to the staging directory.
#[derive(Debug, Clone)]
pub struct WrittenParquet {
    pub path: String,
    pub rows: u64,
    pub row_groups: u64,
}

/// Hands cold batches to the writer thread.
pub struct ColdWriter {
    sender: Option<SyncSender<(u32, RecordBatch)>>,
    thread: Option<JoinHandle<Result<Vec<WrittenParquet>, ParquetError>>>,
}

impl ColdWriter {
    pub fn start(staging: &Path, schema: Arc<Schema>, compression: ColdCompression) -> ColdWriter {
        let (sender, receiver) = sync_channel(4);
        let staging = staging.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("cold-parquet".into())
            .spawn(move || write_files(&staging, schema, compression, receiver))
            .expect("spawn the parquet writer thread");
        ColdWriter {
            sender: Some(sender),
            thread: Some(thread),
        }
    }

    /// Queues a batch (cold column layout) for file `file`; files must come in order.
    pub fn write(&self, file: u32, batch: RecordBatch) -> Result<(), ParquetError> {
        let sender = self.sender.as_ref().expect("not finished");
        if sender.send((file, batch)).is_err() {
            // The thread stopped: its error is reported by `finish`.
            return Err(ParquetError::General("the parquet writer stopped".into()));
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<Vec<WrittenParquet>, ParquetError> {
        self.sender.take();
        match self.thread.take().expect("not finished").join() {
            Ok(result) => result,
            Err(_) => Err(ParquetError::General("the parquet writer panicked".into())),
        }
    }
}

impl Drop for ColdWriter {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_files(
    staging: &Path,
    schema: Arc<Schema>,
    compression: ColdCompression,
    receiver: Receiver<(u32, RecordBatch)>,
) -> Result<Vec<WrittenParquet>, ParquetError> {
    let mut written = Vec::new();
    let mut current: Option<(u32, String, ArrowWriter<File>, u64)> = None;
    let open = |file: u32| -> Result<(u32, String, ArrowWriter<File>, u64), ParquetError> {
        let relative = cold_parquet_path(file as usize);
        let path: PathBuf = staging.join(&relative);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let writer = ArrowWriter::try_new(
            File::create(&path)?,
            schema.clone(),
            Some(writer_properties(compression)),
        )?;
        Ok((file, relative, writer, 0))
    };
    let close = |(_, relative, writer, rows): (u32, String, ArrowWriter<File>, u64)| -> Result<WrittenParquet, ParquetError> {
        let metadata = writer.close()?;
        Ok(WrittenParquet {
            path: relative,
            rows,
            row_groups: metadata.num_row_groups() as u64,
        })
    };
    for (file, batch) in receiver {
        if current
            .as_ref()
            .is_none_or(|(open_file, ..)| *open_file != file)
        {
            if let Some(done) = current.take() {
                written.push(close(done)?);
            }
            current = Some(open(file)?);
        }
        let (_, _, writer, rows) = current.as_mut().expect("opened above");
        writer.write(&batch)?;
        *rows += batch.num_rows() as u64;
    }
    if let Some(done) = current.take() {
        written.push(close(done)?);
    }
    Ok(written)
}
