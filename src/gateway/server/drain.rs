//! The shutdown sequence: keep serving for the delay (while endpoints and proxies catch up),
//! stop accepting, let what is in flight finish within the grace period, then end the rest.

use std::time::{Duration, Instant};

use super::Server;

/// How long the drain may take (`--shutdown-delay`, `--shutdown-grace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shutdown {
    /// After the signal, keep accepting for this long (with `/readyz` failing).
    pub delay: Duration,
    /// Then let in-flight requests finish within this.
    pub grace: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            delay: Duration::ZERO,
            grace: Duration::from_secs(30),
        }
    }
}

/// At the end of the grace period, the error events and 503s get this long to be written
/// before the connections are closed regardless.
pub const FLUSH: Duration = Duration::from_secs(1);

/// What the drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// From the signal to the last connection closed.
    pub took: Duration,
    /// Connections open when the grace period ended (0: everything finished in time).
    pub open_at_deadline: usize,
    /// Event streams ended with an error event.
    pub streams_cut: usize,
    /// Connections closed without finishing, after the flush.
    pub connections_cut: usize,
}

/// Drains the API listener, then closes the admin one. `/readyz` must already fail.
pub async fn drain(api: &mut Server, admin: &mut Server, shutdown: Shutdown) -> DrainReport {
    let started = Instant::now();
    api.begin_drain();
    if !shutdown.delay.is_zero() {
        tracing::info!(delay = ?shutdown.delay, "still accepting during the shutdown delay");
        tokio::time::sleep(shutdown.delay).await;
    }
    api.stop_accepting().await;
    tracing::info!(
        open = api.open(),
        grace = ?shutdown.grace,
        "stopped accepting; waiting for in-flight requests"
    );
    let mut report = DrainReport::default();
    if tokio::time::timeout(shutdown.grace, api.closed()).await.is_err() {
        report.open_at_deadline = api.finish();
        if tokio::time::timeout(FLUSH, api.closed()).await.is_err() {
            report.connections_cut = api.abort();
            api.closed().await;
        }
        report.streams_cut = api.streams_cut();
    }
    // The admin port answered probes and scrapes until now.
    admin.stop_accepting().await;
    if tokio::time::timeout(FLUSH, admin.closed()).await.is_err() {
        admin.abort();
        admin.closed().await;
    }
    report.took = started.elapsed();
    report
}
