//! A fake Amazon Bedrock runtime on 127.0.0.1:0 that speaks Converse JSON, ConverseStream as a
//! real AWS event stream (messages written by aws-smithy-eventstream, with real CRCs), Titan
//! embeddings, and the container credentials endpoint of EKS Pod Identity; it records every
//! request exactly as received (the path still percent-encoded) so tests can check the SigV4
//! signature independently of the gateway.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// Path and query, as sent (percent-encoding kept).
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How the fake answers Converse and ConverseStream.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Text, or a tool call when the request offers tools and has no tool result yet.
    Normal,
    /// An HTTP error: status, `x-amzn-ErrorType`, body, and an optional `Retry-After`.
    Fail(u16, &'static str, &'static str, Option<&'static str>),
    /// A stream that sends its first text and then this exception (`:exception-type`).
    StreamException(&'static str),
    /// A stream that stops after its first text, without messageStop and metadata.
    StreamCut,
}

/// Temporary credentials the credentials endpoint hands out.
#[derive(Clone, Debug)]
pub struct IssuedKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token: String,
    /// Seconds until they expire.
    pub expires_in: u64,
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<VecDeque<Received>>>,
    mode: Arc<Mutex<Mode>>,
    keys: Arc<Mutex<Option<IssuedKeys>>>,
    credential_fetches: Arc<Mutex<Vec<Option<String>>>>,
}

pub struct FakeBedrock {
    pub addr: SocketAddr,
    shared: Shared,
}

/// The text a Normal answer carries for `model`.
pub fn answer_text(model: &str) -> String {
    format!("bedrock served {model}")
}

/// The input of the tool call a Normal answer makes.
pub fn tool_input() -> Value {
    json!({"city": "Paris", "unit": "celsius"})
}

impl FakeBedrock {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Bedrock");
        let addr = listener.local_addr().expect("address");
        let shared = Shared {
            received: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Normal)),
            keys: Arc::default(),
            credential_fetches: Arc::default(),
        };
        let app = Router::new().fallback(serve).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeBedrock { addr, shared }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().expect("lock") = mode;
    }

    /// Serves these keys at `/credentials` from now on.
    pub fn issue(&self, keys: IssuedKeys) {
        *self.shared.keys.lock().expect("lock") = Some(keys);
    }

    /// The `Authorization` header of each credentials fetch so far.
    pub fn credential_fetches(&self) -> Vec<Option<String>> {
        self.shared.credential_fetches.lock().expect("lock").clone()
    }

    /// Every Bedrock request so far (not the credential fetches), oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("lock").iter().cloned().collect()
    }

    pub fn last(&self) -> Received {
        self.received().pop().expect("the fake Bedrock saw no request")
    }
}

async fn serve(State(shared): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    if path == "/credentials" {
        shared.credential_fetches.lock().expect("lock").push(
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        );
        let keys = shared.keys.lock().expect("lock").clone();
        return match keys {
            Some(keys) => {
                let expiration = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(keys.expires_in as i64);
                axum::Json(json!({
                    "AccessKeyId": keys.access_key_id,
                    "SecretAccessKey": keys.secret_access_key,
                    "Token": keys.token,
                    "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                }))
                .into_response()
            }
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let form = String::from_utf8_lossy(&body).into_owned();
    if uri.path() == "/" && form.contains("Action=AssumeRoleWithWebIdentity") {
        return assume_role_with_web_identity(&shared, &form);
    }
    shared.received.lock().expect("lock").push_back(Received {
        method: method.to_string(),
        path: path.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mode = shared.mode.lock().expect("lock").clone();
    if let Mode::Fail(status, kind, message, retry_after) = mode {
        let mut response = (
            StatusCode::from_u16(status).expect("status"),
            [("content-type", "application/json"), ("x-amzn-errortype", kind)],
            message,
        )
            .into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", seconds.parse().expect("header"));
        }
        return response;
    }
    let model = model_of(uri.path());
    if uri.path().ends_with("/invoke") {
        return titan(&request);
    }
    let events = converse_events(&request, &model);
    if uri.path().ends_with("/converse-stream") {
        return stream(events, &mode);
    }
    if uri.path().ends_with("/converse") {
        return axum::Json(converse_answer(&events)).into_response();
    }
    (
        StatusCode::NOT_FOUND,
        [("x-amzn-errortype", "UnknownOperationException")],
        "{}",
    )
        .into_response()
}

/// STS `AssumeRoleWithWebIdentity` (IRSA): the issued keys, in STS's XML; the fetch is
/// recorded with the web identity token it carried.
fn assume_role_with_web_identity(shared: &Shared, form: &str) -> Response {
    let token = form
        .split('&')
        .find_map(|pair| pair.strip_prefix("WebIdentityToken="))
        .map(percent_decode);
    shared.credential_fetches.lock().expect("lock").push(token);
    let Some(keys) = shared.keys.lock().expect("lock").clone() else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let expiration = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(keys.expires_in as i64);
    let xml = format!(
        r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>{}</AccessKeyId>
      <SecretAccessKey>{}</SecretAccessKey>
      <SessionToken>{}</SessionToken>
      <Expiration>{}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/modelgate/gateway</Arn>
      <AssumedRoleId>AROAEXAMPLE:gateway</AssumedRoleId>
    </AssumedRoleUser>
    <SubjectFromWebIdentityToken>system:serviceaccount:modelgate:gateway</SubjectFromWebIdentityToken>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>fake-sts-1</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#,
        keys.access_key_id,
        keys.secret_access_key,
        keys.token,
        expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
    );
    ([("content-type", "text/xml")], xml).into_response()
}

/// The model id of a `/model/{id}/...` path, percent-decoded.
fn model_of(path: &str) -> String {
    let segment = path.split('/').nth(2).unwrap_or_default();
    percent_decode(segment)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What an answer to `request` says, as ConverseStream events `(event type, payload)`.
fn converse_events(request: &Value, model: &str) -> Vec<(&'static str, Value)> {
    let has_tools = request["toolConfig"]["tools"].as_array().is_some_and(|t| !t.is_empty());
    let answered = request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .any(|block| block.get("toolResult").is_some());
    let mut events = vec![("messageStart", json!({"role": "assistant"}))];
    let stop = if has_tools && !answered {
        let name = request["toolConfig"]["tools"][0]["toolSpec"]["name"].clone();
        let input = tool_input().to_string();
        let (a, b) = input.split_at(input.len() / 3);
        let (b, c) = b.split_at(b.len() / 2);
        events.push((
            "contentBlockStart",
            json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_fake_1", "name": name}}}),
        ));
        for piece in [a, b, c] {
            events.push((
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}}),
            ));
        }
        events.push(("contentBlockStop", json!({"contentBlockIndex": 0})));
        "tool_use"
    } else {
        let text = answer_text(model);
        let (a, b) = text.split_at(8);
        for piece in [a, b] {
            events.push((
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": piece}, "p": "abcdefghij"}),
            ));
        }
        events.push(("contentBlockStop", json!({"contentBlockIndex": 0})));
        "end_turn"
    };
    events.push(("messageStop", json!({"stopReason": stop})));
    events.push((
        "metadata",
        json!({"usage": {"inputTokens": 11, "outputTokens": 7, "totalTokens": 22, "cacheReadInputTokens": 4}, "metrics": {"latencyMs": 5}}),
    ));
    events
}

/// The non-streamed answer with the same content as `events`.
fn converse_answer(events: &[(&str, Value)]) -> Value {
    let mut text = String::new();
    let mut tool: Option<(Value, Value, String)> = None;
    let mut stop = Value::Null;
    let mut usage = Value::Null;
    for (kind, payload) in events {
        match *kind {
            "contentBlockStart" => {
                let start = &payload["start"]["toolUse"];
                tool = Some((start["toolUseId"].clone(), start["name"].clone(), String::new()));
            }
            "contentBlockDelta" => {
                if let Some(piece) = payload["delta"]["text"].as_str() {
                    text.push_str(piece);
                }
                if let (Some(piece), Some(tool)) = (payload["delta"]["toolUse"]["input"].as_str(), tool.as_mut()) {
                    tool.2.push_str(piece);
                }
            }
            "messageStop" => stop = payload["stopReason"].clone(),
            "metadata" => usage = payload["usage"].clone(),
            _ => {}
        }
    }
    let content = match tool {
        Some((id, name, input)) => json!([{"toolUse": {"toolUseId": id, "name": name,
            "input": serde_json::from_str::<Value>(&input).expect("tool input")}}]),
        None => json!([{"text": text}]),
    };
    json!({"output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 5}})
}

/// One event-stream message, written by aws-smithy-eventstream (prelude, headers, payload and
/// both CRCs).
pub fn frame(message_type: &str, type_header: &str, kind: &str, payload: &Value) -> Bytes {
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String(message_type.to_string().into()),
        ))
        .add_header(Header::new(
            type_header.to_string(),
            HeaderValue::String(kind.to_string().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut out).expect("an event-stream message");
    Bytes::from(out)
}

fn stream(events: Vec<(&'static str, Value)>, mode: &Mode) -> Response {
    let mut frames: Vec<Bytes> = Vec::new();
    for (i, (kind, payload)) in events.iter().enumerate() {
        let is_text = payload["delta"]["text"].is_string();
        frames.push(frame("event", ":event-type", kind, payload));
        if i > 0 && is_text {
            match mode {
                Mode::StreamException(exception) => {
                    frames.push(frame(
                        "exception",
                        ":exception-type",
                        exception,
                        &json!({"message": format!("{exception} in the middle of the stream")}),
                    ));
                    break;
                }
                Mode::StreamCut => break,
                _ => {}
            }
        }
    }
    // Each message in its own body chunk, the last one split across two.
    let mut chunks: Vec<Result<Bytes, std::io::Error>> = Vec::new();
    for frame in frames {
        let half = frame.len() / 2;
        chunks.push(Ok(frame.slice(..half)));
        chunks.push(Ok(frame.slice(half..)));
    }
    Response::builder()
        .header("content-type", "application/vnd.amazon.eventstream")
        .header("x-amzn-requestid", "fake-request-1")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .expect("response")
}

fn titan(request: &Value) -> Response {
    let text = request["inputText"].as_str().unwrap_or_default();
    let size = request["dimensions"].as_u64().unwrap_or(4) as usize;
    let mut embedding = vec![0.5f32; size];
    embedding[0] = text.len() as f32;
    axum::Json(json!({"embedding": embedding, "inputTextTokenCount": text.split_whitespace().count()})).into_response()
}
