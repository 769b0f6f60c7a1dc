//! Upstream answers the gateway does not pass through: a redirect (never followed: it could
//! lead anywhere, including where the policy refuses to go) and a 508 (a loop).

use http::{header, HeaderMap, StatusCode};

use crate::gateway::ApiError;

/// The gateway's own error for a redirect or a loop from `provider`; `None` for any other
/// answer. Only the host of a redirect's `Location` is told: its path or query may carry
/// secrets.
pub fn unfollowed(status: StatusCode, headers: &HeaderMap, provider: &str) -> Option<ApiError> {
    if status.is_redirection() {
        let to = headers
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|location| url::Url::parse(location).ok())
            .and_then(|url| url.host_str().map(str::to_string));
        tracing::warn!(%provider, %status, to = to.as_deref().unwrap_or("(same host)"), "the provider answered with a redirect, which the gateway does not follow");
        return Some(ApiError::upstream_redirected(provider, status, to.as_deref()));
    }
    if status == StatusCode::LOOP_DETECTED {
        tracing::warn!(%provider, "the provider answered 508 Loop Detected: its baseUrl points back at a modelgate gateway");
        return Some(ApiError::upstream_loop(provider));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(location: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::LOCATION, location.parse().expect("value"));
        headers
    }

    #[test]
    fn a_redirect_names_only_the_host_it_points_to() {
        let error = unfollowed(
            StatusCode::MOVED_PERMANENTLY,
            &headers("https://api.example.com/v1/chat/completions?token=sk-secret"),
            "ml/p",
        )
        .expect("an error");
        assert_eq!(
            (error.status, error.code),
            (StatusCode::BAD_GATEWAY, Some("upstream_redirected"))
        );
        assert_eq!(
            error.message,
            "The provider 'ml/p' answered with a redirect (301 Moved Permanently) to host 'api.example.com', and the gateway does not follow redirects. This is not a problem with your request; the platform team must set the provider's baseUrl to the URL that answers directly (common causes: http:// instead of https://, or a missing or extra /v1)."
        );
        assert!(!error.message.contains("sk-secret"));
        let relative =
            unfollowed(StatusCode::TEMPORARY_REDIRECT, &headers("/v2/chat?key=x"), "ml/p").expect("an error");
        assert!(
            relative.message.contains("(307 Temporary Redirect), and"),
            "{}",
            relative.message
        );
    }

    #[test]
    fn a_loop_is_named_and_other_answers_pass() {
        let error = unfollowed(StatusCode::LOOP_DETECTED, &HeaderMap::new(), "ml/p").expect("an error");
        assert_eq!(
            (error.status, error.code),
            (StatusCode::LOOP_DETECTED, Some("loop_detected"))
        );
        assert_eq!(
            unfollowed(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), "ml/p"),
            None
        );
        assert_eq!(unfollowed(StatusCode::BAD_REQUEST, &HeaderMap::new(), "ml/p"), None);
    }
}
