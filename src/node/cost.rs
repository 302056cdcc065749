//! What a search will read, known before it runs: enough to tell a short search, which runs on
//! the runtime worker that received it, from one that may take long and hands the worker off
//! first (`offload`).
//!
//! The bound counts postings, the work a search cannot avoid knowing in advance: block-max
//! pruning usually reads far fewer, an exhaustive ranking (a rank profile, exact totals) reads
//! them all. Clauses whose cost the term statistics cannot tell (ranges, prefixes, regexes,
//! fuzzy terms, boosts, fields without frequencies) make the cost unknown, and an unknown cost
//! counts as long.

use tantivy::query::{Bm25StatisticsProvider, BooleanQuery, PhraseQuery, Query, TermQuery};

/// A phrase reads its terms' positions too: its postings count this many times.
const PHRASE_FACTOR: u64 = 4;

/// How many times `inline_postings` a ranking that block-max pruning bounds may count before it
/// is judged long. A BM25 ranking of the top k reads a small part of the postings its bound
/// counts, skipping every block that cannot reach the k-th score; an exhaustive one (a rank
/// profile, exact totals) reads them all. On the PyPI bench (`cargo bench --bench node`,
/// docs/benchmarks.md at `9502411`), 256 of 8,200 web searches handed off at 200,000 postings,
/// none at 2,000,000, and the node's throughput under 64 clients went from 0.71× to 0.78× of
/// tantivy's, its p99 latency under that load from 1.46× to 1.23×.
pub const PRUNED_FACTOR: u64 = 10;

/// The postings a ranking may count (`postings_bound`) and still run on the runtime worker:
/// `inline_postings` for one that reads every match, [`PRUNED_FACTOR`] times that for one that
/// block-max pruning bounds.
pub fn ranking_budget(inline_postings: u64, pruned: bool) -> u64 {
    if pruned {
        inline_postings.saturating_mul(PRUNED_FACTOR)
    } else {
        inline_postings
    }
}

/// An upper bound on the postings a search of `query` reads with `statistics`' document
/// frequencies, counted once more when every match is counted (`count_all`); `None` when some
/// clause's cost is not known from term statistics.
pub fn postings_bound(
    query: &dyn Query,
    statistics: &dyn Bm25StatisticsProvider,
    count_all: bool,
) -> Option<u64> {
    let bound = clause_bound(query, statistics)?;
    Some(if count_all {
        bound.saturating_mul(2)
    } else {
        bound
    })
}

fn clause_bound(query: &dyn Query, statistics: &dyn Bm25StatisticsProvider) -> Option<u64> {
    if let Some(boolean) = query.downcast_ref::<BooleanQuery>() {
        return boolean
            .clauses()
            .iter()
            // An excluded clause reads at most its own postings too.
            .try_fold(0u64, |sum, (_, clause)| {
                Some(sum.saturating_add(clause_bound(clause.as_ref(), statistics)?))
            });
    }
    if let Some(term) = query.downcast_ref::<TermQuery>() {
        return statistics.doc_freq(term.term()).ok();
    }
    if let Some(phrase) = query.downcast_ref::<PhraseQuery>() {
        return phrase.phrase_terms().iter().try_fold(0u64, |sum, term| {
            let postings = statistics.doc_freq(term).ok()?;
            Some(sum.saturating_add(postings.saturating_mul(PHRASE_FACTOR)))
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::query::{QueryParser, RangeQuery};
    use tantivy::schema::{INDEXED, Schema, TEXT};
    use tantivy::{Index, Term};

    /// Document frequencies as stated, whatever the term.
    struct Frequencies(&'static [(&'static str, u64)]);

    impl Bm25StatisticsProvider for Frequencies {
        fn total_num_tokens(&self, _field: tantivy::schema::Field) -> tantivy::Result<u64> {
            Ok(1)
        }

        fn total_num_docs(&self) -> tantivy::Result<u64> {
            Ok(1)
        }

        fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
            let text = term.value().as_str().unwrap_or_default().to_string();
            Ok(self
                .0
                .iter()
                .find(|(word, _)| *word == text)
                .map_or(0, |(_, freq)| *freq))
        }
    }

    fn parse(text: &str) -> Box<dyn Query> {
        let mut builder = Schema::builder();
        let body = builder.add_text_field("body", TEXT);
        builder.add_u64_field("year", INDEXED);
        let index = Index::create_in_ram(builder.build());
        QueryParser::for_index(&index, vec![body])
            .parse_query(text)
            .unwrap()
    }

    const FREQUENCIES: Frequencies = Frequencies(&[("apple", 100), ("pie", 30), ("tart", 5)]);

    #[test]
    fn terms_count_their_postings_and_phrases_their_positions_too() {
        assert_eq!(
            postings_bound(parse("apple").as_ref(), &FREQUENCIES, false),
            Some(100)
        );
        assert_eq!(
            postings_bound(parse("apple pie -tart").as_ref(), &FREQUENCIES, false),
            Some(135)
        );
        assert_eq!(
            postings_bound(parse("\"apple pie\"").as_ref(), &FREQUENCIES, false),
            Some(4 * 130)
        );
        assert_eq!(
            postings_bound(parse("apple pie").as_ref(), &FREQUENCIES, true),
            Some(260)
        );
    }

    #[test]
    fn clauses_the_statistics_cannot_price_make_the_cost_unknown() {
        for text in ["apple year:[2000 TO 2010]", "apple^2 pie"] {
            assert_eq!(
                postings_bound(parse(text).as_ref(), &FREQUENCIES, false),
                None,
                "{text}"
            );
        }
        let range = RangeQuery::new(
            std::ops::Bound::Included(Term::from_field_u64(
                tantivy::schema::Field::from_field_id(1),
                1,
            )),
            std::ops::Bound::Unbounded,
        );
        assert_eq!(postings_bound(&range, &FREQUENCIES, false), None);
    }

    #[test]
    fn a_pruned_ranking_may_count_more_postings_than_an_exhaustive_one() {
        assert_eq!(ranking_budget(200_000, false), 200_000);
        assert_eq!(ranking_budget(200_000, true), 200_000 * PRUNED_FACTOR);
        // 0 still hands off every ranking that reads a posting.
        assert_eq!(ranking_budget(0, true), 0);
        assert_eq!(ranking_budget(u64::MAX, true), u64::MAX);
    }
}
