//! A Converse response to a canonical chat completion; stop reasons and usage.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::llm::chat::{ChatResponse, Choice, FinishReason, FunctionCall, ResponseMessage, ToolCall, Usage};
use crate::llm::UpstreamError;

/// The body of a Converse answer.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse {
    output: Output,
    stop_reason: String,
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize, Debug)]
struct Output {
    #[serde(default)]
    message: Option<OutputMessage>,
}

#[derive(Deserialize, Debug)]
struct OutputMessage {
    #[serde(default)]
    content: Vec<OutputBlock>,
}

/// A content block of the answer (a union: one of these keys).
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct OutputBlock {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<ToolUse>,
    #[serde(default)]
    reasoning_content: Option<ReasoningContent>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct ToolUse {
    tool_use_id: String,
    name: String,
    #[serde(default)]
    input: Value,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct ReasoningContent {
    #[serde(default)]
    reasoning_text: Option<ReasoningText>,
}

#[derive(Deserialize, Debug)]
struct ReasoningText {
    #[serde(default)]
    text: String,
}

/// Converse's `usage` (the same shape in the stream's `metadata` event).
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_write_input_tokens: Option<u64>,
}

/// Usage in OpenAI's shape. Bedrock counts cache reads and writes apart from `inputTokens`;
/// OpenAI's `prompt_tokens` includes them, and `cached_tokens` is the reads.
pub fn usage(usage: &TokenUsage) -> Usage {
    let cached = usage.cache_read_input_tokens;
    let prompt = usage.input_tokens + cached.unwrap_or(0) + usage.cache_write_input_tokens.unwrap_or(0);
    Usage::new(prompt, usage.output_tokens, cached)
}

/// A Converse `stopReason` as an OpenAI finish reason.
pub fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
        // The model's output could not be read as text or a tool call: the answer ended, and
        // OpenAI has no closer word for it.
        "malformed_model_output" | "malformed_tool_use" => FinishReason::Stop,
        _ => FinishReason::Unknown,
    }
}

/// A response id for answers that carry none (Converse's is only in a response header).
pub fn new_id() -> String {
    format!("chatcmpl-bedrock-{:016x}", fastrand::u64(..))
}

/// Seconds since the epoch, for `created`.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// Reads a Converse answer into a chat completion for `model`.
pub fn chat_response(body: &[u8], model: &str) -> Result<ChatResponse, UpstreamError> {
    let answer: ConverseResponse = serde_json::from_slice(body).map_err(|e| {
        UpstreamError::bad_response(format!(
            "the provider answered with a Converse response this gateway cannot read ({e})"
        ))
    })?;
    let mut text = String::new();
    let mut saw_text = false;
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in answer.output.message.into_iter().flat_map(|m| m.content) {
        if let Some(part) = block.text {
            saw_text = true;
            text.push_str(&part);
        }
        if let Some(call) = block.tool_use {
            tool_calls.push(ToolCall {
                id: call.tool_use_id,
                kind: "function".to_string(),
                function: FunctionCall {
                    name: call.name,
                    arguments: serde_json::to_string(&call.input).unwrap_or_else(|_| "{}".to_string()),
                },
            });
        }
        if let Some(thought) = block.reasoning_content.and_then(|r| r.reasoning_text) {
            reasoning.push_str(&thought.text);
        }
    }
    let mut rest = Map::new();
    if !reasoning.is_empty() {
        rest.insert("reasoning_content".to_string(), Value::String(reasoning));
    }
    Ok(ChatResponse {
        id: new_id(),
        object: "chat.completion".to_string(),
        created: now(),
        model: model.to_string(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_string(),
                content: (saw_text || tool_calls.is_empty()).then_some(text),
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                refusal: None,
                rest,
            },
            finish_reason: Some(finish_reason(&answer.stop_reason)),
            logprobs: None,
        }],
        usage: answer.usage.as_ref().map(usage),
        rest: Map::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_use_answer_becomes_tool_calls_with_usage_counting_the_cache() {
        // The shape of the Converse API reference's response syntax.
        let body = br#"{
            "output": {"message": {"role": "assistant", "content": [
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song", "input": {"sign": "WZPZ"}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 375, "outputTokens": 56, "totalTokens": 531, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 0},
            "metrics": {"latencyMs": 1200}
        }"#;
        let response = chat_response(body, "anthropic.claude-3-5-sonnet-20240620-v1:0").expect("read");
        let choice = &response.choices[0];
        assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(choice.message.content.as_deref(), Some("Let me check."));
        let calls = choice.message.tool_calls.as_ref().expect("calls");
        assert_eq!(calls[0].id, "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
        assert_eq!(calls[0].function.arguments, r#"{"sign":"WZPZ"}"#);
        let usage = response.usage.expect("usage");
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
            (475, 56, 531)
        );
        assert_eq!(usage.cached_tokens(), 100);
        assert_eq!(response.model, "anthropic.claude-3-5-sonnet-20240620-v1:0");
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        for (stop, finish) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("tool_use", FinishReason::ToolCalls),
            ("guardrail_intervened", FinishReason::ContentFilter),
            ("content_filtered", FinishReason::ContentFilter),
            ("something_new", FinishReason::Unknown),
        ] {
            assert_eq!(finish_reason(stop), finish, "{stop}");
        }
    }

    #[test]
    fn an_unreadable_answer_is_a_bad_response() {
        let error = chat_response(b"<html>", "m").expect_err("not JSON");
        assert_eq!(error.status, 502);
    }
}
