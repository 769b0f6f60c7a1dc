//! The pass-through path: the client speaks the provider's own API, so only `model` is
//! rewritten and every other byte travels untouched, both ways.

use axum::body::Body;
use http::{header, HeaderMap, HeaderName, Method, Response, Uri};
use http_body_util::Full;

use super::{Call, Failed, HttpUpstream};
use crate::gateway::body::rewrite_model;
use crate::gateway::h1::maps;
use crate::gateway::metrics::Endpoint;
use crate::gateway::request_id::X_REQUEST_ID;

/// Client headers passed upstream, with `x-request-id` (the request's id, see `request_id`).
/// Everything else (notably the client's own `Authorization` and `x-api-key`) stays at the
/// gateway.
pub(super) const FORWARDED_REQUEST_HEADERS: [HeaderName; 5] = [
    header::ACCEPT,
    header::USER_AGENT,
    HeaderName::from_static("openai-beta"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

/// Anthropic clients' headers that shape the request: passed to Anthropic providers.
pub(super) const ANTHROPIC_REQUEST_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("anthropic-version"),
    HeaderName::from_static("anthropic-beta"),
];

/// Sends the client's body, with only the model rewritten, to `uri`.
pub async fn forward(call: &Call<'_>, http: &HttpUpstream, uri: Uri) -> Result<Response<Body>, Failed> {
    let target = call.target;
    let outgoing = rewrite_model(call.body, call.model_span, &target.model_json);
    let mut request = http::Request::new(Full::new(outgoing));
    *request.headers_mut() = maps::take(8);
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    // The request's own headers; the provider's fixed ones join them on the way (`send`).
    let outgoing_headers = request.headers_mut();
    copy_forwarded(call.headers, outgoing_headers, &FORWARDED_REQUEST_HEADERS);
    if matches!(call.endpoint, Endpoint::messages | Endpoint::count_tokens) {
        copy_forwarded(call.headers, outgoing_headers, &ANTHROPIC_REQUEST_HEADERS);
    }
    outgoing_headers.insert(X_REQUEST_ID, call.request_id.clone());
    http.headers.apply_defaults(outgoing_headers);
    let response = super::send(call, http, request).await?;

    let status = response.status();
    if !status.is_success() {
        return Err(super::upstream_failure(call, http, response, true).await);
    }
    let (parts, body) = response.into_parts();
    let to_client = crate::gateway::headers::to_client(parts.headers);
    Ok(super::metered(status, to_client, body, call))
}

/// Copies the client's headers named in `names` (a name's first value) onto `outgoing`.
/// One pass over the client's few headers instead of a hashed lookup per forwarded name; a
/// name's values come one after another.
fn copy_forwarded(headers: &HeaderMap, outgoing: &mut HeaderMap, names: &[HeaderName]) {
    let mut previous: Option<&HeaderName> = None;
    for (name, value) in headers {
        if previous != Some(name) && names.contains(name) {
            outgoing.insert(name, value.clone());
        }
        previous = Some(name);
    }
}
