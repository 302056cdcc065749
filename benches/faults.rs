//! Figures for storage trouble, measured side by side in one run.
//!
//! ```text
//! ./tools/test.sh --no-run   # once: installs s3s-fs and the python venv under target/tools
//! cargo bench --bench faults -- [--repeats N]   # the 64 CACM queries N times (default 3)
//! ```
//!
//! Real S3-compatible servers (s3s-fs) on 127.0.0.1, the fault proxy in front of one, and nodes
//! in this process:
//! 1. Hedging: two replicas with the same CACM version; 100 ms added to 5% of the first
//!    replica's requests. Both-tier queries with no block or document cache, so that every
//!    query with a cold hit on its page reads storage, on a node hedging over both replicas vs a
//!    node reading the first replica alone.
//! 2. Rehydration (the node's default concurrency and chunk size) through 20 ms added to every
//!    request vs one single-stream GET per file of the same files through the same proxy, for
//!    CACM and for the PyPI catalog; then the same with a 1 MiB window per round trip (each
//!    connection moves at most 1 MiB per 20 ms, ~50 MiB/s, as a TCP connection over a 20 ms
//!    link would).
//! 3. Degraded answers (storage refused, circuit breaker open) vs normal answers: hot tier
//!    only, and both tiers with a warm cache.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fault_proxy::{FaultProxy, Faults};
use tierdex::node::Node;
use tierdex::store::BlobStore;

fn node_config(
    data: &std::path::Path,
    adjust: impl FnOnce(&mut tierdex::config::Settings),
) -> tierdex::config::NodeConfig {
    let mut settings = tierdex::config::Settings {
        store: Some("bench".into()),
        indexes: Some(vec!["cacm".into()]),
        data_dir: Some(data.to_path_buf()),
        cache_size: Some("0".into()),
        document_cache_size: Some("0".into()),
        poll_interval: Some("0s".into()),
        ..Default::default()
    };
    adjust(&mut settings);
    tierdex::config::NodeConfig::resolve(settings, "bench").unwrap()
}

async fn timed_searches(
    node: &Arc<Node>,
    queries: &[String],
    hot_only: bool,
) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::with_capacity(queries.len());
    let mut degraded = 0;
    for query in queries {
        let request = tierdex::node::search::SearchRequest {
            query: query.clone(),
            limit: 10,
            hot_only,
            ..Default::default()
        };
        let started = Instant::now();
        let result = node.search("cacm", request).await.unwrap();
        latencies.push(started.elapsed());
        degraded += usize::from(result.degraded.is_some());
    }
    (latencies, degraded)
}

fn main() {
    let mut repeats = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repeats" => {
                repeats = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .expect("--repeats needs a number")
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    default_bench_credentials();
    bench_runtime().block_on(run(repeats));
}

async fn run(repeats: usize) {
    let queries: Vec<String> = std::iter::repeat_n(cacm_query_texts(), repeats)
        .flatten()
        .collect();

    // 1. Hedging.
    let first = S3Server::start();
    let second = S3Server::start();
    let first_store = first.store("bench", "").await;
    let second_store = second.store("bench", "").await;
    build_cacm(first_store.clone(), "hot = [\"citations >= 1\"]", "cacm").await;
    replicate(first_store.as_ref(), second_store.as_ref()).await;
    let proxy = FaultProxy::start(first.address()).await.unwrap();
    let slow_first = s3_store_at(&proxy.url(), "bench", "").await;
    let data_hedged = tempfile::tempdir().unwrap();
    let data_single = tempfile::tempdir().unwrap();
    let hedged = Node::new(
        node_config(data_hedged.path(), |_| {}),
        slow_first.clone(),
        Some(second_store.clone()),
    )
    .unwrap();
    let single = Node::new(
        node_config(data_single.path(), |_| {}),
        slow_first.clone(),
        None,
    )
    .unwrap();
    run_until_ready(&hedged).await;
    run_until_ready(&single).await;
    proxy.set(Faults {
        latency: Some((Duration::from_millis(100), 0.05)),
        ..Faults::none()
    });
    // Alternate the two nodes query by query, so that both see the same conditions.
    let (mut with_hedging, mut without) = (Vec::new(), Vec::new());
    let mut storage_requests = [0, 0];
    for query in &queries {
        for (which, node, latencies) in
            [(0, &hedged, &mut with_hedging), (1, &single, &mut without)]
        {
            let request = tierdex::node::search::SearchRequest {
                query: query.clone(),
                limit: 10,
                ..Default::default()
            };
            let started = Instant::now();
            let result = node.search("cacm", request).await.unwrap();
            latencies.push(started.elapsed());
            assert!(result.degraded.is_none());
            storage_requests[which] += result.stats.storage_requests;
        }
    }
    println!("## Hedged reads: 100 ms added to 5% of the first replica's requests");
    println!();
    println!(
        "{} CACM queries (both tiers, no block or document cache): {} storage requests from the hedged node, {} from the other",
        queries.len(),
        storage_requests[0],
        storage_requests[1]
    );
    println!();
    println!("| | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!(
        "| first replica alone | {:.2} | {:.2} |",
        percentile_ms(&without, 0.5),
        percentile_ms(&without, 0.99)
    );
    println!(
        "| hedged over two replicas | {:.2} | {:.2} |",
        percentile_ms(&with_hedging, 0.5),
        percentile_ms(&with_hedging, 0.99)
    );
    println!(
        "| ratio hedged / alone | {:.2}x | {:.2}x |",
        percentile_ms(&with_hedging, 0.5) / percentile_ms(&without, 0.5),
        percentile_ms(&with_hedging, 0.99) / percentile_ms(&without, 0.99)
    );
    println!(
        "hedged requests: {}",
        hedged.storage_status().hedged_requests
    );
    println!();

    // 2. Rehydration through 20 ms per request.
    println!("## Rehydration through 20 ms added to every request");
    println!();
    let defaults = node_config(std::path::Path::new("unused"), |_| {});
    println!(
        "rehydration: {} concurrent range requests of {} MiB",
        defaults.rehydrate_concurrency,
        defaults.rehydrate_chunk_size >> 20
    );
    println!();
    println!("| link | index | files | MiB | single-stream GET s | rehydration s | ratio |");
    println!("|---|---|---|---|---|---|---|");
    build_pypi(first_store.clone()).await;
    let options = tierdex::node::rehydrate::RehydrateOptions {
        concurrency: defaults.rehydrate_concurrency,
        chunk_size: defaults.rehydrate_chunk_size,
    };
    let links = [
        ("20 ms per request", None),
        ("20 ms per request and per 1 MiB", Some(1u64 << 20)),
    ];
    for ((link, window), index) in links
        .into_iter()
        .flat_map(|link| ["cacm", "pypi"].map(|index| (link, index)))
    {
        proxy.set(Faults {
            latency: Some((Duration::from_millis(20), 1.0)),
            window_bytes: window,
            ..Faults::none()
        });
        let manifest = tierdex::published::read_current_manifest(first_store.as_ref(), index)
            .await
            .unwrap();
        let files = index_file_keys(&manifest);
        let bytes: u64 = files.iter().map(|(_, size)| size).sum();
        let started = Instant::now();
        for (key, _) in &files {
            std::hint::black_box(slow_first.get(key).await.unwrap());
        }
        let single_stream = started.elapsed();
        let data = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let stores: Vec<Arc<dyn BlobStore>> = vec![slow_first.clone()];
        let hot = tierdex::node::rehydrate::rehydrate(
            &stores,
            &manifest,
            "hot",
            &data.path().join("hot"),
            options,
            None,
        )
        .await
        .unwrap();
        let cold = tierdex::node::rehydrate::rehydrate(
            &stores,
            &manifest,
            "cold/index",
            &data.path().join("cold"),
            options,
            None,
        )
        .await
        .unwrap();
        let rehydration = started.elapsed();
        assert_eq!(hot.bytes_downloaded + cold.bytes_downloaded, bytes);
        println!(
            "| {link} | {index} | {} | {:.1} | {:.2} | {:.2} | {:.1}x |",
            files.len(),
            bytes as f64 / 1048576.0,
            single_stream.as_secs_f64(),
            rehydration.as_secs_f64(),
            single_stream.as_secs_f64() / rehydration.as_secs_f64()
        );
    }
    println!();

    // 3. Degraded answers vs normal hot answers.
    proxy.set(Faults::none());
    let data = tempfile::tempdir().unwrap();
    let node = Node::new(
        node_config(data.path(), |settings| {
            settings.cache_size = Some("64MiB".into());
        }),
        slow_first.clone(),
        None,
    )
    .unwrap();
    run_until_ready(&node).await;
    timed_searches(&node, &queries, false).await;
    let (hot, _) = timed_searches(&node, &queries, true).await;
    let (both, _) = timed_searches(&node, &queries, false).await;
    // A node without a block cache, so that its reads reach storage and open the breaker.
    let data_uncached = tempfile::tempdir().unwrap();
    let uncached = Node::new(
        node_config(data_uncached.path(), |settings| {
            settings.breaker_cool_down = Some("600s".into());
            settings.storage_timeout = Some("300ms".into());
        }),
        slow_first.clone(),
        None,
    )
    .unwrap();
    run_until_ready(&uncached).await;
    proxy.set(Faults {
        refuse: true,
        ..Faults::none()
    });
    timed_searches(&uncached, &queries[..20], false).await;
    assert_eq!(
        uncached.storage_status().breaker,
        tierdex::store::BreakerState::Open
    );
    let (degraded_latencies, degraded) = timed_searches(&uncached, &queries, false).await;
    println!("## Degraded answers (storage refused, breaker open) vs normal hot-tier answers");
    println!();
    println!("| {} CACM queries | p50 ms | p99 ms |", queries.len());
    println!("|---|---|---|");
    println!(
        "| hot tier only, storage up | {:.3} | {:.3} |",
        percentile_ms(&hot, 0.5),
        percentile_ms(&hot, 0.99)
    );
    println!(
        "| both tiers, storage up, warm cache | {:.3} | {:.3} |",
        percentile_ms(&both, 0.5),
        percentile_ms(&both, 0.99)
    );
    println!(
        "| both tiers, breaker open ({degraded} of {} degraded) | {:.3} | {:.3} |",
        queries.len(),
        percentile_ms(&degraded_latencies, 0.5),
        percentile_ms(&degraded_latencies, 0.99)
    );
    println!(
        "| ratio breaker open / hot tier only | {:.2}x | {:.2}x |",
        percentile_ms(&degraded_latencies, 0.5) / percentile_ms(&hot, 0.5),
        percentile_ms(&degraded_latencies, 0.99) / percentile_ms(&hot, 0.99)
    );
    println!(
        "| ratio breaker open / both tiers, storage up | {:.2}x | {:.2}x |",
        percentile_ms(&degraded_latencies, 0.5) / percentile_ms(&both, 0.5),
        percentile_ms(&degraded_latencies, 0.99) / percentile_ms(&both, 0.99)
    );
}
