//! Anthropic Messages clients (`POST /v1/messages`) of an alias whose provider does not speak
//! the Anthropic API: requests translated to the canonical form, answers and streams written
//! back in Anthropic's shapes.

use bytes::Bytes;

use super::Inbound;
use crate::llm::anthropic::{to_chat_request, to_messages_response, AnthropicStreamEncoder};
use crate::llm::chat::{ChatRequest, ChatResponse};
use crate::llm::{StreamEncoder, TranslateError};

/// The Anthropic Messages API as a client API.
pub struct AnthropicMessages;

impl Inbound for AnthropicMessages {
    fn to_chat(&self, body: &[u8]) -> Result<ChatRequest, TranslateError> {
        to_chat_request(body)
    }

    fn response(&self, response: &ChatResponse, model: &str) -> Bytes {
        Bytes::from(serde_json::to_vec(&to_messages_response(response, model)).unwrap_or_default())
    }

    fn encoder(&self, request: &ChatRequest) -> Box<dyn StreamEncoder> {
        Box::new(AnthropicStreamEncoder::new(&request.model))
    }
}
