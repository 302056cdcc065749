//! Arrow rows → tantivy documents for the two tiers. Hot documents carry every field (stored
//! values included); cold documents carry only what the cold index needs to search and to
//! locate the row in parquet: indexed and fast fields, and `_addr`. Both carry `_key`, the id's
//! sort key.

use arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, GenericListArray, Int64Array, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMicrosecondType, UInt64Type};
use arrow::record_batch::RecordBatch;
use tantivy::schema::Field;
use tantivy::{DateTime, TantivyDocument};

use crate::format::sort_key;
use crate::schema::IndexSchema;

#[derive(Debug, Clone)]
struct FieldPlan {
    column: usize,
    field: Field,
    in_cold: bool,
}

/// Knows which schema fields go into which tier's documents.
#[derive(Debug, Clone)]
pub struct DocumentMaker {
    plans: Vec<FieldPlan>,
    addr_field: Field,
    sort_key_field: Field,
    id_column: usize,
    /// `_order` and what it is computed from: the `sort_by` column, and whether descending.
    order: Option<(Field, usize, bool)>,
}

/// A column viewed as its concrete array type, downcast once per batch.
enum ColumnView<'a> {
    Str(&'a StringArray),
    List(&'a GenericListArray<i32>, &'a StringArray),
    I64(&'a Int64Array),
    U64(&'a UInt64Array),
    F64(&'a Float64Array),
    Bool(&'a BooleanArray),
    Micros(&'a TimestampMicrosecondArray),
}

impl<'a> ColumnView<'a> {
    fn new(array: &'a dyn Array) -> ColumnView<'a> {
        match array.data_type() {
            DataType::Utf8 => ColumnView::Str(array.as_string::<i32>()),
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                ColumnView::List(list, list.values().as_string::<i32>())
            }
            DataType::Int64 => ColumnView::I64(array.as_primitive::<Int64Type>()),
            DataType::UInt64 => ColumnView::U64(array.as_primitive::<UInt64Type>()),
            DataType::Float64 => ColumnView::F64(array.as_primitive::<Float64Type>()),
            DataType::Boolean => ColumnView::Bool(array.as_boolean()),
            DataType::Timestamp(_, _) => {
                ColumnView::Micros(array.as_primitive::<TimestampMicrosecondType>())
            }
            other => unreachable!("input batches hold only schema types, not {other}"),
        }
    }

    fn add_to(&self, document: &mut TantivyDocument, field: Field, row: usize) {
        match self {
            ColumnView::Str(array) => {
                if array.is_valid(row) {
                    document.add_text(field, array.value(row));
                }
            }
            ColumnView::List(list, values) => {
                if list.is_valid(row) {
                    let offsets = list.value_offsets();
                    for index in offsets[row] as usize..offsets[row + 1] as usize {
                        if values.is_valid(index) {
                            document.add_text(field, values.value(index));
                        }
                    }
                }
            }
            ColumnView::I64(array) => {
                if array.is_valid(row) {
                    document.add_i64(field, array.value(row));
                }
            }
            ColumnView::U64(array) => {
                if array.is_valid(row) {
                    document.add_u64(field, array.value(row));
                }
            }
            ColumnView::F64(array) => {
                if array.is_valid(row) {
                    document.add_f64(field, array.value(row));
                }
            }
            ColumnView::Bool(array) => {
                if array.is_valid(row) {
                    document.add_bool(field, array.value(row));
                }
            }
            ColumnView::Micros(array) => {
                if array.is_valid(row) {
                    document.add_date(field, DateTime::from_timestamp_micros(array.value(row)));
                }
            }
        }
    }
}

impl DocumentMaker {
    pub fn new(schema: &IndexSchema) -> DocumentMaker {
        let plans = schema
            .spec
            .fields
            .iter()
            .enumerate()
            .map(|(column, spec)| FieldPlan {
                column,
                field: schema.tantivy_field(column),
                in_cold: spec.indexed || spec.fast,
            })
            .collect();
        DocumentMaker {
            plans,
            addr_field: schema.addr_field,
            sort_key_field: schema.sort_key_field,
            id_column: schema.id_index,
            order: schema
                .order_field
                .zip(schema.stored_order())
                .and_then(|(field, order)| {
                    let column = schema
                        .spec
                        .fields
                        .iter()
                        .position(|spec| spec.name == order.field)?;
                    Some((field, column, order.descending))
                }),
        }
    }

    /// Each row's `_order` (see `schema::ORDER_FIELD`), with the field it goes in.
    fn order_values(&self, batch: &RecordBatch) -> Option<(Field, Vec<f64>)> {
        let (field, column, descending) = self.order?;
        let view = ColumnView::new(batch.column(column).as_ref());
        let value = |row: usize| -> Option<f64> {
            match &view {
                ColumnView::U64(array) => array.is_valid(row).then(|| array.value(row) as f64),
                ColumnView::I64(array) => array.is_valid(row).then(|| array.value(row) as f64),
                ColumnView::F64(array) => array
                    .is_valid(row)
                    .then(|| array.value(row))
                    .filter(|value| !value.is_nan()),
                ColumnView::Micros(array) => array.is_valid(row).then(|| array.value(row) as f64),
                _ => None,
            }
        };
        let values = (0..batch.num_rows())
            .map(|row| match value(row) {
                Some(value) if descending => -value,
                Some(value) => value,
                None => f64::INFINITY,
            })
            .collect();
        Some((field, values))
    }

    /// The sort key of every row's id (`format::sort_key`). Ids are never null by the time
    /// documents are made (the builder rejects records without one).
    fn sort_keys(&self, batch: &RecordBatch) -> Vec<u64> {
        let ids = batch.column(self.id_column);
        match ColumnView::new(ids.as_ref()) {
            ColumnView::Str(array) => (0..array.len())
                .map(|row| sort_key::str_key(array.value(row)))
                .collect(),
            ColumnView::U64(array) => array
                .values()
                .iter()
                .map(|&id| sort_key::u64_key(id))
                .collect(),
            ColumnView::I64(array) => array
                .values()
                .iter()
                .map(|&id| sort_key::i64_key(id))
                .collect(),
            _ => unreachable!("ids are u64, i64 or single strings (checked by the schema)"),
        }
    }

    /// Hot documents for every row of `batch` (input layout).
    pub fn hot_documents(&self, batch: &RecordBatch) -> Vec<TantivyDocument> {
        let views: Vec<ColumnView> = self
            .plans
            .iter()
            .map(|plan| ColumnView::new(batch.column(plan.column).as_ref()))
            .collect();
        let keys = self.sort_keys(batch);
        let order = self.order_values(batch);
        (0..batch.num_rows())
            .map(|row| {
                let mut document = TantivyDocument::new();
                for (plan, view) in self.plans.iter().zip(&views) {
                    view.add_to(&mut document, plan.field, row);
                }
                document.add_u64(self.sort_key_field, keys[row]);
                if let Some((field, values)) = &order {
                    document.add_f64(*field, values[row]);
                }
                document
            })
            .collect()
    }

    /// Cold documents for every row of `batch`; row `i` lives at packed address `addrs[i]`.
    pub fn cold_documents(&self, batch: &RecordBatch, addrs: &[u64]) -> Vec<TantivyDocument> {
        let cold_plans: Vec<&FieldPlan> = self.plans.iter().filter(|plan| plan.in_cold).collect();
        let views: Vec<ColumnView> = cold_plans
            .iter()
            .map(|plan| ColumnView::new(batch.column(plan.column).as_ref()))
            .collect();
        let keys = self.sort_keys(batch);
        let order = self.order_values(batch);
        (0..batch.num_rows())
            .map(|row| {
                let mut document = TantivyDocument::new();
                for (plan, view) in cold_plans.iter().zip(&views) {
                    view.add_to(&mut document, plan.field, row);
                }
                document.add_u64(self.addr_field, addrs[row]);
                document.add_u64(self.sort_key_field, keys[row]);
                if let Some((field, values)) = &order {
                    document.add_f64(*field, values[row]);
                }
                document
            })
            .collect()
    }
}
