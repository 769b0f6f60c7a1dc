//! Gemini providers (`type: gemini`): every request is translated to the native Gemini API
//! (nothing passes through: no client speaks it to the gateway), chat to `generateContent` or
//! `streamGenerateContent?alt=sse`, embeddings to `batchEmbedContents`. The key travels as
//! `x-goog-api-key` (see `credential_header`). Google's OpenAI-compatible endpoint is not used:
//! see [`crate::llm::gemini`] for why.

use bytes::Bytes;

use super::{Wire, WireRequest};
use crate::compiler::ProviderEndpoint;
use crate::gateway::metrics::Endpoint;
use crate::llm::chat::{ChatRequest, ChatResponse};
use crate::llm::embeddings::EmbeddingsRequest;
use crate::llm::gemini;
use crate::llm::{Framer, SseFramer, StreamDecoder, TranslateError, TranslateOptions, UpstreamError};

/// The API version the gateway speaks.
const VERSION: &str = "/v1beta";

/// The Gemini API as a translation target.
pub struct GeminiWire {
    /// `/v1beta`, or empty when the base URL already ends with an API version (the SDKs take
    /// the base URL without it, but a proxy's URL may include it).
    version: &'static str,
}

impl GeminiWire {
    pub fn new(endpoint: &ProviderEndpoint) -> Self {
        let path = endpoint.base_url.trim_end_matches('/');
        let versioned = ["/v1", "/v1beta", "/v1alpha"].iter().any(|v| path.ends_with(v));
        GeminiWire {
            version: if versioned { "" } else { VERSION },
        }
    }

    fn request(&self, model: &str, method: &str, body: &impl serde::Serialize) -> Result<WireRequest, TranslateError> {
        let body = super::json_body(body)?;
        Ok(WireRequest {
            path: gemini::method_path(self.version, model, method),
            body,
        })
    }
}

impl Wire for GeminiWire {
    fn native_path(&self, _endpoint: Endpoint, _model: &str) -> Option<String> {
        None
    }

    fn chat_request(
        &self,
        request: &ChatRequest,
        model: &str,
        options: &TranslateOptions,
    ) -> Result<WireRequest, TranslateError> {
        let body = gemini::to_generate_content(request, model, options)?;
        let method = match request.is_stream() {
            true => "streamGenerateContent?alt=sse",
            false => "generateContent",
        };
        self.request(model, method, &body)
    }

    fn chat_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, UpstreamError> {
        gemini::from_generate_content(body, model)
    }

    fn chat_stream(&self, model: &str) -> (Box<dyn Framer>, Box<dyn StreamDecoder>) {
        (
            Box::new(SseFramer::new()),
            Box::new(gemini::GeminiStreamDecoder::new(model)),
        )
    }

    fn embeddings_request(
        &self,
        request: &EmbeddingsRequest,
        model: &str,
        options: &TranslateOptions,
    ) -> Result<WireRequest, TranslateError> {
        let body = gemini::to_batch_embed(request, model, options)?;
        self.request(model, "batchEmbedContents", &body)
    }

    fn embeddings_response(
        &self,
        request: &EmbeddingsRequest,
        body: &[u8],
        model: &str,
    ) -> Result<Bytes, UpstreamError> {
        gemini::from_batch_embed(body, model, request)
    }

    fn classify(&self, status: u16, body: &[u8]) -> UpstreamError {
        gemini::classify_error(status, body)
    }
}
