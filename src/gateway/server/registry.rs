//! Every open client connection of one listener: what it is doing and since when, the cap on
//! how many there are, and closing the ones that wait too long.
//!
//! A connection is always in one phase. Its transitions are a few relaxed atomic stores on
//! the request path (no lock, no timer, no system call): the time they record is a coarse
//! clock that the sweeper advances on each tick. The sweeper walks the registry every tick
//! and closes connections past their deadline; when the listener reaches its cap, the
//! connections that have waited longest without a request in flight are closed first.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use prometheus_client::metrics::gauge::Gauge;
use slab::Slab;
use tokio::sync::Notify;

use super::common::Common;
use super::metrics::{CloseReason, ListenerMetrics};
use super::Settings;

/// Accepted; no request yet. The header timeout runs from the accept.
const FRESH: u8 = 0;
/// Between requests on a keep-alive connection, and bytes of the next one have arrived. The
/// header timeout runs from the first of them.
const READING: u8 = 1;
/// At least one request in flight (its headers are complete).
const BUSY: u8 = 2;
/// Between requests, nothing received yet: the idle timeout runs.
const IDLE: u8 = 3;

/// What the connection's task is asked to do.
pub(super) const RUN: u8 = 0;
/// Finish what is in flight, then close (HTTP/1.1: no more keep-alive; HTTP/2: GOAWAY).
pub(super) const GRACEFUL: u8 = 1;
/// Close now.
pub(super) const ABORT: u8 = 2;

/// One client connection.
pub(super) struct Conn {
    pub common: Arc<Common>,
    phase: AtomicU8,
    /// When the current phase began (coarse milliseconds).
    since: AtomicU64,
    /// When a write last found the socket full and nothing has been written since; 0: not
    /// stalled.
    stalled: AtomicU64,
    in_flight: AtomicU32,
    h2: AtomicBool,
    command: AtomicU8,
    pub waker: AtomicWaker,
    slot: usize,
}

impl Conn {
    /// A request's headers are complete.
    pub fn begin(&self, h2: bool) {
        self.in_flight.fetch_add(1, Relaxed);
        self.phase.store(BUSY, Relaxed);
        if h2 && !self.h2.load(Relaxed) {
            self.h2.store(true, Relaxed);
        }
    }

    /// A request's response is complete (or abandoned).
    pub fn end(&self) {
        if self.in_flight.fetch_sub(1, Relaxed) == 1 {
            self.since.store(self.common.now(), Relaxed);
            self.phase.store(IDLE, Relaxed);
        }
    }

    /// Bytes arrived from the client.
    pub fn on_read(&self) {
        // On HTTP/1.1, bytes on an idle connection start the next request's headers. HTTP/2
        // sends pings and window updates while idle: only a new stream ends idleness there.
        if self.phase.load(Relaxed) == IDLE && !self.h2.load(Relaxed) {
            self.since.store(self.common.now(), Relaxed);
            self.phase.store(READING, Relaxed);
        }
    }

    /// A write found the socket full.
    pub fn on_write_blocked(&self) {
        if self.stalled.load(Relaxed) == 0 {
            self.stalled.store(self.common.now(), Relaxed);
        }
    }

    /// A write went through.
    pub fn on_write(&self) {
        if self.stalled.load(Relaxed) != 0 {
            self.stalled.store(0, Relaxed);
        }
    }

    pub fn command(&self) -> u8 {
        self.command.load(Relaxed)
    }

    /// Asks the connection's task to close (`GRACEFUL` or `ABORT`); a stronger command is
    /// never weakened. Returns whether the command changed.
    fn signal(&self, command: u8) -> bool {
        let previous = self.command.fetch_max(command, Relaxed);
        if previous < command {
            self.waker.wake();
            true
        } else {
            false
        }
    }

    /// Not serving a request: may be closed to make room.
    fn waiting(&self) -> bool {
        self.phase.load(Relaxed) != BUSY && self.in_flight.load(Relaxed) == 0
    }
}

/// The open connections of one listener.
pub(super) struct Registry {
    pub common: Arc<Common>,
    /// Every registered connection, by its slot.
    slots: Mutex<Slab<Arc<Conn>>>,
    /// Registered connections.
    open: AtomicUsize,
    /// Registered connections asked to close at once (still counted in `open`).
    aborting: AtomicUsize,
    /// Wakes every waiter whenever a connection is removed (create the `Notified` before
    /// checking the condition it waits for).
    pub removed: Notify,
    /// Signalled when the first connection is admitted to an empty registry.
    pub admitted: Notify,
    pub cap: usize,
    metrics: ListenerMetrics,
    open_gauge: Gauge,
}

impl Registry {
    pub fn new(common: Arc<Common>, cap: usize, metrics: ListenerMetrics) -> Self {
        let open_gauge = metrics.open();
        metrics.limit().set(i64::try_from(cap).unwrap_or(i64::MAX));
        Registry {
            common,
            slots: Mutex::default(),
            open: AtomicUsize::new(0),
            aborting: AtomicUsize::new(0),
            removed: Notify::new(),
            admitted: Notify::new(),
            cap,
            metrics,
            open_gauge,
        }
    }

    fn slots(&self) -> MutexGuard<'_, Slab<Arc<Conn>>> {
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn metrics(&self) -> &ListenerMetrics {
        &self.metrics
    }

    /// Open connections not already being closed.
    pub fn live(&self) -> usize {
        self.open.load(Relaxed).saturating_sub(self.aborting.load(Relaxed))
    }

    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Registers a just-accepted connection.
    pub fn admit(&self) -> Arc<Conn> {
        let now = self.common.tick();
        let mut slots = self.slots();
        let place = slots.vacant_entry();
        let slot = place.key();
        let conn = Arc::new(Conn {
            common: self.common.clone(),
            phase: AtomicU8::new(FRESH),
            since: AtomicU64::new(now),
            stalled: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            h2: AtomicBool::new(false),
            command: AtomicU8::new(RUN),
            waker: AtomicWaker::new(),
            slot,
        });
        place.insert(conn.clone());
        drop(slots);
        if self.open.fetch_add(1, Relaxed) == 0 {
            self.admitted.notify_one();
        }
        self.open_gauge.inc();
        conn
    }

    /// Unregisters a connection whose task has ended.
    pub fn remove(&self, conn: &Conn) {
        self.slots().try_remove(conn.slot);
        if conn.command() == ABORT {
            self.aborting.fetch_sub(1, Relaxed);
        }
        self.open.fetch_sub(1, Relaxed);
        self.open_gauge.dec();
        self.removed.notify_waiters();
    }

    fn close(&self, conn: &Conn, command: u8, reason: Option<CloseReason>) -> bool {
        let changed = conn.signal(command);
        if changed && command == ABORT {
            self.aborting.fetch_add(1, Relaxed);
        }
        if changed {
            if let Some(reason) = reason {
                self.metrics.closed(reason).inc();
            }
        }
        changed
    }

    /// Closes up to `count` connections that are not serving a request, those that have
    /// waited longest first. Returns how many were asked to close.
    pub fn shed(&self, count: usize) -> usize {
        let slots = self.slots();
        let mut waiting: Vec<(u64, &Arc<Conn>)> = slots
            .iter()
            .map(|(_, conn)| conn)
            .filter(|c| c.command() != ABORT && c.waiting())
            .map(|c| (c.since.load(Relaxed), c))
            .collect();
        if waiting.len() > count && count > 0 {
            waiting.select_nth_unstable_by_key(count - 1, |(since, _)| *since);
            waiting.truncate(count);
        }
        let mut shed = 0;
        for (_, conn) in waiting {
            if self.close(conn, ABORT, Some(CloseReason::shed)) {
                shed += 1;
            }
        }
        shed
    }

    /// Closes connections past their deadline; returns the requests in flight.
    pub fn sweep(&self) -> usize {
        let now = self.common.tick();
        let settings = &self.common.settings;
        let elapsed = |since: u64| Duration::from_millis(now.saturating_sub(since));
        let slots = self.slots();
        let mut in_flight = 0;
        for (_, conn) in slots.iter() {
            if conn.command() == ABORT {
                continue;
            }
            in_flight += conn.in_flight.load(Relaxed) as usize;
            let since = conn.since.load(Relaxed);
            let stalled = conn.stalled.load(Relaxed);
            let reason = match conn.phase.load(Relaxed) {
                FRESH | READING if elapsed(since) > settings.header_timeout => Some(CloseReason::header_timeout),
                IDLE if conn.in_flight.load(Relaxed) == 0 && elapsed(since) > settings.idle_timeout => {
                    Some(CloseReason::idle_timeout)
                }
                _ if stalled != 0 && elapsed(stalled) > settings.idle_timeout => Some(CloseReason::write_stalled),
                _ => None,
            };
            match reason {
                // An idle connection closes cleanly (HTTP/2: GOAWAY); the others at once.
                Some(CloseReason::idle_timeout) => self.close(conn, GRACEFUL, Some(CloseReason::idle_timeout)),
                Some(reason) => self.close(conn, ABORT, Some(reason)),
                None => false,
            };
        }
        in_flight
    }

    /// Starts a drain while still accepting: HTTP/2 connections get a GOAWAY (which names the
    /// last stream served, so a client knows what to retry). HTTP/1.1 connections stay open:
    /// closing one between requests, or right after a response whose head went out before the
    /// drain (a stream), races with a client that sends its next request on it at that moment
    /// (a failed request a client cannot tell from a crash). Their next response says
    /// `Connection: close` instead, and those still open when accepting stops close then.
    pub fn close_served(&self) {
        let slots = self.slots();
        for (_, conn) in slots.iter() {
            if conn.h2.load(Relaxed) {
                self.close(conn, GRACEFUL, None);
            }
        }
    }

    /// No longer accepting: busy and idle connections finish what is in flight and close;
    /// those still waiting for a request's headers close at once (no client that is still
    /// sending to this gateway is waiting for them).
    pub fn close_all(&self) {
        let slots = self.slots();
        for (_, conn) in slots.iter() {
            match conn.phase.load(Relaxed) {
                FRESH | READING if conn.in_flight.load(Relaxed) == 0 => self.close(conn, ABORT, None),
                _ => self.close(conn, GRACEFUL, None),
            };
        }
    }

    /// Wakes every connection's task (to let it see the drain state).
    pub fn wake_all(&self) {
        let slots = self.slots();
        for (_, conn) in slots.iter() {
            conn.waker.wake();
        }
    }

    /// Closes every connection at once; returns how many were still open.
    pub fn abort_all(&self, reason: CloseReason) -> usize {
        let slots = self.slots();
        let mut count = 0;
        for (_, conn) in slots.iter() {
            self.close(conn, ABORT, Some(reason));
            count += 1;
        }
        count
    }

    /// Resolves when no connection is open.
    pub async fn closed(&self) {
        loop {
            let removed = self.removed.notified();
            if self.open() == 0 {
                return;
            }
            removed.await;
        }
    }
}

/// How often the sweeper looks: a quarter of the shortest timeout, between 10 ms and 1 s.
pub(super) fn tick_for(settings: &Settings) -> Duration {
    (settings.header_timeout.min(settings.idle_timeout) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Closes connections past their deadlines, every tick while any is open; after a fall in
/// open connections and requests in flight (an HTTP/2 connection carries many streams), hands
/// the memory they held back to the system.
pub(super) async fn sweep(registry: Arc<Registry>) {
    let tick = tick_for(&registry.common.settings);
    let mut after_drop = crate::memory::AfterDrop::default();
    let mut in_flight = 0;
    loop {
        if after_drop.observe(registry.open() + in_flight, std::time::Instant::now()) {
            // Off the async threads: a trim walks the allocator's free lists.
            drop(tokio::task::spawn_blocking(crate::memory::trim));
        }
        if registry.open() == 0 {
            let admitted = registry.admitted.notified();
            if registry.open() == 0 {
                admitted.await;
            }
        }
        tokio::time::sleep(tick).await;
        in_flight = registry.sweep();
    }
}
