//! The resilience, guardrail and pricing parts of an alias spec from the fuzzer's bytes:
//! fallbacks to aliases and provider models (so fallback cycles and chains are common),
//! retries, timeouts, outlier detection, content rules with regular expressions both sound
//! and broken, and prices both well-formed and not.

use arbitrary::{Arbitrary, Unstructured};

use super::generate::{pick, weighted, Ref};
use crate::crd::{
    AliasTimeouts, BuiltinDetector, CapMode, ContentRule, Direction, FailureCondition, FailureMode, Fallback,
    GuardAction, Guardrails, LoadBalancing, MaxOutputTokens, MessageRole, OutlierDetection, Pricing, Retry,
    WebhookGuard,
};

const CONDITIONS: [FailureCondition; 8] = [
    FailureCondition::RateLimited,
    FailureCondition::Overloaded,
    FailureCondition::ServerError,
    FailureCondition::Timeout,
    FailureCondition::Unreachable,
    FailureCondition::ContextWindowExceeded,
    FailureCondition::AuthFailed,
    FailureCondition::Any,
];
const BALANCING: [LoadBalancing; 3] = [
    LoadBalancing::Weighted,
    LoadBalancing::RoundRobin,
    LoadBalancing::LeastConnections,
];
const DIRECTIONS: [Direction; 3] = [Direction::Request, Direction::Response, Direction::Both];
const ROLES: [MessageRole; 5] = [
    MessageRole::System,
    MessageRole::Developer,
    MessageRole::User,
    MessageRole::Assistant,
    MessageRole::Tool,
];
/// Per kind of text: sound values, then odd ones (invalid, extreme or hostile).
const DURATIONS: (&[&str], &[&str]) = (&["10ms", "200ms", "1s", "30s", "2m", "1h30m"], &["0s", "1d", "-1s"]);
const PRICES: (&[&str], &[&str]) = (&["2.50", "0", "10.00", "0.000001"], &["1e3", "-1", "99999999999999.99"]);
const PATTERNS: (&[&str], &[&str]) = (
    &["(?i)project\\s+falcon", "\\d{3}-\\d{4}", "[a-z]+@corp\\.test", "(a+)+$"],
    &["\\w{1000}{1000}", "(", "", "(?P<x>a)(?P<x>b)"],
);
const KEYWORDS: (&[&str], &[&str]) = (&["falcon", "Project Zeus", "internal-only"], &["", " ", "\u{0}"]);
const RULE_NAMES: (&[&str], &[&str]) = (&["pii", "secrets"], &["Not A Name", ""]);
const WEBHOOKS: (&[&str], &[&str]) = (
    &[
        "http://classifier.ml.svc:8080/check",
        "https://guard.example.test/v1/classify",
    ],
    &["http://127.0.0.1:9/x", "ftp://nowhere", "http://169.254.169.254/latest"],
);

/// Mostly one of a list of sound values, sometimes an odd one or the fuzzer's own text.
#[derive(Debug)]
pub(super) enum Text<const LIST: u8> {
    Sound(u8),
    Odd(u8),
    Free(String),
}

impl<'a, const LIST: u8> Arbitrary<'a> for Text<LIST> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match weighted(u, &[24, 2, 1])? {
            0 => Text::Sound(u.arbitrary()?),
            1 => Text::Odd(u.arbitrary()?),
            _ => Text::Free(u.arbitrary()?),
        })
    }
}

const DURATION: u8 = 0;
const PRICE: u8 = 1;
const PATTERN: u8 = 2;
const RULE_NAME: u8 = 3;
const WEBHOOK: u8 = 4;
const KEYWORD: u8 = 5;

impl<const LIST: u8> Text<LIST> {
    fn text(&self) -> String {
        let (sound, odd) = match LIST {
            DURATION => DURATIONS,
            PRICE => PRICES,
            PATTERN => PATTERNS,
            RULE_NAME => RULE_NAMES,
            KEYWORD => KEYWORDS,
            _ => WEBHOOKS,
        };
        match self {
            Text::Free(text) => text.clone(),
            Text::Sound(at) => sound[usize::from(*at) % sound.len()].to_string(),
            Text::Odd(at) => odd[usize::from(*at) % odd.len()].to_string(),
        }
    }
}

fn conditions(picks: &Option<Vec<u8>>) -> Option<Vec<FailureCondition>> {
    let mut on: Vec<FailureCondition> = picks.as_ref()?.iter().take(3).map(|&c| pick(CONDITIONS, c)).collect();
    on.sort();
    on.dedup();
    (!on.is_empty()).then_some(on)
}

fn some<T, U>(value: &Option<T>, f: impl FnOnce(&T) -> U) -> Option<U> {
    value.as_ref().map(f)
}

/// Everything an alias may carry besides its targets: mostly fallbacks, each other part now
/// and then, so that wholly valid specs (and so served fallback tiers) are common.
#[derive(Debug)]
pub(super) struct Policy {
    fallbacks: Vec<(Ref, Option<Vec<u8>>)>,
    load_balancing: Option<u8>,
    retry: Option<(u8, Option<Vec<u8>>, Option<Text<DURATION>>)>,
    timeouts: Option<(Option<Text<DURATION>>, Option<Text<DURATION>>)>,
    outlier: Option<(Option<u16>, Option<Text<DURATION>>)>,
    guardrails: Option<Guard>,
    pricing: Option<(Text<PRICE>, Text<PRICE>, Option<Text<PRICE>>)>,
}

/// `Some` one time in four.
fn sometimes<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>) -> arbitrary::Result<Option<T>> {
    Ok(match weighted(u, &[3, 1])? {
        0 => None,
        _ => Some(u.arbitrary()?),
    })
}

impl<'a> Arbitrary<'a> for Policy {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let count = weighted(u, &[2, 6, 3, 1])?;
        let fallbacks = (0..count)
            .map(|_| Ok((u.arbitrary()?, sometimes(u)?)))
            .collect::<arbitrary::Result<_>>()?;
        Ok(Policy {
            fallbacks,
            load_balancing: sometimes(u)?,
            retry: sometimes(u)?,
            timeouts: sometimes(u)?,
            outlier: sometimes(u)?,
            guardrails: sometimes(u)?,
            pricing: sometimes(u)?,
        })
    }
}

#[derive(Arbitrary, Debug)]
struct Guard {
    max_input_bytes: Option<u32>,
    max_output_tokens: Option<(u32, bool)>,
    content: Vec<Rule>,
    webhook: Option<(Text<WEBHOOK>, Option<Text<DURATION>>, bool)>,
}

#[derive(Arbitrary, Debug)]
struct Rule {
    name: Text<RULE_NAME>,
    builtin: Option<Vec<u8>>,
    patterns: Option<Vec<Text<PATTERN>>>,
    keywords: Option<Vec<Text<KEYWORD>>>,
    on: Option<Vec<u8>>,
    mask: Option<bool>,
    roles: Option<Vec<u8>>,
}

/// The parts of a [`crate::crd::ModelAliasSpec`] a [`Policy`] fills.
pub(super) struct Built {
    pub load_balancing: Option<LoadBalancing>,
    pub fallbacks: Option<Vec<Fallback>>,
    pub retry: Option<Retry>,
    pub timeouts: Option<AliasTimeouts>,
    pub outlier_detection: Option<OutlierDetection>,
    pub guardrails: Option<Guardrails>,
    pub pricing: Option<Pricing>,
}

impl Policy {
    pub(super) fn build(&self) -> Built {
        Built {
            load_balancing: self.load_balancing.map(|b| pick(BALANCING, b)),
            fallbacks: (!self.fallbacks.is_empty()).then(|| {
                self.fallbacks
                    .iter()
                    .take(4)
                    .map(|(target, on)| Fallback {
                        target: target.text(),
                        on: conditions(on),
                        on_yaml11: None,
                    })
                    .collect()
            }),
            retry: some(&self.retry, |(attempts, on, backoff)| Retry {
                attempts: u32::from(*attempts % 12),
                on: conditions(on),
                on_yaml11: None,
                backoff: backoff.as_ref().map(Text::text),
            }),
            timeouts: some(&self.timeouts, |(first, total)| AliasTimeouts {
                first_token: first.as_ref().map(Text::text),
                total: total.as_ref().map(Text::text),
            }),
            outlier_detection: some(&self.outlier, |(failures, ejection)| OutlierDetection {
                consecutive_failures: failures.map(u32::from),
                ejection_time: ejection.as_ref().map(Text::text),
            }),
            guardrails: self.guardrails.as_ref().map(Guard::build),
            pricing: some(&self.pricing, |(input, output, cached)| Pricing {
                input_per_million_tokens: input.text(),
                output_per_million_tokens: output.text(),
                cached_input_per_million_tokens: cached.as_ref().map(Text::text),
            }),
        }
    }
}

impl Guard {
    fn build(&self) -> Guardrails {
        Guardrails {
            max_input_bytes: self.max_input_bytes.map(u64::from),
            max_output_tokens: self.max_output_tokens.map(|(value, clamp)| MaxOutputTokens {
                value: u64::from(value),
                mode: Some(if clamp { CapMode::Clamp } else { CapMode::Reject }),
            }),
            content: (!self.content.is_empty()).then(|| self.content.iter().take(4).map(Rule::build).collect()),
            webhook: some(&self.webhook, |(url, timeout, open)| WebhookGuard {
                url: url.text(),
                categories: Some(vec!["jailbreak".to_string()]),
                timeout: timeout.as_ref().map(Text::text),
                failure_mode: Some(if *open { FailureMode::Open } else { FailureMode::Closed }),
            }),
        }
    }
}

impl Rule {
    fn build(&self) -> ContentRule {
        ContentRule {
            name: self.name.text(),
            builtin: some(&self.builtin, |b| {
                b.iter().take(10).map(|&d| pick(BuiltinDetector::ALL, d)).collect()
            }),
            patterns: some(&self.patterns, |p| p.iter().take(4).map(Text::text).collect()),
            keywords: some(&self.keywords, |k| k.iter().take(4).map(Text::text).collect()),
            on: some(&self.on, |o| o.iter().take(3).map(|&d| pick(DIRECTIONS, d)).collect()),
            on_yaml11: None,
            action: self
                .mask
                .map(|m| if m { GuardAction::Mask } else { GuardAction::Block }),
            roles: some(&self.roles, |r| r.iter().take(5).map(|&d| pick(ROLES, d)).collect()),
        }
    }
}
