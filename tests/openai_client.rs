//! The official `openai` Python package against a gateway on port 0 (tests/python/).

mod support;

use support::*;

#[tokio::test]
#[ignore = "needs the openai Python package: tests/all.sh installs it and runs this"]
async fn the_official_openai_python_client_works_against_the_gateway() {
    let upstream = FakeUpstream::start("alpha", Behaviour::Echo).await;
    let limited = FakeUpstream::start(
        "limited",
        Behaviour::Headers(
            429,
            r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            vec![
                ("retry-after", "2"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "2s"),
                ("set-cookie", "__cf_bm=upstream-cookie; path=/"),
                ("openai-organization", "org-platform"),
            ],
        ),
    )
    .await;
    let config = ConfigDir::new();
    let mock = mock_provider();
    config.write(
        "c.yaml",
        &(mock
            + &provider("alpha", &upstream, "sk-alpha")
            + &provider("limiter", &limited, "sk-limited")
            + &alias("limited", "{target: limiter/m, hidden: true}")
            + &alias("fast", "{target: mock/fast-demo-model}")
            + &alias("smart", "{target: mock/smart-demo-model, hidden: true}")
            + &alias("prod.chat.v1", "{target: smart}")
            + &alias("embedder", "{target: mock/embed-demo}")
            + &alias("relay", "{target: alpha/upstream-model-1}")
            + &alias("retired", "{target: mock/old, active: false}")),
    );
    let gateway = start_gateway(&config).await;
    let stdout = pytest("test_openai_client.py", &gateway, &[]).await;
    assert!(stdout.contains("10 passed"), "{stdout}");
    assert_eq!(upstream.last().authorization.as_deref(), Some("Bearer sk-alpha"));
    assert_eq!(
        limited.seen().len(),
        3,
        "one request, then one with a retry after Retry-After"
    );
}
