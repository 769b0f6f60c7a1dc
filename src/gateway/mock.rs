//! `type: mock` providers: deterministic local answers that name the provider and model that
//! served them, streamed or not, so quickstarts and tests can see where an alias went.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::metrics::Endpoint;

/// What the mock needs to know about the request it answers.
pub struct MockRequest<'a> {
    pub endpoint: Endpoint,
    pub alias: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub body: &'a [u8],
    pub stream: bool,
}

/// Answers a request the way the OpenAI API would, from nothing but its inputs.
pub fn respond(request: &MockRequest<'_>) -> Response {
    let body: Value = serde_json::from_slice(request.body).unwrap_or(Value::Null);
    let reply = format!(
        "Hello from the modelgate mock provider {} (model {}, alias {}).",
        request.provider, request.model, request.alias
    );
    let id = format!("mock-{:016x}", fnv1a(request.body));
    let prompt_tokens = prompt_tokens(&body);
    let completion_tokens = reply.split_whitespace().count() as u64;
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
    match request.endpoint {
        // Other APIs reach the mock through the canonical form (`chat_response`).
        Endpoint::messages | Endpoint::count_tokens | Endpoint::responses => {
            crate::gateway::error::ApiError::untranslatable(
                None,
                "The mock answers this API through translation.".to_string(),
            )
            .into_response()
        }
        Endpoint::embeddings => json_response(embeddings(request.model, &body, prompt_tokens)),
        Endpoint::chat_completions if request.stream => {
            let include_usage = body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
            let chunk = |delta: Value, finish: Value| {
                json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": request.model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            };
            let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
            let words: Vec<&str> = reply.split_inclusive(' ').collect();
            events.extend(words.iter().map(|w| chunk(json!({"content": w}), Value::Null)));
            events.push(chunk(json!({}), json!("stop")));
            if include_usage {
                events.push(
                    json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": request.model,
                                   "choices": [], "usage": usage}),
                );
            }
            sse_response(events)
        }
        Endpoint::chat_completions => json_response(json!({
            "id": id, "object": "chat.completion", "created": 0, "model": request.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage,
        })),
        Endpoint::completions if request.stream => {
            let mut events: Vec<Value> = reply
                .split_inclusive(' ')
                .map(|w| {
                    json!({"id": id, "object": "text_completion", "created": 0, "model": request.model,
                                "choices": [{"index": 0, "text": w, "logprobs": null, "finish_reason": null}]})
                })
                .collect();
            events.push(
                json!({"id": id, "object": "text_completion", "created": 0, "model": request.model,
                               "choices": [{"index": 0, "text": "", "logprobs": null, "finish_reason": "stop"}]}),
            );
            sse_response(events)
        }
        Endpoint::completions => json_response(json!({
            "id": id, "object": "text_completion", "created": 0, "model": request.model,
            "choices": [{"index": 0, "text": reply, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage,
        })),
    }
}

fn json_response(value: Value) -> Response {
    let mut response = (StatusCode::OK, value.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn sse_response(events: Vec<Value>) -> Response {
    let mut text = String::new();
    for event in events {
        text.push_str("data: ");
        text.push_str(&event.to_string());
        text.push_str("\n\n");
    }
    text.push_str("data: [DONE]\n\n");
    let mut response = Response::new(Body::from(text));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Deterministic unit vectors, one per input, derived from the model and the input text.
fn embeddings(model: &str, body: &Value, prompt_tokens: u64) -> Value {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_string).collect()
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            vec![Value::Array(items.clone()).to_string()]
        }
        Some(Value::Array(items)) => items.iter().map(Value::to_string).collect(),
        _ => vec![String::new()],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": vector(model, text)}))
        .collect();
    json!({"object": "list", "data": data, "model": model,
           "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})
}

fn vector(model: &str, text: &str) -> Vec<f64> {
    let mut seed = fnv1a(format!("{model}\u{0}{text}").as_bytes());
    let raw: Vec<f64> = (0..8)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 2001) as f64 / 1000.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::EPSILON);
    raw.into_iter().map(|x| (x / norm * 1e6).round() / 1e6).collect()
}

/// A rough count (one token per whitespace-separated word) of the prompt.
fn prompt_tokens(body: &Value) -> u64 {
    fn words(value: &Value) -> u64 {
        match value {
            Value::String(s) => s.split_whitespace().count() as u64,
            Value::Array(items) => items.iter().map(words).sum(),
            Value::Object(map) => map.get("content").map(words).unwrap_or(0),
            _ => 0,
        }
    }
    ["messages", "prompt", "input"]
        .iter()
        .filter_map(|k| body.get(*k))
        .map(words)
        .sum()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The mock's answer to a canonical chat request (for clients of other APIs: Anthropic
/// Messages, Responses), the same reply the OpenAI surface gets.
pub fn chat_response(
    alias: &str,
    provider: &str,
    model: &str,
    request: &crate::llm::chat::ChatRequest,
) -> crate::llm::chat::ChatResponse {
    use crate::llm::chat::{ChatResponse, Choice, FinishReason, ResponseMessage, Usage};
    let reply = format!("Hello from the modelgate mock provider {provider} (model {model}, alias {alias}).");
    let prompt = serde_json::to_value(&request.messages).unwrap_or(Value::Null);
    let prompt_tokens = prompt_tokens(&json!({"messages": prompt}));
    let completion_tokens = reply.split_whitespace().count() as u64;
    let id = format!("mock-{:016x}", fnv1a(prompt.to_string().as_bytes()));
    ChatResponse {
        id,
        object: "chat.completion".to_string(),
        created: 0,
        model: model.to_string(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_string(),
                content: Some(reply),
                tool_calls: None,
                refusal: None,
                rest: Default::default(),
            },
            finish_reason: Some(FinishReason::Stop),
            logprobs: None,
        }],
        usage: Some(Usage::new(prompt_tokens, completion_tokens, None)),
        rest: Default::default(),
    }
}

/// A canonical answer as the canonical stream of chunks (role, a word a chunk, the finish
/// reason, usage).
pub fn chat_chunks(answer: &crate::llm::chat::ChatResponse) -> Vec<crate::llm::chat::ChatChunk> {
    use crate::llm::chat::{ChatChunk, ChunkChoice, Delta};
    let (id, model, created) = (answer.id.as_str(), answer.model.as_str(), answer.created);
    let delta = |role: Option<&str>, content: Option<&str>| ChunkChoice {
        delta: Delta {
            role: role.map(str::to_string),
            content: content.map(str::to_string),
            ..Delta::default()
        },
        ..ChunkChoice::default()
    };
    let mut chunks = vec![ChatChunk::with_choice(
        id,
        model,
        created,
        delta(Some("assistant"), Some("")),
    )];
    let Some(choice) = answer.choices.first() else {
        return chunks;
    };
    let text = choice.message.content.clone().unwrap_or_default();
    for word in text.split_inclusive(' ') {
        chunks.push(ChatChunk::with_choice(id, model, created, delta(None, Some(word))));
    }
    chunks.push(ChatChunk::with_choice(
        id,
        model,
        created,
        ChunkChoice {
            finish_reason: choice.finish_reason,
            ..ChunkChoice::default()
        },
    ));
    if let Some(usage) = &answer.usage {
        chunks.push(ChatChunk::usage_only(id, model, created, usage.clone()));
    }
    chunks
}
