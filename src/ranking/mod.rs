//! Rank profiles: how the documents matching a query are ordered.
//!
//! The schema file names profiles in `[ranking.NAME]` tables: `score = "<expression>"` over
//! `bm25` and numeric or date fast fields, or `order_by = "<field> DESC|ASC"`. A request picks
//! one by name or brings its own `order_by`; `[ranking.default]`, if present, applies when it
//! names none, else plain BM25. Expressions are parsed with `sqlparser` (as the rules are) and
//! checked against the schema — when the schema is loaded for a build, when a node loads a
//! version, and for a request's `order_by` — with errors naming the profile and the column.
//!
//! Values: integers and floats are read as `f64`; dates as seconds since the Unix epoch
//! (fractional). A multi-valued field gives its first value.
//!
//! Every profile orders by a `f64` rank, higher first, ties by id; a document without a rank
//! (a NULL score, no value for the `order_by` field) ranks last. Pure: no I/O.

mod expression;
mod program;
pub mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use expression::{BM25, Expression, FieldInput, ValueRange};

use crate::schema::{FieldType, IndexSchema};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankingErrorKind {
    Syntax,
    UnknownField,
    /// The field exists but is not a numeric or date field.
    TypeMismatch,
    /// The field is numeric but not declared `fast`.
    NotFast,
    Unsupported,
    UnknownProfile,
    /// A profile table that is neither a score nor an order, or both.
    Profile,
}

/// A ranking error, located in its source (the schema file, or a request), its entry
/// (`ranking.popular.score`, `order_by`) and the column within the expression.
#[derive(Debug, thiserror::Error)]
pub struct RankingError {
    pub kind: RankingErrorKind,
    pub source_name: String,
    pub entry: String,
    pub expression: String,
    /// 1-based column within the expression (0 when unknown).
    pub column: u64,
    pub message: String,
}

impl RankingError {
    pub fn kind(&self) -> RankingErrorKind {
        self.kind
    }
}

impl fmt::Display for RankingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.source_name, self.entry, self.message)?;
        if !self.expression.is_empty() {
            if self.column > 0 {
                write!(f, " (column {} of `{}`)", self.column, self.expression)?;
            } else {
                write!(f, " (in `{}`)", self.expression)?;
            }
        }
        Ok(())
    }
}

/// An error within one expression, before the source and entry are known.
#[derive(Debug)]
pub(crate) struct Located {
    kind: RankingErrorKind,
    column: u64,
    message: String,
}

impl Located {
    fn within(self, source_name: &str, entry: &str, expression: &str) -> RankingError {
        RankingError {
            kind: self.kind,
            source_name: source_name.to_string(),
            entry: entry.to_string(),
            expression: expression.to_string(),
            column: self.column,
            message: self.message,
        }
    }
}

/// How a field's fast column is read as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    U64,
    I64,
    F64,
    /// Seconds since the Unix epoch.
    Date,
}

/// The schema field `name` if it can be read as a number per document.
fn fast_value_field(
    schema: &IndexSchema,
    name: &str,
) -> Result<(usize, ValueKind), (RankingErrorKind, String)> {
    let Some(index) = schema.field_index(name) else {
        let known: Vec<&str> = schema
            .spec
            .fields
            .iter()
            .filter(|field| {
                field.fast && (field.field_type.is_numeric() || field.field_type == FieldType::Date)
            })
            .map(|field| field.name.as_str())
            .collect();
        return Err((
            RankingErrorKind::UnknownField,
            format!(
                "unknown field `{name}` (fast numeric and date fields: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    let field = &schema.spec.fields[index];
    let kind = match field.field_type {
        FieldType::U64 => ValueKind::U64,
        FieldType::I64 => ValueKind::I64,
        FieldType::F64 => ValueKind::F64,
        FieldType::Date => ValueKind::Date,
        other => {
            return Err((
                RankingErrorKind::TypeMismatch,
                format!(
                    "field `{name}` is {}: ranking reads numeric and date fields",
                    other.name()
                ),
            ));
        }
    };
    if !field.fast {
        return Err((
            RankingErrorKind::NotFast,
            format!(
                "field `{name}` is not a fast field: declare it with `fast = true` to rank by it"
            ),
        ));
    }
    Ok((index, kind))
}

/// Order by one field's value; ties by id, documents without a value last.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub input: FieldInput,
    pub descending: bool,
}

impl OrderBy {
    /// Parses `"<field> DESC"` or `"<field> ASC"` (ASC when the direction is left out).
    fn parse(text: &str, schema: &IndexSchema) -> Result<OrderBy, Located> {
        let words: Vec<(usize, &str)> = text
            .split_whitespace()
            .map(|word| {
                let start = word.as_ptr() as usize - text.as_ptr() as usize;
                (text[..start].chars().count() + 1, word)
            })
            .collect();
        let at = |column: usize, kind, message: String| Located {
            kind,
            column: column as u64,
            message,
        };
        let Some(&(field_column, name)) = words.first() else {
            return Err(at(
                1,
                RankingErrorKind::Syntax,
                "empty: write \"<field> DESC\" or \"<field> ASC\"".into(),
            ));
        };
        let descending = match words.get(1) {
            None => false,
            Some((_, word)) if word.eq_ignore_ascii_case("desc") => true,
            Some((_, word)) if word.eq_ignore_ascii_case("asc") => false,
            Some(&(column, word)) => {
                return Err(at(
                    column,
                    RankingErrorKind::Syntax,
                    format!("expected ASC or DESC after the field, found `{word}`"),
                ));
            }
        };
        if let Some(&(column, word)) = words.get(2) {
            return Err(at(
                column,
                RankingErrorKind::Syntax,
                format!("unexpected `{word}`: order by one field"),
            ));
        }
        let (field, kind) = fast_value_field(schema, name)
            .map_err(|(kind, message)| at(field_column, kind, message))?;
        Ok(OrderBy {
            input: FieldInput {
                field,
                name: name.to_string(),
                kind,
            },
            descending,
        })
    }

    /// The rank of a document with this value: higher first.
    pub fn rank(&self, value: Option<f64>) -> f64 {
        match value {
            Some(value) if self.descending => value,
            Some(value) => -value,
            None => f64::NEG_INFINITY,
        }
    }

    /// The highest rank a document whose value lies in `range` can have.
    pub fn upper_bound(&self, range: ValueRange) -> f64 {
        match range.values {
            Some((_, high)) if self.descending => high,
            Some((low, _)) => -low,
            None => f64::NEG_INFINITY,
        }
    }

    fn describe(&self) -> String {
        let direction = if self.descending { "DESC" } else { "ASC" };
        format!("order_by:{} {direction}", self.input.name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RankRule {
    /// tantivy's BM25 score.
    Bm25,
    Score(Expression),
    OrderBy(OrderBy),
}

/// A ready ordering: its rule and what answers report as having ranked them.
#[derive(Debug, Clone, PartialEq)]
pub struct RankProfile {
    /// The profile's name, `order_by:<field> <DIR>`, or `bm25`.
    pub label: String,
    pub rule: RankRule,
}

impl RankProfile {
    /// Plain BM25.
    pub fn bm25() -> RankProfile {
        RankProfile {
            label: BM25.to_string(),
            rule: RankRule::Bm25,
        }
    }

    /// The rank of a document from its BM25 score and the profile's input values.
    pub fn rank(&self, bm25: f32, values: &[Option<f64>]) -> f64 {
        match &self.rule {
            RankRule::Bm25 => f64::from(bm25),
            RankRule::Score(expression) => expression
                .evaluate(f64::from(bm25), values)
                .unwrap_or(f64::NEG_INFINITY),
            RankRule::OrderBy(order) => order.rank(values[0]),
        }
    }

    /// `rank` with the input values as `ValueColumn::value` gives them (NaN for none): what
    /// the collector calls for every candidate.
    #[inline]
    pub fn rank_flat(&self, bm25: f32, values: &[f64]) -> f64 {
        match &self.rule {
            RankRule::Bm25 => f64::from(bm25),
            RankRule::Score(expression) => {
                let rank = expression.evaluate_flat(f64::from(bm25), values);
                if rank.is_nan() {
                    f64::NEG_INFINITY
                } else {
                    rank
                }
            }
            RankRule::OrderBy(order) => order.rank((!values[0].is_nan()).then_some(values[0])),
        }
    }

    /// The highest BM25 score at which every document whose values lie in `ranges` (aligned
    /// with `inputs`) ranks below `floor`: a search ranking by a score expression may skip the
    /// documents scoring at most this (tantivy's pruning threshold), and tighten it as `floor`
    /// rises. `None` when a document scoring 0 could reach `floor`, and for `order_by` and
    /// plain BM25 (whose thresholds are their own).
    ///
    /// Sound for every expression, monotone in BM25 or not: the returned score `t` has
    /// `upper_bound(t, ranges) < floor`, and that bounds every document scoring in `[0, t]`.
    /// It prunes where the bound grows with the score, found by bisection over the `f32`s
    /// (interval arithmetic only widens as the BM25 interval does).
    pub fn skippable_score(&self, floor: f64, ranges: &[ValueRange]) -> Option<f32> {
        let RankRule::Score(expression) = &self.rule else {
            return None;
        };
        let below = |score: f32| expression.upper_bound(f64::from(score), ranges) < floor;
        if !below(0.0) {
            return None;
        }
        if below(f32::MAX) {
            return Some(f32::MAX);
        }
        // Non-negative floats order as their bits: `below(low)` holds, `below(high)` does not.
        let (mut low, mut high) = (0u32, f32::MAX.to_bits());
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if below(f32::from_bits(middle)) {
                low = middle;
            } else {
                high = middle;
            }
        }
        Some(f32::from_bits(low))
    }

    /// The fast fields a document's rank reads, in the order `rank` takes their values.
    pub fn inputs(&self) -> &[FieldInput] {
        match &self.rule {
            RankRule::Bm25 => &[],
            RankRule::Score(expression) => expression.inputs(),
            RankRule::OrderBy(order) => std::slice::from_ref(&order.input),
        }
    }

    /// The score a hit reports: its rank for a score expression, else BM25.
    pub fn reported_score(&self, bm25: f32, rank: f64) -> f64 {
        match &self.rule {
            RankRule::Score(_) => rank,
            RankRule::Bm25 | RankRule::OrderBy(_) => f64::from(bm25),
        }
    }

    /// The highest rank a document can reach given a bound on its BM25 score and its values'
    /// ranges (aligned with `inputs`).
    pub fn upper_bound(&self, bm25_max: f64, ranges: &[ValueRange]) -> f64 {
        match &self.rule {
            RankRule::Bm25 => bm25_max,
            RankRule::Score(expression) => expression.upper_bound(bm25_max, ranges),
            RankRule::OrderBy(order) => order.upper_bound(ranges[0]),
        }
    }

    /// Whether the rank depends on BM25 (else a bound on it is not needed).
    pub fn reads_bm25(&self) -> bool {
        match &self.rule {
            RankRule::Bm25 => true,
            RankRule::Score(expression) => expression.reads_bm25(),
            RankRule::OrderBy(_) => false,
        }
    }
}

/// The name of the profile a request gets when it names none.
pub const DEFAULT_PROFILE: &str = "default";

/// A schema's rank profiles, checked.
#[derive(Debug, Clone)]
pub struct RankProfiles {
    profiles: BTreeMap<String, Arc<RankProfile>>,
    bm25: Arc<RankProfile>,
}

impl RankProfiles {
    /// Checks every `[ranking.NAME]` of the schema; `source_name` names the schema's origin
    /// in errors (its file, or the manifest it came with).
    pub fn compile(schema: &IndexSchema, source_name: &str) -> Result<RankProfiles, RankingError> {
        let mut profiles = BTreeMap::new();
        for (name, spec) in &schema.spec.ranking {
            let entry = format!("ranking.{name}");
            let fail = |message: String| RankingError {
                kind: RankingErrorKind::Profile,
                source_name: source_name.to_string(),
                entry: entry.clone(),
                expression: String::new(),
                column: 0,
                message,
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(fail(
                    "profile names use letters, digits, `_` and `-` only".into(),
                ));
            }
            let rule = match (&spec.score, &spec.order_by) {
                (Some(score), None) => {
                    RankRule::Score(expression::compile(score, schema).map_err(|located| {
                        located.within(source_name, &format!("{entry}.score"), score)
                    })?)
                }
                (None, Some(order_by)) => {
                    RankRule::OrderBy(OrderBy::parse(order_by, schema).map_err(|located| {
                        located.within(source_name, &format!("{entry}.order_by"), order_by)
                    })?)
                }
                (Some(_), Some(_)) => {
                    return Err(fail("give either `score` or `order_by`, not both".into()));
                }
                (None, None) => {
                    return Err(fail(
                        "empty profile: give `score = \"<expression>\"` or `order_by = \"<field> DESC\"`"
                            .into(),
                    ));
                }
            };
            profiles.insert(
                name.clone(),
                Arc::new(RankProfile {
                    label: name.clone(),
                    rule,
                }),
            );
        }
        Ok(RankProfiles {
            profiles,
            bm25: Arc::new(RankProfile::bm25()),
        })
    }

    /// The ordering a request asks for: its own `order_by` if it has one, else the profile it
    /// names, else `[ranking.default]`, else BM25.
    pub fn choose(
        &self,
        schema: &IndexSchema,
        profile: &str,
        order_by: &str,
    ) -> Result<Arc<RankProfile>, RankingError> {
        // A named profile must exist even when an order overrides it: a typo is not ignored.
        let named = self.named(profile)?;
        if order_by.trim().is_empty() {
            return Ok(named);
        }
        let order = OrderBy::parse(order_by, schema)
            .map_err(|located| located.within("request", "order_by", order_by))?;
        Ok(Arc::new(RankProfile {
            label: order.describe(),
            rule: RankRule::OrderBy(order),
        }))
    }

    fn named(&self, profile: &str) -> Result<Arc<RankProfile>, RankingError> {
        if profile.is_empty() {
            return Ok(self
                .profiles
                .get(DEFAULT_PROFILE)
                .unwrap_or(&self.bm25)
                .clone());
        }
        if profile == BM25 && !self.profiles.contains_key(BM25) {
            return Ok(self.bm25.clone());
        }
        self.profiles.get(profile).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
            RankingError {
                kind: RankingErrorKind::UnknownProfile,
                source_name: "request".into(),
                entry: "profile".into(),
                expression: String::new(),
                column: 0,
                message: format!(
                    "unknown rank profile `{profile}` (this index has: {})",
                    if known.is_empty() {
                        "none; `bm25` always works".to_string()
                    } else {
                        format!("{}, bm25", known.join(", "))
                    }
                ),
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
