//! Anthropic's error envelope (`{"type": "error", "error": {"type", "message"}}`): read from
//! error answers and stream error events, classified; and written for Anthropic clients.

use serde_json::json;

use super::types::{ErrorBody, ErrorEnvelope};
use crate::llm::failure::{mentions_context_window, FailureClass};
use crate::llm::UpstreamError;

/// Classifies an Anthropic error answer from its status and body.
pub fn classify_error(status: u16, body: &[u8]) -> UpstreamError {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(envelope) => from_body(status, envelope.error),
        Err(_) => UpstreamError::from_status(status, String::from_utf8_lossy(body).into_owned()),
    }
}

/// An error event in a stream (`event: error`), which has no HTTP status of its own: the
/// status its type stands for.
pub fn stream_error(body: ErrorBody) -> UpstreamError {
    from_body(status_of_type(&body.kind), body)
}

fn from_body(status: u16, body: ErrorBody) -> UpstreamError {
    let mut class = FailureClass::of_status(status);
    if body.kind == "overloaded_error" {
        class = FailureClass::Overloaded;
    }
    if matches!(status, 400 | 413) && mentions_context_window(None, &body.message) {
        class = FailureClass::ContextWindowExceeded;
    }
    UpstreamError {
        class,
        status,
        message: body.message,
        provider_type: (!body.kind.is_empty()).then_some(body.kind),
        code: None,
        param: None,
        retry_after: None,
    }
}

/// The HTTP status Anthropic answers with for an error type.
pub fn status_of_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// The Anthropic error type for an HTTP status.
pub fn type_of_status(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// Anthropic's error envelope for a status and message.
pub fn error_json(status: u16, message: &str) -> serde_json::Value {
    json!({"type": "error", "error": {"type": type_of_status(status), "message": message}})
}

/// The envelope as text, `type` first as Anthropic writes it (stream error events).
pub fn error_text(status: u16, message: &str) -> String {
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        error: Body<'a>,
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        message: &'a str,
    }
    let envelope = Envelope {
        kind: "error",
        error: Body {
            kind: type_of_status(status),
            message,
        },
    };
    serde_json::to_string(&envelope).unwrap_or_default()
}
