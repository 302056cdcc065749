//! How the hot tier stores its documents: tantivy's doc store, laid out for the reads a node
//! makes of it.

/// Bytes of documents per uncompressed block of a `PointReads` doc store: about a memory
/// page, so that reading one document touches one or two pages of the file.
pub const POINT_READ_BLOCK: usize = 4096;

/// The hot tier's doc store layout.
///
/// A node reads the hot tier's documents one by one, the ten of a page at a time, from a
/// local index the rules keep small: tantivy's default (LZ4 blocks of 16 KiB) decompresses a
/// whole block for each document it reads, which was half of a hot search's time on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HotDocStore {
    /// Uncompressed blocks of `POINT_READ_BLOCK` bytes: a document read is a small copy.
    #[default]
    PointReads,
    /// tantivy's default: LZ4 blocks of 16 KiB, the smallest on disk.
    Compact,
}

impl std::str::FromStr for HotDocStore {
    type Err = String;

    fn from_str(text: &str) -> Result<HotDocStore, String> {
        match text {
            "point-reads" => Ok(HotDocStore::PointReads),
            "compact" => Ok(HotDocStore::Compact),
            other => Err(format!(
                "unknown hot doc store `{other}` (use `point-reads` or `compact`)"
            )),
        }
    }
}

impl HotDocStore {
    /// Sets tantivy's doc store settings for this layout (`settings` start as tantivy's
    /// defaults, which are `Compact`).
    pub fn apply(self, settings: &mut tantivy::IndexSettings) {
        if self == HotDocStore::PointReads {
            settings.docstore_compression = tantivy::store::Compressor::None;
            settings.docstore_blocksize = POINT_READ_BLOCK;
        }
    }
}
