//! The one error type clients see: OpenAI-shaped JSON with a real status, type and code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to a client as `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<&'static str>,
    pub message: String,
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

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            kind,
            code: Some(code),
            param: None,
            message,
        }
    }

    fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    pub fn model_not_found(model: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!(
                "The model '{model}' does not exist on this gateway. List the available models with GET /v1/models."
            ),
        )
        .with_param("model")
    }

    pub fn model_disabled(model: &str, why: &str) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "model_disabled",
            format!("The model '{model}' is disabled on this gateway: {why}. Ask the platform team to enable it, or pick another model from GET /v1/models."),
        )
        .with_param("model")
    }

    pub fn invalid_json(detail: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_json",
            format!("The request body is not valid JSON ({detail}). Send a JSON object with a 'model' field."),
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
    }

    pub fn body_unreadable(detail: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "body_unreadable",
            format!("The request body could not be read: {detail}."),
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

    pub fn unknown_path(path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            format!("Unknown request URL: {path}. This gateway serves POST /v1/chat/completions, /v1/completions, /v1/embeddings and GET /v1/models."),
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

    /// The JSON body, exactly as sent.
    pub fn body(&self) -> String {
        let body = Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
            },
        };
        serde_json::to_string(&body).unwrap_or_else(|_| {
            String::from(r#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#)
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status, self.body());
        // The rest of an oversized body is never read, so the connection closes after this
        // answer: say so, or a client reusing it races the close.
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
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
    }
}
