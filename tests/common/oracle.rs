//! The monolithic oracle the CACM tests compare with: one tantivy index over every CACM
//! document (ids as numbers, or as strings most of which share their first 8 bytes), ranked by
//! (score, id) here, with none of tierdex's ranking code.

use std::collections::BTreeMap;

use tantivy::query::QueryParser;
use tierdex::api::pb;

use super::*;

/// A document id as the oracle orders it: numbers by value, strings bytewise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Id {
    Number(u64),
    Text(String),
}

/// How the CACM ids are given to the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdStyle {
    /// As in the data set: u64.
    Numbers,
    /// Strings; two in three are `cacm-<9999999 - id>` (one shared 8-byte prefix, and an order
    /// unlike the input's), the others `x<id>`.
    Strings,
}

impl IdStyle {
    pub fn id(self, number: u64) -> Id {
        match self {
            IdStyle::Numbers => Id::Number(number),
            IdStyle::Strings if number.is_multiple_of(3) => Id::Text(format!("x{number}")),
            IdStyle::Strings => Id::Text(format!("cacm-{:07}", 9_999_999 - number)),
        }
    }

    pub fn of_hit(self, hit: &pb::Hit) -> Id {
        match self {
            IdStyle::Numbers => Id::Number(hit_u64(hit)),
            IdStyle::Strings => match hit.id.as_ref().and_then(|id| id.kind.as_ref()) {
                Some(pb::value::Kind::Text(text)) => Id::Text(text.clone()),
                other => panic!("expected a string id, got {other:?}"),
            },
        }
    }

    pub fn schema(self) -> std::sync::Arc<tierdex::schema::IndexSchema> {
        match self {
            IdStyle::Numbers => cacm_schema(),
            IdStyle::Strings => {
                let text = std::fs::read_to_string(fixture("cacm/schema.toml"))
                    .unwrap()
                    .replacen("type = \"u64\"", "type = \"keyword\"", 1);
                std::sync::Arc::new(
                    tierdex::schema::IndexSchema::from_toml_str(&text, "schema.toml").unwrap(),
                )
            }
        }
    }

    /// The CACM documents with ids in this style, by their original number.
    pub fn documents(self) -> BTreeMap<u64, serde_json::Value> {
        let mut documents = cacm_documents();
        for (number, document) in documents.iter_mut() {
            document["id"] = match self.id(*number) {
                Id::Number(value) => value.into(),
                Id::Text(text) => text.into(),
            };
        }
        documents
    }
}

/// One tantivy index over every CACM document, ranked by (score, id).
pub struct Oracle {
    index: tantivy::Index,
    parser: QueryParser,
    pub style: IdStyle,
}

impl Oracle {
    pub fn new(style: IdStyle) -> Oracle {
        let schema = style.schema();
        let (index, parser) = oracle_index(&schema, style.documents().into_values());
        Oracle {
            index,
            parser,
            style,
        }
    }

    /// Every match, best first.
    pub fn ranking(&self, query: &str) -> Vec<(Id, f32)> {
        let query = self
            .parser
            .parse_query(query)
            .unwrap_or_else(|err| panic!("{query}: {err}"));
        // The node's query semantics: constant-score clauses keep their score in every segment
        // (see tierdex::node::stable); tantivy alone would drop it where a range covers a whole
        // segment.
        let query = tierdex::node::stable::keep_constant_scores(query, &self.index.schema());
        let searcher = self.index.reader().unwrap().searcher();
        let all = oracle_scores(&searcher, query.as_ref());
        let mut scored: Vec<(Id, f32)> = all
            .into_iter()
            .map(|(score, address)| {
                let segment = searcher.segment_reader(address.segment_ord);
                let fast = segment.fast_fields();
                let id = match self.style {
                    IdStyle::Numbers => {
                        Id::Number(fast.u64("id").unwrap().first(address.doc_id).unwrap())
                    }
                    IdStyle::Strings => {
                        let column = fast.str("id").unwrap().unwrap();
                        let ord = column.ords().first(address.doc_id).unwrap();
                        let mut text = String::new();
                        column.ord_to_str(ord, &mut text).unwrap();
                        Id::Text(text)
                    }
                };
                (id, score)
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
    }
}

/// Builds CACM with `rules`, ids in `style` and `shards` shards into `store` as `index`.
pub async fn build_cacm_styled(
    store: std::sync::Arc<dyn tierdex::store::BlobStore>,
    rules: &str,
    style: IdStyle,
    index: &str,
    shards: u32,
) -> tierdex::builder::BuildSummary {
    let input = tempfile::tempdir().unwrap();
    let path = match style {
        IdStyle::Numbers => shared_data("cacm.jsonl"),
        IdStyle::Strings => {
            let path = input.path().join("cacm.jsonl");
            let lines: Vec<String> = style
                .documents()
                .values()
                .map(|document| document.to_string())
                .collect();
            std::fs::write(&path, lines.join("\n")).unwrap();
            path
        }
    };
    let mut options = build_options(style.schema(), rules, vec![path], index);
    options.shards = shards;
    tierdex::builder::build(options, store).await.unwrap()
}
