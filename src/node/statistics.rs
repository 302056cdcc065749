//! BM25 statistics of the whole loaded corpus (both tiers summed), shared by every search of a
//! version.
//!
//! A document must score the same whichever tiers a search covers, so every search takes its
//! statistics from every loaded tier: a term's document frequency would cost a dictionary
//! lookup in each tier's every segment per search, twice tantivy's own cost for a hot-only
//! query. A version never changes, so its statistics are read once and kept: token and
//! document totals when the tier set is loaded, document frequencies per term on first use, in
//! a bounded table: a read lock and one hash lookup, lighter than a cache with an eviction
//! policy (measured: as costly as the dictionary lookups it saved). Once the table is full,
//! further terms are looked up in the dictionaries every time: slower, never wrong.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::format::shard::{CorpusTotals, doc_freq_key};
use crate::remote::ColdTermBounds;
use crate::remote::warmed;

use tantivy::query::Bm25StatisticsProvider;
use tantivy::schema::Field;
use tantivy::{Searcher, Term};

/// Terms whose document frequencies are kept per loaded tier set (about 100 bytes each).
const CACHED_TERMS: usize = 100_000;

pub struct CorpusStatistics {
    tiers: Vec<Searcher>,
    total_num_docs: u64,
    /// Per field id; `None` for a field without an inverted index.
    total_num_tokens: Vec<Option<u64>>,
    doc_freqs: TermTable<u64>,
    /// A shard of a sharded version: the whole corpus's document frequencies, which the
    /// loaded tiers (one shard's) do not have.
    corpus_table: Option<Arc<DocFreqTable>>,
    /// A remote cold tier: its dictionary is not read for statistics. The hot terms' corpus
    /// document frequencies come from this table (`layout::HOT_DOC_FREQS`) and the others'
    /// from the cold term bounds.
    remote: Option<RemoteFrequencies>,
}

/// A sharded version's document frequencies over every shard (`format::shard`), in memory.
pub struct DocFreqTable {
    map: tantivy_fst::Map<Vec<u8>>,
}

impl DocFreqTable {
    pub fn from_bytes(what: &str, bytes: Vec<u8>) -> Result<DocFreqTable, String> {
        tantivy_fst::Map::from_bytes(bytes)
            .map(|map| DocFreqTable { map })
            .map_err(|err| format!("{what}: not a document-frequency table: {err}"))
    }

    pub fn doc_freq(&self, term: &Term) -> u64 {
        self.get(term).unwrap_or(0)
    }

    /// `term`'s count, if the table has it.
    pub fn get(&self, term: &Term) -> Option<u64> {
        self.map.get(doc_freq_key(
            term.field().field_id(),
            term.serialized_value_bytes(),
        ))
    }
}

/// Values computed per term and kept, up to `capacity` terms: a read lock and one hash lookup
/// once known. Past the capacity, further terms are computed every time without taking the
/// write lock: slower, never wrong.
pub struct TermTable<V> {
    values: RwLock<HashMap<Term, V>>,
    capacity: usize,
}

impl<V: Copy> TermTable<V> {
    pub fn new(capacity: usize) -> TermTable<V> {
        TermTable {
            values: RwLock::default(),
            capacity,
        }
    }

    /// `term`'s value: kept, or computed (outside any lock) and kept if there is room.
    pub fn get_or_compute<E>(
        &self,
        term: &Term,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        let full = {
            let values = self.values.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(value) = values.get(term) {
                return Ok(*value);
            }
            values.len() >= self.capacity
        };
        let value = compute()?;
        if !full {
            let mut values = self.values.write().unwrap_or_else(PoisonError::into_inner);
            if values.len() < self.capacity {
                values.insert(term.clone(), value);
            }
        }
        Ok(value)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.values
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl CorpusStatistics {
    /// Statistics over `tiers`, every tier of the version loaded so far.
    pub fn new(tiers: Vec<Searcher>) -> tantivy::Result<CorpusStatistics> {
        CorpusStatistics::keeping(tiers, CACHED_TERMS)
    }

    /// Statistics of the whole corpus of a sharded version, from its manifest's totals and
    /// its document-frequency table, whichever of a shard's tiers are loaded.
    pub fn of_corpus(
        schema: &tantivy::schema::Schema,
        totals: &CorpusTotals,
        table: Arc<DocFreqTable>,
    ) -> CorpusStatistics {
        let total_num_tokens = schema
            .fields()
            .map(|(_, entry)| {
                entry
                    .is_indexed()
                    .then(|| totals.tokens.get(entry.name()).copied().unwrap_or(0))
            })
            .collect();
        CorpusStatistics {
            tiers: Vec::new(),
            total_num_docs: totals.docs,
            total_num_tokens,
            doc_freqs: TermTable::new(CACHED_TERMS),
            corpus_table: Some(table),
            remote: None,
        }
    }

    /// Statistics of an unsharded version whose cold index is remote: totals from both tiers
    /// (what opening them read); document frequencies from `hot_terms` for the hot terms that
    /// cold documents have too, from the hot tier itself for the hot terms they lack (the
    /// table leaves those out: `docs/format.md`), and from `bounds` for the others. A term
    /// absent from all three is in no document.
    pub fn remote(
        hot: Searcher,
        cold: Searcher,
        hot_terms: Arc<DocFreqTable>,
        bounds: Arc<ColdTermBounds>,
    ) -> tantivy::Result<CorpusStatistics> {
        let mut statistics = CorpusStatistics::keeping(vec![hot, cold], CACHED_TERMS)?;
        // Only the hot tier's dictionary is read for statistics.
        statistics.tiers.truncate(1);
        statistics.remote = Some(RemoteFrequencies { hot_terms, bounds });
        Ok(statistics)
    }

    /// Statistics that keep the document frequencies of at most `terms` terms.
    fn keeping(tiers: Vec<Searcher>, terms: usize) -> tantivy::Result<CorpusStatistics> {
        let total_num_docs = tiers
            .iter()
            .map(|searcher| searcher.total_num_docs())
            .sum::<tantivy::Result<u64>>()?;
        let schema = tiers.first().map(Searcher::schema);
        let total_num_tokens = schema
            .into_iter()
            .flat_map(|schema| schema.fields())
            .map(|(field, entry)| {
                entry
                    .is_indexed()
                    .then(|| {
                        tiers
                            .iter()
                            .map(|searcher| searcher.total_num_tokens(field))
                            .sum::<tantivy::Result<u64>>()
                    })
                    .transpose()
            })
            .collect::<tantivy::Result<Vec<Option<u64>>>>()?;
        Ok(CorpusStatistics {
            tiers,
            total_num_docs,
            total_num_tokens,
            doc_freqs: TermTable::new(terms),
            corpus_table: None,
            remote: None,
        })
    }
}

/// Where a version with a remote cold index finds its terms' document frequencies, beside
/// the hot tier's own.
struct RemoteFrequencies {
    hot_terms: Arc<DocFreqTable>,
    bounds: Arc<ColdTermBounds>,
}

/// Why a remote version's document frequency is not known.
enum RemoteFrequencyError {
    /// The term is only in the cold tier, and its cold bound is not read.
    BoundNotRead(std::io::Error),
    Tantivy(tantivy::TantivyError),
}

impl RemoteFrequencies {
    /// `term`'s document frequency over both tiers; `hot` is the hot tier's searcher.
    fn doc_freq(&self, term: &Term, hot: &[Searcher]) -> Result<u64, RemoteFrequencyError> {
        if let Some(doc_freq) = self.hot_terms.get(term) {
            return Ok(doc_freq);
        }
        // A hot term the table leaves out is in no cold document.
        let in_hot = sum_doc_freqs(hot, term).map_err(RemoteFrequencyError::Tantivy)?;
        if in_hot > 0 {
            return Ok(in_hot);
        }
        // Only the cold tier has it: the cold bounds say how often.
        self.bounds
            .get(term)
            .map(|found| found.map_or(0, |cold| cold.doc_freq))
            .map_err(RemoteFrequencyError::BoundNotRead)
    }
}

fn sum_doc_freqs(tiers: &[Searcher], term: &Term) -> tantivy::Result<u64> {
    tiers.iter().map(|searcher| searcher.doc_freq(term)).sum()
}

impl CorpusStatistics {
    /// `term`'s document frequency summed over the loaded tiers, kept.
    fn tiers_doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        self.doc_freqs
            .get_or_compute(term, || sum_doc_freqs(&self.tiers, term))
    }
}

impl Bm25StatisticsProvider for CorpusStatistics {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        match self.total_num_tokens.get(field.field_id() as usize) {
            Some(Some(tokens)) => Ok(*tokens),
            _ => self
                .tiers
                .iter()
                .map(|searcher| searcher.total_num_tokens(field))
                .sum(),
        }
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.total_num_docs)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        if let Some(remote) = &self.remote {
            // Kept once known, as the other cases are: a search asks for each of its terms'
            // frequencies several times (sizing, then weighing in each tier).
            return match self
                .doc_freqs
                .get_or_compute(term, || remote.doc_freq(term, &self.tiers))
            {
                Ok(doc_freq) => Ok(doc_freq),
                // Outside a search's warmed scope (ranking the hot tier), a cold bound not read
                // yet does not matter, since no hot document has the term; within one, it is a
                // read the plan missed.
                Err(RemoteFrequencyError::BoundNotRead(_)) if !warmed::in_scope() => Ok(0),
                Err(RemoteFrequencyError::BoundNotRead(err)) => Err(err.into()),
                Err(RemoteFrequencyError::Tantivy(err)) => Err(err),
            };
        }
        if let Some(table) = &self.corpus_table {
            return self
                .doc_freqs
                .get_or_compute(term, || Ok(table.doc_freq(term)));
        }
        self.tiers_doc_freq(term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::schema::{STRING, Schema, TEXT};
    use tantivy::{Index, doc};

    fn tier(words: &[&str]) -> (Searcher, Field, Field) {
        let mut builder = Schema::builder();
        let text = builder.add_text_field("text", TEXT);
        let id = builder.add_text_field("id", STRING);
        let index = Index::create_in_ram(builder.build());
        let mut writer: tantivy::IndexWriter = index.writer(15_000_000).unwrap();
        for (n, line) in words.iter().enumerate() {
            writer
                .add_document(doc!(text => *line, id => n.to_string()))
                .unwrap();
        }
        writer.commit().unwrap();
        (index.reader().unwrap().searcher(), text, id)
    }

    #[test]
    fn statistics_are_the_sums_over_tiers_and_stay_so_when_cached() {
        let (hot, text, id) = tier(&["a b", "a"]);
        let (cold, _, _) = tier(&["a c c", "b", "d"]);
        // Kept for every term, and for two only: past the table's size, still right.
        for kept in [CACHED_TERMS, 2] {
            let statistics =
                CorpusStatistics::keeping(vec![hot.clone(), cold.clone()], kept).unwrap();
            assert_eq!(statistics.total_num_docs().unwrap(), 5);
            assert_eq!(statistics.total_num_tokens(text).unwrap(), 3 + 5);
            assert_eq!(statistics.total_num_tokens(id).unwrap(), 5);
            for _ in 0..2 {
                for (word, expected) in [("a", 3), ("b", 2), ("c", 1), ("z", 0)] {
                    let term = Term::from_field_text(text, word);
                    assert_eq!(statistics.doc_freq(&term).unwrap(), expected, "{word}");
                    assert_eq!(
                        expected,
                        hot.doc_freq(&term).unwrap() + cold.doc_freq(&term).unwrap()
                    );
                }
            }
            assert!(statistics.doc_freqs.len() <= kept);
        }
    }
}
