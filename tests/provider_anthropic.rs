//! `type: anthropic` providers and the `/v1/messages` surface, against fake upstreams that
//! speak the Anthropic Messages API and OpenAI Chat Completions exactly (tests/support/scripted.rs).

mod support;

use axum::http::HeaderMap;
use modelgate::gateway::Running;
use serde_json::{json, Value};
use support::scripted::*;
use support::*;

const KEY: &str = "sk-ant-provider-secret";
const OPENAI_KEY: &str = "sk-openai-provider-secret";
const CLIENT_KEY: &str = "client-key-must-not-travel";

struct Setup {
    gateway: Running,
    claude: Scripted,
    openai: Scripted,
    _config: ConfigDir,
}

/// Aliases: `smart` (Anthropic), `loose` (Anthropic, dropUnsupportedParams, its own version
/// and default max_tokens), `gpt` (OpenAI-compatible), `fake` (the mock).
async fn setup() -> Setup {
    let claude = Scripted::anthropic().await;
    let openai = Scripted::openai().await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(mock_provider()
            + &anthropic_provider("claude", &claude, KEY, "")
            + &anthropic_provider(
                "lenient",
                &claude,
                KEY,
                "  dropUnsupportedParams: true\n  anthropic: {version: '2024-10-22', defaultMaxTokens: 512}",
            )
            + &openai_provider("relay", &openai, OPENAI_KEY)
            + &alias("smart", "{target: claude/claude-sonnet-4-5}")
            + &alias("loose", "{target: lenient/claude-haiku-4-5}")
            + &alias("gpt", "{target: relay/gpt-4o}")
            + &alias("fake", "{target: mock/demo}")),
    );
    let gateway = start_gateway(&config).await;
    Setup {
        gateway,
        claude,
        openai,
        _config: config,
    }
}

/// Posts a body with the client's own credentials (which must never travel upstream).
async fn send(gateway: &Running, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, String) {
    let mut request = client()
        .post(format!("http://{}{path}", gateway.addr))
        .header("content-type", "application/json")
        .header("x-api-key", CLIENT_KEY)
        .header("authorization", format!("Bearer {CLIENT_KEY}"))
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the gateway answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

async fn post_json(gateway: &Running, path: &str, body: Value) -> (u16, HeaderMap, Value) {
    let (status, headers, text) = send(gateway, path, &body.to_string(), &[]).await;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, value)
}

/// The upstream got the provider's key and version, and none of the client's credentials.
fn assert_provider_credentials(seen: &Recorded, version: &str) {
    assert_eq!(seen.header("x-api-key").as_deref(), Some(KEY));
    assert_eq!(seen.header("anthropic-version").as_deref(), Some(version));
    assert_eq!(
        seen.header("authorization"),
        None,
        "the client's Authorization stays at the gateway"
    );
}

fn hello(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello there"}
    ], "max_tokens": 200, "temperature": 0.5})
}

async fn tokens(gateway: &Running, alias: &str, provider: &str, direction: &str) -> f64 {
    let series =
        format!(r#"modelgate_tokens_total{{alias="{alias}",provider="default/{provider}",direction="{direction}"}}"#);
    metric(gateway, &series).await
}

#[tokio::test]
async fn chat_completions_to_an_anthropic_provider_are_translated_both_ways() {
    let s = setup().await;
    let (status, _, body) = post_json(&s.gateway, "/v1/chat/completions", hello("smart", false)).await;
    assert_eq!(status, 200, "{body}");
    let seen = s.claude.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_provider_credentials(&seen, "2023-06-01");
    assert_eq!(
        seen.body,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 200, "system": "Be brief.", "temperature": 0.5,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]})
    );
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "anthropic served claude-sonnet-4-5: hello there"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // 21 new + 100 cached + 5 written: every input token once; the cached part named.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 126, "completion_tokens": 9, "total_tokens": 135, "prompt_tokens_details": {"cached_tokens": 100}})
    );
    assert_eq!(tokens(&s.gateway, "smart", "claude", "input").await, 126.0);

    // The provider's own version and default max_tokens.
    let mut request = hello("loose", false);
    request.as_object_mut().expect("object").remove("max_tokens");
    let (status, _, _) = post_json(&s.gateway, "/v1/chat/completions", request).await;
    assert_eq!(status, 200);
    let seen = s.claude.last();
    assert_provider_credentials(&seen, "2024-10-22");
    assert_eq!(seen.body["max_tokens"], 512);
}

#[tokio::test]
async fn a_streamed_chat_completion_arrives_chunk_by_chunk_with_usage_once() {
    let s = setup().await;
    let mut request = hello("smart", true);
    request["stream_options"] = json!({"include_usage": true});
    let (status, headers, text) = send(&s.gateway, "/v1/chat/completions", &request.to_string(), &[]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(s.claude.last().body["stream"], true);
    let events = sse_data(&text);
    assert_eq!(events.last(), Some(&json!("[DONE]")));
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "anthropic served claude-sonnet-4-5: hello there");
    let usage: Vec<&Value> = events
        .iter()
        .filter(|e| !e["usage"].is_null() && e.is_object())
        .map(|e| &e["usage"])
        .collect();
    assert_eq!(
        usage,
        [
            &json!({"prompt_tokens": 126, "completion_tokens": 9, "total_tokens": 135, "prompt_tokens_details": {"cached_tokens": 100}})
        ]
    );
    let finish: Vec<&Value> = events
        .iter()
        .map(|e| &e["choices"][0]["finish_reason"])
        .filter(|f| f.is_string())
        .collect();
    assert_eq!(finish, [&json!("stop")]);

    // Without include_usage the client gets no usage chunk, and the gateway still meters.
    let before = tokens(&s.gateway, "smart", "claude", "output").await;
    let (_, _, text) = send(
        &s.gateway,
        "/v1/chat/completions",
        &hello("smart", true).to_string(),
        &[],
    )
    .await;
    assert!(!text.contains("\"usage\""), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    let after = eventually(std::time::Duration::from_secs(5), "tokens metered", || async {
        let now = tokens(&s.gateway, "smart", "claude", "output").await;
        (now > before).then_some(now)
    })
    .await;
    assert_eq!(after - before, 9.0);
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

#[tokio::test]
async fn parallel_tool_calls_and_their_results_round_trip() {
    let s = setup().await;
    let ask = json!({"model": "smart", "messages": [{"role": "user", "content": "Weather in Paris and Tokyo?"}], "tools": weather_tools()});
    let (status, _, body) = post_json(&s.gateway, "/v1/chat/completions", ask.clone()).await;
    assert_eq!(status, 200, "{body}");
    let sent = s.claude.last().body;
    assert_eq!(sent["tools"][0]["input_schema"]["required"], json!(["city"]));
    let message = &body["choices"][0]["message"];
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["content"], "Checking.");
    let calls = message["tool_calls"].as_array().expect("calls").clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], "toolu_01A");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(
        calls[0]["function"]["arguments"],
        r#"{"city":"Paris","unit":"celsius"}"#
    );

    // Streamed, the argument fragments join to the same JSON.
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let (_, _, text) = send(&s.gateway, "/v1/chat/completions", &streamed.to_string(), &[]).await;
    let mut arguments = [String::new(), String::new()];
    for event in sse_data(&text) {
        for call in event["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().expect("index") as usize;
            arguments[index].push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    for (joined, call) in arguments.iter().zip(&calls) {
        let joined: Value = serde_json::from_str(joined).expect("joined arguments are JSON");
        let whole: Value = serde_json::from_str(call["function"]["arguments"].as_str().expect("text")).expect("JSON");
        assert_eq!(joined, whole);
    }

    // parallel_tool_calls: false is Anthropic's disable_parallel_tool_use.
    let mut single = ask.clone();
    single["parallel_tool_calls"] = json!(false);
    let (_, _, body) = post_json(&s.gateway, "/v1/chat/completions", single).await;
    assert_eq!(
        s.claude.last().body["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"].as_array().map(Vec::len),
        Some(1)
    );

    // Both results go back in one user turn.
    let mut answer = ask;
    let messages = answer["messages"].as_array_mut().expect("messages");
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": calls}));
    messages.push(json!({"role": "tool", "tool_call_id": "toolu_01A", "content": "18C"}));
    messages.push(json!({"role": "tool", "tool_call_id": "toolu_01B", "content": "25C"}));
    let (status, _, body) = post_json(&s.gateway, "/v1/chat/completions", answer).await;
    assert_eq!(status, 200, "{body}");
    let sent = s.claude.last().body;
    assert_eq!(sent["messages"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        sent["messages"][1]["content"][0]["input"],
        json!({"city": "Paris", "unit": "celsius"})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "25C"}
        ]})
    );
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "results: toolu_01A=18C, toolu_01B=25C"
    );
}

#[tokio::test]
async fn images_are_sent_inline_or_as_urls_anthropic_fetches() {
    let s = setup().await;
    let request = json!({"model": "smart", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    ]}]});
    let (status, _, _) = post_json(&s.gateway, "/v1/chat/completions", request).await;
    assert_eq!(status, 200);
    assert_eq!(
        s.claude.last().body["messages"][0]["content"],
        json!([
            {"type": "text", "text": "Compare"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
        ])
    );
    let bad = json!({"model": "smart", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]});
    let (status, _, body) = post_json(&s.gateway, "/v1/chat/completions", bad).await;
    assert_eq!(
        (status, &body["error"]["param"]),
        (400, &json!("messages[0].content[0]")),
        "{body}"
    );
}

fn anthropic_error(kind: &str, message: &str) -> String {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}).to_string()
}

#[tokio::test]
async fn upstream_errors_keep_their_class_status_and_retry_after() {
    let s = setup().await;
    let ask = || hello("smart", false);
    s.claude.set(|_| {
        Reply::Json(
            429,
            vec![
                ("retry-after", "7".to_string()),
                ("anthropic-ratelimit-requests-remaining", "0".to_string()),
            ],
            anthropic_error("rate_limit_error", "Number of requests has exceeded your rate limit"),
        )
    });
    let (status, headers, body) = post_json(&s.gateway, "/v1/chat/completions", ask()).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(headers["anthropic-ratelimit-requests-remaining"], "0");
    assert_eq!(
        body["error"]["message"],
        "Number of requests has exceeded your rate limit"
    );
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    s.claude
        .set(|_| Reply::Json(529, vec![], anthropic_error("overloaded_error", "Overloaded")));
    let (status, _, body) = post_json(&s.gateway, "/v1/chat/completions", ask()).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (529, &json!("upstream_overloaded")),
        "a 529 stays a 5xx"
    );

    s.claude.set(|_| {
        Reply::Json(
            400,
            vec![],
            anthropic_error(
                "invalid_request_error",
                "prompt is too long: 212345 tokens > 200000 maximum",
            ),
        )
    });
    let (status, _, body) = post_json(&s.gateway, "/v1/chat/completions", ask()).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("context_length_exceeded")),
        "{body}"
    );

    s.claude.set(|_| {
        Reply::Json(
            401,
            vec![],
            anthropic_error("authentication_error", &format!("invalid x-api-key {KEY}")),
        )
    });
    let (status, _, body) = post_json(&s.gateway, "/v1/chat/completions", ask()).await;
    assert_eq!((status, &body["error"]["code"]), (401, &json!("upstream_auth_failed")));
    assert!(!body.to_string().contains(KEY), "{body}");

    s.claude.set(|_| {
        Reply::Json(
            400,
            vec![],
            anthropic_error("invalid_request_error", &format!("bad header {KEY}")),
        )
    });
    let (status, _, body) = post_json(&s.gateway, "/v1/chat/completions", ask()).await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (400, &json!("bad header [redacted]"))
    );
}

#[tokio::test]
async fn a_stream_that_breaks_or_errors_midway_ends_with_an_error_event_and_no_done() {
    let s = setup().await;
    let start = || {
        let mut writes = anthropic_stream(
            "claude-sonnet-4-5",
            &[json!({"type": "text", "text": "Once upon a time"})],
            "end_turn",
        );
        writes.truncate(5); // message_start, ping, content_block_start, two deltas
        writes
    };
    for (reply, expected) in [
        (Reply::Sse(start()), "message_stop"),
        (Reply::SseBroken(start()), "broke off"),
        (
            Reply::Sse(
                [
                    start(),
                    vec![event(
                        "error",
                        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                    )],
                ]
                .concat(),
            ),
            "Overloaded",
        ),
    ] {
        s.claude.set(move |_| reply.clone());
        let (status, _, text) = send(
            &s.gateway,
            "/v1/chat/completions",
            &hello("smart", true).to_string(),
            &[],
        )
        .await;
        assert_eq!(status, 200);
        let events = sse_data(&text);
        let content: String = events
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(
            content, "Once upon a time",
            "what came before the failure reached the client"
        );
        let last = events.last().expect("events");
        assert!(
            last["error"]["message"].as_str().is_some_and(|m| m.contains(expected)),
            "{text}"
        );
        assert!(!text.contains("[DONE]"), "never a clean finish: {text}");
    }
}

#[tokio::test]
async fn unsupported_parameters_are_refused_by_name_unless_the_provider_drops_them() {
    let s = setup().await;
    let mut request = hello("smart", false);
    request["logit_bias"] = json!({"50256": -100});
    let before = s.claude.requests().len();
    let (status, _, body) = post_json(&s.gateway, "/v1/chat/completions", request.clone()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "logit_bias");
    assert_eq!(body["error"]["code"], "unsupported_parameter");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("dropUnsupportedParams")),
        "{body}"
    );
    assert_eq!(s.claude.requests().len(), before, "nothing was sent upstream");

    request["model"] = json!("loose");
    let (status, _, _) = post_json(&s.gateway, "/v1/chat/completions", request).await;
    assert_eq!(status, 200);
    assert!(s.claude.last().body.get("logit_bias").is_none());

    let (status, _, body) = post_json(&s.gateway, "/v1/embeddings", json!({"model": "smart", "input": "x"})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not offer embeddings")),
        "{body}"
    );
}

/// A Messages request as Claude Code writes it: odd spacing, cache_control, a beta field.
const CLAUDE_CODE_BODY: &str = r#"{"model" : "smart","max_tokens":1024,
  "system":[{"type":"text","text":"You are Claude Code.","cache_control":{"type":"ephemeral"}}],
  "messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}],
  "context_management":{"edits":[]},"stream":STREAM}"#;

#[tokio::test]
async fn messages_pass_through_to_anthropic_byte_for_byte_except_model() {
    let s = setup().await;
    for stream in ["false", "true"] {
        let body = CLAUDE_CODE_BODY.replace("STREAM", stream);
        let headers = [
            ("anthropic-version", "2023-06-01"),
            (
                "anthropic-beta",
                "prompt-caching-2024-07-31,context-management-2025-06-27",
            ),
        ];
        let (status, response_headers, text) = send(&s.gateway, "/v1/messages", &body, &headers).await;
        assert_eq!(status, 200, "{text}");
        let seen = s.claude.last();
        assert_eq!(seen.path, "/v1/messages");
        assert_eq!(
            String::from_utf8_lossy(&seen.raw),
            body.replace("\"smart\"", "\"claude-sonnet-4-5\"")
        );
        assert_provider_credentials(&seen, "2023-06-01");
        assert_eq!(seen.header("anthropic-beta").as_deref(), Some(headers[1].1));
        // The answer comes back exactly as Anthropic wrote it.
        let upstream = match anthropic_reply(&seen) {
            Reply::Json(_, _, body) => body,
            Reply::Sse(writes) | Reply::SseBroken(writes) => writes.concat(),
        };
        assert_eq!(text, upstream);
        if stream == "false" {
            assert_eq!(response_headers["request-id"], "req_fake");
        }
    }
    // Tokens metered from Anthropic's usage, the streamed counts taken as cumulative.
    let input = eventually(std::time::Duration::from_secs(5), "input tokens", || async {
        let n = tokens(&s.gateway, "smart", "claude", "input").await;
        (n >= 252.0).then_some(n)
    })
    .await;
    assert_eq!(input, 252.0);
    assert_eq!(tokens(&s.gateway, "smart", "claude", "output").await, 18.0);

    // count_tokens passes through; the provider's version is the default.
    let count = json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let (status, _, text) = send(&s.gateway, "/v1/messages/count_tokens", &count, &[]).await;
    assert_eq!((status, text.as_str()), (200, r#"{"input_tokens":77}"#));
    let seen = s.claude.last();
    assert_eq!(seen.path, "/v1/messages/count_tokens");
    assert_provider_credentials(&seen, "2023-06-01");

    // Anthropic's own errors reach an Anthropic client as sent (key scrubbed).
    s.claude.set(|_| {
        Reply::Json(
            429,
            vec![("retry-after", "3".to_string())],
            anthropic_error("rate_limit_error", "slow down"),
        )
    });
    let (status, headers, text) = send(
        &s.gateway,
        "/v1/messages",
        &CLAUDE_CODE_BODY.replace("STREAM", "false"),
        &[],
    )
    .await;
    assert_eq!((status, text), (429, anthropic_error("rate_limit_error", "slow down")));
    assert_eq!(headers["retry-after"], "3");
}

fn messages_request(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 300, "stream": stream, "system": "Be brief.",
        "messages": [{"role": "user", "content": "hello there"}]})
}

#[tokio::test]
async fn messages_to_an_openai_compatible_provider_are_translated_streams_included() {
    let s = setup().await;
    let (status, _, body) = post_json(&s.gateway, "/v1/messages", messages_request("gpt", false)).await;
    assert_eq!(status, 200, "{body}");
    let seen = s.openai.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.header("authorization"), Some(format!("Bearer {OPENAI_KEY}")));
    assert_eq!(seen.header("x-api-key"), None, "the client's key stays at the gateway");
    assert_eq!(
        seen.body,
        json!({"model": "gpt-4o", "max_tokens": 300, "stream": false, "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]})
    );
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "gpt");
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("msg_")), "{body}");
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "openai served gpt-4o: hello there"}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 20, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10})
    );

    let (status, headers, text) = send(
        &s.gateway,
        "/v1/messages",
        &messages_request("gpt", true).to_string(),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(
        s.openai.last().body["stream_options"],
        json!({"include_usage": true}),
        "the gateway always asks for usage"
    );
    let names = sse_events(&text);
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let data = sse_data(&text);
    let streamed: String = data.iter().filter_map(|d| d["delta"]["text"].as_str()).collect();
    assert_eq!(streamed, "openai served gpt-4o: hello there");
    let delta = data
        .iter()
        .find(|d| d["type"] == "message_delta")
        .expect("message_delta");
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 7);
    assert_eq!(delta["usage"]["input_tokens"], 20);

    // Tools: tool_use blocks out, tool_result blocks back, streamed input joined.
    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let mut ask = messages_request("gpt", false);
    ask["tools"] = tools;
    let (_, _, body) = post_json(&s.gateway, "/v1/messages", ask.clone()).await;
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(
        body["content"][0],
        json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}})
    );
    assert_eq!(body["content"].as_array().map(Vec::len), Some(2));
    ask["stream"] = json!(true);
    let (_, _, text) = send(&s.gateway, "/v1/messages", &ask.to_string(), &[]).await;
    let joined: String = sse_data(&text)
        .iter()
        .filter(|d| d["index"] == 0)
        .filter_map(|d| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&joined).expect("JSON"),
        body["content"][0]["input"]
    );
    let mut answer = messages_request("gpt", false);
    answer["messages"] = json!([
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": body["content"]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "25C"}]}
        ]}
    ]);
    let (_, _, body) = post_json(&s.gateway, "/v1/messages", answer).await;
    assert_eq!(body["content"][0]["text"], "results: call_1=18C, call_2=25C");
}

#[tokio::test]
async fn messages_to_the_mock_and_errors_in_anthropics_envelope() {
    let s = setup().await;
    let (status, _, body) = post_json(&s.gateway, "/v1/messages", messages_request("fake", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["content"][0]["text"],
        "Hello from the modelgate mock provider default/mock (model demo, alias fake)."
    );
    let (status, _, text) = send(
        &s.gateway,
        "/v1/messages",
        &messages_request("fake", true).to_string(),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sse_events(&text).last().map(String::as_str), Some("message_stop"));

    let (status, _, body) = post_json(&s.gateway, "/v1/messages", messages_request("no-such-alias", false)).await;
    assert_eq!(status, 404);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "not_found_error");

    let mut thinking = messages_request("gpt", false);
    thinking["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    let (status, _, body) = post_json(&s.gateway, "/v1/messages", thinking).await;
    assert_eq!((status, &body["error"]["type"]), (400, &json!("invalid_request_error")));
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'thinking'")),
        "{body}"
    );

    s.openai.set(|_| {
        Reply::Json(
            429,
            vec![("retry-after", "9".to_string())],
            json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})
                .to_string(),
        )
    });
    let (status, headers, body) = post_json(&s.gateway, "/v1/messages", messages_request("gpt", false)).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "9");
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}})
    );

    // A stream that fails midway: an error event, and no message_stop.
    s.openai.set(|request| match openai_reply(request) {
        Reply::Sse(mut writes) => {
            writes.truncate(3);
            Reply::SseBroken(writes)
        }
        other => other,
    });
    let (_, _, text) = send(
        &s.gateway,
        "/v1/messages",
        &messages_request("gpt", true).to_string(),
        &[],
    )
    .await;
    assert_eq!(sse_events(&text).last().map(String::as_str), Some("error"), "{text}");
    assert!(!text.contains("message_stop"), "{text}");

    // count_tokens on a provider without it: an estimate, marked as one.
    let count =
        json!({"model": "gpt", "messages": [{"role": "user", "content": "one two three four five six seven eight"}]});
    let (status, headers, body) = post_json(&s.gateway, "/v1/messages/count_tokens", count).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-modelgate-token-estimate"], "true");
    assert!(
        body["input_tokens"].as_u64().is_some_and(|n| (10..30).contains(&n)),
        "{body}"
    );
}

/// A team's calls to an Anthropic alias are settled with Anthropic's own counts, whichever way
/// they go: `/v1/messages` passed through (JSON and stream) and Chat Completions translated.
/// Cache reads and writes are prompt tokens, reads are priced as cached; `count_tokens` is an
/// answered call that costs nothing.
#[tokio::test]
async fn a_teams_anthropic_calls_are_settled_with_cached_tokens_priced() {
    const TEAM_KEY: &str = "mg-claude-team-key";
    let claude = Scripted::anthropic().await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(anthropic_provider("claude", &claude, KEY, "")
            + &alias(
                "smart",
                "{target: claude/claude-sonnet-4-5, pricing: {inputPerMillionTokens: \"1.00\", outputPerMillionTokens: \"2.00\", cachedInputPerMillionTokens: \"0.10\"}}",
            )
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: AccessGroup\nmetadata: {name: claude-users}\nspec: {aliases: [smart]}\n"
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: Team\nmetadata: {name: writers}\nspec: {accessGroups: [claude-users]}\n"
            + &key_secret("writers-key", "writers", TEAM_KEY)),
    );
    let gateway = start_gateway_tenancy(
        &config,
        modelgate::gateway::tenancy::TenancyOptions {
            auth: modelgate::gateway::tenancy::AuthMode::ApiKey,
            ..Default::default()
        },
    )
    .await;
    let messages = |stream: bool| json!({"model": "smart", "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]});
    let calls = [
        ("/v1/messages", messages(false)),
        ("/v1/messages", messages(true)),
        (
            "/v1/chat/completions",
            json!({"model": "smart", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
        ),
        ("/v1/messages/count_tokens", messages(false)),
    ];
    for (n, (path, body)) in calls.iter().enumerate() {
        let response = client()
            .post(format!("http://{}{path}", gateway.addr))
            .header("content-type", "application/json")
            .header("x-api-key", TEAM_KEY)
            .body(body.to_string())
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 200, "{path}");
        let text = response.text().await.expect("body");
        assert!(!text.contains("\"error\""), "{path}: {text}");
        assert_eq!(
            claude.last().header("x-api-key").as_deref(),
            Some(KEY),
            "the team's key stays at the gateway"
        );
        eventually(std::time::Duration::from_secs(5), "the call to be settled", || async {
            let (_, team) = get(gateway.admin_addr, "/api/teams/writers").await;
            let team: Value = serde_json::from_str(&team).unwrap_or_default();
            (team["usage"]["requests"] == n + 1).then_some(())
        })
        .await;
    }
    let (status, team) = get(gateway.admin_addr, "/api/teams/writers").await;
    assert_eq!(status, 200, "{team}");
    let usage = &serde_json::from_str::<Value>(&team).expect("json")["usage"];
    let (input, read, written, output) = ANTHROPIC_USAGE;
    let prompt = input + read + written;
    assert_eq!(
        (
            usage["prompt_tokens"].clone(),
            usage["completion_tokens"].clone(),
            usage["cached_prompt_tokens"].clone()
        ),
        (json!(3 * prompt), json!(3 * output), json!(3 * read)),
        "{usage}"
    );
    // Per call: 26 uncached × 1.00 + 100 cached × 0.10 + 9 output × 2.00 per million = 54 µ$.
    assert_eq!(usage["cost_usd"], "0.000162", "{usage}");
}
