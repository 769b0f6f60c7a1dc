//! The OpenAI Responses API (`POST /v1/responses`) for targets that do not speak it: every
//! provider but `openai` and `azure-openai`, whose requests pass through untouched.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::Inbound;
use crate::llm::chat::{ChatRequest, ChatResponse};
use crate::llm::responses::{self, Echo, ResponsesStreamEncoder};
use crate::llm::{StreamEncoder, TranslateError, TranslateOptions};

pub struct Responses;

impl Inbound for Responses {
    fn to_chat(&self, body: &[u8]) -> Result<ChatRequest, TranslateError> {
        responses::to_chat(body, &TranslateOptions::strict("mock"))
    }

    fn to_chat_for(&self, body: &[u8], options: &TranslateOptions) -> Result<ChatRequest, TranslateError> {
        responses::to_chat(body, options)
    }

    fn response(&self, response: &ChatResponse, model: &str) -> Bytes {
        self.response_to(b"{}", response, model)
    }

    fn response_to(&self, body: &[u8], response: &ChatResponse, model: &str) -> Bytes {
        Bytes::from(responses::response_json(
            response,
            &fresh_id(),
            model,
            now(),
            &Echo::from_body(body),
        ))
    }

    fn encoder(&self, request: &ChatRequest) -> Box<dyn StreamEncoder> {
        self.encoder_to(b"{}", request)
    }

    fn encoder_to(&self, body: &[u8], request: &ChatRequest) -> Box<dyn StreamEncoder> {
        Box::new(ResponsesStreamEncoder::new(
            fresh_id(),
            request.model.clone(),
            Echo::from_body(body),
            now(),
        ))
    }
}

/// A new response id: `resp_` and 32 random hex digits (nothing is stored under it).
fn fresh_id() -> String {
    format!("resp_{:032x}", fastrand::u128(..))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}
