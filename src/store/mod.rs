//! Object storage by byte ranges: the one narrow trait every backend implements, and every
//! extra behaviour wraps, one file each: counting, per-request timeouts, the circuit breaker,
//! hedged reads over two replicas, and the bandwidth limit.

mod bandwidth;
mod breaker;
mod counting;
mod hedged;
mod local;
mod metered;
mod quick_ack;
mod s3;
mod timeout;

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::try_join_all;

pub use bandwidth::{Bandwidth, LimitedStore, Priority};
pub use breaker::{BreakerSettings, BreakerState, CircuitBreaker};
pub use counting::{CountingStore, StoreCounts};
pub use hedged::HedgedStore;
pub use local::LocalStore;
pub use metered::{MeteredStore, StoreMetrics};
pub use s3::{S3Options, S3Store};
pub use timeout::TimeoutStore;

/// Objects at most this large are written with one request; larger ones are uploaded in
/// parts by backends that support it.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
pub const MULTIPART_PART_SIZE: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    NotFound,
    /// The requested range is not inside the object.
    InvalidRange,
    /// The request was refused: bad credentials, no such bucket, a path we will not write.
    Refused,
    /// A network or server failure: the same request may work later.
    Unavailable,
    /// A local I/O failure (local backend, or a local file being uploaded).
    Io,
    /// A conditional write found the object other than expected (another writer got there).
    Conflict,
    /// The store cannot do what was asked (conditional writes on a server without them).
    Unsupported,
}

/// A failed store operation, naming the operation, the object and the byte range.
#[derive(Debug, thiserror::Error)]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub op: &'static str,
    /// `<store uri>/<key>`.
    pub object: String,
    pub range: Option<Range<u64>>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
    pub message: String,
}

impl StoreError {
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    pub fn new(
        kind: StoreErrorKind,
        op: &'static str,
        object: String,
        message: impl Into<String>,
    ) -> Self {
        StoreError {
            kind,
            op,
            object,
            range: None,
            source: None,
            message: message.into(),
        }
    }

    pub fn with_range(mut self, range: Range<u64>) -> Self {
        self.range = Some(range);
        self
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.object)?;
        if let Some(range) = &self.range {
            write!(f, " bytes {}..{}", range.start, range.end)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(source) = &self.source {
            // The SDKs' top-level messages are terse ("service error"): name the root cause.
            let mut cause: Option<&dyn std::error::Error> = Some(source.as_ref());
            let mut last = String::new();
            while let Some(err) = cause {
                last = err.to_string();
                cause = err.source();
            }
            if !last.is_empty() && !self.message.contains(&last) {
                write!(f, " ({last})")?;
            }
        }
        Ok(())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Key relative to the store root.
    pub key: String,
    pub size: u64,
}

/// Object storage addressed by key, read by byte ranges.
///
/// Contract, checked for every backend by `tests/store_conformance.rs`:
/// - Keys are `/`-separated relative paths without empty, `.` or `..` components.
/// - `get_range` returns exactly `range.end - range.start` bytes, or fails with `InvalidRange`
///   if the range reaches past the end of the object, or `NotFound`. An empty range returns
///   empty bytes (and may skip the request).
/// - `put` and `put_file` replace the object atomically: a reader sees the old object or the
///   new one, never a mix or a prefix. Large files are uploaded in parts where supported.
/// - `list(prefix)` returns every object whose key starts with `prefix`, sorted by key.
/// - `delete` of a missing object succeeds.
/// - `get_tagged` returns the object and a tag that changes whenever the object is replaced;
///   `put_if` replaces the object only if it is still as expected (absent, or with that tag),
///   atomically with respect to other `put_if` calls, else fails with `Conflict`. A store that
///   cannot write conditionally fails with `Unsupported` (the default).
/// - Every error names the operation, the object and, for reads, the range.
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug + 'static {
    /// Where this store points, for messages: `file:///srv/idx` or `s3://bucket/prefix`.
    fn uri(&self) -> &str;

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes>;

    /// Several ranges of one object; the default issues them all concurrently.
    async fn get_ranges(&self, key: &str, ranges: &[Range<u64>]) -> StoreResult<Vec<Bytes>> {
        try_join_all(
            ranges
                .iter()
                .map(|range| self.get_range(key, range.clone())),
        )
        .await
    }

    /// A whole object (manifests, block tables: small things).
    async fn get(&self, key: &str) -> StoreResult<Bytes>;

    async fn size(&self, key: &str) -> StoreResult<u64>;

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()>;

    /// Uploads a local file without holding it in memory.
    async fn put_file(&self, key: &str, local: &Path) -> StoreResult<()>;

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>>;

    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// A whole object and its tag (S3: the ETag), `None` when it does not exist.
    async fn get_tagged(&self, key: &str) -> StoreResult<Option<(Bytes, String)>> {
        Err(StoreError::new(
            StoreErrorKind::Unsupported,
            "get_tagged",
            format!("{}/{key}", self.uri()),
            "this store does not tag objects",
        ))
    }

    /// Writes `data` only if the object is as `expected` (see the contract).
    async fn put_if(&self, key: &str, data: Bytes, expected: &Expected) -> StoreResult<()> {
        let _ = (data, expected);
        Err(StoreError::new(
            StoreErrorKind::Unsupported,
            "put_if",
            format!("{}/{key}", self.uri()),
            "this store cannot write conditionally",
        ))
    }
}

/// What a conditional write expects to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Absent,
    /// The tag `get_tagged` returned.
    Tag(String),
}

/// Checks a key against the contract's alphabet; backends call it before any I/O.
pub fn check_key(op: &'static str, store_uri: &str, key: &str) -> StoreResult<()> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(StoreError::new(
            StoreErrorKind::Refused,
            op,
            format!("{store_uri}/{key}"),
            "invalid key: keys are relative paths without empty, `.` or `..` parts",
        ));
    }
    Ok(())
}

pub fn check_range(
    op: &'static str,
    object: impl FnOnce() -> String,
    range: &Range<u64>,
) -> StoreResult<()> {
    if range.start > range.end {
        return Err(StoreError::new(
            StoreErrorKind::InvalidRange,
            op,
            object(),
            "range start is after its end",
        )
        .with_range(range.clone()));
    }
    Ok(())
}

/// Opens a store from a URI: `s3://bucket/prefix[?endpoint=URL&path_style=true&region=R]`,
/// `file:///path`, or a plain local path.
pub async fn open_store(uri: &str) -> StoreResult<Arc<dyn BlobStore>> {
    open_store_with(uri, false).await
}

/// A store for a serving node: a refused or reset connection fails at once instead of being
/// retried by the S3 client (the node answers degraded, and its breaker counts the failure).
pub async fn open_serving_store(uri: &str) -> StoreResult<Arc<dyn BlobStore>> {
    open_store_with(uri, true).await
}

async fn open_store_with(uri: &str, fail_fast: bool) -> StoreResult<Arc<dyn BlobStore>> {
    if let Some(rest) = uri.strip_prefix("s3://") {
        let mut options = S3Options::parse(rest).map_err(|message| {
            StoreError::new(StoreErrorKind::Refused, "open", uri.to_string(), message)
        })?;
        options.fail_fast |= fail_fast;
        return Ok(Arc::new(S3Store::connect(options).await?));
    }
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    if path.contains("://") {
        return Err(StoreError::new(
            StoreErrorKind::Refused,
            "open",
            uri.to_string(),
            "unknown store scheme: use s3://bucket/prefix, file:///path or a plain path",
        ));
    }
    Ok(Arc::new(LocalStore::new(path)?))
}
