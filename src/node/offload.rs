//! CPU work of a request (tantivy search, parquet decoding) taken off the async runtime.
//!
//! On the multi-threaded runtime the work runs on the calling worker thread through
//! `block_in_place`: tokio first hands that worker's queue and driver to another thread, so
//! every other task keeps running while this one computes. The request itself then waits for
//! no thread: a `spawn_blocking` round trip wakes a parked pool thread and, when it is done,
//! wakes the parked worker back: two wake-ups, p50 20.9 µs after idleness on the 2-core build
//! machine against 7.2 µs for `block_in_place` (`cargo bench --bench machine_costs`), where a
//! whole hot search takes about 90 µs. Rankings remain bounded by the node's search permits,
//! so at most that many threads rank at once; parquet decoding and the degraded hot backfill
//! hold no permit (their number is bounded by the searches in flight, not by the permits).
//!
//! A current-thread runtime (tests with paused time) cannot hand its only worker away; there
//! the work goes to the blocking pool.

use tokio::runtime::{Handle, RuntimeFlavor};

use super::NodeError;

/// Runs `work` off the async runtime and returns its result.
pub async fn off_runtime<T, F>(work: F) -> Result<T, NodeError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Handle::current().runtime_flavor() {
        RuntimeFlavor::MultiThread => Ok(tokio::task::block_in_place(work)),
        _ => tokio::task::spawn_blocking(work)
            .await
            .map_err(|err| NodeError::Internal(format!("off-runtime task: {err}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_only_worker_keeps_serving_other_tasks_while_work_runs() {
        let (started_sender, started) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let work = tokio::spawn(off_runtime(move || {
            started_sender.send(()).unwrap();
            released.recv().unwrap();
            7
        }));
        started.recv().unwrap();
        // The work holds the runtime's one worker thread: other tasks finish only if that
        // worker's queue moved to another thread.
        let other = tokio::spawn(async { 2 * 3 });
        let waited = std::time::Instant::now();
        while !other.is_finished() {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(10),
                "another task did not run while the work computed"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(other.await.unwrap(), 6);
        release.send(()).unwrap();
        assert_eq!(work.await.unwrap().unwrap(), 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn current_thread_runtime_uses_the_blocking_pool() {
        let caller = std::thread::current().id();
        let worker = off_runtime(|| std::thread::current().id()).await.unwrap();
        assert_ne!(caller, worker);
    }
}
