//! Token estimates for `/v1/messages/count_tokens` on providers that cannot count them.

use super::inbound::parse_request;
use super::types::{ContentBlock, DocumentSource, MessageContent, System, ToolResultContent};
use crate::llm::TranslateError;

/// Tokens an image costs at most (Anthropic: about width × height / 750, images being scaled
/// to about 1.15 megapixels).
const IMAGE_TOKENS: u64 = 1_600;

/// An estimate of a request's input tokens, for `/v1/messages/count_tokens` on a provider that
/// cannot count them: about four bytes of text a token, images at their largest cost, PDFs at
/// one token per 4 bytes of their text-sized share (a tenth of the file).
pub fn estimate_input_tokens(body: &[u8]) -> Result<u64, TranslateError> {
    let request = parse_request(body)?;
    let mut bytes = 0usize;
    let mut images = 0u64;
    let block_bytes = |block: &ContentBlock, images: &mut u64| -> usize {
        match block {
            ContentBlock::Text { text, .. } => text.len(),
            ContentBlock::Image { .. } => {
                *images += 1;
                0
            }
            ContentBlock::Document { source, .. } => match source {
                DocumentSource::Text { data, .. } => data.len(),
                DocumentSource::Base64 { data, .. } => data.len() * 3 / 4 / 10,
                _ => 0,
            },
            ContentBlock::ToolUse { name, input, .. } => name.len() + input.get().len(),
            ContentBlock::Thinking { thinking, .. } => thinking.len(),
            _ => 0,
        }
    };
    match &request.system {
        Some(System::Text(text)) => bytes += text.len(),
        Some(System::Blocks(blocks)) => bytes += blocks.iter().map(|b| block_bytes(b, &mut images)).sum::<usize>(),
        None => {}
    }
    for message in &request.messages {
        bytes += 4 * 4; // each turn's framing: a few tokens
        match &message.content {
            MessageContent::Text(text) => bytes += text.len(),
            MessageContent::Blocks(blocks) => {
                for block in blocks {
                    bytes += match block {
                        ContentBlock::ToolResult { content, .. } => match content {
                            Some(ToolResultContent::Text(text)) => text.len(),
                            Some(ToolResultContent::Blocks(inner)) => {
                                inner.iter().map(|b| block_bytes(b, &mut images)).sum()
                            }
                            None => 0,
                        },
                        other => block_bytes(other, &mut images),
                    };
                }
            }
        }
    }
    for tool in request.tools.iter().flatten() {
        bytes += tool.name.len() + tool.description.as_ref().map_or(0, String::len);
        bytes += tool.input_schema.as_ref().map_or(0, |s| s.to_string().len());
    }
    Ok((bytes as u64).div_ceil(4) + images * IMAGE_TOKENS)
}
