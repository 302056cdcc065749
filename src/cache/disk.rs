//! The block cache's disk tier: verified blocks kept in files under the data dir, bounded by
//! bytes with least-recently-used eviction, surviving restarts.
//!
//! One file per block, named by the block's key (a hash of the object's name, and the block
//! number), holding a header that names the object and block in full, then the block's bytes.
//! A block read back is used only if its header names what was asked and its bytes pass the
//! file's block checksum (the caller's `BlockTable`); anything else is deleted and counted.
//! The index of what is on disk lives in memory, rebuilt from the directory at start (oldest
//! files first in the eviction order).
//!
//! Written rather than taken from a crate: `foyer` (the hybrid cache the issue pointed at)
//! brings its own I/O engine, runtime hooks and some forty crates for what is here a few hundred
//! lines over tokio's file API, with blocks already verified by the table the reader holds.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tracing::{debug, warn};

use crate::format::BlockTable;

const MAGIC: &[u8; 8] = b"TDXDC001";
const SUFFIX: &str = "blk";

/// A block's key in both tiers: the object's name hash and the block number.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct DiskKey {
    pub object: u64,
    pub block: u64,
}

impl DiskKey {
    fn file_name(&self) -> String {
        format!("{:016x}-{:x}.{SUFFIX}", self.object, self.block)
    }

    fn parse(name: &str) -> Option<DiskKey> {
        let stem = name.strip_suffix(&format!(".{SUFFIX}"))?;
        let (object, block) = stem.split_once('-')?;
        Some(DiskKey {
            object: u64::from_str_radix(object, 16).ok()?,
            block: u64::from_str_radix(block, 16).ok()?,
        })
    }
}

struct Entry {
    size: u64,
    tick: u64,
}

#[derive(Default)]
struct Index {
    entries: HashMap<DiskKey, Entry>,
    /// Eviction order: oldest use first.
    by_use: BTreeMap<u64, DiskKey>,
    used: u64,
    next_tick: u64,
}

impl Index {
    fn touch(&mut self, key: DiskKey) {
        let tick = self.next_tick;
        self.next_tick += 1;
        if let Some(entry) = self.entries.get_mut(&key) {
            self.by_use.remove(&entry.tick);
            entry.tick = tick;
            self.by_use.insert(tick, key);
        }
    }

    fn remove(&mut self, key: &DiskKey) -> bool {
        match self.entries.remove(key) {
            Some(entry) => {
                self.by_use.remove(&entry.tick);
                self.used -= entry.size;
                true
            }
            None => false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskStatus {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    /// Blocks read back that failed their header or checksum (deleted).
    pub corrupt: u64,
}

pub struct DiskCache {
    dir: PathBuf,
    capacity: u64,
    index: Mutex<Index>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    corrupt: AtomicU64,
    /// Writes in the background not finished yet.
    writing: AtomicU64,
    written: tokio::sync::Notify,
}

fn encode(object: &str, block: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + object.len() + 8 + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(object.len() as u32).to_le_bytes());
    out.extend_from_slice(object.as_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// The block's bytes, if the header names `object` and `block`.
fn decode(bytes: Bytes, object: &str, block: u64) -> Option<Bytes> {
    let header = MAGIC.len() + 4;
    if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let name_len = u32::from_le_bytes(bytes[MAGIC.len()..header].try_into().ok()?) as usize;
    let data_at = header + name_len + 8;
    if bytes.len() < data_at || &bytes[header..header + name_len] != object.as_bytes() {
        return None;
    }
    let stored = u64::from_le_bytes(bytes[header + name_len..data_at].try_into().ok()?);
    (stored == block).then(|| bytes.slice(data_at..))
}

impl DiskCache {
    /// The disk tier in `dir` (created), with what an earlier run left there; `capacity` 0
    /// means none (`None`). Reads the directory listing synchronously: call at start-up.
    pub fn open(dir: &Path, capacity: u64) -> std::io::Result<Option<Arc<DiskCache>>> {
        if capacity == 0 {
            return Ok(None);
        }
        std::fs::create_dir_all(dir)?;
        let mut found: Vec<(std::time::SystemTime, DiskKey, u64)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(DiskKey::parse) else {
                // A write cut short (`.partial`) or a stranger: not ours to keep.
                let _ = std::fs::remove_file(entry.path());
                continue;
            };
            let meta = entry.metadata()?;
            found.push((
                meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                key,
                meta.len(),
            ));
        }
        found.sort();
        let cache = DiskCache {
            dir: dir.to_path_buf(),
            capacity,
            index: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            writing: AtomicU64::new(0),
            written: tokio::sync::Notify::new(),
        };
        {
            let mut index = cache.index.lock().unwrap_or_else(PoisonError::into_inner);
            for (_, key, size) in found {
                let tick = index.next_tick;
                index.next_tick += 1;
                index.entries.insert(key, Entry { size, tick });
                index.by_use.insert(tick, key);
                index.used += size;
            }
        }
        // A smaller capacity than last time: trim now.
        for path in cache.evict_to_fit(0) {
            let _ = std::fs::remove_file(path);
        }
        Ok(Some(Arc::new(cache)))
    }

    pub fn status(&self) -> DiskStatus {
        DiskStatus {
            capacity_bytes: self.capacity,
            used_bytes: self
                .index
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .used,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
        }
    }

    fn path(&self, key: &DiskKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// Block `key` of `object`, verified with `table`; `None` when it is not on disk or fails.
    pub async fn get(&self, key: DiskKey, object: &str, table: &BlockTable) -> Option<Bytes> {
        let present = self
            .index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .contains_key(&key);
        if !present {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let path = self.path(&key);
        let verified = match tokio::fs::read(&path).await {
            Ok(bytes) => decode(Bytes::from(bytes), object, key.block)
                .filter(|data| table.verify_block(key.block, data)),
            Err(err) => {
                debug!("disk cache: {} unreadable: {err}", path.display());
                None
            }
        };
        let removed = {
            let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
            match &verified {
                Some(_) => {
                    index.touch(key);
                    false
                }
                None => index.remove(&key),
            }
        };
        match verified {
            Some(data) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(data)
            }
            None => {
                if removed {
                    self.corrupt.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        object,
                        block = key.block,
                        "disk cache: a kept block failed its checksum; removed"
                    );
                    let _ = tokio::fs::remove_file(&path).await;
                }
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Keeps a verified block, evicting the least recently used ones beyond the capacity.
    /// The write happens in the background: a search never waits for it.
    pub fn put(self: &Arc<Self>, key: DiskKey, object: &str, data: Bytes) {
        let bytes = encode(object, key.block, &data);
        let size = bytes.len() as u64;
        if size > self.capacity {
            return;
        }
        let evicted = {
            let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
            if index.entries.contains_key(&key) {
                return;
            }
            let tick = index.next_tick;
            index.next_tick += 1;
            index.entries.insert(key, Entry { size, tick });
            index.by_use.insert(tick, key);
            index.used += size;
            drop(index);
            self.evict_to_fit(0)
        };
        let path = self.path(&key);
        let cache = self.clone();
        self.writing.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            for old in evicted {
                let _ = tokio::fs::remove_file(old).await;
            }
            let temp = path.with_extension("partial");
            let written = async {
                tokio::fs::write(&temp, &bytes).await?;
                tokio::fs::rename(&temp, &path).await
            }
            .await;
            if let Err(err) = written {
                debug!("disk cache: could not write {}: {err}", path.display());
                let _ = tokio::fs::remove_file(&temp).await;
                cache
                    .index
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&key);
            }
            cache.writing.fetch_sub(1, Ordering::SeqCst);
            cache.written.notify_waiters();
        });
    }

    /// Waits until every block put so far is on disk (a node shutting down, tests).
    pub async fn flush(&self) {
        loop {
            let written = self.written.notified();
            if self.writing.load(Ordering::SeqCst) == 0 {
                return;
            }
            written.await;
        }
    }

    /// Drops the oldest entries until `extra` more bytes fit; their files, to delete.
    fn evict_to_fit(&self, extra: u64) -> Vec<PathBuf> {
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        let mut removed = Vec::new();
        while index.used + extra > self.capacity {
            let Some((_, key)) = index.by_use.pop_first() else {
                break;
            };
            if let Some(entry) = index.entries.remove(&key) {
                index.used -= entry.size;
            }
            self.evictions.fetch_add(1, Ordering::Relaxed);
            removed.push(self.path(&key));
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_of(blocks: &[&[u8]], block_size: u64) -> BlockTable {
        BlockTable {
            block_size,
            file_size: blocks.iter().map(|block| block.len() as u64).sum(),
            checksums: blocks.iter().map(|block| crc32c::crc32c(block)).collect(),
        }
    }

    #[tokio::test]
    async fn blocks_survive_a_reopen_are_verified_and_evicted_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let blocks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 100]).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        let table = table_of(&refs, 100);
        let key = |block| DiskKey { object: 7, block };
        // Room for three blocks with their headers.
        let capacity = 3 * (encode("s3://b/x", 0, &blocks[0]).len() as u64);
        let cache = DiskCache::open(dir.path(), capacity).unwrap().unwrap();
        for block in 0..3u64 {
            cache.put(
                key(block),
                "s3://b/x",
                Bytes::from(blocks[block as usize].clone()),
            );
        }
        // Writes are in the background: wait for them.
        for _ in 0..100 {
            if std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == SUFFIX))
                .count()
                == 3
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            cache.get(key(0), "s3://b/x", &table).await.unwrap(),
            blocks[0]
        );
        // Another object's name in the header is not this block.
        assert!(cache.get(key(1), "s3://b/other", &table).await.is_none());
        assert_eq!(cache.status().corrupt, 1);
        drop(cache);

        let cache = DiskCache::open(dir.path(), capacity).unwrap().unwrap();
        assert_eq!(
            cache.get(key(2), "s3://b/x", &table).await.unwrap(),
            blocks[2]
        );
        // A flipped byte on disk: refused and removed.
        let path = dir.path().join(key(0).file_name());
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(cache.get(key(0), "s3://b/x", &table).await.is_none());
        assert!(!path.exists());
        cache.put(key(3), "s3://b/x", Bytes::from(blocks[3].clone()));
        cache.put(key(1), "s3://b/x", Bytes::from(blocks[1].clone()));
        cache.put(key(0), "s3://b/x", Bytes::from(blocks[0].clone()));
        let status = cache.status();
        assert!(status.used_bytes <= capacity, "{status:?}");
        assert!(status.evictions >= 1, "{status:?}");
    }
}
