//! Hundreds of streams open at once through one gateway (default flags), over HTTP/1.1 (a
//! connection each) and over HTTP/2 with prior knowledge (many on a connection): every one
//! gets its first chunk, and every one ends with `[DONE]`. The upstream holds each stream
//! open until all of them have started, so they are provably concurrent. (The 10,000-stream
//! figures, with memory and latency, are `bench/concurrency.py`'s.)

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::child::ChildGateway;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;

const STREAMS: usize = 500;
/// A bound on the whole test, not a synchronisation: every wait below is on an event.
const LIMIT: Duration = Duration::from_secs(60);

fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= 4 * STREAMS as u64,
        "this test needs {} descriptors (RLIMIT_NOFILE hard limit: {})",
        4 * STREAMS,
        limit.rlim_cur
    );
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

/// An OpenAI-compatible upstream whose every stream sends a first chunk, then waits until
/// `streams` streams have sent theirs, then ends with `[DONE]`.
async fn held_upstream(streams: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let barrier = Arc::new(Barrier::new(streams));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as much body as it announced.
                let body_start = loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..body_start]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while request.len() < body_start + length {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let first = chunk("data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"first\"}}]}\n\n");
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all((head.to_string() + &first).as_bytes()).await.is_err() {
                    return;
                }
                barrier.wait().await;
                let end = chunk("data: [DONE]\n\n") + "0\r\n\r\n";
                let _ = socket.write_all(end.as_bytes()).await;
                let _ = socket.read(&mut buf).await;
            });
        }
    });
    addr
}

async fn gateway(upstream: std::net::SocketAddr) -> (ConfigDir, ChildGateway) {
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(format!(
            "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: held}}\nspec:\n  type: openai-compatible\n  baseUrl: http://{upstream}/v1\n"
        ) + &alias("held", "{target: held/m}")),
    );
    let gateway = ChildGateway::start(&config, &[], None).await;
    (config, gateway)
}

const BODY: &str = r#"{"model":"held","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// One stream on its own HTTP/1.1 connection: the whole response, as received.
async fn http1_stream(api: std::net::SocketAddr) -> String {
    let mut socket = TcpStream::connect(api).await.expect("connect");
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\nx-request-id: stream-test\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !received.ends_with(b"0\r\n\r\n") {
        let n = socket.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_http1_streams_are_served_at_once() {
    raise_fd_limit();
    let upstream = held_upstream(STREAMS).await;
    let (_config, gateway) = gateway(upstream).await;
    let streams: Vec<_> = (0..STREAMS).map(|_| tokio::spawn(http1_stream(gateway.api))).collect();
    let mut complete = 0;
    for stream in streams {
        let text = tokio::time::timeout(LIMIT, stream)
            .await
            .expect("every stream ends in time")
            .expect("task");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("first") && text.contains("data: [DONE]"), "{text}");
        complete += 1;
    }
    assert_eq!(complete, STREAMS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_streams_on_a_few_h2c_connections_are_served_at_once() {
    raise_fd_limit();
    let upstream = held_upstream(STREAMS).await;
    let (_config, gateway) = gateway(upstream).await;
    // Prior knowledge: the HTTP/2 preface straight away, no upgrade.
    let mut senders = Vec::new();
    for _ in 0..5 {
        let socket = TcpStream::connect(gateway.api).await.expect("connect");
        let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(socket))
            .await
            .expect("h2c handshake");
        tokio::spawn(connection);
        senders.push(sender);
    }
    let streams: Vec<_> = (0..STREAMS)
        .map(|i| {
            let mut sender = senders[i % senders.len()].clone();
            tokio::spawn(async move {
                let request = http::Request::post(format!("http://{}/v1/chat/completions", "gateway"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                    .expect("request");
                sender.ready().await.expect("connection ready");
                let response = sender.send_request(request).await.expect("response");
                assert_eq!(response.status(), 200);
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("the whole stream")
                    .to_bytes();
                String::from_utf8_lossy(&body).into_owned()
            })
        })
        .collect();
    for stream in streams {
        let text = tokio::time::timeout(LIMIT, stream)
            .await
            .expect("every stream ends in time")
            .expect("task");
        assert!(text.contains("first") && text.contains("data: [DONE]"), "{text}");
    }
}
