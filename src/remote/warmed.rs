//! The bytes warmed for one search, and the scope in which its synchronous tantivy search sees
//! them.
//!
//! tantivy reads synchronously, and a remote file may not wait on storage there. So a search
//! first fetches, asynchronously, every range its plan says the search will read (`round`),
//! keeping them here for the search's duration (the block cache may evict them meanwhile);
//! then runs tantivy within `Warmed::scope`, where a remote file's synchronous read is served
//! from these ranges. A read the plan missed is not waited for: it fails, and is recorded here,
//! so that the caller can fetch it and search again (or, in strict mode, report the plan
//! incomplete).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use tantivy::directory::OwnedBytes;

use crate::cache::ReadStats;

/// Which remote file a range belongs to (`RemoteFile::id`), within one process.
pub type FileId = u64;

/// A range the synchronous search read that no round had fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    pub file: FileId,
    /// The file's path in the version, for messages.
    pub path: Arc<str>,
    pub range: Range<u64>,
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes {}..{}",
            self.path, self.range.start, self.range.end
        )
    }
}

#[derive(Default)]
struct Ranges {
    /// Per file, fetched ranges by start (several may overlap; any that holds a read serves
    /// it).
    by_file: HashMap<FileId, Vec<(u64, OwnedBytes)>>,
    misses: Vec<Miss>,
}

/// The ranges fetched for one search.
#[derive(Default)]
pub struct Warmed {
    ranges: Mutex<Ranges>,
    /// Set on the blocking pool only: a read the plan missed is fetched there, waiting.
    blocking: Option<tokio::runtime::Handle>,
    /// A scope with no plan: reads are served from the block cache's memory, without waiting,
    /// counted here as cache hits (`Warmed::from_memory`).
    from_memory: Option<Arc<ReadStats>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Warmed>>> = const { RefCell::new(None) };
}

impl Warmed {
    pub fn new() -> Arc<Warmed> {
        Arc::new(Warmed::default())
    }

    /// Ranges whose scope may wait for what the plan missed, fetching it through `runtime`:
    /// for a search run again on the blocking pool, never on a runtime worker.
    pub fn blocking(runtime: tokio::runtime::Handle) -> Arc<Warmed> {
        Arc::new(Warmed {
            ranges: Mutex::default(),
            blocking: Some(runtime),
            from_memory: None,
        })
    }

    /// A scope without a warm-up, for a search whose reads are likely all in the block cache's
    /// memory (the same terms searched before): each read is served from there, and one whose
    /// blocks are not all there is recorded as missed, as a plan's miss is. A search with no
    /// miss is complete; one with misses is to be warmed up and run again.
    pub fn from_memory(stats: Arc<ReadStats>) -> Arc<Warmed> {
        Arc::new(Warmed {
            from_memory: Some(stats),
            ..Warmed::default()
        })
    }

    pub fn insert(&self, file: FileId, start: u64, bytes: OwnedBytes) {
        let mut ranges = self.ranges.lock().unwrap_or_else(PoisonError::into_inner);
        ranges.by_file.entry(file).or_default().push((start, bytes));
    }

    /// The bytes of `range`, if a fetched range holds all of it.
    pub fn get(&self, file: FileId, range: &Range<u64>) -> Option<OwnedBytes> {
        let ranges = self.ranges.lock().unwrap_or_else(PoisonError::into_inner);
        ranges
            .by_file
            .get(&file)?
            .iter()
            .find_map(|(start, bytes)| {
                let end = start + bytes.len() as u64;
                (*start <= range.start && range.end <= end).then(|| {
                    bytes.slice((range.start - start) as usize..(range.end - start) as usize)
                })
            })
    }

    fn record_miss(&self, miss: Miss) {
        let mut ranges = self.ranges.lock().unwrap_or_else(PoisonError::into_inner);
        if !ranges.misses.contains(&miss) {
            ranges.misses.push(miss);
        }
    }

    /// The reads the plan missed so far, cleared.
    pub fn take_misses(&self) -> Vec<Miss> {
        std::mem::take(
            &mut self
                .ranges
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .misses,
        )
    }

    /// Runs `work` (synchronous tantivy work) with this search's ranges visible to remote
    /// files' synchronous reads on this thread.
    pub fn scope<T>(self: &Arc<Self>, work: impl FnOnce() -> T) -> T {
        struct Restore(Option<Arc<Warmed>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|current| *current.borrow_mut() = self.0.take());
            }
        }
        let previous = CURRENT.with(|current| current.borrow_mut().replace(self.clone()));
        let _restore = Restore(previous);
        work()
    }
}

/// Whether this thread runs within a search's scope: remote reads are planned there, and one
/// that is not served is a missed plan, not an absent value.
pub fn in_scope() -> bool {
    CURRENT.with(|current| current.borrow().is_some())
}

/// The runtime through which the current scope fetches what its plan missed, if it may.
pub(super) fn blocking_runtime() -> Option<(Arc<Warmed>, tokio::runtime::Handle)> {
    CURRENT.with(|current| {
        let current = current.borrow();
        let warmed = current.as_ref()?;
        Some((warmed.clone(), warmed.blocking.clone()?))
    })
}

/// Serves a synchronous read of a remote file from the current scope (`in_memory` reads it from
/// the block cache's memory, counting into the stats it is given, in a scope `from_memory`),
/// recording it as missed when the scope lacks it.
pub(super) fn read(
    file: FileId,
    path: &Arc<str>,
    range: &Range<u64>,
    in_memory: impl FnOnce(&ReadStats) -> Option<OwnedBytes>,
) -> Option<OwnedBytes> {
    CURRENT.with(|current| {
        let current = current.borrow();
        let warmed = current.as_ref()?;
        let found = warmed
            .get(file, range)
            .or_else(|| warmed.from_memory.as_deref().and_then(in_memory));
        if found.is_none() {
            warmed.record_miss(Miss {
                file,
                path: path.clone(),
                range: range.clone(),
            });
        }
        found
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_served_in_scope_only_and_misses_recorded() {
        let warmed = Warmed::new();
        warmed.insert(7, 100, OwnedBytes::new((0u8..50).collect::<Vec<u8>>()));
        let path: Arc<str> = "cold/index/a.idx".into();
        let none = |_: &ReadStats| None;
        assert!(
            read(7, &path, &(110..120), none).is_none(),
            "no scope, no read"
        );
        assert!(!in_scope());
        warmed.scope(|| {
            assert!(in_scope());
            assert_eq!(
                read(7, &path, &(110..115), none).unwrap().as_slice(),
                &[10, 11, 12, 13, 14]
            );
            assert!(read(7, &path, &(140..160), none).is_none());
            assert!(read(8, &path, &(0..1), none).is_none());
        });
        assert!(!in_scope());
        let misses = warmed.take_misses();
        assert_eq!(misses.len(), 2);
        assert_eq!(misses[0].range, 140..160);
        assert!(warmed.take_misses().is_empty());
    }

    #[test]
    fn a_scope_from_memory_serves_what_memory_holds_and_records_the_rest() {
        let path: Arc<str> = "cold/index/a.idx".into();
        let held = |_: &ReadStats| Some(OwnedBytes::new(vec![1u8, 2, 3]));
        Warmed::new().scope(|| {
            assert!(
                read(1, &path, &(0..3), held).is_none(),
                "a planned scope never reads memory"
            );
        });
        let warmed = Warmed::from_memory(Arc::default());
        warmed.scope(|| {
            assert_eq!(
                read(1, &path, &(0..3), held).unwrap().as_slice(),
                &[1, 2, 3]
            );
            assert!(read(1, &path, &(3..6), |_: &ReadStats| None).is_none());
        });
        let misses = warmed.take_misses();
        assert_eq!(misses.len(), 1);
        assert_eq!(misses[0].range, 3..6);
    }
}
