//! Where the gateway refuses to send requests: metadata and link-local addresses in every
//! spelling, loopback under the in-cluster rules (unless allowed), itself (a loop), and
//! wherever a provider's redirect points.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modelgate::gateway::egress::EgressOptions;
use modelgate::gateway::{self, GatewayOptions, Running};
use serde_json::Value;
use support::*;

const RELOAD: Duration = Duration::from_secs(15);

async fn start_with(config: &ConfigDir, egress: EgressOptions) -> Running {
    gateway::start(GatewayOptions {
        config: vec![config.path()],
        scope: Default::default(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin_listen: "127.0.0.1:0".parse().expect("addr"),
        max_body_bytes: gateway::DEFAULT_MAX_BODY_BYTES,
        egress,
        server: Default::default(),
        tenancy: Default::default(),
    })
    .await
    .unwrap_or_else(|e| panic!("the gateway did not start: {e}"))
}

/// An LLMProvider named `name` at `base_url`, with no key.
fn provider_at(name: &str, base_url: &str) -> String {
    format!("---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: {name}}}\nspec: {{type: openai-compatible, baseUrl: '{base_url}', timeouts: {{connect: 2s, request: 5s}}}}\n")
}

/// Waits until the gateway serves `alias` (it appears in `/v1/models`).
async fn wait_for_alias(gateway: &Running, alias: &str) {
    eventually(RELOAD, &format!("alias {alias} to be served"), || async {
        let (_, body) = get(gateway.addr, "/v1/models").await;
        body.contains(&format!("\"{alias}\"")).then_some(())
    })
    .await;
}

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"].as_str().unwrap_or_default(),
        body["error"]["message"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn the_metadata_service_is_refused_in_every_spelling_over_http_and_https() {
    let spellings = [
        "http://169.254.169.254/latest",
        "http://2852039166/latest",
        "http://0xa9fea9fe/latest",
        "http://0251.0376.0251.0376/latest",
        "http://169.254.43518/latest",
        "http://169.254.169.254./latest",
        "http://[::ffff:169.254.169.254]/latest",
        "http://[::ffff:a9fe:a9fe]:80/latest",
        "http://[64:ff9b::a9fe:a9fe]/latest",
        "http://[fd00:ec2::254]/latest",
        "http://100.100.100.200/latest",
        "https://169.254.169.254/latest",
        "https://2852039166/latest",
        "http://metadata.google.internal/computeMetadata/v1",
        "https://METADATA.google.internal./computeMetadata/v1",
        "http://169.254.1.1:8080/v1",
        "http://[fe80::1]/v1",
        "http://0.0.0.0:11434/v1",
        "http://[::]:11434/v1",
        "http://224.0.0.1/v1",
    ];
    let mut yaml = mock_provider() + &alias("alive", "{target: mock/m}");
    for (i, url) in spellings.iter().enumerate() {
        yaml += &provider_at(&format!("p{i}"), url);
        yaml += &alias(&format!("a{i}"), &format!("{{target: p{i}/m}}"));
    }
    let config = ConfigDir::new();
    config.write("c.yaml", &yaml);
    let gateway = start_gateway(&config).await;

    for (i, url) in spellings.iter().enumerate() {
        let (status, body) = post(&gateway, "/v1/chat/completions", &chat(&format!("a{i}"))).await;
        assert_eq!(status, 502, "{url}: {body}");
        let (code, message) = error_of(&body);
        assert_eq!(code, "upstream_blocked", "{url}: {body}");
        assert!(
            message.starts_with(&format!(
                "The gateway refused to connect to the provider 'default/p{i}': "
            )),
            "{url}: {message}"
        );
        assert!(
            message.contains("--allow-upstream-cidr"),
            "{url}: says how to allow it: {message}"
        );
    }
    let (_, body) = post(&gateway, "/v1/chat/completions", &chat("a1")).await;
    assert_eq!(
        error_of(&body).1,
        "The gateway refused to connect to the provider 'default/p1': its host '2852039166' resolves to 169.254.169.254: a cloud metadata service, which hands out the node's credentials; modelgate never connects to it. This is not a problem with your request; the platform team must point the provider's baseUrl at the real upstream, or allow the address on the gateway with --allow-upstream-cidr (Helm value gateway.allowUpstreamCIDRs)."
    );
    let (status, _) = post(&gateway, "/v1/chat/completions", &chat("alive")).await;
    assert_eq!(status, 200, "the gateway keeps serving other aliases");
    assert_eq!(
        metric(&gateway, "modelgate_requests_total{alias=\"a0\",provider=\"default/p0\",endpoint=\"chat_completions\",status_class=\"5xx\"}").await,
        1.0,
        "counted as a 5xx of its route"
    );
}

#[tokio::test]
async fn in_cluster_rules_refuse_loopback_without_connecting_unless_it_is_allowed() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let port = upstream.addr.port();
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(provider_at("direct", &upstream.base_url())
            + &provider_at("named", &format!("http://localhost:{port}/v1"))
            + &provider_at("mapped", &format!("http://[::ffff:127.0.0.1]:{port}/v1"))
            + &alias("direct", "{target: direct/m}")
            + &alias("named", "{target: named/m}")
            + &alias("mapped", "{target: mapped/m}")),
    );
    let strict = start_with(
        &config,
        EgressOptions {
            in_cluster: Some(true),
            ..Default::default()
        },
    )
    .await;
    for (alias, host) in [
        ("direct", "its address 127.0.0.1"),
        ("named", "its host 'localhost' resolves to "),
        ("mapped", "its address ::ffff:127.0.0.1, that is 127.0.0.1: "),
    ] {
        let (status, body) = post(&strict, "/v1/chat/completions", &chat(alias)).await;
        assert_eq!(
            (status, error_of(&body).0),
            (502, "upstream_blocked"),
            "{alias}: {body}"
        );
        let message = error_of(&body).1;
        assert!(
            message.contains(host)
                && message
                    .contains("a loopback address (127.0.0.0/8 or ::1); a gateway in a cluster does not connect to it"),
            "{alias}: {message}"
        );
    }
    assert_eq!(upstream.connections(), 0, "refused before any connection");

    let allowed = start_with(
        &config,
        EgressOptions {
            in_cluster: Some(true),
            allow: vec!["127.0.0.0/8".parse().expect("cidr"), "::1/128".parse().expect("cidr")],
            ..Default::default()
        },
    )
    .await;
    for alias in ["direct", "named", "mapped"] {
        let (status, body) = post(&allowed, "/v1/chat/completions", &chat(alias)).await;
        assert_eq!(status, 200, "{alias}: {body}");
        assert_eq!(body["choices"][0]["message"]["content"], "alpha served m");
    }
    assert!(upstream.connections() >= 1);
}

/// A gateway in this test process whose provider `loop` points at the gateway itself.
async fn looping_gateway(egress: EgressOptions) -> (ConfigDir, Running) {
    let config = ConfigDir::new();
    config.write("c.yaml", &(mock_provider() + &alias("alive", "{target: mock/m}")));
    let gateway = start_with(&config, egress).await;
    config.write(
        "c.yaml",
        &(mock_provider()
            + &alias("alive", "{target: mock/m}")
            + &provider_at("loop", &format!("http://{}/v1", gateway.addr))
            + &alias("loop", "{target: loop/loop}")),
    );
    wait_for_alias(&gateway, "loop").await;
    (config, gateway)
}

#[tokio::test]
async fn a_provider_aimed_at_the_gateway_gets_508_after_one_hop() {
    let (_config, gateway) = looping_gateway(EgressOptions::default()).await;
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("loop")).await;
    assert_eq!(status, 508, "{body}");
    assert_eq!(
        error_of(&body),
        ("loop_detected", "The provider 'default/loop' answered 508 Loop Detected: its baseUrl points back at a modelgate gateway (this one or another), so the request went round in a circle and was stopped. This is not a problem with your request; the platform team must point the provider's baseUrl at the real upstream.")
    );
    assert_eq!(
        metric(&gateway, "modelgate_rejected_requests_total{code=\"loop_detected\"}").await,
        1.0,
        "the request came back exactly once"
    );

    // A client that sends the header itself gets the gateway's own 508.
    let response = client()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .header("modelgate-hops", "1")
        .body(chat("alive"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 508);
    let body: Value = response.json().await.expect("json");
    assert_eq!(error_of(&body).0, "loop_detected");
    assert!(error_of(&body).1.starts_with("This request arrived with modelgate-hops: 1: it already passed through 1 modelgate gateway(s), and this gateway accepts at most 0."), "{body}");
}

#[tokio::test]
async fn max_hops_lets_a_chain_through_and_still_ends_the_loop() {
    let (_config, gateway) = looping_gateway(EgressOptions {
        max_hops: 3,
        ..Default::default()
    })
    .await;
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("loop")).await;
    assert_eq!((status, error_of(&body).0), (508, "loop_detected"), "{body}");
    // Hops 0, 1, 2 and 3 pass; the fifth arrival (4 hops) is refused.
    assert_eq!(
        metric(&gateway, "modelgate_rejected_requests_total{code=\"loop_detected\"}").await,
        1.0
    );
    assert_eq!(
        metric(&gateway, "modelgate_requests_total{alias=\"loop\",provider=\"default/loop\",endpoint=\"chat_completions\",status_class=\"5xx\"}").await,
        4.0,
        "four gateways' worth of hops went round before the loop was cut"
    );
}

/// An upstream that redirects every request.
async fn redirecting_upstream(status: u16, location: &'static str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(move || async move {
        (
            axum::http::StatusCode::from_u16(status).expect("status"),
            [("location", location)],
            "moved",
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn a_redirect_from_the_provider_is_a_502_that_names_it_without_the_location() {
    let to_https = redirecting_upstream(301, "https://llm.example.com/v1/chat/completions?sig=secret-token").await;
    let relative = redirecting_upstream(307, "/v2/chat/completions").await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(provider_at("moved", &format!("http://{to_https}/v1"))
            + &provider_at("relative", &format!("http://{relative}/v1"))
            + &alias("moved", "{target: moved/m}")
            + &alias("relative", "{target: relative/m}")),
    );
    let gateway = start_gateway(&config).await;
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("moved")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        error_of(&body),
        ("upstream_redirected", "The provider 'default/moved' answered with a redirect (301 Moved Permanently) to host 'llm.example.com', and the gateway does not follow redirects. This is not a problem with your request; the platform team must set the provider's baseUrl to the URL that answers directly (common causes: http:// instead of https://, or a missing or extra /v1).")
    );
    assert!(!body.to_string().contains("secret-token"));
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("relative")).await;
    assert_eq!((status, error_of(&body).0), (502, "upstream_redirected"), "{body}");
    assert!(
        error_of(&body)
            .1
            .contains("(307 Temporary Redirect), and the gateway does not follow redirects"),
        "{body}"
    );
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// The binary, with 256 file descriptors, serving a provider aimed at itself: bursts of
/// requests to it each end with one 508, the gateway keeps answering other requests during
/// and after, and its file descriptors stay where they were. (Before the hop header, one
/// such request used every descriptor of the process within a second.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_aimed_at_itself_keeps_its_file_descriptors_and_serves_everyone_else() {
    let config = ConfigDir::new();
    config.write("c.yaml", &(mock_provider() + &alias("alive", "{target: mock/m}")));
    let mut child = Command::new("bash")
        .args([
            "-c",
            "ulimit -n 256 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_modelgate"),
            "gateway",
            "--config",
            config.path().to_str().expect("path"),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gateway");
    let pid = child.id();
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let api = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).expect("log") > 0, "the gateway exited");
        if let Some(start) = line.find("api=http://") {
            break line[start + 11..]
                .split_whitespace()
                .next()
                .expect("address")
                .to_string();
        }
    };
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            sink.lock().expect("log").push_str(&(line + "\n"));
        }
    });

    config.write(
        "c.yaml",
        &(mock_provider()
            + &alias("alive", "{target: mock/m}")
            + &provider_at("loop", &format!("http://{api}/v1"))
            + &alias("loop", "{target: loop/loop}")),
    );
    let http = reqwest::Client::new();
    let ask = |model: &'static str| {
        let http = http.clone();
        let url = format!("http://{api}/v1/chat/completions");
        async move {
            let response = http
                .post(url)
                .body(chat(model))
                .send()
                .await
                .expect("the gateway answered");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    eventually(RELOAD, "the looping alias to be served", || async {
        (ask("loop").await.0 == 508).then_some(())
    })
    .await;
    let before = open_fds(pid);

    for _ in 0..5 {
        let burst: Vec<_> = (0..40)
            .map(|i| ask(if i % 4 == 0 { "alive" } else { "loop" }))
            .collect();
        for (i, (status, body)) in futures_util::future::join_all(burst).await.into_iter().enumerate() {
            if i % 4 == 0 {
                assert_eq!(status, 200, "other requests are served during the loop: {body}");
            } else {
                assert_eq!((status, error_of(&body).0), (508, "loop_detected"), "{body}");
            }
        }
    }
    let (status, _) = ask("alive").await;
    assert_eq!(status, 200, "and right after it");
    let after = open_fds(pid);
    // Each of the 40 concurrent client connections may leave a keep-alive connection from
    // the gateway to itself, which holds two descriptors of the same process.
    assert!(
        after <= before + 3 * 40,
        "file descriptors grew from {before} to {after} after 200 looping requests"
    );
    let _ = child.kill();
    let _ = child.wait();
    let log = log.lock().expect("log").clone();
    assert!(
        log.contains("request refused: it already passed through a modelgate gateway"),
        "{log}"
    );
    assert!(!log.contains("Too many open files"), "{log}");
}
