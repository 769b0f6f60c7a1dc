//! Load balancing within one tier: weighted (at random, by weight), round robin (exact per
//! replica) or least connections (fewest requests in flight, ties by weight), always skipping
//! targets out of rotation. When every target of a tier is out, the one that went out least
//! recently is offered rather than failing blind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::crd::{FailureCondition, LoadBalancing};
use crate::gateway::live::LiveTarget;
use crate::llm::FailureClass;

use super::targets::{Out, OutKind};

/// One tier of an alias: its own targets (tier 0) or a fallback.
pub struct LiveTier {
    pub targets: Vec<LiveTarget>,
    /// Running sums of the weights.
    pub cumulative: Vec<f64>,
    /// The failures that move on to this tier (empty for tier 0).
    pub on: Vec<FailureCondition>,
    /// The fallback's target as written, for logs.
    pub via: Arc<str>,
    /// Round-robin position, kept across table swaps.
    pub counter: Arc<AtomicUsize>,
}

/// Whether a failure class is one of `on`.
pub fn accepts(on: &[FailureCondition], class: FailureClass) -> bool {
    on.iter().any(|condition| matches_class(*condition, class))
}

fn matches_class(condition: FailureCondition, class: FailureClass) -> bool {
    match condition {
        FailureCondition::Any => class != FailureClass::ClientError,
        FailureCondition::RateLimited => class == FailureClass::RateLimited,
        FailureCondition::Overloaded => class == FailureClass::Overloaded,
        FailureCondition::ServerError => class == FailureClass::ServerError,
        FailureCondition::Timeout => class == FailureClass::Timeout,
        FailureCondition::Unreachable => class == FailureClass::Unreachable,
        FailureCondition::ContextWindowExceeded => class == FailureClass::ContextWindowExceeded,
        FailureCondition::AuthFailed => class == FailureClass::AuthFailed,
    }
}

/// The outcome of picking in a tier.
pub enum Pick<'a> {
    /// In rotation.
    Ready(&'a LiveTarget),
    /// Every target is out; this one went out least recently.
    Out(&'a LiveTarget, Out),
    /// The tier has no target with a weight.
    Empty,
}

impl LiveTier {
    pub fn new(targets: Vec<LiveTarget>, on: Vec<FailureCondition>, via: Arc<str>, counter: Arc<AtomicUsize>) -> Self {
        LiveTier {
            cumulative: cumulative(targets.iter().map(|t| t.weight)),
            targets,
            on,
            via,
            counter,
        }
    }

    /// Picks a target at `now` (clock nanoseconds); `roll` is uniform in `[0, 1)`.
    pub fn pick(&self, balancing: LoadBalancing, now: u64, roll: f64) -> Pick<'_> {
        let serving = |t: &&LiveTarget| t.weight > 0.0;
        let picked = match balancing {
            LoadBalancing::Weighted => self.weighted(now, roll),
            LoadBalancing::RoundRobin => self.round_robin(now),
            LoadBalancing::LeastConnections => self.least_connections(now),
        };
        if let Some(target) = picked {
            return Pick::Ready(target);
        }
        // Nothing in rotation: the target out longest, rather than nothing.
        let oldest = self
            .targets
            .iter()
            .filter(serving)
            .filter_map(|t| t.state.out_at(now).map(|out| (t, out)))
            .min_by_key(|(_, out)| (out.kind == OutKind::RetryAfter, out.since));
        match oldest {
            Some((target, out)) => Pick::Out(target, out),
            // Out a moment ago, back by now.
            None => self.targets.iter().find(serving).map_or(Pick::Empty, Pick::Ready),
        }
    }

    fn weighted(&self, now: u64, roll: f64) -> Option<&LiveTarget> {
        let all_in = self.targets.iter().all(|t| t.state.in_rotation(now));
        if all_in {
            let total = self.cumulative.last().copied().unwrap_or(0.0);
            if total <= 0.0 {
                return None;
            }
            let point = roll * total;
            let index = self.cumulative.iter().position(|&c| point < c).unwrap_or(0);
            return self.targets.get(index).filter(|t| t.weight > 0.0);
        }
        let available = |t: &&LiveTarget| t.weight > 0.0 && t.state.in_rotation(now);
        let total: f64 = self.targets.iter().filter(available).map(|t| t.weight).sum();
        if total <= 0.0 {
            return None;
        }
        let mut point = roll * total;
        let mut last = None;
        for target in self.targets.iter().filter(available) {
            if point < target.weight {
                return Some(target);
            }
            point -= target.weight;
            last = Some(target);
        }
        last
    }

    fn round_robin(&self, now: u64) -> Option<&LiveTarget> {
        let len = self.targets.len();
        if len == 0 {
            return None;
        }
        // One step per request, so the order stays exact while every target is in rotation;
        // targets out of rotation (or drained with weight 0) pass their turn to the next.
        let start = self.counter.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|i| &self.targets[(start + i) % len])
            .find(|t| t.weight > 0.0 && t.state.in_rotation(now))
    }

    fn least_connections(&self, now: u64) -> Option<&LiveTarget> {
        let len = self.targets.len();
        // Ties (same count, same weight) rotate, so an idle alias still spreads its requests.
        let start = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<(&LiveTarget, usize)> = None;
        for i in 0..len {
            let target = &self.targets[(start + i) % len];
            if target.weight <= 0.0 || !target.state.in_rotation(now) {
                continue;
            }
            let load = target.state.in_flight();
            let better = match best {
                None => true,
                Some((b, b_load)) => load < b_load || (load == b_load && target.weight > b.weight),
            };
            if better {
                best = Some((target, load));
            }
        }
        best.map(|(t, _)| t)
    }
}

/// Builds the running sums of weights.
pub fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut sum = 0.0;
    weights
        .map(|w| {
            sum += w;
            sum
        })
        .collect()
}
