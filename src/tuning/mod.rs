//! Choosing the hot tier from a query log: `replay` measures what a version's split does for a
//! log (the share of queries whose page holds no cold document, cold reads, which rule brought
//! the hot documents in) and `suggest` proposes rules for a budget, with a greedy upper bound
//! and a train/holdout split.
//!
//! Both work on a built version, loaded as the node loads it, and rank every distinct query of
//! a log once with the node's own ranking (`node::search::plan_page`): because both tiers are
//! scored with the statistics of the whole corpus and merged by (rank, id), a query's page
//! does not depend on the split, so a candidate hot set is scored without rebuilding anything.

pub mod corpus;
pub mod log;
pub mod pages;
pub mod plot;
pub mod replay;
pub mod suggest;

use std::path::Path;
use std::sync::Arc;

use crate::config::{ConfigError, NodeConfig, Settings};
use crate::node::version::LoadedVersion;
use crate::node::{Node, NodeError, TierState};
use crate::rules::RulesError;
use crate::store::BlobStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuningErrorKind {
    /// A query log cannot be read or holds no usable query.
    Log,
    /// The version cannot be loaded or searched.
    Node,
    /// Rules cannot be compiled or evaluated.
    Rules,
    /// The version's fast columns cannot be read.
    Corpus,
    /// A bad option (budget, profile).
    Argument,
    /// The plot cannot be drawn or written.
    Plot,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TuningError {
    pub kind: TuningErrorKind,
    pub message: String,
}

impl TuningError {
    pub fn kind(&self) -> TuningErrorKind {
        self.kind
    }

    fn new(kind: TuningErrorKind, message: impl Into<String>) -> TuningError {
        TuningError {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn log(message: impl Into<String>) -> TuningError {
        TuningError::new(TuningErrorKind::Log, message)
    }

    pub(crate) fn node(message: impl Into<String>) -> TuningError {
        TuningError::new(TuningErrorKind::Node, message)
    }

    pub(crate) fn corpus(message: impl Into<String>) -> TuningError {
        TuningError::new(TuningErrorKind::Corpus, message)
    }

    pub(crate) fn argument(message: impl Into<String>) -> TuningError {
        TuningError::new(TuningErrorKind::Argument, message)
    }
}

impl From<NodeError> for TuningError {
    fn from(err: NodeError) -> TuningError {
        TuningError::node(err.to_string())
    }
}

impl From<RulesError> for TuningError {
    fn from(err: RulesError) -> TuningError {
        TuningError::new(TuningErrorKind::Rules, err.to_string())
    }
}

impl From<ConfigError> for TuningError {
    fn from(err: ConfigError) -> TuningError {
        TuningError::argument(err.to_string())
    }
}

/// Loads the current version of `index` from `store` with both tiers, as a node does (the cold
/// index local), into
/// `data_dir` (a node's data dir is reused: verified files there are not downloaded again).
/// Fails at the first loading error rather than retrying as a serving node would.
pub async fn load_version(
    store: Arc<dyn BlobStore>,
    index: &str,
    data_dir: &Path,
) -> Result<Arc<LoadedVersion>, TuningError> {
    let settings = Settings {
        store: Some(store.uri().to_string()),
        indexes: Some(vec![index.to_string()]),
        data_dir: Some(data_dir.to_path_buf()),
        poll_interval: Some("0s".into()),
        // A log replay ranks every distinct query with both tiers, synchronously on all cores
        // (`plan_page`): the cold index downloaded once costs less than fetched per query.
        cold_index: Some("local".into()),
        ..Settings::default()
    };
    let config = NodeConfig::resolve(settings, "rules")?;
    let node_store = store.clone();
    let node = Node::new(config, store, None)?;
    let mut changes = node.subscribe();
    let loader = node.clone();
    let loading = tokio::spawn(async move { loader.run().await });
    let outcome = loop {
        let status = node
            .statuses()
            .into_iter()
            .next()
            .expect("one index configured");
        if status.cold == TierState::Ready {
            // A node may serve a kept copy before it has read CURRENT: measure the published
            // version, not an older one.
            let published = match crate::published::read_current(node_store.as_ref(), index).await {
                Ok(published) => published,
                Err(err) => {
                    break Err(TuningError::node(format!(
                        "reading CURRENT of `{index}`: {err}"
                    )));
                }
            };
            match node.current_version(index) {
                Ok(loaded) if loaded.version() == published => break Ok(loaded),
                Ok(_) => {}
                Err(err) => break Err(err.into()),
            }
        }
        if let Some(error) = status.error {
            break Err(TuningError::node(format!("loading `{index}`: {error}")));
        }
        if status.hot == TierState::Failed || status.cold == TierState::Failed {
            break Err(TuningError::node(format!("loading `{index}` failed")));
        }
        if changes.changed().await.is_err() {
            break Err(TuningError::node(format!("loading `{index}` stopped")));
        }
    };
    loading.abort();
    outcome
}

/// A weighted percentile: the smallest value such that at least `share` of the weight is at or
/// below it.
pub(crate) fn weighted_percentile(values: &mut [(f64, u64)], share: f64) -> f64 {
    values.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = values.iter().map(|(_, weight)| weight).sum();
    let wanted = share * total as f64;
    let mut seen = 0u64;
    for (value, weight) in values.iter() {
        seen += weight;
        if seen as f64 >= wanted {
            return *value;
        }
    }
    values.last().map_or(0.0, |(value, _)| *value)
}
