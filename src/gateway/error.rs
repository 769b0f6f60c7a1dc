//! The one error type clients see: OpenAI-shaped JSON with a real status, type and code.
//!
//! Any value a client sent that an error message repeats (a model name, a path, a parser's
//! complaint about the body) goes through [`echo`], so a megabyte `model` string comes back
//! as a hundred characters and an ellipsis.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to a client as `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<std::borrow::Cow<'static, str>>,
    pub message: String,
    /// Extra response headers (`Retry-After`, `x-ratelimit-*`).
    pub headers: Option<Box<axum::http::HeaderMap>>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// The most characters of a client's value an error message repeats.
pub const MAX_ECHO_CHARS: usize = 100;

/// A client's value as an error message repeats it: at most [`MAX_ECHO_CHARS`] characters,
/// cut with an ellipsis.
pub fn echo(value: &str) -> Cow<'_, str> {
    cut(value, MAX_ECHO_CHARS)
}

/// `text` up to `max` characters, with an ellipsis when it was longer.
fn cut(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
    }
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            kind,
            code: Some(code),
            param: None,
            message,
            headers: None,
        }
    }

    /// The same error with these response headers.
    pub fn with_headers(mut self, headers: axum::http::HeaderMap) -> Self {
        self.headers = Some(Box::new(headers));
        self
    }

    pub fn invalid_api_key(presented: bool) -> Self {
        let message = if presented {
            "Incorrect API key provided. Use a key issued for your team (`modelgate keys create`); keys are never shown again after creation."
        } else {
            "No API key provided. Send your team's key as 'Authorization: Bearer <key>' (or 'x-api-key: <key>')."
        };
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            message.to_string(),
        )
    }

    pub fn model_access_denied(model: &str, team: &str) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "model_access_denied",
            format!("Team '{team}' may not call the model '{model}': no AccessGroup of the team grants it. List the models this key may call with GET /v1/models, or ask the platform team to add '{model}' to one of the team's access groups."),
        )
        .with_param("model")
    }

    pub fn insufficient_credits(team: &str, allocated: i64, spent: i64, period: crate::crd::Period) -> Self {
        use crate::compiler::tenancy::format_usd;
        let when = match period {
            crate::crd::Period::Never => "They do not reset".to_string(),
            other => format!(
                "They reset at the start of the next {} period (00:00 UTC)",
                other.as_str().to_lowercase().trim_end_matches("ly")
            ),
        };
        ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            "insufficient_credits",
            format!("Team '{team}' has used its credits: {} of {} USD spent. {when}; ask the platform team to raise spec.credits.allocated. Do not retry.", format_usd(spent), format_usd(allocated)),
        )
    }

    pub fn rate_limit_exceeded(team: &str, limit: &str, retry_after: std::time::Duration) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "rate_limit_exceeded",
            format!("Team '{team}' reached its limit of {limit}. Retry after {:.1} s (see the Retry-After and x-ratelimit-* headers).", retry_after.as_secs_f64()),
        )
    }

    pub fn usage_store_unavailable() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "usage_store_unavailable",
            "The gateway cannot reach its usage store to check this team's limits and credits (--usage-store-failure closed). Retry shortly; the platform team is told by the modelgate_usage_store_up metric.".to_string(),
        )
    }

    fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(std::borrow::Cow::Borrowed(param));
        self
    }

    pub fn model_not_found(model: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!(
                "The model '{}' does not exist on this gateway. List the available models with GET /v1/models.",
                echo(model)
            ),
        )
        .with_param("model")
    }

    pub fn model_disabled(model: &str, why: &str) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "model_disabled",
            format!("The model '{}' is disabled on this gateway: {why}. Ask the platform team to enable it, or pick another model from GET /v1/models.", echo(model)),
        )
        .with_param("model")
    }

    pub fn invalid_json(detail: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_json",
            format!(
                "The request body is not valid JSON ({}). Send a JSON object with a 'model' field.",
                echo(detail)
            ),
        )
    }

    pub fn missing_model() -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "missing_model",
            "The request body has no 'model' field. Set 'model' to one of the names listed by GET /v1/models."
                .to_string(),
        )
        .with_param("model")
    }

    pub fn model_not_a_string() -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_model",
            "The 'model' field must be a string naming one of the models listed by GET /v1/models.".to_string(),
        )
        .with_param("model")
    }

    pub fn body_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("The request body is larger than this gateway's limit of {limit} bytes. Send a smaller request, or ask the platform team to raise --max-body-bytes."),
        )
        .closing()
    }

    pub fn body_unreadable(detail: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "body_unreadable",
            format!("The request body could not be read: {}.", echo(detail)),
        )
    }

    pub fn body_timeout(timeout: std::time::Duration) -> Self {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "request_timeout",
            format!("The request body did not arrive within {timeout:?} of its headers. Send the whole body promptly, or ask the platform team to raise --body-timeout."),
        )
        .closing()
    }

    /// With `Connection: close`: the rest of the request body is never read, so the connection
    /// closes after this answer; saying so keeps a client from reusing it and racing the close.
    fn closing(self) -> Self {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        self.with_headers(headers)
    }

    pub fn headers_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_request_error",
            "headers_too_large",
            format!("The request line and headers are larger than this gateway's limit of {limit} bytes. Send fewer or smaller headers, or ask the platform team to raise --max-header-bytes."),
        )
    }

    /// A request the HTTP/1.1 parser refused (`detail` is ours, never the client's bytes);
    /// the connection closes after it.
    pub fn malformed_request(detail: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "malformed_request",
            format!("The request is not valid HTTP/1.1: {detail}. Send a well-formed request (one Content-Length, or Transfer-Encoding: chunked alone)."),
        )
        .closing()
    }

    pub fn uri_too_long(limit: usize) -> Self {
        ApiError::new(
            StatusCode::URI_TOO_LONG,
            "invalid_request_error",
            "uri_too_long",
            format!("The request URL is longer than {limit} bytes. This gateway serves POST /v1/chat/completions, /v1/completions, /v1/embeddings and GET /v1/models."),
        )
    }

    pub fn shutting_down() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "gateway_shutting_down",
            "This gateway is shutting down and its grace period ended before the provider answered. Retry the request; another replica will serve it."
                .to_string(),
        )
    }

    /// The last event of a stream still running when the shutdown grace period ended.
    pub fn stream_cut_by_shutdown() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "gateway_shutting_down",
            "This gateway is shutting down and its grace period ended before the stream did; the rest of the answer was not sent. Retry the request; another replica will serve it."
                .to_string(),
        )
    }

    pub fn upstream_unreachable(provider: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "upstream_unreachable",
            format!("The provider '{provider}' could not be reached. This is not a problem with your request; retry later or ask the platform team to check the provider."),
        )
    }

    /// A TLS handshake with the provider failed; `what` says how (see `tls::explain`).
    pub fn upstream_tls(provider: &str, what: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "upstream_tls_failed",
            format!("The gateway could not connect securely to the provider '{provider}': {what}. This is not a problem with your request; ask the platform team to check the provider's certificate or the LLMProvider's tls settings."),
        )
    }

    pub fn no_provider(model: &str) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_error",
            "no_provider_available",
            format!("No provider is available for the model '{model}' right now (its LLMProvider is missing or has no usable key). Retry later, or ask the platform team to check the alias's status."),
        )
    }

    pub fn upstream_timeout(provider: &str) -> Self {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_error",
            "upstream_timeout",
            format!("The provider '{provider}' did not answer in time. Retry later, or ask the platform team to raise the provider's timeouts."),
        )
    }

    pub fn upstream_failed(provider: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "upstream_error",
            format!("The provider '{provider}' failed while answering. Retry later."),
        )
    }

    pub fn upstream_rejected_key(status: StatusCode, provider: &str) -> Self {
        ApiError::new(
            status,
            "upstream_error",
            "upstream_auth_failed",
            format!("The provider '{provider}' rejected the gateway's credentials ({status}). This is not a problem with your request; the platform team must fix the provider's API key."),
        )
    }

    /// A request that cannot be translated for the target's provider.
    pub fn untranslatable(param: Option<&str>, message: String) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: Some(if param.is_some() {
                "unsupported_parameter"
            } else {
                "invalid_request"
            }),
            param: param.map(|p| std::borrow::Cow::Owned(p.to_string())),
            message,
            headers: None,
        }
    }

    /// The egress policy refused the provider's address; `why` never lists the pod's addresses.
    pub fn upstream_blocked(provider: &str, why: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "upstream_blocked",
            format!("The gateway refused to connect to the provider '{provider}': {why}. This is not a problem with your request; the platform team must point the provider's baseUrl at the real upstream, or allow the address on the gateway with --allow-upstream-cidr (Helm value gateway.allowUpstreamCIDRs)."),
        )
    }

    /// A request that already passed through more modelgate gateways than allowed.
    pub fn loop_detected(hops: u32, max_hops: u32) -> Self {
        let passed = if hops == u32::MAX {
            "an unreadable modelgate-hops header".to_string()
        } else {
            format!("modelgate-hops: {hops}: it already passed through {hops} modelgate gateway(s)")
        };
        ApiError::new(
            StatusCode::LOOP_DETECTED,
            "invalid_request_error",
            "loop_detected",
            format!("This request arrived with {passed}, and this gateway accepts at most {max_hops}. A provider's baseUrl points back at a modelgate gateway, so requests would go round in a circle: the platform team must point that provider at the real upstream, or raise --max-hops on this gateway to chain gateways on purpose."),
        )
    }

    /// A provider that answered 508 (a loop, most likely back into a modelgate gateway).
    pub fn upstream_loop(provider: &str) -> Self {
        ApiError::new(
            StatusCode::LOOP_DETECTED,
            "upstream_error",
            "loop_detected",
            format!("The provider '{provider}' answered 508 Loop Detected: its baseUrl points back at a modelgate gateway (this one or another), so the request went round in a circle and was stopped. This is not a problem with your request; the platform team must point the provider's baseUrl at the real upstream."),
        )
    }

    /// A provider that answered a redirect, which the gateway never follows. `to` is the
    /// redirect's host only: the rest of a `Location` may carry secrets.
    pub fn upstream_redirected(provider: &str, status: StatusCode, to: Option<&str>) -> Self {
        let target = to.map(|host| format!(" to host '{host}'")).unwrap_or_default();
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "upstream_redirected",
            format!("The provider '{provider}' answered with a redirect ({status}){target}, and the gateway does not follow redirects. This is not a problem with your request; the platform team must set the provider's baseUrl to the URL that answers directly (common causes: http:// instead of https://, or a missing or extra /v1)."),
        )
    }

    pub fn unknown_path(path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            format!("Unknown request URL: {}. This gateway serves POST /v1/chat/completions, /v1/completions, /v1/embeddings and GET /v1/models.", echo(path)),
        )
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "This URL does not accept that HTTP method; completions and embeddings take POST, model listings take GET."
                .to_string(),
        )
    }

    pub fn invalid_url(detail: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_url",
            format!(
                "The request URL could not be read: {}. Percent-encode the model name as UTF-8.",
                echo(detail)
            ),
        )
    }

    /// An unknown path on the admin port.
    pub fn unknown_admin_path(path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            format!(
                "Unknown admin URL: {}. The admin port serves GET /healthz, /readyz and /metrics; the API is on the other port.",
                echo(path)
            ),
        )
    }

    pub fn admin_method_not_allowed() -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "The admin port's URLs (/healthz, /readyz, /metrics) take GET.".to_string(),
        )
    }

    /// `/readyz` before the gateway can serve.
    pub fn not_ready(why: &str) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "not_ready",
            format!("not ready: {why}"),
        )
    }

    /// An upstream error whose body is not a JSON object (an HTML page from a load balancer,
    /// plain text, nothing at all), carried in our own shape with the upstream's status.
    pub fn upstream_status(status: StatusCode, provider: &str, text: &str) -> Self {
        let text = text.trim();
        let said = if text.is_empty() {
            "with an empty body".to_string()
        } else {
            format!("saying: {}", cut(text, MAX_UPSTREAM_TEXT_CHARS))
        };
        ApiError::new(
            status,
            "upstream_error",
            "upstream_error",
            format!("The provider '{provider}' answered {status} {said}"),
        )
    }

    /// The JSON body, exactly as sent.
    pub fn body(&self) -> String {
        let body = Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        serde_json::to_string(&body).unwrap_or_else(|_| {
            String::from(r#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#)
        })
    }
}

/// How much of a non-JSON upstream error body our message repeats.
const MAX_UPSTREAM_TEXT_CHARS: usize = 500;

/// Whether an upstream error body is a JSON object, which clients parse as the provider's
/// own error (OpenAI's `{"error": …}`, vLLM's flat `{"object": "error", …}`, Anthropic's
/// `{"type": "error", …}`), so it is passed through.
pub fn is_json_object(text: &str) -> bool {
    text.trim_start().starts_with('{') && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status, self.body());
        if let Some(headers) = self.headers {
            response.headers_mut().extend(*headers);
        }
        response
    }
}

/// A response with a JSON body.
pub fn json_response(status: StatusCode, body: impl IntoResponse) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_openai_shaped() {
        let error = ApiError::model_not_found("fast-modle");
        assert_eq!(error.status, StatusCode::NOT_FOUND);
        let body: serde_json::Value = serde_json::from_str(&error.body()).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "message": "The model 'fast-modle' does not exist on this gateway. List the available models with GET /v1/models.",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found"
            }})
        );
    }

    #[test]
    fn statuses_match_the_documented_table() {
        assert_eq!(ApiError::model_disabled("m", "why").status, StatusCode::FORBIDDEN);
        assert_eq!(ApiError::invalid_json("x").status, StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::missing_model().status, StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::body_too_large(1).status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(ApiError::upstream_unreachable("p").status, StatusCode::BAD_GATEWAY);
        assert_eq!(ApiError::upstream_timeout("p").status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(ApiError::upstream_blocked("p", "why").status, StatusCode::BAD_GATEWAY);
        assert_eq!(ApiError::loop_detected(1, 0).status, StatusCode::LOOP_DETECTED);
        assert_eq!(ApiError::upstream_loop("p").status, StatusCode::LOOP_DETECTED);
        assert_eq!(
            ApiError::upstream_redirected("p", StatusCode::FOUND, None).status,
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn echoed_values_are_cut_with_an_ellipsis() {
        let long = "é".repeat(1 << 20);
        let message = ApiError::model_not_found(&long).message;
        assert!(message.chars().count() < 250, "{} characters", message.chars().count());
        assert!(
            message.starts_with(&format!("The model '{}…' does not exist", "é".repeat(MAX_ECHO_CHARS))),
            "{message}"
        );
        assert_eq!(echo("fast"), "fast");
        assert_eq!(
            echo(&"x".repeat(MAX_ECHO_CHARS)),
            "x".repeat(MAX_ECHO_CHARS),
            "not cut at the limit"
        );
        let path = format!("/v1/{}", "p".repeat(5000));
        assert!(ApiError::unknown_path(&path).message.len() < 300);
    }

    #[test]
    fn upstream_bodies_that_are_not_json_objects_are_wrapped() {
        assert!(is_json_object(r#" {"error": {"message": "slow down"}}"#));
        assert!(is_json_object(r#"{"object": "error", "message": "bad", "code": 400}"#));
        for text in ["<html>502 Bad Gateway</html>", "", "[1]", "\"text\"", "{not json"] {
            assert!(!is_json_object(text), "{text}");
        }
        let error = ApiError::upstream_status(StatusCode::BAD_GATEWAY, "ns/p", "<html>oops</html>\n");
        assert_eq!(
            (error.status, error.code, error.message.as_str()),
            (
                StatusCode::BAD_GATEWAY,
                Some("upstream_error"),
                "The provider 'ns/p' answered 502 Bad Gateway saying: <html>oops</html>"
            )
        );
        let empty = ApiError::upstream_status(StatusCode::TOO_MANY_REQUESTS, "ns/p", "");
        assert_eq!(
            empty.message,
            "The provider 'ns/p' answered 429 Too Many Requests with an empty body"
        );
    }
}
