//! Ranking figures on the PyPI catalog: how often the hot tier answers alone and how often the
//! cold tier is skipped, for BM25 alone and for rank profiles that favour what the rules keep
//! hot; and what a profile costs, next to tantivy ranking the same way on one monolithic index.
//!
//! ```text
//! cargo bench --bench ranking -- [--queries N]
//! ```
//!
//! Builds the PyPI catalog with the rules `download_rank IS NOT NULL` (the 15,000 most
//! downloaded packages hot) into a local directory store, and again with every document hot
//! (the monolithic index), serves the tiered build from a node in this process, and sends the
//! first N TB05 web queries (default 5,000) through gRPC once per ordering: `bm25` and the
//! profiles of `benches/pypi/schema.toml` (`popular`, `quality_first`, `most_downloaded`).
//! Per ordering: queries whose first page (10) holds no cold document, queries whose cold
//! search was skipped, and the server-side ranking time (both tiers, query already parsed)
//! next to tantivy's `TopDocs` (BM25, or `tweak_score` with the same expression) on the
//! monolithic index in process.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::{DocAddress, DocId, Index, Score, SegmentReader};
use tierdex::api::pb;

fn queries_setting() -> usize {
    let mut args = std::env::args().skip(1);
    let mut queries = 5000;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--queries" => queries = args.next().expect("--queries N").parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    queries
}

fn main() {
    default_bench_credentials();
    bench_runtime().block_on(run(queries_setting()));
}

/// The orderings compared, as `benches/pypi/schema.toml` defines them, written out again for
/// tantivy: a document's rank from its BM25 score and download rank.
const ORDERINGS: [&str; 4] = ["bm25", "popular", "quality_first", "most_downloaded"];

fn tantivy_rank(ordering: &str, bm25: Score, download_rank: Option<u64>) -> f64 {
    let quality = download_rank.map_or(0.0, |rank| 5.0 - (rank as f64).log10());
    match ordering {
        "popular" => f64::from(bm25) * (1.0 + 0.5 * quality),
        "quality_first" => f64::from(bm25) + 3.0 * quality,
        "most_downloaded" => download_rank.map_or(f64::NEG_INFINITY, |rank| -(rank as f64)),
        other => panic!("no tantivy ranking for {other}"),
    }
}

/// tantivy alone on the monolithic index, ranking as `ordering` does; per-query latency.
/// tantivy alone on the monolithic index, ranking as `ordering` does: per-query latency, and how
/// many first pages hold only documents the rules keep hot (`download_rank` set) — the node's
/// count, computed without it.
fn tantivy_pages(
    index: &Index,
    queries: &[String],
    ordering: &'static str,
) -> (Vec<Duration>, usize) {
    let schema = index.schema();
    let fields = ["summary", "name"].map(|name| schema.get_field(name).unwrap());
    let parser = QueryParser::for_index(index, fields.to_vec());
    let searcher = index.reader().unwrap().searcher();
    let mut latencies = Vec::with_capacity(queries.len());
    let mut all_hot = 0;
    for query in queries {
        let query = parser.parse_query(query).unwrap();
        let started = Instant::now();
        let page: Vec<DocAddress> = if ordering == "bm25" {
            let top = TopDocs::with_limit(10).order_by_score();
            let hits = std::hint::black_box(searcher.search(&query, &top).unwrap());
            hits.into_iter().map(|(_, address)| address).collect()
        } else {
            let top = TopDocs::with_limit(10).tweak_score(move |segment: &SegmentReader| {
                let ranks = segment.fast_fields().u64("download_rank").unwrap();
                move |doc: DocId, score: Score| tantivy_rank(ordering, score, ranks.first(doc))
            });
            let hits = std::hint::black_box(searcher.search(&query, &top).unwrap());
            hits.into_iter().map(|(_, address)| address).collect()
        };
        latencies.push(started.elapsed());
        all_hot += usize::from(page.iter().all(|address| {
            let segment = searcher.segment_reader(address.segment_ord);
            let ranks = segment.fast_fields().u64("download_rank").unwrap();
            ranks.first(address.doc_id).is_some()
        }));
    }
    (latencies, all_hot)
}

async fn run(query_count: usize) {
    let store_dir = tempfile::tempdir().unwrap();
    let store = local_store(store_dir.path());
    let started = Instant::now();
    let manifest = build_pypi_with(
        store.clone(),
        "hot = [\"download_rank IS NOT NULL\"]",
        "pypi",
    )
    .await
    .manifest;
    println!(
        "built pypi (rules `download_rank IS NOT NULL`) in {:.1} s: hot {} docs, cold {} docs",
        started.elapsed().as_secs_f64(),
        manifest.hot.docs,
        manifest.cold.docs
    );
    let monolith_store = tempfile::tempdir().unwrap();
    let (monolith_dir, _) = build_pypi_monolith(monolith_store.path()).await;
    let monolith_index = Index::open_in_dir(monolith_dir).unwrap();

    let data = tempfile::tempdir().unwrap();
    let node = TestNode::start(store, &["pypi"], data.path()).await;
    node.wait_ready().await;
    let mut client = node.client().await;
    let queries = web_queries(query_count);
    println!(
        "{} TB05 queries, first page of 10, through gRPC\n",
        queries.len()
    );
    // However a profile ranks, the hot tier alone can fill a page only where it has a page's
    // worth of matches: the ceiling of the share below.
    let mut fillable = 0usize;
    for query in &queries {
        let mut request = search_request("pypi", query, 10);
        request.tiers = pb::Tiers::HotOnly as i32;
        request.fields = vec!["name".into()];
        let response = client.search(request).await.unwrap().into_inner();
        fillable += usize::from(response.hits.len() == 10);
    }
    println!(
        "queries with at least 10 hot matches (the ceiling of a hot-only page with results): {fillable} ({:.1}%)\n",
        100.0 * fillable as f64 / queries.len() as f64
    );
    println!(
        "| ordering | page holds no cold document | cold search skipped | queries with results | of those, no cold document | node ranking p50 / p99 ms (server-side) | tantivy, monolithic, in process p50 / p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    // Per ordering: node p50, node p99, tantivy p99.
    let mut measured: Vec<(&str, f64, f64, f64)> = Vec::new();
    for ordering in ORDERINGS {
        // A first pass computes each term's cold maximum once (kept per version): the second
        // pass is the one measured and counted.
        for pass in 0..2 {
            let (mut hot_alone, mut skipped, mut with_results, mut hot_alone_with_results) =
                (0usize, 0usize, 0usize, 0usize);
            let mut ranking_ms = Vec::with_capacity(queries.len());
            for query in &queries {
                let mut request = search_request("pypi", query, 10);
                request.profile = ordering.to_string();
                request.fields = vec!["name".into()];
                let response = client
                    .search(request)
                    .await
                    .unwrap_or_else(|status| panic!("{query}: {status}"))
                    .into_inner();
                assert_eq!(response.ranked_by, ordering);
                let no_cold = response
                    .hits
                    .iter()
                    .all(|hit| hit.tier == pb::Tier::Hot as i32);
                hot_alone += usize::from(no_cold);
                skipped += usize::from(response.cold_skipped);
                if !response.hits.is_empty() {
                    with_results += 1;
                    hot_alone_with_results += usize::from(no_cold);
                }
                let stats = response.stats.unwrap_or_default();
                ranking_ms.push(Duration::from_secs_f64(stats.search_ms / 1000.0));
            }
            if pass == 0 {
                continue;
            }
            let (tantivy, tantivy_all_hot) = tantivy_pages(&monolith_index, &queries, ordering);
            let share = |count: usize, of: usize| 100.0 * count as f64 / of.max(1) as f64;
            println!(
                "| {ordering} | {:.1}% (tantivy: {:.1}%) | {:.1}% | {} | {:.1}% | {:.3} / {:.3} | {:.3} / {:.3} |",
                share(hot_alone, queries.len()),
                share(tantivy_all_hot, queries.len()),
                share(skipped, queries.len()),
                with_results,
                share(hot_alone_with_results, with_results),
                percentile_ms(&ranking_ms, 0.5),
                percentile_ms(&ranking_ms, 0.99),
                percentile_ms(&tantivy, 0.5),
                percentile_ms(&tantivy, 0.99),
            );
            measured.push((
                ordering,
                percentile_ms(&ranking_ms, 0.5),
                percentile_ms(&ranking_ms, 0.99),
                percentile_ms(&tantivy, 0.99),
            ));
        }
    }
    let (_, bm25_p50, bm25_p99, _) = measured[0];
    println!();
    println!(
        "| profile | p50 / BM25 on the node (goal ≤ 1.3x) | p99 / BM25 on the node (goal ≤ 1.5x) | p99 / tantivy `tweak_score` (goal ≤ 0.5x) |"
    );
    println!("|---|---|---|---|");
    for (ordering, p50, p99, tantivy_p99) in &measured[1..] {
        println!(
            "| {ordering} | {:.2}x | {:.2}x | {:.2}x |",
            p50 / bm25_p50,
            p99 / bm25_p99,
            p99 / tantivy_p99
        );
    }
    node.stop().await;
}
