//! The *surface* stage: the client APIs the gateway serves — OpenAI (chat completions,
//! completions, embeddings, Responses) and Anthropic (Messages) — and how each reads a request
//! into the canonical form, writes answers back, and shapes its errors.

mod anthropic;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Response, StatusCode};

mod responses;

use super::error::ApiError;
use super::metrics::Endpoint;
use super::providers::{Failed, UpstreamFailure};
use crate::llm::chat::{ChatRequest, ChatResponse};
use crate::llm::openai::{error_json, OpenAiStreamEncoder};
use crate::llm::{StreamEncoder, TranslateError, TranslateOptions, UpstreamError};

/// A client API as the translated path sees it.
pub trait Inbound: Send + Sync {
    /// Reads the client's request into the canonical form.
    fn to_chat(&self, body: &[u8]) -> Result<ChatRequest, TranslateError>;
    /// A canonical answer as the client's API writes it. `model` is the model the client asked
    /// for (the alias).
    fn response(&self, response: &ChatResponse, model: &str) -> Bytes;
    /// An encoder for a streamed answer to `request`.
    fn encoder(&self, request: &ChatRequest) -> Box<dyn StreamEncoder>;

    /// Reads the client's request for a provider with these options: an API whose parameters
    /// the canonical form cannot all carry refuses them by name unless the provider allows
    /// dropping them (`dropUnsupportedParams`).
    fn to_chat_for(&self, body: &[u8], _options: &TranslateOptions) -> Result<ChatRequest, TranslateError> {
        self.to_chat(body)
    }

    /// [`Inbound::response`] for APIs whose answer repeats settings of the request `body`
    /// (the Responses API).
    fn response_to(&self, _body: &[u8], response: &ChatResponse, model: &str) -> Bytes {
        self.response(response, model)
    }

    /// [`Inbound::encoder`] for APIs whose events repeat settings of the request `body`.
    fn encoder_to(&self, _body: &[u8], request: &ChatRequest) -> Box<dyn StreamEncoder> {
        self.encoder(request)
    }
}

/// OpenAI Chat Completions: the canonical form itself.
pub struct OpenAiChat;

impl Inbound for OpenAiChat {
    fn to_chat(&self, body: &[u8]) -> Result<ChatRequest, TranslateError> {
        // UTF-8 checked once for the whole body; `from_str` then skips checking it again
        // string by string.
        let text = std::str::from_utf8(body).map_err(|e| {
            TranslateError::invalid(format!(
                "The request is not a valid chat completions request: it is not UTF-8 ({e})."
            ))
        })?;
        serde_json::from_str(text)
            .map_err(|e| TranslateError::invalid(format!("The request is not a valid chat completions request: {e}.")))
    }

    fn response(&self, response: &ChatResponse, _model: &str) -> Bytes {
        Bytes::from(crate::llm::openai_json::write_chat_response(response))
    }

    fn encoder(&self, request: &ChatRequest) -> Box<dyn StreamEncoder> {
        Box::new(OpenAiStreamEncoder::new(request.include_usage()))
    }
}

/// The translated form of an endpoint's API, when it has one.
pub fn inbound(endpoint: Endpoint) -> Option<&'static dyn Inbound> {
    match endpoint {
        Endpoint::chat_completions => Some(&OpenAiChat),
        Endpoint::responses => Some(&responses::Responses),
        Endpoint::messages => Some(&anthropic::AnthropicMessages),
        Endpoint::completions | Endpoint::embeddings | Endpoint::count_tokens => None,
    }
}

/// Which error envelope a client API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Envelope {
    /// `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
    /// `{"type": "error", "error": {"type", "message"}}`.
    Anthropic,
}

impl Envelope {
    pub fn of(endpoint: Endpoint) -> Self {
        match endpoint {
            Endpoint::messages | Endpoint::count_tokens => Envelope::Anthropic,
            _ => Envelope::OpenAi,
        }
    }
}

/// A gateway error in the client API's envelope.
pub fn error_response(envelope: Envelope, error: &ApiError) -> Response<Body> {
    let body = match envelope {
        Envelope::OpenAi => error.body(),
        Envelope::Anthropic => crate::llm::anthropic::error_text(error.status.as_u16(), &error.message),
    };
    let mut response = json(error.status, Bytes::from(body));
    for (name, value) in error.headers.iter().flat_map(|h| h.iter()) {
        response.headers_mut().append(name, value.clone());
    }
    response
}

/// A failed call in the client API's envelope: the upstream's own body when the client speaks
/// its API, else the classified error; with the upstream headers the client needs.
pub fn failure_response(envelope: Envelope, failed: Failed) -> Response<Body> {
    match failed {
        Failed::Request(error) => error_response(envelope, &error),
        Failed::Upstream(failure) => {
            let UpstreamFailure { error, raw, headers } = *failure;
            let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = match raw {
                Some((body, content_type)) => {
                    let mut response = Response::new(Body::from(body));
                    *response.status_mut() = status;
                    if let Some(content_type) = content_type {
                        response.headers_mut().insert(header::CONTENT_TYPE, content_type);
                    }
                    response
                }
                None => json(status, upstream_error_body(envelope, &error)),
            };
            for (name, value) in &headers {
                response.headers_mut().append(name, value.clone());
            }
            response
        }
    }
}

/// An upstream error as the client API writes it (also for error events in streams).
pub fn upstream_error_body(envelope: Envelope, error: &UpstreamError) -> Bytes {
    Bytes::from(match envelope {
        Envelope::OpenAi => error_json(error).to_string(),
        Envelope::Anthropic => crate::llm::anthropic::error_text(error.status, &error.message),
    })
}

/// Anthropic's error envelope; its `type` follows from the status.
pub fn anthropic_error_json(status: u16, message: &str) -> serde_json::Value {
    crate::llm::anthropic::error_json(status, message)
}

/// A translation error: a 400 naming the parameter.
pub fn translate_error(error: TranslateError) -> ApiError {
    ApiError::untranslatable(error.param.as_deref(), error.message)
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Encodes a whole canonical stream at once (the mock, tests).
pub fn encode_all(encoder: &mut dyn StreamEncoder, chunks: &[crate::llm::chat::ChatChunk]) -> Bytes {
    let mut out = BytesMut::new();
    for chunk in chunks {
        encoder.chunk(chunk, &mut out);
    }
    encoder.done(&mut out);
    out.freeze()
}
