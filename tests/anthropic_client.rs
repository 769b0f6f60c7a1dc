//! The official `anthropic` Python package against `/v1/messages` (an Anthropic alias and an
//! OpenAI-compatible one), and the official `openai` package against an Anthropic provider
//! (tests/python/test_anthropic_client.py).

mod support;

use support::scripted::{anthropic_provider, openai_provider, Scripted};
use support::*;

#[tokio::test]
#[ignore = "needs the anthropic and openai Python packages: tests/all.sh installs them and runs this"]
async fn the_official_anthropic_python_client_works_against_the_gateway() {
    let claude = Scripted::anthropic().await;
    let openai = Scripted::openai().await;
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(anthropic_provider("claude", &claude, "sk-ant-provider", "")
            + &openai_provider("relay", &openai, "sk-openai-provider")
            + &alias("smart", "{target: claude/claude-sonnet-4-5}")
            + &alias("gpt", "{target: relay/gpt-4o}")),
    );
    let gateway = start_gateway(&config).await;
    let origin = format!("http://{}", gateway.addr);
    run_pytest("test_anthropic_client.py", &[("MODELGATE_ORIGIN", origin)], "11 passed").await;
    // The upstreams got the providers' keys, never the client's.
    for seen in claude.requests() {
        assert_eq!(
            seen.header("x-api-key").as_deref(),
            Some("sk-ant-provider"),
            "{}",
            seen.path
        );
    }
    for seen in openai.requests() {
        assert_eq!(
            seen.header("authorization").as_deref(),
            Some("Bearer sk-openai-provider")
        );
        assert_eq!(seen.header("x-api-key"), None);
    }
}
