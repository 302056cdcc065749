//! The numeric and date fast columns rank profiles read, per segment of one tier, opened once
//! when the tier is loaded, and the range of each field's values over the tier (what bounds a
//! cold document's rank for the cold skip).

use std::collections::BTreeMap;
use std::sync::Arc;

use tantivy::columnar::{Cardinality, Column};
use tantivy::{DateTime, DocId, Searcher};

use super::{FieldInput, ValueRange};
use crate::schema::{FieldType, IndexSchema};

/// One segment's column of one field, read as `f64` (dates as seconds since the epoch).
#[derive(Clone)]
pub enum ValueColumn {
    U64(Column<u64>),
    I64(Column<i64>),
    F64(Column<f64>),
    Date(Column<DateTime>),
    /// A column that not every document has a value in, read once into memory (NaN for no
    /// value): such a column finds a document's value by ranking it in its index of
    /// documents with values, which cost a profile ranking PyPI about a seventh of its time.
    Dense {
        values: Arc<[f64]>,
        range: ValueRange,
    },
    /// The segment has no value for the field.
    Absent,
}

/// Largest segment whose sparse columns are read into memory: 8 bytes a document.
const DENSE_MAX_DOCS: u32 = 16 * 1024 * 1024;

fn seconds(date: DateTime) -> f64 {
    date.into_timestamp_micros() as f64 / 1e6
}

impl ValueColumn {
    /// The document's (first) value; a NaN value is no value, so that NULL has one meaning.
    #[inline]
    pub fn first(&self, doc: DocId) -> Option<f64> {
        match self {
            ValueColumn::U64(column) => column.first(doc).map(|value| value as f64),
            ValueColumn::I64(column) => column.first(doc).map(|value| value as f64),
            ValueColumn::F64(column) => column.first(doc).filter(|value| !value.is_nan()),
            ValueColumn::Date(column) => column.first(doc).map(seconds),
            ValueColumn::Dense { values, .. } => {
                let value = values[doc as usize];
                (!value.is_nan()).then_some(value)
            }
            ValueColumn::Absent => None,
        }
    }

    /// `first`, NaN for no value: what `RankProfile::rank_flat` takes.
    #[inline]
    pub fn value(&self, doc: DocId) -> f64 {
        match self {
            ValueColumn::Dense { values, .. } => values[doc as usize],
            _ => self.first(doc).unwrap_or(f64::NAN),
        }
    }

    /// The column as `Dense` when not every document has a value and the segment of
    /// `max_doc` documents is small enough; else unchanged.
    fn densified(self, max_doc: u32) -> ValueColumn {
        let sparse = match &self {
            ValueColumn::U64(column) => column.get_cardinality() != Cardinality::Full,
            ValueColumn::I64(column) => column.get_cardinality() != Cardinality::Full,
            ValueColumn::F64(column) => column.get_cardinality() != Cardinality::Full,
            ValueColumn::Date(column) => column.get_cardinality() != Cardinality::Full,
            ValueColumn::Dense { .. } | ValueColumn::Absent => false,
        };
        if !sparse || max_doc > DENSE_MAX_DOCS {
            return self;
        }
        let range = self.range();
        let values: Arc<[f64]> = (0..max_doc).map(|doc| self.value(doc)).collect();
        ValueColumn::Dense { values, range }
    }

    /// Bounds of the segment's values (the column's stored min and max, which hold every
    /// value though they may be wider), and whether some document has none.
    pub fn range(&self) -> ValueRange {
        fn of<T: PartialOrd + Copy + std::fmt::Debug + Send + Sync + 'static>(
            column: &Column<T>,
            to_f64: impl Fn(T) -> f64,
        ) -> ValueRange {
            ValueRange {
                values: (column.values.num_vals() > 0)
                    .then(|| (to_f64(column.min_value()), to_f64(column.max_value()))),
                may_be_missing: column.get_cardinality() != Cardinality::Full,
            }
        }
        match self {
            ValueColumn::U64(column) => of(column, |value| value as f64),
            ValueColumn::I64(column) => of(column, |value| value as f64),
            ValueColumn::F64(column) => of(column, |value| value),
            ValueColumn::Date(column) => of(column, seconds),
            ValueColumn::Dense { range, .. } => *range,
            ValueColumn::Absent => ValueRange {
                values: None,
                may_be_missing: true,
            },
        }
    }
}

/// Evenly spaced checkpoints per segment at which `SuffixRanges` restart.
const CHECKPOINTS: u32 = 32;

/// What a field's values range over from each checkpoint of a segment to its end: the
/// documents a search has not reached yet, as it goes through the segment in document order.
/// In a segment sorted by the field (the schema's `sort_by`) they narrow as the search
/// advances, and so does what a score expression or an order could still reach.
///
/// Checkpoints are evenly spaced, and also at documents 1, 2, 4, 8, ...: a sorted segment's
/// best values are at its start, where a search begins with its threshold lowest, so the
/// ranges narrow soonest there.
#[derive(Debug)]
pub struct SuffixRanges {
    /// The first document of each checkpoint, ascending, from 0.
    starts: Vec<DocId>,
    /// `ranges[i]`: over the documents from `starts[i]` to the segment's end.
    ranges: Vec<ValueRange>,
}

impl SuffixRanges {
    fn of(column: &ValueColumn, max_doc: u32) -> SuffixRanges {
        let step = max_doc.div_ceil(CHECKPOINTS).max(1);
        let mut starts: Vec<DocId> = (0..max_doc.div_ceil(step)).map(|at| at * step).collect();
        starts.extend(
            std::iter::successors(Some(1u32), |start| start.checked_mul(2))
                .take_while(|&start| start < max_doc.min(step)),
        );
        starts.sort_unstable();
        starts.dedup();
        let mut ranges = vec![ValueRange::EMPTY; starts.len()];
        let mut suffix = ValueRange::EMPTY;
        let mut at = starts.len();
        for doc in (0..max_doc).rev() {
            let value = column.value(doc);
            suffix = suffix.union(ValueRange {
                values: (!value.is_nan()).then_some((value, value)),
                may_be_missing: value.is_nan(),
            });
            if at > 0 && starts[at - 1] == doc {
                at -= 1;
                ranges[at] = suffix;
            }
        }
        SuffixRanges { starts, ranges }
    }

    /// The checkpoint at or before `doc`: its range holds every document from `doc` on.
    #[inline]
    pub fn checkpoint(&self, doc: DocId) -> usize {
        self.starts
            .partition_point(|&start| start <= doc)
            .saturating_sub(1)
    }

    /// The range over the documents from checkpoint `at` on (an empty range past the end).
    pub fn from_checkpoint(&self, at: usize) -> ValueRange {
        self.ranges.get(at).copied().unwrap_or(ValueRange::EMPTY)
    }
}

/// Every rankable field's columns in one tier: `segments[segment_ord][field]`, `None` for
/// schema fields that are not numeric or date fast fields.
pub struct TierValues {
    segments: Vec<Vec<Option<ValueColumn>>>,
    /// Beside each column, its ranges from each checkpoint on.
    suffixes: Vec<Vec<Option<Arc<SuffixRanges>>>>,
    /// Per schema field, over the whole tier.
    ranges: Vec<Option<ValueRange>>,
}

impl TierValues {
    /// No columns: for a tier ranked by BM25 alone.
    pub fn none() -> TierValues {
        TierValues {
            segments: Vec::new(),
            suffixes: Vec::new(),
            ranges: Vec::new(),
        }
    }

    /// Every rankable column of the tier, ready for ranking: sparse ones read into memory,
    /// and in a sorted tier the ranges from each checkpoint on.
    pub fn open(searcher: &Searcher, schema: &IndexSchema) -> tantivy::Result<TierValues> {
        let mut tier = TierValues::open_ranges(searcher, schema)?;
        // Ranges narrow through a segment only where its documents are in a field's order.
        let sorted = searcher.index().settings().sort_by_field.is_some();
        for (columns, reader) in tier.segments.iter_mut().zip(searcher.segment_readers()) {
            let max_doc = reader.max_doc();
            for column in columns.iter_mut().flatten() {
                *column = std::mem::replace(column, ValueColumn::Absent).densified(max_doc);
            }
            tier.suffixes.push(if sorted {
                columns
                    .iter()
                    .map(|column| {
                        column
                            .as_ref()
                            .map(|column| Arc::new(SuffixRanges::of(column, max_doc)))
                    })
                    .collect()
            } else {
                Vec::new()
            });
        }
        Ok(tier)
    }

    /// The tier's columns as tantivy stores them, and their ranges: what `named_ranges` needs,
    /// without reading any value.
    pub fn open_ranges(searcher: &Searcher, schema: &IndexSchema) -> tantivy::Result<TierValues> {
        let mut segments = Vec::with_capacity(searcher.segment_readers().len());
        for reader in searcher.segment_readers() {
            let fast = reader.fast_fields();
            let mut columns = Vec::with_capacity(schema.spec.fields.len());
            for field in &schema.spec.fields {
                let name = field.name.as_str();
                let column = match (field.fast, field.field_type) {
                    (false, _) => None,
                    (true, FieldType::U64) => Some(fast.column_opt(name)?.map(ValueColumn::U64)),
                    (true, FieldType::I64) => Some(fast.column_opt(name)?.map(ValueColumn::I64)),
                    (true, FieldType::F64) => Some(fast.column_opt(name)?.map(ValueColumn::F64)),
                    (true, FieldType::Date) => Some(fast.column_opt(name)?.map(ValueColumn::Date)),
                    _ => None,
                };
                columns.push(column.map(|column| column.unwrap_or(ValueColumn::Absent)));
            }
            segments.push(columns);
        }
        let ranges = (0..schema.spec.fields.len())
            .map(|field| {
                segments
                    .iter()
                    .map(|columns| columns[field].as_ref().map(ValueColumn::range))
                    .reduce(|a, b| match (a, b) {
                        (Some(a), Some(b)) => Some(a.union(b)),
                        _ => None,
                    })
                    .unwrap_or(Some(ValueRange::EMPTY))
            })
            .collect();
        Ok(TierValues {
            segments,
            suffixes: Vec::new(),
            ranges,
        })
    }

    /// Each field's range by name, for the fields with columns: what the manifest records.
    pub fn named_ranges(&self, schema: &IndexSchema) -> BTreeMap<String, ValueRange> {
        schema
            .spec
            .fields
            .iter()
            .zip(&self.ranges)
            .filter_map(|(field, range)| Some((field.name.clone(), (*range)?)))
            .collect()
    }

    /// Ranges alone, as the manifest recorded them (`named_ranges`), without columns: what
    /// bounds a tier's ranks before its columns are read.
    pub fn from_named_ranges(
        schema: &IndexSchema,
        named: &BTreeMap<String, ValueRange>,
    ) -> TierValues {
        TierValues {
            segments: Vec::new(),
            suffixes: Vec::new(),
            ranges: schema
                .spec
                .fields
                .iter()
                .map(|field| named.get(&field.name).copied())
                .collect(),
        }
    }

    /// The columns of `inputs` in one segment, in their order.
    pub fn segment_inputs(&self, segment: usize, inputs: &[FieldInput]) -> Vec<ValueColumn> {
        inputs
            .iter()
            .map(|input| {
                self.segments
                    .get(segment)
                    .and_then(|columns| columns.get(input.field))
                    .cloned()
                    .flatten()
                    .unwrap_or(ValueColumn::Absent)
            })
            .collect()
    }

    /// `inputs`' ranges from each checkpoint of one segment on; `None` when a column is missing
    /// or the tier is not sorted (no checkpoints: the segment's ranges hold throughout).
    pub fn segment_suffixes(
        &self,
        segment: usize,
        inputs: &[FieldInput],
    ) -> Option<Vec<Arc<SuffixRanges>>> {
        inputs
            .iter()
            .map(|input| self.suffixes.get(segment)?.get(input.field)?.clone())
            .collect()
    }

    /// What `inputs` range over in one segment (its columns' bounds): narrower than the
    /// tier's, so a search prunes more within the segment.
    pub fn segment_ranges(&self, segment: usize, inputs: &[FieldInput]) -> Vec<ValueRange> {
        self.segment_inputs(segment, inputs)
            .iter()
            .map(ValueColumn::range)
            .collect()
    }

    /// What `inputs` range over in this tier; unbounded for a field the tier cannot say.
    pub fn ranges(&self, inputs: &[FieldInput]) -> Vec<ValueRange> {
        inputs
            .iter()
            .map(|input| {
                self.ranges
                    .get(input.field)
                    .copied()
                    .flatten()
                    .unwrap_or(ValueRange {
                        values: Some((f64::NEG_INFINITY, f64::INFINITY)),
                        may_be_missing: true,
                    })
            })
            .collect()
    }
}
