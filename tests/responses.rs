//! What a client gets back: the allowed upstream headers and no others, a request id on every
//! answer, errors it can parse (echoing at most a little of what it sent), and honest
//! accounting of responses cut short.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use support::*;

const RELOAD: Duration = Duration::from_secs(15);

/// A gateway whose alias `relay` routes to `upstream`.
async fn relay_to(upstream: &FakeUpstream) -> (ConfigDir, modelgate::gateway::Running) {
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(provider("alpha", upstream, "sk-alpha") + &mock_provider() + &alias("relay", "{target: alpha/m}")),
    );
    let gateway = start_gateway(&config).await;
    (config, gateway)
}

async fn send(gateway: &modelgate::gateway::Running, model: &str, request_id: Option<&str>) -> reqwest::Response {
    let mut request = client()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .body(chat(model));
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    request.send().await.expect("the gateway answered")
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("text").to_string())
}

const ACCOUNT_HEADERS: [(&str, &str); 5] = [
    ("set-cookie", "__cf_bm=secret-cookie; path=/; HttpOnly"),
    ("openai-organization", "org-platform-team"),
    ("openai-project", "proj_platform"),
    ("server", "cloudflare"),
    ("x-envoy-upstream-service-time", "12"),
];

#[tokio::test]
async fn only_the_allowed_upstream_headers_reach_the_client_on_success_and_on_error() {
    let mut headers = ACCOUNT_HEADERS.to_vec();
    headers.extend([
        ("x-ratelimit-remaining-requests", "499"),
        ("x-ratelimit-reset-tokens", "6ms"),
        ("openai-processing-ms", "87"),
        ("x-request-id", "req_from_upstream"),
    ]);
    let ok = r#"{"id":"c1","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
    let upstream = FakeUpstream::start("alpha", Behaviour::Headers(200, ok, headers.clone())).await;
    let (_config, gateway) = relay_to(&upstream).await;

    let response = send(&gateway, "relay", Some("client-req-1")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-ratelimit-remaining-requests").as_deref(),
        Some("499")
    );
    assert_eq!(header(&response, "x-ratelimit-reset-tokens").as_deref(), Some("6ms"));
    assert_eq!(header(&response, "openai-processing-ms").as_deref(), Some("87"));
    assert_eq!(header(&response, "x-request-id").as_deref(), Some("client-req-1"));
    assert_eq!(
        header(&response, "x-upstream-request-id").as_deref(),
        Some("req_from_upstream")
    );
    for (name, _) in ACCOUNT_HEADERS {
        assert_eq!(header(&response, name), None, "{name} stays at the gateway");
    }
    assert_eq!(response.text().await.expect("body"), ok);

    // A 429 keeps what tells the client when to retry.
    let limited = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
    headers.extend([("retry-after", "7"), ("retry-after-ms", "7000")]);
    upstream.set(Behaviour::Headers(429, limited, headers.clone()));
    let response = send(&gateway, "relay", None).await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("7"));
    assert_eq!(header(&response, "retry-after-ms").as_deref(), Some("7000"));
    assert_eq!(
        header(&response, "x-ratelimit-remaining-requests").as_deref(),
        Some("499")
    );
    assert_eq!(header(&response, "content-type").as_deref(), Some("application/json"));
    for (name, _) in ACCOUNT_HEADERS {
        assert_eq!(header(&response, name), None, "{name} stays at the gateway");
    }
    assert_eq!(
        response.text().await.expect("body"),
        limited,
        "a JSON error passes through"
    );

    // A body that is not JSON (a load balancer's page) becomes an error the client parses.
    upstream.set(Behaviour::Headers(
        503,
        "<html><body>503 Service Temporarily Unavailable</body></html>",
        vec![("retry-after", "3"), ("set-cookie", "lb=1")],
    ));
    let response = send(&gateway, "relay", None).await;
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("3"));
    assert_eq!(header(&response, "set-cookie"), None);
    let body: serde_json::Value = response.json().await.expect("a JSON error");
    assert_eq!(
        body["error"],
        json!({
            "message": "The provider 'default/alpha' answered 503 Service Unavailable saying: <html><body>503 Service Temporarily Unavailable</body></html>",
            "type": "upstream_error",
            "param": null,
            "code": "upstream_error"
        })
    );
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_it_travels_upstream() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let (_config, gateway) = relay_to(&upstream).await;

    let response = send(&gateway, "relay", None).await;
    let made = header(&response, "x-request-id").expect("a request id");
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let seen = upstream.last().headers;
    assert_eq!(
        seen.get("x-request-id").map(|v| v.to_str().expect("text")),
        Some(made.as_str())
    );
    let again = header(&send(&gateway, "relay", None).await, "x-request-id").expect("id");
    assert_ne!(again, made, "one per request");

    let response = send(&gateway, "relay", Some("01J9ZC4X7Q-trace")).await;
    assert_eq!(header(&response, "x-request-id").as_deref(), Some("01J9ZC4X7Q-trace"));
    assert_eq!(upstream.last().headers["x-request-id"], "01J9ZC4X7Q-trace");

    // An unreasonable one is replaced, upstream too.
    let long = "x".repeat(500);
    let response = send(&gateway, "relay", Some(&long)).await;
    let replaced = header(&response, "x-request-id").expect("id");
    assert_eq!(replaced.len(), 36);
    assert_eq!(upstream.last().headers["x-request-id"], replaced.as_str());

    // Errors, from every part of the gateway, carry one too.
    let unknown_model = send(&gateway, "nope", Some("err-1")).await;
    assert_eq!(
        (
            unknown_model.status().as_u16(),
            header(&unknown_model, "x-request-id").as_deref()
        ),
        (404, Some("err-1"))
    );
    for (method, path) in [
        (reqwest::Method::GET, "/v1/nowhere"),
        (reqwest::Method::GET, "/v1/chat/completions"),
        (reqwest::Method::GET, "/v1/models"),
        (reqwest::Method::GET, "/v1/models/nope"),
    ] {
        let response = client()
            .request(method, format!("http://{}{path}", gateway.addr))
            .send()
            .await
            .expect("answer");
        assert_eq!(header(&response, "x-request-id").map(|id| id.len()), Some(36), "{path}");
    }
}

#[tokio::test]
async fn echoed_values_are_cut_and_every_error_of_the_gateway_is_json() {
    let config = ConfigDir::new();
    config.write("c.yaml", &(mock_provider() + &alias("fast", "{target: mock/m}")));
    let gateway = start_gateway(&config).await;

    let huge = "m".repeat(1 << 20);
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat(&huge)).await;
    assert_eq!(status, 404);
    let message = body["error"]["message"].as_str().expect("message");
    assert_eq!(
        message,
        format!(
            "The model '{}…' does not exist on this gateway. List the available models with GET /v1/models.",
            "m".repeat(100)
        )
    );

    let (status, body) = post(&gateway, &format!("/v1/{}", "p".repeat(5_000)), "{}").await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("unknown_url")));
    assert!(
        body["error"]["message"].as_str().expect("message").len() < 300,
        "{body}"
    );

    // An id that is not UTF-8 once decoded names no model.
    let (status, text) = get(gateway.addr, "/v1/models/%FF%FE").await;
    let body: serde_json::Value = serde_json::from_str(&text).expect("a JSON error");
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("model_not_found")),
        "{text}"
    );

    let (status, text) = get(gateway.admin_addr, "/nothing").await;
    let body: serde_json::Value = serde_json::from_str(&text).expect("a JSON error");
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("unknown_url")));
    let response = client()
        .post(format!("http://{}/metrics", gateway.admin_addr))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 405);
    let body: serde_json::Value = response.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

const OUTCOME: &str =
    r#"modelgate_requests_total{alias="relay",provider="default/alpha",endpoint="chat_completions",status_class="#;

async fn outcome(gateway: &modelgate::gateway::Running, class: &str) -> f64 {
    metric(gateway, &format!("{OUTCOME}\"{class}\"}}")).await
}

#[tokio::test]
async fn a_response_cut_by_the_provider_is_aborted_and_one_the_client_leaves_is_client_gone() {
    let upstream = FakeUpstream::start("alpha", Behaviour::CutStream).await;
    let (_config, gateway) = relay_to(&upstream).await;
    let stream_body = json!({"model": "relay", "stream": true, "messages": []}).to_string();
    let open = || async {
        client()
            .post(format!("http://{}/v1/chat/completions", gateway.addr))
            .body(stream_body.clone())
            .send()
            .await
            .expect("response")
    };

    let response = open().await;
    assert_eq!(response.status(), 200);
    let mut chunks = response.bytes_stream();
    let first = chunks.next().await.expect("a chunk").expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains("first"));
    upstream.release.notify_one();
    // After content the answer is the client's: the cut ends it with an error event and no
    // [DONE] (the resilience stage's commit point), never as a complete stream.
    let mut rest = String::new();
    while let Some(chunk) = chunks.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.expect("the stream ends cleanly")));
    }
    assert!(
        rest.contains("data: {\"error\":") && !rest.contains("[DONE]"),
        "the client sees the cut, not a complete stream: {rest}"
    );
    eventually(RELOAD, "the cut stream counted as aborted", || async {
        (outcome(&gateway, "aborted").await == 1.0).then_some(())
    })
    .await;
    assert_eq!(outcome(&gateway, "2xx").await, 0.0, "not a success");

    // The client reads the first chunk and leaves while the provider is still streaming.
    upstream.set(Behaviour::HeldStream);
    let response = open().await;
    let mut chunks = response.bytes_stream();
    chunks.next().await.expect("a chunk").expect("bytes");
    drop(chunks);
    eventually(RELOAD, "the abandoned stream counted as client_gone", || async {
        (outcome(&gateway, "client_gone").await == 1.0).then_some(())
    })
    .await;

    // Complete answers still count as 2xx, the body's end seen or not.
    upstream.set(Behaviour::Echo);
    for _ in 0..3 {
        assert_eq!(
            send(&gateway, "relay", None)
                .await
                .text()
                .await
                .map(|t| t.len() > 10)
                .ok(),
            Some(true)
        );
    }
    eventually(RELOAD, "three successes", || async {
        (outcome(&gateway, "2xx").await == 3.0).then_some(())
    })
    .await;
    assert_eq!(
        (
            outcome(&gateway, "aborted").await,
            outcome(&gateway, "client_gone").await
        ),
        (1.0, 1.0)
    );
}
