//! Unit tests of the Anthropic translators, against fixtures written from Anthropic's
//! documented wire format (`../fixtures`).

mod inbound;
mod outbound;
mod stream;

use crate::llm::chat::ChatChunk;
use crate::llm::stream::{Framer, SseFramer};
use crate::llm::{StreamDecoder, UpstreamError};

use super::AnthropicStreamDecoder;

pub const STREAM_TEXT: &str = include_str!("../fixtures/stream_text.sse");
pub const STREAM_TOOLS: &str = include_str!("../fixtures/stream_tools.sse");
pub const MESSAGE_TOOLS: &str = include_str!("../fixtures/message_tools.json");
pub const STREAM_THINKING: &str = include_str!("../fixtures/stream_thinking.sse");
pub const STREAM_OVERLOADED: &str = include_str!("../fixtures/stream_overloaded.sse");

/// Decodes an Anthropic stream fed in pieces of `piece` bytes: the chunks, and how it ended.
pub fn decode(text: &str, piece: usize) -> (Vec<ChatChunk>, Result<(), UpstreamError>) {
    let mut decoder = AnthropicStreamDecoder::new();
    let mut framer = SseFramer::new();
    let mut out = Vec::new();
    for bytes in text.as_bytes().chunks(piece.max(1)) {
        if let Err(e) = framer.feed(bytes, &mut |frame| decoder.frame(frame, &mut out)) {
            return (out, Err(e));
        }
    }
    let end = decoder.end(&mut out);
    (out, end)
}
