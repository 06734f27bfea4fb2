//! Where requests' CPU work runs: off the async workers, on a pool of
//! [`ServiceConfig::cpu_concurrency`](super::ServiceConfig) threads (one per core by default)
//! that take requests in arrival order.
//!
//! Owns: running search, suggest, assist, routing and article reads. Must never: run index
//! writes (those stay on tokio's blocking pool, so a bulk upload does not stop search), or run
//! work for a request whose client has gone (a request dropped while it waits never starts).
//!
//! Why a pool of its own: this work is CPU-bound, so with more of it running than there are
//! cores, the kernel time-slices requests against each other — a slow search then takes twice
//! its own time and the quick ones next to it slow down too — and each extra thread keeps its
//! own allocator caches. A fixed pool fed by one first-in-first-out queue (rayon's, as
//! recommended for CPU-bound work under tokio) keeps every core busy, with no hand-off between a
//! finished request and the next, and shortens the latency tail at the same throughput.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pool = kefu::server::cpu::CpuPool::new(2);
//! assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
//! # });
//! ```

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::oneshot;

use super::error::ApiError;

/// A fixed pool of threads for requests' CPU work, first come first served. Cheap to clone.
#[derive(Clone)]
pub struct CpuPool {
    pool: Arc<rayon::ThreadPool>,
    running: Arc<AtomicUsize>,
    waiting: Arc<AtomicUsize>,
}

impl std::fmt::Debug for CpuPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuPool")
            .field("threads", &self.threads())
            .field("running", &self.running())
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl CpuPool {
    /// A pool of `threads` threads (at least one), named `kefu-cpu-N`.
    ///
    /// # Panics
    /// When the operating system refuses to start a thread (as `std::thread::spawn` does).
    pub fn new(threads: usize) -> CpuPool {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("kefu-cpu-{i}"))
            .build()
            .expect("start the CPU worker threads");
        CpuPool {
            pool: Arc::new(pool),
            running: Arc::new(AtomicUsize::new(0)),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Threads in the pool: how many requests' work may run at once.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Requests whose work is running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Requests whose work waits for a thread (a sustained queue means the cores are saturated).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Queues `work` behind the work already waiting and waits for its result. When the
    /// returned future is dropped before a thread takes the work (the client went away, or the
    /// request timed out), the work is skipped. A panic in `work` is a 500, not a dead thread.
    pub async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let (running, waiting) = (self.running.clone(), self.waiting.clone());
        waiting.fetch_add(1, Ordering::Relaxed);
        self.pool.spawn_fifo(move || {
            waiting.fetch_sub(1, Ordering::Relaxed);
            if tx.is_closed() {
                return;
            }
            running.fetch_add(1, Ordering::Relaxed);
            let result = std::panic::catch_unwind(AssertUnwindSafe(work));
            running.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(result);
        });
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(ApiError::internal(format_args!(
                    "request work panicked: {message}"
                )))
            }
            Err(_) => Err(ApiError::internal("request work was dropped unrun")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_threads_at_once() {
        let pool = CpuPool::new(2);
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (pool, now, peak) = (pool.clone(), now.clone(), peak.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                    .unwrap()
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(pool.running(), 0);
    }

    #[tokio::test]
    async fn waiting_work_runs_in_arrival_order_and_dropped_waiters_never_run() {
        let pool = CpuPool::new(1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        // Hold the only thread until released.
        let first = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move || release_rx.recv().unwrap()).await }
        });
        while pool.running() == 0 {
            tokio::task::yield_now().await;
        }
        let mut waiters = Vec::new();
        for i in 0..4 {
            let (waiter, order) = (pool.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                waiter.run(move || order.lock().unwrap().push(i)).await
            }));
            // Let each waiter queue its work before the next one arrives.
            while pool.waiting() < waiters.len() {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!((pool.running(), pool.waiting()), (1, 4));
        // A client that gave up while waiting: its work must not run.
        let gone = waiters.remove(2);
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        release_tx.send(()).unwrap();
        first.await.unwrap().unwrap();
        for w in waiters {
            w.await.unwrap().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 3]);
        assert_eq!((pool.running(), pool.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn a_panic_is_an_error_and_the_pool_keeps_working() {
        let pool = CpuPool::new(1);
        let err = pool.run(|| -> u32 { panic!("boom") }).await.unwrap_err();
        assert_eq!(err.status.as_u16(), 500);
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }

    #[test]
    fn at_least_one_thread() {
        assert_eq!(CpuPool::new(0).threads(), 1);
    }
}
