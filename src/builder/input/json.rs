//! JSON Lines → arrow, one pass, driven by the schema.
//!
//! arrow-json's reader cannot do three things this input needs: name the line and column of a
//! bad record (its errors are per batch), accept a keyword field given either as a string or as
//! an array of strings, and count the input fields the schema ignores. So each line is parsed
//! with serde_json straight into typed cells (strings borrowed from the line buffer), and a
//! line's cells are appended to arrow builders only once the whole line is valid.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{
    BATCH_ROWS, BatchReader, InputBatch, InputError, InputStats, MAX_BATCH_BYTES, ReadContext,
    ReadError,
};
use crate::schema::FieldType;

pub struct JsonLinesReader {
    file_name: String,
    file_index: u32,
    reader: Box<dyn BufRead + Send>,
    context: ReadContext,
    line_number: u64,
    line: Vec<u8>,
    layout: Arc<Layout>,
    columns: Vec<ColumnBuilder>,
    lines: Vec<u64>,
    done: bool,
}

/// What the parser needs to know of each schema field.
struct Layout {
    by_name: HashMap<String, usize>,
    fields: Vec<FieldLayout>,
    id_index: usize,
}

struct FieldLayout {
    name: String,
    field_type: FieldType,
    /// False for the id, which must be a single value.
    multi_allowed: bool,
}

impl JsonLinesReader {
    pub fn new(
        file_name: String,
        file_index: u32,
        reader: Box<dyn BufRead + Send>,
        context: ReadContext,
    ) -> JsonLinesReader {
        let schema = &context.schema;
        let fields: Vec<FieldLayout> = schema
            .spec
            .fields
            .iter()
            .enumerate()
            .map(|(index, field)| FieldLayout {
                name: field.name.clone(),
                field_type: field.field_type,
                multi_allowed: matches!(
                    schema.input_arrow.field(index).data_type(),
                    DataType::List(_)
                ),
            })
            .collect();
        let layout = Layout {
            by_name: fields
                .iter()
                .enumerate()
                .map(|(index, field)| (field.name.clone(), index))
                .collect(),
            id_index: schema.id_index,
            fields,
        };
        let columns = layout.fields.iter().map(ColumnBuilder::new).collect();
        JsonLinesReader {
            file_name,
            file_index,
            reader,
            context,
            line_number: 0,
            line: Vec::with_capacity(4096),
            layout: Arc::new(layout),
            columns,
            lines: Vec::with_capacity(BATCH_ROWS),
            done: false,
        }
    }

    fn finish_batch(&mut self) -> Result<Option<InputBatch>, ReadError> {
        if self.lines.is_empty() {
            return Ok(None);
        }
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        let batch = RecordBatch::try_new(self.context.schema.input_arrow.clone(), arrays).map_err(
            |err| ReadError::Io {
                file: self.file_name.clone(),
                message: format!("building a batch: {err}"),
            },
        )?;
        Ok(Some(InputBatch {
            batch,
            file: self.file_index,
            lines: std::mem::replace(&mut self.lines, Vec::with_capacity(BATCH_ROWS)),
        }))
    }
}

impl BatchReader for JsonLinesReader {
    fn next_batch(&mut self, stats: &mut InputStats) -> Result<Option<InputBatch>, ReadError> {
        let mut batch_bytes = 0usize;
        while !self.done && self.lines.len() < BATCH_ROWS && batch_bytes < MAX_BATCH_BYTES {
            self.line.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|err| ReadError::Io {
                    file: self.file_name.clone(),
                    message: format!("line {}: {err}", self.line_number + 1),
                })?;
            if read == 0 {
                self.done = true;
                break;
            }
            self.line_number += 1;
            let text = trim_line(&self.line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            batch_bytes += text.len();
            match parse_line(&self.layout, text) {
                Ok(parsed) => {
                    for (column, cell) in self.columns.iter_mut().zip(parsed.cells) {
                        column.append(cell);
                    }
                    for name in parsed.ignored {
                        stats.ignore_field(&name, 1);
                    }
                    for (index, saw) in parsed.arrays.iter().enumerate() {
                        if *saw {
                            stats.saw_array[index] = true;
                        }
                    }
                    self.lines.push(self.line_number);
                }
                Err(problem) => stats.invalid(
                    self.context.skip_invalid,
                    InputError {
                        file: self.file_name.clone(),
                        line: self.line_number,
                        column: problem.column,
                        message: problem.message,
                    },
                )?,
            }
        }
        self.finish_batch()
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// One field's value in a line.
#[derive(Debug, Clone, PartialEq)]
enum Cell<'a> {
    Null,
    Str(Cow<'a, str>),
    Strs(Vec<Cow<'a, str>>),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Micros(i64),
}

struct ParsedLine<'a> {
    cells: Vec<Cell<'a>>,
    ignored: Vec<Cow<'a, str>>,
    arrays: Vec<bool>,
}

struct LineProblem {
    column: Option<u64>,
    message: String,
}

fn parse_line<'a>(layout: &Layout, text: &'a [u8]) -> Result<ParsedLine<'a>, LineProblem> {
    let mut parsed = ParsedLine {
        cells: vec![Cell::Null; layout.fields.len()],
        ignored: Vec::new(),
        arrays: vec![false; layout.fields.len()],
    };
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let result = RowSeed {
        layout,
        parsed: &mut parsed,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    if let Err(err) = result {
        let message = err.to_string();
        // serde_json appends " at line L column C"; the line is ours to number.
        let message = match message.rfind(" at line ") {
            Some(at) => message[..at].to_string(),
            None => message,
        };
        return Err(LineProblem {
            column: Some(err.column() as u64).filter(|column| *column > 0),
            message,
        });
    }
    if parsed.cells[layout.id_index] == Cell::Null {
        return Err(LineProblem {
            column: None,
            message: format!(
                "missing id: field `{}` is absent or null",
                layout.fields[layout.id_index].name
            ),
        });
    }
    Ok(parsed)
}

struct RowSeed<'l, 'p, 'a> {
    layout: &'l Layout,
    parsed: &'p mut ParsedLine<'a>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object (one document per line)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(StrSeed)? {
            match self.layout.by_name.get(key.as_ref()) {
                Some(&index) => {
                    let field = &self.layout.fields[index];
                    let cell = map.next_value_seed(CellSeed { field })?;
                    if matches!(cell, Cell::Strs(_)) {
                        self.parsed.arrays[index] = true;
                    }
                    self.parsed.cells[index] = cell;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                    self.parsed.ignored.push(key);
                }
            }
        }
        Ok(())
    }
}

/// A string that borrows from the input when it has no escapes.
struct StrSeed;

impl<'de> DeserializeSeed<'de> for StrSeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for StrSeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_string()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value))
    }
}

struct CellSeed<'l> {
    field: &'l FieldLayout,
}

impl<'de> DeserializeSeed<'de> for CellSeed<'_> {
    type Value = Cell<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl CellSeed<'_> {
    fn fail<E: de::Error>(&self, message: impl fmt::Display) -> E {
        E::custom(format_args!("field `{}`: {message}", self.field.name))
    }

    fn cell_from_str<'de, E: de::Error>(&self, value: Cow<'de, str>) -> Result<Cell<'de>, E> {
        match self.field.field_type {
            FieldType::Text | FieldType::Keyword => Ok(Cell::Str(value)),
            FieldType::Date => string_to_timestamp_nanos(&value)
                .map(|nanos| Cell::Micros(nanos.div_euclid(1000)))
                .map_err(|_| {
                    self.fail(format_args!(
                        "\"{value}\" is not a date (use RFC 3339, e.g. 2024-01-31T12:00:00Z, or 2024-01-31)"
                    ))
                }),
            other => Err(self.fail(format_args!(
                "expected {}, found string \"{value}\"",
                describe(other)
            ))),
        }
    }
}

fn describe(field_type: FieldType) -> &'static str {
    match field_type {
        FieldType::Text => "a string",
        FieldType::Keyword => "a string or an array of strings",
        FieldType::I64 => "an integer",
        FieldType::U64 => "a non-negative integer",
        FieldType::F64 => "a number",
        FieldType::Bool => "true or false",
        FieldType::Date => "a date string or seconds since 1970",
    }
}

impl<'de> Visitor<'de> for CellSeed<'_> {
    type Value = Cell<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(
            formatter,
            "{} for field `{}`",
            describe(self.field.field_type),
            self.field.name
        )
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        match self.field.field_type {
            FieldType::Bool => Ok(Cell::Bool(value)),
            other => Err(self.fail(format_args!("expected {}, found {value}", describe(other)))),
        }
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        match self.field.field_type {
            FieldType::U64 => Ok(Cell::U64(value)),
            FieldType::I64 => i64::try_from(value)
                .map(Cell::I64)
                .map_err(|_| self.fail(format_args!("{value} is out of range for i64"))),
            FieldType::F64 => Ok(Cell::F64(value as f64)),
            FieldType::Date => i64::try_from(value)
                .ok()
                .and_then(|seconds| seconds.checked_mul(1_000_000))
                .map(Cell::Micros)
                .ok_or_else(|| {
                    self.fail(format_args!("{value} seconds is out of range for a date"))
                }),
            other => Err(self.fail(format_args!(
                "expected {}, found number {value}",
                describe(other)
            ))),
        }
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        match self.field.field_type {
            FieldType::I64 => Ok(Cell::I64(value)),
            FieldType::U64 => {
                Err(self.fail(format_args!("negative value {value} for a u64 field")))
            }
            FieldType::F64 => Ok(Cell::F64(value as f64)),
            FieldType::Date => value
                .checked_mul(1_000_000)
                .map(Cell::Micros)
                .ok_or_else(|| {
                    self.fail(format_args!("{value} seconds is out of range for a date"))
                }),
            other => Err(self.fail(format_args!(
                "expected {}, found number {value}",
                describe(other)
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        let integral = value.fract() == 0.0 && value.is_finite();
        match self.field.field_type {
            FieldType::F64 => Ok(Cell::F64(value)),
            // 2^63 and 2^64 are exact in f64, so these bounds convert without rounding.
            FieldType::U64 if integral && (0.0..18_446_744_073_709_551_616.0).contains(&value) => {
                Ok(Cell::U64(value as u64))
            }
            FieldType::I64
                if integral
                    && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0)
                        .contains(&value) =>
            {
                Ok(Cell::I64(value as i64))
            }
            FieldType::U64 | FieldType::I64 => Err(self.fail(format_args!(
                "expected {}, found {value}",
                describe(self.field.field_type)
            ))),
            other => Err(self.fail(format_args!(
                "expected {}, found number {value}",
                describe(other)
            ))),
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        self.cell_from_str(Cow::Borrowed(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        self.cell_from_str(Cow::Owned(value.to_string()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
        self.cell_from_str(Cow::Owned(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if !self.field.multi_allowed {
            return Err(self.fail(format_args!(
                "expected {}, found an array",
                if self.field.field_type == FieldType::Keyword {
                    "a single string (the id has one value)"
                } else {
                    describe(self.field.field_type)
                }
            )));
        }
        let mut values = Vec::new();
        while let Some(value) = seq
            .next_element_seed(StrSeed)
            .map_err(|_| self.fail("array elements must be strings"))?
        {
            values.push(value);
        }
        Ok(Cell::Strs(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<Self::Value, A::Error> {
        Err(self.fail(format_args!(
            "expected {}, found an object",
            describe(self.field.field_type)
        )))
    }
}

/// An arrow builder for one schema field.
enum ColumnBuilder {
    Str(StringBuilder),
    List(ListBuilder<StringBuilder>),
    I64(Int64Builder),
    U64(UInt64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Micros(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    fn new(field: &FieldLayout) -> ColumnBuilder {
        match field.field_type {
            FieldType::Text => ColumnBuilder::Str(StringBuilder::new()),
            FieldType::Keyword if field.multi_allowed => {
                ColumnBuilder::List(ListBuilder::new(StringBuilder::new()))
            }
            FieldType::Keyword => ColumnBuilder::Str(StringBuilder::new()),
            FieldType::I64 => ColumnBuilder::I64(Int64Builder::new()),
            FieldType::U64 => ColumnBuilder::U64(UInt64Builder::new()),
            FieldType::F64 => ColumnBuilder::F64(Float64Builder::new()),
            FieldType::Bool => ColumnBuilder::Bool(BooleanBuilder::new()),
            FieldType::Date => ColumnBuilder::Micros(TimestampMicrosecondBuilder::new()),
        }
    }

    /// Cells were produced for this field's type, so each builder sees only its own kind.
    fn append(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (ColumnBuilder::Str(builder), Cell::Str(value)) => builder.append_value(value),
            (ColumnBuilder::List(builder), Cell::Str(value)) => {
                builder.values().append_value(value);
                builder.append(true);
            }
            (ColumnBuilder::List(builder), Cell::Strs(values)) => {
                for value in values {
                    builder.values().append_value(value);
                }
                builder.append(true);
            }
            (ColumnBuilder::I64(builder), Cell::I64(value)) => builder.append_value(value),
            (ColumnBuilder::U64(builder), Cell::U64(value)) => builder.append_value(value),
            (ColumnBuilder::F64(builder), Cell::F64(value)) => builder.append_value(value),
            (ColumnBuilder::Bool(builder), Cell::Bool(value)) => builder.append_value(value),
            (ColumnBuilder::Micros(builder), Cell::Micros(value)) => builder.append_value(value),
            (builder, Cell::Null) => builder.append_null(),
            (_, cell) => unreachable!("cell {cell:?} does not match its column"),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Str(builder) => builder.append_null(),
            ColumnBuilder::List(builder) => builder.append(false),
            ColumnBuilder::I64(builder) => builder.append_null(),
            ColumnBuilder::U64(builder) => builder.append_null(),
            ColumnBuilder::F64(builder) => builder.append_null(),
            ColumnBuilder::Bool(builder) => builder.append_null(),
            ColumnBuilder::Micros(builder) => builder.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Str(builder) => Arc::new(builder.finish()),
            ColumnBuilder::List(builder) => Arc::new(builder.finish()),
            ColumnBuilder::I64(builder) => Arc::new(builder.finish()),
            ColumnBuilder::U64(builder) => Arc::new(builder.finish()),
            ColumnBuilder::F64(builder) => Arc::new(builder.finish()),
            ColumnBuilder::Bool(builder) => Arc::new(builder.finish()),
            ColumnBuilder::Micros(builder) => Arc::new(builder.finish().with_timezone("UTC")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::IndexSchema;

    fn layout() -> Layout {
        let schema = IndexSchema::from_toml_str(
            r#"
id_field = "id"
[[field]]
name = "id"
type = "u64"
[[field]]
name = "tags"
type = "keyword"
[[field]]
name = "score"
type = "f64"
[[field]]
name = "when"
type = "date"
"#,
            "t",
        )
        .unwrap();
        let fields: Vec<FieldLayout> = schema
            .spec
            .fields
            .iter()
            .enumerate()
            .map(|(index, field)| FieldLayout {
                name: field.name.clone(),
                field_type: field.field_type,
                multi_allowed: matches!(
                    schema.input_arrow.field(index).data_type(),
                    DataType::List(_)
                ),
            })
            .collect();
        Layout {
            by_name: fields
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name.clone(), i))
                .collect(),
            id_index: 0,
            fields,
        }
    }

    #[test]
    fn keyword_takes_a_string_or_an_array_and_unknown_fields_are_listed() {
        let layout = layout();
        let parsed = parse_line(&layout, br#"{"id": 1, "tags": "a", "extra": {"x": [1]}}"#)
            .ok()
            .unwrap();
        assert_eq!(parsed.cells[1], Cell::Str("a".into()));
        assert_eq!(parsed.ignored, vec![Cow::Borrowed("extra")]);
        let parsed = parse_line(
            &layout,
            br#"{"id": 2, "tags": ["a", "b\u00e9"], "score": 3}"#,
        )
        .ok()
        .unwrap();
        assert_eq!(parsed.cells[1], Cell::Strs(vec!["a".into(), "bé".into()]));
        assert_eq!(parsed.cells[2], Cell::F64(3.0));
        assert!(parsed.arrays[1]);
    }

    #[test]
    fn bad_values_name_the_field_and_column() {
        let layout = layout();
        let problem = parse_line(&layout, br#"{"id": "seven"}"#).err().unwrap();
        assert!(
            problem.message.contains("field `id`"),
            "{}",
            problem.message
        );
        assert!(problem.message.contains("\"seven\""), "{}", problem.message);
        assert_eq!(problem.column, Some(14));
        let problem = parse_line(&layout, br#"{"id": 1, "when": "yesterday"}"#)
            .err()
            .unwrap();
        assert!(
            problem.message.contains("not a date"),
            "{}",
            problem.message
        );
        let problem = parse_line(&layout, br#"{"id": 1,"#).err().unwrap();
        assert!(problem.message.contains("EOF"), "{}", problem.message);
        let problem = parse_line(&layout, br#"{"score": 1}"#).err().unwrap();
        assert!(
            problem.message.contains("missing id"),
            "{}",
            problem.message
        );
        let problem = parse_line(&layout, br#"[1, 2]"#).err().unwrap();
        assert!(
            problem.message.contains("JSON object"),
            "{}",
            problem.message
        );
        let problem = parse_line(&layout, br#"{"id": 1} {"id": 2}"#)
            .err()
            .unwrap();
        assert!(problem.message.contains("trailing"), "{}", problem.message);
    }

    #[test]
    fn dates_parse_to_utc_micros() {
        let layout = layout();
        let parsed = parse_line(&layout, br#"{"id": 1, "when": "1970-01-02"}"#)
            .ok()
            .unwrap();
        assert_eq!(parsed.cells[3], Cell::Micros(86_400_000_000));
        let parsed = parse_line(&layout, br#"{"id": 1, "when": 60}"#)
            .ok()
            .unwrap();
        assert_eq!(parsed.cells[3], Cell::Micros(60_000_000));
    }
}
