//! The builder end to end: split exactness, what each artifact holds, checksums, publishing
//! discipline, and the errors users see.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use async_trait::async_trait;
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tierdex::builder::{self, BuildErrorKind, ColdCompression};
use tierdex::format::layout::{self, version_key};
use tierdex::format::{DocAddr, Manifest};
use tierdex::published;
use tierdex::store::{BlobStore, ObjectMeta, StoreError, StoreErrorKind, StoreResult};

/// Checks one published CACM version against the source: the tiers partition the input by id,
/// the hot index holds exactly `expected_hot`, and every cold document's `_addr` finds its row.
async fn check_split(store: &dyn BlobStore, manifest: &Manifest, expected_hot: &BTreeSet<u64>) {
    let all: BTreeSet<u64> = cacm_documents().keys().copied().collect();
    let hot_dir = download_index(store, manifest, layout::HOT_DIR).await;
    let cold_dir = download_index(store, manifest, layout::COLD_INDEX_DIR).await;
    let hot = index_ids(hot_dir.path());
    let cold = index_ids(cold_dir.path());
    let hot_ids: BTreeSet<u64> = hot.keys().copied().collect();
    let cold_ids: BTreeSet<u64> = cold.keys().copied().collect();
    assert_eq!(
        &hot_ids, expected_hot,
        "hot tier holds exactly the selected documents"
    );
    assert!(hot_ids.is_disjoint(&cold_ids), "no document in both tiers");
    assert_eq!(
        hot_ids.union(&cold_ids).copied().collect::<BTreeSet<_>>(),
        all,
        "no document lost"
    );
    assert_eq!(manifest.hot.docs, hot_ids.len() as u64);
    assert_eq!(manifest.cold.docs, cold_ids.len() as u64);
    assert!(
        hot.values().all(Option::is_none),
        "hot documents have no cold address"
    );

    // Every cold address points at the parquet row holding the same id.
    let mut parquet_ids: Vec<Vec<u64>> = Vec::new();
    for file in &manifest.cold.parquet_files {
        let key = version_key(&manifest.index, &manifest.version, &file.path);
        let data = store.get(&key).await.unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(data)
            .unwrap()
            .build()
            .unwrap();
        let mut ids = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let column = batch
                .column_by_name("id")
                .unwrap()
                .as_primitive::<UInt64Type>()
                .clone();
            ids.extend(column.values().iter().copied());
        }
        assert_eq!(ids.len() as u64, file.rows);
        parquet_ids.push(ids);
    }
    let parquet_rows: usize = parquet_ids.iter().map(Vec::len).sum();
    assert_eq!(
        parquet_rows,
        cold_ids.len(),
        "one parquet row per cold document"
    );
    for (id, addr) in &cold {
        let addr = DocAddr::unpack(addr.expect("cold documents carry _addr"));
        assert_eq!(
            parquet_ids[addr.file as usize][addr.row as usize], *id,
            "_addr of {id}"
        );
    }

    // The hot index stores every stored field, with the source's values.
    let documents = cacm_documents();
    let index = tantivy::Index::open_in_dir(hot_dir.path()).unwrap();
    let schema = index.schema();
    let searcher = index.reader().unwrap().searcher();
    let title = schema.get_field("title").unwrap();
    for (segment_ord, segment) in searcher.segment_readers().iter().enumerate() {
        let ids = segment.fast_fields().u64("id").unwrap();
        for doc in segment.doc_ids_alive() {
            let stored: tantivy::TantivyDocument = searcher
                .doc(tantivy::DocAddress::new(segment_ord as u32, doc))
                .unwrap();
            let id = ids.first(doc).unwrap();
            let expected = documents[&id]["title"].as_str().unwrap();
            use tantivy::schema::Value;
            let found = stored
                .get_first(title)
                .and_then(|value| value.as_str())
                .unwrap_or("");
            assert_eq!(found, expected, "stored title of {id}");
        }
    }
}

#[tokio::test]
async fn tiers_partition_cacm_for_some_all_and_no_documents() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let all: BTreeSet<u64> = cacm_documents().keys().copied().collect();
    for (rules, expected) in [
        ("hot = [\"citations >= 1\"]", cacm_cited_ids()),
        ("hot = [\"true\"]", all.clone()),
        ("hot = []", BTreeSet::new()),
    ] {
        let summary = build_cacm(store.clone(), rules, "cacm").await;
        assert_eq!(summary.manifest.input.docs, 3204);
        let manifest = published::read_current_manifest(store.as_ref(), "cacm")
            .await
            .unwrap();
        assert_eq!(
            manifest.version, summary.manifest.version,
            "CURRENT names the new version"
        );
        check_split(store.as_ref(), &manifest, &expected).await;
    }
    let cited = cacm_cited_ids();
    assert!(
        cited.len() > 500 && cited.len() < 2700,
        "the `some` case is a real split"
    );
}

#[tokio::test]
async fn summary_counts_ignored_fields_and_multi_valued_keywords() {
    let dir = tempfile::tempdir().unwrap();
    let summary = build_cacm(
        local_store(dir.path()),
        "hot = [\"citations >= 1\"]",
        "cacm",
    )
    .await;
    let manifest = &summary.manifest;
    let ignored: Vec<(&str, u64)> = manifest
        .input
        .ignored_fields
        .iter()
        .map(|(name, count)| (name.as_str(), *count))
        .collect();
    assert_eq!(ignored, vec![("cr_categories", 3204), ("keywords", 3204)]);
    assert_eq!(manifest.multi_valued_fields, vec!["authors".to_string()]);
    assert_eq!(manifest.rules.hot, vec!["citations >= 1".to_string()]);
    assert_eq!(manifest.block_size, 65536);
    assert!(manifest.cold.parquet_bytes > 0 && manifest.hot.index_bytes > 0);
}

/// `sort_by` stores each tier in the field's order, documents without a value last, in both
/// directions; the order is what the tiers' `_order` column says.
#[tokio::test]
async fn sort_by_stores_each_tier_in_order_with_missing_values_last() {
    let input = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .unwrap();
    let mut lines = String::new();
    for id in 0..400u64 {
        // Every third document has no rank; the others' ranks are scattered.
        let rank = (id % 3 != 0).then(|| (id * 7919) % 1000);
        let rank = rank.map_or(String::new(), |rank| format!(", \"rank\": {rank}"));
        lines.push_str(&format!(
            "{{\"id\": {id}, \"title\": \"doc {id}\", \"hot\": {}{rank}}}\n",
            id % 2 == 0
        ));
    }
    std::fs::write(input.path(), lines).unwrap();
    for (order, descending) in [("rank ASC", false), ("rank DESC", true)] {
        let schema = Arc::new(
            tierdex::schema::IndexSchema::from_toml_str(
                &format!(
                    "sort_by = {order:?}\nid_field = \"id\"\n\
                     [[field]]\nname = \"id\"\ntype = \"u64\"\n\
                     [[field]]\nname = \"title\"\ntype = \"text\"\nstored = true\n\
                     [[field]]\nname = \"hot\"\ntype = \"bool\"\n\
                     [[field]]\nname = \"rank\"\ntype = \"u64\"\nfast = true\n"
                ),
                "schema.toml",
            )
            .unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let options = build_options(
            schema,
            "hot = [\"hot\"]",
            vec![input.path().to_path_buf()],
            "ranked",
        );
        let manifest = tierdex::builder::build(options, local_store(dir.path()))
            .await
            .unwrap()
            .manifest;
        let version = dir.path().join("ranked").join(&manifest.version);
        for tier in ["hot", "cold/index"] {
            let index = tantivy::Index::open_in_dir(version.join(tier)).unwrap();
            let searcher = index.reader().unwrap().searcher();
            let mut seen = 0;
            for segment in searcher.segment_readers() {
                let ranks = segment.fast_fields().u64("rank").unwrap();
                let values: Vec<Option<u64>> =
                    (0..segment.max_doc()).map(|doc| ranks.first(doc)).collect();
                seen += values.len();
                let present = values.iter().take_while(|value| value.is_some()).count();
                assert!(
                    values[present..].iter().all(Option::is_none),
                    "{order}, {tier}: documents without a rank last: {values:?}"
                );
                let ranks: Vec<u64> = values.iter().flatten().copied().collect();
                let mut expected = ranks.clone();
                expected.sort_unstable();
                if descending {
                    expected.reverse();
                }
                assert_eq!(ranks, expected, "{order}, {tier}");
                assert!(present > 50 && present < values.len(), "{order}, {tier}");
            }
            assert_eq!(seen, 200, "{order}, {tier}");
        }
    }
}

#[tokio::test]
async fn pyarrow_reads_the_cold_documents_with_identical_values_in_each_compression() {
    for (compression, parquet_name, described) in [
        // pyarrow calls parquet's LZ4_RAW "LZ4".
        (ColdCompression::Lz4, "LZ4", "lz4"),
        (ColdCompression::Zstd, "ZSTD", "zstd(3)"),
    ] {
        pyarrow_reads_the_cold_documents(compression, parquet_name, described).await;
    }
}

async fn pyarrow_reads_the_cold_documents(
    compression: ColdCompression,
    parquet_name: &str,
    described: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let mut options = build_options(
        cacm_schema(),
        "hot = [\"citations >= 1\"]",
        vec![shared_data("cacm.jsonl")],
        "cacm",
    );
    options.cold_compression = compression;
    let summary = builder::build(options, store).await.unwrap();
    let manifest = &summary.manifest;
    assert_eq!(manifest.cold.parquet_layout.compression, described);
    let version_dir = dir.path().join("cacm").join(&manifest.version);
    let files: Vec<String> = manifest
        .cold
        .parquet_files
        .iter()
        .map(|file| version_dir.join(&file.path).display().to_string())
        .collect();
    let output = std::process::Command::new(python())
        .arg(repo_root().join("tests/python/dump_parquet.py"))
        .args(&files)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let layout = &lines[0];
    assert_eq!(layout["compression"], serde_json::json!([parquet_name]));
    assert_eq!(
        layout["all_have_offset_index"], true,
        "page index: offset index"
    );
    assert_eq!(
        layout["all_have_column_index"], true,
        "page index: column index"
    );
    assert_eq!(layout["all_have_statistics"], true);
    assert_eq!(
        layout["columns"],
        serde_json::json!(["id", "title", "abstract", "authors", "date", "citations"])
    );

    let source = cacm_documents();
    let cited = cacm_cited_ids();
    let mut seen = BTreeSet::new();
    for row in &lines[1..] {
        let id = row["id"].as_u64().unwrap();
        assert!(!cited.contains(&id), "{id} is hot, not cold");
        assert!(seen.insert(id), "{id} twice");
        let expected = &source[&id];
        for field in ["title", "abstract", "citations"] {
            assert_eq!(row[field], expected[field], "{field} of {id}");
        }
        // Keyword fields are lists in parquet; a single JSON string is a list of one.
        assert_eq!(row["authors"], expected["authors"], "authors of {id}");
        assert_eq!(
            row["date"],
            serde_json::json!([expected["date"]]),
            "date of {id}"
        );
    }
    assert_eq!(
        seen.len(),
        source.len() - cited.len(),
        "every cold document is in parquet"
    );
}

#[tokio::test]
async fn verify_passes_on_a_good_build_and_names_the_block_after_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let summary = build_cacm(
        local_store(dir.path()),
        "hot = [\"citations >= 1\"]",
        "cacm",
    )
    .await;
    let store_arg = dir.path().display().to_string();
    let inspect = || {
        tierdex_bin()
            .args([
                "inspect", "--store", &store_arg, "--index", "cacm", "--verify",
            ])
            .output()
            .unwrap()
    };
    let good = inspect();
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(stdout.contains("all checksums match"), "{stdout}");
    let counts = format!(
        "hot {}, cold {}",
        summary.manifest.hot.docs, summary.manifest.cold.docs
    );
    assert!(stdout.contains(&counts), "{counts} in {stdout}");

    let parquet = &summary.manifest.cold.parquet_files[0];
    let path = dir
        .path()
        .join("cacm")
        .join(&summary.manifest.version)
        .join(&parquet.path);
    let mut bytes = std::fs::read(&path).unwrap();
    let offset = 70_000; // in the second 64 KiB block
    bytes[offset] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let bad = inspect();
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "verify must fail: {stdout}");
    assert!(
        stdout.contains(&format!("MISMATCH {} block 1:", parquet.path)),
        "names the file and block: {stdout}"
    );
}

#[tokio::test]
async fn s3_and_local_builds_have_the_same_counts_and_checksums() {
    let server = S3Server::start();
    let s3 = server.store("builds", "tierdex").await;
    let dir = tempfile::tempdir().unwrap();
    let local = local_store(dir.path());
    let rules = "hot = [\"citations >= 1\"]";
    let from_s3 = build_cacm(s3.clone(), rules, "cacm").await.manifest;
    let from_local = build_cacm(local, rules, "cacm").await.manifest;
    assert_eq!(from_s3.hot, from_local.hot);
    assert_eq!(from_s3.cold, from_local.cold);
    assert_eq!(from_s3.input, from_local.input);
    // Segment files are named by random segment ids and meta.json lists them; everything else
    // is byte-identical, matched by directory and extension.
    let fingerprint = |manifest: &Manifest| -> BTreeMap<String, (u64, u32)> {
        manifest
            .files
            .iter()
            .filter(|file| !file.path.ends_with(".json"))
            .map(|file| {
                let (dir, name) = file.path.rsplit_once('/').unwrap();
                let key = if dir.starts_with("cold/index") || dir == "hot" {
                    format!("{dir}/*.{}", name.rsplit_once('.').unwrap().1)
                } else {
                    file.path.clone()
                };
                (key, (file.size, file.crc32c))
            })
            .collect()
    };
    let s3_files = fingerprint(&from_s3);
    assert!(s3_files.contains_key("cold/part-00000.parquet") && s3_files.contains_key("hot/*.idx"));
    assert_eq!(s3_files, fingerprint(&from_local));
    // And the S3 copy verifies, then fails once a byte flips on the server's disk.
    let s3_store: Arc<dyn BlobStore> = s3;
    assert!(
        published::verify(s3_store.clone(), &from_s3)
            .await
            .problems
            .is_empty()
    );
    let object = server.object_path(
        "builds",
        &format!(
            "tierdex/{}",
            version_key("cacm", &from_s3.version, "cold/part-00000.parquet")
        ),
    );
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&object, &bytes).unwrap();
    let problems = published::verify(s3_store, &from_s3).await.problems;
    assert!(
        problems
            .iter()
            .any(|p| p.path == "cold/part-00000.parquet" && p.block == Some(0)),
        "{problems:?}"
    );
}

/// Fails file uploads after a number of successful ones.
#[derive(Debug)]
struct FailingUploads {
    uploads_left: AtomicUsize,
}

#[async_trait]
impl StoreHooks for FailingUploads {
    async fn before_upload(&self, op: &'static str, key: &str) -> StoreResult<()> {
        if op != "put_file" {
            return Ok(());
        }
        let left = self
            .uploads_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            });
        if left.is_err() {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "put_file",
                key.to_string(),
                "injected failure",
            ));
        }
        Ok(())
    }
}

async fn current(store: &dyn BlobStore) -> String {
    published::read_current(store, "cacm").await.unwrap()
}

fn versions(objects: &[ObjectMeta]) -> BTreeSet<String> {
    objects
        .iter()
        .filter_map(|object| {
            object
                .key
                .strip_prefix("cacm/")?
                .split_once('/')
                .map(|(v, _)| v.to_string())
        })
        .collect()
}

#[tokio::test]
async fn a_build_failing_midway_leaves_current_and_the_store_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let first = build_cacm(store.clone(), "hot = [\"citations >= 1\"]", "cacm")
        .await
        .manifest
        .version;
    let before = store.list("cacm/").await.unwrap();

    // Fails while reading: a bad line in the second input, after the first was indexed.
    let bad = tempfile::NamedTempFile::with_suffix(".jsonl").unwrap();
    std::fs::write(
        bad.path(),
        "{\"id\": 90001, \"title\": \"fine\"}\n{\"id\": 90002, \"title\": \n",
    )
    .unwrap();
    let options = build_options(
        cacm_schema(),
        "hot = [\"citations >= 1\"]",
        vec![shared_data("cacm.jsonl"), bad.path().to_path_buf()],
        "cacm",
    );
    let err = builder::build(options, store.clone()).await.unwrap_err();
    assert_eq!(err.kind(), BuildErrorKind::Input);
    assert!(
        err.to_string()
            .contains(&format!("{}:2", bad.path().display())),
        "{err}"
    );
    assert_eq!(current(store.as_ref()).await, first);
    assert_eq!(
        store.list("cacm/").await.unwrap(),
        before,
        "nothing was published"
    );

    // Fails while uploading, after some files went up.
    let failing: Arc<dyn BlobStore> = Arc::new(HookedStore {
        inner: store.clone(),
        hooks: FailingUploads {
            uploads_left: AtomicUsize::new(3),
        },
    });
    let options = build_options(
        cacm_schema(),
        "hot = [\"true\"]",
        vec![shared_data("cacm.jsonl")],
        "cacm",
    );
    let err = builder::build(options, failing).await.unwrap_err();
    assert_eq!(err.kind(), BuildErrorKind::Store, "{err}");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(current(store.as_ref()).await, first);
    let after = store.list("cacm/").await.unwrap();
    assert_eq!(
        versions(&after),
        versions(&before),
        "the partial version was removed"
    );
    assert_eq!(after, before);
}

fn run_build(rules: &str, input: &Path, store: &Path, extra: &[&str]) -> std::process::Output {
    run_build_with_schema(&fixture("cacm/schema.toml"), rules, input, store, extra)
}

fn run_build_with_schema(
    schema: &Path,
    rules: &str,
    input: &Path,
    store: &Path,
    extra: &[&str],
) -> std::process::Output {
    let rules_file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
    std::fs::write(rules_file.path(), rules).unwrap();
    tierdex_bin()
        .arg("build")
        .arg("--schema")
        .arg(schema)
        .arg("--rules")
        .arg(rules_file.path())
        .arg("--input")
        .arg(input)
        .arg("--store")
        .arg(store)
        .args(["--index", "cacm"])
        .args(extra)
        .output()
        .unwrap()
}

/// The build failed, saying each of `expected`, and before reading its input (which is not
/// JSON: reading it would have been the error).
fn assert_refused_before_input(output: &std::process::Output, what: &str, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{what}");
    for part in expected {
        assert!(
            stderr.contains(part),
            "`{part}` missing for {what}:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("not json") && !stderr.contains("expected value"),
        "{stderr}"
    );
}

#[test]
fn rule_errors_name_the_expression_and_position_before_input_is_read() {
    let store = tempfile::tempdir().unwrap();
    // Not JSON at all: if the input were read first, this is the error we would see.
    let garbage = tempfile::NamedTempFile::with_suffix(".jsonl").unwrap();
    std::fs::write(garbage.path(), "this is not json\n").unwrap();
    for (rules, expected) in [
        (
            "hot = [\"citations >= 1\", \"citatons > 3\"]",
            vec![
                "hot[1]",
                "unknown field `citatons`",
                "column 1",
                "citatons > 3",
            ],
        ),
        (
            "hot = [\"title = 'x' OR citations >= 'many'\"]",
            vec![
                "hot[0]",
                "type mismatch",
                "`citations` is u64",
                "'many'",
                "column 29",
            ],
        ),
        (
            "hot = [\"citations >= \"]",
            vec!["hot[0]", "syntax error", "citations >="],
        ),
        (
            "hot = [\"date LIKE 3\"]",
            vec!["hot[0]", "LIKE needs a string pattern"],
        ),
        (
            "hot = [\"citations >= 1 garbage\"]",
            vec!["hot[0]", "unexpected `garbage`", "column 16"],
        ),
    ] {
        let output = run_build(rules, garbage.path(), store.path(), &[]);
        assert_refused_before_input(&output, rules, &expected);
    }
    assert!(
        std::fs::read_dir(store.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

#[test]
fn rank_profile_errors_name_the_profile_and_column_before_input_is_read() {
    let store = tempfile::tempdir().unwrap();
    let garbage = tempfile::NamedTempFile::with_suffix(".jsonl").unwrap();
    std::fs::write(garbage.path(), "this is not json\n").unwrap();
    let base = std::fs::read_to_string(fixture("cacm/schema.toml")).unwrap();
    for (profile, expected) in [
        (
            "[ranking.cited]\nscore = \"bm25 * (1 + ln(1 + citatons))\"",
            vec![
                "ranking.cited.score",
                "unknown field `citatons`",
                "column 20",
            ],
        ),
        (
            "[ranking.by_title]\norder_by = \"title DESC\"",
            vec!["ranking.by_title.order_by", "`title` is text", "column 1"],
        ),
        (
            "[ranking.dated]\nscore = \"bm25 * authors\"",
            vec!["ranking.dated.score", "`authors` is keyword", "column 8"],
        ),
        (
            "[ranking.broken]\nscore = \"bm25 * (1 +\"",
            vec!["ranking.broken.score", "syntax error"],
        ),
        (
            "[ranking.odd]\nscore = \"bm25 * exp(citations)\"",
            vec!["ranking.odd.score", "unknown function `exp`", "column 8"],
        ),
    ] {
        let schema = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
        std::fs::write(schema.path(), format!("{base}\n{profile}\n")).unwrap();
        let rules = std::fs::read_to_string(fixture("cacm/rules-some.toml")).unwrap();
        let output =
            run_build_with_schema(schema.path(), &rules, garbage.path(), store.path(), &[]);
        let schema_name = schema.path().display().to_string();
        let mut expected = expected;
        expected.push(&schema_name);
        assert_refused_before_input(&output, profile, &expected);
    }
    assert!(
        std::fs::read_dir(store.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

#[test]
fn bad_input_lines_stop_the_build_or_are_skipped_and_reported() {
    let store = tempfile::tempdir().unwrap();
    let input = tempfile::NamedTempFile::with_suffix(".jsonl").unwrap();
    let lines = [
        r#"{"id": 1, "title": "one", "citations": 2}"#,
        r#"{"id": 2, "title": "two", "citations": }"#,
        r#"{"id": 3, "title": "three", "citations": 0}"#,
        r#"{"id": 4, "title": "four", "citations": "many"}"#,
        "",
        r#"{"id": 1, "title": "one again"}"#,
        r#"{"id": 6, "title": "six", "authors": ["a", "b"], "date": "1970-01"}"#,
    ];
    std::fs::write(input.path(), lines.join("\n")).unwrap();
    let name = input.path().display().to_string();

    let strict = run_build(
        "hot = [\"citations >= 1\"]",
        input.path(),
        store.path(),
        &[],
    );
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(!strict.status.success());
    assert!(
        stderr.contains(&format!("{name}:2:")),
        "file:line of the first bad line: {stderr}"
    );
    assert!(stderr.contains("expected value"), "the reason: {stderr}");
    assert!(
        !store.path().join("cacm/CURRENT").exists(),
        "a failed build publishes nothing"
    );

    let skipping = run_build(
        "hot = [\"citations >= 1\"]",
        input.path(),
        store.path(),
        &["--skip-invalid"],
    );
    let stdout = String::from_utf8_lossy(&skipping.stdout);
    assert!(
        skipping.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&skipping.stderr)
    );
    assert!(
        stdout.contains("documents        3 (hot 1, cold 2)"),
        "{stdout}"
    );
    assert!(stdout.contains("3 skipped"), "{stdout}");
    assert!(stdout.contains(&format!("{name}:2:")), "{stdout}");
    assert!(
        stdout.contains(&format!("{name}:4:")) && stdout.contains("\"many\""),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{name}:6:")) && stdout.contains("duplicate id 1"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_budget_keeps_the_best_ranked_documents_hot() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let rules =
        "hot = [\"citations >= 1\"]\n[budget]\nmax_hot_docs = 100\nrank_by = \"citations DESC\"\n";
    let manifest = build_cacm(store.clone(), rules, "cacm").await.manifest;
    assert_eq!(manifest.hot.docs, 100);
    // Expected: the 100 most cited, ties going to the earlier line (CACM lines are in id order).
    let mut ranked: Vec<(u64, u64)> = cacm_documents()
        .iter()
        .map(|(id, doc)| (doc["citations"].as_u64().unwrap(), *id))
        .filter(|(citations, _)| *citations >= 1)
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let expected: BTreeSet<u64> = ranked.iter().take(100).map(|(_, id)| *id).collect();
    check_split(store.as_ref(), &manifest, &expected).await;
}

#[tokio::test]
async fn csv_and_parquet_inputs_split_like_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let converted = tempfile::tempdir().unwrap();
    let script = r#"
import json, sys
import pyarrow as pa, pyarrow.csv as csv, pyarrow.parquet as pq
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
table = pa.Table.from_pylist(rows)
pq.write_table(table, sys.argv[2] + "/cacm.parquet")
csv.write_csv(table.drop_columns(["authors"]), sys.argv[2] + "/cacm.csv")
"#;
    let status = std::process::Command::new(python())
        .args(["-c", script])
        .arg(shared_data("cacm.jsonl"))
        .arg(converted.path())
        .status()
        .unwrap();
    assert!(status.success());
    let rules = "hot = [\"citations >= 1 AND date >= '1970-01'\"]";
    let mut results = Vec::new();
    for (index, input) in [
        ("json", shared_data("cacm.jsonl")),
        ("csv", converted.path().join("cacm.csv")),
        ("parquet", converted.path().join("cacm.parquet")),
    ] {
        let options = build_options(cacm_schema(), rules, vec![input], index);
        let manifest = builder::build(options, local_store(dir.path()))
            .await
            .unwrap()
            .manifest;
        let hot_dir =
            download_index(local_store(dir.path()).as_ref(), &manifest, layout::HOT_DIR).await;
        let hot: BTreeSet<u64> = index_ids(hot_dir.path()).keys().copied().collect();
        results.push((index, manifest, hot));
    }
    let (_, json, json_hot) = &results[0];
    assert!(json.hot.docs > 100 && json.cold.docs > 100);
    for (format, manifest, hot) in &results[1..] {
        assert_eq!(manifest.input.docs, 3204, "{format}");
        assert_eq!(manifest.hot.docs, json.hot.docs, "{format}");
        assert_eq!(hot, json_hot, "{format}");
    }
    assert_eq!(
        results[2].1.multi_valued_fields,
        vec!["authors".to_string()],
        "parquet lists"
    );
    assert!(
        results[1].1.multi_valued_fields.is_empty(),
        "csv has no lists"
    );
}

#[tokio::test]
async fn existing_versions_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    let manifest = build_cacm(store.clone(), "hot = []", "cacm").await.manifest;
    let key = version_key("cacm", &manifest.version, layout::MANIFEST);
    let original = store.get(&key).await.unwrap();
    // Publishing the same version id again is refused before anything is written.
    let staging = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(staging.path().join("hot")).unwrap();
    std::fs::write(staging.path().join("hot/x"), b"x").unwrap();
    let err = tierdex_publish_again(store.clone(), staging.path(), manifest.clone()).await;
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(store.get(&key).await.unwrap(), original);
}

async fn tierdex_publish_again(
    store: Arc<dyn BlobStore>,
    staging: &Path,
    manifest: Manifest,
) -> String {
    let replaces = builder::Replaces::read(store.as_ref(), &manifest.index)
        .await
        .unwrap();
    builder::publish_version(store, staging, manifest, Vec::new(), &replaces)
        .await
        .unwrap_err()
        .to_string()
}
