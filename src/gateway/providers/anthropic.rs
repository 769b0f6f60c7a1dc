//! Anthropic providers (`type: anthropic`). Anthropic clients (`/v1/messages`,
//! `/v1/messages/count_tokens`) pass through with only `model` rewritten, so prompt caching
//! and every beta feature keep working; Chat Completions (and Responses) clients are
//! translated to and from the Messages API.

use super::{Wire, WireRequest};
use crate::gateway::metrics::Endpoint;
use crate::llm::anthropic::{classify_error, from_messages_response, to_messages_request, AnthropicStreamDecoder};
use crate::llm::chat::{ChatRequest, ChatResponse};
use crate::llm::{Framer, SseFramer, StreamDecoder, TranslateError, TranslateOptions, UpstreamError};

const MESSAGES: &str = "/v1/messages";
const COUNT_TOKENS: &str = "/v1/messages/count_tokens";

/// The Anthropic Messages API as a translation target.
pub struct AnthropicWire;

impl Wire for AnthropicWire {
    fn native_path(&self, endpoint: Endpoint, _model: &str) -> Option<String> {
        match endpoint {
            Endpoint::messages => Some(MESSAGES.to_string()),
            Endpoint::count_tokens => Some(COUNT_TOKENS.to_string()),
            Endpoint::chat_completions | Endpoint::completions | Endpoint::embeddings | Endpoint::responses => None,
        }
    }

    fn chat_request(
        &self,
        request: &ChatRequest,
        model: &str,
        options: &TranslateOptions,
    ) -> Result<WireRequest, TranslateError> {
        let message = to_messages_request(request, model, options)?;
        let body = super::json_body(&message)?;
        Ok(WireRequest {
            path: MESSAGES.to_string(),
            body,
        })
    }

    fn chat_response(&self, body: &[u8], _model: &str) -> Result<ChatResponse, UpstreamError> {
        from_messages_response(body)
    }

    fn chat_stream(&self, _model: &str) -> (Box<dyn Framer>, Box<dyn StreamDecoder>) {
        (Box::new(SseFramer::new()), Box::new(AnthropicStreamDecoder::new()))
    }

    fn classify(&self, status: u16, body: &[u8]) -> UpstreamError {
        classify_error(status, body)
    }
}
