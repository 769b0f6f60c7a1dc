//! The guard a request holds from admission to the end of its response: settled with the
//! upstream's usage when the body ends, released (nothing charged) if it never got one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::limits::BucketView;
use super::live::LiveTeam;
use super::metrics::TeamAliasMetrics;
use super::store::memory::AliasCounters;
use super::store::{Settlement, UsageStore};
use crate::compiler::tenancy::{usd, Price, Tokens};
use crate::crd::Period;
use crate::gateway::usage::Usage;

/// An admitted request. `Admission::open()` (no key needed) does nothing.
#[must_use]
pub struct Admission(Held);

enum Held {
    Open,
    Metered(Box<Metering>),
    /// One of several tries at a request: it settles the request's admission only if it is
    /// the try that is committed ([`Admission::for_try`]).
    Try(Arc<Mutex<Handover>>),
}

/// Between a try's meter and the resilience stage's commit, whichever comes second settles.
enum Handover {
    /// Neither yet.
    Waiting,
    /// Committed, the meter still running.
    Given(Admission),
    /// The meter finished first (a whole answer read before the commit).
    Ended(Option<Usage>),
    Settled,
}

/// Hands a request's admission to the try that is committed.
#[must_use]
pub struct Handoff(Arc<Mutex<Handover>>);

impl Handoff {
    /// This try is the one the client gets: its meter settles `admission` with its usage (at
    /// once, when it has already ended). Tries never committed settle nothing, so the
    /// admission is settled exactly once.
    pub fn commit(self, admission: Admission) {
        let mut handover = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::replace(&mut *handover, Handover::Settled) {
            Handover::Waiting => *handover = Handover::Given(admission),
            Handover::Ended(usage) => {
                drop(handover);
                admission.settle(usage);
            }
            // Committed twice cannot happen (`self` is consumed); the admission is released.
            Handover::Given(_) | Handover::Settled => {}
        }
    }
}

pub(super) struct Metering {
    pub store: Arc<UsageStore>,
    pub team: Arc<LiveTeam>,
    pub alias: Arc<str>,
    pub alias_counters: Arc<AliasCounters>,
    pub metrics: Arc<TeamAliasMetrics>,
    pub price: Option<Price>,
    pub period: Period,
    pub period_name: Arc<str>,
    /// Seconds since the Unix epoch at admission.
    pub admitted_at: i64,
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
        Admission(Held::Open)
    }

    pub(super) fn metered(metering: Metering) -> Self {
        Admission(Held::Metered(Box::new(metering)))
    }

    /// Whether there is nothing to settle (no tenancy).
    pub fn is_open(&self) -> bool {
        matches!(self.0, Held::Open)
    }

    /// A stand-in for one try of a request served by several (retries, fallbacks): the try's
    /// meter settles it like an admission, but it charges the request's admission only once
    /// the [`Handoff`] commits it to this try.
    pub fn for_try() -> (Admission, Handoff) {
        let handover = Arc::new(Mutex::new(Handover::Waiting));
        (Admission(Held::Try(handover.clone())), Handoff(handover))
    }

    /// Adds the `x-ratelimit-*` headers of the team's limits.
    pub fn decorate(&self, headers: &mut HeaderMap) {
        if let Held::Metered(m) = &self.0 {
            rate_headers(headers, m.requests, m.tokens, &m.team.limit_values);
        }
    }

    /// Charges the call with the upstream's usage. Without usage (a stream whose client did not
    /// ask for `stream_options.include_usage`), the estimate is charged.
    pub fn settle(mut self, usage: Option<Usage>) {
        let m = match std::mem::replace(&mut self.0, Held::Open) {
            Held::Open => return,
            Held::Metered(m) => m,
            Held::Try(handover) => return settle_try(&handover, usage),
        };
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
        // A try's stand-in dropped unsettled leaves the request's admission to another try.
        if let Held::Metered(m) = std::mem::replace(&mut self.0, Held::Open) {
            finish(*m, false, Tokens::default(), 0);
        }
    }
}

/// A try's meter ended: settle the admission if the try is committed, else keep the usage
/// for the commit that may follow.
fn settle_try(handover: &Mutex<Handover>, usage: Option<Usage>) {
    let mut state = handover.lock().unwrap_or_else(|p| p.into_inner());
    match std::mem::replace(&mut *state, Handover::Settled) {
        Handover::Given(admission) => {
            drop(state);
            admission.settle(usage);
        }
        Handover::Waiting => *state = Handover::Ended(usage),
        ended @ (Handover::Ended(_) | Handover::Settled) => *state = ended,
    }
}

fn finish(m: Metering, answered: bool, tokens: Tokens, cost: i64) {
    let settlement = Settlement {
        team: m.team.label.clone(),
        alias: m.alias,
        period: m.period,
        usage_ttl: usage_ttl(m.period),
        period_name: m.period_name,
        admitted_at: m.admitted_at,
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

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`: names made once, not per request.
static RATE_HEADERS: [[HeaderName; 3]; 2] = [
    [
        HeaderName::from_static("x-ratelimit-limit-requests"),
        HeaderName::from_static("x-ratelimit-remaining-requests"),
        HeaderName::from_static("x-ratelimit-reset-requests"),
    ],
    [
        HeaderName::from_static("x-ratelimit-limit-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
        HeaderName::from_static("x-ratelimit-reset-tokens"),
    ],
];

/// The `x-ratelimit-limit-*` values of a team's configured limits (requests, tokens), made
/// when its table is installed: a limit does not change between requests, so the request
/// path clones a value instead of formatting, slicing and validating it.
#[derive(Clone, Debug, Default)]
pub struct LimitValues([Option<(u64, HeaderValue)>; 2]);

impl LimitValues {
    pub fn new(requests_per_minute: Option<u64>, tokens_per_minute: Option<u64>) -> Self {
        LimitValues([requests_per_minute, tokens_per_minute].map(|n| n.map(|n| (n, HeaderValue::from(n)))))
    }

    fn get(&self, which: usize, limit: u64) -> Option<&HeaderValue> {
        match &self.0[which] {
            Some((n, value)) if *n == limit => Some(value),
            _ => None,
        }
    }
}

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, as OpenAI sends them. The limits
/// come from `known` when they are the team's (always, but for a store that answers with
/// another limit); the remaining values are written into one buffer and each header value is
/// a slice of it: one allocation per response instead of one per header (callgrind, the map
/// inserts included: 12,800 instructions per request with `format!`, 4,700 with a value
/// each, 4,000 with all six in the buffer).
pub fn rate_headers(
    headers: &mut HeaderMap,
    requests: Option<BucketView>,
    tokens: Option<BucketView>,
    known: &LimitValues,
) {
    let views = [requests, tokens];
    let mut text = Text::default();
    // Each value's end in `text`; the limit's is 0 when `known` has it.
    let mut ends = [[0usize; 3]; 2];
    for (which, (view, ends)) in views.iter().zip(&mut ends).enumerate() {
        let Some(view) = view else { continue };
        if known.get(which, view.limit).is_none() {
            push_number(&mut text, view.limit);
            ends[0] = text.len();
        }
        push_number(&mut text, view.remaining);
        ends[1] = text.len();
        push_duration(&mut text, view.reset);
        ends[2] = text.len();
    }
    // One allocation holding the text (a `BytesMut` made two: its buffer, then the shared
    // header its first slice needs).
    let text = Bytes::from_owner(text);
    headers.reserve(6);
    let mut start = 0;
    for (which, ((names, view), ends)) in RATE_HEADERS.iter().zip(views).zip(ends).enumerate() {
        let Some(view) = view else { continue };
        for (slot, (name, end)) in names.iter().zip(ends).enumerate() {
            if slot == 0 {
                if let Some(value) = known.get(which, view.limit) {
                    headers.insert(name.clone(), value.clone());
                    continue;
                }
            }
            // Digits, letters and a dot: always a valid header value.
            if let Ok(value) = HeaderValue::from_maybe_shared(text.slice(start..end)) {
                headers.insert(name.clone(), value);
            }
            start = end;
        }
    }
}

/// The six values' text, on the stack until it becomes the values' one shared buffer: two
/// buckets of a limit and a remaining count (20 digits each at most) and a reset (23 bytes at
/// most, `307445734561825m51.615s`) fit.
struct Text {
    bytes: [u8; 128],
    len: usize,
}

impl Default for Text {
    fn default() -> Self {
        Text {
            bytes: [0; 128],
            len: 0,
        }
    }
}

impl Text {
    fn push(&mut self, bytes: &[u8]) {
        // Never more than fits (see above); were it, the value would be cut, not a panic.
        if let Some(to) = self.bytes.get_mut(self.len..self.len + bytes.len()) {
            to.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    fn len(&self) -> usize {
        self.len
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The decimal digits of `n`, with `itoa` (two digits per step from a table; a loop of
/// 64-bit divisions by ten cost about 150 instructions a number, a 128-bit one more).
fn push_number(out: &mut Text, n: u64) {
    out.push(itoa::Buffer::new().format(n).as_bytes());
}

/// `250ms`, `1.5s`, `6m0s`: the duration format of OpenAI's reset headers, without a float.
fn push_duration(out: &mut Text, duration: Duration) {
    // Saturates at 584 million years.
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if ms < 1000 {
        push_number(out, ms);
        out.push(b"ms");
        return;
    }
    let (minutes, rest) = (ms / 60_000, ms % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    if minutes > 0 {
        push_number(out, minutes);
        out.push(b"m");
    }
    push_number(out, seconds);
    if millis > 0 {
        // 1.5s, 1.25s, 1.005s: three decimals, trailing zeros dropped.
        let decimals = [(millis / 100) as u8, (millis / 10 % 10) as u8, (millis % 10) as u8];
        let last = decimals.iter().rposition(|d| *d != 0).unwrap_or(0);
        out.push(b".");
        for digit in &decimals[..=last] {
            out.push(&[b'0' + digit]);
        }
    }
    out.push(b"s");
}

/// [`push_duration`] as text.
#[cfg(test)]
fn duration_text(duration: Duration) -> String {
    let mut text = Text::default();
    push_duration(&mut text, duration);
    String::from_utf8_lossy(text.as_ref()).into_owned()
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
        assert_eq!(duration_text(Duration::from_millis(1_005)), "1.005s");
        assert_eq!(duration_text(Duration::from_millis(60_000)), "1m0s");
        assert_eq!(duration_text(Duration::from_millis(999)), "999ms");
        assert_eq!(duration_text(Duration::MAX), "307445734561825m51.615s");
        assert_eq!(duration_text(Duration::from_millis(1_050)), "1.05s");
        assert_eq!(duration_text(Duration::ZERO), "0ms");
    }

    #[test]
    fn rate_headers_carry_both_buckets_or_one() {
        let view = |limit, remaining, ms| BucketView {
            limit,
            remaining,
            reset: Duration::from_millis(ms),
        };
        let get = |h: &HeaderMap, name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        // The team's limits known in advance (the request path), not known, and known but
        // not what the store answered: the same six values.
        for known in [
            LimitValues::new(Some(600), Some(200_000)),
            LimitValues::default(),
            LimitValues::new(Some(601), Some(7)),
            LimitValues::new(None, Some(200_000)),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("x-ratelimit-limit-requests", HeaderValue::from_static("9"));
            rate_headers(
                &mut headers,
                Some(view(600, 599, 100)),
                Some(view(200_000, 199_000, 61_250)),
                &known,
            );
            assert_eq!(headers.len(), 6, "{known:?}");
            assert_eq!(get(&headers, "x-ratelimit-limit-requests").as_deref(), Some("600"));
            assert_eq!(get(&headers, "x-ratelimit-remaining-requests").as_deref(), Some("599"));
            assert_eq!(get(&headers, "x-ratelimit-reset-requests").as_deref(), Some("100ms"));
            assert_eq!(get(&headers, "x-ratelimit-limit-tokens").as_deref(), Some("200000"));
            assert_eq!(get(&headers, "x-ratelimit-remaining-tokens").as_deref(), Some("199000"));
            assert_eq!(get(&headers, "x-ratelimit-reset-tokens").as_deref(), Some("1m1.25s"));
        }
        // The longest values of both buckets fit the stack buffer whole.
        let most = BucketView {
            limit: u64::MAX,
            remaining: u64::MAX,
            reset: Duration::MAX,
        };
        let mut longest = HeaderMap::new();
        rate_headers(&mut longest, Some(most), Some(most), &LimitValues::default());
        for bucket in ["requests", "tokens"] {
            let max = u64::MAX.to_string();
            assert_eq!(get(&longest, &format!("x-ratelimit-limit-{bucket}")), Some(max.clone()));
            assert_eq!(get(&longest, &format!("x-ratelimit-remaining-{bucket}")), Some(max));
            let reset = get(&longest, &format!("x-ratelimit-reset-{bucket}"));
            assert_eq!(reset.as_deref(), Some("307445734561825m51.615s"));
        }
        let mut only_tokens = HeaderMap::new();
        rate_headers(
            &mut only_tokens,
            None,
            Some(view(10, 0, 6_000)),
            &LimitValues::new(None, Some(10)),
        );
        assert_eq!(only_tokens.len(), 3);
        assert_eq!(get(&only_tokens, "x-ratelimit-remaining-tokens").as_deref(), Some("0"));
        assert_eq!(get(&only_tokens, "x-ratelimit-reset-tokens").as_deref(), Some("6s"));
    }
}
