//! `/metrics`: a node serving CACM through the fault proxy answers hot, cold, degraded and bad
//! searches; the scrape parses with an independent parser (Python `prometheus_client`) and the
//! counters say what the test did. Every metric name the shipped alert rules and dashboard use
//! (tools/deploy) is in that scrape, but the fleet's, which a single-member fleet's scrape has.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use fault_proxy::{FaultProxy, Faults};
use tierdex::api::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `path` from `address` over plain HTTP/1.1: (status line, body).
async fn http_get(address: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: tierdex\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

struct Sample {
    name: String,
    labels: serde_json::Map<String, serde_json::Value>,
    value: f64,
}

fn parse(text: &str) -> Vec<Sample> {
    let mut child = std::process::Command::new(python())
        .arg(repo_root().join("tests/python/parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "not the Prometheus text format: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let samples: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    samples
        .into_iter()
        .map(|sample| Sample {
            name: sample["name"].as_str().unwrap().to_string(),
            labels: sample["labels"].as_object().unwrap().clone(),
            value: sample["value"].as_f64().unwrap(),
        })
        .collect()
}

/// The value of the sample named `name` whose labels include `labels` (0 when absent).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| sample.name == name)
        .filter(|sample| {
            labels.iter().all(|(key, wanted)| {
                sample.labels.get(*key).and_then(|v| v.as_str()) == Some(wanted)
            })
        })
        .map(|sample| sample.value)
        .sum()
}

/// Every metric name the alert rules and the Grafana dashboard use, as a scrape names them
/// (`tools/deploy/metric_names.py`).
fn deployed_metric_names() -> BTreeSet<String> {
    let deploy = repo_root().join("tools/deploy");
    let output = std::process::Command::new(python())
        .arg(deploy.join("metric_names.py"))
        .arg(deploy.join("prometheus/alerts.yml"))
        .arg(deploy.join("grafana/tierdex.json"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "metric_names.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let names: BTreeSet<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    // The files were read: the dashboard alone charts far more than this.
    assert!(names.len() >= 20, "{names:?}");
    names
}

/// Names a node outside a fleet never exports, and why; the single-member fleet test finds
/// them in its member's scrape.
const FLEET_ONLY: &[(&str, &str)] = &[(
    "tierdex_fleet_replica_requests_total",
    "requests a fleet member's fan-out sends to shard replicas: a node outside a fleet sends none",
)];

/// More postings than any term query over CACM can read (3,000 term and field pairs in one
/// query, each in every document).
const INLINE_POSTINGS: u64 = 10_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_hot_cold_degraded_and_failed_searches() {
    let server = S3Server::start();
    let direct = server.store("metrics", "").await;
    let summary = build_cacm(direct, "hot = [\"citations >= 1\"]", "cacm").await;
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    let through_proxy = s3_store_at(&proxy.url(), "metrics", "").await;
    let data = tempfile::tempdir().unwrap();
    let node = fault_node(through_proxy, "cacm", data.path(), |settings| {
        settings.breaker_cool_down = Some("60s".into());
        settings.inline_postings = Some(INLINE_POSTINGS);
        // CACM's whole cold tier would fit on disk: without a disk tier, storage refusing
        // shows as degraded pages.
        settings.disk_cache_size = Some("0".into());
    })
    .await;
    node.wait_ready().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = tokio::spawn(tierdex::server::run_metrics(
        listener,
        node.node.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    let (status, before) = http_get(address, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let before = parse(&before);
    assert_eq!(value(&before, "tierdex_searches_total", &[]), 0.0);
    let (status, _) = http_get(address, "/nothing").await;
    assert!(status.contains("404"), "{status}");

    let mut client = node.client().await;
    let queries = cacm_query_texts();
    // Hot tier only: never storage.
    let hot_only = 5;
    for query in queries.iter().take(hot_only) {
        let mut request = search_request("cacm", query, 10);
        request.tiers = pb::Tiers::HotOnly as i32;
        client.search(request).await.unwrap();
    }
    // Both tiers: some pages read cold documents from storage (the caches are tiny).
    let (mut both, mut with_requests, mut skipped) = (0, 0u64, 0);
    let mut degraded_with_storage_up = 0;
    for query in queries.iter().skip(hot_only).take(20) {
        let response = client
            .search(search_request("cacm", query, 10))
            .await
            .unwrap()
            .into_inner();
        both += 1;
        with_requests += response.stats.unwrap().storage_requests;
        skipped += usize::from(response.cold_skipped);
        // Storage is up, but a machine short of CPU can outlast the 300 ms storage timeout.
        degraded_with_storage_up += usize::from(response.degraded);
    }
    // Ordered by citations, a page the cited (hot) documents fill leaves the cold tier out,
    // decided from its value ranges alone.
    let mut request = search_request("cacm", "computer", 10);
    request.order_by = "citations DESC".into();
    let response = client.search(request).await.unwrap().into_inner();
    assert!(response.cold_skipped, "the cold tier was searched");
    both += 1;
    with_requests += response.stats.unwrap().storage_requests;
    skipped += 1;
    assert!(with_requests > 0, "some pages read storage");
    let sent_with_storage_up = with_requests;
    // Term queries over CACM's 3,204 documents stay within `INLINE_POSTINGS`: the searches above
    // ranked on their worker. A range's cost is unknown: it hands its worker off.
    let handed_off = 2;
    for _ in 0..handed_off {
        let mut request = search_request("cacm", "citations:[10 TO 40]", 10);
        request.tiers = pb::Tiers::HotOnly as i32;
        client.search(request).await.unwrap();
    }
    // A bad query.
    let bad = client.search(search_request("cacm", "title:(", 10)).await;
    assert_eq!(bad.unwrap_err().code(), tonic::Code::InvalidArgument);
    // Storage refuses connections: a page that needs cold documents answers degraded.
    proxy.set(Faults {
        refuse: true,
        ..Faults::none()
    });
    let mut degraded = 0;
    for query in queries.iter().skip(30).take(10) {
        let mut request = tonic::Request::new(search_request("cacm", query, 10));
        request.set_timeout(Duration::from_secs(5));
        if let Ok(response) = client.search(request).await {
            let response = response.into_inner();
            degraded += usize::from(response.degraded);
            // Requests sent before storage was given up on count too.
            with_requests += response.stats.unwrap().storage_requests;
        }
    }
    assert!(degraded > 0, "some page needed cold documents");
    proxy.set(Faults::none());

    let (_, text) = http_get(address, "/metrics").await;
    let after = parse(&text);
    let index = [("index", "cacm")];
    let outcome = |name: &str| {
        value(
            &after,
            "tierdex_searches_total",
            &[("index", "cacm"), ("outcome", name)],
        )
    };
    assert_eq!(outcome("invalid_query"), 1.0);
    assert_eq!(
        outcome("degraded"),
        (degraded + degraded_with_storage_up) as f64
    );
    let answered = outcome("ok") + outcome("degraded");
    assert!(
        answered >= (hot_only + both + handed_off + degraded) as f64,
        "{answered}"
    );
    // Every answered search is in the total-time histogram, once.
    assert_eq!(
        value(
            &after,
            "tierdex_search_duration_seconds_count",
            &[("index", "cacm"), ("phase", "total")]
        ),
        answered
    );
    assert_eq!(
        value(&after, "tierdex_search_storage_requests_total", &index),
        with_requests as f64
    );
    let without = value(&after, "tierdex_searches_without_storage_total", &index);
    assert!(
        without >= hot_only as f64 && without < answered,
        "{without} of {answered}"
    );
    assert_eq!(
        value(&after, "tierdex_cold_searches_skipped_total", &index),
        skipped as f64
    );
    assert_eq!(
        value(&after, "tierdex_searches_handed_off_total", &index),
        handed_off as f64
    );
    assert_eq!(
        value(
            &after,
            "tierdex_serving_version_info",
            &[("index", "cacm"), ("version", &summary.manifest.version)]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "tierdex_tier_ready",
            &[("index", "cacm"), ("tier", "cold")]
        ),
        1.0
    );
    assert_eq!(
        value(&after, "tierdex_hot_tier_in_store", &[("index", "cacm")]),
        0.0
    );
    // A fresh data dir: the whole hot index was downloaded, and all of it landed; the cold
    // index stays in the store (`cold_index = remote`, the default).
    let index_bytes = summary.manifest.hot.index_bytes as f64;
    assert_eq!(
        value(&after, "tierdex_rehydration_total_bytes", &index),
        index_bytes
    );
    assert_eq!(
        value(&after, "tierdex_rehydration_done_bytes", &index),
        index_bytes
    );
    assert_eq!(
        value(&after, "tierdex_block_cache_capacity_bytes", &[]),
        64.0 * 1024.0
    );
    assert!(value(&after, "tierdex_block_cache_misses_total", &[]) > 0.0);
    // A 64 KiB cache over these reads had to make room.
    assert!(value(&after, "tierdex_block_cache_evictions_total", &[]) > 0.0);
    // Every storage request of the searches while storage was up went to the primary store,
    // along with the rehydration's. (Once storage refuses, the breaker opens: the requests a
    // search then counts are refused before they reach a store.) The refused ones count as
    // errors.
    let reads = value(
        &after,
        "tierdex_storage_requests_total",
        &[("store", "primary"), ("operation", "get_range")],
    );
    assert!(
        reads >= sent_with_storage_up as f64,
        "{reads} < {sent_with_storage_up}"
    );
    assert!(
        value(
            &after,
            "tierdex_storage_errors_total",
            &[("store", "primary"), ("kind", "unavailable")]
        ) > 0.0
    );
    assert_eq!(
        value(
            &after,
            "tierdex_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let breaker: f64 = ["closed", "open", "half_open"]
        .iter()
        .map(|state| value(&after, "tierdex_storage_breaker_state", &[("state", state)]))
        .sum();
    assert_eq!(breaker, 1.0, "one state at a time");
    // What the alert rules and the dashboard chart is in this scrape of a node that served hot,
    // cold, degraded, handed-off and bad searches and saw storage fail.
    let deployed = deployed_metric_names();
    let scraped: BTreeSet<&str> = after.iter().map(|sample| sample.name.as_str()).collect();
    let missing: Vec<&String> = deployed
        .iter()
        .filter(|name| !scraped.contains(name.as_str()))
        .filter(|name| !FLEET_ONLY.iter().any(|(fleet_only, _)| fleet_only == name))
        .collect();
    assert!(
        missing.is_empty(),
        "used by tools/deploy but not in the scrape: {missing:?}"
    );
    for (name, why) in FLEET_ONLY {
        assert!(deployed.contains(*name), "{name} is no longer used: {why}");
        assert!(
            !scraped.contains(name),
            "{name} is exported outside a fleet"
        );
    }
    // Bounded labels: no query text in any label.
    for sample in &after {
        for label in sample.labels.values() {
            let label = label.as_str().unwrap();
            assert!(!queries.iter().any(|query| query == label), "{label}");
        }
    }
    let _ = stop.send(());
    metrics.await.unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_member_exports_the_fan_out_metrics_the_dashboard_uses() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(&dir.path().join("store"));
    common::oracle::build_cacm_styled(
        store.clone(),
        "hot = [\"citations >= 1\"]",
        common::oracle::IdStyle::Numbers,
        "cacm",
        2,
    )
    .await;
    // A fleet of one: its fan-outs ask its own shards, counted like any replica's.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = listener.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let settings = tierdex::config::Settings {
        store: Some(store.uri().to_string()),
        indexes: Some(vec!["cacm".into()]),
        listen: Some(me.clone()),
        data_dir: Some(data.path().to_path_buf()),
        peers: Some(vec![me.clone()]),
        replicas: Some(1),
        fleet_refresh: Some("100ms".into()),
        poll_interval: Some("0s".into()),
        ..Default::default()
    };
    let mut member = common::fleet::start_member(store, listener, settings, None).await;
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_address = metrics_listener.local_addr().unwrap();
    member.tasks.push(tokio::spawn(tierdex::server::run_metrics(
        metrics_listener,
        member.node.clone(),
        std::future::pending(),
    )));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = loop {
        if let Ok(client) = pb::tierdex_client::TierdexClient::connect(format!("http://{me}")).await
        {
            break client;
        }
        assert!(Instant::now() < deadline, "the member never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut answered = 0;
    for query in cacm_query_texts().iter().cycle() {
        if let Ok(response) = client.search(search_request("cacm", query, 10)).await
            && !response.get_ref().partial
        {
            answered += 1;
            if answered == 5 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the fleet never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, text) = http_get(metrics_address, "/metrics").await;
    let samples = parse(&text);
    for (name, why) in FLEET_ONLY {
        assert!(
            samples.iter().any(|sample| sample.name == *name),
            "{name} ({why}) is not in a fleet member's scrape"
        );
    }
    assert!(
        value(
            &samples,
            "tierdex_fleet_replica_requests_total",
            &[("operation", "rank"), ("outcome", "ok")]
        ) >= answered as f64
    );
    drop(member);
}
