//! A fake upstream on 127.0.0.1:0 speaking two OpenAI APIs exactly, recording the raw bytes it
//! receives:
//! - Chat Completions (`/v1/chat/completions`, what translated Responses requests become), with
//!   a little logic: it calls `get_weather` when offered tools, answers a tool result with
//!   text, stops at the output limit when `max_tokens` ≤ 16, answers 429 when asked to
//!   ("rate-limit"), and cuts its stream short when asked to ("cut");
//! - Responses (`/v1/responses`, for `openai` providers that pass requests through).

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// One request the upstream received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub raw: Bytes,
    pub body: Value,
}

pub struct Upstream {
    pub addr: std::net::SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let app = Router::new().fallback(answer).with_state(received.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Upstream { addr, received }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    pub fn last(&self) -> Received {
        self.received().pop().expect("the upstream received no request")
    }
}

async fn answer(
    State(received): State<Arc<Mutex<Vec<Received>>>>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    received.lock().expect("lock").push(Received {
        path: uri.path().to_string(),
        headers,
        raw,
        body: body.clone(),
    });
    let stream = body["stream"] == json!(true);
    let model = body["model"].as_str().unwrap_or_default().to_string();
    if uri.path().ends_with("/responses") {
        return responses_answer(&model, stream);
    }
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or(Value::Null);
    let last_text = last["content"].to_string();
    if last_text.contains("rate-limit") {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("content-type", "application/json"), ("retry-after", "7")],
            r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        )
            .into_response();
    }
    let reply = if body["max_tokens"].as_u64().is_some_and(|max| max <= 16) {
        Reply::text("Once upon a", "length")
    } else if last["role"] == "tool" {
        let result = last["content"]
            .as_str()
            .map_or_else(|| last["content"][0]["text"].to_string(), str::to_string);
        Reply::text(&format!("The tool says {result}."), "stop")
    } else if body["tools"].is_array() {
        Reply {
            text: None,
            call: Some(("call_w1", "get_weather", r#"{"city":"Paris","unit":"celsius"}"#)),
            finish: "tool_calls",
        }
    } else {
        Reply::text(&format!("compat served {model}"), "stop")
    };
    match stream {
        false => json_response(reply.completion(&model)),
        true => sse_response(reply.chunks(&model, last_text.contains("cut"))),
    }
}

struct Reply {
    text: Option<String>,
    call: Option<(&'static str, &'static str, &'static str)>,
    finish: &'static str,
}

const USAGE: (u64, u64) = (11, 5);

impl Reply {
    fn text(text: &str, finish: &'static str) -> Self {
        Reply {
            text: Some(text.to_string()),
            call: None,
            finish,
        }
    }

    fn completion(&self, model: &str) -> Value {
        let mut message = json!({"role": "assistant", "content": self.text});
        if let Some((id, name, arguments)) = self.call {
            message["tool_calls"] =
                json!([{"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]);
        }
        json!({"id": "chatcmpl-u1", "object": "chat.completion", "created": 1741290958, "model": model,
               "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": self.finish}],
               "usage": {"prompt_tokens": USAGE.0, "completion_tokens": USAGE.1, "total_tokens": USAGE.0 + USAGE.1}})
    }

    /// The chunks of a stream: role, the text a word at a time, the call with its arguments in
    /// two fragments, the finish reason, usage (`cut`: only the first two, no end).
    fn chunks(&self, model: &str, cut: bool) -> Vec<String> {
        let chunk = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-u1", "object": "chat.completion.chunk", "created": 1741290958, "model": model,
                   "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
            .to_string()
        };
        let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
        for word in self.text.as_deref().unwrap_or_default().split_inclusive(' ') {
            chunks.push(chunk(json!({"content": word}), Value::Null));
        }
        if cut {
            chunks.truncate(2);
            return chunks;
        }
        if let Some((id, name, arguments)) = self.call {
            let (first, second) = arguments.split_at(arguments.len() / 2);
            chunks.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            for part in [first, second] {
                chunks.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                    Value::Null,
                ));
            }
        }
        chunks.push(chunk(json!({}), json!(self.finish)));
        chunks.push(
            json!({"id": "chatcmpl-u1", "object": "chat.completion.chunk", "created": 1741290958, "model": model, "choices": [],
                   "usage": {"prompt_tokens": USAGE.0, "completion_tokens": USAGE.1, "total_tokens": USAGE.0 + USAGE.1}})
            .to_string(),
        );
        chunks.push("[DONE]".to_string());
        chunks
    }
}

/// A Responses answer, as OpenAI writes it.
fn responses_answer(model: &str, stream: bool) -> Response {
    let message = |text: &str, status: &str| {
        json!({"type": "message", "id": "msg_u1", "status": status, "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]})
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_upstream1", "object": "response", "created_at": 1741476542, "status": status,
               "model": model, "output": output, "usage": usage, "store": true})
    };
    let usage = json!({"input_tokens": 21, "input_tokens_details": {"cached_tokens": 5}, "output_tokens": 4,
                       "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 25});
    let text = format!("openai served {model}");
    if !stream {
        return json_response(response("completed", json!([message(&text, "completed")]), usage));
    }
    let events = [
        json!({"type": "response.created", "sequence_number": 0, "response": response("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": message("", "in_progress")}),
        json!({"type": "response.output_text.delta", "sequence_number": 2, "item_id": "msg_u1", "output_index": 0, "content_index": 0, "delta": text}),
        json!({"type": "response.output_item.done", "sequence_number": 3, "output_index": 0, "item": message(&text, "completed")}),
        json!({"type": "response.completed", "sequence_number": 4, "response": response("completed", json!([message(&text, "completed")]), usage)}),
    ];
    let text: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or_default()))
        .collect();
    event_stream(text)
}

fn json_response(value: Value) -> Response {
    ([("content-type", "application/json")], value.to_string()).into_response()
}

fn sse_response(chunks: Vec<String>) -> Response {
    event_stream(chunks.iter().map(|c| format!("data: {c}\n\n")).collect())
}

fn event_stream(text: String) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(text))
        .expect("response")
}
