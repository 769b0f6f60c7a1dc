//! The Responses API translation against fixtures written from OpenAI's API reference: the
//! request mapping, the response object, and the exact event stream.

use bytes::BytesMut;
use serde_json::{json, Value};

use super::*;
use crate::llm::chat::{
    ChatChunk, ChatRequest, ChatResponse, ChunkChoice, Delta, FinishReason, FunctionCallDelta, ToolCallDelta, Usage,
};
use crate::llm::{Accumulator, Framer, SseFramer, StreamEncoder, TranslateOptions, UpstreamError};

fn strict() -> TranslateOptions {
    TranslateOptions::strict("anthropic")
}

fn chat(body: &Value) -> Result<ChatRequest, crate::llm::TranslateError> {
    to_chat(body.to_string().as_bytes(), &strict())
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

#[test]
fn a_text_request_becomes_a_system_and_a_user_message() {
    let request = include_str!("fixtures/request_text.json");
    let chat = to_chat(request.as_bytes(), &strict()).expect("translates");
    assert_eq!(
        serde_json::to_value(&chat).expect("json"),
        fixture(include_str!("fixtures/chat_text.json")),
        "metadata and store shape only the answer: they never travel"
    );
}

#[test]
fn items_tools_and_settings_map_to_their_chat_equivalents() {
    let request = include_str!("fixtures/request_tools.json");
    let chat = to_chat(request.as_bytes(), &strict()).expect("translates");
    assert_eq!(
        serde_json::to_value(&chat).expect("json"),
        fixture(include_str!("fixtures/chat_tools.json"))
    );
}

#[test]
fn what_needs_a_stored_response_is_refused_by_name_even_when_dropping_is_allowed() {
    let lenient = TranslateOptions {
        drop_unsupported: true,
        ..strict()
    };
    for (field, value) in [
        ("previous_response_id", json!("resp_123")),
        ("conversation", json!("conv_123")),
        ("prompt", json!({"id": "pmpt_123"})),
        ("background", json!(true)),
    ] {
        let mut body = json!({"model": "m", "input": "hi"});
        body[field] = value;
        let error = to_chat(body.to_string().as_bytes(), &lenient).expect_err(field);
        assert_eq!(error.param.as_deref(), Some(field));
        assert!(error.message.contains(&format!("'{field}'")), "{}", error.message);
        assert!(error.message.contains("openai or azure-openai"), "{}", error.message);
    }
    let error = to_chat(
        json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]})
            .to_string()
            .as_bytes(),
        &lenient,
    )
    .expect_err("item_reference");
    assert_eq!(error.param.as_deref(), Some("input[0]"));
    // Null or false mean "not used".
    chat(&json!({"model": "m", "input": "hi", "previous_response_id": null, "background": false, "store": true}))
        .expect("nothing stored is needed");
}

#[test]
fn built_in_tools_are_refused_by_name() {
    let error = chat(&json!({"model": "m", "input": "hi", "tools": [
        {"type": "function", "name": "f", "parameters": {"type": "object"}},
        {"type": "web_search"}
    ]}))
    .expect_err("web_search");
    assert_eq!(error.param.as_deref(), Some("tools[1]"));
    assert!(error.message.contains("'web_search'"), "{}", error.message);
    let error =
        chat(&json!({"model": "m", "input": "hi", "tool_choice": {"type": "file_search"}})).expect_err("hosted");
    assert_eq!(error.param.as_deref(), Some("tool_choice"));
    let error =
        chat(&json!({"model": "m", "input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]}))
            .expect_err("hosted item");
    assert_eq!(error.param.as_deref(), Some("input[0]"));
}

#[test]
fn unknown_parameters_are_unsupported_unless_the_provider_drops_them() {
    let body = json!({"model": "m", "input": "hi", "max_tool_calls": 3, "reasoning": {"effort": "high", "summary": "auto"}, "include": ["message.output_text.logprobs"], "truncation": "auto"});
    let error = chat(&body).expect_err("strict");
    assert_eq!(error.param.as_deref(), Some("max_tool_calls"));
    assert!(error.message.contains("dropUnsupportedParams"), "{}", error.message);
    let lenient = TranslateOptions {
        drop_unsupported: true,
        ..strict()
    };
    let chat = to_chat(body.to_string().as_bytes(), &lenient).expect("dropped");
    assert_eq!(chat.rest.get("reasoning_effort"), Some(&json!("high")));
    assert!(!chat.rest.contains_key("max_tool_calls"));
    for (body, param) in [
        (
            json!({"model": "m", "input": "hi", "reasoning": {"summary": "auto"}}),
            "reasoning.summary",
        ),
        (
            json!({"model": "m", "input": "hi", "include": ["reasoning.encrypted_content", "file_search_call.results"]}),
            "include[1]",
        ),
        (json!({"model": "m", "input": "hi", "truncation": "auto"}), "truncation"),
        (
            json!({"model": "m", "input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}),
            "input[0]",
        ),
    ] {
        let error = super::to_chat(body.to_string().as_bytes(), &strict()).expect_err(param);
        assert_eq!(error.param.as_deref(), Some(param));
    }
}

#[test]
fn stored_files_and_fetched_urls_are_refused_inline_files_pass() {
    let error = chat(&json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1", "detail": "auto"}]}]}))
        .expect_err("file_id");
    assert_eq!(error.param.as_deref(), Some("input[0].content[0]"));
    let error = chat(&json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_url": "https://example.com/a.pdf"}]}]}))
        .expect_err("file_url");
    assert!(error.message.contains("never fetches"), "{}", error.message);
    let chat = chat(&json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}]}]}))
        .expect("inline file");
    assert_eq!(
        serde_json::to_value(&chat.messages[0].content).expect("json"),
        json!([{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}])
    );
}

#[test]
fn allowed_tools_leaves_the_others_out_and_a_named_choice_maps() {
    let tool = |name: &str| json!({"type": "function", "name": name, "parameters": {"type": "object"}});
    let chat = chat(
        &json!({"model": "m", "input": "hi", "tools": [tool("a"), tool("b"), tool("c")],
        "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "b"}]}}),
    )
    .expect("translates");
    let names: Vec<_> = chat.tools.iter().flatten().map(|t| t.function.name.as_str()).collect();
    assert_eq!(names, ["b"]);
    assert_eq!(
        serde_json::to_value(&chat.tool_choice).expect("json"),
        json!("required")
    );
    let chat = super::to_chat(
        json!({"model": "m", "input": "hi", "tools": [tool("a")], "tool_choice": {"type": "function", "name": "a"}})
            .to_string()
            .as_bytes(),
        &strict(),
    )
    .expect("translates");
    assert_eq!(
        serde_json::to_value(&chat.tool_choice).expect("json"),
        json!({"type": "function", "function": {"name": "a"}})
    );
}

#[test]
fn an_empty_request_says_what_is_missing() {
    let error = chat(&json!({"model": "m"})).expect_err("no input");
    assert_eq!(error.param.as_deref(), Some("input"));
    let error = super::to_chat(b"{\"model\": 3}", &strict()).expect_err("not a request");
    assert!(
        error.message.contains("not a valid Responses API request"),
        "{}",
        error.message
    );
}

/// An OpenAI chat completion with text, two parallel tool calls and detailed usage.
fn answer(finish: &str) -> ChatResponse {
    serde_json::from_value(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1741290958, "model": "gpt-4.1-2025-04-14",
        "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": "Checking.",
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Bogotá\"}"}}
            ]}}],
        "usage": {"prompt_tokens": 36, "completion_tokens": 87, "total_tokens": 123,
                  "prompt_tokens_details": {"cached_tokens": 12}, "completion_tokens_details": {"reasoning_tokens": 5}}
    }))
    .expect("chat response")
}

const ID: &str = "resp_0123456789abcdef";

#[test]
fn an_answer_becomes_a_response_object() {
    let echo = Echo::from_body(include_str!("fixtures/request_text.json").as_bytes());
    let object: Value =
        serde_json::from_slice(&response_json(&answer("tool_calls"), ID, "smart", 5, &echo)).expect("json");
    assert_eq!(object, fixture(include_str!("fixtures/response_tools.json")));
}

#[test]
fn a_length_finish_is_incomplete_with_its_reason() {
    let mut cut = answer("length");
    cut.choices[0].message.tool_calls = None;
    let object: Value = serde_json::from_slice(&response_json(&cut, ID, "smart", 5, &Echo::default())).expect("json");
    assert_eq!(object["status"], "incomplete");
    assert_eq!(object["incomplete_details"], json!({"reason": "max_output_tokens"}));
    assert_eq!(object["output"][0]["status"], "incomplete");
    assert_eq!(object["output"][0]["content"][0]["text"], "Checking.");
}

/// The canonical stream of `answer`: role, the text in two pieces, the two calls with their
/// arguments in fragments, the finish reason, usage.
fn chunks(finish: FinishReason) -> Vec<ChatChunk> {
    let chunk = |delta: Delta, finish_reason: Option<FinishReason>| {
        ChatChunk::with_choice(
            "chatcmpl-1",
            "gpt-4.1-2025-04-14",
            1741290958,
            ChunkChoice {
                delta,
                finish_reason,
                ..ChunkChoice::default()
            },
        )
    };
    let text = |t: &str| Delta {
        content: Some(t.to_string()),
        ..Delta::default()
    };
    let call = |index: u32, id: Option<&str>, name: Option<&str>, arguments: &str| Delta {
        tool_calls: Some(vec![ToolCallDelta {
            index,
            id: id.map(str::to_string),
            kind: id.map(|_| "function".to_string()),
            function: Some(FunctionCallDelta {
                name: name.map(str::to_string),
                arguments: Some(arguments.to_string()),
            }),
        }]),
        ..Delta::default()
    };
    let mut usage = Usage::new(36, 87, Some(12));
    usage.completion_tokens_details = Some(crate::llm::chat::CompletionTokensDetails {
        reasoning_tokens: Some(5),
    });
    vec![
        chunk(
            Delta {
                role: Some("assistant".to_string()),
                content: Some(String::new()),
                ..Delta::default()
            },
            None,
        ),
        chunk(text("Check"), None),
        chunk(text("ing."), None),
        chunk(call(0, Some("call_a"), Some("get_weather"), ""), None),
        chunk(call(0, None, None, "{\"location\":"), None),
        chunk(call(0, None, None, "\"Paris\"}"), None),
        chunk(
            call(1, Some("call_b"), Some("get_weather"), "{\"location\":\"Bogotá\"}"),
            None,
        ),
        chunk(Delta::default(), Some(finish)),
        ChatChunk::usage_only("chatcmpl-1", "gpt-4.1-2025-04-14", 1741290958, usage),
    ]
}

/// The events of a stream, as (event name, data).
fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    SseFramer::new()
        .feed(bytes, &mut |frame| {
            if let crate::llm::Frame::Sse { event, data } = frame {
                out.push((
                    event.to_string(),
                    serde_json::from_str(data).expect("event data is JSON"),
                ));
            }
            Ok(())
        })
        .expect("frames");
    out
}

fn encode(chunks: &[ChatChunk], error: Option<&UpstreamError>) -> Vec<(String, Value)> {
    let echo = Echo::from_body(include_str!("fixtures/request_text.json").as_bytes());
    let mut encoder = ResponsesStreamEncoder::new(ID.to_string(), "smart".to_string(), echo, 5);
    let mut out = BytesMut::new();
    for chunk in chunks {
        encoder.chunk(chunk, &mut out);
    }
    match error {
        Some(error) => encoder.error(error, &mut out),
        None => encoder.done(&mut out),
    }
    let events = events(&out);
    for (index, (name, data)) in events.iter().enumerate() {
        assert_eq!(&data["type"], name, "the event name is its type");
        assert_eq!(data["sequence_number"], json!(index), "sequence numbers count from 0");
    }
    events
}

#[test]
fn a_stream_is_the_exact_event_sequence_of_the_api_reference() {
    let events = encode(&chunks(FinishReason::ToolCalls), None);
    let expected: Vec<Value> = include_str!("fixtures/stream_tools.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("fixture line"))
        .collect();
    let got: Vec<Value> = events.into_iter().map(|(_, data)| data).collect();
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (got, expected) in got.iter().zip(&expected) {
        assert_eq!(got, expected);
    }
}

#[test]
fn the_streamed_response_is_the_non_streamed_one() {
    for finish in [FinishReason::ToolCalls, FinishReason::Length, FinishReason::Stop] {
        let chunks = chunks(finish);
        let mut accumulator = Accumulator::new();
        chunks.iter().for_each(|c| accumulator.push(c));
        let echo = Echo::from_body(include_str!("fixtures/request_text.json").as_bytes());
        let whole: Value =
            serde_json::from_slice(&response_json(&accumulator.finish(), ID, "smart", 5, &echo)).expect("json");
        let events = encode(&chunks, None);
        let (name, last) = events.last().expect("events");
        let expected_name = match finish {
            FinishReason::Length => "response.incomplete",
            _ => "response.completed",
        };
        assert_eq!(name, expected_name);
        assert_eq!(last["response"], whole, "{finish:?}");
    }
}

#[test]
fn a_failure_mid_stream_is_an_error_then_response_failed_never_completed() {
    let chunks = chunks(FinishReason::Stop);
    let error = UpstreamError::new(crate::llm::FailureClass::Overloaded, 529, "Overloaded");
    let events = encode(&chunks[..4], Some(&error));
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!names.contains(&"response.completed"), "{names:?}");
    let (name, error_event) = &events[events.len() - 2];
    assert_eq!(name, "error");
    assert_eq!(error_event["message"], "Overloaded");
    assert_eq!(error_event["code"], "upstream_overloaded");
    let (name, failed) = &events[events.len() - 1];
    assert_eq!(name, "response.failed");
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(failed["response"]["error"]["message"], "Overloaded");
    assert_eq!(failed["response"]["output"][0]["content"][0]["text"], "Checking.");
}

#[test]
fn an_empty_answer_is_one_empty_message_streamed_or_not() {
    let finish = ChatChunk::with_choice(
        "c",
        "m",
        1,
        ChunkChoice {
            finish_reason: Some(FinishReason::Stop),
            ..ChunkChoice::default()
        },
    );
    let events = encode(std::slice::from_ref(&finish), None);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let mut accumulator = Accumulator::new();
    accumulator.push(&finish);
    let whole: Value =
        serde_json::from_slice(&response_json(&accumulator.finish(), ID, "m", 1, &Echo::default())).expect("json");
    assert_eq!(whole["output"], events[7].1["response"]["output"]);
}

/// Every value of `value` replaced, one at a time, by each JSON kind.
fn mutations(value: &Value) -> Vec<Value> {
    let kinds = [
        json!(null),
        json!(7),
        json!("x"),
        json!([]),
        json!({}),
        json!([{}]),
        json!(true),
    ];
    let mut out: Vec<Value> = kinds.to_vec();
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                for mutated in mutations(inner) {
                    let mut copy = map.clone();
                    copy.insert(key.clone(), mutated);
                    out.push(Value::Object(copy));
                }
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                for mutated in mutations(inner) {
                    let mut copy = items.clone();
                    copy[index] = mutated;
                    out.push(Value::Array(copy));
                }
            }
        }
        _ => {}
    }
    out
}

#[test]
fn no_request_makes_the_translation_panic() {
    let text = include_str!("fixtures/request_tools.json");
    let lenient = TranslateOptions {
        drop_unsupported: true,
        ..strict()
    };
    // Cut anywhere, and every value swapped for every JSON kind: an answer or an error.
    for end in 0..text.len() {
        if text.is_char_boundary(end) {
            let _ = to_chat(&text.as_bytes()[..end], &strict());
        }
    }
    let mut translated = 0;
    for body in mutations(&fixture(text)) {
        let bytes = body.to_string();
        let strict = to_chat(bytes.as_bytes(), &strict());
        translated += usize::from(strict.is_ok());
        let _ = to_chat(bytes.as_bytes(), &lenient);
        let _ = Echo::from_body(bytes.as_bytes());
    }
    assert!(translated > 100, "most single changes still translate ({translated})");
}
