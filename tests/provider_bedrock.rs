//! Amazon Bedrock providers against a fake Bedrock runtime (tests/support/bedrock.rs): Converse
//! and ConverseStream translated both ways, SigV4 with static keys (rotated through the
//! Secret) and with the AWS chain (EKS Pod Identity, refreshed before expiry), a Bedrock API
//! key, errors, Titan embeddings; signatures recomputed with botocore; the official `openai`
//! Python client against a Bedrock alias.

#[path = "support/bedrock.rs"]
mod fake;
mod support;

use std::path::Path;
use std::time::Duration;

use fake::{answer_text, tool_input, FakeBedrock, IssuedKeys, Mode, Received};
use serde_json::{json, Value};
use support::*;

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const ACCESS_KEY: &str = "AKIAMODELGATETEST01";
const SECRET_KEY: &str = "bedrock-secret-never-print-0001";
const TOKEN: &str = "bedrock-token-never-print-0001";

/// A `bedrock` provider `name` at the fake with static keys from a Secret.
fn static_provider(fake: &FakeBedrock, name: &str, access_key: &str, secret: &str, token: Option<&str>) -> String {
    let token = token.map_or(String::new(), |t| format!(", sessionToken: {t}"));
    format!(
        r#"---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {{name: {name}}}
spec:
  type: bedrock
  baseUrl: {base}
  bedrock: {{region: us-east-1, credentials: {{secretRef: {{name: {name}-creds}}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}-creds}}
stringData: {{accessKeyId: {access_key}, secretAccessKey: {secret}{token}}}
"#,
        base = fake.base_url()
    )
}

/// The provider `aws` with these keys, and the aliases `claude` and `titan` on it.
fn bedrock_config(fake: &FakeBedrock, access_key: &str, secret: &str, token: Option<&str>) -> String {
    static_provider(fake, "aws", access_key, secret, token)
        + &alias("claude", &format!("{{target: \"aws/{MODEL}\"}}"))
        + &alias("titan", "{target: \"aws/amazon.titan-embed-text-v2:0\"}")
}

async fn gateway_for(fake: &FakeBedrock) -> (ConfigDir, modelgate::gateway::Running) {
    let config = ConfigDir::new();
    config.write("c.yaml", &bedrock_config(fake, ACCESS_KEY, SECRET_KEY, Some(TOKEN)));
    let gateway = start_gateway(&config).await;
    (config, gateway)
}

/// `(SignedHeaders, the access key id of Credential=)` of a SigV4 Authorization header.
fn signature_parts(received: &Received) -> (String, String) {
    let authorization = received.header("authorization").expect("an Authorization header");
    assert!(authorization.starts_with("AWS4-HMAC-SHA256 "), "{authorization}");
    let field = |name: &str| {
        authorization
            .split([' ', ','])
            .find_map(|part| part.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {authorization}"))
            .to_string()
    };
    let credential = field("Credential=");
    let access_key = credential.split('/').next().expect("access key").to_string();
    assert!(credential.ends_with("/us-east-1/bedrock/aws4_request"), "{credential}");
    (field("SignedHeaders="), access_key)
}

/// Server-sent events of a response body: each `data:` payload.
fn events(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

async fn stream(gateway: &modelgate::gateway::Running, body: Value) -> (u16, String) {
    let response = client()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-key-must-not-travel")
        .body(body.to_string())
        .send()
        .await
        .expect("the gateway answered");
    (response.status().as_u16(), response.text().await.expect("body"))
}

#[tokio::test]
async fn chat_reaches_converse_with_the_model_id_encoded_and_signed_with_the_secrets_keys() {
    let fake = FakeBedrock::start().await;
    let (_config, gateway) = gateway_for(&fake).await;
    let body = json!({"model": "claude", "max_tokens": 64, "temperature": 0.3, "stop": "END",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]});
    let (status, reply) = post(&gateway, "/v1/chat/completions", &body.to_string()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["choices"][0]["message"]["content"], answer_text(MODEL));
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        reply["usage"],
        json!({"prompt_tokens": 15, "completion_tokens": 7, "total_tokens": 22, "prompt_tokens_details": {"cached_tokens": 4}})
    );

    let seen = fake.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse");
    assert_eq!(
        seen.json(),
        json!({"messages": [{"role": "user", "content": [{"text": "Hello"}]}], "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 64, "temperature": 0.3, "stopSequences": ["END"]}})
    );
    let (signed, access_key) = signature_parts(&seen);
    assert_eq!(access_key, ACCESS_KEY);
    for header in ["host", "x-amz-date", "x-amz-security-token", "content-type"] {
        assert!(signed.split(';').any(|h| h == header), "{header} is signed: {signed}");
    }
    assert_eq!(seen.header("x-amz-security-token"), Some(TOKEN));
}

#[tokio::test]
async fn streamed_tool_calls_join_to_exactly_the_non_streamed_call() {
    let fake = FakeBedrock::start().await;
    let (_config, gateway) = gateway_for(&fake).await;
    let request = json!({"model": "claude", "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]});
    let (status, reply) = post(&gateway, "/v1/chat/completions", &request.to_string()).await;
    assert_eq!(status, 200, "{reply}");
    let call = &reply["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(call["function"]["arguments"], tool_input().to_string());

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let (status, text) = stream(&gateway, streamed).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        fake.last().path.ends_with("%3A0/converse-stream"),
        "{}",
        fake.last().path
    );
    let events = events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    let mut arguments = String::new();
    let mut finish = Value::Null;
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).expect("a chunk");
        assert!(
            chunk.get("usage").is_none_or(Value::is_null),
            "usage only when asked: {event}"
        );
        for delta in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(id) = delta["id"].as_str() {
                assert_eq!(id, call["id"]);
                assert_eq!(delta["function"]["name"], "weather");
            }
            arguments.push_str(delta["function"]["arguments"].as_str().unwrap_or_default());
        }
        if !chunk["choices"][0]["finish_reason"].is_null() {
            finish = chunk["choices"][0]["finish_reason"].clone();
        }
    }
    assert_eq!(arguments, call["function"]["arguments"].as_str().expect("arguments"));
    assert_eq!(finish, "tool_calls");
}

#[tokio::test]
async fn an_exception_or_a_cut_mid_stream_is_an_error_event_and_never_done() {
    let fake = FakeBedrock::start().await;
    let (_config, gateway) = gateway_for(&fake).await;
    let request = json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    for (mode, code) in [
        (Mode::StreamException("throttlingException"), "rate_limit_exceeded"),
        (Mode::StreamException("modelStreamErrorException"), "upstream_error"),
        (Mode::StreamCut, "upstream_error"),
    ] {
        fake.set(mode.clone());
        let (status, text) = stream(&gateway, request.clone()).await;
        assert_eq!(status, 200);
        let events = events(&text);
        assert!(
            !events.iter().any(|e| e == "[DONE]"),
            "{mode:?}: no clean finish:\n{text}"
        );
        let last: Value = serde_json::from_str(events.last().expect("events")).expect("json");
        assert_eq!(last["error"]["code"], code, "{mode:?}: {text}");
        assert!(text.contains("bedrock "), "the text before the failure arrived: {text}");
    }
}

#[tokio::test]
async fn bedrock_errors_keep_their_status_class_and_retry_after() {
    let fake = FakeBedrock::start().await;
    let (_config, gateway) = gateway_for(&fake).await;
    let chat = json!({"model": "claude", "messages": [{"role": "user", "content": "Hi"}]}).to_string();

    fake.set(Mode::Fail(
        429,
        "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
        r#"{"message":"Too many requests, please wait before trying again."}"#,
        Some("7"),
    ));
    let response = client()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .body(chat.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(
        response.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7")
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        body["error"]["message"],
        "Too many requests, please wait before trying again."
    );

    fake.set(Mode::Fail(
        400,
        "ValidationException",
        r#"{"message":"Input is too long for requested model."}"#,
        None,
    ));
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("context_length_exceeded")),
        "{body}"
    );

    fake.set(Mode::Fail(
        503,
        "ServiceUnavailableException",
        r#"{"message":"Service unavailable"}"#,
        None,
    ));
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("upstream_overloaded")),
        "{body}"
    );

    fake.set(Mode::Fail(
        403,
        "UnrecognizedClientException",
        r#"{"message":"The security token included in the request is invalid."}"#,
        None,
    ));
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("upstream_auth_failed")),
        "{body}"
    );
}

#[tokio::test]
async fn an_http_image_url_is_refused_by_name_before_anything_is_sent() {
    let fake = FakeBedrock::start().await;
    let (_config, gateway) = gateway_for(&fake).await;
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let (status, reply) = post(&gateway, "/v1/chat/completions", &body.to_string()).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error"]["param"], "messages[0].content[0].image_url");
    assert!(fake.received().is_empty(), "nothing reached Bedrock");
}

#[tokio::test]
async fn titan_embeds_a_list_with_one_call_per_text() {
    let fake = FakeBedrock::start().await;
    let (_config, gateway) = gateway_for(&fake).await;
    let body = json!({"model": "titan", "input": ["hello there", "hi"], "dimensions": 4});
    let (status, reply) = post(&gateway, "/v1/embeddings", &body.to_string()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["data"][0]["embedding"], json!([11.0, 0.5, 0.5, 0.5]));
    assert_eq!(reply["data"][1]["index"], 1);
    assert_eq!(reply["usage"]["prompt_tokens"], 3);
    let calls = fake.received();
    assert_eq!(calls.len(), 2);
    for (call, text) in calls.iter().zip(["hello there", "hi"]) {
        assert_eq!(call.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
        assert_eq!(
            call.json(),
            json!({"inputText": text, "dimensions": 4, "normalize": true})
        );
        assert_eq!(signature_parts(call).1, ACCESS_KEY);
    }
}

#[tokio::test]
async fn a_bedrock_api_key_is_sent_as_bearer_without_sigv4() {
    let fake = FakeBedrock::start().await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(format!(
            "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: aws}}\nspec:\n  type: bedrock\n  baseUrl: {}\n  bedrock: {{region: eu-west-1}}\n  apiKey: {{secretRef: {{name: br, key: apiKey}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: br}}\nstringData: {{apiKey: ABSK-bedrock-api-key}}\n",
            fake.base_url()
        ) + &alias("claude", &format!("{{target: \"aws/{MODEL}\"}}"))),
    );
    let gateway = start_gateway(&config).await;
    let (status, reply) = post(&gateway, "/v1/chat/completions", &chat("claude")).await;
    assert_eq!(status, 200, "{reply}");
    let seen = fake.last();
    assert_eq!(seen.header("authorization"), Some("Bearer ABSK-bedrock-api-key"));
    assert_eq!(seen.header("x-amz-date"), None);
}

#[tokio::test]
async fn new_keys_in_the_secret_sign_the_next_requests_without_a_restart() {
    let fake = FakeBedrock::start().await;
    let (config, gateway) = gateway_for(&fake).await;
    let (status, _) = post(&gateway, "/v1/chat/completions", &chat("claude")).await;
    assert_eq!(status, 200);
    assert_eq!(signature_parts(&fake.last()).1, ACCESS_KEY);

    config.write(
        "c.yaml",
        &bedrock_config(&fake, "AKIAROTATED000002", "rotated-secret", None),
    );
    eventually(
        Duration::from_secs(10),
        "requests signed with the rotated keys",
        || async {
            let (status, _) = post(&gateway, "/v1/chat/completions", &chat("claude")).await;
            assert_eq!(status, 200);
            let seen = fake.last();
            (signature_parts(&seen).1 == "AKIAROTATED000002").then_some(seen)
        },
    )
    .await;
    assert_eq!(
        fake.last().header("x-amz-security-token"),
        None,
        "the new keys have no token"
    );
}

/// Runs `tests/python/<script>` with the test virtualenv's Python.
async fn python(args: &[&str], envs: &[(&str, String)], stdin: Option<String>) -> String {
    let python = std::env::var("MODELGATE_PYTHON").unwrap_or_else(|_| {
        panic!("MODELGATE_PYTHON is not set: run tests/all.sh, which creates a virtualenv with botocore and openai")
    });
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let mut command = tokio::process::Command::new(&python);
    command
        .args(args)
        .current_dir(&dir)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().await.expect("python ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Recomputes every received request's signature with botocore and compares.
async fn assert_botocore_agrees(fake: &FakeBedrock, received: &[Received], keys: (&str, &str, Option<&str>)) {
    use base64::Engine as _;
    let requests: Vec<Value> = received
        .iter()
        .map(|r| {
            let (signed, _) = signature_parts(r);
            let headers: Vec<(&str, &str)> = signed
                .split(';')
                .map(|name| {
                    (
                        name,
                        r.header(name)
                            .unwrap_or_else(|| panic!("signed header {name} was sent")),
                    )
                })
                .collect();
            json!({"method": r.method, "url": format!("{}{}", fake.base_url(), r.path), "headers": headers,
                "body_b64": base64::engine::general_purpose::STANDARD.encode(&r.body),
                "access_key_id": keys.0, "secret_access_key": keys.1, "token": keys.2,
                "region": "us-east-1", "service": "bedrock"})
        })
        .collect();
    let out = python(&["sigv4_check.py"], &[], Some(Value::from(requests).to_string())).await;
    let expected: Vec<String> = serde_json::from_str(&out).expect("botocore's answers");
    assert_eq!(expected.len(), received.len());
    for (request, expected) in received.iter().zip(expected) {
        assert_eq!(
            request.header("authorization"),
            Some(expected.as_str()),
            "{}",
            request.path
        );
    }
}

#[tokio::test]
#[ignore = "needs botocore: tests/all.sh installs it and runs this"]
async fn botocore_computes_the_same_signatures_for_every_kind_of_request() {
    let fake = FakeBedrock::start().await;
    let (config, gateway) = gateway_for(&fake).await;
    post(&gateway, "/v1/chat/completions", &chat("claude")).await;
    stream(
        &gateway,
        json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    post(
        &gateway,
        "/v1/embeddings",
        &json!({"model": "titan", "input": "a text"}).to_string(),
    )
    .await;
    assert_botocore_agrees(&fake, &fake.received(), (ACCESS_KEY, SECRET_KEY, Some(TOKEN))).await;

    // Keys without a session token, after a rotation.
    config.write(
        "c.yaml",
        &bedrock_config(&fake, "AKIAROTATED000003", "another-secret", None),
    );
    let seen = eventually(Duration::from_secs(10), "the rotated keys", || async {
        post(&gateway, "/v1/chat/completions", &chat("claude")).await;
        let seen = fake.last();
        (signature_parts(&seen).1 == "AKIAROTATED000003").then_some(seen)
    })
    .await;
    assert_botocore_agrees(&fake, &[seen], ("AKIAROTATED000003", "another-secret", None)).await;
}

#[tokio::test]
#[ignore = "needs the openai Python package: tests/all.sh installs it and runs this"]
async fn the_official_openai_python_client_works_against_a_bedrock_alias() {
    let fake = FakeBedrock::start().await;
    let (_config, gateway) = gateway_for(&fake).await;
    let out = python(
        &["-m", "pytest", "-q", "-p", "no:cacheprovider", "bedrock_client.py"],
        &[("MODELGATE_BASE_URL", format!("http://{}/v1", gateway.addr))],
        None,
    )
    .await;
    assert!(out.contains("5 passed"), "{out}");
    assert_botocore_agrees(&fake, &fake.received(), (ACCESS_KEY, SECRET_KEY, Some(TOKEN))).await;
}

#[tokio::test]
async fn pod_identity_credentials_sign_refresh_before_expiry_and_never_reach_the_log() {
    let fake = FakeBedrock::start().await;
    let issued = |n: u32, expires_in: u64| IssuedKeys {
        access_key_id: format!("ASIAPODIDENTITY{n:04}"),
        secret_access_key: format!("pod-secret-never-print-{n:04}"),
        token: format!("pod-token-never-print-{n:04}"),
        expires_in,
    };
    // Four minutes left: inside the five-minute refresh window, so each request refreshes.
    fake.issue(issued(1, 240));
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(format!(
            "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: aws}}\nspec:\n  type: bedrock\n  baseUrl: {}\n  bedrock: {{region: us-east-1}}\n",
            fake.base_url()
        ) + &alias("claude", &format!("{{target: \"aws/{MODEL}\"}}"))
            + &static_provider(&fake, "aws-static", ACCESS_KEY, SECRET_KEY, Some(TOKEN))
            + &alias("static", &format!("{{target: \"aws-static/{MODEL}\"}}"))),
    );
    let token_file = config.path().join("pod-identity-token");
    std::fs::write(&token_file, "pod-identity-jwt-never-print").expect("token file");
    let home = tempfile::tempdir().expect("home");
    let credentials_url = format!("{}/credentials", fake.base_url());
    let gateway = support::child::ChildGateway::start_with(&config, &[], None, |command| {
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("AWS_")) {
            command.env_remove(name);
        }
        command
            .env("RUST_LOG", "trace")
            .env("HOME", home.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &credentials_url)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file);
    })
    .await;
    let send = |model: &'static str| {
        let url = format!("http://{}/v1/chat/completions", gateway.api);
        async move {
            let response = client().post(url).body(chat(model)).send().await.expect("answer");
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            assert_eq!(status, 200, "{text}");
            text
        }
    };

    send("claude").await;
    let first = fake.last();
    assert_eq!(signature_parts(&first).1, "ASIAPODIDENTITY0001");
    assert_eq!(first.header("x-amz-security-token"), Some("pod-token-never-print-0001"));
    assert_eq!(
        fake.credential_fetches(),
        vec![Some("pod-identity-jwt-never-print".to_string())],
        "the token file's content authorises the fetch"
    );

    // Expiring within five minutes: the next request fetches the new keys.
    fake.issue(issued(2, 3600));
    send("claude").await;
    assert_eq!(signature_parts(&fake.last()).1, "ASIAPODIDENTITY0002");
    // An hour left: cached, the endpoint is not asked again.
    fake.issue(issued(3, 3600));
    send("claude").await;
    assert_eq!(signature_parts(&fake.last()).1, "ASIAPODIDENTITY0002");
    assert_eq!(fake.credential_fetches().len(), 2);
    // The static-keys provider beside it signs with its Secret's keys.
    send("static").await;
    assert_eq!(signature_parts(&fake.last()).1, ACCESS_KEY);

    let (_, metrics) = get(gateway.admin, "/metrics").await;
    let log = gateway.log();
    for (place, text) in [("log", &log), ("metrics", &metrics)] {
        for secret in ["never-print", SECRET_KEY, TOKEN] {
            assert!(!text.contains(secret), "{secret} leaked into the {place}:\n{text}");
        }
    }
    assert!(
        log.contains("ASIAPODIDENTITY0001"),
        "the access key id may be logged:\n{log}"
    );
}

#[tokio::test]
async fn web_identity_credentials_from_sts_sign_the_requests() {
    let fake = FakeBedrock::start().await;
    fake.issue(IssuedKeys {
        access_key_id: "ASIAWEBIDENTITY0001".to_string(),
        secret_access_key: "irsa-secret-never-print".to_string(),
        token: "irsa-session-never-print".to_string(),
        expires_in: 3600,
    });
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(format!(
            "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: aws}}\nspec:\n  type: bedrock\n  baseUrl: {}\n  bedrock: {{region: us-east-1}}\n",
            fake.base_url()
        ) + &alias("claude", &format!("{{target: \"aws/{MODEL}\"}}"))),
    );
    let token_file = config.path().join("irsa-token");
    std::fs::write(&token_file, "irsa-jwt-never-print").expect("token file");
    let home = tempfile::tempdir().expect("home");
    let gateway = support::child::ChildGateway::start_with(&config, &[], None, |command| {
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("AWS_")) {
            command.env_remove(name);
        }
        command
            .env("RUST_LOG", "trace")
            .env("HOME", home.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
            .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/modelgate")
            .env("AWS_ROLE_SESSION_NAME", "gateway")
            // Where STS is: the fake (AWS's SDKs read this variable too).
            .env("AWS_ENDPOINT_URL_STS", fake.base_url());
    })
    .await;
    let response = client()
        .post(format!("http://{}/v1/chat/completions", gateway.api))
        .body(chat("claude"))
        .send()
        .await
        .expect("answer");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "{text}\n{}", gateway.log());
    let seen = fake.last();
    assert_eq!(signature_parts(&seen).1, "ASIAWEBIDENTITY0001");
    assert_eq!(seen.header("x-amz-security-token"), Some("irsa-session-never-print"));
    assert_eq!(
        fake.credential_fetches(),
        vec![Some("irsa-jwt-never-print".to_string())]
    );
    assert!(!gateway.log().contains("never-print"), "{}", gateway.log());
}
