//! What a version's split does for a query log: the share of queries answered without a cold
//! document, the cold reads the others cost, and which rule brought in the hot documents that
//! pages show.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::BooleanArray;
use serde::Serialize;

use super::corpus::Corpus;
use super::log::{LineProblem, ProblemKind};
use super::pages::RankedLog;
use super::{TuningError, weighted_percentile};
use crate::node::cold::requests_on_empty_cache;
use crate::node::collector::TierName;
use crate::node::documents::FieldSelection;
use crate::node::version::LoadedVersion;
use crate::rules::CompiledRules;

/// Problems listed one by one in a report; the counts cover all of them.
const LISTED_PROBLEMS: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Distribution {
    fn of(mut values: Vec<(f64, u64)>) -> Distribution {
        let weight: u64 = values.iter().map(|(_, weight)| weight).sum();
        let sum: f64 = values
            .iter()
            .map(|(value, weight)| value * *weight as f64)
            .sum();
        Distribution {
            mean: if weight == 0 {
                0.0
            } else {
                sum / weight as f64
            },
            p50: weighted_percentile(&mut values, 0.5),
            p99: weighted_percentile(&mut values, 0.99),
            max: values.iter().map(|(value, _)| *value).fold(0.0, f64::max),
        }
    }
}

/// The hot documents on pages that one rule brought in.
#[derive(Debug, Clone, Serialize)]
pub struct RuleShare {
    /// `hot[i]`, or `none` for hot documents no rule that can be evaluated selects (pinned by
    /// `hot_ids`).
    pub rule: String,
    pub expression: String,
    /// Places on pages (weighted by the log's counts) held by its documents.
    pub page_slots: u64,
    /// Distinct documents of pages.
    pub documents: u64,
    /// False when the rule reads a field without a fast column: its documents count under a
    /// later rule, or `none`.
    pub evaluable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProblemCounts {
    pub total: u64,
    pub blank: u64,
    pub unreadable: u64,
    pub query: u64,
    /// The first problems, by line.
    pub lines: Vec<LineProblem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub index: String,
    pub version: String,
    pub ranked_by: String,
    pub limit: u32,
    /// Queries replayed, repeats included (lines that could not be used are not).
    pub queries: u64,
    pub unique_queries: u64,
    /// Share of `queries` whose page holds no cold document (results from the hot tier
    /// alone; queries without results count).
    pub hit_rate: f64,
    /// The same share over distinct queries.
    pub unique_hit_rate: f64,
    /// The counts behind the two rates.
    pub hit_queries: u64,
    pub unique_hit_queries: u64,
    pub zero_result_queries: u64,
    /// Share of `queries` for which the node would not search the cold tier at all.
    pub cold_skip_rate: f64,
    pub cold_documents_per_query: Distribution,
    /// Range requests to read a page's cold documents (every stored field) on an empty cache,
    /// with the version's block size.
    pub storage_requests_per_query: Distribution,
    pub block_size: u64,
    pub hot_docs: u64,
    pub cold_docs: u64,
    /// Which rule brought in the hot documents pages show (the first that selects each).
    pub rules: Vec<RuleShare>,
    pub log_lines: u64,
    pub problems: ProblemCounts,
}

pub fn replay(
    version: &Arc<LoadedVersion>,
    ranked: &RankedLog,
    limit: u32,
) -> Result<ReplayReport, TuningError> {
    let cold = version
        .cold()
        .ok_or_else(|| TuningError::node("the cold tier is not loaded"))?;
    let schema = &version.schema;
    let all_fields = FieldSelection::new(schema, &version.manifest.multi_valued_fields, &[])
        .map_err(TuningError::node)?;
    let attribution = Attribution::new(version)?;
    let mut slots = vec![0u64; attribution.rules.len() + 1];
    let mut documents: Vec<HashSet<u32>> = vec![HashSet::new(); attribution.rules.len() + 1];

    let (mut volume, mut unique, mut hits, mut unique_hits, mut empty, mut skipped) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut cold_documents = Vec::new();
    let mut requests = Vec::new();
    for (query, page) in ranked.ranked() {
        let weight = query.weight;
        volume += weight;
        unique += 1;
        let cold_addrs: Vec<_> = page.hits.iter().filter_map(|hit| hit.addr).collect();
        if cold_addrs.is_empty() {
            hits += weight;
            unique_hits += 1;
        }
        empty += if page.hits.is_empty() { weight } else { 0 };
        skipped += if page.cold_skipped { weight } else { 0 };
        cold_documents.push((cold_addrs.len() as f64, weight));
        let cost = requests_on_empty_cache(&cold.files, schema, &all_fields, &cold_addrs)?;
        requests.push((cost as f64, weight));
        for hit in page.hits.iter().filter(|hit| hit.tier == TierName::Hot) {
            let document = attribution.corpus.number(TierName::Hot, hit.doc);
            let rule = attribution.rule_of(document);
            slots[rule] += weight;
            documents[rule].insert(document);
        }
    }
    let share = |part: u64, of: u64| {
        if of == 0 {
            0.0
        } else {
            part as f64 / of as f64
        }
    };
    let rules = attribution
        .rules
        .iter()
        .enumerate()
        .map(|(at, (expression, evaluable))| RuleShare {
            rule: format!("hot[{at}]"),
            expression: expression.clone(),
            page_slots: slots[at],
            documents: documents[at].len() as u64,
            evaluable: *evaluable,
        })
        .chain(std::iter::once(RuleShare {
            rule: "none".into(),
            expression: String::new(),
            page_slots: slots[attribution.rules.len()],
            documents: documents[attribution.rules.len()].len() as u64,
            evaluable: true,
        }))
        .collect();
    let problems = &ranked.log.problems;
    let count = |kind| {
        problems
            .iter()
            .filter(|problem| problem.kind == kind)
            .count() as u64
    };
    Ok(ReplayReport {
        index: version.manifest.index.clone(),
        version: version.version().to_string(),
        ranked_by: ranked.ranked_by.clone(),
        limit,
        queries: volume,
        unique_queries: unique,
        hit_rate: share(hits, volume),
        unique_hit_rate: share(unique_hits, unique),
        hit_queries: hits,
        unique_hit_queries: unique_hits,
        zero_result_queries: empty,
        cold_skip_rate: share(skipped, volume),
        cold_documents_per_query: Distribution::of(cold_documents),
        storage_requests_per_query: Distribution::of(requests),
        block_size: version.manifest.block_size,
        hot_docs: version.manifest.hot.docs,
        cold_docs: version.manifest.cold.docs,
        rules,
        log_lines: ranked.log.lines,
        problems: ProblemCounts {
            total: problems.len() as u64,
            blank: count(ProblemKind::Blank),
            unreadable: count(ProblemKind::Unreadable),
            query: count(ProblemKind::Query),
            lines: problems.iter().take(LISTED_PROBLEMS).cloned().collect(),
        },
    })
}

/// The version's rules evaluated on its hot tier.
struct Attribution {
    corpus: Corpus,
    /// Each rule's expression and whether it can be evaluated here.
    rules: Vec<(String, bool)>,
    selected: Vec<BooleanArray>,
}

impl Attribution {
    fn new(version: &LoadedVersion) -> Result<Attribution, TuningError> {
        let corpus = Corpus::open(version, false)?;
        let rules = CompiledRules::new(
            version.manifest.rules.clone(),
            "the version's rules",
            &version.schema,
        )?;
        let evaluable: Vec<bool> = rules
            .fields_read()
            .iter()
            .map(|fields| fields.iter().all(|&field| corpus.readable[field]))
            .collect();
        let selected = rules.select_each(&corpus.batch)?;
        Ok(Attribution {
            rules: rules.spec.hot.iter().cloned().zip(evaluable).collect(),
            selected,
            corpus,
        })
    }

    /// The first evaluable rule selecting a hot document; `rules.len()` for none.
    fn rule_of(&self, document: u32) -> usize {
        self.rules
            .iter()
            .zip(&self.selected)
            .position(|((_, evaluable), selected)| *evaluable && selected.value(document as usize))
            .unwrap_or(self.rules.len())
    }
}
