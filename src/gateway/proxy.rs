//! The request path: read the body and find the alias's route (*route*), then hand it to the
//! *resilience* stage, which picks targets and calls their providers' adapters (`providers`).
//! Errors come back in the envelope of the API the client called (`surfaces`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::body::probe;
use super::error::ApiError;
use super::guardrails;
use super::h1::maps;
use super::metrics::Endpoint;
use super::providers::Failed;
use super::resilience::{self, Request};
use super::surfaces::{self, Envelope};
use super::Shared;

/// Serves one request to a proxied endpoint; `id` is its request id (`request_id`).
// Not an `async fn`: its future would hold the headers and the id twice, as arguments and as
// the body's own copies (the argument copy of rust-lang/rust#62958).
#[allow(clippy::manual_async_fn)] // on purpose, as said above
pub fn handle(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Body,
    id: HeaderValue,
) -> impl Future<Output = Response<Body>> {
    async move {
        let started = Instant::now();
        let served = serve(&shared, endpoint, &headers, body, started, &id).await;
        // The client's headers are done with once the response head is made.
        maps::give(headers);
        match served {
            Ok(response) => response,
            Err(failed) => surfaces::failure_response(Envelope::of(endpoint), failed),
        }
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
    let mut read = std::pin::pin!(collect(body, limit));
    match futures_util::poll!(read.as_mut()) {
        std::task::Poll::Ready(read) => read,
        std::task::Poll::Pending => tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| ApiError::body_timeout(timeout))?,
    }
}

/// The body's data, at most `limit` bytes: its only data frame itself when it came in one (as
/// a small body does), else the frames copied into one buffer. Trailers are ignored.
async fn collect(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::body_unreadable(&e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(ApiError::body_too_large(limit));
        }
        match joined.as_mut() {
            Some(joined) => joined.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None if data.is_empty() => {}
            None => {
                let mut buf = BytesMut::with_capacity(total);
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    Ok(joined.map_or(first, BytesMut::freeze))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&'static str]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c.as_bytes()))).collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn bodies_are_read_whole_and_within_the_limit() {
        let one = Bytes::from_static(b"{\"model\":\"m\"}");
        let read = collect(Body::from(one.clone()), 100).await.expect("one frame");
        assert_eq!(read.as_ptr(), one.as_ptr(), "a body in one frame is not copied");
        let joined = collect(frames(&["{\"mo", "", "del\":", "\"m\"}"]), 100)
            .await
            .expect("frames");
        assert_eq!(&joined[..], b"{\"model\":\"m\"}");
        assert_eq!(collect(frames(&["", "ab"]), 2).await.expect("at the limit"), "ab");
        let over = collect(frames(&["ab", "c"]), 2).await.expect_err("over the limit");
        assert_eq!(over.code, Some("request_too_large"));
    }
}
