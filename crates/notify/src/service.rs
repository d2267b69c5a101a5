//! The notifier as a running service: the [`Core`] behind a lock, a loop that ticks it
//! every second on the wall clock and delivers what is due on their own tasks (one slow
//! receiver never holds up another), and counters of what was sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::alert::Alert;
use crate::dispatch::Core;

/// A running notifier.
#[derive(Debug)]
pub struct Notifier {
    core: Mutex<Core>,
    client: reqwest::Client,
    /// The URL notifications link back to.
    pub external_url: String,
    /// The Alertmanager configuration file with its secrets hidden (for `/api/v2/status`).
    pub config_text: Mutex<String>,
    /// Notifications delivered.
    pub sent: AtomicU64,
    /// Notifications that failed after every retry.
    pub failed: AtomicU64,
    /// The last delivery error and when it happened (ms).
    pub last_error: Mutex<Option<(i64, String)>>,
    started: i64,
}

impl Notifier {
    /// A notifier around `core`.
    pub fn new(core: Core, external_url: String, config_text: String) -> Self {
        Self {
            core: Mutex::new(core),
            client: crate::receivers::http_client(),
            external_url,
            config_text: Mutex::new(crate::config::redacted(&config_text)),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
            started: lookout_model::now_ms(),
        }
    }

    /// When it started (ms).
    pub fn started(&self) -> i64 {
        self.started
    }

    /// Runs `f` on the core.
    pub fn with<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        f(&mut self.core.lock().expect("notifier lock"))
    }

    /// Replaces the configuration: `new` takes over the running state (see
    /// [`Core::take_state`]).
    pub fn replace(&self, mut new: Core, config_text: String) {
        let now = lookout_model::now_ms();
        let mut core = self.core.lock().expect("notifier lock");
        new.take_state(&mut core, now);
        *core = new;
        *self.config_text.lock().expect("lock") = crate::config::redacted(&config_text);
    }

    /// Takes alerts now; returns how many new ones were refused (the store is full).
    pub fn put_alerts(&self, alerts: Vec<Alert>) -> usize {
        let now = lookout_model::now_ms();
        self.with(|c| c.put_alerts(alerts, now))
    }

    /// Ticks once at `now` and delivers what is due; returns when every delivery ended.
    pub async fn tick_and_deliver(self: &Arc<Self>, now: i64) {
        let due = self.with(|c| c.tick(now));
        let mut tasks = Vec::with_capacity(due.len());
        for n in due {
            let me = Arc::clone(self);
            tasks.push(tokio::spawn(async move {
                match crate::receivers::deliver(&me.client, &n, &me.external_url).await {
                    Ok(_) => {
                        me.with(|c| {
                            c.record(&n);
                            c.log_delivery(&n, lookout_model::now_ms(), None);
                        });
                        me.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, group = %n.group_key, "Notification failed after retries");
                        me.with(|c| {
                            c.failed(&n);
                            c.log_delivery(&n, lookout_model::now_ms(), Some(e.to_string()));
                        });
                        me.failed.fetch_add(1, Ordering::Relaxed);
                        *me.last_error.lock().expect("lock") = Some((lookout_model::now_ms(), e.to_string()));
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Ticks every second until `stop` turns true.
    pub fn spawn(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            let mut ticks: u64 = 0;
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = every.tick() => {}
                }
                let now = lookout_model::now_ms();
                // Deliveries run on their own tasks; the loop does not wait for them.
                let me2 = Arc::clone(&me);
                tokio::spawn(async move { me2.tick_and_deliver(now).await });
                ticks += 1;
                if ticks.is_multiple_of(3600) {
                    me.with(|c| c.gc(now));
                }
            }
        })
    }
}
