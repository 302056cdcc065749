//! Counts requests and bytes going through a store: the figures behind per-query storage
//! stats and the request-count assertions in tests.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobStore, Expected, ObjectMeta, StoreResult};

#[derive(Debug, Default)]
struct Counters {
    get_requests: AtomicU64,
    get_bytes: AtomicU64,
    put_requests: AtomicU64,
    put_bytes: AtomicU64,
    other_requests: AtomicU64,
}

/// A snapshot of the counters. `get_requests` counts object reads (`get`, and each range of
/// `get_range`/`get_ranges`), the requests a remote store would be billed for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub get_requests: u64,
    pub get_bytes: u64,
    pub put_requests: u64,
    pub put_bytes: u64,
    pub other_requests: u64,
}

impl std::ops::Sub for StoreCounts {
    type Output = StoreCounts;
    fn sub(self, earlier: StoreCounts) -> StoreCounts {
        StoreCounts {
            get_requests: self.get_requests - earlier.get_requests,
            get_bytes: self.get_bytes - earlier.get_bytes,
            put_requests: self.put_requests - earlier.put_requests,
            put_bytes: self.put_bytes - earlier.put_bytes,
            other_requests: self.other_requests - earlier.other_requests,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CountingStore {
    inner: Arc<dyn BlobStore>,
    counters: Arc<Counters>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn BlobStore>) -> CountingStore {
        CountingStore {
            inner,
            counters: Arc::default(),
        }
    }

    pub fn counts(&self) -> StoreCounts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StoreCounts {
            get_requests: load(&self.counters.get_requests),
            get_bytes: load(&self.counters.get_bytes),
            put_requests: load(&self.counters.put_requests),
            put_bytes: load(&self.counters.put_bytes),
            other_requests: load(&self.counters.other_requests),
        }
    }

    fn count_get(&self, bytes: u64) {
        self.counters.get_requests.fetch_add(1, Ordering::Relaxed);
        self.counters.get_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn count_put(&self, bytes: u64) {
        self.counters.put_requests.fetch_add(1, Ordering::Relaxed);
        self.counters.put_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn count_other(&self) {
        self.counters.other_requests.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl BlobStore for CountingStore {
    fn uri(&self) -> &str {
        self.inner.uri()
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.count_get(range.end.saturating_sub(range.start));
        self.inner.get_range(key, range).await
    }

    async fn get_ranges(&self, key: &str, ranges: &[Range<u64>]) -> StoreResult<Vec<Bytes>> {
        for range in ranges {
            self.count_get(range.end.saturating_sub(range.start));
        }
        self.inner.get_ranges(key, ranges).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let data = self.inner.get(key).await;
        self.count_get(data.as_ref().map(|data| data.len() as u64).unwrap_or(0));
        data
    }

    async fn size(&self, key: &str) -> StoreResult<u64> {
        self.count_other();
        self.inner.size(key).await
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.count_put(data.len() as u64);
        self.inner.put(key, data).await
    }

    async fn put_file(&self, key: &str, local: &Path) -> StoreResult<()> {
        let size = std::fs::metadata(local).map(|meta| meta.len()).unwrap_or(0);
        self.count_put(size);
        self.inner.put_file(key, local).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.count_other();
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.count_other();
        self.inner.delete(key).await
    }

    async fn get_tagged(&self, key: &str) -> StoreResult<Option<(Bytes, String)>> {
        let found = self.inner.get_tagged(key).await?;
        self.counters.get_requests.fetch_add(1, Ordering::Relaxed);
        if let Some((bytes, _)) = &found {
            self.counters
                .get_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        Ok(found)
    }

    async fn put_if(&self, key: &str, data: Bytes, expected: &Expected) -> StoreResult<()> {
        self.counters.put_requests.fetch_add(1, Ordering::Relaxed);
        self.counters
            .put_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.put_if(key, data, expected).await
    }
}
