//! The official `openai` Python package with team keys: 401, 403, 402, 429 and `/v1/models`
//! per key (tests/python/tenancy_client.py).

mod support;

use modelgate::gateway::tenancy::{AuthMode, TenancyOptions};
use support::*;

#[tokio::test]
#[ignore = "needs the openai Python package: tests/all.sh installs it and runs this"]
async fn the_official_openai_client_meets_each_tenancy_error() {
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
    let env = [
        ("FREE_KEY", "mg-py-free"),
        ("BUDGET_KEY", "mg-py-budget"),
        ("LIMITED_KEY", "mg-py-limited"),
    ];
    let stdout = pytest("tenancy_client.py", &gateway, &env).await;
    assert!(stdout.contains("5 passed"), "{stdout}");
}
