//! `[budget]`: when the rules select more than `max_hot_docs` documents, only the best ones by
//! `rank_by` stay hot. The builder makes one pass offering every selected document to a
//! `BudgetSelector` (a bounded heap), then a second pass keeps those the resulting cut admits.
//!
//! Rank keys are arrow row-format bytes (`arrow::row`), so one byte comparison orders any
//! field type in the requested direction, NULLs last. Ties go to the earlier document in input
//! order, which makes the cut deterministic: exactly `max_hot_docs` documents pass.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use arrow::array::ArrayRef;
use arrow::compute::SortOptions;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};

use super::BudgetSpec;
use crate::schema::IndexSchema;

/// Where a document is in the input: the input file's index, then its row within the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RankPosition {
    pub file: u32,
    pub row: u64,
}

/// Turns a batch into comparable rank keys (smaller is better).
#[derive(Debug, Clone)]
pub struct RankKeys {
    /// The ranked column and its sort order; `None` ranks by input order only.
    column: Option<(usize, SortField)>,
}

impl RankKeys {
    pub(super) fn new(budget: &BudgetSpec, schema: &IndexSchema) -> Result<RankKeys, String> {
        let Some(rank_by) = budget.rank_by.as_deref() else {
            return Ok(RankKeys { column: None });
        };
        let mut words = rank_by.split_whitespace();
        let name = words
            .next()
            .ok_or("rank_by is empty: write \"<field> DESC\"")?;
        let descending = match words.next().map(str::to_ascii_uppercase).as_deref() {
            None | Some("DESC") => true,
            Some("ASC") => false,
            Some(other) => return Err(format!("rank_by: expected ASC or DESC, found `{other}`")),
        };
        if let Some(extra) = words.next() {
            return Err(format!("rank_by: unexpected `{extra}`"));
        }
        let column = schema
            .field_index(name)
            .ok_or_else(|| format!("rank_by: unknown field `{name}`"))?;
        let sort = SortField::new_with_options(
            schema.input_arrow.field(column).data_type().clone(),
            SortOptions {
                descending,
                nulls_first: false,
            },
        );
        RowConverter::new(vec![sort.clone()]).map_err(|err| format!("rank_by: {err}"))?;
        Ok(RankKeys {
            column: Some((column, sort)),
        })
    }

    /// Keys for every row of the batch; `None` when ranking is by input order only.
    pub fn keys(&self, batch: &RecordBatch) -> Result<Option<Rows>, ArrowError> {
        let Some((column, sort)) = &self.column else {
            return Ok(None);
        };
        let columns: [ArrayRef; 1] = [batch.column(*column).clone()];
        RowConverter::new(vec![sort.clone()])?
            .convert_columns(&columns)
            .map(Some)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ranked {
    key: Box<[u8]>,
    position: RankPosition,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .cmp(&other.key)
            .then(self.position.cmp(&other.position))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the best `limit` of the documents offered to it.
#[derive(Debug)]
pub struct BudgetSelector {
    limit: usize,
    /// Max-heap: the top is the worst document still kept.
    kept: BinaryHeap<Ranked>,
    offered: u64,
}

/// The outcome of the first pass: which selected documents stay hot.
#[derive(Debug, Clone)]
pub enum HotCut {
    /// The selection fits the budget.
    All,
    /// Only documents ranked at or before this one.
    UpTo(Box<[u8]>, RankPosition),
    /// The budget is zero.
    Nothing,
}

impl HotCut {
    pub fn admits(&self, key: &[u8], position: RankPosition) -> bool {
        match self {
            HotCut::All => true,
            HotCut::Nothing => false,
            HotCut::UpTo(last_key, last_position) => {
                (key, position) <= (last_key.as_ref(), *last_position)
            }
        }
    }
}

impl BudgetSelector {
    pub fn new(limit: u64) -> BudgetSelector {
        BudgetSelector {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            kept: BinaryHeap::new(),
            offered: 0,
        }
    }

    pub fn offer(&mut self, key: &[u8], position: RankPosition) {
        self.offered += 1;
        if self.limit == 0 {
            return;
        }
        if self.kept.len() < self.limit {
            self.kept.push(Ranked {
                key: key.into(),
                position,
            });
            return;
        }
        let worst = self.kept.peek().expect("limit > 0 and heap full");
        if (key, position) < (worst.key.as_ref(), worst.position) {
            self.kept.pop();
            self.kept.push(Ranked {
                key: key.into(),
                position,
            });
        }
    }

    pub fn offered(&self) -> u64 {
        self.offered
    }

    pub fn finish(self) -> HotCut {
        if self.offered as u128 <= self.limit as u128 {
            return HotCut::All;
        }
        match self.kept.into_sorted_vec().pop() {
            Some(worst) => HotCut::UpTo(worst.key, worst.position),
            None => HotCut::Nothing,
        }
    }
}
