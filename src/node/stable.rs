//! Scores that do not depend on how documents are spread over segments.
//!
//! tantivy 0.27 answers a clause that matches every document of a segment (a range covering
//! all the segment's values, an `exists` query on a full column) with an `AllScorer`, and a
//! boolean query then drops such clauses from its conjunction — together with the constant
//! score they add. Whether that happens depends on the values present in each segment, so the
//! same document would score 1.0 less in a tier whose values all fall in the range. Wrapping
//! every leaf of the query keeps the clause's constant score wherever it is evaluated, making
//! the score a property of the document and the query alone.
//!
//! Also: term clauses on fields indexed without term frequencies (numbers, dates, booleans)
//! report a block-max score of 0 (tantivy reads frequencies that were never written), so
//! block-max pruning with a positive threshold skips their matches. `TopDocs` rarely notices:
//! its threshold starts at minus infinity in every segment. Our searches start from the best
//! k-th score found in other segments and tiers, so such clauses are searched without block
//! skipping. Keyword fields are indexed with frequencies (format version 2) and keep pruning.

use tantivy::query::{
    AllScorer, BooleanQuery, ConstScorer, EnableScoring, Explanation, Occur, PhrasePrefixQuery,
    PhraseQuery, Query, Scorer, TermQuery, Weight,
};
use tantivy::schema::{FieldType, Schema};
use tantivy::{DocId, DocSet, Score, SegmentReader, Term};

/// Wraps every node of `query` that could answer with an `AllScorer` so that its constant
/// score survives, and every term clause on a field without frequencies so that pruning sees
/// its matches. Other term and phrase queries are left alone: with scoring on they never
/// answer with an `AllScorer`, and wrapping them would hide their block-max pruning.
pub fn keep_constant_scores(query: Box<dyn Query>, schema: &Schema) -> Box<dyn Query> {
    // Most queries are terms and phrases on text fields: nothing to wrap, nothing to rebuild.
    wrapped(query.as_ref(), schema).unwrap_or(query)
}

/// `query` with its constant scores kept, or `None` when nothing in it needs wrapping (so that
/// an unchanged query is neither cloned nor rebuilt).
fn wrapped(query: &dyn Query, schema: &Schema) -> Option<Box<dyn Query>> {
    if let Some(boolean) = query.downcast_ref::<BooleanQuery>() {
        let clauses: Vec<(Occur, Option<Box<dyn Query>>)> = boolean
            .clauses()
            .iter()
            .map(|(occur, clause)| (*occur, wrapped(clause.as_ref(), schema)))
            .collect();
        if clauses.iter().all(|(_, clause)| clause.is_none()) {
            return None;
        }
        let clauses = clauses
            .into_iter()
            .zip(boolean.clauses())
            .map(|((occur, clause), (_, original))| {
                (occur, clause.unwrap_or_else(|| original.box_clone()))
            })
            .collect();
        return Some(Box::new(BooleanQuery::with_minimum_required_clauses(
            clauses,
            boolean.get_minimum_number_should_match(),
        )));
    }
    let keep = match query.downcast_ref::<TermQuery>() {
        Some(term) => has_frequencies(schema, term.term()),
        None => query.is::<PhraseQuery>() || query.is::<PhrasePrefixQuery>(),
    };
    (!keep).then(|| Box::new(KeepConstantScore(query.box_clone())) as Box<dyn Query>)
}

fn has_frequencies(schema: &Schema, term: &Term) -> bool {
    match schema.get_field_entry(term.field()).field_type() {
        FieldType::Str(options) => options
            .get_indexing_options()
            .is_some_and(|indexing| indexing.index_option().has_freq()),
        _ => false,
    }
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
        // Same documents and scores, no longer recognisable as a term scorer whose block-max
        // scores a union would trust.
        Ok(Box::new(Unpruned(scorer)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.0.explain(reader, doc)
    }
}

/// A scorer that hides what it wraps: unions and intersections treat it as opaque and visit
/// its documents one by one.
struct Unpruned(Box<dyn Scorer>);

impl DocSet for Unpruned {
    fn advance(&mut self) -> DocId {
        self.0.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.0.seek(target)
    }

    fn doc(&self) -> DocId {
        self.0.doc()
    }

    fn size_hint(&self) -> u32 {
        self.0.size_hint()
    }

    fn cost(&self) -> u64 {
        self.0.cost()
    }
}

impl Scorer for Unpruned {
    fn score(&mut self) -> Score {
        self.0.score()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::collector::TopDocs;
    use tantivy::query::QueryParser;
    use tantivy::schema::{FAST, INDEXED, Schema, TEXT};
    use tantivy::{Index, doc};

    /// The best score of `text` over an index of `documents` (text, number), one segment.
    fn best_score(documents: &[(&str, u64)], text: &str, wrap: bool) -> Score {
        let mut builder = Schema::builder();
        let body = builder.add_text_field("body", TEXT);
        let number = builder.add_u64_field("n", INDEXED | FAST);
        let index = Index::create_in_ram(builder.build());
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for (words, value) in documents {
            writer
                .add_document(doc!(body => *words, number => *value))
                .unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let query = QueryParser::for_index(&index, vec![body])
            .parse_query(text)
            .unwrap();
        let query = if wrap {
            keep_constant_scores(query, &index.schema())
        } else {
            query
        };
        searcher
            .search(&query, &TopDocs::with_limit(1).order_by_score())
            .unwrap()[0]
            .0
    }

    #[test]
    fn a_range_matching_a_whole_segment_keeps_its_score() {
        let query = "+body:apple +n:[0 TO 10]";
        // Every value in range: tantivy answers the range with an AllScorer and the boolean
        // query drops it with its constant score; the wrapper keeps it.
        let all_in_range = [("apple pie", 1), ("banana", 2)];
        let dropped = best_score(&all_in_range, query, false);
        let kept = best_score(&all_in_range, query, true);
        assert!((kept - dropped - 1.0).abs() < 1e-5, "{kept} vs {dropped}");
        // Some values out of range: nothing to keep, the wrapper changes nothing.
        let some_in_range = [("apple pie", 1), ("banana", 20)];
        assert_eq!(
            best_score(&some_in_range, query, true),
            best_score(&some_in_range, query, false)
        );
    }
}
