//! Two gateway processes sharing one real `redis-server` (the Debian package; tests/all.sh
//! installs it): limits and credits hold exactly across both, figures are summed over both,
//! and with Redis stopped both keep answering and say so (metric and log).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// A `redis-server` on a unix socket in its own directory; stopped (by pid) when dropped.
struct Redis {
    child: Child,
    dir: tempfile::TempDir,
}

impl Redis {
    fn socket(dir: &Path) -> PathBuf {
        dir.join("redis.sock")
    }

    fn start_in(dir: tempfile::TempDir) -> Redis {
        let socket = Redis::socket(dir.path());
        let _ = std::fs::remove_file(&socket);
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (tests/all.sh installs it: apt-get install redis-server)");
        Redis { child, dir }
    }

    fn start() -> Redis {
        Redis::start_in(tempfile::tempdir().expect("temp dir"))
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", Redis::socket(self.dir.path()).display())
    }

    /// Stops the server (SIGKILL, as a crash) and keeps its directory for a restart.
    fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `modelgate gateway` process with its log.
struct Gateway {
    child: Child,
    api: String,
    admin: String,
    log: Arc<Mutex<String>>,
}

impl Gateway {
    fn start(config: &ConfigDir, store: &str) -> Gateway {
        Gateway::start_logging(config, store, "info")
    }

    fn start_logging(config: &ConfigDir, store: &str, level: &str) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
            .args(["gateway", "--config"])
            .arg(config.path())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--auth",
                "api-key",
            ])
            .args(["--usage-store", store])
            .env("RUST_LOG", level)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gateway");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let log = Arc::new(Mutex::new(String::new()));
        let (api, admin) = loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).expect("read the log") > 0,
                "the gateway exited:\n{}",
                log.lock().expect("log")
            );
            log.lock().expect("log").push_str(&line);
            if line.contains("modelgate gateway serving") {
                let field = |name: &str| {
                    let start = line.find(&format!("{name}=http://")).expect("address") + name.len() + 8;
                    line[start..].split_whitespace().next().expect("address").to_string()
                };
                break (field("api"), field("admin"));
            }
        };
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().expect("log").push_str(&format!("{line}\n"));
            }
        });
        Gateway { child, api, admin, log }
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    async fn call(&self, key: &str, model: &str) -> (u16, Value) {
        let response = client()
            .post(format!("http://{}/v1/chat/completions", self.api))
            .bearer_auth(key)
            .body(chat(model))
            .send()
            .await
            .expect("the gateway answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn metric(&self, series: &str) -> f64 {
        let text = client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok()))
            .unwrap_or(0.0)
    }

    async fn store_up(&self, up: bool) {
        let wanted = if up { 1.0 } else { 0.0 };
        eventually(
            Duration::from_secs(10),
            &format!("modelgate_usage_store_up {wanted}"),
            || async { (self.metric("modelgate_usage_store_up").await == wanted).then_some(()) },
        )
        .await;
    }

    async fn team(&self, name: &str) -> Value {
        client()
            .get(format!("http://{}/api/teams/{name}", self.admin))
            .send()
            .await
            .expect("read API")
            .json()
            .await
            .expect("json")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- gateway log ---\n{}", self.log());
        }
    }
}

const RATED: &str = "mg-rated-key";
const BUDGET: &str = "mg-budget-key";

fn config(upstream: &FakeUpstream) -> ConfigDir {
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(provider("alpha", upstream, "sk-upstream")
            + &alias("cheap", "{target: alpha/m, pricing: {inputPerMillionTokens: \"1.00\", outputPerMillionTokens: \"2.00\"}}")
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: AccessGroup\nmetadata: {name: all}\nspec: {aliases: [cheap]}\n"
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: Team\nmetadata: {name: rated}\nspec: {accessGroups: [all], limits: {requestsPerMinute: 4}}\n"
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: Team\nmetadata: {name: budget}\nspec: {accessGroups: [all], credits: {allocated: \"0.000105\", period: Daily}}\n"
            + &key_secret("rated-key", "rated", RATED)
            + &key_secret("budget-key", "budget", BUDGET)),
    );
    config
}

#[tokio::test]
async fn a_rate_limit_and_a_credit_budget_hold_exactly_across_two_gateways() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = config(&upstream);
    let redis = Redis::start();
    let gateways = [
        Gateway::start(&config, &redis.url()),
        Gateway::start(&config, &redis.url()),
    ];
    for gateway in &gateways {
        gateway.store_up(true).await;
    }

    // 4 requests a minute for the team, whichever gateway answers.
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(gateways[i % 2].call(RATED, "cheap").await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429, 429]);

    // Five calls' worth of credits (21 micro-dollars each), spent alternately on both. Each
    // call's settlement is pipelined after its response; until it lands its (larger) estimate
    // stays reserved, so the next call waits for it to be counted.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let (status, _) = gateways[i % 2].call(BUDGET, "cheap").await;
        statuses.push(status);
        let answered = statuses.iter().filter(|s| **s == 200).count();
        eventually(Duration::from_secs(5), "the call to be settled", || async {
            (gateways[(i + 1) % 2].team("budget").await["usage"]["requests"] == answered).then_some(())
        })
        .await;
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 402, 402, 402]);

    // Either gateway reports the sum over both (settlements are pipelined off the request path).
    let team = eventually(Duration::from_secs(5), "usage summed over both gateways", || async {
        let team = gateways[0].team("budget").await;
        (team["usage"]["requests"] == 5).then_some(team)
    })
    .await;
    assert_eq!(team["usage"]["cost_usd"], "0.000105");
    assert_eq!(gateways[1].team("budget").await["usage"], team["usage"]);
    assert_eq!(upstream.seen().len(), 4 + 5);
}

#[tokio::test]
async fn with_redis_stopped_both_gateways_keep_answering_and_say_so() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = config(&upstream);
    let redis = Redis::start();
    let url = redis.url();
    let gateways = [Gateway::start(&config, &url), Gateway::start(&config, &url)];
    for gateway in &gateways {
        gateway.store_up(true).await;
        assert_eq!(gateway.call(BUDGET, "cheap").await.0, 200);
    }

    let dir = redis.stop();
    let started = std::time::Instant::now();
    for gateway in &gateways {
        let (status, body) = gateway.call(BUDGET, "cheap").await;
        assert_eq!(status, 200, "served on local counters: {body}");
        gateway.store_up(false).await;
        assert!(gateway.log().contains("usage store unreachable"), "{}", gateway.log());
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "never hangs: {:?}",
        started.elapsed()
    );
    // Locally each gateway knows the 2 calls seen in Redis plus its own; the budget of 5 is
    // enforced per replica until Redis is back.
    assert_eq!(gateways[0].call(BUDGET, "cheap").await.0, 200);

    let _redis = Redis::start_in(dir);
    for gateway in &gateways {
        gateway.store_up(true).await;
        let log = gateway.log();
        assert_eq!(
            log.matches("usage store unreachable").count(),
            1,
            "one line per transition:\n{log}"
        );
        assert!(log.contains("usage store connected"), "{log}");
    }
    // The 3 calls answered while Redis was away (and any settlement still queued when it
    // went) are replayed into the new, empty Redis.
    eventually(Duration::from_secs(10), "the outage's usage replayed", || async {
        let team = gateways[1].team("budget").await;
        (team["usage"]["requests"].as_u64().unwrap_or(0) >= 3).then_some(())
    })
    .await;
}

#[tokio::test]
async fn client_keys_never_reach_logs_errors_or_metrics() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = config(&upstream);
    let gateway = Gateway::start_logging(&config, "memory", "trace");
    let (ok, _) = gateway.call(BUDGET, "cheap").await;
    assert_eq!(ok, 200);
    let (refused, body) = gateway.call("mg-wrong-key-never-print-me", "cheap").await;
    assert_eq!(refused, 401);
    let metrics = client()
        .get(format!("http://{}/metrics", gateway.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let team = gateway.team("budget").await.to_string();
    let log = gateway.log();
    for (place, text) in [
        ("error", &body.to_string()),
        ("metrics", &metrics),
        ("read API", &team),
        ("log", &log),
    ] {
        for key in [BUDGET, "never-print-me"] {
            assert!(!text.contains(key), "a client key leaked into the {place}:\n{text}");
        }
    }
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the log ran at trace level"
    );
}
