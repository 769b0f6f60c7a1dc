//! The deployment manifests against a real Kubernetes API server: `config/default`
//! (kustomize), the Helm chart in `charts/modelgate`, and the least privilege of
//! `config/rbac`.
//!
//!     tests/controlplane/run.sh cargo test --test deploy -- --include-ignored
//!
//! The local control plane has no kubelet, so no pod ever runs: the manifests are checked at
//! the API level (server-side dry runs, Pod Security admission, `kubectl auth can-i`), and
//! the arguments they give the binary are checked against the binary itself.
//!
//! `helm` is the pinned one `tests/tools/helm.sh` builds; `tests/all.sh` exports its path as
//! `MODELGATE_HELM`.

mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use cluster::{ensure_crds, kubectl, kubectl_stdin, repo_path, Namespace};
use serde::Deserialize;
use serde_json::{json, Value};

/// The namespace config/default and config/rbac install into.
const SYSTEM_NAMESPACE: &str = "modelgate-system";
/// The image every manifest runs.
const IMAGE_REPOSITORY: &str = "ghcr.io/modelgate/modelgate";
const CHART: &str = "charts/modelgate";

// --- running tools ----------------------------------------------------------------------------

/// What one command did.
struct Run {
    command: String,
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "`{}` ({})", self.command, self.status)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

impl Run {
    #[track_caller]
    fn expect_success(self) -> Self {
        assert!(self.success, "expected success from {self}");
        self
    }
}

impl From<cluster::Output> for Run {
    fn from(out: cluster::Output) -> Self {
        Run {
            command: format!("kubectl {}", out.args.join(" ")),
            success: out.success(),
            status: out.status.to_string(),
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }
}

fn run(program: &Path, args: &[&str]) -> Run {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo_path(""))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", program.display()));
    Run {
        command: format!("{} {}", program.display(), args.join(" ")),
        success: out.status.success(),
        status: out.status.to_string(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The pinned helm, from `MODELGATE_HELM`. Never skips: a missing helm is a failure.
fn helm_binary() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let path = match std::env::var("MODELGATE_HELM") {
            Ok(path) if !path.is_empty() => PathBuf::from(path),
            _ => panic!(
                "MODELGATE_HELM is not set: these tests need the pinned helm. Build it (first run: a few \
                 minutes, then cached) and export its path:\n    \
                 export MODELGATE_HELM=\"$(tests/tools/helm.sh)\"\n\
                 tests/all.sh does this for you."
            ),
        };
        assert!(
            path.is_file(),
            "MODELGATE_HELM={} is not a file; rebuild it with tests/tools/helm.sh",
            path.display()
        );
        path
    })
}

fn helm(args: &[&str]) -> Run {
    run(helm_binary(), args)
}

/// `helm template RELEASE charts/modelgate --namespace NAMESPACE --set ...`, parsed.
fn helm_template(release: &str, namespace: &str, sets: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    for set in sets {
        args.extend(["--set", set]);
    }
    documents(&helm(&args).expect_success().stdout)
}

/// `kubectl kustomize DIR`, parsed.
fn kustomize(dir: &str) -> Vec<Value> {
    let dir = repo_path(dir);
    let out = Run::from(kubectl(["kustomize", dir.to_str().expect("UTF-8 path")])).expect_success();
    documents(&out.stdout)
}

// --- YAML -------------------------------------------------------------------------------------

/// Every non-empty document of a multi-document YAML stream.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("invalid YAML ({e}) in:\n{yaml}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The documents as a stream kubectl reads: each one as JSON (valid YAML), so no key is
/// re-read by kubectl's YAML 1.1 parser as something else (an unquoted `on:` key would become
/// `true`; the CRDs' quoted `'on'` must stay a string).
fn to_yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(|doc| serde_json::to_string(doc).expect("serialising JSON") + "\n")
        .collect::<Vec<_>>()
        .join("---\n")
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn of_kind<'a>(docs: &'a [Value], k: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind(d) == k).collect()
}

#[track_caller]
fn find<'a>(docs: &'a [Value], k: &str, n: &str) -> &'a Value {
    docs.iter()
        .find(|d| kind(d) == k && name(d) == n)
        .unwrap_or_else(|| panic!("no {k} {n} among: {:?}", ids(docs)))
}

fn ids(docs: &[Value]) -> BTreeSet<String> {
    docs.iter().map(|d| format!("{}/{}", kind(d), name(d))).collect()
}

fn containers(doc: &Value) -> &Vec<Value> {
    doc["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap_or_else(|| panic!("{}/{} has no containers", kind(doc), name(doc)))
}

fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().expect("string arg").to_owned()).collect())
        .unwrap_or_default()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative)).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

fn cargo_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

// --- applying ---------------------------------------------------------------------------------

/// `kubectl apply --server-side --force-conflicts [--dry-run=server] -f -`: succeeds with
/// no warning (unknown fields are errors: kubectl validates strictly on the server).
#[track_caller]
fn apply(docs: &[Value], dry_run: bool) -> Run {
    let mut args = vec![
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=modelgate-deploy-test",
    ];
    if dry_run {
        args.push("--dry-run=server");
    }
    args.extend(["-f", "-"]);
    let out = Run::from(kubectl_stdin(args, &to_yaml(docs))).expect_success();
    let warnings: Vec<&str> = out.stderr.lines().filter(|l| l.contains("Warning:")).collect();
    assert!(warnings.is_empty(), "the API server warned: {warnings:#?}\nin {out}");
    out
}

/// `config/rbac` applied for real (server-side, idempotent; other tests apply it too).
fn ensure_rbac() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = repo_path("config/rbac");
        Run::from(kubectl([
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            dir.to_str().expect("UTF-8 path"),
        ]))
        .expect_success();
    });
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}{:x}{nanos:x}", std::process::id())
}

// --- kustomize --------------------------------------------------------------------------------

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn config_default_renders_and_applies_with_a_server_dry_run() {
    let docs = kustomize("config/default");
    let expected: BTreeSet<String> = [
        "Namespace/modelgate-system",
        "CustomResourceDefinition/gatewayreplicas.modelgate.dev",
        "CustomResourceDefinition/llmproviders.modelgate.dev",
        "CustomResourceDefinition/modelaliases.modelgate.dev",
        "CustomResourceDefinition/teams.modelgate.dev",
        "CustomResourceDefinition/accessgroups.modelgate.dev",
        "ServiceAccount/modelgate-controller",
        "ServiceAccount/modelgate-gateway",
        "ClusterRole/modelgate-controller",
        "ClusterRole/modelgate-gateway",
        "ClusterRoleBinding/modelgate-controller",
        "ClusterRoleBinding/modelgate-gateway",
        "Role/modelgate-controller-leader-election",
        "RoleBinding/modelgate-controller-leader-election",
        "Role/modelgate-controller-gateway-reports",
        "RoleBinding/modelgate-controller-gateway-reports",
        "Role/modelgate-gateway-report",
        "RoleBinding/modelgate-gateway-report",
        "Deployment/modelgate-controller",
        "Deployment/modelgate-gateway",
        "Service/modelgate-gateway",
        "Service/modelgate-gateway-metrics",
        "Service/modelgate-controller-metrics",
        "PodDisruptionBudget/modelgate-controller",
        "PodDisruptionBudget/modelgate-gateway",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(
        ids(&docs),
        expected,
        "config/default renders other objects than expected"
    );

    for doc in &docs {
        let namespaced = !matches!(
            kind(doc),
            "Namespace" | "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding"
        );
        if namespaced {
            assert_eq!(
                doc["metadata"]["namespace"],
                SYSTEM_NAMESPACE,
                "{}/{} is not in {SYSTEM_NAMESPACE}",
                kind(doc),
                name(doc)
            );
        }
    }
    let image = format!("{IMAGE_REPOSITORY}:{}", cargo_version());
    for deployment in of_kind(&docs, "Deployment") {
        for container in containers(deployment) {
            assert_eq!(container["image"], image.as_str(), "image of {}", name(deployment));
        }
    }

    // The Deployments go into modelgate-system, which a dry run does not create.
    ensure_rbac();
    apply(&docs, true);
}

#[test]
fn config_default_crd_copies_match_crds() {
    assert_same_files("crds", "config/default/crds", "cp crds/*.yaml config/default/crds/");
}

// --- helm -------------------------------------------------------------------------------------

/// Non-default values: scoped to one namespace with a selector, three replicas of each,
/// a LoadBalancer, an extra argument, another image tag.
fn scoped_values(watched: &str) -> Vec<String> {
    vec![
        format!("scope.namespace={watched}"),
        "scope.selector=team=ml".to_owned(),
        "controller.replicas=3".to_owned(),
        "gateway.replicas=3".to_owned(),
        "gateway.service.type=LoadBalancer".to_owned(),
        "gateway.extraArgs[0]=--max-body-bytes=2097152".to_owned(),
        "logFormat=text".to_owned(),
        "image.tag=dev".to_owned(),
    ]
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn helm_lint_passes_with_default_and_scoped_values() {
    let out = helm(&["lint", "--strict", CHART]).expect_success();
    assert!(out.stdout.contains("0 chart(s) failed"), "{out}");
    let mut args = vec!["lint".to_owned(), "--strict".to_owned(), CHART.to_owned()];
    for set in scoped_values("team-ml") {
        args.extend(["--set".to_owned(), set]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = helm(&args).expect_success();
    assert!(out.stdout.contains("0 chart(s) failed"), "{out}");
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn helm_chart_renders_and_applies_with_a_server_dry_run() {
    let ns = Namespace::new("deploy-helm");
    let docs = helm_template("modelgate", ns.name(), &[]);
    let workloads: BTreeSet<String> = ids(&docs)
        .into_iter()
        .filter(|id| id.starts_with("Deployment/") || id.starts_with("Service/"))
        .collect();
    assert_eq!(
        workloads,
        [
            "Deployment/modelgate-controller",
            "Deployment/modelgate-gateway",
            "Service/modelgate-controller-metrics",
            "Service/modelgate-gateway",
            "Service/modelgate-gateway-metrics",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    let image = format!("{IMAGE_REPOSITORY}:{}", cargo_version());
    for deployment in of_kind(&docs, "Deployment") {
        assert_eq!(deployment["spec"]["replicas"], 2, "replicas of {}", name(deployment));
        assert_eq!(containers(deployment)[0]["image"], image.as_str());
    }
    // The CRDs come with the chart (crds/); apply them in the same dry run.
    let mut with_crds = documents(&read("crds/gatewayreplica.yaml"));
    with_crds.extend(documents(&read("crds/llmprovider.yaml")));
    with_crds.extend(documents(&read("crds/modelalias.yaml")));
    with_crds.extend(documents(&read("crds/team.yaml")));
    with_crds.extend(documents(&read("crds/accessgroup.yaml")));
    with_crds.extend(docs);
    apply(&with_crds, true);
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn helm_chart_with_namespace_scope_selector_and_three_replicas_applies_with_a_server_dry_run() {
    let release_ns = Namespace::new("deploy-helm-release");
    let watched = Namespace::new("deploy-helm-watched");
    let sets = scoped_values(watched.name());
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let docs = helm_template("mg-alt", release_ns.name(), &sets);

    for deployment in of_kind(&docs, "Deployment") {
        assert_eq!(deployment["spec"]["replicas"], 3, "replicas of {}", name(deployment));
        let container = &containers(deployment)[0];
        assert_eq!(container["image"], format!("{IMAGE_REPOSITORY}:dev").as_str());
        let args = args(container);
        for want in [
            format!("--namespace={}", watched.name()),
            "--selector=team=ml".to_owned(),
            "--log-format=text".to_owned(),
        ] {
            assert!(args.contains(&want), "{} lacks {want}: {args:?}", name(deployment));
        }
    }
    let gateway = find(&docs, "Deployment", "mg-alt-modelgate-gateway");
    let gateway_args = args(&containers(gateway)[0]);
    assert_eq!(
        gateway_args.last().map(String::as_str),
        Some("--max-body-bytes=2097152")
    );
    assert_eq!(
        find(&docs, "Service", "mg-alt-modelgate-gateway")["spec"]["type"],
        "LoadBalancer"
    );
    // Scoped to one namespace: bound there only, never cluster-wide.
    assert!(of_kind(&docs, "ClusterRoleBinding").is_empty(), "{:?}", ids(&docs));
    for component in ["controller", "gateway"] {
        let binding = docs
            .iter()
            .find(|d| kind(d) == "RoleBinding" && name(d) == format!("mg-alt-modelgate-{component}"))
            .unwrap_or_else(|| panic!("no RoleBinding for the {component} in {:?}", ids(&docs)));
        assert_eq!(binding["metadata"]["namespace"], watched.name());
        assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
        assert_eq!(binding["subjects"][0]["namespace"], release_ns.name());
    }
    apply(&docs, true);
}

#[test]
fn chart_crds_match_crds() {
    assert_same_files("crds", "charts/modelgate/crds", "cp crds/*.yaml charts/modelgate/crds/");
}

/// `copy` holds exactly the files of `source`, byte for byte.
#[track_caller]
fn assert_same_files(source: &str, copy: &str, fix: &str) {
    let list = |dir: &str| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(repo_path(dir))
            .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.is_file())
            .map(|path| {
                let name = path.file_name().expect("file name").to_string_lossy().into_owned();
                (name, std::fs::read(&path).expect("reading a CRD"))
            })
            .collect()
    };
    let (want, got) = (list(source), list(copy));
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&got),
        names(&want),
        "{copy}/ must hold exactly the files of {source}/; fix: rm {copy}/* && {fix}"
    );
    for (file, bytes) in &want {
        assert!(
            got[file] == *bytes,
            "{copy}/{file} differs from {source}/{file} (the CRDs were regenerated); fix: {fix}"
        );
    }
}

#[test]
fn versions_agree_across_cargo_chart_and_kustomize() {
    let chart: Value = serde_yaml_ng::from_str(&read("charts/modelgate/Chart.yaml")).expect("Chart.yaml");
    assert_eq!(
        chart["appVersion"],
        cargo_version(),
        "charts/modelgate/Chart.yaml appVersion must equal Cargo.toml's version"
    );
    let kustomization: Value =
        serde_yaml_ng::from_str(&read("config/default/kustomization.yaml")).expect("kustomization.yaml");
    let images = kustomization["images"].as_array().expect("images in config/default");
    let image = images
        .iter()
        .find(|i| i["name"] == IMAGE_REPOSITORY)
        .expect("config/default sets the modelgate image");
    assert_eq!(
        image["newTag"],
        cargo_version(),
        "config/default/kustomization.yaml's image tag must equal Cargo.toml's version"
    );
}

// --- the chart against config/ ----------------------------------------------------------------

/// A rule as a set of (apiGroup, resource, verb, resourceName) grants, so that the order
/// and grouping of rules do not matter.
fn grants(role: &Value) -> BTreeSet<(String, String, String, String)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().expect("string").to_owned()).collect())
            .unwrap_or_default()
    };
    let mut set = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        assert!(
            rule.get("nonResourceURLs").is_none(),
            "unexpected nonResourceURLs in {rule}"
        );
        let names = match strings(&rule["resourceNames"]) {
            names if names.is_empty() => vec!["*".to_owned()],
            names => names,
        };
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    for n in &names {
                        set.insert((group.clone(), resource.clone(), verb.clone(), n.clone()));
                    }
                }
            }
        }
    }
    set
}

/// RBAC objects reduced to what grants access: rules, role references and subjects.
fn rbac_summary(docs: &[Value]) -> BTreeMap<String, Value> {
    docs.iter()
        .filter_map(|doc| {
            let id = format!(
                "{}/{}/{}",
                kind(doc),
                doc["metadata"]["namespace"].as_str().unwrap_or("-"),
                name(doc)
            );
            let summary = match kind(doc) {
                "ServiceAccount" => json!({}),
                "ClusterRole" | "Role" => json!(grants(doc)),
                "ClusterRoleBinding" | "RoleBinding" => json!({
                    "roleRef": doc["roleRef"],
                    "subjects": doc["subjects"],
                }),
                _ => return None,
            };
            Some((id, summary))
        })
        .collect()
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn chart_rbac_equals_config_rbac() {
    let want = rbac_summary(&kustomize("config/rbac"));
    let got = rbac_summary(&helm_template("modelgate", SYSTEM_NAMESPACE, &[]));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the chart (release modelgate in {SYSTEM_NAMESPACE}) must create the RBAC objects config/rbac has"
    );
    let mut wrong = Vec::new();
    for (id, want) in &want {
        let got = &got[id];
        if got == want {
            continue;
        }
        match (got.as_array(), want.as_array()) {
            // Roles: say which grants differ.
            (Some(got), Some(want)) => {
                let extra: Vec<&Value> = got.iter().filter(|g| !want.contains(g)).collect();
                let missing: Vec<&Value> = want.iter().filter(|w| !got.contains(w)).collect();
                wrong.push(format!(
                    "{id}: the chart grants {extra:?} beyond config/rbac, and lacks {missing:?} \
                     ([apiGroup, resource, verb, resourceName])"
                ));
            }
            _ => wrong.push(format!("{id}: the chart has {got}, config/rbac has {want}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "charts/modelgate/templates/rbac.yaml must grant what config/rbac/ grants:\n  {}",
        wrong.join("\n  ")
    );
}

/// What a Deployment, Service or PodDisruptionBudget does, without names and labels that
/// legitimately differ between kustomize and Helm (selectors, chart labels).
fn workload_summary(doc: &Value) -> Value {
    match kind(doc) {
        "Deployment" => {
            let pod = &doc["spec"]["template"]["spec"];
            let containers: Vec<Value> = containers(doc)
                .iter()
                .map(|c| {
                    json!({
                        "name": c["name"], "image": c["image"], "args": c["args"], "env": c["env"],
                        "ports": c["ports"], "livenessProbe": c["livenessProbe"],
                        "readinessProbe": c["readinessProbe"], "lifecycle": c["lifecycle"],
                        "resources": c["resources"], "securityContext": c["securityContext"],
                    })
                })
                .collect();
            json!({
                "replicas": doc["spec"]["replicas"],
                "strategy": doc["spec"]["strategy"],
                "annotations": doc["spec"]["template"]["metadata"]["annotations"],
                "serviceAccountName": pod["serviceAccountName"],
                "enableServiceLinks": pod["enableServiceLinks"],
                "securityContext": pod["securityContext"],
                "terminationGracePeriodSeconds": pod["terminationGracePeriodSeconds"],
                "containers": containers,
            })
        }
        "Service" => json!({"type": doc["spec"]["type"], "ports": doc["spec"]["ports"]}),
        "PodDisruptionBudget" => json!({"maxUnavailable": doc["spec"]["maxUnavailable"]}),
        _ => Value::Null,
    }
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn chart_defaults_deploy_what_config_default_deploys() {
    let summarise = |docs: &[Value]| -> BTreeMap<String, Value> {
        docs.iter()
            .map(|d| (format!("{}/{}", kind(d), name(d)), workload_summary(d)))
            .filter(|(_, s)| !s.is_null())
            .collect()
    };
    let want = summarise(&kustomize("config/default"));
    let got = summarise(&helm_template("modelgate", SYSTEM_NAMESPACE, &[]));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the chart with default values must deploy the workloads config/default deploys"
    );
    for (id, summary) in &want {
        assert_eq!(
            &got[id], summary,
            "{id}: the chart (defaults, release modelgate) and config/default disagree"
        );
    }
}

/// The gateway's drain fits in its pod's termination grace period: the chart computes the
/// period from the drain flags it passes, and refuses a period the drain would outlast.
#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn the_gateway_drain_fits_in_its_termination_grace_period() {
    let pod = |docs: &[Value]| find(docs, "Deployment", "modelgate-gateway")["spec"]["template"]["spec"].clone();
    for (sets, delay, grace, period) in [
        (vec![], 5, 30, 45),
        (
            vec!["gateway.shutdownDelaySeconds=10", "gateway.shutdownGraceSeconds=120"],
            10,
            120,
            140,
        ),
        (vec!["gateway.terminationGracePeriodSeconds=40"], 5, 30, 40),
    ] {
        let pod = pod(&helm_template("modelgate", SYSTEM_NAMESPACE, &sets));
        assert_eq!(pod["terminationGracePeriodSeconds"], period, "{sets:?}");
        let args = args(&pod["containers"][0]);
        for flag in [
            format!("--shutdown-delay={delay}s"),
            format!("--shutdown-grace={grace}s"),
        ] {
            assert!(args.contains(&flag), "{sets:?}: {flag} missing from {args:?}");
        }
    }
    let out = helm(&[
        "template",
        "modelgate",
        CHART,
        "--set",
        "gateway.terminationGracePeriodSeconds=30",
    ]);
    assert!(
        !out.success
            && out
                .stderr
                .contains("must be more than gateway.shutdownDelaySeconds + gateway.shutdownGraceSeconds + 1 (36)"),
        "{out}"
    );
}

// --- the pods: the binary's flags, Pod Security ------------------------------------------------

/// Every container's arguments, from config/default and from both chart renders, are
/// accepted by the binary: `--help` after them makes it parse everything, then exit.
#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn the_binary_accepts_the_arguments_the_manifests_give_it() {
    let binary = Path::new(env!("CARGO_BIN_EXE_modelgate"));
    let sets = scoped_values("team-ml");
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let renders = [
        ("config/default", kustomize("config/default")),
        (
            "the chart's defaults",
            helm_template("modelgate", SYSTEM_NAMESPACE, &[]),
        ),
        ("the chart's scoped values", helm_template("mg-alt", "mg-alt", &sets)),
        (
            "the chart without leader election, with a body limit and egress settings",
            helm_template(
                "single",
                "single",
                &[
                    "controller.leaderElection.enabled=false",
                    "controller.replicas=1",
                    "gateway.maxBodyBytes=1048576",
                    "gateway.allowUpstreamCIDRs={10.0.42.0/24,fd00:42::/64}",
                    "gateway.maxHops=2",
                ],
            ),
        ),
    ];
    let single = &renders[3].1;
    let single_args = |n: &str| args(&containers(find(single, "Deployment", n))[0]);
    assert!(single_args("single-modelgate-controller").contains(&"--no-leader-election".to_owned()));
    let gateway_args = single_args("single-modelgate-gateway");
    for want in [
        "--max-body-bytes=1048576",
        "--allow-upstream-cidr=10.0.42.0/24",
        "--allow-upstream-cidr=fd00:42::/64",
        "--max-hops=2",
    ] {
        assert!(gateway_args.contains(&want.to_owned()), "{want}: {gateway_args:?}");
    }
    for (what, docs) in &renders {
        let deployments = of_kind(docs, "Deployment");
        assert_eq!(deployments.len(), 2, "{what}");
        for deployment in deployments {
            let container = &containers(deployment)[0];
            let mut args = args(container);
            assert!(
                matches!(args.first().map(String::as_str), Some("controller" | "gateway")),
                "{what}: {} must start with a subcommand: {args:?}",
                name(deployment)
            );
            args.push("--help".to_owned());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run(binary, &args);
            assert!(
                out.success && out.stderr.is_empty(),
                "{what}: the binary rejects the arguments of {}: {out}",
                name(deployment)
            );
        }
    }
}

/// With `tenancy.redis.deploy`, the chart deploys a Redis and points the gateways (and the
/// controller, for Team usage) at it; with one gateway and no Redis the controller asks that
/// gateway's read API; the render applies, and the binary takes its arguments.
#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn the_chart_can_deploy_a_shared_usage_store_for_several_gateways() {
    let ns = Namespace::new("deploy-redis");
    let docs = helm_template("mg", ns.name(), &["tenancy.redis.deploy=true", "gateway.replicas=3"]);
    let url = format!("--usage-store=redis://mg-modelgate-redis.{}.svc:6379", ns.name());
    let gateway = args(&containers(find(&docs, "Deployment", "mg-modelgate-gateway"))[0]);
    assert!(
        gateway.contains(&url) && gateway.contains(&"--auth=api-key".to_owned()),
        "{gateway:?}"
    );
    let controller = args(&containers(find(&docs, "Deployment", "mg-modelgate-controller"))[0]);
    assert!(controller.contains(&url), "{controller:?}");
    let redis = find(&docs, "Deployment", "mg-modelgate-redis");
    assert_eq!(redis["spec"]["replicas"], 1);
    assert_eq!(
        find(&docs, "Service", "mg-modelgate-redis")["spec"]["ports"][0]["port"],
        6379
    );
    let binary = Path::new(env!("CARGO_BIN_EXE_modelgate"));
    for mut args in [gateway, controller] {
        args.push("--help".to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(binary, &args);
        assert!(out.success && out.stderr.is_empty(), "{out}");
    }
    let existing = helm_template("mg", ns.name(), &["tenancy.redis.url=redis://cache:6379"]);
    assert!(of_kind(&existing, "Deployment")
        .iter()
        .all(|d| name(d) != "mg-modelgate-redis"));
    let single = helm_template("one", ns.name(), &["gateway.replicas=1"]);
    let controller = args(&containers(find(&single, "Deployment", "one-modelgate-controller"))[0]);
    assert!(
        controller.contains(&format!(
            "--gateway-admin-url=http://one-modelgate-gateway-metrics.{}.svc:12001",
            ns.name()
        )),
        "{controller:?}"
    );
    let out = apply(&docs, true);
    assert!(out.success, "{out}");
}

/// The pods of every render pass Pod Security `restricted`, enforced: each Deployment's pod
/// template is created as a Pod (server-side dry run) in a namespace that enforces it.
#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn the_pods_pass_pod_security_restricted() {
    let ns = Namespace::new("deploy-restricted");
    Run::from(ns.kubectl([
        "label",
        "namespace",
        ns.name(),
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    ]))
    .expect_success();
    let sets = scoped_values("team-ml");
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let mut pods = Vec::new();
    for docs in [
        kustomize("config/default"),
        helm_template("modelgate", ns.name(), &[]),
        helm_template("mg-alt", ns.name(), &sets),
        helm_template("mg-redis", ns.name(), &["tenancy.redis.deploy=true"]),
    ] {
        for deployment in of_kind(&docs, "Deployment") {
            let template = &deployment["spec"]["template"];
            pods.push(json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": format!("{}-{}", name(deployment), pods.len()),
                    "namespace": ns.name(),
                    "labels": template["metadata"]["labels"],
                },
                "spec": template["spec"],
            }));
        }
    }
    assert_eq!(pods.len(), 9, "three Deployments with the bundled Redis");
    // The ServiceAccount admission plugin wants each pod's ServiceAccount to exist.
    let accounts: BTreeSet<&str> = pods
        .iter()
        .map(|p| p["spec"]["serviceAccountName"].as_str().expect("serviceAccountName"))
        .collect();
    for account in accounts {
        Run::from(ns.kubectl(["create", "serviceaccount", account])).expect_success();
    }
    let out = apply(&pods, true);
    assert!(!out.stderr.contains("violate PodSecurity"), "{out}");
}

// --- least privilege ----------------------------------------------------------------------------

/// Where a `kubectl auth can-i` question is asked.
#[derive(Clone, Copy, Debug)]
enum Scope {
    AllNamespaces,
    /// modelgate-system, where the Lease lives.
    System,
    /// Any other namespace (it need not exist).
    Other,
}

/// One `kubectl auth can-i` question and the answer least privilege requires.
#[derive(Debug)]
struct Check {
    verb: &'static str,
    /// `resource[.group][/name]`, as `kubectl auth can-i` takes it.
    resource: &'static str,
    subresource: Option<&'static str>,
    scope: Scope,
    allowed: bool,
}

const fn can(verb: &'static str, resource: &'static str, scope: Scope) -> Check {
    Check {
        verb,
        resource,
        subresource: None,
        scope,
        allowed: true,
    }
}

const fn cannot(verb: &'static str, resource: &'static str, scope: Scope) -> Check {
    Check {
        verb,
        resource,
        subresource: None,
        scope,
        allowed: false,
    }
}

const fn status(check: Check) -> Check {
    Check {
        subresource: Some("status"),
        ..check
    }
}

/// Asks every check as `user`; panics listing every wrong answer.
#[track_caller]
fn assert_permissions(user: &str, namespaces: (&str, &str), checks: &[Check]) {
    let (system, other) = namespaces;
    let wrong: Vec<String> = std::thread::scope(|threads| {
        let handles: Vec<_> = checks
            .iter()
            .map(|check| {
                threads.spawn(move || {
                    let mut args = vec!["auth", "can-i", check.verb, check.resource, "--as", user];
                    match check.scope {
                        Scope::AllNamespaces => args.push("--all-namespaces"),
                        Scope::System => args.extend(["-n", system]),
                        Scope::Other => args.extend(["-n", other]),
                    }
                    if let Some(sub) = check.subresource {
                        args.extend(["--subresource", sub]);
                    }
                    let out = kubectl(&args);
                    let answer = out.stdout.split_whitespace().next().unwrap_or_default().to_owned();
                    let allowed = match answer.as_str() {
                        "yes" => true,
                        "no" => false,
                        _ => panic!("unexpected answer from {out}"),
                    };
                    assert!(
                        !out.stderr.contains("Warning"),
                        "kubectl auth can-i warned (unknown resource?): {out}"
                    );
                    (allowed != check.allowed).then(|| {
                        format!(
                            "`kubectl {}` said {answer}, least privilege wants {}",
                            args.join(" "),
                            if check.allowed { "yes" } else { "no" }
                        )
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("can-i thread"))
            .collect()
    });
    assert!(
        wrong.is_empty(),
        "{user} has the wrong permissions:\n  {}",
        wrong.join("\n  ")
    );
}

fn gateway_checks(watched: Scope, elsewhere: Option<Scope>) -> Vec<Check> {
    use Scope::*;
    let mut checks = vec![
        can("list", "modelaliases.modelgate.dev", watched),
        can("watch", "modelaliases.modelgate.dev", watched),
        can("list", "llmproviders.modelgate.dev", watched),
        can("watch", "llmproviders.modelgate.dev", watched),
        can("list", "teams.modelgate.dev", watched),
        can("watch", "teams.modelgate.dev", watched),
        can("list", "accessgroups.modelgate.dev", watched),
        can("watch", "accessgroups.modelgate.dev", watched),
        can("list", "secrets", watched),
        can("watch", "secrets", watched),
        // Tenancy is read-only too: usage lives in its store, never in the objects.
        cannot("get", "teams.modelgate.dev", Other),
        cannot("create", "teams.modelgate.dev", Other),
        cannot("update", "teams.modelgate.dev", Other),
        status(cannot("patch", "teams.modelgate.dev", Other)),
        status(cannot("patch", "accessgroups.modelgate.dev", Other)),
        cannot("create", "accessgroups.modelgate.dev", Other),
        // It reads credentials only through its filtered watch, never one by one.
        cannot("get", "secrets", Other),
        cannot("get", "secrets/openai-api-key", Other),
        cannot("create", "secrets", Other),
        cannot("update", "secrets", Other),
        // It writes nothing but its own report of what it serves, in its own namespace.
        can("create", "gatewayreplicas.modelgate.dev", System),
        can("patch", "gatewayreplicas.modelgate.dev", System),
        can("delete", "gatewayreplicas.modelgate.dev", System),
        cannot("update", "gatewayreplicas.modelgate.dev", System),
        cannot("list", "gatewayreplicas.modelgate.dev", System),
        cannot("create", "gatewayreplicas.modelgate.dev", Other),
        cannot("patch", "gatewayreplicas.modelgate.dev", Other),
        cannot("create", "modelaliases.modelgate.dev", Other),
        cannot("update", "modelaliases.modelgate.dev", Other),
        cannot("patch", "modelaliases.modelgate.dev", Other),
        cannot("delete", "modelaliases.modelgate.dev", Other),
        cannot("delete", "llmproviders.modelgate.dev", Other),
        status(cannot("patch", "modelaliases.modelgate.dev", Other)),
        status(cannot("patch", "llmproviders.modelgate.dev", Other)),
        cannot("create", "events.events.k8s.io", Other),
        cannot("create", "events", Other),
        cannot("get", "leases.coordination.k8s.io", System),
        cannot("update", "leases.coordination.k8s.io", System),
        cannot("list", "configmaps", Other),
        cannot("list", "pods", Other),
    ];
    if let Some(elsewhere) = elsewhere {
        checks.extend([
            cannot("list", "modelaliases.modelgate.dev", elsewhere),
            cannot("list", "llmproviders.modelgate.dev", elsewhere),
            cannot("list", "teams.modelgate.dev", elsewhere),
            cannot("list", "secrets", elsewhere),
        ]);
    }
    checks
}

fn controller_checks(watched: Scope, elsewhere: Option<Scope>) -> Vec<Check> {
    use Scope::*;
    let mut checks = vec![
        can("list", "modelaliases.modelgate.dev", watched),
        can("watch", "modelaliases.modelgate.dev", watched),
        cannot("get", "modelaliases.modelgate.dev", Other),
        can("list", "llmproviders.modelgate.dev", watched),
        can("watch", "llmproviders.modelgate.dev", watched),
        can("list", "secrets", watched),
        can("watch", "secrets", watched),
        status(can("patch", "modelaliases.modelgate.dev", watched)),
        status(can("patch", "llmproviders.modelgate.dev", watched)),
        can("list", "teams.modelgate.dev", watched),
        can("watch", "teams.modelgate.dev", watched),
        can("list", "accessgroups.modelgate.dev", watched),
        can("watch", "accessgroups.modelgate.dev", watched),
        status(can("patch", "teams.modelgate.dev", watched)),
        status(can("patch", "accessgroups.modelgate.dev", watched)),
        // Status only: it never edits a team's grants, credits or limits.
        cannot("patch", "teams.modelgate.dev", Other),
        cannot("update", "teams.modelgate.dev", Other),
        cannot("create", "accessgroups.modelgate.dev", Other),
        cannot("delete", "teams.modelgate.dev", Other),
        can("create", "events.events.k8s.io", watched),
        can("patch", "events.events.k8s.io", watched),
        // The gateways' reports: read, in its own namespace only.
        can("list", "gatewayreplicas.modelgate.dev", System),
        can("watch", "gatewayreplicas.modelgate.dev", System),
        cannot("list", "gatewayreplicas.modelgate.dev", Other),
        cannot("create", "gatewayreplicas.modelgate.dev", System),
        cannot("patch", "gatewayreplicas.modelgate.dev", System),
        cannot("delete", "gatewayreplicas.modelgate.dev", System),
        // Leader election: in its own namespace only.
        can("get", "leases.coordination.k8s.io", System),
        can("create", "leases.coordination.k8s.io", System),
        cannot("update", "leases.coordination.k8s.io/modelgate-controller", System),
        can("patch", "leases.coordination.k8s.io/modelgate-controller", System),
        cannot("delete", "leases.coordination.k8s.io", System),
        cannot("update", "leases.coordination.k8s.io", Other),
        cannot("create", "leases.coordination.k8s.io", Other),
        cannot("get", "leases.coordination.k8s.io", AllNamespaces),
        // Status only: never the objects themselves, never Secrets.
        cannot("create", "modelaliases.modelgate.dev", Other),
        cannot("update", "modelaliases.modelgate.dev", Other),
        cannot("patch", "modelaliases.modelgate.dev", Other),
        cannot("delete", "modelaliases.modelgate.dev", Other),
        cannot("update", "llmproviders.modelgate.dev", Other),
        cannot("delete", "llmproviders.modelgate.dev", Other),
        status(cannot("update", "modelaliases.modelgate.dev", Other)),
        cannot("get", "secrets/openai-api-key", Other),
        cannot("create", "secrets", Other),
        cannot("update", "secrets", Other),
        cannot("patch", "secrets", Other),
        cannot("delete", "secrets", Other),
        // Events through events.k8s.io only.
        cannot("create", "events", Other),
        cannot("delete", "events.events.k8s.io", Other),
        cannot("list", "pods", Other),
    ];
    if let Some(elsewhere) = elsewhere {
        checks.extend([
            cannot("list", "modelaliases.modelgate.dev", elsewhere),
            status(cannot("patch", "modelaliases.modelgate.dev", elsewhere)),
            status(cannot("patch", "teams.modelgate.dev", elsewhere)),
            cannot("list", "secrets", elsewhere),
            cannot("create", "events.events.k8s.io", elsewhere),
        ]);
    }
    checks
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn the_gateway_service_account_has_least_privilege() {
    ensure_crds();
    ensure_rbac();
    let mut checks = gateway_checks(Scope::AllNamespaces, None);
    checks.extend(gateway_checks(Scope::Other, None).into_iter().filter(|c| c.allowed));
    assert_permissions(
        &format!("system:serviceaccount:{SYSTEM_NAMESPACE}:modelgate-gateway"),
        (SYSTEM_NAMESPACE, "some-team"),
        &checks,
    );
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn the_controller_service_account_has_least_privilege() {
    ensure_crds();
    ensure_rbac();
    let mut checks = controller_checks(Scope::AllNamespaces, None);
    checks.extend(controller_checks(Scope::Other, None).into_iter().filter(|c| c.allowed));
    assert_permissions(
        &format!("system:serviceaccount:{SYSTEM_NAMESPACE}:modelgate-controller"),
        (SYSTEM_NAMESPACE, "some-team"),
        &checks,
    );
}

/// Deletes the cluster-wide objects of one Helm release (by its instance label) on drop.
struct ClusterObjects {
    release: String,
}

impl Drop for ClusterObjects {
    fn drop(&mut self) {
        let _ = kubectl([
            "delete",
            "clusterroles,clusterrolebindings",
            "-l",
            &format!("app.kubernetes.io/instance={}", self.release),
            "--ignore-not-found",
            "--wait=false",
        ]);
    }
}

/// The chart scoped to one namespace grants its ServiceAccounts nothing outside it: its RBAC
/// is applied for real (in fresh namespaces, under a release name of its own) and asked.
#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn the_namespace_scoped_chart_grants_nothing_outside_its_namespace() {
    ensure_crds();
    let release_ns = Namespace::new("deploy-scoped-release");
    let watched = Namespace::new("deploy-scoped-watched");
    let release = unique("r");
    let _cleanup = ClusterObjects {
        release: release.clone(),
    };
    let docs = helm_template(
        &release,
        release_ns.name(),
        &[&format!("scope.namespace={}", watched.name())],
    );
    let rbac: Vec<Value> = docs
        .into_iter()
        .filter(|d| {
            matches!(
                kind(d),
                "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding"
            )
        })
        .collect();
    assert_eq!(rbac.len(), 12, "{:?}", ids(&rbac));
    apply(&rbac, false);

    let prefix = format!("system:serviceaccount:{}:{release}-modelgate", release_ns.name());
    // Scope::System is the release namespace (the Lease's), Scope::Other the watched one.
    let namespaces = (release_ns.name(), watched.name());
    let mut gateway = gateway_checks(Scope::Other, Some(Scope::AllNamespaces));
    gateway.retain(|c| !c.resource.starts_with("leases"));
    assert_permissions(&format!("{prefix}-gateway"), namespaces, &gateway);
    let controller: Vec<Check> = controller_checks(Scope::Other, Some(Scope::AllNamespaces))
        .into_iter()
        // The Lease rules name modelgate-controller; this release's Lease has its own name.
        .filter(|c| !c.resource.starts_with("leases.coordination.k8s.io/"))
        .chain([
            can("patch", "leases.coordination.k8s.io", Scope::System),
            cannot("patch", "leases.coordination.k8s.io", Scope::Other),
            // Its objects live in the watched namespace, not in its own.
            cannot("list", "modelaliases.modelgate.dev", Scope::System),
            cannot("list", "secrets", Scope::System),
        ])
        .collect();
    assert_permissions(&format!("{prefix}-controller"), namespaces, &controller);
}
