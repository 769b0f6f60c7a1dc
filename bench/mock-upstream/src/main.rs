//! mock-upstream: a small, fast, OpenAI-compatible upstream for the benchmark
//! harness in `bench/`.
//!
//! * `POST /v1/chat/completions` answers a fixed ~500-byte `chat.completion`
//!   JSON (with `usage`); when the request body has `"stream": true` it answers
//!   `--chunks` SSE events (`data: {chat.completion.chunk}\n\n`), the first one
//!   at once and the next ones every `--chunk-interval-ms`, then
//!   `data: [DONE]\n\n`.
//! * `GET /v1/models` lists the one model; `GET /healthz` says ok;
//!   `GET /stats` reports how many completions were served and how many TCP
//!   connections were accepted (the harness uses it to check that a proxy
//!   really forwarded its requests, and whether it reuses its upstream
//!   connections).
//! * `POST /v1/messages` answers the same text in the Anthropic Messages API: a
//!   fixed `message` JSON, or with `"stream": true` the same number of writes
//!   at the same times (`message_start` + `content_block_start`, one
//!   `content_block_delta` per token, then `content_block_stop`,
//!   `message_delta` and `message_stop`), for the translated-path figures.
//! * A request for the model `mock-burst` streams `--burst-chunks` events with
//!   no delay between them (CPU per streamed chunk).
//! * A stream's length is `--chunks`, or the request's `max_tokens` when it has one (the
//!   concurrency bench asks for long slow streams with `--chunk-interval-ms 1000` and short
//!   probes from the same mock).
//! * `--delay-ms` adds a fixed delay before every completion (0 by default).
//!
//! The first line printed on stdout is the bound address (`127.0.0.1:PORT`),
//! so `--listen 127.0.0.1:0` can be used to take a free port.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

const COMPLETION: &str = concat!(
    r#"{"id":"chatcmpl-mock-0123456789abcdef","object":"chat.completion","created":1700000000,"#,
    r#""model":"mock-model","system_fingerprint":"fp_mock","choices":[{"index":0,"message":"#,
    r#"{"role":"assistant","content":"This is a fixed answer from the modelgate benchmark mock "#,
    r#"upstream. It is padded to about five hundred bytes so that every proxy forwards a "#,
    r#"realistic body, the same one in every run, for every request and every proxy."},"#,
    r#""logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"#,
    r#""completion_tokens":48,"total_tokens":60}}"#,
    "\n"
);

const MESSAGE: &str = concat!(
    r#"{"id":"msg_mock0123456789abcdef","type":"message","role":"assistant","model":"mock-model","#,
    r#""content":[{"type":"text","text":"This is a fixed answer from the modelgate benchmark mock "#,
    r#"upstream. It is padded to about five hundred bytes so that every proxy forwards a "#,
    r#"realistic body, the same one in every run, for every request and every proxy."}],"#,
    r#""stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"#,
    r#""cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":48}}"#,
    "\n"
);

const MODELS: &str = r#"{"object":"list","data":[{"id":"mock-model","object":"model","created":1700000000,"owned_by":"mock"}]}
"#;

static COMPLETIONS: AtomicU64 = AtomicU64::new(0);
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

struct Config {
    listen: String,
    delay: Duration,
    chunks: usize,
    interval: Duration,
    threads: usize,
    burst_chunks: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: mock-upstream [--listen 127.0.0.1:0] [--delay-ms 0] [--chunks 20] \
         [--chunk-interval-ms 10] [--threads 1] [--burst-chunks 200]"
    );
    std::process::exit(2)
}

fn parse_args() -> Config {
    let mut cfg = Config {
        listen: "127.0.0.1:0".to_string(),
        delay: Duration::ZERO,
        chunks: 20,
        interval: Duration::from_millis(10),
        threads: 1,
        burst_chunks: 200,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        if key == "-h" || key == "--help" {
            usage();
        }
        let val = inline.or_else(|| args.next()).unwrap_or_else(|| usage());
        let num = || val.parse::<u64>().unwrap_or_else(|_| usage());
        match key.as_str() {
            "--listen" => cfg.listen = val.clone(),
            "--delay-ms" => cfg.delay = Duration::from_millis(num()),
            "--chunks" => cfg.chunks = (num() as usize).max(1),
            "--chunk-interval-ms" => cfg.interval = Duration::from_millis(num()),
            "--threads" => cfg.threads = (num() as usize).max(1),
            "--burst-chunks" => cfg.burst_chunks = (num() as usize).max(2),
            _ => usage(),
        }
    }
    cfg
}

/// True when the body asks for the model `mock-burst`.
fn wants_burst(body: &[u8]) -> bool {
    body.windows(12).any(|w| w == b"\"mock-burst\"")
}

/// The number after `"max_tokens":` in the JSON body, when there is one.
fn max_tokens(body: &[u8]) -> Option<usize> {
    let key = b"\"max_tokens\"";
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &body[at..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace() && *b != b':')?..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// True when the JSON body has `"stream"` followed by `: true` (any whitespace).
fn wants_stream(body: &[u8]) -> bool {
    let key = b"\"stream\"";
    let mut i = 0;
    while i + key.len() <= body.len() {
        if &body[i..i + key.len()] == key {
            let mut j = i + key.len();
            while j < body.len() && body[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < body.len() && body[j] == b':' {
                j += 1;
                while j < body.len() && body[j].is_ascii_whitespace() {
                    j += 1;
                }
                if body[j..].starts_with(b"true") {
                    return true;
                }
            }
        }
        i += 1;
    }
    false
}

fn chunk_event(index: usize, total: usize) -> Bytes {
    let delta = if index == 0 {
        r#"{"role":"assistant","content":""}"#.to_string()
    } else {
        format!(r#"{{"content":"tok{index} "}}"#)
    };
    let finish = if index + 1 == total { r#""stop""# } else { "null" };
    Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-mock-0123456789abcdef\",\"object\":\"chat.completion.chunk\",\
         \"created\":1700000000,\"model\":\"mock-model\",\"system_fingerprint\":\"fp_mock\",\
         \"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
    ))
}

/// An Anthropic stream's write `index` of `total` (the last one ends the message).
fn message_event(index: usize, total: usize) -> Bytes {
    if index == 0 {
        return Bytes::from_static(
            concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_mock0123456789abcdef\",",
            "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"mock-model\",\"content\":[],\"stop_reason\":null,",
            "\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":0,",
            "\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,",
            "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
        )
            .as_bytes(),
        );
    }
    if index == total {
        return Bytes::from(format!(
            "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
             event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\
             \"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{}}}}}\n\n\
             event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n",
            total - 1
        ));
    }
    Bytes::from(format!(
        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\
         \"delta\":{{\"type\":\"text_delta\",\"text\":\"tok{index} \"}}}}\n\n"
    ))
}

/// SSE body: event `k` is sent at `start + k * interval`, then `[DONE]` (or, for the
/// Anthropic API, the events that end the message).
struct SseBody {
    anthropic: bool,
    next: usize,
    total: usize,
    interval: Duration,
    start: tokio::time::Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

enum MockBody {
    Full(Option<Bytes>),
    Sse(SseBody),
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            MockBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Sse(s) => {
                if s.next > s.total {
                    return Poll::Ready(None);
                }
                if s.next == s.total {
                    // Right after the last token, as an upstream ends its stream.
                    s.next += 1;
                    let end = match s.anthropic {
                        true => message_event(s.total, s.total),
                        false => Bytes::from_static(b"data: [DONE]\n\n"),
                    };
                    return Poll::Ready(Some(Ok(Frame::data(end))));
                }
                if s.next > 0 && !s.interval.is_zero() {
                    let deadline = s.start + s.interval * (s.next as u32);
                    let sleep = s
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    s.sleep = None;
                }
                let ev = match s.anthropic {
                    true => message_event(s.next, s.total),
                    false => chunk_event(s.next, s.total),
                };
                s.next += 1;
                Poll::Ready(Some(Ok(Frame::data(ev))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Full(b) => b.is_none(),
            MockBody::Sse(s) => s.next > s.total,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Sse(_) => SizeHint::default(),
        }
    }
}

fn full(status: StatusCode, ctype: &'static str, body: Bytes) -> Response<MockBody> {
    let mut r = Response::new(MockBody::Full(Some(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

async fn handle(req: Request<Incoming>, cfg: &'static Config) -> Result<Response<MockBody>, Infallible> {
    let path = req.uri().path();
    let anthropic = path == "/v1/messages";
    let is_completion = anthropic || path == "/v1/chat/completions" || path == "/chat/completions";
    match (req.method(), path) {
        (&Method::POST, _) if is_completion => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return Ok(full(
                        StatusCode::BAD_REQUEST,
                        "application/json",
                        Bytes::from_static(b"{\"error\":{\"message\":\"bad body\"}}\n"),
                    ))
                }
            };
            COMPLETIONS.fetch_add(1, Ordering::Relaxed);
            let stream = wants_stream(&body);
            let burst = wants_burst(&body);
            if !cfg.delay.is_zero() {
                tokio::time::sleep(cfg.delay).await;
            }
            if stream {
                let mut r = Response::new(MockBody::Sse(SseBody {
                    anthropic,
                    next: 0,
                    total: match (burst, max_tokens(&body)) {
                        (true, _) => cfg.burst_chunks,
                        (false, Some(n)) => n.max(1),
                        (false, None) => cfg.chunks,
                    },
                    interval: if burst { Duration::ZERO } else { cfg.interval },
                    start: tokio::time::Instant::now(),
                    sleep: None,
                }));
                let h = r.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                Ok(r)
            } else {
                let answer = if anthropic { MESSAGE } else { COMPLETION };
                Ok(full(
                    StatusCode::OK,
                    "application/json",
                    Bytes::from_static(answer.as_bytes()),
                ))
            }
        }
        (&Method::GET, "/v1/models") | (&Method::GET, "/models") => Ok(full(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(MODELS.as_bytes()),
        )),
        (&Method::GET, "/healthz") => Ok(full(StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n"))),
        (&Method::GET, "/stats") => Ok(full(
            StatusCode::OK,
            "application/json",
            Bytes::from(format!(
                "{{\"completions\":{},\"connections\":{}}}\n",
                COMPLETIONS.load(Ordering::Relaxed),
                CONNECTIONS.load(Ordering::Relaxed)
            )),
        )),
        _ => Ok(full(
            StatusCode::NOT_FOUND,
            "application/json",
            Bytes::from_static(b"{\"error\":{\"message\":\"not found\"}}\n"),
        )),
    }
}

fn main() {
    let cfg: &'static Config = Box::leak(Box::new(parse_args()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&cfg.listen).await.unwrap_or_else(|e| {
            eprintln!("mock-upstream: cannot bind {}: {e}", cfg.listen);
            std::process::exit(1)
        });
        let addr = listener.local_addr().expect("local addr");
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{addr}");
            let _ = out.flush();
        }
        eprintln!(
            "mock-upstream: listening on {addr}; delay {:?}, {} chunks every {:?}",
            cfg.delay, cfg.chunks, cfg.interval
        );
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("mock-upstream: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            CONNECTIONS.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(req, cfg));
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_flag() {
        assert!(wants_stream(br#"{"model":"m","stream":true}"#));
        assert!(wants_stream(br#"{"model":"m","stream" :  true }"#));
        assert!(!wants_stream(br#"{"model":"m","stream":false}"#));
        assert!(!wants_stream(br#"{"model":"m"}"#));
        assert!(!wants_stream(br#"{"stream""#));
    }

    #[test]
    fn max_tokens_sets_the_stream_length() {
        assert_eq!(max_tokens(br#"{"model":"m","max_tokens":40,"stream":true}"#), Some(40));
        assert_eq!(max_tokens(br#"{"max_tokens" : 3}"#), Some(3));
        assert_eq!(max_tokens(br#"{"model":"m"}"#), None);
    }

    #[test]
    fn burst_model() {
        assert!(wants_burst(br#"{"model":"mock-burst","stream":true}"#));
        assert!(!wants_burst(br#"{"model":"mock-model"}"#));
    }

    #[test]
    fn the_anthropic_stream_is_a_whole_message() {
        let text: String = (0..=4)
            .map(|i| String::from_utf8(message_event(i, 4).to_vec()).expect("utf-8"))
            .collect();
        let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
        assert_eq!(
            events,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            assert!(line.starts_with("{\"type\":") && line.ends_with('}'), "{line}");
        }
        assert!(text.contains("\"output_tokens\":3}"), "{text}");
    }

    #[test]
    fn completion_is_about_500_bytes() {
        let n = COMPLETION.len();
        assert!((450..=560).contains(&n), "{n}");
    }
}
