//! Azure OpenAI providers: the v1 API with the deployment as `model`, the dated deployments
//! API, and the `api-key` header, against a fake upstream.

mod support;

use serde_json::json;
use support::*;

/// An `azure-openai` provider at `upstream` (key `azure-key-1`), with an optional apiVersion.
fn azure(upstream: &FakeUpstream, api_version: Option<&str>) -> String {
    let settings = api_version.map_or(String::new(), |v| format!("  azure: {{apiVersion: \"{v}\"}}\n"));
    format!(
        r#"---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {{name: azure}}
spec:
  type: azure-openai
  baseUrl: http://{addr}
  apiKey: {{secretRef: {{name: azure-key, key: apiKey}}}}
{settings}---
apiVersion: v1
kind: Secret
metadata: {{name: azure-key}}
stringData: {{apiKey: azure-key-1}}
"#,
        addr = upstream.addr
    ) + &alias("smart", "{target: azure/gpt-4o-prod}")
}

#[tokio::test]
async fn the_v1_api_takes_the_deployment_as_model_and_the_key_as_api_key() {
    let upstream = FakeUpstream::start("azure", Behaviour::Echo).await;
    let config = ConfigDir::new();
    config.write("c.yaml", &azure(&upstream, None));
    let gateway = start_gateway(&config).await;

    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("smart")).await;
    assert_eq!(status, 200, "{body}");
    let seen = upstream.last();
    assert_eq!(seen.path, "/openai/v1/chat/completions");
    assert_eq!(seen.query, None);
    assert_eq!(seen.body["model"], "gpt-4o-prod");
    assert_eq!(
        seen.headers.get("api-key").and_then(|v| v.to_str().ok()),
        Some("azure-key-1")
    );
    assert_eq!(
        seen.authorization, None,
        "Azure takes the key as api-key, and the client's never travels"
    );

    let (status, _) = post(
        &gateway,
        "/v1/embeddings",
        &json!({"model": "smart", "input": "hi"}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(upstream.last().path, "/openai/v1/embeddings");
}

#[tokio::test]
async fn a_dated_api_version_uses_the_deployments_urls() {
    let upstream = FakeUpstream::start("azure", Behaviour::Echo).await;
    let config = ConfigDir::new();
    config.write("c.yaml", &azure(&upstream, Some("2024-10-21")));
    let gateway = start_gateway(&config).await;

    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("smart")).await;
    assert_eq!(status, 200, "{body}");
    let seen = upstream.last();
    assert_eq!(seen.path, "/openai/deployments/gpt-4o-prod/chat/completions");
    assert_eq!(seen.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(
        seen.headers.get("api-key").and_then(|v| v.to_str().ok()),
        Some("azure-key-1")
    );
}

#[tokio::test]
async fn azure_errors_keep_their_status_and_message() {
    let upstream = FakeUpstream::start(
        "azure",
        Behaviour::Fail(429, r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation have exceeded the rate limit."}}"#),
    )
    .await;
    let config = ConfigDir::new();
    config.write("c.yaml", &azure(&upstream, None));
    let gateway = start_gateway(&config).await;
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("smart")).await;
    assert_eq!(status, 429);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("exceeded the rate limit")),
        "{body}"
    );
}
