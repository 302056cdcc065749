//! `manifest.json`: everything a reader needs to use one immutable version of an index.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::shard::{ShardInfo, ShardSet, shard_dir};
use super::{FormatError, FormatErrorKind, layout};
use crate::ranking::ValueRange;
use crate::rules::RulesSpec;
use crate::schema::SchemaSpec;

/// Bumped on any change a reader of the previous version would misread.
/// 2: both tantivy indexes carry `_key`, the id's sort key.
/// 3: sharded versions (`shards`, `shard`).
/// 4: term dictionaries are SSTable (read block by block from object storage); the cold tier
/// carries its hotcache, its term bounds and its value ranges; an unsharded version carries its
/// hot terms' document frequencies.
/// 5: term dictionaries in small uncompressed SSTable blocks (cheap point lookups; read as 4
/// reads them); the schema may set `sort_by`, which adds the `_order` fast field to both tiers;
/// the hot terms' table lists only hot terms cold documents have too. What every build writes;
/// a 5 reader serves 4 unchanged.
pub const FORMAT_VERSION: u32 = 5;

/// The oldest format this reader serves. Older versions have FST term dictionaries, which this
/// tantivy build does not open, and lack what a node needs to search the cold index where it
/// lives; they are refused with a message saying to rebuild rather than served by a second code
/// path.
pub const OLDEST_READABLE_FORMAT: u32 = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub index: String,
    pub version: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub builder_version: String,
    pub schema: SchemaSpec,
    /// Keyword fields for which some input document gave a JSON array (or a list column):
    /// readers return their values as lists, and those of other keyword fields as strings.
    pub multi_valued_fields: Vec<String>,
    pub rules: RulesSpec,
    /// The rules file exactly as given to the builder.
    pub rules_text: String,
    /// Size of checksummed blocks; readers align cache blocks to it.
    pub block_size: u64,
    pub hot: HotTier,
    pub cold: ColdTier,
    pub input: InputSummary,
    /// Every file of the version except the manifest itself and the block tables.
    pub files: Vec<FileEntry>,
    /// A sharded version's top manifest: its shards and corpus-wide statistics. `hot`, `cold`
    /// and `files` then cover every shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardSet>,
    /// One shard's manifest: `hot`, `cold` and `files` cover that shard (and the statistics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotTier {
    pub docs: u64,
    /// Total size of the files under `hot/`.
    pub index_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdTier {
    pub docs: u64,
    /// Total size of the files under `cold/index/`.
    pub index_bytes: u64,
    /// Total size of the cold parquet files.
    pub parquet_bytes: u64,
    pub parquet_files: Vec<ParquetFile>,
    pub parquet_layout: ParquetLayout,
    /// Per numeric or date fast field, the range of its values over the cold tier (the fast
    /// columns' stored bounds): what bounds a cold document's rank before any column is read.
    #[serde(default)]
    pub value_ranges: BTreeMap<String, ValueRange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParquetFile {
    pub path: String,
    pub rows: u64,
    pub row_groups: u64,
}

/// The writer settings the cold parquet files were made with (see docs/format.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParquetLayout {
    pub compression: String,
    pub max_row_group_rows: u64,
    pub max_row_group_bytes: u64,
    pub data_page_size_limit: u64,
    pub data_page_row_limit: u64,
    pub dictionary: bool,
    pub page_index: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InputSummary {
    pub files: Vec<String>,
    pub docs: u64,
    pub invalid_skipped: u64,
    /// Input field names not in the schema, with the number of documents that had them.
    pub ignored_fields: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the version directory.
    pub path: String,
    pub size: u64,
    pub crc32c: u32,
    /// The block checksum table; absent when the file fits in one block, whose checksum is
    /// then `crc32c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_table: Option<TableRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRef {
    pub path: String,
    pub size: u64,
    pub crc32c: u32,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("manifest serializes");
        bytes.push(b'\n');
        bytes
    }

    pub fn decode(what: &str, bytes: &[u8]) -> Result<Manifest, FormatError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: u32,
        }
        let version: VersionOnly = serde_json::from_slice(bytes).map_err(|err| {
            FormatError::new(
                FormatErrorKind::Corrupt,
                what,
                format!("not a manifest: {err}"),
            )
        })?;
        if version.format_version > FORMAT_VERSION {
            return Err(FormatError::new(
                FormatErrorKind::Unsupported,
                what,
                format!(
                    "format version {} is newer than this reader's {FORMAT_VERSION}: upgrade tierdex",
                    version.format_version
                ),
            ));
        }
        if version.format_version < OLDEST_READABLE_FORMAT {
            return Err(FormatError::new(
                FormatErrorKind::Unsupported,
                what,
                format!(
                    "format version {} is no longer served (this tierdex reads {OLDEST_READABLE_FORMAT} to {FORMAT_VERSION}): rebuild the index with `tierdex build`",
                    version.format_version
                ),
            ));
        }
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|err| {
            FormatError::new(
                FormatErrorKind::Corrupt,
                what,
                format!("bad manifest: {err}"),
            )
        })?;
        manifest.validate(what)?;
        Ok(manifest)
    }

    fn validate(&self, what: &str) -> Result<(), FormatError> {
        let invalid = |message: String| FormatError::new(FormatErrorKind::Invalid, what, message);
        if self.block_size == 0 {
            return Err(invalid("block_size is 0".into()));
        }
        let mut seen = HashSet::new();
        for entry in &self.files {
            for path in std::iter::once(&entry.path)
                .chain(entry.block_table.as_ref().map(|table| &table.path))
            {
                if path.is_empty()
                    || path.starts_with('/')
                    || path.split('/').any(|part| part == ".." || part.is_empty())
                {
                    return Err(invalid(format!("unsafe file path `{path}`")));
                }
            }
            if !seen.insert(entry.path.as_str()) {
                return Err(invalid(format!("file `{}` listed twice", entry.path)));
            }
            if entry.block_table.is_none() && entry.size > self.block_size {
                return Err(invalid(format!(
                    "file `{}` spans several blocks but has no block table",
                    entry.path
                )));
            }
        }
        for parquet in &self.cold.parquet_files {
            if !seen.contains(parquet.path.as_str()) {
                return Err(invalid(format!(
                    "cold file `{}` is not in the file list",
                    parquet.path
                )));
            }
        }
        Ok(())
    }

    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|entry| entry.path == path)
    }

    /// Files of one tantivy index directory (`hot` or `cold/index`), by their name in it.
    pub fn index_files<'a>(
        &'a self,
        dir: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a FileEntry)> + 'a {
        self.files.iter().filter_map(move |entry| {
            let name = entry.path.strip_prefix(dir)?.strip_prefix('/')?;
            (!name.contains('/')).then_some((name, entry))
        })
    }

    pub fn hot_files(&self) -> impl Iterator<Item = (&str, &FileEntry)> {
        self.files_in(self.tier_dir(layout::HOT_DIR))
    }

    pub fn cold_index_files(&self) -> impl Iterator<Item = (&str, &FileEntry)> {
        self.files_in(self.tier_dir(layout::COLD_INDEX_DIR))
    }

    /// Files directly in `dir` (relative to the version), by their name in it.
    pub fn files_in(&self, dir: String) -> impl Iterator<Item = (&str, &FileEntry)> {
        self.files.iter().filter_map(move |entry| {
            let name = entry.path.strip_prefix(dir.as_str())?.strip_prefix('/')?;
            (!name.contains('/')).then_some((name, entry))
        })
    }

    /// Where a tier directory (`hot`, `cold/index`) of this manifest lies in the version:
    /// under `shards/<shard>/` for a shard's manifest.
    pub fn tier_dir(&self, dir: &str) -> String {
        match &self.shard {
            Some(shard) => format!("{}/{dir}", shard_dir(shard.shard)),
            None => dir.to_string(),
        }
    }

    /// How many shards the version has (1 when it is not sharded).
    pub fn shard_count(&self) -> u32 {
        self.shards.as_ref().map_or(1, |shards| shards.count)
    }

    /// What a node serving this manifest calls it: the index, or `<index>/<shard>`.
    pub fn served_name(&self) -> String {
        match &self.shard {
            Some(shard) => format!("{}/{}", self.index, shard.shard),
            None => self.index.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_for(format_version: u32) -> FormatError {
        let bytes = format!("{{\"format_version\": {format_version}}}");
        Manifest::decode("idx/v/manifest.json", bytes.as_bytes()).unwrap_err()
    }

    #[test]
    fn older_and_newer_formats_are_refused_with_what_to_do() {
        let old = error_for(1);
        assert_eq!(old.kind(), FormatErrorKind::Unsupported);
        assert!(old.to_string().contains("rebuild the index"), "{old}");
        assert!(old.to_string().contains("idx/v/manifest.json"), "{old}");
        let new = error_for(FORMAT_VERSION + 1);
        assert_eq!(new.kind(), FormatErrorKind::Unsupported);
        assert!(new.to_string().contains("upgrade tierdex"), "{new}");
        // The current version gets past the version check (and fails on the missing fields).
        assert_eq!(error_for(FORMAT_VERSION).kind(), FormatErrorKind::Corrupt);
    }
}
