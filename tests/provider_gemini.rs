//! Gemini providers (`type: gemini`) against a fake Gemini API that speaks the wire exactly
//! (tests/support/gemini.rs): chat both ways, streams, parallel tool calls and results, usage,
//! errors with their classes, broken streams, refused parameters, images and embeddings.

mod support;

use serde_json::{json, Value};
use support::gemini::{event, gemini_provider, google_error, FakeGemini, Reply, USAGE};
use support::*;

const KEY: &str = "AIzaSy-fake-gemini-key";

/// A gateway with `smart` on a Gemini provider (`extra`: more of its spec) at `fake`.
async fn start(fake: &FakeGemini, extra: &str) -> (ConfigDir, modelgate::gateway::Running) {
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(gemini_provider("gemini", fake, KEY, extra)
            + &alias("smart", "{target: gemini/gemini-2.5-flash}")
            + &alias("embedder", "{target: gemini/gemini-embedding-001}")),
    );
    let gateway = start_gateway(&config).await;
    (config, gateway)
}

/// Posts a chat request to the gateway; the status and the answer as JSON.
async fn chat_with(gateway: &modelgate::gateway::Running, body: &Value) -> (u16, Value) {
    post(gateway, "/v1/chat/completions", &body.to_string()).await
}

/// Posts a body to `url`; the answer's text.
async fn text_of(url: &str, body: &Value) -> String {
    let response = client().post(url).body(body.to_string()).send().await.expect("answer");
    response.text().await.expect("body")
}

/// Posts a streamed request; the status, the data of each event, and the raw text.
async fn stream(gateway: &modelgate::gateway::Running, body: &Value) -> (u16, Vec<String>, String) {
    let response = client()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .json(body)
        .send()
        .await
        .expect("the gateway answered");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let events = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_string)
        .collect();
    (status, events, text)
}

/// The JSON chunks of a stream (every event but `[DONE]`).
fn json_chunks(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).expect("a JSON event"))
        .collect()
}

fn ask(extra: Value) -> Value {
    let mut body = json!({"model": "smart", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello there"}
    ]});
    for (key, value) in extra.as_object().expect("object") {
        body[key] = value.clone();
    }
    body
}

#[tokio::test]
async fn chat_is_translated_to_generate_content_with_the_key_as_x_goog_api_key() {
    let fake = FakeGemini::start(KEY).await;
    let (_config, gateway) = start(&fake, "").await;
    let (status, body) = chat_with(&gateway, &ask(json!({"temperature": 0.2}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "gemini served gemini-2.5-flash: hello there"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["object"], "chat.completion");
    let (prompt, cached, candidates, thoughts) = USAGE;
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": prompt, "completion_tokens": candidates + thoughts,
            "total_tokens": prompt + candidates + thoughts,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": thoughts}})
    );
    let seen = fake.last();
    assert_eq!(seen.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(seen.query, None);
    assert_eq!(seen.header("x-goog-api-key").as_deref(), Some(KEY));
    assert_eq!(seen.header("authorization"), None, "the client's key never travels");
    assert_eq!(
        seen.body,
        json!({"contents": [{"role": "user", "parts": [{"text": "hello there"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"temperature": 0.2}})
    );
    assert_eq!(
        metric(
            &gateway,
            r#"modelgate_tokens_total{alias="smart",provider="default/gemini",direction="input"}"#
        )
        .await,
        prompt as f64
    );
}

#[tokio::test]
async fn a_stream_is_translated_event_by_event_and_usage_reaches_only_clients_that_ask() {
    let fake = FakeGemini::start(KEY).await;
    let (_config, gateway) = start(&fake, "").await;
    let (status, events, text) = stream(
        &gateway,
        &ask(json!({"stream": true, "stream_options": {"include_usage": true}})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let seen = fake.last();
    assert_eq!(seen.path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    assert_eq!(seen.query.as_deref(), Some("alt=sse"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = json_chunks(&events);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "gemini served gemini-2.5-flash: hello there");
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")]);
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], USAGE.1);
    assert_eq!(chunks.iter().filter(|c| !c["usage"].is_null()).count(), 1);

    let (_, events, _) = stream(&gateway, &ask(json!({"stream": true}))).await;
    assert!(
        json_chunks(&events).iter().all(|c| c["usage"].is_null()),
        "no usage chunk unless asked"
    );
    // The gateway meters the tokens of both streams all the same.
    assert_eq!(
        metric(
            &gateway,
            r#"modelgate_tokens_total{alias="smart",provider="default/gemini",direction="output"}"#
        )
        .await,
        2.0 * (USAGE.2 + USAGE.3) as f64
    );
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "The weather now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"], "additionalProperties": false}}}])
}

#[tokio::test]
async fn parallel_tool_calls_and_results_round_trip_and_streamed_arguments_join_exactly() {
    let fake = FakeGemini::start(KEY).await;
    let (_config, gateway) = start(&fake, "").await;
    let question = json!({"model": "smart", "tools": tools(), "tool_choice": "auto",
        "messages": [{"role": "user", "content": "Weather in Paris and Tokyo?"}]});
    let (status, whole) = chat_with(&gateway, &question).await;
    assert_eq!(status, 200, "{whole}");
    let message = &whole["choices"][0]["message"];
    assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
    let calls = message["tool_calls"].as_array().expect("tool calls").clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0]["function"]["arguments"],
        r#"{"city":"Paris","unit":"celsius"}"#
    );
    assert_eq!(calls[1]["function"]["arguments"], r#"{"city":"Tokyo"}"#);
    assert_eq!(
        fake.last().body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["additionalProperties"],
        false
    );
    assert_eq!(
        fake.last().body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );

    // Streamed, each call comes whole, and the finish reason is tool_calls.
    let mut streamed = question.clone();
    streamed["stream"] = json!(true);
    let (_, events, _) = stream(&gateway, &streamed).await;
    let chunks = json_chunks(&events);
    let mut joined: Vec<(String, String, String)> = Vec::new();
    for delta in chunks.iter().flat_map(|c| {
        c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }) {
        let index = delta["index"].as_u64().expect("index") as usize;
        if joined.len() <= index {
            joined.resize(index + 1, Default::default());
        }
        let slot = &mut joined[index];
        slot.0.push_str(delta["id"].as_str().unwrap_or(""));
        slot.1.push_str(delta["function"]["name"].as_str().unwrap_or(""));
        slot.2.push_str(delta["function"]["arguments"].as_str().unwrap_or(""));
    }
    let expected: Vec<(String, String)> = calls
        .iter()
        .map(|c| {
            (
                c["function"]["name"].as_str().unwrap_or("").to_string(),
                c["function"]["arguments"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        joined.iter().map(|j| (j.1.clone(), j.2.clone())).collect::<Vec<_>>(),
        expected
    );
    assert!(joined.iter().all(|j| j.0.starts_with("call_")));
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);

    // The results go back as function responses named after the calls they answer.
    let mut follow_up = question.clone();
    let messages = follow_up["messages"].as_array_mut().expect("messages");
    messages.push(message.clone());
    messages.push(json!({"role": "tool", "tool_call_id": calls[0]["id"], "content": "{\"temperature\": 21}"}));
    messages.push(json!({"role": "tool", "tool_call_id": calls[1]["id"], "content": "rainy"}));
    let (status, answer) = chat_with(&gateway, &follow_up).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        r#"results: get_weather={"temperature":21}, get_weather={"content":"rainy"}"#
    );
    let sent = fake.last().body;
    let model_turn = &sent["contents"][1];
    assert_eq!(model_turn["role"], "model");
    assert_eq!(model_turn["parts"][0]["functionCall"]["id"], calls[0]["id"]);
    assert_eq!(
        model_turn["parts"][0]["functionCall"]["args"],
        json!({"city": "Paris", "unit": "celsius"})
    );
    assert!(model_turn["parts"][0]["thoughtSignature"].is_string());
    assert_eq!(
        sent["contents"][2]["parts"][1]["functionResponse"]["id"],
        calls[1]["id"]
    );
}

#[tokio::test]
async fn errors_keep_their_class_status_and_retry_delay() {
    let fake = FakeGemini::start(KEY).await;
    let (_config, gateway) = start(&fake, "").await;
    let quota =
        json!({"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}})
        .to_string();
    fake.set(move |_| Reply::Json(429, vec![], quota.clone()));
    let response = client()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .body(ask(json!({})).to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(
        response.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("37"),
        "Google's RetryInfo becomes Retry-After"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["message"], "You exceeded your current quota.");

    // A Retry-After header of the provider's own is kept as sent.
    fake.set(|_| {
        Reply::Json(
            429,
            vec![("retry-after", "12".to_string())],
            google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
            ),
        )
    });
    let response = client()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .body(ask(json!({})).to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(
        response.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("12")
    );

    let cases = [
        (
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            400,
            "context_length_exceeded",
        ),
        (
            503,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
            503,
            "upstream_overloaded",
        ),
        (
            500,
            "INTERNAL",
            "An internal error has occurred.",
            500,
            "upstream_error",
        ),
    ];
    for (code, status, message, expected, expected_code) in cases {
        let body = google_error(code, status, message);
        fake.set(move |_| Reply::Json(code, vec![], body.clone()));
        let (got, answer) = chat_with(&gateway, &ask(json!({}))).await;
        assert_eq!(
            (got, answer["error"]["code"].clone()),
            (expected, json!(expected_code)),
            "{answer}"
        );
        assert_eq!(answer["error"]["message"], message);
    }
}

#[tokio::test]
async fn a_wrong_key_is_an_auth_failure_that_never_shows_the_key() {
    let fake = FakeGemini::start("AIzaSy-the-right-key").await;
    let (_config, gateway) = start(&fake, "").await;
    let (status, body) = chat_with(&gateway, &ask(json!({}))).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!("upstream_auth_failed")),
        "{body}"
    );
    assert!(!body.to_string().contains(KEY));
    assert_eq!(fake.last().header("x-goog-api-key").as_deref(), Some(KEY));
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_error_event_and_no_done() {
    let fake = FakeGemini::start(KEY).await;
    let (_config, gateway) = start(&fake, "").await;
    let first =
        event(&json!({"candidates": [{"content": {"parts": [{"text": "Once upon"}], "role": "model"}, "index": 0}]}));
    let cut = vec![first.clone()];
    fake.set(move |_| Reply::SseBroken(cut.clone()));
    let (status, events, text) = stream(&gateway, &ask(json!({"stream": true}))).await;
    assert_eq!(status, 200);
    assert!(text.contains("Once upon"), "{text}");
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().expect("events")).expect("json");
    assert!(last["error"]["message"].is_string(), "{text}");

    // Ending cleanly without a finish reason is a cut stream too.
    let early = vec![first];
    fake.set(move |_| Reply::Sse(early.clone()));
    let (_, events, text) = stream(&gateway, &ask(json!({"stream": true}))).await;
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().expect("events")).expect("json");
    assert!(
        last["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("finishReason")),
        "{text}"
    );
}

#[tokio::test]
async fn unsupported_parameters_are_400s_naming_them_unless_dropping_is_allowed() {
    let fake = FakeGemini::start(KEY).await;
    let (_config, gateway) = start(&fake, "").await;
    let (status, body) = chat_with(&gateway, &ask(json!({"logit_bias": {"1": 5}}))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "logit_bias");
    assert_eq!(body["error"]["code"], "unsupported_parameter");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("dropUnsupportedParams")));
    assert!(fake.requests().is_empty(), "nothing went upstream");

    let lenient = FakeGemini::start(KEY).await;
    let (_config, gateway) = start(&lenient, "  dropUnsupportedParams: true").await;
    let (status, body) = chat_with(&gateway, &ask(json!({"logit_bias": {"1": 5}}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(lenient.last().body.get("logit_bias"), None);
}

#[tokio::test]
async fn images_travel_inline_and_plain_http_urls_are_refused() {
    let fake = FakeGemini::start(KEY).await;
    let (_config, gateway) = start(&fake, "").await;
    let picture = |url: &str| {
        json!({"model": "smart", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url}}
        ]}]})
    };
    let (status, body) = chat_with(&gateway, &picture("data:image/png;base64,iVBORw0KGgo=")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fake.last().body["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
    );
    let (status, body) = chat_with(&gateway, &picture("http://intranet.local/cat.png")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "messages[0].content[1].image_url.url");
}

#[tokio::test]
async fn embeddings_come_back_as_floats_or_base64() {
    let fake = FakeGemini::start(KEY).await;
    let (_config, gateway) = start(&fake, "").await;
    let (status, body) = post(
        &gateway,
        "/v1/embeddings",
        &json!({"model": "embedder", "input": ["hi", "Gemini"], "dimensions": 2}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = fake.last();
    assert_eq!(seen.path, "/v1beta/models/gemini-embedding-001:batchEmbedContents");
    assert_eq!(seen.body["requests"][1]["model"], "models/gemini-embedding-001");
    assert_eq!(seen.body["requests"][1]["outputDimensionality"], 2);
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["embedding"], json!([2.0, 0.8125]));
    assert_eq!(body["data"][1]["index"], 1);

    let (status, body) = post(
        &gateway,
        "/v1/embeddings",
        &json!({"model": "embedder", "input": "hi", "encoding_format": "base64"}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().expect("base64"))
        .expect("decodes");
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(floats, [2.0, 0.8125, 0.5]);

    let (status, body) = post(
        &gateway,
        "/v1/embeddings",
        &json!({"model": "embedder", "input": [1, 2]}).to_string(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].clone()),
        (400, json!("input")),
        "{body}"
    );
}

#[tokio::test]
async fn a_base_url_with_the_api_version_is_not_versioned_twice() {
    let fake = FakeGemini::start(KEY).await;
    let (_config, gateway) = start(&fake, "").await;
    drop(gateway);
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(support::typed_provider("gemini", "gemini", &format!("{}/v1beta/", fake.base_url()), KEY, "")
            + &alias("smart", "{target: gemini/models/gemini-2.5-pro}")),
    );
    let gateway = start_gateway(&config).await;
    let (status, body) = chat_with(&gateway, &ask(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.last().path, "/v1beta/models/gemini-2.5-pro:generateContent");
}

#[tokio::test]
async fn the_key_never_reaches_logs_errors_streams_or_metrics() {
    const SECRET: &str = "AIzaSy-never-print-me-4417";
    let fake = FakeGemini::start(SECRET).await;
    // Gemini echoing the key in an error answer, and in an error event of a stream.
    fake.set(|request| {
        let echo = google_error(
            400,
            "INVALID_ARGUMENT",
            &format!("Request with key {SECRET} is invalid."),
        );
        match request.query.as_deref() {
            Some("alt=sse") => Reply::Sse(vec![
                event(&json!({"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "index": 0}]})),
                format!("data: {echo}\r\n\r\n"),
            ]),
            _ => Reply::Json(400, vec![], echo),
        }
    });
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(gemini_provider("gemini", &fake, SECRET, "") + &alias("smart", "{target: gemini/gemini-2.5-flash}")),
    );
    let gateway = child::ChildGateway::start_logging(&config, &[], None, "trace").await;
    let url = format!("http://{}/v1/chat/completions", gateway.api);
    let reply = text_of(&url, &ask(json!({}))).await;
    let streamed = text_of(&url, &ask(json!({"stream": true}))).await;
    fake.set(|_| {
        Reply::Json(
            400,
            vec![],
            include_str!("../src/llm/gemini/fixtures/key_invalid.json").to_string(),
        )
    });
    let rejected = text_of(&url, &ask(json!({}))).await;
    let (_, metrics) = get(gateway.admin, "/metrics").await;
    assert!(reply.contains("[redacted] is invalid"), "{reply}");
    assert!(
        streamed.contains("Hi") && streamed.contains("[redacted] is invalid"),
        "{streamed}"
    );
    assert!(rejected.contains("upstream_auth_failed"), "{rejected}");
    assert!(fake
        .requests()
        .iter()
        .all(|r| r.header("x-goog-api-key").as_deref() == Some(SECRET)));
    // The log has the failures (so it was read), without the key.
    let log = eventually(
        std::time::Duration::from_secs(10),
        "the stream's failure in the log",
        || {
            let log = gateway.log();
            std::future::ready(log.contains("the response was cut").then_some(log))
        },
    )
    .await;
    for (place, text) in [
        ("reply", &reply),
        ("stream", &streamed),
        ("metrics", &metrics),
        ("log", &log),
    ] {
        assert!(
            !text.contains("never-print-me"),
            "the key leaked into the {place}:\n{text}"
        );
    }
}
