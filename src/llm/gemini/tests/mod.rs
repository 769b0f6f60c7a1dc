//! Unit tests of the Gemini translation, on fixtures of the documented wire format
//! (`../fixtures/`: answers, event streams with Google's `\r\n` framing, error envelopes).

mod errors;
mod request;
mod response;
mod stream;

use crate::llm::chat::{ChatChunk, ChatRequest};
use crate::llm::{Framer, SseFramer, StreamDecoder, TranslateOptions, UpstreamError};

use super::GeminiStreamDecoder;

fn strict() -> TranslateOptions {
    TranslateOptions::strict("gemini")
}

/// A canonical request from its OpenAI JSON.
fn chat(value: serde_json::Value) -> ChatRequest {
    serde_json::from_value(value).expect("a valid chat request")
}

/// The Gemini request body for an OpenAI request, as JSON.
fn translated(value: serde_json::Value) -> serde_json::Value {
    let request = super::to_generate_content(&chat(value), "gemini-2.5-flash", &strict()).expect("translates");
    serde_json::to_value(request).expect("serializes")
}

/// Decodes a stream fed in pieces of `piece` bytes (0: all at once); the chunks and how it ended.
fn decode(text: &[u8], piece: usize) -> (Vec<ChatChunk>, Result<(), UpstreamError>) {
    let mut framer = SseFramer::new();
    let mut decoder = GeminiStreamDecoder::new("gemini-2.5-flash");
    let mut out = Vec::new();
    let size = if piece == 0 { text.len().max(1) } else { piece };
    for bytes in text.chunks(size) {
        if let Err(e) = framer.feed(bytes, &mut |frame| decoder.frame(frame, &mut out)) {
            return (out, Err(e));
        }
    }
    let end = decoder.end(&mut out);
    (out, end)
}
