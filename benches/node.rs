//! Query node figures on the PyPI catalog, measured side by side in one run.
//!
//! ```text
//! ./tools/test.sh --no-run   # once: installs s3s-fs under target/tools
//! cargo bench --bench node -- [--queries N] [--load-clients 64] [--load-queries 1000]
//! ```
//!
//! Starts a real S3-compatible server (s3s-fs) on 127.0.0.1, builds the PyPI catalog into it,
//! starts a node in this process on a loopback port, and measures through gRPC with a client in
//! this process:
//! - hot-only queries through gRPC vs the same queries on the same hot index in process;
//! - queries whose page holds cold documents, with a warm cache vs the same queries hot-only;
//! - those queries on an empty cache (a restarted node), with requests and bytes per query;
//! - rehydration of the version vs one single-stream GET of the same files;
//! - many concurrent clients, counting errors.
//!
//! Queries come from `../shared/data/web-queries-tb05.txt`, in file order.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tantivy::collector::{Count, TopDocs};
use tierdex::api::pb;
use tierdex::store::BlobStore;

struct Settings {
    queries: usize,
    load_clients: usize,
    load_queries: usize,
}

fn settings() -> Settings {
    let mut settings = Settings {
        queries: 2000,
        load_clients: 64,
        load_queries: 1000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{arg} needs a value"))
                .parse::<usize>()
                .unwrap()
        };
        match arg.as_str() {
            "--queries" => settings.queries = value(),
            "--load-clients" => settings.load_clients = value(),
            "--load-queries" => settings.load_queries = value(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    settings
}

/// Web queries as plain words (tantivy syntax characters removed), in file order.
fn web_queries(limit: usize) -> Vec<String> {
    std::fs::read_to_string(shared_data("web-queries-tb05.txt"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once(':').map(|(_, query)| query))
        .map(|query| {
            query
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        ' '
                    }
                })
                .collect::<String>()
                .split_whitespace()
                .filter(|word| !matches!(*word, "and" | "or" | "not" | "to"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|query| !query.is_empty())
        .take(limit)
        .collect()
}

#[derive(Default)]
struct Latencies(Vec<Duration>);

impl Latencies {
    fn p50(&self) -> f64 {
        percentile_ms(&self.0, 0.5)
    }
    fn p99(&self) -> f64 {
        percentile_ms(&self.0, 0.99)
    }
    fn mean(&self) -> f64 {
        self.0.iter().sum::<Duration>().as_secs_f64() * 1000.0 / self.0.len() as f64
    }
}

async fn run_grpc(
    client: &mut pb::tierdex_client::TierdexClient<tonic::transport::Channel>,
    queries: &[String],
    hot_only: bool,
) -> (Latencies, Vec<pb::SearchResponse>) {
    let mut latencies = Latencies::default();
    let mut responses = Vec::with_capacity(queries.len());
    for query in queries {
        let mut request = search_request("pypi", query, 10);
        if hot_only {
            request.tiers = pb::Tiers::HotOnly as i32;
        }
        let started = Instant::now();
        let response = client
            .search(request)
            .await
            .unwrap_or_else(|status| panic!("{query}: {status}"));
        latencies.0.push(started.elapsed());
        responses.push(response.into_inner());
    }
    (latencies, responses)
}

/// The same hot index, queried in this process with tantivy alone: parse, top 10, read the 10
/// stored documents; with `count`, also count all hits as the node does for its totals.
fn run_in_process(hot_dir: &std::path::Path, queries: &[String], count: bool) -> Latencies {
    let index = tantivy::Index::open_in_dir(hot_dir).unwrap();
    let schema = index.schema();
    let fields = ["summary", "name"].map(|name| schema.get_field(name).unwrap());
    let parser = tantivy::query::QueryParser::for_index(&index, fields.to_vec());
    let searcher = index.reader().unwrap().searcher();
    let mut latencies = Latencies::default();
    for query in queries {
        let started = Instant::now();
        let parsed = parser.parse_query(query).unwrap();
        let top = searcher
            .search(&parsed, &TopDocs::with_limit(10).order_by_score())
            .unwrap();
        if count {
            std::hint::black_box(searcher.search(&parsed, &Count).unwrap());
        }
        for (_, address) in top {
            let _document: tantivy::TantivyDocument = searcher.doc(address).unwrap();
        }
        latencies.0.push(started.elapsed());
    }
    latencies
}

/// The search step alone on the hot index, queries parsed beforehand: tantivy's `TopDocs` vs
/// the node's `TopHits` (ties broken by id, which reads each candidate's id), both top 20 as
/// the node asks of the hot tier for a page of 10.
fn run_collectors(hot_dir: &std::path::Path, queries: &[String]) -> (Latencies, Latencies) {
    use tierdex::node::collector::{HitColumns, IdKind, TopHits};
    let index = tantivy::Index::open_in_dir(hot_dir).unwrap();
    let schema = index.schema();
    let fields = ["summary", "name"].map(|name| schema.get_field(name).unwrap());
    let parser = tantivy::query::QueryParser::for_index(&index, fields.to_vec());
    let searcher = index.reader().unwrap().searcher();
    let parsed: Vec<_> = queries
        .iter()
        .map(|query| parser.parse_query(query).unwrap())
        .collect();
    let top_hits = TopHits {
        limit: 20,
        columns: Arc::new(HitColumns::open(&searcher, "name", IdKind::Str, false).unwrap()),
    };
    let top_docs = TopDocs::with_limit(20).order_by_score();
    let (mut docs_latencies, mut hits_latencies) = (Latencies::default(), Latencies::default());
    for query in &parsed {
        let started = Instant::now();
        std::hint::black_box(searcher.search(query.as_ref(), &top_docs).unwrap());
        docs_latencies.0.push(started.elapsed());
        let started = Instant::now();
        std::hint::black_box(searcher.search(query.as_ref(), &top_hits).unwrap());
        hits_latencies.0.push(started.elapsed());
    }
    (docs_latencies, hits_latencies)
}

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1048576.0 / elapsed.as_secs_f64()
}

fn main() {
    let settings = settings();
    default_bench_credentials();
    bench_runtime().block_on(run(settings));
}

async fn run(settings: Settings) {
    let server = S3Server::start();
    let s3 = server.store("bench", "").await;
    let started = Instant::now();
    let manifest = build_pypi(s3.clone()).await.manifest;
    println!(
        "built pypi into s3s-fs in {:.1} s: hot {} docs, cold {} docs",
        started.elapsed().as_secs_f64(),
        manifest.hot.docs,
        manifest.cold.docs
    );

    // Rehydration vs one single-stream GET of the same files.
    let index_files = index_file_keys(&manifest);
    let total_bytes: u64 = index_files.iter().map(|(_, size)| size).sum();
    let single = Instant::now();
    for (key, _) in &index_files {
        let data = s3.get(key).await.unwrap();
        std::hint::black_box(data.len());
    }
    let single_elapsed = single.elapsed();
    let data = tempfile::tempdir().unwrap();
    let rehydrating = Instant::now();
    let node = TestNode::start(s3.clone(), &["pypi"], data.path()).await;
    node.wait_ready().await;
    let rehydrate_elapsed = rehydrating.elapsed();
    println!(
        "rehydration: {} files, {:.1} MiB in {:.2} s = {:.0} MiB/s (both tiers ready, footers loaded); single-stream GET of the same files: {:.2} s = {:.0} MiB/s; ratio {:.2}x",
        index_files.len(),
        total_bytes as f64 / 1048576.0,
        rehydrate_elapsed.as_secs_f64(),
        mib_per_s(total_bytes, rehydrate_elapsed),
        single_elapsed.as_secs_f64(),
        mib_per_s(total_bytes, single_elapsed),
        single_elapsed.as_secs_f64() / rehydrate_elapsed.as_secs_f64()
    );

    let queries = web_queries(settings.queries);
    let mut client = node.client().await;
    let hot_dir = data.path().join("pypi").join(&manifest.version).join("hot");
    // Warm up both paths once (page cache, allocator), then measure side by side.
    run_in_process(&hot_dir, &queries[..queries.len().min(200)], true);
    run_grpc(&mut client, &queries[..queries.len().min(200)], true).await;
    let in_process = run_in_process(&hot_dir, &queries, false);
    let in_process_counting = run_in_process(&hot_dir, &queries, true);
    let (hot_grpc, hot_responses) = run_grpc(&mut client, &queries, true).await;
    let (top_docs, top_hits) = run_collectors(&hot_dir, &queries);
    println!();
    println!(
        "| {} web queries, top 10 | p50 ms | p99 ms |",
        queries.len()
    );
    println!("|---|---|---|");
    println!(
        "| hot index in process (tantivy alone) | {:.3} | {:.3} |",
        in_process.p50(),
        in_process.p99()
    );
    println!(
        "| hot index in process, also counting all hits | {:.3} | {:.3} |",
        in_process_counting.p50(),
        in_process_counting.p99()
    );
    println!(
        "| hot tier through gRPC | {:.3} | {:.3} |",
        hot_grpc.p50(),
        hot_grpc.p99()
    );
    println!(
        "| ratio gRPC / in process | {:.2}x | {:.2}x |",
        hot_grpc.p50() / in_process.p50(),
        hot_grpc.p99() / in_process.p99()
    );
    println!(
        "| ratio gRPC / in process, counting | {:.2}x | {:.2}x |",
        hot_grpc.p50() / in_process_counting.p50(),
        hot_grpc.p99() / in_process_counting.p99()
    );
    let mut floor = Latencies::default();
    for _ in 0..queries.len() {
        let started = Instant::now();
        client.status(pb::StatusRequest {}).await.unwrap();
        floor.0.push(started.elapsed());
    }
    println!(
        "| gRPC round trip alone (Status RPC) | {:.3} | {:.3} |",
        floor.p50(),
        floor.p99()
    );
    let mean = |pick: fn(&pb::QueryStats) -> f64, responses: &[pb::SearchResponse]| {
        responses
            .iter()
            .map(|r| pick(r.stats.as_ref().unwrap()))
            .sum::<f64>()
            / responses.len() as f64
    };
    println!(
        "server-side means for hot-only: parse {:.3} ms, search {:.3} ms, documents {:.3} ms, total {:.3} ms",
        mean(|s| s.parse_ms, &hot_responses),
        mean(|s| s.search_ms, &hot_responses),
        mean(|s| s.hot_fetch_ms, &hot_responses),
        mean(|s| s.total_ms, &hot_responses)
    );
    println!();
    println!(
        "| the search alone, in process, top 20 over the hot index | p50 ms | p99 ms | mean ms |"
    );
    println!("|---|---|---|---|");
    for (name, latencies) in [
        ("tantivy `TopDocs` (ties by address)", &top_docs),
        ("tierdex `TopHits` (ties by id)", &top_hits),
    ] {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} |",
            latencies.p50(),
            latencies.p99(),
            latencies.mean()
        );
    }
    println!(
        "| ratio TopHits / TopDocs | {:.2}x | {:.2}x | {:.2}x |",
        top_hits.p50() / top_docs.p50(),
        top_hits.p99() / top_docs.p99(),
        top_hits.mean() / top_docs.mean()
    );

    // Queries whose first page holds cold documents.
    let (_, all_tiers) = run_grpc(&mut client, &queries, false).await;
    let cold_queries: Vec<String> = queries
        .iter()
        .zip(&all_tiers)
        .filter(|(_, response)| {
            response
                .hits
                .iter()
                .any(|hit| hit.tier == pb::Tier::Cold as i32)
        })
        .map(|(query, _)| query.clone())
        .collect();
    let (warm, warm_responses) = run_grpc(&mut client, &cold_queries, false).await;
    let (same_hot, _) = run_grpc(&mut client, &cold_queries, true).await;
    println!();
    println!(
        "| {} queries with cold hits on the page | p50 ms | p99 ms |",
        cold_queries.len()
    );
    println!("|---|---|---|");
    println!(
        "| hot tier only (same queries) | {:.3} | {:.3} |",
        same_hot.p50(),
        same_hot.p99()
    );
    println!(
        "| both tiers, warm cache | {:.3} | {:.3} |",
        warm.p50(),
        warm.p99()
    );
    println!(
        "| ratio warm / hot | {:.2}x | {:.2}x |",
        warm.p50() / same_hot.p50(),
        warm.p99() / same_hot.p99()
    );
    println!(
        "server-side means, both tiers warm: search {:.3} ms, hot documents {:.3} ms, cold documents {:.3} ms, total {:.3} ms",
        mean(|s| s.search_ms, &warm_responses),
        mean(|s| s.hot_fetch_ms, &warm_responses),
        mean(|s| s.cold_fetch_ms, &warm_responses),
        mean(|s| s.total_ms, &warm_responses)
    );
    node.stop().await;

    // Empty cache: a fresh node on the same data dir (nothing to download).
    let node = TestNode::start(s3.clone(), &["pypi"], data.path()).await;
    node.wait_ready().await;
    let mut client = node.client().await;
    let (cold_start, responses) = run_grpc(&mut client, &cold_queries, false).await;
    let requests: Vec<u64> = responses
        .iter()
        .map(|r| r.stats.as_ref().unwrap().storage_requests)
        .collect();
    let bytes: Vec<u64> = responses
        .iter()
        .map(|r| r.stats.as_ref().unwrap().storage_bytes)
        .collect();
    let cold_docs: usize = responses
        .iter()
        .map(|r| {
            r.hits
                .iter()
                .filter(|hit| hit.tier == pb::Tier::Cold as i32)
                .count()
        })
        .sum();
    println!(
        "| both tiers, empty cache (first run after restart) | {:.3} | {:.3} |",
        cold_start.p50(),
        cold_start.p99()
    );
    println!();
    println!(
        "storage per cold query on the empty cache: {:.2} requests, {:.1} KiB on average ({} cold documents over {} queries = {:.1} per query; max {} requests)",
        requests.iter().sum::<u64>() as f64 / requests.len() as f64,
        bytes.iter().sum::<u64>() as f64 / bytes.len() as f64 / 1024.0,
        cold_docs,
        responses.len(),
        cold_docs as f64 / responses.len() as f64,
        requests.iter().max().unwrap()
    );

    if settings.load_clients == 0 {
        return;
    }
    // Load: concurrent clients, each its own connection.
    let queries = Arc::new(queries);
    let started = Instant::now();
    let clients = (0..settings.load_clients).map(|client_index| {
        let addr = node.addr.clone();
        let queries = queries.clone();
        let per_client = settings.load_queries;
        tokio::spawn(async move {
            let mut client = pb::tierdex_client::TierdexClient::connect(addr)
                .await
                .unwrap();
            let mut errors = 0usize;
            for round in 0..per_client {
                let query = &queries[(client_index * 131 + round) % queries.len()];
                if client
                    .search(search_request("pypi", query, 10))
                    .await
                    .is_err()
                {
                    errors += 1;
                }
            }
            errors
        })
    });
    let errors: usize = futures::future::join_all(clients)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    let total = settings.load_clients * settings.load_queries;
    let elapsed = started.elapsed();
    println!();
    println!(
        "load: {} clients x {} queries = {total} searches in {:.1} s ({:.0} searches/s), {errors} errors",
        settings.load_clients,
        settings.load_queries,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    let status = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let cache = status.cache.unwrap();
    println!(
        "cache after load: {:.1} MiB used of {:.0} MiB, hit rate {:.3}",
        cache.used_bytes as f64 / 1048576.0,
        cache.capacity_bytes as f64 / 1048576.0,
        cache.hit_rate
    );
    node.stop().await;
}
