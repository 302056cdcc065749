//! Term dictionaries laid out for point lookups.
//!
//! tantivy with the `quickwit` feature (format 4: SSTable term dictionaries, so that a remote
//! index reads its dictionaries block by block) writes blocks of about 4,000 bytes and
//! compresses each with zstd. Every lookup of a term then decompresses a block — creating a
//! zstd context, about 100 KB of state — and decodes every term info in it: measured on PyPI,
//! about 10 µs a lookup, most of a short search's time (a three-word query looks up each word
//! in every segment of both tiers). tantivy gives no setting for either, so once the tiers are
//! written the builder rewrites each segment's `.term` file with the same terms and term infos
//! in uncompressed blocks small enough to stay so (`BLOCK_LEN`). The file is what tantivy
//! reads (an SSTable of tantivy's `TermInfo` encoding, its dictionary type, per field in a
//! composite file with tantivy's footer): readers need no change, and the term ordinals are
//! the same.

use std::io::{self, Write};
use std::path::Path;

use tantivy::Index;
use tantivy::directory::{CompositeFile, CompositeWrite, Directory};
use tantivy::index::SegmentComponent;
use tantivy::postings::TermInfo;
use tantivy::termdict::TermDictionary;
use tantivy_common::VInt;

use super::BuildError;

/// Key bytes per block before it is closed. With the values (three small integers a term), a
/// block of text terms stays under the 2,048 bytes above which tantivy's SSTable writer
/// compresses it; terms whose keys differ by a byte or two (dense numeric ids) carry more value
/// bytes than key bytes, and their blocks may still pass it (not measured).
pub const BLOCK_LEN: usize = 768;

/// tantivy's tag of an SSTable term dictionary, after the table.
const SSTABLE_DICTIONARY: u32 = 2;

/// Rewrites the term dictionaries of every segment of the index in `dir` (see the module).
pub fn rewrite_for_point_lookups(dir: &Path) -> Result<(), BuildError> {
    let index = Index::open_in_dir(dir)?;
    let schema = index.schema();
    for segment in index.searchable_segments()? {
        let path = segment.relative_path(SegmentComponent::Terms);
        let dictionaries = {
            let file = segment.open_read(SegmentComponent::Terms).map_err(|err| {
                BuildError::internal(format!("reading {}: {err}", path.display()))
            })?;
            let composite = CompositeFile::open(&file)
                .map_err(|err| BuildError::io(format!("opening {}", path.display()), err))?;
            let mut dictionaries = Vec::new();
            for (field, _) in schema.fields() {
                let Some(slice) = composite.open_read(field) else {
                    continue;
                };
                let dictionary = TermDictionary::open(slice)
                    .map_err(|err| BuildError::io(format!("reading {}", path.display()), err))?;
                let table = rewrite(&dictionary)
                    .map_err(|err| BuildError::io(format!("rewriting {}", path.display()), err))?;
                dictionaries.push((field, table));
            }
            dictionaries
        };
        let directory = index.directory();
        directory
            .delete(&path)
            .map_err(|err| BuildError::internal(format!("removing {}: {err}", path.display())))?;
        let written = directory
            .open_write(&path)
            .map_err(|err| BuildError::internal(format!("writing {}: {err}", path.display())))?;
        let mut composite = CompositeWrite::wrap(written);
        for (field, table) in dictionaries {
            composite
                .for_field(field)
                .write_all(&table)
                .map_err(|err| BuildError::io(format!("writing {}", path.display()), err))?;
        }
        composite
            .close()
            .map_err(|err| BuildError::io(format!("writing {}", path.display()), err))?;
    }
    Ok(())
}

/// `dictionary`'s terms and infos as a term dictionary of small uncompressed blocks.
fn rewrite(dictionary: &TermDictionary) -> io::Result<Vec<u8>> {
    let mut table = Vec::new();
    let mut writer = tantivy_sstable::Writer::<_, TermInfoWriter>::new(&mut table);
    writer.set_block_len(BLOCK_LEN);
    let mut terms = dictionary.stream()?;
    while terms.advance() {
        writer.insert(terms.key(), terms.value())?;
    }
    writer.finish()?;
    table.extend_from_slice(&SSTABLE_DICTIONARY.to_le_bytes());
    Ok(table)
}

/// tantivy's encoding of a block's `TermInfo`s: their count, the first postings and positions
/// offsets, then per term its document frequency and the lengths of its postings and
/// positions, each a tantivy `VInt`.
#[derive(Default)]
struct TermInfoWriter {
    infos: Vec<TermInfo>,
}

impl tantivy_sstable::value::ValueWriter for TermInfoWriter {
    type Value = TermInfo;

    fn write(&mut self, info: &TermInfo) {
        self.infos.push(info.clone());
    }

    fn serialize_block(&self, output: &mut Vec<u8>) {
        VInt(self.infos.len() as u64).serialize_into_vec(output);
        let Some(first) = self.infos.first() else {
            return;
        };
        VInt(first.postings_range.start as u64).serialize_into_vec(output);
        VInt(first.positions_range.start as u64).serialize_into_vec(output);
        for info in &self.infos {
            VInt(u64::from(info.doc_freq)).serialize_into_vec(output);
            VInt(info.postings_range.len() as u64).serialize_into_vec(output);
            VInt(info.positions_range.len() as u64).serialize_into_vec(output);
        }
    }

    fn clear(&mut self) {
        self.infos.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::schema::{Schema, TEXT};
    use tantivy::{Term, doc};

    /// Every term of a rewritten index has the same info and ordinal as before, through
    /// tantivy's own reader, and searches give the same hits.
    #[test]
    fn a_rewritten_index_reads_the_same_terms_in_small_uncompressed_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = Schema::builder();
        let body = builder.add_text_field("body", TEXT);
        let title = builder.add_text_field("title", TEXT);
        let index = Index::create_in_dir(dir.path(), builder.build()).unwrap();
        let mut writer: tantivy::IndexWriter = index.writer(15_000_000).unwrap();
        for n in 0..3000u64 {
            writer
                .add_document(doc!(
                    body => format!("word{} common w{} shared{}", n, n % 97, n % 7),
                    title => format!("title{} t{}", n % 301, n)
                ))
                .unwrap();
        }
        writer.commit().unwrap();
        writer.wait_merging_threads().unwrap();
        let before = term_infos(dir.path());
        let file_before = term_file_bytes(dir.path());
        rewrite_for_point_lookups(dir.path()).unwrap();
        let after = term_infos(dir.path());
        assert_eq!(before, after);
        assert!(before.len() > 6000, "{} terms", before.len());
        // The blocks are stored uncompressed now: the file grew.
        assert!(term_file_bytes(dir.path()) > file_before);
        let searcher = Index::open_in_dir(dir.path())
            .unwrap()
            .reader()
            .unwrap()
            .searcher();
        assert_eq!(
            searcher
                .doc_freq(&Term::from_field_text(body, "common"))
                .unwrap(),
            3000
        );
        assert_eq!(
            searcher
                .doc_freq(&Term::from_field_text(title, "title7"))
                .unwrap(),
            10
        );
    }

    fn term_infos(dir: &Path) -> Vec<(u64, Vec<u8>, u32, std::ops::Range<usize>)> {
        let searcher = Index::open_in_dir(dir)
            .unwrap()
            .reader()
            .unwrap()
            .searcher();
        let mut all = Vec::new();
        for segment in searcher.segment_readers() {
            for (field, _) in searcher.schema().fields() {
                let inverted = segment.inverted_index(field).unwrap();
                let mut stream = inverted.terms().stream().unwrap();
                let mut ordinal = 0u64;
                while stream.advance() {
                    let key = stream.key().to_vec();
                    assert_eq!(inverted.terms().term_ord(&key).unwrap(), Some(ordinal));
                    let info = inverted.terms().get(&key).unwrap().unwrap();
                    all.push((ordinal, key, info.doc_freq, info.postings_range.clone()));
                    ordinal += 1;
                }
            }
        }
        all
    }

    fn term_file_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "term"))
            .map(|entry| entry.metadata().unwrap().len())
            .sum()
    }
}
