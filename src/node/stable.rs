//! Scores that do not depend on how documents are spread over segments.
//!
//! tantivy 0.27 answers a clause that matches every document of a segment (a range covering
//! all the segment's values, an `exists` query on a full column) with an `AllScorer`, and a
//! boolean query then drops such clauses from its conjunction — together with the constant
//! score they add. Whether that happens depends on the values present in each segment, so the
//! same document would score 1.0 less in a tier whose values all fall in the range. Wrapping
//! every leaf of the query keeps the clause's constant score wherever it is evaluated, making
//! the score a property of the document and the query alone.

use tantivy::query::{
    AllScorer, BooleanQuery, ConstScorer, EnableScoring, Explanation, PhrasePrefixQuery,
    PhraseQuery, Query, Scorer, TermQuery, Weight,
};
use tantivy::{DocId, Score, SegmentReader, Term};

/// Wraps every node of `query` that could answer with an `AllScorer` so that its constant
/// score survives. Term and phrase queries are left alone: with scoring on they never do, and
/// wrapping them would hide their block-max pruning.
pub fn keep_constant_scores(query: Box<dyn Query>) -> Box<dyn Query> {
    if let Some(boolean) = query.downcast_ref::<BooleanQuery>() {
        let clauses = boolean
            .clauses()
            .iter()
            .map(|(occur, clause)| (*occur, keep_constant_scores(clause.box_clone())))
            .collect();
        return Box::new(BooleanQuery::with_minimum_required_clauses(
            clauses,
            boolean.get_minimum_number_should_match(),
        ));
    }
    if query.is::<TermQuery>() || query.is::<PhraseQuery>() || query.is::<PhrasePrefixQuery>() {
        return query;
    }
    Box::new(KeepConstantScore(query))
}

#[derive(Debug)]
struct KeepConstantScore(Box<dyn Query>);

impl Clone for KeepConstantScore {
    fn clone(&self) -> Self {
        KeepConstantScore(self.0.box_clone())
    }
}

impl Query for KeepConstantScore {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(KeepConstantScoreWeight(
            self.0.weight(enable_scoring)?,
        )))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.0.query_terms(visitor);
    }
}

struct KeepConstantScoreWeight(Box<dyn Weight>);

impl Weight for KeepConstantScoreWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let scorer = self.0.scorer(reader, boost)?;
        if scorer.is::<AllScorer>() {
            // Same documents, same constant score; only no longer recognisable as "all".
            return Ok(Box::new(ConstScorer::new(scorer, boost)));
        }
        Ok(scorer)
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.0.explain(reader, doc)
    }
}
