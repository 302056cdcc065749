//! Versions over time: removing the versions nobody serves any more and the leftovers of
//! builds that never finished.
//!
//! A version is **complete** when its manifest exists (the builder writes it after every other
//! file, and `CURRENT` after it). `gc` never removes the version `CURRENT` names, nor any version
//! younger than `older_than` (by the time in its id), nor a complete version whose successor is
//! younger than that: a node still serving the previous version reads its cold files from the
//! store until it switches, and a build in progress has no manifest yet (a build that uploads
//! for longer than `older_than` checks its files before it publishes). Names under the index that are not version ids are left alone. A version is
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
    // `None`: --older-than reaches past the calendar, everything is young.
    let young_since = time::Duration::try_from(options.older_than)
        .ok()
        .and_then(|age| now.checked_sub(age));
    let young = |at: OffsetDateTime| young_since.is_none_or(|since| at > since);
    let mut complete_kept = 0;
    // When the next newer complete version was built: about when this one stopped being
    // published, and nodes may serve it until they have switched.
    let mut successor_built: Option<OffsetDateTime> = None;
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
        let replaced_recently = complete && successor_built.is_some_and(young);
        if complete {
            successor_built = Some(built);
        }
        if version == current || within_keep || young(built) || replaced_recently {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::version::format_version_id;
    use crate::store::LocalStore;

    #[tokio::test]
    async fn the_version_replaced_recently_stays_for_nodes_still_serving_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let now = OffsetDateTime::now_utc();
        let hours_ago =
            |hours: f64| format_version_id(now - Duration::from_secs_f64(hours * 3600.0), 1);
        let (oldest, replaced, current) = (hours_ago(3.0), hours_ago(2.0), hours_ago(0.5));
        for version in [&oldest, &replaced, &current] {
            let key = layout::version_key("idx", version, MANIFEST);
            store
                .put(&key, bytes::Bytes::from_static(b"{}"))
                .await
                .unwrap();
        }
        store
            .put("idx/CURRENT", format!("{current}\n").into())
            .await
            .unwrap();
        let options = GcOptions {
            keep: 1,
            older_than: Duration::from_secs(3600),
            dry_run: true,
        };
        let report = gc(&store, "idx", options, now).await.unwrap();
        let names = |list: &[VersionFiles]| -> Vec<String> {
            list.iter().map(|version| version.version.clone()).collect()
        };
        // Two hours old, but replaced only half an hour ago: kept. The oldest was replaced two
        // hours ago: removed.
        assert_eq!(names(&report.kept), vec![current.clone(), replaced.clone()]);
        assert_eq!(names(&report.removed), vec![oldest.clone()]);
        // An --older-than past the calendar keeps everything rather than overflowing.
        let options = GcOptions {
            older_than: Duration::from_secs(u64::MAX / 4),
            ..options
        };
        let report = gc(&store, "idx", options, now).await.unwrap();
        assert!(report.removed.is_empty());
    }
}
