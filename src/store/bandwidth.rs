//! A limit on bytes per second read from storage, shared by every reader of the node. Query
//! reads go first: a bulk read (rehydration, prefetch) waits while any query read is waiting.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use super::{BlobStore, Expected, ObjectMeta, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Query,
    Bulk,
}

#[derive(Debug)]
struct Bucket {
    /// May go negative: a read larger than the bucket borrows from the future.
    tokens: f64,
    refilled: Instant,
    queries_waiting: usize,
}

/// A token bucket holding one second of bandwidth.
#[derive(Debug)]
pub struct Bandwidth {
    bytes_per_second: f64,
    bucket: Mutex<Bucket>,
    query_done: Notify,
}

impl Bandwidth {
    pub fn new(bytes_per_second: u64) -> Arc<Bandwidth> {
        Arc::new(Bandwidth {
            bytes_per_second: bytes_per_second.max(1) as f64,
            bucket: Mutex::new(Bucket {
                tokens: bytes_per_second.max(1) as f64,
                refilled: Instant::now(),
                queries_waiting: 0,
            }),
            query_done: Notify::new(),
        })
    }

    /// Waits until `bytes` may be read.
    pub async fn acquire(&self, bytes: u64, priority: Priority) {
        // A query read stops counting as waiting however its wait ends: granted, or dropped
        // with a search that ran out of time. Counted otherwise, it would hold bulk reads back
        // for good.
        let _waiting = (priority == Priority::Query).then(|| QueryWaiting::new(self));
        loop {
            let wait = {
                let mut bucket = self.bucket.lock().expect("not poisoned");
                let now = Instant::now();
                let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
                bucket.tokens =
                    (bucket.tokens + elapsed * self.bytes_per_second).min(self.bytes_per_second);
                bucket.refilled = now;
                if priority == Priority::Bulk && bucket.queries_waiting > 0 {
                    None
                } else if bucket.tokens > 0.0 {
                    bucket.tokens -= bytes as f64;
                    break;
                } else {
                    Some(Duration::from_secs_f64(
                        -bucket.tokens / self.bytes_per_second + 0.001,
                    ))
                }
            };
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => {
                    // Re-check at least every few milliseconds: the queries may be sleeping too.
                    let _ =
                        tokio::time::timeout(Duration::from_millis(5), self.query_done.notified())
                            .await;
                }
            }
        }
    }
}

/// One query read counted in `queries_waiting` while it lives.
struct QueryWaiting<'a>(&'a Bandwidth);

impl<'a> QueryWaiting<'a> {
    fn new(bandwidth: &'a Bandwidth) -> QueryWaiting<'a> {
        bandwidth
            .bucket
            .lock()
            .expect("not poisoned")
            .queries_waiting += 1;
        QueryWaiting(bandwidth)
    }
}

impl Drop for QueryWaiting<'_> {
    fn drop(&mut self) {
        self.0.bucket.lock().expect("not poisoned").queries_waiting -= 1;
        self.0.query_done.notify_waiters();
    }
}

/// A store whose reads draw on a shared `Bandwidth` at one priority.
#[derive(Debug, Clone)]
pub struct LimitedStore {
    inner: Arc<dyn BlobStore>,
    bandwidth: Arc<Bandwidth>,
    priority: Priority,
}

impl LimitedStore {
    pub fn new(
        inner: Arc<dyn BlobStore>,
        bandwidth: Arc<Bandwidth>,
        priority: Priority,
    ) -> LimitedStore {
        LimitedStore {
            inner,
            bandwidth,
            priority,
        }
    }
}

#[async_trait]
impl BlobStore for LimitedStore {
    fn uri(&self) -> &str {
        self.inner.uri()
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.bandwidth
            .acquire(range.end.saturating_sub(range.start), self.priority)
            .await;
        self.inner.get_range(key, range).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        // The size is known only afterwards: charge it then, so later reads wait for it.
        let data = self.inner.get(key).await?;
        self.bandwidth
            .acquire(data.len() as u64, self.priority)
            .await;
        Ok(data)
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
        self.inner.get_tagged(key).await
    }

    async fn put_if(&self, key: &str, data: Bytes, expected: &Expected) -> StoreResult<()> {
        self.inner.put_if(key, data, expected).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reads_are_paced_and_queries_go_first() {
        let bandwidth = Bandwidth::new(1000);
        let started = tokio::time::Instant::now();
        // A full bucket lets one second's worth through; the debt of the next read is then
        // paid by waiting.
        for _ in 0..3 {
            bandwidth.acquire(1000, Priority::Bulk).await;
        }
        assert!(
            started.elapsed() >= Duration::from_millis(990),
            "{:?}",
            started.elapsed()
        );
        assert!(
            started.elapsed() < Duration::from_millis(1100),
            "{:?}",
            started.elapsed()
        );

        // With the bucket empty, a waiting bulk read lets a later query read go first.
        let order = Arc::new(Mutex::new(Vec::new()));
        let bulk = {
            let bandwidth = bandwidth.clone();
            let order = order.clone();
            tokio::spawn(async move {
                bandwidth.acquire(500, Priority::Bulk).await;
                order.lock().unwrap().push("bulk");
            })
        };
        tokio::task::yield_now().await;
        let query = {
            let bandwidth = bandwidth.clone();
            let order = order.clone();
            tokio::spawn(async move {
                bandwidth.acquire(500, Priority::Query).await;
                order.lock().unwrap().push("query");
            })
        };
        query.await.unwrap();
        bulk.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["query", "bulk"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_query_read_given_up_does_not_hold_bulk_reads_back() {
        let bandwidth = Bandwidth::new(1000);
        bandwidth.acquire(3000, Priority::Bulk).await;
        // The bucket owes two seconds; a query read waiting for it is given up, as by a search
        // whose budget ran out.
        let given_up = tokio::time::timeout(
            Duration::from_millis(100),
            bandwidth.acquire(10, Priority::Query),
        )
        .await;
        assert!(given_up.is_err());
        let bulk = tokio::time::timeout(
            Duration::from_secs(10),
            bandwidth.acquire(10, Priority::Bulk),
        )
        .await;
        assert!(
            bulk.is_ok(),
            "a bulk read still waits for the abandoned query read"
        );
    }
}
