//! BM25 scores that do not depend on which index a document is in.
//!
//! tantivy adds a document's term contributions in the order its term scorers happen to stand
//! in: block-max WAND keeps them sorted by their current document, and a conjunction by each
//! segment's document frequencies. `f32` addition is not associative, so one document can score
//! an ULP apart in two tiers, two shards or one monolithic index, and two documents with the
//! same contributions can come back in noise order rather than id order.
//!
//! For the queries that meet this (a flat disjunction or conjunction of term clauses), ranking
//! settles it after the merge: hits whose scores are within [`SummedTerms::rounding`] of each
//! other are rescored exactly (each clause's contribution computed as tantivy's term scorer
//! does, summed in `f64`, where the sum of a few `f32` is exact whatever the order, and rounded
//! once) and reordered by that score, then id. Collectors keep the hits just below the page's
//! last one within rounding, so that a hit pushed off the page by noise competes too. A hit
//! with no near tie keeps tantivy's score: no more than the rounding away from the exact one,
//! and ordered the same way.
//!
//! Only these queries are rescored: tantivy sums every other shape in the query's own clause
//! order (the buffered union, the required-optional pair, the exclusion), which is the same in
//! every index.

#[cfg(test)]
use std::collections::BTreeMap;

use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::Postings;
use tantivy::query::{Bm25StatisticsProvider, Bm25Weight, BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, DocId, DocSet, Score, Searcher, SegmentReader, Term};

use super::collector::RankedHit;

/// `f32`'s unit roundoff.
const UNIT_ROUNDOFF: f64 = 1.0 / (1u64 << 24) as f64;

/// The term clauses of a query whose score tantivy may sum in an index-dependent order.
#[derive(Debug)]
pub struct SummedTerms<'q> {
    terms: Vec<&'q Term>,
}

impl<'q> SummedTerms<'q> {
    /// `Some` for a boolean query of two or more term clauses, all `Should` (block-max WAND) or
    /// all `Must` (the block-max conjunction).
    pub fn of(query: &'q dyn Query) -> Option<SummedTerms<'q>> {
        let boolean = query.downcast_ref::<BooleanQuery>()?;
        let clauses = boolean.clauses();
        let (first_occur, _) = clauses.first()?;
        if clauses.len() < 2
            || !matches!(first_occur, Occur::Should | Occur::Must)
            || boolean.get_minimum_number_should_match() > 1
        {
            return None;
        }
        let terms = clauses
            .iter()
            .map(|(occur, clause)| {
                let term = clause.downcast_ref::<TermQuery>()?;
                (occur == first_occur).then(|| term.term())
            })
            .collect::<Option<Vec<&Term>>>()?;
        Some(SummedTerms { terms })
    }

    /// How far apart tantivy's sum and the exact one can be for a document scoring `score`,
    /// with room to spare: summing `n` non-negative `f32` in any order errs by at most
    /// `(n - 1)` unit roundoffs of the sum, and rounding the exact sum by one more. Two hits
    /// further apart than this are in their exact order already.
    pub fn rounding(&self, score: f64) -> f64 {
        score.abs() * (4 * (self.terms.len() + 1)) as f64 * UNIT_ROUNDOFF
    }

    /// `rounding` relative to the score: `TopHits::near_tie`.
    pub fn near_tie(&self) -> f64 {
        self.rounding(1.0)
    }

    /// Adds each clause's contribution to each of `docs` (ascending, of `reader`'s segment) to
    /// that document's sum, in clause order, as tantivy's term scorer computes it with the
    /// clause's `weights` (nothing where the term does not occur).
    fn contributions(
        &self,
        reader: &SegmentReader,
        docs: &[DocId],
        weights: &[Bm25Weight],
        sums: &mut [f64],
    ) -> tantivy::Result<()> {
        for (term, weight) in self.terms.iter().zip(weights) {
            let inverted = reader.inverted_index(term.field())?;
            let Some(mut postings) = inverted.read_postings(term, IndexRecordOption::WithFreqs)?
            else {
                continue;
            };
            let norms = reader
                .fieldnorms_readers()
                .get_field(term.field())?
                .unwrap_or_else(|| FieldNormReader::constant(reader.max_doc(), 1));
            // `docs` ascend, so the postings only move forward (and never seek backwards, which
            // tantivy does not allow).
            for (doc, sum) in docs.iter().zip(sums.iter_mut()) {
                let mut at = postings.doc();
                if at < *doc {
                    at = postings.seek(*doc);
                }
                if at == *doc {
                    let score = weight.score(norms.fieldnorm_id(*doc), postings.term_freq());
                    *sum += f64::from(score);
                }
            }
        }
        Ok(())
    }

    /// The exact scores of `docs`, all of `searcher`: each rounded once to `f32`.
    pub fn exact_scores(
        &self,
        searcher: &Searcher,
        docs: &[DocAddress],
        statistics: &dyn Bm25StatisticsProvider,
    ) -> tantivy::Result<Vec<Score>> {
        let mut order: Vec<usize> = (0..docs.len()).collect();
        order.sort_by_key(|&at| docs[at]);
        let mut scores = vec![0.0; docs.len()];
        // As `TermQuery` weighs a term: once per search, whatever the segment.
        let weights = self
            .terms
            .iter()
            .map(|term| Bm25Weight::for_terms(statistics, std::slice::from_ref(*term)))
            .collect::<tantivy::Result<Vec<Bm25Weight>>>()?;
        for run in order.chunk_by(|&a, &b| docs[a].segment_ord == docs[b].segment_ord) {
            let reader = searcher.segment_reader(docs[run[0]].segment_ord);
            let ids: Vec<DocId> = run.iter().map(|&at| docs[at].doc_id).collect();
            let mut sums = vec![0.0f64; run.len()];
            self.contributions(reader, &ids, &weights, &mut sums)?;
            for (&at, sum) in run.iter().zip(sums) {
                scores[at] = sum as Score;
            }
        }
        Ok(scores)
    }
}

/// The runs of `hits` (sorted best first) that need their exact scores: consecutive hits within
/// `rounding` of each other, with at least two different ranks, starting before `depth`. As
/// index ranges into `hits`.
pub fn near_tie_runs(
    hits: &[RankedHit],
    depth: usize,
    rounding: impl Fn(f64) -> f64,
) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < hits.len().min(depth) {
        let mut end = start + 1;
        while end < hits.len()
            && hits[end - 1].rank - hits[end].rank <= rounding(hits[end - 1].rank)
        {
            end += 1;
        }
        if hits[start].rank != hits[end - 1].rank {
            runs.push(start..end);
        }
        start = end;
    }
    runs
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tantivy::collector::TopDocs;
    use tantivy::query::QueryParser;
    use tantivy::schema::{Schema, TEXT};
    use tantivy::{Index, IndexWriter, doc};

    use super::*;

    /// Filler documents with random mixes of the query's words, and every 40th document the same
    /// text: the copies' term contributions are equal, so their exact scores are too.
    fn corpus_with_copies() -> (Index, Vec<DocAddress>) {
        let mut builder = Schema::builder();
        let body = builder.add_text_field("body", TEXT);
        let index = Index::create_in_ram(builder.build());
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 20_000_000).unwrap();
        let words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma"];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for n in 0..4000 {
            let text = if n % 40 == 7 {
                "alpha beta beta gamma delta delta delta omega".to_string()
            } else {
                (0..1 + next(12))
                    .map(|_| words[next(words.len() as u64) as usize])
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            writer.add_document(doc!(body => text)).unwrap();
            // Several segments, as a tier has.
            if n % 1000 == 999 {
                writer.commit().unwrap();
            }
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let copies = searcher
            .search(
                &QueryParser::for_index(&index, vec![body])
                    .parse_query("\"alpha beta beta gamma delta delta delta omega\"")
                    .unwrap(),
                &TopDocs::with_limit(1000).order_by_score(),
            )
            .unwrap()
            .into_iter()
            .map(|(_, address)| address)
            .collect();
        (index, copies)
    }

    #[test]
    fn copies_score_alike_exactly_where_tantivy_sums_them_apart() {
        let (index, copies) = corpus_with_copies();
        assert_eq!(copies.len(), 100);
        let searcher = index.reader().unwrap().searcher();
        let body = index.schema().get_field("body").unwrap();
        let parser = QueryParser::for_index(&index, vec![body]);
        let query = parser.parse_query("alpha beta gamma delta omega").unwrap();
        let summed = SummedTerms::of(query.as_ref()).expect("a flat disjunction of terms");
        let every_match = TopDocs::with_limit(4000).order_by_score();
        let tantivy: BTreeMap<DocAddress, Score> = searcher
            .search(query.as_ref(), &every_match)
            .unwrap()
            .into_iter()
            .map(|(score, address)| (address, score))
            .collect();
        let noisy: BTreeSet<u32> = copies.iter().map(|doc| tantivy[doc].to_bits()).collect();
        // What this module is for: block-max WAND sums the copies' equal contributions in
        // different orders. (If tantivy ever sums in one order, this corpus no longer shows it.)
        assert!(
            noisy.len() > 1,
            "tantivy scored the copies alike: {noisy:?}"
        );

        let exact = summed.exact_scores(&searcher, &copies, &searcher).unwrap();
        let distinct: BTreeSet<u32> = exact.iter().map(|score| score.to_bits()).collect();
        assert_eq!(
            distinct.len(),
            1,
            "exact scores of the copies: {distinct:?}"
        );
        for (doc, score) in copies.iter().zip(&exact) {
            let tantivy = f64::from(tantivy[doc]);
            assert!(
                (f64::from(*score) - tantivy).abs() <= summed.rounding(tantivy),
                "{doc:?}: exact {score}, tantivy {tantivy}"
            );
        }
        // Every match, not only the copies: the exact score is tantivy's within the rounding.
        let all: Vec<DocAddress> = tantivy.keys().copied().collect();
        let exact = summed.exact_scores(&searcher, &all, &searcher).unwrap();
        for (doc, score) in all.iter().zip(exact) {
            let tantivy = f64::from(tantivy[doc]);
            assert!((f64::from(score) - tantivy).abs() <= summed.rounding(tantivy));
        }
    }

    #[test]
    fn runs_are_near_ties_with_different_ranks_reaching_the_page() {
        let hit = |rank: f64| RankedHit {
            rank,
            score: rank as Score,
            key: 0,
            tier: super::super::collector::TierName::Hot,
            doc: DocAddress::new(0, 0),
            addr: None,
        };
        let close = 1e-9;
        let hits = [
            hit(9.0),
            hit(8.0),
            hit(8.0 - close),
            hit(8.0 - 2.0 * close),
            hit(7.0),
            hit(7.0),
            hit(6.0),
            hit(6.0 - close),
        ];
        let rounding = |rank: f64| rank * 1e-9 * 1.5;
        // Equal ranks alone (7.0, 7.0) are in id order already; the run at 6.0 starts past the
        // page.
        assert_eq!(near_tie_runs(&hits, 6, rounding), vec![1..4]);
        assert_eq!(near_tie_runs(&hits, 7, rounding), vec![1..4, 6..8]);
        assert!(near_tie_runs(&hits, 7, |_| 0.0).is_empty());
    }

    #[test]
    fn only_flat_term_disjunctions_and_conjunctions_are_summed_again() {
        let mut builder = Schema::builder();
        let body = builder.add_text_field("body", TEXT);
        let title = builder.add_text_field("title", TEXT);
        let index = Index::create_in_ram(builder.build());
        let parser = QueryParser::for_index(&index, vec![body, title]);
        let terms = |text: &str| {
            let query = parser.parse_query(text).unwrap();
            SummedTerms::of(query.as_ref()).map(|summed| summed.terms.len())
        };
        // Two default fields: a word is a clause per field, flattened into one disjunction.
        assert_eq!(terms("alpha beta"), Some(4));
        assert_eq!(
            terms("+alpha +beta"),
            None,
            "a conjunction of per-field disjunctions"
        );
        assert_eq!(terms("+body:alpha +body:beta"), Some(2));
        assert_eq!(terms("alpha"), Some(2));
        assert_eq!(terms("body:alpha"), None, "one term: nothing to order");
        assert_eq!(
            terms("+body:alpha body:beta"),
            None,
            "required and optional"
        );
        assert_eq!(terms("body:alpha -body:beta"), None, "an exclusion");
        assert_eq!(terms("body:alpha^2 body:beta"), None, "a boost");
        assert_eq!(terms("\"alpha beta\" body:gamma"), None, "a phrase");
    }
}
