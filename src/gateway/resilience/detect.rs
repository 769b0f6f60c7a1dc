//! Finding the first content in the bytes a client receives, per client API. Lifecycle frames
//! (an OpenAI role-only chunk, Anthropic's `message_start`, `ping` and the start of an empty
//! text block, the Responses API's `response.created`) are not content: they are held, so a
//! try that fails after them is replaced without the client noticing. Parsing stops at the
//! first content; the rest of a stream passes untouched.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::gateway::metrics::Endpoint;
use crate::llm::failure::mentions_context_window;
use crate::llm::{FailureClass, UpstreamError};

/// What a client receives, as far as content detection goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// OpenAI chat completions or completions, streamed (`data:` events, `[DONE]`).
    OpenAiSse,
    /// Anthropic Messages, streamed.
    AnthropicSse,
    /// The OpenAI Responses API, streamed.
    ResponsesSse,
    /// A non-streamed answer: its content is the whole of it.
    Whole,
}

impl Surface {
    /// The surface of a request to `endpoint`.
    pub fn of(endpoint: Endpoint, stream: bool) -> Surface {
        match (endpoint, stream) {
            (Endpoint::chat_completions | Endpoint::completions, true) => Surface::OpenAiSse,
            (Endpoint::messages, true) => Surface::AnthropicSse,
            (Endpoint::responses, true) => Surface::ResponsesSse,
            _ => Surface::Whole,
        }
    }

    pub fn is_stream(self) -> bool {
        self != Surface::Whole
    }
}

/// What the bytes so far show.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// Only lifecycle frames (or nothing) yet.
    Nothing,
    /// Content reached (or the stream finished cleanly): commit.
    Content,
    /// An error event before any content.
    Failed(UpstreamError),
}

/// Scans a stream's events until content.
pub struct Detector {
    surface: Surface,
    parser: sse_parse::SseParser,
}

impl Detector {
    pub fn new(surface: Surface) -> Self {
        Detector {
            surface,
            parser: sse_parse::SseParser::new(),
        }
    }

    /// Feeds the next bytes the client would receive.
    pub fn feed(&mut self, bytes: &[u8]) -> Seen {
        self.parser.feed(bytes);
        while let Some(event) = self.parser.next_event() {
            let seen = match self.surface {
                Surface::OpenAiSse => openai(&event.data),
                Surface::AnthropicSse => anthropic(&event.event, &event.data),
                Surface::ResponsesSse => responses(&event.event, &event.data),
                Surface::Whole => Seen::Nothing,
            };
            if seen != Seen::Nothing {
                return seen;
            }
        }
        Seen::Nothing
    }

    /// The stream ended before any content and before its clean finish (which counts as
    /// content: an empty answer is an answer): it was cut.
    pub fn end(&self) -> Seen {
        Seen::Failed(UpstreamError::new(
            FailureClass::Unreachable,
            502,
            "the provider's stream ended before any content",
        ))
    }
}

#[derive(Deserialize)]
struct OpenAiEvent<'a> {
    #[serde(default, borrow)]
    choices: Vec<OpenAiChoice<'a>>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OpenAiChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<OpenAiDelta<'a>>,
    /// The legacy completions API.
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    finish_reason: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OpenAiDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<&'a RawValue>,
    #[serde(default, borrow)]
    function_call: Option<&'a RawValue>,
}

fn filled(text: &Option<Cow<'_, str>>) -> bool {
    text.as_ref().is_some_and(|t| !t.is_empty())
}

fn openai(data: &str) -> Seen {
    if data.trim() == "[DONE]" {
        return Seen::Content;
    }
    let Ok(event) = serde_json::from_str::<OpenAiEvent<'_>>(data) else {
        // Not ours to judge: the client gets it as it is.
        return Seen::Content;
    };
    if let Some(error) = event.error {
        return Seen::Failed(error_event(error.get()));
    }
    let content = event.choices.iter().any(|c| {
        c.finish_reason.is_some()
            || filled(&c.text)
            || c.delta.as_ref().is_some_and(|d| {
                filled(&d.content)
                    || filled(&d.refusal)
                    || filled(&d.reasoning_content)
                    || d.tool_calls.is_some()
                    || d.function_call.is_some()
            })
    });
    if content {
        Seen::Content
    } else {
        Seen::Nothing
    }
}

#[derive(Deserialize)]
struct BlockStart<'a> {
    #[serde(borrow)]
    content_block: Block<'a>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

fn anthropic(event: &str, data: &str) -> Seen {
    match event {
        "message_start" | "ping" => Seen::Nothing,
        "content_block_start" => match serde_json::from_str::<BlockStart<'_>>(data) {
            Ok(start) if start.content_block.kind == "text" && !filled(&start.content_block.text) => Seen::Nothing,
            _ => Seen::Content,
        },
        "error" => Seen::Failed(error_event(data)),
        _ => Seen::Content,
    }
}

fn responses(event: &str, data: &str) -> Seen {
    match event {
        "response.created" | "response.in_progress" | "response.queued" | "response.content_part.added" => {
            Seen::Nothing
        }
        // A message or reasoning item opens before its text; a function call names the tool.
        "response.output_item.added" if !data.contains("\"function_call\"") => Seen::Nothing,
        "error" | "response.failed" => Seen::Failed(error_event(data)),
        _ => Seen::Content,
    }
}

/// Classifies an error event (OpenAI's `{"error": {...}}` or its inner object, Anthropic's
/// `{"type": "error", "error": {...}}`, a failed Responses API response) by its type and code.
pub fn error_event(data: &str) -> UpstreamError {
    let value: serde_json::Value = serde_json::from_str(data).unwrap_or(serde_json::Value::Null);
    let inner = value
        .get("error")
        .filter(|e| e.is_object())
        .or_else(|| value.get("response").and_then(|r| r.get("error")))
        .unwrap_or(&value);
    let text = |key: &str| inner.get(key).and_then(|v| v.as_str()).unwrap_or_default();
    let (kind, code) = (text("type"), text("code"));
    let message = match text("message") {
        "" => "the provider's stream failed before any content",
        m => m,
    };
    let words = format!("{kind} {code}").to_ascii_lowercase();
    let class = if words.contains("rate_limit") {
        FailureClass::RateLimited
    } else if words.contains("overloaded") {
        FailureClass::Overloaded
    } else if words.contains("timeout") {
        FailureClass::Timeout
    } else if words.contains("unreachable") {
        FailureClass::Unreachable
    } else if mentions_context_window(Some(code), message) {
        FailureClass::ContextWindowExceeded
    } else if words.contains("invalid_request") {
        FailureClass::ClientError
    } else {
        FailureClass::ServerError
    };
    let mut error = UpstreamError::new(class, status_of(class), message);
    error.code = (!code.is_empty()).then(|| code.to_string());
    error
}

/// The status a failure class answers with when the upstream sent none of its own.
pub fn status_of(class: FailureClass) -> u16 {
    match class {
        FailureClass::RateLimited => 429,
        FailureClass::Overloaded => 503,
        FailureClass::Timeout => 504,
        FailureClass::ContextWindowExceeded | FailureClass::ClientError => 400,
        _ => 502,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(surface: Surface, bytes: &str, split: usize) -> Vec<Seen> {
        let mut detector = Detector::new(surface);
        let mut seen = Vec::new();
        for piece in bytes.as_bytes().chunks(split) {
            match detector.feed(piece) {
                Seen::Nothing => {}
                other => {
                    seen.push(other);
                    break;
                }
            }
        }
        if seen.is_empty() {
            seen.push(detector.end());
        }
        seen
    }

    const ROLE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";

    #[test]
    fn openai_role_chunks_are_held_and_the_first_text_or_tool_call_commits() {
        for split in [1, 7, 4096] {
            let text = format!("{ROLE}data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"Hi\"}}}}]}}\n\n");
            assert_eq!(scan(Surface::OpenAiSse, &text, split), [Seen::Content], "split {split}");
            let tool = format!("{ROLE}data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{{\"index\":0,\"id\":\"call_1\",\"function\":{{\"name\":\"f\",\"arguments\":\"\"}}}}]}}}}]}}\n\n");
            assert_eq!(scan(Surface::OpenAiSse, &tool, split), [Seen::Content]);
        }
        let only_role = ROLE.to_string();
        assert!(
            matches!(&scan(Surface::OpenAiSse, &only_role, 9)[..], [Seen::Failed(e)] if e.class == FailureClass::Unreachable)
        );
    }

    #[test]
    fn an_empty_answer_that_finishes_cleanly_is_committed() {
        let empty = format!("{ROLE}data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":1}}}}\n\ndata: [DONE]\n\n");
        assert_eq!(scan(Surface::OpenAiSse, &empty, 5), [Seen::Content]);
    }

    #[test]
    fn error_events_before_content_are_classified() {
        let cases = [
            ("{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"rate_limit_error\",\"code\":\"rate_limit_exceeded\"}}", FailureClass::RateLimited, 429),
            ("{\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"code\":null}}", FailureClass::ServerError, 502),
            ("{\"error\":{\"message\":\"upstream timed out\",\"type\":\"upstream_error\",\"code\":\"upstream_timeout\"}}", FailureClass::Timeout, 504),
        ];
        for (data, class, status) in cases {
            let stream = format!("{ROLE}data: {data}\n\n");
            match &scan(Surface::OpenAiSse, &stream, 3)[..] {
                [Seen::Failed(e)] => assert_eq!((e.class, e.status), (class, status), "{data}"),
                other => panic!("{data}: {other:?}"),
            }
        }
    }

    #[test]
    fn anthropic_lifecycle_events_are_held_until_a_delta() {
        let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"m\",\"stop_reason\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\n";
        let delta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n";
        assert_eq!(
            scan(Surface::AnthropicSse, &format!("{start}{delta}"), 11),
            [Seen::Content]
        );
        let overloaded = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        match &scan(Surface::AnthropicSse, &format!("{start}{overloaded}"), 11)[..] {
            [Seen::Failed(e)] => assert_eq!(
                (e.class, e.status, e.message.as_str()),
                (FailureClass::Overloaded, 503, "Overloaded")
            ),
            other => panic!("{other:?}"),
        }
        let tool = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n";
        assert_eq!(scan(Surface::AnthropicSse, tool, 64), [Seen::Content]);
    }

    #[test]
    fn responses_lifecycle_events_are_held_until_text() {
        let start = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\"}}\n\nevent: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"sequence_number\":1}\n\nevent: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":2,\"output_index\":0,\"item\":{\"id\":\"msg_1\",\"type\":\"message\",\"status\":\"in_progress\",\"content\":[],\"role\":\"assistant\"}}\n\nevent: response.content_part.added\ndata: {\"type\":\"response.content_part.added\",\"sequence_number\":3}\n\n";
        let delta = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"delta\":\"Hi\"}\n\n";
        assert_eq!(
            scan(Surface::ResponsesSse, &format!("{start}{delta}"), 13),
            [Seen::Content]
        );
        let failed = "event: response.failed\ndata: {\"type\":\"response.failed\",\"sequence_number\":4,\"response\":{\"id\":\"resp_1\",\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"The model failed\"}}}\n\n";
        match &scan(Surface::ResponsesSse, &format!("{start}{failed}"), 13)[..] {
            [Seen::Failed(e)] => assert_eq!(
                (e.class, e.message.as_str()),
                (FailureClass::ServerError, "The model failed")
            ),
            other => panic!("{other:?}"),
        }
    }
}
