//! `tierdex rules replay` and `suggest`, run as a user runs them (the binary, against the
//! S3-compatible server), checked against what a node serving the same version answers and
//! what the builder makes of the suggested rules.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use tierdex::api::pb;
use tierdex::store::BlobStore;

const RULES: &str = "hot = [\"citations >= 3\", \"date >= '1978-01'\"]";

/// A log mixing plain and counted lines, with one of each kind of bad line. Returns the text
/// and the usable (count, query) lines.
fn query_log() -> (Vec<u8>, Vec<(u64, String)>) {
    let mut queries: Vec<String> = cacm_query_texts();
    queries.extend(cacm_structured_queries());
    let mut text = Vec::new();
    let mut usable = Vec::new();
    for (at, query) in queries.iter().enumerate() {
        if at % 5 == 0 {
            text.extend(format!("3\t{query}\n").bytes());
            usable.push((3, query.clone()));
        } else {
            text.extend(format!("{query}\n").bytes());
            usable.push((1, query.clone()));
        }
        // A repeat: computed once, counted twice.
        if at % 7 == 0 {
            text.extend(format!("{query}\n").bytes());
            usable.push((1, query.clone()));
        }
    }
    text.extend(b"\n");
    text.extend(b"many\tcomputer programs\n");
    text.extend(b"invalid \xff\xfe utf-8\n");
    text.extend(b"title:(unclosed\n");
    text.extend(b"nosuchfield:value\n");
    (text, usable)
}

fn line_of(log: &[u8], needle: &[u8]) -> u64 {
    let at = log
        .windows(needle.len())
        .position(|window| window == needle)
        .unwrap();
    1 + log[..at].iter().filter(|byte| **byte == b'\n').count() as u64
}

fn run_json(args: &[&str]) -> serde_json::Value {
    let output = tierdex_bin().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "tierdex {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "not JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// `tierdex rules replay --json` of `log` on `index`, ranked by `order_by` (empty: BM25).
fn replay_json(uri: &str, index: &str, log: &Path, order_by: &str) -> serde_json::Value {
    let mut args = vec![
        "rules",
        "replay",
        "--store",
        uri,
        "--index",
        index,
        "--queries",
        log.to_str().unwrap(),
        "--json",
    ];
    if !order_by.is_empty() {
        args.extend(["--order-by", order_by]);
    }
    run_json(&args)
}

/// What a node answers for the log: (volume, hits, unique, unique hits, zero-result volume).
async fn node_hit_counts(
    client: &mut pb::tierdex_client::TierdexClient<tonic::transport::Channel>,
    usable: &[(u64, String)],
    order_by: &str,
) -> (u64, u64, u64, u64, u64) {
    let mut pages: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    let (mut volume, mut hits, mut empty) = (0, 0, 0);
    for (count, query) in usable {
        let mut request = search_request("cacm", query, 10);
        request.order_by = order_by.to_string();
        request.fields = vec!["id".into()];
        let response = client.search(request).await.unwrap().into_inner();
        assert!(!response.degraded, "{query}: degraded");
        let hit = response
            .hits
            .iter()
            .all(|hit| hit.tier == pb::Tier::Hot as i32);
        volume += count;
        hits += if hit { count } else { &0 };
        empty += if response.hits.is_empty() { count } else { &0 };
        pages.insert(query, (hit, response.hits.is_empty()));
    }
    let unique_hits = pages.values().filter(|(hit, _)| *hit).count() as u64;
    (volume, hits, pages.len() as u64, unique_hits, empty)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reports_the_hit_rate_a_node_serves_and_locates_bad_lines() {
    let s3 = S3Server::start();
    let store = s3.store("rules", "replay").await;
    let summary = build_cacm(store.clone(), RULES, "cacm").await;
    let uri = s3.uri("rules", "replay");
    let dir = tempfile::tempdir().unwrap();
    let (log, usable) = query_log();
    let log_path = dir.path().join("queries.log");
    std::fs::write(&log_path, &log).unwrap();

    // Replay counts a page's document reads: what a node whose cold index is local sends (a
    // remote cold index adds its index rounds, which replay does not plan).
    let node = TestNode::start_with(
        store.clone() as Arc<dyn BlobStore>,
        &["cacm"],
        dir.path(),
        |settings| settings.cold_index = Some("local".into()),
    )
    .await;
    node.wait_ready().await;
    let mut client = node.client().await;

    // The requests replay counts for a page are those a node with empty caches sends.
    let one = dir.path().join("one.log");
    std::fs::write(&one, "algorithm\n").unwrap();
    let planned = replay_json(&uri, "cacm", &one, "");
    let response = client
        .search(search_request("cacm", "algorithm", 10))
        .await
        .unwrap()
        .into_inner();
    let cold_hits = response
        .hits
        .iter()
        .filter(|hit| hit.tier == pb::Tier::Cold as i32)
        .count();
    assert!(cold_hits > 0, "the page must need cold documents");
    assert_eq!(planned["cold_documents_per_query"]["max"], cold_hits as f64);
    assert_eq!(
        planned["storage_requests_per_query"]["max"],
        response.stats.unwrap().storage_requests as f64
    );
    for order_by in ["", "citations DESC"] {
        let report = replay_json(&uri, "cacm", &log_path, order_by);
        let (volume, hits, unique, unique_hits, empty) =
            node_hit_counts(&mut client, &usable, order_by).await;
        assert!(hits > 0 && hits < volume, "{order_by}: {hits} of {volume}");
        assert_eq!(report["queries"], volume, "{order_by}");
        assert_eq!(report["unique_queries"], unique, "{order_by}");
        assert_eq!(report["hit_queries"], hits, "{order_by}");
        assert_eq!(report["unique_hit_queries"], unique_hits, "{order_by}");
        let close = |field: &str, expected: f64| {
            let got = report[field].as_f64().unwrap();
            assert!(
                (got - expected).abs() < 1e-12,
                "{order_by} {field}: {got} vs {expected}"
            );
        };
        close("hit_rate", hits as f64 / volume as f64);
        close("unique_hit_rate", unique_hits as f64 / unique as f64);
        assert_eq!(report["zero_result_queries"], empty, "{order_by}");
        assert_eq!(report["version"], summary.manifest.version.as_str());

        // Every hot document on a page came in by one of the two rules: the page slots add up.
        let rules = report["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[2]["page_slots"], 0, "{rules:?}");
        assert!(rules[0]["page_slots"].as_u64().unwrap() > 0, "{rules:?}");
        assert!(rules[1]["page_slots"].as_u64().unwrap() > 0, "{rules:?}");
        let cold = &report["cold_documents_per_query"];
        let requests = &report["storage_requests_per_query"];
        assert!(cold["mean"].as_f64().unwrap() > 0.0);
        // A cold document costs at least one request, and one read covers a page's documents
        // on the same blocks.
        assert!(requests["max"].as_f64().unwrap() >= 1.0);
        assert!(requests["max"].as_f64().unwrap() <= cold["max"].as_f64().unwrap() * 4.0);

        let problems = &report["problems"];
        assert_eq!(problems["blank"], 1);
        assert_eq!(problems["unreadable"], 2);
        assert_eq!(problems["query"], 2);
        let located: Vec<(u64, &str)> = problems["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|problem| {
                (
                    problem["line"].as_u64().unwrap(),
                    problem["kind"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            located,
            vec![
                (line_of(&log, b"\n\nmany") + 1, "blank"),
                (line_of(&log, b"many\t"), "unreadable"),
                (line_of(&log, b"invalid \xff"), "unreadable"),
                (line_of(&log, b"title:(unclosed"), "query"),
                (line_of(&log, b"nosuchfield"), "query"),
            ]
        );
    }
    node.stop().await;

    // A log with nothing usable is refused, naming the file; so is a missing one.
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, "\n  \n").unwrap();
    for log in [&empty, &dir.path().join("missing.log")] {
        let output = tierdex_bin()
            .args([
                "rules",
                "replay",
                "--store",
                &uri,
                "--index",
                "cacm",
                "--queries",
            ])
            .arg(log)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let name = log.file_name().unwrap().to_str().unwrap();
        assert!(stderr.contains(name), "{stderr}");
    }
}

fn write_log(path: &Path, queries: &[String]) {
    std::fs::write(path, queries.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggested_rules_build_to_the_hot_size_and_hit_rate_reported() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = local_store(store_dir.path());
    build_cacm(store.clone(), RULES, "cacm").await;
    let uri = store_dir.path().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut queries = cacm_query_texts();
    queries.extend(cacm_structured_queries());
    let (train, holdout) = queries.split_at(queries.len() / 2);
    let (train_path, holdout_path) = (dir.path().join("train.log"), dir.path().join("holdout.log"));
    write_log(&train_path, train);
    write_log(&holdout_path, holdout);
    let plot = dir.path().join("curve.svg");
    let report = run_json(&[
        "rules",
        "suggest",
        "--store",
        &uri,
        "--index",
        "cacm",
        "--train",
        train_path.to_str().unwrap(),
        "--holdout",
        holdout_path.to_str().unwrap(),
        "--budget",
        "30%",
        "--order-by",
        "citations DESC",
        "--plot",
        plot.to_str().unwrap(),
        "--pins",
        dir.path().join("pins.txt").to_str().unwrap(),
        "--json",
    ]);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("upper bound"),
        "{svg:.200}"
    );
    let budget = report["budget_docs"].as_u64().unwrap();
    assert_eq!(budget, 3204 * 30 / 100);
    let candidates = report["candidates"].as_array().unwrap();
    assert!(!candidates.is_empty(), "{report}");
    // Ordered by the validation figure, from the training log alone.
    let validation: Vec<f64> = candidates
        .iter()
        .map(|candidate| candidate["validation_hit_rate"].as_f64().unwrap())
        .collect();
    assert!(
        validation.windows(2).all(|pair| pair[0] >= pair[1]),
        "{validation:?}"
    );
    let best = candidates
        .iter()
        .find(|candidate| candidate["pins"] == 0)
        .expect("a rule without pins");
    let hot: Vec<String> = best["hot"]
        .as_array()
        .unwrap()
        .iter()
        .map(|expression| expression.as_str().unwrap().to_string())
        .collect();
    assert!(best["hot_docs"].as_u64().unwrap() <= budget);
    assert_eq!(
        report["current"]["hot"],
        serde_json::json!(["citations >= 3", "date >= '1978-01'"])
    );

    // The builder makes exactly the reported hot tier of the suggested rules, and replaying the
    // holdout log on that build gives the reported holdout hit rate.
    let rules = format!("hot = {}", serde_json::to_string(&hot).unwrap());
    let built = build_cacm(store.clone(), &rules, "suggested").await;
    assert_eq!(
        built.manifest.hot.docs,
        best["hot_docs"].as_u64().unwrap(),
        "{rules}"
    );
    let replayed = replay_json(&uri, "suggested", &holdout_path, "citations DESC");
    let (replayed, reported) = (
        replayed["hit_rate"].as_f64().unwrap(),
        best["holdout_hit_rate"].as_f64().unwrap(),
    );
    assert!(
        (replayed - reported).abs() < 1e-12,
        "{rules}: {replayed} vs {reported}"
    );
    // Ranking by citations, a rule on citations is what a page needs: it beats nothing.
    assert!(best["train_hit_rate"].as_f64().unwrap() > 0.5, "{best}");

    // A pin list completes a rule: the builder keeps those ids hot too, and the figures hold.
    let pinned = candidates
        .iter()
        .find(|candidate| candidate["pins"].as_u64().unwrap() > 0)
        .expect("a candidate with pins");
    let pins_file = pinned["hot_ids"].as_str().unwrap();
    let pin_count = std::fs::read_to_string(pins_file).unwrap().lines().count() as u64;
    assert_eq!(pin_count, pinned["pins"].as_u64().unwrap());
    std::fs::copy(pins_file, store_dir.path().join("pins.txt")).unwrap();
    let rules_path = store_dir.path().join("rules.toml");
    std::fs::write(
        &rules_path,
        format!(
            "hot = {}\nhot_ids = \"pins.txt\"\n",
            serde_json::to_string(&pinned["hot"]).unwrap()
        ),
    )
    .unwrap();
    let output = tierdex_bin()
        .args(["build", "--schema"])
        .arg(fixture("cacm/schema.toml"))
        .arg("--rules")
        .arg(&rules_path)
        .arg("--input")
        .arg(shared_data("cacm.jsonl"))
        .args(["--store", &uri, "--index", "pinned", "--no-progress"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replayed = replay_json(&uri, "pinned", &holdout_path, "citations DESC");
    assert_eq!(replayed["hot_docs"], pinned["hot_docs"], "{pinned}");
    let (replayed, reported) = (
        replayed["hit_rate"].as_f64().unwrap(),
        pinned["holdout_hit_rate"].as_f64().unwrap(),
    );
    assert!(
        (replayed - reported).abs() < 1e-12,
        "{pinned}: {replayed} vs {reported}"
    );
    // Pinning every training page's documents makes every training query a hit when the
    // budget holds them.
    let pins_only = candidates
        .iter()
        .find(|candidate| candidate["hot"].as_array().unwrap().is_empty())
        .expect("a pins-only candidate");
    assert_eq!(pins_only["train_hit_rate"], 1.0, "{pins_only}");

    let curve = report["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 5);
    for point in curve {
        assert!(
            point["suggested"]["hot_docs"].as_u64().unwrap()
                <= point["budget_docs"].as_u64().unwrap()
        );
    }
}

/// `tierdex <args>` expected to fail: its stderr.
fn run_failing(args: &[&str]) -> String {
    let output = tierdex_bin().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "tierdex {args:?} succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_with_no_usable_line_fails_naming_it_with_a_hint_for_id_prefixes() {
    let store_dir = tempfile::tempdir().unwrap();
    build_cacm(local_store(store_dir.path()), RULES, "cacm").await;
    let uri = store_dir.path().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    // The TB05 web log as shipped: `N:query` on every line. tantivy reads `N:` as a field
    // named N, which the schema lacks: every line is rejected.
    let web = std::fs::read_to_string(shared_data("web-queries-tb05.txt")).unwrap();
    let web: Vec<&str> = web.lines().collect();
    let (train_path, holdout_path) = (
        dir.path().join("web-train.txt"),
        dir.path().join("web-holdout.txt"),
    );
    std::fs::write(&train_path, web[..300].join("\n") + "\n").unwrap();
    std::fs::write(&holdout_path, web[300..500].join("\n") + "\n").unwrap();
    let good_path = dir.path().join("good.log");
    write_log(&good_path, &cacm_query_texts());
    let suggest = |train: &Path, holdout: &Path| {
        run_failing(&[
            "rules",
            "suggest",
            "--store",
            &uri,
            "--index",
            "cacm",
            "--train",
            train.to_str().unwrap(),
            "--holdout",
            holdout.to_str().unwrap(),
            "--no-progress",
        ])
    };

    let stderr = suggest(&train_path, &holdout_path);
    let first = web[0];
    let number = first.split_once(':').unwrap().0;
    for expected in [
        format!(
            "query log {}: no usable query in its 300 lines",
            train_path.display()
        ),
        "300 distinct queries that do not parse".to_string(),
        // The first bad lines, located, with tantivy's reason.
        format!("{}:1: `{first}`", train_path.display()),
        format!("{}:2: `{}`", train_path.display(), web[1]),
        format!("Field does not exist: '{number}'"),
        format!("hint: every line starts with a number and a colon (`{number}:`)"),
        "id prefix".to_string(),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    // Five lines shown, not 300.
    assert!(
        !stderr.contains(&format!("{}:6:", train_path.display())),
        "{stderr}"
    );

    // A good training log and a bad holdout: the holdout is named.
    let stderr = suggest(&good_path, &holdout_path);
    assert!(
        stderr.contains(&format!(
            "query log {}: no usable query in its 200 lines",
            holdout_path.display()
        )),
        "{stderr}"
    );

    let stderr = run_failing(&[
        "rules",
        "replay",
        "--store",
        &uri,
        "--index",
        "cacm",
        "--queries",
        holdout_path.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(
        stderr.contains(&format!(
            "query log {}: no usable query in its 200 lines",
            holdout_path.display()
        )) && stderr.contains("hint:"),
        "{stderr}"
    );

    // Bad lines of another kind get no id hint.
    let bad_path = dir.path().join("bad.log");
    std::fs::write(&bad_path, "title:(unclosed\nnosuchfield:value\n").unwrap();
    let stderr = suggest(&bad_path, &good_path);
    assert!(
        stderr.contains(&format!("{}:1: `title:(unclosed`", bad_path.display()))
            && !stderr.contains("hint"),
        "{stderr}"
    );
}
