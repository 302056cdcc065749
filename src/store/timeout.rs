//! A time limit on every request: a store that hangs answers `Unavailable` instead, which the
//! circuit breaker counts and callers can retry elsewhere.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobStore, Expected, ObjectMeta, StoreError, StoreErrorKind, StoreResult};

#[derive(Debug, Clone)]
pub struct TimeoutStore {
    inner: Arc<dyn BlobStore>,
    /// Reads and small requests.
    request_timeout: Duration,
}

impl TimeoutStore {
    pub fn new(inner: Arc<dyn BlobStore>, request_timeout: Duration) -> TimeoutStore {
        TimeoutStore {
            inner,
            request_timeout,
        }
    }

    async fn limited<T>(
        &self,
        op: &'static str,
        key: &str,
        range: Option<Range<u64>>,
        request: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let limit = self.request_timeout;
        match tokio::time::timeout(limit, request).await {
            Ok(result) => result,
            Err(_) => {
                let err = StoreError::new(
                    StoreErrorKind::Unavailable,
                    op,
                    format!("{}/{key}", self.inner.uri()),
                    format!("no answer within {} ms", limit.as_millis()),
                );
                Err(match range {
                    Some(range) => err.with_range(range),
                    None => err,
                })
            }
        }
    }
}

#[async_trait]
impl BlobStore for TimeoutStore {
    fn uri(&self) -> &str {
        self.inner.uri()
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.limited(
            "get_range",
            key,
            Some(range.clone()),
            self.inner.get_range(key, range.clone()),
        )
        .await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.limited("get", key, None, self.inner.get(key)).await
    }

    async fn size(&self, key: &str) -> StoreResult<u64> {
        self.limited("size", key, None, self.inner.size(key)).await
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put(key, data).await
    }

    async fn put_file(&self, key: &str, local: &Path) -> StoreResult<()> {
        // Uploads take as long as their size needs; the SDK's own timeouts apply.
        self.inner.put_file(key, local).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.limited("list", prefix, None, self.inner.list(prefix))
            .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.limited("delete", key, None, self.inner.delete(key))
            .await
    }

    async fn get_tagged(&self, key: &str) -> StoreResult<Option<(Bytes, String)>> {
        self.limited("get_tagged", key, None, self.inner.get_tagged(key))
            .await
    }

    async fn put_if(&self, key: &str, data: Bytes, expected: &Expected) -> StoreResult<()> {
        self.limited("put_if", key, None, self.inner.put_if(key, data, expected))
            .await
    }
}
