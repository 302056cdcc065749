//! Casting columns read by arrow's CSV and parquet readers to the schema's input types, with
//! the rows that fail to convert located rather than turned into silent NULLs.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListArray, StringArray, new_null_array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::{CastOptions, cast_with_options, filter};
use arrow::datatypes::{DataType, Field};
use arrow::record_batch::RecordBatch;

use super::{InputBatch, InputError, InputStats, ReadError};
use crate::schema::{FieldType, IndexSchema};

/// Where a raw batch came from, for messages and positions.
pub struct RawSource<'a> {
    pub file_name: &'a str,
    pub file_index: u32,
    /// Line (or row) number of the batch's first row.
    pub first_line: u64,
    pub skip_invalid: bool,
}

/// Converts a batch read by arrow (any column types) to the schema's input layout:
/// `source_columns[i]` is the raw column holding schema field `i`, if any. Rows that fail to
/// convert, or have no id, are reported through `stats` and dropped.
pub fn conform_batch(
    raw: &RecordBatch,
    source_columns: &[Option<usize>],
    schema: &IndexSchema,
    source: &RawSource<'_>,
    stats: &mut InputStats,
) -> Result<InputBatch, ReadError> {
    let io_error = |message: String| ReadError::Io {
        file: source.file_name.to_string(),
        message,
    };
    let rows = raw.num_rows();
    let mut lines: Vec<u64> = (0..rows as u64)
        .map(|row| source.first_line + row)
        .collect();
    let mut bad: BTreeMap<usize, String> = BTreeMap::new();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.spec.fields.len());
    for (index, field) in schema.spec.fields.iter().enumerate() {
        let target = schema.input_arrow.field(index).data_type();
        let Some(column) = source_columns[index] else {
            columns.push(new_null_array(target, rows));
            continue;
        };
        let conformed = conform(raw.column(column), field.field_type, target)
            .map_err(|message| io_error(format!("column `{}`: {message}", field.name)))?;
        if conformed.was_list {
            stats.saw_array[index] = true;
        }
        for (row, message) in conformed.bad_rows {
            bad.entry(row)
                .or_insert_with(|| format!("field `{}`: {message}", field.name));
        }
        columns.push(conformed.array);
    }
    for row in 0..rows {
        if columns[schema.id_index].is_null(row) {
            bad.entry(row).or_insert_with(|| {
                format!("missing id: field `{}` is empty", schema.spec.id_field)
            });
        }
    }
    for (row, message) in &bad {
        stats.invalid(
            source.skip_invalid,
            InputError {
                file: source.file_name.to_string(),
                line: lines[*row],
                column: None,
                message: message.clone(),
            },
        )?;
    }
    let mut batch = RecordBatch::try_new(schema.input_arrow.clone(), columns)
        .map_err(|err| io_error(err.to_string()))?;
    if !bad.is_empty() {
        let rows: Vec<usize> = bad.keys().copied().collect();
        batch = drop_rows(&batch, &mut lines, &rows).map_err(io_error)?;
    }
    Ok(InputBatch {
        batch,
        file: source.file_index,
        lines,
    })
}

/// A column converted to its schema type, and the rows whose value could not be converted.
pub struct Conformed {
    pub array: ArrayRef,
    pub bad_rows: Vec<(usize, String)>,
    /// The source held lists (a multi-valued keyword).
    pub was_list: bool,
}

/// Converts `source` to `target`. Empty strings become NULL for every type but text.
pub fn conform(
    source: &ArrayRef,
    field_type: FieldType,
    target: &DataType,
) -> Result<Conformed, String> {
    let source = blank_strings_to_null(source, field_type)?;
    if let DataType::List(item) = target {
        return conform_list(&source, item.clone());
    }
    let safe = CastOptions {
        safe: true,
        ..CastOptions::default()
    };
    let array = cast_with_options(&source, target, &safe).map_err(|err| err.to_string())?;
    let bad_rows = newly_null(&source, &array)
        .map(|row| {
            let shown =
                arrow::util::display::array_value_to_string(&source, row).unwrap_or_default();
            (
                row,
                format!("cannot read \"{shown}\" as {}", field_type.name()),
            )
        })
        .collect();
    Ok(Conformed {
        array,
        bad_rows,
        was_list: false,
    })
}

fn conform_list(source: &ArrayRef, item: Arc<Field>) -> Result<Conformed, String> {
    let safe = CastOptions {
        safe: true,
        ..CastOptions::default()
    };
    match source.data_type() {
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            let target = DataType::List(item);
            let array = cast_with_options(source, &target, &safe).map_err(|err| err.to_string())?;
            Ok(Conformed {
                array,
                bad_rows: Vec::new(),
                was_list: true,
            })
        }
        _ => {
            // A single value per row: a list of one.
            let values =
                cast_with_options(source, &DataType::Utf8, &safe).map_err(|err| err.to_string())?;
            let lengths = (0..values.len()).map(|row| usize::from(values.is_valid(row)));
            let offsets = OffsetBuffer::from_lengths(lengths);
            let nulls = values.logical_nulls();
            let packed: StringArray = values
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(Some)
                .collect();
            let array = ListArray::try_new(item, offsets, Arc::new(packed), nulls)
                .map_err(|err| err.to_string())?;
            Ok(Conformed {
                array: Arc::new(array),
                bad_rows: Vec::new(),
                was_list: false,
            })
        }
    }
}

fn blank_strings_to_null(source: &ArrayRef, field_type: FieldType) -> Result<ArrayRef, String> {
    if field_type == FieldType::Text {
        return Ok(source.clone());
    }
    let Some(strings) = source.as_string_opt::<i32>() else {
        return Ok(source.clone());
    };
    let keep: BooleanArray = strings
        .iter()
        .map(|value| Some(value.is_some_and(|v| !v.is_empty())))
        .collect();
    let nulls = NullBuffer::new(keep.values().clone());
    let combined = NullBuffer::union(strings.nulls(), Some(&nulls));
    let array = StringArray::try_new(
        strings.offsets().clone(),
        strings.values().clone(),
        combined,
    )
    .map_err(|err| err.to_string())?;
    Ok(Arc::new(array))
}

fn newly_null<'a>(before: &'a ArrayRef, after: &'a ArrayRef) -> impl Iterator<Item = usize> + 'a {
    (0..before.len()).filter(move |&row| before.is_valid(row) && after.is_null(row))
}

/// Drops `bad` rows (sorted, unique) from a batch and its line numbers.
fn drop_rows(
    batch: &RecordBatch,
    lines: &mut Vec<u64>,
    bad: &[usize],
) -> Result<RecordBatch, String> {
    let mut keep = vec![true; batch.num_rows()];
    for &row in bad {
        keep[row] = false;
    }
    let mask = BooleanArray::from(keep.clone());
    let columns = batch
        .columns()
        .iter()
        .map(|column| filter(column, &mask))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| err.to_string())?;
    let mut row = 0;
    lines.retain(|_| {
        row += 1;
        keep[row - 1]
    });
    RecordBatch::try_new(batch.schema(), columns).map_err(|err| err.to_string())
}
