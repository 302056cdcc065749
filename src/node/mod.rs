//! The query node: the indexes it serves, their loading (rehydrate hot, open it, then the cold
//! tier), and searches. Knows nothing of gRPC: the API layer maps `NodeError` kinds to status
//! codes and watches `subscribe()` for health.

pub mod cold;
pub mod collector;
pub mod documents;
pub mod rehydrate;
pub mod search;
pub mod stable;
pub mod version;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, error, info, info_span, warn};

use crate::cache::{BlockCache, CacheError, CacheStatus, ReadStats};
use crate::config::NodeConfig;
use crate::format::Manifest;
use crate::format::layout::{self, COLD_INDEX_DIR, HOT_DIR};
use crate::published::{self, PublishedError};
use crate::store::{BlobStore, StoreError};
use rehydrate::{RehydrateOptions, rehydrate};
use search::{SearchRequest, SearchResult};
use version::{ColdTier, LoadedVersion, Tier};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeErrorKind {
    /// A query that does not parse or names what the schema lacks.
    InvalidQuery,
    /// Any other bad request: limits, unknown fields to return.
    InvalidArgument,
    UnknownIndex,
    /// The index is not serving yet (its hot tier is still loading).
    NotReady,
    /// Object storage failed.
    Storage,
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
            NodeError::NotReady(_) => NodeErrorKind::NotReady,
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
}

#[derive(Debug, Clone)]
struct SlotState {
    hot: TierState,
    cold: TierState,
    error: Option<String>,
}

/// One served index: the version searches use, and how far its loading got.
pub struct IndexSlot {
    name: String,
    current: ArcSwapOption<LoadedVersion>,
    state: Mutex<SlotState>,
}

impl IndexSlot {
    fn new(name: String) -> IndexSlot {
        IndexSlot {
            name,
            current: ArcSwapOption::empty(),
            state: Mutex::new(SlotState {
                hot: TierState::Loading,
                cold: TierState::Loading,
                error: None,
            }),
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
        }
    }
}

/// Timings and counts of one index's start-up, for logs and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub hot: rehydrate::RehydrateReport,
    pub cold: rehydrate::RehydrateReport,
    pub hot_ready_after: Duration,
    pub cold_ready_after: Duration,
}

pub struct Node {
    config: NodeConfig,
    store: Arc<dyn BlobStore>,
    cache: Arc<BlockCache>,
    indexes: BTreeMap<String, Arc<IndexSlot>>,
    search_permits: Arc<Semaphore>,
    documents: cold::DocumentCache,
    changes: watch::Sender<u64>,
}

impl Node {
    pub fn new(config: NodeConfig, store: Arc<dyn BlobStore>) -> Result<Arc<Node>, NodeError> {
        let mut indexes = BTreeMap::new();
        for name in &config.indexes {
            layout::check_index_name(name).map_err(NodeError::InvalidArgument)?;
            indexes.insert(name.clone(), Arc::new(IndexSlot::new(name.clone())));
        }
        Ok(Arc::new(Node {
            cache: BlockCache::new(config.cache_size),
            search_permits: Arc::new(Semaphore::new(config.search_concurrency)),
            documents: cold::DocumentCache::new(config.document_cache_size),
            changes: watch::channel(0).0,
            config,
            store,
            indexes,
        }))
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn cache_status(&self) -> CacheStatus {
        self.cache.status()
    }

    /// Fires whenever an index's state changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn statuses(&self) -> Vec<IndexStatus> {
        self.indexes.values().map(|slot| slot.status()).collect()
    }

    fn slot(&self, index: &str) -> Result<&Arc<IndexSlot>, NodeError> {
        self.indexes
            .get(index)
            .ok_or_else(|| NodeError::UnknownIndex(index.to_string()))
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
        let version = self.current_version(index)?;
        let context = search::SearchContext {
            max_results: self.config.max_results,
            permits: &self.search_permits,
            documents: &self.documents,
        };
        search::search(version, request, &context).await
    }

    fn update(&self, slot: &IndexSlot, change: impl FnOnce(&mut SlotState)) {
        change(&mut slot.state.lock().expect("not poisoned"));
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// Loads every index in the background; returns when all have finished loading (or
    /// failed), which callers need not wait for.
    pub async fn load_all(self: &Arc<Self>) -> Vec<Result<LoadReport, String>> {
        let loads = self.indexes.values().map(|slot| {
            let node = self.clone();
            let slot = slot.clone();
            async move {
                let span = info_span!("load", index = %slot.name);
                let result = node.load(&slot).instrument(span).await;
                match &result {
                    Ok(_) => {}
                    Err(err) => {
                        error!(index = %slot.name, "loading failed: {err}");
                        let message = err.to_string();
                        node.update(&slot, |state| {
                            if state.hot == TierState::Loading {
                                state.hot = TierState::Failed;
                            }
                            if state.cold == TierState::Loading {
                                state.cold = TierState::Failed;
                            }
                            state.error = Some(message);
                        });
                    }
                }
                result.map_err(|err| err.to_string())
            }
        });
        futures::future::join_all(loads).await
    }

    fn version_dir(&self, manifest: &Manifest) -> PathBuf {
        self.config
            .data_dir
            .join(&manifest.index)
            .join(&manifest.version)
    }

    async fn load(&self, slot: &IndexSlot) -> Result<LoadReport, NodeError> {
        let started = Instant::now();
        let manifest = self.read_manifest_patiently(&slot.name).await?;
        let local = self.version_dir(&manifest);
        tokio::fs::create_dir_all(&local)
            .await
            .map_err(|err| NodeError::io(format!("creating {}", local.display()), err))?;
        tokio::fs::write(local.join(layout::MANIFEST), manifest.encode())
            .await
            .map_err(|err| NodeError::io("keeping the manifest in the data dir", err))?;
        let options = RehydrateOptions {
            concurrency: self.config.rehydrate_concurrency,
            chunk_size: self.config.rehydrate_chunk_size,
        };
        let mut report = LoadReport {
            hot: rehydrate(
                &self.store,
                &manifest,
                HOT_DIR,
                &local.join(HOT_DIR),
                options,
            )
            .await?,
            ..LoadReport::default()
        };
        let hot_dir = local.join(HOT_DIR);
        let hot = tokio::task::spawn_blocking(move || Tier::open(&hot_dir))
            .await
            .map_err(|err| NodeError::Internal(format!("open task: {err}")))??;
        let version = Arc::new(LoadedVersion::new(manifest.clone(), hot)?);
        slot.current.store(Some(version.clone()));
        report.hot_ready_after = started.elapsed();
        self.update(slot, |state| state.hot = TierState::Ready);
        info!(version = %manifest.version, seconds = report.hot_ready_after.as_secs_f64(), "hot tier serving");

        report.cold = rehydrate(
            &self.store,
            &manifest,
            COLD_INDEX_DIR,
            &local.join("cold-index"),
            options,
        )
        .await?;
        let cold_dir = local.join("cold-index");
        let cold_index = tokio::task::spawn_blocking(move || Tier::open(&cold_dir))
            .await
            .map_err(|err| NodeError::Internal(format!("open task: {err}")))??;
        let stats = Arc::new(ReadStats::default());
        let mut files = Vec::with_capacity(manifest.cold.parquet_files.len());
        let opens = manifest.cold.parquet_files.iter().map(|parquet| {
            let entry = manifest
                .file(&parquet.path)
                .expect("validated manifest lists its cold files");
            cold::ColdFile::open(&self.cache, &self.store, &manifest, entry, &stats)
        });
        for opened in futures::future::join_all(opens).await {
            files.push(opened?);
        }
        version.set_cold(ColdTier {
            tier: cold_index,
            files: Arc::new(files),
        })?;
        report.cold_ready_after = started.elapsed();
        self.update(slot, |state| state.cold = TierState::Ready);
        info!(
            version = %manifest.version,
            seconds = report.cold_ready_after.as_secs_f64(),
            "cold tier serving"
        );
        Ok(report)
    }

    /// Reads CURRENT and the manifest, retrying while storage is unreachable (the node keeps
    /// answering health checks, NOT_SERVING, meanwhile).
    async fn read_manifest_patiently(&self, index: &str) -> Result<Manifest, NodeError> {
        let mut delay = Duration::from_millis(200);
        loop {
            match published::read_current_manifest(self.store.as_ref(), index).await {
                Ok(manifest) => return Ok(manifest),
                Err(PublishedError::Store(err))
                    if err.kind() == crate::store::StoreErrorKind::Unavailable =>
                {
                    warn!(index, "storage unreachable, retrying in {delay:?}: {err}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
}
