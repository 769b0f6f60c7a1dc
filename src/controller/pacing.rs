//! Status writes first, Events after: Events wait for a pause in status writes.
//!
//! The apiserver pays about as much for an Event as for a status write, and both compete for
//! the same CPU during a bulk apply. Status is what users, `kubectl wait` and GitOps tools
//! (kstatus) wait on; an Event is a record of it. So an Event is created only once no status
//! write has been in flight for [`QUIET`], unless the Event queue is already half full: then
//! Events flow as they come, so a long burst never fills the queue and drops them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long after the last status write Events start flowing again.
pub const QUIET: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Writes {
    in_flight: usize,
    last_ended: Option<Instant>,
}

/// Status writes in flight and the Events waiting behind them.
pub struct Pacing {
    writes: Mutex<Writes>,
    changed: Notify,
    /// Events queued and not yet taken by the deliverer.
    queued: AtomicUsize,
    /// From this many queued Events on, Events no longer wait.
    backlog: usize,
}

/// A status write in flight; dropping it ends the write.
pub struct Writing<'a>(&'a Pacing);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        {
            let mut writes = self.0.writes();
            writes.in_flight = writes.in_flight.saturating_sub(1);
            writes.last_ended = Some(Instant::now());
        }
        self.0.changed.notify_waiters();
    }
}

impl Pacing {
    /// Pacing for an Event queue of `capacity`.
    pub fn new(capacity: usize) -> Self {
        Pacing {
            writes: Mutex::default(),
            changed: Notify::new(),
            queued: AtomicUsize::new(0),
            backlog: (capacity / 2).max(1),
        }
    }

    fn writes(&self) -> MutexGuard<'_, Writes> {
        self.writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks a status write as in flight until the returned guard is dropped.
    pub fn writing(&self) -> Writing<'_> {
        self.writes().in_flight += 1;
        Writing(self)
    }

    /// An Event was queued.
    pub fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// The deliverer took an Event off the queue.
    pub fn taken(&self) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub(super) fn backlogged(&self) -> bool {
        self.queued.load(Ordering::Relaxed) >= self.backlog
    }

    /// Waits until no status write has been in flight for [`QUIET`], or the queue is backlogged.
    pub async fn pause(&self) {
        loop {
            // Registered before the check, so a write ending in between still wakes us.
            let changed = self.changed.notified();
            if self.backlogged() {
                return;
            }
            let wait = {
                let writes = self.writes();
                (writes.in_flight == 0).then(|| {
                    writes.last_ended.map_or(Duration::ZERO, |ended| {
                        (ended + QUIET).saturating_duration_since(Instant::now())
                    })
                })
            };
            match wait {
                Some(left) if left.is_zero() => return,
                Some(left) => {
                    tokio::select! {
                        () = tokio::time::sleep(left) => {},
                        () = changed => {},
                    }
                }
                // A write in flight: wait for it, but look at the backlog now and then.
                None => {
                    let _ = tokio::time::timeout(QUIET, changed).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn events_wait_for_a_quiet_spell_after_the_last_status_write() {
        let pacing = Arc::new(Pacing::new(8));
        let started = Instant::now();
        pacing.pause().await;
        assert_eq!(started.elapsed(), Duration::ZERO, "nothing written: no wait");

        let writing = pacing.writing();
        let waiter = {
            let pacing = pacing.clone();
            tokio::spawn(async move {
                pacing.pause().await;
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiter.is_finished(), "a write in flight holds Events back");
        drop(writing);
        let ended = Instant::now();
        let released = waiter.await.expect("waiter");
        assert_eq!(
            released - ended,
            QUIET,
            "released one quiet spell after the write ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_full_queue_stops_the_waiting() {
        let pacing = Pacing::new(4);
        let _writing = pacing.writing();
        pacing.queued();
        pacing.queued();
        let started = Instant::now();
        pacing.pause().await;
        assert_eq!(started.elapsed(), Duration::ZERO, "backlogged: no wait");
        pacing.taken();
        let blocked = tokio::time::timeout(Duration::from_secs(5), pacing.pause()).await;
        assert!(
            blocked.is_err(),
            "below the backlog, a write in flight holds Events back"
        );
    }
}
