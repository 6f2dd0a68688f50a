//! Auto-refresh: a task that runs a discovery round every interval.
//!
//! Polling is portable (no inotify/kqueue differences, works on network file
//! systems and in containers with bind mounts) and cheap at these sizes: each
//! round reads the configuration file, the manifests and the plugin components
//! and hashes them; nothing is registered, replaced or removed unless a
//! fingerprint changed. Stopping waits for the round in progress, unless
//! [`Discovery::cancel_rounds`] cut it off first (shutdown).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::MIN_AUTO_REFRESH_MS;

use super::Discovery;

/// A running auto-refresh task.
pub(crate) struct Refresher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    interval: Duration,
}

impl Discovery {
    /// Run a round every `interval` (at least 10 ms) until
    /// [`Discovery::stop_auto_refresh`]; replaces a running auto-refresh. The
    /// first round runs after one interval: call [`Discovery::discover_all`]
    /// first. Must be called within a tokio runtime. Does nothing after
    /// [`Discovery::cancel_rounds`].
    pub fn start_auto_refresh(&self, interval: Duration) {
        if self.is_cancelled() {
            return;
        }
        let interval = interval.max(Duration::from_millis(MIN_AUTO_REFRESH_MS));
        let (tx, mut rx) = watch::channel(false);
        // The task holds the discovery weakly: dropping every handle ends it.
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = rx.changed() => break,
                }
                let Some(inner) = weak.upgrade() else { break };
                let report = Discovery { inner }.refresh().await;
                if report.cancelled {
                    break;
                }
                if report.changed() {
                    tracing::info!(
                        target: "tamma::discovery",
                        registered = ?report.registered,
                        replaced = ?report.replaced,
                        unregistered = ?report.unregistered,
                        "providers reloaded"
                    );
                }
            }
        });
        let previous = self
            .inner
            .refresher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Refresher {
                stop: tx,
                task,
                interval,
            });
        if let Some(previous) = previous {
            // It ends after its current round, if any; rounds are serialised.
            let _ = previous.stop.send(true);
        }
    }

    /// Stop auto-refresh, waiting for a round in progress to finish (call
    /// [`Discovery::cancel_rounds`] first not to wait for it).
    pub async fn stop_auto_refresh(&self) {
        let refresher = self
            .inner
            .refresher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = refresher {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
    }

    /// The auto-refresh interval, `None` when it is not running.
    pub fn auto_refresh_interval(&self) -> Option<Duration> {
        self.inner
            .refresher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.interval)
    }
}
