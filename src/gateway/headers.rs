//! Which upstream response headers reach the client: one allow-list, on success and on error.
//!
//! A provider's response carries headers meant for the client (content type, rate limits,
//! when to retry, request ids) and headers meant for whoever holds the provider account
//! (`set-cookie`, `openai-organization`, `openai-project`, CDN and load-balancer headers,
//! anything that may echo the key). Only the names below pass; everything else stays at the
//! gateway. The table is documented in the README ("Response headers").

use http::header::{self, HeaderName};
use http::HeaderMap;

use super::request_id::X_REQUEST_ID;

/// Headers passed to the client by exact name.
pub const ALLOWED: [HeaderName; 11] = [
    // When the response was made (hyper would add its own otherwise).
    header::DATE,
    // The body: its type, compression and caching (SSE streams say `no-cache`).
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CACHE_CONTROL,
    // When (and whether) to retry: the official clients honour all three.
    header::RETRY_AFTER,
    HeaderName::from_static("retry-after-ms"),
    HeaderName::from_static("x-should-retry"),
    // OpenAI's timing and API version.
    HeaderName::from_static("openai-processing-ms"),
    HeaderName::from_static("openai-version"),
    // Anthropic's request id.
    HeaderName::from_static("request-id"),
    // The IETF draft's combined rate-limit field (`ratelimit-*` below has the others).
    HeaderName::from_static("ratelimit"),
];

/// Headers passed to the client by prefix: rate limits (OpenAI, Groq, Together, Mistral and
/// most OpenAI-compatible servers use `x-ratelimit-*`; Anthropic `anthropic-ratelimit-*`;
/// the IETF draft `ratelimit-*`).
pub const ALLOWED_PREFIXES: [&str; 3] = ["x-ratelimit-", "anthropic-ratelimit-", "ratelimit-"];

/// The upstream's own `x-request-id` reaches the client under this name: `x-request-id` is
/// the gateway's id for the request (the client's, or one the gateway made).
pub const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");

/// Whether an upstream response header may reach the client.
pub fn allowed(name: &HeaderName) -> bool {
    ALLOWED.contains(name) || ALLOWED_PREFIXES.iter().any(|p| name.as_str().starts_with(p))
}

/// The headers of a successful response, whose body passes through unchanged (so its
/// `content-length` still holds).
pub fn to_client(mut upstream: HeaderMap) -> HeaderMap {
    // In place: most responses carry a few headers to drop (`server`, `x-request-id`), and
    // removing them costs less than building a new map. Many to drop: build one.
    let mut unwanted: [Option<HeaderName>; 8] = [const { None }; 8];
    let mut dropped = 0;
    for name in upstream.keys() {
        if allowed(name) || name == header::CONTENT_LENGTH {
            continue;
        }
        let Some(slot) = unwanted.get_mut(dropped) else {
            let mut out = filtered(&upstream);
            if let Some(length) = upstream.get(header::CONTENT_LENGTH) {
                out.insert(header::CONTENT_LENGTH, length.clone());
            }
            return out;
        };
        *slot = Some(name.clone());
        dropped += 1;
    }
    for name in unwanted.iter().flatten() {
        let value = upstream.remove(name);
        if let (Some(value), true) = (value, name == X_REQUEST_ID) {
            upstream.insert(UPSTREAM_REQUEST_ID, value);
        }
    }
    upstream
}

/// The headers of an error answer whose body the gateway rewrites: the allowed ones but
/// those describing the body (`content-type`, `content-encoding`), which the gateway sets.
pub fn to_client_for_new_body(upstream: &HeaderMap) -> HeaderMap {
    let mut out = filtered(upstream);
    out.remove(header::CONTENT_TYPE);
    out.remove(header::CONTENT_ENCODING);
    out
}

fn filtered(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.keys_len().min(16));
    for (name, value) in upstream {
        if allowed(name) {
            out.append(name, value.clone());
        } else if name == X_REQUEST_ID {
            out.append(UPSTREAM_REQUEST_ID, value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    const UPSTREAM: [(&str, &str); 17] = [
        ("content-type", "application/json"),
        ("content-length", "42"),
        ("set-cookie", "__cf_bm=abc; path=/"),
        ("set-cookie", "_cfuvid=def; path=/"),
        ("openai-organization", "org-platform-team"),
        ("openai-project", "proj_123"),
        ("openai-processing-ms", "321"),
        ("openai-version", "2020-10-01"),
        ("x-request-id", "req_upstream"),
        ("x-ratelimit-remaining-requests", "99"),
        ("x-ratelimit-reset-tokens", "6ms"),
        ("anthropic-ratelimit-tokens-remaining", "1000"),
        ("retry-after", "2"),
        ("server", "cloudflare"),
        ("cf-ray", "8a-LHR"),
        ("strict-transport-security", "max-age=31536000"),
        ("connection", "keep-alive"),
    ];

    #[test]
    fn only_the_allow_list_passes_on_success() {
        let out = to_client(map(&UPSTREAM));
        assert_eq!(
            names(&out),
            [
                "anthropic-ratelimit-tokens-remaining",
                "content-length",
                "content-type",
                "openai-processing-ms",
                "openai-version",
                "retry-after",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-tokens",
                "x-upstream-request-id",
            ]
        );
        assert_eq!(out[UPSTREAM_REQUEST_ID], "req_upstream");
    }

    #[test]
    fn an_error_keeps_retry_and_rate_limit_headers_but_not_the_body_ones() {
        let out = to_client_for_new_body(&map(&UPSTREAM));
        assert_eq!(
            names(&out),
            [
                "anthropic-ratelimit-tokens-remaining",
                "openai-processing-ms",
                "openai-version",
                "retry-after",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-tokens",
                "x-upstream-request-id",
            ]
        );
    }

    #[test]
    fn a_few_or_many_headers_to_drop_give_the_same_answer() {
        let few = to_client(map(&UPSTREAM[..10]));
        let mut many_headers = map(&UPSTREAM[..10]);
        for i in 0..20 {
            many_headers.append(
                HeaderName::from_bytes(format!("x-junk-{i}").as_bytes()).expect("name"),
                HeaderValue::from_static("1"),
            );
        }
        let many = to_client(many_headers);
        assert_eq!(names(&few), names(&many));
        assert_eq!(few[UPSTREAM_REQUEST_ID], many[UPSTREAM_REQUEST_ID]);
        assert_eq!(few.get_all("x-request-id").iter().count(), 0);
    }

    #[test]
    fn a_response_with_only_allowed_headers_is_kept_as_is() {
        let clean = map(&[("content-type", "text/event-stream"), ("cache-control", "no-cache")]);
        assert_eq!(to_client(clean.clone()), clean);
    }
}
