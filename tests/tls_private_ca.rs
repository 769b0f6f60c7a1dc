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
