use serde_json::json;

use super::*;

fn translate(request: serde_json::Value) -> Result<serde_json::Value, TranslateError> {
    let request: ChatRequest = serde_json::from_value(request).expect("a chat request");
    converse_request(&request, &TranslateOptions::strict("bedrock")).map(|r| serde_json::to_value(r).expect("json"))
}

#[test]
fn a_conversation_becomes_converse_messages_with_system_blocks_and_inference_config() {
    let body = translate(json!({
        "model": "smart",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]}
        ],
        "max_completion_tokens": 512, "max_tokens": 100, "temperature": 0.5, "top_p": 0.9,
        "stop": ["END"], "user": "user-42", "stream": true, "stream_options": {"include_usage": true}
    }))
    .expect("translated");
    assert_eq!(
        body,
        json!({
            "messages": [
                {"role": "user", "content": [{"text": "Hello"}]},
                {"role": "assistant", "content": [{"text": "Bonjour"}]},
                {"role": "user", "content": [{"text": "What is this?"},
                    {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}}]}
            ],
            "system": [{"text": "Be brief."}, {"text": "Answer in French."}],
            "inferenceConfig": {"maxTokens": 512, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
            "requestMetadata": {"user": "user-42"}
        })
    );
}

#[test]
fn tools_calls_and_several_results_become_tool_config_tool_use_and_one_user_turn() {
    let body = translate(json!({
        "model": "smart",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "tooluse_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "tooluse_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "tooluse_2", "content": [{"type": "text", "text": "24C"}]},
            {"role": "user", "content": "Which is warmer?"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}}
    }))
    .expect("translated");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"text": "Weather in Paris and Rome?"}]},
            {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Paris"}}},
                {"toolUse": {"toolUseId": "tooluse_2", "name": "weather", "input": {"city": "Rome"}}}
            ]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18C"}]}},
                {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "24C"}]}},
                {"text": "Which is warmer?"}
            ]}
        ])
    );
    assert_eq!(
        body["toolConfig"],
        json!({
            "tools": [{"toolSpec": {"name": "weather", "description": "Current weather", "inputSchema": {"json":
                {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}],
            "toolChoice": {"tool": {"name": "weather"}}
        })
    );
}

#[test]
fn tool_choice_modes_map_to_auto_any_or_no_tools() {
    let with = |choice: serde_json::Value, messages: serde_json::Value| {
        translate(json!({"model": "m", "messages": messages, "tool_choice": choice,
            "tools": [{"type": "function", "function": {"name": "f"}}]}))
    };
    let plain = json!([{"role": "user", "content": "hi"}]);
    let body = with(json!("auto"), plain.clone()).expect("auto");
    assert_eq!(body["toolConfig"]["toolChoice"], json!({"auto": {}}));
    assert_eq!(
        body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
        json!({"type": "object", "properties": {}})
    );
    assert_eq!(
        with(json!("required"), plain.clone()).expect("required")["toolConfig"]["toolChoice"],
        json!({"any": {}})
    );
    assert_eq!(with(json!("none"), plain).expect("none").get("toolConfig"), None);

    let history = json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "done"}
    ]);
    let error = with(json!("none"), history).expect_err("none with tool history");
    assert_eq!(error.param.as_deref(), Some("tool_choice"));
}

#[test]
fn http_image_urls_are_refused_by_name_and_unknown_formats_too() {
    let error = translate(json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}))
    .expect_err("an http URL");
    assert_eq!(error.param.as_deref(), Some("messages[0].content[1].image_url"));
    assert!(error.message.contains("never"), "{}", error.message);

    let error = translate(json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]}))
    .expect_err("a tiff");
    assert!(error.message.contains("image/tiff"), "{}", error.message);
}

#[test]
fn parameters_without_a_converse_equivalent_are_refused_by_name_or_dropped() {
    for (field, value) in [
        ("logit_bias", json!({"42": 1})),
        ("presence_penalty", json!(0.5)),
        ("seed", json!(7)),
        ("n", json!(2)),
        ("parallel_tool_calls", json!(false)),
        ("response_format", json!({"type": "json_object"})),
    ] {
        let mut request = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        request[field] = value;
        let error = translate(request.clone()).expect_err(field);
        assert_eq!(error.param.as_deref(), Some(field), "{}", error.message);
        assert!(error.message.contains("dropUnsupportedParams"), "{}", error.message);

        let parsed: ChatRequest = serde_json::from_value(request).expect("request");
        let lenient = TranslateOptions {
            drop_unsupported: true,
            ..TranslateOptions::strict("bedrock")
        };
        converse_request(&parsed, &lenient).unwrap_or_else(|e| panic!("{field} dropped: {e}"));
    }
    // An explicit null is the same as an absent field.
    translate(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": null})).expect("null");
}

#[test]
fn json_schema_response_format_becomes_output_config() {
    let body = translate(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}}))
    .expect("translated");
    assert_eq!(
        body["outputConfig"],
        json!({"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
            "name": "answer", "schema": "{\"properties\":{\"a\":{\"type\":\"string\"}},\"type\":\"object\"}"}}}})
    );
}

#[test]
fn broken_tool_arguments_and_missing_tool_call_ids_are_named() {
    let error = translate(json!({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}))
    .expect_err("bad arguments");
    assert_eq!(
        error.param.as_deref(),
        Some("messages[0].tool_calls[0].function.arguments")
    );
    let error = translate(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]})).expect_err("no id");
    assert_eq!(error.param.as_deref(), Some("messages[0].tool_call_id"));
}
