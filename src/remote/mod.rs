//! A tantivy index searched where it lives, in object storage: the cold tier's index, read
//! through the block cache without being downloaded.
//!
//! Only the hotcache (`format::hotcache`: the ranges opening the index reads) and the block
//! tables stay on local disk. A search of the remote index goes plan → fetch → search:
//! `warm` works out from the query what tantivy will read and fetches it in rounds (`round`),
//! keeping it for the search (`warmed`); then tantivy searches synchronously over those
//! bytes. A read the plan missed never waits on storage on a runtime worker: it fails and is
//! counted, and the caller searches again on the blocking pool, where such reads may wait
//! (`Warmed::blocking`).
//!
//! `bounds` reads the builder's table of cold term bounds, which decides the cold skip and
//! gives cold document frequencies without reading the cold index.

pub mod bounds;
pub mod directory;
pub mod file;
pub mod round;
pub mod terms;
pub mod warm;
pub mod warmed;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tantivy::directory::{FileSlice, OwnedBytes};

use crate::cache::CachedFile;
use crate::format::hotcache::Hotcache;
pub use bounds::{ColdTerm, ColdTermBounds};
pub use directory::RemoteDirectory;
pub use file::RemoteFile;
pub use round::Round;
pub use terms::RemoteTerms;
pub use warmed::Warmed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteErrorKind {
    /// The hotcache or the index it describes does not open: a bad or mismatched artifact.
    Corrupt,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{what}: {message}")]
    Corrupt { what: String, message: String },
}

impl RemoteError {
    pub fn kind(&self) -> RemoteErrorKind {
        match self {
            RemoteError::Corrupt { .. } => RemoteErrorKind::Corrupt,
        }
    }
}

/// What searching an index in the store keeps beside it: its files, and where its terms'
/// postings are.
#[derive(Clone)]
pub struct RemoteSearch {
    pub directory: RemoteDirectory,
    pub terms: Arc<RemoteTerms>,
}

/// An index opened over remote files, with its term bounds.
pub struct RemoteIndex {
    pub index: tantivy::Index,
    pub remote: RemoteSearch,
    pub bounds: Arc<ColdTermBounds>,
}

/// The pinned ranges of `path` from the hotcache, as `OwnedBytes`.
fn pinned(hotcache: &Hotcache, path: &str) -> Vec<(u64, OwnedBytes)> {
    hotcache
        .files
        .get(path)
        .map(|file| {
            file.ranges
                .iter()
                .map(|(start, data)| (*start, file::owned_bytes(Bytes::from(data.clone()))))
                .collect()
        })
        .unwrap_or_default()
}

/// Files whose ranges are kept in memory once fetched: field norms and fast columns (read
/// whole, by every search that reads them), and term dictionaries. A dictionary block is read
/// by tantivy's own lookup of each term in every search; through the block cache that lookup
/// cost the cold tier 1.4× what the same lookup costs the local hot tier (a cache lookup per
/// read, its housekeeping), where a resident block is a slice of memory. A term dictionary is a
/// small share of an index (postings and positions are the bulk), and only the blocks searches
/// read are kept.
fn keep_resident(name: &str) -> bool {
    name.ends_with(".fieldnorm") || name.ends_with(".fast") || name.ends_with(".term")
}

/// Opens the index whose files are `files` (tantivy's file name, the file's path in the
/// version, and its cached view) with the pinned ranges of `hotcache`. Reads nothing but the
/// hotcache: synchronous, cheap. `what` names the index in errors.
pub fn open_index(
    what: &str,
    files: Vec<(String, String, CachedFile)>,
    hotcache: &Hotcache,
) -> Result<(tantivy::Index, RemoteSearch), RemoteError> {
    let mut by_name = HashMap::with_capacity(files.len());
    for (name, path, cached) in files {
        if let Some(hot) = hotcache.files.get(&path)
            && hot.len != cached.size()
        {
            return Err(corrupt(
                &path,
                format!(
                    "the hotcache says {} bytes, the manifest {}",
                    hot.len,
                    cached.size()
                ),
            ));
        }
        let file = RemoteFile::new(
            path.as_str().into(),
            pinned(hotcache, &path),
            keep_resident(&name),
            cached,
        );
        by_name.insert(PathBuf::from(name), Arc::new(file));
    }
    let directory = RemoteDirectory::new(by_name);
    let index = tantivy::Index::open(directory.clone())
        .map_err(|err| corrupt(what, format!("does not open: {err}")))?;
    let terms = RemoteTerms::open(&index)
        .map_err(|err| corrupt(what, format!("its postings files do not open: {err}")))?;
    Ok((
        index,
        RemoteSearch {
            directory,
            terms: Arc::new(terms),
        },
    ))
}

fn corrupt(what: &str, message: String) -> RemoteError {
    RemoteError::Corrupt {
        what: what.to_string(),
        message,
    }
}

/// Opens the cold index (`open_index`) and the term bounds in `bounds` (its path, its cached
/// view), with the pinned ranges of `hotcache`.
pub fn open(
    files: Vec<(String, String, CachedFile)>,
    bounds: (String, CachedFile),
    hotcache: &Hotcache,
) -> Result<RemoteIndex, RemoteError> {
    let (index, remote) = open_index("the remote cold index", files, hotcache)?;
    let (bounds_path, bounds_file) = bounds;
    let bounds_file = RemoteFile::new(
        bounds_path.as_str().into(),
        pinned(hotcache, &bounds_path),
        false,
        bounds_file,
    );
    let bounds = ColdTermBounds::open(FileSlice::new(Arc::new(bounds_file)))
        .map_err(|err| corrupt(&bounds_path, format!("does not open: {err}")))?;
    Ok(RemoteIndex {
        index,
        remote,
        bounds: Arc::new(bounds),
    })
}
