//! One file of a remote tantivy index, as tantivy's `FileHandle`.
//!
//! Where a read is served from, in order:
//! 1. the hotcache's pinned ranges (on local disk, in memory once opened);
//! 2. the file's resident ranges: field norms and fast columns are read whole and often, and
//!    term dictionary blocks by every search of their terms, so once fetched they stay in memory
//!    for the version's life (1 byte per document and field for norms; the columns and
//!    dictionary blocks searches read);
//! 3. synchronous reads: the ranges warmed for the current search (`warmed`), or, in a scope
//!    served from memory, the block cache's memory; else the read fails as a missed plan — it
//!    never waits on storage;
//!    asynchronous reads: the current round of the search's warm-up (`round`), or the block
//!    cache directly when there is no round.

use std::collections::BTreeMap;
use std::io;
use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tantivy::HasLen;
use tantivy::directory::{FileHandle, OwnedBytes};

use super::round;
use super::warmed::{self, FileId};
use crate::cache::{CachedFile, ReadStats};

static NEXT_FILE: AtomicU64 = AtomicU64::new(1);

/// Cached `Bytes` as tantivy's `OwnedBytes`, without a copy.
struct SharedBytes(Bytes);

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

// SAFETY: `Bytes` points at a heap buffer it shares by reference count; moving the `Bytes`
// (and so this wrapper) never moves the bytes it derefs to.
unsafe impl stable_deref_trait::StableDeref for SharedBytes {}

pub fn owned_bytes(bytes: Bytes) -> OwnedBytes {
    OwnedBytes::new(SharedBytes(bytes))
}

/// Ranges kept in memory by start, disjoint or not (a term dictionary's are its blocks: some
/// thousands in a large index, hence a map rather than a sorted list).
#[derive(Default)]
pub struct Resident {
    ranges: RwLock<BTreeMap<u64, OwnedBytes>>,
    bytes: AtomicU64,
}

impl Resident {
    fn get(&self, range: &Range<u64>) -> Option<OwnedBytes> {
        let ranges = self.ranges.read().unwrap_or_else(|err| err.into_inner());
        ranges
            .range(..=range.start)
            .rev()
            .find_map(|(start, bytes)| slice_of(*start, bytes, range))
    }

    pub(super) fn insert(&self, start: u64, bytes: OwnedBytes) {
        let end = start + bytes.len() as u64;
        if self.get(&(start..end)).is_some() {
            return;
        }
        let mut ranges = self.ranges.write().unwrap_or_else(|err| err.into_inner());
        // A shorter range at the same start is replaced by the one holding it.
        let added = bytes.len() as u64;
        let replaced = ranges
            .insert(start, bytes)
            .map_or(0, |kept| kept.len() as u64);
        self.bytes.fetch_add(added, Ordering::Relaxed);
        self.bytes.fetch_sub(replaced, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// The bytes of `range` from a sorted list of ranges, if one holds all of it.
fn find(ranges: &[(u64, OwnedBytes)], range: &Range<u64>) -> Option<OwnedBytes> {
    let before = ranges.partition_point(|(start, _)| *start <= range.start);
    ranges[..before]
        .iter()
        .rev()
        .find_map(|(start, bytes)| slice_of(*start, bytes, range))
}

/// `range` out of the bytes kept from `start`, if they hold all of it (`start <= range.start`).
fn slice_of(start: u64, bytes: &OwnedBytes, range: &Range<u64>) -> Option<OwnedBytes> {
    let end = start + bytes.len() as u64;
    (range.end <= end)
        .then(|| bytes.slice((range.start - start) as usize..(range.end - start) as usize))
}

/// One file of a remote index.
pub struct RemoteFile {
    id: FileId,
    /// The file's path in the version (`cold/index/<name>`), for messages.
    path: Arc<str>,
    len: u64,
    /// The hotcache's ranges of this file.
    pinned: Vec<(u64, OwnedBytes)>,
    /// `Some` for files read whole and often (field norms, fast columns).
    resident: Option<Arc<Resident>>,
    cached: CachedFile,
}

impl std::fmt::Debug for RemoteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFile")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish()
    }
}

impl RemoteFile {
    pub fn new(
        path: Arc<str>,
        pinned: Vec<(u64, OwnedBytes)>,
        keep_resident: bool,
        cached: CachedFile,
    ) -> RemoteFile {
        RemoteFile {
            id: NEXT_FILE.fetch_add(1, Ordering::Relaxed),
            path,
            len: cached.size(),
            pinned,
            resident: keep_resident.then(Arc::default),
            cached,
        }
    }

    pub fn id(&self) -> FileId {
        self.id
    }

    pub fn path(&self) -> &Arc<str> {
        &self.path
    }

    pub fn cached(&self) -> &CachedFile {
        &self.cached
    }

    pub fn resident(&self) -> Option<&Arc<Resident>> {
        self.resident.as_ref()
    }

    /// Bytes of this file held in memory for good: pinned and resident.
    pub fn memory_bytes(&self) -> (u64, u64) {
        (
            self.pinned
                .iter()
                .map(|(_, bytes)| bytes.len() as u64)
                .sum(),
            self.resident
                .as_ref()
                .map_or(0, |resident| resident.bytes()),
        )
    }

    /// The bytes of `range` without storage, if they are kept in memory.
    pub fn kept(&self, range: &Range<u64>) -> Option<OwnedBytes> {
        find(&self.pinned, range).or_else(|| self.resident.as_ref()?.get(range))
    }

    fn check(&self, range: &Range<usize>) -> io::Result<Range<u64>> {
        if range.start > range.end || range.end as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: bytes {}..{} are outside the file ({} bytes)",
                    self.path, range.start, range.end, self.len
                ),
            ));
        }
        Ok(range.start as u64..range.end as u64)
    }
}

impl HasLen for RemoteFile {
    fn len(&self) -> usize {
        self.len as usize
    }
}

/// The error of a synchronous read that no round fetched.
pub fn plan_miss(path: &str, range: &Range<u64>) -> io::Error {
    io::Error::other(format!(
        "{path}: bytes {}..{} were read without being warmed (the search's plan missed them)",
        range.start, range.end
    ))
}

#[async_trait::async_trait]
impl FileHandle for RemoteFile {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        let range = self.check(&range)?;
        if let Some(bytes) = self.kept(&range) {
            return Ok(bytes);
        }
        let in_memory = |stats: &ReadStats| {
            let bytes = owned_bytes(self.cached.read_in_memory(&range, stats)?);
            if let Some(resident) = &self.resident {
                resident.insert(range.start, bytes.clone());
            }
            Some(bytes)
        };
        if let Some(bytes) = warmed::read(self.id, &self.path, &range, in_memory) {
            return Ok(bytes);
        }
        // On the blocking pool only (never a runtime worker): wait for the missed bytes.
        let Some((warmed, runtime)) = warmed::blocking_runtime() else {
            return Err(plan_miss(&self.path, &range));
        };
        let stats = Arc::new(ReadStats::default());
        let bytes = runtime
            .block_on(self.cached.read_range(range.clone(), &stats))
            .map_err(|err| io::Error::other(err.to_string()))?;
        let bytes = owned_bytes(bytes);
        warmed.insert(self.id, range.start, bytes.clone());
        Ok(bytes)
    }

    async fn read_bytes_async(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        let range = self.check(&range)?;
        if let Some(bytes) = self.kept(&range) {
            return Ok(bytes);
        }
        match round::current() {
            Some(round) => round.read(self, range).await,
            None => {
                let stats = Arc::new(ReadStats::default());
                let bytes = self
                    .cached
                    .read_range(range, &stats)
                    .await
                    .map_err(|err| io::Error::other(err.to_string()))?;
                Ok(owned_bytes(bytes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(from: u8, len: u8) -> OwnedBytes {
        OwnedBytes::new((from..from + len).collect::<Vec<u8>>())
    }

    #[test]
    fn resident_ranges_serve_what_they_hold_and_count_each_byte_once() {
        let resident = Resident::default();
        resident.insert(10, bytes(10, 10));
        resident.insert(40, bytes(40, 5));
        assert_eq!(resident.bytes(), 15);
        assert_eq!(resident.get(&(12..15)).unwrap().as_slice(), &[12, 13, 14]);
        assert_eq!(
            resident.get(&(40..45)).unwrap().as_slice(),
            &[40, 41, 42, 43, 44]
        );
        for outside in [0..5, 15..25, 19..21, 30..41, 44..46] {
            assert!(resident.get(&outside).is_none(), "{outside:?}");
        }
        // Held already: not kept twice.
        resident.insert(12, bytes(12, 3));
        assert_eq!(resident.bytes(), 15);
        // A longer range at a start already kept replaces the shorter one.
        resident.insert(40, bytes(40, 20));
        assert_eq!(resident.bytes(), 30);
        assert_eq!(
            resident.get(&(50..60)).unwrap().as_slice(),
            bytes(50, 10).as_slice()
        );
        // A range starting inside an earlier one, past a later start, is found in the earlier.
        resident.insert(0, bytes(0, 100));
        assert_eq!(
            resident.get(&(41..90)).unwrap().as_slice(),
            bytes(41, 49).as_slice()
        );
    }
}
