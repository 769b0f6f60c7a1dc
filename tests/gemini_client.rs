//! The official `openai` Python package against an alias on a Gemini provider: chat, streams,
//! tools with results, embeddings and errors (tests/python/test_gemini_client.py).

mod support;

use serde_json::json;
use support::gemini::{gemini_provider, gemini_reply, FakeGemini, Reply};
use support::*;

const KEY: &str = "AIzaSy-gemini-provider-key";

#[tokio::test]
#[ignore = "needs the openai Python package: tests/all.sh installs it and runs this"]
async fn the_official_openai_python_client_works_against_a_gemini_alias() {
    let fake = FakeGemini::start(KEY).await;
    fake.set(|request| {
        if request.body.to_string().contains("rate limit me") {
            let body = json!({"error": {"code": 429, "message": "Quota exceeded for the model.", "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}});
            return Reply::Json(429, vec![], body.to_string());
        }
        gemini_reply(request, KEY)
    });
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &(gemini_provider("google", &fake, KEY, "")
            + &alias("gemini", "{target: google/gemini-2.5-flash}")
            + &alias("gemini-embedder", "{target: google/gemini-embedding-001}")),
    );
    let gateway = start_gateway(&config).await;
    let base = format!("http://{}/v1", gateway.addr);
    run_pytest("test_gemini_client.py", &[("MODELGATE_BASE_URL", base)], "7 passed").await;
    let requests = fake.requests();
    assert!(requests.len() >= 8, "{} requests", requests.len());
    for seen in requests {
        assert_eq!(seen.header("x-goog-api-key").as_deref(), Some(KEY), "{}", seen.path);
        assert_eq!(seen.header("authorization"), None, "the client's key never travels");
    }
}
