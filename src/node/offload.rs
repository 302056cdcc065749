//! Where a request's CPU work (tantivy search, document reads, parquet decoding) runs.
//!
//! Short work runs on the runtime worker that polled the request, like any other code of the
//! task. Work that may take long first hands the worker off with `block_in_place`: tokio gives
//! that worker's queue and driver to another thread, so every other task keeps running while
//! this one computes. Whether work is short is decided before it starts, from what it will
//! touch (`cost` for a search, the number of documents or pages for reads), never from a
//! clock: an unknown size counts as long.
//!
//! Why not hand every search off: the hand-off wakes another thread, and on the 2-core build
//! machine that costs a fifth of a short search behind gRPC (both tiers, server-side p50
//! 0.134 ms with `inline_postings` 0, 0.111 ms with 20,000; `cargo bench --bench node`,
//! docs/benchmarks.md at `2bd60b0`). A `spawn_blocking` round trip costs more still: it wakes a pool thread
//! and then the parked worker (`cargo bench --bench machine_costs`). Under load the hand-offs
//! cost more than they give: the cores are busy either way, and each moves the worker's queue
//! to a thread that must be woken. With the default at 20,000 postings, 1,060 of the bench's
//! 8,200 PyPI searches handed off, and the node's throughput under 64 clients was 0.66× that of
//! tantivy behind the same server; at 200,000, 256 did and it was 0.72× (docs/benchmarks.md at
//! `1f7f4cd`). A search bounded to 200,000 postings that reads them all (as a rank profile
//! does) holds its worker for a millisecond or two: an estimate at 5–10 ns a scored posting,
//! not measured apart. A BM25 ranking of the top hits reads a small part of its bound, so it
//! may count ten times as many (`cost::ranking_budget`): then none of the bench's searches
//! handed off, and the load's p99 latency went down with the hand-offs, from 1.46× to 1.23× of
//! tantivy's (docs/benchmarks.md at `9502411`). Rankings remain bounded
//! by the node's search permits; parquet decoding and the degraded hot backfill hold no permit
//! (their number is bounded by the searches in flight, not by the permits).
//!
//! A current-thread runtime (tests with paused time) cannot hand its only worker away; there
//! all such work goes to the blocking pool.

use tokio::runtime::{Handle, RuntimeFlavor};

use super::NodeError;

/// Runs a request's CPU work and returns its result: on the calling worker in the
/// multi-threaded runtime, so `work` must pass anything that may take long through
/// [`sized`]; on the blocking pool otherwise.
pub async fn cpu_work<T, F>(work: F) -> Result<T, NodeError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Handle::current().runtime_flavor() {
        RuntimeFlavor::MultiThread => Ok(work()),
        _ => tokio::task::spawn_blocking(work)
            .await
            .map_err(|err| NodeError::Internal(format!("off-runtime task: {err}"))),
    }
}

/// How long a piece of CPU work is expected to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Short,
    Long,
}

impl Size {
    /// Short when `amount` is known and at most `budget`.
    pub fn of(amount: Option<u64>, budget: u64) -> Size {
        match amount {
            Some(amount) if amount <= budget => Size::Short,
            _ => Size::Long,
        }
    }
}

/// Runs `work`, called within [`cpu_work`]: at once when short; when long, after handing the
/// runtime worker's other tasks to another thread (on a worker of the multi-threaded runtime;
/// elsewhere the thread is not a worker and there is nothing to hand off).
pub fn sized<T>(size: Size, work: impl FnOnce() -> T) -> T {
    if size == Size::Short {
        return work();
    }
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Runs CPU work of `size` for a request: [`sized`] within [`cpu_work`].
pub async fn sized_work<T, F>(size: Size, work: F) -> Result<T, NodeError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    cpu_work(move || sized(size, work)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a task spawned while `size` work runs on the runtime's only worker ran before
    /// that work ended.
    async fn other_task_ran_during(size: Size) -> bool {
        let other_ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = other_ran.clone();
        let (started_sender, started) = std::sync::mpsc::channel();
        let work = tokio::spawn(cpu_work(move || {
            sized(size, move || {
                started_sender.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(200));
                seen.load(std::sync::atomic::Ordering::SeqCst)
            })
        }));
        started.recv().unwrap();
        let flag = other_ran.clone();
        let other = tokio::spawn(async move {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let ran_during = work.await.unwrap().unwrap();
        other.await.unwrap();
        ran_during
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn short_work_keeps_its_worker_and_long_work_hands_it_off() {
        assert!(!other_task_ran_during(Size::Short).await);
        assert!(other_task_ran_during(Size::Long).await);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn current_thread_runtime_uses_the_blocking_pool() {
        let caller = std::thread::current().id();
        let (worker, long) = cpu_work(|| {
            (
                std::thread::current().id(),
                sized(Size::Long, || std::thread::current().id()),
            )
        })
        .await
        .unwrap();
        assert_ne!(caller, worker);
        assert_eq!(worker, long);
    }

    #[test]
    fn a_size_is_short_only_when_known_and_within_budget() {
        assert_eq!(Size::of(Some(10), 10), Size::Short);
        assert_eq!(Size::of(Some(11), 10), Size::Long);
        assert_eq!(Size::of(None, u64::MAX), Size::Long);
        assert_eq!(Size::of(Some(0), 0), Size::Short);
    }
}
