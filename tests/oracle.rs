//! The node's merged hot+cold answers, over gRPC, against one tantivy index over all of CACM:
//! same ids, same order, scores within 1e-4, for rules selecting some, all and no documents.

mod common;

use std::collections::BTreeSet;

use common::*;
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tierdex::api::pb;

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| word.len() > 3 && word.chars().all(|c| c.is_ascii_alphabetic()))
        .map(str::to_lowercase)
        .collect()
}

/// Phrases, boolean queries, field filters and ranges, drawn from the documents.
fn structured_queries() -> Vec<String> {
    let documents = cacm_documents();
    let docs: Vec<&serde_json::Value> = documents.values().collect();
    let mut queries = Vec::new();
    for (i, doc) in docs.iter().step_by(97).enumerate() {
        let title = words(doc["title"].as_str().unwrap());
        if title.len() >= 2 {
            queries.push(format!("\"{} {}\"", title[0], title[1]));
        }
        if title.len() >= 3 {
            queries.push(match i % 4 {
                0 => format!("+{} +{}", title[0], title[2]),
                1 => format!("{} -{}", title[1], title[0]),
                2 => format!("({} OR {}) AND {}", title[0], title[1], title[2]),
                _ => format!("title:{} AND abstract:{}", title[0], title[2]),
            });
        }
        if let Some(author) = doc["authors"]
            .as_array()
            .and_then(|authors| authors.first())
        {
            let author = author.as_str().unwrap().replace('"', "");
            queries.push(format!("authors:\"{author}\""));
        }
        let date = doc["date"].as_str().unwrap();
        if let Some(word) = title.first() {
            queries.push(format!("{word} AND citations:[{} TO {}]", i % 3, 5 + i % 7));
            queries.push(format!("date:\"{date}\" OR title:{word}"));
        }
    }
    queries.push("citations:[10 TO 40]".into());
    queries.push("citations:[0 TO 0]".into());
    queries.push("date:\"1975-03\"".into());
    queries
}

/// Top `limit` of one tantivy index over every CACM document, ties by id.
struct Oracle {
    index: tantivy::Index,
    parser: QueryParser,
}

impl Oracle {
    fn new() -> Oracle {
        let schema = cacm_schema();
        let index = tantivy::Index::create_in_ram(schema.hot_tantivy.clone());
        let mut writer: tantivy::IndexWriter = index.writer(50_000_000).unwrap();
        for doc in cacm_documents().into_values() {
            let mut object = doc.as_object().unwrap().clone();
            object.retain(|name, value| schema.field_index(name).is_some() && !value.is_null());
            writer
                .add_document(
                    tantivy::TantivyDocument::from_json_object(&schema.hot_tantivy, object)
                        .unwrap(),
                )
                .unwrap();
        }
        writer.commit().unwrap();
        let fields = ["title", "abstract"].map(|name| schema.hot_tantivy.get_field(name).unwrap());
        let parser = QueryParser::for_index(&index, fields.to_vec());
        Oracle { index, parser }
    }

    fn top(&self, query: &str, limit: usize) -> Vec<(u64, f32)> {
        let query = self
            .parser
            .parse_query(query)
            .unwrap_or_else(|err| panic!("{query}: {err}"));
        // The node's query semantics: constant-score clauses keep their score in every segment
        // (see tierdex::node::stable); tantivy alone would drop it where a range covers a whole
        // segment.
        let query = tierdex::node::stable::keep_constant_scores(query);
        let searcher = self.index.reader().unwrap().searcher();
        let all = searcher
            .search(
                &query,
                &TopDocs::with_limit(searcher.num_docs() as usize).order_by_score(),
            )
            .unwrap();
        let mut scored: Vec<(u64, f32)> = all
            .into_iter()
            .map(|(score, address)| {
                let segment = searcher.segment_reader(address.segment_ord);
                let id = segment
                    .fast_fields()
                    .u64("id")
                    .unwrap()
                    .first(address.doc_id)
                    .unwrap();
                (id, score)
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(limit);
        scored
    }
}

async fn check_against_oracle(rules: &str, hot_ids: BTreeSet<u64>) {
    let server = S3Server::start();
    let store = server.store("oracle", "indexes").await;
    build_cacm(store.clone(), rules, "cacm").await;
    let data = tempfile::tempdir().unwrap();
    let node = TestNode::start(store, &["cacm"], data.path()).await;
    node.wait_ready().await;
    let mut client = node.client().await;
    let oracle = Oracle::new();
    let documents = cacm_documents();
    let queries: Vec<String> = cacm_query_texts()
        .into_iter()
        .chain(structured_queries())
        .collect();
    assert!(
        queries.len() >= 164,
        "64 CACM queries and at least 100 more: {}",
        queries.len()
    );
    let mut nonempty = 0;
    let mut cold_hits = 0;
    for query in &queries {
        let expected = oracle.top(query, 10);
        let response = client
            .search(search_request("cacm", query, 10))
            .await
            .unwrap_or_else(|status| panic!("{query}: {status}"))
            .into_inner();
        assert!(!response.degraded, "{query}: {}", response.degraded_reason);
        let got: Vec<(u64, f32)> = response
            .hits
            .iter()
            .map(|hit| (hit_u64(hit), hit.score as f32))
            .collect();
        let expected_ids: Vec<u64> = expected.iter().map(|(id, _)| *id).collect();
        let got_ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            got_ids, expected_ids,
            "ids and order for `{query}`: got {got:?} expected {expected:?}"
        );
        for ((id, score), (_, expected_score)) in got.iter().zip(&expected) {
            assert!(
                (score - expected_score).abs() <= 1e-4,
                "`{query}`: score of {id} {score} vs {expected_score}"
            );
        }
        for hit in &response.hits {
            let id = hit_u64(hit);
            let tier = if hot_ids.contains(&id) {
                pb::Tier::Hot
            } else {
                pb::Tier::Cold
            };
            assert_eq!(hit.tier, tier as i32, "tier of {id}");
            cold_hits += usize::from(tier == pb::Tier::Cold);
            let title = hit
                .fields
                .iter()
                .find(|field| field.name == "title")
                .unwrap();
            assert_eq!(
                title.value.as_ref().unwrap().kind,
                Some(pb::value::Kind::Text(
                    documents[&id]["title"].as_str().unwrap().to_string()
                )),
                "stored title of {id}"
            );
        }
        nonempty += usize::from(!got.is_empty());
    }
    assert!(
        nonempty > queries.len() * 3 / 4,
        "most queries match something: {nonempty}"
    );
    if hot_ids.len() < documents.len() {
        assert!(cold_hits > 100, "the cold tier answered: {cold_hits}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_answers_equal_one_index_for_a_real_split() {
    check_against_oracle("hot = [\"citations >= 1\"]", cacm_cited_ids()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_answers_equal_one_index_when_all_hot() {
    check_against_oracle(
        "hot = [\"true\"]",
        cacm_documents().keys().copied().collect(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_answers_equal_one_index_when_all_cold() {
    check_against_oracle("hot = []", BTreeSet::new()).await;
}
