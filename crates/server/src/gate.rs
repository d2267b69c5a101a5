//! The gate heavy requests pass through: queries, series and label lookups.
//!
//! Parsing and evaluating a query, or walking the index for `/api/v1/series`, can take
//! seconds; on an async worker that would stall every other request, `/-/healthy`
//! included. [`QueryGate::run`] runs such work on the blocking pool (whose threads the
//! binary gives a large stack, so the deepest query the parser accepts fits), at most
//! `max_concurrency` at a time as Prometheus's `--query.max-concurrency` does; the rest
//! wait their turn. Each piece of work gets a cancellation flag, set when its client goes
//! away and, for all of them, by [`QueryGate::cancel_all`] at shutdown, so SIGTERM does
//! not wait for a query that would run for minutes.

use crate::Error;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// Prometheus's default `--query.max-concurrency`.
pub const DEFAULT_MAX_CONCURRENCY: usize = 20;

/// Bounds and cancels the heavy requests of one server. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct QueryGate {
    permits: Arc<Semaphore>,
    running: Mutex<HashMap<u64, Arc<AtomicBool>>>,
    next: AtomicU64,
    stopping: AtomicBool,
}

impl Default for QueryGate {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_CONCURRENCY)
    }
}

/// Sets the flag when dropped: a handler future dropped because its client went away
/// cancels the work it was waiting for.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl QueryGate {
    /// A gate letting `max_concurrency` (at least 1) pieces of work run at once.
    pub fn new(max_concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrency.max(1))),
            running: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    /// Pieces of work running now.
    pub fn running(&self) -> usize {
        self.running.lock().expect("lock poisoned").len()
    }

    /// Cancels everything running and refuses new work: called at shutdown.
    pub fn cancel_all(&self) {
        self.stopping.store(true, Ordering::Release);
        for flag in self.running.lock().expect("lock poisoned").values() {
            flag.store(true, Ordering::Relaxed);
        }
        self.permits.close();
    }

    /// Runs `work` on the blocking pool once a slot is free, handing it a flag that is set
    /// when the caller goes away or the server stops. The slot stays taken until `work`
    /// returns, even if the caller stopped waiting.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&AtomicBool) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::ShuttingDown)?;
        if self.stopping.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        let flag = Arc::new(AtomicBool::new(false));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.running
            .lock()
            .expect("lock poisoned")
            .insert(id, Arc::clone(&flag));
        let _cancel = CancelOnDrop(Arc::clone(&flag));
        let _forget = Deregister { gate: self, id };
        let res = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&flag)
        })
        .await;
        res.map_err(|e| {
            let why = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a request handler panicked".into()),
                Err(e) => e.to_string(),
            };
            Error::Panicked(why)
        })
    }
}

/// Removes a finished (or abandoned) piece of work from the running set.
struct Deregister<'a> {
    gate: &'a QueryGate,
    id: u64,
}

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        self.gate
            .running
            .lock()
            .expect("lock poisoned")
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_max_run_at_once_and_cancel_all_stops_them() {
        let gate = Arc::new(QueryGate::new(2));
        let peak = Arc::new(AtomicU64::new(0));
        let now = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (gate, peak, now) = (Arc::clone(&gate), Arc::clone(&peak), Arc::clone(&now));
            tasks.push(tokio::spawn(async move {
                gate.run(move |cancel| {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    // Runs until cancelled.
                    while !cancel.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    now.fetch_sub(1, Ordering::SeqCst);
                    "cancelled"
                })
                .await
            }));
        }
        while gate.running() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        gate.cancel_all();
        let mut done = 0;
        let mut refused = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok("cancelled") => done += 1,
                Err(Error::ShuttingDown) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((done, refused), (2, 4));
        assert_eq!(gate.running(), 0);
    }

    #[tokio::test]
    async fn a_panic_is_an_error_not_a_crash() {
        let gate = QueryGate::new(1);
        let r: Result<(), _> = gate.run(|_| panic!("boom")).await;
        assert!(
            matches!(r, Err(Error::Panicked(ref m)) if m == "boom"),
            "{r:?}"
        );
        // The slot is free again.
        assert_eq!(gate.run(|_| 7).await.unwrap(), 7);
    }
}
