//! The OpenAI Responses API (`/v1/responses`). Requests: `instructions` (the system role) and
//! `input`, a string or items (messages, function calls, `function_call_output` as the tool
//! role). Streams: named events numbered by `sequence_number`; text arrives in
//! `response.output_text.delta` (and `response.refusal.delta`) events of one content part of
//! one output item, and the `*.done` events and the final response repeat it whole. A failure
//! is a `type: error` event.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::typed::{only, present, OneDelta};

use super::{
    role_of, slot_id, string_or_parts, Deltas, Form, OutputFields, RequestTexts, Surface, WholeTexts, ARGUMENTS,
    REASONING, TEXT,
};
use crate::crd::MessageRole;
use crate::gateway::error::ApiError;

/// `POST /v1/responses`.
pub struct Responses;

/// Content part types whose `text` is text, in input messages.
const INPUT_PARTS: [&str; 3] = ["input_text", "output_text", "text"];

fn input_item(item: &mut Value, each: &mut RequestTexts) {
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
            each(MessageRole::Assistant, arguments, Form::Json);
        }
    } else if kind == "custom_tool_call" {
        if let Some(Value::String(input)) = item.get_mut("input") {
            each(MessageRole::Assistant, input, Form::Plain);
        }
    }
}

/// The texts of output items.
fn output_texts(output: Option<&mut Value>, each: &mut WholeTexts) {
    let Some(Value::Array(items)) = output else {
        return;
    };
    items.iter_mut().for_each(|item| item_texts(item, each));
}

/// An output item's texts: `output_text` and `refusal` parts of messages, reasoning summaries
/// and text, a function call's arguments (JSON source), a custom tool call's input.
fn item_texts(item: &mut Value, each: &mut WholeTexts) {
    match item["type"].as_str() {
        Some("message") => {
            if let Some(Value::Array(parts)) = item.get_mut("content") {
                parts.iter_mut().for_each(|p| part_text(p, each));
            }
        }
        Some("reasoning") => {
            for field in ["summary", "content"] {
                if let Some(Value::Array(parts)) = item.get_mut(field) {
                    parts.iter_mut().for_each(|p| part_text(p, each));
                }
            }
        }
        Some("function_call") => {
            if let Some(Value::String(arguments)) = item.get_mut("arguments") {
                each(arguments, Form::Json);
            }
        }
        Some("custom_tool_call") => {
            if let Some(Value::String(input)) = item.get_mut("input") {
                each(input, Form::Plain);
            }
        }
        _ => {}
    }
}

fn part_text(part: &mut Value, each: &mut WholeTexts) {
    let field = match part.get("type").and_then(Value::as_str) {
        Some("output_text" | "summary_text" | "reasoning_text") => "text",
        Some("refusal") => "refusal",
        _ => return,
    };
    if let Some(Value::String(text)) = part.get_mut(field) {
        each(text, Form::Plain);
    }
}

/// Streamed delta events: their kind, the index naming their lane inside the output item, and
/// the first lane (reasoning text parts after summary parts).
pub(super) const DELTAS: [(&str, u32, &str, u64); 6] = [
    ("response.output_text", TEXT, "content_index", 0),
    ("response.refusal", TEXT, "content_index", 0),
    ("response.custom_tool_call_input", TEXT, "", 0),
    ("response.function_call_arguments", ARGUMENTS, "", 0),
    ("response.reasoning_summary_text", REASONING, "summary_index", 0),
    ("response.reasoning_text", REASONING, "content_index", 128),
];

/// `*.done` events repeating a delta stream whole: the field with the text, whether JSON.
const DONE_TEXTS: [(&str, &str, Form); 6] = [
    ("response.output_text.done", "text", Form::Plain),
    ("response.refusal.done", "refusal", Form::Plain),
    ("response.custom_tool_call_input.done", "input", Form::Plain),
    ("response.function_call_arguments.done", "arguments", Form::Json),
    ("response.reasoning_summary_text.done", "text", Form::Plain),
    ("response.reasoning_text.done", "text", Form::Plain),
];

/// One slot per output item and lane (content part, summary part).
fn slot(event: &Value, kind: u32, lane: &str, first: u64) -> u32 {
    let index = |field: &str| event.get(field).and_then(Value::as_u64).unwrap_or(0);
    let lane = if lane.is_empty() { 0 } else { index(lane).min(127) };
    slot_id(index("output_index"), kind, first + lane)
}

/// A `<stream>.delta` event, as [`Surface::event_texts`], [`Surface::event_whole_texts`],
/// [`Surface::scrub`] and the renumbering read it.
#[derive(Deserialize)]
struct DeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    delta: Option<&'a RawValue>,
    output_index: Option<u64>,
    content_index: Option<u64>,
    summary_index: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    sequence_number: Option<Option<u64>>,
    #[serde(borrow)]
    logprobs: Option<&'a RawValue>,
    part: Option<IgnoredAny>,
    item: Option<IgnoredAny>,
    output: Option<IgnoredAny>,
    response: Option<IgnoredAny>,
}

impl Surface for Responses {
    fn request_texts(&self, body: &mut Value, each: &mut RequestTexts) {
        if let Some(Value::String(text)) = body.get_mut("instructions") {
            each(MessageRole::System, text, Form::Plain);
        }
        match body.get_mut("input") {
            Some(Value::String(text)) => each(MessageRole::User, text, Form::Plain),
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

    fn answer_texts(&self, body: &mut Value, each: &mut WholeTexts) {
        output_texts(body.get_mut("output"), each);
    }

    /// `<stream>.delta` events of text, refusals, reasoning and tool calls' arguments (JSON
    /// source); their `<stream>.done` ends the output item's slots.
    fn event_texts(&self, data: &mut Value, each: &mut Deltas) {
        let name = data.get("type").and_then(Value::as_str).unwrap_or_default();
        let Some((stream, delta)) = name
            .strip_suffix(".delta")
            .map(|s| (s, true))
            .or_else(|| name.strip_suffix(".done").map(|s| (s, false)))
        else {
            return;
        };
        let Some(&(_, kind, lane, first)) = DELTAS.iter().find(|(s, ..)| *s == stream) else {
            return;
        };
        let slot = slot(data, kind, lane, first);
        match data.get_mut("delta") {
            Some(Value::String(text)) if delta => each(slot, Some(text), false),
            _ => each(slot, None, !delta),
        }
    }

    fn event_whole_texts(&self, data: &mut Value, each: &mut WholeTexts) {
        let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
        if let Some(&(_, field, form)) = DONE_TEXTS.iter().find(|(name, ..)| *name == kind) {
            if let Some(Value::String(text)) = data.get_mut(field) {
                each(text, form);
            }
            return;
        }
        match kind {
            "response.content_part.added"
            | "response.content_part.done"
            | "response.reasoning_summary_part.added"
            | "response.reasoning_summary_part.done" => {
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

    fn repeats_deltas(&self) -> bool {
        true
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

    /// A `<stream>.delta` event with its text, without log probabilities, a part, an item or
    /// a response, whose `sequence_number` (if any) is a number.
    fn locate<'a>(&self, json: &mut crate::llm::compact::Compact<'a>) -> Option<OneDelta<'a>> {
        super::locate::responses(json)
    }

    fn one_delta<'a>(&self, data: &'a str) -> Option<OneDelta<'a>> {
        let event = serde_json::from_str::<DeltaEvent<'a>>(data).ok()?;
        let stream = event.kind.strip_suffix(".delta")?;
        let &(_, kind, lane, first) = DELTAS.iter().find(|(s, ..)| *s == stream)?;
        let scrubbed = event.logprobs.is_some_and(|l| {
            let inner = l.get().strip_prefix('[').and_then(|l| l.strip_suffix(']'));
            !inner.is_some_and(|inner| inner.trim().is_empty())
        });
        let whole = event.part.is_some() || event.item.is_some() || event.output.is_some();
        if scrubbed || whole || event.response.is_some() {
            return None;
        }
        let (_, text) = only(&[event.delta])?;
        let lane = match lane {
            "content_index" => event.content_index.unwrap_or(0).min(127),
            "summary_index" => event.summary_index.unwrap_or(0).min(127),
            _ => 0,
        };
        let sequence = match event.sequence_number {
            Some(number) => Some(number?),
            None => None,
        };
        Some(OneDelta {
            slot: slot_id(event.output_index.unwrap_or(0), kind, first + lane),
            text: text.get(),
            sequence,
        })
    }

    /// Events are named by their type; unnamed ones may be anything.
    fn may_be_delta(&self, name: &str) -> bool {
        name == "message" || name.ends_with(".delta")
    }

    fn delta_key(&self, _kind: u32) -> Option<&'static str> {
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
