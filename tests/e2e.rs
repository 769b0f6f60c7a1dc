//! The operator end to end: a real control plane, the real `kubectl`, and real `modelgate
//! controller` and `modelgate gateway` processes running as the ServiceAccounts of
//! `config/rbac/`. Driven by `KUBECONFIG`, so the same tests run on kind.
//!
//!     tests/controlplane/run.sh cargo test --test e2e -- --include-ignored

mod cluster;
mod e2e_support;
mod support;

use std::time::{Duration, Instant};

use cluster::{kubectl, wait_for, Namespace, DEFAULT_TIMEOUT};
use e2e_support::*;
use serde_json::Value;
use support::{Behaviour, FakeUpstream};

/// Sends a chat completion for `model` through the gateway.
async fn ask(gateway: &Proc, model: &str) -> (u16, Value) {
    let api = gateway.api.as_deref().expect("gateway address");
    let response = support::client()
        .post(format!("http://{api}/v1/chat/completions"))
        .body(serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .expect("the gateway answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn content(body: &Value) -> String {
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Polls the gateway until `model` answers with `expected` content.
async fn served(gateway: &Proc, model: &str, expected: &str) -> Duration {
    let started = Instant::now();
    support::eventually(
        DEFAULT_TIMEOUT,
        &format!("'{model}' to be served as '{expected}'"),
        || async {
            let (status, body) = ask(gateway, model).await;
            (status == 200 && content(&body) == expected).then_some(())
        },
    )
    .await;
    started.elapsed()
}

fn record(what: &str, value: Duration) {
    let line = format!("{what}: {} ms\n", value.as_millis());
    eprint!("e2e timing: {line}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-timings.txt");
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
}

/// Two upstreams behind two providers, keys in labelled Secrets.
async fn two_providers(stack: &Stack) -> (FakeUpstream, FakeUpstream) {
    let alpha = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let beta = FakeUpstream::start("beta", Behaviour::Echo).await;
    stack.apply(
        &(secret("alpha-key", "sk-alpha-1")
            + &secret("beta-key", "sk-beta-1")
            + &provider("alpha", &alpha.base_url(), "alpha-key")
            + &provider("beta", &beta.base_url(), "beta-key")),
    );
    (alpha, beta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn applied_aliases_become_ready_and_serve_the_openai_client() {
    let stack = Stack::new("e2e-ready");
    let (alpha, _beta) = two_providers(&stack).await;
    stack.apply(&(alias("chat", "{target: alpha/model-1}") + &alias("prod.chat.v1", "{target: chat}")));
    let _controller = stack.controller("c1");
    let gateway = stack.gateway();

    for name in ["chat", "prod.chat.v1"] {
        let object = stack.wait_condition("modelalias", name, "Ready", "True");
        let resolved = &object["status"]["resolved"];
        assert_eq!(resolved["generation"], object["metadata"]["generation"], "{object}");
        assert_eq!(resolved["targets"][0]["provider"], format!("{}/alpha", stack.ns.name()));
        assert_eq!(resolved["targets"][0]["model"], "model-1");
        for type_ in ["Accepted", "ResolvedRefs"] {
            assert_eq!(condition(&object, type_)["status"], "True", "{type_}: {object}");
        }
    }
    let provider = stack.wait_condition("llmprovider", "alpha", "Ready", "True");
    assert_eq!(provider["status"]["keyPresent"], true);
    assert!(
        !provider.to_string().contains("sk-alpha-1"),
        "the key is never published"
    );

    served(&gateway, "prod.chat.v1", "alpha served model-1").await;
    let python = std::env::var("MODELGATE_PYTHON").expect("MODELGATE_PYTHON: run through tests/all.sh");
    let script = "import openai,sys\nc=openai.OpenAI(base_url=sys.argv[1],api_key='client',max_retries=0)\nr=c.chat.completions.create(model='prod.chat.v1',messages=[{'role':'user','content':'hi'}])\nprint(r.choices[0].message.content)";
    let base = format!("http://{}/v1", gateway.api.as_deref().expect("api"));
    let out = std::process::Command::new(python)
        .args(["-c", script, &base])
        .output()
        .expect("python");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "alpha served model-1",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        alpha.last().authorization.as_deref(),
        Some("Bearer sk-alpha-1"),
        "the key from the Secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn patching_an_alias_switches_providers_and_disabling_and_deleting_it_answer_403_and_404() {
    let stack = Stack::new("e2e-switch");
    let (_alpha, beta) = two_providers(&stack).await;
    stack.apply(&alias("smart", "{target: alpha/model-a}"));
    let _controller = stack.controller("c1");
    let gateway = stack.gateway();
    served(&gateway, "smart", "alpha served model-a").await;

    let started = Instant::now();
    stack.patch_alias("smart", r#"{"spec":{"target":"beta/model-b"}}"#);
    served(&gateway, "smart", "beta served model-b").await;
    record(
        "kubectl patch to first request served by the new provider",
        started.elapsed(),
    );
    assert_eq!(beta.last().body["model"], "model-b");

    stack.patch_alias("smart", r#"{"spec":{"active":false}}"#);
    support::eventually(DEFAULT_TIMEOUT, "403 for the disabled alias", || async {
        let (status, body) = ask(&gateway, "smart").await;
        (status == 403 && body["error"]["code"] == "model_disabled").then_some(())
    })
    .await;
    stack.ns.kubectl(["delete", "modelalias", "smart"]).expect_success();
    support::eventually(DEFAULT_TIMEOUT, "404 for the deleted alias", || async {
        let (status, body) = ask(&gateway, "smart").await;
        (status == 404 && body["error"]["code"] == "model_not_found").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn a_broken_edit_waits_with_a_clear_message_and_events_keeps_the_old_route_and_survives_a_gateway_restart() {
    let stack = Stack::new("e2e-broken");
    let (_alpha, _beta) = two_providers(&stack).await;
    stack.apply(&alias("smart", "{target: alpha/model-a}"));
    let _controller = stack.controller("c1");
    let mut gateway = stack.gateway();
    stack.wait_condition("modelalias", "smart", "Ready", "True");
    served(&gateway, "smart", "alpha served model-a").await;

    stack.patch_alias("smart", r#"{"spec":{"target":"missing/model-x"}}"#);
    let object = stack.wait_condition("modelalias", "smart", "ResolvedRefs", "False");
    // The provider may still come (a later sync wave): it waits, in progress, not stalled.
    for (type_, status) in [("Ready", "False"), ("Reconciling", "True"), ("Stalled", "False")] {
        assert_eq!(condition(&object, type_)["status"], status, "{type_}: {object}");
    }
    let message = condition(&object, "ResolvedRefs")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("LLMProvider 'missing' does not exist"), "{message}");
    assert_eq!(condition(&object, "ResolvedRefs")["reason"], "ProviderNotFound");
    assert_eq!(
        object["status"]["resolved"]["targets"][0]["model"], "model-a",
        "the last accepted route stays published"
    );
    // One Event per transition, none repeated by the reconciles in between.
    let events = wait_events(
        &stack.ns,
        "ModelAlias",
        "smart",
        &[("Normal", "Accepted"), ("Warning", "Rejected")],
    );
    assert!(
        events[1].2.contains("'missing'"),
        "the Rejected Event says what is wrong: {events:?}"
    );
    let (status, body) = ask(&gateway, "smart").await;
    assert_eq!(
        (status, content(&body)),
        (200, "alpha served model-a".to_string()),
        "the old route is still served"
    );

    // A gateway started while the alias is broken serves the last accepted route.
    gateway.kill();
    let gateway = stack.gateway();
    let (status, body) = ask(&gateway, "smart").await;
    assert_eq!((status, content(&body)), (200, "alpha served model-a".to_string()));

    stack.patch_alias("smart", r#"{"spec":{"target":"beta/model-b"}}"#);
    stack.wait_condition("modelalias", "smart", "Ready", "True");
    served(&gateway, "smart", "beta served model-b").await;
    wait_events(
        &stack.ns,
        "ModelAlias",
        "smart",
        &[("Normal", "Accepted"), ("Warning", "Rejected"), ("Normal", "Recovered")],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn a_cycle_is_rejected_on_both_aliases_naming_the_cycle() {
    let stack = Stack::new("e2e-cycle");
    let _ = two_providers(&stack).await;
    stack.apply(&(alias("a", "{target: b}") + &alias("b", "{target: a}")));
    let _controller = stack.controller("c1");
    for name in ["a", "b"] {
        let object = stack.wait_condition("modelalias", name, "Accepted", "False");
        let accepted = condition(&object, "Accepted");
        assert_eq!(accepted["reason"], "AliasCycle");
        let message = accepted["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("a -> b -> a") || message.contains("b -> a -> b"),
            "{message}"
        );
        assert_eq!(condition(&object, "Stalled")["status"], "True");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn the_younger_of_two_aliases_with_one_name_conflicts_until_the_winner_goes() {
    let stack = Stack::new("e2e-conflict-a");
    let (alpha, _beta) = two_providers(&stack).await;
    stack.apply(&alias("shared", "{target: alpha/first}"));
    let _controller = stack.controller("c1");
    let gateway = stack.gateway();
    stack.wait_condition("modelalias", "shared", "Ready", "True");

    // The same alias name from another namespace, younger (and later in name order).
    let other = Namespace::new("e2e-conflict-b");
    let younger = Stack {
        ns: other,
        label: stack.label.clone(),
    };
    younger.apply(
        &(secret("k", "sk-2")
            + &provider("alpha", &alpha.base_url(), "k")
            + &alias("shared", "{target: alpha/second}")),
    );
    let object = younger.wait_condition("modelalias", "shared", "Accepted", "False");
    let accepted = condition(&object, "Accepted");
    assert_eq!(accepted["reason"], "AliasConflict");
    let winner = format!("{}/shared", stack.ns.name());
    assert!(
        accepted["message"].as_str().unwrap_or_default().contains(&winner),
        "{accepted}"
    );
    assert!(object["status"]["resolved"].is_null(), "the loser publishes no route");
    served(&gateway, "shared", "alpha served first").await;

    stack.ns.kubectl(["delete", "modelalias", "shared"]).expect_success();
    younger.wait_condition("modelalias", "shared", "Ready", "True");
    served(&gateway, "shared", "alpha served second").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn rotating_a_key_takes_effect_without_restart_and_deleting_it_is_reported() {
    let stack = Stack::new("e2e-rotate");
    let (alpha, _beta) = two_providers(&stack).await;
    stack.apply(&alias("chat", "{target: alpha/m}"));
    let _controller = stack.controller("c1");
    let gateway = stack.gateway();
    served(&gateway, "chat", "alpha served m").await;
    assert_eq!(alpha.last().authorization.as_deref(), Some("Bearer sk-alpha-1"));

    stack.apply(&secret("alpha-key", "sk-alpha-2"));
    support::eventually(DEFAULT_TIMEOUT, "the rotated key upstream", || async {
        ask(&gateway, "chat").await;
        (alpha.last().authorization.as_deref() == Some("Bearer sk-alpha-2")).then_some(())
    })
    .await;

    stack.ns.kubectl(["delete", "secret", "alpha-key"]).expect_success();
    let provider = stack.wait_condition("llmprovider", "alpha", "ResolvedRefs", "False");
    assert_eq!(condition(&provider, "ResolvedRefs")["reason"], "KeyNotFound");
    assert_eq!(provider["status"]["keyPresent"], false);
    let object = stack.wait_condition("modelalias", "chat", "Ready", "False");
    assert_eq!(condition(&object, "ResolvedRefs")["reason"], "ProviderNotReady");
    assert!(
        condition(&object, "ResolvedRefs")["message"]
            .as_str()
            .unwrap_or_default()
            .contains("alpha-key"),
        "{object}"
    );

    // A Secret without the credential label is invisible: the message says it may only lack
    // the label, and the command it prints fixes it.
    let unlabelled = secret("alpha-key", "sk-alpha-3").replace("  labels: {modelgate.dev/credential: \"true\"}\n", "");
    assert!(!unlabelled.contains("credential"), "{unlabelled}");
    stack.apply(&unlabelled);
    let namespace = stack.ns.name();
    let command = format!("kubectl label secret alpha-key -n {namespace} modelgate.dev/credential=true");
    let message = condition(&provider, "ResolvedRefs")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        message,
        format!(
            "spec.apiKey: Secret {namespace}/alpha-key does not exist or lacks the label modelgate.dev/credential: \"true\" (only Secrets with it are read); create it with the key 'apiKey' and that label, or add the label: {command}"
        )
    );
    let args: Vec<&str> = command.split(' ').skip(1).collect();
    stack.ns.kubectl(args).expect_success();
    stack.wait_condition("llmprovider", "alpha", "ResolvedRefs", "True");
    support::eventually(DEFAULT_TIMEOUT, "the labelled key upstream", || async {
        ask(&gateway, "chat").await;
        (alpha.last().authorization.as_deref() == Some("Bearer sk-alpha-3")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn only_the_leader_writes_and_a_standby_takes_over_when_it_dies() {
    let stack = Stack::new("e2e-leader");
    let _ = two_providers(&stack).await;
    stack.apply(&alias("chat", "{target: alpha/m}"));
    let mut first = stack.controller("first");
    stack.wait_condition("modelalias", "chat", "Ready", "True");
    let second = stack.controller("second");
    let gateway = stack.gateway();
    served(&gateway, "chat", "alpha served m").await;

    let leader = r#"modelgate_controller_leader"#;
    assert_eq!((first.metric(leader), second.metric(leader)), (1.0, 0.0));
    stack.patch_alias("chat", r#"{"spec":{"target":"beta/m"}}"#);
    stack.wait_condition("modelalias", "chat", "Ready", "True");
    let written = r#"modelgate_controller_reconciles_total{kind="ModelAlias",outcome="written"}"#;
    assert_eq!(second.metric(written), 0.0, "the standby wrote nothing");

    // The controller dies: the gateway keeps serving.
    first.kill();
    let died = Instant::now();
    served(&gateway, "chat", "beta served m").await;

    stack.patch_alias("chat", r#"{"spec":{"target":"alpha/m2"}}"#);
    wait_for(
        "the standby to take over and reconcile",
        Duration::from_secs(30),
        || {
            let object = stack.get("modelalias", "chat");
            let ready = condition(&object, "Ready");
            (ready["observedGeneration"] == object["metadata"]["generation"] && ready["status"] == "True")
                .then_some(())
                .ok_or_else(|| ready.to_string())
        },
    );
    let takeover = died.elapsed();
    record("leader killed to standby reconciling", takeover);
    assert!(takeover < Duration::from_secs(15), "the standby took {takeover:?}");
    assert_eq!(second.metric(leader), 1.0);

    // A leader stopped the way Kubernetes stops a pod releases the Lease on its way out.
    let mut second = second;
    let third = stack.controller("third");
    second.terminate();
    assert!(second.log().contains("released the lease"), "{}", second.log());
    let released = Instant::now();
    wait_for("the third controller to lead", Duration::from_secs(30), || {
        (third.metric(leader) == 1.0).then_some(()).ok_or_else(|| third.log())
    });
    record("leader stopped (SIGTERM) to standby leading", released.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn a_steady_world_causes_no_writes() {
    let stack = Stack::new("e2e-steady");
    let _ = two_providers(&stack).await;
    stack.apply(
        &(alias("a", "{target: alpha/m}") + &alias("b", "{target: a}") + &alias("broken", "{target: nowhere/m}")),
    );
    let controller = stack.controller("c1");
    stack.wait_condition("modelalias", "b", "Ready", "True");
    stack.wait_condition("modelalias", "broken", "Ready", "False");
    stack.wait_condition("llmprovider", "beta", "Ready", "True");
    let versions = || {
        let list = stack
            .ns
            .kubectl(["get", "modelaliases,llmproviders", "-o", "json"])
            .expect_success()
            .json();
        list["items"].as_array().map(|items| {
            items
                .iter()
                .map(|i| i["metadata"]["resourceVersion"].to_string())
                .collect::<Vec<_>>()
        })
    };
    let written = r#"modelgate_controller_reconciles_total{kind="ModelAlias",outcome="written"}"#;
    let (before, writes) = (versions(), controller.metric(written));
    observe_for(Duration::from_secs(5));
    assert_eq!(versions(), before, "no object changed in a steady world");
    assert_eq!(controller.metric(written), writes, "the controller wrote nothing");
}

/// The status of the gateway's `/readyz`.
async fn readyz(gateway: &Proc) -> u16 {
    let admin = gateway.admin.parse().expect("the gateway's admin address");
    support::get(admin, "/readyz").await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn without_the_apiserver_the_gateway_serves_its_last_table_and_catches_up_when_it_returns() {
    let stack = Stack::new("e2e-outage");
    let (_alpha, beta) = two_providers(&stack).await;
    stack.apply(&alias("smart", "{target: alpha/model-a}"));
    let _controller = stack.controller("c1");
    // The gateway reaches the apiserver only through a forwarder the test can cut.
    let forwarder = Forwarder::start(apiserver_addr()).await;
    let gateway = stack.gateway_with(
        &service_account_kubeconfig_via("modelgate-gateway", forwarder.addr),
        &[],
    );
    assert!(forwarder.forwarded() > 0, "the gateway synced through the forwarder");
    stack.wait_condition("modelalias", "smart", "Ready", "True");
    served(&gateway, "smart", "alpha served model-a").await;

    forwarder.cut();
    let cut = Instant::now();
    support::eventually(DEFAULT_TIMEOUT, "the gateway to try to reconnect", || async {
        (forwarder.refused() > 0).then_some(())
    })
    .await;

    // The alias moves to beta while the gateway cannot see it; the controller publishes it.
    stack.patch_alias("smart", r#"{"spec":{"target":"beta/model-b"}}"#);
    let object = stack.wait_condition("modelalias", "smart", "Ready", "True");
    assert_eq!(object["status"]["resolved"]["targets"][0]["model"], "model-b");

    // Until the gateway has made 9 reconnection attempts (three watches, each at once and
    // twice more after backing off), and for at least 10 requests, every request is served
    // from its last table, and the gateway stays ready.
    let mut answered = 0;
    while answered < 10 || forwarder.refused() < 9 {
        assert!(
            cut.elapsed() < DEFAULT_TIMEOUT,
            "the gateway tried to reconnect {} times in {DEFAULT_TIMEOUT:?}",
            forwarder.refused()
        );
        let (status, body) = ask(&gateway, "smart").await;
        assert_eq!(
            (status, content(&body)),
            (200, "alpha served model-a".to_string()),
            "request {answered} during the outage is served from the last table"
        );
        assert_eq!(readyz(&gateway).await, 200, "the gateway stays ready during the outage");
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outage = cut.elapsed();
    let attempts = forwarder.refused();
    // Three watches; retrying without backoff would be hundreds of attempts a second.
    assert!(
        (attempts as f64) < 10.0 * (outage.as_secs_f64() + 1.0),
        "{attempts} reconnection attempts in {outage:?}: no backoff"
    );
    assert!(beta.seen().is_empty(), "nothing reached beta during the outage");

    forwarder.restore();
    let restored = Instant::now();
    served(&gateway, "smart", "beta served model-b").await;
    record("apiserver outage (cut until the gateway retried)", outage);
    record("apiserver back to the change served", restored.elapsed());
    eprintln!("e2e: {attempts} reconnection attempts, {answered} requests served during the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn with_namespace_the_controller_and_gateway_see_only_that_namespace() {
    let stack = Stack::new("e2e-ns-in");
    let (alpha, _beta) = two_providers(&stack).await;
    // Another namespace with the same test label: in scope of the selector, not of --namespace.
    let outside = Stack {
        ns: Namespace::new("e2e-ns-out"),
        label: stack.label.clone(),
    };
    outside.apply(
        &(secret("alpha-key", "sk-out")
            + &provider("alpha", &alpha.base_url(), "alpha-key")
            + &alias("only-out", "{target: alpha/out}")
            + &alias("shared", "{target: alpha/out}")),
    );
    // Its `shared` is strictly older, so it would win the name if it were in scope.
    let older = outside.get("modelalias", "shared")["metadata"]["creationTimestamp"]
        .as_str()
        .expect("creationTimestamp")
        .to_string();
    wait_for("the clock to pass that second", DEFAULT_TIMEOUT, || {
        let now = jiff::Timestamp::now().as_second();
        let created: jiff::Timestamp = older.parse().map_err(|e| format!("{e}"))?;
        (now > created.as_second())
            .then_some(())
            .ok_or_else(|| format!("now {now}, created {created}"))
    });
    stack.apply(&(alias("chat", "{target: alpha/in}") + &alias("shared", "{target: beta/in}")));

    let scope = ["--namespace", stack.ns.name()];
    let controller = stack.controller_with("c1", &scope);
    let gateway = stack.gateway_with(&service_account_kubeconfig("modelgate-gateway"), &scope);
    for name in ["chat", "shared"] {
        let object = stack.wait_condition("modelalias", name, "Ready", "True");
        assert_eq!(condition(&object, "Accepted")["status"], "True", "{object}");
    }
    served(&gateway, "chat", "alpha served in").await;
    served(&gateway, "shared", "beta served in").await;
    let (status, body) = ask(&gateway, "only-out").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{body}"
    );

    // Nothing outside the namespace is given status by this controller.
    observe_for(Duration::from_secs(3));
    for (kind, name) in [
        ("modelalias", "only-out"),
        ("modelalias", "shared"),
        ("llmprovider", "alpha"),
    ] {
        let object = outside.get(kind, name);
        assert_eq!(
            object["status"],
            serde_json::json!({"observedGeneration": -1}),
            "{kind} {name} outside the scope keeps the status no controller wrote: {object}"
        );
    }

    // The other namespace gets a controller of its own, which publishes its aliases; this
    // gateway still serves only its own namespace.
    let outside_controller = outside.controller_with("c2", &["--namespace", outside.ns.name()]);
    for name in ["only-out", "shared"] {
        outside.wait_condition("modelalias", name, "Ready", "True");
    }
    // A later change in scope: once the gateway serves it, it has seen every earlier event.
    stack.patch_alias("chat", r#"{"spec":{"target":"alpha/in2"}}"#);
    served(&gateway, "chat", "alpha served in2").await;
    let (status, body) = ask(&gateway, "only-out").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = ask(&gateway, "shared").await;
    assert_eq!(
        (status, content(&body)),
        (200, "beta served in".to_string()),
        "the older 'shared' of the other namespace is not this gateway's"
    );
    assert_eq!(
        condition(&stack.get("modelalias", "shared"), "Accepted")["status"],
        "True",
        "no conflict with a namespace out of scope"
    );

    // The ServiceAccounts' RBAC suffices for namespaced watches.
    for (who, log) in [
        ("controller", controller.log()),
        ("other controller", outside_controller.log()),
        ("gateway", gateway.log()),
    ] {
        assert!(
            !log.to_lowercase().contains("forbidden"),
            "the {who} was refused something:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn a_fallback_applied_with_kubectl_is_served_by_the_in_cluster_gateway_and_broken_ones_are_conditions() {
    let stack = Stack::new("e2e-fallback");
    let overloaded = r#"{"error":{"message":"The engine is currently overloaded","type":"server_error"}}"#;
    let alpha = FakeUpstream::start("alpha", Behaviour::Fail(503, overloaded)).await;
    let beta = FakeUpstream::start("beta", Behaviour::Echo).await;
    stack.apply(
        &(secret("alpha-key", "sk-alpha-1")
            + &secret("beta-key", "sk-beta-1")
            + &provider("alpha", &alpha.base_url(), "alpha-key")
            + &provider("beta", &beta.base_url(), "beta-key")
            + &alias(
                "chat",
                "{target: alpha/model-1, retry: {attempts: 1, on: [overloaded], backoff: 10ms}, fallbacks: [{target: beta/model-2, on: [overloaded]}]}",
            )
            + &alias("loop-a", "{target: alpha/m, fallbacks: [{target: loop-b}]}")
            + &alias("loop-b", "{target: beta/m, fallbacks: [{target: loop-a}]}")
            + &alias("missing", "{target: alpha/m, fallbacks: [{target: nowhere/m}]}")),
    );
    let _controller = stack.controller("c1");
    let gateway = stack.gateway();

    let object = stack.wait_condition("modelalias", "chat", "Ready", "True");
    let ready = condition(&object, "Ready")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(ready.contains("on overloaded falling back to"), "{ready}");
    let resolved = &object["status"]["resolved"];
    assert_eq!(resolved["fallbacks"][0]["targets"][0]["model"], "model-2", "{resolved}");
    assert_eq!(resolved["fallbacks"][0]["on"], serde_json::json!(["overloaded"]));
    assert_eq!(resolved["policy"]["retry"]["attempts"], 1);

    // The in-cluster gateway serves what the controller published: alpha is tried (and
    // retried once), then beta answers.
    served(&gateway, "chat", "beta served model-2").await;
    let before = alpha.seen().len();
    let api = gateway.api.as_deref().expect("gateway address");
    let response = support::client()
        .post(format!("http://{api}/v1/chat/completions"))
        .body(serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-modelgate-target"], "beta/model-2");
    assert_eq!(alpha.seen().len() - before, 2, "one try and one retry at alpha");

    for name in ["loop-a", "loop-b"] {
        let object = stack.wait_condition("modelalias", name, "Accepted", "False");
        let accepted = condition(&object, "Accepted");
        assert_eq!(accepted["reason"], "AliasCycle", "{object}");
        let message = accepted["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("loop-a -> loop-b -> loop-a") || message.contains("loop-b -> loop-a -> loop-b"),
            "{message}"
        );
    }
    let object = stack.wait_condition("modelalias", "missing", "Ready", "False");
    let text = object["status"]["conditions"].to_string();
    assert!(text.contains("ProviderNotFound") && text.contains("nowhere"), "{text}");
    assert!(
        text.contains("spec.fallbacks[0].target") || text.contains("fallback"),
        "{text}"
    );
}

/// `kubectl wait --for=condition=Programmed` on an object, which must succeed within 60 s.
fn wait_programmed(stack: &Stack, kind: &str, name: &str) -> Value {
    stack
        .ns
        .kubectl([
            "wait",
            &format!("{kind}/{name}"),
            "--for=condition=Programmed",
            "--timeout=60s",
        ])
        .expect_success();
    stack.get(kind, name)
}

/// The `GatewayReplica` reports of this stack's gateways.
fn replica_reports(stack: &Stack) -> Vec<Value> {
    let mut reports = kubectl(["get", "gatewayreplicas", "-n", "modelgate-system", "-o", "json"])
        .expect_success()
        .json();
    let items = reports["items"].as_array_mut().map(std::mem::take).expect("items");
    items
        .into_iter()
        .filter(|r| r["spec"]["scope"]["selector"] == stack.selector())
        .collect()
}

/// The reports' names, sorted.
fn report_names(reports: &[Value]) -> Vec<&str> {
    let mut names: Vec<&str> = reports.iter().filter_map(|r| r["metadata"]["name"].as_str()).collect();
    names.sort_unstable();
    names
}

/// Waits until an object's `Programmed` condition, at its current generation, has this message.
fn wait_programmed_message(stack: &Stack, kind: &str, name: &str, status: &str, message: &str) {
    wait_for(
        &format!("{kind} {name} Programmed={status}: {message}"),
        DEFAULT_TIMEOUT,
        || {
            let object = stack.get(kind, name);
            let programmed = condition(&object, "Programmed");
            (programmed["status"] == status
                && programmed["message"] == message
                && programmed["observedGeneration"] == object["metadata"]["generation"])
                .then_some(())
                .ok_or_else(|| object["status"].to_string())
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn programmed_says_when_every_gateway_serves_an_edit_and_names_the_laggards() {
    let stack = Stack::new("e2e-programmed");
    let (_alpha, _beta) = two_providers(&stack).await;
    let (one, two) = (format!("one-{}", stack.ns.name()), format!("two-{}", stack.ns.name()));
    let mut first = stack.gateway_with(
        &service_account_kubeconfig("modelgate-gateway"),
        &["--replica-name", &one],
    );
    // The second gateway reaches the apiserver through a forwarder the test can cut; its report
    // stands for a minute without renewal, so it stays a (lagging) replica while cut.
    let forwarder = Forwarder::start(apiserver_addr()).await;
    let mut second = stack.gateway_with(
        &service_account_kubeconfig_via("modelgate-gateway", forwarder.addr),
        &["--replica-name", &two, "--replica-lease", "60s"],
    );
    // Each gateway reports itself once it serves its first table, just after it turns ready; the
    // count below is of the gateways reported when the controller reconciles.
    wait_for("both gateways' reports", DEFAULT_TIMEOUT, || {
        let reports = replica_reports(&stack);
        let names = report_names(&reports);
        (names == [one.as_str(), two.as_str()])
            .then_some(())
            .ok_or_else(|| format!("{names:?}"))
    });
    let _controller = stack.controller("c1");
    stack.apply(&alias("chat", "{target: alpha/m1}"));

    // `kubectl wait --for=condition=Programmed` returns once both gateways serve the alias:
    // the very next request to either is served by it, no polling needed.
    let object = wait_programmed(&stack, "modelalias", "chat");
    assert_eq!(
        condition(&object, "Programmed")["message"],
        "served by 2/2 gateways at generation 1",
        "{object}"
    );
    for gateway in [&first, &second] {
        let (status, body) = ask(gateway, "chat").await;
        assert_eq!((status, content(&body)), (200, "alpha served m1".to_string()));
    }
    let provider = wait_programmed(&stack, "llmprovider", "alpha");
    assert_eq!(
        condition(&provider, "Programmed")["message"],
        "served by 2/2 gateways at generation 1"
    );
    // Each gateway's report: its scope and what it serves.
    let ours = replica_reports(&stack);
    assert_eq!(report_names(&ours), [one.as_str(), two.as_str()], "{ours:?}");
    assert!(ours.iter().all(|r| r["spec"]["served"]["routes"] == 1), "{ours:?}");

    // The second gateway loses the apiserver; an edit reaches only the first. Programmed names
    // the laggard, and `kubectl wait` does not return.
    forwarder.cut();
    stack.patch_alias("chat", r#"{"spec":{"target":"beta/m2"}}"#);
    served(&first, "chat", "beta served m2").await;
    wait_programmed_message(
        &stack,
        "modelalias",
        "chat",
        "False",
        &format!("served by 1/2 gateways at generation 2; waiting for {two}"),
    );
    let early = stack
        .ns
        .kubectl(["wait", "modelalias/chat", "--for=condition=Programmed", "--timeout=2s"]);
    assert!(
        !early.success(),
        "kubectl wait returned while a gateway lagged: {early}"
    );
    let (status, body) = ask(&second, "chat").await;
    assert_eq!(
        (status, content(&body)),
        (200, "alpha served m1".to_string()),
        "the laggard still serves generation 1"
    );

    // It reconnects and catches up: Programmed, and both serve the edit at once.
    forwarder.restore();
    let object = wait_programmed(&stack, "modelalias", "chat");
    assert_eq!(
        condition(&object, "Programmed")["message"],
        "served by 2/2 gateways at generation 2"
    );
    for gateway in [&first, &second] {
        let (status, body) = ask(gateway, "chat").await;
        assert_eq!((status, content(&body)), (200, "beta served m2".to_string()));
    }

    // A gateway stopped the way Kubernetes stops a pod withdraws its report at once.
    second.terminate();
    stack.patch_alias("chat", r#"{"spec":{"target":"alpha/m3"}}"#);
    let object = wait_programmed(&stack, "modelalias", "chat");
    assert_eq!(
        condition(&object, "Programmed")["message"],
        "served by 1/1 gateways at generation 3"
    );

    // A gateway that crashes is a laggard until its report expires, then stops counting.
    first.kill();
    stack.patch_alias("chat", r#"{"spec":{"target":"beta/m4"}}"#);
    wait_programmed_message(
        &stack,
        "modelalias",
        "chat",
        "False",
        &format!("served by 0/1 gateways at generation 4; waiting for {one}"),
    );
    wait_for("the crashed gateway's report to expire", DEFAULT_TIMEOUT, || {
        let object = stack.get("modelalias", "chat");
        let programmed = condition(&object, "Programmed");
        (programmed["reason"] == "NoGateways")
            .then_some(())
            .ok_or_else(|| programmed.to_string())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn a_controller_that_cannot_read_the_gateways_reports_still_reconciles_and_says_why() {
    let stack = Stack::new("e2e-noreports");
    let _ = two_providers(&stack).await;
    stack.apply(&alias("chat", "{target: alpha/m}"));
    // Its RBAC covers gatewayreplicas in modelgate-system only (as when the CRDs or RBAC of
    // this version are not installed yet).
    let controller = stack.controller_with("c1", &["--gateway-namespace", "kube-system"]);
    let object = stack.wait_condition("modelalias", "chat", "Ready", "True");
    assert_eq!(condition(&object, "Programmed")["reason"], "NoGateways", "{object}");
    wait_for("the controller to say why", DEFAULT_TIMEOUT, || {
        let log = controller.log();
        log.contains("cannot watch the gateways' reports")
            .then_some(())
            .ok_or(log)
    });
}

/// A gateway that reads the cluster, where tenants write LLMProviders, refuses a provider on
/// loopback without connecting to it, says so to the client and in its log, and serves it
/// once loopback is allowed; the controller warns on the provider's Ready condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn a_gateway_reading_the_cluster_refuses_a_loopback_provider_unless_allowed() {
    let stack = Stack::new("e2e-egress");
    let (alpha, _beta) = two_providers(&stack).await;
    stack.apply(&alias("chat", "{target: alpha/model-1}"));
    let _controller = stack.controller("c1");
    stack.wait_condition("modelalias", "chat", "Ready", "True");
    let provider = stack.wait_condition("llmprovider", "alpha", "Ready", "True");
    assert_eq!(
        condition(&provider, "Ready")["message"],
        format!(
            "aliases can route to {}; warning: spec.baseUrl: baseUrl points at 127.0.0.1, a loopback address (127.0.0.0/8 or ::1): a gateway in a cluster (started without --config) refuses to connect to it unless its address is allowed with --allow-upstream-cidr, so requests routed here fail with 502 upstream_blocked; point baseUrl at a Service instead (for example http://ollama.ollama.svc:11434/v1)",
            alpha.base_url()
        )
    );

    let strict = stack.gateway_with_egress(&service_account_kubeconfig("modelgate-gateway"), &[], &[]);
    let (status, body) = ask(&strict, "chat").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_blocked", "{body}");
    assert_eq!(
        body["error"]["message"],
        format!("The gateway refused to connect to the provider '{}/alpha': its address 127.0.0.1: a loopback address (127.0.0.0/8 or ::1); a gateway in a cluster does not connect to it. This is not a problem with your request; the platform team must point the provider's baseUrl at the real upstream, or allow the address on the gateway with --allow-upstream-cidr (Helm value gateway.allowUpstreamCIDRs).", stack.ns.name())
    );
    assert_eq!(alpha.connections(), 0, "no connection was attempted");
    // The line is written as the attempt ends, which may be just after the client's answer.
    wait_for("the refusal logged as a warning", DEFAULT_TIMEOUT, || {
        let log = strict.log();
        log.lines()
            .any(|line| line.contains("WARN") && line.contains("refused by the egress policy"))
            .then_some(())
            .ok_or(log)
    });

    let allowed = stack.gateway();
    served(&allowed, "chat", "alpha served model-1").await;
}
