//! Client connections as an attacker or a careless client uses them: silent, slow, idle,
//! oversized, and too many for the file-descriptor limit.

mod support;

use std::time::Duration;

use modelgate::gateway::ServerOptions;
use support::child::ChildGateway;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The beginning of a request whose headers never end.
const PARTIAL: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: appl";

fn options(change: impl FnOnce(&mut ServerOptions)) -> ServerOptions {
    let mut options = ServerOptions::default();
    change(&mut options);
    options
}

async fn mock_gateway(server: ServerOptions) -> (ConfigDir, modelgate::gateway::Running) {
    let config = ConfigDir::new();
    config.write("c.yaml", &(mock_provider() + &alias("fast", "{target: mock/m}")));
    let gateway = start_gateway_options(&config, modelgate::gateway::DEFAULT_MAX_BODY_BYTES, server).await;
    (config, gateway)
}

/// Reads until the peer closes (EOF or reset), failing after `limit`; returns what arrived.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| panic!("the gateway did not close the connection within {limit:?}"));
    received
}

/// One HTTP/1.1 response read off a raw socket: status, headers, body (by Content-Length).
async fn response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().expect("content-length"));
            while data.len() < end + 4 + length {
                let n = stream.read(&mut buf).await.expect("read the body");
                assert!(n > 0, "the connection closed mid-body");
                data.extend_from_slice(&buf[..n]);
            }
            let status = head[9..12].parse().expect("status");
            return (status, head, data[end + 4..end + 4 + length].to_vec());
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .expect("read");
        assert!(
            n > 0,
            "the connection closed without a response: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn silent_and_slow_header_clients_are_closed_after_the_header_timeout() {
    let (_config, gateway) = mock_gateway(options(|o| o.header_timeout = Duration::from_millis(300))).await;
    for addr in [gateway.addr, gateway.admin_addr] {
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let mut slow = TcpStream::connect(addr).await.expect("connect");
        slow.write_all(PARTIAL).await.expect("write");
        until_closed(&mut silent, Duration::from_secs(5)).await;
        let answer = until_closed(&mut slow, Duration::from_secs(5)).await;
        assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    }
    // A client that sends its request in time is served.
    let (status, _) = post(&gateway, "/v1/chat/completions", &chat("fast")).await;
    assert_eq!(status, 200);
    let closed = metric(
        &gateway,
        "modelgate_connections_closed_total{listener=\"api\",reason=\"header_timeout\"}",
    )
    .await;
    assert_eq!(closed, 2.0);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_but_busy_ones_are_not() {
    let upstream = FakeUpstream::start("alpha", Behaviour::HeldStream).await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(provider("alpha", &upstream, "sk-a") + &alias("held", "{target: alpha/m}")),
    );
    let server = options(|o| o.idle_timeout = Duration::from_millis(300));
    let gateway = start_gateway_options(&config, modelgate::gateway::DEFAULT_MAX_BODY_BYTES, server).await;

    // A stream in flight for longer than the idle timeout.
    let mut busy = TcpStream::connect(gateway.addr).await.expect("connect");
    let body = serde_json::json!({"model": "held", "stream": true, "messages": []}).to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    busy.write_all(request.as_bytes()).await.expect("write");
    let mut first = vec![0u8; 4096];
    let n = busy.read(&mut first).await.expect("the first chunk");
    assert!(String::from_utf8_lossy(&first[..n]).contains("first"));

    // A keep-alive connection after its request: closed once idle for the timeout.
    let mut idle = TcpStream::connect(gateway.addr).await.expect("connect");
    idle.write_all(b"GET /v1/models HTTP/1.1\r\nHost: g\r\n\r\n")
        .await
        .expect("write");
    let (status, _, _) = response(&mut idle).await;
    assert_eq!(status, 200);
    until_closed(&mut idle, Duration::from_secs(5)).await;

    // The stream started before that request and outlived the idle timeout: still open.
    upstream.release.notify_one();
    let mut rest = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&rest).contains("[DONE]") {
        let n = tokio::time::timeout(Duration::from_secs(5), busy.read(&mut buf))
            .await
            .expect("the rest of the stream")
            .expect("read");
        assert!(
            n > 0,
            "the busy connection was closed: {}",
            String::from_utf8_lossy(&rest)
        );
        rest.extend_from_slice(&buf[..n]);
    }
    let closed = metric(
        &gateway,
        "modelgate_connections_closed_total{listener=\"api\",reason=\"idle_timeout\"}",
    )
    .await;
    assert_eq!(closed, 1.0);
}

#[tokio::test]
async fn a_slow_uploader_gets_a_408_json_error() {
    let (_config, gateway) = mock_gateway(options(|o| o.body_timeout = Duration::from_millis(300))).await;
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"model\": \"fa")
        .await
        .expect("write");
    let (status, head, body) = response(&mut stream).await;
    assert_eq!(status, 408, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("--body-timeout")));
    // The rest of the body will never be read: the connection closes.
    until_closed(&mut stream, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn oversized_headers_get_a_json_431_and_so_do_too_many_header_lines() {
    let (_config, gateway) = mock_gateway(ServerOptions::default()).await;
    let big = "x".repeat(40 << 10);
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let request = format!("GET /v1/models HTTP/1.1\r\nHost: g\r\nX-Big: {big}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let (status, head, body) = response(&mut stream).await;
    assert_eq!(status, 431, "{head}");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(body["error"]["code"], "headers_too_large");

    let long = "a".repeat(9 << 10);
    stream
        .write_all(format!("GET /v1/models/{long} HTTP/1.1\r\nHost: g\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let (status, _, body) = response(&mut stream).await;
    assert_eq!(status, 414);
    let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(body["error"]["code"], "uri_too_long");

    // More than 100 header lines: refused while parsing, with the same JSON (hyper's server
    // answered an empty 431 here), and the connection closes.
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    stream
        .write_all(format!("GET /v1/models HTTP/1.1\r\nHost: g\r\n{many}\r\n").as_bytes())
        .await
        .expect("write");
    let (status, head, body) = response(&mut stream).await;
    assert_eq!(status, 431, "{head}");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(body["error"]["code"], "headers_too_large");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
}

/// An HTTP/2 frame header: length, type, flags, stream.
fn frames(mut data: &[u8]) -> Vec<(u8, u8)> {
    let mut out = Vec::new();
    while data.len() >= 9 {
        let length = (usize::from(data[0]) << 16) | (usize::from(data[1]) << 8) | usize::from(data[2]);
        out.push((data[3], data[4]));
        data = &data[(9 + length).min(data.len())..];
    }
    out
}

#[tokio::test]
async fn h2c_connections_are_pinged_and_closed_when_pings_go_unanswered() {
    let server = options(|o| {
        o.header_timeout = Duration::from_secs(60);
        o.http2_keepalive_interval = Duration::from_millis(200);
        o.http2_keepalive_timeout = Duration::from_millis(200);
    });
    let (_config, gateway) = mock_gateway(server).await;
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    // The HTTP/2 preface and an empty SETTINGS frame; then silence (no ACKs).
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.expect("settings");
    let received = until_closed(&mut stream, Duration::from_secs(5)).await;
    const PING: u8 = 6;
    assert!(
        frames(&received)
            .iter()
            .any(|&(kind, flags)| kind == PING && flags & 1 == 0),
        "no PING among the frames {:?}",
        frames(&received)
    );
}

/// Opens a connection that sends half a request and stalls.
async fn slowloris(addr: std::net::SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(PARTIAL).await.ok()?;
    Some(stream)
}

/// Whether the gateway closed this connection, waiting at most `limit` for it.
async fn closed_within(mut stream: TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn slowloris_clients_cannot_lock_out_normal_ones_under_a_low_fd_limit() {
    const FD_LIMIT: u64 = 256;
    const SLOW: usize = 400;
    const NORMAL: usize = 200;
    let config = ConfigDir::new();
    config.write("c.yaml", &(mock_provider() + &alias("fast", "{target: mock/m}")));
    // Only shedding can close the stalled connections within this test.
    let gateway = ChildGateway::start(&config, &["--header-timeout", "10m"], Some(FD_LIMIT)).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = format!("http://{}/v1/chat/completions", gateway.api);
    let mut stalled = Vec::new();
    let mut failures = Vec::new();
    for i in 0..NORMAL {
        // Two more stalled connections for every normal request: 400 against a limit of 256
        // descriptors, about 80 of them for client connections.
        for _ in 0..SLOW / NORMAL {
            stalled.extend(slowloris(gateway.api).await);
        }
        let answer = client.post(&url).body(chat("fast")).send().await;
        match answer {
            Ok(response) if response.status() == 200 => {}
            Ok(response) => failures.push(format!("request {i}: status {}", response.status())),
            Err(e) => failures.push(format!("request {i}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}\n{}",
        failures.len(),
        gateway.log()
    );
    assert_eq!(stalled.len(), SLOW, "every stalled connection was accepted");
    let closed = futures_util::future::join_all(stalled.into_iter().map(|s| closed_within(s, Duration::from_secs(2))))
        .await
        .into_iter()
        .filter(|&closed| closed)
        .count();
    let (_, metrics) = get(gateway.admin, "/metrics").await;
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    let cap = value("modelgate_connection_limit{listener=\"api\"}");
    assert!(cap > 0.0 && cap < FD_LIMIT as f64, "cap {cap}");
    assert!(
        closed as f64 >= SLOW as f64 - cap,
        "only {closed} of {SLOW} stalled connections were closed (cap {cap})"
    );
    assert!(value("modelgate_connections_closed_total{listener=\"api\",reason=\"shed\"}") >= SLOW as f64 - cap);
    assert_eq!(
        value("modelgate_accept_errors_total{listener=\"api\"}"),
        0.0,
        "{}",
        gateway.log()
    );
}
