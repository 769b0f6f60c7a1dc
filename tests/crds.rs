//! The CRDs in `crds/` against a real Kubernetes API server: install, samples,
//! printer columns, `kubectl explain`, short names and category, every CEL
//! rule's message, round trips without a perpetual diff, and the status
//! subresource.
//!
//! They need a cluster, so they are ignored by a plain `cargo test`. Run them
//! with a throwaway local control plane:
//!
//!     tests/controlplane/run.sh cargo test --test crds -- --include-ignored
//!
//! or against kind with `tests/kind/run.sh`.

mod cluster;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cluster::{ensure_crds, kubectl, kubectl_stdin, repo_path, wait_for, Namespace, DEFAULT_TIMEOUT};
use serde::Deserialize;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Reading the repository's YAML
// ---------------------------------------------------------------------------

/// Every non-empty YAML document in `path`, as JSON values.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display())))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The `*.yaml` files in a repository directory, sorted.
fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let dir = repo_path(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.expect("reading a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    files.sort();
    files
}

/// The CRD whose `spec.names.kind` is `kind`, from `crds/`.
fn crd(kind: &str) -> Value {
    yaml_files("crds")
        .iter()
        .flat_map(|path| yaml_documents(path))
        .find(|doc| doc["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind} in crds/"))
}

/// The sample objects in `config/samples/` of one of our kinds.
fn samples(kind: &str) -> Vec<Value> {
    yaml_files("config/samples")
        .iter()
        .flat_map(|path| yaml_documents(path))
        .filter(|doc| doc["kind"] == kind && doc["apiVersion"] == "modelgate.dev/v1alpha1")
        .collect()
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("repository paths are UTF-8")
}

fn squash_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `kubectl get <resource> <name> -o json` in `ns`, which must succeed.
fn get_json(ns: &Namespace, resource: &str, name: &str) -> Value {
    ns.kubectl(["get", resource, name, "-o", "json"])
        .expect_success()
        .json()
}

// ---------------------------------------------------------------------------
// Installation
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn crds_install_with_server_side_apply_and_become_established() {
    let out = cluster::install_crds().expect_success();
    for name in cluster::CRD_NAMES {
        assert!(
            out.stdout
                .contains(&format!("customresourcedefinition.apiextensions.k8s.io/{name}")),
            "{name} missing from {out}"
        );
    }
    cluster::wait_crds_established();
    for name in cluster::CRD_NAMES {
        let crd = kubectl(["get", "crd", name, "-o", "json"]).expect_success().json();
        let conditions = crd["status"]["conditions"].as_array().cloned().unwrap_or_default();
        for wanted in ["NamesAccepted", "Established"] {
            assert!(
                conditions.iter().any(|c| c["type"] == wanted && c["status"] == "True"),
                "{name}: condition {wanted} is not True: {conditions:?}"
            );
        }
    }
    // Applying again changes nothing and still succeeds (the suite relies on it).
    cluster::install_crds().expect_success();
}

/// The API server warns about schema constructs it does not understand when a
/// CRD is created (`kubectl apply` prints `Warning: ...`). Creating a renamed
/// copy with `--dry-run=server` shows those warnings without touching the
/// installed CRDs.
#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn crds_are_created_without_warnings() {
    for kind in ["GatewayReplica", "LLMProvider", "ModelAlias"] {
        let mut copy = crd(kind);
        let group = "warnings-check.modelgate.dev";
        let plural = copy["spec"]["names"]["plural"].as_str().expect("plural").to_owned();
        copy["metadata"]["name"] = json!(format!("{plural}.{group}"));
        copy["spec"]["group"] = json!(group);
        let out = kubectl_stdin(["create", "--dry-run=server", "-f", "-"], &copy.to_string()).expect_success();
        assert!(
            !out.stderr.contains("Warning"),
            "creating the {kind} CRD makes the API server warn (users see this on install):\n{}",
            out.stderr.trim()
        );
    }
}

// ---------------------------------------------------------------------------
// Samples, printer columns, explain, short names, category
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn samples_apply_in_a_fresh_namespace() {
    ensure_crds();
    let ns = Namespace::new("samples");
    let samples_dir = repo_path("config/samples");
    let out = ns.kubectl(["apply", "-f", path_arg(&samples_dir)]).expect_success();
    assert!(!out.stderr.contains("Warning"), "applying the samples warns: {out}");

    for (kind, resource) in [("ModelAlias", "modelaliases"), ("LLMProvider", "llmproviders")] {
        let mut expected: Vec<String> = samples(kind)
            .iter()
            .map(|s| s["metadata"]["name"].as_str().expect("sample has a name").to_owned())
            .collect();
        expected.sort();
        assert!(!expected.is_empty(), "config/samples/ has no {kind}");
        let listed = ns.kubectl(["get", resource, "-o", "json"]).expect_success().json();
        let mut names: Vec<String> = listed["items"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|item| item["metadata"]["name"].as_str().expect("a name").to_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            expected,
            "{kind} objects in {} after applying the samples",
            ns.name()
        );
    }
}

/// The first line of `kubectl get`'s table, split into column names.
fn header(out: &cluster::Output) -> Vec<String> {
    out.stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The row of `kubectl get`'s table for object `name`, keyed by column name.
/// Works because no sample value contains a space.
fn row(out: &cluster::Output, name: &str) -> BTreeMap<String, String> {
    let columns = header(out);
    let mut starts: Vec<usize> = Vec::new();
    let head = out.stdout.lines().next().unwrap_or_default();
    let mut search_from = 0;
    for column in &columns {
        let at = head[search_from..].find(column.as_str()).expect("column in header") + search_from;
        starts.push(at);
        search_from = at + column.len();
    }
    let line = out
        .stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name} in\n{}", out.stdout));
    columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let end = starts.get(i + 1).copied().unwrap_or(line.len()).min(line.len());
            let cell = line.get(starts[i].min(line.len())..end).unwrap_or_default().trim();
            (column.clone(), cell.to_owned())
        })
        .collect()
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn get_shows_the_printer_columns() {
    ensure_crds();
    let ns = Namespace::new("columns");
    ns.kubectl(["apply", "-f", path_arg(&repo_path("config/samples"))])
        .expect_success();

    let aliases = ns.kubectl(["get", "modelaliases"]).expect_success();
    assert_eq!(
        header(&aliases),
        ["NAME", "ALIAS", "TARGET", "ACTIVE", "READY", "PROGRAMMED", "AGE"],
        "{aliases}"
    );
    assert_eq!(row(&aliases, "gpt-4")["ALIAS"], "GPT-4", "{aliases}");
    // TARGET and ACTIVE come from what the controller writes (tests/e2e.rs checks its values):
    // a weighted split shows its targets, an alias without spec.active shows true.
    ns.kubectl([
        "patch",
        "modelalias",
        "arch.v1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"target":"mock/llama3.1 80%, mock/gpt-4o-mini 20%","resolved":{"alias":"arch.v1","generation":1,"active":true,"hidden":false,"targets":[]}}}"#,
    ])
    .expect_success();
    let aliases = ns.kubectl(["get", "modelaliases"]).expect_success();
    let split = row(&aliases, "arch.v1");
    assert_eq!(split["TARGET"], "mock/llama3.1 80%, mock/gpt-4o-mini 20%", "{aliases}");
    assert_eq!(split["ACTIVE"], "true", "{aliases}");

    let providers = ns.kubectl(["get", "llmproviders"]).expect_success();
    assert_eq!(
        header(&providers),
        ["NAME", "TYPE", "ENDPOINT", "READY", "PROGRAMMED", "AGE"],
        "{providers}"
    );
    assert_eq!(row(&providers, "ollama")["TYPE"], "openai-compatible", "{providers}");
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn explain_prints_the_field_descriptions() {
    ensure_crds();
    let schema = |kind: &str| crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    let cases = [
        (
            "modelalias.spec.target",
            schema("ModelAlias")["properties"]["spec"]["properties"]["target"].clone(),
        ),
        (
            "llmprovider.spec.baseUrl",
            schema("LLMProvider")["properties"]["spec"]["properties"]["baseUrl"].clone(),
        ),
    ];
    for (field, node) in cases {
        let description = node["description"]
            .as_str()
            .unwrap_or_else(|| panic!("{field} has no description"));
        // The API server publishes a new CRD's OpenAPI a moment after it is
        // Established, so explain may need a few tries.
        let out = wait_for(&format!("`kubectl explain {field}`"), DEFAULT_TIMEOUT, || {
            let out = kubectl(["explain", field]);
            if out.success() {
                Ok(out)
            } else {
                Err(out.to_string())
            }
        });
        assert!(
            squash_whitespace(&out.stdout).contains(&squash_whitespace(description)),
            "`kubectl explain {field}` does not show the CRD's description {description:?}:\n{}",
            out.stdout
        );
    }
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn short_names_and_the_category_list_our_objects() {
    ensure_crds();
    let ns = Namespace::new("names");
    ns.kubectl(["apply", "-f", path_arg(&repo_path("config/samples"))])
        .expect_success();
    let names = |resource: &str| {
        // kubectl refreshes its discovery cache when a name is unknown, but a
        // freshly created CRD can take a moment to show up in discovery.
        wait_for(&format!("`kubectl get {resource}`"), DEFAULT_TIMEOUT, || {
            let out = ns.kubectl(["get", resource, "-o", "name"]);
            if out.success() && !out.stdout.trim().is_empty() {
                Ok(out.stdout)
            } else {
                Err(out.to_string())
            }
        })
    };

    let expected = |kind: &str, crd_kind: &str| -> Vec<String> {
        let mut v: Vec<String> = samples(crd_kind)
            .iter()
            .map(|s| format!("{kind}.modelgate.dev/{}", s["metadata"]["name"].as_str().expect("name")))
            .collect();
        v.sort();
        v
    };
    let sorted = |text: String| {
        let mut v: Vec<String> = text.lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    let aliases = expected("modelalias", "ModelAlias");
    let providers = expected("llmprovider", "LLMProvider");

    for (kind, objects) in [("ModelAlias", &aliases), ("LLMProvider", &providers)] {
        let crd = crd(kind);
        let short_names = crd["spec"]["names"]["shortNames"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!short_names.is_empty(), "{kind} has no short names");
        for short in short_names {
            let short = short.as_str().expect("short name");
            assert_eq!(&sorted(names(short)), objects, "`kubectl get {short}`");
        }
    }

    let mut everything: Vec<String> = aliases.iter().chain(&providers).cloned().collect();
    everything.sort();
    assert_eq!(
        sorted(names("modelgate")),
        everything,
        "`kubectl get modelgate` (the category)"
    );
}

// ---------------------------------------------------------------------------
// CEL rules: tests/crd-cases/
// ---------------------------------------------------------------------------

/// One bad object from `tests/crd-cases/` and what kubectl must print for it.
struct BadCase {
    file: PathBuf,
    kind: String,
    yaml: String,
    expect: Vec<String>,
}

fn bad_cases() -> Vec<BadCase> {
    yaml_files("tests/crd-cases")
        .into_iter()
        .map(|file| {
            let yaml = fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            let expect: Vec<String> = yaml
                .lines()
                .filter_map(|line| line.strip_prefix("# expect: "))
                .map(str::to_owned)
                .collect();
            assert!(!expect.is_empty(), "{} has no `# expect: ` line", file.display());
            let docs = yaml_documents(&file);
            assert_eq!(docs.len(), 1, "{} must hold exactly one object", file.display());
            let kind = docs[0]["kind"].as_str().unwrap_or_default().to_owned();
            BadCase {
                file,
                kind,
                yaml,
                expect,
            }
        })
        .collect()
}

/// A CEL rule in a CRD: the kind, the field path as the API server prints it
/// (with `[*]` for list indices and map keys) and the message.
#[derive(Debug)]
struct CelRule {
    kind: String,
    field: String,
    rule: String,
    message: String,
}

fn cel_rules() -> Vec<CelRule> {
    fn walk(kind: &str, field: &str, node: &Value, out: &mut Vec<CelRule>) {
        for validation in node["x-kubernetes-validations"].as_array().into_iter().flatten() {
            let rule = validation["rule"].as_str().unwrap_or_default().to_owned();
            out.push(CelRule {
                kind: kind.to_owned(),
                field: field.to_owned(),
                message: validation["message"]
                    .as_str()
                    .map_or_else(|| format!("failed rule: {rule}"), str::to_owned),
                rule,
            });
        }
        if let Some(properties) = node["properties"].as_object() {
            for (name, child) in properties {
                let path = if field.is_empty() {
                    name.clone()
                } else {
                    format!("{field}.{name}")
                };
                walk(kind, &path, child, out);
            }
        }
        for key in ["items", "additionalProperties"] {
            if node[key].is_object() {
                walk(kind, &format!("{field}[*]"), &node[key], out);
            }
        }
    }
    let mut rules = Vec::new();
    for kind in ["LLMProvider", "ModelAlias"] {
        let crd = crd(kind);
        for version in crd["spec"]["versions"].as_array().expect("versions") {
            walk(kind, "", &version["schema"]["openAPIV3Schema"], &mut rules);
        }
    }
    rules
}

/// `spec.targets[1].target` -> `spec.targets[*].target`
fn generic_indices(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if close > 0 && after[..close].bytes().all(|b| b.is_ascii_digit()) => {
                out.push_str("[*]");
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn cel_rules_reject_bad_examples_with_their_messages() {
    ensure_crds();
    let ns = Namespace::new("cel");
    let cases = bad_cases();
    assert!(!cases.is_empty(), "tests/crd-cases/ is empty");

    let mut failures = Vec::new();
    for case in &cases {
        let out = ns.apply(&case.yaml);
        let name = case.file.file_name().unwrap_or_default().to_string_lossy();
        if out.success() {
            failures.push(format!("{name}: the API server accepted it\n{out}"));
            continue;
        }
        for expected in &case.expect {
            if !out.stderr.contains(expected.as_str()) {
                failures.push(format!(
                    "{name}: expected kubectl to print\n    {expected}\nbut it printed\n{}",
                    out.stderr.trim_end()
                ));
            }
        }
    }

    // Every rule, at every field it guards, has a case whose expected message
    // names that field and carries the rule's message.
    let rules = cel_rules();
    assert!(!rules.is_empty(), "found no x-kubernetes-validations in crds/");
    let uncovered: Vec<&CelRule> = rules
        .iter()
        .filter(|rule| {
            !cases.iter().filter(|case| case.kind == rule.kind).any(|case| {
                case.expect.iter().any(|line| {
                    let line = generic_indices(line);
                    line.contains(&format!("{}: Invalid value: ", rule.field)) && line.ends_with(&rule.message)
                })
            })
        })
        .collect();
    for rule in uncovered {
        failures.push(format!(
            "no bad example in tests/crd-cases/ for the {} rule at {} (add a file for it): {}  (rule: {})",
            rule.kind, rule.field, rule.message, rule.rule
        ));
    }
    assert!(
        failures.is_empty(),
        "{} problem(s) with the {} bad cases:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------
// Round trips and diffs
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn samples_round_trip_without_the_server_changing_their_spec() {
    ensure_crds();
    let ns = Namespace::new("roundtrip");
    ns.kubectl(["apply", "-f", path_arg(&repo_path("config/samples"))])
        .expect_success();
    for (kind, resource) in [("ModelAlias", "modelalias"), ("LLMProvider", "llmprovider")] {
        for sample in samples(kind) {
            let name = sample["metadata"]["name"].as_str().expect("sample has a name");
            let live = get_json(&ns, resource, name);
            assert_eq!(
                live["spec"], sample["spec"],
                "the API server changed the spec of {kind} {name}"
            );
        }
    }
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn server_side_diff_of_server_side_applied_samples_is_empty() {
    ensure_crds();
    let ns = Namespace::new("ssa-diff");
    let samples_dir = repo_path("config/samples");
    ns.kubectl(["apply", "--server-side", "-f", path_arg(&samples_dir)])
        .expect_success();
    let diff = ns.kubectl(["diff", "--server-side", "-f", path_arg(&samples_dir)]);
    assert!(
        diff.success() && diff.stdout.is_empty(),
        "GitOps tools would see a perpetual diff: {diff}"
    );
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn client_side_diff_of_applied_samples_is_empty() {
    ensure_crds();
    let ns = Namespace::new("csa-diff");
    let samples_dir = repo_path("config/samples");
    ns.kubectl(["apply", "-f", path_arg(&samples_dir)]).expect_success();
    let diff = ns.kubectl(["diff", "-f", path_arg(&samples_dir)]);
    assert!(
        diff.success() && diff.stdout.is_empty(),
        "GitOps tools would see a perpetual diff: {diff}"
    );
}

// ---------------------------------------------------------------------------
// Status subresource
// ---------------------------------------------------------------------------

fn generation(object: &Value) -> i64 {
    object["metadata"]["generation"].as_i64().expect("metadata.generation")
}

/// A spec edit bumps `metadata.generation`; a write to the status subresource
/// does not, and status sent with the main resource is ignored.
fn check_status_subresource(ns: &Namespace, resource: &str, name: &str, spec_patch: Value, status: Value) {
    let before = get_json(ns, resource, name);
    let first = generation(&before);

    ns.kubectl([
        "patch",
        resource,
        name,
        "--type=merge",
        "-p",
        &json!({ "spec": spec_patch }).to_string(),
    ])
    .expect_success();
    let edited = get_json(ns, resource, name);
    assert_eq!(
        generation(&edited),
        first + 1,
        "a spec edit must bump {resource}/{name}'s generation"
    );

    ns.kubectl([
        "patch",
        resource,
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({ "status": status }).to_string(),
    ])
    .expect_success();
    let with_status = get_json(ns, resource, name);
    assert_eq!(
        with_status["status"], status,
        "the status write to {resource}/{name} was not stored"
    );
    assert_eq!(
        generation(&with_status),
        first + 1,
        "a status write must not bump {resource}/{name}'s generation"
    );

    // Through the main resource, status is not writable.
    let out = ns.kubectl([
        "patch",
        resource,
        name,
        "--type=merge",
        "-p",
        r#"{"status":{"observedGeneration":99}}"#,
    ]);
    assert!(out.success(), "{out}");
    let after = get_json(ns, resource, name);
    assert_eq!(
        after["status"], status,
        "status written through the main {resource} endpoint must be ignored"
    );
    assert_eq!(generation(&after), first + 1);
}

#[test]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
fn status_is_a_subresource() {
    ensure_crds();
    let ns = Namespace::new("status");
    ns.kubectl(["apply", "-f", path_arg(&repo_path("config/samples"))])
        .expect_success();

    let ready = json!([{
        "type": "Ready",
        "status": "True",
        "reason": "Served",
        "message": "served by the gateway",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 2,
    }]);
    check_status_subresource(
        &ns,
        "modelalias",
        "fast",
        json!({ "description": "Quick answers, edited" }),
        json!({ "observedGeneration": 2, "conditions": ready }),
    );
    check_status_subresource(
        &ns,
        "llmprovider",
        "openai",
        json!({ "timeouts": { "connect": "3s" } }),
        json!({ "observedGeneration": 2, "endpoint": "https://api.openai.com/v1", "type": "openai", "conditions": ready }),
    );

    // And the printer columns read the status.
    let aliases = ns.kubectl(["get", "modelaliases"]).expect_success();
    assert_eq!(row(&aliases, "fast")["READY"], "True", "{aliases}");
    let providers = ns.kubectl(["get", "llmproviders"]).expect_success();
    let openai = row(&providers, "openai");
    assert_eq!(openai["ENDPOINT"], "https://api.openai.com/v1", "{providers}");
    assert_eq!(openai["READY"], "True", "{providers}");
}
