//! The `modelgate` binary as a user runs it: validate, crds, and the gateway's logs.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use support::*;

fn modelgate(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .output()
        .expect("run modelgate");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_committed_crds_match_the_rust_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in modelgate::crd::render_crds().expect("render") {
        let path = root.join("crds").join(file.file_name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == file.yaml,
            "{} differs from what the Rust types generate; run `cargo run -- crds --output-dir crds` and commit the result",
            path.display()
        );
    }
}

#[test]
fn validate_accepts_the_samples() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples");
    let (code, stdout, stderr) = modelgate(&["validate", samples.to_str().expect("path")]);
    assert_eq!((code, stdout.as_str()), (0, ""), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "valid: 3 LLMProvider(s), 12 ModelAlias(es) in 3 file(s); 0 error(s), 0 warning(s)"
    );
}

#[test]
fn validate_names_the_file_object_and_field_of_each_problem() {
    let config = ConfigDir::new();
    config.write(
        "providers.yaml",
        "apiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: vllm, namespace: ml}\nspec: {type: openai-compatible}\n---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: openai, namespace: ml}\nspec: {type: openai, apiKey: {secretRef: {name: vault-managed, key: k}}}\n",
    );
    config.write(
        "aliases.yaml",
        "apiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: a, namespace: ml}\nspec: {target: b}\n---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: b, namespace: ml}\nspec: {target: a}\n---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: ok, namespace: ml}\nspec: {target: openai/gpt-4o}\n",
    );
    let dir = config.path().display().to_string();
    let (code, stdout, stderr) = modelgate(&["validate", &dir]);
    assert_eq!(code, 1, "{stderr}");
    let expected = [
        format!("{dir}/providers.yaml: LLMProvider ml/vllm: spec.baseUrl: baseUrl is required when type is openai-compatible (for example http://ollama.ollama.svc:11434/v1)"),
        format!("{dir}/aliases.yaml: ModelAlias ml/a: spec.target: aliases refer to each other in a cycle: a -> b -> a; point one of them at <provider>/<model>"),
        format!("{dir}/aliases.yaml: ModelAlias ml/b: spec.target: aliases refer to each other in a cycle: a -> b -> a; point one of them at <provider>/<model>"),
    ];
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort_unstable();
    let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(
        lines, want,
        "a Secret kept outside the files is not checked without --check-keys"
    );
    assert!(
        stderr.contains("invalid: 2 LLMProvider(s), 3 ModelAlias(es) in 2 file(s); 3 error(s), 0 warning(s)"),
        "{stderr}"
    );

    let (code, stdout, _) = modelgate(&["validate", "--check-keys", &dir]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains(&format!(
            "{dir}/providers.yaml: LLMProvider ml/openai: spec.apiKey: Secret ml/vault-managed does not exist"
        )),
        "{stdout}"
    );
}

#[test]
fn validate_warns_about_base_urls_gateways_refuse_and_still_passes() {
    let config = ConfigDir::new();
    let provider = |name: &str, url: &str| {
        format!("---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: {name}, namespace: ml}}\nspec: {{type: openai-compatible, baseUrl: '{url}'}}\n")
    };
    config.write(
        "providers.yaml",
        &(provider("imds", "http://2852039166/latest")
            + &provider("gcp", "http://metadata.google.internal./computeMetadata/v1")
            + &provider("laptop", "http://localhost:11434/v1")
            + &provider("apiserver", "https://kubernetes.default.svc/api")
            + &provider("ollama", "http://ollama.ollama.svc:11434/v1")),
    );
    let dir = config.path().display().to_string();
    let (code, stdout, stderr) = modelgate(&["validate", &dir]);
    assert_eq!(code, 0, "warnings do not fail validation: {stderr}");
    let file = format!("{dir}/providers.yaml");
    let always = "every modelgate gateway refuses to connect to it, so requests routed here fail with 502 upstream_blocked; point baseUrl at the provider's real address (or, if this is really intended, allow the address on the gateway with --allow-upstream-cidr)";
    let in_cluster = "a gateway in a cluster (started without --config) refuses to connect to it unless its address is allowed with --allow-upstream-cidr, so requests routed here fail with 502 upstream_blocked; point baseUrl at a Service instead (for example http://ollama.ollama.svc:11434/v1)";
    let mut want = vec![
        format!("{file}: LLMProvider ml/imds: spec.baseUrl: warning: baseUrl host '2852039166' is 169.254.169.254 in another spelling, a cloud metadata service, which hands out the node's credentials: {always}"),
        format!("{file}: LLMProvider ml/gcp: spec.baseUrl: warning: baseUrl host 'metadata.google.internal.' is the name of a cloud metadata service, which hands out the node's credentials: {always}"),
        format!("{file}: LLMProvider ml/laptop: spec.baseUrl: warning: baseUrl host 'localhost' is a loopback name (it resolves to 127.0.0.1 or ::1): {in_cluster}"),
        format!("{file}: LLMProvider ml/apiserver: spec.baseUrl: warning: baseUrl host 'kubernetes.default.svc' is the cluster's Kubernetes API server: {in_cluster}"),
    ];
    want.sort_unstable();
    let mut lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    lines.sort_unstable();
    assert_eq!(lines, want);
    assert_eq!(
        stderr.trim(),
        "valid: 5 LLMProvider(s), 0 ModelAlias(es) in 1 file(s); 0 error(s), 4 warning(s)"
    );
}

#[tokio::test]
async fn keys_never_reach_logs_errors_or_metrics() {
    const KEY: &str = "sk-never-print-me-7731";
    let upstream = FakeUpstream::start(
        "alpha",
        Behaviour::Fail(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-never-print-me-7731"}}"#,
        ),
    )
    .await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(provider("alpha", &upstream, KEY) + &alias("a", "{target: alpha/m}")),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args([
            "gateway",
            "--config",
            config.path().to_str().expect("path"),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gateway");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut log = String::new();
    let (api, admin) = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).expect("read the log") > 0,
            "the gateway exited:\n{log}"
        );
        log.push_str(&line);
        if line.contains("modelgate gateway serving") {
            let field = |name: &str| {
                let start = line.find(&format!("{name}=http://")).expect("address in the log") + name.len() + 8;
                line[start..].split_whitespace().next().expect("address").to_string()
            };
            break (field("api"), field("admin"));
        }
    };
    let client = reqwest::Client::new();
    let reply = client
        .post(format!("http://{api}/v1/chat/completions"))
        .body(chat("a"))
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("body");
    let metrics = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    child.kill().expect("stop the gateway");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("read the log");
    log.push_str(&rest);
    let _ = child.wait();

    assert!(reply.contains("upstream_auth_failed"), "{reply}");
    assert!(
        upstream.last().authorization.as_deref() == Some(&format!("Bearer {KEY}")),
        "the key was sent upstream"
    );
    for (place, text) in [("reply", &reply), ("metrics", &metrics), ("log", &log)] {
        assert!(
            !text.contains("never-print-me"),
            "the key leaked into the {place}:\n{text}"
        );
    }
    assert!(log.contains("the provider rejected its API key"), "{log}");
}

#[test]
fn connection_limits_that_would_refuse_every_client_are_rejected() {
    for (flag, value, message) in [
        ("--header-timeout", "0s", "must be more than zero"),
        ("--idle-timeout", "soon", "write e.g. 500ms, 10s or 5m"),
        ("--max-header-bytes", "100", "must be at least 1024"),
    ] {
        let (code, _, stderr) = modelgate(&["gateway", "--config", "config/samples", flag, value]);
        assert_eq!(code, 2, "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(message),
            "{flag} {value}: {stderr}"
        );
    }
}
