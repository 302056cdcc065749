//! The build's progress bar (indicatif): input bytes read, docs/s, hot and cold counts. Hidden
//! unless asked for (the CLI asks when stderr is a terminal).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Default)]
pub struct Progress {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    bar: ProgressBar,
    started: Instant,
    hot: AtomicU64,
    cold: AtomicU64,
    bytes: Mutex<Option<Arc<AtomicU64>>>,
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("visible", &self.inner.is_some())
            .finish()
    }
}

impl Progress {
    pub fn hidden() -> Progress {
        Progress { inner: None }
    }

    /// A bar on stderr.
    pub fn stderr() -> Progress {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress {
            inner: Some(Arc::new(Inner {
                bar,
                started: Instant::now(),
                hot: AtomicU64::new(0),
                cold: AtomicU64::new(0),
                bytes: Mutex::new(None),
            })),
        }
    }

    /// Input bytes to read in all, over every pass.
    pub fn set_total(&self, bytes: u64) {
        if let Some(inner) = &self.inner {
            inner.bar.set_length(bytes);
        }
    }

    pub fn watch_bytes(&self, counter: Arc<AtomicU64>) {
        if let Some(inner) = &self.inner {
            *inner.bytes.lock().expect("not poisoned") = Some(counter);
        }
    }

    pub fn set_stage(&self, stage: &str) {
        if let Some(inner) = &self.inner {
            inner.bar.set_prefix(stage.to_string());
        }
    }

    pub fn advance(&self, hot: u64, cold: u64) {
        let Some(inner) = &self.inner else { return };
        let hot = inner.hot.fetch_add(hot, Ordering::Relaxed) + hot;
        let cold = inner.cold.fetch_add(cold, Ordering::Relaxed) + cold;
        if let Some(bytes) = inner.bytes.lock().expect("not poisoned").as_ref() {
            inner.bar.set_position(bytes.load(Ordering::Relaxed));
        }
        let rate = (hot + cold) as f64 / inner.started.elapsed().as_secs_f64().max(1e-3);
        inner
            .bar
            .set_message(format!("{rate:.0} docs/s  hot {hot}  cold {cold}"));
    }

    pub fn finish(&self) {
        if let Some(inner) = &self.inner {
            inner.bar.finish_and_clear();
        }
    }
}
