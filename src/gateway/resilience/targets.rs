//! State that outlives routing-table swaps: one [`TargetState`] per concrete target (provider
//! and model) shared by every alias in this replica — requests in flight, failures in a row,
//! ejection and `Retry-After` holds — and the round-robin counters of each alias's tiers.
//!
//! Live targets hold an `Arc` to their state, found once when a table is prepared, so the
//! request path touches no map and no lock: being in rotation is one atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::compiler::OutlierPolicy;
use crate::llm::FailureClass;

/// A monotonic clock in nanoseconds since the registry began (tokio's clock, so tests can
/// pause time).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    fn new() -> Self {
        Clock { epoch: Instant::now() }
    }

    /// One more than the nanoseconds since the epoch: never 0, which means "in rotation".
    pub fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    pub fn at(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    pub fn instant(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos.saturating_sub(1))
    }
}

/// Why a target is out of rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutKind {
    /// Too many failures in a row (`outlierDetection`).
    Ejected,
    /// The provider answered 429 with `Retry-After`.
    RetryAfter,
}

impl OutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutKind::Ejected => "ejected",
            OutKind::RetryAfter => "retryAfter",
        }
    }
}

/// A target's time out of rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Out {
    pub kind: OutKind,
    /// The failure that put it out.
    pub reason: FailureClass,
    /// Clock nanoseconds.
    pub since: u64,
    pub until: u64,
}

/// What changed when a failure was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Ejected,
    Held,
}

/// One concrete target's state in this replica.
#[derive(Debug)]
pub struct TargetState {
    /// `namespace/name` of the provider.
    pub provider: Arc<str>,
    pub model: Arc<str>,
    in_flight: AtomicUsize,
    failures: AtomicU32,
    /// Clock nanoseconds until which the target is out of rotation; 0 when it is in.
    out_until: AtomicU64,
    /// Details of the current or last time out (rarely touched).
    out: Mutex<Option<Out>>,
    clock: Clock,
}

impl TargetState {
    fn new(provider: Arc<str>, model: Arc<str>, clock: Clock) -> Self {
        TargetState {
            provider,
            model,
            in_flight: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            out_until: AtomicU64::new(0),
            out: Mutex::new(None),
            clock,
        }
    }

    /// A state outside any registry (tests, targets built by hand).
    pub fn detached(provider: &str, model: &str) -> Arc<Self> {
        Arc::new(TargetState::new(Arc::from(provider), Arc::from(model), Clock::new()))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    fn out_lock(&self) -> MutexGuard<'_, Option<Out>> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the target may be picked at `now` (clock nanoseconds). The first caller to see
    /// a time out over logs the return to rotation.
    pub fn in_rotation(&self, now: u64) -> bool {
        let until = self.out_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if now < until {
            return false;
        }
        if self
            .out_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let out = *self.out_lock();
            if let Some(out) = out {
                tracing::info!(provider = %self.provider, model = %self.model, was = out.kind.as_str(), reason = out.reason.as_str(), "target returned to rotation");
            }
        }
        true
    }

    /// The current time out, if the target is out of rotation at `now`.
    pub fn out_at(&self, now: u64) -> Option<Out> {
        let until = self.out_until.load(Ordering::Acquire);
        if until == 0 || now >= until {
            return None;
        }
        *self.out_lock()
    }

    /// A try succeeded: the failure streak ends.
    pub fn record_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A try failed. Failures that say nothing about the target (client errors, a request
    /// too long for the model) are ignored. A 429 with `Retry-After` holds the target out
    /// for that long; `outlier`, when the alias sets it, ejects the target after that many
    /// failures in a row.
    pub fn record_failure(
        &self,
        class: FailureClass,
        retry_after: Option<Duration>,
        outlier: Option<OutlierPolicy>,
    ) -> Option<Transition> {
        if !class.counts_against_target() {
            return None;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let now = self.clock.now();
        if let Some(policy) = outlier {
            if failures >= policy.consecutive_failures {
                self.failures.store(0, Ordering::Relaxed);
                if self.take_out(OutKind::Ejected, class, now, policy.ejection_time) {
                    tracing::warn!(provider = %self.provider, model = %self.model, reason = class.as_str(), failures, seconds = policy.ejection_time.as_secs_f64(), "target ejected");
                    return Some(Transition::Ejected);
                }
            }
        }
        match retry_after {
            Some(wait) if class == FailureClass::RateLimited && !wait.is_zero() => {
                if self.take_out(OutKind::RetryAfter, class, now, wait) {
                    tracing::info!(provider = %self.provider, model = %self.model, seconds = wait.as_secs_f64(), "target held out of rotation by Retry-After");
                    return Some(Transition::Held);
                }
                None
            }
            _ => None,
        }
    }

    /// Takes the target out until `now + wait` (a later end wins); true when it was in.
    fn take_out(&self, kind: OutKind, reason: FailureClass, now: u64, wait: Duration) -> bool {
        let until = now.saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
        let mut out = self.out_lock();
        let current = self.out_until.load(Ordering::Acquire);
        let was_in = current == 0 || now >= current;
        if !was_in && current >= until {
            return false;
        }
        let since = match (*out, was_in) {
            (Some(previous), false) => previous.since,
            _ => now,
        };
        *out = Some(Out {
            kind,
            reason,
            since,
            until,
        });
        self.out_until.store(until, Ordering::Release);
        was_in
    }
}

/// Counts a request in flight on a target for as long as it lives.
#[derive(Debug)]
pub struct InFlight(Arc<TargetState>);

impl InFlight {
    pub fn new(state: &Arc<TargetState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every target's state and every tier's round-robin counter in this replica.
pub struct Registry {
    clock: Clock,
    /// By provider and model.
    targets: Mutex<HashMap<TargetKey, Arc<TargetState>>>,
    /// By alias and tier.
    counters: Mutex<HashMap<(Arc<str>, usize), Counter>>,
}

type TargetKey = (Arc<str>, Arc<str>);
type Counter = Arc<AtomicUsize>;

impl Default for Registry {
    fn default() -> Self {
        Registry {
            clock: Clock::new(),
            targets: Mutex::default(),
            counters: Mutex::default(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The state of a concrete target, created on first use.
    pub fn target(&self, provider: &Arc<str>, model: &str) -> Arc<TargetState> {
        let mut targets = lock(&self.targets);
        let key = (provider.clone(), Arc::from(model));
        targets
            .entry(key)
            .or_insert_with_key(|(p, m)| Arc::new(TargetState::new(p.clone(), m.clone(), self.clock)))
            .clone()
    }

    /// The round-robin counter of an alias's tier (0 is its own targets).
    pub fn counter(&self, alias: &Arc<str>, tier: usize) -> Arc<AtomicUsize> {
        lock(&self.counters).entry((alias.clone(), tier)).or_default().clone()
    }

    /// Forgets targets and counters no live table refers to any more.
    pub fn prune(&self) {
        lock(&self.targets).retain(|_, state| Arc::strong_count(state) > 1);
        lock(&self.counters).retain(|_, counter| Arc::strong_count(counter) > 1);
    }

    /// Every known target, by provider and model.
    pub fn snapshot(&self) -> Vec<Arc<TargetState>> {
        let mut all: Vec<Arc<TargetState>> = lock(&self.targets).values().cloned().collect();
        all.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(failures: u32) -> Option<OutlierPolicy> {
        Some(OutlierPolicy {
            consecutive_failures: failures,
            ejection_time: Duration::from_secs(30),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_once_and_the_target_returns_after_the_ejection_time() {
        let state = TargetState::detached("ns/p", "m");
        let clock = state.clock;
        assert_eq!(state.record_failure(FailureClass::ServerError, None, policy(3)), None);
        state.record_success();
        assert_eq!(state.record_failure(FailureClass::ServerError, None, policy(3)), None);
        assert_eq!(state.record_failure(FailureClass::Timeout, None, policy(3)), None);
        assert_eq!(
            state.record_failure(FailureClass::Unreachable, None, policy(3)),
            Some(Transition::Ejected)
        );
        assert!(!state.in_rotation(clock.now()));
        let out = state.out_at(clock.now()).expect("out");
        assert_eq!((out.kind, out.reason), (OutKind::Ejected, FailureClass::Unreachable));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(state.in_rotation(clock.now()));
        assert_eq!(state.out_at(clock.now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_and_context_window_errors_never_count() {
        let state = TargetState::detached("ns/p", "m");
        for _ in 0..5 {
            assert_eq!(state.record_failure(FailureClass::ClientError, None, policy(1)), None);
            assert_eq!(
                state.record_failure(FailureClass::ContextWindowExceeded, None, policy(1)),
                None
            );
        }
        assert_eq!(state.consecutive_failures(), 0);
        assert!(state.in_rotation(state.clock.now()));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_a_target_for_that_long_even_without_outlier_detection() {
        let state = TargetState::detached("ns/p", "m");
        let held = state.record_failure(FailureClass::RateLimited, Some(Duration::from_secs(7)), None);
        assert_eq!(held, Some(Transition::Held));
        tokio::time::advance(Duration::from_millis(6_900)).await;
        assert!(!state.in_rotation(state.clock.now()));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(state.in_rotation(state.clock.now()));
    }

    #[test]
    fn in_flight_counts_follow_the_guards() {
        let state = TargetState::detached("ns/p", "m");
        let a = InFlight::new(&state);
        let b = InFlight::new(&state);
        assert_eq!(state.in_flight(), 2);
        drop(a);
        drop(b);
        assert_eq!(state.in_flight(), 0);
    }

    #[tokio::test]
    async fn the_registry_shares_state_per_concrete_target_and_prunes_what_no_table_holds() {
        let registry = Registry::default();
        let provider: Arc<str> = Arc::from("ns/p");
        let a = registry.target(&provider, "m");
        let b = registry.target(&provider, "m");
        assert!(Arc::ptr_eq(&a, &b));
        let other = registry.target(&provider, "n");
        assert!(!Arc::ptr_eq(&a, &other));
        drop(other);
        registry.prune();
        assert_eq!(registry.snapshot().len(), 1);
    }
}
