use serde_json::{json, Value};

use crate::llm::anthropic::{estimate_input_tokens, to_chat_request};
use crate::llm::TranslateError;

fn translate(body: Value) -> Result<Value, TranslateError> {
    let request = to_chat_request(body.to_string().as_bytes())?;
    Ok(serde_json::to_value(&request).expect("json"))
}

fn refused(body: Value) -> TranslateError {
    translate(body).expect_err("refused")
}

#[test]
fn a_claude_code_style_request_is_translated() {
    let body = json!({
        "model": "smart",
        "max_tokens": 32000,
        "stream": true,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be careful."}
        ],
        "metadata": {"user_id": "user_abc_session_1"},
        "tools": [{"name": "Read", "description": "Reads a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}, "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "stop_sequences": ["END"],
        "temperature": 1,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Read a.txt and b.png", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should read both.", "signature": "sig"},
                {"type": "text", "text": "Reading."},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.txt"}},
                {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {"path": "b.png"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "hello"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": [
                    {"type": "text", "text": "an image"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
                ]},
                {"type": "tool_result", "tool_use_id": "toolu_3", "is_error": true, "content": "no such file"},
                {"type": "text", "text": "What do they say?"}
            ]}
        ]
    });
    let expected = json!({
        "model": "smart",
        "stream": true,
        "max_tokens": 32000,
        "temperature": 1.0,
        "stop": ["END"],
        "user": "user_abc_session_1",
        "tools": [{"type": "function", "function": {"name": "Read", "description": "Reads a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "messages": [
            {"role": "system", "content": "You are Claude Code.\n\nBe careful."},
            {"role": "user", "content": "Read a.txt and b.png"},
            {"role": "assistant", "content": "Reading.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "Read", "arguments": "{\"path\":\"a.txt\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "Read", "arguments": "{\"path\":\"b.png\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "hello"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "an image"},
            {"role": "tool", "tool_call_id": "toolu_3", "content": "Error: no such file"},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "text", "text": "What do they say?"}
            ]}
        ]
    });
    assert_eq!(translate(body).expect("translated"), expected);
}

#[test]
fn tool_choice_and_documents_are_mapped() {
    let base = |extra: Value| {
        let mut body = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}]});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    for (choice, expected) in [
        (json!({"type": "any"}), json!("required")),
        (json!({"type": "none"}), json!("none")),
        (
            json!({"type": "tool", "name": "f"}),
            json!({"type": "function", "function": {"name": "f"}}),
        ),
    ] {
        assert_eq!(
            translate(base(json!({"tool_choice": choice}))).expect("out")["tool_choice"],
            expected
        );
    }
    let out = translate(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}, "title": "r.pdf"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    ]}]}))
    .expect("out");
    assert_eq!(
        out["messages"][0]["content"],
        json!([
            {"type": "file", "file": {"filename": "r.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
            {"type": "text", "text": "plain"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
        ])
    );
}

#[test]
fn what_cannot_be_carried_is_refused_by_name() {
    let message = json!([{"role": "user", "content": "x"}]);
    for (body, param) in [
        (
            json!({"model": "m", "max_tokens": 1, "messages": message, "thinking": {"type": "enabled", "budget_tokens": 2048}}),
            "thinking",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": message, "top_k": 3}),
            "top_k",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": message, "container": "c"}),
            "container",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": message, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "tools[0]",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": message, "metadata": {"user_id": "u", "tier": "x"}}),
            "metadata.tier",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "file_1"}}]}]}),
            "messages[0].content[0].source",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "search_result", "source": "s", "title": "t", "content": []}]}]}),
            "messages[0].content[0]",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
        ),
    ] {
        let error = refused(body.clone());
        assert_eq!(error.param.as_deref(), Some(param), "{body}: {}", error.message);
    }
    let error = refused(
        json!({"model": "m", "max_tokens": 1, "messages": message, "thinking": {"type": "enabled", "budget_tokens": 2048}}),
    );
    assert!(error.message.contains("'thinking'"), "{}", error.message);
    // Disabled thinking asks for nothing.
    assert!(
        translate(json!({"model": "m", "max_tokens": 1, "messages": message, "thinking": {"type": "disabled"}}))
            .is_ok()
    );
}

#[test]
fn token_estimates_count_text_and_not_base64() {
    let text = "word ".repeat(400);
    let plain = json!({"model": "m", "messages": [{"role": "user", "content": text}]});
    let estimate = estimate_input_tokens(plain.to_string().as_bytes()).expect("estimate");
    assert!((500..=520).contains(&estimate), "{estimate}");
    let image = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A".repeat(2_000_000)}}
    ]}]});
    let estimate = estimate_input_tokens(image.to_string().as_bytes()).expect("estimate");
    assert!(
        (1_600..=1_610).contains(&estimate),
        "an image is not 500,000 tokens of base64: {estimate}"
    );
    // count_tokens bodies have no max_tokens, and thinking does not stop an estimate.
    let thinking = json!({"model": "m", "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": [{"role": "user", "content": "hi"}]});
    assert!(estimate_input_tokens(thinking.to_string().as_bytes()).is_ok());
}
