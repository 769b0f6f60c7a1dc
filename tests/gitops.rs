//! What GitOps tools say about the objects the real controller writes, at every state: Argo CD
//! through the health scripts in `config/argocd/` run the way Argo CD runs them (gopher-lua,
//! the object as `obj`), Flux and kubectl-style waits through kstatus
//! (`sigs.k8s.io/cli-utils/pkg/kstatus/status`). Both come from `gitops-health`, a small Go
//! program (`tests/gitops/`) that `tests/all.sh` builds and exports as `MODELGATE_GITOPS_HEALTH`.
//!
//!     tests/controlplane/run.sh cargo test --test gitops -- --include-ignored

mod cluster;
mod e2e_support;
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use cluster::{repo_path, wait_for, DEFAULT_TIMEOUT};
use e2e_support::*;
use serde_json::Value;

/// (kstatus status, Argo CD health) of one object, with their messages.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Health {
    kstatus: String,
    kstatus_message: String,
    argocd: String,
    argocd_message: String,
}

fn health_binary() -> PathBuf {
    let path = std::env::var("MODELGATE_GITOPS_HEALTH").unwrap_or_else(|_| {
        panic!(
            "MODELGATE_GITOPS_HEALTH is not set: these tests need gitops-health. Build it (first run: about a \
             minute, then cached) and export its path:\n    \
             export MODELGATE_GITOPS_HEALTH=\"$(tests/gitops/build.sh)\"\ntests/all.sh does this for you."
        )
    });
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "MODELGATE_GITOPS_HEALTH={} is not a file",
        path.display()
    );
    path
}

/// What Argo CD and kstatus say about every ModelAlias and LLMProvider of the stack, by name
/// (`kind/name`).
fn health(stack: &Stack) -> BTreeMap<String, Health> {
    let list = stack
        .ns
        .kubectl(["get", "modelaliases,llmproviders", "-o", "json"])
        .expect_success();
    let mut child = Command::new(health_binary())
        .arg("--argocd-cm")
        .arg(repo_path("config/argocd/argocd-cm.yaml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gitops-health");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), list.stdout.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("gitops-health");
    assert!(
        out.status.success(),
        "gitops-health failed: {}\non {}",
        String::from_utf8_lossy(&out.stderr),
        list.stdout
    );
    let verdicts: Vec<Value> = serde_json::from_slice(&out.stdout).expect("gitops-health prints JSON");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    verdicts
        .iter()
        .map(|v| {
            let kind = text(&v["kind"]).to_lowercase();
            assert!(v["argocd"].is_object(), "no Argo CD health script for {v}");
            (
                format!("{kind}/{}", text(&v["name"])),
                Health {
                    kstatus: text(&v["kstatus"]["status"]),
                    kstatus_message: text(&v["kstatus"]["message"]),
                    argocd: text(&v["argocd"]["status"]),
                    argocd_message: text(&v["argocd"]["message"]),
                },
            )
        })
        .collect()
}

/// Only the two statuses, for exact comparisons.
fn statuses(health: &BTreeMap<String, Health>) -> BTreeMap<String, (String, String)> {
    health
        .iter()
        .map(|(k, h)| (k.clone(), (h.kstatus.clone(), h.argocd.clone())))
        .collect()
}

fn expect(pairs: &[(&str, &str, &str)]) -> BTreeMap<String, (String, String)> {
    pairs
        .iter()
        .map(|(object, kstatus, argocd)| (object.to_string(), (kstatus.to_string(), argocd.to_string())))
        .collect()
}

const WORLD: &str = r#"
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: mock}
spec: {type: mock}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: lister1}
spec: {type: mock, models: [shared-model]}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: lister2}
spec: {type: mock, models: [shared-model]}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: keyless}
spec: {type: openai, apiKey: {secretRef: {name: arrives-later, key: apiKey}}}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: good}
spec: {targets: [{target: mock/a, weight: 80}, {target: mock/b, weight: 20}]}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: x}
spec: {target: y}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: y}
spec: {target: x}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: ambiguous}
spec: {target: shared-model}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: waiting}
spec: {target: later/m}
"#;

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn argo_cd_and_kstatus_tell_the_truth_at_every_state_the_controller_writes() {
    let stack = Stack::new("gitops-states");
    stack.apply(WORLD);
    // The name `good` again, claimed later: a conflict. The clock must pass a second first
    // (creation times have one-second resolution).
    let created = stack.get("modelalias", "good")["metadata"]["creationTimestamp"]
        .as_str()
        .expect("creationTimestamp")
        .parse::<jiff::Timestamp>()
        .expect("timestamp");
    wait_for("the clock to pass that second", DEFAULT_TIMEOUT, || {
        (jiff::Timestamp::now().as_second() > created.as_second())
            .then_some(())
            .ok_or_else(|| "same second".to_string())
    });
    stack.apply(&alias("dup", "{alias: good, target: mock/c}"));

    // No controller has seen anything: every object is in progress, none Current or Healthy.
    let before = health(&stack);
    for (object, h) in &before {
        assert_eq!(
            (h.kstatus.as_str(), h.argocd.as_str()),
            ("InProgress", "Progressing"),
            "{object}: {h:?}"
        );
        assert!(
            h.argocd_message
                .starts_with("no modelgate controller has processed this"),
            "{object}: {h:?}"
        );
        assert!(
            h.kstatus_message.contains("latest observed generation is -1"),
            "{object}: {h:?}"
        );
    }

    let mut controller = stack.controller("c1");
    stack.wait_condition("modelalias", "good", "Ready", "True");
    for name in ["x", "ambiguous", "dup", "waiting"] {
        stack.wait_condition("modelalias", name, "Ready", "False");
    }
    stack.wait_condition("llmprovider", "keyless", "Ready", "False");
    let now = health(&stack);
    assert_eq!(
        statuses(&now),
        expect(&[
            ("llmprovider/keyless", "InProgress", "Progressing"),
            ("llmprovider/lister1", "Current", "Healthy"),
            ("llmprovider/lister2", "Current", "Healthy"),
            ("llmprovider/mock", "Current", "Healthy"),
            ("modelalias/ambiguous", "Failed", "Degraded"),
            ("modelalias/dup", "Failed", "Degraded"),
            ("modelalias/good", "Current", "Healthy"),
            ("modelalias/waiting", "InProgress", "Progressing"),
            ("modelalias/x", "Failed", "Degraded"),
            ("modelalias/y", "Failed", "Degraded"),
        ])
    );
    let say = |object: &str| now[object].argocd_message.clone();
    assert!(
        say("modelalias/x").starts_with("AliasCycle: "),
        "{}",
        say("modelalias/x")
    );
    assert!(
        say("modelalias/dup").starts_with("AliasConflict: "),
        "{}",
        say("modelalias/dup")
    );
    assert!(say("modelalias/ambiguous").starts_with("AmbiguousTarget: "));
    assert!(
        say("modelalias/waiting").starts_with("ProviderNotFound: spec.target: LLMProvider 'later' does not exist")
            && say("modelalias/waiting").contains("waiting for it until"),
        "{}",
        say("modelalias/waiting")
    );
    assert!(
        say("llmprovider/keyless").starts_with("KeyNotFound: "),
        "{}",
        say("llmprovider/keyless")
    );
    assert!(
        say("modelalias/good").starts_with("serving 'good' from "),
        "{}",
        say("modelalias/good")
    );
    assert_eq!(now["modelalias/x"].kstatus_message, {
        let object = stack.get("modelalias", "x");
        condition(&object, "Stalled")["message"]
            .as_str()
            .expect("message")
            .to_string()
    });

    // `kubectl get` shows a split's targets, and `true` for an alias without spec.active.
    let table = stack.ns.kubectl(["get", "modelalias", "good"]).expect_success();
    let row = table.stdout.lines().nth(1).expect("a row");
    assert!(row.contains("mock/a 80%, mock/b 20%"), "{}", table.stdout);
    assert!(row.split_whitespace().any(|cell| cell == "true"), "{}", table.stdout);

    // An edit the controller has not seen yet (it is down): in progress again.
    controller.kill();
    stack.patch_alias("good", r#"{"spec":{"description":"edited"}}"#);
    let edited = health(&stack);
    assert_eq!(
        (
            edited["modelalias/good"].kstatus.as_str(),
            edited["modelalias/good"].argocd.as_str()
        ),
        ("InProgress", "Progressing")
    );
    assert_eq!(
        edited["modelalias/good"].argocd_message,
        "the modelgate controller has not processed generation 2 yet (last processed: 1)"
    );
    // The controller comes back and catches up.
    let _controller = stack.controller("c2");
    stack.wait_condition("modelalias", "good", "Ready", "True");
    assert_eq!(health(&stack)["modelalias/good"].kstatus, "Current");
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn what_is_missing_is_waited_for_without_writes_then_stalls_and_heals_when_it_comes() {
    let stack = Stack::new("gitops-grace");
    stack.apply(&alias("waiting", "{target: later/m}"));
    let _controller = stack.controller_with("c1", &["--stall-after", "8s"]);

    // Within the grace period: in progress, for Flux and Argo CD alike.
    let object = stack.wait_condition("modelalias", "waiting", "Reconciling", "True");
    let written = object["metadata"]["resourceVersion"].clone();
    let h = &health(&stack)["modelalias/waiting"];
    assert_eq!(
        (h.kstatus.as_str(), h.argocd.as_str()),
        ("InProgress", "Progressing"),
        "{h:?}"
    );

    // At its end, stalled: failed, saying what has been missing for how long. Nothing is
    // written in between: the controller looks again at the deadline.
    let mut versions = vec![written];
    let stalled = wait_for("the grace period to end", Duration::from_secs(60), || {
        let object = stack.get("modelalias", "waiting");
        let version = object["metadata"]["resourceVersion"].clone();
        if versions.last() != Some(&version) {
            versions.push(version);
        }
        (condition(&object, "Stalled")["status"] == "True")
            .then(|| object.clone())
            .ok_or_else(|| object["status"].to_string())
    });
    assert_eq!(versions.len(), 2, "one write while waiting, one to stall: {versions:?}");
    assert!(condition(&stalled, "Reconciling").is_null(), "{stalled}");
    let message = condition(&stalled, "Stalled")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let since = condition(&stalled, "Ready")["lastTransitionTime"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.starts_with("spec.target: LLMProvider 'later' does not exist")
            && message.contains("(unresolved for ")
            && message.ends_with(&format!(", since {since})")),
        "{message}"
    );
    let h = &health(&stack)["modelalias/waiting"];
    assert_eq!((h.kstatus.as_str(), h.argocd.as_str()), ("Failed", "Degraded"), "{h:?}");
    assert_eq!(h.kstatus_message, message);
    wait_events(
        &stack.ns,
        "ModelAlias",
        "waiting",
        &[("Warning", "Rejected"), ("Warning", "Stalled")],
    );

    // What it waited for arrives (a later sync wave): it heals by itself.
    stack.apply(
        "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: later}\nspec: {type: mock}\n",
    );
    stack.wait_condition("modelalias", "waiting", "Ready", "True");
    let h = &health(&stack)["modelalias/waiting"];
    assert_eq!((h.kstatus.as_str(), h.argocd.as_str()), ("Current", "Healthy"), "{h:?}");
}

#[test]
fn the_argocd_snippets_carry_the_health_scripts_unchanged() {
    let read = |path: &str| std::fs::read_to_string(repo_path(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let cm: Value = serde_yaml_ng::from_str(&read("config/argocd/argocd-cm.yaml")).expect("argocd-cm.yaml");
    let values: Value = serde_yaml_ng::from_str(&read("config/argocd/argo-cd-values.yaml")).expect("values");
    for (kind, file) in [
        ("ModelAlias", "config/argocd/modelalias-health.lua"),
        ("LLMProvider", "config/argocd/llmprovider-health.lua"),
    ] {
        let key = format!("resource.customizations.health.modelgate.dev_{kind}");
        let script = read(file);
        assert_eq!(
            cm["data"][&key].as_str(),
            Some(script.as_str()),
            "config/argocd/argocd-cm.yaml's {key} differs from {file}"
        );
        assert_eq!(
            values["configs"]["cm"][&key].as_str(),
            Some(script.as_str()),
            "config/argocd/argo-cd-values.yaml's {key} differs from {file}"
        );
    }
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
}

/// The documented command, against a real `argocd-cm`: the scripts land under Argo CD's keys
/// and what was there stays.
#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn the_argocd_cm_patch_applies_as_documented() {
    let ns = cluster::Namespace::new("argocd");
    ns.kubectl([
        "create",
        "configmap",
        "argocd-cm",
        "--from-literal=url=https://argocd.example.com",
    ])
    .expect_success();
    let patch = repo_path("config/argocd/argocd-cm.yaml");
    ns.kubectl([
        "patch",
        "configmap",
        "argocd-cm",
        "--type",
        "merge",
        "--patch-file",
        patch.to_str().expect("path"),
    ])
    .expect_success();
    let cm = ns
        .kubectl(["get", "configmap", "argocd-cm", "-o", "json"])
        .expect_success()
        .json();
    assert_eq!(cm["data"]["url"], "https://argocd.example.com", "{cm}");
    for (kind, file) in [
        ("ModelAlias", "config/argocd/modelalias-health.lua"),
        ("LLMProvider", "config/argocd/llmprovider-health.lua"),
    ] {
        let script = std::fs::read_to_string(repo_path(file)).expect("script");
        assert_eq!(
            cm["data"][format!("resource.customizations.health.modelgate.dev_{kind}")].as_str(),
            Some(script.as_str()),
            "{cm}"
        );
    }
}
