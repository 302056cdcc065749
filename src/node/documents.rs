//! Documents as the node returns them, read from either tier: hot documents from tantivy's
//! document store, cold ones from parquet rows. Both give the same values for the same
//! document.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMicrosecondType, UInt64Type};
use tantivy::TantivyDocument;
use tantivy::schema::Value as _;

use super::collector::IdKey;
use crate::schema::{FieldType, IndexSchema};

#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Text(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    /// Microseconds since 1970, UTC.
    Date(i64),
    Strings(Vec<String>),
}

impl FieldValue {
    /// Bytes this value holds, roughly (for cache weights).
    pub fn approximate_size(&self) -> usize {
        match self {
            FieldValue::Text(text) => text.len() + 24,
            FieldValue::Strings(values) => {
                values.iter().map(|value| value.len() + 24).sum::<usize>() + 24
            }
            _ => 16,
        }
    }

    /// The id this value holds, when it is an id field's value (`From<IdKey>` backwards).
    pub fn as_id(&self) -> Option<IdKey> {
        match self {
            FieldValue::Text(text) => Some(IdKey::Str(text.clone())),
            FieldValue::U64(value) => Some(IdKey::U64(*value)),
            FieldValue::I64(value) => Some(IdKey::I64(*value)),
            _ => None,
        }
    }
}

impl From<IdKey> for FieldValue {
    fn from(id: IdKey) -> FieldValue {
        match id {
            IdKey::U64(value) => FieldValue::U64(value),
            IdKey::I64(value) => FieldValue::I64(value),
            IdKey::Str(value) => FieldValue::Text(value),
        }
    }
}

/// Stored fields in schema order; absent fields are left out.
pub type Fields = Vec<(String, FieldValue)>;

/// Which stored fields to return, and how keyword fields are shaped.
#[derive(Debug, Clone)]
pub struct FieldSelection {
    /// Schema field indexes, in schema order.
    pub columns: Vec<usize>,
    /// Per schema field: return keyword values as a list (the field is multi-valued).
    pub as_list: Vec<bool>,
}

impl FieldSelection {
    pub fn new(
        schema: &IndexSchema,
        multi_valued: &[String],
        requested: &[String],
    ) -> Result<FieldSelection, String> {
        let stored: Vec<usize> = schema.cold_columns.clone();
        let columns = if requested.is_empty() {
            stored
        } else {
            let mut columns = Vec::with_capacity(requested.len());
            for name in requested {
                let Some(index) = schema.field_index(name) else {
                    return Err(format!("unknown field `{name}`"));
                };
                if !schema.spec.fields[index].stored {
                    return Err(format!(
                        "field `{name}` is not stored, so it cannot be returned"
                    ));
                }
                if !columns.contains(&index) {
                    columns.push(index);
                }
            }
            columns.sort_unstable();
            columns
        };
        let as_list = schema
            .spec
            .fields
            .iter()
            .map(|field| {
                field.field_type == FieldType::Keyword && multi_valued.contains(&field.name)
            })
            .collect();
        Ok(FieldSelection { columns, as_list })
    }
}

/// No values reads as absent in both tiers (tantivy stores nothing for an empty list).
fn keyword_value(mut values: Vec<String>, as_list: bool) -> Option<FieldValue> {
    match (values.len(), as_list) {
        (0, _) => None,
        (1, false) => Some(FieldValue::Text(values.pop().expect("one value"))),
        _ => Some(FieldValue::Strings(values)),
    }
}

/// Stored fields of a hot document.
pub fn from_tantivy(
    schema: &IndexSchema,
    selection: &FieldSelection,
    document: &TantivyDocument,
) -> Fields {
    let mut fields = Vec::with_capacity(selection.columns.len());
    for &index in &selection.columns {
        let spec = &schema.spec.fields[index];
        let field = schema.tantivy_field(index);
        let mut values = document.get_all(field);
        let value = match spec.field_type {
            FieldType::Text => values
                .next()
                .and_then(|v| v.as_str())
                .map(|s| FieldValue::Text(s.to_string())),
            FieldType::Keyword if index == schema.id_index => values
                .next()
                .and_then(|v| v.as_str())
                .map(|s| FieldValue::Text(s.to_string())),
            FieldType::Keyword => keyword_value(
                values
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                selection.as_list[index],
            ),
            FieldType::I64 => values.next().and_then(|v| v.as_i64()).map(FieldValue::I64),
            FieldType::U64 => values.next().and_then(|v| v.as_u64()).map(FieldValue::U64),
            FieldType::F64 => values.next().and_then(|v| v.as_f64()).map(FieldValue::F64),
            FieldType::Bool => values
                .next()
                .and_then(|v| v.as_bool())
                .map(FieldValue::Bool),
            FieldType::Date => values
                .next()
                .and_then(|v| v.as_datetime())
                .map(|date| FieldValue::Date(date.into_timestamp_micros())),
        };
        if let Some(value) = value {
            fields.push((spec.name.clone(), value));
        }
    }
    fields
}

/// Stored fields of row `row` of a cold batch projected to the selection's columns.
pub fn from_arrow(
    schema: &IndexSchema,
    selection: &FieldSelection,
    batch: &RecordBatch,
    row: usize,
) -> Fields {
    let mut fields = Vec::with_capacity(selection.columns.len());
    for &index in &selection.columns {
        let spec = &schema.spec.fields[index];
        let Some(column) = batch.column_by_name(&spec.name) else {
            continue;
        };
        if column.is_null(row) {
            continue;
        }
        let value = match column.data_type() {
            DataType::Utf8 => Some(FieldValue::Text(
                column.as_string::<i32>().value(row).to_string(),
            )),
            DataType::List(_) => {
                let list = column.as_list::<i32>();
                let values = list.value(row);
                let strings = values.as_string::<i32>();
                keyword_value(
                    strings.iter().flatten().map(str::to_string).collect(),
                    selection.as_list[index],
                )
            }
            DataType::Int64 => Some(FieldValue::I64(
                column.as_primitive::<Int64Type>().value(row),
            )),
            DataType::UInt64 => Some(FieldValue::U64(
                column.as_primitive::<UInt64Type>().value(row),
            )),
            DataType::Float64 => Some(FieldValue::F64(
                column.as_primitive::<Float64Type>().value(row),
            )),
            DataType::Boolean => Some(FieldValue::Bool(column.as_boolean().value(row))),
            DataType::Timestamp(_, _) => Some(FieldValue::Date(
                column.as_primitive::<TimestampMicrosecondType>().value(row),
            )),
            _ => None,
        };
        if let Some(value) = value {
            fields.push((spec.name.clone(), value));
        }
    }
    fields
}
