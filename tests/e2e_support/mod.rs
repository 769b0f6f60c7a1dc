//! Real `modelgate controller` and `modelgate gateway` processes, running as the
//! ServiceAccounts of `config/rbac/` (tokens from the real apiserver), scoped to one test by a
//! label selector so tests run in parallel against one control plane.
#![allow(dead_code)] // each test uses a different part of this module

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

use crate::cluster::{kubectl, kubectl_stdin, repo_path, wait_for, Namespace, DEFAULT_TIMEOUT};

/// The label every object of one test carries; the processes select on it.
pub const TEST_LABEL: &str = "modelgate.dev/e2e";
/// How long a test gateway's report stands without renewal (a killed gateway stops counting
/// after this).
pub const REPLICA_LEASE: &str = "10s";

/// Applies `config/rbac/` once per test process.
pub fn ensure_rbac() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        crate::cluster::ensure_crds();
        let rbac = repo_path("config/rbac");
        kubectl([
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            rbac.to_str().expect("path"),
        ])
        .expect_success();
    });
}

/// A kubeconfig that authenticates as `system:serviceaccount:modelgate-system:<account>`.
/// Made once per account and test process; tests (threads) that ask at once wait for it.
pub fn service_account_kubeconfig(account: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static MAKING: Mutex<()> = Mutex::new(());
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    let path = dir.path().join(format!("{account}.kubeconfig"));
    let _making = MAKING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if path.exists() {
        return path;
    }
    ensure_rbac();
    let token = kubectl(["create", "token", account, "-n", "modelgate-system", "--duration", "2h"]).expect_success();
    let admin = kubectl(["config", "view", "--raw", "--minify", "-o", "json"])
        .expect_success()
        .json();
    let cluster = &admin["clusters"][0]["cluster"];
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token.stdout.trim()}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": account}}],
        "current-context": "e2e",
    });
    let tmp = dir.path().join(format!(".{account}.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_string(&config).expect("json")).expect("write kubeconfig");
    std::fs::rename(&tmp, &path).expect("rename kubeconfig");
    path
}

/// The apiserver's address, from the test kubeconfig.
pub fn apiserver_addr() -> SocketAddr {
    let url = apiserver_url();
    let host = url.host_str().expect("the apiserver URL has a host");
    let port = url.port_or_known_default().expect("the apiserver URL has a port");
    (host, port)
        .to_socket_addrs()
        .expect("resolve the apiserver's host")
        .next()
        .expect("the apiserver's host has an address")
}

fn apiserver_url() -> url::Url {
    let admin = kubectl(["config", "view", "--raw", "--minify", "-o", "json"])
        .expect_success()
        .json();
    let server = admin["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("the kubeconfig names a server");
    url::Url::parse(server).expect("the apiserver URL parses")
}

/// Like [`service_account_kubeconfig`], but reaching the apiserver at `addr` (a [`Forwarder`]).
/// The certificate is still checked against the apiserver's own host name.
pub fn service_account_kubeconfig_via(account: &str, addr: SocketAddr) -> PathBuf {
    let original = service_account_kubeconfig(account);
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&original).expect("read kubeconfig")).expect("kubeconfig JSON");
    let cluster = &mut config["clusters"][0]["cluster"];
    cluster["server"] = serde_json::Value::from(format!("https://{addr}"));
    let host = apiserver_url().host_str().unwrap_or_default().to_string();
    if host != addr.ip().to_string() {
        cluster["tls-server-name"] = serde_json::Value::from(host);
    }
    let path = original.with_file_name(format!("{account}-via-{}.kubeconfig", addr.port()));
    std::fs::write(&path, serde_json::to_string(&config).expect("json")).expect("write kubeconfig");
    path
}

/// A TCP forwarder on 127.0.0.1 to the apiserver, standing in for the network between a
/// process and the apiserver: [`Forwarder::cut`] closes every open connection and closes new
/// ones on arrival (counting them), [`Forwarder::restore`] forwards again, on the same port.
pub struct Forwarder {
    pub addr: SocketAddr,
    state: Arc<Mutex<ForwarderState>>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct ForwarderState {
    cut: bool,
    /// Connections forwarded so far.
    forwarded: usize,
    /// Connections closed on arrival while cut.
    refused: usize,
    open: Vec<AbortHandle>,
}

impl Forwarder {
    /// Starts forwarding 127.0.0.1:0 to `target`. Needs a multi-threaded runtime: the test
    /// body may block (kubectl) while connections are forwarded.
    pub async fn start(target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the forwarder");
        let addr = listener.local_addr().expect("the forwarder's address");
        let state = Arc::new(Mutex::new(ForwarderState::default()));
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut state = shared.lock().expect("forwarder state");
                if state.cut {
                    state.refused += 1;
                    drop(inbound);
                    continue;
                }
                state.forwarded += 1;
                state.open.retain(|task| !task.is_finished());
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                state.open.push(task.abort_handle());
            }
        });
        Forwarder { addr, state, accept }
    }

    /// Closes every open connection; new ones are closed on arrival until [`Forwarder::restore`].
    pub fn cut(&self) {
        let mut state = self.state.lock().expect("forwarder state");
        state.cut = true;
        for task in state.open.drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.state.lock().expect("forwarder state").cut = false;
    }

    /// Connections forwarded so far.
    pub fn forwarded(&self) -> usize {
        self.state.lock().expect("forwarder state").forwarded
    }

    /// Connections that arrived while cut.
    pub fn refused(&self) -> usize {
        self.state.lock().expect("forwarder state").refused
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// A running modelgate process; killed (by its pid) when dropped.
pub struct Proc {
    child: Child,
    pub api: Option<String>,
    pub admin: String,
    log: Arc<Mutex<String>>,
    /// Copies stderr into `log`; done once the process has exited and its output is read.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Starts `modelgate ARGS` as `account`, waiting for its start-up log line.
    pub fn start(account: &str, args: &[&str]) -> Proc {
        Proc::start_with_kubeconfig(&service_account_kubeconfig(account), args)
    }

    /// Starts `modelgate ARGS` with `KUBECONFIG=kubeconfig`, waiting for its start-up log line.
    pub fn start_with_kubeconfig(kubeconfig: &Path, args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn,modelgate=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start modelgate");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("admin=http://") {
                    let _ = tx.send(line.clone());
                }
                sink.lock().expect("log").push_str(&format!("{line}\n"));
            }
        });
        let line = rx
            .recv_timeout(DEFAULT_TIMEOUT)
            .unwrap_or_else(|_| panic!("modelgate {args:?} did not start:\n{}", log.lock().expect("log")));
        let field = |name: &str| {
            line.find(&format!("{name}=http://")).map(|start| {
                line[start + name.len() + 8..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
        };
        Proc {
            child,
            api: field("api"),
            admin: field("admin").expect("admin address"),
            log,
            reader: Some(reader),
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.exited();
    }

    /// SIGTERM, as Kubernetes stops a pod, and wait for the exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.exited();
    }

    /// Waits for the exit and for the last of its log to be read.
    fn exited(&mut self) {
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// A metric's value from the admin port (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        let text = reqwest::blocking_get(&format!("http://{}/metrics", self.admin));
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok()))
            .unwrap_or(0.0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of modelgate (pid {}) ---\n{}", self.child.id(), self.log());
        }
    }
}

/// Minimal blocking HTTP over std, for polling admin ports from sync code.
mod reqwest {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    pub fn blocking_get(url: &str) -> String {
        let rest = url.strip_prefix("http://").expect("http url");
        let (host, path) = rest
            .split_once('/')
            .map(|(h, p)| (h, format!("/{p}")))
            .unwrap_or((rest, "/".to_string()));
        let Ok(mut stream) = TcpStream::connect(host) else {
            return String::new();
        };
        let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
        let mut body = String::new();
        let _ = stream.read_to_string(&mut body);
        body.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }
}

/// One test's world: a namespace, its label, and the processes serving it.
pub struct Stack {
    pub ns: Namespace,
    pub label: String,
}

impl Stack {
    pub fn new(prefix: &str) -> Stack {
        ensure_rbac();
        let ns = Namespace::new(prefix);
        let label = ns.name().to_string();
        Stack { ns, label }
    }

    pub fn selector(&self) -> String {
        format!("{TEST_LABEL}={}", self.label)
    }

    /// A controller for this test's objects, as the controller ServiceAccount.
    pub fn controller(&self, identity: &str) -> Proc {
        self.controller_with(identity, &[])
    }

    /// [`Stack::controller`] with `extra` arguments (e.g. `--namespace NS`). Controllers of one
    /// stack share a Lease, named after its namespace.
    pub fn controller_with(&self, identity: &str, extra: &[&str]) -> Proc {
        let selector = self.selector();
        let lease = format!("lease-{}", self.ns.name());
        let mut args = vec![
            "controller",
            "--selector",
            &selector,
            "--admin-listen",
            "127.0.0.1:0",
            "--lease-namespace",
            "modelgate-system",
            "--lease-name",
            &lease,
            "--identity",
            identity,
        ];
        args.extend_from_slice(extra);
        Proc::start("modelgate-controller", &args)
    }

    /// A gateway for this test's aliases, as the gateway ServiceAccount, once it is ready.
    pub fn gateway(&self) -> Proc {
        self.gateway_with(&service_account_kubeconfig("modelgate-gateway"), &[])
    }

    /// [`Stack::gateway`] with its own kubeconfig (e.g. from [`service_account_kubeconfig_via`])
    /// and `extra` arguments (e.g. `--namespace NS`). The gateway runs on this host, not in a
    /// pod, and the fake upstreams listen on loopback, which a gateway reading the cluster
    /// refuses by default: it is allowed here.
    pub fn gateway_with(&self, kubeconfig: &Path, extra: &[&str]) -> Proc {
        self.gateway_with_egress(kubeconfig, &["--allow-upstream-cidr", "127.0.0.0/8"], extra)
    }

    /// [`Stack::gateway_with`] with these egress arguments instead of allowing loopback.
    pub fn gateway_with_egress(&self, kubeconfig: &Path, egress: &[&str], extra: &[&str]) -> Proc {
        let selector = self.selector();
        let mut args = vec![
            "gateway",
            "--selector",
            &selector,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            // Its report of what it serves goes where the controllers read them.
            "--replica-namespace",
            "modelgate-system",
        ];
        if !extra.contains(&"--replica-lease") {
            args.extend(["--replica-lease", REPLICA_LEASE]);
        }
        args.extend_from_slice(egress);
        // In a cluster the gateway asks for keys by default; tests that do not use them say so.
        if !extra.iter().any(|a| a.starts_with("--auth")) {
            args.extend(["--auth", "none"]);
        }
        args.extend_from_slice(extra);
        let gateway = Proc::start_with_kubeconfig(kubeconfig, &args);
        let ready = format!("http://{}/readyz", gateway.admin);
        wait_for("the gateway's first sync", DEFAULT_TIMEOUT, || {
            let body = reqwest::blocking_get(&ready);
            if body.starts_with("ready") {
                Ok(())
            } else {
                Err(body)
            }
        });
        gateway
    }

    /// Applies YAML in this namespace, labelling every object for this test.
    pub fn apply(&self, yaml: &str) {
        let mut items = Vec::new();
        for document in serde_yaml_ng::Deserializer::from_str(yaml) {
            let mut value: serde_json::Value = serde::Deserialize::deserialize(document).expect("test YAML");
            if value.is_null() {
                continue;
            }
            value["metadata"]["labels"][TEST_LABEL] = serde_json::Value::from(self.label.clone());
            items.push(value);
        }
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        kubectl_stdin(["apply", "-n", self.ns.name(), "-f", "-"], &list.to_string()).expect_success();
    }

    /// `kubectl patch modelalias NAME --type merge -p PATCH`.
    pub fn patch_alias(&self, name: &str, patch: &str) {
        self.ns
            .kubectl(["patch", "modelalias", name, "--type", "merge", "-p", patch])
            .expect_success();
    }

    /// The object as JSON.
    pub fn get(&self, kind: &str, name: &str) -> serde_json::Value {
        self.ns
            .kubectl(["get", kind, name, "-o", "json"])
            .expect_success()
            .json()
    }

    /// Waits until the alias's condition `type_` has `status` at the object's current generation.
    pub fn wait_condition(&self, kind: &str, name: &str, type_: &str, status: &str) -> serde_json::Value {
        wait_for(&format!("{kind} {name} {type_}={status}"), DEFAULT_TIMEOUT, || {
            let out = self.ns.kubectl(["get", kind, name, "-o", "json"]);
            if !out.success() {
                return Err(out.to_string());
            }
            let object = out.json();
            let generation = object["metadata"]["generation"].clone();
            let found = object["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned());
            match found {
                Some(c) if c["status"] == status && c["observedGeneration"] == generation => Ok(object),
                other => {
                    let raw = kubectl([
                        "get",
                        "--raw",
                        &format!(
                            "/apis/modelgate.dev/v1alpha1/namespaces/{}/modelaliases",
                            self.ns.name()
                        ),
                    ]);
                    Err(format!(
                        "{other:?} at generation {generation}; object: {object}; raw list: {}",
                        raw.stdout
                    ))
                }
            }
        })
    }
}

/// The `events.k8s.io/v1` Events about one object, oldest first, as (type, reason, note).
pub fn events_about(ns: &Namespace, kind: &str, name: &str) -> Vec<(String, String, String)> {
    let list = ns
        .kubectl(["get", "events.events.k8s.io", "-o", "json"])
        .expect_success()
        .json();
    let mut events: Vec<&serde_json::Value> = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|e| e["regarding"]["kind"] == kind && e["regarding"]["name"] == name)
                .collect()
        })
        .unwrap_or_default();
    events.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_string());
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    events
        .into_iter()
        .map(|e| (text(&e["type"]), text(&e["reason"]), text(&e["note"])))
        .collect()
}

/// Waits until the Events about an object have exactly these (type, reason) in this order.
pub fn wait_events(ns: &Namespace, kind: &str, name: &str, expected: &[(&str, &str)]) -> Vec<(String, String, String)> {
    wait_for(
        &format!("Events {expected:?} about {kind} {name}"),
        DEFAULT_TIMEOUT,
        || {
            let events = events_about(ns, kind, name);
            let seen: Vec<(&str, &str)> = events.iter().map(|(t, r, _)| (t.as_str(), r.as_str())).collect();
            if seen == expected {
                Ok(events)
            } else {
                Err(format!("seen {events:?}"))
            }
        },
    )
}

/// The condition `type_` of an object.
pub fn condition(object: &serde_json::Value, type_: &str) -> serde_json::Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(serde_json::Value::Null)
}

pub fn secret(name: &str, key: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  labels: {{modelgate.dev/credential: \"true\"}}\nstringData: {{apiKey: {key}}}\n"
    )
}

pub fn provider(name: &str, base_url: &str, secret: &str) -> String {
    format!(
        "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata:\n  name: {name}\nspec:\n  type: openai-compatible\n  baseUrl: {base_url}\n  apiKey: {{secretRef: {{name: {secret}, key: apiKey}}}}\n"
    )
}

pub fn alias(name: &str, spec: &str) -> String {
    format!("---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata:\n  name: {name}\nspec: {spec}\n")
}

/// Waits for a duration of this long with nothing to wait on; used only to watch that
/// something does NOT happen over an interval.
pub fn observe_for(interval: Duration) {
    std::thread::sleep(interval);
}
