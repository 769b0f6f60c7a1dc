//! Response rules on tool calls' arguments and on reasoning, streamed and not, per surface:
//! a secret cut across deltas is masked (the joined arguments still parse as JSON) or ends
//! the stream, and a match that masking would break the JSON of blocks.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::stream_tests::{cut, sse, through};
use super::tests::guard;
use super::*;

pub(super) const MASK: &str = "{content: [{name: secrets, builtin: [awsAccessKey], \"on\": [response], action: mask}, {name: pii, builtin: [email], \"on\": [response], action: mask}]}";
pub(super) const BLOCK: &str = "{content: [{name: secrets, builtin: [awsAccessKey], \"on\": [response], action: block}, {name: pii, builtin: [email], \"on\": [response], action: mask}]}";
/// A masking pattern whose match, in JSON source, spans a quote.
pub(super) const ACROSS_QUOTES: &str =
    "{content: [{name: leak, patterns: [\"code.{1,4}falcon\"], \"on\": [response], action: mask}]}";

const ARGUMENTS: &str =
    r#"{"region": "eu-west-1", "key": "AKIAIOSFODNN7EXAMPLE", "owner": "jane@example.com", "note": "café ☕"}"#;
const MASKED: &str = r#"{"region": "eu-west-1", "key": "[AWS_ACCESS_KEY]", "owner": "[EMAIL]", "note": "café ☕"}"#;
const THOUGHT: &str = "The user jane@example.com wants a deploy; the key AKIAIOSFODNN7EXAMPLE is theirs.";
const THOUGHT_MASKED: &str = "The user [EMAIL] wants a deploy; the key [AWS_ACCESS_KEY] is theirs.";

fn chat_chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

/// A chat stream: reasoning, then one tool call whose arguments come in `pieces`.
pub(super) fn chat(reasoning: &[String], pieces: &[String]) -> String {
    let mut chunks = vec![chat_chunk(json!({"role": "assistant", "content": null}), Value::Null)];
    for piece in reasoning {
        chunks.push(chat_chunk(json!({"reasoning_content": piece}), Value::Null));
    }
    chunks.push(chat_chunk(
        json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "deploy", "arguments": ""}}]}),
        Value::Null,
    ));
    for piece in pieces {
        chunks.push(chat_chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            Value::Null,
        ));
    }
    chunks.push(chat_chunk(json!({}), json!("tool_calls")));
    let mut text: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    text.push_str("data: [DONE]\n\n");
    text
}

pub(super) fn random_reads(rng: &mut fastrand::Rng, body: &str) -> Vec<usize> {
    (0..rng.usize(0..6)).map(|_| rng.usize(0..body.len())).collect()
}

#[tokio::test]
async fn chat_tool_call_arguments_and_reasoning_are_masked_however_they_are_cut() {
    let g = Arc::new(guard(MASK));
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..60 {
        let (reasoning, pieces) = (cut(&mut rng, THOUGHT), cut(&mut rng, ARGUMENTS));
        let body = chat(&reasoning, &pieces);
        let reads = random_reads(&mut rng, &body);
        let events = through(&g, Endpoint::chat_completions, &body, &reads).await;
        let deltas = || events.iter().map(|(_, e)| &e["choices"][0]["delta"]);
        let arguments: String = deltas()
            .filter_map(|d| d["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(arguments, MASKED, "{pieces:?} read at {reads:?}");
        let parsed: Value = serde_json::from_str(&arguments).expect("the joined arguments are JSON");
        assert_eq!(parsed["key"], "[AWS_ACCESS_KEY]");
        let thought: String = deltas().filter_map(|d| d["reasoning_content"].as_str()).collect();
        assert_eq!(thought, THOUGHT_MASKED, "{reasoning:?}");
        // Every tool call delta names its call; held text comes before the finishing chunk.
        assert!(deltas()
            .filter_map(|d| d["tool_calls"].as_array())
            .all(|calls| calls[0]["index"] == 0));
        assert!(deltas().any(|d| d["tool_calls"][0]["function"]["name"] == "deploy"));
        let finish = events
            .iter()
            .position(|(_, e)| e["choices"][0]["finish_reason"] == "tool_calls")
            .expect("finish");
        assert_eq!(finish, events.len() - 2, "the finishing chunk, then [DONE]");
        assert_eq!(events[finish + 1].1, Value::Null);
        let all = format!("{events:?}");
        assert!(!all.contains("AKIA") && !all.contains("jane"), "{all}");
    }
}

#[tokio::test]
async fn a_secret_in_chat_tool_call_arguments_ends_the_stream_when_it_blocks() {
    let g = Arc::new(guard(BLOCK));
    let pieces = cut(&mut fastrand::Rng::with_seed(5), ARGUMENTS);
    let events = through(&g, Endpoint::chat_completions, &chat(&[], &pieces), &[]).await;
    let (_, last) = events.last().expect("events");
    assert_eq!(last["error"]["code"], "content_policy_violation");
    assert!(last["error"]["message"].as_str().expect("m").contains("'secrets'"));
    assert!(!format!("{events:?}").contains("AKIA"));
    assert!(!events.iter().any(|(_, e)| e.is_null()), "no [DONE]");
}

#[tokio::test]
async fn a_match_across_a_quote_of_the_arguments_blocks_instead_of_breaking_the_json() {
    let g = Arc::new(guard(ACROSS_QUOTES));
    let arguments = [
        r#"{"code"#.to_string(),
        r#"": "fal"#.to_string(),
        r#"con"}"#.to_string(),
    ];
    let events = through(&g, Endpoint::chat_completions, &chat(&[], &arguments), &[]).await;
    let (_, last) = events.last().expect("events");
    assert_eq!(last["error"]["code"], "content_policy_violation");
    assert!(!format!("{events:?}").contains("falcon"));
    // The same match in text is masked.
    let text = chat_chunk(json!({"content": "the code: falcon"}), Value::Null);
    let (content, _) = chat_text(&g, &text.to_string()).await;
    assert_eq!(content, "the [REDACTED:leak]");
}

/// A chat stream of one chunk (its raw data) through the guard: the content the client
/// reads, and every event.
pub(super) async fn chat_text(g: &Arc<Guard>, chunk: &str) -> (String, Vec<(String, Value)>) {
    let body = format!("data: {chunk}\n\ndata: [DONE]\n\n");
    let events = through(g, Endpoint::chat_completions, &body, &[]).await;
    let content = events
        .iter()
        .filter_map(|(_, e)| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    (content, events)
}

/// An Anthropic stream: a thinking block, then a tool_use block whose input comes in `pieces`.
pub(super) fn anthropic(thinking: &[String], pieces: &[String]) -> String {
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [], "stop_reason": null, "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
    ];
    for piece in thinking {
        events.push(
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": piece}}),
        );
    }
    events.push(
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
    );
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "deploy", "input": {}}}));
    for piece in pieces {
        events.push(json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": piece}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 1}));
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}));
    events.push(json!({"type": "message_stop"}));
    sse(&events)
}

/// Thinking with nothing to mask (masking signed thinking would void its signature).
const CLEAN_THOUGHT: &str = "The user wants a deploy to eu-west-1; the key is in the arguments.";

#[tokio::test]
async fn anthropic_tool_input_is_masked_inside_its_block_beside_clean_thinking() {
    let g = Arc::new(guard(MASK));
    let mut rng = fastrand::Rng::with_seed(9);
    for _ in 0..60 {
        let (thinking, pieces) = (cut(&mut rng, CLEAN_THOUGHT), cut(&mut rng, ARGUMENTS));
        let body = anthropic(&thinking, &pieces);
        let reads = random_reads(&mut rng, &body);
        let events = through(&g, Endpoint::messages, &body, &reads).await;
        let of = |index: u64, field: &str| -> String {
            events
                .iter()
                .filter(|(_, e)| e["index"] == index)
                .filter_map(|(_, e)| e["delta"][field].as_str())
                .collect()
        };
        assert_eq!(of(0, "thinking"), CLEAN_THOUGHT, "{thinking:?}");
        assert_eq!(of(0, "signature"), "sig");
        assert_eq!(of(1, "partial_json"), MASKED, "{pieces:?} read at {reads:?}");
        serde_json::from_str::<Value>(&of(1, "partial_json")).expect("the joined input is JSON");
        // Each block's deltas stay between its start and its stop.
        for index in [0u64, 1] {
            let at: Vec<(usize, &Value)> = events
                .iter()
                .enumerate()
                .filter(|(_, (_, e))| e["index"] == index)
                .map(|(n, (_, e))| (n, &e["type"]))
                .collect();
            assert_eq!(at.first().map(|a| a.1), Some(&json!("content_block_start")));
            assert_eq!(at.last().map(|a| a.1), Some(&json!("content_block_stop")));
            assert!(at.windows(2).all(|w| w[1].0 == w[0].0 + 1), "{index}: {at:?}");
        }
        assert!(!format!("{events:?}").contains("AKIA"));
    }
}

#[tokio::test]
async fn a_masking_match_in_signed_thinking_ends_the_stream_instead_of_voiding_the_signature() {
    let g = Arc::new(guard(MASK));
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..20 {
        let thinking = cut(&mut rng, THOUGHT);
        let events = through(&g, Endpoint::messages, &anthropic(&thinking, &[]), &[]).await;
        let (name, last) = events.last().expect("events");
        assert_eq!(name, "error", "{thinking:?}");
        assert_eq!(last["error"]["type"], "invalid_request_error");
        assert!(
            last["error"]["message"].as_str().expect("m").contains("'pii'"),
            "{last}"
        );
        let all = format!("{events:?}");
        assert!(!all.contains("jane") && !all.contains("[EMAIL]"), "{all}");
    }
    // The same text in a text block is masked.
    let text = sse(&[
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": THOUGHT}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_stop"}),
    ]);
    let events = through(&g, Endpoint::messages, &text, &[]).await;
    let said: String = events.iter().filter_map(|(_, e)| e["delta"]["text"].as_str()).collect();
    assert_eq!(said, THOUGHT_MASKED);
}

/// A Responses stream: one function call whose arguments come in `pieces`, repeated whole by
/// the `*.done` events and the final response.
pub(super) fn responses(pieces: &[String]) -> String {
    let whole = pieces.concat();
    let item = |arguments: &str, status: &str| json!({"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "deploy", "arguments": arguments, "status": status});
    let mut events = vec![
        json!({"type": "response.created", "response": {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": item("", "in_progress")}),
    ];
    for piece in pieces {
        events.push(json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 0, "delta": piece}));
    }
    events.push(json!({"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 0, "arguments": whole}));
    events.push(json!({"type": "response.output_item.done", "output_index": 0, "item": item(&whole, "completed")}));
    events.push(json!({"type": "response.completed", "response": {"id": "resp_1", "object": "response", "status": "completed", "output": [item(&whole, "completed")]}}));
    for (n, event) in events.iter_mut().enumerate() {
        event["sequence_number"] = json!(n);
    }
    sse(&events)
}

#[tokio::test]
async fn responses_function_call_arguments_are_masked_streamed_and_whole() {
    let g = Arc::new(guard(MASK));
    let mut rng = fastrand::Rng::with_seed(13);
    for _ in 0..60 {
        let pieces = cut(&mut rng, ARGUMENTS);
        let body = responses(&pieces);
        let reads = random_reads(&mut rng, &body);
        let events = through(&g, Endpoint::responses, &body, &reads).await;
        for (n, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], n, "numbers stay consecutive");
        }
        let streamed: String = events
            .iter()
            .filter(|(name, _)| name == "response.function_call_arguments.delta")
            .map(|(_, e)| e["delta"].as_str().expect("delta"))
            .collect();
        assert_eq!(streamed, MASKED, "{pieces:?} read at {reads:?}");
        let done = events
            .iter()
            .position(|(name, _)| name == "response.function_call_arguments.done")
            .expect("done");
        assert_eq!(events[done].1["arguments"], MASKED);
        assert_eq!(events[done + 1].1["item"]["arguments"], MASKED);
        assert_eq!(events[done + 2].1["response"]["output"][0]["arguments"], MASKED);
        assert!(!format!("{events:?}").contains("AKIA"));
    }
    let g = Arc::new(guard(BLOCK));
    let events = through(&g, Endpoint::responses, &responses(&cut(&mut rng, ARGUMENTS)), &[]).await;
    assert_eq!(events.last().map(|(name, _)| name.as_str()), Some("error"));
    assert!(!format!("{events:?}").contains("AKIA"));
}

/// A whole answer through the response guard: its status and body.
pub(super) async fn answer(g: &Arc<Guard>, endpoint: Endpoint, body: &Value) -> (u16, Value) {
    let mut response = http::Response::new(Body::from(Bytes::from(body.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let metrics = Arc::new(GuardMetrics::unregistered());
    let out = guard_response(Some(g), endpoint, response, &metrics).await;
    let status = out.status().as_u16();
    let raw = out.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&raw).expect("json"))
}

#[tokio::test]
async fn whole_answers_have_their_arguments_and_reasoning_masked_or_blocked() {
    let g = Arc::new(guard(MASK));
    let chat = json!({"id": "c", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": null, "reasoning_content": THOUGHT,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "deploy", "arguments": ARGUMENTS}}]}}]});
    let (status, body) = answer(&g, Endpoint::chat_completions, &chat).await;
    assert_eq!(status, 200);
    let message = &body["choices"][0]["message"];
    assert_eq!(message["tool_calls"][0]["function"]["arguments"], MASKED);
    assert_eq!(message["reasoning_content"], THOUGHT_MASKED);

    let message = json!({"id": "msg_1", "type": "message", "role": "assistant", "content": [
        {"type": "thinking", "thinking": THOUGHT, "signature": "sig"},
        {"type": "tool_use", "id": "toolu_1", "name": "deploy", "input": serde_json::from_str::<Value>(ARGUMENTS).expect("json")}]});
    let (status, body) = answer(&g, Endpoint::messages, &message).await;
    assert_eq!(status, 400, "a mask would void the thinking's signature: {body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().expect("m").contains("'pii'"));
    assert!(!body.to_string().contains("jane"));
    let mut message = message;
    message["content"][0]["thinking"] = json!(CLEAN_THOUGHT);
    let (status, body) = answer(&g, Endpoint::messages, &message).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["content"][0],
        json!({"type": "thinking", "thinking": CLEAN_THOUGHT, "signature": "sig"})
    );
    assert_eq!(body["content"][1]["input"]["key"], "[AWS_ACCESS_KEY]");

    let quoted = json!({"choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": r#"{"code": "falcon"}"#}}]}}]});
    let (status, body) = answer(&Arc::new(guard(ACROSS_QUOTES)), Endpoint::chat_completions, &quoted).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("content_policy_violation"))
    );
    let (status, body) = answer(&Arc::new(guard(BLOCK)), Endpoint::chat_completions, &chat).await;
    assert_eq!(status, 400);
    assert!(!body.to_string().contains("AKIA"));
}
