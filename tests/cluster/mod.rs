//! Support for tests that need a real Kubernetes API server.
//!
//! Include it from an integration test with `mod cluster;`. The cluster is
//! whatever `KUBECONFIG` points at: the throwaway control plane that
//! `tests/controlplane/run.sh` starts, or a kind cluster (`tests/kind/run.sh`).
//! Everything goes through the real `kubectl`, the way a user would drive it.
//!
//! Tests run in parallel against one API server, so each one works in a
//! namespace of its own ([`Namespace::new`]).
#![allow(dead_code)] // each test crate uses a different part of this module

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long [`wait_for`] callers normally give the API server to catch up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root, for paths like `crds/` and `config/samples/`.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The kubeconfig the tests use; panics with instructions when it is unset.
pub fn kubeconfig() -> &'static str {
    static KUBECONFIG: OnceLock<String> = OnceLock::new();
    KUBECONFIG.get_or_init(|| match std::env::var("KUBECONFIG") {
        Ok(path) if !path.is_empty() => path,
        _ => panic!(
            "KUBECONFIG is not set: these tests need a Kubernetes API server. \
             Run them through tests/controlplane/run.sh, which starts a local one, e.g.\n    \
             tests/controlplane/run.sh cargo test -- --include-ignored\n\
             or point KUBECONFIG at a test cluster of your own (for kind: tests/kind/run.sh)."
        ),
    })
}

/// What one `kubectl` invocation did.
pub struct Output {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics, showing the command and everything it printed, unless it succeeded.
    #[track_caller]
    pub fn expect_success(self) -> Self {
        assert!(self.success(), "expected success from {self}");
        self
    }

    /// Panics, showing the command and everything it printed, unless it failed.
    #[track_caller]
    pub fn expect_failure(self) -> Self {
        assert!(!self.success(), "expected failure from {self}");
        self
    }

    /// stdout parsed as JSON (for `-o json`).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}) in {self}"))
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "`kubectl {}` ({})", self.args.join(" "), self.status)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

/// Runs `kubectl ARGS...` against the test cluster and captures its output.
pub fn kubectl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    run_kubectl(args, None)
}

/// Like [`kubectl`], with `stdin` piped in (for `-f -`).
pub fn kubectl_stdin<I, S>(args: I, stdin: &str) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    run_kubectl(args, Some(stdin))
}

fn run_kubectl<I, S>(args: I, stdin: Option<&str>) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut command = Command::new("kubectl");
    command
        .args(&args)
        .env("KUBECONFIG", kubeconfig())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run kubectl ({e}); tests/controlplane/run.sh puts a matching one on PATH"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(input.as_bytes()).expect("writing kubectl's stdin");
    }
    let out = child.wait_with_output().expect("waiting for kubectl");
    Output {
        args,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Polls `probe` until it returns `Ok`, for at most `timeout`. `Err` carries
/// what was observed last, which the panic message shows on time-out.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last observed: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// A namespace of the test's own, deleted (without waiting) when dropped.
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates a namespace named `mg-<prefix>-<unique suffix>`.
    #[track_caller]
    pub fn new(prefix: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let suffix = format!(
            "{:x}-{:x}-{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(63 - 4 - suffix.len())
            .collect();
        let name = format!("mg-{}-{suffix}", prefix.trim_matches('-'));
        kubectl(["create", "namespace", &name]).expect_success();
        Namespace { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `kubectl -n <this namespace> ARGS...`
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut all = vec!["-n".to_owned(), self.name.clone()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        kubectl(all)
    }

    /// `kubectl apply -n <this namespace> -f -` with `yaml` on stdin.
    pub fn apply(&self, yaml: &str) -> Output {
        kubectl_stdin(["apply", "-n", &self.name, "-f", "-"], yaml)
    }

    /// `kubectl apply --server-side -n <this namespace> -f -` with `yaml` on stdin.
    pub fn apply_server_side(&self, yaml: &str) -> Output {
        kubectl_stdin(["apply", "--server-side", "-n", &self.name, "-f", "-"], yaml)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Best effort, and no waiting: the local control plane has no
        // namespace controller, so the namespace would stay Terminating anyway.
        let _ = kubectl(["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"]);
    }
}

/// The CRDs' full names (`<plural>.<group>`).
pub const CRD_NAMES: [&str; 5] = [
    "gatewayreplicas.modelgate.dev",
    "llmproviders.modelgate.dev",
    "modelaliases.modelgate.dev",
    "teams.modelgate.dev",
    "accessgroups.modelgate.dev",
];

/// Installs `crds/` with server-side apply and waits until every CRD is
/// Established. Idempotent and safe to call from parallel tests and
/// processes; runs once per test process.
pub fn ensure_crds() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        install_crds().expect_success();
        wait_crds_established();
    });
}

/// `kubectl apply --server-side --force-conflicts -f crds/`
pub fn install_crds() -> Output {
    let crds = repo_path("crds");
    kubectl([
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crds.to_str().expect("repository path is UTF-8"),
    ])
}

/// Waits until each of [`CRD_NAMES`] has condition Established=True.
pub fn wait_crds_established() {
    for crd in CRD_NAMES {
        wait_for(&format!("CRD {crd} to be Established"), DEFAULT_TIMEOUT, || {
            let out = kubectl([
                "get",
                "crd",
                crd,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
            ]);
            if out.success() && out.stdout.trim() == "True" {
                Ok(())
            } else {
                Err(format!("{out}"))
            }
        });
    }
}
