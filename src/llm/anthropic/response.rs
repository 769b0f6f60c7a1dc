//! Non-streamed answers both ways: an Anthropic message read into a canonical chat
//! completion, and a canonical chat completion written as an Anthropic message. Also the
//! stop-reason and usage mappings the streams share.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::types::{MessagesResponse, ResponseBlock, Usage};
use crate::llm::chat::{self, ChatResponse, Choice, FinishReason, FunctionCall, ResponseMessage, ToolCall};
use crate::llm::UpstreamError;

/// The canonical finish reason of an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        // `end_turn`, `stop_sequence`, and `pause_turn` (a server-tool turn paused: what the
        // model said so far is a complete answer for a client that cannot resume it).
        _ => FinishReason::Stop,
    }
}

/// The Anthropic `stop_reason` of a canonical finish reason.
pub fn stop_reason(finish: Option<FinishReason>) -> &'static str {
    match finish {
        Some(FinishReason::Length) => "max_tokens",
        Some(FinishReason::ToolCalls | FinishReason::FunctionCall) => "tool_use",
        Some(FinishReason::ContentFilter) => "refusal",
        Some(FinishReason::Stop | FinishReason::Unknown) | None => "end_turn",
    }
}

/// Anthropic usage in OpenAI shape: the prompt counts every input token once, cached reads
/// and cache writes included; `cached_tokens` is the part read from the cache.
pub fn chat_usage(usage: &Usage) -> chat::Usage {
    let cache_read = usage.cache_read_input_tokens.unwrap_or(0);
    let prompt = usage.input_tokens + cache_read + usage.cache_creation_input_tokens.unwrap_or(0);
    chat::Usage::new(prompt, usage.output_tokens, usage.cache_read_input_tokens)
}

/// Canonical usage in Anthropic shape (`input_tokens` without the cached part).
pub fn anthropic_usage(usage: &chat::Usage) -> Usage {
    let cached = usage.cached_tokens();
    Usage {
        input_tokens: usage.prompt_tokens.saturating_sub(cached),
        output_tokens: usage.completion_tokens,
        cache_creation_input_tokens: Some(0),
        cache_read_input_tokens: Some(cached),
    }
}

/// Seconds since the epoch, for `created` (Anthropic has no such field).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An Anthropic message read into a canonical chat completion: text blocks joined, tool_use
/// blocks as tool calls (arguments = `input` exactly as Anthropic wrote it), thinking as
/// `reasoning_content`.
pub fn from_messages_response(body: &[u8]) -> Result<ChatResponse, UpstreamError> {
    let bad = |e: &dyn std::fmt::Display| {
        UpstreamError::bad_response(format!(
            "the provider answered with an Anthropic message this gateway cannot read ({e})"
        ))
    };
    // UTF-8 checked once for the whole answer, not string by string.
    let json = std::str::from_utf8(body).map_err(|e| bad(&e))?;
    let message: MessagesResponse = serde_json::from_str(json).map_err(|e| bad(&e))?;
    let mut text = String::new();
    let mut saw_text = false;
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in message.content {
        match block.kind.as_str() {
            "text" => {
                saw_text = true;
                match block.text {
                    // The first text block is moved, not copied.
                    Some(block_text) if text.is_empty() => text = block_text,
                    Some(block_text) => text.push_str(&block_text),
                    None => {}
                }
            }
            "tool_use" => tool_calls.push(ToolCall {
                id: block.id.unwrap_or_default(),
                kind: "function".to_string(),
                function: FunctionCall {
                    name: block.name.unwrap_or_default(),
                    arguments: block
                        .input
                        .map_or_else(|| "{}".to_string(), |raw| raw.get().to_string()),
                },
            }),
            "thinking" => reasoning.push_str(block.thinking.as_deref().unwrap_or_default()),
            // Redacted thinking, and server-tool blocks no canonical request can ask for.
            _ => {}
        }
    }
    let mut rest = Map::new();
    if !reasoning.is_empty() {
        rest.insert("reasoning_content".to_string(), Value::String(reasoning));
    }
    let has_text = saw_text && !text.is_empty();
    Ok(ChatResponse {
        id: message.id,
        object: "chat.completion".to_string(),
        created: now(),
        model: message.model,
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_string(),
                content: (has_text || tool_calls.is_empty()).then_some(text),
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                refusal: None,
                rest,
            },
            finish_reason: message.stop_reason.as_deref().map(finish_reason),
            logprobs: None,
        }],
        usage: Some(chat_usage(&message.usage)),
        rest: Map::new(),
    })
}

/// An Anthropic message id for a canonical id (`msg_` prefixed, as Anthropic clients expect).
pub fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_string()
    } else {
        format!("msg_{id}")
    }
}

/// A tool call's arguments as a tool_use `input`: the JSON object as written, or — for
/// arguments that are not a JSON object (a model's broken output) — the text as a string, so
/// nothing is lost.
pub fn tool_input(arguments: &str) -> Box<RawValue> {
    let trimmed = arguments.trim();
    if trimmed.is_empty() {
        return RawValue::from_string("{}".to_string()).unwrap_or_else(|_| RawValue::NULL.to_owned());
    }
    if trimmed.starts_with('{') {
        if let Ok(raw) = RawValue::from_string(trimmed.to_string()) {
            return raw;
        }
    }
    serde_json::value::to_raw_value(arguments).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// A canonical chat completion written as an Anthropic message, named `model` (the alias the
/// client asked for).
pub fn to_messages_response(response: &ChatResponse, model: &str) -> MessagesResponse {
    let mut content = Vec::new();
    let choice = response.choices.iter().find(|c| c.index == 0);
    if let Some(choice) = choice {
        let message = &choice.message;
        for text in [&message.content, &message.refusal].into_iter().flatten() {
            if !text.is_empty() {
                content.push(ResponseBlock::text(text.clone()));
            }
        }
        for call in message.tool_calls.iter().flatten() {
            content.push(ResponseBlock {
                kind: "tool_use".to_string(),
                text: None,
                id: Some(call.id.clone()),
                name: Some(call.function.name.clone()),
                input: Some(tool_input(&call.function.arguments)),
                thinking: None,
                signature: None,
            });
        }
    }
    MessagesResponse {
        id: message_id(&response.id),
        kind: "message".to_string(),
        role: "assistant".to_string(),
        model: model.to_string(),
        content,
        stop_reason: Some(stop_reason(choice.and_then(|c| c.finish_reason)).to_string()),
        stop_sequence: None,
        usage: response.usage.as_ref().map(anthropic_usage).unwrap_or_default(),
    }
}
