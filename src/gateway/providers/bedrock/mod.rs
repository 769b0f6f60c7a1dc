//! Amazon Bedrock providers (`type: bedrock`): Chat Completions through Converse and
//! ConverseStream, embeddings through Titan's invoke API, authenticated with SigV4 (static keys
//! from a Secret, or the standard AWS chain) or a Bedrock API key (a static Bearer header).

mod chain;
mod sigv4;

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

pub use sigv4::{sign_request, SigV4Signer};

use super::openai::encode_segment;
use super::{RequestSigner, Wire, WireRequest};
use crate::compiler::{BedrockAuth, ProviderEndpoint, ProviderSettings};
use crate::gateway::metrics::Endpoint;
use crate::llm::bedrock::{self, titan, ConverseStreamDecoder, EventStreamFramer};
use crate::llm::chat::{ChatRequest, ChatResponse};
use crate::llm::embeddings::EmbeddingsRequest;
use crate::llm::{Framer, StreamDecoder, TranslateError, TranslateOptions, UpstreamError};

/// The Bedrock runtime API as a translation target. Nothing passes through: clients never
/// speak Converse to the gateway.
pub struct BedrockWire;

/// The path of an operation on a model: `/model/{modelId}/{operation}`, the id percent-encoded
/// as one path segment (`anthropic.claude-3-5-sonnet-20240620-v1:0` becomes `...-v1%3A0`, an
/// inference profile ARN's `/` becomes `%2F`), as the AWS SDKs send it.
pub fn model_path(model: &str, operation: &str) -> String {
    format!("/model/{}/{operation}", encode_segment(model))
}

impl Wire for BedrockWire {
    fn native_path(&self, _endpoint: Endpoint, _model: &str) -> Option<String> {
        None
    }

    fn chat_request(
        &self,
        request: &ChatRequest,
        model: &str,
        options: &TranslateOptions,
    ) -> Result<WireRequest, TranslateError> {
        let converse = bedrock::converse_request(request, options)?;
        let body = super::json_body(&converse)?;
        let operation = if request.is_stream() {
            "converse-stream"
        } else {
            "converse"
        };
        Ok(WireRequest {
            path: model_path(model, operation),
            body,
        })
    }

    fn chat_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, UpstreamError> {
        bedrock::chat_response(body, model)
    }

    fn chat_stream(&self, model: &str) -> (Box<dyn Framer>, Box<dyn StreamDecoder>) {
        (
            Box::new(EventStreamFramer::new()),
            Box::new(ConverseStreamDecoder::new(model)),
        )
    }

    fn embeddings_requests(
        &self,
        request: &EmbeddingsRequest,
        model: &str,
        options: &TranslateOptions,
    ) -> Result<Vec<WireRequest>, TranslateError> {
        let path = model_path(model, "invoke");
        titan::titan_requests(request, model, options)?
            .into_iter()
            .map(|body| {
                Ok(WireRequest {
                    path: path.clone(),
                    body: super::json_body(&body)?,
                })
            })
            .collect()
    }

    fn embeddings_responses(
        &self,
        request: &EmbeddingsRequest,
        bodies: &[Bytes],
        model: &str,
    ) -> Result<Bytes, UpstreamError> {
        titan::titan_response(bodies, model, request.wants_base64())
    }

    fn classify(&self, status: u16, body: &[u8]) -> UpstreamError {
        bedrock::classify_error(status, None, body)
    }

    fn classify_response(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
        let kind = headers.get("x-amzn-errortype").and_then(|v| v.to_str().ok());
        bedrock::classify_error(status, kind, body)
    }
}

/// The signer of a Bedrock provider: SigV4 with its static keys or the AWS chain; none for a
/// Bedrock API key (a static Bearer header).
pub fn signer(endpoint: &ProviderEndpoint) -> Option<Arc<dyn RequestSigner>> {
    let ProviderSettings::Bedrock { region, auth } = &endpoint.settings else {
        return None;
    };
    match auth {
        BedrockAuth::ApiKey => None,
        BedrockAuth::Static(keys) => Some(Arc::new(SigV4Signer::with_keys(region, keys))),
        BedrockAuth::Chain => Some(Arc::new(SigV4Signer::with_chain(region))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_one_encoded_path_segment() {
        assert_eq!(
            model_path("anthropic.claude-3-5-sonnet-20240620-v1:0", "converse"),
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
        );
        assert_eq!(
            model_path(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.x",
                "converse-stream"
            ),
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.x/converse-stream"
        );
    }
}
