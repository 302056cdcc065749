//! The cold index searched in the store (`cold_index = remote`) against the cold index
//! downloaded (`cold_index = local`), side by side in one run.
//!
//! ```text
//! ./tools/test.sh --no-run   # once: installs s3s-fs under target/tools
//! cargo bench --bench cold_remote -- [--queries N]   # N TB05 web queries (default 500)
//! cargo bench --bench cold_remote -- --startup-only   # step 1 only
//! ```
//!
//! The PyPI catalog (`benches/pypi`) built into s3s-fs on 127.0.0.1, read directly and through
//! the fault proxy adding 20 ms to every request; the nodes run in this process on two
//! workers. For each link, a remote-mode and a local-mode node over the same store, queries
//! alternating between them:
//! 1. time from an empty data dir to serving both tiers (in remote mode the hot tier is searched
//!    in the store until its download is done) and to the hot tier in the data dir, and the
//!    data dir's bytes (no disk tier) against the hot index and 10% of the cold index;
//! 2. both-tier searches with the block cache warm in memory (every query run once before);
//! 3. with the cache warm on disk only (the memory cache emptied before each query);
//! 4. on an empty cache (emptied before each query), next to the limit: the rounds the remote
//!    search made times one measured store round trip, plus the local-mode search's time.
//!
//! Document caches are off, so every page decodes its cold documents from cached blocks.
//!
//! `--profile-seconds S [--profile-mode remote|local]` (for a profiler such as `perf record
//! -p`): only loops warm both-tier searches on one node for S seconds, directly (no proxy),
//! after printing `profiling`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fault_proxy::{FaultProxy, Faults};
use tierdex::node::Node;
use tierdex::node::collector::TierName;
use tierdex::node::search::SearchRequest;
use tierdex::store::BlobStore;

const INDEX: &str = "pypi";

fn node_config(data: &Path, mode: &str, disk_cache: &str) -> tierdex::config::NodeConfig {
    let settings = tierdex::config::Settings {
        store: Some("bench".into()),
        indexes: Some(vec![INDEX.into()]),
        data_dir: Some(data.to_path_buf()),
        cache_size: Some("2GiB".into()),
        disk_cache_size: Some(disk_cache.into()),
        document_cache_size: Some("0".into()),
        poll_interval: Some("0s".into()),
        cold_index: Some(mode.into()),
        ..Default::default()
    };
    tierdex::config::NodeConfig::resolve(settings, "bench").unwrap()
}

/// Start-ups measured per mode and link (the median is reported).
const STARTUPS: usize = 3;

/// A node started on an empty data dir; how long it took to serve both tiers, and until its hot
/// tier was in the data dir (in remote mode it is searched in the store until then); returned
/// once both are done.
async fn start_node(
    store: &Arc<dyn BlobStore>,
    data: &Path,
    mode: &str,
    disk_cache: &str,
) -> (Arc<Node>, Duration, Duration) {
    let node = Node::new(node_config(data, mode, disk_cache), store.clone(), None).unwrap();
    let started = Instant::now();
    let runner = node.clone();
    tokio::spawn(async move { runner.run().await });
    wait_node_serving(&node).await;
    let served = started.elapsed();
    while node.statuses().iter().any(|status| status.hot_in_store) {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "hot tier downloaded"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (node, served, started.elapsed())
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    index_rounds: Vec<u32>,
    cold_searched: usize,
    cold_pages: usize,
    plan_misses: u64,
    disk_hits: u64,
}

async fn search(node: &Node, query: &str, samples: &mut Samples) {
    let request = SearchRequest {
        query: query.to_string(),
        limit: 10,
        ..Default::default()
    };
    let started = Instant::now();
    let result = node.search(INDEX, request).await.unwrap();
    samples.latencies.push(started.elapsed());
    assert!(result.degraded.is_none(), "{query}: {:?}", result.degraded);
    samples.index_rounds.push(result.stats.cold_index_rounds);
    samples.cold_searched += usize::from(!result.cold_skipped);
    samples.cold_pages += usize::from(result.hits.iter().any(|hit| hit.tier == TierName::Cold));
    samples.plan_misses += result.stats.cold_plan_misses;
    samples.disk_hits += result.stats.disk_cache_hits;
}

/// Each query on both nodes, one after the other; `before` runs before every search.
async fn alternate(
    remote: &Node,
    local: &Node,
    queries: &[String],
    empty_memory: bool,
) -> (Samples, Samples) {
    let (mut on_remote, mut on_local) = (Samples::default(), Samples::default());
    for query in queries {
        if empty_memory {
            remote.clear_memory_cache().await;
            local.clear_memory_cache().await;
        }
        search(remote, query, &mut on_remote).await;
        search(local, query, &mut on_local).await;
    }
    (on_remote, on_local)
}

/// The median of `count` reads of one block-sized range of a small object: one round trip.
async fn round_trip(store: &Arc<dyn BlobStore>, key: &str, count: usize) -> Duration {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        std::hint::black_box(store.get_range(key, 0..4096).await.unwrap());
        samples.push(started.elapsed());
    }
    samples.sort();
    samples[count / 2]
}

fn row(label: &str, remote: &Samples, local: &Samples) {
    let (r50, r99) = (
        percentile_ms(&remote.latencies, 0.5),
        percentile_ms(&remote.latencies, 0.99),
    );
    let (l50, l99) = (
        percentile_ms(&local.latencies, 0.5),
        percentile_ms(&local.latencies, 0.99),
    );
    println!(
        "| {label} | {r50:.3} | {r99:.3} | {l50:.3} | {l99:.3} | {:.2}x | {:.2}x |",
        r50 / l50,
        r99 / l99
    );
}

fn main() {
    let mut queries = 500usize;
    let mut profile_seconds = 0u64;
    let mut profile_mode = "remote".to_string();
    let mut startup_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--queries" => {
                queries = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .expect("--queries needs a number")
            }
            "--profile-seconds" => {
                profile_seconds = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .expect("--profile-seconds needs a number")
            }
            "--profile-mode" => profile_mode = args.next().expect("--profile-mode remote|local"),
            "--startup-only" => startup_only = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    default_bench_credentials();
    bench_runtime().block_on(run(queries, profile_seconds, &profile_mode, startup_only));
}

async fn run(query_count: usize, profile_seconds: u64, profile_mode: &str, startup_only: bool) {
    let queries = web_queries(query_count);
    let server = S3Server::start();
    let direct_store = server.store("bench", "").await;
    let built = Instant::now();
    let summary = build_pypi(direct_store.clone()).await;
    let manifest = summary.manifest;
    eprintln!("built PyPI in {:.0} s", built.elapsed().as_secs_f64());
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    let proxied: Arc<dyn BlobStore> = s3_store_at(&proxy.url(), "bench", "").await;
    let direct: Arc<dyn BlobStore> = direct_store;
    if profile_seconds > 0 {
        let data = tempfile::tempdir().unwrap();
        let (node, _, _) = start_node(&direct, data.path(), profile_mode, "0").await;
        let mut samples = Samples::default();
        for query in &queries {
            search(&node, query, &mut samples).await;
        }
        println!("profiling: warm both-tier searches, cold index {profile_mode}");
        let until = Instant::now() + Duration::from_secs(profile_seconds);
        while Instant::now() < until {
            let mut samples = Samples::default();
            for query in &queries {
                search(&node, query, &mut samples).await;
            }
            println!(
                "{profile_mode}: p50 {:.3} ms",
                percentile_ms(&samples.latencies, 0.5)
            );
        }
        return;
    }

    let cold_index = manifest.cold.index_bytes;
    let hot_index = manifest.hot.index_bytes;
    let cold_terms: u64 = manifest
        .cold_index_files()
        .filter(|(_, entry)| entry.path.ends_with(".term"))
        .map(|(_, entry)| entry.size)
        .sum();
    let hotcache = manifest
        .files
        .iter()
        .find(|entry| entry.path == tierdex::format::layout::COLD_HOTCACHE)
        .map_or(0, |entry| entry.size);
    println!("## The cold index in the store: remote vs local cold index, PyPI");
    println!();
    println!(
        "{} hot / {} cold documents; hot index {:.1} MiB, cold index {:.1} MiB (SSTable term dictionaries {:.1} MiB, {:.0}%), cold hotcache {:.2} MiB; {} TB05 web queries, limit 10",
        manifest.hot.docs,
        manifest.cold.docs,
        mib(hot_index),
        mib(cold_index),
        mib(cold_terms),
        100.0 * cold_terms as f64 / cold_index as f64,
        mib(hotcache),
        queries.len()
    );
    println!();
    let small_key = tierdex::format::layout::version_key(
        INDEX,
        &manifest.version,
        tierdex::format::layout::MANIFEST,
    );

    for (link, store, latency) in [
        ("direct", &direct, None),
        (
            "20 ms per request",
            &proxied,
            Some(Duration::from_millis(20)),
        ),
    ] {
        proxy.set(Faults {
            latency: latency.map(|latency| (latency, 1.0)),
            ..Faults::none()
        });
        let trip = round_trip(store, &small_key, 20).await;
        println!(
            "### {link}: one store round trip {:.2} ms",
            trip.as_secs_f64() * 1000.0
        );
        println!();

        // 1. Start-up and the data dir.
        // Start-ups vary on a shared machine: the median of three, each pair side by side; the
        // last pair serves what follows.
        let mut remote_starts = Vec::new();
        let mut remote_hot_locals = Vec::new();
        let mut local_starts = Vec::new();
        let mut nodes = None;
        for _ in 0..STARTUPS {
            let remote_dir = tempfile::tempdir().unwrap();
            let local_dir = tempfile::tempdir().unwrap();
            let (remote, remote_start, remote_hot_local) =
                start_node(store, remote_dir.path(), "remote", "0").await;
            let (local, local_start, _) = start_node(store, local_dir.path(), "local", "0").await;
            remote_starts.push(remote_start);
            remote_hot_locals.push(remote_hot_local);
            local_starts.push(local_start);
            nodes = Some((remote, local, remote_dir, local_dir));
        }
        let median = |samples: &mut Vec<Duration>| {
            samples.sort();
            samples[samples.len() / 2]
        };
        let (remote_start, remote_hot_local, local_start) = (
            median(&mut remote_starts),
            median(&mut remote_hot_locals),
            median(&mut local_starts),
        );
        let (remote, local, remote_dir, local_dir) = nodes.expect("at least one start-up");
        let (remote_bytes, local_bytes) =
            (dir_bytes(remote_dir.path()), dir_bytes(local_dir.path()));
        let beyond_hot = remote_bytes.saturating_sub(hot_index);
        println!("| | remote | local | remote / local |");
        println!("|---|---|---|---|");
        println!(
            "| empty data dir to both tiers served, s (median of {STARTUPS}) | {:.3} | {:.3} | {:.2}x ({:.1}x sooner) |",
            remote_start.as_secs_f64(),
            local_start.as_secs_f64(),
            remote_start.as_secs_f64() / local_start.as_secs_f64(),
            local_start.as_secs_f64() / remote_start.as_secs_f64()
        );
        println!(
            "| empty data dir to the hot tier in the data dir (serving without storage), s | {:.3} | {:.3} | {:.2}x |",
            remote_hot_local.as_secs_f64(),
            local_start.as_secs_f64(),
            remote_hot_local.as_secs_f64() / local_start.as_secs_f64()
        );
        println!(
            "| data dir, MiB (no disk tier) | {:.1} | {:.1} | {:.2}x |",
            mib(remote_bytes),
            mib(local_bytes),
            remote_bytes as f64 / local_bytes as f64
        );
        println!(
            "| data dir beyond the hot index, share of the cold index | {:.1}% | {:.1}% | goal ≤ 10% |",
            100.0 * beyond_hot as f64 / cold_index as f64,
            100.0 * local_bytes.saturating_sub(hot_index) as f64 / cold_index as f64
        );
        println!(
            "| remote data dir, by part, KiB | {} | | |",
            data_dir_parts(&remote_dir.path().join(INDEX).join(&manifest.version))
        );
        let memory = remote
            .statuses()
            .first()
            .map_or((0, 0), |status| status.cold_memory_bytes);
        println!(
            "| remote cold index in memory after load, MiB (pinned, resident) | {:.2}, {:.2} | | |",
            mib(memory.0),
            mib(memory.1)
        );
        println!();
        if startup_only {
            continue;
        }

        // 4 first, while the nodes' caches are still empty; then 2 over the warmed caches.
        let (empty_remote, empty_local) = alternate(&remote, &local, &queries, true).await;
        let predicted: Vec<Duration> = empty_remote
            .index_rounds
            .iter()
            .zip(&empty_local.latencies)
            .map(|(rounds, local)| trip * *rounds + *local)
            .collect();
        alternate(&remote, &local, &queries, false).await;
        let (warm_remote, warm_local) = alternate(&remote, &local, &queries, false).await;
        let memory = remote
            .statuses()
            .first()
            .map_or((0, 0), |status| status.cold_memory_bytes);
        drop((remote, local));

        // 3. Nodes with a disk tier, warmed, then the memory cache emptied before each query.
        let remote_disk_dir = tempfile::tempdir().unwrap();
        let local_disk_dir = tempfile::tempdir().unwrap();
        let (remote, _, _) = start_node(store, remote_disk_dir.path(), "remote", "4GiB").await;
        let (local, _, _) = start_node(store, local_disk_dir.path(), "local", "4GiB").await;
        alternate(&remote, &local, &queries, false).await;
        remote.flush_disk_cache().await;
        local.flush_disk_cache().await;
        let (disk_remote, disk_local) = alternate(&remote, &local, &queries, true).await;
        let disk_used = remote
            .disk_cache_status()
            .map_or(0, |status| status.used_bytes);

        println!(
            "Both-tier searches ({} of {} search the cold tier in remote mode; {} pages hold a cold document):",
            warm_remote.cold_searched,
            queries.len(),
            warm_remote.cold_pages
        );
        println!();
        println!(
            "| cache | remote p50 ms | remote p99 ms | local p50 ms | local p99 ms | p50 ratio | p99 ratio |"
        );
        println!("|---|---|---|---|---|---|---|");
        row(
            "warm in memory (goal ≤ 1.2x / 1.5x)",
            &warm_remote,
            &warm_local,
        );
        row(
            "warm on disk only (memory emptied)",
            &disk_remote,
            &disk_local,
        );
        row("empty", &empty_remote, &empty_local);
        let rounds_p50 = percentile(&empty_remote.index_rounds, 0.5);
        let rounds_max = empty_remote.index_rounds.iter().max().copied().unwrap_or(0);
        println!(
            "| limit on an empty cache: remote index rounds × {:.2} ms + local time | {:.3} | {:.3} | | | {:.2}x | {:.2}x |",
            trip.as_secs_f64() * 1000.0,
            percentile_ms(&predicted, 0.5),
            percentile_ms(&predicted, 0.99),
            percentile_ms(&empty_remote.latencies, 0.5) / percentile_ms(&predicted, 0.5),
            percentile_ms(&empty_remote.latencies, 0.99) / percentile_ms(&predicted, 0.99)
        );
        println!();
        println!(
            "Remote index rounds on an empty cache: median {rounds_p50}, max {rounds_max}; plan misses: {} (empty), {} (warm), {} (disk); disk tier hits per query {:.1} ({:.1} MiB on disk); cold index in memory after the run: pinned {:.2} MiB, resident {:.2} MiB",
            empty_remote.plan_misses,
            warm_remote.plan_misses,
            disk_remote.plan_misses,
            disk_remote.disk_hits as f64 / queries.len() as f64,
            mib(disk_used),
            mib(memory.0),
            mib(memory.1)
        );
        println!();
    }
}

/// Each entry of a version's copy in the data dir and its bytes, largest first.
fn data_dir_parts(version_dir: &Path) -> String {
    let mut parts: Vec<(String, u64)> = std::fs::read_dir(version_dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let path = entry.path();
            let bytes = if path.is_dir() {
                dir_bytes(&path)
            } else {
                entry.metadata().unwrap().len()
            };
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    parts.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    parts
        .iter()
        .map(|(name, bytes)| format!("{name} {:.0}", *bytes as f64 / 1024.0))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn percentile(samples: &[u32], p: f64) -> u32 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
