//! Fake upstreams that speak a provider's wire format exactly: a scripted server (port 0)
//! that records each request byte for byte and answers with what a handler returns, and
//! handlers that behave like the Anthropic Messages API and the OpenAI Chat Completions API
//! (text, parallel tool calls, tool results, streams with usage).

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    /// The body exactly as received.
    pub raw: Bytes,
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    pub fn is_stream(&self) -> bool {
        self.body["stream"] == json!(true)
    }
}

/// An answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status, extra headers and a JSON body.
    Json(u16, Vec<(&'static str, String)>, String),
    /// `text/event-stream`, each string a separate write.
    Sse(Vec<String>),
    /// An event stream whose connection breaks after these writes (no clean end).
    SseBroken(Vec<String>),
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A fake upstream on 127.0.0.1:0.
pub struct Scripted {
    pub addr: std::net::SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    handler: Arc<Mutex<Handler>>,
}

#[derive(Clone)]
struct ScriptState {
    recorded: Arc<Mutex<Vec<Recorded>>>,
    handler: Arc<Mutex<Handler>>,
}

impl Scripted {
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake upstream");
        let addr = listener.local_addr().expect("address");
        let state = ScriptState {
            recorded: Arc::default(),
            handler: Arc::new(Mutex::new(Arc::new(handler))),
        };
        let app = Router::new().fallback(serve).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Scripted {
            addr,
            recorded: state.recorded,
            handler: state.handler,
        }
    }

    /// An upstream that answers like the Anthropic Messages API.
    pub async fn anthropic() -> Self {
        Scripted::start(anthropic_reply).await
    }

    /// An upstream that answers like the OpenAI Chat Completions API.
    pub async fn openai() -> Self {
        Scripted::start(openai_reply).await
    }

    /// Replaces the handler.
    pub fn set(&self, handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        *self.handler.lock().expect("lock") = Arc::new(handler);
    }

    /// `http://127.0.0.1:PORT`, with no path.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().expect("lock").clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the upstream saw no request")
    }
}

async fn serve(State(state): State<ScriptState>, uri: axum::http::Uri, headers: HeaderMap, raw: Bytes) -> Response {
    let recorded = Recorded {
        path: uri.path().to_string(),
        headers,
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
    };
    state.recorded.lock().expect("lock").push(recorded.clone());
    let handler = state.handler.lock().expect("lock").clone();
    match handler(&recorded) {
        Reply::Json(status, headers, body) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).expect("status");
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().expect("value"));
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().expect("value"));
            }
            response
        }
        Reply::Sse(writes) => sse(writes, false),
        Reply::SseBroken(writes) => sse(writes, true),
    }
}

/// An event stream of `writes`; `broken` ends it with a connection reset (also the fake Gemini
/// API's streams).
pub fn sse(writes: Vec<String>, broken: bool) -> Response {
    use futures_util::StreamExt;
    let items = futures_util::stream::iter(writes.into_iter().map(|w| Ok::<_, std::io::Error>(Bytes::from(w))));
    // A broken stream fails only after a pending poll, which makes hyper flush what came
    // before: the gateway gets the head and the first events, then a connection that ends
    // in the middle of the chunked body.
    let cut = futures_util::stream::once(async {
        tokio::task::yield_now().await;
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut"))
    })
    .filter(move |_| std::future::ready(broken));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(items.chain(cut)))
        .expect("response")
}

/// One server-sent event with an `event:` line.
pub fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The text of the last user turn (Anthropic or OpenAI shape).
fn last_user_text(messages: &Value) -> String {
    let Some(last) = messages
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    match &last["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The usage every Anthropic answer of the fake reports: 21 new input tokens, 100 read from
/// the cache, 5 written to it, 9 output tokens.
pub const ANTHROPIC_USAGE: (u64, u64, u64, u64) = (21, 100, 5, 9);

/// What the fake Anthropic model says: tool results it was given, tool calls when it has tools
/// (two in parallel unless parallel use is disabled), else which model served which prompt.
fn anthropic_answer(request: &Value) -> (Vec<Value>, &'static str) {
    let messages = &request["messages"];
    let last = messages
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or(Value::Null);
    let results: Vec<String> = last["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "tool_result")
                .map(|b| {
                    format!(
                        "{}={}",
                        b["tool_use_id"].as_str().unwrap_or(""),
                        match &b["content"] {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        }
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if !results.is_empty() {
        return (
            vec![json!({"type": "text", "text": format!("results: {}", results.join(", "))})],
            "end_turn",
        );
    }
    if let Some(tool) = request["tools"].as_array().and_then(|t| t.first()) {
        let name = tool["name"].as_str().unwrap_or("tool");
        let mut blocks = vec![
            json!({"type": "text", "text": "Checking."}),
            json!({"type": "tool_use", "id": "toolu_01A", "name": name, "input": {"city": "Paris", "unit": "celsius"}}),
        ];
        if request["tool_choice"]["disable_parallel_tool_use"] != json!(true) {
            blocks.push(json!({"type": "tool_use", "id": "toolu_01B", "name": name, "input": {"city": "Tokyo"}}));
        }
        return (blocks, "tool_use");
    }
    let model = request["model"].as_str().unwrap_or_default();
    let text = format!("anthropic served {model}: {}", last_user_text(messages));
    (vec![json!({"type": "text", "text": text})], "end_turn")
}

/// A handler that behaves like the Anthropic Messages API (`/v1/messages`, streamed or not;
/// `/v1/messages/count_tokens`).
pub fn anthropic_reply(request: &Recorded) -> Reply {
    if request.path.ends_with("/count_tokens") {
        return Reply::Json(200, vec![], json!({"input_tokens": 77}).to_string());
    }
    let body = &request.body;
    let (blocks, stop) = anthropic_answer(body);
    let (input, read, written, output) = ANTHROPIC_USAGE;
    let model = body["model"].as_str().unwrap_or_default();
    if !request.is_stream() {
        let message = json!({
            "id": "msg_01Fake", "type": "message", "role": "assistant", "model": model,
            "content": blocks, "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": input, "cache_creation_input_tokens": written, "cache_read_input_tokens": read, "output_tokens": output}
        });
        return Reply::Json(200, vec![("request-id", "req_fake".to_string())], message.to_string());
    }
    Reply::Sse(anthropic_stream(model, &blocks, stop))
}

/// An Anthropic event stream for these blocks: text in two deltas, tool input in three
/// fragments (with Anthropic's spacing), a ping, cumulative usage.
pub fn anthropic_stream(model: &str, blocks: &[Value], stop: &str) -> Vec<String> {
    let (input, read, written, output) = ANTHROPIC_USAGE;
    let mut events = vec![
        event(
            "message_start",
            &json!({"type": "message_start", "message": {"id": "msg_01Fake", "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input, "cache_creation_input_tokens": written, "cache_read_input_tokens": read, "output_tokens": 1}}}),
        ),
        event("ping", &json!({"type": "ping"})),
    ];
    for (index, block) in blocks.iter().enumerate() {
        let delta = |delta: Value| {
            event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            )
        };
        if block["type"] == "text" {
            events.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
            ));
            let text = block["text"].as_str().unwrap_or_default();
            let middle = text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i);
            events.push(delta(json!({"type": "text_delta", "text": &text[..middle]})));
            events.push(delta(json!({"type": "text_delta", "text": &text[middle..]})));
        } else {
            events.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}),
            ));
            let input = spaced_json(&block["input"]);
            let (a, b) = input.split_at(input.len() / 3);
            let (b, c) = b.split_at(b.len() / 2);
            for fragment in ["", a, b, c] {
                events.push(delta(json!({"type": "input_json_delta", "partial_json": fragment})));
            }
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": output}}),
    ));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    events
}

/// JSON with a space after `:` and `,`, as Anthropic streams tool input.
pub fn spaced_json(value: &Value) -> String {
    let compact = value.to_string();
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in compact.chars() {
        out.push(c);
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c == ':' || c == ',' {
            out.push(' ');
        }
    }
    out
}

/// The usage every OpenAI answer of the fake reports: 30 prompt tokens (10 cached), 7
/// completion tokens.
pub fn openai_usage() -> Value {
    json!({"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37, "prompt_tokens_details": {"cached_tokens": 10}})
}

/// A handler that behaves like OpenAI Chat Completions (streamed or not, with tool calls).
pub fn openai_reply(request: &Recorded) -> Reply {
    let body = &request.body;
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let tool_results: Vec<String> = messages
        .iter()
        .rev()
        .take_while(|m| m["role"] == "tool")
        .map(|m| {
            format!(
                "{}={}",
                m["tool_call_id"].as_str().unwrap_or(""),
                m["content"].as_str().unwrap_or("")
            )
        })
        .collect();
    let (content, calls, finish) = if !tool_results.is_empty() {
        let mut results = tool_results;
        results.reverse();
        (Some(format!("results: {}", results.join(", "))), vec![], "stop")
    } else if let Some(tool) = body["tools"].as_array().and_then(|t| t.first()) {
        let name = tool["function"]["name"].as_str().unwrap_or("tool").to_string();
        let mut calls = vec![(
            "call_1".to_string(),
            name.clone(),
            r#"{"city":"Paris","unit":"celsius"}"#.to_string(),
        )];
        if body["parallel_tool_calls"] != json!(false) {
            calls.push(("call_2".to_string(), name, r#"{"city":"Tokyo"}"#.to_string()));
        }
        (None, calls, "tool_calls")
    } else {
        let text = last_user_text(&body["messages"]);
        (Some(format!("openai served {model}: {text}")), vec![], "stop")
    };
    if !request.is_stream() {
        let tool_calls: Vec<Value> = calls
            .iter()
            .map(
                |(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}),
            )
            .collect();
        let mut message = json!({"role": "assistant", "content": content, "refusal": null});
        if !tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(tool_calls);
        }
        let reply = json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": openai_usage()});
        return Reply::Json(200, vec![], reply.to_string());
    }
    let chunk = |delta: Value, finish: Value| {
        let data = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        format!("data: {data}\n\n")
    };
    let mut writes = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    )];
    if let Some(text) = &content {
        for word in text.split_inclusive(' ') {
            writes.push(chunk(json!({"content": word}), Value::Null));
        }
    }
    for (i, (id, name, args)) in calls.iter().enumerate() {
        writes.push(chunk(
            json!({"tool_calls": [{"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
        let (a, b) = args.split_at(args.len() / 2);
        for fragment in [a, b] {
            writes.push(chunk(
                json!({"tool_calls": [{"index": i, "function": {"arguments": fragment}}]}),
                Value::Null,
            ));
        }
    }
    writes.push(chunk(json!({}), json!(finish)));
    if body["stream_options"]["include_usage"] == json!(true) {
        let data = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [], "usage": openai_usage()});
        writes.push(format!("data: {data}\n\n"));
    }
    writes.push("data: [DONE]\n\n".to_string());
    Reply::Sse(writes)
}

/// The data of each event of an SSE body, parsed (`[DONE]` as a string).
pub fn sse_data(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            (!data.is_empty()).then(|| {
                let data = data.join("\n");
                serde_json::from_str(&data).unwrap_or(Value::String(data))
            })
        })
        .collect()
}

/// The `event:` names of an SSE body, in order.
pub fn sse_events(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(str::to_string)
        .collect()
}

/// An LLMProvider of `type: anthropic` at `upstream`, its key in a Secret; `extra` is added to
/// its spec (YAML lines indented by two spaces, e.g. `  dropUnsupportedParams: true`).
pub fn anthropic_provider(name: &str, upstream: &Scripted, key: &str, extra: &str) -> String {
    super::typed_provider(
        name,
        "anthropic",
        &upstream.origin(),
        key,
        &format!("  timeouts: {{request: 5s}}\n{extra}"),
    )
}

/// An `openai-compatible` LLMProvider at `upstream` (`/v1` under it).
pub fn openai_provider(name: &str, upstream: &Scripted, key: &str) -> String {
    let base = format!("{}/v1", upstream.origin());
    super::typed_provider(name, "openai-compatible", &base, key, "  timeouts: {request: 5s}")
}
