//! The official `openai` Python package against a gateway on port 0 (tests/python/).

mod support;

use support::*;

#[tokio::test]
#[ignore = "needs the openai Python package: tests/all.sh installs it and runs this"]
async fn the_official_openai_python_client_works_against_the_gateway() {
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
    let base = format!("http://{}/v1", gateway.addr);
    run_pytest("test_openai_client.py", &[("MODELGATE_BASE_URL", base)], "7 passed").await;
    assert_eq!(upstream.last().authorization.as_deref(), Some("Bearer sk-alpha"));
}
