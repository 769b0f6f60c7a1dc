//! Alias guardrails end to end: a gateway on port 0 in front of a scripted OpenAI upstream and
//! a fake classifier; what the upstream receives, and what the client gets.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Router;
use modelgate::gateway::Running;
use serde_json::{json, Value};
use support::*;
use tokio::net::TcpListener;

/// An OpenAI upstream that records each request body and answers with `pieces` of text: one
/// SSE event per piece (each its own write) for a stream, or joined in one completion.
#[derive(Clone, Default)]
struct Scripted {
    seen: Arc<Mutex<Vec<Value>>>,
    pieces: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    async fn start() -> (Self, String) {
        let scripted = Scripted::default();
        let app = Router::new().fallback(scripted_answer).with_state(scripted.clone());
        let base = serve(app).await;
        (scripted, format!("{base}/v1"))
    }

    fn answer_with(&self, pieces: &[&str]) {
        *self.pieces.lock().expect("lock") = pieces.iter().map(|p| p.to_string()).collect();
    }

    fn seen(&self) -> Vec<Value> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn scripted_answer(State(s): State<Scripted>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.seen.lock().expect("lock").push(request.clone());
    let pieces = s.pieces.lock().expect("lock").clone();
    if request["stream"] == true {
        let mut events: Vec<Result<Bytes, std::io::Error>> = pieces
            .iter()
            .map(|p| {
                let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                    "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]});
                Ok(Bytes::from(format!("data: {chunk}\n\n")))
            })
            .collect();
        let last = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        events.push(Ok(Bytes::from(format!("data: {last}\n\ndata: [DONE]\n\n"))));
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(futures_util::stream::iter(events)))
            .expect("response");
    }
    let reply = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": pieces.concat()}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}});
    ([("content-type", "application/json")], reply.to_string()).into_response()
}

const GUARDRAILS: &str = r#"{
  maxInputBytes: 4096,
  maxOutputTokens: {value: 256},
  content: [
    {name: pii, builtin: [email, creditCard, usSSN], action: mask, "on": [both]},
    {name: secrets, builtin: [awsAccessKey, privateKey], patterns: ["(?i)project\\s+falcon"], "on": [request, response], action: block}
  ]
}"#;

/// The upstream, the gateway, and its config directory (the gateway serves what is in it: keep
/// it for the test's length, or its aliases go once the settle delay has passed).
async fn setup(guardrails: &str) -> (Scripted, Running, ConfigDir) {
    let (upstream, base) = Scripted::start().await;
    let config = ConfigDir::new();
    let provider = format!(
        "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: up}}\nspec: {{type: openai-compatible, baseUrl: \"{base}\", apiKey: {{secretRef: {{name: up-key, key: apiKey}}}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: up-key}}\nstringData: {{apiKey: sk-up}}\n"
    );
    let spec = format!("{{target: up/real-model, guardrails: {guardrails}}}");
    config.write(
        "c.yaml",
        &(provider + &alias("guarded", &spec) + &alias("plain", "{target: up/real-model}")),
    );
    let gateway = start_gateway(&config).await;
    (upstream, gateway, config)
}

fn ask(model: &str, system: &str, user: &str) -> String {
    json!({"model": model, "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]})
        .to_string()
}

#[tokio::test]
async fn masked_text_is_what_the_upstream_sees_and_system_prompts_are_not_scanned() {
    let (upstream, gateway, _config) = setup(GUARDRAILS).await;
    upstream.answer_with(&["ok"]);
    let (status, body) = post(
        &gateway,
        "/v1/chat/completions",
        &ask(
            "guarded",
            "Support for ops@corp.example",
            "I am jane@example.com, card 4111-1111-1111-1111",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["model"], "real-model");
    assert_eq!(seen[0]["messages"][1]["content"], "I am [EMAIL], card [CREDIT_CARD]");
    assert_eq!(seen[0]["messages"][0]["content"], "Support for ops@corp.example");
    assert_eq!(
        seen[0]["max_completion_tokens"], 256,
        "the cap is set when the client sets none"
    );
    let series =
        "modelgate_guardrail_actions_total{alias=\"guarded\",rule=\"pii\",action=\"mask\",direction=\"request\"}";
    assert_eq!(metric(&gateway, series).await, 1.0);

    // An alias without guardrails passes the same text untouched.
    post(
        &gateway,
        "/v1/chat/completions",
        &ask("plain", "s", "I am jane@example.com"),
    )
    .await;
    assert_eq!(upstream.seen()[1]["messages"][1]["content"], "I am jane@example.com");
}

#[tokio::test]
async fn a_blocked_request_never_reaches_the_upstream_nor_echoes_the_match() {
    let (upstream, gateway, _config) = setup(GUARDRAILS).await;
    for text in ["my key is AKIAIOSFODNN7EXAMPLE", "about Project  Falcon"] {
        let (status, body) = post(&gateway, "/v1/chat/completions", &ask("guarded", "s", text)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "content_policy_violation");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains("'secrets'"), "{message}");
        assert!(
            !message.contains("AKIA") && !message.to_lowercase().contains("falcon"),
            "{message}"
        );
    }
    assert_eq!(upstream.seen().len(), 0, "the upstream saw a blocked request");
}

#[tokio::test]
async fn caps_clamp_or_reject_and_size_is_limited() {
    let (upstream, gateway, _config) = setup(GUARDRAILS).await;
    let body = json!({"model": "guarded", "max_tokens": 9000, "messages": [{"role": "user", "content": "hi"}]});
    let (status, _) = post(&gateway, "/v1/chat/completions", &body.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.seen()[0]["max_tokens"], 256);

    let big = ask("guarded", "s", &"x".repeat(5000));
    let (status, body) = post(&gateway, "/v1/chat/completions", &big).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("m")
        .contains("at most 4096 bytes"));

    let (upstream, gateway, _config) = setup("{maxOutputTokens: {value: 100, mode: reject}}").await;
    let body =
        json!({"model": "guarded", "max_completion_tokens": 101, "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = post(&gateway, "/v1/chat/completions", &body.to_string()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "max_tokens_exceeded");
    assert_eq!(body["error"]["param"], "max_completion_tokens");
    assert_eq!(upstream.seen().len(), 0);
}

/// Streams a chat through the gateway; the raw SSE text the client received.
async fn stream_text(gateway: &Running, model: &str) -> String {
    let body = json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "tell me"}]});
    stream_from(gateway, "/v1/chat/completions", &body).await
}

fn content_of(sse: &str) -> String {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn streamed_answers_are_masked_across_chunks_and_blocked_mid_way() {
    let (upstream, gateway, _config) = setup(GUARDRAILS).await;
    upstream.answer_with(&["Reach her at ja", "ne.doe@exa", "mple.com or 123-4", "5-6789. Bye."]);
    let sse = stream_text(&gateway, "guarded").await;
    assert_eq!(content_of(&sse), "Reach her at [EMAIL] or [US_SSN]. Bye.");
    assert!(sse.ends_with("data: [DONE]\n\n"), "{sse}");

    upstream.answer_with(&[
        "Fine so far. ",
        "The code name is Project Fal",
        "con, and more",
        " text.",
    ]);
    let sse = stream_text(&gateway, "guarded").await;
    let content = content_of(&sse);
    assert!(content.starts_with("Fine so far") || content.is_empty(), "{content}");
    assert!(!content.contains("Project"), "the match reached the client: {content}");
    assert!(sse.contains("\"code\":\"content_policy_violation\""), "{sse}");
    assert!(!sse.contains("[DONE]"), "a blocked stream ends without [DONE]: {sse}");
    let series =
        "modelgate_guardrail_actions_total{alias=\"guarded\",rule=\"secrets\",action=\"block\",direction=\"response\"}";
    assert_eq!(metric(&gateway, series).await, 1.0);

    // Not streamed: masked in place, or refused.
    upstream.answer_with(&["mail bob@example.org"]);
    let (status, body) = post(&gateway, "/v1/chat/completions", &ask("guarded", "s", "hi")).await;
    assert_eq!(
        (status, body["choices"][0]["message"]["content"].as_str()),
        (200, Some("mail [EMAIL]"))
    );
    upstream.answer_with(&["-----BEGIN RSA PRIVATE KEY-----\nMIIE"]);
    let (status, body) = post(&gateway, "/v1/chat/completions", &ask("guarded", "s", "hi")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("content_policy_violation"))
    );
}

/// A classifier that flags texts containing "jailbreak", fails with 500 on "crash", and never
/// answers on "hang".
async fn classifier() -> (String, Arc<Mutex<Vec<Value>>>) {
    let asked: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = Router::new()
        .fallback(|State(asked): State<Arc<Mutex<Vec<Value>>>>, body: Bytes| async move {
            let question: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            asked.lock().expect("lock").push(question.clone());
            let text = question["text"].as_str().unwrap_or_default().to_string();
            if text.contains("hang") {
                std::future::pending::<()>().await;
            }
            if text.contains("crash") {
                return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
            }
            let flagged = text.contains("jailbreak");
            axum::Json(json!({"flagged": flagged, "categories": if flagged { vec!["jailbreak"] } else { vec![] }}))
                .into_response()
        })
        .with_state(asked.clone());
    (serve(app).await, asked)
}

#[tokio::test]
async fn the_webhook_guard_blocks_flagged_requests_and_honours_its_failure_mode() {
    let (url, asked) = classifier().await;
    let spec = |mode: &str| {
        format!("{{webhook: {{url: \"{url}/classify\", categories: [jailbreak, toxicity], timeout: 300ms, failureMode: {mode}}}}}")
    };
    let (upstream, gateway, _config) = setup(&spec("closed")).await;
    upstream.answer_with(&["ok"]);

    let (status, body) = post(
        &gateway,
        "/v1/chat/completions",
        &ask("guarded", "be nice", "a jailbreak attempt"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("content_policy_violation")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().expect("m").contains("(jailbreak)"));
    let question = asked.lock().expect("lock")[0].clone();
    assert_eq!(
        question,
        json!({"categories": ["jailbreak", "toxicity"], "text": "a jailbreak attempt"})
    );

    let (status, _) = post(
        &gateway,
        "/v1/chat/completions",
        &ask("guarded", "s", "a kind question"),
    )
    .await;
    assert_eq!(status, 200);
    for text in ["crash please", "hang please"] {
        let (status, body) = post(&gateway, "/v1/chat/completions", &ask("guarded", "s", text)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("guardrail_unavailable")),
            "{body}"
        );
    }
    assert_eq!(
        upstream.seen().len(),
        1,
        "only the passing request reached the upstream"
    );

    let (upstream, gateway, _config) = setup(&spec("open")).await;
    upstream.answer_with(&["ok"]);
    for text in ["crash please", "hang please"] {
        let (status, _) = post(&gateway, "/v1/chat/completions", &ask("guarded", "s", text)).await;
        assert_eq!(status, 200, "failureMode open lets {text:?} through");
    }
    let series = "modelgate_guardrail_actions_total{alias=\"guarded\",rule=\"webhook\",action=\"fail_open\",direction=\"request\"}";
    assert_eq!(metric(&gateway, series).await, 2.0);
}

#[tokio::test]
#[ignore = "needs the openai Python package: tests/all.sh installs it and runs this"]
async fn the_official_openai_client_sees_a_block_and_a_mask() {
    let python = std::env::var("MODELGATE_PYTHON").unwrap_or_else(|_| {
        panic!("MODELGATE_PYTHON is not set: run tests/all.sh, which creates a virtualenv with the openai package")
    });
    let (upstream, gateway, _config) = setup(GUARDRAILS).await;
    upstream.answer_with(&["Write to sa", "m@example.com, ", "thanks."]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/guardrails_client.py");
    let output = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&script)
        .env("MODELGATE_BASE_URL", format!("http://{}/v1", gateway.addr))
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the openai client tests failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("4 passed"), "{stdout}");
    let seen = upstream.seen();
    assert!(
        seen.iter().all(|s| !s.to_string().contains("4111")),
        "a card number reached the upstream"
    );
}

/// The events of an SSE text, as (name, data).
fn events_of(sse: &str) -> Vec<(String, Value)> {
    sse.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("message");
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            (name.to_string(), serde_json::from_str(&data).unwrap_or(Value::Null))
        })
        .collect()
}

/// Posts `body` to `path` as a stream; the raw SSE text the client received.
async fn stream_from(gateway: &Running, path: &str, body: &Value) -> String {
    let response = client()
        .post(format!("http://{}{path}", gateway.addr))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    response.text().await.expect("body")
}

fn anthropic_ask(text: &str) -> Value {
    json!({"model": "guarded", "max_tokens": 9000, "system": "Support for ops@corp.example",
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]})
}

/// The Anthropic error envelope of a refusal by `rule`, which never repeats the match.
fn assert_anthropic_refusal(status: u16, body: &Value, rule: &str, secret: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains(&format!("'{rule}'")), "{message}");
    assert!(!body.to_string().to_lowercase().contains(secret), "{body}");
}

#[tokio::test]
async fn anthropic_messages_are_masked_and_blocked_in_the_anthropic_envelope() {
    let (upstream, gateway, _config) = setup(GUARDRAILS).await;
    upstream.answer_with(&["mail bob@example.org"]);
    let (status, body) = post(
        &gateway,
        "/v1/messages",
        &anthropic_ask("I am jane@example.com").to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "mail [EMAIL]");
    let seen = upstream.seen();
    let sent = seen[0]["messages"].to_string();
    assert!(sent.contains("I am [EMAIL]") && !sent.contains("jane@"), "{sent}");
    assert!(
        sent.contains("ops@corp.example"),
        "the system prompt is not scanned: {sent}"
    );
    let cap = seen[0]["max_completion_tokens"]
        .as_u64()
        .or(seen[0]["max_tokens"].as_u64());
    assert_eq!(cap, Some(256), "max_tokens is clamped: {}", seen[0]);

    // A request block: the upstream sees nothing.
    for text in ["my key is AKIAIOSFODNN7EXAMPLE", "about Project  Falcon"] {
        let (status, body) = post(&gateway, "/v1/messages", &anthropic_ask(text).to_string()).await;
        assert_anthropic_refusal(
            status,
            &body,
            "secrets",
            if text.contains("AKIA") { "akia" } else { "falcon" },
        );
    }
    let tool = json!({"model": "guarded", "max_tokens": 10, "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "AKIAIOSFODNN7EXAMPLE"}]}]});
    let (status, body) = post(&gateway, "/v1/messages", &tool.to_string()).await;
    assert_anthropic_refusal(status, &body, "secrets", "akia");
    let (status, body) = post(&gateway, "/v1/messages/count_tokens", &tool.to_string()).await;
    assert_anthropic_refusal(status, &body, "secrets", "akia");
    assert_eq!(upstream.seen().len(), 1, "the upstream saw a blocked request");

    // An answer block, not streamed.
    upstream.answer_with(&["-----BEGIN RSA PRIVATE KEY-----\nMIIE"]);
    let (status, body) = post(&gateway, "/v1/messages", &anthropic_ask("hi").to_string()).await;
    assert_anthropic_refusal(status, &body, "secrets", "begin rsa");
}

#[tokio::test]
async fn anthropic_streams_are_masked_across_deltas_and_end_in_an_error_event() {
    let (upstream, gateway, _config) = setup(GUARDRAILS).await;
    let mut ask = anthropic_ask("tell me");
    ask["stream"] = json!(true);
    upstream.answer_with(&["Reach her at ja", "ne.doe@exa", "mple.com or 123-4", "5-6789. Bye."]);
    let events = events_of(&stream_from(&gateway, "/v1/messages", &ask).await);
    let text: String = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "Reach her at [EMAIL] or [US_SSN]. Bye.");
    assert_eq!(events.last().map(|(name, _)| name.as_str()), Some("message_stop"));
    let stop = events
        .iter()
        .position(|(n, _)| n == "content_block_stop")
        .expect("stop");
    assert!(
        events[stop..].iter().all(|(n, _)| n != "content_block_delta"),
        "no text after its block's end: {events:?}"
    );

    upstream.answer_with(&[
        "Fine so far. ",
        "The code name is Project Fal",
        "con, and more",
        " text.",
    ]);
    let sse = stream_from(&gateway, "/v1/messages", &ask).await;
    let events = events_of(&sse);
    let (name, error) = events.last().expect("events");
    assert_eq!(name, "error", "{sse}");
    assert_eq!(error["type"], "error");
    assert!(error["error"]["message"].as_str().expect("m").contains("'secrets'"));
    assert!(
        !sse.contains("message_stop"),
        "a blocked stream has no clean end: {sse}"
    );
    assert!(!sse.contains("Project"), "the match reached the client: {sse}");
}

fn responses_ask(input: Value) -> Value {
    json!({"model": "guarded", "instructions": "Support for ops@corp.example", "input": input, "max_output_tokens": 9000})
}

#[tokio::test]
async fn responses_are_masked_and_blocked_streamed_and_not() {
    let (upstream, gateway, _config) = setup(GUARDRAILS).await;
    upstream.answer_with(&["mail bob@example.org"]);
    let (status, body) = post(
        &gateway,
        "/v1/responses",
        &responses_ask(json!("I am jane@example.com")).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"][0]["content"][0]["text"], "mail [EMAIL]", "{body}");
    let seen = upstream.seen();
    let sent = seen[0]["messages"].to_string();
    assert!(
        sent.contains("I am [EMAIL]") && sent.contains("ops@corp.example"),
        "{sent}"
    );
    let cap = seen[0]["max_completion_tokens"]
        .as_u64()
        .or(seen[0]["max_tokens"].as_u64());
    assert_eq!(cap, Some(256), "max_output_tokens is clamped: {}", seen[0]);

    let items = json!([
        {"role": "user", "content": "look it up"},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "the key is AKIAIOSFODNN7EXAMPLE"}]);
    let (status, body) = post(&gateway, "/v1/responses", &responses_ask(items).to_string()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("content_policy_violation")),
        "{body}"
    );
    assert!(!body.to_string().contains("AKIA"));
    assert_eq!(upstream.seen().len(), 1, "the upstream saw a blocked request");

    // Streamed: deltas masked across events, the repeated whole texts too, numbers consecutive.
    let mut ask = responses_ask(json!("tell me"));
    ask["stream"] = json!(true);
    upstream.answer_with(&["Reach her at ja", "ne.doe@exa", "mple.com or 123-4", "5-6789. Bye."]);
    let sse = stream_from(&gateway, "/v1/responses", &ask).await;
    let events = events_of(&sse);
    let masked = "Reach her at [EMAIL] or [US_SSN]. Bye.";
    let text: String = events
        .iter()
        .filter(|(name, _)| name == "response.output_text.delta")
        .filter_map(|(_, d)| d["delta"].as_str())
        .collect();
    assert_eq!(text, masked);
    assert!(!sse.contains("jane.doe") && !sse.contains("6789"), "{sse}");
    for (n, (name, data)) in events.iter().enumerate() {
        assert_eq!(
            (data["type"].as_str(), data["sequence_number"].as_u64()),
            (Some(name.as_str()), Some(n as u64))
        );
    }
    let (_, completed) = events.last().expect("events");
    assert_eq!(completed["type"], "response.completed");
    assert_eq!(completed["response"]["output"][0]["content"][0]["text"], masked);

    upstream.answer_with(&[
        "Fine so far. ",
        "The code name is Project Fal",
        "con, and more",
        " text.",
    ]);
    let sse = stream_from(&gateway, "/v1/responses", &ask).await;
    let events = events_of(&sse);
    let (name, error) = events.last().expect("events");
    assert_eq!(
        (name.as_str(), error["code"].as_str()),
        ("error", Some("content_policy_violation")),
        "{sse}"
    );
    assert_eq!(error["sequence_number"].as_u64(), Some(events.len() as u64 - 1));
    assert!(!sse.contains("response.completed") && !sse.contains("Project"), "{sse}");
}

#[tokio::test]
#[ignore = "needs the anthropic Python package: tests/all.sh installs it and runs this"]
async fn the_official_anthropic_client_sees_a_block_and_a_mask() {
    let (upstream, gateway, _config) = setup(GUARDRAILS).await;
    upstream.answer_with(&["Write to sa", "m@example.com, ", "thanks."]);
    let origin = format!("http://{}", gateway.addr);
    run_pytest(
        "guardrails_anthropic_client.py",
        &[("MODELGATE_ORIGIN", origin)],
        "3 passed",
    )
    .await;
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "the blocked request never reached the upstream");
    assert!(
        seen.iter().all(|s| !s.to_string().contains("4111")),
        "a card number reached the upstream"
    );
    assert!(
        seen.iter()
            .all(|s| s["max_completion_tokens"] == 256 || s["max_tokens"] == 256),
        "max_tokens 4096 was clamped to the alias's 256: {seen:?}"
    );
}
