//! The OpenAI APIs: chat completions, completions and embeddings. Streams are `data:`
//! chunks with `choices`, ended by `[DONE]`.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::typed::{only, OneDelta};

use super::{
    group_of, kind_of, lane_of, role_of, scrub_choices, slot_id, strings, Deltas, Form, OutputFields, RequestOnly,
    RequestTexts, Surface, WholeTexts, ARGUMENTS, REASONING, TEXT,
};
use crate::crd::MessageRole;

/// `{"choices": [{"index": n, …}]}` chunks, as OpenAI streams them: `deltas` names each
/// choice's deltas, and a `finish_reason` ends the choice's slots.
fn choice_deltas(data: &mut Value, deltas: fn(u32, &mut Value, &mut Deltas), each: &mut Deltas) {
    let Some(Value::Array(choices)) = data.get_mut("choices") else {
        return;
    };
    for choice in choices {
        let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
        let group = u32::try_from(index.min(0x3F_FFFF)).unwrap_or(0);
        let ends = choice.get("finish_reason").is_some_and(|r| !r.is_null());
        let mut any = false;
        deltas(group, choice, &mut |slot, text, _| {
            any = true;
            each(slot, text, false);
        });
        if ends || !any {
            each(slot_id(u64::from(group), TEXT, 0), None, ends);
        }
    }
}

/// A chat choice's deltas: `content`, `reasoning_content` and each tool call's arguments.
fn chat_deltas(group: u32, choice: &mut Value, each: &mut Deltas) {
    let group = u64::from(group);
    let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) else {
        return;
    };
    for (key, kind) in [("content", TEXT), ("reasoning_content", REASONING)] {
        if let Some(Value::String(text)) = delta.get_mut(key) {
            each(slot_id(group, kind, 0), Some(text), false);
        }
    }
    if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
        for (at, call) in calls.iter_mut().enumerate() {
            let lane = call.get("index").and_then(Value::as_u64).unwrap_or(at as u64);
            if let Some(Value::String(arguments)) = call.pointer_mut("/function/arguments") {
                each(slot_id(group, ARGUMENTS, lane), Some(arguments), false);
            }
        }
    }
}

/// A completion choice's delta: its `text`.
fn completion_deltas(group: u32, choice: &mut Value, each: &mut Deltas) {
    if let Some(Value::String(text)) = choice.get_mut("text") {
        each(slot_id(u64::from(group), TEXT, 0), Some(text), false);
    }
}

/// A chat chunk with one choice, as [`choice_deltas`] and [`scrub_choices`] read it.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow)]
    choices: [Choice<'a>; 1],
}

#[derive(Deserialize)]
struct Choice<'a> {
    index: Option<u64>,
    #[serde(borrow)]
    delta: Option<ChatDelta<'a>>,
    finish_reason: Option<IgnoredAny>,
    logprobs: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChatDelta<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    reasoning_content: Option<&'a RawValue>,
    tool_calls: Option<IgnoredAny>,
}

fn chunk_like(template: &Value, choice: Value) -> Value {
    let mut event = serde_json::Map::new();
    for key in ["id", "object", "created", "model", "system_fingerprint"] {
        if let Some(value) = template.get(key) {
            event.insert(key.to_string(), value.clone());
        }
    }
    event.insert("choices".to_string(), Value::Array(vec![choice]));
    Value::Object(event)
}

/// `/v1/chat/completions`.
pub struct OpenAiChat;

impl Surface for OpenAiChat {
    fn request_texts(&self, body: &mut Value, each: &mut RequestTexts) {
        let Some(Value::Array(messages)) = body.get_mut("messages") else {
            return;
        };
        for message in messages {
            let Some(role) = message.get("role").and_then(Value::as_str).and_then(role_of) else {
                continue;
            };
            match message.get_mut("content") {
                Some(Value::String(text)) => each(role, text, Form::Plain),
                Some(Value::Array(parts)) => {
                    for part in parts {
                        if let Some(Value::String(text)) = part.get_mut("text") {
                            each(role, text, Form::Plain);
                        }
                    }
                }
                _ => {}
            }
            if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
                for call in calls {
                    if let Some(Value::String(arguments)) = call.pointer_mut("/function/arguments") {
                        each(role, arguments, Form::Json);
                    }
                }
            }
        }
    }

    fn output_fields(&self) -> Option<OutputFields> {
        Some(OutputFields {
            read: &["max_completion_tokens", "max_tokens"],
            set: "max_completion_tokens",
        })
    }

    /// Each choice's content, refusal, reasoning, and tool calls' arguments (JSON source).
    fn answer_texts(&self, body: &mut Value, each: &mut WholeTexts) {
        let Some(Value::Array(choices)) = body.get_mut("choices") else {
            return;
        };
        for choice in choices {
            let Some(message) = choice.get_mut("message") else {
                continue;
            };
            for field in ["content", "refusal", "reasoning_content"] {
                if let Some(Value::String(text)) = message.get_mut(field) {
                    each(text, Form::Plain);
                }
            }
            if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
                for call in calls {
                    if let Some(Value::String(arguments)) = call.pointer_mut("/function/arguments") {
                        each(arguments, Form::Json);
                    }
                }
            }
            if let Some(Value::String(arguments)) = message.pointer_mut("/function_call/arguments") {
                each(arguments, Form::Json);
            }
        }
    }

    fn event_texts(&self, data: &mut Value, each: &mut Deltas) {
        choice_deltas(data, chat_deltas, each);
    }

    fn scrub(&self, data: &mut Value) -> bool {
        scrub_choices(data)
    }

    fn text_event(&self, slot: u32, text: String, template: &Value) -> Value {
        let delta = match kind_of(slot) {
            REASONING => serde_json::json!({"reasoning_content": text}),
            ARGUMENTS => serde_json::json!({"tool_calls": [{"index": lane_of(slot), "function": {"arguments": text}}]}),
            _ => serde_json::json!({"content": text}),
        };
        chunk_like(
            template,
            serde_json::json!({"index": group_of(slot), "delta": delta, "finish_reason": null}),
        )
    }

    /// A chunk of one choice whose delta is `content` or `reasoning_content` alone, which
    /// neither finishes nor has log probabilities.
    fn locate<'a>(&self, json: &mut crate::llm::compact::Compact<'a>) -> Option<OneDelta<'a>> {
        super::locate::chat(json)
    }

    fn one_delta<'a>(&self, data: &'a str) -> Option<OneDelta<'a>> {
        let [choice] = serde_json::from_str::<Chunk<'a>>(data).ok()?.choices;
        let delta = choice.delta?;
        if choice.finish_reason.is_some() || choice.logprobs.is_some() || delta.tool_calls.is_some() {
            return None;
        }
        let (at, text) = only(&[delta.content, delta.reasoning_content])?;
        let kind = [TEXT, REASONING][at];
        Some(OneDelta {
            slot: slot_id(choice.index.unwrap_or(0).min(0x3F_FFFF), kind, 0),
            text: text.get(),
            sequence: None,
        })
    }

    fn delta_key(&self, kind: u32) -> Option<&'static str> {
        Some(match kind {
            REASONING => "reasoning_content",
            ARGUMENTS => "arguments",
            _ => "content",
        })
    }

    fn is_end(&self, data: &str, _event: Option<&Value>) -> bool {
        data.trim() == "[DONE]"
    }
}

/// `/v1/completions`.
pub struct OpenAiCompletions;

impl Surface for OpenAiCompletions {
    fn request_texts(&self, body: &mut Value, each: &mut RequestTexts) {
        strings(body.get_mut("prompt"), MessageRole::User, each);
        strings(body.get_mut("suffix"), MessageRole::User, each);
    }

    fn output_fields(&self) -> Option<OutputFields> {
        Some(OutputFields {
            read: &["max_tokens"],
            set: "max_tokens",
        })
    }

    fn answer_texts(&self, body: &mut Value, each: &mut WholeTexts) {
        if let Some(Value::Array(choices)) = body.get_mut("choices") {
            for choice in choices {
                if let Some(Value::String(text)) = choice.get_mut("text") {
                    each(text, Form::Plain);
                }
            }
        }
    }

    fn event_texts(&self, data: &mut Value, each: &mut Deltas) {
        choice_deltas(data, completion_deltas, each);
    }

    fn scrub(&self, data: &mut Value) -> bool {
        scrub_choices(data)
    }

    fn text_event(&self, slot: u32, text: String, template: &Value) -> Value {
        chunk_like(
            template,
            serde_json::json!({"index": group_of(slot), "text": text, "finish_reason": null}),
        )
    }

    fn delta_key(&self, _kind: u32) -> Option<&'static str> {
        Some("text")
    }

    fn is_end(&self, data: &str, _event: Option<&Value>) -> bool {
        data.trim() == "[DONE]"
    }
}

/// `/v1/embeddings`: texts in, vectors out.
pub const OPENAI_EMBEDDINGS: RequestOnly = RequestOnly(|body, each| {
    strings(body.get_mut("input"), MessageRole::User, each);
});
