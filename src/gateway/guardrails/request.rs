//! The request side: size limit, output-token cap, content rules, then the classifier. The
//! body is parsed only when the alias has more than a size limit, and written again only
//! when something changed.

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

use super::metrics::{Action, Side};
use super::splice::Masked;
use super::surface::{surface, Surface};
use super::{violation, Guard, GuardMetrics};
use crate::crd::{CapMode, Direction, MessageRole};
use crate::gateway::error::ApiError;
use crate::gateway::metrics::Endpoint;

pub async fn check(
    guard: &Guard,
    endpoint: Endpoint,
    body: &Bytes,
    metrics: &GuardMetrics,
) -> Result<Option<Bytes>, ApiError> {
    let count = |rule: &str, action| metrics.count(&guard.alias, rule, action, Side::request);
    if let Some(limit) = guard.max_input_bytes {
        if body.len() as u64 > limit {
            count("maxInputBytes", Action::reject);
            return Err(too_large(&guard.alias, limit, body.len()));
        }
    }
    if !guard.reads_request() {
        return Ok(None);
    }
    let surface = surface(endpoint);
    let mut value: Value = super::strict::from_slice(body).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
    // The body is written whole when the output cap changed it; else only masked strings are
    // spliced into the client's bytes (by their addresses in `value`).
    let mut changed = false;
    let mut spliced: Vec<Masked> = Vec::new();
    if let Some((cap, mode)) = guard.cap {
        changed |= cap_output(surface, &mut value, cap, mode, &guard.alias, &count)?;
    }
    if let Some(matcher) = &guard.request {
        let mut blocked: Option<u16> = None;
        let mut masked: Vec<u16> = Vec::new();
        let mut findings = Vec::new();
        surface.request_texts(&mut value, &mut |role, text, form| {
            if blocked.is_none() && matcher.scans(role) {
                let before = masked.len();
                blocked = matcher.apply(text, Some(role), form, &mut findings, &mut masked);
                if masked.len() > before {
                    spliced.push(Masked {
                        address: std::ptr::from_ref::<String>(text) as usize,
                        found: findings
                            .iter()
                            .map(|f| (f.start, f.end, matcher.placeholder(f)))
                            .collect(),
                    });
                }
            }
        });
        if let Some(rule) = blocked {
            let name = &matcher.rules[usize::from(rule)].name;
            count(name, Action::block);
            return Err(violation(&guard.alias, name, Direction::Request));
        }
        masked.sort_unstable();
        masked.dedup();
        for rule in &masked {
            count(&matcher.rules[usize::from(*rule)].name, Action::mask);
        }
    }
    if let Some(webhook) = &guard.webhook {
        let mut text = String::new();
        surface.request_texts(&mut value, &mut |role, part, _| {
            if matches!(role, MessageRole::User | MessageRole::Tool) {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(part);
            }
        });
        if !text.is_empty() {
            match webhook.ask(&text).await {
                Ok(verdict) if verdict.flagged => {
                    count("webhook", Action::block);
                    return Err(flagged(&guard.alias, &verdict.categories));
                }
                Ok(_) => {}
                Err(e) if webhook.fail_open => {
                    tracing::warn!(alias = %guard.alias, error = %e, "the guardrail classifier failed; failureMode open lets the request through");
                    count("webhook", Action::fail_open);
                }
                Err(e) => {
                    tracing::warn!(alias = %guard.alias, error = %e, "the guardrail classifier failed; failureMode closed refuses the request");
                    count("webhook", Action::fail_closed);
                    return Err(classifier_failed(&guard.alias, &e.to_string()));
                }
            }
        }
    }
    if !changed {
        if spliced.is_empty() {
            return Ok(None);
        }
        if let Some(body) = super::splice::splice(body, &value, &spliced) {
            return Ok(Some(Bytes::from(body)));
        }
    }
    serde_json::to_vec(&value)
        .map(|v| Some(Bytes::from(v)))
        .map_err(|e| ApiError::invalid_json(&e.to_string()))
}

/// Applies `maxOutputTokens`; whether the body changed.
fn cap_output(
    surface: &dyn Surface,
    value: &mut Value,
    cap: u64,
    mode: CapMode,
    alias: &str,
    count: &dyn Fn(&str, Action),
) -> Result<bool, ApiError> {
    let Some(fields) = surface.output_fields() else {
        return Ok(false);
    };
    let Some(object) = value.as_object_mut() else {
        return Ok(false);
    };
    let mut changed = false;
    let mut any = false;
    for field in fields.read {
        let Some(asked) = object.get(*field).and_then(Value::as_u64) else {
            continue;
        };
        any = true;
        if asked <= cap {
            continue;
        }
        if mode == CapMode::Reject {
            count("maxOutputTokens", Action::reject);
            return Err(over_cap(alias, field, asked, cap));
        }
        object.insert((*field).to_string(), Value::from(cap));
        changed = true;
    }
    if !any {
        object.insert(fields.set.to_string(), Value::from(cap));
        changed = true;
    }
    if changed {
        count("maxOutputTokens", Action::clamp);
    }
    Ok(changed)
}

fn error(status: StatusCode, code: &'static str, param: Option<&'static str>, message: String) -> ApiError {
    ApiError {
        status,
        kind: "invalid_request_error",
        code: Some(code),
        param: param.map(std::borrow::Cow::Borrowed),
        message,
        headers: None,
    }
}

fn too_large(alias: &str, limit: u64, size: usize) -> ApiError {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        None,
        format!("The request body is {size} bytes; the model '{alias}' accepts at most {limit} bytes (its guardrails' maxInputBytes). Send a shorter request."),
    )
}

fn over_cap(alias: &str, field: &'static str, asked: u64, cap: u64) -> ApiError {
    let mut error = error(
        StatusCode::BAD_REQUEST,
        "max_tokens_exceeded",
        None,
        format!("'{field}' is {asked}, but the model '{alias}' allows at most {cap} output tokens (its guardrails' maxOutputTokens). Ask for {cap} or fewer."),
    );
    error.param = Some(std::borrow::Cow::Borrowed(field));
    error
}

fn flagged(alias: &str, categories: &[String]) -> ApiError {
    let found = match categories.is_empty() {
        true => String::new(),
        false => format!(" ({})", categories.join(", ")),
    };
    let mut error = violation(alias, "webhook", Direction::Request);
    error.message = format!("The request was refused: the content classifier of the model '{alias}' flagged it{found}. Rephrase the request, or ask the platform team.");
    error
}

fn classifier_failed(alias: &str, why: &str) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "server_error",
        code: Some("guardrail_unavailable"),
        param: None,
        message: format!("The content classifier that checks requests to the model '{alias}' is unavailable ({why}), and the model refuses requests it cannot check (failureMode: closed). Retry later; if it persists, tell the platform team."),
        headers: None,
    }
}
