//! Secrets written with JSON escapes inside JSON source text (tool calls' arguments, which
//! are JSON text inside a JSON string): found, masked over the escapes so the arguments stay
//! valid JSON, or blocked where a mask cannot be written inside one string; on requests as on
//! responses.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::stream_tests::{cut, through};
use super::tests::guard;
use super::tool_stream_tests::{answer, anthropic, chat, chat_text, random_reads, responses, MASK};
use super::*;

/// Arguments whose secret and email are written with escapes, beside escapes to keep.
const ESCAPED: &str = r#"{"key": "\u0041KIA\u0049OSFODNN7EXAMPLE", "owner": "jane\u0040example.com", "path": "a\/b", "quote": "say \"hi\" \ud83d\ude00"}"#;
const ESCAPED_MASKED: &str =
    r#"{"key": "[AWS_ACCESS_KEY]", "owner": "[EMAIL]", "path": "a\/b", "quote": "say \"hi\" \ud83d\ude00"}"#;

fn no_secret(events: &[(String, Value)]) {
    let all = format!("{events:?}");
    for leak in ["AKIA", "KIA\\\\u0049", "OSFODNN7", "jane"] {
        assert!(!all.contains(leak), "{leak} in {all}");
    }
}

#[tokio::test]
async fn escaped_secrets_in_streamed_arguments_are_masked_however_they_are_cut() {
    let g = Arc::new(guard(MASK));
    let mut rng = fastrand::Rng::with_seed(21);
    for _ in 0..80 {
        let pieces = cut(&mut rng, ESCAPED);
        let body = chat(&[], &pieces);
        let reads = random_reads(&mut rng, &body);
        let events = through(&g, Endpoint::chat_completions, &body, &reads).await;
        let arguments: String = events
            .iter()
            .filter_map(|(_, e)| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(arguments, ESCAPED_MASKED, "{pieces:?} read at {reads:?}");
        let parsed: Value = serde_json::from_str(&arguments).expect("the joined arguments are JSON");
        assert_eq!(parsed["quote"], "say \"hi\" 😀");
        no_secret(&events);

        let events = through(&g, Endpoint::messages, &anthropic(&[], &pieces), &[]).await;
        let input: String = events
            .iter()
            .filter_map(|(_, e)| e["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(input, ESCAPED_MASKED, "{pieces:?}");
        no_secret(&events);

        let events = through(&g, Endpoint::responses, &responses(&pieces), &[]).await;
        let deltas: String = events
            .iter()
            .filter(|(name, _)| name == "response.function_call_arguments.delta")
            .filter_map(|(_, e)| e["delta"].as_str())
            .collect();
        assert_eq!(deltas, ESCAPED_MASKED, "{pieces:?}");
        let done = events
            .iter()
            .find(|(name, _)| name == "response.function_call_arguments.done");
        assert_eq!(done.map(|(_, e)| &e["arguments"]), Some(&json!(ESCAPED_MASKED)));
        no_secret(&events);
    }
}

#[tokio::test]
async fn escaped_text_in_a_streamed_event_is_found_and_the_event_written_again() {
    let g = Arc::new(guard(MASK));
    // The event's own JSON escapes the secret; the scanner reads the decoded text.
    let chunk = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"key \u0041KIAIOSFODNN7EXAMPLE, mail jane\u0040example.com"},"finish_reason":null}]}"#;
    let (content, events) = chat_text(&g, chunk).await;
    assert_eq!(content, "key [AWS_ACCESS_KEY], mail [EMAIL]");
    no_secret(&events);
}

#[tokio::test]
async fn escaped_secrets_in_whole_arguments_are_masked_and_bare_numbers_block() {
    let g = Arc::new(guard(MASK));
    let whole = |arguments: &str| {
        json!({"id": "c", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "deploy", "arguments": arguments}}]}}]})
    };
    let (status, body) = answer(&g, Endpoint::chat_completions, &whole(ESCAPED)).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        ESCAPED_MASKED
    );
    // A match that is a bare JSON number cannot become a placeholder: the answer is withheld.
    let cards = Arc::new(guard(
        "{content: [{name: cards, builtin: [creditCard], \"on\": [response], action: mask}]}",
    ));
    let (status, body) = answer(
        &cards,
        Endpoint::chat_completions,
        &whole(r#"{"card": 4111111111111111}"#),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("content_policy_violation"))
    );
    assert!(!body.to_string().contains("4111"));
    let (status, body) = answer(
        &cards,
        Endpoint::chat_completions,
        &whole(r#"{"card": "4111111111111111"}"#),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        r#"{"card": "[CREDIT_CARD]"}"#
    );
}

/// A chat request whose assistant message called a tool with `arguments`.
fn request(arguments: &str) -> Value {
    json!({"model": "chat", "messages": [
        {"role": "user", "content": "deploy it"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "deploy", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"}]})
}

async fn check_body(g: &Guard, body: &Value) -> Result<Option<Value>, crate::gateway::error::ApiError> {
    let metrics = GuardMetrics::unregistered();
    check_request(
        Some(g),
        Endpoint::chat_completions,
        &Bytes::from(body.to_string()),
        &metrics,
    )
    .await
    .map(|b| b.map(|b| serde_json::from_slice(&b).expect("json")))
}

#[tokio::test]
async fn request_tool_call_arguments_are_scanned_decoded_and_masked_only_where_json_stays_valid() {
    let g =
        guard("{content: [{name: secrets, builtin: [awsAccessKey, email], roles: [user, assistant], action: mask}]}");
    let out = check_body(&g, &request(ESCAPED)).await.expect("ok").expect("masked");
    let arguments = out["messages"][1]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .expect("arguments");
    assert_eq!(arguments, ESCAPED_MASKED);
    serde_json::from_str::<Value>(arguments).expect("the masked arguments are JSON");

    // A match across the arguments' quotes blocks, as on responses, rather than break them.
    let g = guard("{content: [{name: leak, patterns: [\"code.{1,4}falcon\"], roles: [assistant], action: mask}]}");
    let error = check_body(&g, &request(r#"{"code": "falcon"}"#))
        .await
        .expect_err("blocked");
    assert_eq!(error.code, Some("content_policy_violation"));
    assert!(error.message.contains("'leak'") && !error.message.contains("falcon"));
    // The same words in a message's text are masked.
    let mut body = request("{}");
    body["messages"][0]["content"] = json!("the code: falcon");
    let g =
        guard("{content: [{name: leak, patterns: [\"code.{1,4}falcon\"], roles: [user, assistant], action: mask}]}");
    let out = check_body(&g, &body).await.expect("ok").expect("masked");
    assert_eq!(out["messages"][0]["content"], "the [REDACTED:leak]");
}
