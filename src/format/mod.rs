//! The artifact contract shared by the builder and the node: object key layout, the manifest,
//! block checksum tables, cold document addresses, id sort keys and version ids. Pure data and
//! encoding; no I/O. `docs/format.md` is the prose version of this module and must change with it.

pub mod addr;
pub mod checksum;
pub mod hotcache;
pub mod layout;
pub mod manifest;
pub mod shard;
pub mod sort_key;
pub mod version;

pub use addr::DocAddr;
pub use checksum::{BlockTable, FileChecksummer};
pub use manifest::{FORMAT_VERSION, FileEntry, Manifest, TableRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatErrorKind {
    /// Bytes that do not decode as the format says (bad magic, truncated table, bad JSON).
    Corrupt,
    /// A newer or unknown format version.
    Unsupported,
    /// Decoded fine but breaks an invariant (missing file entry, sizes that disagree).
    Invalid,
}

#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct FormatError {
    pub kind: FormatErrorKind,
    /// Which artifact: an object key or `manifest`.
    pub what: String,
    pub message: String,
}

impl FormatError {
    pub fn kind(&self) -> FormatErrorKind {
        self.kind
    }

    pub fn new(kind: FormatErrorKind, what: impl Into<String>, message: impl Into<String>) -> Self {
        FormatError {
            kind,
            what: what.into(),
            message: message.into(),
        }
    }
}

/// The default size of checksummed blocks, and of the node's cache blocks.
pub const DEFAULT_BLOCK_SIZE: u64 = 64 * 1024;
