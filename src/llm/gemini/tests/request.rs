use serde_json::json;

use super::{chat, strict, translated};
use crate::llm::gemini::{to_generate_content, UNKNOWN_THOUGHT_SIGNATURE};
use crate::llm::TranslateOptions;

#[test]
fn system_and_developer_messages_become_the_system_instruction_and_turns_alternate() {
    let body = translated(json!({
        "model": "smart",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": "How are you?"},
            {"role": "user", "content": [{"type": "text", "text": "Really?"}]}
        ],
        "temperature": 0.3, "top_p": 0.9, "stop": "END", "max_completion_tokens": 300, "max_tokens": 100,
        "stream_options": {"include_usage": true}
    }));
    assert_eq!(
        body,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Hello"}]},
                {"role": "model", "parts": [{"text": "Bonjour"}]},
                {"role": "user", "parts": [{"text": "How are you?"}, {"text": "Really?"}]}
            ],
            "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Answer in French."}]},
            "generationConfig": {"temperature": 0.3, "topP": 0.9, "maxOutputTokens": 300, "stopSequences": ["END"]}
        })
    );
}

#[test]
fn images_are_inline_data_or_urls_gemini_fetches_itself() {
    let body = translated(json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.JPG?size=large"}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/dog"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
    ]}]}));
    assert_eq!(
        body["contents"][0]["parts"],
        json!([
            {"text": "Compare"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?size=large"}},
            {"fileData": {"fileUri": "gs://bucket/dog"}},
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
        ])
    );
    let error = to_generate_content(
        &chat(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "http://intranet/cat.png"}}
        ]}]})),
        "gemini-2.5-flash",
        &strict(),
    )
    .expect_err("the gateway never fetches a URL");
    assert_eq!(error.param.as_deref(), Some("messages[0].content[1].image_url.url"));
    assert!(error.message.contains("data URL"), "{}", error.message);
}

#[test]
fn tools_calls_and_results_round_trip_by_name_and_id() {
    let body = translated(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}}
            ], "refusal": null, "annotations": [], "audio": null},
            {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\":21}"},
            {"role": "tool", "tool_call_id": "call_b", "content": "rainy"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}}],
        "tool_choice": "auto",
        "parallel_tool_calls": true
    }));
    assert_eq!(
        body,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Weather in Paris and Tokyo?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"id": "call_a", "name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": UNKNOWN_THOUGHT_SIGNATURE},
                    {"functionCall": {"id": "call_b", "name": "get_weather", "args": {"city": "Tokyo"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"id": "call_a", "name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"id": "call_b", "name": "get_weather", "response": {"content": "rainy"}}}
                ]}
            ],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather now",
                "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}}
        })
    );
}

#[test]
fn a_tool_message_may_name_its_function_and_earlier_reasoning_is_not_sent_back() {
    let body = translated(json!({"model": "m", "messages": [
        {"role": "user", "content": "What time is it?"},
        {"role": "assistant", "content": "Let me check.", "reasoning_content": "The user wants the time."},
        {"role": "tool", "tool_call_id": "toolu_01", "name": "get_time", "content": "12:00"}
    ]}));
    assert_eq!(
        body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "What time is it?"}]},
            {"role": "model", "parts": [{"text": "Let me check."}]},
            {"role": "user", "parts": [{"functionResponse": {"id": "toolu_01", "name": "get_time", "response": {"content": "12:00"}}}]}
        ])
    );
}

#[test]
fn tool_choice_and_strict_tools_become_function_calling_modes() {
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let mode = |choice: serde_json::Value, strict: bool| {
        let mut tools = tools.clone();
        tools[0]["function"]["strict"] = json!(strict);
        let mut request = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools});
        if !choice.is_null() {
            request["tool_choice"] = choice;
        }
        translated(request)["toolConfig"]["functionCallingConfig"].clone()
    };
    assert_eq!(mode(json!(null), false), json!(null));
    assert_eq!(mode(json!(null), true), json!({"mode": "VALIDATED"}));
    assert_eq!(mode(json!("none"), false), json!({"mode": "NONE"}));
    assert_eq!(mode(json!("required"), true), json!({"mode": "ANY"}));
    assert_eq!(
        mode(json!({"type": "function", "function": {"name": "f"}}), false),
        json!({"mode": "ANY", "allowedFunctionNames": ["f"]})
    );
    let unknown = to_generate_content(
        &chat(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "g"}}}),
        ),
        "m",
        &strict(),
    )
    .expect_err("g is not a tool");
    assert_eq!(unknown.param.as_deref(), Some("tool_choice"));
}

#[test]
fn generation_settings_map_and_json_modes_become_response_schemas() {
    let body = translated(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "n": 2, "seed": 7, "top_k": 40, "presence_penalty": 0.5, "frequency_penalty": 0,
        "reasoning_effort": "low", "store": false, "metadata": {}, "logprobs": false,
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": true,
            "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}}
    }));
    assert_eq!(
        body["generationConfig"],
        json!({"topK": 40, "candidateCount": 2, "presencePenalty": 0.5, "seed": 7,
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object", "properties": {"a": {"type": "integer"}}},
            "thinkingConfig": {"thinkingBudget": 1024}})
    );
    let request = chat(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "reasoning_effort": "high", "response_format": {"type": "json_object"}}));
    let gemini3 = to_generate_content(&request, "gemini-3-pro-preview", &strict()).expect("translates");
    let config = serde_json::to_value(gemini3.generation_config).expect("json");
    assert_eq!(
        config,
        json!({"responseMimeType": "application/json", "thinkingConfig": {"thinkingLevel": "high"}})
    );
}

#[test]
fn what_gemini_cannot_honour_is_refused_by_name_or_dropped_when_allowed() {
    let cases = [
        (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
        (json!({"user": "u-42"}), "user"),
        (json!({"logprobs": true}), "logprobs"),
        (
            json!({"parallel_tool_calls": false, "tools": [{"type": "function", "function": {"name": "f"}}]}),
            "parallel_tool_calls",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi", "name": "ann"}]}),
            "messages[0].name",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA==", "detail": "low"}}]}]}),
            "messages[0].content[0].image_url.detail",
        ),
        (
            json!({"stream_options": {"include_usage": true, "chunk_size": 3}}),
            "stream_options.chunk_size",
        ),
    ];
    for (extra, param) in cases {
        let mut request = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (key, value) in extra.as_object().expect("object") {
            request[key] = value.clone();
        }
        let request = chat(request);
        let error = to_generate_content(&request, "m", &strict()).expect_err(param);
        assert_eq!(error.param.as_deref(), Some(param));
        assert!(error.message.contains("dropUnsupportedParams"), "{}", error.message);
        let lenient = TranslateOptions {
            drop_unsupported: true,
            ..strict()
        };
        to_generate_content(&request, "m", &lenient).unwrap_or_else(|e| panic!("{param} is dropped: {e}"));
    }
}

#[test]
fn broken_conversations_are_400s_naming_the_field() {
    let error = |messages: serde_json::Value| {
        to_generate_content(&chat(json!({"model": "m", "messages": messages})), "m", &strict())
            .expect_err("refused")
            .param
    };
    assert_eq!(
        error(json!([{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_x", "content": "1"}])),
        Some("messages[1].tool_call_id".to_string())
    );
    assert_eq!(
        error(
            json!([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}])
        ),
        Some("messages[0].tool_calls[0].function.arguments".to_string())
    );
    assert_eq!(
        error(json!([{"role": "system", "content": "only a system prompt"}])),
        Some("messages".to_string())
    );
    assert_eq!(
        error(json!([{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}])),
        Some("messages[0].content[0].file.file_id".to_string())
    );
}
