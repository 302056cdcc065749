//! The cold terms' bounds (`cold/term_bounds.sst`, written by the builder): each cold term's
//! document frequency and its highest BM25 contribution in the cold tier under the version's
//! corpus statistics. They decide the cold skip without reading any cold postings, and give the
//! document frequency of terms the hot tier lacks without reading the cold dictionary.

use std::collections::HashMap;
use std::io;
use std::sync::{PoisonError, RwLock};

use futures::future::join_all;
use tantivy::Term;
use tantivy::directory::FileSlice;
use tantivy_sstable::{Dictionary, VecU32ValueSSTable};

use crate::format::shard::doc_freq_key;

/// Terms whose bounds are kept in memory once read (about 100 bytes each).
const KEPT_TERMS: usize = 200_000;

/// One cold term's statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColdTerm {
    pub doc_freq: u64,
    /// The highest score a `TermQuery` for it alone gives a cold document.
    pub max_score: f32,
}

pub struct ColdTermBounds {
    table: Dictionary<VecU32ValueSSTable>,
    /// By term key; `None` for a term no cold document has.
    kept: RwLock<HashMap<Vec<u8>, Option<ColdTerm>>>,
}

fn key(term: &Term) -> Vec<u8> {
    doc_freq_key(term.field().field_id(), term.serialized_value_bytes())
}

fn decode(what: &[u8], value: Option<Vec<u32>>) -> io::Result<Option<ColdTerm>> {
    match value.as_deref() {
        None => Ok(None),
        Some([doc_freq, bits]) => Ok(Some(ColdTerm {
            doc_freq: u64::from(*doc_freq),
            max_score: f32::from_bits(*bits),
        })),
        Some(other) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "term bounds: {} values for key {what:?}, expected 2",
                other.len()
            ),
        )),
    }
}

impl ColdTermBounds {
    /// Opens the table in `file` (its footer and block index are read here, synchronously:
    /// local bytes, or the hotcache's).
    pub fn open(file: FileSlice) -> io::Result<ColdTermBounds> {
        Ok(ColdTermBounds {
            table: Dictionary::open(file)?,
            kept: RwLock::default(),
        })
    }

    fn kept(&self, key: &[u8]) -> Option<Option<ColdTerm>> {
        self.kept
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
    }

    fn keep(&self, key: Vec<u8>, value: Option<ColdTerm>) {
        let mut kept = self.kept.write().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < KEPT_TERMS {
            kept.insert(key, value);
        }
    }

    /// `term`'s bounds: kept, else read synchronously (from local bytes, or from what the
    /// current search warmed).
    pub fn get(&self, term: &Term) -> io::Result<Option<ColdTerm>> {
        let key = key(term);
        if let Some(value) = self.kept(&key) {
            return Ok(value);
        }
        let value = decode(&key, self.table.get(&key)?)?;
        self.keep(key, value);
        Ok(value)
    }

    /// Whether `term`'s bounds are known without reading.
    pub fn is_kept(&self, term: &Term) -> bool {
        self.kept(&key(term)).is_some()
    }

    /// Reads the bounds of `terms` not kept yet, asynchronously and all at once (one round
    /// within a `Round`), and keeps them.
    pub async fn warm(&self, terms: &[Term]) -> io::Result<()> {
        let reads = terms
            .iter()
            .map(key)
            .filter(|key| self.kept(key).is_none())
            .map(|key| async move {
                let value = decode(&key, self.table.get_async(&key).await?)?;
                self.keep(key, value);
                Ok::<(), io::Error>(())
            });
        join_all(reads).await.into_iter().collect()
    }
}
