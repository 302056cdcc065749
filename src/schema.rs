//! The schema file (TOML) and the three views derived from it: the arrow schema the builder
//! reads input into, the tantivy schemas of the hot and cold indexes, and the arrow schema of
//! the cold parquet files.
//!
//! Hot and cold tantivy schemas have the same fields in the same order with the same indexing
//! options, so a `Term` built against one is valid in the other and BM25 statistics can be
//! summed across tiers; they differ only in which fields are stored (cold stores nothing: its
//! documents live in parquet).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field as ArrowField, Schema as ArrowSchema, TimeUnit};
use serde::{Deserialize, Serialize};
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, NumericOptions, Schema,
    TextFieldIndexing, TextOptions,
};

/// Name of the cold-index fast field that locates a document's row in the cold parquet files.
/// Names starting with `_` are reserved for such internal fields.
pub const ADDR_FIELD: &str = "_addr";

/// Name of the fast field, in both tiers, holding each document's id sort key
/// (`format::sort_key`): score ties break by it without reading the id.
pub const SORT_KEY_FIELD: &str = "_key";
/// Hidden fast field each tier is sorted by when the schema sets `sort_by`: the field's value
/// as an `f64`, negated for `DESC`, and `+inf` for a document without one, so that the best
/// documents come first and those without a value last (tantivy's own order of a sparse
/// column puts them first).
pub const ORDER_FIELD: &str = "_order";

/// Tokenizers registered by tantivy's default `TokenizerManager`.
pub const KNOWN_TOKENIZERS: &[&str] = &["default", "raw", "en_stem", "whitespace"];

/// Keyword fields are indexed whole, as one token.
const KEYWORD_TOKENIZER: &str = "raw";

#[derive(Debug, thiserror::Error)]
#[error("schema {source_name}: {message}")]
pub struct SchemaError {
    pub source_name: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Text,
    Keyword,
    I64,
    U64,
    F64,
    Bool,
    Date,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Keyword => "keyword",
            FieldType::I64 => "i64",
            FieldType::U64 => "u64",
            FieldType::F64 => "f64",
            FieldType::Bool => "bool",
            FieldType::Date => "date",
        }
    }

    pub fn is_string(self) -> bool {
        matches!(self, FieldType::Text | FieldType::Keyword)
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::I64 | FieldType::U64 | FieldType::F64)
    }

    /// The arrow type input is decoded into. Keyword fields are lists so that one
    /// representation covers both `"a"` and `["a", "b"]` in the input (a keyword id, which is
    /// single-valued, is the exception: see `IndexSchema::input_arrow`).
    pub fn arrow_type(self) -> DataType {
        match self {
            FieldType::Text => DataType::Utf8,
            FieldType::Keyword => {
                DataType::List(Arc::new(ArrowField::new("item", DataType::Utf8, true)))
            }
            FieldType::I64 => DataType::Int64,
            FieldType::U64 => DataType::UInt64,
            FieldType::F64 => DataType::Float64,
            FieldType::Bool => DataType::Boolean,
            FieldType::Date => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

fn default_true() -> bool {
    true
}

/// One `[[field]]` table of the schema file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default)]
    pub stored: bool,
    #[serde(default = "default_true")]
    pub indexed: bool,
    #[serde(default)]
    pub fast: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
}

impl FieldSpec {
    pub fn tokenizer_name(&self) -> &str {
        match self.field_type {
            FieldType::Keyword => KEYWORD_TOKENIZER,
            _ => self.tokenizer.as_deref().unwrap_or("default"),
        }
    }
}

/// The schema file as written by the user; also embedded verbatim in every manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSpec {
    pub id_field: String,
    #[serde(default)]
    pub default_search_fields: Vec<String>,
    #[serde(rename = "field")]
    pub fields: Vec<FieldSpec>,
    /// Named rank profiles (`[ranking.NAME]`), checked against the fields by `ranking`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ranking: BTreeMap<String, RankingSpec>,
    /// `"FIELD ASC"` or `"FIELD DESC"`: the order each tier's documents are stored in (a
    /// numeric or date fast field). Profiles and orders that read the field prune by how far
    /// a search has gone through a segment (`ranking::values::SuffixRanges`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_by: Option<String>,
}

/// The order of `SchemaSpec::sort_by`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    pub field: String,
    pub descending: bool,
}

/// One `[ranking.NAME]` table: a score expression or a field order (exactly one of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankingSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_by: Option<String>,
}

/// A validated schema with every derived view. Field `i` of `spec.fields` is column `i` of
/// `input_arrow` and tantivy field `i` of both index schemas; `_addr` and `_key` come last.
#[derive(Debug, Clone)]
pub struct IndexSchema {
    pub spec: SchemaSpec,
    /// Where the schema came from (its file), for errors found later.
    pub source_name: String,
    pub id_index: usize,
    pub input_arrow: Arc<ArrowSchema>,
    pub cold_arrow: Arc<ArrowSchema>,
    /// For each cold parquet column, the schema field it holds.
    pub cold_columns: Vec<usize>,
    pub hot_tantivy: Schema,
    pub cold_tantivy: Schema,
    pub addr_field: Field,
    pub sort_key_field: Field,
    /// `_order`, with `sort_by`.
    pub order_field: Option<Field>,
    /// `sort_by`, parsed.
    stored_order: Option<StoredOrder>,
}

impl StoredOrder {
    /// `FIELD`, `FIELD ASC` or `FIELD DESC` (case-insensitive keywords).
    pub fn parse(text: &str) -> Result<StoredOrder, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let descending = match words.as_slice() {
            [_] => false,
            [_, order] if order.eq_ignore_ascii_case("asc") => false,
            [_, order] if order.eq_ignore_ascii_case("desc") => true,
            _ => {
                return Err(format!(
                    "`{text}` is not `FIELD`, `FIELD ASC` or `FIELD DESC`"
                ));
            }
        };
        Ok(StoredOrder {
            field: words[0].to_string(),
            descending,
        })
    }
}

impl IndexSchema {
    /// The order each tier's documents are stored in, if the schema sets one (checked).
    pub fn stored_order(&self) -> Option<StoredOrder> {
        self.stored_order.clone()
    }

    pub fn from_toml_file(path: &Path) -> Result<IndexSchema, SchemaError> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| SchemaError {
            source_name: source_name.clone(),
            message: format!("cannot read: {err}"),
        })?;
        Self::from_toml_str(&text, &source_name)
    }

    pub fn from_toml_str(text: &str, source_name: &str) -> Result<IndexSchema, SchemaError> {
        let spec: SchemaSpec = toml::from_str(text).map_err(|err| SchemaError {
            source_name: source_name.to_string(),
            message: err.to_string(),
        })?;
        Self::new(spec, source_name)
    }

    pub fn new(mut spec: SchemaSpec, source_name: &str) -> Result<IndexSchema, SchemaError> {
        let fail = |message: String| SchemaError {
            source_name: source_name.to_string(),
            message,
        };
        if spec.fields.is_empty() {
            return Err(fail("no [[field]] tables".into()));
        }
        let mut names = HashSet::new();
        for field in &spec.fields {
            if field.name.is_empty() || field.name.starts_with('_') {
                return Err(fail(format!(
                    "field `{}`: names must be non-empty and must not start with `_` (reserved)",
                    field.name
                )));
            }
            if !names.insert(field.name.as_str()) {
                return Err(fail(format!("field `{}` is declared twice", field.name)));
            }
            if let Some(tokenizer) = &field.tokenizer {
                if field.field_type != FieldType::Text {
                    return Err(fail(format!(
                        "field `{}`: `tokenizer` applies to text fields only, not {}",
                        field.name,
                        field.field_type.name()
                    )));
                }
                if !KNOWN_TOKENIZERS.contains(&tokenizer.as_str()) {
                    return Err(fail(format!(
                        "field `{}`: unknown tokenizer `{tokenizer}` (known: {})",
                        field.name,
                        KNOWN_TOKENIZERS.join(", ")
                    )));
                }
            }
        }
        let id_index = spec
            .fields
            .iter()
            .position(|field| field.name == spec.id_field)
            .ok_or_else(|| {
                fail(format!(
                    "id_field `{}` is not a declared field",
                    spec.id_field
                ))
            })?;
        let id_spec = &mut spec.fields[id_index];
        if !matches!(
            id_spec.field_type,
            FieldType::U64 | FieldType::I64 | FieldType::Keyword
        ) {
            return Err(fail(format!(
                "id_field `{}` must be u64, i64 or keyword, not {}",
                id_spec.name,
                id_spec.field_type.name()
            )));
        }
        // The id is how both tiers name a document: it must be returned with every hit, found
        // by term, and read per hit to break score ties.
        id_spec.stored = true;
        id_spec.indexed = true;
        id_spec.fast = true;
        let stored_order = match &spec.sort_by {
            Some(text) => Some(
                StoredOrder::parse(text).map_err(|message| fail(format!("sort_by: {message}")))?,
            ),
            None => None,
        };
        if let Some(order) = &stored_order {
            let Some(field) = spec.fields.iter().find(|field| field.name == order.field) else {
                return Err(fail(format!(
                    "sort_by names `{}`, which is not a declared field",
                    order.field
                )));
            };
            if !(field.fast
                && (field.field_type.is_numeric() || field.field_type == FieldType::Date))
            {
                return Err(fail(format!(
                    "sort_by field `{}` must be a numeric or date field with `fast = true`",
                    order.field
                )));
            }
        }
        for name in &spec.default_search_fields {
            let Some(field) = spec.fields.iter().find(|field| &field.name == name) else {
                return Err(fail(format!(
                    "default_search_fields names `{name}`, which is not a declared field"
                )));
            };
            if !field.indexed {
                return Err(fail(format!(
                    "default search field `{name}` is not indexed"
                )));
            }
        }

        let input_arrow = Arc::new(ArrowSchema::new(
            spec.fields
                .iter()
                .enumerate()
                .map(|(index, field)| {
                    // An id names one document: it is a single string even for a keyword.
                    let data_type = if index == id_index && field.field_type == FieldType::Keyword {
                        DataType::Utf8
                    } else {
                        field.field_type.arrow_type()
                    };
                    ArrowField::new(&field.name, data_type, true)
                })
                .collect::<Vec<_>>(),
        ));
        let cold_columns: Vec<usize> = spec
            .fields
            .iter()
            .enumerate()
            .filter(|(_, field)| field.stored)
            .map(|(index, _)| index)
            .collect();
        let cold_arrow = Arc::new(
            input_arrow
                .project(&cold_columns)
                .map_err(|err| fail(err.to_string()))?,
        );
        let (hot_tantivy, [addr_field, sort_key_field], order_field) = tantivy_schema(&spec, true);
        let (cold_tantivy, _, _) = tantivy_schema(&spec, false);
        Ok(IndexSchema {
            spec,
            source_name: source_name.to_string(),
            id_index,
            input_arrow,
            cold_arrow,
            cold_columns,
            hot_tantivy,
            cold_tantivy,
            addr_field,
            sort_key_field,
            order_field,
            stored_order,
        })
    }

    pub fn id_spec(&self) -> &FieldSpec {
        &self.spec.fields[self.id_index]
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.spec.fields.iter().position(|field| field.name == name)
    }

    /// The tantivy field of schema field `index` (same in hot and cold).
    pub fn tantivy_field(&self, index: usize) -> Field {
        Field::from_field_id(index as u32)
    }
}

/// Builds the tantivy schema of one tier. `with_stored` is false for the cold tier, whose
/// stored values live in parquet.
fn tantivy_schema(spec: &SchemaSpec, with_stored: bool) -> (Schema, [Field; 2], Option<Field>) {
    let mut builder = Schema::builder();
    for field in &spec.fields {
        let stored = with_stored && field.stored;
        match field.field_type {
            FieldType::Text | FieldType::Keyword => {
                let mut options = TextOptions::default();
                if field.indexed {
                    // Keywords keep frequencies too: without them tantivy's block-max scores
                    // are 0 and pruning with a threshold from elsewhere would skip matches.
                    let record = if field.field_type == FieldType::Text {
                        IndexRecordOption::WithFreqsAndPositions
                    } else {
                        IndexRecordOption::WithFreqs
                    };
                    options = options.set_indexing_options(
                        TextFieldIndexing::default()
                            .set_tokenizer(field.tokenizer_name())
                            .set_index_option(record),
                    );
                }
                if stored {
                    options = options.set_stored();
                }
                if field.fast {
                    options = options.set_fast(KEYWORD_TOKENIZER);
                }
                builder.add_text_field(&field.name, options);
            }
            FieldType::I64 | FieldType::U64 | FieldType::F64 | FieldType::Bool => {
                let mut options = NumericOptions::default();
                if field.indexed {
                    options = options.set_indexed().set_fieldnorm();
                }
                if stored {
                    options = options.set_stored();
                }
                if field.fast {
                    options = options.set_fast();
                }
                match field.field_type {
                    FieldType::I64 => builder.add_i64_field(&field.name, options),
                    FieldType::U64 => builder.add_u64_field(&field.name, options),
                    FieldType::F64 => builder.add_f64_field(&field.name, options),
                    _ => builder.add_bool_field(&field.name, options),
                };
            }
            FieldType::Date => {
                let mut options =
                    DateOptions::default().set_precision(DateTimePrecision::Microseconds);
                if field.indexed {
                    options = options.set_indexed().set_fieldnorm();
                }
                if stored {
                    options = options.set_stored();
                }
                if field.fast {
                    options = options.set_fast();
                }
                builder.add_date_field(&field.name, options);
            }
        }
    }
    let addr_field = builder.add_u64_field(ADDR_FIELD, NumericOptions::default().set_fast());
    let sort_key_field =
        builder.add_u64_field(SORT_KEY_FIELD, NumericOptions::default().set_fast());
    let order_field = spec
        .sort_by
        .as_ref()
        .map(|_| builder.add_f64_field(ORDER_FIELD, NumericOptions::default().set_fast()));
    (builder.build(), [addr_field, sort_key_field], order_field)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CACM: &str = r#"
id_field = "id"
default_search_fields = ["title", "authors"]
[[field]]
name = "id"
type = "u64"
stored = true
indexed = true
fast = true
[[field]]
name = "title"
type = "text"
stored = true
[[field]]
name = "authors"
type = "keyword"
stored = true
"#;

    #[test]
    fn cacm_schema_derives_matching_tier_schemas() {
        let schema = IndexSchema::from_toml_str(CACM, "cacm.toml").unwrap();
        assert_eq!(schema.id_index, 0);
        assert_eq!(schema.cold_columns, vec![0, 1, 2]);
        let hot = &schema.hot_tantivy;
        let cold = &schema.cold_tantivy;
        assert_eq!(hot.num_fields(), cold.num_fields());
        for ((_, hot_entry), (_, cold_entry)) in hot.fields().zip(cold.fields()) {
            assert_eq!(hot_entry.name(), cold_entry.name());
            assert_eq!(hot_entry.is_indexed(), cold_entry.is_indexed());
            assert!(!cold_entry.is_stored());
        }
        assert!(hot.get_field_entry(schema.tantivy_field(1)).is_stored());
    }

    #[test]
    fn rejects_unknown_tokenizer_and_missing_id() {
        let bad = CACM.replace(
            "type = \"text\"",
            "type = \"text\"\ntokenizer = \"klingon\"",
        );
        let err = IndexSchema::from_toml_str(&bad, "s.toml").unwrap_err();
        assert!(
            err.to_string().contains("unknown tokenizer `klingon`"),
            "{err}"
        );
        let bad = CACM.replace("id_field = \"id\"", "id_field = \"doc\"");
        let err = IndexSchema::from_toml_str(&bad, "s.toml").unwrap_err();
        assert!(err.to_string().contains("id_field `doc`"), "{err}");
    }

    #[test]
    fn reports_toml_position_of_unknown_keys() {
        let bad = CACM.replace("fast = true", "fats = true");
        let err = IndexSchema::from_toml_str(&bad, "s.toml").unwrap_err();
        assert!(err.to_string().contains("fats"), "{err}");
        assert!(err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn sort_by_names_a_numeric_fast_field_and_an_order() {
        let with = |sort_by: &str| {
            let text = CACM.replace(
                "id_field = \"id\"",
                &format!("id_field = \"id\"\nsort_by = {sort_by:?}"),
            );
            IndexSchema::from_toml_str(&text, "s.toml")
        };
        let schema = with("id desc").unwrap();
        assert_eq!(
            schema.stored_order(),
            Some(StoredOrder {
                field: "id".into(),
                descending: true
            })
        );
        assert!(!with("id").unwrap().stored_order().unwrap().descending);
        let err = with("year ASC").unwrap_err().to_string();
        assert!(err.contains("s.toml") && err.contains("`year`"), "{err}");
        let err = with("title ASC").unwrap_err().to_string();
        assert!(err.contains("numeric or date field"), "{err}");
        let err = with("id sideways").unwrap_err().to_string();
        assert!(
            err.contains("sort_by") && err.contains("FIELD DESC"),
            "{err}"
        );
    }
}
