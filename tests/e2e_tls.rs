//! HTTPS to a provider with a private CA, in the cluster: a Secret holding the CA's PEM, an
//! LLMProvider naming it in `tls.caSecretRef`, an HTTPS upstream with a certificate from that
//! CA, and the controller and gateway reading them from a real apiserver.
//!
//!     tests/controlplane/run.sh cargo test --test e2e_tls -- --include-ignored

mod cluster;
mod e2e_support;
mod support;

use cluster::DEFAULT_TIMEOUT;
use e2e_support::*;
use serde_json::Value;
use support::tls::{Ca, Options, TlsUpstream};

async fn ask(gateway: &Proc, model: &str) -> (u16, Value) {
    let api = gateway.api.as_deref().expect("gateway address");
    let response = support::client()
        .post(format!("http://{api}/v1/chat/completions"))
        .body(support::chat(model))
        .send()
        .await
        .expect("the gateway answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A labelled Secret holding `pem` under `ca.crt`.
fn ca_secret(name: &str, pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!("---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  labels: {{modelgate.dev/credential: \"true\"}}\nstringData:\n  ca.crt: |\n{indented}")
}

/// An `openai-compatible` LLMProvider at `base_url` trusting key `key` of Secret `secret`.
fn provider_trusting(name: &str, base_url: &str, secret: &str, key: &str) -> String {
    format!(
        "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata:\n  name: {name}\nspec:\n  type: openai-compatible\n  baseUrl: {base_url}\n  tls: {{caSecretRef: {{name: {secret}, key: {key}}}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes API server: run tests/all.sh or tests/controlplane/run.sh cargo test -- --ignored"]
async fn a_provider_trusting_a_ca_from_a_secret_is_served_a_wrong_ca_is_a_502_and_a_missing_one_a_condition() {
    let stack = Stack::new("e2e-tls");
    let (ca, other) = (Ca::new("in-cluster CA"), Ca::new("some other CA"));
    let h2 = Options {
        h2: true,
        close_each: false,
    };
    let upstream = TlsUpstream::start(&ca, h2).await;
    let url = upstream.base_url();
    stack.apply(
        &[
            ca_secret("vllm-ca", &ca.pem),
            ca_secret("other-ca", &other.pem),
            provider_trusting("vllm", &url, "vllm-ca", "ca.crt"),
            provider_trusting("wrong", &url, "other-ca", "ca.crt"),
            provider_trusting("absent", &url, "no-such-secret", "ca.crt"),
            provider_trusting("no-key", &url, "vllm-ca", "bundle.pem"),
            alias("chat", "{target: vllm/model-t}"),
            alias("wrong-chat", "{target: wrong/model-t}"),
        ]
        .concat(),
    );
    let _controller = stack.controller("c1");
    let gateway = stack.gateway();

    stack.wait_condition("modelalias", "chat", "Ready", "True");
    support::eventually(DEFAULT_TIMEOUT, "'chat' to be served over TLS", || async {
        let (status, body) = ask(&gateway, "chat").await;
        (status == 200 && body["choices"][0]["message"]["content"] == "tls served model-t").then_some(())
    })
    .await;
    assert_eq!(
        upstream.counts.versions.lock().expect("lock").first(),
        Some(&hyper::Version::HTTP_2)
    );

    let (status, body) = ask(&gateway, "wrong-chat").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_tls_failed", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("'{}/wrong'", stack.ns.name())), "{message}");

    let ns = stack.ns.name();
    for (provider, secret, key, says) in [
        ("absent", "no-such-secret", "ca.crt", "does not exist"),
        ("no-key", "vllm-ca", "bundle.pem", "bundle.pem"),
    ] {
        let object = stack.wait_condition("llmprovider", provider, "ResolvedRefs", "False");
        let condition = condition(&object, "ResolvedRefs");
        assert_eq!(condition["reason"], "CANotFound", "{object}");
        let message = condition["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("Secret {ns}/{secret}")) && message.contains(says),
            "{provider} ({key}): {message}"
        );
    }

    // The CA rotates: the upstream moves to a certificate of the new CA and the Secret to the
    // new CA; the gateway follows without a restart.
    upstream.rotate(&other);
    stack.apply(&ca_secret("vllm-ca", &other.pem));
    support::eventually(DEFAULT_TIMEOUT, "'chat' to be served under the new CA", || async {
        let (status, _) = ask(&gateway, "chat").await;
        (status == 200).then_some(())
    })
    .await;
}
