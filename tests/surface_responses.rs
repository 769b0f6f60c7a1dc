//! `POST /v1/responses`: translated for the mock and an openai-compatible upstream (streamed
//! and not, tools round trip, the output limit, stateful fields refused, errors), passed
//! through to `openai` and `azure-openai` providers, and the official `openai` Python client's
//! `responses.create` against it all.

mod support;
#[path = "surface_responses/upstream.rs"]
mod upstream;

use std::time::Duration;

use modelgate::gateway::tenancy::{AuthMode, TenancyOptions};
use modelgate::gateway::Running;
use serde_json::{json, Value};
use support::*;
use upstream::Upstream;

const SETTLE: Duration = Duration::from_secs(10);

/// `fast` (mock), `tools` (openai-compatible), `native` (openai) and `azure` (azure-openai)
/// aliases, the last three at `upstream`.
fn world(upstream: &Upstream) -> String {
    let secret = |name: &str, key: &str| {
        format!("---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData: {{apiKey: {key}}}\n")
    };
    let provider = |name: &str, kind: &str, base: &str| {
        format!("---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: {name}}}\nspec:\n  type: {kind}\n  baseUrl: {base}\n  apiKey: {{secretRef: {{name: {name}-key, key: apiKey}}}}\n  timeouts: {{request: 5s}}\n")
            + &secret(&format!("{name}-key"), &format!("sk-{name}"))
    };
    mock_provider()
        + &provider("compat", "openai-compatible", &upstream.base_url())
        + &provider("native", "openai", &upstream.base_url())
        + &provider("azure", "azure-openai", &format!("http://{}", upstream.addr))
        + &alias("fast", "{target: mock/fast-demo-model}")
        + &alias("tools", "{target: compat/brain-1}")
        + &alias("native", "{target: native/gpt-4.1}")
        + &alias("azure", "{target: azure/gpt-4o-prod}")
}

/// A gateway over [`world`], without tenancy.
async fn gateway(upstream: &Upstream) -> (ConfigDir, Running) {
    let config = ConfigDir::new();
    config.write("c.yaml", &world(upstream));
    let gateway = start_gateway(&config).await;
    (config, gateway)
}

/// Posts to `/v1/responses`: the status, the headers and the body (JSON, or the raw text).
async fn respond(gateway: &Running, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client()
        .post(format!("http://{}/v1/responses", gateway.addr))
        .header("authorization", "Bearer client-key-must-not-travel")
        .json(body)
        .send()
        .await
        .expect("the gateway answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A streamed answer's events, as (event name, data), checked for their framing: each event's
/// name is its `type`, and sequence numbers count from 0.
async fn events(gateway: &Running, body: &Value) -> Vec<(String, Value)> {
    let (status, headers, text) = respond(gateway, body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let text = text.as_str().expect("an event stream").to_string();
    assert!(!text.contains("[DONE]"), "Responses streams have no [DONE]");
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(rest) = line.strip_prefix("event: ") {
                name = rest.to_string();
            } else if let Some(rest) = line.strip_prefix("data: ") {
                data.push_str(rest);
            }
        }
        let data: Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("event data {data}: {e}"));
        assert_eq!(data["type"], json!(name));
        assert_eq!(data["sequence_number"], json!(events.len()));
        events.push((name, data));
    }
    events
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// The text of a response object's message items.
fn output_text(response: &Value) -> String {
    let mut text = String::new();
    for item in response["output"].as_array().into_iter().flatten() {
        for part in item["content"].as_array().into_iter().flatten() {
            text.push_str(part["text"].as_str().unwrap_or_default());
        }
    }
    text
}

#[tokio::test]
async fn the_mock_answers_in_the_responses_shape_streamed_and_not() {
    let upstream = Upstream::start().await;
    let (_config, gateway) = gateway(&upstream).await;
    let request = json!({"model": "fast", "instructions": "Be brief.", "input": "Hello!", "metadata": {"team": "a"}});
    let (status, _, body) = respond(&gateway, &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "response");
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("resp_")), "{body}");
    assert_eq!(body["model"], "fast", "the model the client asked for");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["instructions"], "Be brief.");
    assert_eq!(body["metadata"], json!({"team": "a"}));
    assert_eq!(body["store"], false, "nothing is stored");
    let text = "Hello from the modelgate mock provider default/mock (model fast-demo-model, alias fast).";
    assert_eq!(output_text(&body), text);
    assert_eq!(body["output"][0]["content"][0]["annotations"], json!([]));
    assert!(body["usage"]["output_tokens"].as_u64().is_some_and(|n| n > 0), "{body}");

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let events = events(&gateway, &streamed).await;
    let names = names(&events);
    assert_eq!(
        names[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(
        names[names.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, e)| e["delta"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(deltas, text);
    let completed = &events[events.len() - 1].1["response"];
    assert_eq!(output_text(completed), text);
    assert!(
        completed["usage"]["input_tokens"].as_u64().is_some_and(|n| n > 0),
        "{completed}"
    );
}

#[tokio::test]
async fn an_openai_compatible_target_gets_chat_completions() {
    let upstream = Upstream::start().await;
    let (_config, gateway) = gateway(&upstream).await;
    let (status, _, body) = respond(
        &gateway,
        &json!({"model": "tools", "instructions": "Be brief.", "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}], "max_output_tokens": 200, "store": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = upstream.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer sk-compat")
    );
    assert_eq!(
        seen.body,
        json!({"model": "brain-1", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_tokens": 200})
    );
    assert_eq!(output_text(&body), "compat served brain-1");
    assert_eq!(body["model"], "tools");
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 16})
    );
    let series = r#"modelgate_tokens_total{alias="tools",provider="default/compat",direction="input"}"#;
    eventually(SETTLE, "input tokens metered", || async {
        (metric(&gateway, series).await == 11.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_function_call_round_trips_through_a_translated_target_streamed_and_not() {
    let upstream = Upstream::start().await;
    let (_config, gateway) = gateway(&upstream).await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city", "unit"], "additionalProperties": false}, "strict": true}]);
    let ask = json!({"model": "tools", "input": "Weather in Paris?", "tools": tools});
    let (status, _, first) = respond(&gateway, &ask).await;
    assert_eq!(status, 200, "{first}");
    let call = first["output"]
        .as_array()
        .and_then(|o| o.iter().find(|i| i["type"] == "function_call"))
        .cloned()
        .unwrap_or_else(|| panic!("no function_call in {first}"));
    assert_eq!(call["call_id"], "call_w1");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["arguments"], r#"{"city":"Paris","unit":"celsius"}"#);
    assert_eq!(call["status"], "completed");
    assert_eq!(
        upstream.last().body["tools"],
        json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "parameters": tools[0]["parameters"], "strict": true}}])
    );

    // Streamed, the argument fragments join to exactly the non-streamed arguments.
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let events = events(&gateway, &streamed).await;
    let fragments: String = events
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, e)| e["delta"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(fragments, call["arguments"].as_str().unwrap_or_default());
    assert!(names(&events).contains(&"response.function_call_arguments.done"));
    let (last, completed) = events.last().expect("events");
    assert_eq!(last, "response.completed");
    let streamed_call = &completed["response"]["output"][0];
    assert_eq!(
        (&streamed_call["call_id"], &streamed_call["arguments"]),
        (&call["call_id"], &call["arguments"])
    );
    assert_eq!(completed["response"]["usage"]["output_tokens"], 5);

    // The client sends the call and its output back (as the SDKs do: the output items as given).
    let mut input = vec![json!({"role": "user", "content": "Weather in Paris?"})];
    input.extend(first["output"].as_array().cloned().unwrap_or_default());
    input.push(json!({"type": "function_call_output", "call_id": "call_w1", "output": "14°C and sunny"}));
    let (status, _, second) = respond(&gateway, &json!({"model": "tools", "input": input, "tools": tools})).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(output_text(&second), "The tool says 14°C and sunny.");
    let messages = &upstream.last().body["messages"];
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "tool_calls": [{"id": "call_w1", "type": "function", "function": {"name": "get_weather", "arguments": r#"{"city":"Paris","unit":"celsius"}"#}}]})
    );
    assert_eq!(
        messages[2],
        json!({"role": "tool", "content": "14°C and sunny", "tool_call_id": "call_w1"})
    );
}

#[tokio::test]
async fn the_output_limit_makes_the_response_incomplete() {
    let upstream = Upstream::start().await;
    let (_config, gateway) = gateway(&upstream).await;
    let request = json!({"model": "tools", "input": "Tell me a story.", "max_output_tokens": 16});
    let (status, _, body) = respond(&gateway, &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "incomplete");
    assert_eq!(body["incomplete_details"], json!({"reason": "max_output_tokens"}));
    assert_eq!(body["output"][0]["status"], "incomplete");
    assert_eq!(upstream.last().body["max_tokens"], 16);

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let events = events(&gateway, &streamed).await;
    assert!(!names(&events).contains(&"response.completed"));
    let (last, incomplete) = events.last().expect("events");
    assert_eq!(last, "response.incomplete");
    assert_eq!(
        incomplete["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(output_text(&incomplete["response"]), "Once upon a");
}

#[tokio::test]
async fn stateful_fields_to_a_translated_target_are_a_400_naming_them() {
    let upstream = Upstream::start().await;
    let (_config, gateway) = gateway(&upstream).await;
    for (model, field, value) in [
        ("tools", "previous_response_id", json!("resp_abc")),
        ("fast", "previous_response_id", json!("resp_abc")),
        ("tools", "conversation", json!({"id": "conv_1"})),
        ("tools", "input", json!([{"type": "item_reference", "id": "msg_1"}])),
        ("tools", "tools", json!([{"type": "web_search"}])),
    ] {
        let mut request = json!({"model": model, "input": "Hi"});
        request[field] = value;
        let (status, _, body) = respond(&gateway, &request).await;
        assert_eq!(status, 400, "{field}: {body}");
        let error = &body["error"];
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert_eq!(error["code"], "unsupported_parameter", "{body}");
        assert!(error["param"].as_str().is_some_and(|p| p.starts_with(field)), "{body}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("openai or azure-openai")),
            "{body}"
        );
    }
    assert!(upstream.received().is_empty(), "nothing reached the upstream");
}

#[tokio::test]
async fn an_openai_provider_gets_the_request_untouched_but_model() {
    let upstream = Upstream::start().await;
    let (_config, gateway) = gateway(&upstream).await;
    let sent = r#"{"model":"native","input":"Hi","previous_response_id":"resp_prev","store":true,"tools":[{"type":"web_search"}],"include":["file_search_call.results"]}"#;
    let response = client()
        .post(format!("http://{}/v1/responses", gateway.addr))
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-key-must-not-travel")
        .header("openai-beta", "responses=v1")
        .body(sent)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["id"], "resp_upstream1", "the upstream's own answer");
    let seen = upstream.last();
    assert_eq!(seen.path, "/v1/responses");
    assert_eq!(
        &seen.raw[..],
        sent.replace(r#""model":"native""#, r#""model":"gpt-4.1""#).as_bytes()
    );
    assert_eq!(
        seen.headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer sk-native")
    );
    assert_eq!(
        seen.headers.get("openai-beta").and_then(|v| v.to_str().ok()),
        Some("responses=v1")
    );

    // Tokens are metered from the Responses usage, streamed and not.
    let series = r#"modelgate_tokens_total{alias="native",provider="default/native",direction="output"}"#;
    eventually(SETTLE, "output tokens metered", || async {
        (metric(&gateway, series).await == 4.0).then_some(())
    })
    .await;
    let events = events(&gateway, &json!({"model": "native", "input": "Hi", "stream": true})).await;
    assert_eq!(events.last().map(|(n, _)| n.as_str()), Some("response.completed"));
    eventually(SETTLE, "streamed output tokens metered", || async {
        (metric(&gateway, series).await == 8.0).then_some(())
    })
    .await;
    let input = r#"modelgate_tokens_total{alias="native",provider="default/native",direction="input"}"#;
    assert_eq!(metric(&gateway, input).await, 42.0);
}

#[tokio::test]
async fn an_azure_provider_passes_responses_through_on_its_v1_api() {
    let upstream = Upstream::start().await;
    let (_config, gateway) = gateway(&upstream).await;
    let (status, _, body) = respond(
        &gateway,
        &json!({"model": "azure", "input": "Hi", "previous_response_id": "resp_prev"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = upstream.last();
    assert_eq!(seen.path, "/openai/v1/responses");
    assert_eq!(seen.body["model"], "gpt-4o-prod");
    assert_eq!(seen.body["previous_response_id"], "resp_prev");
    assert_eq!(
        seen.headers.get("api-key").and_then(|v| v.to_str().ok()),
        Some("sk-azure")
    );
}

#[tokio::test]
async fn upstream_errors_are_openai_shaped_with_their_status_and_retry_after() {
    let upstream = Upstream::start().await;
    let (_config, gateway) = gateway(&upstream).await;
    let (status, headers, body) = respond(&gateway, &json!({"model": "tools", "input": "please rate-limit me"})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));
    assert_eq!(body["error"]["message"], "Rate limit reached for requests");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(!body.to_string().contains("sk-compat"));
}

#[tokio::test]
async fn a_stream_cut_short_ends_with_an_error_and_response_failed() {
    let upstream = Upstream::start().await;
    let (_config, gateway) = gateway(&upstream).await;
    let events = events(
        &gateway,
        &json!({"model": "tools", "input": "cut this one short", "stream": true}),
    )
    .await;
    let names = names(&events);
    assert!(!names.contains(&"response.completed"), "{names:?}");
    assert_eq!(names[names.len() - 2..], ["error", "response.failed"]);
    let (_, error) = &events[events.len() - 2];
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("ended before it finished")),
        "{error}"
    );
    let (_, failed) = &events[events.len() - 1];
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(
        output_text(&failed["response"]),
        "compat ",
        "what arrived before the cut"
    );
}

#[tokio::test]
async fn a_team_is_charged_the_responses_usage_passed_through_or_translated() {
    const KEY: &str = "mg-responses-team-key";
    let upstream = Upstream::start().await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(world(&upstream)
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: AccessGroup\nmetadata: {name: all}\nspec: {aliases: [tools, native]}\n"
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: Team\nmetadata: {name: apps}\nspec: {accessGroups: [all]}\n"
            + &key_secret("apps-key", "apps", KEY)),
    );
    let gateway = start_gateway_tenancy(
        &config,
        TenancyOptions {
            auth: AuthMode::ApiKey,
            admin_token: Some(modelgate::secret::SecretString::new("admin-token")),
            ..TenancyOptions::default()
        },
    )
    .await;
    let send = |body: Value| {
        let addr = gateway.addr;
        async move {
            let response = client()
                .post(format!("http://{addr}/v1/responses"))
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await
                .expect("answer");
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            (status, text)
        }
    };
    // Refused before any call: released, not charged.
    let (status, text) = send(json!({"model": "tools", "input": "Hi", "previous_response_id": "resp_1"})).await;
    assert_eq!(status, 400, "{text}");
    // Each answered: the openai provider's Responses usage (21 in, 5 of them cached, 4 out),
    // and the openai-compatible target's chat usage (11 in, 5 out), streamed and not.
    for model in ["native", "tools"] {
        for stream in [false, true] {
            let (status, text) = send(json!({"model": model, "input": "Hi", "stream": stream})).await;
            assert_eq!(status, 200, "{model} stream={stream}: {text}");
            assert!(text.contains("\"output_tokens\""), "{text}");
        }
    }
    let usage = eventually(SETTLE, "four settled requests", || async {
        let response = client()
            .get(format!("http://{}/api/teams/apps", gateway.admin_addr))
            .bearer_auth("admin-token")
            .send()
            .await
            .ok()?;
        let team: Value = response.json().await.ok()?;
        (team["usage"]["requests"].as_u64() >= Some(4)).then(|| team["usage"].clone())
    })
    .await;
    assert_eq!(
        (
            &usage["requests"],
            &usage["prompt_tokens"],
            &usage["completion_tokens"],
            &usage["cached_prompt_tokens"]
        ),
        (&json!(4), &json!(2 * 21 + 2 * 11), &json!(2 * 4 + 2 * 5), &json!(2 * 5))
    );
}

#[tokio::test]
#[ignore = "needs the openai Python package: tests/all.sh installs it and runs this"]
async fn the_official_openai_python_client_creates_responses_through_the_gateway() {
    let upstream = Upstream::start().await;
    let (_config, gateway) = gateway(&upstream).await;
    // Named outside pytest's test_*.py pattern so that the chat client run (tests/openai_client.rs)
    // does not collect it; given by path, pytest runs it.
    let stdout = pytest("responses_client.py", &gateway, &[]).await;
    assert!(stdout.contains("7 passed"), "{stdout}");
    assert!(upstream
        .received()
        .iter()
        .all(|r| r.headers.get("authorization").is_none_or(|v| v != "Bearer client-key")));
}
