//! Published versions as a reader finds them in a store: `CURRENT`, the manifest it names, and
//! a full verification of every file against the manifest's checksums.

use std::sync::Arc;

use futures::StreamExt;

use crate::format::layout::{self, version_key};
use crate::format::shard::shard_dir;
use crate::format::{BlockTable, FileEntry, FormatError, FormatErrorKind, Manifest};
use crate::store::{BlobStore, StoreError, StoreErrorKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishedErrorKind {
    /// The index has no CURRENT: nothing was ever published.
    NoIndex,
    Store,
    Format,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishedError {
    #[error("index `{index}` has no published version in {store} (no {index}/CURRENT)")]
    NoIndex { index: String, store: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl PublishedError {
    pub fn kind(&self) -> PublishedErrorKind {
        match self {
            PublishedError::NoIndex { .. } => PublishedErrorKind::NoIndex,
            PublishedError::Store(_) => PublishedErrorKind::Store,
            PublishedError::Format(_) => PublishedErrorKind::Format,
        }
    }
}

/// The version CURRENT names.
pub async fn read_current(store: &dyn BlobStore, index: &str) -> Result<String, PublishedError> {
    let key = layout::current_key(index);
    let data = store.get(&key).await.map_err(|err| match err.kind() {
        StoreErrorKind::NotFound => PublishedError::NoIndex {
            index: index.to_string(),
            store: store.uri().to_string(),
        },
        _ => PublishedError::Store(err),
    })?;
    let version = String::from_utf8_lossy(&data).trim().to_string();
    if version.is_empty() || version.contains('/') {
        return Err(FormatError::new(
            FormatErrorKind::Corrupt,
            format!("{}/{key}", store.uri()),
            format!("CURRENT does not hold a version id: {version:?}"),
        )
        .into());
    }
    Ok(version)
}

pub async fn read_manifest(
    store: &dyn BlobStore,
    index: &str,
    version: &str,
) -> Result<Manifest, PublishedError> {
    let key = version_key(index, version, layout::MANIFEST);
    let data = store.get(&key).await?;
    let manifest = Manifest::decode(&format!("{}/{key}", store.uri()), &data)?;
    if manifest.index != index || manifest.version != version {
        return Err(FormatError::new(
            FormatErrorKind::Invalid,
            key,
            format!(
                "manifest is for {}/{}, found at {index}/{version}",
                manifest.index, manifest.version
            ),
        )
        .into());
    }
    Ok(manifest)
}

/// The current version's manifest.
pub async fn read_current_manifest(
    store: &dyn BlobStore,
    index: &str,
) -> Result<Manifest, PublishedError> {
    let version = read_current(store, index).await?;
    read_manifest(store, index, &version).await
}

/// What shard `shard` of `version` serves: the shard's manifest, or the version's own when it
/// is not sharded (its one shard, 0). `None` when the version has no such shard.
pub async fn read_shard_manifest(
    store: &dyn BlobStore,
    top: &Manifest,
    shard: u32,
) -> Result<Option<Manifest>, PublishedError> {
    if top.shards.is_none() {
        return Ok((shard == 0).then(|| top.clone()));
    }
    if shard >= top.shard_count() {
        return Ok(None);
    }
    let relative = format!("{}/{}", shard_dir(shard), layout::MANIFEST);
    let key = version_key(&top.index, &top.version, &relative);
    let data = store.get(&key).await?;
    let manifest = Manifest::decode(&format!("{}/{key}", store.uri()), &data)?;
    let matches = manifest.index == top.index
        && manifest.version == top.version
        && manifest.shard.as_ref().map(|info| info.shard) == Some(shard);
    if !matches {
        return Err(FormatError::new(
            FormatErrorKind::Invalid,
            key,
            format!(
                "manifest is for {}/{}, found at {}/{} shard {shard}",
                manifest.served_name(),
                manifest.version,
                top.index,
                top.version
            ),
        )
        .into());
    }
    Ok(Some(manifest))
}

/// Reads a file's block table and checks it against its manifest entry.
pub async fn read_block_table(
    store: &dyn BlobStore,
    manifest: &Manifest,
    entry: &FileEntry,
) -> Result<BlockTable, PublishedError> {
    let Some(reference) = &entry.block_table else {
        return Ok(BlockTable::single_block(
            manifest.block_size,
            entry.size,
            entry.crc32c,
        ));
    };
    let key = version_key(&manifest.index, &manifest.version, &reference.path);
    let data = store.get(&key).await?;
    check_block_table(manifest, entry, &data)
}

/// Decodes a block table read from anywhere (the store, a kept copy), checked against what the
/// manifest says of it and of its file. A file without one is a single block.
pub fn check_block_table(
    manifest: &Manifest,
    entry: &FileEntry,
    data: &[u8],
) -> Result<BlockTable, PublishedError> {
    let Some(reference) = &entry.block_table else {
        return Ok(BlockTable::single_block(
            manifest.block_size,
            entry.size,
            entry.crc32c,
        ));
    };
    if data.len() as u64 != reference.size || crc32c::crc32c(data) != reference.crc32c {
        return Err(FormatError::new(
            FormatErrorKind::Corrupt,
            reference.path.clone(),
            "block table does not match its checksum in the manifest",
        )
        .into());
    }
    let table = BlockTable::decode(&reference.path, data)?;
    if table.file_size != entry.size || table.block_size != manifest.block_size {
        return Err(FormatError::new(
            FormatErrorKind::Invalid,
            reference.path.clone(),
            "block table sizes disagree with the manifest",
        )
        .into());
    }
    Ok(table)
}

/// One problem found by `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub block: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.block {
            Some(block) => write!(f, "{} block {block}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub files: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

/// Bytes read per request while verifying: a whole number of blocks.
const VERIFY_CHUNK_BLOCKS: u64 = 64;
/// Files verified at once.
const VERIFY_CONCURRENCY: usize = 4;

/// Re-reads every file of the version and checks sizes, whole-file CRC32C and every block.
pub async fn verify(store: Arc<dyn BlobStore>, manifest: &Manifest) -> VerifyReport {
    let results: Vec<(u64, Vec<Problem>)> = futures::stream::iter(manifest.files.iter())
        .map(|entry| {
            let store = store.clone();
            async move { verify_file(store.as_ref(), manifest, entry).await }
        })
        .buffer_unordered(VERIFY_CONCURRENCY)
        .collect()
        .await;
    let mut report = VerifyReport::default();
    for (bytes, problems) in results {
        report.files += 1;
        report.bytes += bytes;
        report.problems.extend(problems);
    }
    report
        .problems
        .sort_by(|a, b| (&a.path, a.block).cmp(&(&b.path, b.block)));
    report
}

async fn verify_file(
    store: &dyn BlobStore,
    manifest: &Manifest,
    entry: &FileEntry,
) -> (u64, Vec<Problem>) {
    let problem = |block: Option<u64>, message: String| Problem {
        path: entry.path.clone(),
        block,
        message,
    };
    let table = match read_block_table(store, manifest, entry).await {
        Ok(table) => table,
        Err(err) => return (0, vec![problem(None, err.to_string())]),
    };
    let key = version_key(&manifest.index, &manifest.version, &entry.path);
    match store.size(&key).await {
        Ok(size) if size == entry.size => {}
        Ok(size) => {
            return (
                0,
                vec![problem(
                    None,
                    format!("size is {size} bytes, the manifest says {}", entry.size),
                )],
            );
        }
        Err(err) => return (0, vec![problem(None, err.to_string())]),
    }
    let mut problems = Vec::new();
    let mut file_crc = 0u32;
    let chunk = manifest.block_size * VERIFY_CHUNK_BLOCKS;
    let mut offset = 0u64;
    while offset < entry.size {
        let end = (offset + chunk).min(entry.size);
        let data = match store.get_range(&key, offset..end).await {
            Ok(data) => data,
            Err(err) => {
                problems.push(problem(None, err.to_string()));
                return (offset, problems);
            }
        };
        file_crc = crc32c::crc32c_append(file_crc, &data);
        let first_block = offset / manifest.block_size;
        for (index, block) in data.chunks(manifest.block_size as usize).enumerate() {
            let block_index = first_block + index as u64;
            if !table.verify_block(block_index, block) {
                let range = table.block_range(block_index);
                problems.push(problem(
                    Some(block_index),
                    format!("checksum mismatch in bytes {}..{}", range.start, range.end),
                ));
            }
        }
        offset = end;
    }
    if file_crc != entry.crc32c {
        problems.push(problem(
            None,
            format!(
                "file checksum {file_crc:08x}, the manifest says {:08x}",
                entry.crc32c
            ),
        ));
    }
    (entry.size, problems)
}
