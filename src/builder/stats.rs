//! The corpus-wide statistics of a sharded version: document and token totals (into the
//! manifest) and every term's document frequency over all shards and tiers (the `doc_freqs`
//! table, an FST from term key to count; `format::shard`). With them a node scores its shards
//! exactly as one index over the whole corpus, without asking another node.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use tantivy::query::Bm25StatisticsProvider;
use tantivy::schema::Field;
use tantivy::termdict::{TermMerger, TermStreamer};
use tantivy::{Index, Searcher, Term};

use super::BuildError;
use crate::format::shard::{CorpusTotals, doc_freq_key};

/// Sums the statistics of the tantivy indexes in `dirs` (every tier of every shard; they share
/// one schema) and writes the document-frequency table to `table`: every term's, or — with
/// `only_first` — those of the terms present both in the first `only_first` indexes and in
/// another (an unsharded version's hot terms that cold documents have too,
/// `layout::HOT_DOC_FREQS`: a hot term left out has the hot tier's own frequency, which the
/// node reads from its hot index, so the table a node keeps on disk holds only what it cannot
/// know locally).
pub fn write_doc_freqs(
    dirs: &[PathBuf],
    table: &Path,
    only_first: Option<usize>,
) -> Result<CorpusTotals, BuildError> {
    let searchers = dirs
        .iter()
        .map(|dir| Ok(Index::open_in_dir(dir)?.reader()?.searcher()))
        .collect::<Result<Vec<_>, BuildError>>()?;
    let schema = searchers
        .first()
        .map(|searcher| searcher.schema().clone())
        .ok_or_else(|| BuildError::internal("no index to take statistics from"))?;
    let parent = table.parent().expect("the table lives in a directory");
    std::fs::create_dir_all(parent)
        .map_err(|err| BuildError::io(format!("creating {}", parent.display()), err))?;
    let file = std::fs::File::create(table)
        .map_err(|err| BuildError::io(format!("creating {}", table.display()), err))?;
    let mut builder = tantivy_fst::MapBuilder::new(BufWriter::new(file))
        .map_err(|err| BuildError::internal(format!("doc_freqs table: {err}")))?;
    let mut totals = CorpusTotals::default();
    for searcher in &searchers {
        totals.docs += searcher.num_docs();
    }
    // Field ids ascend, and each field's terms come sorted from the merger: keys are inserted
    // in the order the FST needs.
    for (field, entry) in schema.fields() {
        if !entry.is_indexed() {
            continue;
        }
        let mut tokens = 0;
        let mut inverted = Vec::new();
        // Streams of the indexes whose terms are kept: the first ones.
        let mut kept_streams = 0;
        for (at, searcher) in searchers.iter().enumerate() {
            tokens += searcher.total_num_tokens(field)?;
            for segment in searcher.segment_readers() {
                inverted.push(segment.inverted_index(field)?);
            }
            if only_first.is_none_or(|first| at < first) {
                kept_streams = inverted.len();
            }
        }
        totals.tokens.insert(entry.name().to_string(), tokens);
        let streams = inverted
            .iter()
            .map(|index| index.terms().stream())
            .collect::<std::io::Result<Vec<TermStreamer<'_>>>>()
            .map_err(|err| BuildError::io("reading a term dictionary", err))?;
        let mut merger = TermMerger::new(streams);
        while merger.advance() {
            let (mut in_kept, mut elsewhere) = (false, false);
            let doc_freq: u64 = merger
                .current_segment_ords_and_term_infos()
                .map(|(stream, info)| {
                    if stream < kept_streams {
                        in_kept = true;
                    } else {
                        elsewhere = true;
                    }
                    u64::from(info.doc_freq)
                })
                .sum();
            let kept = match only_first {
                None => true,
                Some(_) => in_kept && elsewhere,
            };
            if !kept {
                continue;
            }
            builder
                .insert(doc_freq_key(field.field_id(), merger.key()), doc_freq)
                .map_err(|err| BuildError::internal(format!("doc_freqs table: {err}")))?;
        }
    }
    builder
        .finish()
        .map_err(|err| BuildError::internal(format!("doc_freqs table: {err}")))?;
    Ok(totals)
}

/// The corpus statistics a node scores a version with, at build time: summed over the tiers of
/// an unsharded version, or a sharded version's totals and document-frequency table. Gives the
/// same numbers as the node's `CorpusStatistics`, so the term bounds are the node's own scores.
pub enum BuildStatistics {
    Tiers(Vec<Searcher>),
    Corpus {
        totals: CorpusTotals,
        field_names: Vec<String>,
        table: tantivy_fst::Map<Vec<u8>>,
    },
}

impl BuildStatistics {
    /// The hot tier's searcher of an unsharded version (tiers: hot first), none for a corpus.
    pub fn tier_searchers(&self) -> &[Searcher] {
        match self {
            BuildStatistics::Tiers(tiers) => &tiers[..1],
            BuildStatistics::Corpus { .. } => &[],
        }
    }

    pub fn of_tiers(dirs: &[PathBuf]) -> Result<BuildStatistics, BuildError> {
        Ok(BuildStatistics::Tiers(
            dirs.iter()
                .map(|dir| Ok(Index::open_in_dir(dir)?.reader()?.searcher()))
                .collect::<Result<Vec<_>, BuildError>>()?,
        ))
    }

    pub fn of_corpus(
        schema: &tantivy::schema::Schema,
        totals: CorpusTotals,
        table: &Path,
    ) -> Result<BuildStatistics, BuildError> {
        let bytes = std::fs::read(table)
            .map_err(|err| BuildError::io(format!("reading {}", table.display()), err))?;
        let table = tantivy_fst::Map::from_bytes(bytes)
            .map_err(|err| BuildError::internal(format!("doc_freqs table: {err}")))?;
        Ok(BuildStatistics::Corpus {
            totals,
            field_names: schema
                .fields()
                .map(|(_, entry)| entry.name().to_string())
                .collect(),
            table,
        })
    }
}

impl Bm25StatisticsProvider for BuildStatistics {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        match self {
            BuildStatistics::Tiers(tiers) => tiers
                .iter()
                .map(|searcher| searcher.total_num_tokens(field))
                .sum(),
            BuildStatistics::Corpus {
                totals,
                field_names,
                ..
            } => Ok(field_names
                .get(field.field_id() as usize)
                .and_then(|name| totals.tokens.get(name))
                .copied()
                .unwrap_or(0)),
        }
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        match self {
            BuildStatistics::Tiers(tiers) => {
                tiers.iter().map(|searcher| searcher.total_num_docs()).sum()
            }
            BuildStatistics::Corpus { totals, .. } => Ok(totals.docs),
        }
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        match self {
            BuildStatistics::Tiers(tiers) => {
                tiers.iter().map(|searcher| searcher.doc_freq(term)).sum()
            }
            BuildStatistics::Corpus { table, .. } => Ok(table
                .get(doc_freq_key(
                    term.field().field_id(),
                    term.serialized_value_bytes(),
                ))
                .unwrap_or(0)),
        }
    }
}
