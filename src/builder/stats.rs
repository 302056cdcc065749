//! The corpus-wide statistics of a sharded version: document and token totals (into the
//! manifest) and every term's document frequency over all shards and tiers (the `doc_freqs`
//! table, an FST from term key to count; `format::shard`). With them a node scores its shards
//! exactly as one index over the whole corpus, without asking another node.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use tantivy::Index;
use tantivy::query::Bm25StatisticsProvider;
use tantivy::termdict::{TermMerger, TermStreamer};

use super::BuildError;
use crate::format::shard::{CorpusTotals, doc_freq_key};

/// Sums the statistics of the tantivy indexes in `dirs` (every tier of every shard; they share
/// one schema) and writes the document-frequency table to `table`.
pub fn write_doc_freqs(dirs: &[PathBuf], table: &Path) -> Result<CorpusTotals, BuildError> {
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
        for searcher in &searchers {
            tokens += searcher.total_num_tokens(field)?;
            for segment in searcher.segment_readers() {
                inverted.push(segment.inverted_index(field)?);
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
            let doc_freq: u64 = merger
                .current_segment_ords_and_term_infos()
                .map(|(_, info)| u64::from(info.doc_freq))
                .sum();
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
