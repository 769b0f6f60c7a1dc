//! The time limits of provider requests, kept by one sweeper task over a coarse clock instead
//! of a tokio timer per request.
//!
//! A timer per request cost more than its instructions suggested: a boxed `Sleep`, its entry
//! in the timer wheel taken and given back under the driver's lock, and the wheel's work on
//! every park. Measured on one core under a 32-connection closed loop, dropping it took
//! 0.4 µs of CPU from each request (about 3 % of the whole). Here a request pays two
//! uncontended lock-and-push operations (watch, unwatch) and relaxed atomic stores; the
//! sweeper wakes every tick while anything is watched, and sleeps otherwise.
//!
//! A limit never fires early: a request's deadline is rounded up to the millisecond and
//! compared with the real time of the sweeper's tick. It fires at most one tick late; the
//! tick is an eighth of the shortest limit watched so far, between 5 ms and 250 ms.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use slab::Slab;
use tokio::time::Instant;

/// The shortest and the longest tick.
const MIN_TICK: Duration = Duration::from_millis(5);
const MAX_TICK: Duration = Duration::from_millis(250);
/// Spare entries kept for reuse (a request's entry is then not allocated).
const MAX_SPARE: usize = 1024;
/// An entry's `due` once the sweeper found it past: the wait is over.
const EXPIRED: u64 = u64::MAX;

/// The watched requests of one client pool (cloned: the same set).
#[derive(Clone)]
pub struct Watch {
    inner: Arc<Inner>,
}

struct Inner {
    epoch: Instant,
    /// The sweeper's period, in milliseconds.
    tick_ms: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    watched: Slab<Arc<Entry>>,
    spare: Vec<Arc<Entry>>,
    /// A sweeper task is running; it ends when it finds nothing watched.
    sweeping: bool,
}

#[derive(Default)]
struct Entry {
    /// When the wait ends, in milliseconds after the epoch (rounded up), or `EXPIRED`.
    due: AtomicU64,
    waker: AtomicWaker,
}

impl Default for Watch {
    fn default() -> Self {
        Self::new()
    }
}

impl Watch {
    pub fn new() -> Self {
        Watch {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                tick_ms: AtomicU64::new(millis(MAX_TICK)),
                state: Mutex::default(),
            }),
        }
    }

    /// Watches a wait that ends at `due`. `shortest`: the shortest limit this request is held
    /// to, which the tick must be fine enough for.
    pub fn until(&self, due: Instant, shortest: Duration) -> Waiting {
        let inner = &self.inner;
        let tick = millis((shortest / 8).clamp(MIN_TICK, MAX_TICK));
        if tick < inner.tick_ms.load(Ordering::Relaxed) {
            inner.tick_ms.fetch_min(tick, Ordering::Relaxed);
        }
        let mut state = inner.state();
        let entry = state.spare.pop().unwrap_or_default();
        entry.due.store(inner.millis_at(due), Ordering::Relaxed);
        let slot = state.watched.insert(entry.clone());
        let start = !state.sweeping;
        state.sweeping = true;
        drop(state);
        if start {
            // Outside the lock: a runtime that is shutting down drops the task at once, and
            // its guard takes the lock.
            self.start_sweeper();
        }
        Waiting {
            inner: inner.clone(),
            entry,
            slot,
        }
    }

    fn start_sweeper(&self) {
        let running = Running {
            inner: self.inner.clone(),
            armed: true,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(sweep(running))),
            // Not on a runtime (no request is): the next watch tries again.
            Err(_) => drop(running),
        }
    }

    /// Whether a sweeper task is running.
    #[cfg(test)]
    fn sweeping(&self) -> bool {
        self.inner.state().sweeping
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `at` in milliseconds after the epoch, rounded up (a limit never ends early).
    fn millis_at(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch);
        let rounded_up = u64::from(since.subsec_nanos().div_ceil(1_000_000));
        since
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(rounded_up)
            .min(EXPIRED - 1)
    }

    /// Marks the entries past their time and wakes their tasks; returns whether anything is
    /// still watched (under the same lock as `until`, so that a sweeper never ends while a
    /// request it should watch is being added).
    fn sweep_once(&self) -> bool {
        let now = self.millis_at(Instant::now());
        let mut state = self.state();
        for (_, entry) in state.watched.iter() {
            let due = entry.due.load(Ordering::Acquire);
            if due <= now
                && entry
                    .due
                    .compare_exchange(due, EXPIRED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                entry.waker.wake();
            }
        }
        if state.watched.is_empty() {
            state.sweeping = false;
            return false;
        }
        true
    }
}

/// Ends the sweeper's turn when its task is dropped without finishing (its runtime shut down),
/// so that the next watch starts another.
struct Running {
    inner: Arc<Inner>,
    armed: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.armed {
            self.inner.state().sweeping = false;
        }
    }
}

async fn sweep(mut running: Running) {
    loop {
        let tick = Duration::from_millis(running.inner.tick_ms.load(Ordering::Relaxed));
        tokio::time::sleep(tick).await;
        if !running.inner.sweep_once() {
            // `sweeping` is false already, and a watch since may have started another.
            running.armed = false;
            return;
        }
    }
}

/// One watched wait; dropping it stops the watch.
pub struct Waiting {
    inner: Arc<Inner>,
    entry: Arc<Entry>,
    slot: usize,
}

impl Waiting {
    /// The wait now ends at `due` (a new frame arrived, or the response's headers).
    pub fn set(&self, due: Instant) {
        self.entry.due.store(self.inner.millis_at(due), Ordering::Release);
    }

    /// Ready once the sweeper found the wait past its end.
    pub fn poll_expired(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.entry.due.load(Ordering::Acquire) == EXPIRED {
            return Poll::Ready(());
        }
        self.entry.waker.register(cx.waker());
        // Again after registering: the sweeper may have woken the previous waker just now.
        if self.entry.due.load(Ordering::Acquire) == EXPIRED {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Ready when the wait is past its end.
    pub async fn expired(&self) {
        std::future::poll_fn(|cx| self.poll_expired(cx)).await;
    }

    /// `future`'s output, or `None` if the wait ends first.
    pub fn within<F: Future>(&self, future: F) -> Within<'_, F> {
        Within { waiting: self, future }
    }
}

pin_project_lite::pin_project! {
    /// [`Waiting::within`]: a named future, so that `future` is held once (an `async fn` kept
    /// both the argument and its pinned copy: twice the provider exchange's size in every
    /// request's state).
    pub struct Within<'w, F> {
        waiting: &'w Waiting,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.future.poll(cx) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending => this.waiting.poll_expired(cx).map(|()| None),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // The task the waker names may be ending: hold no reference to it.
        drop(self.entry.waker.take());
        let mut state = self.inner.state();
        let mut listed = state.watched.try_remove(self.slot);
        // The list's reference (to this entry) becomes the spare one.
        if state.spare.len() < MAX_SPARE {
            state.spare.extend(listed.take());
        }
        drop(state);
        drop(listed);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
