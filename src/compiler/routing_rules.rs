//! Field rules of an alias's routing policy and guardrails (the same rules are CEL in the CRD
//! where a single field can say them).

use std::collections::HashSet;
use std::time::Duration;

use super::diagnostic::{Diagnostic, ObjectRef, Reason};
use super::rules::parse_duration;
use crate::crd::{FailureCondition, Guardrails, ModelAliasSpec};

/// `on` spelled both ways (`on` and YAML 1.1's `true`).
const ON_TWICE_MESSAGE: &str =
    "set on once: a quoted \"on\" key and an unquoted on: key (which YAML 1.1 readers such as kubectl turn into true) are the same field";

/// Largest compiled size of one guardrail pattern set (the regex crate's own limit is 10 MiB).
const MAX_PATTERN_SIZE: usize = 2 << 20;

/// Checks `fallbacks`, `retry`, `timeouts`, `outlierDetection` and `guardrails`.
pub fn check_routing_spec(
    object: &ObjectRef,
    spec: &ModelAliasSpec,
    check_target: impl Fn(&str, &str, &mut Vec<Diagnostic>),
    out: &mut Vec<Diagnostic>,
) {
    let mut twice: Vec<String> = Vec::new();
    for (n, fallback) in spec.fallbacks.iter().flatten().enumerate() {
        if fallback.on.is_some() && fallback.on_yaml11.is_some() {
            twice.push(format!("spec.fallbacks[{n}].on"));
        }
    }
    if spec
        .retry
        .as_ref()
        .is_some_and(|r| r.on.is_some() && r.on_yaml11.is_some())
    {
        twice.push("spec.retry.on".into());
    }
    for (n, rule) in spec
        .guardrails
        .iter()
        .flat_map(|g| g.content.iter().flatten())
        .enumerate()
    {
        if rule.on.is_some() && rule.on_yaml11.is_some() {
            twice.push(format!("spec.guardrails.content[{n}].on"));
        }
    }
    for field in twice {
        out.push(Diagnostic::error(object, field, Reason::InvalidSpec, ON_TWICE_MESSAGE));
    }
    let mut error = |field: String, message: String| {
        out.push(Diagnostic::error(object, field, Reason::InvalidSpec, message));
    };
    let mut targets_seen: Vec<Diagnostic> = Vec::new();
    for (n, fallback) in spec.fallbacks.iter().flatten().enumerate() {
        check_target(
            &format!("spec.fallbacks[{n}].target"),
            &fallback.target,
            &mut targets_seen,
        );
        if let Some(on) = fallback.conditions() {
            check_conditions(&format!("spec.fallbacks[{n}].on"), on, &mut error);
        }
    }
    if let Some(retry) = &spec.retry {
        if retry.attempts > 10 {
            error(
                "spec.retry.attempts".into(),
                format!("attempts is {}; at most 10 retries are allowed", retry.attempts),
            );
        }
        if let Some(on) = retry.conditions() {
            check_conditions("spec.retry.on", on, &mut error);
            if on.contains(&FailureCondition::ContextWindowExceeded) {
                error(
                    "spec.retry.on".into(),
                    "retrying contextWindowExceeded sends the same too-long request again; use a fallback to a model with a larger window instead".into(),
                );
            }
        }
        if let Some(text) = &retry.backoff {
            check_duration("spec.retry.backoff", text, false, &mut error);
        }
    }
    if let Some(timeouts) = &spec.timeouts {
        let first = timeouts
            .first_token
            .as_deref()
            .and_then(|t| check_duration("spec.timeouts.firstToken", t, true, &mut error));
        let total = timeouts
            .total
            .as_deref()
            .and_then(|t| check_duration("spec.timeouts.total", t, true, &mut error));
        if let (Some(first), Some(total)) = (first, total) {
            if first > total {
                error(
                    "spec.timeouts.firstToken".into(),
                    "firstToken is longer than total, so it can never apply; make it shorter or remove it".into(),
                );
            }
        }
    }
    if let Some(outlier) = &spec.outlier_detection {
        if outlier.consecutive_failures == Some(0) {
            error(
                "spec.outlierDetection.consecutiveFailures".into(),
                "consecutiveFailures must be at least 1".into(),
            );
        }
        if let Some(text) = &outlier.ejection_time {
            check_duration("spec.outlierDetection.ejectionTime", text, true, &mut error);
        }
    }
    if let Some(guardrails) = &spec.guardrails {
        check_guardrails(guardrails, &mut error);
    }
    out.extend(targets_seen);
}

fn check_conditions(field: &str, on: &[FailureCondition], error: &mut impl FnMut(String, String)) {
    if on.is_empty() {
        error(field.to_string(), "on must name at least one failure condition".into());
    }
    let mut seen = HashSet::new();
    for condition in on {
        if !seen.insert(condition) {
            error(field.to_string(), format!("'{}' is listed twice", condition.as_str()));
        }
    }
}

/// Checks a duration; `positive` refuses zero. Returns it when valid.
fn check_duration(field: &str, text: &str, positive: bool, error: &mut impl FnMut(String, String)) -> Option<Duration> {
    match parse_duration(text) {
        None => {
            error(
                field.to_string(),
                format!("'{text}' must be a duration such as 500ms, 10s, 5m or 1h30m"),
            );
            None
        }
        Some(d) if positive && d.is_zero() => {
            error(
                field.to_string(),
                "a zero duration would fail every request; remove it or set a positive one".into(),
            );
            None
        }
        Some(d) => Some(d),
    }
}

/// Checks guardrails: patterns compile (linear-time `regex` syntax), names unique, caps sane.
pub fn check_guardrails(guardrails: &Guardrails, error: &mut impl FnMut(String, String)) {
    if guardrails.max_input_bytes == Some(0) {
        error(
            "spec.guardrails.maxInputBytes".into(),
            "maxInputBytes must be at least 1".into(),
        );
    }
    if guardrails.max_output_tokens.as_ref().is_some_and(|m| m.value == 0) {
        error(
            "spec.guardrails.maxOutputTokens.value".into(),
            "value must be at least 1".into(),
        );
    }
    let mut names = HashSet::new();
    for (n, rule) in guardrails.content.iter().flatten().enumerate() {
        let field = |f: &str| format!("spec.guardrails.content[{n}].{f}");
        if !names.insert(rule.name.as_str()) {
            error(
                field("name"),
                format!("a content rule named '{}' is defined twice", rule.name),
            );
        }
        let empty = rule.builtin.as_ref().is_none_or(Vec::is_empty)
            && rule.patterns.as_ref().is_none_or(Vec::is_empty)
            && rule.keywords.as_ref().is_none_or(Vec::is_empty);
        if empty {
            error(
                field(""),
                "a content rule needs at least one of builtin, patterns or keywords".into(),
            );
        }
        for (p, pattern) in rule.patterns.iter().flatten().enumerate() {
            if let Err(e) = regex::RegexBuilder::new(pattern).size_limit(MAX_PATTERN_SIZE).build() {
                error(
                    format!("spec.guardrails.content[{n}].patterns[{p}]"),
                    format!(
                        "'{pattern}' is not a valid regular expression: {}",
                        first_line(&e.to_string())
                    ),
                );
            }
        }
        for (k, keyword) in rule.keywords.iter().flatten().enumerate() {
            if keyword.trim().is_empty() {
                error(
                    format!("spec.guardrails.content[{n}].keywords[{k}]"),
                    "keywords must not be empty".into(),
                );
            }
        }
    }
    if let Some(webhook) = &guardrails.webhook {
        let url = url::Url::parse(&webhook.url);
        if !url.is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some()) {
            error(
                "spec.guardrails.webhook.url".into(),
                format!("'{}' must be an absolute http:// or https:// URL", webhook.url),
            );
        }
        if let Some(text) = &webhook.timeout {
            check_duration("spec.guardrails.webhook.timeout", text, true, error);
        }
    }
}

/// The regex crate's errors span several lines with a caret diagram; the last line says what.
fn first_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}
