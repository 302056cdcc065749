//! Opening a version's cold index, in either mode (`cold_index`):
//!
//! - `local`: the cold index is downloaded into the data dir (`cold-index/`), with the cold
//!   term bounds (`cold-lookup/term_bounds.sst`), and opened from there;
//! - `remote`: only what opening and planning read is kept in the data dir — the hotcache
//!   (`cold-lookup/hotcache`), each cold index file's block table (`cold-index-blocks/`) and,
//!   unsharded, the hot terms' document frequencies (`stats/hot_doc_freqs.fst`) — and the index
//!   is opened over the store through the block cache (`remote`).
//!
//! Either from storage (reusing what the data dir holds and verifies), or from the data dir
//! alone when storage is down at start-up.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tantivy::directory::{FileSlice, OwnedBytes};

use super::rehydrate::{RehydrateOptions, RehydrateProgress, rehydrate_some};
use super::statistics::DocFreqTable;
use super::version::{OpenedCold, Tier};
use super::{NodeError, write_atomically};
use crate::cache::BlockCache;
use crate::config::ColdIndexMode;
use crate::format::hotcache::Hotcache;
use crate::format::layout::{self, COLD_DIR, COLD_INDEX_DIR};
use crate::format::{BlockTable, Manifest};
use crate::published;
use crate::remote::{self, ColdTermBounds};
use crate::store::BlobStore;

/// Directory of a local cold index in a version's copy.
pub const COLD_INDEX_LOCAL: &str = "cold-index";
/// The hotcache and the term bounds.
const COLD_LOOKUP_LOCAL: &str = "cold-lookup";
/// Block tables of a remote cold index's files.
const COLD_INDEX_BLOCKS_LOCAL: &str = "cold-index-blocks";

/// What opening a cold index uses of the node.
pub struct ColdIndexSources<'a> {
    pub mode: ColdIndexMode,
    pub cache: &'a Arc<BlockCache>,
    pub query: &'a Arc<dyn BlobStore>,
    pub replica_reads: &'a [Arc<dyn BlobStore>],
    pub bulk: &'a [Arc<dyn BlobStore>],
    pub options: RehydrateOptions,
    pub progress: Option<&'a RehydrateProgress>,
}

fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

/// Fetches (or, with `from_storage` false, only checks) what the mode keeps locally, then opens
/// the cold index.
pub async fn open(
    sources: &ColdIndexSources<'_>,
    manifest: &Manifest,
    local: &Path,
    from_storage: bool,
) -> Result<OpenedCold, NodeError> {
    let lookup = local.join(COLD_LOOKUP_LOCAL);
    let wanted_lookup: &str = match sources.mode {
        ColdIndexMode::Local => file_name(layout::COLD_TERM_BOUNDS),
        ColdIndexMode::Remote => file_name(layout::COLD_HOTCACHE),
    };
    let parts = kept_parts(sources.mode, manifest, local);
    let kept = async {
        if from_storage {
            fetch_kept(sources, manifest, &parts).await
        } else {
            check_local(manifest, &parts).await
        }
    };
    match sources.mode {
        ColdIndexMode::Local => {
            kept.await?;
            open_local(local, lookup.join(wanted_lookup)).await
        }
        ColdIndexMode::Remote => {
            // The block tables of the index files are read beside what is kept (one round of
            // block tables, one of data, whatever the number of files).
            let remote_paths = remote_paths(manifest);
            let tables_dir = local.join(COLD_INDEX_BLOCKS_LOCAL);
            let tables = block_tables(
                sources.query.as_ref(),
                manifest,
                &remote_paths,
                Some(&tables_dir),
                from_storage,
            );
            let (kept, tables) = futures::join!(kept, tables);
            kept?;
            open_remote(sources, manifest, local, remote_paths, tables?).await
        }
    }
}

/// A part of the cold tier the data dir keeps: the files of the version's `dir` that `only`
/// names (all of them when `None`), under `local`.
struct KeptPart {
    dir: String,
    only: Option<&'static str>,
    local: PathBuf,
    what: &'static str,
}

impl KeptPart {
    fn keeps(&self, name: &str) -> bool {
        self.only.is_none_or(|only| name == only)
    }
}

/// What the mode keeps in the data dir: in local mode the cold index and its term bounds; in
/// remote mode its hotcache, and (unsharded) the hot terms' corpus frequencies.
fn kept_parts(mode: ColdIndexMode, manifest: &Manifest, local: &Path) -> Vec<KeptPart> {
    let lookup = |only| KeptPart {
        dir: manifest.tier_dir(COLD_DIR),
        only: Some(only),
        local: local.join(COLD_LOOKUP_LOCAL),
        what: "cold lookup",
    };
    match mode {
        ColdIndexMode::Local => vec![
            KeptPart {
                dir: manifest.tier_dir(COLD_INDEX_DIR),
                only: None,
                local: local.join(COLD_INDEX_LOCAL),
                what: "cold index",
            },
            lookup(file_name(layout::COLD_TERM_BOUNDS)),
        ],
        ColdIndexMode::Remote => {
            let mut parts = vec![lookup(file_name(layout::COLD_HOTCACHE))];
            if manifest.shard.is_none() {
                let hot_terms_dir = parent_dir(layout::HOT_DOC_FREQS);
                parts.push(KeptPart {
                    dir: hot_terms_dir.to_string(),
                    only: Some(file_name(layout::HOT_DOC_FREQS)),
                    local: local.join(hot_terms_dir),
                    what: "hot terms",
                });
            }
            parts
        }
    }
}

/// Downloads what the mode keeps in the data dir (reusing what is there and verifies), every
/// part at once; the cold index (local mode) counts in the rehydration progress.
async fn fetch_kept(
    sources: &ColdIndexSources<'_>,
    manifest: &Manifest,
    parts: &[KeptPart],
) -> Result<(), NodeError> {
    futures::future::try_join_all(parts.iter().map(|part| async move {
        let keeps = |name: &str| part.keeps(name);
        rehydrate_some(
            sources.bulk,
            manifest,
            &part.dir,
            &keeps,
            &part.local,
            sources.options,
            sources.progress.filter(|_| part.only.is_none()),
        )
        .await
    }))
    .await?;
    Ok(())
}

/// Checks that the data dir holds what the mode keeps, without storage.
async fn check_local(manifest: &Manifest, parts: &[KeptPart]) -> Result<(), NodeError> {
    for part in parts {
        super::check_kept(
            &part.local,
            manifest
                .files_in(part.dir.clone())
                .filter(|(name, _)| part.keeps(name)),
            part.what,
        )
        .await?;
    }
    Ok(())
}

/// The remote files: the cold index's, then the term bounds.
fn remote_paths(manifest: &Manifest) -> Vec<String> {
    manifest
        .cold_index_files()
        .map(|(_, entry)| entry.path.clone())
        .chain([manifest.tier_dir(layout::COLD_TERM_BOUNDS)])
        .collect()
}

fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

async fn open_local(local: &Path, bounds: PathBuf) -> Result<OpenedCold, NodeError> {
    let index_dir = local.join(COLD_INDEX_LOCAL);
    tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&bounds)
            .map_err(|err| NodeError::io(format!("reading {}", bounds.display()), err))?;
        let bounds = ColdTermBounds::open(FileSlice::new(Arc::new(OwnedBytes::new(bytes))))
            .map_err(|err| NodeError::Corrupt(format!("{}: {err}", bounds.display())))?;
        Ok(OpenedCold {
            tier: Tier::open(&index_dir)?,
            bounds: Arc::new(bounds),
            remote: None,
            hot_terms: None,
        })
    })
    .await
    .map_err(|err| NodeError::Internal(format!("open task: {err}")))?
}

/// The block tables of the remote files at `paths`: kept in `keep`, else (from storage) read
/// concurrently (and kept in `keep`, if given).
pub(super) async fn block_tables(
    store: &dyn BlobStore,
    manifest: &Manifest,
    paths: &[String],
    keep: Option<&Path>,
    from_storage: bool,
) -> Result<Vec<BlockTable>, NodeError> {
    let reads = paths.iter().map(|path| async move {
        let entry = manifest
            .file(path)
            .ok_or_else(|| NodeError::Corrupt(format!("{path} is not in the manifest")))?;
        let kept_path = keep.map(|keep| keep.join(format!("{}.blocks", path.replace('/', "%"))));
        if entry.block_table.is_none() {
            return Ok(BlockTable::single_block(
                manifest.block_size,
                entry.size,
                entry.crc32c,
            ));
        }
        if let Some(kept_path) = &kept_path
            && let Ok(bytes) = tokio::fs::read(kept_path).await
            && let Ok(table) = published::check_block_table(manifest, entry, &bytes)
        {
            return Ok(table);
        }
        if !from_storage {
            return Err(NodeError::Corrupt(format!(
                "no usable kept block table of {path}"
            )));
        }
        let table = published::read_block_table(store, manifest, entry).await?;
        if let Some(kept_path) = &kept_path {
            write_atomically(kept_path, &table.encode()).await?;
        }
        Ok(table)
    });
    futures::future::join_all(reads).await.into_iter().collect()
}

/// The files at `paths` (in the version) read through the block cache, with their block tables.
pub(super) fn cached_files(
    sources: &ColdIndexSources<'_>,
    manifest: &Manifest,
    paths: &[String],
    tables: Vec<BlockTable>,
) -> Vec<crate::cache::CachedFile> {
    paths
        .iter()
        .zip(tables)
        .map(|(path, table)| {
            sources.cache.file_with_retries(
                sources.query.clone(),
                sources.replica_reads.to_vec(),
                layout::version_key(&manifest.index, &manifest.version, path),
                table,
            )
        })
        .collect()
}

async fn open_remote(
    sources: &ColdIndexSources<'_>,
    manifest: &Manifest,
    local: &Path,
    paths: Vec<String>,
    tables: Vec<BlockTable>,
) -> Result<OpenedCold, NodeError> {
    let hotcache_path = local
        .join(COLD_LOOKUP_LOCAL)
        .join(file_name(layout::COLD_HOTCACHE));
    let bytes = tokio::fs::read(&hotcache_path)
        .await
        .map_err(|err| NodeError::io(format!("reading {}", hotcache_path.display()), err))?;
    let index_files: Vec<(String, String)> = manifest
        .cold_index_files()
        .map(|(name, entry)| (name.to_string(), entry.path.clone()))
        .collect();
    let bounds_path = manifest.tier_dir(layout::COLD_TERM_BOUNDS);
    let cached = cached_files(sources, manifest, &paths, tables);
    let hot_terms_path = local.join(layout::HOT_DOC_FREQS);
    let unsharded = manifest.shard.is_none();
    let what = hotcache_path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let hotcache =
            Hotcache::decode(&what, &bytes).map_err(|err| NodeError::Corrupt(err.to_string()))?;
        let mut cached = cached.into_iter();
        let files: Vec<(String, String, crate::cache::CachedFile)> = index_files
            .into_iter()
            .map(|(name, path)| (name, path, cached.next().expect("one per path")))
            .collect();
        let bounds = (bounds_path, cached.next().expect("the bounds' own"));
        let opened = remote::open(files, bounds, &hotcache)
            .map_err(|err| NodeError::Corrupt(err.to_string()))?;
        let hot_terms = if unsharded {
            let bytes = std::fs::read(&hot_terms_path).map_err(|err| {
                NodeError::io(format!("reading {}", hot_terms_path.display()), err)
            })?;
            Some(Arc::new(
                DocFreqTable::from_bytes(&hot_terms_path.display().to_string(), bytes)
                    .map_err(NodeError::Corrupt)?,
            ))
        } else {
            None
        };
        Ok(OpenedCold {
            tier: Tier::of(opened.index)?,
            bounds: opened.bounds,
            remote: Some(opened.remote),
            hot_terms,
        })
    })
    .await
    .map_err(|err| NodeError::Internal(format!("open task: {err}")))?
}
