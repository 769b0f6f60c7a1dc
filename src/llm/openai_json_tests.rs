use serde_json::{json, Map, Value};

use super::*;
use crate::llm::chat::{
    ChatRequest, CompletionTokensDetails, ContentPart, FunctionCall, PromptTokensDetails, Role, ToolCall,
};

fn response(content: Option<&str>) -> ChatResponse {
    ChatResponse {
        id: "msg_01XFDUDYJgAACzvnptvVoYEL".to_string(),
        object: "chat.completion".to_string(),
        created: 1_733_353_200,
        model: "smart".to_string(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_string(),
                content: content.map(str::to_string),
                tool_calls: None,
                refusal: None,
                rest: Map::new(),
            },
            finish_reason: Some(FinishReason::Stop),
            logprobs: None,
        }],
        usage: Some(Usage::new(12, 48, None)),
        rest: Map::new(),
    }
}

/// The hand-written answer is byte for byte serde's, for every shape an answer takes.
fn assert_same_as_serde(response: &ChatResponse) {
    let ours = write_chat_response(response);
    let serde = serde_json::to_vec(response).expect("serde");
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&serde),
        "the written answer differs from serde_json's"
    );
}

#[test]
fn a_text_answer_is_written_as_serde_writes_it() {
    assert_same_as_serde(&response(Some("Hello! How can I help you today?")));
    assert_same_as_serde(&response(Some("")));
    assert_same_as_serde(&response(None));
}

#[test]
fn strings_that_need_escapes_are_escaped_as_serde_escapes_them() {
    for text in [
        "a \"quoted\" word",
        "back\\slash",
        "line one\nline two\ttabbed\r",
        "bell \u{7} and nul \u{0} and unit separator \u{1f}",
        "delete \u{7f} stays, as do é, 漢字 and 🦀",
        "</script> and \u{2028} are not escaped by serde either",
    ] {
        let mut r = response(Some(text));
        r.id = format!("id-{text}");
        r.model = text.to_string();
        assert_same_as_serde(&r);
        let back: ChatResponse = serde_json::from_slice(&write_chat_response(&r)).expect("valid JSON");
        assert_eq!(back.choices[0].message.content.as_deref(), Some(text));
    }
}

#[test]
fn tool_calls_refusals_extra_fields_and_every_finish_reason_are_written_as_serde_writes_them() {
    let mut r = response(None);
    r.choices[0].message.tool_calls = Some(vec![
        ToolCall {
            id: "toolu_01".to_string(),
            kind: "function".to_string(),
            function: FunctionCall {
                name: "get_weather".to_string(),
                arguments: r#"{"city":"Paris","units":"°C"}"#.to_string(),
            },
        },
        ToolCall {
            id: "toolu_02".to_string(),
            kind: "function".to_string(),
            function: FunctionCall {
                name: "get_time".to_string(),
                arguments: "{}".to_string(),
            },
        },
    ]);
    r.choices[0].message.refusal = Some("I can't help with \"that\".".to_string());
    r.choices[0]
        .message
        .rest
        .insert("reasoning_content".to_string(), json!("First, the weather.\n"));
    r.choices[0].logprobs = Some(json!({"content": [{"token": "Hi", "logprob": -0.5}]}));
    r.rest.insert("system_fingerprint".to_string(), json!("fp_1"));
    r.rest.insert("service_tier".to_string(), Value::Null);
    r.usage = Some(Usage {
        prompt_tokens: 2_000_000,
        completion_tokens: 0,
        total_tokens: 2_000_000,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: Some(1_500_000),
        }),
        completion_tokens_details: Some(CompletionTokensDetails {
            reasoning_tokens: Some(7),
        }),
    });
    for finish in [
        None,
        Some(FinishReason::Stop),
        Some(FinishReason::Length),
        Some(FinishReason::ToolCalls),
        Some(FinishReason::ContentFilter),
        Some(FinishReason::FunctionCall),
        Some(FinishReason::Unknown),
    ] {
        r.choices[0].finish_reason = finish;
        assert_same_as_serde(&r);
    }
    let mut two = response(Some("one"));
    let mut second = two.choices[0].clone();
    second.index = 1;
    second.message.content = Some("two".to_string());
    two.choices.push(second);
    two.usage = None;
    two.created = -1;
    assert_same_as_serde(&two);
    two.choices.clear();
    assert_same_as_serde(&two);
}

#[test]
fn content_is_read_as_a_string_or_as_parts_and_anything_else_is_refused() {
    let request: ChatRequest = serde_json::from_str(
        r#"{"model":"m","messages":[
            {"role":"user","content":"plain \"text\" \u00e9"},
            {"role":"user","content":[{"type":"text","text":"part"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
            {"role":"assistant","content":null},
            {"role":"assistant"}
        ]}"#,
    )
    .expect("request");
    assert_eq!(request.messages[0].role, Role::User);
    assert_eq!(
        request.messages[0].content,
        Some(Content::Text("plain \"text\" é".to_string()))
    );
    match &request.messages[1].content {
        Some(Content::Parts(parts)) => {
            assert_eq!(parts.len(), 2);
            assert_eq!(
                parts[0],
                ContentPart::Text {
                    text: "part".to_string()
                }
            );
            assert!(matches!(parts[1], ContentPart::ImageUrl { .. }));
        }
        other => panic!("parts expected, got {other:?}"),
    }
    assert_eq!(request.messages[2].content, None);
    assert_eq!(request.messages[3].content, None);
    // From a value tree too (the Responses and Anthropic surfaces build requests that way).
    let from_value: Content = serde_json::from_value(json!([{"type": "text", "text": "v"}])).expect("value");
    assert_eq!(
        from_value,
        Content::Parts(vec![ContentPart::Text { text: "v".to_string() }])
    );
    for bad in ["42", "{\"text\":\"x\"}", "true", "[{\"type\":\"video\"}]"] {
        let err = serde_json::from_str::<Content>(bad).expect_err(bad).to_string();
        assert!(
            err.contains("a string or an array of content parts") || err.contains("variant"),
            "{bad}: {err}"
        );
    }
    // A written request reads back the same.
    let text = serde_json::to_string(&request).expect("serialize");
    assert_eq!(serde_json::from_str::<ChatRequest>(&text).expect("read back"), request);
}
