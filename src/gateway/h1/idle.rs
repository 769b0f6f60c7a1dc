//! The idle connections of one upstream, taken and returned at the back under a mutex.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::Response;

use super::{exchange, Conn, ExchangeError, H1Body, Prepared};
use crate::gateway::coarse;

/// An idle connection is closed after this long unused (when the next request takes or
/// returns a connection of the same upstream).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per upstream; more are closed when they come back.
const MAX_IDLE: usize = 1024;

struct Idle {
    conn: Conn,
    /// When it came back, on the coarse monotonic clock (a few milliseconds matter nothing
    /// against `IDLE_TIMEOUT`, and the coarse read is a fraction of the precise one's cost).
    since: Duration,
}

impl Idle {
    /// Whether the connection has been idle less than `IDLE_TIMEOUT` at `now`.
    fn fresh(&self, now: Duration) -> bool {
        now.saturating_sub(self.since) < IDLE_TIMEOUT
    }
}

/// The idle HTTP/1.1 connections of one upstream (plain, or HTTPS where ALPN chose
/// HTTP/1.1).
#[derive(Default)]
pub struct IdleStack {
    /// Oldest first.
    idle: Mutex<VecDeque<Idle>>,
}

impl IdleStack {
    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `request` on an idle connection. `None`: there was none open (one the provider
    /// closed is seen closed before it is used), or the one taken could not take the request
    /// (the write failed), and the request should go once on a new connection.
    pub async fn send_idle(self: &Arc<Self>, request: &Prepared) -> Option<Result<Response<H1Body>, ExchangeError>> {
        let conn = self.take()?;
        match exchange(conn, request, self).await {
            Err(error) if error.unsent() => {
                tracing::debug!(%error, "an idle upstream connection could not take a request; sending it on a new one");
                None
            }
            sent => Some(sent),
        }
    }

    /// The most recently used idle connection that is still open and fresh.
    pub(super) fn take(&self) -> Option<Conn> {
        loop {
            // Checked outside the lock: the check may make a system call.
            let mut entry = self.idle().pop_back()?;
            if entry.fresh(coarse::monotonic()) && entry.conn.is_open() {
                return Some(entry.conn);
            }
        }
    }

    pub(super) fn put(&self, conn: Conn) {
        // One clock read: when the connection came back, and what is too old by then.
        let now = coarse::monotonic();
        let mut idle = self.idle();
        // Connections idle too long are closed as traffic goes on, oldest first.
        while idle.front().is_some_and(|oldest| !oldest.fresh(now)) {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle { conn, since: now });
        }
    }

    /// How many connections are idle.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.idle().len()
    }
}
