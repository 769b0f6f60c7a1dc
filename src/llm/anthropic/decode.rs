//! Reads an Anthropic Messages stream (`message_start`, `content_block_start` /
//! `content_block_delta` / `content_block_stop` per block, `message_delta`, `message_stop`,
//! with `ping` and `error` anywhere) into canonical chunks, one event at a time.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::error::stream_error;
use super::response::{chat_usage, finish_reason, now};
use super::types::{ErrorBody, UsageCounts};
use crate::llm::chat::{ChatChunk, ChunkChoice, Delta, FinishReason, FunctionCallDelta, ToolCallDelta};
use crate::llm::{Frame, StreamDecoder, UpstreamError};

/// One event's data, every event type in one flat struct read in a single pass (text is
/// borrowed from the frame unless it has escapes).
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default, borrow)]
    delta: Option<EventDelta<'a>>,
    #[serde(default)]
    content_block: Option<StartBlock>,
    #[serde(default)]
    message: Option<StartMessage>,
    #[serde(default)]
    usage: Option<UsageCounts>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct EventDelta<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct StartBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Box<RawValue>>,
    #[serde(default)]
    thinking: Option<String>,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: UsageCounts,
}

/// A content block of the message being streamed.
enum Block {
    Text,
    Tool {
        /// The tool call's index among the message's tool calls.
        call: u32,
        /// Whether any argument text was passed on.
        sent_arguments: bool,
        /// A non-empty `input` given in `content_block_start` itself.
        start_input: Option<String>,
    },
    Thinking,
    Other,
}

/// Anthropic stream to canonical chunks.
pub struct AnthropicStreamDecoder {
    id: String,
    model: String,
    created: i64,
    started: bool,
    blocks: Vec<Block>,
    calls: u32,
    usage: UsageCounts,
    finish_sent: bool,
    finished: bool,
}

impl Default for AnthropicStreamDecoder {
    fn default() -> Self {
        AnthropicStreamDecoder {
            id: String::new(),
            model: String::new(),
            created: now(),
            started: false,
            blocks: Vec::new(),
            calls: 0,
            usage: UsageCounts::default(),
            finish_sent: false,
            finished: false,
        }
    }
}

fn protocol(what: &str) -> UpstreamError {
    UpstreamError::bad_response(format!("the provider's Anthropic stream is malformed: {what}"))
}

impl AnthropicStreamDecoder {
    pub fn new() -> Self {
        AnthropicStreamDecoder::default()
    }

    fn push(&self, out: &mut Vec<ChatChunk>, delta: Delta, finish_reason: Option<FinishReason>) {
        let choice = ChunkChoice {
            index: 0,
            delta,
            finish_reason,
            logprobs: None,
        };
        out.push(ChatChunk::with_choice(&self.id, &self.model, self.created, choice));
    }

    fn text(&self, out: &mut Vec<ChatChunk>, text: &str) {
        if !text.is_empty() {
            let delta = Delta {
                content: Some(text.to_string()),
                ..Delta::default()
            };
            self.push(out, delta, None);
        }
    }

    fn reasoning(&self, out: &mut Vec<ChatChunk>, text: &str) {
        if !text.is_empty() {
            let mut delta = Delta::default();
            delta
                .rest
                .insert("reasoning_content".to_string(), Value::String(text.to_string()));
            self.push(out, delta, None);
        }
    }

    fn arguments(&self, out: &mut Vec<ChatChunk>, call: u32, fragment: &str) {
        let delta = Delta {
            tool_calls: Some(vec![ToolCallDelta {
                index: call,
                id: None,
                kind: None,
                function: Some(FunctionCallDelta {
                    name: None,
                    arguments: Some(fragment.to_string()),
                }),
            }]),
            ..Delta::default()
        };
        self.push(out, delta, None);
    }

    fn block_start(&mut self, event: Event<'_>, out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError> {
        let (Some(index), Some(block)) = (event.index, event.content_block) else {
            return Err(protocol("content_block_start without index or content_block"));
        };
        if index != self.blocks.len() {
            return Err(protocol("content blocks out of order"));
        }
        let state = match block.kind.as_str() {
            "text" => {
                self.text(out, block.text.as_deref().unwrap_or_default());
                Block::Text
            }
            "tool_use" => {
                let call = self.calls;
                self.calls += 1;
                let delta = Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: call,
                        id: block.id,
                        kind: Some("function".to_string()),
                        function: Some(FunctionCallDelta {
                            name: block.name,
                            arguments: Some(String::new()),
                        }),
                    }]),
                    ..Delta::default()
                };
                self.push(out, delta, None);
                let start_input = block
                    .input
                    .map(|raw| raw.get().to_string())
                    .filter(|text| text.trim_start().starts_with('{') && text.len() > 2 && text != "{}");
                Block::Tool {
                    call,
                    sent_arguments: false,
                    start_input,
                }
            }
            "thinking" => {
                self.reasoning(out, block.thinking.as_deref().unwrap_or_default());
                Block::Thinking
            }
            _ => Block::Other,
        };
        self.blocks.push(state);
        Ok(())
    }

    fn block_delta(&mut self, event: Event<'_>, out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError> {
        let (Some(index), Some(delta)) = (event.index, event.delta) else {
            return Err(protocol("content_block_delta without index or delta"));
        };
        let Some(block) = self.blocks.get_mut(index) else {
            return Err(protocol("a delta for a content block that never started"));
        };
        match delta.kind.as_deref() {
            Some("text_delta") => {
                let text = delta.text.unwrap_or_default();
                self.text(out, &text);
            }
            Some("input_json_delta") => {
                let Block::Tool {
                    call, sent_arguments, ..
                } = block
                else {
                    return Err(protocol("input_json_delta for a block that is not tool_use"));
                };
                let fragment = delta.partial_json.unwrap_or_default();
                if !fragment.is_empty() {
                    *sent_arguments = true;
                    let call = *call;
                    self.arguments(out, call, &fragment);
                }
            }
            Some("thinking_delta") => {
                let text = delta.thinking.unwrap_or_default();
                self.reasoning(out, &text);
            }
            // signature_delta, citations_delta, and delta types added later: nothing a
            // Chat Completions client can hold.
            _ => {}
        }
        Ok(())
    }

    fn block_stop(&mut self, event: Event<'_>, out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError> {
        let index = event
            .index
            .ok_or_else(|| protocol("content_block_stop without index"))?;
        let Some(block) = self.blocks.get_mut(index) else {
            return Err(protocol("content_block_stop for a block that never started"));
        };
        if let Block::Tool {
            call,
            sent_arguments: sent_arguments @ false,
            start_input,
        } = block
        {
            // A call without arguments: `{}`, as the non-streamed answer has it.
            *sent_arguments = true;
            let (call, text) = (*call, start_input.take().unwrap_or_else(|| "{}".to_string()));
            self.arguments(out, call, &text);
        }
        Ok(())
    }

    fn finish(&mut self, reason: FinishReason, out: &mut Vec<ChatChunk>) {
        if !self.finish_sent {
            self.finish_sent = true;
            self.push(out, Delta::default(), Some(reason));
        }
    }
}

impl StreamDecoder for AnthropicStreamDecoder {
    fn frame(&mut self, frame: Frame<'_>, out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError> {
        let Frame::Sse { data, .. } = frame else {
            return Err(protocol("a frame that is not a server-sent event"));
        };
        if data.trim().is_empty() || self.finished {
            return Ok(());
        }
        let event: Event<'_> = serde_json::from_str(data).map_err(|e| {
            UpstreamError::bad_response(format!("the provider sent a stream event that is not JSON ({e})"))
        })?;
        if !self.started && !matches!(event.kind.as_ref(), "message_start" | "ping" | "error") {
            return Err(protocol("an event before message_start"));
        }
        match event.kind.as_ref() {
            "message_start" => {
                let message = event.message.ok_or_else(|| protocol("message_start without message"))?;
                self.id = message.id;
                self.model = message.model;
                self.usage.merge(message.usage);
                self.started = true;
                let delta = Delta {
                    role: Some("assistant".to_string()),
                    ..Delta::default()
                };
                self.push(out, delta, None);
            }
            "content_block_start" => self.block_start(event, out)?,
            "content_block_delta" => self.block_delta(event, out)?,
            "content_block_stop" => self.block_stop(event, out)?,
            "message_delta" => {
                if let Some(usage) = event.usage {
                    self.usage.merge(usage);
                }
                if let Some(reason) = event.delta.and_then(|d| d.stop_reason) {
                    self.finish(finish_reason(&reason), out);
                }
            }
            "message_stop" => {
                self.finish(FinishReason::Stop, out);
                self.finished = true;
                let usage = chat_usage(&self.usage.usage());
                out.push(ChatChunk::usage_only(&self.id, &self.model, self.created, usage));
            }
            "error" => {
                let body = event.error.unwrap_or(ErrorBody {
                    kind: "api_error".to_string(),
                    message: "the provider's stream reported an error".to_string(),
                });
                return Err(stream_error(body));
            }
            // `ping`, and event types added later.
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self, _out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError> {
        if self.finished {
            Ok(())
        } else {
            Err(UpstreamError::bad_response(
                "the provider's stream ended before message_stop",
            ))
        }
    }
}
