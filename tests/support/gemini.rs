//! A fake Gemini API on 127.0.0.1:0 that speaks the wire exactly: `generateContent`,
//! `streamGenerateContent?alt=sse` (each event a whole response, `\r\n` framing, usage in every
//! event), `batchEmbedContents`, Google's error envelope (a wrong `x-goog-api-key` is the 400
//! `API_KEY_INVALID` Google sends). It records every request; a test may replace its answers.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

/// An answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status, extra headers and a body.
    Json(u16, Vec<(&'static str, String)>, String),
    /// `text/event-stream`, each string one write.
    Sse(Vec<String>),
    /// An event stream whose connection breaks after these writes.
    SseBroken(Vec<String>),
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// The usage every answer reports: 25 prompt tokens (10 of them cached), 7 candidate tokens,
/// 3 thought tokens.
pub const USAGE: (u64, u64, u64, u64) = (25, 10, 7, 3);

pub struct FakeGemini {
    pub addr: std::net::SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    handler: Arc<Mutex<Handler>>,
}

#[derive(Clone)]
struct FakeState {
    recorded: Arc<Mutex<Vec<Recorded>>>,
    handler: Arc<Mutex<Handler>>,
}

impl FakeGemini {
    /// A fake Gemini that accepts only `key`.
    pub async fn start(key: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Gemini");
        let addr = listener.local_addr().expect("address");
        let handler: Handler = Arc::new(move |request: &Recorded| gemini_reply(request, key));
        let state = FakeState {
            recorded: Arc::default(),
            handler: Arc::new(Mutex::new(handler)),
        };
        let app = Router::new().fallback(serve).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeGemini {
            addr,
            recorded: state.recorded,
            handler: state.handler,
        }
    }

    /// Replaces the answers.
    pub fn set(&self, handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        *self.handler.lock().expect("lock") = Arc::new(handler);
    }

    /// The `baseUrl` of an LLMProvider pointing here (as the Gemini SDKs take it: no version).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().expect("lock").clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the fake Gemini saw no request")
    }
}

/// A `type: gemini` LLMProvider named `name` at `fake`, its key in a Secret.
pub fn gemini_provider(name: &str, fake: &FakeGemini, key: &str, extra: &str) -> String {
    super::typed_provider(name, "gemini", &fake.base_url(), key, extra)
}

async fn serve(State(state): State<FakeState>, uri: Uri, headers: HeaderMap, raw: Bytes) -> Response {
    let recorded = Recorded {
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
    };
    state.recorded.lock().expect("lock").push(recorded.clone());
    let handler = state.handler.lock().expect("lock").clone();
    match handler(&recorded) {
        Reply::Json(status, headers, body) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).expect("status");
            response.headers_mut().insert(
                "content-type",
                "application/json; charset=UTF-8".parse().expect("value"),
            );
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().expect("value"));
            }
            response
        }
        Reply::Sse(writes) => super::scripted::sse(writes, false),
        Reply::SseBroken(writes) => super::scripted::sse(writes, true),
    }
}

/// Google's error envelope.
pub fn google_error(code: u16, status: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message, "status": status}}).to_string()
}

/// One event of a stream, framed as Google frames it.
pub fn event(data: &Value) -> String {
    format!("data: {data}\r\n\r\n")
}

/// What the real API answers: the methods under `/v1beta/models/{model}`, with `key`.
pub fn gemini_reply(request: &Recorded, key: &str) -> Reply {
    if request.header("x-goog-api-key").as_deref() != Some(key) {
        let body = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}});
        return Reply::Json(400, vec![], body.to_string());
    }
    let Some((model, method)) = request
        .path
        .strip_prefix("/v1beta/models/")
        .and_then(|rest| rest.split_once(':'))
    else {
        return Reply::Json(404, vec![], google_error(404, "NOT_FOUND", "Not Found"));
    };
    match method {
        "generateContent" => Reply::Json(200, vec![], answer(model, &request.body).to_string()),
        "streamGenerateContent" if request.query.as_deref() == Some("alt=sse") => {
            Reply::Sse(stream(model, &request.body))
        }
        "batchEmbedContents" => Reply::Json(200, vec![], embeddings(&request.body).to_string()),
        _ => Reply::Json(
            400,
            vec![],
            google_error(400, "INVALID_ARGUMENT", "unknown method or missing alt=sse"),
        ),
    }
}

fn usage(done: bool) -> Value {
    let (prompt, cached, candidates, thoughts) = USAGE;
    if done {
        json!({"promptTokenCount": prompt, "candidatesTokenCount": candidates, "totalTokenCount": prompt + candidates + thoughts,
            "cachedContentTokenCount": cached, "thoughtsTokenCount": thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]})
    } else {
        json!({"promptTokenCount": prompt, "totalTokenCount": prompt, "cachedContentTokenCount": cached})
    }
}

/// The model's parts: the results it was given, two parallel calls of the first tool when it
/// has tools (and may call them), else which model answered which prompt.
fn parts(model: &str, request: &Value) -> Vec<Value> {
    let contents = request["contents"].as_array().cloned().unwrap_or_default();
    let last = contents.last().cloned().unwrap_or(Value::Null);
    let last_parts = last["parts"].as_array().cloned().unwrap_or_default();
    let results: Vec<String> = last_parts
        .iter()
        .filter_map(|p| p.get("functionResponse"))
        .map(|r| format!("{}={}", r["name"].as_str().unwrap_or(""), r["response"]))
        .collect();
    if !results.is_empty() {
        return vec![json!({"text": format!("results: {}", results.join(", "))})];
    }
    let mode = request["toolConfig"]["functionCallingConfig"]["mode"].as_str();
    if let (Some(tool), false) = (
        request["tools"][0]["functionDeclarations"][0]["name"].as_str(),
        mode == Some("NONE"),
    ) {
        return vec![
            json!({"functionCall": {"name": tool, "args": {"city": "Paris", "unit": "celsius"}}, "thoughtSignature": "c2lnbmF0dXJl"}),
            json!({"functionCall": {"name": tool, "args": {"city": "Tokyo"}}}),
        ];
    }
    let text = last_parts
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    vec![json!({"text": format!("gemini served {model}: {text}")})]
}

fn answer(model: &str, request: &Value) -> Value {
    json!({
        "candidates": [{"content": {"parts": parts(model, request), "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": usage(true),
        "modelVersion": model,
        "responseId": "fakeResponse1"
    })
}

/// The answer as Gemini streams it: text in two pieces, function calls whole (the first in
/// one event, the others with the finish reason), usage in every event.
pub fn stream(model: &str, request: &Value) -> Vec<String> {
    let parts = parts(model, request);
    let wrap = |parts: Vec<Value>, finish: bool| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if finish {
            candidate["finishReason"] = json!("STOP");
        }
        event(
            &json!({"candidates": [candidate], "usageMetadata": usage(finish), "modelVersion": model,
            "responseId": "fakeResponse1"}),
        )
    };
    match parts[0]["text"].as_str() {
        Some(text) => {
            let middle = text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i);
            vec![
                wrap(vec![json!({"text": &text[..middle]})], false),
                wrap(vec![json!({"text": &text[middle..]})], true),
            ]
        }
        None => vec![wrap(parts[..1].to_vec(), false), wrap(parts[1..].to_vec(), true)],
    }
}

/// Embeddings: for each text, `[its length, its first byte / 128, 0.5]` (exact in f32), cut to
/// `outputDimensionality`.
fn embeddings(request: &Value) -> Value {
    let embeddings: Vec<Value> = request["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let text = r["content"]["parts"][0]["text"].as_str().unwrap_or("");
            let mut values = vec![
                text.len() as f64,
                f64::from(text.bytes().next().unwrap_or(0)) / 128.0,
                0.5,
            ];
            if let Some(d) = r["outputDimensionality"].as_u64() {
                values.truncate(d as usize);
            }
            json!({"values": values})
        })
        .collect();
    json!({"embeddings": embeddings})
}
