//! The Gemini API (`type: gemini` providers), native: `generateContent`,
//! `streamGenerateContent?alt=sse` and `batchEmbedContents`, written from the canonical form
//! and read back into it.
//!
//! Native rather than Google's OpenAI-compatible endpoint: streamed answers there lose
//! `tool_calls` as the finish reason, and the native API gives the exact finish reasons
//! (safety, recitation, malformed calls), cached and thought token counts, and blocked
//! prompts, which the translation maps itself.

mod embeddings;
mod error;
mod messages;
mod request;
mod response;
mod stream;
pub mod types;

#[cfg(test)]
mod tests;

pub use embeddings::{from_batch_embed, to_batch_embed, MAX_BATCH};
pub use error::{classify_error, error_event};
pub use messages::UNKNOWN_THOUGHT_SIGNATURE;
pub use request::to_generate_content;
pub use response::from_generate_content;
pub use stream::GeminiStreamDecoder;

/// The model's resource name: `models/{id}`, or the name as given when it already names a
/// collection (`models/...`, `tunedModels/...`). Each segment is percent-encoded.
pub fn model_resource(model: &str) -> String {
    let name = if model.contains('/') {
        model.to_string()
    } else {
        format!("models/{model}")
    };
    name.split('/')
        .map(|segment| {
            url::form_urlencoded::byte_serialize(segment.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The path of a method on a model, under the API version prefix (`/v1beta`, or empty when
/// the provider's base URL already ends with a version).
pub fn method_path(version: &str, model: &str, method: &str) -> String {
    format!("{version}/{}:{method}", model_resource(model))
}
