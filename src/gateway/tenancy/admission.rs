//! The guard a request holds from admission to the end of its response: settled with the
//! upstream's usage when the body ends, released (nothing charged) if it never got one.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::limits::BucketView;
use super::live::LiveTeam;
use super::metrics::TeamAliasMetrics;
use super::store::memory::AliasCounters;
use super::store::{Settlement, UsageStore};
use crate::compiler::tenancy::period::window;
use crate::compiler::tenancy::{usd, Price, Tokens};
use crate::crd::Period;
use crate::gateway::usage::Usage;

/// An admitted request. `Admission::open()` (no key needed) does nothing.
#[must_use]
pub struct Admission(Option<Box<Metering>>);

pub(super) struct Metering {
    pub store: Arc<UsageStore>,
    pub team: Arc<LiveTeam>,
    pub alias: Arc<str>,
    pub alias_counters: Arc<AliasCounters>,
    pub metrics: Arc<TeamAliasMetrics>,
    pub price: Option<Price>,
    pub period: Period,
    pub period_name: String,
    pub reserved_cost: i64,
    pub estimate: Tokens,
    /// Whether the shared store admitted it (its reservation lives there).
    pub remote: bool,
    pub requests: Option<BucketView>,
    pub tokens: Option<BucketView>,
}

impl Admission {
    /// No tenancy: nothing to settle.
    pub fn open() -> Self {
        Admission(None)
    }

    pub(super) fn metered(metering: Metering) -> Self {
        Admission(Some(Box::new(metering)))
    }

    /// Adds the `x-ratelimit-*` headers of the team's limits.
    pub fn decorate(&self, headers: &mut HeaderMap) {
        if let Some(m) = &self.0 {
            rate_headers(headers, m.requests, m.tokens);
        }
    }

    /// Charges the call with the upstream's usage. Without usage (a stream whose client did not
    /// ask for `stream_options.include_usage`), the estimate is charged.
    pub fn settle(mut self, usage: Option<Usage>) {
        let Some(m) = self.0.take() else { return };
        let tokens = match usage {
            Some(u) => Tokens {
                prompt: u.prompt_tokens,
                completion: u.completion_tokens,
                cached_prompt: u.cached_tokens(),
            },
            None => m.estimate,
        };
        let cost = m.price.map_or(0, |p| p.cost(tokens));
        m.metrics.requests.inc();
        m.metrics.input.inc_by(tokens.prompt);
        m.metrics.output.inc_by(tokens.completion);
        m.metrics.cached_input.inc_by(tokens.cached_prompt);
        m.metrics.cost.inc_by(usd(cost));
        finish(*m, true, tokens, cost);
    }
}

impl Drop for Admission {
    /// Never answered (the upstream failed, the client left before headers): release.
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            finish(*m, false, Tokens::default(), 0);
        }
    }
}

fn finish(m: Metering, answered: bool, tokens: Tokens, cost: i64) {
    let settlement = Settlement {
        team: m.team.label.clone(),
        alias: m.alias,
        period: m.period,
        usage_ttl: usage_ttl(m.period),
        period_name: m.period_name,
        reserved_cost: m.reserved_cost,
        estimated_tokens: m.estimate.prompt + m.estimate.completion,
        tokens_per_minute: m.team.limits.tokens_per_minute,
        answered,
        tokens,
        cost,
    };
    m.store
        .settle(&m.team.counters, &m.alias_counters, settlement, m.remote);
}

/// How long a period's usage is kept in the shared store: the period plus 40 days.
fn usage_ttl(period: Period) -> i64 {
    const DAY: i64 = 86_400;
    match period {
        Period::Never => 0,
        Period::Daily => 41 * DAY,
        Period::Weekly => 47 * DAY,
        Period::Monthly => 71 * DAY,
    }
}

/// The period name now, for a team's credits.
pub fn period_name(period: Period) -> String {
    window(period, crate::compiler::tenancy::period::now_seconds()).name
}

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, as OpenAI sends them.
pub fn rate_headers(headers: &mut HeaderMap, requests: Option<BucketView>, tokens: Option<BucketView>) {
    for (suffix, view) in [("requests", requests), ("tokens", tokens)] {
        let Some(view) = view else { continue };
        for (what, value) in [
            ("limit", view.limit.to_string()),
            ("remaining", view.remaining.to_string()),
            ("reset", duration_text(view.reset)),
        ] {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(format!("x-ratelimit-{what}-{suffix}").as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.insert(name, value);
            }
        }
    }
}

/// `250ms`, `1.5s`, `6m0s`: the duration format of OpenAI's reset headers.
pub fn duration_text(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let minutes = ms / 60_000;
    let rest = (ms % 60_000) as f64 / 1000.0;
    let seconds = format!("{rest:.3}");
    let seconds = seconds.trim_end_matches('0').trim_end_matches('.');
    if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations_read_like_openais() {
        assert_eq!(duration_text(Duration::from_millis(250)), "250ms");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration_text(Duration::from_secs(360)), "6m0s");
        assert_eq!(duration_text(Duration::from_millis(61_250)), "1m1.25s");
    }
}
