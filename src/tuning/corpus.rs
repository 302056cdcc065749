//! Every document of a loaded version as one arrow table in the schema's input shape, read from
//! the tiers' fast columns (local, no storage reads), so that hot-tier rules can be evaluated on
//! the built version exactly as the builder evaluates them on its input. Fields that are not
//! fast have no column to read: their values are null here, and rules reading them cannot be
//! evaluated (`Corpus::readable`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder, UInt64Builder, new_null_array,
};
use arrow::compute::concat;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use tantivy::columnar::Column;
use tantivy::{DateTime, DocAddress, Searcher, SegmentReader};

use super::TuningError;
use crate::node::collector::TierName;
use crate::node::version::LoadedVersion;
use crate::schema::{FieldType, IndexSchema};

/// One tier's documents, numbered in segment order.
struct TierTable {
    columns: Vec<ArrayRef>,
    /// The number of each segment's first document within the tier.
    segment_starts: Vec<u32>,
    docs: u32,
}

/// The documents of a version (hot tier first, then cold, if loaded), numbered from 0.
pub struct Corpus {
    /// Columns in the order of the schema's fields, typed as the builder's input.
    pub batch: RecordBatch,
    /// Whether each schema field's values are in `batch` (fast fields).
    pub readable: Vec<bool>,
    pub hot_docs: u32,
    hot_segments: Vec<u32>,
    cold_segments: Vec<u32>,
}

impl Corpus {
    /// The hot tier alone, or both tiers (the cold one must be loaded).
    pub fn open(version: &LoadedVersion, with_cold: bool) -> Result<Corpus, TuningError> {
        let schema = &version.schema;
        let hot = TierTable::open(&version.hot.searcher(), schema)?;
        let cold = match (with_cold, version.cold()) {
            (false, _) => None,
            (true, Some(cold)) => Some(TierTable::open(&cold.tier.searcher(), schema)?),
            (true, None) => {
                return Err(TuningError::node(format!(
                    "{}: the cold tier is not loaded",
                    version.version_key
                )));
            }
        };
        let columns = match &cold {
            None => hot.columns.clone(),
            Some(cold) => hot
                .columns
                .iter()
                .zip(&cold.columns)
                .map(|(hot, cold)| {
                    concat(&[hot.as_ref(), cold.as_ref()])
                        .map_err(|err| TuningError::corpus(err.to_string()))
                })
                .collect::<Result<_, _>>()?,
        };
        let batch = RecordBatch::try_new(schema.input_arrow.clone(), columns)
            .map_err(|err| TuningError::corpus(err.to_string()))?;
        Ok(Corpus {
            batch,
            readable: schema
                .spec
                .fields
                .iter()
                .map(|field| field.fast && field.field_type != FieldType::Text)
                .collect(),
            hot_docs: hot.docs,
            hot_segments: hot.segment_starts,
            cold_segments: cold.map(|cold| cold.segment_starts).unwrap_or_default(),
        })
    }

    pub fn docs(&self) -> u32 {
        self.batch.num_rows() as u32
    }

    /// The corpus number of a document of a tier.
    pub fn number(&self, tier: TierName, doc: DocAddress) -> u32 {
        match tier {
            TierName::Hot => self.hot_segments[doc.segment_ord as usize] + doc.doc_id,
            TierName::Cold => {
                self.hot_docs + self.cold_segments[doc.segment_ord as usize] + doc.doc_id
            }
        }
    }
}

impl TierTable {
    fn open(searcher: &Searcher, schema: &IndexSchema) -> Result<TierTable, TuningError> {
        let readers = searcher.segment_readers();
        let mut segment_starts = Vec::with_capacity(readers.len());
        let mut docs = 0u32;
        for reader in readers {
            segment_starts.push(docs);
            docs += reader.max_doc();
        }
        let columns = schema
            .input_arrow
            .fields()
            .iter()
            .zip(&schema.spec.fields)
            .map(|(arrow_field, field)| {
                if !field.fast || field.field_type == FieldType::Text {
                    return Ok(new_null_array(arrow_field.data_type(), docs as usize));
                }
                read_column(
                    readers,
                    &field.name,
                    field.field_type,
                    arrow_field.data_type(),
                )
                .map_err(|err| TuningError::corpus(format!("fast column `{}`: {err}", field.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TierTable {
            columns,
            segment_starts,
            docs,
        })
    }
}

/// Appends every document's first value of a numeric-like column, segment after segment.
fn append_firsts<T, V>(
    readers: &[SegmentReader],
    name: &str,
    mut append: impl FnMut(Option<V>),
    convert: impl Fn(T) -> V,
) -> tantivy::Result<()>
where
    T: tantivy::columnar::HasAssociatedColumnType + PartialOrd + Copy + std::fmt::Debug,
    T: Send + Sync + 'static,
    tantivy::columnar::DynamicColumn: Into<Option<Column<T>>>,
{
    for reader in readers {
        let column: Option<Column<T>> = reader.fast_fields().column_opt(name)?;
        for doc in 0..reader.max_doc() {
            append(
                column
                    .as_ref()
                    .and_then(|column| column.first(doc))
                    .map(&convert),
            );
        }
    }
    Ok(())
}

fn read_column(
    readers: &[SegmentReader],
    name: &str,
    field_type: FieldType,
    data_type: &DataType,
) -> tantivy::Result<ArrayRef> {
    Ok(match field_type {
        FieldType::U64 => {
            let mut builder = UInt64Builder::new();
            append_firsts::<u64, u64>(readers, name, |v| builder.append_option(v), |v| v)?;
            Arc::new(builder.finish())
        }
        FieldType::I64 => {
            let mut builder = Int64Builder::new();
            append_firsts::<i64, i64>(readers, name, |v| builder.append_option(v), |v| v)?;
            Arc::new(builder.finish())
        }
        FieldType::F64 => {
            let mut builder = Float64Builder::new();
            append_firsts::<f64, f64>(readers, name, |v| builder.append_option(v), |v| v)?;
            Arc::new(builder.finish())
        }
        FieldType::Bool => {
            let mut builder = BooleanBuilder::new();
            append_firsts::<bool, bool>(readers, name, |v| builder.append_option(v), |v| v)?;
            Arc::new(builder.finish())
        }
        FieldType::Date => {
            let mut builder = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            append_firsts::<DateTime, i64>(
                readers,
                name,
                |v| builder.append_option(v),
                |date| date.into_timestamp_micros(),
            )?;
            Arc::new(builder.finish())
        }
        FieldType::Keyword => read_strings(readers, name, matches!(data_type, DataType::List(_)))?,
        FieldType::Text => unreachable!("text fields have no fast column"),
    })
}

/// A keyword column: every value of each document as a list (null without values), or the
/// first value alone for a single string (the id).
fn read_strings(readers: &[SegmentReader], name: &str, list: bool) -> tantivy::Result<ArrayRef> {
    let mut lists = ListBuilder::new(StringBuilder::new());
    let mut singles = StringBuilder::new();
    for reader in readers {
        let column = reader.fast_fields().str(name)?;
        // The dictionary once, in ordinal order: cheaper than a lookup per document.
        let mut terms = Vec::new();
        if let Some(column) = &column {
            let mut stream = column.dictionary().stream()?;
            while stream.advance() {
                terms.push(String::from_utf8_lossy(stream.key()).into_owned());
            }
        }
        for doc in 0..reader.max_doc() {
            let mut values = column
                .as_ref()
                .into_iter()
                .flat_map(|column| column.term_ords(doc))
                .map(|ord| terms[ord as usize].as_str())
                .peekable();
            if list {
                if values.peek().is_none() {
                    lists.append_null();
                } else {
                    for value in values {
                        lists.values().append_value(value);
                    }
                    lists.append(true);
                }
            } else {
                singles.append_option(values.next());
            }
        }
    }
    Ok(if list {
        Arc::new(lists.finish())
    } else {
        Arc::new(singles.finish())
    })
}
