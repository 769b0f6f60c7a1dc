//! Gemini answers read into the canonical form: candidates become choices, `functionCall`
//! parts tool calls, finish reasons and usage OpenAI's. Shared with the stream decoder.

use serde_json::{Map, Value};

use super::types::{Candidate, FunctionCall, GenerateContentResponse, Part, UsageMetadata};
use crate::llm::chat::{
    ChatResponse, Choice, CompletionTokensDetails, FinishReason, FunctionCall as ChatFunctionCall, ResponseMessage,
    ToolCall, Usage,
};
use crate::llm::UpstreamError;

/// A non-streamed `generateContent` answer as a chat completion.
pub fn from_generate_content(body: &[u8], model: &str) -> Result<ChatResponse, UpstreamError> {
    let answer: GenerateContentResponse = serde_json::from_slice(body).map_err(|e| {
        UpstreamError::bad_response(format!(
            "Gemini answered with a response this gateway cannot read ({e})"
        ))
    })?;
    let mut choices = Vec::with_capacity(answer.candidates.len().max(1));
    if answer.candidates.is_empty() {
        let Some(reason) = blocked(&answer) else {
            return Err(UpstreamError::bad_response("Gemini answered with no candidate"));
        };
        choices.push(Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_string(),
                content: None,
                tool_calls: None,
                refusal: Some(reason),
                rest: Map::new(),
            },
            finish_reason: Some(FinishReason::ContentFilter),
            logprobs: None,
        });
    }
    for (position, candidate) in answer.candidates.iter().enumerate() {
        let read = Read::parts(candidate.parts());
        let called = !read.calls.is_empty();
        let finish = match candidate.finish_reason.as_deref() {
            Some(reason) => finish_reason(reason, called, candidate)?,
            None if called => FinishReason::ToolCalls,
            None => FinishReason::Stop,
        };
        let mut rest = Map::new();
        if !read.reasoning.is_empty() {
            rest.insert("reasoning_content".to_string(), Value::String(read.reasoning));
        }
        choices.push(Choice {
            index: candidate.index.unwrap_or(position as u32),
            message: ResponseMessage {
                role: "assistant".to_string(),
                content: (!read.text.is_empty() || !called).then_some(read.text),
                tool_calls: called.then(|| read.calls.into_iter().map(to_tool_call).collect()),
                refusal: None,
                rest,
            },
            finish_reason: Some(finish),
            logprobs: None,
        });
    }
    Ok(ChatResponse {
        id: completion_id(answer.response_id.as_deref()),
        object: "chat.completion".to_string(),
        created: now(),
        model: answer.model_version.unwrap_or_else(|| model.to_string()),
        choices,
        usage: answer.usage_metadata.as_ref().map(usage),
        rest: Map::new(),
    })
}

/// What a candidate's parts say: text, thought summaries, and function calls.
#[derive(Default)]
pub(super) struct Read<'a> {
    pub text: String,
    pub reasoning: String,
    pub calls: Vec<&'a FunctionCall>,
}

impl<'a> Read<'a> {
    pub fn parts(parts: &'a [Part]) -> Self {
        let mut read = Read::default();
        for part in parts {
            if let Some(call) = &part.function_call {
                read.calls.push(call);
            } else if let Some(text) = &part.text {
                match part.thought {
                    Some(true) => read.reasoning.push_str(text),
                    _ => read.text.push_str(text),
                }
            }
        }
        read
    }
}

fn to_tool_call(call: &FunctionCall) -> ToolCall {
    ToolCall {
        id: call_id(call),
        kind: "function".to_string(),
        function: ChatFunctionCall {
            name: call.name.clone(),
            arguments: arguments(call),
        },
    }
}

/// A call's id: Gemini's own when it sent one, else a new `call_` id.
pub(super) fn call_id(call: &FunctionCall) -> String {
    match call.id.as_deref() {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("call_{}", random_suffix()),
    }
}

/// A call's arguments as JSON text (`{}` for a call without arguments).
pub(super) fn arguments(call: &FunctionCall) -> String {
    call.args.as_ref().map_or_else(|| "{}".to_string(), Value::to_string)
}

fn random_suffix() -> String {
    std::iter::repeat_with(fastrand::alphanumeric).take(24).collect()
}

/// `chatcmpl-` and Gemini's response id, or a new one.
pub(super) fn completion_id(response_id: Option<&str>) -> String {
    match response_id {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => format!("chatcmpl-{}", random_suffix()),
    }
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Why Gemini blocked the prompt, when it did (an answer without candidates).
pub(super) fn blocked(answer: &GenerateContentResponse) -> Option<String> {
    let reason = answer.prompt_feedback.as_ref()?.block_reason.as_deref()?;
    Some(format!(
        "Gemini blocked the prompt (blockReason {reason}) and generated no answer."
    ))
}

/// Gemini's finish reason as OpenAI's. `called`: the candidate made function calls (Gemini
/// says `STOP` for those too). Finish reasons that mean the model failed to produce a valid
/// answer (a malformed function call, ...) are errors of the server class, which fallbacks
/// and retries act on.
pub(super) fn finish_reason(reason: &str, called: bool, candidate: &Candidate) -> Result<FinishReason, UpstreamError> {
    Ok(match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "LANGUAGE"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => FinishReason::ContentFilter,
        "MALFORMED_FUNCTION_CALL"
        | "UNEXPECTED_TOOL_CALL"
        | "TOO_MANY_TOOL_CALLS"
        | "MISSING_THOUGHT_SIGNATURE"
        | "MALFORMED_RESPONSE" => {
            let detail = candidate
                .finish_message
                .as_deref()
                .map_or(String::new(), |m| format!(": {m}"));
            let mut error = UpstreamError::bad_response(format!(
                "Gemini stopped without a valid answer (finishReason {reason}){detail}"
            ));
            error.provider_type = Some(reason.to_string());
            return Err(error);
        }
        _ if called => FinishReason::ToolCalls,
        // STOP, and reasons OpenAI has no word for (OTHER, FINISH_REASON_UNSPECIFIED, ...).
        _ => FinishReason::Stop,
    })
}

/// Gemini's token counts in OpenAI's shape: tool-use prompts count as prompt tokens, thoughts
/// as completion tokens (and reasoning tokens, as OpenAI counts them), cached tokens are part
/// of the prompt already and are named once more in `cached_tokens`.
pub(super) fn usage(metadata: &UsageMetadata) -> Usage {
    let prompt = metadata.prompt_token_count + metadata.tool_use_prompt_token_count.unwrap_or(0);
    let thoughts = metadata.thoughts_token_count.unwrap_or(0);
    let mut usage = Usage::new(
        prompt,
        metadata.candidates_token_count + thoughts,
        metadata.cached_content_token_count,
    );
    if let Some(reasoning_tokens) = metadata.thoughts_token_count {
        usage.completion_tokens_details = Some(CompletionTokensDetails {
            reasoning_tokens: Some(reasoning_tokens),
        });
    }
    usage
}
