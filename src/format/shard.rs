//! Sharded versions: which shard a document goes to, what a version records so that any shard
//! scores with the whole corpus's BM25 statistics, and the document-frequency table.
//!
//! A document goes to shard `xxh64(seed 0, id bytes) % shards`, where the id bytes are the
//! id's UTF-8 text for keyword ids and its decimal text for integer ids. The hash is fixed by
//! this format (never `std`'s `DefaultHasher`, which may change between Rust releases): a
//! document's shard must not depend on which build or which machine placed it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use twox_hash::XxHash64;

/// The hash named in manifests.
pub const SHARD_HASH: &str = "xxh64(seed=0, id text) % shards";

/// Directory of shard `shard`'s files, relative to the version.
pub fn shard_dir(shard: u32) -> String {
    format!("shards/{shard}")
}

/// The document-frequency table of a sharded version, relative to the version.
pub const DOC_FREQS_PATH: &str = "stats/doc_freqs.fst";

/// The shard of the document whose id reads `id_text`.
pub fn shard_of(id_text: &[u8], shards: u32) -> u32 {
    debug_assert!(shards > 0);
    (XxHash64::oneshot(0, id_text) % u64::from(shards.max(1))) as u32
}

/// What every shard needs to score as one index over the whole corpus would: the document
/// count and each indexed field's token total. Per-term document frequencies are in the
/// version's `doc_freqs` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusTotals {
    pub docs: u64,
    /// Indexed field name → tokens over every document.
    pub tokens: BTreeMap<String, u64>,
}

/// In the manifest of a sharded version (`<index>/<version>/manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSet {
    pub count: u32,
    /// How documents were placed ([`SHARD_HASH`]).
    pub hash: String,
    pub corpus: CorpusTotals,
    /// The document-frequency table, relative to the version ([`DOC_FREQS_PATH`]).
    pub doc_freqs: String,
}

/// In the manifest of one shard (`<index>/<version>/shards/<shard>/manifest.json`), whose file
/// paths stay relative to the version and lie under `shards/<shard>/` (and `stats/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardInfo {
    pub shard: u32,
    pub count: u32,
    pub corpus: CorpusTotals,
    pub doc_freqs: String,
}

/// Key of a term in the document-frequency table: the tantivy field id (big-endian u32) then
/// the term's serialized value bytes, so that keys sort by field, then as tantivy sorts terms.
pub fn doc_freq_key(field_id: u32, value_bytes: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + value_bytes.len());
    key.extend_from_slice(&field_id.to_be_bytes());
    key.extend_from_slice(value_bytes);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_hash_is_fixed() {
        // Values of xxh64 with seed 0 (the reference implementation's test vectors): a change
        // of hash would move every document of every sharded version.
        assert_eq!(XxHash64::oneshot(0, b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(XxHash64::oneshot(0, b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(shard_of(b"", 4), (0xEF46_DB37_51D8_E999u64 % 4) as u32);
        assert_eq!(shard_of(b"anything", 1), 0);
    }

    #[test]
    fn shards_are_balanced_over_many_ids() {
        let mut counts = [0u32; 4];
        for id in 0..40_000u32 {
            counts[shard_of(id.to_string().as_bytes(), 4) as usize] += 1;
        }
        for count in counts {
            assert!((9_500..10_500).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn table_keys_sort_by_field_then_value() {
        assert!(doc_freq_key(1, b"zz") < doc_freq_key(2, b"a"));
        assert!(doc_freq_key(2, b"a") < doc_freq_key(2, b"ab"));
    }
}
