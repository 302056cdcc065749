//! The cold skip: the highest rank any cold document could reach for a query, so that when the
//! hot tier's k-th rank is above it the cold tier need not be searched at all.
//!
//! A rank is bounded from the profile's inputs: each field's range over the cold tier (the fast
//! columns' stored min and max) and, when the profile reads BM25, a bound on the cold
//! documents' BM25 score. That one is the sum, over the query's scoring clauses, of each term's
//! highest contribution in the cold tier — computed exactly, with tantivy's own scorer and the
//! corpus statistics the search uses, over the term's postings once per loaded version, then
//! kept. Only queries whose score is such a sum are bounded (boolean combinations of term
//! clauses, which is what plain words parse to); any other clause makes the bound infinite and
//! the cold tier is searched.

use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::Postings;
use tantivy::query::{Bm25Weight, BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocSet, Score, Searcher, TERMINATED, Term};

use super::statistics::{CorpusStatistics, TermTable};

/// Terms whose cold maximum is kept; past this, further terms are computed per query.
const MAX_KEPT_TERMS: usize = 100_000;

/// Relative slack added to a BM25 bound: tantivy sums a document's term contributions in `f32`
/// in its own order, which can round a few ULPs above the sum of the maxima in ours.
const SUM_SLACK: f64 = 1e-5;

/// Each term's highest BM25 contribution in one tier, under one set of corpus statistics.
pub struct TermMaxima {
    kept: TermTable<Score>,
}

impl Default for TermMaxima {
    fn default() -> Self {
        TermMaxima {
            kept: TermTable::new(MAX_KEPT_TERMS),
        }
    }
}

impl TermMaxima {
    /// An upper bound of the BM25 score of any document of `searcher` for `query`; `None` when
    /// the query is not a sum of term clauses.
    pub fn bm25_bound(
        &self,
        query: &dyn Query,
        searcher: &Searcher,
        statistics: &CorpusStatistics,
    ) -> tantivy::Result<Option<f64>> {
        let Some(sum) = self.clause_bound(query, searcher, statistics)? else {
            return Ok(None);
        };
        Ok(Some(sum * (1.0 + SUM_SLACK)))
    }

    fn clause_bound(
        &self,
        query: &dyn Query,
        searcher: &Searcher,
        statistics: &CorpusStatistics,
    ) -> tantivy::Result<Option<f64>> {
        if let Some(boolean) = query.downcast_ref::<BooleanQuery>() {
            let mut sum = 0.0;
            for (occur, clause) in boolean.clauses() {
                if *occur == Occur::MustNot {
                    continue;
                }
                match self.clause_bound(clause.as_ref(), searcher, statistics)? {
                    Some(bound) => sum += bound,
                    None => return Ok(None),
                }
            }
            return Ok(Some(sum));
        }
        if let Some(term) = query.downcast_ref::<TermQuery>() {
            return Ok(Some(f64::from(self.term_max(
                term.term(),
                searcher,
                statistics,
            )?)));
        }
        Ok(None)
    }

    fn term_max(
        &self,
        term: &Term,
        searcher: &Searcher,
        statistics: &CorpusStatistics,
    ) -> tantivy::Result<Score> {
        self.kept
            .get_or_compute(term, || term_max_in(term, searcher, statistics))
    }
}

/// The highest score `term` alone gives any document of `searcher`: what a `TermQuery` scores,
/// computed as tantivy's `TermWeight` does (same BM25 weight, same field norms).
fn term_max_in(
    term: &Term,
    searcher: &Searcher,
    statistics: &CorpusStatistics,
) -> tantivy::Result<Score> {
    let weight = Bm25Weight::for_terms(statistics, std::slice::from_ref(term))?;
    let mut max: Score = 0.0;
    for reader in searcher.segment_readers() {
        let inverted = reader.inverted_index(term.field())?;
        let Some(info) = inverted.get_term_info(term)? else {
            continue;
        };
        let mut postings =
            inverted.read_postings_from_terminfo(&info, IndexRecordOption::WithFreqs)?;
        let norms = reader
            .fieldnorms_readers()
            .get_field(term.field())?
            .unwrap_or_else(|| FieldNormReader::constant(reader.max_doc(), 1));
        let mut doc = postings.doc();
        while doc != TERMINATED {
            let score = weight.score(norms.fieldnorm_id(doc), postings.term_freq());
            max = max.max(score);
            doc = postings.advance();
        }
    }
    Ok(max)
}
