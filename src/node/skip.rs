//! The cold skip: the highest rank any cold document could reach for a query, so that when the
//! hot tier's k-th rank is above it the cold tier need not be searched at all.
//!
//! A rank is bounded from the profile's inputs: each field's range over the cold tier (recorded
//! in the manifest) and, when the profile reads BM25, a bound on the cold documents' BM25
//! score. That one is the sum, over the query's scoring clauses, of each term's highest
//! contribution in the cold tier — computed exactly by the builder with tantivy's own scorer
//! and the version's corpus statistics (`remote::bounds`), so deciding reads no cold postings.
//! Only queries whose score is such a sum are bounded (boolean combinations of term clauses,
//! which is what plain words parse to); any other clause makes the bound infinite and the cold
//! tier is searched.

use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};

use crate::remote::ColdTermBounds;

/// Relative slack added to a BM25 bound: tantivy sums a document's term contributions in `f32`
/// in its own order, which can round a few ULPs above the sum of the maxima in ours.
const SUM_SLACK: f64 = 1e-5;

/// An upper bound of the BM25 score of any cold document for `query`; `None` when the query is
/// not a sum of term clauses. Reads the bounds of its terms (kept, local, or warmed).
pub fn bm25_bound(query: &dyn Query, bounds: &ColdTermBounds) -> std::io::Result<Option<f64>> {
    Ok(clause_bound(query, bounds)?.map(|sum| sum * (1.0 + SUM_SLACK)))
}

fn clause_bound(query: &dyn Query, bounds: &ColdTermBounds) -> std::io::Result<Option<f64>> {
    if let Some(boolean) = query.downcast_ref::<BooleanQuery>() {
        let mut sum = 0.0;
        for (occur, clause) in boolean.clauses() {
            if *occur == Occur::MustNot {
                continue;
            }
            match clause_bound(clause.as_ref(), bounds)? {
                Some(bound) => sum += bound,
                None => return Ok(None),
            }
        }
        return Ok(Some(sum));
    }
    if let Some(term) = query.downcast_ref::<TermQuery>() {
        let max = bounds.get(term.term())?.map_or(0.0, |cold| cold.max_score);
        return Ok(Some(f64::from(max)));
    }
    Ok(None)
}

/// The terms whose bounds `bm25_bound` reads: those of the term clauses it sums.
pub fn bounded_terms(query: &dyn Query) -> Vec<tantivy::Term> {
    let mut terms = Vec::new();
    collect_terms(query, &mut terms);
    terms
}

fn collect_terms(query: &dyn Query, terms: &mut Vec<tantivy::Term>) {
    if let Some(boolean) = query.downcast_ref::<BooleanQuery>() {
        for (occur, clause) in boolean.clauses() {
            if *occur != Occur::MustNot {
                collect_terms(clause.as_ref(), terms);
            }
        }
    } else if let Some(term) = query.downcast_ref::<TermQuery>() {
        terms.push(term.term().clone());
    }
}
