//! The query node: the indexes it serves, their loading (rehydrate hot, open it, then the cold
//! tier), and searches. Knows nothing of gRPC: the API layer maps `NodeError` kinds to status
//! codes and watches `subscribe()` for health.

pub mod cold;
mod cold_index;
pub mod collector;
mod cost;
pub mod documents;
pub mod exact_sum;
mod hot_remote;
pub mod metrics;
pub mod offload;
pub mod rehydrate;
mod remote_rank;
pub mod search;
pub mod shard_search;
mod skip;
pub mod stable;
pub mod statistics;
pub mod stores;
pub mod version;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::cache::{BlockCache, CacheError, CacheStatus, DiskCache, DiskStatus, ReadStats};
use crate::config::{ColdIndexMode, NodeConfig};
use crate::format::layout::{self, HOT_DIR};
use crate::format::{FileEntry, Manifest};
use crate::published::{self, PublishedError};
use crate::store::{BlobStore, BreakerState, StoreError, StoreErrorKind};
use rehydrate::{RehydrateOptions, rehydrate};
use search::{SearchRequest, SearchResult};
use statistics::DocFreqTable;
use stores::NodeStores;
use version::{LoadedVersion, Tier};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeErrorKind {
    /// A query that does not parse or names what the schema lacks.
    InvalidQuery,
    /// Any other bad request: limits, unknown fields to return.
    InvalidArgument,
    UnknownIndex,
    /// The index is not serving yet (its hot tier is still loading).
    NotReady,
    /// Object storage failed, or is known to be failing.
    Storage,
    /// The search's time budget ran out.
    DeadlineExceeded,
    /// Data that fails its checksums or contradicts its manifest.
    Corrupt,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid query{}: {message}", position.map(|p| format!(" at byte {p}")).unwrap_or_default())]
    InvalidQuery {
        message: String,
        position: Option<usize>,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("unknown index `{0}`")]
    UnknownIndex(String),
    #[error("index `{0}` is not serving yet")]
    NotReady(String),
    /// Not serving what was asked right now, said in full (a shard at another version, a
    /// fleet member that did not answer).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("storage unavailable: {0}")]
    StorageUnavailable(String),
    #[error(transparent)]
    Published(#[from] PublishedError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(Arc<CacheError>),
    #[error("index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("{what}: {source}")]
    Parquet {
        what: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl NodeError {
    pub fn kind(&self) -> NodeErrorKind {
        match self {
            NodeError::InvalidQuery { .. } => NodeErrorKind::InvalidQuery,
            NodeError::InvalidArgument(_) => NodeErrorKind::InvalidArgument,
            NodeError::UnknownIndex(_) => NodeErrorKind::UnknownIndex,
            NodeError::NotReady(_) | NodeError::Unavailable(_) => NodeErrorKind::NotReady,
            NodeError::DeadlineExceeded(_) => NodeErrorKind::DeadlineExceeded,
            NodeError::StorageUnavailable(_) => NodeErrorKind::Storage,
            NodeError::Published(PublishedError::Format(_)) => NodeErrorKind::Corrupt,
            NodeError::Published(_) | NodeError::Store(_) => NodeErrorKind::Storage,
            NodeError::Cache(err) => match err.kind() {
                crate::cache::CacheErrorKind::Store => NodeErrorKind::Storage,
                _ => NodeErrorKind::Corrupt,
            },
            NodeError::Corrupt(_) | NodeError::Parquet { .. } => NodeErrorKind::Corrupt,
            NodeError::Index(_) | NodeError::Io { .. } | NodeError::Internal(_) => {
                NodeErrorKind::Internal
            }
        }
    }

    /// The request itself is wrong (a bad query or argument): any replica would refuse it.
    pub fn is_request_error(&self) -> bool {
        matches!(
            self.kind(),
            NodeErrorKind::InvalidQuery | NodeErrorKind::InvalidArgument
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> NodeError {
        NodeError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn parquet(
        what: impl Into<String>,
        source: parquet::errors::ParquetError,
    ) -> NodeError {
        NodeError::Parquet {
            what: what.into(),
            source,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierState {
    Loading,
    Ready,
    Failed,
}

#[derive(Debug, Clone)]
pub struct IndexStatus {
    pub name: String,
    pub version: Option<String>,
    pub hot: TierState,
    pub cold: TierState,
    pub hot_docs: u64,
    pub cold_docs: u64,
    pub error: Option<String>,
    /// A remote cold index's bytes held in memory: pinned (hotcache), resident (norms,
    /// columns).
    pub cold_memory_bytes: (u64, u64),
    /// The hot tier is searched in the store while it downloads: it does not serve without
    /// storage yet.
    pub hot_in_store: bool,
}

#[derive(Debug, Clone)]
struct SlotState {
    hot: TierState,
    cold: TierState,
    error: Option<String>,
}

/// One served index, or one shard of a sharded index: the version searches use, and how far
/// its loading got.
pub struct IndexSlot {
    /// The index, or `<index>/<shard>`.
    name: String,
    index: String,
    /// `Some` for a shard served in a fleet (`fleet`): its version is read from the shard's
    /// manifest.
    shard: Option<u32>,
    current: ArcSwapOption<LoadedVersion>,
    /// A shard's version before `current`, kept while the fleet may still search it (searches
    /// pin one version across shards, and other shards may not have switched yet).
    previous: ArcSwapOption<LoadedVersion>,
    /// The task loading and serving a shard (shards come and go with the fleet's placement).
    task: Mutex<Option<tokio::task::AbortHandle>>,
    /// Set when that task is stopped. Aborting takes effect at the task's next await, so a
    /// check finishing on another thread in the meantime must not count as done.
    stopped: AtomicBool,
    state: Mutex<SlotState>,
    /// Asks the index's task to look for a new version now.
    check_now: Notify,
    /// Counts finished checks, so that a caller can wait for the one it asked for.
    checks: watch::Sender<u64>,
}

impl IndexSlot {
    fn new(index: String, shard: Option<u32>) -> IndexSlot {
        IndexSlot {
            name: match shard {
                Some(shard) => format!("{index}/{shard}"),
                None => index.clone(),
            },
            index,
            shard,
            current: ArcSwapOption::empty(),
            previous: ArcSwapOption::empty(),
            task: Mutex::new(None),
            state: Mutex::new(SlotState {
                hot: TierState::Loading,
                cold: TierState::Loading,
                error: None,
            }),
            check_now: Notify::new(),
            checks: watch::channel(0).0,
            stopped: AtomicBool::new(false),
        }
    }

    /// Stops the task `Node::add_shard` started for this slot, if any.
    fn stop_task(&self) {
        self.stopped.store(true, AtomicOrdering::SeqCst);
        if let Some(task) = self.task.lock().expect("not poisoned").take() {
            task.abort();
        }
    }

    pub fn status(&self) -> IndexStatus {
        let state = self.state.lock().expect("not poisoned").clone();
        let current = self.current.load_full();
        IndexStatus {
            name: self.name.clone(),
            version: current
                .as_ref()
                .map(|version| version.version().to_string()),
            hot: state.hot,
            cold: state.cold,
            hot_docs: current
                .as_ref()
                .map_or(0, |version| version.manifest.hot.docs),
            cold_docs: current
                .as_ref()
                .map_or(0, |version| version.manifest.cold.docs),
            error: state.error,
            hot_in_store: current
                .as_ref()
                .is_some_and(|version| version.hot_remote.is_some()),
            cold_memory_bytes: current
                .as_ref()
                .and_then(|version| version.cold())
                .and_then(|cold| cold.remote.as_ref())
                .map_or((0, 0), |remote| {
                    remote
                        .directory
                        .files()
                        .fold((0, 0), |(pinned, resident), file| {
                            let (p, r) = file.memory_bytes();
                            (pinned + p, resident + r)
                        })
                }),
        }
    }
}

/// The node's view of its storage, for status and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageStatus {
    pub breaker: BreakerState,
    pub replicas: usize,
    pub hedged_requests: u64,
}

/// The block cache's disk tier, under the data dir.
pub const DISK_CACHE_DIR: &str = ".block-cache";

pub struct Node {
    config: NodeConfig,
    stores: NodeStores,
    cache: Arc<BlockCache>,
    /// Served indexes (and, in a fleet, shards), by slot name.
    indexes: RwLock<BTreeMap<String, Arc<IndexSlot>>>,
    search_permits: Arc<Semaphore>,
    documents: cold::DocumentCache,
    changes: watch::Sender<u64>,
    metrics: metrics::NodeMetrics,
}

/// Directory of the cold files' kept footers and block tables.
const COLD_META_LOCAL: &str = "cold-meta";
/// How long a starting node with a local copy waits for storage before serving the copy.
const STARTUP_STORAGE_WAIT: Duration = Duration::from_millis(500);
/// Longest wait between two attempts at loading an index.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

impl Node {
    /// A node over `primary`, and `replica` when there is a second store with the same content.
    pub fn new(
        config: NodeConfig,
        primary: Arc<dyn BlobStore>,
        replica: Option<Arc<dyn BlobStore>>,
    ) -> Result<Arc<Node>, NodeError> {
        let mut indexes = BTreeMap::new();
        for name in &config.indexes {
            layout::check_index_name(name).map_err(NodeError::InvalidArgument)?;
            if config.fleet.is_none() {
                indexes.insert(name.clone(), Arc::new(IndexSlot::new(name.clone(), None)));
            }
        }
        let metrics = metrics::NodeMetrics::new();
        // Index names cannot start with a dot: this never meets an index's directory.
        let disk_dir = config.data_dir.join(DISK_CACHE_DIR);
        let disk = DiskCache::open(&disk_dir, config.disk_cache_size).map_err(|err| {
            NodeError::io(
                format!("opening the disk cache in {}", disk_dir.display()),
                err,
            )
        })?;
        Ok(Arc::new(Node {
            cache: BlockCache::with_disk(config.cache_size, disk),
            search_permits: Arc::new(Semaphore::new(config.search_concurrency)),
            documents: cold::DocumentCache::new(config.document_cache_size),
            changes: watch::channel(0).0,
            stores: stores::assemble(primary, replica, &config, &metrics.store_metrics()),
            metrics,
            config,
            indexes: RwLock::new(indexes),
        }))
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Exact figures: the cache's pending insertions and evictions are applied first (moka
    /// counts sizes lazily; a report right after a read could say 0 bytes used).
    pub async fn cache_status(&self) -> CacheStatus {
        self.cache.settle().await;
        self.cache.status()
    }

    /// The disk tier's figures, when there is one.
    pub fn disk_cache_status(&self) -> Option<DiskStatus> {
        self.cache.disk_status()
    }

    /// Waits until the disk tier has written every block given to it so far.
    pub async fn flush_disk_cache(&self) {
        self.cache.flush_disk().await;
    }

    /// Empties the memory tier of the block cache (benchmarks: searches with the cache warm on
    /// disk only).
    pub async fn clear_memory_cache(&self) {
        self.cache.clear_memory().await;
    }

    pub fn storage_status(&self) -> StorageStatus {
        StorageStatus {
            breaker: self.stores.breaker.state(),
            replicas: self.stores.bulk.len(),
            hedged_requests: self
                .stores
                .hedged
                .as_ref()
                .map_or(0, |hedged| hedged.hedged_requests()),
        }
    }

    /// Fires whenever the circuit breaker changes state.
    pub fn storage_changes(&self) -> watch::Receiver<BreakerState> {
        self.stores.breaker.subscribe()
    }

    /// Fires whenever an index's state changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn statuses(&self) -> Vec<IndexStatus> {
        self.slots().iter().map(|slot| slot.status()).collect()
    }

    fn slots(&self) -> Vec<Arc<IndexSlot>> {
        self.indexes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn slot(&self, index: &str) -> Result<Arc<IndexSlot>, NodeError> {
        self.indexes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(index)
            .cloned()
            .ok_or_else(|| NodeError::UnknownIndex(index.to_string()))
    }

    fn serves(&self, name: &str) -> bool {
        self.indexes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(name)
    }

    pub fn current_version(&self, index: &str) -> Result<Arc<LoadedVersion>, NodeError> {
        self.slot(index)?
            .current
            .load_full()
            .ok_or_else(|| NodeError::NotReady(index.to_string()))
    }

    pub async fn search(
        &self,
        index: &str,
        request: SearchRequest,
    ) -> Result<SearchResult, NodeError> {
        let outcome = self.search_version(index, request).await;
        self.record_search(index, &outcome);
        outcome
    }

    /// Counts a search of `index` in the metrics (a fleet's searches are counted by the member
    /// that answered the client).
    pub fn record_search(&self, index: &str, outcome: &Result<SearchResult, NodeError>) {
        // Label values stay bounded: an index the node does not serve is counted unnamed.
        let configured = self.config.indexes.iter().any(|served| served == index);
        let label = if configured || self.serves(index) {
            index
        } else {
            ""
        };
        self.metrics.record(label, outcome);
    }

    /// The node's metrics in the Prometheus text format, gauges refreshed from its state.
    pub async fn metrics_text(&self) -> String {
        let cache = self.cache_status().await;
        let storage = self.storage_status();
        self.metrics.scrape(
            &cache,
            self.cache.disk_status(),
            storage.breaker,
            storage.hedged_requests,
            &self.statuses(),
        )
    }

    async fn search_version(
        &self,
        index: &str,
        request: SearchRequest,
    ) -> Result<SearchResult, NodeError> {
        let version = self.current_version(index)?;
        search::search(version, request, &self.search_context()).await
    }

    fn search_context(&self) -> search::SearchContext<'_> {
        search::SearchContext {
            max_results: self.config.max_results,
            permits: &self.search_permits,
            documents: &self.documents,
            default_timeout: self.config.default_timeout,
            inline_postings: self.config.inline_postings,
            on_degraded: self.config.on_degraded,
            storage_allowed: self.stores.breaker.allows_requests(),
            cold_plan_strict: self.config.cold_plan_strict,
        }
    }

    /// The loaded version `version` of a served shard: its current one, or the one it kept.
    fn shard_version(&self, name: &str, version: &str) -> Result<Arc<LoadedVersion>, NodeError> {
        let slot = self.slot(name)?;
        let current = slot.current.load_full();
        let candidates = [current.clone(), slot.previous.load_full()];
        candidates
            .into_iter()
            .flatten()
            .find(|loaded| version.is_empty() || loaded.version() == version)
            .ok_or_else(|| match current {
                Some(current) => NodeError::Unavailable(format!(
                    "{name} serves version {}, not {version}",
                    current.version()
                )),
                None => NodeError::NotReady(name.to_string()),
            })
    }

    /// Ranks served shard `name` (`<index>/<shard>`) at `version` ("" for the current one) for
    /// a fan-out.
    pub async fn rank_shard(
        &self,
        name: &str,
        version: &str,
        request: SearchRequest,
    ) -> Result<shard_search::ShardPage, NodeError> {
        let names = [name.to_string()];
        self.rank_shards(&names, version, request)
            .await?
            .pop()
            .expect("one page per shard")
    }

    /// Ranks several served shards at `version` for one fan-out, on one thread (see
    /// `shard_search::rank_shards`); one outcome per name, in order.
    pub async fn rank_shards(
        &self,
        names: &[String],
        version: &str,
        request: SearchRequest,
    ) -> Result<Vec<Result<shard_search::ShardPage, NodeError>>, NodeError> {
        let mut outcomes: Vec<Option<Result<shard_search::ShardPage, NodeError>>> = Vec::new();
        let mut loaded = Vec::new();
        for name in names {
            match self.shard_version(name, version) {
                Ok(found) => {
                    loaded.push(found);
                    outcomes.push(None);
                }
                Err(err) => outcomes.push(Some(Err(err))),
            }
        }
        let mut ranked = shard_search::rank_shards(loaded, request, &self.search_context())
            .await?
            .into_iter();
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(|| ranked.next().expect("one page per shard")))
            .collect())
    }

    /// Reads documents of hits `rank_shard` returned, from the same version.
    pub async fn fetch_shard(
        &self,
        name: &str,
        version: &str,
        hits: Vec<(search::TierName, u64)>,
        fields: &[String],
        deadline: Option<Instant>,
    ) -> Result<shard_search::ShardDocuments, NodeError> {
        let loaded = self.shard_version(name, version)?;
        shard_search::fetch_shard(loaded, hits, fields, deadline, &self.search_context()).await
    }

    /// The version CURRENT names for `index`.
    pub async fn published_version(&self, index: &str) -> Result<String, NodeError> {
        Ok(published::read_current(self.stores.query.as_ref(), index).await?)
    }

    /// The manifest of `version` of `index` (a sharded version's top manifest).
    pub async fn published_manifest(
        &self,
        index: &str,
        version: &str,
    ) -> Result<Manifest, NodeError> {
        Ok(published::read_manifest(self.stores.query.as_ref(), index, version).await?)
    }

    /// The newest version of `index` with a shard kept in the data dir, and its shard count:
    /// what a fleet member whose storage is down at start-up can place and serve.
    pub async fn kept_shards(&self, index: &str) -> Option<(String, u32)> {
        let mut newest: Option<(String, u32)> = None;
        let mut shard_dirs = tokio::fs::read_dir(self.config.data_dir.join(index))
            .await
            .ok()?;
        while let Ok(Some(shard_dir)) = shard_dirs.next_entry().await {
            let Ok(mut versions) = tokio::fs::read_dir(shard_dir.path()).await else {
                continue;
            };
            while let Ok(Some(version_dir)) = versions.next_entry().await {
                let path = version_dir.path().join(layout::MANIFEST);
                let Ok(bytes) = tokio::fs::read(&path).await else {
                    continue;
                };
                let Ok(manifest) = Manifest::decode(&path.display().to_string(), &bytes) else {
                    continue;
                };
                let count = manifest.shard.as_ref().map_or(1, |shard| shard.count);
                if newest
                    .as_ref()
                    .is_none_or(|(version, _)| manifest.version > *version)
                {
                    newest = Some((manifest.version, count));
                }
            }
        }
        newest
    }

    /// The shards of `index` this node serves.
    pub fn served_shards(&self, index: &str) -> Vec<u32> {
        self.slots()
            .iter()
            .filter(|slot| slot.index == index)
            .filter_map(|slot| slot.shard)
            .collect()
    }

    /// Starts serving shard `shard` of `index` (a fleet placed it here): loads it, then follows
    /// CURRENT, in a task of its own.
    pub fn add_shard(self: &Arc<Self>, index: &str, shard: u32) {
        let slot = Arc::new(IndexSlot::new(index.to_string(), Some(shard)));
        {
            let mut indexes = self.indexes.write().unwrap_or_else(PoisonError::into_inner);
            if indexes.contains_key(&slot.name) {
                return;
            }
            indexes.insert(slot.name.clone(), slot.clone());
        }
        let node = self.clone();
        let span = info_span!("index", index = %slot.name);
        let served = slot.clone();
        let task = tokio::spawn(async move { node.serve_index(served).await }.instrument(span));
        *slot.task.lock().expect("not poisoned") = Some(task.abort_handle());
        // Stopped between being listed and its task being kept: stop the task now.
        if slot.stopped.load(AtomicOrdering::SeqCst) {
            slot.stop_task();
        }
        info!(shard = %slot.name, "serving a shard placed here");
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// Stops the loading tasks `add_shard` started: the node keeps answering from the versions
    /// it has loaded, but no longer follows CURRENT nor writes under its data dir for them. For
    /// a member shut down within a process that goes on (a binary simply exits); files are
    /// kept, so a member started on the same data dir finds them.
    pub fn stop_loading_shards(&self) {
        for slot in self.slots() {
            slot.stop_task();
        }
    }

    /// Stops serving shard `shard` of `index` (placed elsewhere now) and removes its files
    /// once no search holds it.
    pub fn remove_shard(&self, index: &str, shard: u32) {
        let name = format!("{index}/{shard}");
        let removed = self
            .indexes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&name);
        let Some(slot) = removed else {
            return;
        };
        slot.stop_task();
        for version in [slot.current.swap(None), slot.previous.swap(None)]
            .into_iter()
            .flatten()
        {
            self.retire(version);
        }
        info!(shard = %name, "stopped serving a shard placed elsewhere");
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// The counters a fleet member keeps of its fan-outs, in this node's registry.
    pub fn fleet_metrics(&self) -> metrics::FleetMetrics {
        self.metrics.fleet_metrics()
    }

    /// Looks for a new version of `index` now and waits until that check is done; returns the
    /// version serving afterwards.
    pub async fn reload(&self, index: &str, within: Duration) -> Result<String, NodeError> {
        let slot = self.slot(index)?;
        let mut checks = slot.checks.subscribe();
        let before = *checks.borrow_and_update();
        slot.check_now.notify_one();
        let finished = tokio::time::timeout(within, checks.wait_for(|count| *count > before)).await;
        if finished.is_err() {
            return Err(NodeError::DeadlineExceeded(format!(
                "index `{index}` did not finish checking in time"
            )));
        }
        Ok(self.current_version(index)?.version().to_string())
    }

    fn update(&self, slot: &IndexSlot, change: impl FnOnce(&mut SlotState)) {
        change(&mut slot.state.lock().expect("not poisoned"));
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// Serves every index: loads it (hot tier first, from storage or, when storage is down,
    /// from the data dir), then keeps looking for new versions. Runs until dropped.
    pub async fn run(self: &Arc<Self>) {
        let tasks = self.slots().into_iter().map(|slot| {
            let node = self.clone();
            let span = info_span!("index", index = %slot.name);
            async move { node.serve_index(slot).await }.instrument(span)
        });
        futures::future::join_all(tasks).await;
    }

    async fn serve_index(&self, slot: Arc<IndexSlot>) {
        let mut delay = Duration::from_millis(200);
        let mut last_error = String::new();
        // Until both tiers are up; the hot one serves as soon as it is open.
        loop {
            let attempt = match slot.current.load_full() {
                None => self.initial_load(&slot).await,
                // Served from the store while its hot tier downloaded, and the download failed.
                Some(version) if version.hot_remote.is_some() => {
                    self.load_version(&slot, version.manifest.clone(), true)
                        .await
                }
                Some(version) if version.cold().is_none() => self.load_cold(&slot, &version).await,
                Some(_) => break,
            };
            if let Err(err) = attempt {
                let message = err.to_string();
                if message != last_error {
                    warn!("loading failed, retrying: {message}");
                    last_error = message.clone();
                }
                self.update(&slot, |state| state.error = Some(message));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
        loop {
            let wait = async {
                match self.config.poll_interval {
                    Some(interval) => tokio::time::sleep(interval).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = slot.check_now.notified() => {}
            }
            if let Err(err) = self.check_for_new_version(&slot).await {
                debug!("looking for a new version failed: {err}");
            }
            // Counted under the watch's lock, so that a caller who saw the task stopped
            // (`Node::reload`) never sees a check of it finish.
            slot.checks.send_if_modified(|count| {
                if slot.stopped.load(AtomicOrdering::SeqCst) {
                    return false;
                }
                *count += 1;
                true
            });
        }
    }

    /// A version's copy in the data dir: `<data dir>/<index>[/<shard>]/<version>`.
    fn version_dir(&self, slot_name: &str, version: &str) -> PathBuf {
        self.config.data_dir.join(slot_name).join(version)
    }

    async fn served_manifest(
        &self,
        slot: &IndexSlot,
        top: Manifest,
    ) -> Result<Manifest, NodeError> {
        match slot.shard {
            None if top.shards.is_some() => Err(NodeError::InvalidArgument(format!(
                "version {} of index `{}` has {} shards: serve it with a fleet (--peers; \
                 docs/operations.md)",
                top.version,
                top.index,
                top.shard_count()
            ))),
            None => Ok(top),
            Some(shard) => {
                let count = top.shard_count();
                published::read_shard_manifest(self.stores.query.as_ref(), &top, shard)
                    .await?
                    .ok_or_else(|| {
                        NodeError::InvalidArgument(format!(
                            "version {} of index `{}` has {count} shards, no shard {shard}",
                            top.version, top.index
                        ))
                    })
            }
        }
    }

    fn rehydrate_options(&self) -> RehydrateOptions {
        RehydrateOptions {
            concurrency: self.config.rehydrate_concurrency,
            chunk_size: self.config.rehydrate_chunk_size,
        }
    }

    async fn initial_load(&self, slot: &Arc<IndexSlot>) -> Result<(), NodeError> {
        let read = published::read_current_manifest(self.stores.query.as_ref(), &slot.index);
        // With a local copy to fall back on, storage gets a short while to answer: a node
        // whose storage hangs serves its copy at once rather than after the request timeout.
        let outcome = if self.newest_local(slot).await.is_some() {
            match tokio::time::timeout(STARTUP_STORAGE_WAIT, read).await {
                Ok(outcome) => outcome,
                Err(_) => Err(PublishedError::Store(StoreError::new(
                    StoreErrorKind::Unavailable,
                    "get",
                    format!(
                        "{}/{}",
                        self.stores.query.uri(),
                        layout::current_key(&slot.index)
                    ),
                    format!(
                        "no answer within {} ms at start-up",
                        STARTUP_STORAGE_WAIT.as_millis()
                    ),
                ))),
            }
        } else {
            read.await
        };
        match outcome {
            Ok(top) => {
                let manifest = self.served_manifest(slot, top).await?;
                self.load_version(slot, manifest, true).await
            }
            Err(PublishedError::Store(err)) if err.kind() == StoreErrorKind::Unavailable => {
                match self.open_local(slot).await {
                    Some(Ok(())) => {
                        warn!("storage unreachable ({err}): serving the copy in the data dir");
                        // Look for the published version as soon as the tiers are up, not a
                        // poll interval later (nor never, without polling): storage may only
                        // have been slow, and the copy older than what is published.
                        slot.check_now.notify_one();
                        Ok(())
                    }
                    Some(Err(local)) => Err(NodeError::StorageUnavailable(format!(
                        "{err}; the local copy failed: {local}"
                    ))),
                    None => Err(err.into()),
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Loads a version from storage (reusing verified local files). The first version of an
    /// index serves as soon as its hot tier is open; a later one replaces the current version
    /// only once both its tiers are loaded.
    async fn load_version(
        &self,
        slot: &Arc<IndexSlot>,
        manifest: Manifest,
        first: bool,
    ) -> Result<(), NodeError> {
        let started = Instant::now();
        let local = self.version_dir(&slot.name, &manifest.version);
        tokio::fs::create_dir_all(&local)
            .await
            .map_err(|err| NodeError::io(format!("creating {}", local.display()), err))?;
        // From zero for each version loaded: what this version still needs.
        let progress = self.metrics.rehydration(&manifest.served_name());
        progress.total.set(0);
        progress.done.set(0);
        if first
            && self.config.cold_index == ColdIndexMode::Remote
            && hot_remote::servable(&manifest)
            && !hot_copy_present(&manifest, &local).await
        {
            return self
                .load_first_in_store(slot, &manifest, &local, &progress, started)
                .await;
        }
        // A remote cold index needs little of the store (its hotcache, block tables and
        // footers): it is opened while the hot tier downloads, not after. A local one would
        // compete with the hot tier for bandwidth, so it waits for the first version's hot
        // tier to serve; a later version loads both at once, since it serves only with both.
        let cold_ahead = !first || self.config.cold_index == ColdIndexMode::Remote;
        // The first version serves its hot tier as soon as it is open, whatever the cold tier
        // is still doing.
        let hot = async {
            let (version, hot) = self.load_hot(&manifest, &local, &progress).await?;
            if first {
                // The manifest goes last: a local copy with a manifest is complete as far as
                // it goes (the cold tier is verified file by file when reused).
                write_atomically(&local.join(layout::MANIFEST), &manifest.encode()).await?;
                slot.current.store(Some(version.clone()));
                self.update(slot, |state| state.hot = TierState::Ready);
                info!(
                    version = %version.version(),
                    seconds = started.elapsed().as_secs_f64(),
                    downloaded = hot.bytes_downloaded,
                    reused_files = hot.reused_files,
                    "hot tier serving"
                );
            }
            Ok::<_, NodeError>(version)
        };
        let (version, cold) = if cold_ahead {
            let (version, cold) = futures::join!(hot, self.prepare_cold(&manifest, &local));
            (version?, cold)
        } else {
            let version = hot.await?;
            (version, self.prepare_cold(&manifest, &local).await)
        };
        if first {
            self.attach_cold(slot, &version, cold?).await?;
            self.remove_other_versions(&slot.name, version.version())
                .await;
        } else {
            write_atomically(&local.join(layout::MANIFEST), &manifest.encode()).await?;
            let (opened, files) = cold?;
            open_cold_tier(&version, opened, files).await?;
            let old = slot.current.swap(Some(version.clone()));
            self.update(slot, |state| {
                state.hot = TierState::Ready;
                state.cold = TierState::Ready;
                state.error = None;
            });
            info!(version = %version.version(), "switched to the new version");
            if let Some(old) = old {
                // A shard keeps the version it replaces: the fleet switches once every shard
                // has switched, and searches it the while.
                let retired = match slot.shard {
                    Some(_) => slot.previous.swap(Some(old)),
                    None => Some(old),
                };
                if let Some(retired) = retired {
                    self.retire(retired);
                }
            }
        }
        Ok(())
    }

    /// The first version in remote mode: both tiers served from the store (`hot_remote`) while
    /// the hot tier downloads, then the version opened over the downloaded copy in its place.
    async fn load_first_in_store(
        &self,
        slot: &Arc<IndexSlot>,
        manifest: &Manifest,
        local: &Path,
        progress: &rehydrate::RehydrateProgress,
        started: Instant,
    ) -> Result<(), NodeError> {
        let serve = async {
            let hot = async {
                let sources = self.cold_index_sources(None);
                let version = hot_remote::open(&sources, manifest, local).await?;
                slot.current.store(Some(version.clone()));
                self.update(slot, |state| state.hot = TierState::Ready);
                info!(
                    version = %version.version(),
                    seconds = started.elapsed().as_secs_f64(),
                    "hot tier serving from the store while it downloads"
                );
                Ok::<_, NodeError>(version)
            };
            let (version, cold) = futures::join!(hot, self.prepare_cold(manifest, local));
            self.attach_cold(slot, &version?, cold?).await
        };
        // The download starts once both tiers serve: its bulk reads (and the CPU to check and
        // write them) would otherwise delay the few the serving needs.
        if let Err(err) = serve.await {
            warn!("serving from the store while the hot tier downloads failed: {err}");
        }
        let (version, hot) = self.load_hot(manifest, local, progress).await?;
        // What the cold tier keeps locally was fetched while serving from the store, unless
        // that failed.
        if let Err(err) = self.open_local_cold(&version, local).await {
            debug!("the cold tier's kept parts are not all local ({err}): fetching them");
            self.load_cold(slot, &version).await?;
        }
        write_atomically(&local.join(layout::MANIFEST), &manifest.encode()).await?;
        // The version searched in the store shares this data dir: dropped, not retired.
        slot.current.store(Some(version.clone()));
        self.update(slot, |state| {
            state.hot = TierState::Ready;
            state.cold = TierState::Ready;
            state.error = None;
        });
        info!(
            version = %version.version(),
            seconds = started.elapsed().as_secs_f64(),
            downloaded = hot.bytes_downloaded,
            reused_files = hot.reused_files,
            "hot tier downloaded: searched from the data dir"
        );
        self.remove_other_versions(&slot.name, version.version())
            .await;
        Ok(())
    }

    /// Downloads the hot tier (and a shard's statistics) and opens the version over it.
    async fn load_hot(
        &self,
        manifest: &Manifest,
        local: &Path,
        progress: &rehydrate::RehydrateProgress,
    ) -> Result<(Arc<LoadedVersion>, rehydrate::RehydrateReport), NodeError> {
        let hot = rehydrate(
            &self.stores.bulk,
            manifest,
            &manifest.tier_dir(HOT_DIR),
            &local.join(HOT_DIR),
            self.rehydrate_options(),
            Some(progress),
        )
        .await?;
        if let Some(shard) = &manifest.shard {
            let stats_dir = parent_dir(&shard.doc_freqs);
            rehydrate(
                &self.stores.bulk,
                manifest,
                stats_dir,
                &local.join(stats_dir),
                self.rehydrate_options(),
                None,
            )
            .await?;
        }
        let version = open_version(manifest.clone(), local.to_path_buf()).await?;
        Ok((version, hot))
    }

    async fn load_cold(
        &self,
        slot: &Arc<IndexSlot>,
        version: &Arc<LoadedVersion>,
    ) -> Result<(), NodeError> {
        let (opened, files) = self
            .prepare_cold(&version.manifest, &version.local_dir)
            .await?;
        self.attach_cold(slot, version, (opened, files)).await
    }

    /// Attaches a prepared cold tier to the serving `version`.
    async fn attach_cold(
        &self,
        slot: &Arc<IndexSlot>,
        version: &Arc<LoadedVersion>,
        (opened, files): (version::OpenedCold, Vec<cold::ColdFile>),
    ) -> Result<(), NodeError> {
        open_cold_tier(version, opened, files).await?;
        self.update(slot, |state| {
            state.cold = TierState::Ready;
            state.error = None;
        });
        info!(version = %version.version(), "cold tier serving");
        Ok(())
    }

    /// Opens the cold index (downloading it, or what opening it remotely needs) and reads the
    /// cold files' footers (keeping them), at once.
    async fn prepare_cold(
        &self,
        manifest: &Manifest,
        local: &Path,
    ) -> Result<(version::OpenedCold, Vec<cold::ColdFile>), NodeError> {
        let progress = self.metrics.rehydration(&manifest.served_name());
        let sources = self.cold_index_sources(Some(&progress));
        let (opened, files) = futures::join!(
            cold_index::open(&sources, manifest, local, true),
            self.open_cold_files(manifest, local, true)
        );
        Ok((opened?, files?))
    }

    fn cold_index_sources<'a>(
        &'a self,
        progress: Option<&'a rehydrate::RehydrateProgress>,
    ) -> cold_index::ColdIndexSources<'a> {
        cold_index::ColdIndexSources {
            mode: self.config.cold_index,
            cache: &self.cache,
            query: &self.stores.query,
            replica_reads: &self.stores.replica_reads,
            bulk: &self.stores.bulk,
            options: self.rehydrate_options(),
            progress,
        }
    }

    /// The version's cold parquet files, from the footers kept in the data dir by an earlier
    /// start (a restart reads none again), else — when `from_storage` — read from storage and
    /// kept.
    async fn open_cold_files(
        &self,
        manifest: &Manifest,
        local: &Path,
        from_storage: bool,
    ) -> Result<Vec<cold::ColdFile>, NodeError> {
        let stats = Arc::new(ReadStats::default());
        let keep = local.join(COLD_META_LOCAL);
        let opens = manifest.cold.parquet_files.iter().map(|parquet| {
            let entry = manifest
                .file(&parquet.path)
                .expect("validated manifest lists its cold files");
            let (stats, keep) = (&stats, &keep);
            async move {
                let kept = cold::ColdFile::open_local(
                    &self.cache,
                    &self.stores.query,
                    &self.stores.replica_reads,
                    manifest,
                    entry,
                    keep,
                )
                .await;
                match kept {
                    Err(err) if from_storage => {
                        debug!(file = %entry.path, "no usable kept footer ({err}): reading it");
                        cold::ColdFile::open(
                            &self.cache,
                            &self.stores.query,
                            &self.stores.replica_reads,
                            manifest,
                            entry,
                            stats,
                            keep,
                        )
                        .await
                    }
                    kept => kept,
                }
            }
        });
        futures::future::join_all(opens).await.into_iter().collect()
    }

    /// The newest complete local copy of the index, opened without storage: hot tier always,
    /// cold tier when its index and kept footers are there. `None` when there is no copy.
    /// The newest version kept in the data dir (one with its manifest: complete locally).
    async fn newest_local(&self, slot: &IndexSlot) -> Option<String> {
        let dir = self.config.data_dir.join(&slot.name);
        let mut entries = tokio::fs::read_dir(&dir).await.ok()?;
        let mut newest: Option<String> = None;
        while let Ok(Some(entry)) = entries.next_entry().await {
            let complete = tokio::fs::try_exists(entry.path().join(layout::MANIFEST))
                .await
                .unwrap_or(false);
            let name = entry.file_name().to_string_lossy().to_string();
            if complete && newest.as_ref().is_none_or(|newest| name > *newest) {
                newest = Some(name);
            }
        }
        newest
    }

    async fn open_local(&self, slot: &Arc<IndexSlot>) -> Option<Result<(), NodeError>> {
        let newest = self.newest_local(slot).await?;
        Some(self.open_local_version(slot, &newest).await)
    }

    async fn open_local_version(
        &self,
        slot: &Arc<IndexSlot>,
        version: &str,
    ) -> Result<(), NodeError> {
        let local = self.version_dir(&slot.name, version);
        let bytes = tokio::fs::read(local.join(layout::MANIFEST))
            .await
            .map_err(|err| NodeError::io("reading the kept manifest", err))?;
        let manifest =
            Manifest::decode(&local.join(layout::MANIFEST).display().to_string(), &bytes)
                .map_err(|err| NodeError::Corrupt(err.to_string()))?;
        check_kept(&local.join(HOT_DIR), manifest.hot_files(), "hot").await?;
        if let Some(shard) = &manifest.shard {
            let stats_dir = parent_dir(&shard.doc_freqs);
            check_kept(
                &local.join(stats_dir),
                manifest.files_in(stats_dir.to_string()),
                "statistics",
            )
            .await?;
        }
        let loaded = open_version(manifest, local.clone()).await?;
        slot.current.store(Some(loaded.clone()));
        self.update(slot, |state| state.hot = TierState::Ready);
        info!(version, "hot tier serving from the data dir");
        match self.open_local_cold(&loaded, &local).await {
            Ok(()) => {
                self.update(slot, |state| state.cold = TierState::Ready);
                info!(
                    version,
                    "cold tier open from the data dir; its documents need storage"
                );
            }
            Err(err) => {
                warn!(
                    version,
                    "cold tier not available locally, waiting for storage: {err}"
                )
            }
        }
        Ok(())
    }

    async fn open_local_cold(
        &self,
        version: &Arc<LoadedVersion>,
        local: &Path,
    ) -> Result<(), NodeError> {
        let manifest = &version.manifest;
        let opened =
            cold_index::open(&self.cold_index_sources(None), manifest, local, false).await?;
        let files = self.open_cold_files(manifest, local, false).await?;
        open_cold_tier(version, opened, files).await
    }

    async fn check_for_new_version(&self, slot: &Arc<IndexSlot>) -> Result<(), NodeError> {
        let current = slot.current.load_full();
        let version = published::read_current(self.stores.query.as_ref(), &slot.index).await?;
        if current
            .as_ref()
            .is_some_and(|current| current.version() == version)
        {
            return Ok(());
        }
        let top =
            published::read_manifest(self.stores.query.as_ref(), &slot.index, &version).await?;
        let manifest = self.served_manifest(slot, top).await?;
        info!(version = %manifest.version, "new version published: loading it");
        self.load_version(slot, manifest, current.is_none()).await
    }

    /// Removes a replaced version's files once no search holds it any more.
    fn retire(&self, old: Arc<LoadedVersion>) {
        let dir = old.local_dir.clone();
        tokio::spawn(async move {
            while Arc::strong_count(&old) > 1 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let version = old.version().to_string();
            drop(old);
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => info!(%version, "removed the replaced version's files"),
                Err(err) => warn!(%version, "could not remove {}: {err}", dir.display()),
            }
        });
    }

    /// Leftovers of earlier runs: any other version's directory.
    async fn remove_other_versions(&self, index: &str, keep: &str) {
        let dir = self.config.data_dir.join(index);
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let is_dir = entry
                .file_type()
                .await
                .is_ok_and(|file_type| file_type.is_dir());
            if entry.file_name() != keep
                && is_dir
                && let Err(err) = tokio::fs::remove_dir_all(entry.path()).await
            {
                warn!("could not remove {}: {err}", entry.path().display());
            }
        }
    }
}

/// The directory part of a path relative to a version (`stats` of `stats/doc_freqs.fst`).
fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// Opens the hot index and the version over it on the blocking pool: opening reads index
/// files and fast-field dictionaries (and a shard's document-frequency table).
async fn open_version(manifest: Manifest, local: PathBuf) -> Result<Arc<LoadedVersion>, NodeError> {
    tokio::task::spawn_blocking(move || {
        let doc_freqs = match &manifest.shard {
            Some(shard) => {
                let path = local.join(&shard.doc_freqs);
                let bytes = std::fs::read(&path)
                    .map_err(|err| NodeError::io(format!("reading {}", path.display()), err))?;
                let table = DocFreqTable::from_bytes(&path.display().to_string(), bytes)
                    .map_err(NodeError::Corrupt)?;
                Some(Arc::new(table))
            }
            None => None,
        };
        let hot = Tier::open(&local.join(HOT_DIR))?;
        Ok(Arc::new(LoadedVersion::new(
            manifest, hot, local, doc_freqs,
        )?))
    })
    .await
    .map_err(|err| NodeError::Internal(format!("open task: {err}")))?
}

/// Attaches the opened cold tier to `version`, on the blocking pool (a local tier's columns are
/// read).
async fn open_cold_tier(
    version: &Arc<LoadedVersion>,
    opened: version::OpenedCold,
    files: Vec<cold::ColdFile>,
) -> Result<(), NodeError> {
    let version = version.clone();
    tokio::task::spawn_blocking(move || version.set_cold(opened, files))
        .await
        .map_err(|err| NodeError::Internal(format!("open task: {err}")))?
}

/// Whether the data dir holds every file of the version's hot tier at its size (a restart):
/// then the hot tier opens from there, once verified, rather than from the store.
async fn hot_copy_present(manifest: &Manifest, local: &Path) -> bool {
    let dir = local.join(HOT_DIR);
    for (name, entry) in manifest.hot_files() {
        match tokio::fs::metadata(dir.join(name)).await {
            Ok(metadata) if metadata.len() == entry.size => {}
            _ => return false,
        }
    }
    true
}

/// Checks that `dir` holds `files` as the manifest lists them.
pub(super) async fn check_kept<'a>(
    dir: &Path,
    files: impl Iterator<Item = (&'a str, &'a FileEntry)>,
    what: &str,
) -> Result<(), NodeError> {
    for (name, entry) in files {
        if !rehydrate::local_file_matches(&dir.join(name), entry).await {
            return Err(NodeError::Corrupt(format!(
                "kept {what} file {name} does not match its checksum"
            )));
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file, creating the directory.
pub(super) async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let temp = path.with_extension("partial");
    let parent = path.parent().expect("kept files live in a directory");
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|err| NodeError::io(format!("creating {}", parent.display()), err))?;
    tokio::fs::write(&temp, bytes)
        .await
        .map_err(|err| NodeError::io(format!("writing {}", temp.display()), err))?;
    tokio::fs::rename(&temp, path)
        .await
        .map_err(|err| NodeError::io(format!("writing {}", path.display()), err))
}
