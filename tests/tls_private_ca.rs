//! Providers behind a private CA (`LLMProvider.spec.tls.caSecretRef`), and how the gateway
//! reuses TLS to them: connections kept alive, sessions resumed. The upstream is a rustls
//! server with a CA made in the test, counting its handshakes.

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use support::tls::{ca_secret, https_provider, Ca, Options, TlsUpstream};
use support::*;

const RELOAD: Duration = Duration::from_secs(15);

const H2: Options = Options {
    h2: true,
    close_each: false,
};

/// A gateway with `private` (trusting the CA in the Secret `private-ca`, holding `ca_pem`)
/// and `public` (the system's roots) at `upstream`; aliases `chat` and `public-chat`.
fn config(upstream: &TlsUpstream, ca_pem: &str) -> String {
    [
        https_provider("private", &upstream.base_url(), Some("private-ca")),
        ca_secret("private-ca", ca_pem),
        https_provider("public", &upstream.base_url(), None),
        alias("chat", "{target: private/model-t}"),
        alias("public-chat", "{target: public/model-t}"),
        alias("held", "{target: private/held}"),
    ]
    .concat()
}

#[tokio::test]
async fn a_provider_trusting_its_private_ca_is_served_and_one_trusting_the_public_roots_gets_a_tls_502() {
    let ca = Ca::new("modelgate test CA");
    let upstream = TlsUpstream::start(&ca, H2).await;
    let dir = ConfigDir::new();
    dir.write("c.yaml", &config(&upstream, &ca.pem));
    let gateway = start_gateway(&dir).await;

    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("chat")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "tls served model-t");
    assert_eq!(
        upstream.counts.versions.lock().expect("lock").as_slice(),
        [hyper::Version::HTTP_2],
        "ALPN chose HTTP/2"
    );

    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("public-chat")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_tls_failed");
    assert_eq!(
        body["error"]["message"],
        "The gateway could not connect securely to the provider 'default/public': its TLS certificate failed verification: it is signed by a CA the gateway does not trust (for a private CA, set tls.caSecretRef on the LLMProvider). This is not a problem with your request; ask the platform team to check the provider's certificate or the LLMProvider's tls settings."
    );
    assert_eq!(
        upstream.counts.requests(),
        1,
        "no request went over the untrusted connection"
    );
    assert!(upstream.counts.failed() >= 1);
}

#[tokio::test]
async fn a_rotated_ca_in_the_files_is_picked_up_on_reload() {
    let (old, new) = (Ca::new("old CA"), Ca::new("new CA"));
    let upstream = TlsUpstream::start(&old, H2).await;
    let dir = ConfigDir::new();
    dir.write("c.yaml", &config(&upstream, &old.pem));
    let gateway = start_gateway(&dir).await;
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("chat")).await;
    assert_eq!(status, 200, "{body}");

    // The upstream moves to a certificate of the new CA: the gateway, still trusting the old
    // one, refuses it.
    upstream.rotate(&new);
    eventually(RELOAD, "a TLS failure against the new certificate", || async {
        let (status, body) = post(&gateway, "/v1/chat/completions", &chat("chat")).await;
        (status == 502 && body["error"]["code"] == "upstream_tls_failed").then_some(())
    })
    .await;

    // The Secret is updated in the files: the next reload trusts the new CA.
    dir.write("c.yaml", &config(&upstream, &new.pem));
    eventually(RELOAD, "the new CA to be trusted", || async {
        let (status, _) = post(&gateway, "/v1/chat/completions", &chat("chat")).await;
        (status == 200).then_some(())
    })
    .await;
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("chat")).await;
    assert_eq!(status, 200, "{body}");
}

/// Sends `n` requests for `chat` at once; each must succeed.
async fn burst(gateway: &modelgate::gateway::Running, n: usize) {
    requests(gateway, n, n).await;
}

/// Sends `n` chat requests through the gateway, `concurrency` at a time; each must succeed.
async fn requests(gateway: &modelgate::gateway::Running, n: usize, concurrency: usize) {
    let body = chat("chat");
    for _ in 0..n / concurrency {
        let answers = join_all((0..concurrency).map(|_| post(gateway, "/v1/chat/completions", &body))).await;
        for (status, body) in answers {
            assert_eq!(status, 200, "{body}");
        }
    }
}

#[tokio::test]
async fn an_http2_provider_gets_one_connection_for_sequential_and_concurrent_requests() {
    let ca = Ca::new("reuse CA");
    let upstream = TlsUpstream::start(&ca, H2).await;
    let dir = ConfigDir::new();
    dir.write("c.yaml", &config(&upstream, &ca.pem));
    let gateway = start_gateway(&dir).await;

    requests(&gateway, 50, 1).await;
    assert_eq!(
        (upstream.counts.full(), upstream.counts.resumed()),
        (1, 0),
        "one handshake for 50 requests"
    );
    requests(&gateway, 200, 25).await;
    assert_eq!(upstream.counts.requests(), 250);
    assert_eq!(
        upstream.counts.handshakes(),
        1,
        "concurrent requests share the HTTP/2 connection"
    );
}

#[tokio::test]
async fn an_http1_provider_keeps_connections_alive_and_resumes_tls_sessions_for_new_ones() {
    let ca = Ca::new("reuse CA");
    let upstream = TlsUpstream::start(
        &ca,
        Options {
            h2: false,
            close_each: false,
        },
    )
    .await;
    let dir = ConfigDir::new();
    dir.write("c.yaml", &config(&upstream, &ca.pem));
    let gateway = start_gateway(&dir).await;

    requests(&gateway, 50, 1).await;
    assert_eq!(
        upstream.counts.handshakes(),
        1,
        "sequential requests reuse one keep-alive connection"
    );
    requests(&gateway, 200, 8).await;
    let handshakes = upstream.counts.handshakes();
    assert!(
        handshakes <= 8,
        "at most one connection per concurrent request: {handshakes}"
    );
    assert!(
        upstream.counts.resumed() >= 1,
        "connections after the first resume its session: {} full, {} resumed",
        upstream.counts.full(),
        upstream.counts.resumed()
    );
    assert!(upstream
        .counts
        .versions
        .lock()
        .expect("lock")
        .iter()
        .all(|v| *v == hyper::Version::HTTP_11));

    // An upstream that closes every connection: each request needs a handshake, and all but
    // the first are resumed (no certificate sent or verified again).
    let closing = TlsUpstream::start(
        &ca,
        Options {
            h2: false,
            close_each: true,
        },
    )
    .await;
    let dir = ConfigDir::new();
    dir.write("c.yaml", &config(&closing, &ca.pem));
    let gateway = start_gateway(&dir).await;
    requests(&gateway, 20, 1).await;
    assert_eq!(
        (closing.counts.full(), closing.counts.resumed()),
        (1, 19),
        "one full handshake, then resumed sessions"
    );
}

/// Once the upstream has seen `closed` connections end, a burst of 16.
async fn burst_after_close(upstream: &TlsUpstream, gateway: &modelgate::gateway::Running, closed: usize) {
    eventually(RELOAD, "the upstream's connection to close", || async {
        (upstream.counts.closed() == closed).then_some(())
    })
    .await;
    burst(gateway, 16).await;
}

#[tokio::test]
async fn a_cold_burst_to_an_http2_provider_makes_one_handshake_and_so_does_one_after_goaway_or_a_dead_connection() {
    let ca = Ca::new("burst CA");
    let upstream = TlsUpstream::start(&ca, H2).await;
    let dir = ConfigDir::new();
    dir.write("c.yaml", &config(&upstream, &ca.pem));
    let gateway = start_gateway(&dir).await;

    burst(&gateway, 16).await;
    assert_eq!(
        (upstream.counts.full(), upstream.counts.resumed()),
        (1, 0),
        "16 concurrent first requests share one connection"
    );

    // The upstream says GOAWAY: the next burst waits for one new connection, resumed.
    upstream.goaway();
    burst_after_close(&upstream, &gateway, 1).await;
    assert_eq!(
        (upstream.counts.full(), upstream.counts.resumed()),
        (1, 1),
        "after GOAWAY, one new connection for 16 requests"
    );

    // The connection dies without a word: the same.
    upstream.kill_connections();
    burst_after_close(&upstream, &gateway, 2).await;
    assert_eq!(upstream.counts.handshakes(), 3, "after a dead connection, one more");
    assert_eq!(upstream.counts.requests(), 48);
}

#[tokio::test]
async fn a_cold_burst_to_an_http1_provider_opens_at_most_one_connection_per_request_and_keeps_them() {
    let ca = Ca::new("burst CA");
    let options = Options {
        h2: false,
        close_each: false,
    };
    let upstream = TlsUpstream::start(&ca, options).await;
    let dir = ConfigDir::new();
    dir.write("c.yaml", &config(&upstream, &ca.pem));
    let gateway = start_gateway(&dir).await;

    burst(&gateway, 16).await;
    let cold = upstream.counts.handshakes();
    assert!((1..=16).contains(&cold), "{cold} handshakes");
    burst(&gateway, 16).await;
    assert_eq!(
        upstream.counts.handshakes(),
        cold,
        "the second burst reuses the first's connections"
    );
}

#[tokio::test]
async fn a_cold_burst_to_a_provider_that_is_down_fails_every_request_promptly() {
    // A port that was free a moment ago: nothing listens there.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let ca = Ca::new("down CA");
    let dir = ConfigDir::new();
    let config = [
        https_provider("private", &format!("https://{addr}/v1"), Some("private-ca")),
        ca_secret("private-ca", &ca.pem),
        alias("chat", "{target: private/model-t}"),
    ]
    .concat();
    dir.write("c.yaml", &config);
    let gateway = start_gateway(&dir).await;

    let body = chat("chat");
    let answers = tokio::time::timeout(
        Duration::from_secs(30),
        join_all((0..16).map(|_| post(&gateway, "/v1/chat/completions", &body))),
    )
    .await
    .expect("no request waits forever for the failed connect");
    for (status, body) in answers {
        assert_eq!(status, 502, "{body}");
    }
}

#[tokio::test]
async fn a_rotated_ca_closes_the_old_client_once_its_requests_finish() {
    let (old, new) = (Ca::new("old CA"), Ca::new("new CA"));
    let upstream = TlsUpstream::start(&old, H2).await;
    let dir = ConfigDir::new();
    dir.write("c.yaml", &config(&upstream, &old.pem));
    let gateway = start_gateway(&dir).await;
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("chat")).await;
    assert_eq!(status, 200, "{body}");
    // Two providers (the private CA, the public roots) at one upstream: two pools, two configs.
    assert_eq!(gateway.shared.clients.tls_in_use(), (2, 2));

    // A request in flight on the old CA's connection.
    let held = {
        let gateway_addr = gateway.addr;
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("http://{gateway_addr}/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(chat("held"))
                .send()
                .await
                .expect("held request")
                .status()
        })
    };
    eventually(RELOAD, "the held request to reach the upstream", || async {
        (upstream.counts.requests() == 2).then_some(())
    })
    .await;

    // The CA rotates: the Secret now holds the old and the new CA (a new fingerprint).
    let bundle = format!("{}{}", old.pem, new.pem);
    dir.write("c.yaml", &config(&upstream, &bundle));
    eventually(RELOAD, "a new connection under the new bundle", || async {
        let (status, _) = post(&gateway, "/v1/chat/completions", &chat("chat")).await;
        (status == 200 && upstream.counts.full() == 2).then_some(())
    })
    .await;
    assert_eq!(
        gateway.shared.clients.tls_in_use(),
        (3, 3),
        "the old client lives while its request does"
    );
    assert_eq!(upstream.counts.closed(), 0);

    upstream.counts.release.release();
    assert_eq!(held.await.expect("held"), 200, "the request in flight finished");
    eventually(
        RELOAD,
        "the old client to be dropped and its connection closed",
        || async { (gateway.shared.clients.tls_in_use() == (2, 2) && upstream.counts.closed() == 1).then_some(()) },
    )
    .await;
}
