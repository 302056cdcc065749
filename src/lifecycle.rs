//! Versions over time: removing the versions nobody serves any more and the leftovers of
//! builds that never finished.
//!
//! A version is **complete** when its manifest exists (the builder writes it after every other
//! file, and `CURRENT` after it). `gc` never removes the version `CURRENT` names, nor any version
//! younger than `older_than` (by the time in its id): a node still serving the previous version
//! reads its cold files from the store until it switches, and a build in progress has no
//! manifest yet. Names under the index that are not version ids are left alone. A version is
//! removed manifest first, so that a gc interrupted halfway leaves a leftover, never a
//! version that looks complete and is not.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::format::layout::{self, MANIFEST};
use crate::format::version::version_time;
use crate::published::{PublishedError, read_current};
use crate::store::BlobStore;

#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Complete versions kept, newest first (the current one always, on top of these).
    pub keep: usize,
    /// Versions younger than this are kept whatever else holds.
    pub older_than: Duration,
    /// Say what would be removed; remove nothing.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionFiles {
    pub version: String,
    pub complete: bool,
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    pub index: String,
    pub current: String,
    pub kept: Vec<VersionFiles>,
    /// Removed, or to be removed with `dry_run`.
    pub removed: Vec<VersionFiles>,
    /// Directories under the index whose names are not version ids.
    pub unrecognized: Vec<String>,
    pub dry_run: bool,
}

/// Removes old versions and build leftovers of `index` (see the module's rules).
pub async fn gc(
    store: &dyn BlobStore,
    index: &str,
    options: GcOptions,
    now: OffsetDateTime,
) -> Result<GcReport, PublishedError> {
    let current = read_current(store, index).await?;
    let prefix = format!("{index}/");
    let mut versions: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for object in store.list(&prefix).await? {
        let Some(rest) = object.key.strip_prefix(&prefix) else {
            continue;
        };
        if let Some((version, _)) = rest.split_once('/') {
            versions
                .entry(version.to_string())
                .or_default()
                .push((object.key.clone(), object.size));
        }
    }
    let mut unrecognized = Vec::new();
    let mut candidates = Vec::new();
    for (version, objects) in versions {
        let Some(built) = version_time(&version) else {
            unrecognized.push(version);
            continue;
        };
        let manifest = layout::version_key(index, &version, MANIFEST);
        let complete = objects.iter().any(|(key, _)| *key == manifest);
        candidates.push((version, built, complete, objects));
    }
    // Newest first: ids sort by build time.
    candidates.sort_by(|a, b| b.0.cmp(&a.0));
    let young_since = now - options.older_than;
    let mut complete_kept = 0;
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    for (version, built, complete, objects) in candidates {
        let summary = VersionFiles {
            version: version.clone(),
            complete,
            objects: objects.len() as u64,
            bytes: objects.iter().map(|(_, size)| size).sum(),
        };
        let within_keep = complete && complete_kept < options.keep;
        complete_kept += usize::from(within_keep);
        if version == current || within_keep || built > young_since {
            kept.push(summary);
            continue;
        }
        if !options.dry_run {
            let manifest = layout::version_key(index, &version, MANIFEST);
            if complete {
                store.delete(&manifest).await?;
            }
            for (key, _) in objects.iter().filter(|(key, _)| *key != manifest) {
                store.delete(key).await?;
            }
        }
        removed.push(summary);
    }
    Ok(GcReport {
        index: index.to_string(),
        current,
        kept,
        removed,
        unrecognized,
        dry_run: options.dry_run,
    })
}
