//! The standalone gateway end to end: a real HTTP client, the gateway on port 0, and fake
//! upstreams on port 0. Every test has its own gateway, config directory and upstreams.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use support::*;

const RELOAD: Duration = Duration::from_secs(15);

#[tokio::test]
async fn the_upstream_receives_the_rewritten_model_and_the_provider_key() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(provider("alpha", &upstream, "sk-alpha-1") + &alias("fast-model", "{target: alpha/upstream-model-1}")),
    );
    let gateway = start_gateway(&config).await;

    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("fast-model")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "alpha served upstream-model-1"
    );

    let seen = upstream.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.authorization.as_deref(),
        Some("Bearer sk-alpha-1"),
        "the provider key, not the client's"
    );
    assert_eq!(
        seen.body,
        json!({"model": "upstream-model-1", "messages": [{"role": "user", "content": "hello there"}], "temperature": 0.2})
    );
    // Also served without the /v1 prefix, for clients whose base URL lacks it.
    let (status, _) = post(&gateway, "/chat/completions", &chat("fast-model")).await;
    assert_eq!(status, 200);
}

/// A gateway whose alias `fast-model` routes to `upstream` (provider `alpha`, key `sk-alpha-1`).
async fn gateway_to(upstream: &FakeUpstream) -> (ConfigDir, modelgate::gateway::Running) {
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(provider("alpha", upstream, "sk-alpha-1") + &alias("fast-model", "{target: alpha/m}")),
    );
    let gateway = start_gateway(&config).await;
    (config, gateway)
}

#[tokio::test]
async fn only_content_negotiation_and_tracing_headers_travel_upstream() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let (_config, gateway) = gateway_to(&upstream).await;
    let response = client()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-key-must-not-travel")
        .header("cookie", "session=client-secret")
        .header("x-request-id", "req-42")
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .header("user-agent", "first-agent")
        .header("user-agent", "second-agent")
        .header("x-custom", "stays")
        .body(chat("fast-model"))
        .send()
        .await
        .expect("the gateway answered");
    assert_eq!(response.status(), 200);
    let seen = upstream.last();
    let header = |name: &str| {
        seen.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(header("x-request-id"), ["req-42"]);
    assert_eq!(
        header("traceparent"),
        ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
    );
    assert_eq!(header("user-agent"), ["first-agent"], "one value, the first");
    assert_eq!(header("authorization"), ["Bearer sk-alpha-1"]);
    assert!(header("cookie").is_empty(), "{:?}", seen.headers);
    assert!(header("x-custom").is_empty(), "{:?}", seen.headers);
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_closed_ones_replaced() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let (_config, gateway) = gateway_to(&upstream).await;
    for _ in 0..20 {
        let (status, body) = post(&gateway, "/v1/chat/completions", &chat("fast-model")).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        upstream.connections(),
        1,
        "20 requests one after another share one connection"
    );

    upstream.set(Behaviour::Close);
    for _ in 0..5 {
        let (status, body) = post(&gateway, "/v1/chat/completions", &chat("fast-model")).await;
        assert_eq!(status, 200, "a connection the upstream closed is never reused: {body}");
    }
    upstream.set(Behaviour::Echo);
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("fast-model")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.connections(), 6, "one new connection after each close");
}

#[tokio::test]
async fn completions_and_embeddings_are_forwarded_to_their_paths() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(provider("alpha", &upstream, "k") + &alias("embedder", "{target: alpha/text-embedding-3-small}")),
    );
    let gateway = start_gateway(&config).await;
    post(&gateway, "/v1/embeddings", r#"{"model":"embedder","input":"hi"}"#).await;
    assert_eq!(upstream.last().path, "/v1/embeddings");
    assert_eq!(upstream.last().body["model"], "text-embedding-3-small");
    post(&gateway, "/v1/completions", r#"{"model":"embedder","prompt":"hi"}"#).await;
    assert_eq!(upstream.last().path, "/v1/completions");
}

/// Starts a streamed chat completion for the alias `chat`.
async fn stream_chat(gateway: &modelgate::gateway::Running) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .body(json!({"model": "chat", "stream": true, "messages": []}).to_string())
        .send()
        .await
        .expect("response")
}

#[tokio::test]
async fn a_streams_first_chunk_reaches_the_client_before_the_upstream_finishes() {
    let upstream = FakeUpstream::start("alpha", Behaviour::HeldStream).await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(provider("alpha", &upstream, "k") + &alias("chat", "{target: alpha/m}")),
    );
    let gateway = start_gateway(&config).await;

    let response = stream_chat(&gateway).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    // The upstream holds the rest of the stream until we release it: if the gateway buffered,
    // this first read would never complete.
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the first chunk arrived while the upstream was still streaming")
        .expect("a chunk")
        .expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains("\"first\""));
    upstream.release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.expect("bytes"));
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("\"second\"") && rest.ends_with("data: [DONE]\n\n"),
        "{rest}"
    );

    // Tokens from the stream's usage event are metered.
    let series = r#"modelgate_tokens_total{alias="chat",provider="default/alpha",direction="output"}"#;
    eventually(RELOAD, "output tokens metered", || async {
        (metric(&gateway, series).await == 3.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_stream_that_goes_silent_longer_than_idle_is_cut() {
    let upstream = FakeUpstream::start("alpha", Behaviour::HeldStream).await;
    let config = ConfigDir::new();
    let silent = provider("alpha", &upstream, "k").replace("{request: 2s}", "{request: 10m, idle: 300ms}");
    config.write("c.yaml", &(silent + &alias("chat", "{target: alpha/m}")));
    let gateway = start_gateway(&config).await;

    let response = stream_chat(&gateway).await;
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    // The upstream sends one chunk and then never another: after 300 ms of silence the
    // gateway ends the stream with an error instead of holding the client for 10 minutes.
    let mut received = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => received.extend_from_slice(&bytes),
                Err(_) => return true,
            }
        }
        false
    })
    .await
    .expect("the silent stream was cut long before the request timeout");
    let received = String::from_utf8_lossy(&received);
    assert!(ended, "the stream ended with an error, not as if complete: {received}");
    assert!(
        received.contains("\"first\"") && !received.contains("[DONE]"),
        "{received}"
    );
}

#[tokio::test]
async fn editing_the_config_switches_the_provider_without_a_restart() {
    let alpha = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let beta = FakeUpstream::start("beta", Behaviour::Echo).await;
    let config = ConfigDir::new();
    let providers = provider("alpha", &alpha, "ka") + &provider("beta", &beta, "kb");
    config.write("providers.yaml", &providers);
    config.write("alias.yaml", &alias("smart", "{target: alpha/model-a}"));
    let gateway = start_gateway(&config).await;
    let (_, body) = post(&gateway, "/v1/chat/completions", &chat("smart")).await;
    assert_eq!(body["choices"][0]["message"]["content"], "alpha served model-a");

    config.write("alias.yaml", &alias("smart", "{target: beta/model-b}"));
    eventually(RELOAD, "smart to route to beta", || async {
        let (_, body) = post(&gateway, "/v1/chat/completions", &chat("smart")).await;
        (body["choices"][0]["message"]["content"] == "beta served model-b").then_some(())
    })
    .await;
    assert_eq!(beta.last().authorization.as_deref(), Some("Bearer kb"));
    // The old route's series are gone from /metrics; the new one's are there.
    let (_, text) = get(gateway.admin_addr, "/metrics").await;
    assert!(!text.contains(r#"provider="default/alpha""#), "{text}");
    assert!(
        text.contains(r#"modelgate_requests_total{alias="smart",provider="default/beta""#),
        "{text}"
    );
}

#[tokio::test]
async fn a_broken_edit_keeps_the_last_good_route() {
    let alpha = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = ConfigDir::new();
    config.write("providers.yaml", &provider("alpha", &alpha, "ka"));
    config.write(
        "alias.yaml",
        &(alias("smart", "{target: alpha/model-a}") + &alias("other", "{target: alpha/o}")),
    );
    let gateway = start_gateway(&config).await;

    // One alias breaks (missing provider) while another is added in the same edit.
    config.write(
        "alias.yaml",
        &(alias("smart", "{target: missing/model-x}")
            + &alias("other", "{target: alpha/o}")
            + &alias("new", "{target: alpha/n}")),
    );
    let applied = r#"modelgate_config_reloads_total{result="applied_with_errors"}"#;
    eventually(RELOAD, "the broken edit to be applied", || async {
        (metric(&gateway, applied).await >= 1.0).then_some(())
    })
    .await;
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("smart")).await;
    assert_eq!(
        (status, body["choices"][0]["message"]["content"].clone()),
        (200, json!("alpha served model-a"))
    );
    let (status, _) = post(&gateway, "/v1/chat/completions", &chat("new")).await;
    assert_eq!(status, 200, "the valid part of the edit is applied");

    // A file that is not YAML at all rejects the whole reload.
    config.write("alias.yaml", "smart: [unclosed");
    let rejected = r#"modelgate_config_reloads_total{result="rejected"}"#;
    eventually(RELOAD, "the unreadable file to be rejected", || async {
        (metric(&gateway, rejected).await >= 1.0).then_some(())
    })
    .await;
    let (status, _) = post(&gateway, "/v1/chat/completions", &chat("new")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn every_error_case_has_its_documented_status_and_body() {
    let alpha = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(provider("alpha", &alpha, "ka")
            + &alias("on", "{target: alpha/m}")
            + &alias("off", "{target: alpha/m, active: false}")),
    );
    let gateway = start_gateway_with(&config, 1024).await;
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        ("unknown alias", chat("nope"), 404, "model_not_found", "The model 'nope' does not exist on this gateway. List the available models with GET /v1/models."),
        ("disabled alias", chat("off"), 403, "model_disabled", "The model 'off' is disabled on this gateway: alias 'off' is disabled (spec.active is false). Ask the platform team to enable it, or pick another model from GET /v1/models."),
        ("malformed JSON", "{\"model\": ".to_string(), 400, "invalid_json", ""),
        ("missing model", r#"{"messages":[]}"#.to_string(), 400, "missing_model", "The request body has no 'model' field. Set 'model' to one of the names listed by GET /v1/models."),
        ("model not a string", r#"{"model":7}"#.to_string(), 400, "invalid_model", ""),
        ("body over the limit", json!({"model": "on", "pad": "x".repeat(2000)}).to_string(), 413, "request_too_large", "The request body is larger than this gateway's limit of 1024 bytes. Send a smaller request, or ask the platform team to raise --max-body-bytes."),
    ];
    for (case, body, status, code, message) in cases {
        let (got_status, got) = post(&gateway, "/v1/chat/completions", &body).await;
        assert_eq!(got_status, status, "{case}: {got}");
        assert_eq!(got["error"]["code"], code, "{case}: {got}");
        assert!(
            got["error"]["type"].is_string() && got["error"].get("param").is_some(),
            "{case}: {got}"
        );
        if !message.is_empty() {
            assert_eq!(got["error"]["message"], message, "{case}");
        }
    }
    let (status, body) = post(&gateway, "/v1/nothing-here", "{}").await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("unknown_url")));
    for (path, method) in [
        ("/v1/chat/completions", reqwest::Method::GET),
        ("/embeddings", reqwest::Method::PUT),
        ("/v1/models", reqwest::Method::POST),
    ] {
        let response = reqwest::Client::new()
            .request(method.clone(), format!("http://{}{path}", gateway.addr))
            .send()
            .await
            .expect("response");
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("JSON error");
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (405, json!("method_not_allowed")),
            "{method} {path}"
        );
    }
    assert_eq!(
        metric(&gateway, r#"modelgate_rejected_requests_total{code="model_not_found"}"#).await,
        1.0,
        "refused requests are counted by code, not by the unknown name"
    );
}

#[tokio::test]
async fn upstream_failures_map_to_502_504_or_pass_through() {
    let alpha = FakeUpstream::start(
        "alpha",
        Behaviour::Fail(
            429,
            r#"{"error":{"message":"slow down","type":"rate_limit","code":"rate_limit_exceeded"}}"#,
        ),
    )
    .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let config = ConfigDir::new();
    let dead = format!(
        "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: dead}}\nspec: {{type: openai-compatible, baseUrl: 'http://{closed}/v1'}}\n"
    );
    config.write(
        "c.yaml",
        &(provider("alpha", &alpha, "sk-alpha-secret")
            + &dead
            + &alias("limited", "{target: alpha/m}")
            + &alias("gone", "{target: dead/m}")),
    );
    let gateway = start_gateway(&config).await;

    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("limited")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (429, json!("rate_limit_exceeded")),
        "passed through"
    );

    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("gone")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (502, json!("upstream_unreachable")),
        "{body}"
    );

    alpha.set(Behaviour::Slow(Duration::from_secs(5)));
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("limited")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (504, json!("upstream_timeout")),
        "{body}"
    );

    // A provider echoing its key in an error never shows it to the client.
    alpha.set(Behaviour::Fail(
        401,
        r#"{"error":{"message":"Incorrect API key provided: sk-alpha-secret"}}"#,
    ));
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("limited")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!("upstream_auth_failed"))
    );
    alpha.set(Behaviour::Fail(
        400,
        r#"{"error":{"message":"bad key sk-alpha-secret"}}"#,
    ));
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("limited")).await;
    assert_eq!(
        (status, body["error"]["message"].clone()),
        (400, json!("bad key [redacted]"))
    );
}

#[tokio::test]
async fn models_lists_active_visible_aliases() {
    let config = ConfigDir::new();
    let mock = mock_provider();
    config.write(
        "c.yaml",
        &(mock
            + &alias("b-visible", "{target: mock/m, description: 'shown'}")
            + &alias("a-visible", "{target: mock/m}")
            + &alias("hidden-one", "{target: mock/m, hidden: true}")
            + &alias("off", "{target: mock/m, active: false}")),
    );
    let gateway = start_gateway(&config).await;
    let (status, text) = get(gateway.addr, "/v1/models").await;
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        (body["object"].as_str(), ids),
        (Some("list"), vec!["a-visible", "b-visible"])
    );
    let (status, text) = get(gateway.addr, "/v1/models/hidden-one").await;
    assert_eq!(status, 200, "hidden aliases are served, just not listed: {text}");
    let (status, _) = get(gateway.addr, "/v1/models/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_weighted_split_sends_traffic_in_proportion() {
    let config = ConfigDir::new();
    let mock = mock_provider();
    config.write(
        "c.yaml",
        &(mock
            + &alias(
                "canary",
                "{targets: [{target: mock/stable, weight: 90}, {target: mock/canary, weight: 10}]}",
            )),
    );
    let gateway = start_gateway(&config).await;
    let mut canary = 0;
    const N: usize = 1000;
    for _ in 0..N {
        let (_, body) = post(&gateway, "/v1/chat/completions", &chat("canary")).await;
        if body["model"] == "canary" {
            canary += 1;
        }
    }
    // 10% of 1000: the standard deviation is 9.5, so ±40 is over 4 sigma.
    assert!((60..=140).contains(&canary), "{canary} of {N} went to the canary");
}

#[tokio::test]
async fn startup_fails_listing_every_problem() {
    let config = ConfigDir::new();
    config.write(
        "a.yaml",
        &(alias("one", "{target: nowhere/m}") + &alias("two", "{targets: [{target: x/y, weight: 50}]}")),
    );
    config.write(
        "b.yaml",
        "apiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: three}\nspec: {targt: x/y}\n",
    );
    let options = modelgate::gateway::GatewayOptions {
        config: vec![config.path()],
        scope: Default::default(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin_listen: "127.0.0.1:0".parse().expect("addr"),
        max_body_bytes: 1024,
        egress: Default::default(),
        server: Default::default(),
        tenancy: Default::default(),
    };
    let error = match modelgate::gateway::start(options).await {
        Ok(_) => panic!("a broken config must not start"),
        Err(e) => e.to_string(),
    };
    let dir = config.path().display().to_string();
    for expected in [
        format!("{dir}/b.yaml: ModelAlias default/three: spec.targt: unknown field 'spec.targt'"),
        format!("{dir}/a.yaml: ModelAlias default/one: spec.target: LLMProvider 'nowhere' does not exist in namespace 'default'"),
        format!("{dir}/a.yaml: ModelAlias default/two: spec.targets: the weights of targets must add up to 100, but 50 = 50"),
    ] {
        assert!(error.contains(&expected), "missing {expected:?} in:\n{error}");
    }
}
