//! The OpenAI Responses API (`/v1/responses`). Requests: `instructions` (the system role) and
//! `input`, a string or items (messages, function calls, `function_call_output` as the tool
//! role). Streams: named events numbered by `sequence_number`; text arrives in
//! `response.output_text.delta` (and `response.refusal.delta`) events of one content part of
//! one output item, and the `*.done` events and the final response repeat it whole. A failure
//! is a `type: error` event.

use serde_json::Value;

use super::{role_of, string_or_parts, OutputFields, Surface};
use crate::crd::MessageRole;
use crate::gateway::error::ApiError;

/// `POST /v1/responses`.
pub struct Responses;

/// Content part types whose `text` is text, in input messages.
const INPUT_PARTS: [&str; 3] = ["input_text", "output_text", "text"];

fn input_item(item: &mut Value, each: &mut dyn FnMut(MessageRole, &mut String)) {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
    if kind == "message" {
        let Some(role) = item.get("role").and_then(Value::as_str).and_then(role_of) else {
            return;
        };
        string_or_parts(item.get_mut("content"), &INPUT_PARTS, role, each);
    } else if kind == "function_call_output" || kind == "custom_tool_call_output" {
        string_or_parts(item.get_mut("output"), &INPUT_PARTS, MessageRole::Tool, each);
    } else if kind == "function_call" {
        if let Some(Value::String(arguments)) = item.get_mut("arguments") {
            each(MessageRole::Assistant, arguments);
        }
    } else if kind == "custom_tool_call" {
        if let Some(Value::String(input)) = item.get_mut("input") {
            each(MessageRole::Assistant, input);
        }
    }
}

/// The texts of output items: `output_text` and `refusal` parts of messages.
fn output_texts(output: Option<&mut Value>, each: &mut dyn FnMut(&mut String)) {
    let Some(Value::Array(items)) = output else {
        return;
    };
    items.iter_mut().for_each(|item| item_texts(item, each));
}

fn item_texts(item: &mut Value, each: &mut dyn FnMut(&mut String)) {
    if item["type"] == "message" {
        if let Some(Value::Array(parts)) = item.get_mut("content") {
            parts.iter_mut().for_each(|p| part_text(p, each));
        }
    }
}

fn part_text(part: &mut Value, each: &mut dyn FnMut(&mut String)) {
    let field = match part.get("type").and_then(Value::as_str) {
        Some("output_text") => "text",
        Some("refusal") => "refusal",
        _ => return,
    };
    if let Some(Value::String(text)) = part.get_mut(field) {
        each(text);
    }
}

/// One slot per content part of an output item.
fn slot(event: &Value) -> u32 {
    let index = |field| event.get(field).and_then(Value::as_u64).unwrap_or(0);
    let item = u32::try_from(index("output_index").min(0xFF_FFFF)).unwrap_or(0);
    let part = u32::try_from(index("content_index").min(0xFF)).unwrap_or(0);
    item << 8 | part
}

impl Surface for Responses {
    fn request_texts(&self, body: &mut Value, each: &mut dyn FnMut(MessageRole, &mut String)) {
        if let Some(Value::String(text)) = body.get_mut("instructions") {
            each(MessageRole::System, text);
        }
        match body.get_mut("input") {
            Some(Value::String(text)) => each(MessageRole::User, text),
            Some(Value::Array(items)) => items.iter_mut().for_each(|item| input_item(item, each)),
            _ => {}
        }
    }

    fn output_fields(&self) -> Option<OutputFields> {
        Some(OutputFields {
            read: &["max_output_tokens"],
            set: "max_output_tokens",
        })
    }

    fn answer_texts(&self, body: &mut Value, each: &mut dyn FnMut(&mut String)) {
        output_texts(body.get_mut("output"), each);
    }

    fn event_texts(&self, data: &mut Value, each: &mut dyn FnMut(u32, Option<&mut String>, bool)) {
        let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
        let delta = kind == "response.output_text.delta" || kind == "response.refusal.delta";
        let done = kind == "response.output_text.done" || kind == "response.refusal.done";
        if !delta && !done {
            return;
        }
        let slot = slot(data);
        match data.get_mut("delta") {
            Some(Value::String(text)) if delta => each(slot, Some(text), false),
            _ => each(slot, None, done),
        }
    }

    fn event_whole_texts(&self, data: &mut Value, each: &mut dyn FnMut(&mut String)) {
        let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "response.output_text.done" | "response.refusal.done" => {
                let field = if kind == "response.output_text.done" {
                    "text"
                } else {
                    "refusal"
                };
                if let Some(Value::String(text)) = data.get_mut(field) {
                    each(text);
                }
            }
            "response.content_part.added" | "response.content_part.done" => {
                if let Some(part) = data.get_mut("part") {
                    part_text(part, each);
                }
            }
            "response.output_item.added" | "response.output_item.done" => {
                if let Some(item) = data.get_mut("item") {
                    item_texts(item, each);
                }
            }
            _ if kind.starts_with("response.") => {
                output_texts(data.pointer_mut("/response/output"), each);
            }
            _ => {}
        }
    }

    /// Token log probabilities of deltas, `*.done` events and output_text parts.
    fn scrub(&self, data: &mut Value) -> bool {
        fn empty(logprobs: Option<&mut Value>) -> bool {
            match logprobs {
                Some(Value::Array(items)) if !items.is_empty() => {
                    items.clear();
                    true
                }
                _ => false,
            }
        }
        fn parts(item: &mut Value) -> bool {
            let mut scrubbed = false;
            if let Some(Value::Array(parts)) = item.get_mut("content") {
                for part in parts {
                    scrubbed |= empty(part.get_mut("logprobs"));
                }
            }
            scrubbed
        }
        let mut scrubbed = empty(data.get_mut("logprobs"));
        if let Some(part) = data.get_mut("part") {
            scrubbed |= empty(part.get_mut("logprobs"));
        }
        if let Some(item) = data.get_mut("item") {
            scrubbed |= parts(item);
        }
        let output = match data.get("output").is_some() {
            true => data.get_mut("output"),
            false => data.pointer_mut("/response/output"),
        };
        if let Some(Value::Array(items)) = output {
            for item in items {
                scrubbed |= parts(item);
            }
        }
        scrubbed
    }

    fn text_event(&self, _slot: u32, text: String, template: &Value) -> Value {
        let mut event = template.clone();
        event["delta"] = Value::String(text);
        if let Some(logprobs) = event.get_mut("logprobs") {
            *logprobs = Value::Array(Vec::new());
        }
        event
    }

    fn event_name<'v>(&self, event: &'v Value) -> Option<&'v str> {
        event.get("type").and_then(Value::as_str)
    }

    fn delta_key(&self) -> Option<&'static str> {
        Some("delta")
    }

    fn is_end(&self, _data: &str, event: Option<&Value>) -> bool {
        let kind = event.and_then(|e| e.get("type")).and_then(Value::as_str);
        matches!(
            kind,
            Some("response.completed" | "response.incomplete" | "response.failed")
        )
    }

    /// The API's error event; OpenAI's clients yield it as a `ResponseErrorEvent`.
    fn error_event(&self, error: &ApiError) -> (Option<&'static str>, Value) {
        let event = serde_json::json!({
            "type": "error",
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "sequence_number": 0,
        });
        (Some("error"), event)
    }

    fn sequenced(&self) -> bool {
        true
    }
}
