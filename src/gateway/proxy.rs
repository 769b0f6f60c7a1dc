//! The hot path: route a request by its `model`, rewrite that one value, forward it with the
//! provider's key, and stream the answer back as it arrives.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, Method, Response, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

use super::body::{probe, rewrite_model};
use super::error::ApiError;
use super::h1pool::PooledBody;
use super::live::{HttpUpstream, UpstreamKind};
use super::metrics::Endpoint;
use super::mock::{self, MockRequest};
use super::upstream::{self, Limits, SendError, Timed};
use super::usage::Metered;
use super::Shared;

/// Client headers passed upstream. Everything else (notably the client's own
/// `Authorization`) stays at the gateway.
const FORWARDED_REQUEST_HEADERS: [HeaderName; 6] = [
    header::ACCEPT,
    header::USER_AGENT,
    HeaderName::from_static("openai-beta"),
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

/// Upstream error bodies larger than this are cut.
const MAX_ERROR_BODY: usize = 64 << 10;

impl Endpoint {
    /// Index into `HttpUpstream::urls`.
    fn index(self) -> usize {
        match self {
            Endpoint::chat_completions => 0,
            Endpoint::completions => 1,
            Endpoint::embeddings => 2,
        }
    }
}

/// Serves one completion or embedding request.
pub async fn handle(shared: Arc<Shared>, endpoint: Endpoint, headers: HeaderMap, body: Body) -> Response<Body> {
    let started = Instant::now();
    match route_and_forward(&shared, endpoint, &headers, body, started).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn route_and_forward(
    shared: &Arc<Shared>,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<Response<Body>, ApiError> {
    let reject = |error: ApiError| {
        shared.metrics.rejected(error.code.unwrap_or("unknown"));
        error
    };
    let bytes = read_body(body, headers, shared.max_body_bytes).await.map_err(reject)?;
    let probed = probe(&bytes).map_err(reject)?;

    let table = shared.live.load();
    let route = table
        .routes
        .get(probed.model.as_ref())
        .ok_or_else(|| reject(ApiError::model_not_found(&probed.model)))?;
    if let Some(why) = &route.disabled {
        return Err(reject(ApiError::model_disabled(&route.alias, why)));
    }
    let target = route
        .pick(fastrand::f64())
        .ok_or_else(|| reject(ApiError::no_provider(&route.alias)))?;
    let upstream = &target.upstream;
    let metrics = target
        .metrics
        .get(&shared.metrics, &route.alias, &upstream.name, endpoint)
        .clone();

    let http = match &upstream.kind {
        UpstreamKind::Mock => {
            let response = mock::respond(&MockRequest {
                endpoint,
                alias: &route.alias,
                provider: &upstream.name,
                model: &target.model,
                body: &bytes,
                stream: probed.stream,
            });
            metrics.upstream.observe(started.elapsed().as_secs_f64());
            let (parts, body) = response.into_parts();
            return Ok(metered(parts.status, parts.headers, body, metrics, started));
        }
        UpstreamKind::Http(http) => http,
    };

    let outgoing = rewrite_model(&bytes, probed.model_span, &target.model_json);
    let mut request = http::Request::new(Full::new(outgoing));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = http.uris[endpoint.index()].clone();
    let outgoing_headers = request.headers_mut();
    *outgoing_headers = http.headers.clone();
    // One pass over the client's few headers instead of a hashed lookup per forwarded name;
    // a name's values come one after another, and the first one is forwarded.
    let mut previous: Option<&HeaderName> = None;
    for (name, value) in headers {
        if previous != Some(name) && FORWARDED_REQUEST_HEADERS.contains(name) {
            outgoing_headers.insert(name, value.clone());
        }
        previous = Some(name);
    }
    let sent = Instant::now();
    let upstream_response = upstream::send(&http.client, request, Limits::new(&http.timeouts))
        .await
        .map_err(|e| {
            let error = upstream_error(&e, &upstream.name);
            metrics.count(error.status.as_u16());
            metrics.duration.observe(started.elapsed().as_secs_f64());
            tracing::warn!(provider = %upstream.name, alias = %route.alias, error = %describe(&e), "upstream request failed");
            error
        })?;
    metrics.upstream.observe(sent.elapsed().as_secs_f64());

    let status = upstream_response.status();
    if !status.is_success() {
        metrics.count(status.as_u16());
        metrics.duration.observe(started.elapsed().as_secs_f64());
        return Ok(upstream_failure(upstream_response, http, &upstream.name).await);
    }
    let (mut parts, body) = upstream_response.into_parts();
    if parts.headers.keys().any(|name| HOP_BY_HOP.contains(&name.as_str())) {
        for name in HOP_BY_HOP {
            parts.headers.remove(name);
        }
    }
    Ok(metered(status, parts.headers, body, metrics, started))
}

/// A response whose body passes through [`Metered`] on its way to the client.
fn metered<B>(
    status: StatusCode,
    headers: HeaderMap,
    body: B,
    metrics: Arc<super::metrics::RouteMetrics>,
    started: Instant,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body = Metered::new(body, metrics, started, status.as_u16(), content_type);
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

pub(super) async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::body_too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::body_too_large(limit)),
        Err(e) => Err(ApiError::body_unreadable(&e.to_string())),
    }
}

fn upstream_error(error: &SendError, provider: &str) -> ApiError {
    match error {
        SendError::Timeout => ApiError::upstream_timeout(provider),
        SendError::Connect(_) => ApiError::upstream_unreachable(provider),
        SendError::Failed(_) => ApiError::upstream_failed(provider),
    }
}

/// The error chain of a failed request, for logs. It never contains a header.
fn describe(error: &SendError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An upstream error answer, passed through with its status. A rejected key becomes our own
/// message (the client cannot fix it, and providers echo parts of the key back); any other
/// body is passed through with the key scrubbed out, should the upstream have echoed it.
async fn upstream_failure(
    response: Response<Timed<PooledBody>>,
    http: &HttpUpstream,
    provider: &str,
) -> Response<Body> {
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        tracing::warn!(%provider, %status, "the provider rejected its API key");
        return ApiError::upstream_rejected_key(status, provider).into_response();
    }
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let mut body = Vec::new();
    let mut incoming = response.into_body();
    while let Some(Ok(frame)) = incoming.frame().await {
        let Ok(chunk) = frame.into_data() else { continue };
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    let mut text = String::from_utf8_lossy(&body).into_owned();
    if let Some(key) = &http.key {
        text = text.replace(key.expose(), "[redacted]");
    }
    let mut reply = Response::new(Body::from(text));
    *reply.status_mut() = status;
    if let Some(content_type) = content_type {
        reply.headers_mut().insert(header::CONTENT_TYPE, content_type);
    }
    reply
}

/// Response headers that describe the upstream connection, not the response.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];
