//! Prometheus counters of the requests a store is sent: requests, bytes and errors per
//! operation, labelled with a fixed name for the store ("primary", "replica"), never a key.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus::{IntCounterVec, Opts, Registry};

use super::{BlobStore, Expected, ObjectMeta, StoreErrorKind, StoreResult};

/// The counters, shared by every metered store of a node.
#[derive(Clone)]
pub struct StoreMetrics {
    requests: IntCounterVec,
    bytes: IntCounterVec,
    errors: IntCounterVec,
}

impl StoreMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<StoreMetrics> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<_> {
            let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(counter.clone()))?;
            Ok(counter)
        };
        Ok(StoreMetrics {
            requests: counter(
                "tierdex_storage_requests_total",
                "Requests sent to object storage, by store and operation (a range read is one)",
                &["store", "operation"],
            )?,
            bytes: counter(
                "tierdex_storage_bytes_total",
                "Bytes read from (get, get_range) or written to (put) object storage",
                &["store", "operation"],
            )?,
            errors: counter(
                "tierdex_storage_errors_total",
                "Failed storage requests, by store, operation and kind (unavailable covers \
                 time-outs and refused connections)",
                &["store", "operation", "kind"],
            )?,
        })
    }
}

/// `inner` with its requests counted under `store`.
pub struct MeteredStore {
    inner: Arc<dyn BlobStore>,
    store: &'static str,
    metrics: StoreMetrics,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn BlobStore>, store: &'static str, metrics: StoreMetrics) -> Self {
        MeteredStore {
            inner,
            store,
            metrics,
        }
    }

    /// Counted when sent: a request whose caller stops waiting (a hedge's loser, a search past
    /// its deadline) still went to the store.
    fn sent(&self, operation: &'static str) {
        self.metrics
            .requests
            .with_label_values(&[self.store, operation])
            .inc();
    }

    fn count<T>(
        &self,
        operation: &'static str,
        result: StoreResult<T>,
        bytes: impl FnOnce(&T) -> u64,
    ) -> StoreResult<T> {
        let labels = [self.store, operation];
        match &result {
            Ok(value) => self
                .metrics
                .bytes
                .with_label_values(&labels)
                .inc_by(bytes(value)),
            Err(err) => {
                let kind = match err.kind() {
                    StoreErrorKind::NotFound => "not_found",
                    StoreErrorKind::InvalidRange => "invalid_range",
                    StoreErrorKind::Refused => "refused",
                    StoreErrorKind::Unavailable => "unavailable",
                    StoreErrorKind::Io => "io",
                    StoreErrorKind::Conflict => "conflict",
                    StoreErrorKind::Unsupported => "unsupported",
                };
                self.metrics
                    .errors
                    .with_label_values(&[self.store, operation, kind])
                    .inc();
            }
        }
        result
    }
}

impl std::fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredStore")
            .field("store", &self.store)
            .field("inner", &self.inner.uri())
            .finish()
    }
}

#[async_trait]
impl BlobStore for MeteredStore {
    fn uri(&self) -> &str {
        self.inner.uri()
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.sent("get_range");
        let result = self.inner.get_range(key, range).await;
        self.count("get_range", result, |bytes| bytes.len() as u64)
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.sent("get");
        let result = self.inner.get(key).await;
        self.count("get", result, |bytes| bytes.len() as u64)
    }

    async fn size(&self, key: &str) -> StoreResult<u64> {
        self.sent("head");
        let result = self.inner.size(key).await;
        self.count("head", result, |_| 0)
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let length = data.len() as u64;
        self.sent("put");
        let result = self.inner.put(key, data).await;
        self.count("put", result, |_| length)
    }

    async fn put_file(&self, key: &str, local: &Path) -> StoreResult<()> {
        let length = tokio::fs::metadata(local)
            .await
            .map_or(0, |metadata| metadata.len());
        self.sent("put");
        let result = self.inner.put_file(key, local).await;
        self.count("put", result, |_| length)
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.sent("list");
        let result = self.inner.list(prefix).await;
        self.count("list", result, |_| 0)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.sent("delete");
        let result = self.inner.delete(key).await;
        self.count("delete", result, |_| 0)
    }

    async fn get_tagged(&self, key: &str) -> StoreResult<Option<(Bytes, String)>> {
        self.sent("get");
        let result = self.inner.get_tagged(key).await;
        self.count("get", result, |found| {
            found.as_ref().map_or(0, |(bytes, _)| bytes.len() as u64)
        })
    }

    async fn put_if(&self, key: &str, data: Bytes, expected: &Expected) -> StoreResult<()> {
        let length = data.len() as u64;
        self.sent("put");
        let result = self.inner.put_if(key, data, expected).await;
        self.count("put", result, |_| length)
    }
}
