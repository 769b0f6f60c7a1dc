//! The request probe and the `model` rewrite (`gateway::body`) on any bytes.

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::gateway::body::{probe, rewrite_model};

/// Names the rewrite puts in: longer, empty, escaped and non-ASCII.
const NEW_MODELS: [&str; 3] = ["upstream-model-with-a-longer-name", "", "q\"uo\\te\u{7}\u{2028}é🦀"];

/// Properties of `probe` and `rewrite_model`:
/// - the probe never panics, and refuses a body with a 400 naming what is wrong;
/// - what it accepts is JSON whose top-level `model` is the probed string, and `stream` is
///   true exactly when the body's top-level `stream` is `true`;
/// - the rewrite keeps every byte outside the model literal, and the result is JSON that
///   probes to the new model with the same `stream`.
pub fn request_body(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    let found = match probe(&body) {
        Ok(found) => found,
        Err(error) => return refused(data, &error),
    };
    let (start, end) = found.model_span;
    assert!(
        start < end && end <= body.len(),
        "span {start}..{end} of {}",
        body.len()
    );
    let literal: String = serde_json::from_slice(&body[start..end]).expect("the span is a JSON string literal");
    assert_eq!(literal, found.model, "the span holds the probed model");
    serde_json::from_slice::<IgnoredAny>(&body).expect("a probed body is JSON");
    // serde_json's `Value` refuses numbers beyond f64 (1e400), which are still JSON.
    if let Ok(value) = serde_json::from_slice::<Value>(&body) {
        assert_eq!(value.get("model").and_then(Value::as_str), Some(&*found.model));
        assert_eq!(found.stream, value.get("stream") == Some(&Value::Bool(true)));
    }

    let old = found.model.to_string();
    for new in NEW_MODELS.iter().copied().chain([old.as_str()]) {
        // As `gateway::live` builds it for each target.
        let new_json = Value::from(new).to_string();
        let out = rewrite_model(&body, found.model_span, new_json.as_bytes());
        let new_end = start + new_json.len();
        assert_eq!(out.len(), body.len() - (end - start) + new_json.len());
        assert_eq!(&out[..start], &body[..start], "bytes before the model are kept");
        assert_eq!(&out[start..new_end], new_json.as_bytes());
        assert_eq!(&out[new_end..], &body[end..], "bytes after the model are kept");
        let again = probe(&out).expect("a rewritten body probes");
        assert_eq!(again.model, new);
        assert_eq!(again.model_span, (start, new_end));
        assert_eq!(again.stream, found.stream);
        serde_json::from_slice::<IgnoredAny>(&out).expect("a rewritten body is JSON");
    }
}

/// A refused body gets a 400 with a code; a body that is a JSON object is refused only for its
/// `model` or for a repeated `model` or `stream` key.
fn refused(data: &[u8], error: &crate::gateway::ApiError) {
    assert_eq!(error.status, 400, "{error:?}");
    assert!(!error.message.is_empty());
    let code = error.code.unwrap_or_default();
    assert!(
        matches!(code, "invalid_json" | "missing_model" | "invalid_model"),
        "{error:?}"
    );
    if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(data) {
        match object.get("model") {
            Some(Value::String(_)) => assert!(
                code == "invalid_json" && error.message.contains("duplicate field"),
                "a JSON object with a string model was refused: {error:?}"
            ),
            Some(Value::Null) | None => assert!(
                code == "missing_model" || error.message.contains("duplicate field"),
                "{error:?}"
            ),
            Some(_) => assert!(
                code == "invalid_model" || error.message.contains("duplicate field"),
                "{error:?}"
            ),
        }
    }
}
