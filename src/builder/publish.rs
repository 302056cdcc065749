//! Staging directory → an immutable version in the store. Files go up first (with their block
//! tables), then `manifest.json`, then `CURRENT`: a reader that follows CURRENT only ever finds
//! complete versions. On failure the partial version is deleted and CURRENT is left alone.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use tracing::{info, warn};

use super::BuildError;
use crate::format::layout::{self, block_table_path, version_key};
use crate::format::shard::shard_dir;
use crate::format::{FileChecksummer, FileEntry, Manifest, TableRef};
use crate::store::{BlobStore, Expected, StoreError, StoreErrorKind};

/// Files uploaded at once.
const UPLOAD_CONCURRENCY: usize = 8;

/// tantivy's lock files live in index directories but are not part of an index.
fn is_lock_file(name: &str) -> bool {
    name.starts_with(".tantivy-") && name.ends_with(".lock")
}

/// Every file under `staging`, as (path relative to it, absolute path), sorted.
pub fn staged_files(staging: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let mut pending = vec![staging.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_string();
            if is_lock_file(&name) {
                continue;
            }
            let relative = path
                .strip_prefix(staging)
                .expect("under staging")
                .to_string_lossy()
                .replace('\\', "/");
            found.push((relative, path));
        }
    }
    found.sort();
    Ok(found)
}

/// CRC32C and block table of a local file, read once.
fn checksum_file(
    path: &Path,
    block_size: u64,
) -> std::io::Result<(u64, u32, crate::format::BlockTable)> {
    let mut file = std::fs::File::open(path)?;
    let mut checksummer = FileChecksummer::new(block_size);
    let mut buffer = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        size += read as u64;
        checksummer.update(&buffer[..read]);
    }
    let (crc, table) = checksummer.finish();
    Ok((size, crc, table))
}

/// Checksums and uploads one staged file (and its block table when it spans several blocks).
async fn upload_file(
    store: Arc<dyn BlobStore>,
    index: String,
    version: String,
    relative: String,
    local: PathBuf,
    block_size: u64,
) -> Result<FileEntry, BuildError> {
    let local_for_sum = local.clone();
    let (size, crc32c, table) =
        tokio::task::spawn_blocking(move || checksum_file(&local_for_sum, block_size))
            .await
            .map_err(|err| BuildError::internal(format!("checksum task: {err}")))?
            .map_err(|err| {
                BuildError::io(format!("reading staged file {}", local.display()), err)
            })?;
    let block_table = if size > block_size {
        let encoded = table.encode();
        let path = block_table_path(&relative);
        let reference = TableRef {
            path: path.clone(),
            size: encoded.len() as u64,
            crc32c: crc32c::crc32c(&encoded),
        };
        store
            .put(&version_key(&index, &version, &path), encoded)
            .await?;
        Some(reference)
    } else {
        None
    };
    store
        .put_file(&version_key(&index, &version, &relative), &local)
        .await?;
    Ok(FileEntry {
        path: relative,
        size,
        crc32c,
        block_table,
    })
}

/// What a build expects `CURRENT` to hold when it publishes: as it was when the build started.
#[derive(Debug, Clone)]
pub struct Replaces {
    /// The version CURRENT named, if any.
    pub version: Option<String>,
    /// The condition of the write; `None` writes CURRENT unconditionally.
    pub condition: Option<Expected>,
}

impl Replaces {
    /// Reads CURRENT with its tag, to publish only over that same version.
    pub async fn read(store: &dyn BlobStore, index: &str) -> Result<Replaces, BuildError> {
        let found = store
            .get_tagged(&layout::current_key(index))
            .await
            .map_err(|err| {
                if err.kind() == StoreErrorKind::Unsupported {
                    unsupported(store, &err)
                } else {
                    BuildError::Store(err)
                }
            })?;
        Ok(match found {
            Some((data, tag)) => Replaces {
                version: Some(String::from_utf8_lossy(&data).trim().to_string()),
                condition: Some(Expected::Tag(tag)),
            },
            None => Replaces {
                version: None,
                condition: Some(Expected::Absent),
            },
        })
    }

    /// No condition: the last build to finish wins (for stores without conditional writes).
    pub fn unconditionally() -> Replaces {
        Replaces {
            version: None,
            condition: None,
        }
    }
}

fn unsupported(store: &dyn BlobStore, err: &StoreError) -> BuildError {
    BuildError::Conflict(format!(
        "{} cannot write conditionally ({err}): two builders could overwrite each other's \
         CURRENT unnoticed. Use a store that can (S3 with If-Match / If-None-Match, a local \
         directory), or pass --unconditional-publish if only one builder ever runs \
         (docs/operations.md)",
        store.uri()
    ))
}

/// Uploads the staged files, then the shards' manifests (of a sharded version), then the
/// version's manifest, then CURRENT, which must still be as `replaces` found it.
/// `manifest.files` (and each shard's) is filled here.
pub async fn publish_version(
    store: Arc<dyn BlobStore>,
    staging: &Path,
    mut manifest: Manifest,
    shard_manifests: Vec<Manifest>,
    replaces: &Replaces,
) -> Result<Manifest, BuildError> {
    let index = manifest.index.clone();
    let version = manifest.version.clone();
    let prefix = layout::version_prefix(&index, &version);
    let existing = store.list(&prefix).await?;
    if !existing.is_empty() {
        return Err(BuildError::invalid(format!(
            "version {version} of index {index} already exists in {}: versions are never overwritten",
            store.uri()
        )));
    }
    let files = staged_files(staging).map_err(|err| {
        BuildError::io(
            format!("listing staging directory {}", staging.display()),
            err,
        )
    })?;
    let result = async {
        // Every upload started runs to its end before a failure is acted on (an upload dropped
        // midway may still land, its blocking write going on, after the partial version is
        // removed); none starts after a failure.
        let failed = std::sync::atomic::AtomicBool::new(false);
        let failed = &failed;
        let uploads: Vec<Result<FileEntry, BuildError>> = futures::stream::iter(files)
            .map(|(relative, local)| {
                let upload = upload_file(
                    store.clone(),
                    index.clone(),
                    version.clone(),
                    relative,
                    local,
                    manifest.block_size,
                );
                async move {
                    use std::sync::atomic::Ordering;
                    if failed.load(Ordering::Relaxed) {
                        return Err(BuildError::Internal(
                            "not uploaded: an upload failed".into(),
                        ));
                    }
                    let result = upload.await;
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    result
                }
            })
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .collect()
            .await;
        // The first real failure, not a skipped upload.
        let mut entries = Vec::with_capacity(uploads.len());
        let mut first_error = None;
        for upload in uploads {
            match upload {
                Ok(entry) => entries.push(entry),
                Err(BuildError::Internal(_)) if first_error.is_some() => {}
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        // Every file is still there before the manifest makes the version complete: a gc run
        // with an --older-than shorter than this upload would have taken some.
        let present: std::collections::BTreeSet<String> = store
            .list(&prefix)
            .await?
            .into_iter()
            .map(|object| object.key)
            .collect();
        if let Some(missing) = entries
            .iter()
            .find(|entry| !present.contains(&version_key(&index, &version, &entry.path)))
        {
            return Err(BuildError::Conflict(format!(
                "{} disappeared from {} during the upload (a gc with a shorter --older-than \
                 than this build takes?)",
                missing.path,
                store.uri()
            )));
        }
        // A shard's manifest lists its own files and the statistics every shard scores with.
        for mut shard in shard_manifests {
            let info = shard.shard.clone().expect("a shard manifest");
            let dir = format!("{}/", shard_dir(info.shard));
            shard.files = entries
                .iter()
                .filter(|entry| entry.path.starts_with(&dir) || entry.path == info.doc_freqs)
                .cloned()
                .collect();
            store
                .put(
                    &version_key(&index, &version, &format!("{dir}{}", layout::MANIFEST)),
                    shard.encode().into(),
                )
                .await?;
        }
        manifest.files = entries;
        store
            .put(
                &version_key(&index, &version, layout::MANIFEST),
                manifest.encode().into(),
            )
            .await?;
        Ok::<(), BuildError>(())
    }
    .await;
    if let Err(err) = result {
        warn!(%index, %version, "publishing failed, removing the partial version: {err}");
        remove_version(store.as_ref(), &prefix).await;
        return Err(err);
    }
    let current_key = layout::current_key(&index);
    let written = match &replaces.condition {
        Some(condition) => {
            store
                .put_if(&current_key, format!("{version}\n").into(), condition)
                .await
        }
        None => store.put(&current_key, format!("{version}\n").into()).await,
    };
    if let Err(err) = &written
        && matches!(
            err.kind(),
            StoreErrorKind::Conflict | StoreErrorKind::Unsupported
        )
    {
        let now = match store.get(&current_key).await {
            Ok(current) => Some(String::from_utf8_lossy(&current).trim().to_string()),
            Err(_) => None,
        };
        // A conditional write whose answer was lost and which the SDK sent again fails its
        // own condition: CURRENT names this version, and it is published.
        if now.as_deref() == Some(version.as_str()) {
            warn!(%index, %version, "CURRENT names this version although the store reported: {err}");
            info!(%index, %version, store = store.uri(), "published");
            return Ok(manifest);
        }
        // Nothing names this version: it goes, and CURRENT stays as it is.
        remove_version(store.as_ref(), &prefix).await;
        if err.kind() == StoreErrorKind::Unsupported {
            return Err(unsupported(store.as_ref(), err));
        }
        let before = replaces
            .version
            .as_deref()
            .unwrap_or("nothing (a first publish)");
        let now = now.unwrap_or_else(|| "(unreadable)".into());
        if replaces.version.as_deref() == Some(now.as_str()) {
            // Not another publish: the write itself could not be made (a stale lock file).
            return Err(BuildError::Conflict(format!(
                "CURRENT of index `{index}` could not be written ({err}); it still names \
                 {now}. This build ({version}) was not published and its files were removed"
            )));
        }
        warn!(%index, %version, "another build published first");
        return Err(BuildError::Conflict(format!(
            "another build published index `{index}` while this one ran: CURRENT named \
             {before} when this build started and now names {now}. This build ({version}) was \
             not published and its files were removed; build again to publish over {now} ({err})"
        )));
    }
    if let Err(err) = written {
        // The write may have landed even though its answer was lost: only remove the version
        // when CURRENT is known not to name it.
        match store.get(&current_key).await {
            Ok(current) if String::from_utf8_lossy(&current).trim() == version => {
                warn!(%index, %version, "CURRENT was written although the store reported: {err}");
            }
            Ok(_) => {
                warn!(%index, %version, "writing CURRENT failed, removing the version: {err}");
                remove_version(store.as_ref(), &prefix).await;
                return Err(err.into());
            }
            Err(read_err) => {
                warn!(%index, %version, "writing CURRENT failed and CURRENT cannot be read ({read_err}); \
                       keeping the version, which CURRENT may or may not name");
                return Err(err.into());
            }
        }
    }
    info!(%index, %version, store = store.uri(), "published");
    Ok(manifest)
}

/// Best effort: a leftover partial version is invisible (CURRENT never names it) but wastes
/// space.
async fn remove_version(store: &dyn BlobStore, prefix: &str) {
    match store.list(prefix).await {
        Ok(objects) => {
            for object in objects {
                if let Err(err) = store.delete(&object.key).await {
                    warn!("could not remove {}: {err}", object.key);
                }
            }
        }
        Err(err) => warn!("could not list {prefix} to remove it: {err}"),
    }
}
