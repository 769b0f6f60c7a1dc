use serde_json::{json, Value};

use crate::llm::anthropic::to_messages_request;
use crate::llm::chat::ChatRequest;
use crate::llm::{TranslateError, TranslateOptions};

fn translate(request: Value) -> Result<Value, TranslateError> {
    translate_with(request, &TranslateOptions::strict("anthropic"))
}

fn translate_with(request: Value, options: &TranslateOptions) -> Result<Value, TranslateError> {
    let request: ChatRequest = serde_json::from_value(request).expect("a chat request");
    let out = to_messages_request(&request, "claude-sonnet-4-5", options)?;
    Ok(serde_json::to_value(&out).expect("json"))
}

fn refused(request: Value) -> TranslateError {
    translate(request).expect_err("refused")
}

#[test]
fn a_whole_conversation_with_tools_and_images_is_translated() {
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let request = json!({
        "model": "smart",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here and there?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}"), "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/map.jpg"}}
            ]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
            {"role": "user", "content": "Thanks. And tomorrow?"},
            {"role": "user", "content": "In Celsius."}
        ],
        "max_completion_tokens": 300,
        "max_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["\n\nHuman:"],
        "stream": true,
        "stream_options": {"include_usage": true},
        "user": "user-42",
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Current weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                  {"type": "function", "function": {"name": "noargs"}}],
        "tool_choice": "required",
        "parallel_tool_calls": false
    });
    let expected = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use metric units."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here and there?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/map.jpg"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris", "days": 2}},
                {"type": "tool_use", "id": "call_2", "name": "weather", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
                {"type": "text", "text": "Thanks. And tomorrow?"},
                {"type": "text", "text": "In Celsius."}
            ]}
        ],
        "metadata": {"user_id": "user-42"},
        "stop_sequences": ["\n\nHuman:"],
        "stream": true,
        "temperature": 0.3,
        "top_p": 0.9,
        "tools": [
            {"name": "weather", "description": "Current weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "noargs", "input_schema": {"type": "object", "properties": {}}}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
    });
    assert_eq!(translate(request).expect("translated"), expected);
}

#[test]
fn tool_arguments_travel_as_written() {
    let request: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"z\": 1, \"a\": [2]}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"}
    ]}))
    .expect("request");
    let out = to_messages_request(&request, "claude", &TranslateOptions::strict("anthropic")).expect("out");
    let text = serde_json::to_string(&out).expect("json");
    assert!(text.contains(r#""input":{"z": 1, "a": [2]}"#), "{text}");
}

#[test]
fn defaults_one_system_string_and_the_default_max_tokens() {
    let out = translate(json!({"model": "m", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}
    ]}))
    .expect("out");
    assert_eq!(out["system"], "Be brief.");
    assert_eq!(out["max_tokens"], 4096);
    assert_eq!(
        out["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
    );
    assert!(out.get("stream").is_none() && out.get("tool_choice").is_none());
}

#[test]
fn tool_choice_modes_are_mapped() {
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    for (choice, expected) in [
        (json!("auto"), json!({"type": "auto"})),
        (json!("none"), json!({"type": "none"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!({"type": "tool", "name": "f"}),
        ),
    ] {
        let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}))
            .expect("out");
        assert_eq!(out["tool_choice"], expected);
    }
    let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "parallel_tool_calls": false}))
        .expect("out");
    assert_eq!(
        out["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    let error =
        refused(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}));
    assert_eq!(error.param.as_deref(), Some("tool_choice"));
}

#[test]
fn parameters_anthropic_cannot_honour_are_refused_by_name() {
    let base = |extra: Value| {
        let mut request = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        for (k, v) in extra.as_object().expect("object") {
            request[k] = v.clone();
        }
        request
    };
    for (extra, param) in [
        (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
        (json!({"logprobs": true}), "logprobs"),
        (json!({"presence_penalty": 0.5}), "presence_penalty"),
        (json!({"frequency_penalty": 1}), "frequency_penalty"),
        (json!({"seed": 7}), "seed"),
        (json!({"n": 2}), "n"),
        (json!({"response_format": {"type": "json_object"}}), "response_format"),
        (json!({"reasoning_effort": "high"}), "reasoning_effort"),
        (json!({"some_new_field": true}), "some_new_field"),
        (json!({"temperature": 1.5}), "temperature"),
    ] {
        let error = refused(base(extra.clone()));
        assert_eq!(error.param.as_deref(), Some(param), "{extra}");
        assert!(
            error.message.contains(&format!("'{param}'")) || param == "temperature",
            "{}",
            error.message
        );
    }
    // Defaults that ask for nothing are no reason to refuse.
    let out = translate(base(
        json!({"n": 1, "presence_penalty": 0, "frequency_penalty": 0.0, "logprobs": false,
        "seed": null, "logit_bias": {}, "response_format": {"type": "text"}, "top_k": 5}),
    ))
    .expect("neutral values pass");
    assert_eq!(out["top_k"], 5);
}

#[test]
fn drop_unsupported_params_drops_instead_of_refusing() {
    let lenient = TranslateOptions {
        drop_unsupported: true,
        ..TranslateOptions::strict("anthropic")
    };
    let out = translate_with(
        json!({"model": "m", "messages": [{"role": "user", "content": "x", "name": "ann"}], "seed": 1, "logit_bias": {"1": 2}}),
        &lenient,
    )
    .expect("dropped");
    assert!(out.get("seed").is_none() && out.get("logit_bias").is_none());
    // Values out of range are still refused: dropping them would change the answer's nature.
    assert!(translate_with(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 2}),
        &lenient
    )
    .is_err());
}

#[test]
fn content_anthropic_cannot_take_is_refused_naming_the_part() {
    let user = |content: Value| json!({"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": content}]});
    for (content, param) in [
        (
            json!([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]),
            "messages[1].content[1]",
        ),
        (
            json!([{"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]),
            "messages[1].content[0]",
        ),
        (
            json!([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]),
            "messages[1].content[0]",
        ),
        (
            json!([{"type": "file", "file": {"file_id": "file-abc"}}]),
            "messages[1].content[0]",
        ),
        (
            json!([{"type": "file", "file": {"file_data": "data:application/zip;base64,AAAA", "filename": "a.zip"}}]),
            "messages[1].content[0]",
        ),
    ] {
        assert_eq!(
            refused(user(content.clone())).param.as_deref(),
            Some(param),
            "{content}"
        );
    }
    let error = refused(json!({"model": "m", "messages": [{"role": "user", "content": "x", "name": "ann"}]}));
    assert_eq!(error.param.as_deref(), Some("messages[0].name"));
    let error = refused(json!({"model": "m", "messages": [{"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}));
    assert_eq!(
        error.param.as_deref(),
        Some("messages[1].tool_calls[0].function.arguments")
    );
    let error = refused(json!({"model": "m", "messages": [{"role": "system", "content": "only a system prompt"}]}));
    assert_eq!(error.param.as_deref(), Some("messages"));
}

#[test]
fn pdf_and_text_files_become_documents() {
    let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0xLjQ=", "filename": "report.pdf"}},
        {"type": "file", "file": {"file_data": "data:text/plain;base64,aGVsbG8=", "filename": "notes.txt"}}
    ]}]}))
    .expect("out");
    assert_eq!(
        out["messages"][0]["content"],
        json!([
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="}, "title": "report.pdf"},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hello"}, "title": "notes.txt"}
        ])
    );
}
