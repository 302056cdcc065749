//! The cold index searched in the store: what a search reads, counted at the store (a recording
//! wrapper over a real S3-compatible server), and what the data dir keeps.
//!
//! On an empty block cache a cold search makes at most two sequential rounds of index reads
//! (the terms' dictionary blocks and bounds; then postings, norms and the columns) and then one
//! round of document reads; a search whose cold tier is skipped reads no postings (BM25: at most
//! one round of dictionary blocks and bounds; an order by a field: nothing of the cold index).
//! The plan is strict here: a read it did not foresee fails the search.

mod common;

use std::sync::Arc;

use common::*;
use tierdex::api::pb;
use tierdex::store::BlobStore;

const RULES: &str = "hot = [\"citations >= 1\"]";

fn ranked_schema() -> Arc<tierdex::schema::IndexSchema> {
    let base = std::fs::read_to_string(fixture("cacm/schema.toml")).unwrap();
    let text =
        format!("{base}\n[ranking.cited]\nscore = \"bm25 * (1 + 0.5 * ln(1 + citations))\"\n");
    Arc::new(tierdex::schema::IndexSchema::from_toml_str(&text, "schema.toml").unwrap())
}

/// CACM with a profile, built into s3s-fs; a node over it through a recording store, with no
/// disk tier (every read it makes reaches the store).
async fn recorded_node(
    server: &S3Server,
    data: &std::path::Path,
) -> (
    TestNode,
    Arc<RecordingStore>,
    tierdex::builder::BuildSummary,
) {
    let direct = server.store("remote", "indexes").await;
    let options = build_options(
        ranked_schema(),
        RULES,
        vec![shared_data("cacm.jsonl")],
        "cacm",
    );
    let summary = tierdex::builder::build(options, direct.clone())
        .await
        .unwrap();
    // Reads sent together visibly overlap and reads sent one after another visibly do not.
    let recording = RecordingStore::with_delay(direct, std::time::Duration::from_millis(20));
    let store: Arc<dyn BlobStore> = recording.clone();
    let node = TestNode::start_with(store, &["cacm"], data, |settings| {
        settings.disk_cache_size = Some("0".into());
        settings.document_cache_size = Some("0".into());
        settings.cold_index = Some("remote".into());
        // No polls of CURRENT: the store sees only what searches read.
        settings.poll_interval = Some("0s".into());
    })
    .await;
    node.wait_ready().await;
    (node, recording, summary)
}

fn is_index_read(read: &RecordedRead) -> bool {
    read.key.contains("/cold/index/") || read.key.ends_with("/cold/term_bounds.sst")
}

fn is_document_read(read: &RecordedRead) -> bool {
    read.key.ends_with(".parquet")
}

fn is_postings_read(read: &RecordedRead) -> bool {
    read.key.contains("/cold/index/") && (read.key.ends_with(".idx") || read.key.ends_with(".pos"))
}

/// A search on an empty block cache, and the reads it made.
async fn search_cold(
    node: &TestNode,
    recording: &RecordingStore,
    request: pb::SearchRequest,
) -> (pb::SearchResponse, Vec<RecordedRead>) {
    node.node.clear_memory_cache().await;
    recording.take();
    let mut client = node.client().await;
    let response = client
        .search(request.clone())
        .await
        .unwrap_or_else(|status| panic!("{}: {status}", request.query))
        .into_inner();
    (response, recording.take())
}

/// Index rounds before the documents, then at most one round of documents.
fn check_rounds(query: &str, reads: &[RecordedRead], index_limit: usize) -> (usize, usize) {
    let all = rounds(reads);
    let index_rounds = all
        .iter()
        .filter(|round| round.iter().any(is_index_read))
        .count();
    let document_rounds = all
        .iter()
        .filter(|round| round.iter().any(is_document_read))
        .count();
    assert!(
        index_rounds <= index_limit,
        "`{query}`: {index_rounds} rounds of index reads: {:?}",
        all.iter()
            .map(|round| round
                .iter()
                .map(|read| read.key.rsplit('/').next().unwrap().to_string())
                .collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    assert!(
        document_rounds <= 1,
        "`{query}`: {document_rounds} rounds of documents"
    );
    // No round mixes them, and documents come last.
    for round in &all {
        assert!(
            !(round.iter().any(is_index_read) && round.iter().any(is_document_read)),
            "`{query}`: documents read in the same round as the index"
        );
    }
    (index_rounds, document_rounds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_searches_make_two_rounds_of_index_reads_and_one_of_documents() {
    let server = S3Server::start();
    let data = tempfile::tempdir().unwrap();
    let (node, recording, _) = recorded_node(&server, data.path()).await;
    let queries = cacm_query_texts();
    let mut with_cold = [0usize; 4];
    let mut two_rounds = 0;
    for (number, query) in queries.iter().enumerate() {
        let phrase = {
            let words: Vec<&str> = query.split_whitespace().take(2).collect();
            format!("\"{}\"", words.join(" "))
        };
        let mut profiled = search_request("cacm", query, 10);
        profiled.profile = "cited".into();
        let requests = [
            search_request("cacm", query, 10),
            search_request("cacm", &phrase, 10),
            profiled,
            {
                let mut request = search_request("cacm", query, 10);
                request.offset = 10;
                request
            },
        ];
        for (kind, request) in requests.into_iter().enumerate() {
            let (response, reads) = search_cold(&node, &recording, request.clone()).await;
            assert!(
                !response.degraded,
                "`{}`: {}",
                request.query, response.degraded_reason
            );
            let stats = response.stats.unwrap_or_default();
            let (index_rounds, _) = check_rounds(&request.query, &reads, 2);
            if response
                .hits
                .iter()
                .any(|hit| hit.tier == pb::Tier::Cold as i32)
            {
                with_cold[kind] += 1;
                two_rounds += usize::from(index_rounds == 2);
                assert!(
                    reads.iter().any(is_document_read),
                    "`{}`: cold documents come from the store",
                    request.query
                );
            }
            // What the store saw is what the search says it asked for.
            assert_eq!(
                stats.storage_requests,
                reads.len() as u64,
                "`{}` (query {number})",
                request.query
            );
        }
    }
    assert!(
        with_cold.iter().all(|&pages| pages > 10),
        "pages with cold hits (terms, phrases, profile, second pages): {with_cold:?}"
    );
    // On an empty cache, a cold search reads its dictionary blocks, then its postings.
    assert!(two_rounds > 40, "searches with both rounds: {two_rounds}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_cold_tier_reads_no_postings() {
    let server = S3Server::start();
    let data = tempfile::tempdir().unwrap();
    let (node, recording, _) = recorded_node(&server, data.path()).await;
    // A profile over BM25 (`cited`: the hot tier holds the cited documents, which it boosts)
    // skips from the terms' bounds; an order by citations from the value ranges alone.
    let mut bm25_skips = 0;
    let mut order_skips = 0;
    let queries: Vec<String> = cacm_query_texts()
        .into_iter()
        .chain(cacm_structured_queries())
        .collect();
    for query in &queries {
        for order_by in ["", "citations DESC"] {
            let mut request = search_request("cacm", query, 10);
            request.order_by = order_by.into();
            if order_by.is_empty() {
                request.profile = "cited".into();
            }
            let (response, reads) = search_cold(&node, &recording, request).await;
            if !response.cold_skipped {
                continue;
            }
            assert!(
                !reads.iter().any(is_postings_read),
                "`{query}` {order_by}: a skipped cold tier read postings: {:?}",
                reads.iter().map(|read| &read.key).collect::<Vec<_>>()
            );
            assert!(!reads.iter().any(is_document_read));
            if order_by.is_empty() {
                bm25_skips += 1;
                assert!(rounds(&reads).len() <= 1, "`{query}`: more than one round");
            } else {
                order_skips += 1;
                assert!(
                    !reads.iter().any(is_index_read),
                    "`{query}` by citations: decided from value ranges, read {:?}",
                    reads.iter().map(|read| &read.key).collect::<Vec<_>>()
                );
            }
        }
    }
    assert!(
        bm25_skips > 0,
        "some page ranked with BM25 skipped the cold tier"
    );
    assert!(order_skips > 0, "some ordered page skipped the cold tier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_keeps_the_hot_tier_and_a_sliver_of_the_cold_index() {
    let server = S3Server::start();
    let data = tempfile::tempdir().unwrap();
    let (node, _, summary) = recorded_node(&server, data.path()).await;
    let manifest = &summary.manifest;
    let version = data.path().join("cacm").join(&manifest.version);
    assert!(
        !version.join("cold-index").exists(),
        "the cold index is not downloaded"
    );
    let size = |dir: &std::path::Path| -> u64 {
        walk(dir)
            .iter()
            .map(|path| std::fs::metadata(path).unwrap().len())
            .sum()
    };
    let kept_of_cold_index =
        size(&version.join("cold-lookup")) + size(&version.join("cold-index-blocks"));
    let cold_index = manifest.cold.index_bytes;
    assert!(
        kept_of_cold_index * 10 <= cold_index,
        "kept {kept_of_cold_index} bytes of a {cold_index}-byte cold index"
    );
    // And it serves: a cold page, in full.
    let mut client = node.client().await;
    let response = client
        .search(search_request("cacm", "algorithm", 10))
        .await
        .unwrap()
        .into_inner();
    assert!(!response.degraded);
}

/// A node on an empty data dir loads both tiers in a few round trips to the store, whatever the
/// number of files. In remote mode: `CURRENT`, the manifest, the block tables and hotcaches, the
/// data they locate (the parquet footers, the hot columns), then the hot tier's download, last,
/// because both tiers serve from the store before it. In local mode: `CURRENT`, the manifest, the
/// hot tier's download, the cold tier's block tables, then the data they locate, which nothing
/// waits for.
///
/// Counted as the longest chain of reads each waiting for the one before (see
/// [`longest_chain`]): grouping overlapping reads into rounds merged a read into the round it
/// waited on whenever a slower read of that round was still in flight, so the count depended on
/// a race of a few milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_in_a_few_rounds_of_storage_requests() {
    let server = S3Server::start();
    let direct = server.store("remote", "indexes").await;
    build_cacm(direct.clone(), RULES, "cacm").await;
    // Before the cold tier's parts were fetched together and beside the hot tier: 10 rounds in
    // either mode.
    for (mode, limit) in [("remote", 5), ("local", 5)] {
        let recording =
            RecordingStore::with_delay(direct.clone(), std::time::Duration::from_millis(20));
        let store: Arc<dyn BlobStore> = recording.clone();
        let data = tempfile::tempdir().unwrap();
        let node = TestNode::start_with(store, &["cacm"], data.path(), |settings| {
            settings.disk_cache_size = Some("0".into());
            settings.cold_index = Some(mode.into());
            settings.poll_interval = Some("0s".into());
        })
        .await;
        node.wait_ready().await;
        let reads = recording.take();
        let chain: Vec<String> = longest_chain(&reads)
            .iter()
            .map(|read| read.key.rsplit('/').next().unwrap().to_string())
            .collect();
        // Printed for docs/benchmarks.md (`-- --nocapture`).
        eprintln!(
            "{mode}: {} storage round trips one after another to start: {chain:?}",
            chain.len()
        );
        assert!(
            chain.len() <= limit,
            "{mode}: {} round trips to load: {chain:?}",
            chain.len()
        );
        // Where the parquet footers are read, in round trips from the start.
        let footers_at = |read: &RecordedRead| {
            longest_chain(
                &reads
                    .iter()
                    .filter(|earlier| earlier.started <= read.started)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
            .len()
        };
        let footer = reads
            .iter()
            .find(|read| read.key.ends_with(".parquet"))
            .unwrap_or_else(|| panic!("{mode}: the cold files' footers are read: {chain:?}"));
        let hot_download = reads
            .iter()
            .filter(|read| read.key.contains("/hot/") && read.key.ends_with("meta.json"))
            .min_by_key(|read| read.started)
            .unwrap_or_else(|| panic!("{mode}: the hot tier is downloaded: {chain:?}"));
        if mode == "remote" {
            // Both tiers serve from the store first; the hot tier's download comes last.
            assert!(
                footers_at(footer) < footers_at(hot_download),
                "remote: the footers before the hot tier's download: {chain:?}"
            );
        } else {
            // Nothing waits for the footers: they come in the last round trip.
            assert_eq!(
                footers_at(footer),
                chain.len(),
                "local: the footers in the last round trip: {chain:?}"
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}
