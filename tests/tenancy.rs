//! Tenancy end to end on the standalone gateway (memory store): API keys, access groups,
//! credits, rate limits, `/v1/models` per key, and the read API.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use modelgate::gateway::tenancy::{AuthMode, TenancyOptions};
use modelgate::gateway::Running;
use serde_json::{json, Value};
use support::*;

/// Keys of the teams below (only their hashes are in the config).
const FREE_KEY: &str = "mg-free-team-key-1";
const BUDGET_KEY: &str = "mg-budget-team-key-2";
const LIMITED_KEY: &str = "mg-limited-team-key-3";
const SERIAL_KEY: &str = "mg-serial-team-key-4";

fn team(name: &str, spec: &str) -> String {
    format!("---\napiVersion: modelgate.dev/v1alpha1\nkind: Team\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}

fn group(name: &str, spec: &str) -> String {
    format!("---\napiVersion: modelgate.dev/v1alpha1\nkind: AccessGroup\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}

/// A call through `cheap` costs 11 × 1.00 + 5 × 2.00 per million = 21 micro-dollars (the
/// fake upstream reports 11 prompt and 5 completion tokens).
pub fn world(upstream: &FakeUpstream) -> String {
    provider("alpha", upstream, "sk-upstream")
        + &alias(
            "cheap",
            "{target: alpha/cheap-model, pricing: {inputPerMillionTokens: \"1.00\", outputPerMillionTokens: \"2.00\"}}",
        )
        + &alias("via-chain", "{target: cheap}")
        + &alias("quiet", "{target: alpha/q, hidden: true}")
        + "---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: premium, labels: {tier: premium}}\nspec: {target: alpha/premium-model}\n"
        + &group("starter", "{description: Starter models, aliases: [cheap, via-chain, quiet]}")
        + &group("premium-models", "{aliasSelector: {matchLabels: {tier: premium}}}")
        + &team("free", "{displayName: Free, organization: org_a, accessGroups: [starter]}")
        + &team(
            "budget",
            "{accessGroups: [starter], credits: {allocated: \"0.000105\", currency: USD, period: Monthly}}",
        )
        + &team("limited", "{accessGroups: [starter, premium-models], limits: {requestsPerMinute: 3}}")
        + &team("serial", "{accessGroups: [starter], limits: {maxParallelRequests: 1}}")
        + &key_secret("free-key", "free", FREE_KEY)
        + &key_secret("budget-key", "budget", BUDGET_KEY)
        + &key_secret("limited-key", "limited", LIMITED_KEY)
        + &key_secret("serial-key", "serial", SERIAL_KEY)
}

async fn gateway_with(config: &ConfigDir, admin_token: Option<&str>) -> Running {
    start_gateway_tenancy(
        config,
        TenancyOptions {
            auth: AuthMode::ApiKey,
            admin_token: admin_token.map(modelgate::secret::SecretString::new),
            ..TenancyOptions::default()
        },
    )
    .await
}

/// Sends a chat request with `key`; returns status, headers and JSON body.
async fn call(gateway: &Running, key: Option<&str>, model: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = client()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .header("content-type", "application/json")
        .body(chat(model));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("the gateway answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn admin_json(gateway: &Running, path: &str) -> (u16, Value) {
    let (status, text) = get(gateway.admin_addr, path).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn a_key_is_required_and_matched_by_its_hash() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = ConfigDir::new();
    config.write("c.yaml", &world(&upstream));
    let gateway = gateway_with(&config, None).await;

    let (status, _, body) = call(&gateway, None, "cheap").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("Authorization: Bearer"));

    let (status, _, body) = call(&gateway, Some("mg-guessed-key-that-is-close"), "cheap").await;
    assert_eq!(status, 401, "{body}");
    assert!(
        !body.to_string().contains("guessed"),
        "an error never echoes a key: {body}"
    );

    let (status, _, body) = call(&gateway, Some(FREE_KEY), "cheap").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        upstream.last().authorization.as_deref(),
        Some("Bearer sk-upstream"),
        "the client's key stays at the gateway"
    );

    // Anthropic-style clients send x-api-key.
    let response = client()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .header("x-api-key", FREE_KEY)
        .body(chat("cheap"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);

    // A deleted key Secret stops working at the next reload.
    config.write(
        "c.yaml",
        &world(&upstream).replace(&key_secret("free-key", "free", FREE_KEY), ""),
    );
    eventually(Duration::from_secs(15), "the deleted key to be refused", || async {
        (call(&gateway, Some(FREE_KEY), "cheap").await.0 == 401).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_team_calls_and_lists_only_the_aliases_its_groups_grant() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = ConfigDir::new();
    config.write("c.yaml", &world(&upstream));
    let gateway = gateway_with(&config, None).await;

    let (status, _, body) = call(&gateway, Some(FREE_KEY), "premium").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "model_access_denied");
    assert_eq!(
        body["error"]["message"],
        "Team 'default/free' may not call the model 'premium': no AccessGroup of the team grants it. List the models this key may call with GET /v1/models, or ask the platform team to add 'premium' to one of the team's access groups."
    );
    // Granted by name, through a chain, by a label selector.
    assert_eq!(call(&gateway, Some(FREE_KEY), "via-chain").await.0, 200);
    assert_eq!(upstream.last().body["model"], "cheap-model");
    assert_eq!(call(&gateway, Some(LIMITED_KEY), "premium").await.0, 200);

    let models = |key: &'static str| {
        let addr = gateway.addr;
        async move {
            let response = client()
                .get(format!("http://{addr}/v1/models"))
                .bearer_auth(key)
                .send()
                .await
                .expect("answer");
            let body: Value = response.json().await.expect("json");
            body["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|m| m["id"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        models(FREE_KEY).await,
        ["cheap", "via-chain"],
        "hidden aliases stay hidden"
    );
    assert_eq!(models(LIMITED_KEY).await, ["cheap", "premium", "via-chain"]);
    let (status, _) = get(gateway.addr, "/v1/models").await;
    assert_eq!(status, 401, "listing needs a key too");
    let response = client()
        .get(format!("http://{}/v1/models/premium", gateway.addr))
        .bearer_auth(FREE_KEY)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn credits_run_out_with_402_after_exactly_the_allocated_spend() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = ConfigDir::new();
    config.write("c.yaml", &world(&upstream));
    let gateway = gateway_with(&config, None).await;

    for n in 1..=5 {
        let (status, _, body) = call(&gateway, Some(BUDGET_KEY), "cheap").await;
        assert_eq!(status, 200, "call {n}: {body}");
        // Settled when the response body ends, just after the client has read it.
        eventually(Duration::from_secs(5), "the call to be settled", || async {
            (admin_json(&gateway, "/api/teams/budget").await.1["usage"]["requests"] == n).then_some(())
        })
        .await;
    }
    let (status, _, body) = call(&gateway, Some(BUDGET_KEY), "via-chain").await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_credits");
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Team 'default/budget' has used its credits: 0.000105 of 0.000105 USD spent."),
        "{body}"
    );
    assert_eq!(upstream.seen().len(), 5, "the refused call never reached the upstream");

    let (status, team) = admin_json(&gateway, "/api/teams/budget").await;
    assert_eq!(status, 200, "{team}");
    assert_eq!(team["usage"]["requests"], 5);
    assert_eq!(team["usage"]["prompt_tokens"], 55);
    assert_eq!(team["usage"]["cost_usd"], "0.000105");
    assert_eq!(team["credits_remaining"], 0.0);
    let cost = metric(
        &gateway,
        "modelgate_team_cost_usd_total{team=\"default/budget\",alias=\"cheap\"}",
    )
    .await;
    assert!((cost - 0.000105).abs() < 1e-12, "{cost}");
    assert_eq!(
        metric(
            &gateway,
            "modelgate_team_rejected_requests_total{team=\"default/budget\",code=\"insufficient_credits\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_ratelimit_headers() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = ConfigDir::new();
    config.write("c.yaml", &world(&upstream));
    let gateway = gateway_with(&config, None).await;

    for remaining in ["2", "1", "0"] {
        let (status, headers, body) = call(&gateway, Some(LIMITED_KEY), "cheap").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["x-ratelimit-limit-requests"], "3");
        assert_eq!(headers["x-ratelimit-remaining-requests"], remaining);
    }
    let (status, headers, body) = call(&gateway, Some(LIMITED_KEY), "cheap").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("3 requests per minute"),
        "{body}"
    );
    let retry: u64 = headers["retry-after"].to_str().expect("text").parse().expect("seconds");
    assert!(
        (1..=20).contains(&retry),
        "a third of a minute refills one request: {retry}"
    );
    assert_eq!(headers["x-ratelimit-limit-requests"], "3");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    assert!(headers.contains_key("x-ratelimit-reset-requests"));
    // Another team is not affected.
    assert_eq!(call(&gateway, Some(FREE_KEY), "cheap").await.0, 200);
}

#[tokio::test]
async fn parallel_requests_are_capped_and_a_stream_is_settled_from_its_usage() {
    let upstream = FakeUpstream::start("alpha", Behaviour::HeldStream).await;
    let config = ConfigDir::new();
    config.write("c.yaml", &world(&upstream));
    let gateway = gateway_with(&config, None).await;

    let first = client()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .bearer_auth(SERIAL_KEY)
        .body(json!({"model": "cheap", "stream": true, "messages": []}).to_string())
        .send()
        .await
        .expect("stream");
    assert_eq!(first.status(), 200);
    let (status, _, body) = call(&gateway, Some(SERIAL_KEY), "cheap").await;
    assert_eq!(status, 429, "one request at a time: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1 parallel requests"),
        "{body}"
    );

    upstream.release.notify_one();
    let mut stream = first.bytes_stream();
    while let Some(chunk) = stream.next().await {
        chunk.expect("chunk");
    }
    let (_, team) = eventually(Duration::from_secs(5), "the stream to be settled", || async {
        let (status, team) = admin_json(&gateway, "/api/teams/serial").await;
        (team["usage"]["requests"] == 1).then_some((status, team))
    })
    .await;
    // The held stream's usage: 2 prompt and 3 completion tokens.
    assert_eq!(
        (
            team["usage"]["prompt_tokens"].clone(),
            team["usage"]["completion_tokens"].clone()
        ),
        (json!(2), json!(3))
    );
    upstream.set(Behaviour::Echo);
    assert_eq!(call(&gateway, Some(SERIAL_KEY), "cheap").await.0, 200, "free again");
}

#[tokio::test]
async fn the_read_api_answers_the_documents_shapes_behind_the_admin_token() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = ConfigDir::new();
    config.write("c.yaml", &world(&upstream));
    let gateway = gateway_with(&config, Some("admin-token-1")).await;
    for _ in 0..2 {
        assert_eq!(call(&gateway, Some(FREE_KEY), "cheap").await.0, 200);
    }

    let (status, _) = admin_json(&gateway, "/api/model-aliases").await;
    assert_eq!(status, 401, "the read API needs the admin token");
    let read = |path: &'static str| {
        let admin = gateway.admin_addr;
        async move {
            let response = client()
                .get(format!("http://{admin}{path}"))
                .bearer_auth("admin-token-1")
                .send()
                .await
                .expect("answer");
            assert_eq!(response.status(), 200, "{path}");
            response.json::<Value>().await.expect("json")
        }
    };
    let list = read("/api/model-aliases").await;
    let cheap = list["aliases"]
        .as_array()
        .expect("aliases")
        .iter()
        .find(|a| a["alias"] == "cheap")
        .expect("cheap")
        .clone();
    assert_eq!(
        cheap,
        json!({"alias": "cheap", "target": "alpha/cheap-model", "description": null, "active": true, "usage_count": 2,
               "usage": {"period": "all", "requests": 2, "prompt_tokens": 22, "completion_tokens": 10,
                         "cached_prompt_tokens": 0, "cost_usd": "0.000042"}})
    );
    let detail = read("/api/model-aliases/cheap").await;
    assert_eq!(detail["access_groups"], json!(["starter"]));
    assert_eq!(detail["teams_with_access"], 4);
    assert_eq!(
        detail["usage_stats"],
        json!({"total_calls": 2, "total_cost_usd": 0.000042, "avg_tokens_per_call": 16})
    );
    assert_eq!(detail["pricing"]["inputPerMillionTokens"], "1.00");
    let team = read("/api/teams/free").await;
    assert_eq!(team["team_alias"], "Free");
    assert_eq!(team["organization_id"], "org_a");
    assert_eq!(team["access_groups"], json!(["starter"]));
    assert_eq!(team["model_aliases"], json!(["cheap", "quiet", "via-chain"]));
    assert_eq!(team["usage"]["requests"], 2);
    let group = read("/api/model-access-groups/premium-models").await;
    assert_eq!(
        group,
        json!({"group_name": "premium-models", "namespace": "default", "description": null, "model_aliases": ["premium"], "teams": ["limited"]})
    );
}
