//! A store that records every read with when it started and ended, so that a test can count
//! the sequential rounds a search made: requests that overlap in time are one round, a request
//! that starts after every request of the current round has ended starts the next.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use tierdex::store::{BlobStore, Expected, ObjectMeta, StoreResult};

#[derive(Debug, Clone)]
pub struct Read {
    pub key: String,
    pub range: Option<Range<u64>>,
    pub started: Instant,
    pub ended: Instant,
}

#[derive(Debug, Clone)]
pub struct RecordingStore {
    inner: Arc<dyn BlobStore>,
    reads: Arc<Mutex<Vec<Read>>>,
}

impl RecordingStore {
    pub fn new(inner: Arc<dyn BlobStore>) -> RecordingStore {
        RecordingStore {
            inner,
            reads: Arc::default(),
        }
    }

    /// The reads recorded so far, cleared.
    pub fn take(&self) -> Vec<Read> {
        std::mem::take(&mut self.reads.lock().unwrap())
    }

    fn record(&self, key: &str, range: Option<Range<u64>>, started: Instant) {
        self.reads.lock().unwrap().push(Read {
            key: key.to_string(),
            range,
            started,
            ended: Instant::now(),
        });
    }
}

/// The reads grouped into sequential rounds, in time order.
pub fn rounds(reads: &[Read]) -> Vec<Vec<Read>> {
    let mut sorted = reads.to_vec();
    sorted.sort_by_key(|read| read.started);
    let mut rounds: Vec<Vec<Read>> = Vec::new();
    let mut round_end: Option<Instant> = None;
    for read in sorted {
        match round_end {
            Some(end) if read.started < end => {
                round_end = Some(end.max(read.ended));
                rounds.last_mut().unwrap().push(read);
            }
            _ => {
                round_end = Some(read.ended);
                rounds.push(vec![read]);
            }
        }
    }
    rounds
}

#[async_trait]
impl BlobStore for RecordingStore {
    fn uri(&self) -> &str {
        self.inner.uri()
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let started = Instant::now();
        let data = self.inner.get_range(key, range.clone()).await;
        self.record(key, Some(range), started);
        data
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let started = Instant::now();
        let data = self.inner.get(key).await;
        self.record(key, None, started);
        data
    }

    async fn size(&self, key: &str) -> StoreResult<u64> {
        self.inner.size(key).await
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put(key, data).await
    }

    async fn put_file(&self, key: &str, local: &Path) -> StoreResult<()> {
        self.inner.put_file(key, local).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }

    async fn get_tagged(&self, key: &str) -> StoreResult<Option<(Bytes, String)>> {
        let started = Instant::now();
        let data = self.inner.get_tagged(key).await;
        self.record(key, None, started);
        data
    }

    async fn put_if(&self, key: &str, data: Bytes, expected: &Expected) -> StoreResult<()> {
        self.inner.put_if(key, data, expected).await
    }
}
