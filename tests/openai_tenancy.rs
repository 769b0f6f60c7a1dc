//! The official `openai` Python package with team keys: 401, 403, 402, 429 and `/v1/models`
//! per key (tests/python/tenancy_client.py).

mod support;

use std::path::Path;

use modelgate::gateway::tenancy::{AuthMode, TenancyOptions};
use support::*;

#[tokio::test]
#[ignore = "needs the openai Python package: tests/all.sh installs it and runs this"]
async fn the_official_openai_client_meets_each_tenancy_error() {
    let python = std::env::var("MODELGATE_PYTHON").unwrap_or_else(|_| {
        panic!("MODELGATE_PYTHON is not set: run tests/all.sh, which creates a virtualenv with the openai package")
    });
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = ConfigDir::new();
    let team = |name: &str, spec: &str| {
        format!("---\napiVersion: modelgate.dev/v1alpha1\nkind: Team\nmetadata: {{name: {name}}}\nspec: {spec}\n")
    };
    // One call costs 11 × 1.00 + 5 × 2.00 per million = 0.000021 USD.
    config.write(
        "c.yaml",
        &(provider("alpha", &upstream, "sk-upstream")
            + &alias("cheap", "{target: alpha/cheap-model, pricing: {inputPerMillionTokens: \"1.00\", outputPerMillionTokens: \"2.00\"}}")
            + &alias("premium", "{target: alpha/premium-model}")
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: AccessGroup\nmetadata: {name: starter}\nspec: {aliases: [cheap]}\n"
            + &team("free", "{accessGroups: [starter]}")
            + &team("budget", "{accessGroups: [starter], credits: {allocated: \"0.000021\"}}")
            + &team("limited", "{accessGroups: [starter], limits: {requestsPerMinute: 1}}")
            + &key_secret("free", "free", "mg-py-free")
            + &key_secret("budget", "budget", "mg-py-budget")
            + &key_secret("limited", "limited", "mg-py-limited")),
    );
    let gateway = start_gateway_tenancy(
        &config,
        TenancyOptions {
            auth: AuthMode::ApiKey,
            ..TenancyOptions::default()
        },
    )
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tenancy_client.py");
    let output = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&script)
        .env("MODELGATE_BASE_URL", format!("http://{}/v1", gateway.addr))
        .env("FREE_KEY", "mg-py-free")
        .env("BUDGET_KEY", "mg-py-budget")
        .env("LIMITED_KEY", "mg-py-limited")
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the openai client tests failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("5 passed"), "{stdout}");
}
