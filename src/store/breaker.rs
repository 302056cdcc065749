//! A circuit breaker: after repeated failures (errors or timeouts, not "not found"), requests
//! stop going to storage for a cool-down and fail at once; then one probe request decides
//! whether to close again. Searches look at the state to answer from the hot tier at once
//! while it is open.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{BlobStore, Expected, ObjectMeta, StoreError, StoreErrorKind, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Requests fail at once until the cool-down ends.
    Open,
    /// One probe request is deciding.
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures_to_open: u32,
    pub cool_down: Duration,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Instant,
    probing: bool,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    inner: Arc<dyn BlobStore>,
    settings: BreakerSettings,
    state: Mutex<Inner>,
    changes: watch::Sender<BreakerState>,
}

/// How a request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Normal,
    Probe,
}

impl CircuitBreaker {
    pub fn new(inner: Arc<dyn BlobStore>, settings: BreakerSettings) -> Arc<CircuitBreaker> {
        Arc::new(CircuitBreaker {
            inner,
            settings,
            state: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: Instant::now(),
                probing: false,
            }),
            changes: watch::channel(BreakerState::Closed).0,
        })
    }

    pub fn state(&self) -> BreakerState {
        self.state.lock().expect("not poisoned").state
    }

    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.changes.subscribe()
    }

    /// False while requests would be refused at once: searches then skip storage entirely.
    pub fn allows_requests(&self) -> bool {
        let inner = self.state.lock().expect("not poisoned");
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => inner.opened_at.elapsed() >= self.settings.cool_down,
            BreakerState::HalfOpen => !inner.probing,
        }
    }

    fn set_state(&self, inner: &mut Inner, state: BreakerState) {
        if inner.state != state {
            inner.state = state;
            self.changes.send_replace(state);
        }
    }

    fn admit(&self, op: &'static str, key: &str) -> StoreResult<Admission> {
        let mut inner = self.state.lock().expect("not poisoned");
        let admission = match inner.state {
            BreakerState::Closed => Some(Admission::Normal),
            BreakerState::Open if inner.opened_at.elapsed() >= self.settings.cool_down => {
                self.set_state(&mut inner, BreakerState::HalfOpen);
                inner.probing = true;
                Some(Admission::Probe)
            }
            BreakerState::HalfOpen if !inner.probing => {
                inner.probing = true;
                Some(Admission::Probe)
            }
            _ => None,
        };
        admission.ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::Unavailable,
                op,
                format!("{}/{key}", self.inner.uri()),
                "circuit breaker open: storage is failing, requests are paused",
            )
        })
    }

    fn record<T>(&self, admission: Admission, result: &StoreResult<T>) {
        let failed = matches!(result, Err(err) if err.kind() == StoreErrorKind::Unavailable);
        let mut inner = self.state.lock().expect("not poisoned");
        match (admission, failed) {
            (Admission::Probe, false) => {
                inner.probing = false;
                inner.consecutive_failures = 0;
                info!(
                    store = self.inner.uri(),
                    "storage answers again: circuit breaker closed"
                );
                self.set_state(&mut inner, BreakerState::Closed);
            }
            (Admission::Probe, true) => {
                inner.probing = false;
                inner.opened_at = Instant::now();
                self.set_state(&mut inner, BreakerState::Open);
            }
            (Admission::Normal, false) => {
                if inner.state == BreakerState::Closed {
                    inner.consecutive_failures = 0;
                }
            }
            (Admission::Normal, true) => {
                inner.consecutive_failures += 1;
                if inner.state == BreakerState::Closed
                    && inner.consecutive_failures >= self.settings.failures_to_open
                {
                    inner.opened_at = Instant::now();
                    warn!(
                        store = self.inner.uri(),
                        failures = inner.consecutive_failures,
                        cool_down_ms = self.settings.cool_down.as_millis() as u64,
                        "storage keeps failing: circuit breaker open"
                    );
                    self.set_state(&mut inner, BreakerState::Open);
                }
            }
        }
    }

    async fn call<T>(
        &self,
        op: &'static str,
        key: &str,
        request: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let admission = self.admit(op, key)?;
        // A request dropped before it finished (its caller gave up) counts as a failure: a
        // store that hangs must open the breaker too.
        let mut guard = DropGuard {
            breaker: self,
            admission,
            armed: true,
        };
        let result = request.await;
        guard.armed = false;
        self.record(admission, &result);
        result
    }
}

struct DropGuard<'a> {
    breaker: &'a CircuitBreaker,
    admission: Admission,
    armed: bool,
}

impl Drop for DropGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let abandoned: StoreResult<()> = Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "request",
                String::new(),
                "abandoned",
            ));
            self.breaker.record(self.admission, &abandoned);
        }
    }
}

#[async_trait]
impl BlobStore for CircuitBreaker {
    fn uri(&self) -> &str {
        self.inner.uri()
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.call("get_range", key, self.inner.get_range(key, range.clone()))
            .await
            .map_err(|err| {
                if err.range.is_none() {
                    err.with_range(range)
                } else {
                    err
                }
            })
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.call("get", key, self.inner.get(key)).await
    }

    async fn size(&self, key: &str) -> StoreResult<u64> {
        self.call("size", key, self.inner.size(key)).await
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.call("put", key, self.inner.put(key, data)).await
    }

    async fn put_file(&self, key: &str, local: &Path) -> StoreResult<()> {
        self.call("put_file", key, self.inner.put_file(key, local))
            .await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.call("list", prefix, self.inner.list(prefix)).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.call("delete", key, self.inner.delete(key)).await
    }

    async fn get_tagged(&self, key: &str) -> StoreResult<Option<(Bytes, String)>> {
        self.call("get_tagged", key, self.inner.get_tagged(key))
            .await
    }

    async fn put_if(&self, key: &str, data: Bytes, expected: &Expected) -> StoreResult<()> {
        self.call("put_if", key, self.inner.put_if(key, data, expected))
            .await
    }
}
