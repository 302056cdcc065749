//! The hot tier searched in the store while it downloads.
//!
//! In remote mode, a node starting on a version whose hot tier is not yet in its data dir opens
//! the hot index over the store, as it does the cold index (`remote`), from the hot index's
//! hotcache (`hot-lookup/hotcache`, written by the builder), and serves both tiers at once; the
//! download starts then, and the version opened over the local copy replaces this one when it
//! is complete (`Node::load_first_in_store`). Only unsharded versions are served this way.
//!
//! Until then the hot tier needs storage as the cold index does: a search first warms what both
//! tiers' rankings read, in rounds (`remote::warm`: dictionaries, then postings and norms), then
//! ranks on the blocking pool, where a read the plan missed waits instead of failing; the
//! page's hot documents are warmed in one more round (`Searcher::doc_async`) before they are
//! read. A hot tier is the fallback of a node whose storage is down only once it is local: a
//! search that cannot read it fails as storage unavailable.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tantivy::query::Query;
use tantivy::{DocAddress, TantivyDocument, Term};

use super::NodeError;
use super::cold_index::{self, ColdIndexSources};
use super::version::{ColdTier, LoadedVersion, Tier};
use crate::cache::{CachedFile, ReadStats};
use crate::format::Manifest;
use crate::format::hotcache::Hotcache;
use crate::format::layout;
use crate::remote::{self, Round, Warmed, warm};
use crate::schema::IndexSchema;

/// Whether `manifest`'s hot index can be searched in the store: an unsharded version whose
/// builder wrote the hot hotcache.
pub(super) fn servable(manifest: &Manifest) -> bool {
    manifest.shard.is_none() && manifest.file(layout::HOT_HOTCACHE).is_some()
}

/// Opens `manifest`'s version (`servable`) with its hot index in the store.
pub(super) async fn open(
    sources: &ColdIndexSources<'_>,
    manifest: &Manifest,
    local: &Path,
) -> Result<Arc<LoadedVersion>, NodeError> {
    let hotcache_path = layout::HOT_HOTCACHE.to_string();
    let index_files: Vec<(String, String)> = manifest
        .hot_files()
        .map(|(name, entry)| (name.to_string(), entry.path.clone()))
        .collect();
    let paths: Vec<String> = index_files.iter().map(|(_, path)| path.clone()).collect();
    // One round: the index files' block tables and the hotcache, read whole and checked
    // against the manifest's checksum.
    let (tables, bytes) = futures::join!(
        cold_index::block_tables(sources.query.as_ref(), manifest, &paths, None, true),
        read_checked(sources, manifest, &hotcache_path)
    );
    let (tables, bytes) = (tables?, bytes?);
    let cached = cold_index::cached_files(sources, manifest, &paths, tables);
    let stats = Arc::new(ReadStats::default());
    let files: Vec<(String, String, CachedFile)> = index_files
        .into_iter()
        .zip(cached)
        .map(|((name, path), cached)| (name, path, cached))
        .collect();
    let (tier, remote) = tokio::task::spawn_blocking(move || {
        let hotcache = Hotcache::decode(&hotcache_path, &bytes)
            .map_err(|err| NodeError::Corrupt(err.to_string()))?;
        let (index, remote) = remote::open_index("the remote hot index", files, &hotcache)
            .map_err(|err| NodeError::Corrupt(err.to_string()))?;
        Ok::<_, NodeError>((Tier::of(index)?, remote))
    })
    .await
    .map_err(|err| NodeError::Internal(format!("open task: {err}")))??;
    // Opening the version reads the id and value columns whole: one round, kept resident.
    let schema = IndexSchema::new(manifest.schema.clone(), "manifest")
        .map_err(|err| NodeError::Corrupt(err.to_string()))?;
    let warmed = Warmed::blocking(tokio::runtime::Handle::current());
    let round = Round::new(warmed.clone(), stats);
    round
        .run(warm::postings(
            &tier.searcher(),
            &remote.terms,
            &[],
            &ColdTier::column_names(&schema),
        ))
        .await
        .map_err(|err| unreadable(&round, err))?;
    let (manifest, local) = (manifest.clone(), local.to_path_buf());
    let scoped = warmed.clone();
    let version = tokio::task::spawn_blocking(move || {
        scoped.scope(|| LoadedVersion::new(manifest, tier, local, None))
    })
    .await
    .map_err(|err| NodeError::Internal(format!("open task: {err}")))??;
    let misses = warmed.take_misses();
    if !misses.is_empty() {
        tracing::debug!(
            misses = misses.len(),
            "opening the hot tier in the store read what its plan missed"
        );
    }
    Ok(Arc::new(version.with_hot_remote(remote)))
}

/// The whole file at `path` (in the version), checked against the manifest's size and CRC32C.
async fn read_checked(
    sources: &ColdIndexSources<'_>,
    manifest: &Manifest,
    path: &str,
) -> Result<bytes::Bytes, NodeError> {
    let entry = manifest
        .file(path)
        .ok_or_else(|| NodeError::Corrupt(format!("{path} is not in the manifest")))?;
    let bytes = sources
        .query
        .get(&layout::version_key(
            &manifest.index,
            &manifest.version,
            path,
        ))
        .await?;
    if bytes.len() as u64 != entry.size || crc32c::crc32c(&bytes) != entry.crc32c {
        return Err(NodeError::Corrupt(format!(
            "{path}: {} bytes that do not match the manifest's size ({}) or checksum",
            bytes.len(),
            entry.size
        )));
    }
    Ok(bytes)
}

fn unreadable(round: &Round, err: std::io::Error) -> NodeError {
    NodeError::StorageUnavailable(format!(
        "the hot tier is still downloading and its index could not be read from the store: {}",
        round
            .error()
            .map_or_else(|| err.to_string(), |cause| cause.to_string())
    ))
}

/// How a search in the store runs.
pub(super) struct InStore<'a> {
    /// Where the rounds count their reads.
    pub stats: &'a Arc<ReadStats>,
    /// When the rounds stop waiting for storage.
    pub give_up: Instant,
    /// A read the plan missed fails the search (tests: the plan is proved complete) instead
    /// of waiting on the blocking pool.
    pub strict: bool,
}

/// Runs `work` (synchronous, on the blocking pool) over the bytes `plan` warms in rounds:
/// returns its result and the number of reads the plan missed.
async fn warmed_then<T: Send + 'static>(
    how: &InStore<'_>,
    plan: impl Future<Output = std::io::Result<()>>,
    work: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<(T, u64), NodeError> {
    let warmed = if how.strict {
        Warmed::new()
    } else {
        Warmed::blocking(tokio::runtime::Handle::current())
    };
    let round = Round::new(warmed.clone(), how.stats.clone());
    let wait = how
        .give_up
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    match tokio::time::timeout(wait, round.run(plan)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(unreadable(&round, err)),
        Err(_) => {
            return Err(NodeError::DeadlineExceeded(
                "the hot tier is still downloading and its index was not read from the store \
                 within the time budget"
                    .into(),
            ));
        }
    }
    let scoped = warmed.clone();
    let done = tokio::task::spawn_blocking(move || scoped.scope(work))
        .await
        .map_err(|err| NodeError::Internal(format!("search task: {err}")))?;
    let misses = warmed.take_misses();
    if how.strict && !misses.is_empty() {
        let missed: Vec<String> = misses.iter().map(ToString::to_string).collect();
        return Err(NodeError::Internal(format!(
            "the search in the store read what its plan missed: {}",
            missed.join(", ")
        )));
    }
    if !misses.is_empty() {
        tracing::debug!(
            misses = misses.len(),
            "the search in the store read what its plan missed"
        );
    }
    Ok((done?, misses.len() as u64))
}

/// Warms what ranking `query` reads of the hot tier in the store and of `cold` (when its index
/// is remote too), two rounds at most, then runs `rank` over those bytes (`warmed_then`).
pub(super) async fn rank_in_store<T: Send + 'static>(
    version: &Arc<LoadedVersion>,
    cold: Option<&Arc<ColdTier>>,
    query: &dyn Query,
    how: &InStore<'_>,
    rank: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<(T, u64), NodeError> {
    let terms = warm::query_terms(query);
    let plan = async {
        let hot = version
            .hot_remote
            .as_ref()
            .expect("searched in the store only while the hot tier is remote");
        let hot_searcher = version.hot.searcher();
        let cold = cold
            .as_ref()
            .and_then(|cold| Some((cold, cold.remote.as_ref()?, cold.tier.searcher())));
        let all_terms: Vec<Term> = terms.iter().map(|(term, _)| term.clone()).collect();
        let cold_dictionary = async {
            let Some((cold, remote, searcher)) = &cold else {
                return Ok(());
            };
            let (bounds, dictionary) = futures::join!(
                cold.bounds.warm(&all_terms),
                warm::dictionary(searcher, &remote.terms, &terms)
            );
            bounds.and(dictionary)
        };
        let (hot_dictionary, cold_dictionary) = futures::join!(
            warm::dictionary(&hot_searcher, &hot.terms, &terms),
            cold_dictionary
        );
        hot_dictionary.and(cold_dictionary)?;
        let cold_postings = async {
            let Some((cold, remote, searcher)) = &cold else {
                return Ok(());
            };
            let columns = if cold.columns_open() {
                Vec::new()
            } else {
                ColdTier::column_names(&version.schema)
            };
            warm::postings(searcher, &remote.terms, &terms, &columns).await
        };
        let (hot_postings, cold_postings) = futures::join!(
            warm::postings(&hot_searcher, &hot.terms, &terms, &[]),
            cold_postings
        );
        hot_postings.and(cold_postings)
    };
    warmed_then(how, plan, rank).await
}

/// Warms the stored documents at `docs` of the hot tier in the store, one round, then runs
/// `read` over those bytes (`warmed_then`).
pub(super) async fn read_in_store<T: Send + 'static>(
    version: &Arc<LoadedVersion>,
    docs: Vec<DocAddress>,
    how: &InStore<'_>,
    read: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<(T, u64), NodeError> {
    let searcher = version.hot.searcher();
    let plan = async {
        let reads = docs
            .iter()
            .map(|doc| searcher.doc_async::<TantivyDocument>(*doc));
        for read in futures::future::join_all(reads).await {
            read.map_err(std::io::Error::other)?;
        }
        Ok(())
    };
    warmed_then(how, plan, read).await
}
