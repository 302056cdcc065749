//! Rounds of reads: every asynchronous read the warm-up of a search issues before it next
//! waits is fetched together — per file, the missing blocks of all its ranges, adjacent ones
//! merged into one request (`CachedFile::read_ranges`), and all files at once. So a warm-up
//! made of steps that each read once (a term's dictionary block, then its postings) costs one
//! round per step, whatever the number of terms, segments and files.
//!
//! tantivy's async warm-up (`warm_postings`, `get_async`, `read_bytes_async`) reads through
//! `RemoteFile::read_bytes_async`, which, within `Round::run`, queues its range here instead of
//! reading. `run` polls the warm-up until it waits, fetches what it queued, wakes the readers,
//! and polls again.

use std::future::Future;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use futures::future::join_all;
use tantivy::directory::OwnedBytes;
use tokio::sync::{Notify, oneshot};

use super::file::{RemoteFile, Resident, owned_bytes};
use super::warmed::{FileId, Warmed};
use crate::cache::{CacheError, CachedFile, ReadStats};

tokio::task_local! {
    static ROUND: Arc<Round>;
}

struct Request {
    file: FileId,
    cached: CachedFile,
    resident: Option<Arc<Resident>>,
    range: Range<u64>,
    reply: oneshot::Sender<io::Result<OwnedBytes>>,
}

/// The reads of one search's warm-up.
pub struct Round {
    pending: Mutex<Vec<Request>>,
    pushed: Notify,
    warmed: Arc<Warmed>,
    stats: Arc<ReadStats>,
    /// Rounds that sent at least one request to storage.
    storage_rounds: AtomicU32,
    /// The first failure of a fetch, as the cache gave it.
    error: Mutex<Option<Arc<CacheError>>>,
}

/// The round of the current task, if it runs within `Round::run`.
pub(super) fn current() -> Option<Arc<Round>> {
    ROUND.try_with(Arc::clone).ok()
}

impl Round {
    /// A round filling `warmed`, counting into `stats`.
    pub fn new(warmed: Arc<Warmed>, stats: Arc<ReadStats>) -> Arc<Round> {
        Arc::new(Round {
            pending: Mutex::default(),
            pushed: Notify::new(),
            warmed,
            stats,
            storage_rounds: AtomicU32::new(0),
            error: Mutex::default(),
        })
    }

    pub fn storage_rounds(&self) -> u32 {
        self.storage_rounds.load(Ordering::Relaxed)
    }

    /// The first fetch that failed, if one did.
    pub fn error(&self) -> Option<Arc<CacheError>> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) async fn read(
        &self,
        file: &RemoteFile,
        range: Range<u64>,
    ) -> io::Result<OwnedBytes> {
        if let Some(bytes) = self.warmed.get(file.id(), &range) {
            return Ok(bytes);
        }
        let (reply, answer) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Request {
                file: file.id(),
                cached: file.cached().clone(),
                resident: file.resident().cloned(),
                range,
                reply,
            });
        self.pushed.notify_one();
        answer
            .await
            .map_err(|_| io::Error::other("the warm-up round was dropped"))?
    }

    /// Runs `work`, fetching the reads it queues round by round.
    pub async fn run<T>(self: &Arc<Self>, work: impl Future<Output = T>) -> T {
        let round = self.clone();
        ROUND
            .scope(self.clone(), async move {
                let mut work = std::pin::pin!(work);
                loop {
                    if let Poll::Ready(out) = futures::poll!(work.as_mut()) {
                        return out;
                    }
                    let requests = std::mem::take(
                        &mut *round.pending.lock().unwrap_or_else(PoisonError::into_inner),
                    );
                    if requests.is_empty() {
                        // Waiting on something else (a block another search is loading).
                        tokio::select! {
                            out = work.as_mut() => return out,
                            _ = round.pushed.notified() => continue,
                        }
                    }
                    round.fetch(requests).await;
                }
            })
            .await
    }

    /// One round: each file's ranges in one `read_ranges`, every file at once.
    async fn fetch(&self, requests: Vec<Request>) {
        let mut by_file: Vec<(CachedFile, Vec<Request>)> = Vec::new();
        for request in requests {
            match by_file
                .iter_mut()
                .find(|(_, queued)| queued[0].file == request.file)
            {
                Some((_, queued)) => queued.push(request),
                None => by_file.push((request.cached.clone(), vec![request])),
            }
        }
        let before = self.stats.snapshot().requests;
        let reads = by_file.iter().map(|(cached, queued)| {
            let ranges: Vec<Range<u64>> =
                queued.iter().map(|request| request.range.clone()).collect();
            let stats = self.stats.clone();
            async move { cached.read_ranges(&ranges, &stats).await }
        });
        let results = join_all(reads).await;
        if self.stats.snapshot().requests > before {
            self.storage_rounds.fetch_add(1, Ordering::Relaxed);
        }
        for ((_, queued), result) in by_file.into_iter().zip(results) {
            match result {
                Ok(all) => {
                    for (request, bytes) in queued.into_iter().zip(all) {
                        let bytes = owned_bytes(bytes);
                        self.warmed
                            .insert(request.file, request.range.start, bytes.clone());
                        if let Some(resident) = &request.resident {
                            resident.insert(request.range.start, bytes.clone());
                        }
                        let _ = request.reply.send(Ok(bytes));
                    }
                }
                Err(err) => {
                    self.error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert_with(|| err.clone());
                    for request in queued {
                        let _ = request.reply.send(Err(io::Error::other(err.to_string())));
                    }
                }
            }
        }
    }
}
