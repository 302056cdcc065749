//! The node's Prometheus metrics: one registry per node (tests run several nodes in one
//! process, so no global registry), updated where searches end and refreshed from the node's
//! status when scraped. Labels are bounded: index names from the configuration, phases,
//! outcomes from `NodeErrorKind`, tier states; never query text or ids.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::search::SearchResult;
use super::{NodeError, NodeErrorKind};
use crate::cache::{CacheStatus, DiskStatus};
use crate::store::{BreakerState, StoreMetrics};

/// Search phases timed, as `SearchStats` reports them.
const PHASES: [&str; 5] = [
    "parse",
    "search",
    "hot_documents",
    "cold_documents",
    "total",
];

/// Seconds: from 50 µs (a hot page) to 10 s (the default budget).
const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

pub struct NodeMetrics {
    registry: Registry,
    /// One scrape at a time: the mirrored counters are raised by the difference since the last
    /// scrape, which two scrapes at once would both add.
    scraping: std::sync::Mutex<()>,
    search_seconds: HistogramVec,
    searches: IntCounterVec,
    without_storage: IntCounterVec,
    cold_skipped: IntCounterVec,
    handed_off: IntCounterVec,
    rescored_hits: IntCounterVec,
    cold_index_rounds: IntCounterVec,
    cold_plan_misses: IntCounterVec,
    cold_from_memory: IntCounterVec,
    storage_requests: IntCounterVec,
    storage_bytes: IntCounterVec,
    cache_capacity: IntGauge,
    cache_used: IntGauge,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    cache_evictions: IntCounter,
    disk_capacity: IntGauge,
    disk_used: IntGauge,
    disk_hits: IntCounter,
    disk_misses: IntCounter,
    disk_evictions: IntCounter,
    disk_corrupt: IntCounter,
    cold_memory: IntGaugeVec,
    breaker_open: IntGaugeVec,
    hedged_requests: IntCounter,
    serving_version: GaugeVec,
    rehydration_total: IntGaugeVec,
    rehydration_done: IntGaugeVec,
    tier_ready: IntGaugeVec,
    hot_in_store: IntGaugeVec,
    fleet: FleetMetrics,
    /// Per index, the series every successful search updates, resolved once: resolving a
    /// labelled series hashes its labels under a lock, about 1.5% of a hot search's CPU when
    /// done for each of them on every search (profiled behind gRPC, docs/benchmarks.md).
    series: RwLock<HashMap<String, Arc<SearchSeries>>>,
}

/// One index's series of successful searches.
struct SearchSeries {
    /// In `PHASES` order.
    phases: [Histogram; 5],
    ok: IntCounter,
    degraded: IntCounter,
    partial: IntCounter,
    without_storage: IntCounter,
    cold_skipped: IntCounter,
    handed_off: IntCounter,
    rescored_hits: IntCounter,
    cold_index_rounds: IntCounter,
    cold_plan_misses: IntCounter,
    cold_from_memory: IntCounter,
    storage_requests: IntCounter,
    storage_bytes: IntCounter,
}

impl SearchSeries {
    fn record(&self, result: &SearchResult) {
        let stats = &result.stats;
        let phases = [
            stats.parse_ms,
            stats.search_ms,
            stats.hot_fetch_ms,
            stats.cold_fetch_ms,
            stats.total_ms,
        ];
        for (histogram, ms) in self.phases.iter().zip(phases) {
            histogram.observe(ms / 1000.0);
        }
        let outcome = if !result.missing_shards.is_empty() {
            &self.partial
        } else if result.degraded.is_some() {
            &self.degraded
        } else {
            &self.ok
        };
        outcome.inc();
        if result.degraded.is_none() && stats.storage_requests == 0 {
            self.without_storage.inc();
        }
        if result.cold_skipped {
            self.cold_skipped.inc();
        }
        if stats.handed_off {
            self.handed_off.inc();
        }
        self.rescored_hits.inc_by(stats.rescored_hits);
        self.cold_index_rounds
            .inc_by(u64::from(stats.cold_index_rounds));
        self.cold_plan_misses.inc_by(stats.cold_plan_misses);
        self.cold_from_memory
            .inc_by(u64::from(stats.cold_from_memory));
        self.storage_requests.inc_by(stats.storage_requests);
        self.storage_bytes.inc_by(stats.storage_bytes);
    }
}

/// What a fleet member counts of its fan-outs (zero on a node outside a fleet).
#[derive(Clone)]
pub struct FleetMetrics {
    /// `operation` = rank | fetch, `outcome` = ok | failed | hedged.
    pub replica_requests: IntCounterVec,
}

fn outcome(err: &NodeError) -> &'static str {
    match err.kind() {
        NodeErrorKind::InvalidQuery => "invalid_query",
        NodeErrorKind::InvalidArgument => "invalid_argument",
        NodeErrorKind::UnknownIndex => "unknown_index",
        NodeErrorKind::NotReady => "not_ready",
        NodeErrorKind::Storage => "storage_unavailable",
        NodeErrorKind::DeadlineExceeded => "deadline_exceeded",
        NodeErrorKind::Corrupt => "corrupt",
        NodeErrorKind::Internal => "internal",
    }
}

impl NodeMetrics {
    pub fn new() -> NodeMetrics {
        let registry = Registry::new();
        let by_index = |name: &str, help: &str| {
            let counter = IntCounterVec::new(Opts::new(name, help), &["index"]).expect("valid");
            registry
                .register(Box::new(counter.clone()))
                .expect("registered once");
            counter
        };
        let mirrored = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("valid");
            registry
                .register(Box::new(counter.clone()))
                .expect("registered once");
            counter
        };
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("valid");
            registry
                .register(Box::new(gauge.clone()))
                .expect("registered once");
            gauge
        };
        let search_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tierdex_search_duration_seconds",
                "Search time by phase (server-side); total covers every search that answered",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["index", "phase"],
        )
        .expect("valid");
        registry
            .register(Box::new(search_seconds.clone()))
            .expect("registered once");
        let searches = IntCounterVec::new(
            Opts::new(
                "tierdex_searches_total",
                "Searches by outcome: ok, degraded (hot results only), or the error",
            ),
            &["index", "outcome"],
        )
        .expect("valid");
        registry
            .register(Box::new(searches.clone()))
            .expect("registered once");
        let storage_requests = by_index(
            "tierdex_search_storage_requests_total",
            "Storage range requests sent for search pages (cache misses)",
        );
        let storage_bytes = by_index(
            "tierdex_search_storage_bytes_total",
            "Bytes read from storage for search pages",
        );
        let breaker_open = IntGaugeVec::new(
            Opts::new(
                "tierdex_storage_breaker_state",
                "The storage circuit breaker: 1 for the state it is in",
            ),
            &["state"],
        )
        .expect("valid");
        registry
            .register(Box::new(breaker_open.clone()))
            .expect("registered once");
        let serving_version = GaugeVec::new(
            Opts::new(
                "tierdex_serving_version_info",
                "The version each index serves (value 1)",
            ),
            &["index", "version"],
        )
        .expect("valid");
        registry
            .register(Box::new(serving_version.clone()))
            .expect("registered once");
        let tier_ready = IntGaugeVec::new(
            Opts::new(
                "tierdex_tier_ready",
                "1 when an index's tier is loaded and searched",
            ),
            &["index", "tier"],
        )
        .expect("valid");
        registry
            .register(Box::new(tier_ready.clone()))
            .expect("registered once");
        let hot_in_store = IntGaugeVec::new(
            Opts::new(
                "tierdex_hot_tier_in_store",
                "1 while an index's hot tier is searched in the store as it downloads (it \
                 cannot serve without storage until this is 0)",
            ),
            &["index"],
        )
        .expect("valid");
        registry
            .register(Box::new(hot_in_store.clone()))
            .expect("registered once");
        let index_gauge = |name: &str, help: &str| {
            let gauge = IntGaugeVec::new(Opts::new(name, help), &["index"]).expect("valid");
            registry
                .register(Box::new(gauge.clone()))
                .expect("registered once");
            gauge
        };
        let rehydration_total = index_gauge(
            "tierdex_rehydration_total_bytes",
            "Bytes the version being loaded must download (files already verified locally \
             are not counted)",
        );
        let rehydration_done = index_gauge(
            "tierdex_rehydration_done_bytes",
            "Bytes of the version being loaded downloaded and written so far",
        );
        let build_info = GaugeVec::new(
            Opts::new("tierdex_build_info", "The tierdex build (value 1)"),
            &["version"],
        )
        .expect("valid");
        registry
            .register(Box::new(build_info.clone()))
            .expect("registered once");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        let cold_memory = IntGaugeVec::new(
            Opts::new(
                "tierdex_cold_index_memory_bytes",
                "Bytes of remote cold indexes held in memory for good: `pinned` (the hotcache) \
                 and `resident` (field norms, fast columns and term dictionary blocks, kept once read)",
            ),
            &["index", "kind"],
        )
        .expect("valid");
        registry
            .register(Box::new(cold_memory.clone()))
            .expect("registered once");
        let replica_requests = IntCounterVec::new(
            Opts::new(
                "tierdex_fleet_replica_requests_total",
                "Requests a fan-out sent to shard replicas (this member's own included): ok, \
                 failed (the next replica was asked), or hedged (a second replica asked beside \
                 a slow one)",
            ),
            &["operation", "outcome"],
        )
        .expect("valid");
        registry
            .register(Box::new(replica_requests.clone()))
            .expect("registered once");
        NodeMetrics {
            search_seconds,
            searches,
            without_storage: by_index(
                "tierdex_searches_without_storage_total",
                "Searches answered without reading storage: no cold document on the page, or all \
                 of them cached (the live hit rate over tierdex_searches_total)",
            ),
            cold_skipped: by_index(
                "tierdex_cold_searches_skipped_total",
                "Searches whose cold tier was not searched: no cold document could reach the page",
            ),
            handed_off: by_index(
                "tierdex_searches_handed_off_total",
                "Searches whose ranking could read more than inline_postings postings (10 times \
                 that for a BM25 ranking of the top hits) and first handed the runtime worker's \
                 other tasks to another thread; the others ranked on the worker that received \
                 them",
            ),
            rescored_hits: by_index(
                "tierdex_hits_rescored_exactly_total",
                "Hits whose BM25 score was summed again exactly because it was within float \
                 rounding of another hit's, so that equal scores tie by id in every tier and shard",
            ),
            cold_index_rounds: by_index(
                "tierdex_cold_index_rounds_total",
                "Rounds of remote cold index reads sent to storage (a search makes at most two: \
                 dictionary blocks and bounds, then postings, norms and columns)",
            ),
            cold_plan_misses: by_index(
                "tierdex_cold_plan_misses_total",
                "Remote cold index reads a search's plan missed; each such search ranked its cold \
                 tier again on the blocking pool (0 when plans are complete)",
            ),
            cold_from_memory: by_index(
                "tierdex_cold_searches_from_memory_total",
                "Searches whose remote cold tier was ranked (or skipped) straight over the block \
                 cache's memory, with no warm-up and no storage round",
            ),
            storage_requests,
            storage_bytes,
            disk_capacity: gauge(
                "tierdex_disk_cache_capacity_bytes",
                "Capacity of the block cache's disk tier (0: off)",
            ),
            disk_used: gauge(
                "tierdex_disk_cache_used_bytes",
                "Bytes of verified blocks kept on disk",
            ),
            disk_hits: mirrored(
                "tierdex_disk_cache_hits_total",
                "Blocks missing from memory found on disk (verified)",
            ),
            disk_misses: mirrored(
                "tierdex_disk_cache_misses_total",
                "Blocks missing from memory not found on disk either",
            ),
            disk_evictions: mirrored(
                "tierdex_disk_cache_evictions_total",
                "Blocks removed from disk to make room",
            ),
            disk_corrupt: mirrored(
                "tierdex_disk_cache_corrupt_total",
                "Blocks read back from disk that failed their checksum (removed, fetched again)",
            ),
            cold_memory: cold_memory.clone(),
            cache_capacity: gauge(
                "tierdex_block_cache_capacity_bytes",
                "Capacity of the block cache for cold reads",
            ),
            cache_used: gauge(
                "tierdex_block_cache_used_bytes",
                "Bytes held by the block cache",
            ),
            cache_hits: mirrored(
                "tierdex_block_cache_hits_total",
                "Block cache hits (blocks of cold reads found in memory)",
            ),
            cache_misses: mirrored(
                "tierdex_block_cache_misses_total",
                "Block cache misses (blocks fetched from storage)",
            ),
            cache_evictions: mirrored(
                "tierdex_block_cache_evictions_total",
                "Blocks evicted from the block cache to make room",
            ),
            breaker_open,
            hedged_requests: mirrored(
                "tierdex_storage_hedged_requests_total",
                "Reads also sent to the second replica because the first was slow",
            ),
            serving_version,
            rehydration_total,
            rehydration_done,
            tier_ready,
            hot_in_store,
            fleet: FleetMetrics { replica_requests },
            series: RwLock::default(),
            registry,
            scraping: std::sync::Mutex::new(()),
        }
    }

    /// The rehydration gauges of an index (a configured name).
    pub fn rehydration(&self, index: &str) -> super::rehydrate::RehydrateProgress {
        super::rehydrate::RehydrateProgress {
            total: self.rehydration_total.with_label_values(&[index]),
            done: self.rehydration_done.with_label_values(&[index]),
        }
    }

    /// A fleet's counters, in this registry.
    pub fn fleet_metrics(&self) -> FleetMetrics {
        self.fleet.clone()
    }

    /// Counters for the node's stores, in this registry.
    pub fn store_metrics(&self) -> StoreMetrics {
        StoreMetrics::new(&self.registry).expect("store metrics registered once per node")
    }

    /// Records one search's outcome. `index` must be a configured index name (bounded).
    pub fn record(&self, index: &str, outcome_of: &Result<SearchResult, NodeError>) {
        match outcome_of {
            Ok(result) => self.series(index).record(result),
            Err(err) => {
                self.searches
                    .with_label_values(&[index, outcome(err)])
                    .inc();
            }
        }
    }

    /// `index`'s series of successful searches, resolved on its first search.
    fn series(&self, index: &str) -> Arc<SearchSeries> {
        if let Some(series) = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(index)
        {
            return series.clone();
        }
        let series = Arc::new(SearchSeries {
            phases: PHASES.map(|phase| self.search_seconds.with_label_values(&[index, phase])),
            ok: self.searches.with_label_values(&[index, "ok"]),
            degraded: self.searches.with_label_values(&[index, "degraded"]),
            partial: self.searches.with_label_values(&[index, "partial"]),
            without_storage: self.without_storage.with_label_values(&[index]),
            cold_skipped: self.cold_skipped.with_label_values(&[index]),
            handed_off: self.handed_off.with_label_values(&[index]),
            rescored_hits: self.rescored_hits.with_label_values(&[index]),
            cold_index_rounds: self.cold_index_rounds.with_label_values(&[index]),
            cold_plan_misses: self.cold_plan_misses.with_label_values(&[index]),
            cold_from_memory: self.cold_from_memory.with_label_values(&[index]),
            storage_requests: self.storage_requests.with_label_values(&[index]),
            storage_bytes: self.storage_bytes.with_label_values(&[index]),
        });
        self.series
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(index.to_string())
            .or_insert(series)
            .clone()
    }

    /// The registry in the Prometheus text format, with the figures read from the node's state
    /// set first.
    pub fn scrape(
        &self,
        cache: &CacheStatus,
        disk: Option<DiskStatus>,
        breaker: BreakerState,
        hedged_requests: u64,
        indexes: &[super::IndexStatus],
    ) -> String {
        let _one_at_a_time = self
            .scraping
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.refresh(cache, breaker, hedged_requests, indexes);
        let disk = disk.unwrap_or_default();
        self.disk_capacity.set(disk.capacity_bytes as i64);
        self.disk_used.set(disk.used_bytes as i64);
        let mirror = |counter: &IntCounter, value: u64| {
            counter.inc_by(value.saturating_sub(counter.get()));
        };
        mirror(&self.disk_hits, disk.hits);
        mirror(&self.disk_misses, disk.misses);
        mirror(&self.disk_evictions, disk.evictions);
        mirror(&self.disk_corrupt, disk.corrupt);
        self.encode()
    }

    fn refresh(
        &self,
        cache: &CacheStatus,
        breaker: BreakerState,
        hedged_requests: u64,
        indexes: &[super::IndexStatus],
    ) {
        self.cache_capacity.set(cache.capacity_bytes as i64);
        self.cache_used.set(cache.used_bytes as i64);
        // Counters kept by the cache and the hedged store, mirrored: they only grow.
        let mirror = |counter: &IntCounter, value: u64| {
            counter.inc_by(value.saturating_sub(counter.get()));
        };
        mirror(&self.cache_hits, cache.hits);
        mirror(&self.cache_misses, cache.misses);
        mirror(&self.cache_evictions, cache.evictions);
        for (state, name) in [
            (BreakerState::Closed, "closed"),
            (BreakerState::Open, "open"),
            (BreakerState::HalfOpen, "half_open"),
        ] {
            self.breaker_open
                .with_label_values(&[name])
                .set(i64::from(breaker == state));
        }
        mirror(&self.hedged_requests, hedged_requests);
        // Only the versions serving now: an index's old version leaves the series.
        self.serving_version.reset();
        for status in indexes {
            if let Some(version) = &status.version {
                self.serving_version
                    .with_label_values(&[status.name.as_str(), version.as_str()])
                    .set(1.0);
            }
            let (pinned, resident) = status.cold_memory_bytes;
            for (kind, bytes) in [("pinned", pinned), ("resident", resident)] {
                self.cold_memory
                    .with_label_values(&[status.name.as_str(), kind])
                    .set(bytes as i64);
            }
            self.hot_in_store
                .with_label_values(&[status.name.as_str()])
                .set(i64::from(status.hot_in_store));
            for (tier, state) in [("hot", status.hot), ("cold", status.cold)] {
                self.tier_ready
                    .with_label_values(&[status.name.as_str(), tier])
                    .set(i64::from(state == super::TierState::Ready));
            }
        }
    }

    fn encode(&self) -> String {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("text encoding into memory");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

impl Default for NodeMetrics {
    fn default() -> NodeMetrics {
        NodeMetrics::new()
    }
}
