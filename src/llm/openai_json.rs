//! The translated path's hot JSON, without serde's generic detours:
//! - a chat completion written straight into one pre-sized buffer ([`write_chat_response`]):
//!   keys as literals, numbers with `itoa`, strings by [`json_string::write`] (runs needing
//!   no escape found a machine word at a time and copied whole) — byte for byte what
//!   `serde_json::to_vec` writes, which the tests check, with serde still writing the rare
//!   parts (tool calls, extra fields);
//! - message content read without buffering (`Content` is a string or a list of parts: an
//!   untagged enum made serde copy every string into a buffer first and then again).
//!
//! Measured with callgrind on `bench/translation.py` (the README's new-paths table says what
//! each part bought).

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::chat::{ChatResponse, Choice, Content, FinishReason, ResponseMessage, Usage};
use super::json_string;

/// `response` as `serde_json::to_vec` writes it, in one allocation for the common answer.
pub fn write_chat_response(response: &ChatResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(estimate(response));
    out.extend_from_slice(b"{\"id\":");
    string(&mut out, &response.id);
    out.extend_from_slice(b",\"object\":");
    string(&mut out, &response.object);
    out.extend_from_slice(b",\"created\":");
    out.extend_from_slice(itoa::Buffer::new().format(response.created).as_bytes());
    out.extend_from_slice(b",\"model\":");
    string(&mut out, &response.model);
    out.extend_from_slice(b",\"choices\":[");
    for (i, choice) in response.choices.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_choice(&mut out, choice);
    }
    out.push(b']');
    if let Some(usage) = &response.usage {
        out.extend_from_slice(b",\"usage\":");
        write_usage(&mut out, usage);
    }
    write_rest(&mut out, &response.rest);
    out.push(b'}');
    out
}

/// The answer's size, give or take the escapes: the strings plus the keys around them.
fn estimate(response: &ChatResponse) -> usize {
    let message_len = |m: &ResponseMessage| {
        m.content.as_ref().map_or(0, String::len)
            + m.refusal.as_ref().map_or(0, String::len)
            + m.tool_calls.as_ref().map_or(0, |calls| {
                calls
                    .iter()
                    .map(|c| c.id.len() + c.function.name.len() + c.function.arguments.len() * 5 / 4 + 64)
                    .sum()
            })
    };
    let choices: usize = response.choices.iter().map(|c| message_len(&c.message) + 96).sum();
    response.id.len() + response.model.len() + response.object.len() + choices + 256
}

fn write_choice(out: &mut Vec<u8>, choice: &Choice) {
    out.extend_from_slice(b"{\"index\":");
    out.extend_from_slice(itoa::Buffer::new().format(choice.index).as_bytes());
    out.extend_from_slice(b",\"message\":{\"role\":");
    let message = &choice.message;
    string(out, &message.role);
    out.extend_from_slice(b",\"content\":");
    match &message.content {
        Some(content) => string(out, content),
        None => out.extend_from_slice(b"null"),
    }
    if let Some(calls) = &message.tool_calls {
        out.extend_from_slice(b",\"tool_calls\":");
        serde_value(out, calls);
    }
    if let Some(refusal) = &message.refusal {
        out.extend_from_slice(b",\"refusal\":");
        string(out, refusal);
    }
    write_rest(out, &message.rest);
    out.extend_from_slice(b"},\"finish_reason\":");
    out.extend_from_slice(match choice.finish_reason {
        None => b"null".as_slice(),
        Some(FinishReason::Stop) => b"\"stop\"",
        Some(FinishReason::Length) => b"\"length\"",
        Some(FinishReason::ToolCalls) => b"\"tool_calls\"",
        Some(FinishReason::ContentFilter) => b"\"content_filter\"",
        Some(FinishReason::FunctionCall) => b"\"function_call\"",
        Some(FinishReason::Unknown) => b"\"unknown\"",
    });
    out.extend_from_slice(b",\"logprobs\":");
    match &choice.logprobs {
        Some(logprobs) => serde_value(out, logprobs),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

fn write_usage(out: &mut Vec<u8>, usage: &Usage) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"{\"prompt_tokens\":");
    out.extend_from_slice(digits.format(usage.prompt_tokens).as_bytes());
    out.extend_from_slice(b",\"completion_tokens\":");
    out.extend_from_slice(digits.format(usage.completion_tokens).as_bytes());
    out.extend_from_slice(b",\"total_tokens\":");
    out.extend_from_slice(digits.format(usage.total_tokens).as_bytes());
    if let Some(details) = &usage.prompt_tokens_details {
        out.extend_from_slice(b",\"prompt_tokens_details\":");
        serde_value(out, details);
    }
    if let Some(details) = &usage.completion_tokens_details {
        out.extend_from_slice(b",\"completion_tokens_details\":");
        serde_value(out, details);
    }
    out.push(b'}');
}

/// The flattened extra fields, after the typed ones (serde's order).
fn write_rest(out: &mut Vec<u8>, rest: &serde_json::Map<String, serde_json::Value>) {
    for (key, value) in rest {
        out.push(b',');
        string(out, key);
        out.push(b':');
        serde_value(out, value);
    }
}

/// A value serde writes (writing to a `Vec` cannot fail, nor can these types).
fn serde_value(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// A JSON string, as serde_json writes it ([`json_string::write`]).
fn string(out: &mut Vec<u8>, text: &str) {
    json_string::write(out, text);
}

/// `content`: a string, or a list of parts, read directly (see the module's comment).
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;
        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = Content;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Content, E> {
                Ok(Content::Text(text.to_string()))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Content, E> {
                Ok(Content::Text(text))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(Content::Parts(parts))
            }
        }
        deserializer.deserialize_any(ContentVisitor)
    }
}

#[cfg(test)]
#[path = "openai_json_tests.rs"]
mod tests;
