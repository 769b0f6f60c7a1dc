//! Response guardrails on tool calls end to end: an OpenAI upstream streams a tool call whose
//! arguments carry an AWS access key cut across chunks; the gateway masks it (the joined
//! arguments still parse as JSON) or ends the stream with an error event, as configured.

mod support;

use modelgate::gateway::Running;
use serde_json::{json, Value};
use support::scripted::{openai_provider, Reply, Scripted};
use support::*;

/// The arguments, in the pieces the upstream streams: the key is cut twice.
const PIECES: [&str; 5] = [
    r#"{"region": "eu-west-1", "#,
    r#""key": "AKIAIOSF"#,
    r#"ODNN7EX"#,
    r#"AMPLE", "note": "#,
    r#""deploy"}"#,
];

fn chunk(delta: Value, finish: Value) -> String {
    let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {chunk}\n\n")
}

fn tool_call_answer(request: &support::scripted::Recorded) -> Reply {
    if !request.is_stream() {
        let reply = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "deploy", "arguments": PIECES.concat()}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}});
        return Reply::Json(200, Vec::new(), reply.to_string());
    }
    let mut writes = vec![
        chunk(json!({"role": "assistant", "content": null}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "deploy", "arguments": ""}}]}),
            Value::Null,
        ),
    ];
    for piece in PIECES {
        writes.push(chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            Value::Null,
        ));
    }
    writes.push(chunk(json!({}), json!("tool_calls")));
    writes.push("data: [DONE]\n\n".to_string());
    Reply::Sse(writes)
}

async fn setup() -> (Scripted, Running, ConfigDir) {
    let upstream = Scripted::start(tool_call_answer).await;
    let config = ConfigDir::new();
    let rule = |action: &str| {
        format!("{{target: up/m, guardrails: {{content: [{{name: secrets, builtin: [awsAccessKey], \"on\": [response], action: {action}}}]}}}}")
    };
    config.write(
        "c.yaml",
        &(openai_provider("up", &upstream, "sk-up")
            + &alias("masked", &rule("mask"))
            + &alias("blocked", &rule("block"))),
    );
    let gateway = start_gateway(&config).await;
    (upstream, gateway, config)
}

/// The `data:` payloads of a streamed chat completion from `model`.
async fn stream(gateway: &Running, model: &str) -> Vec<String> {
    let body = json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "deploy it"}]});
    let response = client()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_key_cut_across_argument_chunks_is_masked_or_ends_the_stream() {
    let (_upstream, gateway, _config) = setup().await;
    let events = stream(&gateway, "masked").await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let arguments: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|e| {
            e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    let parsed: Value = serde_json::from_str(&arguments).expect("the joined arguments parse as JSON");
    assert_eq!(
        parsed,
        json!({"region": "eu-west-1", "key": "[AWS_ACCESS_KEY]", "note": "deploy"})
    );
    assert!(!events.concat().contains("AKIA"));

    let events = stream(&gateway, "blocked").await;
    let last: Value = serde_json::from_str(events.last().expect("events")).expect("json");
    assert_eq!(last["error"]["code"], "content_policy_violation");
    assert!(!events.concat().contains("AKIA") && !events.iter().any(|e| e == "[DONE]"));
}

#[tokio::test]
#[ignore = "needs the openai Python package: tests/all.sh installs it and runs this"]
async fn the_official_openai_client_gets_masked_or_blocked_tool_calls() {
    let (_upstream, gateway, _config) = setup().await;
    pytest("guardrails_tools_client.py", &gateway, &[]).await;
}
