//! What every connection of one listener shares: its settings, a coarse clock, and the
//! drain state.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use super::Settings;

/// What every connection of a listener shares: settings, the coarse clock, the drain state.
pub(super) struct Common {
    pub settings: Settings,
    epoch: Instant,
    /// Milliseconds since `epoch`, as of the sweeper's last tick (or the last accept).
    clock: AtomicU64,
    /// Shutting down: HTTP/1.1 responses carry `Connection: close`.
    draining: AtomicBool,
    /// The grace period is over: event streams end with an error event, requests still
    /// waiting for their response get a 503.
    finishing: AtomicBool,
    /// Wakes the event streams when `finishing` is set.
    pub finish: Arc<Notify>,
    /// Event streams ended with an error event.
    pub streams_cut: AtomicUsize,
}

impl Common {
    pub fn new(settings: Settings) -> Self {
        Common {
            settings,
            epoch: Instant::now(),
            clock: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            finishing: AtomicBool::new(false),
            finish: Arc::new(Notify::new()),
            streams_cut: AtomicUsize::new(0),
        }
    }

    /// The coarse time in milliseconds (never 0).
    pub fn now(&self) -> u64 {
        self.clock.load(Relaxed)
    }

    /// Advances the coarse clock to the real time.
    pub fn tick(&self) -> u64 {
        let now = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.clock.store(now, Relaxed);
        now
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    pub fn finishing(&self) -> bool {
        self.finishing.load(Relaxed)
    }

    pub fn set_finishing(&self) {
        self.finishing.store(true, Relaxed);
        self.finish.notify_waiters();
    }
}
