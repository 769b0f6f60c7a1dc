//! Google's error envelope, `{"error": {"code", "message", "status", "details"}}` (streaming
//! methods may wrap it in an array), classified: the canonical status name decides the class,
//! `google.rpc.RetryInfo` says when to retry, and a key Google calls invalid (a 400) is an
//! authentication failure, not the client's mistake.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::llm::failure::mentions_context_window;
use crate::llm::{FailureClass, UpstreamError};

#[derive(Deserialize)]
struct Envelope {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<Value>,
}

/// Classifies an error answer (HTTP status ≥ 400) from its status and body.
pub fn classify_error(status: u16, body: &[u8]) -> UpstreamError {
    match serde_json::from_slice::<Value>(body).ok().and_then(envelope) {
        Some(error) => from_google(status, error),
        None => UpstreamError::from_status(status, String::from_utf8_lossy(body).trim().to_string()),
    }
}

/// The error in a stream event, if the event is one (`data: {"error": {...}}`).
pub fn error_event(data: &str) -> Option<UpstreamError> {
    let error = envelope(serde_json::from_str(data).ok()?)?;
    let status = error.code.filter(|c| (400..=599).contains(c)).unwrap_or(500);
    Some(from_google(status, error))
}

fn envelope(value: Value) -> Option<GoogleError> {
    let value = match value {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    };
    serde_json::from_value::<Envelope>(value).ok().map(|e| e.error)
}

fn from_google(status: u16, error: GoogleError) -> UpstreamError {
    let message = error.message.unwrap_or_default();
    let name = error.status.unwrap_or_default();
    let class = match name.as_str() {
        "RESOURCE_EXHAUSTED" => FailureClass::RateLimited,
        "UNAVAILABLE" => FailureClass::Overloaded,
        "DEADLINE_EXCEEDED" => FailureClass::Timeout,
        "UNAUTHENTICATED" | "PERMISSION_DENIED" => FailureClass::AuthFailed,
        "INTERNAL" | "UNKNOWN" => FailureClass::ServerError,
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "NOT_FOUND" | "OUT_OF_RANGE" => FailureClass::ClientError,
        _ => FailureClass::of_status(status),
    };
    let reasons: Vec<&str> = error
        .details
        .iter()
        .filter_map(|d| d.get("reason").and_then(Value::as_str))
        .collect();
    if reasons.iter().any(|r| r.starts_with("API_KEY_")) || message.starts_with("API key not valid") {
        let mut ours = UpstreamError::new(
            FailureClass::AuthFailed,
            401,
            "Gemini rejected the gateway's API key. This is not a problem with your request; the platform team must fix the provider's API key.",
        );
        ours.provider_type = Some(name);
        ours.code = Some("upstream_auth_failed".to_string());
        return ours;
    }
    // Only a 400 or 413 is a context-window error (as for the other providers): another client
    // error that quotes the phrase stays a client error.
    let class = if matches!(class, FailureClass::ClientError)
        && matches!(status, 400 | 413)
        && mentions_context_window(None, &message)
    {
        FailureClass::ContextWindowExceeded
    } else {
        class
    };
    UpstreamError {
        class,
        status,
        message,
        provider_type: (!name.is_empty()).then_some(name),
        code: None,
        param: None,
        retry_after: error.details.iter().find_map(retry_delay),
    }
}

/// `google.rpc.RetryInfo`'s `retryDelay` (a protobuf Duration: `"37s"`, `"0.5s"`).
fn retry_delay(detail: &Value) -> Option<Duration> {
    let kind = detail.get("@type")?.as_str()?;
    if !kind.ends_with("google.rpc.RetryInfo") {
        return None;
    }
    let seconds: f64 = detail.get("retryDelay")?.as_str()?.strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
}
