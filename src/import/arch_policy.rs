//! Arch's alias-level `fallbacks[].conditions` and `guardrails`, mapped onto modelgate's
//! failure classes, timeouts and content rules.

use super::plan::{seconds, Plan};
use super::walk::Node;
use crate::compiler::rules::parse_duration;
use crate::crd::{AliasTimeouts, BuiltinDetector, ContentRule, FailureCondition, GuardAction, Guardrails};

/// One Arch fallback condition as modelgate failure classes; `None` when it has no equivalent.
pub fn condition(name: &str) -> Option<FailureCondition> {
    use FailureCondition::*;
    let normal = name.trim().to_ascii_lowercase().replace('-', "_");
    Some(match normal.as_str() {
        "quota_exceeded" | "rate_limited" | "rate_limit" | "rate_limit_exceeded" | "429" => RateLimited,
        "timeout" | "timed_out" | "request_timeout" => Timeout,
        "server_error" | "5xx" | "500" | "internal_error" => ServerError,
        "overloaded" | "unavailable" | "service_unavailable" | "503" | "529" => Overloaded,
        "unreachable" | "connection_error" | "connection_refused" | "network_error" => Unreachable,
        "context_length_exceeded" | "context_window_exceeded" | "context_window" => ContextWindowExceeded,
        "auth_failed" | "unauthorized" | "authentication_error" | "401" => AuthFailed,
        // "primary_and_first_fallback_failed" orders tiers, which modelgate's tiers already
        // are: any failure of the tiers before moves on.
        "any" | "error" | "all" | "always" | "primary_and_first_fallback_failed" | "primary_failed" => Any,
        _ => return None,
    })
}

/// The failure classes of one fallback's `conditions` (absent: modelgate's default).
pub fn conditions(node: Option<Node>, plan: &mut Plan) -> Option<Vec<FailureCondition>> {
    let node = node?;
    let mut out: Vec<FailureCondition> = Vec::new();
    for item in node.items() {
        let name = item.text().unwrap_or_default();
        match condition(&name) {
            Some(c) if !out.contains(&c) => out.push(c),
            Some(_) => {}
            None => plan.warn(&item.at(), format!("condition '{name}' has no equivalent and is left out (modelgate knows rateLimited, overloaded, serverError, timeout, unreachable, contextWindowExceeded, authFailed, any)")),
        }
    }
    if out.contains(&FailureCondition::Any) {
        out = vec![FailureCondition::Any];
    }
    (!out.is_empty()).then_some(out)
}

/// Personal data detectors, for `PII`.
const PII: &[BuiltinDetector] = &[
    BuiltinDetector::Email,
    BuiltinDetector::Phone,
    BuiltinDetector::CreditCard,
    BuiltinDetector::UsSsn,
    BuiltinDetector::Iban,
];

/// Credential detectors, for `sensitive_data`.
const SECRETS: &[BuiltinDetector] = &[
    BuiltinDetector::AwsAccessKey,
    BuiltinDetector::PrivateKey,
    BuiltinDetector::OpenaiKey,
    BuiltinDetector::GithubToken,
];

/// Arch's alias `guardrails`: `max_latency` becomes `timeouts.total`; `PII` and
/// `sensitive_data` become blocking content rules; the rest is reported.
pub fn guardrails(node: &Node, plan: &mut Plan) -> (Option<Guardrails>, Option<AliasTimeouts>) {
    let mut rules: Vec<ContentRule> = Vec::new();
    let mut timeouts = None;
    let add = |rules: &mut Vec<ContentRule>, name: &str, detectors: &[BuiltinDetector]| {
        if !rules.iter().any(|r| r.name == name) {
            rules.push(rule(name, detectors));
        }
    };
    for (key, value) in node.entries() {
        match key.as_str() {
            "max_latency" => match latency(&value) {
                Some(total) => {
                    timeouts = Some(AliasTimeouts {
                        first_token: None,
                        total: Some(total),
                    })
                }
                None => plan.warn(&value.at(), "max_latency must be a duration such as 5s; left out"),
            },
            "block_categories" => {
                for item in value.items() {
                    let category = item.text().unwrap_or_default().to_ascii_lowercase();
                    match category.as_str() {
                        "pii" => add(&mut rules, "pii", PII),
                        "secrets" | "credentials" | "sensitive_data" => add(&mut rules, "secrets", SECRETS),
                        "jailbreak" | "prompt_injection" | "toxicity" => plan.warn(
                            &item.at(),
                            format!("'{category}' needs a classifier: add guardrails.webhook with your classifier's URL and categories: [{category}]"),
                        ),
                        _ => plan.warn(&item.at(), format!("category '{category}' has no built-in detector; left out")),
                    }
                }
            }
            "content_filters" => {
                for item in value.items() {
                    let kind = item.get("type").and_then(|t| t.text()).unwrap_or_default();
                    match kind.as_str() {
                        "sensitive_data" => add(&mut rules, "secrets", SECRETS),
                        "pii" => add(&mut rules, "pii", PII),
                        _ => plan.warn(
                            &item.at(),
                            format!("content filter '{kind}' has no built-in detector: write a content rule with keywords or patterns"),
                        ),
                    }
                }
            }
            "max_cost_per_request" => plan.warn(
                &value.at(),
                "a cost cap per request has no equivalent; cap spend per Team with credits, or output with maxOutputTokens",
            ),
            _ => plan.warn(&value.at(), "not carried over: modelgate has no equivalent guardrail"),
        }
    }
    let guardrails = (!rules.is_empty()).then(|| Guardrails {
        content: Some(rules),
        ..Guardrails::default()
    });
    (guardrails, timeouts)
}

fn rule(name: &str, detectors: &[BuiltinDetector]) -> ContentRule {
    ContentRule {
        name: name.to_string(),
        builtin: Some(detectors.to_vec()),
        patterns: None,
        keywords: None,
        on: None,
        on_yaml11: None,
        action: Some(GuardAction::Block),
        roles: None,
    }
}

fn latency(value: &Node) -> Option<String> {
    if let Some(n) = value.value.as_f64() {
        return seconds(n);
    }
    let text = value.text()?;
    let text = text.trim();
    if parse_duration(text).is_some() {
        return Some(text.to_string());
    }
    // "1.5s" and other decimals the CRD grammar does not take.
    let secs: f64 = text.strip_suffix('s')?.parse().ok()?;
    seconds(secs)
}
