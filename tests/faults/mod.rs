//! A fault-injecting OpenAI-compatible upstream for the resilience tests: each request is
//! answered by the next step of a script (the last step repeats), or by a flaky pattern.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;

/// One answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// A chat completion (streamed when asked) whose content is "<name> served <model>".
    Ok,
    /// This status and JSON body, with `Retry-After` seconds when given.
    Status(u16, &'static str, Option<u32>),
    /// A stream that sends its role chunk, then the connection breaks.
    ResetBeforeContent,
    /// A stream that sends its role chunk and first content, then the connection breaks.
    ResetAfterContent,
    /// A stream whose role chunk is followed by an OpenAI error event.
    ErrorEventBeforeContent,
    /// Headers (and a role chunk when streamed), then nothing, for a minute.
    Stall,
}

/// OpenAI's context-window error.
pub const OPENAI_CONTEXT: &str = r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
/// Azure OpenAI's (OpenAI's shape, its own wording).
pub const AZURE_CONTEXT: &str = r#"{"error":{"message":"This model's maximum context length is 8192 tokens, however you requested 9000 tokens. Please reduce your prompt; or completion length.","type":"invalid_request_error","param":null,"code":"context_length_exceeded"}}"#;
/// An OpenAI-compatible server (vLLM) saying it without a code.
pub const VLLM_CONTEXT: &str = r#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens in the messages, Please reduce the length of the messages.","type":"BadRequestError","param":null,"code":400}"#;
pub const SERVER_ERROR: &str = r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#;
pub const OVERLOADED: &str = r#"{"error":{"message":"The engine is currently overloaded, please try again later.","type":"server_error","param":null,"code":null}}"#;
pub const RATE_LIMITED: &str = r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
pub const BAD_TEMPERATURE: &str = r#"{"error":{"message":"Invalid 'temperature': decimal above maximum value.","type":"invalid_request_error","param":"temperature","code":"decimal_above_max_value"}}"#;

/// The usage of every answer (streams: when the client asks for it): 9 prompt and 4
/// completion tokens.
pub fn usage() -> serde_json::Value {
    serde_json::json!({"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13})
}

#[derive(Clone, Default)]
struct Script {
    steps: Arc<Mutex<Vec<Fault>>>,
    /// Every other request fails with a 500 (the first one fails).
    flaky: Arc<Mutex<bool>>,
    seen: Arc<Mutex<Vec<serde_json::Value>>>,
    count: Arc<AtomicUsize>,
    name: &'static str,
}

/// The upstream on 127.0.0.1:0.
pub struct FaultUpstream {
    pub addr: SocketAddr,
    script: Script,
}

impl FaultUpstream {
    pub async fn start(name: &'static str, steps: &[Fault]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let script = Script {
            name,
            ..Script::default()
        };
        *script.steps.lock().expect("lock") = steps.to_vec();
        let app = Router::new().fallback(answer).with_state(script.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultUpstream { addr, script }
    }

    pub async fn flaky(name: &'static str) -> Self {
        let upstream = FaultUpstream::start(name, &[Fault::Ok]).await;
        *upstream.script.flaky.lock().expect("lock") = true;
        upstream
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.script.count.load(Ordering::SeqCst)
    }

    /// The bodies received, oldest first.
    pub fn seen(&self) -> Vec<serde_json::Value> {
        self.script.seen.lock().expect("lock").clone()
    }

    /// An `openai-compatible` LLMProvider named after this upstream, pointing here, with its
    /// key in a Secret.
    pub fn provider(&self) -> String {
        format!(
            "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: {name}}}\nspec:\n  type: openai-compatible\n  baseUrl: {base}\n  apiKey: {{secretRef: {{name: {name}-key, key: apiKey}}}}\n  timeouts: {{request: 5s}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-key}}\nstringData: {{apiKey: sk-{name}}}\n",
            name = self.script.name,
            base = self.base_url()
        )
    }
}

fn next(script: &Script) -> Fault {
    let n = script.count.fetch_add(1, Ordering::SeqCst);
    if *script.flaky.lock().expect("lock") {
        return match n % 2 {
            0 => Fault::Status(500, SERVER_ERROR, None),
            _ => Fault::Ok,
        };
    }
    let mut steps = script.steps.lock().expect("lock");
    match steps.len() {
        0 => Fault::Ok,
        1 => steps[0].clone(),
        _ => steps.remove(0),
    }
}

fn chunk(model: &str, delta: serde_json::Value, finish: Option<&str>) -> String {
    let chunk = serde_json::json!({
        "id": "chatcmpl-f", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    format!("data: {chunk}\n\n")
}

type Piece = Result<Bytes, std::io::Error>;

/// A stream of `pieces`, then (when given) a pause and `last`.
fn sse(pieces: Vec<Piece>, then: Option<(Duration, fn() -> Piece)>) -> Response {
    use futures_util::StreamExt;
    let stream = futures_util::stream::iter(pieces);
    let body = match then {
        None => Body::from_stream(stream),
        Some((pause, last)) => Body::from_stream(stream.chain(futures_util::stream::once(async move {
            tokio::time::sleep(pause).await;
            last()
        }))),
    };
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(body)
        .expect("response")
}

fn reset() -> Piece {
    Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "injected reset",
    ))
}

async fn answer(State(script): State<Script>, body: Bytes) -> Response {
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    script.seen.lock().expect("lock").push(request.clone());
    let model = request["model"].as_str().unwrap_or_default().to_string();
    let stream = request["stream"].as_bool().unwrap_or(false);
    let text = format!("{} served {model}", script.name);
    let role = || {
        Ok(Bytes::from(chunk(
            &model,
            serde_json::json!({"role": "assistant", "content": ""}),
            None,
        )))
    };
    let content = |t: &str| Ok(Bytes::from(chunk(&model, serde_json::json!({"content": t}), None)));
    match next(&script) {
        Fault::Status(status, body, retry_after) => {
            let mut response = (
                StatusCode::from_u16(status).expect("status"),
                [("content-type", "application/json")],
                body,
            )
                .into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert("retry-after", seconds.into());
            }
            response
        }
        Fault::Ok if stream => {
            let mut pieces = vec![role()];
            let words: Vec<&str> = text.split_inclusive(' ').collect();
            pieces.extend(words.iter().map(|w| content(w)));
            pieces.push(Ok(Bytes::from(chunk(&model, serde_json::json!({}), Some("stop")))));
            if request["stream_options"]["include_usage"] == true {
                let last = serde_json::json!({
                    "id": "chatcmpl-f", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [], "usage": usage()
                });
                pieces.push(Ok(Bytes::from(format!("data: {last}\n\n"))));
            }
            pieces.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
            sse(pieces, None)
        }
        Fault::Ok => {
            let reply = serde_json::json!({
                "id": "chatcmpl-f", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage()
            });
            ([("content-type", "application/json")], reply.to_string()).into_response()
        }
        Fault::ResetBeforeContent => sse(vec![role(), reset()], None),
        // The content is sent before the break (a reset discards what the peer has not read).
        Fault::ResetAfterContent => sse(
            vec![role(), content(&format!("{} ", script.name))],
            Some((Duration::from_millis(200), reset)),
        ),
        Fault::ErrorEventBeforeContent => sse(vec![role(), Ok(Bytes::from(format!("data: {SERVER_ERROR}\n\n")))], None),
        Fault::Stall if stream => sse(vec![role()], Some((Duration::from_secs(60), || Ok(Bytes::new())))),
        Fault::Stall => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}
