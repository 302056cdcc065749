//! Hot-tier rules: which documents the builder puts in the hot index.
//!
//! A rules file (TOML) holds `hot = ["<sql boolean expression>", ...]` and an optional
//! `[budget]`. Expressions are parsed with `sqlparser`, checked against the schema before any
//! input is read (`compile`), and evaluated a whole arrow record batch at a time with arrow
//! compute kernels (`eval`). A document is hot when any expression is true; SQL three-valued
//! logic applies, and unknown (NULL) counts as not hot.
//!
//! Multi-valued keyword fields follow `ANY` semantics: `authors = 'x'` holds when some value
//! equals `'x'`, and the negated forms (`!=`, `NOT IN`, `NOT LIKE`, `NOT BETWEEN`) are the
//! negation of the positive form ("no value matches").
//!
//! This module is pure: no I/O beyond reading the rules file itself.

mod budget;
mod compile;
mod eval;

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::schema::IndexSchema;

pub use budget::{BudgetSelector, HotCut, RankKeys, RankPosition};
pub use compile::{Predicate, SqlSyntaxError, parse_expression};

/// The rules file as written by the user; embedded verbatim in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSpec {
    pub hot: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSpec>,
    /// A file of ids kept hot whatever the expressions (one per line), relative to the rules
    /// file: the pin list `tierdex rules suggest --pins` writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_ids: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    pub max_hot_docs: u64,
    /// `"<field> DESC"` or `"<field> ASC"`; without it the first documents in input order
    /// stay hot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesErrorKind {
    /// The rules file cannot be read or is not valid TOML of the expected shape.
    File,
    Syntax,
    UnknownField,
    TypeMismatch,
    Unsupported,
    /// An arrow kernel failed while evaluating a batch (a bug or an unexpected column type).
    Evaluation,
}

/// A rules error, located in the rules file and within the expression.
#[derive(Debug, thiserror::Error)]
pub struct RulesError {
    pub kind: RulesErrorKind,
    pub source_name: String,
    /// Which entry: `hot[2]`, `budget.rank_by`; empty for file-level errors.
    pub entry: String,
    pub expression: String,
    /// 1-based column within the expression (0 when unknown).
    pub column: u64,
    pub message: String,
}

impl RulesError {
    pub fn kind(&self) -> RulesErrorKind {
        self.kind
    }

    /// An arrow kernel failed on a batch (`entry` names what was being evaluated, if known).
    fn evaluation(entry: &str, err: impl fmt::Display) -> RulesError {
        RulesError {
            kind: RulesErrorKind::Evaluation,
            source_name: String::new(),
            entry: entry.to_string(),
            expression: String::new(),
            column: 0,
            message: err.to_string(),
        }
    }

    fn file(source_name: &str, message: String) -> RulesError {
        RulesError {
            kind: RulesErrorKind::File,
            source_name: source_name.to_string(),
            entry: String::new(),
            expression: String::new(),
            column: 0,
            message,
        }
    }
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entry.is_empty() {
            return write!(f, "rules {}: {}", self.source_name, self.message);
        }
        write!(
            f,
            "rules {} {}: {}",
            self.source_name, self.entry, self.message
        )?;
        if self.column > 0 {
            write!(f, " (column {})", self.column)?;
        }
        write!(f, "\n    {}", self.expression)?;
        if self.column > 0 {
            let pad = " ".repeat(self.column as usize - 1);
            write!(f, "\n    {pad}^")?;
        }
        Ok(())
    }
}

/// Rules checked against a schema, ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledRules {
    pub spec: RulesSpec,
    predicates: Vec<Predicate>,
    rank: Option<RankKeys>,
    /// The pinned ids (`hot_ids`), as the id column's text, and that column.
    pins: Option<Arc<HashSet<String>>>,
    id_column: usize,
}

impl CompiledRules {
    pub fn from_toml_file(path: &Path, schema: &IndexSchema) -> Result<CompiledRules, RulesError> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|err| RulesError::file(&source_name, format!("cannot read: {err}")))?;
        Self::from_toml_str(&text, &source_name, schema)
    }

    pub fn from_toml_str(
        text: &str,
        source_name: &str,
        schema: &IndexSchema,
    ) -> Result<CompiledRules, RulesError> {
        let spec: RulesSpec =
            toml::from_str(text).map_err(|err| RulesError::file(source_name, err.to_string()))?;
        let mut rules = Self::new(spec, source_name, schema)?;
        if let Some(file) = &rules.spec.hot_ids {
            // Relative to the rules file, as a user reads it.
            let base = Path::new(source_name).parent().unwrap_or(Path::new(""));
            rules.pins = Some(Arc::new(read_pins(&base.join(file), source_name)?));
        }
        Ok(rules)
    }

    pub fn new(
        spec: RulesSpec,
        source_name: &str,
        schema: &IndexSchema,
    ) -> Result<CompiledRules, RulesError> {
        let predicates = spec
            .hot
            .iter()
            .enumerate()
            .map(|(index, expression)| {
                compile::compile(expression, schema).map_err(|located| RulesError {
                    kind: located.kind,
                    source_name: source_name.to_string(),
                    entry: format!("hot[{index}]"),
                    expression: expression.clone(),
                    column: located.column,
                    message: located.message,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rank = match &spec.budget {
            Some(budget) => Some(RankKeys::new(budget, schema).map_err(|message| RulesError {
                kind: RulesErrorKind::UnknownField,
                source_name: source_name.to_string(),
                entry: "budget.rank_by".into(),
                expression: budget.rank_by.clone().unwrap_or_default(),
                column: 0,
                message,
            })?),
            None => None,
        };
        Ok(CompiledRules {
            spec,
            predicates,
            rank,
            pins: None,
            id_column: schema.id_index,
        })
    }

    /// One boolean per row: true when the row belongs to the hot tier by the expressions
    /// (before any budget). Never null.
    pub fn select_hot(&self, batch: &RecordBatch) -> Result<BooleanArray, RulesError> {
        let selected = eval::select_any(&self.predicates, batch)
            .map_err(|err| RulesError::evaluation("", err))?;
        let Some(pins) = &self.pins else {
            return Ok(selected);
        };
        let ids = batch.column(self.id_column);
        let formatter = arrow::util::display::ArrayFormatter::try_new(
            ids.as_ref(),
            &arrow::util::display::FormatOptions::default(),
        )
        .map_err(|err| RulesError::evaluation("hot_ids", err))?;
        Ok((0..batch.num_rows())
            .map(|row| {
                Some(
                    selected.value(row)
                        || (ids.is_valid(row) && pins.contains(&formatter.value(row).to_string())),
                )
            })
            .collect())
    }

    /// How many ids the pin list holds (0 without one).
    pub fn pinned(&self) -> usize {
        self.pins.as_ref().map_or(0, |pins| pins.len())
    }

    /// One boolean column per expression (`hot[i]`), each true where that expression alone
    /// holds; unknown reads as false. Never null.
    pub fn select_each(&self, batch: &RecordBatch) -> Result<Vec<BooleanArray>, RulesError> {
        self.predicates
            .iter()
            .enumerate()
            .map(|(at, predicate)| {
                eval::select_any(std::slice::from_ref(predicate), batch)
                    .map_err(|err| RulesError::evaluation(&format!("hot[{at}]"), err))
            })
            .collect()
    }

    /// The schema fields (input columns) each expression reads, by expression.
    pub fn fields_read(&self) -> Vec<std::collections::BTreeSet<usize>> {
        self.predicates.iter().map(Predicate::columns).collect()
    }

    pub fn budget(&self) -> Option<(&BudgetSpec, &RankKeys)> {
        Some((self.spec.budget.as_ref()?, self.rank.as_ref()?))
    }
}

/// A pin list: one id per line, blank lines ignored.
fn read_pins(path: &Path, source_name: &str) -> Result<HashSet<String>, RulesError> {
    let text = std::fs::read_to_string(path).map_err(|err| RulesError {
        kind: RulesErrorKind::File,
        source_name: source_name.to_string(),
        entry: "hot_ids".into(),
        expression: path.display().to_string(),
        column: 0,
        message: format!("cannot read the pin list {}: {err}", path.display()),
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests;
