//! The official `openai` Python package against a gateway on port 0 (tests/python/).

mod support;

use std::path::Path;

use support::*;

#[tokio::test]
#[ignore = "needs the openai Python package: tests/all.sh installs it and runs this"]
async fn the_official_openai_python_client_works_against_the_gateway() {
    let python = std::env::var("MODELGATE_PYTHON").unwrap_or_else(|_| {
        panic!("MODELGATE_PYTHON is not set: run tests/all.sh, which creates a virtualenv with the openai package")
    });
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let config = ConfigDir::new();
    let mock = mock_provider();
    config.write(
        "c.yaml",
        &(mock
            + &provider("alpha", &upstream, "sk-alpha")
            + &alias("fast", "{target: mock/fast-demo-model}")
            + &alias("smart", "{target: mock/smart-demo-model, hidden: true}")
            + &alias("prod.chat.v1", "{target: smart}")
            + &alias("embedder", "{target: mock/embed-demo}")
            + &alias("relay", "{target: alpha/upstream-model-1}")
            + &alias("retired", "{target: mock/old, active: false}")),
    );
    let gateway = start_gateway(&config).await;
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_openai_client.py");
    let output = tokio::process::Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            tests.to_str().expect("path"),
        ])
        .env("MODELGATE_BASE_URL", format!("http://{}/v1", gateway.addr))
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the openai client tests failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("7 passed"), "{stdout}");
    assert_eq!(upstream.last().authorization.as_deref(), Some("Bearer sk-alpha"));
}
