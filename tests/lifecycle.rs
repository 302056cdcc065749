//! `tierdex gc` on the local-directory store and on the S3-compatible server: one test body
//! for both. Kept versions still verify and serve; removed ones and an interrupted build's
//! leftovers are gone; a build in progress and names that are not versions are left alone.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tierdex::format::version::format_version_id;
use tierdex::store::BlobStore;

fn gc_json(uri: &str, keep: &str, older_than: &str, dry_run: bool) -> serde_json::Value {
    let mut args = vec![
        "gc",
        "--store",
        uri,
        "--index",
        "cacm",
        "--keep",
        keep,
        "--older-than",
        older_than,
        "--json",
    ];
    if dry_run {
        args.push("--dry-run");
    }
    let output = tierdex_bin().args(&args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn versions(report: &serde_json::Value, list: &str) -> Vec<String> {
    let mut names: Vec<String> = report[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|version| version["version"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

async fn keys_under(store: &dyn BlobStore, prefix: &str) -> usize {
    store.list(prefix).await.unwrap().len()
}

async fn gc_removes_old_versions_and_leftovers(store: Arc<dyn BlobStore>, uri: String) {
    let rules = "hot = [\"citations >= 1\"]";
    let oldest = build_cacm(store.clone(), rules, "cacm").await.manifest;
    let middle = build_cacm(store.clone(), rules, "cacm").await.manifest;
    let newest = build_cacm(store.clone(), rules, "cacm").await.manifest;
    let now = time::OffsetDateTime::now_utc();
    // An interrupted build two hours ago: files, no manifest.
    let leftover = format_version_id(now - Duration::from_secs(7200), 7);
    for file in ["hot/meta.json", "cold/part-00000.parquet"] {
        store
            .put(
                &format!("cacm/{leftover}/{file}"),
                bytes::Bytes::from_static(b"partial"),
            )
            .await
            .unwrap();
    }
    // A build in progress.
    let in_progress = format_version_id(now - Duration::from_secs(60), 9);
    store
        .put(
            &format!("cacm/{in_progress}/hot/meta.json"),
            bytes::Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    // Something that is not a version.
    store
        .put("cacm/notes/readme.txt", bytes::Bytes::from_static(b"mine"))
        .await
        .unwrap();

    // A dry run says what would go and removes nothing.
    let dry = gc_json(&uri, "1", "1h", true);
    assert_eq!(versions(&dry, "removed"), vec![leftover.clone()]);
    assert_eq!(
        keys_under(store.as_ref(), &format!("cacm/{leftover}/")).await,
        2
    );

    // Young versions are kept whatever --keep says; the old leftover goes.
    let report = gc_json(&uri, "1", "1h", false);
    assert_eq!(report["current"], newest.version.as_str());
    assert_eq!(versions(&report, "removed"), vec![leftover.clone()]);
    let mut kept = vec![
        oldest.version.clone(),
        middle.version.clone(),
        newest.version.clone(),
        in_progress.clone(),
    ];
    kept.sort();
    assert_eq!(versions(&report, "kept"), kept);
    assert_eq!(report["unrecognized"], serde_json::json!(["notes"]));
    assert_eq!(
        keys_under(store.as_ref(), &format!("cacm/{leftover}/")).await,
        0
    );

    // With no age protection: the two newest complete versions stay.
    let report = gc_json(&uri, "2", "0s", false);
    let mut removed = vec![oldest.version.clone(), in_progress.clone()];
    removed.sort();
    assert_eq!(versions(&report, "removed"), removed);
    for gone in &removed {
        assert_eq!(
            keys_under(store.as_ref(), &format!("cacm/{gone}/")).await,
            0,
            "{gone}"
        );
    }
    assert_eq!(keys_under(store.as_ref(), "cacm/notes/").await, 1);
    // What is kept is whole: every file against its checksums.
    for manifest in [&middle, &newest] {
        let report = tierdex::published::verify(store.clone(), manifest).await;
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(report.files > 0);
    }
    // --keep 0 still keeps the version CURRENT names.
    let report = gc_json(&uri, "0", "0s", false);
    assert_eq!(versions(&report, "removed"), vec![middle.version.clone()]);
    assert_eq!(versions(&report, "kept"), vec![newest.version.clone()]);

    // And it serves.
    let data = tempfile::tempdir().unwrap();
    let node = TestNode::start(store.clone(), &["cacm"], data.path()).await;
    node.wait_ready().await;
    let mut client = node.client().await;
    let response = client
        .search(search_request("cacm", "computer programs", 10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.hits.len(), 10);
    assert!(!response.degraded);
    node.stop().await;
}

/// Conditional writes wait a moment: the other builder publishes meanwhile.
#[derive(Debug)]
struct SlowPublish;

#[async_trait::async_trait]
impl StoreHooks for SlowPublish {
    async fn before_put_if(&self, _key: &str) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Two builds of one index at once: the one that publishes first wins, the other fails naming
/// what happened and leaves nothing behind; CURRENT names a complete version.
async fn two_builders_one_wins(store: Arc<dyn BlobStore>) {
    for round in 0..2 {
        let before = tierdex::published::read_current(store.as_ref(), "cacm")
            .await
            .ok();
        assert_eq!(before.is_some(), round == 1);
        let slow: Arc<dyn BlobStore> = Arc::new(HookedStore {
            inner: store.clone(),
            hooks: SlowPublish,
        });
        let options = |rules: &str| {
            build_options(
                cacm_schema(),
                rules,
                vec![shared_data("cacm.jsonl")],
                "cacm",
            )
        };
        let (fast, late) = tokio::join!(
            tierdex::builder::build(options("hot = [\"citations >= 1\"]"), store.clone()),
            tierdex::builder::build(options("hot = [\"citations >= 2\"]"), slow),
        );
        let winner = fast.expect("the first to publish wins").manifest;
        let err = late.expect_err("the second must not overwrite the first");
        assert_eq!(
            err.kind(),
            tierdex::builder::BuildErrorKind::Conflict,
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains("another build published index `cacm`")
                && message.contains(&winner.version)
                && message.contains(before.as_deref().unwrap_or("nothing (a first publish)")),
            "{message}"
        );
        assert_eq!(
            tierdex::published::read_current(store.as_ref(), "cacm")
                .await
                .unwrap(),
            winner.version
        );
        let verified = tierdex::published::verify(store.clone(), &winner).await;
        assert!(verified.problems.is_empty(), "{:?}", verified.problems);
        // The loser's files are gone: only the versions that were published remain.
        let mut versions: Vec<String> = store
            .list("cacm/")
            .await
            .unwrap()
            .into_iter()
            .filter_map(|object| Some(object.key.split('/').nth(1)?.to_string()))
            .filter(|name| name != "CURRENT")
            .collect();
        versions.dedup();
        let mut expected: Vec<String> = before.iter().cloned().collect();
        expected.push(winner.version.clone());
        assert_eq!(versions, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_builders_on_the_local_store() {
    let dir = tempfile::tempdir().unwrap();
    two_builders_one_wins(local_store(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_builders_on_the_s3_compatible_store() {
    let s3 = S3Server::start();
    two_builders_one_wins(s3.store("publishers", "").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_on_the_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap().to_string();
    gc_removes_old_versions_and_leftovers(local_store(dir.path()), uri).await;
    // Directories emptied by gc are gone too.
    let left: Vec<String> = std::fs::read_dir(dir.path().join("cacm"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left.len(),
        3,
        "CURRENT, the newest version, notes: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_on_the_s3_compatible_store() {
    let s3 = S3Server::start();
    let store = s3.store("lifecycle", "indexes").await;
    gc_removes_old_versions_and_leftovers(store, s3.uri("lifecycle", "indexes")).await;
}
