//! Tenancy in the cluster: Teams, AccessGroups and a key made with `modelgate keys create`,
//! applied with kubectl; the gateway asks for keys; Team status shows usage.
//!
//!     tests/controlplane/run.sh cargo test --test e2e_tenancy -- --include-ignored

mod cluster;
mod e2e_support;
mod support;

use cluster::{wait_for, DEFAULT_TIMEOUT};
use e2e_support::*;
use serde_json::Value;
use support::{Behaviour, FakeUpstream};

async fn ask(gateway: &Proc, key: Option<&str>, model: &str) -> (u16, Value) {
    let api = gateway.api.as_deref().expect("gateway address");
    let mut request = support::client()
        .post(format!("http://{api}/v1/chat/completions"))
        .body(serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("the gateway answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn teams_and_keys_applied_with_kubectl_are_enforced_and_team_status_shows_usage() {
    let stack = Stack::new("e2e-tenancy");
    let ns = stack.ns.name().to_string();
    let alpha = FakeUpstream::start("alpha", Behaviour::Echo).await;
    stack.apply(
        &(secret("alpha-key", "sk-alpha-1")
            + &provider("alpha", &alpha.base_url(), "alpha-key")
            + &alias("cheap", "{target: alpha/m, pricing: {inputPerMillionTokens: \"1.00\", outputPerMillionTokens: \"2.00\"}}")
            + &alias("premium", "{target: alpha/p}")
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: AccessGroup\nmetadata: {name: starter}\nspec: {description: Starter, aliases: [cheap]}\n"
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: AccessGroup\nmetadata: {name: typo}\nspec: {aliases: [cheapp]}\n"
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: Team\nmetadata: {name: prod}\nspec: {displayName: Production, accessGroups: [starter], credits: {allocated: \"1.00\", period: Monthly}, limits: {requestsPerMinute: 100}}\n"
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: Team\nmetadata: {name: orphan}\nspec: {accessGroups: [ghost]}\n"),
    );
    // A key made the documented way: the key on stderr, the Secret (its hash only) on stdout.
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["keys", "create", "--team", "prod", "-n", &ns, "--name", "prod-key"])
        .output()
        .expect("keys create");
    let stderr = String::from_utf8_lossy(&made.stderr);
    // The key is alone on the last line (the namespace in the line above may start with mg- too).
    let key = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|w| w.starts_with("mg-"))
        .unwrap_or_else(|| panic!("no key in: {stderr}"))
        .to_string();
    let manifest = String::from_utf8_lossy(&made.stdout).to_string();
    assert!(!manifest.contains(&key), "{manifest}");
    stack.apply(&manifest);

    let gateway = stack.gateway_with(&service_account_kubeconfig("modelgate-gateway"), &["--auth", "api-key"]);
    let admin_url = format!("http://{}", gateway.admin);
    let _controller = stack.controller_with("c1", &["--gateway-admin-url", &admin_url, "--usage-interval", "1s"]);

    let team = stack.wait_condition("team", "prod", "Ready", "True");
    assert_eq!(team["status"]["aliases"], serde_json::json!(["cheap"]), "{team}");
    assert_eq!(team["status"]["keys"], 1, "{team}");
    let group = stack.wait_condition("accessgroup", "typo", "Ready", "False");
    assert_eq!(condition(&group, "ResolvedRefs")["reason"], "AliasNotFound");
    let orphan = stack.wait_condition("team", "orphan", "Ready", "False");
    assert!(
        condition(&orphan, "ResolvedRefs")["message"]
            .as_str()
            .unwrap_or_default()
            .contains("AccessGroup 'ghost' not found"),
        "{orphan}"
    );

    assert_eq!(ask(&gateway, None, "cheap").await.0, 401);
    support::eventually(DEFAULT_TIMEOUT, "the key to be served", || async {
        (ask(&gateway, Some(&key), "cheap").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(ask(&gateway, Some(&key), "cheap").await.0, 200);
    let (status, body) = ask(&gateway, Some(&key), "premium").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, Value::from("model_access_denied")),
        "{body}"
    );

    // Two calls of 11 + 5 tokens at 1.00 / 2.00 per million: 42 micro-dollars.
    let team = wait_for("Team usage in its status", DEFAULT_TIMEOUT, || {
        let team = stack.get("team", "prod");
        if team["status"]["usage"]["requests"] == 2 {
            Ok(team)
        } else {
            Err(team.to_string())
        }
    });
    assert_eq!(team["status"]["usage"]["costUsd"], "0.000042", "{team}");
    assert_eq!(team["status"]["creditsRemaining"], "0.999958", "{team}");

    // The per-alias summary, on the ModelAlias.
    let alias = wait_for("the alias's usage summary in its status", DEFAULT_TIMEOUT, || {
        let alias = stack.get("modelalias", "cheap");
        if alias["status"]["usage"]["requests"] == 2 {
            Ok(alias)
        } else {
            Err(alias.to_string())
        }
    });
    assert_eq!(alias["status"]["usage"]["costUsd"], "0.000042", "{alias}");
    assert_eq!(condition(&alias, "Ready")["status"], "True");

    // A deleted key stops working within seconds.
    stack.ns.kubectl(["delete", "secret", "prod-key"]).expect_success();
    support::eventually(DEFAULT_TIMEOUT, "the deleted key to be refused", || async {
        (ask(&gateway, Some(&key), "cheap").await.0 == 401).then_some(())
    })
    .await;
    assert!(!gateway.log().contains(&key), "the key never reaches a log");

    // A restarted gateway on the memory store starts from the spend in Team status: a restart
    // does not hand the team its credits back.
    drop(gateway);
    let restarted = stack.gateway_with(&service_account_kubeconfig("modelgate-gateway"), &["--auth", "api-key"]);
    let url = format!("http://{}/api/teams/prod?namespace={ns}", restarted.admin);
    let team: Value = support::client()
        .get(url)
        .send()
        .await
        .expect("read API")
        .json()
        .await
        .expect("json");
    assert_eq!(team["usage"]["cost_usd"], "0.000042", "{team}");
    assert_eq!(team["credits_remaining"], 0.999958, "{team}");
}
