//! The connection loop over a real socket, against a small router.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use axum::Router;
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::gateway::server::{serve, ConnectionMetrics, ListenerName, Server, ServerOptions};

async fn start() -> Server {
    let router = Router::new()
        .route(
            "/echo",
            post(|body: Body| async move {
                match axum::body::to_bytes(body, 1 << 20).await {
                    Ok(bytes) => (StatusCode::OK, bytes),
                    Err(_) => (StatusCode::BAD_REQUEST, Bytes::from_static(b"unreadable")),
                }
            }),
        )
        .route("/ignore", post(|| async { "ignored" }))
        .route("/text", get(|| async { "hello" }))
        .route(
            "/stream",
            get(|| async {
                let events =
                    ["data: 1\n\n", "data: 2\n\n"].map(|e| Ok::<_, Infallible>(Bytes::from_static(e.as_bytes())));
                let mut headers = HeaderMap::new();
                headers.insert("content-type", "text/event-stream".parse().expect("value"));
                (headers, Body::from_stream(futures_util::stream::iter(events)))
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ConnectionMetrics::register(&mut registry).listener(ListenerName::api);
    serve(listener, router, &ServerOptions::default(), 16, metrics).expect("serve")
}

/// Sends `request` and reads until the server closes the connection.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket.write_all(request).await.expect("write");
    let mut out = Vec::new();
    socket.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// The responses' status lines (no body here has `HTTP/1.x ` in it).
fn statuses(text: &str) -> Vec<&str> {
    text.match_indices("HTTP/1.")
        .filter(|(at, _)| text[at + 8..].starts_with(' '))
        .filter_map(|(at, _)| text[at..].split("\r\n").next())
        .collect()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_close_when_asked() {
    let server = start().await;
    let text = exchange(
        server.local_addr(),
        b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nfirstGET /nope HTTP/1.1\r\n\r\nPOST /echo HTTP/1.1\r\nConnection: close\r\nContent-Length: 4\r\n\r\nlast",
    )
    .await;
    assert_eq!(
        statuses(&text),
        ["HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found", "HTTP/1.1 200 OK"],
        "{text}"
    );
    let first = text.find("first").expect("first body");
    assert!(
        first < text.find("404").expect("second") && text.ends_with("\r\n\r\nlast"),
        "{text}"
    );
    assert!(text.contains("connection: close\r\n"), "{text}");
}

#[tokio::test]
async fn chunked_bodies_with_extensions_and_trailers_reach_the_handler_decoded() {
    let server = start().await;
    let text = exchange(
        server.local_addr(),
        b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n",
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\nabcde"),
        "{text}"
    );
    let text = exchange(
        server.local_addr(),
        b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\nGET /text HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_eq!(
        statuses(&text),
        ["HTTP/1.1 400 Bad Request"],
        "a malformed body ends the connection: {text}"
    );
}

#[tokio::test]
async fn smuggling_shapes_get_a_json_400_and_the_connection_closes() {
    let server = start().await;
    for request in [
        &b"POST /echo HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /text HTTP/1.1\r\n\r\n"[..],
        b"POST /echo HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcdeGET /text HTTP/1.1\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ] {
        let text = exchange(server.local_addr(), request).await;
        assert_eq!(statuses(&text), ["HTTP/1.1 400 Bad Request"], "{text}");
        assert!(text.contains("\"code\":\"malformed_request\"") && text.contains("connection: close"), "{text}");
    }
}

#[tokio::test]
async fn expect_continue_is_answered_when_the_body_is_read() {
    let server = start().await;
    let mut socket = TcpStream::connect(server.local_addr()).await.expect("connect");
    socket
        .write_all(b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut interim = [0u8; 25];
    socket.read_exact(&mut interim).await.expect("100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    socket.write_all(b"ok").await.expect("body");
    let mut out = String::new();
    socket.read_to_string(&mut out).await.expect("read");
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("\r\n\r\nok"),
        "{out}"
    );
    // A handler that answers without reading: no 100 Continue, and the connection closes (the
    // client never sent the body).
    let text = exchange(
        server.local_addr(),
        b"POST /ignore HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&text), ["HTTP/1.1 200 OK"], "{text}");
}

#[tokio::test]
async fn a_body_the_handler_leaves_is_drained_and_the_connection_kept() {
    let server = start().await;
    let text = exchange(
        server.local_addr(),
        b"POST /ignore HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST /ignore HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nGET /text HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&text), ["HTTP/1.1 200 OK"; 3], "{text}");
    assert!(text.ends_with("hello"), "{text}");
}

#[tokio::test]
async fn http_1_0_head_and_streams_are_framed_as_clients_expect() {
    let server = start().await;
    let text = exchange(server.local_addr(), b"GET /text HTTP/1.0\r\n\r\n").await;
    assert!(
        text.starts_with("HTTP/1.0 200 OK\r\n") && text.contains("content-length: 5\r\n"),
        "{text}"
    );
    assert!(!text.contains("connection:") && text.ends_with("hello"), "{text}");
    let text = exchange(server.local_addr(), b"HEAD /text HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(
        text.contains("content-length: 5\r\n") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
    let text = exchange(
        server.local_addr(),
        b"GET /stream HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n"),
        "{text:?}"
    );
    let text = exchange(
        server.local_addr(),
        b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    )
    .await;
    assert!(
        !text.contains("transfer-encoding") && text.ends_with("\r\n\r\ndata: 1\n\ndata: 2\n\n"),
        "{text:?}"
    );
}

#[tokio::test]
async fn oversized_heads_get_the_json_431_and_414() {
    let server = start().await;
    let big = format!(
        "GET /text HTTP/1.1\r\nConnection: close\r\nx-big: {}\r\n\r\n",
        "b".repeat(40 << 10)
    );
    let text = exchange(server.local_addr(), big.as_bytes()).await;
    assert!(
        text.starts_with("HTTP/1.1 431 ") && text.contains("headers_too_large"),
        "{text}"
    );
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70 << 10));
    let text = exchange(server.local_addr(), long.as_bytes()).await;
    assert!(
        text.starts_with("HTTP/1.1 414 ") && text.contains("uri_too_long"),
        "{text}"
    );
}
