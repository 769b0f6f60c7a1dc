//! What went wrong upstream, in classes the routing layer acts on (retry, fall back, eject).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The class of an upstream failure. Fallbacks and retries are configured by these names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum FailureClass {
    /// 429: a rate limit or quota.
    RateLimited,
    /// 503, Anthropic's 529: the provider is overloaded.
    Overloaded,
    /// Any other 5xx.
    ServerError,
    /// No answer in time: connect, first token, idle or total (ours or the provider's 504/408).
    Timeout,
    /// Connection refused or reset before a response.
    Unreachable,
    /// The request is too long for the model's context window (recognised per provider).
    ContextWindowExceeded,
    /// The provider rejected the gateway's credentials (401/403).
    AuthFailed,
    /// The request itself is wrong (400, 404, 413, 422): never retried or fallen back.
    ClientError,
}

impl FailureClass {
    /// The class of an HTTP error status, before looking at the body.
    pub fn of_status(status: u16) -> Self {
        match status {
            429 => FailureClass::RateLimited,
            503 | 529 => FailureClass::Overloaded,
            408 | 504 => FailureClass::Timeout,
            401 | 403 => FailureClass::AuthFailed,
            500..=599 => FailureClass::ServerError,
            _ => FailureClass::ClientError,
        }
    }

    /// The name users write in `fallbacks[].on` and metrics show.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::RateLimited => "rateLimited",
            FailureClass::Overloaded => "overloaded",
            FailureClass::ServerError => "serverError",
            FailureClass::Timeout => "timeout",
            FailureClass::Unreachable => "unreachable",
            FailureClass::ContextWindowExceeded => "contextWindowExceeded",
            FailureClass::AuthFailed => "authFailed",
            FailureClass::ClientError => "clientError",
        }
    }

    /// Whether the failure says something about the target's health (client errors do not).
    pub fn counts_against_target(self) -> bool {
        !matches!(self, FailureClass::ClientError | FailureClass::ContextWindowExceeded)
    }
}

/// An upstream failure as the gateway reports it: the class, the status for the client, and
/// the provider's own words (with any key scrubbed out before this is built).
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamError {
    pub class: FailureClass,
    /// The HTTP status to answer with: the upstream's own (a 529 stays a 5xx), or 502/504 for
    /// transport failures.
    pub status: u16,
    pub message: String,
    /// The provider's error type (`rate_limit_error`, `RESOURCE_EXHAUSTED`, ...), when known.
    pub provider_type: Option<String>,
    /// The provider's error code (`context_length_exceeded`, ...), when known.
    pub code: Option<String>,
    /// The parameter at fault, when known.
    pub param: Option<String>,
    /// How long the provider asked us to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl UpstreamError {
    /// An error of a class with the status that class implies and our own message.
    pub fn new(class: FailureClass, status: u16, message: impl Into<String>) -> Self {
        UpstreamError {
            class,
            status,
            message: message.into(),
            provider_type: None,
            code: None,
            param: None,
            retry_after: None,
        }
    }

    /// An error whose class follows from its status.
    pub fn from_status(status: u16, message: impl Into<String>) -> Self {
        UpstreamError::new(FailureClass::of_status(status), status, message)
    }

    /// A malformed answer from the provider (unparseable body, broken stream).
    pub fn bad_response(message: impl Into<String>) -> Self {
        UpstreamError::new(FailureClass::ServerError, 502, message)
    }
}

/// Phrases providers use for a request longer than the context window, lower-cased.
const CONTEXT_WINDOW_PHRASES: [&str; 9] = [
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "input is too long",
    "too many input tokens",
    "exceeds the maximum number of tokens",
    "input token count",
    "reduce the length of the messages",
];

/// Whether a 400/413 error's code or message says the context window was exceeded.
pub fn mentions_context_window(code: Option<&str>, message: &str) -> bool {
    if code == Some("context_length_exceeded") {
        return true;
    }
    let lower = message.to_ascii_lowercase();
    CONTEXT_WINDOW_PHRASES.iter().any(|p| lower.contains(p))
}

/// `Retry-After` as seconds (the HTTP-date form is rare for these APIs and ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(FailureClass::of_status(429), FailureClass::RateLimited);
        assert_eq!(FailureClass::of_status(529), FailureClass::Overloaded);
        assert_eq!(FailureClass::of_status(503), FailureClass::Overloaded);
        assert_eq!(FailureClass::of_status(500), FailureClass::ServerError);
        assert_eq!(FailureClass::of_status(504), FailureClass::Timeout);
        assert_eq!(FailureClass::of_status(401), FailureClass::AuthFailed);
        assert_eq!(FailureClass::of_status(422), FailureClass::ClientError);
    }

    #[test]
    fn context_window_messages_are_recognised() {
        assert!(mentions_context_window(Some("context_length_exceeded"), ""));
        assert!(mentions_context_window(
            None,
            "prompt is too long: 210000 tokens > 200000 maximum"
        ));
        assert!(mentions_context_window(
            None,
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
        ));
        assert!(!mentions_context_window(None, "messages: field required"));
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
