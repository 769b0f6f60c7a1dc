//! The image, the Helm chart and `config/default` installed for real on a cluster that runs
//! pods, and rolled, failed over and drained under load:
//!
//!     tests/node/run.sh cargo test --test node -- --include-ignored
//!
//! `tests/node/run.sh` starts a single-node cluster (kubelet, containerd, CoreDNS, ...) and
//! provides the images (`MODELGATE_IMAGE`, assembled from the release binary); with Docker,
//! `tests/kind/run.sh cargo test --test node -- --include-ignored` runs the same tests on kind.
//!
//! Each test installs modelgate cluster-wide, as users do, so the tests take turns (a lock in
//! `node_support`); each removes what it installed before the next begins.

mod cluster;
mod node_support;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cluster::{kubectl, wait_for};
use node_support::load::{Load, Traffic};
use node_support::*;
use serde_json::Value;

const CHART: &str = "charts/modelgate";
const GATEWAYS: &str = "app.kubernetes.io/component=gateway";
const CONTROLLERS: &str = "app.kubernetes.io/component=controller";

/// One test at a time: every install is cluster-wide.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = std::env::var("MODELGATE_TEST_CLUSTER").unwrap_or_default();
    assert!(
        cluster == "node" || cluster == "kind",
        "MODELGATE_TEST_CLUSTER={cluster:?}: these tests run pods, which the API-only control plane \
         cannot; run them with tests/node/run.sh (or tests/kind/run.sh)"
    );
    guard
}

// --- the chart --------------------------------------------------------------------------------

/// A release of the chart named `modelgate` (object names as config/default's) with the local
/// image, in a namespace of its own that enforces Pod Security `restricted`. On drop, it is
/// uninstalled (unless the test did), then the namespace is deleted.
struct Release {
    installed: Cell<bool>,
    ns: TestNamespace,
}

impl Release {
    /// Installs the chart with `sets` into the new namespace `namespace`; waits for the rollout.
    fn install(namespace: &str, sets: &[&str]) -> Release {
        let ns = TestNamespace::create(namespace);
        let image = modelgate_image();
        let repository = format!("image.repository={}", image.repository);
        let tag = format!("image.tag={}", image.tag);
        let mut args = vec!["install", "modelgate", CHART, "--namespace", &ns.name];
        args.extend(["--set", &repository, "--set", &tag]);
        for set in sets {
            args.extend(["--set", set]);
        }
        helm(&args).expect_success();
        let release = Release {
            installed: Cell::new(true),
            ns,
        };
        release.rolled_out();
        release
    }

    /// [`Release::install`] with default values, then the sample world (streams of `chunks`
    /// chunks, 100 ms apart); the gateway Service with the sample team's key.
    fn with_samples(namespace: &str, chunks: u32) -> (Release, Gateway) {
        let release = Release::install(namespace, &[]);
        let gateway = samples(&release.ns, &release.ns, chunks);
        (release, gateway)
    }

    /// Waits until both Deployments are rolled out, and returns (controllers, gateways).
    fn rolled_out(&self) -> (Vec<Value>, Vec<Value>) {
        let ns = &self.ns;
        rollout_status(ns, "modelgate-controller");
        rollout_status(ns, "modelgate-gateway");
        let replicas = |deployment: &str| {
            ns.kubectl(["get", "deployment", deployment, "-o", "jsonpath={.spec.replicas}"])
                .expect_success()
                .stdout
                .parse::<usize>()
                .expect("replicas")
        };
        let controllers = wait_pods_ready(ns, CONTROLLERS, replicas("modelgate-controller"));
        let gateways = wait_pods_ready(ns, GATEWAYS, replicas("modelgate-gateway"));
        assert_never_restarted(&controllers);
        assert_never_restarted(&gateways);
        (controllers, gateways)
    }

    fn uninstall(&self) -> Run {
        self.installed.set(false);
        let timeout = format!("--timeout={ROLLOUT_TIMEOUT_ARG}");
        helm(&[
            "uninstall",
            "modelgate",
            "--namespace",
            &self.ns.name,
            "--wait",
            &timeout,
        ])
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.installed.get() {
            if std::thread::panicking() {
                self.ns.dump();
            }
            let out = self.uninstall();
            if !out.success {
                eprintln!("{out}");
            }
        }
    }
}

/// The sample world in `ns`: the paced upstream behind a Service, two providers, two aliases,
/// a team that may call both and its key, all Ready through the controller pods, and both
/// aliases served through the gateway Service of `gateway_ns` with that key, which is returned.
fn samples(ns: &TestNamespace, gateway_ns: &TestNamespace, chunks: u32) -> Gateway {
    ns.apply(&upstream_yaml(chunks));
    rollout_status(ns, "upstream");
    ns.apply(&samples_yaml(ns));
    let key = client_key(ns);
    for (kind, name) in [
        ("llmprovider", "mock"),
        ("llmprovider", "upstream"),
        ("modelalias", "chat"),
        ("modelalias", "remote"),
        ("accessgroup", "apps"),
        ("team", "apps"),
    ] {
        wait_ready(ns, kind, name);
    }
    let gateway = Gateway::service(gateway_ns, &key);
    served(&gateway, "chat");
    served(&gateway, "remote");
    gateway
}

/// Plain requests for `chat` (the mock) and streams for `remote` (the paced upstream, by its
/// Service's DNS name) through the gateway Service's ClusterIP, with the team's key.
fn steady_load(gateway: &Gateway) -> Load {
    Load::start(Traffic {
        gateway: gateway.clone(),
        plain: ("chat".into(), "Hello from the modelgate mock provider".into()),
        stream: ("remote".into(), "model echo".into()),
        plain_workers: 4,
        stream_workers: 4,
        pace: Duration::from_millis(25),
    })
}

fn names(pods: &[Value]) -> BTreeSet<String> {
    pods.iter().map(name_of).collect()
}

/// Every gateway pod of `ns` has its GatewayReplica report there (named after the pod, owned
/// by it): the gateway's RBAC lets it write its report, and the controller can count it.
fn gateway_replicas_report(ns: &TestNamespace) {
    let gateways = names(&pods(ns, GATEWAYS));
    wait_for("a GatewayReplica for each gateway pod", ROLLOUT_TIMEOUT, || {
        let reports = ns.kubectl(["get", "gatewayreplicas", "-o", "json"]);
        if !reports.success() {
            return Err(reports.to_string());
        }
        let reports = reports.json();
        let owned: BTreeSet<String> = reports["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["metadata"]["ownerReferences"][0]["kind"] == "Pod")
            .map(name_of)
            .collect();
        if gateways.is_subset(&owned) {
            Ok(())
        } else {
            Err(format!("gateway pods {gateways:?}, reports owned by pods {owned:?}"))
        }
    });
}

/// `kubectl wait --for=condition=Programmed` on `object` of `ns`: every gateway serves it.
fn programmed(ns: &TestNamespace, object: &str) {
    let timeout = format!("--timeout={ROLLOUT_TIMEOUT_ARG}");
    ns.kubectl(["wait", object, "--for=condition=Programmed", &timeout])
        .expect_success();
}

fn no_failed_pod_creation(ns: &TestNamespace) {
    let events = ns
        .kubectl(["get", "events", "--field-selector", "reason=FailedCreate", "-o", "json"])
        .expect_success()
        .json();
    let messages: Vec<&str> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        messages.is_empty(),
        "pods were refused (Pod Security restricted?): {messages:#?}"
    );
}

#[test]
#[ignore = "needs a node: tests/node/run.sh cargo test --test node -- --include-ignored"]
fn helm_install_runs_restricted_pods_that_serve_by_cluster_ip_and_dns_name_and_uninstall_leaves_none() {
    let _serial = serial();
    let release = Release::install("mg-node-helm", &[]);
    let ns = &release.ns;
    no_failed_pod_creation(ns);
    let (controllers, _) = release.rolled_out();

    // The Lease names the leading pod.
    let holder = lease_holder(ns, "modelgate-controller");
    assert!(
        names(&controllers).contains(&holder),
        "the Lease holder {holder:?} is not one of the controller pods {:?}",
        names(&controllers)
    );

    let gateway = samples(ns, ns, 3);
    // From this machine through the Service's ClusterIP (kube-proxy), with the team's key.
    assert_eq!(post_chat(&gateway, "chat"), mock_reply(ns, "demo-model", "chat"));
    // The chart's gateways ask for a key (tenancy.auth defaults to api-key).
    let refused = post_once(&gateway.base, None, "chat");
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(
        refused.body["error"]["message"].is_string(),
        "an OpenAI-shaped error: {}",
        refused.body
    );
    // The gateway pods reach the upstream by its Service's DNS name.
    let remote = post_chat(&gateway, "remote");
    assert!(
        remote.starts_with("upstream upstream-") && remote.ends_with("model echo"),
        "{remote}"
    );
    // From a pod, by the Service's DNS name.
    let url = format!(
        "http://modelgate-gateway.{}.svc.cluster.local:12000/v1/chat/completions",
        ns.name
    );
    let answer = curl_from_pod(ns, "curl-by-dns-name", &url, "chat");
    assert_eq!(content(&answer), mock_reply(ns, "demo-model", "chat"));
    // Each gateway pod reports what it serves (its RBAC lets it), so aliases are Programmed.
    gateway_replicas_report(ns);
    programmed(ns, "modelalias/chat");

    release.uninstall().expect_success();
    // The garbage collector removes the pods once their Deployments are gone.
    wait_for("the release's pods to be gone", ROLLOUT_TIMEOUT, || {
        match names(&pods(ns, "app.kubernetes.io/instance=modelgate")) {
            left if left.is_empty() => Ok(()),
            left => Err(format!("helm uninstall left pods: {left:?}")),
        }
    });
    // As with any chart, the CRDs (and so everyone's objects) stay.
    for crd in cluster::CRD_NAMES {
        kubectl(["get", "crd", crd]).expect_success();
    }
    ns.kubectl(["get", "modelalias", "chat"]).expect_success();
}

#[test]
#[ignore = "needs a node: tests/node/run.sh cargo test --test node -- --include-ignored"]
fn kubectl_apply_of_config_default_runs_restricted_pods_that_serve() {
    let _serial = serial();
    let image = modelgate_image();
    // config/default makes modelgate-system; made first, it enforces restricted from the start.
    let system = TestNamespace::create("modelgate-system");
    let _cluster_objects = ClusterObjects(vec![
        "clusterrole/modelgate-controller",
        "clusterrole/modelgate-gateway",
        "clusterrolebinding/modelgate-controller",
        "clusterrolebinding/modelgate-gateway",
    ]);
    let overlay = config_default_overlay(&image);
    Run::from(kubectl([
        "apply",
        "--server-side",
        "--force-conflicts",
        "-k",
        overlay.to_str().expect("UTF-8 path"),
    ]))
    .expect_success();
    rollout_status(&system, "modelgate-controller");
    rollout_status(&system, "modelgate-gateway");
    let controllers = wait_pods_ready(&system, CONTROLLERS, 2);
    let gateways = wait_pods_ready(&system, GATEWAYS, 2);
    assert_never_restarted(&controllers);
    assert_never_restarted(&gateways);
    no_failed_pod_creation(&system);
    for pod in controllers.iter().chain(&gateways) {
        assert_eq!(pod["spec"]["containers"][0]["image"], image.reference.as_str());
    }
    let holder = lease_holder(&system, "modelgate-controller");
    assert!(names(&controllers).contains(&holder), "{holder}");

    // The objects live in a team's namespace; the cluster-wide controller and gateways serve them.
    let team = TestNamespace::create("mg-node-team");
    let gateway = samples(&team, &system, 3);
    assert_eq!(post_chat(&gateway, "chat"), mock_reply(&team, "demo-model", "chat"));
    assert!(post_chat(&gateway, "remote").ends_with("model echo"));
    assert_eq!(post_once(&gateway.base, None, "chat").status, 401);
    let url = "http://modelgate-gateway.modelgate-system:12000/v1/chat/completions";
    assert_eq!(
        content(&curl_from_pod(&team, "curl-by-dns-name", url, "chat")),
        mock_reply(&team, "demo-model", "chat")
    );
    gateway_replicas_report(&system);
    programmed(&team, "modelalias/remote");
}

/// Deletes cluster-scoped objects (`kind/name`) on drop.
struct ClusterObjects(Vec<&'static str>);

impl Drop for ClusterObjects {
    fn drop(&mut self) {
        let mut args = vec!["delete", "--ignore-not-found", "--wait=true"];
        args.extend(self.0.iter().copied());
        let _ = kubectl(args);
    }
}

#[test]
#[ignore = "needs a node: tests/node/run.sh cargo test --test node -- --include-ignored"]
fn rollout_restart_of_the_gateway_under_load_fails_no_request() {
    let _serial = serial();
    // Streams of two seconds: some are always in flight when a gateway pod is told to stop.
    let (release, gateway) = Release::with_samples("mg-node-restart", 20);
    let ns = &release.ns;
    let (_, before) = release.rolled_out();
    let load = steady_load(&gateway);

    ns.kubectl(["rollout", "restart", "deployment/modelgate-gateway"])
        .expect_success();
    let (_, after) = release.rolled_out();
    assert!(
        names(&after).is_disjoint(&names(&before)),
        "every gateway pod was replaced"
    );
    wait_for("the old gateway pods to be gone", ROLLOUT_TIMEOUT, || {
        let left: BTreeSet<String> = names(&pods(ns, GATEWAYS))
            .intersection(&names(&before))
            .cloned()
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    let answered = load.answered();
    let report = load.finish();
    eprintln!("rollout restart under load: answered {answered:?} by the time the old pods were gone; {report:?}");
    report.assert_no_failures(10);
}

#[test]
#[ignore = "needs a node: tests/node/run.sh cargo test --test node -- --include-ignored"]
fn deleting_the_leader_pod_hands_over_and_an_edit_made_meanwhile_is_served() {
    let _serial = serial();
    let (release, gateway) = Release::with_samples("mg-node-failover", 3);
    let ns = &release.ns;
    let (controllers, _) = release.rolled_out();
    let load = steady_load(&gateway);

    let leader = lease_holder(ns, "modelgate-controller");
    assert!(names(&controllers).contains(&leader), "{leader}");
    let standby: BTreeSet<String> = names(&controllers).into_iter().filter(|n| *n != leader).collect();
    ns.kubectl(["delete", "pod", &leader, "--wait=false"]).expect_success();
    // An edit while the leader goes away.
    ns.kubectl([
        "patch",
        "modelalias",
        "chat",
        "--type=merge",
        "-p",
        r#"{"spec":{"target":"mock/after-failover"}}"#,
    ])
    .expect_success();

    wait_for("the edit to be served", ROLLOUT_TIMEOUT, || {
        let answer = post_chat(&gateway, "chat");
        if answer == mock_reply(ns, "after-failover", "chat") {
            Ok(())
        } else {
            Err(answer)
        }
    });
    wait_ready(ns, "modelalias", "chat");
    let new_leader = wait_for("another leader", ROLLOUT_TIMEOUT, || {
        match lease_holder(ns, "modelgate-controller") {
            holder if holder != leader => Ok(holder),
            holder => Err(holder),
        }
    });
    assert!(
        standby.contains(&new_leader) || names(&pods(ns, CONTROLLERS)).contains(&new_leader),
        "the new leader {new_leader} is not a controller pod"
    );
    release.rolled_out();
    load.finish().assert_no_failures(10);
}

/// Uncordons the node on drop, so that a failed drain test does not break the next test.
struct Uncordon(String);

impl Drop for Uncordon {
    fn drop(&mut self) {
        let _ = kubectl(["uncordon", &self.0]);
    }
}

#[test]
#[ignore = "needs a node: tests/node/run.sh cargo test --test node -- --include-ignored"]
fn kubectl_drain_evicts_no_more_pods_than_the_disruption_budgets_allow() {
    let _serial = serial();
    let (release, gateway) = Release::with_samples("mg-node-drain", 3);
    let ns = &release.ns;
    let (controllers, gateways) = release.rolled_out();
    let load = steady_load(&gateway);

    let node = kubectl(["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])
        .expect_success()
        .stdout;
    let _uncordon = Uncordon(node.clone());
    // One node: every evicted pod's replacement stays Pending, so the budgets (one unavailable
    // per Deployment) must stop the drain after one pod of each.
    let drain = Run::from(kubectl([
        "drain",
        &node,
        "--pod-selector=app.kubernetes.io/instance=modelgate",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=30s",
    ]));
    assert!(
        !drain.success,
        "the drain should have been stopped by the budgets: {drain}"
    );
    assert!(
        drain.stderr.contains("disruption budget"),
        "the drain should name the disruption budget: {drain}"
    );
    for (selector, before) in [(GATEWAYS, &gateways), (CONTROLLERS, &controllers)] {
        let now = pods(ns, selector);
        let running: BTreeSet<String> = now
            .iter()
            .filter(|p| p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null())
            .map(name_of)
            .collect();
        assert_eq!(
            running.intersection(&names(before)).count(),
            1,
            "{selector}: one pod evicted, one kept by the budget; running now {running:?}, before {:?}",
            names(before)
        );
    }
    // The gateway Service kept serving through the eviction.
    post_chat(&gateway, "chat");

    Run::from(kubectl(["uncordon", &node])).expect_success();
    release.rolled_out();
    load.finish().assert_no_failures(10);
}

#[test]
#[ignore = "needs a node: tests/node/run.sh cargo test --test node -- --include-ignored"]
fn helm_upgrade_with_changed_values_rolls_every_pod_cleanly_under_load() {
    let _serial = serial();
    let (release, gateway) = Release::with_samples("mg-node-upgrade", 3);
    let ns = &release.ns;
    let (old_controllers, old_gateways) = release.rolled_out();
    let load = steady_load(&gateway);

    let image = modelgate_image();
    let timeout = format!("--timeout={ROLLOUT_TIMEOUT_ARG}");
    helm(&[
        "upgrade",
        "modelgate",
        CHART,
        "--namespace",
        &ns.name,
        "--reuse-values",
        "--set",
        &format!("image.tag={}", image.tag),
        "--set",
        "gateway.replicas=3",
        "--set",
        "logFormat=text",
        "--set",
        "gateway.maxBodyBytes=1048576",
        "--wait",
        &timeout,
    ])
    .expect_success();
    let (controllers, gateways) = release.rolled_out();
    assert_eq!(gateways.len(), 3);
    assert!(names(&controllers).is_disjoint(&names(&old_controllers)));
    assert!(names(&gateways).is_disjoint(&names(&old_gateways)));
    for pod in controllers.iter().chain(&gateways) {
        let args: Vec<&str> = pod["spec"]["containers"][0]["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(args.contains(&"--log-format=text"), "{}: {args:?}", name_of(pod));
    }
    for pod in &gateways {
        let args = pod["spec"]["containers"][0]["args"].to_string();
        assert!(args.contains("--max-body-bytes=1048576"), "{args}");
    }
    let history = helm(&["history", "modelgate", "--namespace", &ns.name, "-o", "json"]).expect_success();
    let history: Value = serde_json::from_str(&history.stdout).expect("helm history JSON");
    assert_eq!(
        history.as_array().and_then(|h| h.last()).map(|r| r["status"].clone()),
        Some("deployed".into())
    );
    load.finish().assert_no_failures(10);
}

/// The chart's Redis image: `MODELGATE_REDIS_IMAGE` (tests/node/run.sh assembles one from
/// Debian's redis-server; with kind, unset, the chart's default is pulled).
fn redis_image() -> Option<String> {
    match std::env::var("MODELGATE_REDIS_IMAGE") {
        Ok(image) if !image.is_empty() => Some(image),
        _ if std::env::var("MODELGATE_TEST_CLUSTER").as_deref() == Ok("kind") => None,
        _ => Some(required_env("MODELGATE_REDIS_IMAGE")),
    }
}

#[test]
#[ignore = "needs a node: tests/node/run.sh cargo test --test node -- --include-ignored"]
fn gateway_replicas_share_a_teams_request_limit_through_the_charts_redis() {
    let _serial = serial();
    let redis = redis_image().map(|image| format!("tenancy.redis.image={image}"));
    let mut sets = vec!["gateway.replicas=2", "tenancy.redis.deploy=true"];
    sets.extend(redis.as_deref());
    let release = Release::install("mg-node-redis", &sets);
    let ns = &release.ns;
    rollout_status(ns, "modelgate-redis");
    let redis_pods = wait_pods_ready(ns, "app.kubernetes.io/component=redis", 1);
    assert_never_restarted(&redis_pods);
    no_failed_pod_creation(ns);
    let gateway = samples(ns, ns, 3);
    let gateways = names(&pods(ns, GATEWAYS));
    assert_eq!(gateways.len(), 2);
    for pod in &pods(ns, GATEWAYS) {
        let args = pod["spec"]["containers"][0]["args"].to_string();
        let url = format!("--usage-store=redis://modelgate-redis.{}.svc:6379", ns.name);
        assert!(args.contains(&url), "{args}");
    }

    // One Service per gateway pod, so that each request goes where the test says.
    let mut pinned = Vec::new();
    for (i, pod) in gateways.iter().enumerate() {
        ns.kubectl(["label", "pod", pod, &format!("mg-test-pin=gw{i}")])
            .expect_success();
        ns.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: gw{i}}}\nspec:\n  selector: {{mg-test-pin: gw{i}}}\n  \
             ports: [{{port: 12000, targetPort: 12000}}]\n"
        ));
        pinned.push(service_url(ns, &format!("gw{i}")));
    }

    // A limit of 6 requests a minute for the team, taken up by both replicas together.
    const LIMIT: u64 = 6;
    ns.kubectl([
        "patch",
        "team",
        "apps",
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{{"limits":{{"requestsPerMinute":{LIMIT}}}}}}}"#),
    ])
    .expect_success();
    wait_ready(ns, "team", "apps");
    // Each replica applies it once it sees the edit: answers then carry the headers.
    let mut allowed = 0;
    for base in &pinned {
        wait_for("the limit to be applied", ROLLOUT_TIMEOUT, || {
            let answer = post_once(base, Some(&gateway.key), "chat");
            if answer.status == 200 && answer.remaining_requests.is_some() {
                allowed += 1;
                Ok(())
            } else {
                Err(format!(
                    "{} {:?} {}",
                    answer.status, answer.remaining_requests, answer.body
                ))
            }
        });
    }
    // Now in turns, until both refuse: the two replicas share one bucket in Redis, so the
    // team gets the limit once (a token more at most, refilled meanwhile), not once per replica.
    let mut refused = [false, false];
    let mut turns = 0;
    while refused != [true, true] {
        turns += 1;
        assert!(turns <= 4 * LIMIT, "{turns} requests and still not limited everywhere");
        let which = turns as usize % 2;
        let answer = post_once(&pinned[which], Some(&gateway.key), "chat");
        match answer.status {
            200 => allowed += 1,
            429 => {
                assert_eq!(answer.body["error"]["type"], "rate_limit_error", "{}", answer.body);
                refused[which] = true;
            }
            other => panic!("{other}: {}", answer.body),
        }
    }
    assert!(
        (LIMIT..=LIMIT + 1).contains(&allowed),
        "the team got {allowed} requests across two replicas for a limit of {LIMIT} a minute"
    );
}

// --- the image ---------------------------------------------------------------------------------

/// The parts of the Dockerfile's final stage that the image must match.
#[derive(Debug, Default)]
struct Recipe {
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    user: String,
    exposed: BTreeSet<String>,
    /// Where the binary is copied.
    binary: String,
}

fn dockerfile_recipe() -> Recipe {
    let text = std::fs::read_to_string(cluster::repo_path("Dockerfile")).expect("read the Dockerfile");
    // Continuation lines joined, comments dropped; only the last stage counts.
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let last_stage = joined.rsplit_once("\nFROM ").map_or(joined.as_str(), |(_, s)| s);
    let mut recipe = Recipe::default();
    for line in last_stage.lines().map(str::trim) {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        let json = |rest: &str| -> Vec<String> {
            serde_json::from_str(rest).unwrap_or_else(|e| panic!("Dockerfile: {instruction} is not JSON ({e}): {rest}"))
        };
        match instruction {
            "ENTRYPOINT" => recipe.entrypoint = json(rest),
            "CMD" => recipe.cmd = json(rest),
            "USER" => recipe.user = rest.trim().to_owned(),
            "EXPOSE" => recipe.exposed = rest.split_whitespace().map(|p| format!("{p}/tcp")).collect(),
            "COPY" if rest.contains("modelgate") => {
                recipe.binary = rest.split_whitespace().last().expect("COPY destination").to_owned()
            }
            _ => {}
        }
    }
    recipe
}

/// An image read from an OCI archive: its config and the files of its layers.
struct ImageContents {
    config: Value,
    /// path -> (type as `tar tv` shows it: '-', 'd', 'l', ...; mode; owner; link target)
    files: BTreeMap<String, (char, String, String, String)>,
    /// The layers' blobs, lowest first.
    layers: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

fn tar(args: &[&str]) -> std::process::Output {
    Command::new("tar").args(args).output().expect("run tar")
}

fn read_image(archive: &Path) -> ImageContents {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = tar(&[
        "-xf",
        archive.to_str().expect("path"),
        "-C",
        dir.path().to_str().expect("path"),
    ]);
    assert!(out.status.success(), "cannot unpack {}: {out:?}", archive.display());
    let blob = |digest: &Value| -> PathBuf {
        let digest = digest.as_str().expect("a digest");
        dir.path()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let json = |path: PathBuf| -> Value {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&bytes).expect("JSON")
    };
    let (config, layers): (Value, Vec<PathBuf>) = if dir.path().join("index.json").exists() {
        // An OCI layout; follow indexes (docker save nests one) to the linux/amd64 manifest.
        let mut manifest = json(dir.path().join("index.json"));
        while let Some(manifests) = manifest["manifests"].as_array().cloned() {
            let chosen = manifests
                .iter()
                .find(|m| m["platform"].is_null() || m["platform"]["architecture"] == "amd64")
                .expect("an amd64 manifest");
            manifest = json(blob(&chosen["digest"]));
        }
        let layers = manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| blob(&l["digest"]));
        (json(blob(&manifest["config"]["digest"])), layers.collect())
    } else {
        // The docker save format of Docker before 25.
        let manifest = json(dir.path().join("manifest.json"));
        let path = |v: &Value| dir.path().join(v.as_str().expect("a path"));
        let layers = manifest[0]["Layers"].as_array().expect("Layers").iter().map(path);
        (json(path(&manifest[0]["Config"])), layers.collect())
    };
    let mut files = BTreeMap::new();
    for layer in &layers {
        let out = tar(&["-tvf", layer.to_str().expect("path")]);
        assert!(out.status.success(), "cannot list {}: {out:?}", layer.display());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // -rwxr-xr-x 0/0   123 1970-01-01 00:00 usr/local/bin/modelgate
            let fields: Vec<&str> = line.split_whitespace().collect();
            let rest = fields[5..].join(" ");
            let (name, target) = rest.split_once(" -> ").unwrap_or((&rest, ""));
            let name = format!("/{}", name.trim_start_matches("./").trim_end_matches('/'));
            let kind = fields[0].chars().next().unwrap_or('-');
            files.insert(
                name,
                (kind, fields[0].to_owned(), fields[1].to_owned(), target.to_owned()),
            );
        }
    }
    ImageContents {
        config,
        files,
        layers,
        _dir: dir,
    }
}

impl ImageContents {
    /// `path` with the image's symbolic links resolved, if it exists.
    fn resolve(&self, path: &str) -> Option<String> {
        let mut resolved = String::new();
        let mut parts: Vec<String> = path
            .split('/')
            .filter(|p| !p.is_empty())
            .rev()
            .map(str::to_owned)
            .collect();
        let mut hops = 0;
        while let Some(part) = parts.pop() {
            let candidate = format!("{resolved}/{part}");
            match self.files.get(&candidate) {
                Some(('l', _, _, target)) => {
                    hops += 1;
                    if hops > 40 {
                        return None;
                    }
                    let base = if target.starts_with('/') {
                        String::new()
                    } else {
                        resolved.clone()
                    };
                    let full = format!("{base}/{target}");
                    parts.extend(full.split('/').filter(|p| !p.is_empty()).rev().map(str::to_owned));
                    resolved.clear();
                }
                Some(_) => resolved = candidate,
                None => return None,
            }
        }
        Some(resolved)
    }

    /// The contents of the (resolved) file `path`, from the highest layer that has it.
    fn read(&self, path: &str) -> Vec<u8> {
        let member = path.trim_start_matches('/');
        for layer in self.layers.iter().rev() {
            let out = tar(&["-xOf", layer.to_str().expect("path"), member]);
            if out.status.success() {
                return out.stdout;
            }
        }
        panic!("{path} is in no layer");
    }
}

#[test]
#[ignore = "needs a node: tests/node/run.sh cargo test --test node -- --include-ignored"]
fn the_assembled_image_agrees_with_the_dockerfile() {
    let recipe = dockerfile_recipe();
    let archive = PathBuf::from(required_env("MODELGATE_IMAGE_ARCHIVE"));
    let image = read_image(&archive);
    let config = &image.config["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(strings(&config["Entrypoint"]), recipe.entrypoint, "ENTRYPOINT");
    assert_eq!(strings(&config["Cmd"]), recipe.cmd, "CMD");
    assert_eq!(config["User"], recipe.user.as_str(), "USER");
    let exposed: BTreeSet<String> = config["ExposedPorts"]
        .as_object()
        .map(|ports| ports.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(exposed, recipe.exposed, "EXPOSE");
    assert_eq!(image.config["os"], "linux");

    // The binary where the Dockerfile copies it: root's, executable, not writable by others.
    let binary = image
        .resolve(&recipe.binary)
        .unwrap_or_else(|| panic!("no {} in the image", recipe.binary));
    let (kind, mode, owner, _) = &image.files[&binary];
    assert_eq!(
        (*kind, mode.as_str(), owner.as_str()),
        ('-', "-rwxr-xr-x", "0/0"),
        "{binary}"
    );
    // Every library it loads, at the path it is loaded from (ldd, run on the image's copy).
    let copy = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(copy.path(), image.read(&binary)).expect("write the binary");
    std::fs::set_permissions(copy.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let ldd = Command::new("ldd").arg(copy.path()).output().expect("run ldd");
    let listing = String::from_utf8_lossy(&ldd.stdout);
    let libraries: Vec<&str> = listing
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.split_once("=> ").map(|(_, p)| p).or(l.starts_with('/').then_some(l))
        })
        .filter_map(|p| p.split_whitespace().next())
        .collect();
    assert!(ldd.status.success() && !libraries.is_empty(), "ldd: {listing}");
    for library in libraries {
        assert!(
            image.resolve(library).is_some(),
            "{library} (needed by {binary}) is not in the image"
        );
    }
    // CA certificates for the platform verifier, and the user's account.
    assert!(
        image.resolve("/etc/ssl/certs/ca-certificates.crt").is_some(),
        "no CA certificates"
    );
    let uid = recipe.user.split(':').next().expect("uid");
    let passwd_path = image.resolve("/etc/passwd").expect("/etc/passwd in the image");
    let passwd = String::from_utf8(image.read(&passwd_path)).expect("UTF-8 /etc/passwd");
    assert!(
        passwd.lines().any(|l| l.split(':').nth(2) == Some(uid)),
        "/etc/passwd has no user {uid}: {passwd}"
    );
    // Like distroless: no shell to exec into.
    assert!(image.resolve("/bin/sh").is_none(), "the image has a shell");
}
