//! The attempt loop: for each tier, for each try — pick a target, call it, and on failure
//! retry (budget, backoff and deadline allowing) or move on to the next tier whose `on` names
//! the failure. Client errors end the loop at once and never count against a target.
//!
//! The call itself is behind [`Caller`], so the loop is tested against a scripted fake.

use std::future::Future;
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue};
use tokio::time::Instant;

use super::balance::{accepts, Pick};
use super::budget::{backoff, RetryBudget};
use super::commit::Committed;
use super::targets::{Clock, InFlight, OutKind, Transition};
use super::Resilience;
use crate::gateway::error::ApiError;
use crate::gateway::live::LiveTarget;
use crate::gateway::metrics::{Endpoint, Metrics};
use crate::gateway::providers::{Failed, UpstreamFailure};
use crate::llm::{FailureClass, UpstreamError};

/// Makes one try at a target, up to its commit point.
pub trait Caller: Sync {
    fn attempt<'a>(&'a self, target: &'a LiveTarget) -> impl Future<Output = Result<Committed, Failed>> + Send + 'a;
}

/// What the loop needs besides the route.
pub struct Env<'a> {
    pub alias: &'a str,
    pub endpoint: Endpoint,
    pub metrics: &'a Metrics,
    pub budget: &'a RetryBudget,
    pub clock: Clock,
}

/// A committed try.
pub struct Served<'t> {
    pub committed: Committed,
    pub target: &'t LiveTarget,
    pub in_flight: InFlight,
    /// `timeouts.total`, which the rest of the answer must meet too.
    pub deadline: Option<Instant>,
}

fn past(deadline: Option<Instant>, at: Instant) -> bool {
    deadline.is_some_and(|d| at >= d)
}

/// Runs the tries of one request until one commits or none is left.
pub async fn run<'t, C: Caller>(env: &Env<'_>, plan: &'t Resilience, caller: &C) -> Result<Served<'t>, Failed> {
    let policy = &plan.policy;
    let deadline = policy.total.map(|total| Instant::now() + total);
    env.budget.deposit();
    let mut last: Option<Box<UpstreamFailure>> = None;
    'tiers: for (index, tier) in plan.tiers.iter().enumerate() {
        if index > 0 {
            let Some(class) = last.as_ref().map(|f| f.error.class) else {
                break;
            };
            if !accepts(&tier.on, class) {
                continue;
            }
            env.metrics.resilience.fallback(env.alias, class);
            tracing::debug!(alias = env.alias, to = %tier.via, reason = class.as_str(), "falling back");
        }
        let tries = 1 + policy.retry.as_ref().map_or(0, |r| r.attempts);
        for n in 0..tries {
            if n > 0 {
                let (Some(retry), Some(failure)) = (&policy.retry, &last) else {
                    break;
                };
                if !accepts(&retry.on, failure.error.class) {
                    break;
                }
                let wait = backoff(retry.backoff, n, fastrand::f64());
                if past(deadline, Instant::now() + wait) {
                    break;
                }
                if !env.budget.withdraw() {
                    tracing::debug!(alias = env.alias, "retry budget spent: not retrying");
                    break;
                }
                tokio::time::sleep(wait).await;
            }
            let now = Instant::now();
            let target = match tier.pick(policy.load_balancing, env.clock.at(now), fastrand::f64()) {
                Pick::Ready(target) => target,
                Pick::Empty => break,
                // Every target is ejected: a later tier that takes the failure, else the one
                // ejected longest ago rather than nothing.
                Pick::Out(target, out) if out.kind == OutKind::Ejected => {
                    if plan.tiers[index + 1..].iter().any(|t| accepts(&t.on, out.reason)) {
                        last = Some(ejected(tier, out.reason));
                        break;
                    }
                    target
                }
                Pick::Out(target, out) => {
                    // Every target asked us to wait: wait when that fits the deadline, else
                    // the next tier at once.
                    let until = env.clock.instant(out.until);
                    if deadline.is_none_or(|d| until >= d) {
                        last = Some(held(target, until - now));
                        break;
                    }
                    tokio::time::sleep_until(until).await;
                    target
                }
            };
            let in_flight = InFlight::new(&target.state);
            let first_token = policy.first_token.map(|f| Instant::now() + f);
            let cutoff = match (first_token, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let outcome = match cutoff {
                None => caller.attempt(target).await,
                Some(at) => match tokio::time::timeout_at(at, caller.attempt(target)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(timed_out(target, first_token == Some(at), plan)),
                },
            };
            let failure = match outcome {
                Ok(committed) => {
                    target.state.record_success();
                    let provider = &target.upstream.name;
                    let metrics = target.metrics.get(env.metrics, env.alias, provider, env.endpoint);
                    metrics.attempt_ok.inc();
                    return Ok(Served {
                        committed,
                        target,
                        in_flight,
                        deadline,
                    });
                }
                Err(Failed::Request(error)) => return Err(Failed::Request(error)),
                Err(Failed::Upstream(failure)) => failure,
            };
            drop(in_flight);
            let class = failure.error.class;
            let provider = &target.upstream.name;
            env.metrics.resilience.attempt(env.alias, provider, Some(class)).inc();
            if class == FailureClass::ClientError {
                return Err(Failed::Upstream(failure));
            }
            let retry_after = failure.error.retry_after;
            if target.state.record_failure(class, retry_after, policy.outlier) == Some(Transition::Ejected) {
                env.metrics.resilience.ejected(provider);
            }
            let now = Instant::now();
            let wait_too_long = class == FailureClass::RateLimited
                && retry_after.is_some_and(|wait| deadline.is_some_and(|d| now + wait >= d));
            last = Some(failure);
            if past(deadline, now) {
                break 'tiers;
            }
            if wait_too_long {
                break;
            }
        }
    }
    Err(match last {
        Some(failure) => Failed::Upstream(failure),
        None => Failed::Request(ApiError::no_provider(env.alias)),
    })
}

/// A try that missed the first-token or total deadline.
fn timed_out(target: &LiveTarget, first_token: bool, plan: &Resilience) -> Failed {
    let (what, limit) = match first_token {
        true => ("any content", plan.policy.first_token),
        false => ("an answer", plan.policy.total),
    };
    let field = if first_token {
        "timeouts.firstToken"
    } else {
        "timeouts.total"
    };
    let limit = limit.map_or_else(String::new, |l| format!(" ({})", humantime::format_duration(l)));
    let mut error = UpstreamError::new(
        FailureClass::Timeout,
        504,
        format!(
            "The provider '{}' sent no {what} for model '{}' within the alias's {field}{limit}.",
            target.upstream.name, target.model
        ),
    );
    error.code = Some("upstream_timeout".to_string());
    super::commit::failure(error)
}

/// Every target of a tier is ejected.
fn ejected(tier: &super::LiveTier, reason: FailureClass) -> Box<UpstreamFailure> {
    let mut error = UpstreamError::new(
        reason,
        super::detect::status_of(reason),
        format!(
            "Every target of '{}' is ejected after failing repeatedly ({}).",
            tier.via,
            reason.as_str()
        ),
    );
    error.code = Some("upstream_ejected".to_string());
    Box::new(UpstreamFailure {
        error,
        raw: None,
        headers: HeaderMap::new(),
    })
}

/// Every target of a tier is held by `Retry-After` beyond the deadline.
fn held(target: &LiveTarget, wait: Duration) -> Box<UpstreamFailure> {
    let seconds = wait.as_secs_f64().ceil().max(1.0);
    let mut error = UpstreamError::new(
        FailureClass::RateLimited,
        429,
        format!(
            "The provider '{}' asked the gateway to wait before sending more requests for model '{}' (Retry-After); retry after {seconds} s.",
            target.upstream.name, target.model
        ),
    );
    error.code = Some("rate_limit_exceeded".to_string());
    error.retry_after = Some(wait);
    let mut headers = HeaderMap::new();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds as u64));
    Box::new(UpstreamFailure {
        error,
        raw: None,
        headers,
    })
}
