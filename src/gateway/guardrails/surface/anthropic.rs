//! Anthropic Messages (`/v1/messages`) and its token counting. Requests: `system` (a string or
//! text blocks) and `messages` whose content is a string or blocks; `tool_result` blocks are
//! the tool role. Streams: named events; text arrives in `content_block_delta` events
//! (`text_delta`) of a content block, which `content_block_stop` ends; a failure is
//! `event: error`.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::typed::{only, OneDelta};

use super::{
    group_of, kind_of, leaves, role_of, slot_id, Deltas, Form, OutputFields, RequestOnly, RequestTexts, Surface,
    WholeTexts, ARGUMENTS, REASONING, TEXT,
};
use crate::crd::MessageRole;
use crate::gateway::error::ApiError;

/// `POST /v1/messages`.
pub struct AnthropicMessages;

/// `POST /v1/messages/count_tokens`: the same texts go to the provider to be counted, so the
/// same request rules apply (a masked request is counted as it will be sent); it has no
/// answer text and no output cap.
pub const ANTHROPIC_COUNT_TOKENS: RequestOnly = RequestOnly(request_texts);

fn request_texts(body: &mut Value, each: &mut RequestTexts) {
    match body.get_mut("system") {
        Some(Value::String(text)) => each(MessageRole::System, text, Form::Plain),
        Some(Value::Array(blocks)) => blocks
            .iter_mut()
            .for_each(|b| block_texts(b, MessageRole::System, each)),
        _ => {}
    }
    let Some(Value::Array(messages)) = body.get_mut("messages") else {
        return;
    };
    for message in messages {
        let Some(role) = message.get("role").and_then(Value::as_str).and_then(role_of) else {
            continue;
        };
        match message.get_mut("content") {
            Some(Value::String(text)) => each(role, text, Form::Plain),
            Some(Value::Array(blocks)) => blocks.iter_mut().for_each(|b| block_texts(b, role, each)),
            _ => {}
        }
    }
}

/// The texts of one content block: text, a tool's result (the tool role), a tool call's input,
/// a plain-text document.
fn block_texts(block: &mut Value, role: MessageRole, each: &mut RequestTexts) {
    if block["type"] == "text" {
        if let Some(Value::String(text)) = block.get_mut("text") {
            each(role, text, Form::Plain);
        }
    } else if block["type"] == "tool_result" {
        match block.get_mut("content") {
            Some(Value::String(text)) => each(MessageRole::Tool, text, Form::Plain),
            Some(Value::Array(blocks)) => blocks.iter_mut().for_each(|b| block_texts(b, MessageRole::Tool, each)),
            _ => {}
        }
    } else if block["type"] == "tool_use" || block["type"] == "server_tool_use" {
        if let Some(input) = block.get_mut("input") {
            leaves(input, role, each);
        }
    } else if block["type"] == "document" {
        let Some(source) = block.get_mut("source") else {
            return;
        };
        if source["type"] == "text" {
            if let Some(Value::String(text)) = source.get_mut("data") {
                each(role, text, Form::Plain);
            }
        } else if let Some(Value::Array(blocks)) = source.get_mut("content") {
            blocks.iter_mut().for_each(|b| block_texts(b, role, each));
        } else if let Some(Value::String(text)) = source.get_mut("content") {
            each(role, text, Form::Plain);
        }
    }
}

/// The slot of a content block's event: its index, and the kind of text the block carries.
fn slot(event: &Value, kind: u32) -> u32 {
    slot_id(event.get("index").and_then(Value::as_u64).unwrap_or(0), kind, 0)
}

/// The kind and field of each streamed delta type with text.
pub(super) const DELTAS: [(&str, u32, &str); 3] = [
    ("text_delta", TEXT, "text"),
    ("thinking_delta", REASONING, "thinking"),
    ("input_json_delta", ARGUMENTS, "partial_json"),
];

/// A `content_block_delta` event, as [`Surface::event_texts`] reads it.
#[derive(Deserialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    index: Option<u64>,
    #[serde(borrow)]
    delta: DeltaFields<'a>,
}

#[derive(Deserialize)]
struct DeltaFields<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    text: Option<&'a RawValue>,
    #[serde(borrow)]
    thinking: Option<&'a RawValue>,
    #[serde(borrow)]
    partial_json: Option<&'a RawValue>,
}

impl Surface for AnthropicMessages {
    fn request_texts(&self, body: &mut Value, each: &mut RequestTexts) {
        request_texts(body, each);
    }

    fn output_fields(&self) -> Option<OutputFields> {
        Some(OutputFields {
            read: &["max_tokens"],
            set: "max_tokens",
        })
    }

    fn answer_texts(&self, body: &mut Value, each: &mut WholeTexts) {
        content_texts(body.get_mut("content"), each);
    }

    /// Text, thinking and tool input (`input_json_delta`: JSON source) deltas of a content
    /// block; a block's start with text; its stop ends it.
    fn event_texts(&self, data: &mut Value, each: &mut Deltas) {
        if data["type"] == "content_block_delta" {
            let Some(&(_, kind, field)) = DELTAS.iter().find(|(name, ..)| data["delta"]["type"] == *name) else {
                return;
            };
            let slot = slot(data, kind);
            if let Some(Value::String(text)) = data["delta"].get_mut(field) {
                each(slot, Some(text), false);
            }
        } else if data["type"] == "content_block_start" {
            let (kind, field) = match data["content_block"]["type"].as_str() {
                Some("text") => (TEXT, "text"),
                Some("thinking") => (REASONING, "thinking"),
                _ => return,
            };
            let slot = slot(data, kind);
            if let Some(Value::String(text)) = data["content_block"].get_mut(field) {
                each(slot, Some(text), false);
            }
        } else if data["type"] == "content_block_stop" {
            each(slot(data, TEXT), None, true);
        }
    }

    fn event_whole_texts(&self, data: &mut Value, each: &mut WholeTexts) {
        if data["type"] == "message_start" {
            content_texts(data.pointer_mut("/message/content"), each);
        }
    }

    fn text_event(&self, slot: u32, text: String, _template: &Value) -> Value {
        let delta = match kind_of(slot) {
            REASONING => serde_json::json!({"type": "thinking_delta", "thinking": text}),
            ARGUMENTS => serde_json::json!({"type": "input_json_delta", "partial_json": text}),
            _ => serde_json::json!({"type": "text_delta", "text": text}),
        };
        serde_json::json!({"type": "content_block_delta", "index": group_of(slot), "delta": delta})
    }

    fn event_name<'v>(&self, event: &'v Value) -> Option<&'v str> {
        event.get("type").and_then(Value::as_str)
    }

    /// Thinking is signed (a `signature_delta` ends its block): see [`content_texts`].
    fn delta_form(&self, kind: u32) -> Form {
        match kind {
            REASONING => Form::Signed,
            ARGUMENTS => Form::Json,
            _ => Form::Plain,
        }
    }

    fn delta_key(&self, kind: u32) -> Option<&'static str> {
        DELTAS.iter().find(|(_, k, _)| *k == kind).map(|(_, _, field)| *field)
    }

    /// A `content_block_delta` whose delta has its type's text field.
    fn locate<'a>(&self, json: &mut crate::llm::compact::Compact<'a>) -> Option<OneDelta<'a>> {
        super::locate::anthropic(json)
    }

    fn one_delta<'a>(&self, data: &'a str) -> Option<OneDelta<'a>> {
        let event = serde_json::from_str::<BlockDelta<'a>>(data).ok()?;
        if event.kind != "content_block_delta" {
            return None;
        }
        let &(_, kind, field) = DELTAS.iter().find(|(name, ..)| *name == event.delta.kind)?;
        let fields = [
            ("text", event.delta.text),
            ("thinking", event.delta.thinking),
            ("partial_json", event.delta.partial_json),
        ];
        let text = fields
            .iter()
            .find(|(name, _)| *name == field)
            .and_then(|(_, text)| *text);
        let (_, text) = only(&[text])?;
        Some(OneDelta {
            slot: slot_id(event.index.unwrap_or(0), kind, 0),
            text: text.get(),
            sequence: None,
        })
    }

    fn is_end(&self, _data: &str, event: Option<&Value>) -> bool {
        event.is_some_and(|e| e["type"] == "message_stop")
    }

    /// Anthropic's clients raise on `event: error` with the error envelope.
    fn error_event(&self, error: &ApiError) -> (Option<&'static str>, Value) {
        (
            Some("error"),
            crate::llm::anthropic::error_json(error.status.as_u16(), &error.message),
        )
    }
}

/// The texts of a message's `content`: text blocks, thinking, and every string of a tool
/// call's input (decoded strings, not JSON source). Thinking is signed ([`Form::Signed`]):
/// masked, it would no longer match its `signature` and Anthropic would refuse it when the
/// client sends it back (it must, with tool use), so a masking match in it blocks.
fn content_texts(content: Option<&mut Value>, each: &mut WholeTexts) {
    let Some(Value::Array(blocks)) = content else {
        return;
    };
    for block in blocks {
        let (field, form) = match block["type"].as_str() {
            Some("text") => ("text", Form::Plain),
            Some("thinking") => ("thinking", Form::Signed),
            Some("tool_use" | "server_tool_use") => {
                if let Some(input) = block.get_mut("input") {
                    leaves(input, MessageRole::Assistant, &mut |_, text, _| each(text, Form::Plain));
                }
                continue;
            }
            _ => continue,
        };
        if let Some(Value::String(text)) = block.get_mut(field) {
            each(text, form);
        }
    }
}
