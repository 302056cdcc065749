//! Object keys, relative to a store's root:
//!
//! ```text
//! <index>/CURRENT                              the published version id (written last)
//! <index>/<version>/manifest.json
//! <index>/<version>/hot/<tantivy files>
//! <index>/<version>/hot-lookup/hotcache          what opening the hot index reads
//! <index>/<version>/cold/index/<tantivy files>
//! <index>/<version>/cold/part-NNNNN.parquet
//! <index>/<version>/cold/hotcache                 what opening the cold index reads
//! <index>/<version>/cold/term_bounds.sst          per cold term: document frequency, BM25 maximum
//! <index>/<version>/stats/hot_doc_freqs.fst       hot terms' document frequencies (unsharded)
//! <index>/<version>/checksums/<file path>.blocks   block table of each file larger than a block
//! ```
//!
//! Paths inside a manifest are relative to `<index>/<version>/`.

pub const CURRENT: &str = "CURRENT";
pub const MANIFEST: &str = "manifest.json";
pub const HOT_DIR: &str = "hot";
pub const COLD_INDEX_DIR: &str = "cold/index";
pub const COLD_DIR: &str = "cold";
pub const CHECKSUMS_DIR: &str = "checksums";
/// The cold index's hotcache (`format::hotcache`), relative to a tier set's root.
pub const COLD_HOTCACHE: &str = "cold/hotcache";
/// The hot index's hotcache (`format::hotcache`), relative to a tier set's root: a node
/// searches the hot index in the store while it downloads it.
pub const HOT_HOTCACHE: &str = "hot-lookup/hotcache";
/// Each cold term's document frequency and highest BM25 contribution (an SSTable).
pub const COLD_TERM_BOUNDS: &str = "cold/term_bounds.sst";
/// An unsharded version's hot terms with their document frequencies over both tiers (an FST,
/// as `shard::DOC_FREQS_PATH`).
pub const HOT_DOC_FREQS: &str = "stats/hot_doc_freqs.fst";

pub fn current_key(index: &str) -> String {
    format!("{index}/{CURRENT}")
}

pub fn version_prefix(index: &str, version: &str) -> String {
    format!("{index}/{version}/")
}

pub fn version_key(index: &str, version: &str, relative: &str) -> String {
    format!("{index}/{version}/{relative}")
}

pub fn cold_parquet_path(file_index: usize) -> String {
    format!("{COLD_DIR}/part-{file_index:05}.parquet")
}

pub fn block_table_path(file_path: &str) -> String {
    format!("{CHECKSUMS_DIR}/{file_path}.blocks")
}

/// Index names become the first component of object keys: keep them to a safe alphabet.
pub fn check_index_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid index name `{name}`: use 1-128 characters from [A-Za-z0-9._-], not starting with `.`"
        ))
    }
}
