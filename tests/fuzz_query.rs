//! Random query strings, limits and field lists against a loaded node: every search ends in an
//! answer or a clear invalid-argument error — never a panic, never an internal error.
//!
//! `PROPTEST_CASES` sets the run length (default 400 here; see the closing notes for longer
//! runs).

mod common;

use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use tierdex::node::search::SearchRequest;
use tierdex::node::{Node, NodeErrorKind};

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z]{1,8}",
        1 => Just("AND".to_string()),
        1 => Just("OR".to_string()),
        1 => Just("NOT".to_string()),
        1 => Just("TO".to_string()),
        2 => prop::sample::select(vec!["title:", "abstract:", "authors:", "citations:", "date:", "id:", "_addr:", "nosuch:"]).prop_map(str::to_string),
        3 => prop::sample::select(vec!["\"", "(", ")", "[", "]", "{", "}", "+", "-", "*", "^2", "~1", ":", "\\", "'", "!", "&&", "||", "/", " "]).prop_map(str::to_string),
        1 => "[0-9]{1,20}",
        1 => any::<char>().prop_map(|c| c.to_string()),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..14).prop_map(|tokens| tokens.join(" "))
}

fn node() -> (
    tokio::runtime::Runtime,
    Arc<Node>,
    tempfile::TempDir,
    tempfile::TempDir,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let node = runtime.block_on(async {
        let store = local_store(store_dir.path());
        build_cacm(store.clone(), "hot = [\"citations >= 1\"]", "cacm").await;
        let settings = tierdex::config::Settings {
            store: Some(store.uri().to_string()),
            indexes: Some(vec!["cacm".into()]),
            data_dir: Some(data.path().to_path_buf()),
            max_results: Some(1000),
            ..Default::default()
        };
        let config = tierdex::config::NodeConfig::resolve(settings, "fuzz").unwrap();
        let node = Node::new(config, store, None).unwrap();
        run_until_ready(&node).await;
        node
    });
    (runtime, node, store_dir, data)
}

#[test]
fn random_queries_never_panic_or_fail_internally() {
    let (runtime, node, _store, _data) = node();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(400);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    let fields = prop::collection::vec(
        prop::sample::select(vec!["title", "abstract", "authors", "nosuch", "_addr", ""]),
        0..3,
    );
    runner
        .run(
            &(
                query(),
                0u32..120,
                0u32..60,
                fields,
                any::<bool>(),
                any::<bool>(),
                prop_oneof![
                    Just(String::new()),
                    prop::sample::select(vec![
                        "citations DESC",
                        "citations asc",
                        "citations",
                        "title DESC",
                        "nosuch DESC",
                        "citations DESC id",
                        "citations SIDEWAYS",
                    ])
                    .prop_map(str::to_string),
                    "\\PC{0,12}",
                ],
                prop::sample::select(vec!["", "bm25", "nosuch", "default"]),
            ),
            |(query, limit, offset, fields, hot_only, count_total, order_by, profile)| {
                let request = SearchRequest {
                    query: query.clone(),
                    limit,
                    offset,
                    fields: fields.into_iter().map(str::to_string).collect(),
                    hot_only,
                    count_total,
                    profile: profile.to_string(),
                    order_by,
                    deadline: None,
                };
                match runtime.block_on(node.search("cacm", request)) {
                    Ok(result) => {
                        let page = if limit == 0 { 10 } else { limit as usize };
                        prop_assert!(
                            result.hits.len() <= page,
                            "{} hits for a page of {page}",
                            result.hits.len()
                        );
                    }
                    Err(err) => prop_assert!(
                        matches!(
                            err.kind(),
                            NodeErrorKind::InvalidQuery | NodeErrorKind::InvalidArgument
                        ),
                        "`{query}`: {err} ({:?})",
                        err.kind()
                    ),
                }
                Ok(())
            },
        )
        .unwrap();
}
