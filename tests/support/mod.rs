//! Support for gateway tests: a fake upstream, a config directory, and a gateway on port 0.
#![allow(dead_code)] // each test crate uses a different part of this module

pub mod child;
pub mod gemini;
pub mod tls;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use modelgate::gateway::{self, GatewayOptions, Running};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub mod scripted;

/// What the fake upstream saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

/// How the fake upstream answers.
#[derive(Clone)]
pub enum Behaviour {
    /// A chat completion whose content names this upstream and the model it received.
    Echo,
    /// An SSE stream: one chunk, then waits for `release`, then the rest.
    HeldStream,
    /// This status and body.
    Fail(u16, &'static str),
    /// Answers after this long.
    Slow(Duration),
    /// Like `Echo`, then closes the connection (`Connection: close`).
    Close,
    /// This status, JSON body and extra headers.
    Headers(u16, &'static str, Vec<(&'static str, &'static str)>),
    /// An SSE stream: one chunk, then waits for `release`, then the connection is cut (no
    /// end of the chunked body).
    CutStream,
}

/// An OpenAI-compatible upstream on 127.0.0.1:0 that records what it receives.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub name: &'static str,
    seen: Arc<Mutex<VecDeque<Seen>>>,
    pub release: Arc<Notify>,
    behaviour: Arc<Mutex<Behaviour>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Clone)]
struct UpstreamState {
    name: &'static str,
    seen: Arc<Mutex<VecDeque<Seen>>>,
    release: Arc<Notify>,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl FakeUpstream {
    pub async fn start(name: &'static str, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake upstream");
        let addr = listener.local_addr().expect("address");
        let state = UpstreamState {
            name,
            seen: Arc::default(),
            release: Arc::new(Notify::new()),
            behaviour: Arc::new(Mutex::new(behaviour)),
        };
        let app = Router::new().fallback(answer).with_state(state.clone());
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = connections.clone();
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeUpstream {
            addr,
            name,
            seen: state.seen,
            release: state.release,
            behaviour: state.behaviour,
            connections,
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The `baseUrl` for an LLMProvider pointing here.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().expect("lock") = behaviour;
    }

    /// Every request seen so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").iter().cloned().collect()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream saw no request")
    }
}

async fn answer(State(state): State<UpstreamState>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> Response {
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let model = parsed
        .get("model")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    state.seen.lock().expect("lock").push_back(Seen {
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        headers: headers.clone(),
        body: parsed,
    });
    let behaviour = state.behaviour.lock().expect("lock").clone();
    let reply = serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("{} served {model}", state.name)}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    });
    match behaviour {
        Behaviour::Echo => ([("content-type", "application/json")], reply.to_string()).into_response(),
        Behaviour::Close => (
            [("content-type", "application/json"), ("connection", "close")],
            reply.to_string(),
        )
            .into_response(),
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            ([("content-type", "application/json")], reply.to_string()).into_response()
        }
        Behaviour::Fail(status, body) => (
            StatusCode::from_u16(status).expect("status"),
            [("content-type", "application/json")],
            body,
        )
            .into_response(),
        Behaviour::Headers(status, body, extra) => {
            let mut response = (
                StatusCode::from_u16(status).expect("status"),
                [("content-type", "application/json")],
                body,
            )
                .into_response();
            for (name, value) in extra {
                response.headers_mut().append(
                    axum::http::HeaderName::from_static(name),
                    axum::http::HeaderValue::from_static(value),
                );
            }
            response
        }
        Behaviour::CutStream => {
            let first = Bytes::from(format!(
                "data: {}\n\n",
                serde_json::json!({"object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"content": "first"}}]})
            ));
            let release = state.release.clone();
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let (first, release) = (first.clone(), release.clone());
                async move {
                    match step {
                        0 => Some((Ok(first), 1)),
                        1 => {
                            release.notified().await;
                            Some((Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut")), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .expect("response")
        }
        Behaviour::HeldStream => {
            let release = state.release.clone();
            let chunk = |text: &str| {
                Bytes::from(format!(
                    "data: {}\n\n",
                    serde_json::json!({"object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"content": text}}]})
                ))
            };
            let first = chunk("first");
            let rest = chunk("second");
            let usage = Bytes::from(
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n",
            );
            let stream = async_stream(first, release, rest, usage);
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .expect("response")
        }
    }
}

fn async_stream(
    first: Bytes,
    release: Arc<Notify>,
    rest: Bytes,
    usage: Bytes,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(0u8, move |step| {
        let (first, release, rest, usage) = (first.clone(), release.clone(), rest.clone(), usage.clone());
        async move {
            match step {
                0 => Some((Ok(first), 1)),
                1 => {
                    release.notified().await;
                    Some((Ok(rest), 2))
                }
                2 => Some((Ok(usage), 3)),
                _ => None,
            }
        }
    })
}

/// A directory of manifests for a gateway.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new() -> Self {
        ConfigDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Writes a file the way an editor saves it: to a temporary name, then renamed over.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, self.dir.path().join(name)).expect("rename config");
    }
}

/// An LLMProvider pointing at a fake upstream, with its key in a Secret.
pub fn provider(name: &str, upstream: &FakeUpstream, key: &str) -> String {
    typed_provider(
        name,
        "openai-compatible",
        &upstream.base_url(),
        key,
        "  timeouts: {request: 2s}",
    )
}

/// An LLMProvider of `provider_type` at `base`, its key in a Secret; `extra` is added to its
/// spec (YAML lines indented by two spaces).
pub fn typed_provider(name: &str, provider_type: &str, base: &str, key: &str, extra: &str) -> String {
    format!(
        r#"---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {{name: {name}}}
spec:
  type: {provider_type}
  baseUrl: {base}
  apiKey: {{secretRef: {{name: {name}-key, key: apiKey}}}}
{extra}
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}-key}}
stringData: {{apiKey: {key}}}
"#
    )
}

/// A client API key Secret of team `team` holding only the hash of `key`.
pub fn key_secret(name: &str, team: &str, key: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  labels: {{modelgate.dev/api-key: \"true\", modelgate.dev/team: {team}}}\ntype: modelgate.dev/api-key\nstringData: {{keyHash: \"{}\"}}\n",
        modelgate::compiler::tenancy::key_hash(key)
    )
}

/// Runs one file of tests/python with the virtualenv's Python (`MODELGATE_PYTHON`, set up by
/// tests/all.sh) and `env`; fails with pytest's output unless every test passed and pytest
/// reports `passed` (e.g. `"7 passed"`). Returns pytest's output.
pub async fn run_pytest(file: &str, env: &[(&str, String)], passed: &str) -> String {
    let python = std::env::var("MODELGATE_PYTHON").unwrap_or_else(|_| {
        panic!("MODELGATE_PYTHON is not set: run tests/all.sh, which creates a virtualenv with the Python clients")
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(file);
    let output = tokio::process::Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            path.to_str().expect("path"),
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the tests of {file} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(passed), "{stdout}");
    stdout
}

/// A `type: mock` LLMProvider named `mock`.
pub fn mock_provider() -> String {
    "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: mock}\nspec: {type: mock}\n"
        .to_string()
}

pub fn alias(name: &str, spec: &str) -> String {
    format!("---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}

/// Starts a gateway on 127.0.0.1 port 0 over `config`.
pub async fn start_gateway(config: &ConfigDir) -> Running {
    start_gateway_with(config, gateway::DEFAULT_MAX_BODY_BYTES).await
}

pub async fn start_gateway_with(config: &ConfigDir, max_body_bytes: usize) -> Running {
    start_gateway_options(config, max_body_bytes, Default::default()).await
}

/// A gateway whose removed objects settle as `settle` says.
pub async fn start_gateway_settling(
    config: &ConfigDir,
    max_body_bytes: usize,
    settle: modelgate::manifest::SettleOptions,
) -> Running {
    start_gateway_all(config, max_body_bytes, Default::default(), Default::default(), settle).await
}

/// Starts a gateway with these client-connection settings.
pub async fn start_gateway_options(
    config: &ConfigDir,
    max_body_bytes: usize,
    server: gateway::ServerOptions,
) -> Running {
    start_gateway_all(config, max_body_bytes, server, Default::default(), Default::default()).await
}

/// Starts a gateway with these tenancy options (keys, store, admin token).
pub async fn start_gateway_tenancy(config: &ConfigDir, tenancy: gateway::tenancy::TenancyOptions) -> Running {
    start_gateway_all(
        config,
        gateway::DEFAULT_MAX_BODY_BYTES,
        Default::default(),
        tenancy,
        Default::default(),
    )
    .await
}

async fn start_gateway_all(
    config: &ConfigDir,
    max_body_bytes: usize,
    server: gateway::ServerOptions,
    tenancy: gateway::tenancy::TenancyOptions,
    settle: modelgate::manifest::SettleOptions,
) -> Running {
    let options = GatewayOptions {
        config: vec![config.path()],
        scope: Default::default(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin_listen: "127.0.0.1:0".parse().expect("addr"),
        max_body_bytes,
        settle,
        target_header: true,
        egress: Default::default(),
        server,
        tenancy,
    };
    gateway::start(options)
        .await
        .unwrap_or_else(|e| panic!("the gateway did not start: {e}"))
}

/// Posts JSON to the gateway; returns the status and the body as JSON.
pub async fn post(gateway: &Running, path: &str, body: &str) -> (u16, serde_json::Value) {
    let response = client()
        .post(format!("http://{}{path}", gateway.addr))
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-key-must-not-travel")
        .body(body.to_string())
        .send()
        .await
        .expect("the gateway answered");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .expect("answer");
    (response.status().as_u16(), response.text().await.expect("body"))
}

/// One HTTP client per test thread (each test has its own runtime on its own thread), so
/// connections are reused within a test.
pub fn client() -> reqwest::Client {
    thread_local! {
        static CLIENT: reqwest::Client = reqwest::Client::new();
    }
    CLIENT.with(Clone::clone)
}

/// The value of one metric series on the admin port (0 when absent).
pub async fn metric(gateway: &Running, series: &str) -> f64 {
    let (_, text) = get(gateway.admin_addr, "/metrics").await;
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

/// Polls `check` until it returns `Some`, failing after `limit`. For waiting on observable
/// state (a reload, a status), never as a fixed sleep.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The chat request most tests send.
pub fn chat(model: &str) -> String {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hello there"}], "temperature": 0.2})
        .to_string()
}

/// Runs pytest on `tests/python/<target>` (a file, or "" for the directory's test_*.py) with
/// MODELGATE_BASE_URL aimed at `gateway` and `env` set; fails unless every test passed.
/// Returns the output.
pub async fn pytest(target: &str, gateway: &Running, env: &[(&str, &str)]) -> String {
    let mut all = vec![("MODELGATE_BASE_URL", format!("http://{}/v1", gateway.addr))];
    all.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    run_pytest(target, &all, "passed").await
}
