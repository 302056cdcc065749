//! Pruned pages against pages ranked over every match: random documents in several segments
//! (in input order, or sorted by a field as the schema's `sort_by` stores them), random
//! queries, and random score expressions (monotone in BM25 or not) and orders.

use proptest::prelude::*;
use tantivy::query::QueryParser;
use tantivy::schema::{FAST, INDEXED, Schema, TEXT};
use tantivy::{DateTime, Index, IndexWriter, TantivyDocument};

use super::*;
use crate::ranking::RankProfiles;
use crate::ranking::tests::expression_strategy;
use crate::schema::IndexSchema;

const SCHEMA: &str = r#"
id_field = "id"
[[field]]
name = "id"
type = "u64"
[[field]]
name = "body"
type = "text"
[[field]]
name = "downloads"
type = "u64"
fast = true
[[field]]
name = "rating"
type = "f64"
fast = true
[[field]]
name = "released"
type = "date"
fast = true
"#;

const WORDS: [&str; 6] = ["alpha", "beta", "gamma", "delta", "omega", "sigma"];

/// One document: body word picks (skewed towards the first words), and optional values.
type Document = (Vec<usize>, Option<u64>, Option<f64>, Option<i64>);

fn document_strategy() -> impl Strategy<Value = Document> {
    (
        proptest::collection::vec((0usize..6, 0usize..6).prop_map(|(a, b)| a.min(b)), 1..12),
        proptest::option::of(0u64..1_000_000),
        proptest::option::of(-5.0f64..5.0),
        proptest::option::of(1_600_000_000i64..1_700_000_000),
    )
}

/// `segments` indexed, each sorted by `sorted` (a field, descending) when set, as the schema's
/// `sort_by` has the builder store them.
fn index_of(segments: &[Vec<Document>], sorted: Option<(&str, bool)>) -> Index {
    let mut builder = Schema::builder();
    let id = builder.add_u64_field("id", INDEXED | FAST);
    let body = builder.add_text_field("body", TEXT);
    let downloads = builder.add_u64_field("downloads", FAST);
    let rating = builder.add_f64_field("rating", FAST);
    let released = builder.add_date_field("released", FAST);
    let key = builder.add_u64_field(SORT_KEY_FIELD, FAST);
    let mut settings = tantivy::IndexSettings::default();
    if let Some((field, descending)) = sorted {
        settings.sort_by_field = Some(tantivy::IndexSortByField {
            field: field.to_string(),
            order: if descending {
                tantivy::Order::Desc
            } else {
                tantivy::Order::Asc
            },
        });
    }
    let index = Index::builder()
        .schema(builder.build())
        .settings(settings)
        .create_in_ram()
        .unwrap();
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    let mut next_id = 0u64;
    for segment in segments {
        for (words, downloads_value, rating_value, released_value) in segment {
            let mut document = TantivyDocument::new();
            document.add_u64(id, next_id);
            document.add_u64(key, next_id);
            let text: Vec<&str> = words.iter().map(|&word| WORDS[word]).collect();
            document.add_text(body, text.join(" "));
            if let Some(value) = downloads_value {
                document.add_u64(downloads, *value);
            }
            if let Some(value) = rating_value {
                document.add_f64(rating, *value);
            }
            if let Some(value) = released_value {
                document.add_date(released, DateTime::from_timestamp_secs(*value));
            }
            writer.add_document(document).unwrap();
            next_id += 1;
        }
        writer.commit().unwrap();
    }
    index
}

/// Every match ranked, best `limit` by (rank, id).
fn every_match(
    searcher: &Searcher,
    query: &dyn tantivy::query::Query,
    profile: &RankProfile,
    values: &TierValues,
    limit: usize,
) -> Vec<(f64, u64)> {
    let weight = query
        .weight(tantivy::query::EnableScoring::enabled_from_searcher(
            searcher,
        ))
        .unwrap();
    let mut ranked = Vec::new();
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let inputs = values.segment_inputs(ord, profile.inputs());
        let ids = reader.fast_fields().u64(SORT_KEY_FIELD).unwrap();
        weight
            .for_each(reader, &mut |doc, score| {
                let row: Vec<Option<f64>> = inputs.iter().map(|column| column.first(doc)).collect();
                ranked.push((profile.rank(score, &row), ids.first(doc).unwrap()));
            })
            .unwrap();
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranked.truncate(limit);
    ranked
}

/// A page's (rank, id) pairs, best first.
type Page = Vec<(f64, u64)>;

/// The page `TopHits` ranks for `query` with the profile (`score`, `order_by`), and the page
/// ranking every match gives: (rank, id) pairs, best first.
fn pruned_and_every_match(
    segments: &[Vec<Document>],
    score: &str,
    order_by: &str,
    query: &str,
    limit: usize,
    sorted: Option<(&str, bool)>,
) -> (Page, Page) {
    let schema = IndexSchema::from_toml_str(
        &format!("{SCHEMA}\n[ranking.p]\nscore = {score:?}\n"),
        "schema.toml",
    )
    .unwrap();
    let profiles = RankProfiles::compile(&schema, "schema.toml").unwrap();
    let profile = profiles.choose(&schema, "p", order_by).unwrap();
    let index = index_of(segments, sorted);
    let searcher = index.reader().unwrap().searcher();
    let values = Arc::new(TierValues::open(&searcher, &schema).unwrap());
    let body = searcher.schema().get_field("body").unwrap();
    let query = QueryParser::for_index(&index, vec![body])
        .parse_query(query)
        .unwrap();
    let expected = every_match(&searcher, query.as_ref(), &profile, &values, limit);
    let top = TopHits {
        limit,
        tier: TierName::Hot,
        columns: Arc::new(HitColumns::open(&searcher, "id", IdKind::U64, TierName::Hot).unwrap()),
        threshold: Arc::default(),
        profile: profile.clone(),
        values,
        near_tie: 0.0,
    };
    let page = searcher.search(query.as_ref(), &top).unwrap();
    let page = page.iter().map(|hit| (hit.rank, hit.key)).collect();
    (page, expected)
}

fn tolerance(rank: f64) -> f64 {
    1e-5 * rank.abs().max(1.0)
}

fn profile_strategy() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        3 => expression_strategy().prop_map(|text| (text, String::new())),
        1 => Just(("bm25 * (1 + 0.5 * coalesce(5 - log10(1 + downloads), 0))".to_string(), String::new())),
        1 => Just(("bm25 + 3 * coalesce(rating, 0)".to_string(), String::new())),
        1 => prop_oneof![
            Just("downloads DESC"), Just("downloads ASC"), Just("rating DESC"), Just("released ASC")
        ].prop_map(|order| ("bm25".to_string(), order.to_string())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pruned_pages_equal_pages_ranked_over_every_match(
        segments in proptest::collection::vec(proptest::collection::vec(document_strategy(), 1..120), 1..4),
        (score, order_by) in profile_strategy(),
        query_words in proptest::collection::vec(0usize..6, 1..4),
        limit in 1usize..12,
        sorted in proptest::option::of((
            prop_oneof![Just("downloads"), Just("rating"), Just("released")],
            any::<bool>(),
        )),
    ) {
        let text: Vec<&str> = query_words.iter().map(|&word| WORDS[word]).collect();
        let (page, expected) =
            pruned_and_every_match(&segments, &score, &order_by, &text.join(" "), limit, sorted);

        // Rank for rank; ids too, but where float rounding of a summed score (tantivy adds a
        // pruned union's terms in another order) could swap hits within a hair of each other.
        prop_assert_eq!(page.len(), expected.len(), "{} {}: {:?} vs {:?}", score, order_by, page, expected);
        for (got, want) in page.iter().zip(&expected) {
            let close = got.0 == want.0 || (got.0 - want.0).abs() <= tolerance(want.0);
            prop_assert!(close, "{} {}: {:?} vs {:?}", score, order_by, page, expected);
        }
        if let Some(last) = expected.last() {
            for want in &expected {
                if want.0 > last.0 + tolerance(last.0) {
                    prop_assert!(
                        page.iter().any(|got| got.1 == want.1),
                        "{} {}: {:?} missing from {:?} (expected {:?})", score, order_by, want, page, expected
                    );
                }
            }
        }
    }
}

/// The case CI found (proptest seed `cacb199b`): a second segment whose one boosted document
/// ranks third once the first segment has filled the page.
#[test]
fn a_boosted_document_in_a_later_segment_is_not_pruned() {
    let none = |words: Vec<usize>| (words, None, None, None);
    let segments = vec![
        vec![
            none(vec![0]),
            none(vec![0, 0]),
            none(vec![0, 0, 0, 0]),
            none(vec![0, 0, 0]),
            none(vec![0, 0, 0, 0, 0, 0]),
            none(vec![0, 0, 0]),
            none(vec![0, 0]),
            (vec![0, 0], None, None, Some(1_600_000_172)),
        ],
        vec![
            (vec![2, 0], Some(21_733), Some(-3.536549626473821), None),
            none(vec![1, 0, 0, 3, 0, 1]),
            none(vec![0, 3, 4, 2, 1, 0]),
            (vec![2, 2, 1, 1, 0, 2, 1, 0], Some(843_614), None, None),
            none(vec![0, 3, 1, 2]),
        ],
    ];
    let score = "bm25 * (1 + 0.5 * coalesce(5 - log10(1 + downloads), 0))";
    for sorted in [None, Some(("released", false))] {
        let (page, expected) = pruned_and_every_match(&segments, score, "", "alpha", 8, sorted);
        assert_eq!(page, expected, "sorted by {sorted:?}");
    }
}
