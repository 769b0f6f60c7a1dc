//! Writes canonical chunks as an Anthropic Messages stream, for Anthropic clients of a
//! non-Anthropic alias: `message_start`; per content block `content_block_start`,
//! `content_block_delta` (`text_delta`, `input_json_delta`) and `content_block_stop`;
//! `message_delta` with the stop reason and usage; `message_stop`. A failure is an `error`
//! event with no `message_stop` after it.

use bytes::BytesMut;
use serde::Serialize;

use super::error::error_text;
use super::response::{anthropic_usage, message_id, stop_reason};
use super::types::Usage as AnthropicUsage;
use crate::llm::chat::{ChatChunk, Usage};
use crate::llm::stream::write_sse;
use crate::llm::{StreamEncoder, UpstreamError};

/// An event's data, `type` first as Anthropic writes it.
#[derive(Serialize)]
struct Event<T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct MessageStart<'a> {
    message: StartMessage<'a>,
}

#[derive(Serialize)]
struct StartMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'static str>,
    usage: AnthropicUsage,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    index: u32,
    content_block: StartBlock<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock<'a> {
    Text {
        text: &'static str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: serde_json::Map<String, serde_json::Value>,
    },
}

#[derive(Serialize)]
struct BlockDelta<'a> {
    index: u32,
    delta: DeltaBody<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum DeltaBody<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct BlockStop {
    index: u32,
}

#[derive(Serialize)]
struct MessageDelta {
    delta: StopDelta,
    usage: AnthropicUsage,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<&'static str>,
}

/// Writes one event: `event: {kind}` and its data.
fn write<T: Serialize>(out: &mut BytesMut, kind: &'static str, body: T) {
    if let Ok(data) = serde_json::to_string(&Event { kind, body }) {
        write_sse(out, Some(kind), &data);
    }
}

/// The block being written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(u32),
    Tool(u32),
}

/// Canonical chunks to Anthropic events.
pub struct AnthropicStreamEncoder {
    /// The model the client asked for (the alias).
    model: String,
    started: bool,
    open: Option<Open>,
    next_block: u32,
    /// The block index of each tool call, by the call's canonical index.
    tool_blocks: Vec<Option<u32>>,
    stop_reason: &'static str,
    usage: Option<Usage>,
}

impl AnthropicStreamEncoder {
    /// An encoder for a stream answering the client's `model`.
    pub fn new(model: &str) -> Self {
        AnthropicStreamEncoder {
            model: model.to_string(),
            started: false,
            open: None,
            next_block: 0,
            tool_blocks: Vec::new(),
            stop_reason: "end_turn",
            usage: None,
        }
    }

    fn start(&mut self, id: &str, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        // Input tokens are known only at the end of an OpenAI-shaped stream: they come in
        // `message_delta`, whose usage Anthropic clients read as the final count.
        let message = StartMessage {
            id: &message_id(id),
            kind: "message",
            role: "assistant",
            model: &self.model,
            content: [],
            stop_reason: None,
            stop_sequence: None,
            usage: AnthropicUsage {
                cache_creation_input_tokens: Some(0),
                cache_read_input_tokens: Some(0),
                ..AnthropicUsage::default()
            },
        };
        write(out, "message_start", MessageStart { message });
    }

    fn close(&mut self, out: &mut BytesMut) {
        if let Some(Open::Text(index) | Open::Tool(index)) = self.open.take() {
            write(out, "content_block_stop", BlockStop { index });
        }
    }

    fn open_block(&mut self, content_block: StartBlock<'_>, out: &mut BytesMut) -> u32 {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        write(out, "content_block_start", BlockStart { index, content_block });
        index
    }

    fn delta(index: u32, delta: DeltaBody<'_>, out: &mut BytesMut) {
        write(out, "content_block_delta", BlockDelta { index, delta });
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        if text.is_empty() {
            return;
        }
        let index = match self.open {
            Some(Open::Text(index)) => index,
            _ => {
                let index = self.open_block(StartBlock::Text { text: "" }, out);
                self.open = Some(Open::Text(index));
                index
            }
        };
        Self::delta(index, DeltaBody::TextDelta { text }, out);
    }

    fn tool_call(&mut self, call: &crate::llm::chat::ToolCallDelta, out: &mut BytesMut) {
        let slot = call.index as usize;
        if self.tool_blocks.len() <= slot {
            self.tool_blocks.resize(slot + 1, None);
        }
        let index = match self.tool_blocks[slot] {
            Some(index) => index,
            None => {
                let name = call
                    .function
                    .as_ref()
                    .and_then(|f| f.name.as_deref())
                    .unwrap_or_default();
                let id = call.id.clone().unwrap_or_else(|| format!("toolu_{slot}"));
                let block = StartBlock::ToolUse {
                    id: &id,
                    name,
                    input: serde_json::Map::new(),
                };
                let index = self.open_block(block, out);
                self.open = Some(Open::Tool(index));
                self.tool_blocks[slot] = Some(index);
                index
            }
        };
        if let Some(arguments) = call.function.as_ref().and_then(|f| f.arguments.as_deref()) {
            if !arguments.is_empty() {
                Self::delta(
                    index,
                    DeltaBody::InputJsonDelta {
                        partial_json: arguments,
                    },
                    out,
                );
            }
        }
    }
}

impl StreamEncoder for AnthropicStreamEncoder {
    fn chunk(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        self.start(&chunk.id, out);
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.clone());
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            let delta = &choice.delta;
            if let Some(text) = &delta.content {
                self.text(text, out);
            }
            if let Some(text) = &delta.refusal {
                self.text(text, out);
            }
            for call in delta.tool_calls.iter().flatten() {
                self.tool_call(call, out);
            }
            if let Some(reason) = choice.finish_reason {
                self.stop_reason = stop_reason(Some(reason));
                self.close(out);
            }
        }
    }

    fn done(&mut self, out: &mut BytesMut) {
        self.start("", out);
        self.close(out);
        let usage = anthropic_usage(&self.usage.take().unwrap_or_default());
        let delta = StopDelta {
            stop_reason: self.stop_reason,
            stop_sequence: None,
        };
        write(out, "message_delta", MessageDelta { delta, usage });
        write_sse(out, Some("message_stop"), r#"{"type":"message_stop"}"#);
    }

    fn error(&mut self, error: &UpstreamError, out: &mut BytesMut) {
        write_sse(out, Some("error"), &error_text(error.status, &error.message));
    }
}
