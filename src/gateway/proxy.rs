//! The request path: read the body and find the alias's route (*route*), then hand it to the
//! *resilience* stage, which picks targets and calls their providers' adapters (`providers`).
//! Errors come back in the envelope of the API the client called (`surfaces`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::body::probe;
use super::error::ApiError;
use super::guardrails;
use super::metrics::Endpoint;
use super::providers::Failed;
use super::resilience::{self, Request};
use super::surfaces::{self, Envelope};
use super::Shared;

/// Serves one request to a proxied endpoint; `id` is its request id (`request_id`).
pub async fn handle(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Body,
    id: HeaderValue,
) -> Response<Body> {
    let started = Instant::now();
    match serve(&shared, endpoint, &headers, body, started, &id).await {
        Ok(response) => response,
        Err(failed) => surfaces::failure_response(Envelope::of(endpoint), failed),
    }
}

async fn serve(
    shared: &Arc<Shared>,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
    request_id: &HeaderValue,
) -> Result<Response<Body>, Failed> {
    let reject = |error: ApiError| {
        shared.metrics.rejected(error.code.unwrap_or("unknown"));
        Failed::Request(error)
    };
    let hops = shared.egress.hops(headers).map_err(reject)?;
    let bytes = read_body(body, headers, shared.max_body_bytes, shared.body_timeout)
        .await
        .map_err(reject)?;
    let probed = probe(&bytes).map_err(reject)?;

    let table = shared.live.load();
    let route = table
        .routes
        .get(probed.model.as_ref())
        .ok_or_else(|| reject(ApiError::model_not_found(&probed.model)))?;
    if let Some(why) = &route.disabled {
        return Err(reject(ApiError::model_disabled(&route.alias, why)));
    }
    let admission = shared
        .tenancy
        .admit(headers, route, (bytes.len(), probed.output_cap), endpoint)
        .await
        .map_err(reject)?;
    // Guard (in): a masked or clamped body replaces the client's.
    let guarded = guardrails::check_request(route.guard.as_deref(), endpoint, &bytes, &shared.metrics.guardrails)
        .await
        .map_err(reject)?;
    let (bytes, probed) = match &guarded {
        Some(body) => (body, probe(body).map_err(reject)?),
        None => (&bytes, probed),
    };
    let request = Request {
        endpoint,
        body: bytes,
        model_span: probed.model_span,
        stream: probed.stream,
        headers,
        request_id,
        hops,
        started,
    };
    let response = resilience::serve(shared, route, &request, admission).await?;
    Ok(guardrails::guard_response(route.guard.as_ref(), endpoint, response, &shared.metrics.guardrails).await)
}

pub(super) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::body_too_large(limit));
    }
    // A body that came with its headers is read at once; only a slow one gets a timer.
    let mut collect = std::pin::pin!(Limited::new(body, limit).collect());
    let collected = match futures_util::poll!(collect.as_mut()) {
        std::task::Poll::Ready(collected) => collected,
        std::task::Poll::Pending => tokio::time::timeout(timeout, collect)
            .await
            .map_err(|_| ApiError::body_timeout(timeout))?,
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::body_too_large(limit)),
        Err(e) => Err(ApiError::body_unreadable(&e.to_string())),
    }
}
