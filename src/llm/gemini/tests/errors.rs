use std::time::Duration;

use serde_json::json;

use super::strict;
use crate::llm::embeddings::EmbeddingsRequest;
use crate::llm::gemini::{classify_error, from_batch_embed, to_batch_embed, MAX_BATCH};
use crate::llm::FailureClass;

#[test]
fn quota_errors_are_rate_limits_with_google_retry_delay() {
    let error = classify_error(429, include_bytes!("../fixtures/rate_limited.json"));
    assert_eq!((error.class, error.status), (FailureClass::RateLimited, 429));
    assert_eq!(error.retry_after, Some(Duration::from_secs(37)));
    assert_eq!(error.provider_type.as_deref(), Some("RESOURCE_EXHAUSTED"));
    assert!(
        error.message.starts_with("You exceeded your current quota"),
        "{}",
        error.message
    );
}

#[test]
fn google_status_names_decide_the_class() {
    let body = |code: u16, status: &str, message: &str| {
        json!({"error": {"code": code, "message": message, "status": status}}).to_string()
    };
    let cases = [
        (
            503,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
            FailureClass::Overloaded,
        ),
        (
            500,
            "INTERNAL",
            "An internal error has occurred.",
            FailureClass::ServerError,
        ),
        (
            504,
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
            FailureClass::Timeout,
        ),
        (
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Unknown name \"foo\"",
            FailureClass::ClientError,
        ),
        (
            400,
            "FAILED_PRECONDITION",
            "User location is not supported for the API use.",
            FailureClass::ClientError,
        ),
        (
            404,
            "NOT_FOUND",
            "models/gemini-9 is not found for API version v1beta",
            FailureClass::ClientError,
        ),
        (
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            FailureClass::ContextWindowExceeded,
        ),
    ];
    for (code, status, message, class) in cases {
        let error = classify_error(code, body(code, status, message).as_bytes());
        assert_eq!((error.class, error.status), (class, code), "{status}: {message}");
        assert_eq!(error.message, message);
    }
    // Streaming methods wrap the envelope in an array; a body that is not JSON keeps its status class.
    let wrapped = format!("[{}]", body(429, "RESOURCE_EXHAUSTED", "Quota exceeded"));
    assert_eq!(classify_error(429, wrapped.as_bytes()).class, FailureClass::RateLimited);
    let html = classify_error(502, b"<html>Bad Gateway</html>");
    assert_eq!((html.class, html.status), (FailureClass::ServerError, 502));
}

#[test]
fn a_key_google_calls_invalid_is_an_auth_failure_not_a_client_error() {
    let error = classify_error(400, include_bytes!("../fixtures/key_invalid.json"));
    assert_eq!((error.class, error.status), (FailureClass::AuthFailed, 401));
    assert!(error.message.contains("platform team"), "{}", error.message);
}

fn embeddings(value: serde_json::Value) -> EmbeddingsRequest {
    serde_json::from_value(value).expect("a valid embeddings request")
}

#[test]
fn embeddings_are_batch_embed_requests_and_come_back_as_floats_or_base64() {
    let request =
        embeddings(json!({"model": "embedder", "input": ["a", "b"], "dimensions": 3, "encoding_format": "float"}));
    let batch = to_batch_embed(&request, "gemini-embedding-001", &strict()).expect("translates");
    assert_eq!(
        serde_json::to_value(batch).expect("json"),
        json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 3},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 3}
        ]})
    );
    let answer = br#"{"embeddings": [{"values": [0.5, -1.0, 0.25]}, {"values": [1.0, 0.0, 0.0]}]}"#;
    let floats: serde_json::Value =
        serde_json::from_slice(&from_batch_embed(answer, "gemini-embedding-001", &request).expect("reads"))
            .expect("json");
    assert_eq!(floats["data"][0]["embedding"], json!([0.5, -1.0, 0.25]));
    assert_eq!(floats["data"][1]["index"], 1);
    assert_eq!(floats["model"], "gemini-embedding-001");
    // Gemini reports no usage for embeddings: the answer (and the meter) carry the estimate,
    // one token for each of the two one-byte texts, not zero.
    assert_eq!(floats["usage"], json!({"prompt_tokens": 2, "total_tokens": 2}));
    let as_base64 = embeddings(json!({"model": "embedder", "input": ["a", "b"], "encoding_format": "base64"}));
    let base64: serde_json::Value =
        serde_json::from_slice(&from_batch_embed(answer, "gemini-embedding-001", &as_base64).expect("reads"))
            .expect("json");
    // 1.0f32, 0.0f32, 0.0f32, little-endian.
    assert_eq!(base64["data"][1]["embedding"], "AACAPwAAAAAAAAAA");
    // When Gemini does report usage, its count is the one used.
    let counted = br#"{"embeddings": [{"values": [0.5]}], "usageMetadata": {"promptTokenCount": 7}}"#;
    let counted: serde_json::Value =
        serde_json::from_slice(&from_batch_embed(counted, "gemini-embedding-001", &request).expect("reads"))
            .expect("json");
    assert_eq!(counted["usage"]["prompt_tokens"], 7);
}

#[test]
fn embeddings_gemini_cannot_make_are_refused_by_name() {
    let refused = |value: serde_json::Value| {
        to_batch_embed(&embeddings(value), "gemini-embedding-001", &strict())
            .expect_err("refused")
            .param
    };
    assert_eq!(
        refused(json!({"model": "e", "input": [1, 2, 3]})),
        Some("input".to_string())
    );
    assert_eq!(
        refused(json!({"model": "e", "input": [[1], [2]]})),
        Some("input".to_string())
    );
    let many: Vec<String> = (0..=MAX_BATCH).map(|i| i.to_string()).collect();
    assert_eq!(refused(json!({"model": "e", "input": many})), Some("input".to_string()));
    assert_eq!(
        refused(json!({"model": "e", "input": "a", "encoding_format": "int8"})),
        Some("encoding_format".to_string())
    );
    assert_eq!(
        refused(json!({"model": "e", "input": "a", "user": "u"})),
        Some("user".to_string())
    );
}
