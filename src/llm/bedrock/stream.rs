//! ConverseStream events to canonical chunks.
//!
//! Bedrock sends `messageStart`, then per content block `contentBlockStart` (for a tool call:
//! its id and name), `contentBlockDelta`s (text, or a fragment of the tool input's JSON) and
//! `contentBlockStop`, then `messageStop` (the stop reason) and `metadata` (usage). An
//! exception message ends the stream with a classified error; so does a stream that stops
//! before `messageStop` and `metadata`.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::classify;
use super::response::{finish_reason, new_id, now, usage, TokenUsage};
use crate::llm::chat::{ChatChunk, ChunkChoice, Delta, FinishReason, FunctionCallDelta, ToolCallDelta};
use crate::llm::stream::{Frame, StreamDecoder};
use crate::llm::UpstreamError;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    #[serde(default)]
    content_block_index: u32,
    #[serde(default)]
    start: Option<StartUnion>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartUnion {
    #[serde(default)]
    tool_use: Option<ToolUseStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseStart {
    tool_use_id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    #[serde(default)]
    content_block_index: u32,
    delta: DeltaUnion,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaUnion {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<ToolUseDelta>,
    #[serde(default)]
    reasoning_content: Option<ReasoningDelta>,
}

#[derive(Deserialize)]
struct ToolUseDelta {
    #[serde(default)]
    input: String,
}

#[derive(Deserialize)]
struct ReasoningDelta {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    stop_reason: String,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct ExceptionBody {
    #[serde(default, alias = "Message")]
    message: Option<String>,
}

/// Decodes a ConverseStream into canonical chunks.
pub struct ConverseStreamDecoder {
    id: String,
    model: String,
    created: i64,
    role_sent: bool,
    finish: Option<FinishReason>,
    metadata: bool,
    /// Tool calls by content block: `(contentBlockIndex, tool call index)`.
    tools: Vec<(u32, u32)>,
}

impl ConverseStreamDecoder {
    pub fn new(model: &str) -> Self {
        ConverseStreamDecoder {
            id: new_id(),
            model: model.to_string(),
            created: now(),
            role_sent: false,
            finish: None,
            metadata: false,
            tools: Vec::new(),
        }
    }

    fn push(&mut self, out: &mut Vec<ChatChunk>, delta: Delta, finish_reason: Option<FinishReason>) {
        let mut delta = delta;
        if !self.role_sent {
            self.role_sent = true;
            delta.role = Some("assistant".to_string());
        }
        out.push(ChatChunk::with_choice(
            &self.id,
            &self.model,
            self.created,
            ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                logprobs: None,
            },
        ));
    }

    fn event(&mut self, event_type: &str, payload: &[u8], out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError> {
        match event_type {
            "messageStart" if !self.role_sent => self.push(out, Delta::default(), None),
            "contentBlockStart" => {
                let start: BlockStart = parse(event_type, payload)?;
                if let Some(tool) = start.start.and_then(|s| s.tool_use) {
                    let index = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                    self.tools.push((start.content_block_index, index));
                    let call = ToolCallDelta {
                        index,
                        id: Some(tool.tool_use_id),
                        kind: Some("function".to_string()),
                        function: Some(FunctionCallDelta {
                            name: Some(tool.name),
                            arguments: Some(String::new()),
                        }),
                    };
                    self.push(out, tool_delta(call), None);
                }
            }
            "contentBlockDelta" => {
                let block: BlockDelta = parse(event_type, payload)?;
                if let Some(text) = block.delta.text {
                    let delta = Delta {
                        content: Some(text),
                        ..Delta::default()
                    };
                    self.push(out, delta, None);
                } else if let Some(tool) = block.delta.tool_use {
                    let Some(&(_, index)) = self.tools.iter().find(|(b, _)| *b == block.content_block_index) else {
                        return Err(UpstreamError::bad_response(format!(
                            "the provider streamed tool input for content block {} before starting it",
                            block.content_block_index
                        )));
                    };
                    let call = ToolCallDelta {
                        index,
                        id: None,
                        kind: None,
                        function: Some(FunctionCallDelta {
                            name: None,
                            arguments: Some(tool.input),
                        }),
                    };
                    self.push(out, tool_delta(call), None);
                } else if let Some(text) = block.delta.reasoning_content.and_then(|r| r.text) {
                    let mut rest = Map::new();
                    rest.insert("reasoning_content".to_string(), Value::String(text));
                    self.push(
                        out,
                        Delta {
                            rest,
                            ..Delta::default()
                        },
                        None,
                    );
                }
            }
            "messageStop" => {
                let stop: MessageStop = parse(event_type, payload)?;
                let reason = finish_reason(&stop.stop_reason);
                self.finish = Some(reason);
                self.push(out, Delta::default(), Some(reason));
            }
            "metadata" => {
                let metadata: Metadata = parse(event_type, payload)?;
                self.metadata = true;
                if let Some(reported) = metadata.usage {
                    out.push(ChatChunk::usage_only(
                        &self.id,
                        &self.model,
                        self.created,
                        usage(&reported),
                    ));
                }
            }
            // `contentBlockStop`, and events newer than this gateway: nothing to say.
            _ => {}
        }
        Ok(())
    }
}

fn tool_delta(call: ToolCallDelta) -> Delta {
    Delta {
        tool_calls: Some(vec![call]),
        ..Delta::default()
    }
}

fn parse<'a, T: Deserialize<'a>>(event_type: &str, payload: &'a [u8]) -> Result<T, UpstreamError> {
    serde_json::from_slice(payload).map_err(|e| {
        UpstreamError::bad_response(format!(
            "the provider sent a {event_type} event this gateway cannot read ({e})"
        ))
    })
}

impl StreamDecoder for ConverseStreamDecoder {
    fn frame(&mut self, frame: Frame<'_>, out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError> {
        let Frame::EventStream {
            message_type,
            event_type,
            payload,
        } = frame
        else {
            return Err(UpstreamError::bad_response(
                "the provider sent a frame that is not an AWS event-stream message",
            ));
        };
        match message_type {
            "event" => self.event(event_type, payload, out),
            "exception" => {
                let body: ExceptionBody = serde_json::from_slice(payload).unwrap_or(ExceptionBody { message: None });
                let message = body
                    .message
                    .unwrap_or_else(|| String::from_utf8_lossy(payload).into_owned());
                Err(classify(None, Some(event_type), &message))
            }
            // `error`: the framer hands the message on as the payload.
            _ => Err(classify(None, Some(event_type), &String::from_utf8_lossy(payload))),
        }
    }

    fn end(&mut self, _out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError> {
        match (self.finish, self.metadata) {
            (Some(_), true) => Ok(()),
            (None, _) => Err(UpstreamError::bad_response(
                "the provider's stream ended before its messageStop event",
            )),
            (Some(_), false) => Err(UpstreamError::bad_response(
                "the provider's stream ended before its metadata event (the usage)",
            )),
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
