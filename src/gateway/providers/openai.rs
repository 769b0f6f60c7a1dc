//! OpenAI-wire providers: `openai`, `openai-compatible` and `azure-openai`. Requests in the
//! OpenAI API pass through; only Anthropic Messages and Responses clients (the latter for
//! `openai-compatible` servers, which may not offer it) are translated.

use bytes::Bytes;

use super::{Wire, WireRequest};
use crate::compiler::{ProviderEndpoint, ProviderSettings};
use crate::crd::ProviderType;
use crate::gateway::metrics::Endpoint;
use crate::llm::chat::{ChatRequest, ChatResponse, StreamOptions};
use crate::llm::openai::{classify_error, OpenAiStreamDecoder};
use crate::llm::{Framer, SseFramer, StreamDecoder, TranslateError, TranslateOptions, UpstreamError};

/// How an OpenAI-wire provider lays out its URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Layout {
    /// `{base}/chat/completions`, the base including its version prefix.
    OpenAi,
    /// Azure's v1 API: `{base}/openai/v1/chat/completions`, the deployment as `model`.
    AzureV1,
    /// Azure's dated API: `{base}/openai/deployments/{deployment}/chat/completions?api-version=`.
    AzureDated(String),
}

/// The OpenAI API as a translation target.
pub struct OpenAiWire {
    layout: Layout,
    responses: bool,
}

impl OpenAiWire {
    pub fn new(endpoint: &ProviderEndpoint) -> Self {
        let layout = match &endpoint.settings {
            ProviderSettings::Azure { api_version } if api_version == "v1" => Layout::AzureV1,
            ProviderSettings::Azure { api_version } => Layout::AzureDated(api_version.clone()),
            _ => Layout::OpenAi,
        };
        OpenAiWire {
            layout,
            responses: matches!(endpoint.provider_type, ProviderType::Openai | ProviderType::AzureOpenai),
        }
    }

    fn openai_path(&self, endpoint: Endpoint, model: &str) -> Option<String> {
        let name = match endpoint {
            Endpoint::chat_completions => "chat/completions",
            Endpoint::completions => "completions",
            Endpoint::embeddings => "embeddings",
            Endpoint::responses if self.responses => "responses",
            Endpoint::responses | Endpoint::messages | Endpoint::count_tokens => return None,
        };
        Some(match &self.layout {
            Layout::OpenAi => format!("/{name}"),
            Layout::AzureV1 => format!("/openai/v1/{name}"),
            Layout::AzureDated(version) if endpoint == Endpoint::responses => {
                format!("/openai/responses?api-version={version}")
            }
            Layout::AzureDated(version) => {
                format!(
                    "/openai/deployments/{}/{name}?api-version={version}",
                    encode_segment(model)
                )
            }
        })
    }
}

/// Percent-encodes a path segment (deployment names are plain, but never trust that).
pub fn encode_segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl Wire for OpenAiWire {
    fn native_path(&self, endpoint: Endpoint, model: &str) -> Option<String> {
        self.openai_path(endpoint, model)
    }

    fn paths_per_model(&self) -> bool {
        matches!(self.layout, Layout::AzureDated(_))
    }

    fn chat_request(
        &self,
        request: &ChatRequest,
        model: &str,
        _options: &TranslateOptions,
    ) -> Result<WireRequest, TranslateError> {
        let mut request = request.clone();
        request.model = model.to_string();
        if request.is_stream() {
            // The gateway meters every stream, so it always asks for the usage chunk; the
            // client's encoder drops it unless the client asked too.
            let options = request.stream_options.get_or_insert_with(StreamOptions::default);
            options.include_usage = Some(true);
        }
        let body = serde_json::to_vec(&request).map_err(|e| TranslateError::invalid(e.to_string()))?;
        let path = self
            .openai_path(Endpoint::chat_completions, model)
            .ok_or_else(|| TranslateError::invalid("no chat completions URL"))?;
        Ok(WireRequest {
            path,
            body: Bytes::from(body),
        })
    }

    fn chat_response(&self, body: &[u8], _model: &str) -> Result<ChatResponse, UpstreamError> {
        serde_json::from_slice(body).map_err(|e| {
            UpstreamError::bad_response(format!(
                "the provider answered with a chat completion this gateway cannot read ({e})"
            ))
        })
    }

    fn chat_stream(&self, _model: &str) -> (Box<dyn Framer>, Box<dyn StreamDecoder>) {
        (Box::new(SseFramer::new()), Box::new(OpenAiStreamDecoder::new()))
    }

    fn classify(&self, status: u16, body: &[u8]) -> UpstreamError {
        classify_error(status, body)
    }
}
