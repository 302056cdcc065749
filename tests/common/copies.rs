//! A corpus where block-max WAND sums equal term contributions in different orders, and the
//! check that pages order such documents by id with equal scores (issue 8, item 5): filler
//! documents with random mixes of a few words, and every 40th document the same text.

use std::collections::BTreeSet;
use std::sync::Arc;

use tierdex::api::pb;
use tonic::transport::Channel;

use super::*;

const SCHEMA: &str = r#"
id_field = "id"
default_search_fields = ["body"]
[[field]]
name = "id"
type = "u64"
[[field]]
name = "body"
type = "text"
stored = true
[[field]]
name = "grp"
type = "u64"
"#;

/// Queries whose pages hold copies: disjunctions, and a conjunction.
const QUERIES: [&str; 4] = [
    "alpha beta gamma delta omega",
    "beta delta omega kappa",
    "alpha gamma delta",
    "+alpha +beta +delta +omega",
];

/// The copies' ids, and one tantivy index over the whole corpus (the oracle), in several
/// segments as tiers are.
pub struct Copies {
    copies: BTreeSet<u64>,
    oracle: tantivy::Index,
}

fn documents() -> (Vec<serde_json::Value>, BTreeSet<u64>) {
    let words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma"];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let mut copies = BTreeSet::new();
    let documents = (0..4000u64)
        .map(|id| {
            let body = if id % 40 == 7 {
                copies.insert(id);
                "alpha beta beta gamma delta delta delta omega".to_string()
            } else {
                (0..1 + next(12))
                    .map(|_| words[next(words.len() as u64) as usize])
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            serde_json::json!({"id": id, "body": body, "grp": next(3)})
        })
        .collect();
    (documents, copies)
}

/// Builds the corpus into `store` as `index` with `shards` shards, a third of it hot.
pub async fn build(store: Arc<dyn tierdex::store::BlobStore>, index: &str, shards: u32) -> Copies {
    let (documents, copies) = documents();
    let input = tempfile::NamedTempFile::with_suffix(".jsonl").unwrap();
    let lines: Vec<String> = documents.iter().map(|doc| doc.to_string()).collect();
    std::fs::write(input.path(), lines.join("\n")).unwrap();
    let schema = Arc::new(tierdex::schema::IndexSchema::from_toml_str(SCHEMA, "schema").unwrap());
    let mut options = build_options(
        schema.clone(),
        "hot = [\"grp = 0\"]",
        vec![input.path().to_path_buf()],
        index,
    );
    options.shards = shards;
    tierdex::builder::build(options, store).await.unwrap();

    let hot = &schema.hot_tantivy;
    let oracle = tantivy::Index::create_in_ram(hot.clone());
    let mut writer: tantivy::IndexWriter = oracle.writer_with_num_threads(1, 20_000_000).unwrap();
    for (n, document) in documents.iter().enumerate() {
        let mut object = document.as_object().unwrap().clone();
        object.retain(|name, _| schema.field_index(name).is_some());
        writer
            .add_document(tantivy::TantivyDocument::from_json_object(hot, object).unwrap())
            .unwrap();
        if n % 1000 == 999 {
            writer.commit().unwrap();
        }
    }
    writer.commit().unwrap();
    Copies { copies, oracle }
}

impl Copies {
    /// Every match of `query` in the oracle, by exact score (`oracle_scores`), then id.
    fn ranking(&self, query: &str) -> Vec<(u64, f32)> {
        let searcher = self.oracle.reader().unwrap().searcher();
        let body = self.oracle.schema().get_field("body").unwrap();
        let parser = tantivy::query::QueryParser::for_index(&self.oracle, vec![body]);
        let mut ranking: Vec<(u64, f32)> =
            oracle_scores(&searcher, parser.parse_query(query).unwrap().as_ref())
                .into_iter()
                .map(|(score, address)| {
                    let fast = searcher.segment_reader(address.segment_ord).fast_fields();
                    (
                        fast.u64("id").unwrap().first(address.doc_id).unwrap(),
                        score,
                    )
                })
                .collect();
        ranking.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranking
    }

    /// Pages from 0 to 130 of every query: the oracle's ids in its order, scores within 1e-4,
    /// and the copies on a page all with one score; copies from both tiers seen.
    pub async fn check_pages(
        &self,
        client: &mut pb::tierdex_client::TierdexClient<Channel>,
        index: &str,
    ) {
        let mut copies_seen = 0;
        let mut copy_tiers = BTreeSet::new();
        for query in QUERIES {
            let ranking = self.ranking(query);
            for offset in (0..130).step_by(10) {
                let mut request = search_request(index, query, 10);
                request.offset = offset;
                let response = client.search(request).await.unwrap().into_inner();
                assert!(
                    !response.degraded && !response.partial,
                    "`{query}`: {response:?}"
                );
                let got: Vec<(u64, f64, i32)> = response
                    .hits
                    .iter()
                    .map(|hit| match hit.id.as_ref().unwrap().kind {
                        Some(pb::value::Kind::U64(id)) => (id, hit.score, hit.tier),
                        ref other => panic!("{other:?}"),
                    })
                    .collect();
                let expected: Vec<(u64, f32)> = ranking
                    .iter()
                    .skip(offset as usize)
                    .take(10)
                    .copied()
                    .collect();
                assert_eq!(
                    got.iter().map(|hit| hit.0).collect::<Vec<_>>(),
                    expected.iter().map(|hit| hit.0).collect::<Vec<_>>(),
                    "`{query}` from {offset}: got {got:?}, expected {expected:?}"
                );
                for ((id, score, _), (_, expected)) in got.iter().zip(&expected) {
                    assert!(
                        (score - f64::from(*expected)).abs() <= 1e-4,
                        "{id}: {score} vs {expected}"
                    );
                }
                let copy_scores: BTreeSet<u64> = got
                    .iter()
                    .filter(|hit| self.copies.contains(&hit.0))
                    .map(|hit| hit.1.to_bits())
                    .collect();
                assert!(
                    copy_scores.len() <= 1,
                    "`{query}`: copies scored apart: {got:?}"
                );
                for hit in got.iter().filter(|hit| self.copies.contains(&hit.0)) {
                    copies_seen += 1;
                    copy_tiers.insert(hit.2);
                }
            }
        }
        assert!(
            copies_seen >= 150,
            "copies on the pages checked: {copies_seen}"
        );
        assert_eq!(copy_tiers.len(), 2, "copies in both tiers");
    }
}
