//! Streams in translation: upstream bytes are framed (server-sent events, or the AWS event
//! stream for Bedrock), each frame is decoded into canonical chunks, and each chunk is encoded
//! for the client's API. Every stage works a frame at a time, so a stream is never buffered.

use bytes::BytesMut;

use super::chat::{ChatChunk, ChatResponse, Choice, FinishReason, FunctionCall, ResponseMessage, ToolCall, Usage};
use super::failure::UpstreamError;

/// One framed unit of an upstream stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A server-sent event: its `event:` name (`"message"` when absent) and joined `data:` lines.
    Sse { event: &'a str, data: &'a str },
    /// An AWS event-stream message: `:message-type` (`event` or `exception`), `:event-type` (or
    /// `:exception-type`), and the JSON payload.
    EventStream {
        message_type: &'a str,
        event_type: &'a str,
        payload: &'a [u8],
    },
}

/// Turns one provider's streamed response into canonical chunks (see [`ChatChunk`] for the
/// order they come in).
pub trait StreamDecoder: Send {
    /// Decodes one frame. An error is the provider's error event, or a frame that breaks the
    /// provider's protocol; the stream ends with it.
    fn frame(&mut self, frame: Frame<'_>, out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError>;

    /// The upstream's bytes ended. A stream cut before the provider's final event is an error:
    /// the client must not see a clean finish.
    fn end(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError>;
}

/// Writes canonical chunks in the client's API.
pub trait StreamEncoder: Send {
    fn chunk(&mut self, chunk: &ChatChunk, out: &mut BytesMut);
    /// The stream finished cleanly (`data: [DONE]`, `message_stop`, `response.completed`).
    fn done(&mut self, out: &mut BytesMut);
    /// The stream failed after it started: an error event, and no clean finish after it.
    fn error(&mut self, error: &UpstreamError, out: &mut BytesMut);
}

/// Splits an upstream's bytes into frames.
pub trait Framer: Send {
    /// Feeds bytes and hands every complete frame to `each`, stopping at its first error. A
    /// framing error (a corrupt event-stream message) is an error too.
    fn feed(
        &mut self,
        bytes: &[u8],
        each: &mut dyn FnMut(Frame<'_>) -> Result<(), UpstreamError>,
    ) -> Result<(), UpstreamError>;
}

/// Splits bytes into server-sent events.
#[derive(Default)]
pub struct SseFramer {
    parser: sse_parse::SseParser,
}

impl SseFramer {
    pub fn new() -> Self {
        SseFramer::default()
    }
}

impl Framer for SseFramer {
    fn feed(
        &mut self,
        bytes: &[u8],
        each: &mut dyn FnMut(Frame<'_>) -> Result<(), UpstreamError>,
    ) -> Result<(), UpstreamError> {
        self.parser.feed(bytes);
        while let Some(event) = self.parser.next_event() {
            each(Frame::Sse {
                event: &event.event,
                data: &event.data,
            })?;
        }
        Ok(())
    }
}

/// Writes one server-sent event (`event:` line only when `event` is given).
pub fn write_sse(out: &mut BytesMut, event: Option<&str>, data: &str) {
    write_sse_bytes(out, event, data.as_bytes());
}

/// [`write_sse`] for data as bytes: one `data:` line per line of `data`.
pub fn write_sse_bytes(out: &mut BytesMut, event: Option<&str>, data: &[u8]) {
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.extend_from_slice(b"\n");
    }
    let mut at = 0;
    for end in memchr::memchr_iter(b'\n', data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&data[at..=end]);
        at = end + 1;
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&data[at..]);
    out.extend_from_slice(b"\n\n");
}

/// Joins a canonical stream into the response a non-streamed call returns: text concatenated,
/// tool-call arguments joined per call, the finish reason and usage kept.
#[derive(Default, Debug)]
pub struct Accumulator {
    id: String,
    model: String,
    created: i64,
    content: String,
    refusal: String,
    saw_content: bool,
    tool_calls: Vec<ToolCall>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
}

impl Accumulator {
    pub fn new() -> Self {
        Accumulator::default()
    }

    pub fn push(&mut self, chunk: &ChatChunk) {
        if self.id.is_empty() {
            self.id.clone_from(&chunk.id);
            self.model.clone_from(&chunk.model);
            self.created = chunk.created;
        }
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.clone());
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            if let Some(text) = &choice.delta.content {
                self.saw_content = true;
                self.content.push_str(text);
            }
            if let Some(text) = &choice.delta.refusal {
                self.refusal.push_str(text);
            }
            for call in choice.delta.tool_calls.iter().flatten() {
                let index = call.index as usize;
                while self.tool_calls.len() <= index {
                    self.tool_calls.push(ToolCall {
                        id: String::new(),
                        kind: "function".to_string(),
                        function: FunctionCall {
                            name: String::new(),
                            arguments: String::new(),
                        },
                    });
                }
                let slot = &mut self.tool_calls[index];
                if let Some(id) = &call.id {
                    slot.id.clone_from(id);
                }
                if let Some(function) = &call.function {
                    if let Some(name) = &function.name {
                        slot.function.name.push_str(name);
                    }
                    if let Some(arguments) = &function.arguments {
                        slot.function.arguments.push_str(arguments);
                    }
                }
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
    }

    /// The finish reason seen so far.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish_reason
    }

    pub fn finish(self) -> ChatResponse {
        ChatResponse {
            id: self.id,
            object: "chat.completion".to_string(),
            created: self.created,
            model: self.model,
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    role: "assistant".to_string(),
                    content: (self.saw_content || self.tool_calls.is_empty()).then_some(self.content),
                    tool_calls: (!self.tool_calls.is_empty()).then_some(self.tool_calls),
                    refusal: (!self.refusal.is_empty()).then_some(self.refusal),
                    rest: Default::default(),
                },
                finish_reason: self.finish_reason,
                logprobs: None,
            }],
            usage: self.usage,
            rest: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::chat::{ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta};

    #[test]
    fn sse_frames_split_anywhere_come_out_whole() {
        let text = b"event: message_start\ndata: {\"a\":1}\n\ndata: [DONE]\n\n";
        for split in 1..text.len() {
            let mut framer = SseFramer::new();
            let mut seen = Vec::new();
            for piece in [&text[..split], &text[split..]] {
                framer
                    .feed(piece, &mut |frame| {
                        if let Frame::Sse { event, data } = frame {
                            seen.push((event.to_string(), data.to_string()));
                        }
                        Ok(())
                    })
                    .expect("no error");
            }
            assert_eq!(
                seen,
                vec![
                    ("message_start".to_string(), "{\"a\":1}".to_string()),
                    ("message".to_string(), "[DONE]".to_string())
                ]
            );
        }
    }

    #[test]
    fn written_events_have_one_data_line_per_line() {
        let mut out = BytesMut::new();
        write_sse(&mut out, Some("ping"), "a\nb");
        assert_eq!(&out[..], b"event: ping\ndata: a\ndata: b\n\n");
    }

    #[test]
    fn tool_call_fragments_join_per_call() {
        let delta = |index, id: Option<&str>, name: Option<&str>, arguments: &str| ChunkChoice {
            index: 0,
            delta: Delta {
                tool_calls: Some(vec![ToolCallDelta {
                    index,
                    id: id.map(str::to_string),
                    kind: id.map(|_| "function".to_string()),
                    function: Some(FunctionCallDelta {
                        name: name.map(str::to_string),
                        arguments: Some(arguments.to_string()),
                    }),
                }]),
                ..Delta::default()
            },
            finish_reason: None,
            logprobs: None,
        };
        let mut acc = Accumulator::new();
        for choice in [
            delta(0, Some("call_a"), Some("weather"), ""),
            delta(1, Some("call_b"), Some("time"), ""),
            delta(0, None, None, "{\"city\":"),
            delta(1, None, None, "{}"),
            delta(0, None, None, "\"Paris\"}"),
        ] {
            acc.push(&ChatChunk::with_choice("x", "m", 0, choice));
        }
        let response = acc.finish();
        let calls = response.choices[0].message.tool_calls.clone().expect("calls");
        assert_eq!(calls[0].function.arguments, "{\"city\":\"Paris\"}");
        assert_eq!(calls[1].function.name, "time");
        assert_eq!(response.choices[0].message.content, None);
    }
}
