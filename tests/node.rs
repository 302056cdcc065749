//! The query node over gRPC: a third-party client, start-up and restart I/O, one round of cold
//! reads, status codes, health, concurrency, and the shape of answers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tierdex::api::pb;
use tierdex::store::BlobStore;
use tonic::Code;

fn hit_ids(response: &pb::SearchResponse) -> Vec<serde_json::Value> {
    response
        .hits
        .iter()
        .map(|hit| tierdex::api::client::value_json(hit.id.as_ref().unwrap()))
        .collect()
}

async fn cacm_node(store: Arc<dyn BlobStore>, data: &std::path::Path) -> TestNode {
    build_cacm(store.clone(), "hot = [\"citations >= 1\"]", "cacm").await;
    let node = TestNode::start(store, &["cacm"], data).await;
    node.wait_ready().await;
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_searches_and_checks_health() {
    let store_dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let node = cacm_node(local_store(store_dir.path()), data.path()).await;
    let queries = [
        "computer",
        "\"time sharing\"",
        "sort AND algorithm",
        "authors:\"Knuth, D. E.\"",
        "citations:[5 TO 10]",
    ];
    let mut args = vec![
        node.addr.trim_start_matches("http://").to_string(),
        "cacm".to_string(),
    ];
    args.extend(queries.iter().map(|query| query.to_string()));
    let report = python_grpc_client("grpc_client.py", args).await;
    assert_eq!(report["health"][""], "SERVING");
    assert_eq!(report["health"]["cacm"], "SERVING");
    assert_eq!(report["health"]["no-such-index"], "NOT_FOUND");
    assert_eq!(report["bad_query"], "INVALID_ARGUMENT");
    let services: Vec<&str> = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        services.contains(&"tierdex.v1.Tierdex") && services.contains(&"grpc.health.v1.Health"),
        "{services:?}"
    );

    let mut client = node.client().await;
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), queries.len(), "one result per query");
    for (query, python) in queries.iter().zip(results) {
        let response = client
            .search(pb::SearchRequest {
                count_total_hits: true,
                ..search_request("cacm", query, 10)
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            python["ids"].as_array().unwrap(),
            &hit_ids(&response),
            "{query}"
        );
        assert_eq!(python["total_hits"], response.total_hits, "{query}");
        let python_scores: Vec<f64> = python["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|score| score.as_f64().unwrap())
            .collect();
        let scores: Vec<f64> = response.hits.iter().map(|hit| hit.score).collect();
        assert_eq!(python_scores.len(), scores.len(), "{query}");
        for (python_score, score) in python_scores.iter().zip(&scores) {
            assert!(
                (python_score - score).abs() < 1e-6,
                "{query}: {python_scores:?} vs {scores:?}"
            );
        }
        assert!(!hit_ids(&response).is_empty(), "{query} matches something");
        let tiers: Vec<String> = response
            .hits
            .iter()
            .map(|hit| {
                pb::Tier::try_from(hit.tier)
                    .unwrap()
                    .as_str_name()
                    .to_string()
            })
            .collect();
        assert_eq!(python["tiers"], serde_json::json!(tiers), "{query}");
    }
}

fn is_index_file(key: &str) -> bool {
    [
        "/hot/",
        "/cold/index/",
        "/checksums/hot/",
        "/checksums/cold/index/",
    ]
    .iter()
    .any(|dir| key.contains(dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_complete_data_dir_reads_no_index_file() {
    let server = S3Server::start();
    let s3 = server.store("restart", "").await;
    build_cacm(s3.clone(), "hot = [\"citations >= 1\"]", "cacm").await;
    let data = tempfile::tempdir().unwrap();

    let first = RecordingStore::new(s3.clone());
    let node = TestNode::start(first.clone(), &["cacm"], data.path()).await;
    node.wait_ready().await;
    node.stop().await;
    let downloaded = first
        .reads()
        .iter()
        .filter(|read| is_index_file(&read.key))
        .count();
    assert!(
        downloaded >= 10,
        "the first start downloads the index files: {downloaded}"
    );

    let second = RecordingStore::new(s3.clone());
    let node = TestNode::start(second.clone(), &["cacm"], data.path()).await;
    node.wait_ready().await;
    let index_reads: Vec<String> = second
        .reads()
        .iter()
        .filter(|read| is_index_file(&read.key))
        .map(|read| read.key.clone())
        .collect();
    assert!(
        index_reads.is_empty(),
        "restart read index files: {index_reads:?}"
    );
    // Nor the cold files' footers, kept in the data dir: only CURRENT and the manifest.
    let other_reads: Vec<String> = second
        .reads()
        .iter()
        .map(|read| read.key.clone())
        .filter(|key| !key.ends_with("/CURRENT") && !key.ends_with("/manifest.json"))
        .collect();
    assert!(other_reads.is_empty(), "restart read {other_reads:?}");
    // It still answers from both tiers.
    let response = node
        .client()
        .await
        .search(tierdex::api::pb::SearchRequest {
            count_total_hits: true,
            ..search_request("cacm", "computer", 10)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.hot_total_hits > 0 && response.cold_total_hits > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_query_on_an_empty_cache_makes_one_round_of_requests() {
    let server = S3Server::start();
    let s3 = server.store("round", "").await;
    // Requests of one round overlap by 100 ms; a second round could not start before the
    // first answered.
    let recorder = RecordingStore::with_delay(s3, Duration::from_millis(100));
    // Small blocks, so that documents far apart in the cold file need separate requests.
    let mut options = build_options(
        cacm_schema(),
        "hot = [\"citations >= 1\"]",
        vec![shared_data("cacm.jsonl")],
        "cacm",
    );
    options.block_size = 4096;
    tierdex::builder::build(options, recorder.clone())
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    // The cold index local: this counts document reads (a remote cold index adds at most two
    // rounds of index reads before them: tests/cold_remote.rs).
    let node = TestNode::start_with(recorder.clone(), &["cacm"], data.path(), |settings| {
        settings.cold_index = Some("local".into());
    })
    .await;
    node.wait_ready().await;
    let mut client = node.client().await;
    // Cold documents from the start, middle and end of the cold file.
    let cited = cacm_cited_ids();
    let cold: Vec<u64> = cacm_documents()
        .keys()
        .copied()
        .filter(|id| !cited.contains(id))
        .collect();
    let picked = [cold[0], cold[cold.len() / 2], cold[cold.len() - 1]];
    let query = format!("id:{} OR id:{} OR id:{}", picked[0], picked[1], picked[2]);
    let query = query.as_str();
    recorder.clear();
    let response = client
        .search(search_request("cacm", query, 10))
        .await
        .unwrap()
        .into_inner();
    let reads = recorder.reads();
    assert_eq!(response.hits.len(), 3);
    assert!(
        response
            .hits
            .iter()
            .all(|hit| hit.tier == pb::Tier::Cold as i32)
    );
    let stats = response.stats.unwrap();
    assert!(
        reads.len() >= 3,
        "blocks far apart need separate requests: {reads:?}"
    );
    assert_eq!(
        stats.storage_requests,
        reads.len() as u64,
        "the reported count is the real one"
    );
    assert!(
        reads
            .iter()
            .all(|read| read.key.ends_with(".parquet") && read.range.is_some())
    );
    let last_start = reads.iter().map(|read| read.started).max().unwrap();
    let first_end = reads.iter().map(|read| read.finished).min().unwrap();
    assert!(
        last_start < first_end,
        "every request was sent before any answered: one round"
    );

    // The same page again comes from the cache.
    recorder.clear();
    let again = client
        .search(search_request("cacm", query, 10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.stats.as_ref().unwrap().cache_misses, 0);
    assert_eq!(hit_ids(&again), hit_ids(&response));
    assert_eq!(again.stats.unwrap().storage_requests, 0);
    assert!(recorder.reads().is_empty());
    let status = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let cache = status.cache.unwrap();
    assert!(
        cache.hits > 0 && cache.misses > 0 && cache.used_bytes > 0 && cache.hit_rate > 0.0,
        "{cache:?}"
    );
    assert_eq!(cache.capacity_bytes, 64 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_status_codes_and_the_node_keeps_serving() {
    let store_dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = local_store(store_dir.path());
    build_cacm(store.clone(), "hot = [\"citations >= 1\"]", "cacm").await;
    let node = TestNode::start_with(store, &["cacm"], data.path(), |settings| {
        settings.max_results = Some(100)
    })
    .await;
    node.wait_ready().await;
    let mut client = node.client().await;
    let check = |result: Result<tonic::Response<pb::SearchResponse>, tonic::Status>,
                 code: Code,
                 part: &str| {
        let status = result.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains(part),
            "`{part}` not in: {}",
            status.message()
        );
    };
    check(
        client.search(search_request("nope", "x", 10)).await,
        Code::NotFound,
        "unknown index `nope`",
    );
    check(
        client
            .search(search_request("cacm", "title:(unbalanced", 10))
            .await,
        Code::InvalidArgument,
        "at byte",
    );
    check(
        client
            .search(search_request("cacm", "computer nosuchfield:x", 10))
            .await,
        Code::InvalidArgument,
        "at byte 9",
    );
    check(
        client.search(search_request("cacm", "   ", 10)).await,
        Code::InvalidArgument,
        "empty query",
    );
    let mut too_deep = search_request("cacm", "computer", 50);
    too_deep.offset = 60;
    check(
        client.search(too_deep).await,
        Code::InvalidArgument,
        "limit + offset is 110",
    );
    let mut unknown_field = search_request("cacm", "computer", 10);
    unknown_field.fields = vec!["colour".into()];
    check(
        client.search(unknown_field).await,
        Code::InvalidArgument,
        "unknown field `colour`",
    );
    check(
        client
            .search(search_request("cacm", "\"time sharing", 10))
            .await,
        Code::InvalidArgument,
        "at byte",
    );
    let huge = "computer ".repeat(10 * 1024 * 1024 / 9);
    check(
        client.search(search_request("cacm", &huge, 10)).await,
        Code::InvalidArgument,
        "bytes, more than the",
    );
    check(
        client.search(search_request("cacm", "title:*", 10)).await,
        Code::InvalidArgument,
        "not a fast field",
    );
    let mut bad_tiers = search_request("cacm", "computer", 10);
    bad_tiers.tiers = 9;
    check(
        client.search(bad_tiers).await,
        Code::InvalidArgument,
        "tiers",
    );
    let response = client
        .search(search_request("cacm", "computer", 10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.hits.len(), 10, "still serving");
}

/// Holds every range read of hot index files until released.
#[derive(Debug)]
struct Gate {
    open: tokio::sync::watch::Receiver<bool>,
}

#[async_trait::async_trait]
impl StoreHooks for Gate {
    async fn before_read(&self, op: &'static str, key: &str) {
        if op == "get_range" && key.contains("/hot/") {
            let mut open = self.open.clone();
            let _ = open.wait_for(|open| *open).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_until_the_hot_tier_is_ready() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let store_dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = local_store(store_dir.path());
    build_cacm(store.clone(), "hot = [\"citations >= 1\"]", "cacm").await;
    let (release, open) = tokio::sync::watch::channel(false);
    let gated = Arc::new(HookedStore {
        inner: store,
        hooks: Gate { open },
    });
    let node = TestNode::start(gated, &["cacm"], data.path()).await;
    let channel = tonic::transport::Channel::from_shared(node.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let check = |service: &str| HealthCheckRequest {
        service: service.to_string(),
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    for service in ["", "cacm"] {
        let status = health
            .check(check(service))
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            ServingStatus::NotServing as i32,
            "`{service}` while the hot tier loads"
        );
    }
    let mut client = node.client().await;
    let listed = client
        .list_indexes(pb::ListIndexesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.indexes[0].hot, pb::TierState::Loading as i32);
    let early = client
        .search(search_request("cacm", "computer", 10))
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::Unavailable, "{early:?}");

    release.send(true).unwrap();
    node.wait_ready().await;
    for service in ["", "cacm"] {
        let mut serving = false;
        for _ in 0..100 {
            if health
                .check(check(service))
                .await
                .unwrap()
                .into_inner()
                .status
                == ServingStatus::Serving as i32
            {
                serving = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(serving, "`{service}` serving once loaded");
    }
    let listed = client
        .list_indexes(pb::ListIndexesRequest {})
        .await
        .unwrap()
        .into_inner();
    let index = &listed.indexes[0];
    assert_eq!(
        (index.hot, index.cold),
        (pb::TierState::Ready as i32, pb::TierState::Ready as i32)
    );
    assert_eq!(index.hot_docs + index.cold_docs, 3204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_clients_get_no_errors() {
    let server = S3Server::start();
    let s3 = server.store("load", "").await;
    let data = tempfile::tempdir().unwrap();
    let node = cacm_node(s3, data.path()).await;
    let queries = Arc::new(cacm_query_texts());
    let clients = (0..64).map(|client_index| {
        let addr = node.addr.clone();
        let queries = queries.clone();
        tokio::spawn(async move {
            let mut client = pb::tierdex_client::TierdexClient::connect(addr)
                .await
                .unwrap();
            for round in 0..25 {
                let query = &queries[(client_index * 7 + round) % queries.len()];
                let mut request = search_request("cacm", query, 10);
                request.offset = (round % 3) as u32;
                if round % 5 == 0 {
                    request.tiers = pb::Tiers::HotOnly as i32;
                }
                let response = client
                    .search(request)
                    .await
                    .unwrap_or_else(|status| panic!("{query}: {status}"));
                assert!(!response.into_inner().degraded);
            }
        })
    });
    for client in futures::future::join_all(clients).await {
        client.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_exact_integers_selected_fields_and_tiers() {
    let input = tempfile::NamedTempFile::with_suffix(".jsonl").unwrap();
    let big = u64::MAX - 7;
    let lines = [
        format!(
            r#"{{"id": {big}, "name": "hot big", "delta": -9007199254740993, "tags": ["a", "b"]}}"#
        ),
        r#"{"id": 9007199254740993, "name": "cold odd", "delta": 9007199254740993, "tags": "c"}"#
            .to_string(),
        r#"{"id": 3, "name": "cold small", "delta": 0}"#.to_string(),
    ];
    std::fs::write(input.path(), lines.join("\n")).unwrap();
    let schema = Arc::new(
        tierdex::schema::IndexSchema::from_toml_str(
            r#"
id_field = "id"
default_search_fields = ["name"]
[[field]]
name = "id"
type = "u64"
[[field]]
name = "name"
type = "text"
stored = true
[[field]]
name = "delta"
type = "i64"
stored = true
[[field]]
name = "tags"
type = "keyword"
stored = true
"#,
            "schema",
        )
        .unwrap(),
    );
    let store_dir = tempfile::tempdir().unwrap();
    let store = local_store(store_dir.path());
    let options = build_options(
        schema,
        "hot = [\"name LIKE 'hot%'\"]",
        vec![input.path().to_path_buf()],
        "ints",
    );
    tierdex::builder::build(options, store.clone())
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let node = TestNode::start(store, &["ints"], data.path()).await;
    node.wait_ready().await;
    let mut client = node.client().await;

    let response = client
        .search(search_request("ints", "hot OR cold", 10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.total_hits, 3);
    assert_eq!((response.hot_total_hits, response.cold_total_hits), (1, 2));
    let by_id: std::collections::HashMap<u64, &pb::Hit> = response
        .hits
        .iter()
        .map(|hit| match hit.id.as_ref().unwrap().kind {
            Some(pb::value::Kind::U64(id)) => (id, hit),
            ref other => panic!("{other:?}"),
        })
        .collect();
    let field = |hit: &pb::Hit, name: &str| {
        hit.fields
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.value.clone()?.kind)
    };
    assert_eq!(by_id[&big].tier, pb::Tier::Hot as i32);
    assert_eq!(
        field(by_id[&big], "delta"),
        Some(pb::value::Kind::I64(-9007199254740993))
    );
    assert_eq!(field(by_id[&big], "id"), Some(pb::value::Kind::U64(big)));
    let odd = by_id[&9007199254740993];
    assert_eq!(odd.tier, pb::Tier::Cold as i32);
    assert_eq!(
        field(odd, "delta"),
        Some(pb::value::Kind::I64(9007199254740993))
    );
    // `tags` was multi-valued in the input, so every document gets a list.
    assert_eq!(
        field(odd, "tags"),
        Some(pb::value::Kind::Strings(pb::StringList {
            values: vec!["c".into()]
        }))
    );
    assert_eq!(field(by_id[&3], "tags"), None, "absent stays absent");

    let mut selected = search_request("ints", "cold", 10);
    selected.fields = vec!["name".into()];
    let response = client.search(selected).await.unwrap().into_inner();
    assert!(!response.hits.is_empty());
    for hit in &response.hits {
        let names: Vec<&str> = hit.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["name"]);
    }

    let mut hot_only = search_request("ints", "hot OR cold", 10);
    hot_only.tiers = pb::Tiers::HotOnly as i32;
    let response = client.search(hot_only).await.unwrap().into_inner();
    assert_eq!((response.hits.len(), response.cold_total_hits), (1, 0));
    assert!(!response.degraded);
    // A document scores the same whichever tiers were asked for: statistics are the corpus's.
    let both = client
        .search(search_request("ints", "hot OR cold", 10))
        .await
        .unwrap()
        .into_inner();
    let hot_hit = &response.hits[0];
    let same = both
        .hits
        .iter()
        .find(|hit| hit.id == hot_hit.id)
        .expect("the hot hit is in the both-tier answer");
    assert!(
        (same.score - hot_hit.score).abs() < 1e-6,
        "hot-only score {} vs both-tier score {}",
        hot_hit.score,
        same.score
    );

    // The CLI's JSON: one object with exact 64-bit integers.
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        tokio::task::spawn_blocking(move || tierdex_bin().args(args).output().unwrap())
    };
    let addr = node.addr.clone();
    let output = run(&[
        "query",
        "--addr",
        &addr,
        "--index",
        "ints",
        "--json",
        "hot OR cold",
    ])
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains(&big.to_string()), "{text}");
    let json: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(json["total_hits"], 3);
    assert_eq!(json["degraded"], false);
    assert_eq!(json["hits"].as_array().unwrap().len(), 3);
    let tiers: Vec<&str> = json["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["tier"].as_str().unwrap())
        .collect();
    assert!(tiers.contains(&"hot") && tiers.contains(&"cold"));

    // The table, without --index (the node serves one): each numeric id printed once.
    let output = run(&["query", "--addr", &addr, "hot OR cold"])
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8(output.stdout).unwrap();
    let big_line = table
        .lines()
        .find(|line| line.contains(&big.to_string()))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(big_line.matches(&big.to_string()).count(), 1, "{table}");
    assert!(!big_line.contains("id: "), "{table}");
    // `tierdex status` prints the Status answer.
    let output = run(&["status", "--addr", &addr]).await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = String::from_utf8(output.stdout).unwrap();
    assert!(
        status.contains("index ints: version ")
            && status.contains("hot ready (1 docs), cold ready (2 docs)")
            && status.contains("breaker closed"),
        "{status}"
    );
}

/// The documents of CACM whose `field` holds the token `word` as the `default` tokenizer cuts
/// it (split on what is not alphanumeric, lowercased): the term's document frequency, worked
/// out apart from tantivy.
fn cacm_doc_freq(field: &str, word: &str) -> u64 {
    cacm_documents()
        .values()
        .filter(|document| {
            document[field].as_str().is_some_and(|text| {
                text.split(|c: char| !c.is_alphanumeric())
                    .any(|token| token.to_lowercase() == word)
            })
        })
        .count() as u64
}

/// A BM25 ranking of the top hits, which block-max pruning bounds, may count ten times
/// `inline_postings` before it hands its worker off; a rank profile, which reads every posting
/// it counts, only `inline_postings` (`cost::ranking_budget`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bm25_ranking_stays_on_its_worker_ten_times_longer_than_a_profile() {
    let base = std::fs::read_to_string(fixture("cacm/schema.toml")).unwrap();
    let text = format!("{base}\n[ranking.cited]\nscore = \"bm25 * (1 + ln(1 + citations))\"\n");
    let schema =
        Arc::new(tierdex::schema::IndexSchema::from_toml_str(&text, "schema.toml").unwrap());
    let store_dir = tempfile::tempdir().unwrap();
    let store = local_store(store_dir.path());
    let options = build_options(
        schema,
        "hot = [\"citations >= 1\"]",
        vec![shared_data("cacm.jsonl")],
        "cacm",
    );
    tierdex::builder::build(options, store.clone())
        .await
        .unwrap();
    // `computer` over the default fields: its postings in both, over both tiers.
    let bound = cacm_doc_freq("title", "computer") + cacm_doc_freq("abstract", "computer");
    assert!(bound > 20, "a term with enough postings: {bound}");
    let handed_off = |inline_postings: u64, profile: &'static str| {
        let store = store.clone();
        async move {
            let data = tempfile::tempdir().unwrap();
            let node = TestNode::start_with(store, &["cacm"], data.path(), |settings| {
                settings.inline_postings = Some(inline_postings);
            })
            .await;
            node.wait_ready().await;
            let request = tierdex::node::search::SearchRequest {
                query: "computer".into(),
                limit: 10,
                profile: profile.into(),
                ..Default::default()
            };
            let result = node.node.search("cacm", request).await.unwrap();
            result.stats.handed_off
        }
    };
    // At exactly its postings, a profile stays on its worker: the bound above is the node's.
    assert!(!handed_off(bound, "cited").await);
    // One posting fewer: the profile hands off, BM25 does not.
    assert!(handed_off(bound - 1, "cited").await);
    assert!(!handed_off(bound - 1, "").await);
    // BM25 hands off once its postings are more than ten times the setting.
    assert!(handed_off((bound - 1) / 10, "").await);
    assert!(!handed_off(bound.div_ceil(10), "").await);
}
