//! Downloads a tantivy directory of a version (`hot`, `cold/index`) into the data dir: every
//! file cut into block-aligned chunks fetched with many concurrent range requests, each chunk
//! checked against the file's block table before it is written, the whole file checked against
//! its CRC32C before it is renamed into place. Files already present with the right checksum
//! are kept, so a restart downloads nothing.

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use tracing::{info, warn};

use super::NodeError;
use crate::format::layout::version_key;
use crate::format::{BlockTable, FileEntry, Manifest};
use crate::published::read_block_table;
use crate::store::BlobStore;

/// Attempts per chunk before rehydration gives up on it.
const CHUNK_ATTEMPTS: u32 = 3;
const PARTIAL_SUFFIX: &str = ".partial";

#[derive(Debug, Clone, Copy)]
pub struct RehydrateOptions {
    pub concurrency: usize,
    /// Rounded down to whole blocks (at least one).
    pub chunk_size: u64,
}

/// Where a rehydration reports its bytes as they land (the node's per-index gauges).
#[derive(Debug, Clone)]
pub struct RehydrateProgress {
    /// Bytes to download (files already present and verified are not counted).
    pub total: prometheus::IntGauge,
    pub done: prometheus::IntGauge,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RehydrateReport {
    pub files: u64,
    pub reused_files: u64,
    pub bytes_downloaded: u64,
    pub requests: u64,
    pub refetched_chunks: u64,
}

struct Download {
    entry: FileEntry,
    table: BlockTable,
    partial: PathBuf,
    target: PathBuf,
}

/// Reads a block table from the first replica that has it.
async fn block_table(
    stores: &[Arc<dyn BlobStore>],
    manifest: &Manifest,
    entry: &FileEntry,
) -> Result<BlockTable, NodeError> {
    let mut last = None;
    for store in stores {
        match read_block_table(store.as_ref(), manifest, entry).await {
            Ok(table) => return Ok(table),
            Err(err) => last = Some(err),
        }
    }
    Err(last.expect("at least one store").into())
}

/// Makes `local` hold exactly the files of `dir` in `manifest`, verified. Chunks are spread
/// over `stores` (replicas of the same content); a failed chunk is retried on the next one.
/// A failed rehydration takes back what it added to `progress`: the attempt that follows
/// counts again.
pub async fn rehydrate(
    stores: &[Arc<dyn BlobStore>],
    manifest: &Manifest,
    dir: &str,
    local: &Path,
    options: RehydrateOptions,
    progress: Option<&RehydrateProgress>,
) -> Result<RehydrateReport, NodeError> {
    rehydrate_some(stores, manifest, dir, &|_| true, local, options, progress).await
}

/// `rehydrate` of the files of `dir` whose names `wanted` accepts.
pub async fn rehydrate_some(
    stores: &[Arc<dyn BlobStore>],
    manifest: &Manifest,
    dir: &str,
    wanted: &(dyn Fn(&str) -> bool + Sync),
    local: &Path,
    options: RehydrateOptions,
    progress: Option<&RehydrateProgress>,
) -> Result<RehydrateReport, NodeError> {
    // This attempt's own counts, in gauges of no registry.
    let attempt = progress.map(|_| RehydrateProgress {
        total: prometheus::IntGauge::new("attempt_total", "this attempt").expect("valid"),
        done: prometheus::IntGauge::new("attempt_done", "this attempt").expect("valid"),
    });
    // The version's gauges and this attempt's, counted alike.
    let gauges: Vec<&RehydrateProgress> = progress.into_iter().chain(attempt.as_ref()).collect();
    let result = rehydrate_once(stores, manifest, dir, wanted, local, options, &gauges).await;
    if let (Err(_), Some(progress), Some(attempt)) = (&result, progress, &attempt) {
        progress.total.sub(attempt.total.get());
        progress.done.sub(attempt.done.get());
    }
    result
}

async fn rehydrate_once(
    stores: &[Arc<dyn BlobStore>],
    manifest: &Manifest,
    dir: &str,
    wanted: &(dyn Fn(&str) -> bool + Sync),
    local: &Path,
    options: RehydrateOptions,
    gauges: &[&RehydrateProgress],
) -> Result<RehydrateReport, NodeError> {
    tokio::fs::create_dir_all(local)
        .await
        .map_err(|err| NodeError::io(format!("creating {}", local.display()), err))?;
    let mut report = RehydrateReport::default();
    let mut missing = Vec::new();
    for (name, entry) in manifest.index_files(dir).filter(|(name, _)| wanted(name)) {
        report.files += 1;
        let target = local.join(name);
        if local_file_matches(&target, entry).await {
            report.reused_files += 1;
            continue;
        }
        missing.push((name.to_owned(), entry.clone(), target));
    }
    // Block tables are small; fetching them one after another would cost a round trip per file
    // before the first chunk moves. A file that is one chunk needs none: its chunk is checked
    // against the file's checksum, and the round of tables is saved.
    let downloads: Vec<Download> = futures::stream::iter(missing)
        .map(
            |(name, entry, target): (String, FileEntry, PathBuf)| async move {
                let table = if entry.size <= options.chunk_size {
                    BlockTable::single_block(entry.size.max(1), entry.size, entry.crc32c)
                } else {
                    block_table(stores, manifest, &entry).await?
                };
                Ok::<_, NodeError>(Download {
                    entry,
                    table,
                    partial: local.join(format!("{name}{PARTIAL_SUFFIX}")),
                    target,
                })
            },
        )
        .buffered(options.concurrency.max(1))
        .try_collect()
        .await?;
    if downloads.is_empty() {
        info!(
            dir,
            files = report.files,
            "all files already in the data dir"
        );
        return Ok(report);
    }
    for download in &downloads {
        let file = tokio::fs::File::create(&download.partial)
            .await
            .map_err(|err| {
                NodeError::io(format!("creating {}", download.partial.display()), err)
            })?;
        file.set_len(download.entry.size)
            .await
            .map_err(|err| NodeError::io(format!("sizing {}", download.partial.display()), err))?;
    }
    let bytes: u64 = downloads.iter().map(|download| download.entry.size).sum();
    for gauges in gauges {
        gauges.total.add(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    let block_size = manifest.block_size;
    let chunk_blocks = (options.chunk_size / block_size).max(1);
    let mut chunks: Vec<(usize, u64, Range<u64>)> = Vec::new();
    // Chunk `i` starts on replica `i % replicas`.
    for (file, download) in downloads.iter().enumerate() {
        let blocks = download.table.block_count();
        let mut first = 0;
        while first < blocks {
            let last = (first + chunk_blocks).min(blocks);
            let range =
                download.table.block_range(first).start..download.table.block_range(last - 1).end;
            chunks.push((file, first, range));
            first = last;
        }
    }
    let requests = AtomicU64::new(0);
    let refetched = AtomicU64::new(0);
    let downloads = &downloads;
    let results: Vec<(usize, u64, u32, u64)> =
        futures::stream::iter(chunks.into_iter().enumerate())
            .map(|(chunk, (file, first_block, range))| {
                let download = &downloads[file];
                let key = version_key(&manifest.index, &manifest.version, &download.entry.path);
                let requests = &requests;
                let refetched = &refetched;
                async move {
                    let data = fetch_chunk(
                        stores,
                        chunk,
                        &key,
                        &download.table,
                        first_block,
                        range.clone(),
                        requests,
                        refetched,
                    )
                    .await?;
                    let crc = crc32c::crc32c(&data);
                    let len = data.len() as u64;
                    let path = download.partial.clone();
                    let offset = range.start;
                    tokio::task::spawn_blocking(move || {
                        std::fs::OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .and_then(|file| file.write_all_at(&data, offset))
                            .map_err(|err| {
                                NodeError::io(format!("writing {}", path.display()), err)
                            })
                    })
                    .await
                    .map_err(|err| NodeError::Internal(format!("write task: {err}")))??;
                    for gauges in gauges {
                        gauges.done.add(i64::try_from(len).unwrap_or(i64::MAX));
                    }
                    Ok::<_, NodeError>((file, range.start, crc, len))
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .try_collect()
            .await?;
    report.requests = requests.load(Ordering::Relaxed);
    report.refetched_chunks = refetched.load(Ordering::Relaxed);

    // Whole-file checksums from the chunks' checksums, in file order.
    let mut per_file: Vec<Vec<(u64, u32, u64)>> = vec![Vec::new(); downloads.len()];
    for (file, offset, crc, len) in results {
        per_file[file].push((offset, crc, len));
        report.bytes_downloaded += len;
    }
    for (download, mut chunks) in downloads.iter().zip(per_file) {
        chunks.sort_unstable_by_key(|(offset, ..)| *offset);
        let crc = chunks.iter().fold(0u32, |acc, (_, crc, len)| {
            crc32c::crc32c_combine(acc, *crc, *len as usize)
        });
        if crc != download.entry.crc32c {
            return Err(NodeError::Corrupt(format!(
                "{}: whole-file checksum {crc:08x} does not match the manifest's {:08x}",
                download.entry.path, download.entry.crc32c
            )));
        }
        let partial = download.partial.clone();
        let target = download.target.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&partial)?.sync_all()?;
            std::fs::rename(&partial, &target)
        })
        .await
        .map_err(|err| NodeError::Internal(format!("rename task: {err}")))?
        .map_err(|err| NodeError::io(format!("finishing {}", download.target.display()), err))?;
    }
    info!(
        dir,
        files = report.files,
        reused = report.reused_files,
        bytes = report.bytes_downloaded,
        requests = report.requests,
        refetched_chunks = report.refetched_chunks,
        "rehydrated"
    );
    Ok(report)
}

/// One chunk, verified block by block; a chunk failing its checksums, or whose read fails, is
/// fetched again from the next replica.
#[allow(clippy::too_many_arguments)]
async fn fetch_chunk(
    stores: &[Arc<dyn BlobStore>],
    chunk: usize,
    key: &str,
    table: &BlockTable,
    first_block: u64,
    range: Range<u64>,
    requests: &AtomicU64,
    refetched: &AtomicU64,
) -> Result<bytes::Bytes, NodeError> {
    let mut attempt = 0;
    loop {
        let store = &stores[(chunk + attempt as usize) % stores.len()];
        attempt += 1;
        requests.fetch_add(1, Ordering::Relaxed);
        match store.get_range(key, range.clone()).await {
            Ok(data) => match table.first_bad_block(first_block, &data) {
                None => return Ok(data),
                Some(block) if attempt < CHUNK_ATTEMPTS => {
                    warn!(object = %key, block, attempt, "checksum mismatch while rehydrating; fetching the chunk again");
                    refetched.fetch_add(1, Ordering::Relaxed);
                }
                Some(block) => {
                    return Err(NodeError::Corrupt(format!(
                        "{key} block {block}: checksum mismatch after {attempt} attempts"
                    )));
                }
            },
            Err(err) if attempt < CHUNK_ATTEMPTS => {
                warn!(object = %key, attempt, "rehydration read failed, retrying: {err}");
                refetched.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)))
                    .await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// True when `path` exists with the entry's size and CRC32C.
pub async fn local_file_matches(path: &Path, entry: &FileEntry) -> bool {
    let path = path.to_path_buf();
    let (size, crc) = (entry.size, entry.crc32c);
    tokio::task::spawn_blocking(move || {
        let Ok(meta) = std::fs::metadata(&path) else {
            return false;
        };
        if meta.len() != size {
            return false;
        }
        let Ok(mut file) = std::fs::File::open(&path) else {
            return false;
        };
        let mut buffer = vec![0u8; 1 << 20];
        let mut actual = 0u32;
        loop {
            match std::io::Read::read(&mut file, &mut buffer) {
                Ok(0) => return actual == crc,
                Ok(read) => actual = crc32c::crc32c_append(actual, &buffer[..read]),
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}
