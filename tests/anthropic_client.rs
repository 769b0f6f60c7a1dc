//! The official `anthropic` Python package against `/v1/messages` (an Anthropic alias and an
//! OpenAI-compatible one), and the official `openai` package against an Anthropic provider
//! (tests/python/test_anthropic_client.py).

mod support;

use std::path::Path;

use support::scripted::{anthropic_provider, openai_provider, Scripted};
use support::*;

#[tokio::test]
#[ignore = "needs the anthropic and openai Python packages: tests/all.sh installs them and runs this"]
async fn the_official_anthropic_python_client_works_against_the_gateway() {
    let python = std::env::var("MODELGATE_PYTHON").unwrap_or_else(|_| {
        panic!("MODELGATE_PYTHON is not set: run tests/all.sh, which creates a virtualenv with the anthropic package")
    });
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
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_anthropic_client.py");
    let output = tokio::process::Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            tests.to_str().expect("path"),
        ])
        .env("MODELGATE_ORIGIN", format!("http://{}", gateway.addr))
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the anthropic client tests failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("11 passed"), "{stdout}");
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
