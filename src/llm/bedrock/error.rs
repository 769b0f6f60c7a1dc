//! Bedrock's errors, classified: an HTTP error answer (`x-amzn-ErrorType` and a JSON body
//! with `message`), or an exception inside a ConverseStream.

use serde::Deserialize;

use crate::llm::failure::{mentions_context_window, FailureClass, UpstreamError};

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default, alias = "Message")]
    message: Option<String>,
    /// Some AWS front ends put the type in the body instead of the header.
    #[serde(default, rename = "__type", alias = "code")]
    kind: Option<String>,
}

/// The error type without the namespace AWS may add (`ThrottlingException:http://...` or
/// `com.amazon.coral#ThrottlingException`).
fn short_type(raw: &str) -> &str {
    let raw = raw.split(':').next().unwrap_or(raw);
    raw.rsplit('#').next().unwrap_or(raw).trim()
}

/// Classifies an HTTP error answer from its status, its `x-amzn-ErrorType` header (when
/// present) and its body.
pub fn classify_error(status: u16, error_type: Option<&str>, body: &[u8]) -> UpstreamError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let kind = error_type.or(parsed.kind.as_deref()).map(short_type);
    let message = parsed
        .message
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    classify(Some(status), kind, &message)
}

/// Classifies a Bedrock error by its type (`ThrottlingException`, or the stream's
/// `throttlingException`: compared without case) and message. `status` is the HTTP status,
/// or `None` inside a stream, where the status of the exception's documented HTTP form is
/// used.
pub fn classify(status: Option<u16>, kind: Option<&str>, message: &str) -> UpstreamError {
    let lower = kind.unwrap_or_default().to_ascii_lowercase();
    let (class, default_status) = match lower.as_str() {
        "throttlingexception" | "servicequotaexceededexception" => (FailureClass::RateLimited, 429),
        "serviceunavailableexception" | "modelnotreadyexception" => (FailureClass::Overloaded, 503),
        "modeltimeoutexception" => (FailureClass::Timeout, 408),
        "internalserverexception" | "modelerrorexception" => (FailureClass::ServerError, 500),
        // A stream the model broke off: worth a retry elsewhere, not the client's fault.
        "modelstreamerrorexception" => (FailureClass::ServerError, 502),
        "accessdeniedexception"
        | "unrecognizedclientexception"
        | "expiredtokenexception"
        | "invalidsignatureexception"
        | "signaturedoesnotmatch"
        | "incompletesignature"
        | "missingauthenticationtokenexception" => (FailureClass::AuthFailed, 403),
        "validationexception" if context_window(message) => (FailureClass::ContextWindowExceeded, 400),
        "validationexception" | "resourcenotfoundexception" => (FailureClass::ClientError, 400),
        _ => {
            let status = status.unwrap_or(502);
            let mut class = FailureClass::of_status(status);
            if matches!(status, 400 | 413) && context_window(message) {
                class = FailureClass::ContextWindowExceeded;
            }
            (class, status)
        }
    };
    let mut error = UpstreamError::new(
        class,
        status.unwrap_or(default_status),
        if message.is_empty() {
            format!("the provider failed with {}", kind.unwrap_or("an unnamed error"))
        } else {
            message.to_string()
        },
    );
    error.provider_type = kind.map(str::to_string);
    error
}

/// Whether a validation message says the input is longer than the model takes.
fn context_window(message: &str) -> bool {
    mentions_context_window(None, message) || message.to_ascii_lowercase().contains("too long")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_from_the_header_or_the_body_are_classified() {
        let throttled = classify_error(
            429,
            Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            br#"{"message":"Too many requests, please wait before trying again."}"#,
        );
        assert_eq!((throttled.class, throttled.status), (FailureClass::RateLimited, 429));
        assert_eq!(throttled.provider_type.as_deref(), Some("ThrottlingException"));
        assert_eq!(throttled.message, "Too many requests, please wait before trying again.");

        let unavailable = classify_error(
            503,
            None,
            br#"{"__type":"ServiceUnavailableException","message":"busy"}"#,
        );
        assert_eq!(unavailable.class, FailureClass::Overloaded);

        let timeout = classify_error(408, Some("ModelTimeoutException"), br#"{"message":"timed out"}"#);
        assert_eq!(timeout.class, FailureClass::Timeout);

        for message in [
            "Input is too long for requested model.",
            "The model returned the following errors: prompt is too long: 210000 tokens > 200000 maximum",
            "too many input tokens",
        ] {
            let body = serde_json::json!({ "message": message }).to_string();
            let error = classify_error(400, Some("ValidationException"), body.as_bytes());
            assert_eq!(error.class, FailureClass::ContextWindowExceeded, "{message}");
        }
        let invalid = classify_error(
            400,
            Some("ValidationException"),
            br#"{"message":"messages: field required"}"#,
        );
        assert_eq!(invalid.class, FailureClass::ClientError);

        for kind in ["AccessDeniedException", "UnrecognizedClientException"] {
            assert_eq!(classify_error(403, Some(kind), b"{}").class, FailureClass::AuthFailed);
        }
        let odd = classify_error(502, None, b"<html>Bad Gateway</html>");
        assert_eq!(
            (odd.class, odd.message.as_str()),
            (FailureClass::ServerError, "<html>Bad Gateway</html>")
        );
    }

    #[test]
    fn stream_exceptions_take_their_documented_status() {
        let error = classify(None, Some("throttlingException"), "slow down");
        assert_eq!((error.class, error.status), (FailureClass::RateLimited, 429));
        let error = classify(None, Some("modelStreamErrorException"), "");
        assert_eq!((error.class, error.status), (FailureClass::ServerError, 502));
        assert!(error.message.contains("modelStreamErrorException"), "{}", error.message);
        let error = classify(None, Some("validationException"), "Input is too long");
        assert_eq!(error.class, FailureClass::ContextWindowExceeded);
    }
}
