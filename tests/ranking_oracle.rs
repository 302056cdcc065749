//! Rank profiles against an oracle: the node's pages, over gRPC, for BM25, a score expression
//! (`[ranking.cited]`), a field order (`[ranking.most_cited]`, `order_by = "citations DESC"`)
//! and a request's own `order_by = "citations ASC"`, against one monolithic tantivy index over
//! all of CACM ranked here in the test (BM25 from tantivy, the expression and the orders
//! computed in f64 from the `citations` fast column; none of tierdex's ranking code). Same ids,
//! same order, scores within 1e-4; for rules selecting some, all and no documents; first and
//! second pages. With some documents hot, the node must sometimes skip the cold tier and
//! sometimes not, and a skipped answer must equal the oracle's (the full answer): the CACM and
//! structured queries check that, and a property test draws random queries, pages and
//! orderings. Unknown profiles and bad orders are invalid arguments naming what was wrong.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use tantivy::query::QueryParser;
use tierdex::api::pb;

/// The CACM fixture schema with the two profiles under test.
fn ranked_schema_text() -> String {
    let base = std::fs::read_to_string(fixture("cacm/schema.toml")).unwrap();
    format!(
        "{base}\n[ranking.cited]\nscore = \"bm25 * (1 + 0.5 * ln(1 + citations))\"\n\
         [ranking.most_cited]\norder_by = \"citations DESC\"\n"
    )
}

fn ranked_schema() -> Arc<tierdex::schema::IndexSchema> {
    ranked_schema_sorted(None)
}

/// `ranked_schema`, its tiers stored in the order `sort_by` when set.
fn ranked_schema_sorted(sort_by: Option<&str>) -> Arc<tierdex::schema::IndexSchema> {
    let text = match sort_by {
        Some(order) => format!("sort_by = {order:?}\n{}", ranked_schema_text()),
        None => ranked_schema_text(),
    };
    Arc::new(tierdex::schema::IndexSchema::from_toml_str(&text, "schema.toml").unwrap())
}

/// What orders a page, and how a request asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ordering {
    /// No profile, no order: plain BM25 (the schema has no `[ranking.default]`).
    Bm25,
    /// `profile = "cited"`: BM25 * (1 + 0.5 ln(1 + citations)).
    Cited,
    /// `citations DESC`: by `profile = "most_cited"`, or by the request's own `order_by`.
    CitationsDesc { by_request: bool },
    /// The request's `order_by = "citations ASC"`; with `over_profile`, the request also names
    /// `profile = "cited"`, which the order overrides.
    CitationsAsc { over_profile: bool },
}

impl Ordering {
    /// Every ordering, varied with `number` (which form of `citations DESC`, whether the
    /// ascending order also names a profile to override).
    fn all(number: usize) -> [Ordering; 4] {
        [
            Ordering::Bm25,
            Ordering::Cited,
            Ordering::CitationsDesc {
                by_request: number % 4 == 3,
            },
            Ordering::CitationsAsc {
                over_profile: number % 2 == 1,
            },
        ]
    }

    fn apply(self, request: &mut pb::SearchRequest) {
        let (profile, order_by) = match self {
            Ordering::Bm25 => ("", ""),
            Ordering::Cited => ("cited", ""),
            Ordering::CitationsDesc { by_request: false } => ("most_cited", ""),
            Ordering::CitationsDesc { by_request: true } => ("", "citations DESC"),
            Ordering::CitationsAsc {
                over_profile: false,
            } => ("", "citations ASC"),
            Ordering::CitationsAsc { over_profile: true } => ("cited", "citations ASC"),
        };
        request.profile = profile.to_string();
        request.order_by = order_by.to_string();
    }

    /// What `SearchResponse.ranked_by` must say.
    fn ranked_by(self) -> &'static str {
        match self {
            Ordering::Bm25 => "bm25",
            Ordering::Cited => "cited",
            Ordering::CitationsDesc { by_request: false } => "most_cited",
            Ordering::CitationsDesc { by_request: true } => "order_by:citations DESC",
            Ordering::CitationsAsc { .. } => "order_by:citations ASC",
        }
    }

    /// Counted together when asserting on skips: `most_cited` and `citations DESC` are one
    /// ordering.
    fn kind(self) -> usize {
        match self {
            Ordering::Bm25 => 0,
            Ordering::Cited => 1,
            Ordering::CitationsDesc { .. } => 2,
            Ordering::CitationsAsc { .. } => 3,
        }
    }
}

const KIND_NAMES: [&str; 4] = ["bm25", "cited", "citations DESC", "citations ASC"];

/// One match of a query in the oracle's index.
#[derive(Debug, Clone)]
struct Match {
    id: u64,
    bm25: f32,
    citations: Option<u64>,
}

/// The `cited` profile's expression, computed here in f64.
fn cited(bm25: f32, citations: u64) -> f64 {
    f64::from(bm25) * (1.0 + 0.5 * (1.0 + citations as f64).ln())
}

/// `(id, expected score)` of every match, best first, under `ordering`.
fn rank(matches: &[Match], ordering: Ordering) -> Vec<(u64, f64)> {
    let mut matches = matches.to_vec();
    match ordering {
        Ordering::Bm25 => {
            matches.sort_by(|a, b| b.bm25.total_cmp(&a.bm25).then(a.id.cmp(&b.id)));
            matches.iter().map(|m| (m.id, f64::from(m.bm25))).collect()
        }
        Ordering::Cited => {
            let mut ranked: Vec<(u64, f64)> = matches
                .iter()
                .map(|m| {
                    let citations = m
                        .citations
                        .unwrap_or_else(|| panic!("document {} has no citations", m.id));
                    (m.id, cited(m.bm25, citations))
                })
                .collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            ranked
        }
        Ordering::CitationsDesc { .. } | Ordering::CitationsAsc { .. } => {
            let descending = matches!(ordering, Ordering::CitationsDesc { .. });
            matches.sort_by(|a, b| {
                let by_value = match (a.citations, b.citations) {
                    (Some(x), Some(y)) if descending => y.cmp(&x),
                    (Some(x), Some(y)) => x.cmp(&y),
                    // Documents without the field go last, either way.
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                };
                by_value.then(a.id.cmp(&b.id))
            });
            matches.iter().map(|m| (m.id, f64::from(m.bm25))).collect()
        }
    }
}

/// One tantivy index over every CACM document, in RAM.
struct Oracle {
    index: tantivy::Index,
    parser: QueryParser,
}

impl Oracle {
    fn new() -> Oracle {
        let schema = ranked_schema();
        let (index, parser) = oracle_index(&schema, cacm_documents().into_values());
        Oracle { index, parser }
    }

    /// Every match of `query` with its BM25 score and citations, in no particular order; the
    /// parser's error if the query does not parse.
    fn matches(&self, query: &str) -> Result<Vec<Match>, String> {
        let query = self
            .parser
            .parse_query(query)
            .map_err(|err| err.to_string())?;
        // The node's query semantics: constant-score clauses keep their score in every segment
        // (as tests/oracle.rs does).
        let query = tierdex::node::stable::keep_constant_scores(query, &self.index.schema());
        let searcher = self.index.reader().unwrap().searcher();
        let all = oracle_scores(&searcher, query.as_ref());
        Ok(all
            .into_iter()
            .map(|(bm25, address)| {
                let fast = searcher.segment_reader(address.segment_ord).fast_fields();
                Match {
                    id: fast.u64("id").unwrap().first(address.doc_id).unwrap(),
                    bm25,
                    citations: fast.u64("citations").unwrap().first(address.doc_id),
                }
            })
            .collect())
    }
}

/// Builds CACM with the ranked schema and `rules` into a real S3-compatible server and starts
/// a node on it. The server must outlive the node.
async fn ranked_node(
    server: &S3Server,
    rules: &str,
    data: &std::path::Path,
    mode: &str,
    sort_by: Option<&str>,
) -> TestNode {
    let store = server.store("ranking", "indexes").await;
    let options = build_options(
        ranked_schema_sorted(sort_by),
        rules,
        vec![shared_data("cacm.jsonl")],
        "cacm",
    );
    tierdex::builder::build(options, store.clone())
        .await
        .unwrap();
    let node = TestNode::start_with(store, &["cacm"], data, |settings| {
        settings.cold_index = Some(mode.to_string());
    })
    .await;
    node.wait_ready().await;
    node
}

/// Checks one answer against the oracle's ranking of every match (`ranked`): ids and order
/// exactly, scores within 1e-4 (relative above 1), tiers, `ranked_by`, totals when counted.
fn check_page(
    query: &str,
    ordering: Ordering,
    request: &pb::SearchRequest,
    response: &pb::SearchResponse,
    ranked: &[(u64, f64)],
    hot_ids: &BTreeSet<u64>,
) -> Result<(), String> {
    let context = format!(
        "`{query}` {ordering:?} (profile {:?}, order_by {:?}) limit {} offset {}",
        request.profile, request.order_by, request.limit, request.offset
    );
    if response.degraded {
        return Err(format!("{context}: degraded: {}", response.degraded_reason));
    }
    if response.ranked_by != ordering.ranked_by() {
        return Err(format!(
            "{context}: ranked_by {:?}, expected {:?}",
            response.ranked_by,
            ordering.ranked_by()
        ));
    }
    let expected: Vec<(u64, f64)> = ranked
        .iter()
        .skip(request.offset as usize)
        .take(request.limit as usize)
        .copied()
        .collect();
    let got: Vec<(u64, f64)> = response
        .hits
        .iter()
        .map(|hit| (hit_u64(hit), hit.score))
        .collect();
    let expected_ids: Vec<u64> = expected.iter().map(|(id, _)| *id).collect();
    let got_ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    if got_ids != expected_ids {
        let tiers: Vec<(u64, i32)> = response
            .hits
            .iter()
            .map(|hit| (hit_u64(hit), hit.tier))
            .collect();
        let around: Vec<&(u64, f64)> = ranked
            .iter()
            .take(request.offset as usize + request.limit as usize + 10)
            .collect();
        return Err(format!(
            "{context}: ids and order\n got      {got:?}\n expected {expected:?}\n node's tiers {tiers:?}\n cold_skipped {}\n oracle's top {around:?}",
            response.cold_skipped
        ));
    }
    for ((id, score), (_, expected_score)) in got.iter().zip(&expected) {
        let tolerance = 1e-4 * expected_score.abs().max(1.0);
        // NaN is never close.
        let close = (score - expected_score).abs() <= tolerance;
        if !close {
            return Err(format!(
                "{context}: score of {id}: {score} vs {expected_score}"
            ));
        }
    }
    for hit in &response.hits {
        let id = hit_u64(hit);
        let tier = if hot_ids.contains(&id) {
            pb::Tier::Hot
        } else {
            pb::Tier::Cold
        };
        if hit.tier != tier as i32 {
            return Err(format!("{context}: tier of {id}: {} vs {tier:?}", hit.tier));
        }
    }
    if request.count_total_hits
        && (!response.total_hits_exact || response.total_hits != ranked.len() as u64)
    {
        return Err(format!(
            "{context}: total {} (exact: {}) of {} matches",
            response.total_hits,
            response.total_hits_exact,
            ranked.len()
        ));
    }
    if response.cold_skipped
        && response
            .hits
            .iter()
            .any(|hit| hit.tier == pb::Tier::Cold as i32)
    {
        return Err(format!("{context}: cold hits in a page that skipped cold"));
    }
    Ok(())
}

/// Every CACM and structured query, in every ordering, first pages and every third query's
/// second page, against the oracle. With `assert_skips`, the `cited` and `citations DESC`
/// orderings must have skipped the cold tier for some queries and searched it for others.
async fn check_rules(rules: &str, hot_ids: BTreeSet<u64>, assert_skips: bool) {
    check_rules_in(rules, hot_ids, assert_skips, "remote").await;
}

/// `check_rules` with the cold index `mode` (`remote` or `local`).
async fn check_rules_in(rules: &str, hot_ids: BTreeSet<u64>, assert_skips: bool, mode: &str) {
    check_rules_with(rules, hot_ids, assert_skips, mode, None).await;
}

/// `check_rules_in` over tiers stored in the order `sort_by`, when set.
async fn check_rules_with(
    rules: &str,
    hot_ids: BTreeSet<u64>,
    assert_skips: bool,
    mode: &str,
    sort_by: Option<&str>,
) {
    let server = S3Server::start();
    let data = tempfile::tempdir().unwrap();
    let node = ranked_node(&server, rules, data.path(), mode, sort_by).await;
    let mut client = node.client().await;
    let oracle = Oracle::new();
    let queries: Vec<String> = cacm_query_texts()
        .into_iter()
        .chain(cacm_structured_queries())
        .collect();
    assert!(queries.len() >= 164, "queries: {}", queries.len());
    // Per ordering kind: first pages asked, first pages that skipped cold, nonempty pages,
    // cold hits, second pages with hits.
    let mut asked = [0usize; 4];
    let mut skipped = [0usize; 4];
    let mut nonempty = [0usize; 4];
    let mut cold_hits = [0usize; 4];
    let mut second_pages = [0usize; 4];
    for (number, query) in queries.iter().enumerate() {
        let matches = oracle
            .matches(query)
            .unwrap_or_else(|err| panic!("`{query}`: {err}"));
        for ordering in Ordering::all(number) {
            let kind = ordering.kind();
            let ranked = rank(&matches, ordering);
            let pages: &[u32] = if number % 3 == 0 { &[0, 10] } else { &[0] };
            for &offset in pages {
                let mut request = search_request("cacm", query, 10);
                ordering.apply(&mut request);
                request.offset = offset;
                // Second pages count every match (which also means the node cannot skip).
                request.count_total_hits = offset > 0;
                let response = client
                    .search(request.clone())
                    .await
                    .unwrap_or_else(|status| panic!("`{query}` {ordering:?}: {status}"))
                    .into_inner();
                if let Err(message) =
                    check_page(query, ordering, &request, &response, &ranked, &hot_ids)
                {
                    panic!("{message}");
                }
                if offset == 0 {
                    asked[kind] += 1;
                    skipped[kind] += usize::from(response.cold_skipped);
                    nonempty[kind] += usize::from(!response.hits.is_empty());
                } else {
                    second_pages[kind] += usize::from(!response.hits.is_empty());
                }
                cold_hits[kind] += response
                    .hits
                    .iter()
                    .filter(|hit| hit.tier == pb::Tier::Cold as i32)
                    .count();
            }
        }
    }
    for kind in 0..4 {
        eprintln!(
            "{rules}: {}: {} of {} first pages skipped the cold tier; {} nonempty; {} cold hits; {} second pages with hits",
            KIND_NAMES[kind],
            skipped[kind],
            asked[kind],
            nonempty[kind],
            cold_hits[kind],
            second_pages[kind]
        );
        assert!(
            nonempty[kind] > asked[kind] * 3 / 4,
            "{}: most queries match something: {} of {}",
            KIND_NAMES[kind],
            nonempty[kind],
            asked[kind]
        );
        assert!(
            second_pages[kind] > 20,
            "{}: second pages checked: {}",
            KIND_NAMES[kind],
            second_pages[kind]
        );
        if hot_ids.len() < cacm_documents().len() {
            assert!(
                cold_hits[kind] > 0,
                "{}: the cold tier answered",
                KIND_NAMES[kind]
            );
        }
    }
    if assert_skips {
        for kind in [1, 2] {
            assert!(
                skipped[kind] > 0,
                "{}: the cold tier was never skipped",
                KIND_NAMES[kind]
            );
            assert!(
                skipped[kind] < asked[kind],
                "{}: the cold tier was always skipped",
                KIND_NAMES[kind]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranked_pages_equal_one_index_for_a_real_split() {
    check_rules("hot = [\"citations >= 1\"]", cacm_cited_ids(), true).await;
}

/// Tiers stored most cited first (`sort_by`): profiles and orders over `citations` prune as
/// they go through a segment, and still give the oracle's pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranked_pages_equal_one_index_when_stored_most_cited_first() {
    check_rules_with(
        "hot = [\"citations >= 1\"]",
        cacm_cited_ids(),
        true,
        "remote",
        Some("citations DESC"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranked_pages_equal_one_index_for_a_real_split_with_the_cold_index_local() {
    check_rules_in(
        "hot = [\"citations >= 1\"]",
        cacm_cited_ids(),
        true,
        "local",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranked_pages_equal_one_index_when_all_hot() {
    check_rules(
        "hot = [\"true\"]",
        cacm_documents().keys().copied().collect(),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranked_pages_equal_one_index_when_all_cold() {
    check_rules("hot = []", BTreeSet::new(), false).await;
}

/// A random query: 1 to 3 title words (common words more often: `words` holds every title's
/// words, repeated), each maybe `+` or `-`, joined by spaces, AND or OR.
fn random_query(words: Vec<String>) -> impl Strategy<Value = String> {
    let prefix = prop_oneof![5 => Just(""), 1 => Just("+"), 1 => Just("-")];
    let joiner = prop_oneof![2 => Just(" "), 1 => Just(" AND "), 1 => Just(" OR ")];
    (
        prop::collection::vec((prop::sample::select(words), prefix), 1..=3),
        joiner,
    )
        .prop_map(|(terms, joiner)| {
            terms
                .iter()
                .map(|(word, prefix)| format!("{prefix}{word}"))
                .collect::<Vec<_>>()
                .join(joiner)
        })
}

fn random_ordering() -> impl Strategy<Value = Ordering> {
    prop_oneof![
        Just(Ordering::Bm25),
        Just(Ordering::Cited),
        any::<bool>().prop_map(|by_request| Ordering::CitationsDesc { by_request }),
        any::<bool>().prop_map(|over_profile| Ordering::CitationsAsc { over_profile }),
    ]
}

/// Skipped answers equal full answers: random queries, pages and orderings against one node
/// with some documents hot, each page equal to the oracle's.
#[test]
fn random_ranked_pages_equal_one_index() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = S3Server::start();
    let data = tempfile::tempdir().unwrap();
    // Stored most cited first: the fixed tests above cover tiers in input order.
    let node = runtime.block_on(ranked_node(
        &server,
        "hot = [\"citations >= 1\"]",
        data.path(),
        "remote",
        Some("citations DESC"),
    ));
    let client = runtime.block_on(node.client());
    let oracle = Oracle::new();
    let hot_ids = cacm_cited_ids();
    // Every title word of every document, repeated as often as it occurs.
    let title_words: Vec<String> = cacm_documents()
        .values()
        .flat_map(|doc| title_words(doc["title"].as_str().unwrap()))
        .collect();
    let distinct = title_words.iter().collect::<BTreeSet<_>>().len();
    assert!(distinct > 1000, "distinct title words: {distinct}");

    let cases = AtomicUsize::new(0);
    let skipped = AtomicUsize::new(0);
    let nonempty = AtomicUsize::new(0);
    let invalid = AtomicUsize::new(0);
    let skipped_by_kind: [AtomicUsize; 4] = Default::default();
    let config = ProptestConfig {
        cases: 64,
        max_shrink_iters: 128,
        // Nothing written beside the tests: a failure prints its case.
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(
        &(
            random_query(title_words),
            1u32..=20,
            0u32..=30,
            random_ordering(),
        ),
        |(query, limit, offset, ordering)| {
            cases.fetch_add(1, AtomicOrdering::Relaxed);
            let mut request = search_request("cacm", &query, limit);
            request.offset = offset;
            ordering.apply(&mut request);
            let answer = runtime.block_on(client.clone().search(request.clone()));
            let matches = match oracle.matches(&query) {
                Ok(matches) => matches,
                Err(err) => {
                    // The node parses with the same parser: it must refuse the query too.
                    invalid.fetch_add(1, AtomicOrdering::Relaxed);
                    let status = match answer {
                        Ok(_) => {
                            return Err(TestCaseError::fail(format!(
                                "`{query}` answered, but tantivy refuses it: {err}"
                            )));
                        }
                        Err(status) => status,
                    };
                    prop_assert_eq!(status.code(), tonic::Code::InvalidArgument, "`{}`", query);
                    return Ok(());
                }
            };
            let response = answer
                .map_err(|status| TestCaseError::fail(format!("`{query}` {ordering:?}: {status}")))?
                .into_inner();
            let ranked = rank(&matches, ordering);
            check_page(&query, ordering, &request, &response, &ranked, &hot_ids)
                .map_err(TestCaseError::fail)?;
            if response.cold_skipped {
                skipped.fetch_add(1, AtomicOrdering::Relaxed);
                skipped_by_kind[ordering.kind()].fetch_add(1, AtomicOrdering::Relaxed);
            }
            nonempty.fetch_add(
                usize::from(!response.hits.is_empty()),
                AtomicOrdering::Relaxed,
            );
            Ok(())
        },
    );
    let by_kind: Vec<String> = KIND_NAMES
        .iter()
        .zip(&skipped_by_kind)
        .map(|(name, count)| format!("{name} {}", count.load(AtomicOrdering::Relaxed)))
        .collect();
    eprintln!(
        "random ranked pages: {} cases run, {} skipped the cold tier ({}), {} nonempty, {} refused as invalid",
        cases.load(AtomicOrdering::Relaxed),
        skipped.load(AtomicOrdering::Relaxed),
        by_kind.join(", "),
        nonempty.load(AtomicOrdering::Relaxed),
        invalid.load(AtomicOrdering::Relaxed),
    );
    if let Err(err) = result {
        panic!("{err}");
    }
    drop(client);
    drop(node);
}

/// Unknown profiles and bad orders are invalid arguments naming what was wrong; the node keeps
/// answering afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_profiles_and_orders_are_invalid_arguments() {
    let server = S3Server::start();
    let data = tempfile::tempdir().unwrap();
    let node = ranked_node(
        &server,
        "hot = [\"citations >= 1\"]",
        data.path(),
        "remote",
        None,
    )
    .await;
    let mut client = node.client().await;
    for (profile, order_by, named) in [
        ("nope", "", &["nope"][..]),
        ("", "title DESC", &["title"][..]),
        ("", "missing DESC", &["missing"][..]),
        ("", "citations SIDEWAYS", &["citations", "SIDEWAYS"][..]),
        // A bad order is refused even when the profile is fine.
        ("cited", "missing ASC", &["missing"][..]),
    ] {
        let mut request = search_request("cacm", "computer program", 10);
        request.profile = profile.to_string();
        request.order_by = order_by.to_string();
        let status = client
            .search(request)
            .await
            .map(|response| response.into_inner().ranked_by)
            .expect_err(&format!(
                "profile {profile:?} order_by {order_by:?} answered"
            ));
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "profile {profile:?} order_by {order_by:?}: {status}"
        );
        for name in named {
            assert!(
                status.message().contains(name),
                "profile {profile:?} order_by {order_by:?}: `{name}` not named in {:?}",
                status.message()
            );
        }
    }
    // Still serving, with every ordering.
    let oracle = Oracle::new();
    let matches = oracle.matches("computer program").unwrap();
    for ordering in Ordering::all(3).into_iter().chain(Ordering::all(0)) {
        let mut request = search_request("cacm", "computer program", 10);
        ordering.apply(&mut request);
        let response = client
            .search(request.clone())
            .await
            .unwrap_or_else(|status| panic!("{ordering:?} after the errors: {status}"))
            .into_inner();
        assert_eq!(response.hits.len(), 10, "{ordering:?}");
        if let Err(message) = check_page(
            "computer program",
            ordering,
            &request,
            &response,
            &rank(&matches, ordering),
            &cacm_cited_ids(),
        ) {
            panic!("{message}");
        }
    }
}
