//! Counters in this process: the whole store with `--usage-store memory`, and the fallback
//! while Redis is unreachable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::super::limits::{Ask, Bucket, LimitKind, Verdict};
use super::Settlement;
use crate::compiler::tenancy::period::{now_seconds, window, PeriodWindow};
use crate::crd::Period;

/// Usage totals (requests, tokens, nano-dollars).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_prompt_tokens: u64,
    pub cost: i64,
}

/// One team's counters; kept across table swaps (the store hands out the same one per name).
pub struct TeamCounters(Mutex<TeamState>);

struct TeamState {
    window: PeriodWindow,
    kind: Period,
    /// Settled cost this period (at least what the shared store last reported).
    spent: i64,
    /// Estimated cost of calls in flight.
    reserved: i64,
    in_flight: u32,
    usage: Totals,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

impl TeamCounters {
    fn lock(&self) -> MutexGuard<'_, TeamState> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl TeamState {
    /// Starts a new period when the current one is over.
    fn roll(&mut self, kind: Period, now: i64) {
        if kind != self.kind || now >= self.window.end {
            let next = window(kind, now);
            if next.name != self.window.name {
                self.spent = 0;
                self.usage = Totals::default();
            }
            self.window = next;
            self.kind = kind;
        }
    }
}

/// Per-alias totals since the process started.
#[derive(Default)]
pub struct AliasCounters {
    calls: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    cached_prompt_tokens: AtomicU64,
    cost: AtomicI64,
}

impl AliasCounters {
    pub fn totals(&self) -> Totals {
        Totals {
            requests: self.calls.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
            cached_prompt_tokens: self.cached_prompt_tokens.load(Ordering::Relaxed),
            cost: self.cost.load(Ordering::Relaxed),
        }
    }
}

/// The in-process store.
pub struct MemoryStore {
    teams: Mutex<HashMap<Arc<str>, Arc<TeamCounters>>>,
    aliases: Mutex<HashMap<Arc<str>, Arc<AliasCounters>>>,
    origin: Instant,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            teams: Mutex::default(),
            aliases: Mutex::default(),
            origin: Instant::now(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryStore {
    /// The counters of a team (`namespace/name`), created on first use.
    pub fn team(&self, name: &str, period: Period) -> Arc<TeamCounters> {
        let mut teams = lock(&self.teams);
        if let Some(counters) = teams.get(name) {
            return counters.clone();
        }
        let counters = Arc::new(TeamCounters(Mutex::new(TeamState {
            window: window(period, now_seconds()),
            kind: period,
            spent: 0,
            reserved: 0,
            in_flight: 0,
            usage: Totals::default(),
            requests: None,
            tokens: None,
        })));
        teams.insert(Arc::from(name), counters.clone());
        counters
    }

    /// The counters of an alias, created on first use.
    pub fn alias(&self, name: &str) -> Arc<AliasCounters> {
        lock(&self.aliases).entry(Arc::from(name)).or_default().clone()
    }

    /// Forgets teams and aliases no longer configured.
    pub fn retain(&self, team: impl Fn(&str) -> bool, alias: impl Fn(&str) -> bool) {
        lock(&self.teams).retain(|name, counters| team(name) || Arc::strong_count(counters) > 1);
        lock(&self.aliases).retain(|name, _| alias(name));
    }

    fn seconds(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    /// Decides one request and, when admitted, counts it as in flight.
    pub fn admit(&self, team: &TeamCounters, period: Period, ask: &Ask) -> Verdict {
        let now = self.seconds();
        let mut state = team.lock();
        state.roll(period, ask.now);
        if let Some(allocated) = ask.allocated {
            if allocated - state.spent - state.reserved <= 0 {
                return Verdict::NoCredits {
                    allocated,
                    spent: state.spent,
                };
            }
        }
        let limits = &ask.limits;
        let rpm = limits.requests_per_minute.map(u64::from);
        let tpm = limits.tokens_per_minute;
        let requests_level = rpm.map(|c| state.requests.get_or_insert(Bucket::full(c, now)).refill(c, now));
        let tokens_level = tpm.map(|c| state.tokens.get_or_insert(Bucket::full(c, now)).refill(c, now));
        let views = |state: &TeamState| {
            (
                rpm.zip(state.requests).map(|(c, b)| b.view(c)),
                tpm.zip(state.tokens).map(|(c, b)| b.view(c)),
            )
        };
        let refused = if limits.max_parallel_requests.is_some_and(|max| state.in_flight >= max) {
            Some((LimitKind::Parallel, std::time::Duration::from_secs(1)))
        } else if let (Some(c), Some(level), Some(bucket)) = (rpm, requests_level, state.requests) {
            (level < 1.0).then(|| (LimitKind::Requests, bucket.wait_for(c, 1.0)))
        } else {
            None
        }
        .or_else(|| match (tpm, tokens_level, state.tokens) {
            (Some(c), Some(level), Some(bucket)) if level <= 0.0 => Some((LimitKind::Tokens, bucket.wait_for(c, 1.0))),
            _ => None,
        });
        if let Some((kind, retry_after)) = refused {
            let (requests, tokens) = views(&state);
            return Verdict::RateLimited {
                kind,
                retry_after,
                requests,
                tokens,
            };
        }
        if let Some(bucket) = state.requests.as_mut().filter(|_| rpm.is_some()) {
            bucket.take(1.0);
        }
        if let Some(bucket) = state.tokens.as_mut().filter(|_| tpm.is_some()) {
            bucket.take(ask.estimated_tokens as f64);
        }
        state.in_flight += 1;
        state.reserved += ask.estimated_cost;
        let (requests, tokens) = views(&state);
        Verdict::Admitted { requests, tokens }
    }

    /// Records a finished call: releases its reservation and counts what it really used.
    /// `admitted` is false for calls admitted by the shared store (nothing was reserved here).
    pub fn settle(&self, team: &TeamCounters, alias: &AliasCounters, s: &Settlement, admitted: bool) {
        let now = self.seconds();
        let mut state = team.lock();
        // The admission's clock reading, not a new one (one fewer per request): a call is
        // charged to the period it was admitted in, as the shared store charges it.
        state.roll(s.period, s.admitted_at);
        if admitted {
            state.in_flight = state.in_flight.saturating_sub(1);
            state.reserved -= s.reserved_cost;
        }
        state.spent += s.cost;
        state.usage.requests += 1;
        state.usage.prompt_tokens += s.tokens.prompt;
        state.usage.completion_tokens += s.tokens.completion;
        state.usage.cached_prompt_tokens += s.tokens.cached_prompt;
        state.usage.cost += s.cost;
        if let (Some(capacity), Some(bucket)) = (s.tokens_per_minute, state.tokens.as_mut()) {
            bucket.refill(capacity, now);
            let used = s.tokens.prompt + s.tokens.completion;
            bucket.take(used as f64 - s.estimated_tokens as f64);
        }
        drop(state);
        alias.calls.fetch_add(1, Ordering::Relaxed);
        alias.prompt_tokens.fetch_add(s.tokens.prompt, Ordering::Relaxed);
        alias
            .completion_tokens
            .fetch_add(s.tokens.completion, Ordering::Relaxed);
        alias
            .cached_prompt_tokens
            .fetch_add(s.tokens.cached_prompt, Ordering::Relaxed);
        alias.cost.fetch_add(s.cost, Ordering::Relaxed);
    }

    /// A call admitted here that never reached the upstream: release it, charge nothing.
    pub fn release(&self, team: &TeamCounters, reserved_cost: i64) {
        let mut state = team.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.reserved -= reserved_cost;
    }

    /// Raises the settled cost to what the shared store reported (so a fallback to local
    /// counters starts from the team's real spend, not from zero).
    pub fn observe_spent(&self, team: &TeamCounters, spent: i64) {
        let mut state = team.lock();
        state.spent = state.spent.max(spent);
    }

    /// This period's usage and spend of a team, and the period's name.
    pub fn team_usage(&self, team: &TeamCounters, period: Period) -> (String, Totals, i64) {
        let mut state = team.lock();
        state.roll(period, now_seconds());
        (state.window.name.clone(), state.usage, state.spent)
    }
}
