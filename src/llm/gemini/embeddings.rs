//! OpenAI embeddings requests as `batchEmbedContents` (one request per input text, in order),
//! and the answer back in OpenAI's shape, float or base64 as the client asked.

use bytes::Bytes;

use super::model_resource;
use super::types::{BatchEmbedContentsRequest, BatchEmbedContentsResponse, Content, EmbedContentRequest, Part};
use crate::llm::embeddings::{embeddings_response, EmbeddingsRequest};
use crate::llm::is_neutral;
use crate::llm::{TranslateError, TranslateOptions, Unsupported, UpstreamError};

/// The most texts `batchEmbedContents` takes at once.
pub const MAX_BATCH: usize = 100;

/// The `batchEmbedContents` request for an OpenAI embeddings request.
pub fn to_batch_embed(
    request: &EmbeddingsRequest,
    model: &str,
    options: &TranslateOptions,
) -> Result<BatchEmbedContentsRequest, TranslateError> {
    let mut unsupported = Unsupported::new(options);
    let Some(texts) = request.input.texts() else {
        return Err(TranslateError::new(
            "input",
            "Gemini embeds text: token ids are for OpenAI-wire providers; send the text instead",
        ));
    };
    if texts.is_empty() {
        return Err(TranslateError::new("input", "input must hold at least one text"));
    }
    if texts.len() > MAX_BATCH {
        return Err(TranslateError::new(
            "input",
            format!(
                "Gemini embeds at most {MAX_BATCH} texts per request and this one has {}: split it",
                texts.len()
            ),
        ));
    }
    match request.encoding_format.as_deref() {
        None | Some("float") | Some("base64") => {}
        Some(other) => {
            return Err(TranslateError::new(
                "encoding_format",
                format!("encoding_format '{other}' is not float or base64"),
            ))
        }
    }
    if request.user.as_deref().is_some_and(|u| !u.is_empty()) {
        unsupported.param("user", "Gemini has no end-user identifier")?;
    }
    for (key, value) in &request.rest {
        if !is_neutral(value) {
            unsupported.param(key, "the gateway cannot translate it for Gemini's embeddings API")?;
        }
    }
    let resource = model_resource(model);
    Ok(BatchEmbedContentsRequest {
        requests: texts
            .into_iter()
            .map(|text| EmbedContentRequest {
                model: resource.clone(),
                content: Content {
                    role: None,
                    parts: vec![Part::text(text)],
                },
                output_dimensionality: request.dimensions,
            })
            .collect(),
    })
}

/// A `batchEmbedContents` answer to `request` as an OpenAI embeddings response body, float or
/// base64 vectors as the client asked. Gemini's public API reports no token counts for
/// embeddings: without `usageMetadata` the usage is the request's estimate
/// ([`EmbeddingsRequest::estimated_prompt_tokens`]), so the call is metered and charged, not free.
pub fn from_batch_embed(body: &[u8], model: &str, request: &EmbeddingsRequest) -> Result<Bytes, UpstreamError> {
    let answer: BatchEmbedContentsResponse = serde_json::from_slice(body).map_err(|e| {
        UpstreamError::bad_response(format!(
            "Gemini answered with embeddings this gateway cannot read ({e})"
        ))
    })?;
    let vectors: Vec<Vec<f32>> = answer.embeddings.into_iter().map(|e| e.values).collect();
    let prompt_tokens = match answer.usage_metadata {
        Some(usage) => usage.prompt_token_count,
        None => request.estimated_prompt_tokens(),
    };
    let body = embeddings_response(model, &vectors, prompt_tokens, request.wants_base64());
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| UpstreamError::bad_response(format!("cannot write the embeddings response ({e})")))
}
