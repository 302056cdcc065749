//! The block cache in front of the blob store, for cold reads.
//!
//! Files are read in blocks aligned to the manifest's block size, each verified against the
//! file's block checksum table before it is cached or used. A read of several ranges works out
//! every block it needs, takes what the cache has, and fetches the rest in one round: adjacent
//! missing blocks merge into one range request, and all requests go out at once. Concurrent
//! misses on the same block load it once (moka's `try_get_with` is single-flight).

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared, join_all};
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use tracing::warn;

use crate::format::BlockTable;
use crate::store::{BlobStore, StoreError};

pub mod disk;
pub use disk::{DiskCache, DiskKey, DiskStatus};

/// Longest single range request, in blocks: bounds the bytes one request holds in memory.
const MAX_RUN_BLOCKS: u64 = 256;
/// Per-entry bookkeeping counted against the capacity besides the block's bytes.
const ENTRY_OVERHEAD: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheErrorKind {
    Store,
    /// A block failed its checksum: never cached, never returned.
    Corrupt,
    /// A read past the end of the file (a caller bug or a wrong manifest).
    OutOfBounds,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{object} block {block} (bytes {}..{}): checksum mismatch", range.start, range.end)]
    Corrupt {
        object: String,
        block: u64,
        range: Range<u64>,
    },
    #[error("{object}: bytes {}..{} are outside the file ({size} bytes)", range.start, range.end)]
    OutOfBounds {
        object: String,
        range: Range<u64>,
        size: u64,
    },
}

impl CacheError {
    pub fn kind(&self) -> CacheErrorKind {
        match self {
            CacheError::Store(_) => CacheErrorKind::Store,
            CacheError::Corrupt { .. } => CacheErrorKind::Corrupt,
            CacheError::OutOfBounds { .. } => CacheErrorKind::OutOfBounds,
        }
    }
}

/// Counters for one unit of work (a query, a start-up), shared by the reads it makes.
#[derive(Debug, Default)]
pub struct ReadStats {
    /// Blocks found in memory or on disk.
    pub cache_hits: AtomicU64,
    /// Of `cache_hits`, those read from the disk tier.
    pub disk_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

impl ReadStats {
    pub fn snapshot(&self) -> ReadCounts {
        ReadCounts {
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            cache_misses: self.cache_misses.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCounts {
    pub cache_hits: u64,
    pub disk_hits: u64,
    pub cache_misses: u64,
    pub requests: u64,
    pub bytes: u64,
}

/// A block of an object: the object by its name's hash (stable across restarts, so that the
/// disk tier's blocks are found again), and the block number.
type BlockKey = DiskKey;

fn object_hash(object: &str) -> u64 {
    use std::hash::Hasher as _;
    let mut hasher = twox_hash::XxHash64::with_seed(0);
    hasher.write(object.as_bytes());
    hasher.finish()
}

/// The node-wide cache of verified blocks, with capacity in bytes.
pub struct BlockCache {
    blocks: Cache<BlockKey, Bytes>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Blocks pushed out to make room (not replaced or invalidated ones).
    evictions: Arc<AtomicU64>,
    /// Under the memory: verified blocks on local disk.
    disk: Option<Arc<DiskCache>>,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity", &self.capacity)
            .field("used", &self.blocks.weighted_size())
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheStatus {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

impl CacheStatus {
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

impl BlockCache {
    pub fn new(capacity_bytes: u64) -> Arc<BlockCache> {
        BlockCache::with_disk(capacity_bytes, None)
    }

    /// A cache of `capacity_bytes` in memory over `disk`.
    pub fn with_disk(capacity_bytes: u64, disk: Option<Arc<DiskCache>>) -> Arc<BlockCache> {
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = evictions.clone();
        let blocks = Cache::builder()
            .eviction_listener(move |_key, _block, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .max_capacity(capacity_bytes)
            .weigher(|_key: &BlockKey, block: &Bytes| {
                u32::try_from(block.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            // TinyLFU may refuse to admit a block just fetched; plain LRU keeps what a query
            // read, so the next query for the same documents is served from memory.
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Arc::new(BlockCache {
            blocks,
            capacity: capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions,
            disk,
        })
    }

    /// Waits for the disk tier's writes in flight.
    pub async fn flush_disk(&self) {
        if let Some(disk) = &self.disk {
            disk.flush().await;
        }
    }

    pub fn disk_status(&self) -> Option<DiskStatus> {
        self.disk.as_ref().map(|disk| disk.status())
    }

    /// Empties the memory tier (the disk tier keeps its blocks): for benchmarks and tests of
    /// what a node reads with the cache cold in memory.
    pub async fn clear_memory(&self) {
        self.blocks.invalidate_all();
        self.blocks.run_pending_tasks().await;
    }

    pub fn status(&self) -> CacheStatus {
        CacheStatus {
            capacity_bytes: self.capacity,
            used_bytes: self.blocks.weighted_size(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// Applies pending evictions, so that `status` is exact (tests, status reports).
    pub async fn settle(&self) {
        self.blocks.run_pending_tasks().await;
    }

    /// A file in `store`, read through this cache and verified with `table`. A read whose
    /// blocks fail their checksums is tried again on each of `retries` in turn (the replicas),
    /// or once more on `store` when there are none.
    pub fn file_with_retries(
        self: &Arc<Self>,
        store: Arc<dyn BlobStore>,
        retries: Vec<Arc<dyn BlobStore>>,
        key: String,
        table: BlockTable,
    ) -> CachedFile {
        let retries = if retries.is_empty() {
            vec![store.clone()]
        } else {
            retries
        };
        CachedFile {
            inner: Arc::new(FileInner {
                // By key, not by store: replicas hold the same bytes under the same key, and
                // a node restarted against another endpoint of the same data finds its disk
                // tier again. Version ids make keys unique; checksums guard the rest.
                id: object_hash(&key),
                object: format!("{}/{key}", store.uri()),
                store,
                retries,
                key,
                table,
                cache: self.clone(),
            }),
        }
    }
}

struct FileInner {
    /// Distinguishes this file's blocks in the shared cache: its object's name hash.
    id: u64,
    store: Arc<dyn BlobStore>,
    /// Where to read again after a checksum mismatch.
    retries: Vec<Arc<dyn BlobStore>>,
    key: String,
    object: String,
    table: BlockTable,
    cache: Arc<BlockCache>,
}

/// One immutable file of the store, read by ranges through the block cache. Cheap to clone.
#[derive(Clone)]
pub struct CachedFile {
    inner: Arc<FileInner>,
}

impl std::fmt::Debug for CachedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedFile")
            .field("object", &self.inner.object)
            .finish()
    }
}

type RunFuture = Shared<BoxFuture<'static, Result<Arc<Vec<Bytes>>, Arc<CacheError>>>>;

impl CachedFile {
    pub fn size(&self) -> u64 {
        self.inner.table.file_size
    }

    pub fn object(&self) -> &str {
        &self.inner.object
    }

    pub async fn read_range(
        &self,
        range: Range<u64>,
        stats: &Arc<ReadStats>,
    ) -> Result<Bytes, Arc<CacheError>> {
        Ok(self
            .read_ranges(std::slice::from_ref(&range), stats)
            .await?
            .remove(0))
    }

    /// The blocks holding `ranges`, in order.
    fn blocks_of(&self, ranges: &[Range<u64>]) -> Result<BTreeSet<u64>, Arc<CacheError>> {
        let block_size = self.inner.table.block_size;
        let mut needed = BTreeSet::new();
        for range in ranges {
            if range.start > range.end || range.end > self.size() {
                return Err(Arc::new(CacheError::OutOfBounds {
                    object: self.inner.object.clone(),
                    range: range.clone(),
                    size: self.size(),
                }));
            }
            if range.start < range.end {
                needed.extend(range.start / block_size..=(range.end - 1) / block_size);
            }
        }
        Ok(needed)
    }

    /// How many range requests `read_ranges` would send for `ranges` if none of their blocks
    /// were cached: what a read costs on an empty cache, without reading.
    pub fn requests_on_empty_cache(&self, ranges: &[Range<u64>]) -> Result<u64, Arc<CacheError>> {
        let blocks: Vec<u64> = self.blocks_of(ranges)?.into_iter().collect();
        Ok(runs(&blocks).len() as u64)
    }

    /// The bytes of `range` if every block holding it is in memory, found without waiting: for a
    /// synchronous search served from memory (`remote::warmed`). `None` says some block is not
    /// there (or the cache was busy); the caller then reads with `read_ranges`. Counts hits
    /// only (here and into `stats`), so that a block is not counted as a miss twice.
    pub fn read_in_memory(&self, range: &Range<u64>, stats: &ReadStats) -> Option<Bytes> {
        let inner = &self.inner;
        if range.start > range.end || range.end > self.size() {
            return None;
        }
        let block_size = inner.table.block_size;
        // moka's lookup may wait only for its own housekeeping: one that would wait counts as
        // absent.
        let mut hits = 0;
        let bytes = assemble(range, block_size, |block| {
            let key = BlockKey {
                object: inner.id,
                block,
            };
            hits += 1;
            inner.cache.blocks.get(&key).now_or_never().flatten()
        })?;
        inner.cache.hits.fetch_add(hits, Ordering::Relaxed);
        stats.cache_hits.fetch_add(hits, Ordering::Relaxed);
        Some(bytes)
    }

    /// Reads several ranges, fetching every missing block in one round of requests.
    pub async fn read_ranges(
        &self,
        ranges: &[Range<u64>],
        stats: &Arc<ReadStats>,
    ) -> Result<Vec<Bytes>, Arc<CacheError>> {
        let inner = &self.inner;
        let block_size = inner.table.block_size;
        let needed = self.blocks_of(ranges)?;
        let mut blocks: HashMap<u64, Bytes> = HashMap::with_capacity(needed.len());
        let mut missing = Vec::new();
        for block in needed {
            match inner
                .cache
                .blocks
                .get(&BlockKey {
                    object: inner.id,
                    block,
                })
                .await
            {
                Some(data) => {
                    blocks.insert(block, data);
                }
                None => missing.push(block),
            }
        }
        if let Some(disk) = &inner.cache.disk
            && !missing.is_empty()
        {
            let reads = missing.iter().map(|&block| async move {
                let key = BlockKey {
                    object: inner.id,
                    block,
                };
                (block, disk.get(key, &inner.key, &inner.table).await)
            });
            let mut still_missing = Vec::with_capacity(missing.len());
            for (block, found) in join_all(reads).await {
                match found {
                    Some(data) => {
                        stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                        inner
                            .cache
                            .blocks
                            .insert(
                                BlockKey {
                                    object: inner.id,
                                    block,
                                },
                                data.clone(),
                            )
                            .await;
                        blocks.insert(block, data);
                    }
                    None => still_missing.push(block),
                }
            }
            missing = still_missing;
        }
        let hits = blocks.len() as u64;
        inner.cache.hits.fetch_add(hits, Ordering::Relaxed);
        inner
            .cache
            .misses
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        stats.cache_hits.fetch_add(hits, Ordering::Relaxed);
        stats
            .cache_misses
            .fetch_add(missing.len() as u64, Ordering::Relaxed);

        let mut loads = Vec::with_capacity(missing.len());
        for run in runs(&missing) {
            let fetch: RunFuture = fetch_run(inner.clone(), run.clone(), stats.clone())
                .boxed()
                .shared();
            for block in run.clone() {
                let fetch = fetch.clone();
                let first = run.start;
                let key = BlockKey {
                    object: inner.id,
                    block,
                };
                loads.push(async move {
                    let loaded = inner
                        .cache
                        .blocks
                        .try_get_with(key, async move {
                            fetch
                                .await
                                .map(|run_blocks| run_blocks[(block - first) as usize].clone())
                        })
                        .await;
                    (block, loaded)
                });
            }
        }
        for (block, loaded) in join_all(loads).await {
            // moka wraps the loader's error (already an Arc) in another Arc.
            blocks.insert(block, loaded.map_err(|err| (*err).clone())?);
        }
        Ok(ranges
            .iter()
            .map(|range| {
                assemble(range, block_size, |block| blocks.get(&block).cloned())
                    .expect("every block of the ranges was read")
            })
            .collect())
    }
}

/// Consecutive block numbers grouped into runs of at most `MAX_RUN_BLOCKS`.
fn runs(blocks: &[u64]) -> Vec<Range<u64>> {
    let mut runs: Vec<Range<u64>> = Vec::new();
    for &block in blocks {
        match runs.last_mut() {
            Some(run) if run.end == block && run.end - run.start < MAX_RUN_BLOCKS => run.end += 1,
            _ => runs.push(block..block + 1),
        }
    }
    runs
}

/// One range request for a run of blocks, each verified before anyone sees it. Blocks that
/// fail their checksums are read again from the retry stores; if none gives good bytes, the
/// run fails, logged once with the file and block.
async fn fetch_run(
    file: Arc<FileInner>,
    run: Range<u64>,
    stats: Arc<ReadStats>,
) -> Result<Arc<Vec<Bytes>>, Arc<CacheError>> {
    let table = &file.table;
    let start = table.block_range(run.start).start;
    let end = table.block_range(run.end - 1).end;
    let mut bad = None;
    for store in std::iter::once(&file.store).chain(&file.retries) {
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let data = match store.get_range(&file.key, start..end).await {
            Ok(data) => data,
            // A first read that fails is the caller's to handle; a retry that fails leaves the
            // checksum failure as the reason.
            Err(err) if bad.is_none() => return Err(Arc::new(CacheError::Store(err))),
            Err(_) => continue,
        };
        stats.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        let failed = if data.len() as u64 == end - start {
            table.first_bad_block(run.start, &data)
        } else {
            // A short or long answer: the first block it does not hold exactly is bad.
            Some((run.start + data.len() as u64 / table.block_size).min(run.end - 1))
        };
        match failed {
            None => {
                if let Some((block, _)) = bad {
                    warn!(object = %file.object, block, "checksum mismatch; the block read again is good");
                }
                let blocks: Vec<Bytes> = run
                    .clone()
                    .map(|block| {
                        let range = table.block_range(block);
                        data.slice((range.start - start) as usize..(range.end - start) as usize)
                    })
                    .collect();
                if let Some(disk) = &file.cache.disk {
                    for (block, data) in run.zip(&blocks) {
                        let key = BlockKey {
                            object: file.id,
                            block,
                        };
                        disk.put(key, &file.key, data.clone());
                    }
                }
                return Ok(Arc::new(blocks));
            }
            Some(block) => bad = Some((block, table.block_range(block))),
        }
    }
    let (block, range) = bad.expect("a failed read returned early");
    let err = CacheError::Corrupt {
        object: file.object.clone(),
        block,
        range,
    };
    warn!("{err} on every read");
    Err(Arc::new(err))
}

/// The bytes of `range` from its blocks, each given by `block` (`None` when one is not to
/// be had): a slice when it lies in one block, else a copy.
fn assemble(
    range: &Range<u64>,
    block_size: u64,
    mut block: impl FnMut(u64) -> Option<Bytes>,
) -> Option<Bytes> {
    if range.start == range.end {
        return Some(Bytes::new());
    }
    let first = range.start / block_size;
    let last = (range.end - 1) / block_size;
    if first == last {
        let offset = (range.start - first * block_size) as usize;
        return Some(block(first)?.slice(offset..offset + (range.end - range.start) as usize));
    }
    let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
    for number in first..=last {
        let block_start = number * block_size;
        let data = block(number)?;
        let from = range.start.saturating_sub(block_start) as usize;
        let to = ((range.end - block_start) as usize).min(data.len());
        out.extend_from_slice(&data[from..to]);
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests;
