//! Two replicas of the same content, read with hedging: a request goes to the replica that has
//! been faster lately; if it has not answered within an adaptive delay (that replica's recent
//! p90, so that a replica slowing up to a tenth of its requests has those hedged; with a p95
//! a 5% slowdown moves the delay itself), the same request goes to the other one too, and the
//! first good answer wins. A replica that fails sends the request to the other at once. Writes
//! go to both.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::{Either, select};

use super::{BlobStore, Expected, ObjectMeta, StoreResult};

/// Latencies remembered per replica.
const WINDOW: usize = 200;
/// Bounds of the hedging delay.
const MIN_DELAY: Duration = Duration::from_millis(2);
const MAX_DELAY: Duration = Duration::from_secs(2);
/// The delay before a replica has a history.
const INITIAL_DELAY: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct Window {
    samples: VecDeque<Duration>,
}

impl Window {
    fn push(&mut self, sample: Duration) {
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    fn p90(&self) -> Option<Duration> {
        if self.samples.len() < 10 {
            return None;
        }
        let mut sorted: Vec<Duration> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        Some(sorted[(sorted.len() - 1) * 90 / 100])
    }
}

#[derive(Debug)]
pub struct HedgedStore {
    replicas: [Arc<dyn BlobStore>; 2],
    windows: [Mutex<Window>; 2],
    uri: String,
    hedged: AtomicU64,
}

/// Records how long a request took, also when it is dropped unfinished (a losing or abandoned
/// request took at least that long).
struct Timer<'a> {
    window: &'a Mutex<Window>,
    started: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.window
            .lock()
            .expect("not poisoned")
            .push(self.started.elapsed());
    }
}

impl HedgedStore {
    pub fn new(primary: Arc<dyn BlobStore>, secondary: Arc<dyn BlobStore>) -> HedgedStore {
        let uri = format!("{} + {}", primary.uri(), secondary.uri());
        HedgedStore {
            replicas: [primary, secondary],
            windows: [Mutex::default(), Mutex::default()],
            uri,
            hedged: AtomicU64::new(0),
        }
    }

    /// Requests that went to both replicas.
    pub fn hedged_requests(&self) -> u64 {
        self.hedged.load(Ordering::Relaxed)
    }

    fn p90(&self, replica: usize) -> Option<Duration> {
        self.windows[replica].lock().expect("not poisoned").p90()
    }

    /// The replica to ask first, and its recent p90.
    fn preferred(&self) -> (usize, Option<Duration>) {
        match (self.p90(0), self.p90(1)) {
            (Some(first), Some(second)) if second < first => (1, Some(second)),
            (first, _) => (0, first),
        }
    }

    async fn timed<T>(
        &self,
        replica: usize,
        request: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let _timer = Timer {
            window: &self.windows[replica],
            started: Instant::now(),
        };
        request.await
    }

    async fn hedge<'a, T, F, Fut>(&'a self, request: F) -> StoreResult<T>
    where
        F: Fn(&'a Arc<dyn BlobStore>) -> Fut,
        Fut: Future<Output = StoreResult<T>> + 'a,
    {
        let (first, p90) = self.preferred();
        let second = 1 - first;
        let delay = p90.unwrap_or(INITIAL_DELAY).clamp(MIN_DELAY, MAX_DELAY);
        let mut primary = Box::pin(self.timed(first, request(&self.replicas[first])));
        match tokio::time::timeout(delay, &mut primary).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) => {
                // Failed fast: the other replica may have it.
                return self
                    .timed(second, request(&self.replicas[second]))
                    .await
                    .map_err(|_| err);
            }
            Err(_) => {}
        }
        self.hedged.fetch_add(1, Ordering::Relaxed);
        let backup = Box::pin(self.timed(second, request(&self.replicas[second])));
        match select(primary, backup).await {
            Either::Left((Ok(value), _)) | Either::Right((Ok(value), _)) => Ok(value),
            Either::Left((Err(err), other)) | Either::Right((Err(err), other)) => {
                other.await.map_err(|_| err)
            }
        }
    }
}

#[async_trait]
impl BlobStore for HedgedStore {
    fn uri(&self) -> &str {
        &self.uri
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.hedge(|store| store.get_range(key, range.clone()))
            .await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.hedge(|store| store.get(key)).await
    }

    async fn size(&self, key: &str) -> StoreResult<u64> {
        self.hedge(|store| store.size(key)).await
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.replicas[0].put(key, data.clone()).await?;
        self.replicas[1].put(key, data).await
    }

    async fn put_file(&self, key: &str, local: &Path) -> StoreResult<()> {
        self.replicas[0].put_file(key, local).await?;
        self.replicas[1].put_file(key, local).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.hedge(|store| store.list(prefix)).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.replicas[0].delete(key).await?;
        self.replicas[1].delete(key).await
    }

    /// Conditional writes go to the first replica alone: a condition holds on one store.
    async fn get_tagged(&self, key: &str) -> StoreResult<Option<(Bytes, String)>> {
        self.replicas[0].get_tagged(key).await
    }

    async fn put_if(&self, key: &str, data: Bytes, expected: &Expected) -> StoreResult<()> {
        self.replicas[0].put_if(key, data, expected).await
    }
}
