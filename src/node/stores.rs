//! The node's views of storage, stacked from the store wrappers:
//!
//! ```text
//! query reads:  [bandwidth, query priority] → circuit breaker → hedged(replica A, replica B) → metered → timeout
//! re-reads:     [bandwidth, query priority] → metered → timeout, one per replica (after a checksum mismatch)
//! bulk reads:   [bandwidth, bulk priority] → metered → timeout, one per replica (rehydration spreads over them)
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::config::NodeConfig;
use crate::store::{
    Bandwidth, BlobStore, BreakerSettings, CircuitBreaker, HedgedStore, LimitedStore, MeteredStore,
    Priority, StoreMetrics, TimeoutStore,
};

/// Bulk requests move megabytes: they get a longer limit than query reads.
const MIN_BULK_TIMEOUT: Duration = Duration::from_secs(60);

pub struct NodeStores {
    pub query: Arc<dyn BlobStore>,
    /// Each replica alone, at query priority: where a block that failed its checksum is read
    /// again.
    pub replica_reads: Vec<Arc<dyn BlobStore>>,
    pub bulk: Vec<Arc<dyn BlobStore>>,
    pub breaker: Arc<CircuitBreaker>,
    pub hedged: Option<Arc<HedgedStore>>,
}

pub fn assemble(
    primary: Arc<dyn BlobStore>,
    replica: Option<Arc<dyn BlobStore>>,
    config: &NodeConfig,
    metrics: &StoreMetrics,
) -> NodeStores {
    let replicas: Vec<(Arc<dyn BlobStore>, &'static str)> = std::iter::once((primary, "primary"))
        .chain(replica.map(|replica| (replica, "replica")))
        .collect();
    // Counted above the time limit: a request that times out is a failed request.
    let timed = |(store, name): &(Arc<dyn BlobStore>, &'static str), limit: Duration| {
        let limited: Arc<dyn BlobStore> = Arc::new(TimeoutStore::new(store.clone(), limit));
        Arc::new(MeteredStore::new(limited, name, metrics.clone())) as Arc<dyn BlobStore>
    };
    let query_replicas: Vec<Arc<dyn BlobStore>> = replicas
        .iter()
        .map(|store| timed(store, config.storage_timeout))
        .collect();
    let (reads, hedged): (Arc<dyn BlobStore>, Option<Arc<HedgedStore>>) =
        match query_replicas.as_slice() {
            [first, second] => {
                let hedged = Arc::new(HedgedStore::new(first.clone(), second.clone()));
                (hedged.clone(), Some(hedged))
            }
            _ => (query_replicas[0].clone(), None),
        };
    let breaker = CircuitBreaker::new(
        reads,
        BreakerSettings {
            failures_to_open: config.breaker_failures,
            cool_down: config.breaker_cool_down,
        },
    );
    let bandwidth = config.bandwidth_limit.map(Bandwidth::new);
    let limited = |store: Arc<dyn BlobStore>, priority: Priority| -> Arc<dyn BlobStore> {
        match &bandwidth {
            Some(bandwidth) => Arc::new(LimitedStore::new(store, bandwidth.clone(), priority)),
            None => store,
        }
    };
    let query = limited(breaker.clone(), Priority::Query);
    let replica_reads = query_replicas
        .iter()
        .map(|store| limited(store.clone(), Priority::Query))
        .collect();
    let bulk_timeout = config.storage_timeout.max(MIN_BULK_TIMEOUT);
    let bulk = replicas
        .iter()
        .map(|store| limited(timed(store, bulk_timeout), Priority::Bulk))
        .collect();
    NodeStores {
        query,
        replica_reads,
        bulk,
        breaker,
        hedged,
    }
}
