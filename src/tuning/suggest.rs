//! Proposes hot-tier rules for a budget from a training log's pages.
//!
//! A query is a hit for a hot set when every document on its page is in the set (pages do not
//! depend on the split, so a set is scored without rebuilding). Candidate rules are ORs of
//! clauses, each an AND of at most `max_conditions` conditions on fast fields: thresholds at
//! the field's quantiles (`>=`, `<=`), `IS NOT NULL`, keyword equality with frequent values.
//! Every condition is evaluated on the built version by the builder's own rule engine, so a
//! rule's hot size here is the one a build would give. Clauses are added greedily while the
//! budget allows, by two strategies (most queries gained per document added, and most queries
//! gained); with pins, each rule is also completed by a pin list of training pages. Candidates
//! are ordered by a validation figure computed from the training log alone (its second half,
//! with pins from its first half only), and every candidate is scored on the holdout log,
//! which is never used to choose.
//!
//! The upper bound is no rule: a greedy choice of whole training pages (most queries per
//! document still needed, a set-union knapsack) under the same budget, scored on both logs;
//! beside it, the same greedy on the holdout log for itself (a ceiling that knows the queries
//! to come).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMicrosecondType, UInt64Type};
use serde::Serialize;

use super::TuningError;
use super::corpus::Corpus;
use super::pages::RankedLog;
use crate::node::version::LoadedVersion;
use crate::rules::{CompiledRules, RulesSpec};
use crate::schema::FieldType;

/// Hot documents allowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// A share of the corpus, in (0, 1].
    Share(f64),
    Docs(u64),
}

impl Budget {
    /// `10%` or a document count.
    pub fn parse(text: &str) -> Result<Budget, TuningError> {
        let text = text.trim();
        let fail = || {
            TuningError::argument(format!(
                "budget `{text}`: expected a share of the corpus such as `10%`, or a document count"
            ))
        };
        if let Some(percent) = text.strip_suffix('%') {
            let percent: f64 = percent.trim().parse().map_err(|_| fail())?;
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(fail());
            }
            return Ok(Budget::Share(percent / 100.0));
        }
        match text.parse::<u64>() {
            Ok(docs) if docs > 0 => Ok(Budget::Docs(docs)),
            _ => Err(fail()),
        }
    }

    pub fn docs(self, corpus: u64) -> u64 {
        match self {
            Budget::Share(share) => (share * corpus as f64).floor() as u64,
            Budget::Docs(docs) => docs.min(corpus),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SuggestOptions {
    pub budget: Budget,
    pub max_conditions: usize,
    /// Clauses ORed in one rule.
    pub max_clauses: usize,
    /// Budgets of the curve (shares of the corpus).
    pub curve: Vec<f64>,
    /// Also propose rules completed by a pin list of training pages' documents.
    pub pins: bool,
}

impl Default for SuggestOptions {
    fn default() -> SuggestOptions {
        SuggestOptions {
            budget: Budget::Share(0.1),
            max_conditions: 3,
            max_clauses: 6,
            curve: vec![0.01, 0.02, 0.05, 0.1, 0.2],
            pins: false,
        }
    }
}

/// A hot set and how it does on each log.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    /// What a rules file's `hot = [...]` takes; empty for the upper bound, which is no rule.
    pub hot: Vec<String>,
    pub hot_docs: u64,
    pub train_hit_rate: f64,
    /// An estimate from the training log alone of how it does on queries to come, which
    /// orders the candidates: the hit rate on the training log's second half, with a pin list
    /// made of the first half's pages only.
    pub validation_hit_rate: f64,
    pub holdout_hit_rate: f64,
    /// How it was chosen.
    pub chosen_by: String,
    /// Documents kept hot by a pin list (`hot_ids`) beyond what `hot` selects: the training
    /// pages' documents, chosen greedily in the budget the rule leaves. 0 without pins.
    pub pins: u64,
    /// The pinned ids, for the pin list file.
    #[serde(skip)]
    pub pinned_ids: Vec<String>,
    /// The pin list file holding `pinned_ids`, once written: what the rules file's
    /// `hot_ids` names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hot_ids: Option<String>,
}

/// No rule: the greedy choice of whole training pages (most queries per document still
/// needed) under the budget, scored on both logs like a candidate. Beside it, the same greedy
/// run on the holdout log for itself: a ceiling that knows the queries to come.
#[derive(Debug, Clone, Serialize)]
pub struct UpperBound {
    pub hot: Vec<String>,
    pub hot_docs: u64,
    pub train_hit_rate: f64,
    pub holdout_hit_rate: f64,
    /// The greedy choice made on the holdout log itself, and its documents.
    pub holdout_ceiling: f64,
    pub holdout_ceiling_docs: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub budget_share: f64,
    pub budget_docs: u64,
    /// The best rule at this budget (by validation hit rate).
    pub suggested: Scored,
    /// The best rule completed by a pin list, when pins were asked for.
    pub with_pins: Option<Scored>,
    pub upper_bound: UpperBound,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogSummary {
    pub source: String,
    pub queries: u64,
    pub unique_queries: u64,
    pub lines_not_used: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SuggestReport {
    pub index: String,
    pub version: String,
    pub ranked_by: String,
    pub corpus_docs: u64,
    pub budget_docs: u64,
    /// Best first, by validation hit rate.
    pub candidates: Vec<Scored>,
    /// The version's own rules and hot tier.
    pub current: Scored,
    pub upper_bound: UpperBound,
    pub train: LogSummary,
    pub holdout: LogSummary,
    /// Share of the holdout volume whose query text is also in the training log.
    pub holdout_seen_share: f64,
    /// The best candidate's holdout hit rate on queries seen in training, and on the others.
    pub holdout_hit_rate_seen: f64,
    pub holdout_hit_rate_unseen: f64,
    pub curve: Vec<CurvePoint>,
    /// Fields no condition could be drawn on (text, or not fast).
    pub fields_not_used: Vec<String>,
}

/// One bit per corpus document.
#[derive(Clone, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn empty(len: u32) -> Bits {
        Bits(vec![0; (len as usize).div_ceil(64)])
    }

    fn from_selected(selected: &BooleanArray) -> Bits {
        let mut bits = Bits::empty(selected.len() as u32);
        for (at, value) in selected.values().iter().enumerate() {
            if value {
                bits.insert(at as u32);
            }
        }
        bits
    }

    fn insert(&mut self, doc: u32) {
        self.0[doc as usize / 64] |= 1 << (doc % 64);
    }

    fn contains(&self, doc: u32) -> bool {
        self.0[doc as usize / 64] & (1 << (doc % 64)) != 0
    }

    fn count(&self) -> u64 {
        self.0.iter().map(|word| u64::from(word.count_ones())).sum()
    }

    fn and(&self, other: &Bits) -> Bits {
        Bits(self.0.iter().zip(&other.0).map(|(a, b)| a & b).collect())
    }

    fn or_assign(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    /// Documents of `self` not in `other`.
    fn count_outside(&self, other: &Bits) -> u64 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| u64::from((a & !b).count_ones()))
            .sum()
    }
}

/// A log's pages as corpus document numbers.
struct Pages {
    pages: Vec<(u64, Vec<u32>)>,
    volume: u64,
    texts: Vec<String>,
}

impl Pages {
    fn new(ranked: &RankedLog, corpus: &Corpus) -> Pages {
        let mut pages = Vec::new();
        let mut texts = Vec::new();
        for (query, page) in ranked.ranked() {
            pages.push((
                query.weight,
                page.hits
                    .iter()
                    .map(|hit| corpus.number(hit.tier, hit.doc))
                    .collect(),
            ));
            texts.push(query.text.clone());
        }
        let volume = pages.iter().map(|(weight, _)| weight).sum();
        Pages {
            pages,
            volume,
            texts,
        }
    }

    /// The first and second half of the log's queries, in log order.
    fn halves(&self) -> (Pages, Pages) {
        let middle = self.pages.len() / 2;
        let half = |range: std::ops::Range<usize>| {
            let pages = self.pages[range.clone()].to_vec();
            Pages {
                volume: pages.iter().map(|(weight, _)| weight).sum(),
                pages,
                texts: self.texts[range].to_vec(),
            }
        };
        (half(0..middle), half(middle..self.pages.len()))
    }

    fn hit_rate(&self, hot: &Bits) -> f64 {
        self.hit_rate_where(hot, |_| true)
    }

    fn hit_rate_where(&self, hot: &Bits, keep: impl Fn(usize) -> bool) -> f64 {
        let (mut hits, mut volume) = (0u64, 0u64);
        for (at, (weight, docs)) in self.pages.iter().enumerate() {
            if !keep(at) {
                continue;
            }
            volume += weight;
            if docs.iter().all(|&doc| hot.contains(doc)) {
                hits += weight;
            }
        }
        if volume == 0 {
            0.0
        } else {
            hits as f64 / volume as f64
        }
    }

    /// The greedy page choice under `budget` documents: the hit rate and documents used.
    fn greedy_bound(&self, budget: u64, corpus_docs: u32) -> (f64, u64) {
        let chosen = self.greedy_fill(&Bits::empty(corpus_docs), budget);
        (self.hit_rate(&chosen), chosen.count())
    }

    /// `start` plus the documents of whole pages, chosen greedily (most queries per document
    /// still needed) while the total stays within `budget`. Taking a page makes the pages that
    /// share its documents cheaper: those are queued again at their new ratio, and a queued
    /// entry whose count is out of date is skipped.
    fn greedy_fill(&self, start: &Bits, budget: u64) -> Bits {
        #[derive(PartialEq)]
        struct Entry {
            ratio: f64,
            needed: usize,
            page: usize,
        }
        impl Eq for Entry {}
        impl PartialOrd for Entry {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Entry {
            fn cmp(&self, other: &Self) -> Ordering {
                self.ratio
                    .total_cmp(&other.ratio)
                    .then_with(|| other.page.cmp(&self.page))
            }
        }
        let mut chosen = start.clone();
        let mut used = chosen.count();
        let missing_of = |chosen: &Bits, docs: &[u32]| -> HashSet<u32> {
            docs.iter()
                .copied()
                .filter(|&doc| !chosen.contains(doc))
                .collect()
        };
        let entry = |page: usize, needed: usize| Entry {
            ratio: self.pages[page].0 as f64 / needed as f64,
            needed,
            page,
        };
        let mut pages_of: HashMap<u32, Vec<usize>> = HashMap::new();
        let mut heap = BinaryHeap::new();
        let mut taken = vec![false; self.pages.len()];
        for (page, (_, docs)) in self.pages.iter().enumerate() {
            for &doc in docs {
                pages_of.entry(doc).or_default().push(page);
            }
            let needed = missing_of(&chosen, docs).len();
            if needed > 0 {
                heap.push(entry(page, needed));
            }
        }
        while let Some(next) = heap.pop() {
            if taken[next.page] {
                continue;
            }
            let missing = missing_of(&chosen, &self.pages[next.page].1);
            if missing.len() != next.needed {
                // Out of date: a fresher entry was queued when its documents were taken.
                continue;
            }
            if used + missing.len() as u64 > budget {
                // Too big for now; queued again if other pages take some of its documents.
                continue;
            }
            used += missing.len() as u64;
            taken[next.page] = true;
            let mut touched = HashSet::new();
            for doc in missing {
                chosen.insert(doc);
                touched.extend(pages_of.get(&doc).into_iter().flatten().copied());
            }
            for page in touched {
                if taken[page] {
                    continue;
                }
                let needed = missing_of(&chosen, &self.pages[page].1).len();
                if needed > 0 {
                    heap.push(entry(page, needed));
                }
            }
        }
        chosen
    }
}

/// A condition on one field, with the documents it selects.
struct Condition {
    sql: String,
    field: usize,
    bits: Bits,
}

/// Shares of a field's values that threshold conditions select, from each end.
const THRESHOLD_SHARES: [f64; 19] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
    0.6, 0.7, 0.8,
];
/// Most frequent keyword values offered as equalities.
const EQUALITY_VALUES: usize = 20;

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Each value of a field as a literal with its sort key, per document (ANY semantics for
/// keyword lists: every value counts).
fn field_values(column: &dyn Array) -> Option<Vec<(f64, String)>> {
    let mut values = Vec::new();
    match column.data_type() {
        DataType::UInt64 => {
            for value in column.as_primitive::<UInt64Type>().iter().flatten() {
                values.push((value as f64, value.to_string()));
            }
        }
        DataType::Int64 => {
            for value in column.as_primitive::<Int64Type>().iter().flatten() {
                values.push((value as f64, value.to_string()));
            }
        }
        DataType::Float64 => {
            // NaN and infinities have no SQL literal: no threshold is drawn at them.
            for value in column
                .as_primitive::<Float64Type>()
                .iter()
                .flatten()
                .filter(|value| value.is_finite())
            {
                values.push((value, format!("{value:?}")));
            }
        }
        DataType::Timestamp(_, _) => {
            for micros in column
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .flatten()
            {
                let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
                    .ok()?;
                values.push((
                    micros as f64,
                    quote(&crate::format::version::rfc3339_micros(at)),
                ));
            }
        }
        _ => return None,
    }
    Some(values)
}

/// The string values of a keyword column (every value of every list).
fn keyword_values(column: &dyn Array) -> Option<Vec<String>> {
    let strings = match column.data_type() {
        DataType::List(_) => column.as_list::<i32>().values().clone(),
        DataType::Utf8 => column.slice(0, column.len()),
        _ => return None,
    };
    Some(
        strings
            .as_string::<i32>()
            .iter()
            .flatten()
            .map(str::to_string)
            .collect(),
    )
}

/// Candidate conditions as SQL, per usable field; and the fields not usable.
fn condition_sql(version: &LoadedVersion, corpus: &Corpus) -> (Vec<(usize, String)>, Vec<String>) {
    let schema = &version.schema;
    let mut conditions = Vec::new();
    let mut not_used = Vec::new();
    for (field_index, field) in schema.spec.fields.iter().enumerate() {
        if !corpus.readable[field_index] {
            not_used.push(field.name.clone());
            continue;
        }
        let column = corpus.batch.column(field_index);
        let name = &field.name;
        let mut sql = Vec::new();
        if column.null_count() > 0 && column.null_count() < column.len() {
            sql.push(format!("{name} IS NOT NULL"));
        }
        // Sorted (key, literal) pairs: thresholds at quantiles from both ends.
        let sorted: Option<Vec<(f64, String)>> = match field.field_type {
            FieldType::Keyword => keyword_values(column.as_ref()).map(|values| {
                let mut values: Vec<(f64, String)> =
                    values.into_iter().map(|value| (0.0, value)).collect();
                values.sort_by(|a, b| a.1.cmp(&b.1));
                values
                    .into_iter()
                    .map(|(_, value)| (0.0, quote(&value)))
                    .collect()
            }),
            FieldType::Bool => {
                sql.push(name.clone());
                None
            }
            _ => field_values(column.as_ref()).map(|mut values| {
                values.sort_by(|a, b| a.0.total_cmp(&b.0));
                values
            }),
        };
        if let Some(sorted) = sorted.filter(|sorted| !sorted.is_empty()) {
            let last = sorted.len() - 1;
            for share in THRESHOLD_SHARES {
                let from_top = ((1.0 - share) * sorted.len() as f64) as usize;
                let from_bottom = (share * sorted.len() as f64) as usize;
                sql.push(format!("{name} >= {}", sorted[from_top.min(last)].1));
                sql.push(format!("{name} <= {}", sorted[from_bottom.min(last)].1));
            }
            if field.field_type == FieldType::Keyword {
                let mut frequency: BTreeMap<&str, u64> = BTreeMap::new();
                for (_, value) in &sorted {
                    *frequency.entry(value.as_str()).or_default() += 1;
                }
                // Equalities only on a field of categories, not of near-unique values.
                if (frequency.len() as u64) * 2 <= corpus.docs() as u64 {
                    let mut frequent: Vec<(&str, u64)> = frequency.into_iter().collect();
                    frequent.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                    for (value, _) in frequent.into_iter().take(EQUALITY_VALUES) {
                        sql.push(format!("{name} = {value}"));
                    }
                }
            }
        }
        sql.sort();
        sql.dedup();
        conditions.extend(sql.into_iter().map(|sql| (field_index, sql)));
    }
    (conditions, not_used)
}

/// Evaluates candidate conditions with the builder's rule engine.
fn conditions(
    version: &LoadedVersion,
    corpus: &Corpus,
) -> Result<(Vec<Condition>, Vec<String>), TuningError> {
    let (sql, not_used) = condition_sql(version, corpus);
    let rules = CompiledRules::new(
        RulesSpec {
            hot: sql.iter().map(|(_, sql)| sql.clone()).collect(),
            budget: None,
            hot_ids: None,
        },
        "suggested conditions",
        &version.schema,
    )?;
    let selected = rules.select_each(&corpus.batch)?;
    let mut conditions: Vec<Condition> = sql
        .into_iter()
        .zip(selected)
        .map(|((field, sql), selected)| Condition {
            sql,
            field,
            bits: Bits::from_selected(&selected),
        })
        .collect();
    // Conditions selecting nothing or everything cannot help.
    let docs = u64::from(corpus.docs());
    conditions.retain(|condition| {
        let count = condition.bits.count();
        count > 0 && count < docs
    });
    // Conditions selecting the same documents are one.
    let mut seen: Vec<Bits> = Vec::new();
    conditions.retain(|condition| {
        if seen.contains(&condition.bits) {
            false
        } else {
            seen.push(condition.bits.clone());
            true
        }
    });
    Ok((conditions, not_used))
}

/// The corpus's ids as a pin list writes them (the text of the id column, as the builder
/// compares them).
struct IdColumn<'a> {
    formatter: arrow::util::display::ArrayFormatter<'a>,
}

impl<'a> IdColumn<'a> {
    fn new(corpus: &'a Corpus, id_index: usize) -> Result<IdColumn<'a>, TuningError> {
        let formatter = arrow::util::display::ArrayFormatter::try_new(
            corpus.batch.column(id_index).as_ref(),
            &arrow::util::display::FormatOptions::default(),
        )
        .map_err(|err| TuningError::corpus(err.to_string()))?;
        Ok(IdColumn { formatter })
    }

    /// Ids of the documents in `set` and not in `except`, in corpus order.
    fn ids_of(&self, set: &Bits, except: &Bits) -> Vec<String> {
        let mut ids = Vec::new();
        for (word_at, (word, other)) in set.0.iter().zip(&except.0).enumerate() {
            let mut word = word & !other;
            while word != 0 {
                let doc = word_at * 64 + word.trailing_zeros() as usize;
                ids.push(self.formatter.value(doc).to_string());
                word &= word - 1;
            }
        }
        ids
    }
}

/// An AND of conditions.
#[derive(Clone)]
struct Clause {
    parts: Vec<usize>,
    bits: Bits,
}

impl Clause {
    fn sql(&self, conditions: &[Condition]) -> String {
        let parts: Vec<&str> = self
            .parts
            .iter()
            .map(|&at| conditions[at].sql.as_str())
            .collect();
        parts.join(" AND ")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    /// Most training queries gained per hot document added.
    PerDocument,
    /// Most training queries gained.
    MostQueries,
}

impl Strategy {
    fn label(self) -> &'static str {
        match self {
            Strategy::PerDocument => "greedy: most training queries per document added",
            Strategy::MostQueries => "greedy: most training queries",
        }
    }
}

/// The training queries not yet hits, with the page documents they still miss.
struct Open {
    queries: Vec<(u64, Vec<u32>)>,
}

impl Open {
    fn new(pages: &Pages, hot: &Bits) -> Open {
        Open {
            queries: pages
                .pages
                .iter()
                .filter_map(|(weight, docs)| {
                    let missing: Vec<u32> = docs
                        .iter()
                        .copied()
                        .filter(|&doc| !hot.contains(doc))
                        .collect();
                    (!missing.is_empty()).then_some((*weight, missing))
                })
                .collect(),
        }
    }

    /// Weight of the queries that adding `clause` would make hits.
    fn gain(&self, clause: &Bits) -> u64 {
        self.queries
            .iter()
            .filter(|(_, missing)| missing.iter().all(|&doc| clause.contains(doc)))
            .map(|(weight, _)| weight)
            .sum()
    }
}

/// Width of the beam of clauses extended by one more condition.
const BEAM: usize = 8;

/// Grows one rule greedily under `budget`.
fn grow_rule(
    conditions: &[Condition],
    pages: &Pages,
    budget: u64,
    options: &SuggestOptions,
    strategy: Strategy,
    start: &Bits,
) -> (Vec<Clause>, Bits) {
    let mut hot = start.clone();
    let mut size = hot.count();
    let mut rule = Vec::new();
    while rule.len() < options.max_clauses {
        let open = Open::new(pages, &hot);
        // (score, gain, added, clause) of the best clause that fits.
        let mut best: Option<(f64, u64, u64, Clause)> = None;
        let consider = |clause: &Clause, best: &mut Option<(f64, u64, u64, Clause)>| {
            let added = clause.bits.count_outside(&hot);
            if added == 0 || size + added > budget {
                return (0, added);
            }
            let gain = open.gain(&clause.bits);
            if gain == 0 {
                return (0, added);
            }
            let score = match strategy {
                Strategy::PerDocument => gain as f64 / added as f64,
                Strategy::MostQueries => gain as f64 - added as f64 * 1e-12,
            };
            if best
                .as_ref()
                .is_none_or(|(best_score, ..)| score > *best_score)
            {
                *best = Some((score, gain, added, clause.clone()));
            }
            (gain, added)
        };
        let mut layer: Vec<Clause> = conditions
            .iter()
            .enumerate()
            .map(|(at, condition)| Clause {
                parts: vec![at],
                bits: condition.bits.clone(),
            })
            .collect();
        for depth in 1..=options.max_conditions {
            // Scored also when too large: those are the clauses a further condition narrows.
            let mut scored: Vec<(u64, u64, Clause)> = layer
                .into_iter()
                .map(|clause| {
                    let (mut gain, added) = consider(&clause, &mut best);
                    if gain == 0 && added > 0 {
                        gain = open.gain(&clause.bits);
                    }
                    (gain, added, clause)
                })
                .collect();
            if depth == options.max_conditions {
                break;
            }
            scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            scored.truncate(BEAM);
            layer = Vec::new();
            for (gain, _, clause) in scored.into_iter().filter(|(gain, ..)| *gain > 0) {
                let _ = gain;
                for (at, condition) in conditions.iter().enumerate() {
                    if clause
                        .parts
                        .iter()
                        .any(|&part| conditions[part].field == condition.field)
                    {
                        continue;
                    }
                    let mut parts = clause.parts.clone();
                    parts.push(at);
                    layer.push(Clause {
                        parts,
                        bits: clause.bits.and(&condition.bits),
                    });
                }
            }
        }
        let Some((_, _, added, clause)) = best else {
            break;
        };
        hot.or_assign(&clause.bits);
        size += added;
        rule.push(clause);
    }
    (rule, hot)
}

/// The logs a candidate is scored on.
struct Logs {
    train: Pages,
    holdout: Pages,
    /// The training log's first and second halves, for the validation figure.
    first: Pages,
    second: Pages,
    /// Documents the first half's pages need, over those all training pages need: a pin list
    /// of the first half is this much of one of the whole log.
    first_share: f64,
    corpus_docs: u32,
}

impl Logs {
    /// Scores a hot set: `rule` alone, plus `pinned` when a pin list completes it (pins come
    /// from training pages, so the validation figure pins only the first half's pages and
    /// counts the second half's queries: what pins do for queries they have not seen).
    fn score(
        &self,
        rule_sql: Vec<String>,
        rule: &Bits,
        with_pins: Option<(&Bits, &IdColumn<'_>)>,
        budget: u64,
        chosen_by: String,
    ) -> (Scored, Bits) {
        let (hot, validation, pins, pinned_ids) = match with_pins {
            None => (rule.clone(), self.second.hit_rate(rule), 0, Vec::new()),
            Some((hot, ids)) => {
                // The first half pins in proportion to the pins this candidate has room for,
                // so that a rule that squeezes the pin list out is seen to.
                let pins = hot.count_outside(rule) as f64;
                let room = rule.count() + (pins * self.first_share).round() as u64;
                let first_pinned = self.first.greedy_fill(rule, room.min(budget));
                (
                    hot.clone(),
                    self.second.hit_rate(&first_pinned),
                    hot.count_outside(rule),
                    ids.ids_of(hot, rule),
                )
            }
        };
        (
            Scored {
                hot: rule_sql,
                hot_docs: hot.count(),
                train_hit_rate: self.train.hit_rate(&hot),
                validation_hit_rate: validation,
                holdout_hit_rate: self.holdout.hit_rate(&hot),
                chosen_by,
                pins,
                pinned_ids,
                hot_ids: None,
            },
            hot,
        )
    }
}

/// A rule's clauses without those the others already cover, and its documents.
fn without_redundant_clauses(mut rule: Vec<Clause>, corpus_docs: u32) -> (Vec<Clause>, Bits) {
    let mut at = 0;
    while at < rule.len() {
        let mut others = Bits::empty(corpus_docs);
        for (other, clause) in rule.iter().enumerate() {
            if other != at {
                others.or_assign(&clause.bits);
            }
        }
        if rule[at].bits.count_outside(&others) == 0 {
            rule.remove(at);
        } else {
            at += 1;
        }
    }
    let mut bits = Bits::empty(corpus_docs);
    for clause in &rule {
        bits.or_assign(&clause.bits);
    }
    (rule, bits)
}

/// Candidates at one budget, best first by validation hit rate.
fn candidates_at(
    conditions: &[Condition],
    ids: &IdColumn<'_>,
    logs: &Logs,
    budget: u64,
    options: &SuggestOptions,
) -> Vec<(Scored, Bits)> {
    let corpus_docs = logs.corpus_docs;
    let empty = Bits::empty(corpus_docs);
    // (rule as SQL, how it was chosen, its documents)
    let mut rules: Vec<(Vec<String>, String, Bits)> = Vec::new();
    let mut add_rule = |rule: Vec<Clause>, chosen_by: String| {
        let (rule, bits) = without_redundant_clauses(rule, corpus_docs);
        if !rule.is_empty() && !rules.iter().any(|(_, _, other)| *other == bits) {
            rules.push((
                rule.iter().map(|clause| clause.sql(conditions)).collect(),
                chosen_by,
                bits,
            ));
        }
    };
    for strategy in [Strategy::PerDocument, Strategy::MostQueries] {
        let (rule, _) = grow_rule(conditions, &logs.train, budget, options, strategy, &empty);
        add_rule(rule, strategy.label().into());
    }
    let mut candidates: Vec<(Scored, Bits)> = Vec::new();
    if options.pins {
        // A rule for what pins miss: the pages of the training log's first half pinned, the
        // rule grown on the queries of its second half that those pins leave cold, as queries
        // to come will be.
        let pinned_first = logs.first.greedy_fill(&empty, budget);
        // Room kept for the pins of the whole training log, which the rule will sit beside.
        let pinned_all = logs.train.greedy_fill(&empty, budget);
        let room = budget.saturating_sub(pinned_all.count_outside(&pinned_first));
        for strategy in [Strategy::PerDocument, Strategy::MostQueries] {
            let (rule, _) = grow_rule(
                conditions,
                &logs.second,
                room,
                options,
                strategy,
                &pinned_first,
            );
            // Only the rule's own clauses: the pins it was grown next to are added below.
            add_rule(
                rule,
                format!(
                    "{}, for the queries of the training log's second half that its first \
                     half's pages miss",
                    strategy.label()
                ),
            );
        }
        // Each rule completed by the training pages it leaves out, and pins alone.
        for (rule_sql, chosen_by, bits) in rules.iter().cloned().chain(std::iter::once((
            Vec::new(),
            "no rule".to_string(),
            empty.clone(),
        ))) {
            let with_pins = logs.train.greedy_fill(&bits, budget);
            if with_pins.count_outside(&bits) == 0 {
                continue;
            }
            candidates.push(logs.score(
                rule_sql,
                &bits,
                Some((&with_pins, ids)),
                budget,
                format!("{chosen_by}, then a pin list of training pages"),
            ));
        }
    }
    for (rule_sql, chosen_by, bits) in rules {
        candidates.push(logs.score(rule_sql, &bits, None, budget, chosen_by));
    }
    candidates.sort_by(|a, b| {
        b.0.validation_hit_rate
            .total_cmp(&a.0.validation_hit_rate)
            .then(b.0.train_hit_rate.total_cmp(&a.0.train_hit_rate))
            .then(a.0.hot_docs.cmp(&b.0.hot_docs))
    });
    candidates
}

fn upper_bound(train: &Pages, holdout: &Pages, budget: u64, corpus_docs: u32) -> UpperBound {
    let chosen = train.greedy_fill(&Bits::empty(corpus_docs), budget);
    let (holdout_ceiling, holdout_ceiling_docs) = holdout.greedy_bound(budget, corpus_docs);
    UpperBound {
        hot: Vec::new(),
        hot_docs: chosen.count(),
        train_hit_rate: train.hit_rate(&chosen),
        holdout_hit_rate: holdout.hit_rate(&chosen),
        holdout_ceiling,
        holdout_ceiling_docs,
    }
}

fn summary(ranked: &RankedLog, pages: &Pages) -> LogSummary {
    LogSummary {
        source: ranked.log.source.clone(),
        queries: pages.volume,
        unique_queries: pages.pages.len() as u64,
        lines_not_used: ranked.log.problems.len() as u64,
    }
}

/// Suggests rules for `options.budget` from `train`, scoring them on `holdout` too. Both logs
/// must have been ranked on `version` with the same options.
pub fn suggest(
    version: &LoadedVersion,
    train: &RankedLog,
    holdout: &RankedLog,
    options: &SuggestOptions,
) -> Result<SuggestReport, TuningError> {
    if options.max_conditions == 0 || options.max_clauses == 0 {
        return Err(TuningError::argument(
            "a rule needs at least one clause of at least one condition",
        ));
    }
    let corpus = Corpus::open(version, true)?;
    let corpus_docs = corpus.docs();
    let train_pages = Pages::new(train, &corpus);
    let (first, second) = train_pages.halves();
    let needed = |pages: &Pages| {
        let mut docs = Bits::empty(corpus_docs);
        for (_, page) in &pages.pages {
            for &doc in page {
                docs.insert(doc);
            }
        }
        docs.count()
    };
    let first_share = needed(&first) as f64 / needed(&train_pages).max(1) as f64;
    let logs = Logs {
        holdout: Pages::new(holdout, &corpus),
        train: train_pages,
        first,
        second,
        first_share,
        corpus_docs,
    };
    let (conditions, fields_not_used) = conditions(version, &corpus)?;
    let ids = IdColumn::new(&corpus, version.schema.id_index)?;
    let budget = options.budget.docs(u64::from(corpus_docs));

    let mut current_hot = Bits::empty(corpus_docs);
    for doc in 0..corpus.hot_docs {
        current_hot.insert(doc);
    }
    let (current, _) = logs.score(
        version.manifest.rules.hot.clone(),
        &current_hot,
        None,
        budget,
        "the version's rules".into(),
    );
    let found = candidates_at(&conditions, &ids, &logs, budget, options);
    let holdout_pages = &logs.holdout;
    let seen: HashSet<&str> = logs.train.texts.iter().map(String::as_str).collect();
    let is_seen = |at: usize| seen.contains(holdout_pages.texts[at].as_str());
    let seen_volume: u64 = holdout_pages
        .pages
        .iter()
        .enumerate()
        .filter(|(at, _)| is_seen(*at))
        .map(|(_, (weight, _))| weight)
        .sum();
    let (seen_rate, unseen_rate) = match found.first() {
        Some((_, hot)) => (
            holdout_pages.hit_rate_where(hot, is_seen),
            holdout_pages.hit_rate_where(hot, |at| !is_seen(at)),
        ),
        None => (0.0, 0.0),
    };
    let curve = options
        .curve
        .iter()
        .map(|&share| {
            let docs = Budget::Share(share).docs(u64::from(corpus_docs));
            let found = candidates_at(&conditions, &ids, &logs, docs, options);
            let best_rule = found
                .iter()
                .find(|(scored, _)| scored.pins == 0)
                .map(|(scored, _)| scored.clone())
                .unwrap_or_else(|| {
                    logs.score(
                        Vec::new(),
                        &Bits::empty(corpus_docs),
                        None,
                        docs,
                        "no rule fits".into(),
                    )
                    .0
                });
            let with_pins = found
                .iter()
                .find(|(scored, _)| scored.pins > 0)
                .map(|(scored, _)| scored.clone());
            CurvePoint {
                budget_share: share,
                budget_docs: docs,
                suggested: best_rule,
                with_pins,
                upper_bound: upper_bound(&logs.train, holdout_pages, docs, corpus_docs),
            }
        })
        .collect();
    Ok(SuggestReport {
        index: version.manifest.index.clone(),
        version: version.version().to_string(),
        ranked_by: train.ranked_by.clone(),
        corpus_docs: u64::from(corpus_docs),
        budget_docs: budget,
        candidates: found.into_iter().map(|(scored, _)| scored).collect(),
        current,
        upper_bound: upper_bound(&logs.train, holdout_pages, budget, corpus_docs),
        train: summary(train, &logs.train),
        holdout: summary(holdout, holdout_pages),
        holdout_seen_share: if holdout_pages.volume == 0 {
            0.0
        } else {
            seen_volume as f64 / holdout_pages.volume as f64
        },
        holdout_hit_rate_seen: seen_rate,
        holdout_hit_rate_unseen: unseen_rate,
        curve,
        fields_not_used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuning::TuningErrorKind;

    #[test]
    fn budgets_are_shares_or_counts_and_bad_ones_are_named() {
        assert_eq!(Budget::parse("10%").unwrap(), Budget::Share(0.1));
        assert_eq!(Budget::parse(" 2.5 % ").unwrap(), Budget::Share(0.025));
        assert_eq!(Budget::parse("1500").unwrap(), Budget::Docs(1500));
        assert_eq!(Budget::Share(0.1).docs(1005), 100);
        assert_eq!(Budget::Docs(5000).docs(1005), 1005);
        for bad in ["0%", "150%", "ten", "-3", "0", ""] {
            let err = Budget::parse(bad).unwrap_err();
            assert_eq!(err.kind(), TuningErrorKind::Argument);
            assert!(
                err.to_string().contains(&format!("`{}`", bad.trim())),
                "{err}"
            );
        }
    }

    fn pages(pages: &[(u64, &[u32])]) -> Pages {
        Pages {
            pages: pages
                .iter()
                .map(|(weight, docs)| (*weight, docs.to_vec()))
                .collect(),
            volume: pages.iter().map(|(weight, _)| weight).sum(),
            texts: (0..pages.len()).map(|at| at.to_string()).collect(),
        }
    }

    fn bits(docs: &[u32]) -> Bits {
        let mut bits = Bits::empty(16);
        for &doc in docs {
            bits.insert(doc);
        }
        bits
    }

    #[test]
    fn greedy_fill_takes_whole_pages_by_queries_per_document_within_the_budget() {
        // Page 0: 5 queries for 2 documents; page 1: 3 queries for 3; page 2: 4 queries for
        // 1 document it shares with page 0 and one of its own; an empty page always hits.
        let log = pages(&[(5, &[0, 1]), (3, &[2, 3, 4]), (4, &[1, 5]), (2, &[])]);
        let chosen = log.greedy_fill(&Bits::empty(16), 3);
        // 2.5 per document for page 0 and 2.0 for page 2, then page 2 needs one more (4.0):
        // {0, 1, 5}; page 1 no longer fits.
        assert!(chosen == bits(&[0, 1, 5]));
        assert_eq!(log.hit_rate(&chosen), 11.0 / 14.0);
        // Starting from documents already hot, only what is missing counts.
        // {2, 3} hot: page 1 needs only 4 (3.0 per document); then neither page 0 nor page 2
        // fits in what is left, and a page is never taken in part.
        let chosen = log.greedy_fill(&bits(&[2, 3]), 4);
        assert!(chosen == bits(&[2, 3, 4]));
        let (rate, used) = log.greedy_bound(16, 16);
        assert_eq!((rate, used), (1.0, 6));
    }

    #[test]
    fn greedy_fill_requeues_pages_made_cheaper() {
        // Budget 3. A (50 queries, {0, 1}) goes first; B (40, {1, 2}) then needs one document
        // (40 per document) and must beat C (22, {3}).
        let log = pages(&[(50, &[0, 1]), (22, &[3]), (40, &[1, 2])]);
        let chosen = log.greedy_fill(&Bits::empty(16), 3);
        assert!(chosen == bits(&[0, 1, 2]));
        assert_eq!(log.hit_rate(&chosen), 90.0 / 112.0);
    }

    #[test]
    fn clauses_the_others_cover_are_dropped() {
        let clause = |docs: &[u32]| Clause {
            parts: Vec::new(),
            bits: bits(docs),
        };
        let rule = vec![
            clause(&[0, 1]),
            clause(&[0, 1, 2]),
            clause(&[3]),
            clause(&[2, 3]),
        ];
        let (kept, all) = without_redundant_clauses(rule, 16);
        let kept: Vec<u64> = kept.iter().map(|clause| clause.bits.count()).collect();
        assert_eq!(kept, vec![3, 2]);
        assert!(all == bits(&[0, 1, 2, 3]));
    }
}
