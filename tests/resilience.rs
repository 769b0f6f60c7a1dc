//! Resilient routing end to end: a gateway on port 0 in front of fault-injecting upstreams
//! (tests/faults), with exact expectations for each path — retries, fallback tiers by
//! failure class, the commit point at first content, deadlines, Retry-After holds, outlier
//! ejection, load balancing — and the official `openai` Python client as the user.

mod faults;
mod support;

use std::time::{Duration, Instant};

use faults::*;
use modelgate::gateway::tenancy::{AuthMode, TenancyOptions};
use modelgate::gateway::Running;
use serde_json::Value;
use support::{alias, eventually, get, key_secret, metric, start_gateway, start_gateway_tenancy, ConfigDir};

async fn gateway(upstreams: &[&FaultUpstream], aliases: &str) -> (ConfigDir, Running) {
    let config = ConfigDir::new();
    let providers: String = upstreams.iter().map(|u| u.provider()).collect();
    config.write("c.yaml", &(providers + aliases));
    let gateway = start_gateway(&config).await;
    (config, gateway)
}

/// What a client got: status, `x-modelgate-target`, and the body as text.
struct Answer {
    status: u16,
    target: Option<String>,
    body: String,
}

impl Answer {
    /// The content of a non-streamed answer, or the joined deltas of a streamed one.
    fn content(&self) -> String {
        if let Ok(value) = serde_json::from_str::<Value>(&self.body) {
            return value["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
        self.events()
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect()
    }

    fn events(&self) -> Vec<Value> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).expect("a JSON event"))
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn ask(gateway: &Running, model: &str, stream: bool) -> Answer {
    let body = serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello there"}], "temperature": 0.2});
    let response = support::client()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the gateway answered");
    let status = response.status().as_u16();
    let target = response
        .headers()
        .get("x-modelgate-target")
        .map(|v| v.to_str().expect("ascii").to_string());
    let body = match response.text().await {
        Ok(text) => text,
        Err(e) => format!("<body broke off: {e}>"),
    };
    Answer { status, target, body }
}

async fn targets(gateway: &Running) -> Vec<Value> {
    let (status, body) = get(gateway.admin_addr, "/debug/targets").await;
    assert_eq!(status, 200);
    let value: Value = serde_json::from_str(&body).expect("json");
    value["targets"].as_array().expect("targets").clone()
}

async fn target(gateway: &Running, provider: &str, model: &str) -> Value {
    targets(gateway)
        .await
        .into_iter()
        .find(|t| t["provider"] == provider && t["model"] == model)
        .unwrap_or_else(|| panic!("{provider} {model} is not listed"))
}

#[tokio::test]
async fn a_server_error_falls_back_invisibly_and_the_header_names_the_target_that_served() {
    let alpha = FaultUpstream::start("alpha", &[Fault::Status(500, SERVER_ERROR, None)]).await;
    let beta = FaultUpstream::start("beta", &[Fault::Ok]).await;
    let (_c, gw) = gateway(
        &[&alpha, &beta],
        &alias(
            "chat",
            "{target: alpha/m1, fallbacks: [{target: beta/m2, \"on\": [serverError]}]}",
        ),
    )
    .await;
    for stream in [false, true] {
        let answer = ask(&gw, "chat", stream).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.content(), "beta served m2");
        assert_eq!(answer.target.as_deref(), Some("beta/m2"));
    }
    assert_eq!((alpha.count(), beta.count()), (2, 2));
    // Each try re-sends the client's body; only the model differs.
    let (a, b) = (&alpha.seen()[0], &beta.seen()[0]);
    assert_eq!((a["model"].as_str(), b["model"].as_str()), (Some("m1"), Some("m2")));
    assert_eq!(a["messages"], b["messages"]);
    assert_eq!(a["temperature"], b["temperature"]);
    let series = |s: &str| format!("modelgate_{s}");
    assert_eq!(
        metric(&gw, &series("fallbacks_total{alias=\"chat\",reason=\"serverError\"}")).await,
        2.0
    );
    assert_eq!(
        metric(
            &gw,
            &series("attempts_total{alias=\"chat\",provider=\"default/alpha\",outcome=\"serverError\"}")
        )
        .await,
        2.0
    );
    assert_eq!(
        metric(
            &gw,
            &series("attempts_total{alias=\"chat\",provider=\"default/beta\",outcome=\"success\"}")
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn retries_resend_the_body_so_a_flaky_upstream_always_answers() {
    let alpha = FaultUpstream::flaky("alpha").await;
    let (_c, gw) = gateway(
        &[&alpha],
        &alias(
            "chat",
            "{target: alpha/m1, retry: {attempts: 1, \"on\": [serverError], backoff: 5ms}}",
        ),
    )
    .await;
    for n in 0..6 {
        let answer = ask(&gw, "chat", n % 2 == 0).await;
        assert_eq!(
            (answer.status, answer.content()),
            (200, "alpha served m1".to_string()),
            "{}",
            answer.body
        );
    }
    assert_eq!(alpha.count(), 12, "every request failed once and was retried once");
    let seen = alpha.seen();
    assert!(
        seen.chunks(2).all(|pair| pair[0] == pair[1]),
        "a retry sends the same body"
    );
}

#[tokio::test]
async fn a_429_with_retry_after_holds_the_target_and_one_beyond_the_deadline_moves_on_at_once() {
    let alpha = FaultUpstream::start("alpha", &[Fault::Status(429, RATE_LIMITED, Some(30))]).await;
    let beta = FaultUpstream::start("beta", &[Fault::Ok]).await;
    let (_c, gw) = gateway(
        &[&alpha, &beta],
        &alias(
            "chat",
            "{target: alpha/m1, retry: {attempts: 3, \"on\": [rateLimited], backoff: 2s}, timeouts: {total: 10s}, fallbacks: [{target: beta/m2, \"on\": [rateLimited]}]}",
        ),
    )
    .await;
    let started = Instant::now();
    let answer = ask(&gw, "chat", false).await;
    assert_eq!((answer.status, answer.content()), (200, "beta served m2".to_string()));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no backoff: the wait is longer than the deadline"
    );
    for _ in 0..3 {
        assert_eq!(ask(&gw, "chat", true).await.target.as_deref(), Some("beta/m2"));
    }
    assert_eq!(alpha.count(), 1, "held out of rotation by Retry-After: 30");
    let held = target(&gw, "default/alpha", "m1").await;
    assert_eq!(
        (held["state"].as_str(), held["reason"].as_str()),
        (Some("retryAfter"), Some("rateLimited"))
    );
    let left = held["secondsLeft"].as_f64().expect("secondsLeft");
    assert!(left > 25.0 && left <= 30.0, "{held}");
    assert!(held["until"].as_str().is_some_and(|u| u.ends_with('Z')), "{held}");
}

#[tokio::test]
async fn a_target_held_with_no_tier_left_answers_429_with_the_retry_after() {
    let alpha = FaultUpstream::start("alpha", &[Fault::Status(429, RATE_LIMITED, Some(30))]).await;
    let (_c, gw) = gateway(&[&alpha], &alias("chat", "{target: alpha/m1, timeouts: {total: 5s}}")).await;
    let first = support::client()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .body(support::chat("chat"))
        .send()
        .await
        .expect("answer");
    assert_eq!(first.status(), 429);
    assert_eq!(
        first.headers()["retry-after"],
        "30",
        "the provider's own answer, passed on"
    );
    let second = support::client()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .body(support::chat("chat"))
        .send()
        .await
        .expect("answer");
    assert_eq!(second.status(), 429);
    let wait: u64 = second.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((29..=30).contains(&wait), "{wait}");
    let body: Value = second.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(alpha.count(), 1, "the gateway waits as asked");
}

#[tokio::test]
async fn overloaded_and_context_window_errors_take_the_tier_that_names_them() {
    let alpha = FaultUpstream::start(
        "alpha",
        &[
            Fault::Status(503, OVERLOADED, None),
            Fault::Status(400, OPENAI_CONTEXT, None),
            Fault::Status(400, AZURE_CONTEXT, None),
            Fault::Status(400, VLLM_CONTEXT, None),
            Fault::Status(500, SERVER_ERROR, None),
        ],
    )
    .await;
    let beta = FaultUpstream::start("beta", &[Fault::Ok]).await;
    let gamma = FaultUpstream::start("gamma", &[Fault::Ok]).await;
    let (_c, gw) = gateway(
        &[&alpha, &beta, &gamma],
        &(alias(
            "chat",
            "{target: alpha/m1, fallbacks: [{target: beta/m2, \"on\": [overloaded]}, {target: long, \"on\": [contextWindowExceeded]}]}",
        ) + &alias("long", "{target: gamma/m3-long}")),
    )
    .await;
    let served: Vec<String> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            let answer = ask(&gw, "chat", false).await;
            out.push(format!("{} {}", answer.status, answer.content()));
        }
        out
    };
    assert_eq!(
        served,
        [
            "200 beta served m2",
            "200 gamma served m3-long",
            "200 gamma served m3-long",
            "200 gamma served m3-long"
        ]
    );
    // A server error is in neither tier's `on`: the client gets the upstream's own answer.
    let answer = ask(&gw, "chat", false).await;
    assert_eq!(answer.status, 500);
    assert_eq!(
        answer.json(),
        serde_json::from_str::<Value>(SERVER_ERROR).expect("json")
    );
    assert_eq!((beta.count(), gamma.count()), (1, 3));
    // Context-window errors say nothing about the target's health.
    assert_eq!(target(&gw, "default/alpha", "m1").await["consecutiveFailures"], 2);
}

#[tokio::test]
async fn client_errors_are_returned_as_sent_never_retried_fallen_back_or_counted() {
    let alpha = FaultUpstream::start("alpha", &[Fault::Status(400, BAD_TEMPERATURE, None)]).await;
    let beta = FaultUpstream::start("beta", &[Fault::Ok]).await;
    let (_c, gw) = gateway(
        &[&alpha, &beta],
        &alias(
            "chat",
            "{target: alpha/m1, retry: {attempts: 3, \"on\": [any]}, fallbacks: [{target: beta/m2, \"on\": [any]}], outlierDetection: {consecutiveFailures: 1}}",
        ),
    )
    .await;
    for _ in 0..3 {
        let answer = ask(&gw, "chat", false).await;
        assert_eq!(answer.status, 400);
        assert_eq!(
            answer.json(),
            serde_json::from_str::<Value>(BAD_TEMPERATURE).expect("json")
        );
    }
    assert_eq!((alpha.count(), beta.count()), (3, 0));
    let alpha_state = target(&gw, "default/alpha", "m1").await;
    assert_eq!(
        (
            alpha_state["state"].as_str(),
            alpha_state["consecutiveFailures"].as_u64()
        ),
        (Some("inRotation"), Some(0))
    );
}

#[tokio::test]
async fn a_stream_that_fails_before_content_is_replaced_without_the_client_noticing() {
    let alpha = FaultUpstream::start("alpha", &[Fault::ResetBeforeContent, Fault::ErrorEventBeforeContent]).await;
    let beta = FaultUpstream::start("beta", &[Fault::Ok]).await;
    let (_c, gw) = gateway(
        &[&alpha, &beta],
        &alias(
            "chat",
            "{target: alpha/m1, fallbacks: [{target: beta/m2, \"on\": [unreachable, serverError]}]}",
        ),
    )
    .await;
    for _ in 0..2 {
        let answer = ask(&gw, "chat", true).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.content(), "beta served m2");
        let roles = answer
            .events()
            .iter()
            .filter(|e| e["choices"][0]["delta"]["role"] == "assistant")
            .count();
        assert_eq!(roles, 1, "alpha's role chunk was held back: {}", answer.body);
        assert!(answer.events().iter().all(|e| e["model"] == "m2"), "{}", answer.body);
        assert!(answer.body.ends_with("data: [DONE]\n\n"));
    }
    assert_eq!(
        metric(
            &gw,
            "modelgate_attempts_total{alias=\"chat\",provider=\"default/alpha\",outcome=\"unreachable\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &gw,
            "modelgate_attempts_total{alias=\"chat\",provider=\"default/alpha\",outcome=\"serverError\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn after_content_the_client_keeps_what_it_got_and_sees_an_error_event_without_done() {
    let alpha = FaultUpstream::start("alpha", &[Fault::ResetAfterContent]).await;
    let beta = FaultUpstream::start("beta", &[Fault::Ok]).await;
    let (_c, gw) = gateway(
        &[&alpha, &beta],
        &alias(
            "chat",
            "{target: alpha/m1, retry: {attempts: 2}, fallbacks: [{target: beta/m2, \"on\": [any]}]}",
        ),
    )
    .await;
    let answer = ask(&gw, "chat", true).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content(), "alpha ");
    let events = answer.events();
    let last = events.last().expect("events");
    assert_eq!(last["error"]["code"], "upstream_unreachable", "{}", answer.body);
    assert!(!answer.body.contains("[DONE]"));
    assert_eq!(beta.count(), 0, "no retry and no fallback after content");
}

#[tokio::test]
async fn a_stall_before_the_first_token_moves_on_at_the_first_token_timeout() {
    let alpha = FaultUpstream::start("alpha", &[Fault::Stall]).await;
    let beta = FaultUpstream::start("beta", &[Fault::Ok]).await;
    let (_c, gw) = gateway(
        &[&alpha, &beta],
        &alias(
            "chat",
            "{target: alpha/m1, timeouts: {firstToken: 300ms}, fallbacks: [{target: beta/m2, \"on\": [timeout]}]}",
        ),
    )
    .await;
    for stream in [true, false] {
        let started = Instant::now();
        let answer = ask(&gw, "chat", stream).await;
        let took = started.elapsed();
        assert_eq!((answer.status, answer.content()), (200, "beta served m2".to_string()));
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
    assert_eq!(
        metric(&gw, "modelgate_fallbacks_total{alias=\"chat\",reason=\"timeout\"}").await,
        2.0
    );
}

#[tokio::test]
async fn when_everything_fails_the_client_gets_the_last_status_and_never_waits_past_the_deadline() {
    let alpha = FaultUpstream::start("alpha", &[Fault::Status(500, SERVER_ERROR, None)]).await;
    let beta = FaultUpstream::start("beta", &[Fault::Status(503, OVERLOADED, None)]).await;
    let slow = FaultUpstream::start("slow", &[Fault::Stall]).await;
    let (_c, gw) = gateway(
        &[&alpha, &beta, &slow],
        &(alias("chat", "{target: alpha/m1, fallbacks: [{target: beta/m2}]}")
            + &alias("stuck", "{target: slow/m1, retry: {attempts: 5, \"on\": [timeout]}, timeouts: {total: 1s}, fallbacks: [{target: slow/m2}]}")),
    )
    .await;
    let answer = ask(&gw, "chat", true).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json(), serde_json::from_str::<Value>(OVERLOADED).expect("json"));
    for stream in [true, false] {
        let started = Instant::now();
        let answer = ask(&gw, "stuck", stream).await;
        let took = started.elapsed();
        assert_eq!(answer.status, 504, "{}", answer.body);
        assert_eq!(answer.json()["error"]["code"], "upstream_timeout");
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_millis(1_900),
            "{took:?}"
        );
    }
}

#[tokio::test]
async fn a_failing_target_is_ejected_for_every_alias_and_shown_on_the_admin_port() {
    let alpha = FaultUpstream::start("alpha", &[Fault::Status(500, SERVER_ERROR, None)]).await;
    let beta = FaultUpstream::start("beta", &[Fault::Ok]).await;
    let outlier = "outlierDetection: {consecutiveFailures: 2, ejectionTime: 30s}";
    let (_c, gw) = gateway(
        &[&alpha, &beta],
        &(alias(
            "chat",
            &format!("{{targets: [{{target: alpha/m1, weight: 50}}, {{target: beta/m2, weight: 50}}], loadBalancing: roundRobin, {outlier}}}"),
        ) + &alias("other", &format!("{{target: alpha/m1, fallbacks: [{{target: beta/m2}}], {outlier}}}"))),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(ask(&gw, "chat", false).await.status);
    }
    assert_eq!(statuses, [500, 200, 500, 200, 200, 200, 200, 200]);
    assert_eq!(alpha.count(), 2);
    // The ejection is per target, so the other alias skips alpha as well.
    for _ in 0..3 {
        assert_eq!(ask(&gw, "other", false).await.target.as_deref(), Some("beta/m2"));
    }
    assert_eq!(alpha.count(), 2);
    assert_eq!(
        metric(&gw, "modelgate_ejections_total{provider=\"default/alpha\"}").await,
        1.0
    );
    let ejected = target(&gw, "default/alpha", "m1").await;
    assert_eq!(
        (ejected["state"].as_str(), ejected["reason"].as_str()),
        (Some("ejected"), Some("serverError"))
    );
    assert_eq!(target(&gw, "default/beta", "m2").await["state"], "inRotation");
}

#[tokio::test]
async fn round_robin_is_exact_and_least_connections_avoids_a_busy_target() {
    let alpha = FaultUpstream::start("alpha", &[Fault::Stall, Fault::Ok]).await;
    let beta = FaultUpstream::start("beta", &[Fault::Ok]).await;
    let gamma = FaultUpstream::start("gamma", &[Fault::Ok]).await;
    let targets3 =
        "targets: [{target: alpha/m1, weight: 20}, {target: beta/m2, weight: 30}, {target: gamma/m3, weight: 50}]";
    let (_c, gw) = gateway(
        &[&alpha, &beta, &gamma],
        &(alias("rr", &format!("{{{targets3}, loadBalancing: roundRobin}}"))
            + &alias("lc", "{targets: [{target: alpha/m1, weight: 50}, {target: beta/m2, weight: 50}], loadBalancing: leastConnections}")),
    )
    .await;
    // The first request to alpha stalls: hold it open and let least connections see it.
    let busy = {
        let addr = gw.addr;
        tokio::spawn(async move {
            support::client()
                .post(format!("http://{addr}/v1/chat/completions"))
                .body(serde_json::json!({"model": "lc", "stream": true, "messages": []}).to_string())
                .send()
                .await
        })
    };
    eventually(Duration::from_secs(5), "a request in flight on alpha", || async {
        (target(&gw, "default/alpha", "m1").await["inFlight"] == 1).then_some(())
    })
    .await;
    for _ in 0..4 {
        assert_eq!(ask(&gw, "lc", false).await.target.as_deref(), Some("beta/m2"));
    }
    busy.abort();
    let mut order = Vec::new();
    for _ in 0..9 {
        order.push(ask(&gw, "rr", false).await.target.expect("header"));
    }
    // Exact, in the order written, from the first request on.
    assert_eq!(order, ["alpha/m1", "beta/m2", "gamma/m3"].repeat(3));
}

#[tokio::test]
async fn the_retry_budget_keeps_an_outage_from_multiplying_traffic() {
    let alpha = FaultUpstream::start("alpha", &[Fault::Status(500, SERVER_ERROR, None)]).await;
    let (_c, gw) = gateway(
        &[&alpha],
        &alias(
            "chat",
            "{target: alpha/m1, retry: {attempts: 3, \"on\": [serverError], backoff: 1ms}}",
        ),
    )
    .await;
    const REQUESTS: usize = 100;
    let started = Instant::now();
    for _ in 0..REQUESTS {
        assert_eq!(ask(&gw, "chat", false).await.status, 500);
    }
    let seconds = started.elapsed().as_secs_f64().ceil();
    // Without a budget: 400 tries. With it: each request once, 20 % more, and the floor.
    let bound = REQUESTS as f64 * 1.2 + 10.0 + 10.0 * seconds;
    assert!(
        (alpha.count() as f64) <= bound,
        "{} tries, bound {bound}",
        alpha.count()
    );
    assert!(alpha.count() < 2 * REQUESTS, "{}", alpha.count());
}

#[tokio::test]
async fn the_target_header_is_on_by_default_and_a_gateway_flag_turns_it_off() {
    let alpha = FaultUpstream::start("alpha", &[Fault::Ok]).await;
    let config = ConfigDir::new();
    config.write("c.yaml", &(alpha.provider() + &alias("plain", "{target: alpha/m1}")));
    let on = start_gateway(&config).await;
    assert_eq!(ask(&on, "plain", false).await.target.as_deref(), Some("alpha/m1"));
    let off = modelgate::gateway::start(modelgate::gateway::GatewayOptions {
        config: vec![config.path()],
        scope: Default::default(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin_listen: "127.0.0.1:0".parse().expect("addr"),
        max_body_bytes: modelgate::gateway::DEFAULT_MAX_BODY_BYTES,
        settle: Default::default(),
        target_header: false,
        egress: Default::default(),
        server: Default::default(),
        tenancy: Default::default(),
    })
    .await
    .expect("start");
    let answer = ask(&off, "plain", false).await;
    assert_eq!((answer.status, answer.target), (200, None));
}

#[tokio::test]
#[ignore = "needs the openai Python package: tests/all.sh installs it and runs this"]
async fn the_official_openai_client_sees_fallbacks_as_plain_answers_and_errors_in_its_own_types() {
    let broken = FaultUpstream::start("broken", &[Fault::Status(500, SERVER_ERROR, None)]).await;
    let resets = FaultUpstream::start("resets", &[Fault::ResetBeforeContent]).await;
    let cut = FaultUpstream::start("cut", &[Fault::ResetAfterContent]).await;
    let limited = FaultUpstream::start("limited", &[Fault::Status(429, RATE_LIMITED, Some(30))]).await;
    let good = FaultUpstream::start("good", &[Fault::Ok]).await;
    let (_c, gw) = gateway(
        &[&broken, &resets, &cut, &limited, &good],
        &(alias("chat", "{target: broken/m1, fallbacks: [{target: good/m2}]}")
            + &alias("stream", "{target: resets/m1, fallbacks: [{target: good/m2}]}")
            + &alias("cut", "{target: cut/m1, fallbacks: [{target: good/m2}]}")
            + &alias("limited", "{target: limited/m1}")
            + &alias("down", "{target: broken/m1, retry: {attempts: 1, backoff: 1ms}}")),
    )
    .await;
    let stdout = support::pytest("resilience_client.py", &gw, &[]).await;
    assert!(stdout.contains("5 passed"), "{stdout}");
    assert_eq!(
        good.count(),
        3,
        "two fallbacks, streamed and not, and one stream replaced before content"
    );
}

#[tokio::test]
async fn a_client_that_hangs_up_is_not_a_failure_of_the_target() {
    let alpha = FaultUpstream::start("alpha", &[Fault::Stall]).await;
    let (_c, gw) = gateway(
        &[&alpha],
        &alias("chat", "{target: alpha/m1, outlierDetection: {consecutiveFailures: 1}}"),
    )
    .await;
    for stream in [true, false] {
        let body = serde_json::json!({"model": "chat", "stream": stream, "messages": []}).to_string();
        let gave_up = reqwest::Client::new()
            .post(format!("http://{}/v1/chat/completions", gw.addr))
            .timeout(Duration::from_millis(300))
            .body(body)
            .send()
            .await;
        assert!(gave_up.is_err(), "the client gave up waiting");
        eventually(Duration::from_secs(5), "the abandoned request to leave", || async {
            (target(&gw, "default/alpha", "m1").await["inFlight"] == 0).then_some(())
        })
        .await;
    }
    let alpha_state = target(&gw, "default/alpha", "m1").await;
    assert_eq!(alpha_state["state"], "inRotation", "{alpha_state}");
    assert_eq!(alpha_state["consecutiveFailures"], 0, "{alpha_state}");
    let (_, metrics) = get(gw.admin_addr, "/metrics").await;
    assert!(
        !metrics.contains("outcome=\"timeout\"") && !metrics.contains("outcome=\"unreachable\""),
        "{metrics}"
    );
}

/// A team's usage as the admin port's read API reports it.
async fn team_usage(gateway: &Running, team: &str) -> Value {
    let (status, text) = get(gateway.admin_addr, &format!("/api/teams/{team}")).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<Value>(&text).expect("json")["usage"].clone()
}

#[tokio::test]
async fn a_retried_or_fallen_back_request_is_charged_to_its_team_once_with_the_usage_of_the_try_that_served() {
    const KEY: &str = "mg-resilient-team-key-1";
    // Non-streamed: a 500, then the retry answers. Streamed: a reset and an error event before
    // content at alpha, then beta answers. Then alpha answers at once.
    let alpha = FaultUpstream::start(
        "alpha",
        &[
            Fault::Status(500, SERVER_ERROR, None),
            Fault::Ok,
            Fault::ResetBeforeContent,
            Fault::ErrorEventBeforeContent,
            Fault::Ok,
        ],
    )
    .await;
    let beta = FaultUpstream::start("beta", &[Fault::Ok]).await;
    let config = ConfigDir::new();
    let pricing = "pricing: {inputPerMillionTokens: \"1.00\", outputPerMillionTokens: \"2.00\"}";
    config.write(
        "c.yaml",
        &(alpha.provider()
            + &beta.provider()
            + &alias(
                "chat",
                &format!("{{target: alpha/m1, {pricing}, retry: {{attempts: 1, \"on\": [serverError, unreachable], backoff: 1ms}}, fallbacks: [{{target: beta/m2, \"on\": [any]}}]}}"),
            )
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: AccessGroup\nmetadata: {name: chat}\nspec: {aliases: [chat]}\n"
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: Team\nmetadata: {name: apps}\nspec: {accessGroups: [chat], limits: {requestsPerMinute: 100, maxParallelRequests: 1}, credits: {allocated: \"1.00\", currency: USD, period: Monthly}}\n"
            + &key_secret("apps-key", "apps", KEY)),
    );
    let gateway = start_gateway_tenancy(
        &config,
        TenancyOptions {
            auth: AuthMode::ApiKey,
            ..TenancyOptions::default()
        },
    )
    .await;
    let send = |stream: bool| {
        let mut body = serde_json::json!({"model": "chat", "stream": stream, "messages": [{"role": "user", "content": "hello there"}]});
        if stream {
            body["stream_options"] = serde_json::json!({"include_usage": true});
        }
        support::client()
            .post(format!("http://{}/v1/chat/completions", gateway.addr))
            .bearer_auth(KEY)
            .body(body.to_string())
            .send()
    };

    // Each try costs 9 × 1.00 + 4 × 2.00 per million = 17 micro-dollars; only served tries count.
    for (n, stream, served_by) in [(1, false, "alpha/m1"), (2, true, "beta/m2")] {
        let response = send(stream).await.expect("answer");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-modelgate-target"], served_by);
        assert!(
            response.headers().contains_key("x-ratelimit-remaining-requests"),
            "the team's limits are announced on the try that served: {:?}",
            response.headers()
        );
        let text = response.text().await.expect("body");
        assert!(text.contains(served_by.split('/').next().unwrap_or_default()), "{text}");
        let usage = eventually(Duration::from_secs(5), "the request to be settled", || async {
            let usage = team_usage(&gateway, "apps").await;
            (usage["requests"] == n).then_some(usage)
        })
        .await;
        assert_eq!(
            (&usage["prompt_tokens"], &usage["completion_tokens"], &usage["cost_usd"]),
            (
                &serde_json::json!(9 * n),
                &serde_json::json!(4 * n),
                &serde_json::json!(format!("0.0000{}", 17 * n))
            ),
            "{usage}"
        );
    }
    assert_eq!((alpha.count(), beta.count()), (4, 1), "two tries at alpha per request");
    // Nothing left counted in flight: the one parallel request allowed is free again.
    assert_eq!(send(false).await.expect("answer").status(), 200);
    let usage = eventually(Duration::from_secs(5), "the third request to be settled", || async {
        let usage = team_usage(&gateway, "apps").await;
        (usage["requests"] == 3).then_some(usage)
    })
    .await;
    assert_eq!(
        (&usage["prompt_tokens"], &usage["cost_usd"]),
        (&serde_json::json!(27), &serde_json::json!("0.000051")),
        "{usage}"
    );
}
