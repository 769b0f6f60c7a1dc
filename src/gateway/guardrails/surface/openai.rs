//! The OpenAI APIs: chat completions, completions and embeddings. Streams are `data:`
//! chunks with `choices`, ended by `[DONE]`.

use serde_json::Value;

use super::{role_of, scrub_choices, strings, OutputFields, RequestOnly, Surface};
use crate::crd::MessageRole;

/// `{"choices": [{"index": n, <field>: …}]}` chunks, as OpenAI streams them.
fn choice_deltas(
    data: &mut Value,
    text_of: fn(&mut Value) -> Option<&mut Value>,
    each: &mut dyn FnMut(u32, Option<&mut String>, bool),
) {
    let Some(Value::Array(choices)) = data.get_mut("choices") else {
        return;
    };
    for choice in choices {
        let slot = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
        let slot = u32::try_from(slot).unwrap_or(u32::MAX);
        let ends = choice.get("finish_reason").is_some_and(|r| !r.is_null());
        match text_of(choice) {
            Some(Value::String(text)) => each(slot, Some(text), ends),
            _ => each(slot, None, ends),
        }
    }
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
    fn request_texts(&self, body: &mut Value, each: &mut dyn FnMut(MessageRole, &mut String)) {
        let Some(Value::Array(messages)) = body.get_mut("messages") else {
            return;
        };
        for message in messages {
            let Some(role) = message.get("role").and_then(Value::as_str).and_then(role_of) else {
                continue;
            };
            match message.get_mut("content") {
                Some(Value::String(text)) => each(role, text),
                Some(Value::Array(parts)) => {
                    for part in parts {
                        if let Some(Value::String(text)) = part.get_mut("text") {
                            each(role, text);
                        }
                    }
                }
                _ => {}
            }
            if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
                for call in calls {
                    if let Some(Value::String(arguments)) = call.pointer_mut("/function/arguments") {
                        each(role, arguments);
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

    fn answer_texts(&self, body: &mut Value, each: &mut dyn FnMut(&mut String)) {
        if let Some(Value::Array(choices)) = body.get_mut("choices") {
            for choice in choices {
                for field in ["/message/content", "/message/refusal"] {
                    if let Some(Value::String(text)) = choice.pointer_mut(field) {
                        each(text);
                    }
                }
            }
        }
    }

    fn event_texts(&self, data: &mut Value, each: &mut dyn FnMut(u32, Option<&mut String>, bool)) {
        choice_deltas(data, |choice| choice.pointer_mut("/delta/content"), each);
    }

    fn scrub(&self, data: &mut Value) -> bool {
        scrub_choices(data)
    }

    fn text_event(&self, slot: u32, text: String, template: &Value) -> Value {
        chunk_like(
            template,
            serde_json::json!({"index": slot, "delta": {"content": text}, "finish_reason": null}),
        )
    }

    fn delta_key(&self) -> Option<&'static str> {
        Some("content")
    }

    fn is_end(&self, data: &str, _event: Option<&Value>) -> bool {
        data.trim() == "[DONE]"
    }
}

/// `/v1/completions`.
pub struct OpenAiCompletions;

impl Surface for OpenAiCompletions {
    fn request_texts(&self, body: &mut Value, each: &mut dyn FnMut(MessageRole, &mut String)) {
        strings(body.get_mut("prompt"), MessageRole::User, each);
        strings(body.get_mut("suffix"), MessageRole::User, each);
    }

    fn output_fields(&self) -> Option<OutputFields> {
        Some(OutputFields {
            read: &["max_tokens"],
            set: "max_tokens",
        })
    }

    fn answer_texts(&self, body: &mut Value, each: &mut dyn FnMut(&mut String)) {
        if let Some(Value::Array(choices)) = body.get_mut("choices") {
            for choice in choices {
                if let Some(Value::String(text)) = choice.get_mut("text") {
                    each(text);
                }
            }
        }
    }

    fn event_texts(&self, data: &mut Value, each: &mut dyn FnMut(u32, Option<&mut String>, bool)) {
        choice_deltas(data, |choice| choice.get_mut("text"), each);
    }

    fn scrub(&self, data: &mut Value) -> bool {
        scrub_choices(data)
    }

    fn text_event(&self, slot: u32, text: String, template: &Value) -> Value {
        chunk_like(
            template,
            serde_json::json!({"index": slot, "text": text, "finish_reason": null}),
        )
    }

    fn delta_key(&self) -> Option<&'static str> {
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
