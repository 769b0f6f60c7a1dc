//! SIGTERM as Kubernetes sends it: the drain, its deadline, and a second signal.

mod support;

use std::time::{Duration, Instant};

use support::child::ChildGateway;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An LLMProvider whose timeouts outlast every test here, so only the drain ends a stream.
fn patient_provider(name: &str, upstream: &FakeUpstream) -> String {
    format!(
        "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: {name}}}\nspec:\n  type: openai-compatible\n  baseUrl: {}\n  timeouts: {{request: 10m, idle: 10m}}\n",
        upstream.base_url()
    )
}

/// A config with `endless` (a held stream) and `fast` (the mock provider).
async fn endless_and_fast() -> (FakeUpstream, ConfigDir) {
    let upstream = FakeUpstream::start("alpha", Behaviour::HeldStream).await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(patient_provider("alpha", &upstream)
            + &alias("endless", "{target: alpha/m}")
            + &mock_provider()
            + &alias("fast", "{target: mock/m}")),
    );
    (upstream, config)
}

/// An HTTP/1.1 chat completion request for `body`, as a client writes it.
fn post(body: &serde_json::Value) -> String {
    let body = body.to_string();
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A gateway in front of a stream that never ends.
async fn endless(args: &[&str]) -> (FakeUpstream, ConfigDir, ChildGateway) {
    let upstream = FakeUpstream::start("alpha", Behaviour::HeldStream).await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(patient_provider("alpha", &upstream) + &alias("endless", "{target: alpha/m}")),
    );
    let gateway = ChildGateway::start(&config, args, None).await;
    (upstream, config, gateway)
}

/// Starts a stream and reads its first chunk.
async fn open_stream(gateway: &ChildGateway) -> reqwest::Response {
    let body = serde_json::json!({"model": "endless", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut response = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", gateway.api))
        .json(&body)
        .send()
        .await
        .expect("the stream starts");
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.expect("read").expect("a first chunk");
    assert!(String::from_utf8_lossy(&first).contains("first"));
    response
}

/// The rest of a stream, once it ends (within 10 s).
async fn rest_of(stream: &mut reqwest::Response) -> String {
    let mut rest = String::new();
    let read = async {
        while let Some(chunk) = stream.chunk().await.expect("the stream ends cleanly") {
            rest.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the stream ended");
    rest
}

async fn readyz(gateway: &ChildGateway) -> Option<u16> {
    let response = reqwest::Client::new()
        .get(format!("http://{}/readyz", gateway.admin))
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

/// Waits until `/readyz` answers 503 (the drain has begun).
async fn draining(gateway: &ChildGateway) {
    eventually(Duration::from_secs(10), "/readyz to fail", || async {
        (readyz(gateway).await == Some(503)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sigterm_ends_a_never_ending_stream_with_an_error_event_and_exits_0() {
    let grace = Duration::from_secs(1);
    let (_upstream, _config, mut gateway) = endless(&["--shutdown-grace", "1s"]).await;
    let mut stream = open_stream(&gateway).await;
    let signalled = Instant::now();
    gateway.signal(libc::SIGTERM);
    let rest = rest_of(&mut stream).await;
    let ended = signalled.elapsed();
    let status = gateway.exited(Duration::from_secs(10)).await;
    let exited = signalled.elapsed();

    assert!(status.success(), "exit status {status:?}:\n{}", gateway.log());
    assert!(
        ended >= grace,
        "the stream was cut after {ended:?}, before the grace period"
    );
    assert!(
        exited < grace + Duration::from_secs(3),
        "exited {exited:?} after SIGTERM (grace {grace:?})"
    );
    let event = rest
        .split("\n\n")
        .find_map(|e| e.trim().strip_prefix("data: "))
        .expect("an event after SIGTERM");
    let event: serde_json::Value = serde_json::from_str(event).expect("a JSON event");
    assert_eq!(event["error"]["code"], "gateway_shutting_down", "{rest}");
    assert!(!rest.contains("[DONE]"), "{rest}");
    assert!(
        gateway.log().contains("streams_ended_with_an_error=1"),
        "{}",
        gateway.log()
    );
}

#[tokio::test]
async fn half_open_clients_do_not_hold_the_drain() {
    let config = ConfigDir::new();
    config.write("c.yaml", &(mock_provider() + &alias("fast", "{target: mock/m}")));
    // Long header and idle timeouts and grace period: only the drain closes these.
    let args = [
        "--shutdown-grace",
        "30s",
        "--header-timeout",
        "10m",
        "--idle-timeout",
        "10m",
    ];
    let mut gateway = ChildGateway::start(&config, &args, None).await;
    // Half a request, then silence; and a connection that never sends anything.
    let mut partial = TcpStream::connect(gateway.api).await.expect("connect");
    partial
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Le")
        .await
        .expect("write");
    let mut silent = TcpStream::connect(gateway.api).await.expect("connect");
    let signalled = Instant::now();
    gateway.signal(libc::SIGTERM);
    let status = gateway.exited(Duration::from_secs(10)).await;
    let exited = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}:\n{}", gateway.log());
    assert!(
        exited < Duration::from_secs(3),
        "exited {exited:?} after SIGTERM: connections without a request held the drain"
    );
    let mut buf = [0u8; 16];
    assert!(matches!(partial.read(&mut buf).await, Ok(0) | Err(_)));
    assert!(matches!(silent.read(&mut buf).await, Ok(0) | Err(_)));
}

#[tokio::test]
async fn a_request_still_waiting_for_its_provider_when_the_grace_period_ends_gets_a_json_503() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Slow(Duration::from_secs(600))).await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(patient_provider("alpha", &upstream) + &alias("slow", "{target: alpha/m}")),
    );
    let mut gateway = ChildGateway::start(&config, &["--shutdown-grace", "1s"], None).await;
    let request = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", gateway.api))
        .body(chat("slow"))
        .send();
    let answer = tokio::spawn(request);
    eventually(Duration::from_secs(5), "the request to reach the provider", || async {
        (!upstream.seen().is_empty()).then_some(())
    })
    .await;
    let signalled = Instant::now();
    gateway.signal(libc::SIGTERM);
    let response = answer.await.expect("join").expect("an answer");
    let answered = signalled.elapsed();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], "gateway_shutting_down", "{body}");
    assert!(
        answered >= Duration::from_secs(1),
        "answered {answered:?} after SIGTERM, before the grace period"
    );
    let status = gateway.exited(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}:\n{}", gateway.log());
}

#[tokio::test]
async fn readyz_fails_during_the_shutdown_delay_while_requests_are_still_served() {
    let config = ConfigDir::new();
    config.write("c.yaml", &(mock_provider() + &alias("fast", "{target: mock/m}")));
    let args = ["--shutdown-delay", "3s", "--shutdown-grace", "1s"];
    let mut gateway = ChildGateway::start(&config, &args, None).await;
    assert_eq!(readyz(&gateway).await, Some(200));
    // A keep-alive connection, idle after its request.
    let mut idle = TcpStream::connect(gateway.api).await.expect("connect");
    idle.write_all(b"GET /v1/models HTTP/1.1\r\nHost: g\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 8192];
    let n = idle.read(&mut buf).await.expect("a response");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    gateway.signal(libc::SIGTERM);
    draining(&gateway).await;
    // An idle keep-alive connection is not closed under a client that may be sending on it
    // (a request lost in that race is what a rolling update must not cost): its next request
    // is served, and its response closes the connection.
    idle.write_all(b"GET /v1/models HTTP/1.1\r\nHost: g\r\n\r\n")
        .await
        .expect("write on the idle connection during the delay");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut answer))
        .await
        .expect("the response, then the close")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    // New connections are still served during the delay, and told to close.
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", gateway.api))
        .body(chat("fast"))
        .send()
        .await
        .expect("served during the delay");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );
    assert!(gateway.running(), "the gateway exited before its shutdown delay");
    let status = gateway.exited(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}:\n{}", gateway.log());
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let (_upstream, _config, mut gateway) = endless(&["--shutdown-grace", "60s"]).await;
    let _stream = open_stream(&gateway).await;
    gateway.signal(libc::SIGTERM);
    draining(&gateway).await;
    assert!(gateway.running(), "the stream holds the drain open");
    let signalled = Instant::now();
    gateway.signal(libc::SIGINT);
    let status = gateway.exited(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(130), "{}", gateway.log());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?} to exit after the second signal",
        signalled.elapsed()
    );
    assert!(
        gateway.log().contains("second signal during the drain"),
        "{}",
        gateway.log()
    );
}

#[tokio::test]
async fn confined_to_one_cpu_the_gateway_runs_one_thread_serves_beside_an_open_stream_and_drains() {
    let (_upstream, config) = endless_and_fast().await;
    let mut gateway = ChildGateway::start_with(&config, &["--shutdown-grace", "1s"], None, |command| {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
    .await;
    assert!(gateway.log().contains("async runtime: one thread"), "{}", gateway.log());
    let mut stream = open_stream(&gateway).await;
    // The one thread is not held by the open stream: other requests are answered meanwhile.
    for _ in 0..20 {
        let answer = reqwest::Client::new()
            .post(format!("http://{}/v1/chat/completions", gateway.api))
            .json(&serde_json::json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("answered beside the stream");
        assert_eq!(answer.status(), 200);
    }
    gateway.signal(libc::SIGTERM);
    let rest = rest_of(&mut stream).await;
    let status = gateway.exited(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}:\n{}", gateway.log());
    assert!(rest.contains("gateway_shutting_down"), "{rest}");
    assert!(!rest.contains("[DONE]"), "{rest}");
}

#[tokio::test]
async fn a_keep_alive_connection_whose_stream_ends_during_the_drain_takes_one_more_request() {
    let (upstream, config) = endless_and_fast().await;
    let args = ["--shutdown-delay", "3s", "--shutdown-grace", "10s"];
    let mut gateway = ChildGateway::start(&config, &args, None).await;
    // A stream whose head went out before the signal, on a keep-alive connection.
    let mut conn = TcpStream::connect(gateway.api).await.expect("connect");
    let request = post(&serde_json::json!({"model": "endless", "stream": true, "messages": []}));
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&read).contains("first") {
        let n = conn.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&read));
        read.extend_from_slice(&buf[..n]);
    }
    gateway.signal(libc::SIGTERM);
    draining(&gateway).await;
    // The stream ends during the shutdown delay; its connection is kept (the client may be
    // sending its next request on it already) ...
    upstream.release.notify_one();
    while !String::from_utf8_lossy(&read).ends_with("0\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("the rest of the stream")
            .expect("read");
        assert!(n > 0, "closed mid-stream: {}", String::from_utf8_lossy(&read));
        read.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&read).contains("[DONE]"));
    // ... and the next request on it is answered, with `Connection: close`.
    let request = post(&serde_json::json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}));
    conn.write_all(request.as_bytes())
        .await
        .expect("write the next request");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
        .await
        .expect("the answer, then the close")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    let status = gateway.exited(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status:?}:\n{}", gateway.log());
}
