//! Cold documents from parquet, through the block cache.
//!
//! Each cold file's footer and page index are read once, when the tier loads, and kept. A fetch
//! then works out from the offset index exactly which pages hold the requested rows in the
//! requested columns, reads all of them (across all files) in one round through the cache,
//! and decodes off the async runtime from those bytes alone.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::async_reader::MetadataFetch;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};

use super::documents::{FieldSelection, Fields, from_arrow};
use super::offload::{Size, sized_work};
use super::{NodeError, write_atomically};
use crate::cache::{BlockCache, CachedFile, ReadStats};
use crate::format::layout::version_key;
use crate::format::{DocAddr, FileEntry, Manifest};
use crate::published::{check_block_table, read_block_table};
use crate::schema::IndexSchema;
use crate::store::BlobStore;

/// Bytes read from the end of a file in the first metadata request: footer and page index
/// usually fit, so loading takes one request instead of three.
const FOOTER_PREFETCH: usize = 64 * 1024;

/// One cold parquet file, with its metadata in memory.
pub struct ColdFile {
    file: CachedFile,
    metadata: ArrowReaderMetadata,
    /// First row of each row group.
    group_starts: Vec<u64>,
}

impl std::fmt::Debug for ColdFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdFile")
            .field("file", &self.file)
            .finish()
    }
}

/// `MetadataFetch` for the parquet metadata reader, through the block cache. Remembers the
/// lowest offset the reader asked for: from there to the end is all it needs besides pages.
struct CachedFetch<'a> {
    file: &'a CachedFile,
    stats: &'a Arc<ReadStats>,
    lowest: u64,
}

impl MetadataFetch for &mut CachedFetch<'_> {
    fn fetch(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.lowest = self.lowest.min(range.start);
        async move {
            self.file
                .read_range(range, self.stats)
                .await
                .map_err(|err| ParquetError::External(Box::new(ArcError(err))))
        }
        .boxed()
    }
}

/// Lets an `Arc`ed error travel as a boxed error.
#[derive(Debug)]
struct ArcError(Arc<crate::cache::CacheError>);

impl std::fmt::Display for ArcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ArcError {}

/// A file's tail, from the first block the metadata reader read (footer, page indexes) to its
/// end: what a reader needs besides data pages. Kept in the data dir so that the cold tier can open with storage
/// down.
struct LocalTail {
    start: u64,
    bytes: Bytes,
}

impl MetadataFetch for &LocalTail {
    fn fetch(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let result =
            if range.start >= self.start && range.end <= self.start + self.bytes.len() as u64 {
                Ok(self
                    .bytes
                    .slice((range.start - self.start) as usize..(range.end - self.start) as usize))
            } else {
                Err(ParquetError::General(format!(
                    "bytes {}..{} are outside the kept file tail",
                    range.start, range.end
                )))
            };
        futures::future::ready(result).boxed()
    }
}

fn file_name(entry: &FileEntry) -> &str {
    entry.path.rsplit('/').next().unwrap_or(&entry.path)
}

/// `prefetch`: bytes to read from the end in the first request (storage), or none (the kept
/// tail, which holds exactly what the reader will ask for).
async fn load_metadata(
    what: &str,
    fetch: impl MetadataFetch,
    size: u64,
    prefetch: Option<usize>,
) -> Result<(ArrowReaderMetadata, Vec<u64>), NodeError> {
    let metadata = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Required)
        .with_prefetch_hint(prefetch)
        .load_and_finish(fetch, size)
        .await
        .map_err(|err| NodeError::parquet(what, err))?;
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let metadata = ArrowReaderMetadata::try_new(Arc::new(metadata), options)
        .map_err(|err| NodeError::parquet(what, err))?;
    let mut group_starts = Vec::new();
    let mut next = 0u64;
    for group in metadata.metadata().row_groups() {
        group_starts.push(next);
        next += group.num_rows() as u64;
    }
    Ok((metadata, group_starts))
}

impl ColdFile {
    /// Opens a cold file from the store: block table, then footer and page index through the
    /// cache. Both are also written under `keep` for `open_local`.
    pub async fn open(
        cache: &Arc<BlockCache>,
        store: &Arc<dyn BlobStore>,
        retries: &[Arc<dyn BlobStore>],
        manifest: &Manifest,
        entry: &FileEntry,
        stats: &Arc<ReadStats>,
        keep: &Path,
    ) -> Result<ColdFile, NodeError> {
        let table = read_block_table(store.as_ref(), manifest, entry).await?;
        let encoded_table = table.encode();
        let key = version_key(&manifest.index, &manifest.version, &entry.path);
        let file = cache.file_with_retries(store.clone(), retries.to_vec(), key, table);
        let mut fetch = CachedFetch {
            file: &file,
            stats,
            lowest: file.size(),
        };
        let (metadata, group_starts) =
            load_metadata(&entry.path, &mut fetch, file.size(), Some(FOOTER_PREFETCH)).await?;
        // Its blocks are in the cache from the reads just made.
        let start = fetch.lowest / manifest.block_size * manifest.block_size;
        let tail = file
            .read_range(start..file.size(), stats)
            .await
            .map_err(NodeError::Cache)?;
        let name = file_name(entry);
        let mut kept = start.to_le_bytes().to_vec();
        kept.extend_from_slice(&tail);
        write_atomically(&keep.join(format!("{name}.tail")), &kept).await?;
        write_atomically(&keep.join(format!("{name}.blocks")), &encoded_table).await?;
        Ok(ColdFile {
            file,
            metadata,
            group_starts,
        })
    }

    /// Opens a cold file from what `open` kept in the data dir, verified against the manifest;
    /// only data pages will need storage.
    pub async fn open_local(
        cache: &Arc<BlockCache>,
        store: &Arc<dyn BlobStore>,
        retries: &[Arc<dyn BlobStore>],
        manifest: &Manifest,
        entry: &FileEntry,
        keep: &Path,
    ) -> Result<ColdFile, NodeError> {
        let name = file_name(entry);
        let read = |path: std::path::PathBuf| async move {
            tokio::fs::read(&path)
                .await
                .map_err(|err| NodeError::io(format!("reading {}", path.display()), err))
        };
        let table_bytes = read(keep.join(format!("{name}.blocks"))).await?;
        let table = check_block_table(manifest, entry, &table_bytes).map_err(|err| {
            NodeError::Corrupt(format!("kept block table of {}: {err}", entry.path))
        })?;
        let kept = read(keep.join(format!("{name}.tail"))).await?;
        if kept.len() < 8 {
            return Err(NodeError::Corrupt(format!(
                "kept tail of {} is truncated",
                entry.path
            )));
        }
        let start = u64::from_le_bytes(kept[..8].try_into().expect("8 bytes"));
        let bytes = Bytes::from(kept).slice(8..);
        if start % manifest.block_size != 0
            || start + bytes.len() as u64 != entry.size
            || table
                .first_bad_block(start / manifest.block_size, &bytes)
                .is_some()
        {
            return Err(NodeError::Corrupt(format!(
                "kept tail of {} fails its checksums",
                entry.path
            )));
        }
        let tail = LocalTail { start, bytes };
        let (metadata, group_starts) = load_metadata(&entry.path, &tail, entry.size, None).await?;
        let key = version_key(&manifest.index, &manifest.version, &entry.path);
        Ok(ColdFile {
            file: cache.file_with_retries(store.clone(), retries.to_vec(), key, table),
            metadata,
            group_starts,
        })
    }

    fn rows(&self) -> u64 {
        self.metadata.metadata().file_metadata().num_rows() as u64
    }

    /// Which row group holds `row`, and the row's place in it.
    fn locate(&self, row: u64) -> (usize, u64) {
        let group = self.group_starts.partition_point(|start| *start <= row) - 1;
        (group, row - self.group_starts[group])
    }

    /// Leaf columns of the projected root columns.
    fn leaves(&self, roots: &[usize]) -> Vec<usize> {
        let descriptor = self.metadata.metadata().file_metadata().schema_descr();
        (0..descriptor.num_columns())
            .filter(|&leaf| roots.contains(&descriptor.get_column_root_idx(leaf)))
            .collect()
    }
}

/// The rows of one file a fetch needs, by row group.
struct FilePlan {
    file: usize,
    groups: BTreeMap<usize, BTreeSet<u64>>,
    ranges: Vec<Range<u64>>,
}

/// Byte ranges of the pages holding `rows` of `group`, for each leaf column (plus dictionary
/// pages, which our writer does not produce but other writers might).
fn page_ranges(
    file: &ColdFile,
    group: usize,
    rows: &BTreeSet<u64>,
    leaves: &[usize],
) -> Result<Vec<Range<u64>>, String> {
    let metadata = file.metadata.metadata();
    let group_meta = metadata.row_group(group);
    let group_rows = group_meta.num_rows() as u64;
    let index = metadata.page_index_for_row_group(group);
    let mut ranges = Vec::new();
    for &leaf in leaves {
        let pages = index
            .page_locations(leaf)
            .ok_or_else(|| format!("row group {group} column {leaf} has no offset index"))?;
        let chunk = group_meta.column(leaf);
        if let (Some(dictionary), Some(first)) = (chunk.dictionary_page_offset(), pages.first()) {
            ranges.push(dictionary as u64..first.offset as u64);
        }
        for (page, location) in pages.iter().enumerate() {
            let first_row = location.first_row_index as u64;
            let end_row = pages
                .get(page + 1)
                .map(|next| next.first_row_index as u64)
                .unwrap_or(group_rows);
            if rows.range(first_row..end_row).next().is_some() {
                let start = location.offset as u64;
                ranges.push(start..start + location.compressed_page_size as u64);
            }
        }
    }
    Ok(ranges)
}

/// The fetched pages of one file, served to the synchronous parquet reader. A read outside
/// them is a planning bug and fails loudly rather than going to storage.
struct FetchedPages {
    size: u64,
    pages: Vec<(u64, Bytes)>,
}

impl Length for FetchedPages {
    fn len(&self) -> u64 {
        self.size
    }
}

impl FetchedPages {
    fn slice(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let index = self.pages.partition_point(|(offset, _)| *offset <= start);
        if index > 0 {
            let (offset, data) = &self.pages[index - 1];
            let from = (start - offset) as usize;
            if from + length <= data.len() {
                return Ok(data.slice(from..from + length));
            }
        }
        Err(ParquetError::General(format!(
            "bytes {start}..{} were not fetched for this read",
            start + length as u64
        )))
    }
}

impl ChunkReader for FetchedPages {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let index = self.pages.partition_point(|(offset, _)| *offset <= start);
        if index == 0 {
            return Err(ParquetError::General(format!(
                "byte {start} was not fetched"
            )));
        }
        let (offset, data) = &self.pages[index - 1];
        let from = (start - offset) as usize;
        if from > data.len() {
            return Err(ParquetError::General(format!(
                "byte {start} was not fetched"
            )));
        }
        Ok(bytes::Buf::reader(data.slice(from..)))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, length)
    }
}

/// Decoded cold rows by (file, row): the batch holding each and its index in the batch.
type DecodedRows = BTreeMap<(usize, u64), (Arc<RecordBatch>, usize)>;

/// Decoded cold documents, so that a document read again costs neither storage nor decoding.
/// Keyed by the version, the document's address and the fields asked for.
///
/// quick_cache rather than moka: every page with cold documents looks them up, and moka's reads
/// (recording each access, running its housekeeping on the reading thread) were 9% of the
/// node's CPU under 64 clients (perf, docs/benchmarks.md).
pub struct DocumentCache {
    documents: quick_cache::sync::Cache<(Arc<str>, u64, u64), CachedDocument, DocumentWeight>,
}

#[derive(Clone)]
struct CachedDocument {
    fields: Arc<Fields>,
    /// Bytes it holds, roughly: computed once, the cache asks again on every eviction.
    weight: u64,
}

#[derive(Clone)]
struct DocumentWeight;

impl quick_cache::Weighter<(Arc<str>, u64, u64), CachedDocument> for DocumentWeight {
    fn weight(&self, _key: &(Arc<str>, u64, u64), document: &CachedDocument) -> u64 {
        document.weight
    }
}

/// What a cached document is expected to weigh, to size the cache's table.
const TYPICAL_DOCUMENT_BYTES: u64 = 1024;

impl DocumentCache {
    pub fn new(capacity_bytes: u64) -> DocumentCache {
        let documents = usize::try_from(capacity_bytes / TYPICAL_DOCUMENT_BYTES)
            .unwrap_or(usize::MAX)
            .max(16);
        DocumentCache {
            documents: quick_cache::sync::Cache::with_weighter(
                documents,
                capacity_bytes.max(1),
                DocumentWeight,
            ),
        }
    }

    fn insert(&self, key: (Arc<str>, u64, u64), fields: Arc<Fields>) {
        let bytes: usize = fields
            .iter()
            .map(|(name, value)| name.len() + value.approximate_size())
            .sum();
        let weight = bytes as u64 + 64;
        self.documents
            .insert(key, CachedDocument { fields, weight });
    }

    fn key(version: &Arc<str>, selection: &FieldSelection, addr: DocAddr) -> (Arc<str>, u64, u64) {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&selection.columns, &mut hasher);
        (
            version.clone(),
            addr.pack(),
            std::hash::Hasher::finish(&hasher),
        )
    }
}

/// Reads the documents at `addrs`, returned in the same order: from the document cache when
/// there, else from parquet.
pub async fn fetch_documents(
    files: &Arc<Vec<ColdFile>>,
    schema: &Arc<IndexSchema>,
    selection: &FieldSelection,
    addrs: &[DocAddr],
    stats: &Arc<ReadStats>,
    cache: (&DocumentCache, &Arc<str>),
    storage_allowed: bool,
) -> Result<Vec<Fields>, NodeError> {
    let (documents, version) = cache;
    let mut found: Vec<Option<Arc<Fields>>> = addrs
        .iter()
        .map(|addr| {
            documents
                .documents
                .get(&DocumentCache::key(version, selection, *addr))
                .map(|document| document.fields)
        })
        .collect();
    let missing: Vec<DocAddr> = addrs
        .iter()
        .zip(&found)
        .filter(|(_, cached)| cached.is_none())
        .map(|(addr, _)| *addr)
        .collect();
    if !missing.is_empty() && !storage_allowed {
        return Err(NodeError::StorageUnavailable(
            "storage is failing (circuit breaker open)".into(),
        ));
    }
    if !missing.is_empty() {
        let read = read_documents(files, schema, selection, &missing, stats).await?;
        let mut read = missing.iter().zip(read).map(|(addr, fields)| {
            let fields = Arc::new(fields);
            documents.insert(
                DocumentCache::key(version, selection, *addr),
                fields.clone(),
            );
            fields
        });
        for slot in found.iter_mut().filter(|slot| slot.is_none()) {
            *slot = read.next();
        }
    }
    Ok(found
        .into_iter()
        .map(|fields| {
            fields
                .map(|fields| fields.as_ref().clone())
                .unwrap_or_default()
        })
        .collect())
}

/// Which pages of which files hold the documents at `addrs` (the selected columns only), and
/// the projected root columns.
fn plan_reads(
    files: &[ColdFile],
    schema: &IndexSchema,
    selection: &FieldSelection,
    addrs: &[DocAddr],
) -> Result<(BTreeMap<usize, FilePlan>, Vec<usize>), NodeError> {
    // Projected root columns: positions of the selected fields among the cold columns.
    let roots: Vec<usize> = selection
        .columns
        .iter()
        .filter_map(|column| schema.cold_columns.iter().position(|cold| cold == column))
        .collect();
    let mut plans: BTreeMap<usize, FilePlan> = BTreeMap::new();
    for addr in addrs {
        let file_index = addr.file as usize;
        let file = files.get(file_index).ok_or_else(|| {
            NodeError::Corrupt(format!(
                "cold address names file {file_index}, the manifest has {}",
                files.len()
            ))
        })?;
        if addr.row >= file.rows() {
            return Err(NodeError::Corrupt(format!(
                "cold address names row {} of file {file_index}, which has {} rows",
                addr.row,
                file.rows()
            )));
        }
        let (group, row) = file.locate(addr.row);
        plans
            .entry(file_index)
            .or_insert_with(|| FilePlan {
                file: file_index,
                groups: BTreeMap::new(),
                ranges: Vec::new(),
            })
            .groups
            .entry(group)
            .or_default()
            .insert(row);
    }
    for plan in plans.values_mut() {
        let file = &files[plan.file];
        let leaves = file.leaves(&roots);
        for (group, rows) in &plan.groups {
            plan.ranges
                .extend(page_ranges(file, *group, rows, &leaves).map_err(|message| {
                    NodeError::Corrupt(format!("{}: {message}", file.file.object()))
                })?);
        }
        plan.ranges.sort_by_key(|range| range.start);
        plan.ranges.dedup();
    }
    Ok((plans, roots))
}

/// How many storage requests reading the documents at `addrs` costs on an empty cache: the
/// pages `fetch_documents` would read, in blocks, merged as the cache merges them. Reads
/// nothing.
pub fn requests_on_empty_cache(
    files: &[ColdFile],
    schema: &IndexSchema,
    selection: &FieldSelection,
    addrs: &[DocAddr],
) -> Result<u64, NodeError> {
    let (plans, _) = plan_reads(files, schema, selection, addrs)?;
    let mut requests = 0;
    for plan in plans.values() {
        requests += files[plan.file]
            .file
            .requests_on_empty_cache(&plan.ranges)
            .map_err(NodeError::Cache)?;
    }
    Ok(requests)
}

/// Reads the documents at `addrs` from parquet, returned in the same order.
async fn read_documents(
    files: &Arc<Vec<ColdFile>>,
    schema: &Arc<IndexSchema>,
    selection: &FieldSelection,
    addrs: &[DocAddr],
    stats: &Arc<ReadStats>,
) -> Result<Vec<Fields>, NodeError> {
    if addrs.is_empty() {
        return Ok(Vec::new());
    }
    let (plans, roots) = plan_reads(files, schema, selection, addrs)?;
    // One round: every file's pages requested at once.
    let fetched = join_all(
        plans
            .values()
            .map(|plan| files[plan.file].file.read_ranges(&plan.ranges, stats)),
    )
    .await;
    let mut inputs = Vec::with_capacity(plans.len());
    for (plan, pages) in plans.into_values().zip(fetched) {
        let pages = pages.map_err(NodeError::Cache)?;
        inputs.push((plan, pages));
    }
    let files = files.clone();
    let pages: usize = inputs.iter().map(|(plan, _)| plan.ranges.len()).sum();
    let decoded = sized_work(
        Size::of(Some(pages as u64), SHORT_PAGE_DECODES),
        move || -> Result<DecodedRows, NodeError> { decode_rows(inputs, &files, &roots) },
    )
    .await??;
    Ok(addrs
        .iter()
        .map(|addr| {
            let (batch, row) = &decoded[&(addr.file as usize, addr.row)];
            from_arrow(schema, selection, batch, *row)
        })
        .collect())
}

/// Decoding this many fetched pages (16 KiB or so each) is short work.
const SHORT_PAGE_DECODES: u64 = 16;

/// Every planned row, decoded from the fetched pages, by (file, row).
fn decode_rows(
    inputs: Vec<(FilePlan, Vec<Bytes>)>,
    files: &[ColdFile],
    roots: &[usize],
) -> Result<DecodedRows, NodeError> {
    let mut rows = BTreeMap::new();
    for (plan, pages) in inputs {
        let file = &files[plan.file];
        let batch = Arc::new(decode(file, &plan, pages, roots)?);
        let mut index = 0;
        for (group, group_rows) in &plan.groups {
            for row in group_rows {
                rows.insert(
                    (plan.file, file.group_starts[*group] + row),
                    (batch.clone(), index),
                );
                index += 1;
            }
        }
    }
    Ok(rows)
}

/// Decodes the planned rows of one file from its fetched pages, in file order.
fn decode(
    file: &ColdFile,
    plan: &FilePlan,
    pages: Vec<Bytes>,
    roots: &[usize],
) -> Result<RecordBatch, NodeError> {
    let fail = |err: ParquetError| NodeError::parquet(file.file.object(), err);
    let chunk = FetchedPages {
        size: file.file.size(),
        pages: plan
            .ranges
            .iter()
            .map(|range| range.start)
            .zip(pages)
            .collect(),
    };
    let metadata = file.metadata.metadata();
    let mut selected = Vec::new();
    let mut offset = 0usize;
    let mut wanted = 0usize;
    for (group, rows) in &plan.groups {
        for row in rows {
            let at = offset + *row as usize;
            selected.push(at..at + 1);
            wanted += 1;
        }
        offset += metadata.row_group(*group).num_rows() as usize;
    }
    let selection = RowSelection::from_consecutive_ranges(selected.into_iter(), offset);
    let mask = ProjectionMask::roots(file.metadata.parquet_schema(), roots.iter().copied());
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(chunk, file.metadata.clone())
        .with_row_groups(plan.groups.keys().copied().collect())
        .with_row_selection(selection)
        .with_projection(mask)
        .with_batch_size(wanted.max(1))
        .build()
        .map_err(fail)?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|err| {
        NodeError::parquet(
            file.file.object(),
            ParquetError::ArrowError(err.to_string()),
        )
    })?;
    let schema = batches
        .first()
        .map(|batch| batch.schema())
        .unwrap_or_else(|| file.metadata.schema().clone());
    let batch = arrow::compute::concat_batches(&schema, &batches)
        .map_err(|err| NodeError::Internal(format!("concatenating cold rows: {err}")))?;
    if batch.num_rows() != wanted {
        return Err(NodeError::Corrupt(format!(
            "{}: decoded {} rows, expected {wanted}",
            file.file.object(),
            batch.num_rows()
        )));
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::documents::FieldValue;

    fn document(text_bytes: usize) -> Arc<Fields> {
        Arc::new(vec![(
            "summary".to_string(),
            FieldValue::Text("x".repeat(text_bytes)),
        )])
    }

    #[test]
    fn document_cache_holds_what_fits_its_bytes_and_keys_by_version_and_fields() {
        let cache = DocumentCache::new(16 * 1024);
        let version: Arc<str> = "index/v1".into();
        let all_fields = FieldSelection {
            columns: vec![0, 1],
            as_list: vec![false, false],
        };
        let one_field = FieldSelection {
            columns: vec![1],
            as_list: vec![false, false],
        };
        let addr = |row| DocAddr::new(0, row);
        for row in 0..100 {
            cache.insert(
                DocumentCache::key(&version, &all_fields, addr(row)),
                document(1000),
            );
        }
        let kept = (0..100)
            .filter(|row| {
                cache
                    .documents
                    .get(&DocumentCache::key(&version, &all_fields, addr(*row)))
                    .is_some()
            })
            .count();
        // About 1 KiB each in 16 KiB.
        assert!((1..=16).contains(&kept), "{kept} documents kept");
        assert!(cache.documents.weight() <= 16 * 1024);
        cache.insert(
            DocumentCache::key(&version, &all_fields, addr(500)),
            document(10),
        );
        let key = DocumentCache::key(&version, &all_fields, addr(500));
        assert!(cache.documents.get(&key).is_some());
        let other_fields = DocumentCache::key(&version, &one_field, addr(500));
        let other_version = DocumentCache::key(&"index/v2".into(), &all_fields, addr(500));
        assert!(cache.documents.get(&other_fields).is_none());
        assert!(cache.documents.get(&other_version).is_none());
    }
}
