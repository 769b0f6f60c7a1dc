//! Support for `tests/node.rs`: the chart and `config/default` installed for real on a
//! cluster that runs pods (`tests/node/run.sh`, or kind through `tests/kind/run.sh`), the
//! sample objects, requests from this process through Service ClusterIPs and from pods by
//! DNS name, and diagnostics when a test fails.
#![allow(dead_code)] // tests use different parts

pub mod load;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

pub use crate::cluster::{helm, Run};
use crate::cluster::{kubectl, kubectl_stdin, repo_path, wait_for, Output};

/// How long a rollout, an install or a namespace deletion may take.
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(240);
/// `kubectl rollout status --timeout` and `helm --timeout`, as text.
pub const ROLLOUT_TIMEOUT_ARG: &str = "240s";

/// An environment variable `tests/node/run.sh` (or `tests/kind/run.sh`) sets; panics with
/// instructions when it is missing.
pub fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: the node tests run pods and need the images and cluster that \
             tests/node/run.sh provides:\n    tests/node/run.sh cargo test --test node -- --include-ignored\n\
             (with Docker and kind: tests/kind/run.sh cargo test --test node -- --include-ignored)"
        ),
    }
}

/// An image reference split into repository and tag.
pub struct Image {
    pub reference: String,
    pub repository: String,
    pub tag: String,
}

impl Image {
    pub fn from_env(name: &str) -> Image {
        let reference = required_env(name);
        let slash = reference.rfind('/').map_or(0, |i| i + 1);
        let colon = reference[slash..]
            .rfind(':')
            .map(|i| i + slash)
            .unwrap_or_else(|| panic!("{name}={reference} has no tag"));
        Image {
            repository: reference[..colon].to_owned(),
            tag: reference[colon + 1..].to_owned(),
            reference,
        }
    }
}

pub fn modelgate_image() -> Image {
    Image::from_env("MODELGATE_IMAGE")
}

// --- namespaces -------------------------------------------------------------------------------

/// A namespace that enforces Pod Security `restricted`, deleted (and waited for) on drop, with
/// its pods, events and logs printed first when the test failed.
pub struct TestNamespace {
    pub name: String,
    dumped: std::cell::Cell<bool>,
}

impl TestNamespace {
    /// Creates `name` (a fixed name: tests run one at a time, see tests/node.rs).
    pub fn create(name: &str) -> TestNamespace {
        let yaml = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    \
             pod-security.kubernetes.io/enforce: restricted\n    \
             pod-security.kubernetes.io/enforce-version: latest\n"
        );
        kubectl_stdin(["apply", "--server-side", "-f", "-"], &yaml).expect_success();
        TestNamespace {
            name: name.to_owned(),
            dumped: std::cell::Cell::new(false),
        }
    }

    pub fn kubectl<const N: usize>(&self, args: [&str; N]) -> Output {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend(args);
        kubectl(all)
    }

    pub fn apply(&self, yaml: &str) {
        kubectl_stdin(
            [
                "apply",
                "--server-side",
                "--field-manager=modelgate-node-test",
                "-n",
                &self.name,
                "-f",
                "-",
            ],
            yaml,
        )
        .expect_success();
    }

    /// Prints what a person debugging a failed test would look at first (once).
    pub fn dump(&self) {
        if self.dumped.replace(true) {
            return;
        }
        let show = |args: &[&str]| {
            let mut all = vec!["-n", self.name.as_str()];
            all.extend(args);
            let out = kubectl(&all);
            eprintln!("--- kubectl {} ---\n{}{}", all.join(" "), out.stdout, out.stderr);
        };
        show(&["get", "all,leases,pdb,llmproviders,modelaliases", "-o", "wide"]);
        show(&[
            "get",
            "events",
            "--sort-by=.lastTimestamp",
            "-o",
            "custom-columns=LAST:.lastTimestamp,TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message",
        ]);
        let pods = self.kubectl(["get", "pods", "-o", "name"]);
        for pod in pods.stdout.lines() {
            show(&["logs", pod, "--all-containers", "--tail=40", "--prefix"]);
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        let timeout = format!("--timeout={ROLLOUT_TIMEOUT_ARG}");
        let out = kubectl([
            "delete",
            "namespace",
            &self.name,
            "--ignore-not-found",
            "--wait=true",
            &timeout,
        ]);
        if !out.success() {
            eprintln!("could not delete namespace {}: {out}", self.name);
        }
    }
}

// --- workloads --------------------------------------------------------------------------------

/// `kubectl rollout status deployment/NAME`: every replica of the latest template updated,
/// available (its readiness probe passing), and no old one left.
#[track_caller]
pub fn rollout_status(ns: &TestNamespace, deployment: &str) {
    let target = format!("deployment/{deployment}");
    let timeout = format!("--timeout={ROLLOUT_TIMEOUT_ARG}");
    Run::from(ns.kubectl(["rollout", "status", &target, &timeout])).expect_success();
}

/// The pods matching `selector`, as JSON objects.
pub fn pods(ns: &TestNamespace, selector: &str) -> Vec<Value> {
    ns.kubectl(["get", "pods", "-l", selector, "-o", "json"])
        .expect_success()
        .json()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn name_of(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or_default().to_owned()
}

/// Waits until exactly `count` pods match `selector`, all Running, Ready and not being deleted.
pub fn wait_pods_ready(ns: &TestNamespace, selector: &str, count: usize) -> Vec<Value> {
    wait_for(&format!("{count} ready pods {selector}"), ROLLOUT_TIMEOUT, || {
        let pods = pods(ns, selector);
        let ready = pods
            .iter()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["phase"] == "Running"
                    && p["status"]["conditions"]
                        .as_array()
                        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .count();
        if ready == count && pods.len() == count {
            Ok(pods)
        } else {
            Err(format!(
                "{ready} ready of {}: {:?}",
                pods.len(),
                pods.iter().map(name_of).collect::<Vec<_>>()
            ))
        }
    })
}

/// Every container of every pod is ready and never restarted (no failed liveness probe, no
/// crash).
#[track_caller]
pub fn assert_never_restarted(pods: &[Value]) {
    for pod in pods {
        for status in pod["status"]["containerStatuses"].as_array().into_iter().flatten() {
            assert_eq!(status["ready"], true, "{} is not ready: {status}", name_of(pod));
            assert_eq!(status["restartCount"], 0, "{} restarted: {status}", name_of(pod));
        }
    }
}

/// A Service's ClusterIP and its port named `port`, as `http://IP:PORT`.
pub fn service_url(ns: &TestNamespace, service: &str) -> String {
    let svc = ns
        .kubectl(["get", "service", service, "-o", "json"])
        .expect_success()
        .json();
    let ip = svc["spec"]["clusterIP"].as_str().expect("a ClusterIP").to_owned();
    let port = svc["spec"]["ports"][0]["port"].as_u64().expect("a port");
    format!("http://{ip}:{port}")
}

/// The holder of a Lease, once it has one.
pub fn lease_holder(ns: &TestNamespace, lease: &str) -> String {
    wait_for(&format!("a holder of Lease {lease}"), ROLLOUT_TIMEOUT, || {
        let out = ns.kubectl(["get", "lease", lease, "-o", "jsonpath={.spec.holderIdentity}"]);
        match out.stdout.trim() {
            holder if out.success() && !holder.is_empty() => Ok(holder.to_owned()),
            _ => Err(out.to_string()),
        }
    })
}

// --- the sample world -------------------------------------------------------------------------

/// The test upstream (`MODELGATE_UPSTREAM_IMAGE`: tests/node/cmd/upstream) as a Deployment
/// and Service named `upstream`, streaming `chunks` chunks 100 ms apart.
pub fn upstream_yaml(chunks: u32) -> String {
    let image = required_env("MODELGATE_UPSTREAM_IMAGE");
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: upstream}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: upstream}}}}
  template:
    metadata: {{labels: {{app: upstream}}}}
    spec:
      securityContext: {{runAsNonRoot: true, runAsUser: 65532, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
        - name: upstream
          image: {image}
          args: [-listen, ":8080", -chunks, "{chunks}", -interval, 100ms]
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe: {{httpGet: {{path: /healthz, port: http}}, periodSeconds: 1}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata: {{name: upstream}}
spec:
  selector: {{app: upstream}}
  ports: [{{name: http, port: 8080, targetPort: http}}]
"#
    )
}

/// A `mock` provider and the upstream one (reached by its Service's DNS name), and aliases:
/// `chat` -> mock/demo-model, `remote` -> upstream/echo.
pub fn samples_yaml(ns: &TestNamespace) -> String {
    format!(
        r#"apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {{name: mock}}
spec: {{type: mock}}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {{name: upstream}}
spec:
  type: openai-compatible
  baseUrl: http://upstream.{ns}.svc.cluster.local:8080/v1
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {{name: chat}}
spec: {{target: mock/demo-model}}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {{name: remote}}
spec: {{target: upstream/echo}}
---
apiVersion: modelgate.dev/v1alpha1
kind: AccessGroup
metadata: {{name: apps}}
spec: {{aliases: [chat, remote]}}
---
apiVersion: modelgate.dev/v1alpha1
kind: Team
metadata: {{name: apps}}
spec: {{displayName: Applications, accessGroups: [apps]}}
"#,
        ns = ns.name
    )
}

/// A client key for Team `apps` of `ns`, made as the README says (`modelgate keys create`): the
/// Secret with its hash is applied to `ns`, and the key itself kept by the application, in a
/// Secret `app-client-key` (field `key`) for pods. Returns the key.
pub fn client_key(ns: &TestNamespace) -> String {
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["keys", "create", "--team", "apps", "-n", &ns.name, "--name", "apps-key"])
        .output()
        .expect("run modelgate keys create");
    let stderr = String::from_utf8_lossy(&made.stderr);
    assert!(made.status.success(), "modelgate keys create: {stderr}");
    // The key is alone on the last line of stderr that holds one.
    let key = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with("mg-") && !line.contains(' '))
        .unwrap_or_else(|| panic!("no key in: {stderr}"))
        .to_owned();
    let manifest = String::from_utf8_lossy(&made.stdout);
    assert!(!manifest.contains(&key), "the key's Secret holds only its hash");
    ns.apply(&manifest);
    let app_secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "app-client-key"},
        "stringData": {"key": key},
    });
    ns.apply(&app_secret.to_string());
    key
}

/// Where requests go: the gateway Service (`http://CLUSTER-IP:PORT`) and the client key they
/// carry (`Authorization: Bearer`), as the installed gateways ask for one.
#[derive(Clone)]
pub struct Gateway {
    pub base: String,
    pub key: String,
}

impl Gateway {
    /// The Service `modelgate-gateway` of `ns`, called with `key`.
    pub fn service(ns: &TestNamespace, key: &str) -> Gateway {
        Gateway {
            base: service_url(ns, "modelgate-gateway"),
            key: key.to_owned(),
        }
    }
}

/// Waits until `kind/name` has condition Ready=True for its current generation.
pub fn wait_ready(ns: &TestNamespace, kind: &str, name: &str) -> Value {
    wait_for(&format!("{kind} {name} Ready"), ROLLOUT_TIMEOUT, || {
        let out = ns.kubectl(["get", kind, name, "-o", "json"]);
        if !out.success() {
            return Err(out.to_string());
        }
        let object = out.json();
        let ready = object["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .is_some_and(|c| c["status"] == "True" && c["observedGeneration"] == object["metadata"]["generation"]);
        if ready {
            Ok(object)
        } else {
            Err(object["status"].to_string())
        }
    })
}

/// The body of a chat request for `model`.
pub fn chat_body(model: &str, stream: bool) -> String {
    serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

/// Runs curl (`MODELGATE_CURL_IMAGE`) in a pod of `ns` that posts a chat request for `model` to
/// `url` with the client key of [`client_key`] (from its Secret, as an application would);
/// returns what it printed. The pod is deleted afterwards.
pub fn curl_from_pod(ns: &TestNamespace, pod: &str, url: &str, model: &str) -> String {
    let image = required_env("MODELGATE_CURL_IMAGE");
    let body = chat_body(model, false);
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "curl",
                "image": image,
                // The kubelet expands $(CLIENT_KEY) from the container's environment.
                "args": ["-sS", "--fail-with-body", "--max-time", "30", "--retry", "0",
                         "-H", "content-type: application/json",
                         "-H", "authorization: Bearer $(CLIENT_KEY)", "-d", body, url],
                "env": [{"name": "CLIENT_KEY",
                         "valueFrom": {"secretKeyRef": {"name": "app-client-key", "key": "key"}}}],
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    });
    ns.apply(&manifest.to_string());
    let phase = wait_for(&format!("pod {pod} to finish"), ROLLOUT_TIMEOUT, || {
        let out = ns.kubectl(["get", "pod", pod, "-o", "jsonpath={.status.phase}"]);
        match out.stdout.trim() {
            phase @ ("Succeeded" | "Failed") => Ok(phase.to_owned()),
            other => Err(format!("phase {other:?}")),
        }
    });
    let logs = ns.kubectl(["logs", pod]).expect_success().stdout;
    ns.kubectl(["delete", "pod", pod, "--wait=false"]).expect_success();
    assert_eq!(phase, "Succeeded", "curl {url} in a pod failed: {logs}");
    logs
}

/// Chat completions posted from this process to a gateway Service.
struct Chat {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: String,
    key: String,
}

impl Chat {
    fn new(gateway: &Gateway) -> Chat {
        Chat {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            url: format!("{}/v1/chat/completions", gateway.base),
            key: gateway.key.clone(),
        }
    }

    /// The answer's content, or what went wrong.
    fn post(&self, model: &str) -> Result<String, String> {
        self.runtime
            .block_on(load::plain(&self.client, &self.url, &self.key, model))
    }
}

/// A chat completion for `model` posted to `gateway`; its content. Panics on any failure.
#[track_caller]
pub fn post_chat(gateway: &Gateway, model: &str) -> String {
    let chat = Chat::new(gateway);
    chat.post(model)
        .unwrap_or_else(|e| panic!("POST {} ({model}): {e}", chat.url))
}

/// [`post_chat`], retried until it succeeds: for the first request after a Service's
/// endpoints change, which kube-proxy applies a moment later, or after a key was made, which
/// the gateways learn from their watch.
pub fn served(gateway: &Gateway, model: &str) -> String {
    let chat = Chat::new(gateway);
    wait_for(
        &format!("{model} to be served at {}", chat.url),
        ROLLOUT_TIMEOUT,
        || chat.post(model),
    )
}

/// One answer of [`post_once`].
pub struct Answer {
    pub status: u16,
    /// `x-ratelimit-remaining-requests`, when the team has a request limit.
    pub remaining_requests: Option<u64>,
    pub body: Value,
}

/// One chat request for `model` to `base` (`http://IP:PORT`), with `key` if any, on a new
/// connection.
pub fn post_once(base: &str, key: Option<&str>, model: &str) -> Answer {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .post(format!("{base}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(chat_body(model, false))
            .timeout(Duration::from_secs(30));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("the gateway answered");
        let remaining_requests = response
            .headers()
            .get("x-ratelimit-remaining-requests")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Answer {
            status: response.status().as_u16(),
            remaining_requests,
            body: response.json().await.unwrap_or(Value::Null),
        }
    })
}

/// The first choice's message content of a chat completion.
pub fn content(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    value["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {body}"))
        .to_owned()
}

/// What the mock provider `mock` of namespace `ns` answers for alias `alias` -> mock/`model`.
pub fn mock_reply(ns: &TestNamespace, model: &str, alias: &str) -> String {
    format!(
        "Hello from the modelgate mock provider {}/mock (model {model}, alias {alias}).",
        ns.name
    )
}

/// `kubectl kustomize`-able directory (below the target directory) with `config/default` as
/// its base and the local image.
pub fn config_default_overlay(image: &Image) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-config-default");
    std::fs::create_dir_all(&dir).expect("create the overlay directory");
    let base = repo_path("config/default");
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\nimages:\n  \
         - name: ghcr.io/modelgate/modelgate\n    newName: {}\n    newTag: {}\n",
        relative(&dir, &base).display(),
        image.repository,
        image.tag
    );
    std::fs::write(dir.join("kustomization.yaml"), kustomization).expect("write kustomization.yaml");
    dir
}

/// `to` relative to `from` (kustomize wants relative paths for its bases).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part);
    }
    path
}
