//! The translated path: the client's request is read into the canonical form, written in the
//! provider's API, and the answer comes back the same way — a frame at a time for streams, so
//! a translated stream is never buffered.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body::Frame as BodyFrame;
use http_body_util::{BodyExt, Full};

use super::{Call, Failed, HttpUpstream, WireRequest};
use crate::gateway::error::ApiError;
use crate::gateway::headers as response_headers;
use crate::gateway::metrics::Endpoint;
use crate::gateway::mock;
use crate::gateway::request_id::X_REQUEST_ID;
use crate::gateway::surfaces::{self, translate_error, Inbound};
use crate::gateway::usage::{Cut, Metered, ReportedUsage, Usage, UsageScanner};
use crate::llm::chat::ChatChunk;
use crate::llm::embeddings::EmbeddingsRequest;
use crate::llm::{FailureClass, Framer, StreamDecoder, StreamEncoder, TranslateOptions, UpstreamError};

/// The client's headers a translated request carries on. Constant names: looking a header up
/// by a `&str` parses the name on every call.
pub(super) const FORWARDED: [HeaderName; 3] = [
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
    header::USER_AGENT,
];

/// Largest non-streamed answer read for translation.
const MAX_ANSWER: usize = 64 << 20;

/// Serves a request whose API the provider does not speak.
pub async fn forward(call: &Call<'_>, http: &HttpUpstream) -> Result<Response<Body>, Failed> {
    let model = &call.target.model;
    match call.endpoint {
        Endpoint::embeddings => return embeddings(call, http).await,
        Endpoint::completions => {
            return Err(translate_error(super::not_offered(
                &http.options,
                "the legacy completions API (/v1/completions); use /v1/chat/completions",
            ))
            .into())
        }
        Endpoint::count_tokens => return estimate_tokens(call),
        Endpoint::chat_completions | Endpoint::messages | Endpoint::responses => {}
    }
    let inbound = inbound_of(call.endpoint)?;
    let request = inbound.to_chat_for(call.body, &http.options).map_err(translate_error)?;
    let wire = http
        .wire
        .chat_request(&request, model, &http.options)
        .map_err(translate_error)?;
    let response = send(call, http, wire).await?;
    let upstream_headers = response_headers::to_client_for_new_body(response.headers());
    if request.is_stream() {
        let (framer, decoder) = http.wire.chat_stream(model);
        let encoder = inbound.encoder_to(call.body, &request);
        Ok(streamed(
            call,
            response,
            upstream_headers,
            framer,
            decoder,
            encoder,
            http.key.clone(),
        ))
    } else {
        let body = read_answer(call, response).await?;
        let answer = http
            .wire
            .chat_response(&body, model)
            .map_err(|e| upstream_error(call, e))?;
        let usage = answer.usage.as_ref().map(Usage::from);
        Ok(known(
            call,
            inbound.response_to(call.body, &answer, call.alias),
            usage,
            "application/json",
            upstream_headers,
        ))
    }
}

fn inbound_of(endpoint: Endpoint) -> Result<&'static dyn Inbound, Failed> {
    surfaces::inbound(endpoint).ok_or_else(|| {
        Failed::Request(ApiError::untranslatable(
            None,
            format!("This gateway cannot yet translate {endpoint:?} requests for this provider."),
        ))
    })
}

/// Sends a translated request and checks its status.
async fn send(
    call: &Call<'_>,
    http: &HttpUpstream,
    wire: WireRequest,
) -> Result<Response<crate::gateway::upstream::Timed<crate::gateway::h1pool::PooledBody>>, Failed> {
    let uri = http.uri(&wire.path).map_err(|e| {
        Failed::Request(ApiError::untranslatable(
            None,
            format!("The provider's URL cannot take this request: {e}."),
        ))
    })?;
    let mut request = http::Request::new(Full::new(wire.body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    for name in FORWARDED {
        if let Some(value) = call.headers.get(&name) {
            request.headers_mut().insert(name, value.clone());
        }
    }
    request.headers_mut().insert(X_REQUEST_ID, call.request_id.clone());
    http.headers.apply_defaults(request.headers_mut());
    let response = super::send(call, http, request).await?;
    if !response.status().is_success() {
        return Err(super::upstream_failure(call, http, response, false).await);
    }
    Ok(response)
}

/// Reads a whole non-streamed answer (bounded).
async fn read_answer<B>(call: &Call<'_>, response: Response<B>) -> Result<Bytes, Failed>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    let limited = http_body_util::Limited::new(response.into_body(), MAX_ANSWER);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(upstream_error(
            call,
            UpstreamError::new(
                FailureClass::Unreachable,
                502,
                format!("reading the provider's answer failed: {e}"),
            ),
        )),
    }
}

fn upstream_error(call: &Call<'_>, error: UpstreamError) -> Failed {
    tracing::warn!(provider = %call.target.upstream.name, alias = %call.alias, request_id = %call.id(), error = %error.message, "the provider's answer could not be translated");
    super::fail(call, error, http::HeaderMap::new(), None)
}

/// Embeddings through a provider's own embeddings API.
async fn embeddings(call: &Call<'_>, http: &HttpUpstream) -> Result<Response<Body>, Failed> {
    let request: EmbeddingsRequest = serde_json::from_slice(call.body).map_err(|e| {
        translate_error(crate::llm::TranslateError::invalid(format!(
            "The request is not a valid embeddings request: {e}."
        )))
    })?;
    let model = &call.target.model;
    let wires = http
        .wire
        .embeddings_requests(&request, model, &http.options)
        .map_err(translate_error)?;
    // One call after another: a provider that embeds one text per call gets no burst from
    // one client request, and the first failure ends the request.
    let mut bodies = Vec::with_capacity(wires.len());
    let mut upstream_headers = HeaderMap::new();
    for wire in wires {
        let response = send(call, http, wire).await?;
        upstream_headers = response_headers::to_client_for_new_body(response.headers());
        bodies.push(read_answer(call, response).await?);
    }
    let answer = http
        .wire
        .embeddings_responses(&request, &bodies, model)
        .map_err(|e| upstream_error(call, e))?;
    let usage = crate::gateway::usage::usage_in_json(&answer);
    Ok(known(call, answer, usage, "application/json", upstream_headers))
}

/// `count_tokens` for a provider without it: an estimate (about four bytes a token of text,
/// images at their largest cost; base64 data is not counted as text), marked as one.
fn estimate_tokens(call: &Call<'_>) -> Result<Response<Body>, Failed> {
    let estimate = crate::llm::anthropic::estimate_input_tokens(call.body).map_err(translate_error)?;
    let mut response = Response::new(Body::from(serde_json::json!({"input_tokens": estimate}).to_string()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert("x-modelgate-token-estimate", HeaderValue::from_static("true"));
    call.metrics.count(200);
    if let Some(admission) = call.take_admission() {
        // An answered call that used no tokens (its estimate is zero).
        admission.decorate(response.headers_mut());
        admission.settle(None);
    }
    Ok(response)
}

/// The mock provider behind a translated API: canonical answers, written by the client's API.
pub fn mock(call: &Call<'_>) -> Result<Response<Body>, Failed> {
    if call.endpoint == Endpoint::count_tokens {
        return estimate_tokens(call);
    }
    let inbound = inbound_of(call.endpoint)?;
    let provider = &call.target.upstream.name;
    let options = TranslateOptions {
        provider: provider.to_string(),
        ..TranslateOptions::strict("mock")
    };
    let request = inbound.to_chat_for(call.body, &options).map_err(translate_error)?;
    let answer = mock::chat_response(call.alias, provider, &call.target.model, &request);
    let usage = answer.usage.as_ref().map(Usage::from);
    call.metrics.upstream.observe(call.started.elapsed().as_secs_f64());
    if request.is_stream() {
        let chunks = mock::chat_chunks(&answer);
        let mut encoder = inbound.encoder_to(call.body, &request);
        let body = surfaces::encode_all(encoder.as_mut(), &chunks);
        Ok(known(call, body, usage, "text/event-stream", HeaderMap::new()))
    } else {
        Ok(known(
            call,
            inbound.response_to(call.body, &answer, call.alias),
            usage,
            "application/json",
            HeaderMap::new(),
        ))
    }
}

/// A whole answer, metered with usage already known; `headers`: the upstream's allowed
/// headers (rate limits, request ids), none for the mock.
fn known(
    call: &Call<'_>,
    body: Bytes,
    usage: Option<Usage>,
    content_type: &'static str,
    headers: HeaderMap,
) -> Response<Body> {
    let reported: ReportedUsage = Arc::new(std::sync::Mutex::new(usage));
    let streaming = content_type == "text/event-stream";
    let admission = call.take_admission();
    let mut response = Response::new(Body::empty());
    *response.headers_mut() = headers;
    if let Some(admission) = &admission {
        admission.decorate(response.headers_mut());
    }
    let metered = Metered::with_scanner(
        Full::new(body),
        call.metrics.clone(),
        call.started,
        200,
        UsageScanner::Reported(reported),
        streaming,
        call.request_id.clone(),
    )
    .admitted(admission);
    *response.body_mut() = Body::new(metered);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A translated stream: upstream frames in, the client's events out, one frame at a time.
fn streamed<B>(
    call: &Call<'_>,
    response: Response<B>,
    headers: HeaderMap,
    framer: Box<dyn Framer>,
    decoder: Box<dyn StreamDecoder>,
    encoder: Box<dyn StreamEncoder>,
    key: Option<crate::secret::SecretString>,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
{
    let usage: ReportedUsage = Arc::new(std::sync::Mutex::new(None));
    let cut = Cut::default();
    let body = Transcoded {
        inner: response.into_body(),
        framer,
        decoder,
        encoder,
        usage: usage.clone(),
        chunks: Vec::new(),
        ended: false,
        cut: cut.clone(),
        key,
    };
    let admission = call.take_admission();
    let mut response = Response::new(Body::empty());
    *response.headers_mut() = headers;
    if let Some(admission) = &admission {
        admission.decorate(response.headers_mut());
    }
    let metered = Metered::with_scanner(
        body,
        call.metrics.clone(),
        call.started,
        200,
        UsageScanner::Reported(usage),
        true,
        call.request_id.clone(),
    )
    .admitted(admission)
    .cut_by(cut);
    *response.body_mut() = Body::new(metered);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    *response.status_mut() = StatusCode::OK;
    response
}

/// The body of a translated stream.
struct Transcoded<B> {
    inner: B,
    framer: Box<dyn Framer>,
    decoder: Box<dyn StreamDecoder>,
    encoder: Box<dyn StreamEncoder>,
    usage: ReportedUsage,
    /// Scratch space for decoded chunks.
    chunks: Vec<ChatChunk>,
    ended: bool,
    /// Set when the stream fails; [`Metered`] then counts it `aborted` and warns.
    cut: Cut,
    /// The provider's key, scrubbed from error events (a provider may echo it).
    key: Option<crate::secret::SecretString>,
}

impl<B> Transcoded<B> {
    /// Encodes the decoded chunks, noting usage on the way.
    fn encode(&mut self, out: &mut BytesMut) {
        for chunk in self.chunks.drain(..) {
            if let Some(usage) = &chunk.usage {
                *self.usage.lock().unwrap_or_else(|p| p.into_inner()) = Some(Usage::from(usage));
            }
            self.encoder.chunk(&chunk, out);
        }
    }

    /// Ends the stream with an error event (and no clean finish).
    fn fail(&mut self, error: &UpstreamError, out: &mut BytesMut) {
        let mut error = error.clone();
        if let Some(key) = &self.key {
            error.message = error.message.replace(key.expose(), "[redacted]");
        }
        // The meter warns once, naming alias, provider, cause and request id.
        let _ = self.cut.set(error.message.clone());
        self.encode(out);
        self.encoder.error(&error, out);
        self.ended = true;
    }
}

impl<B> http_body::Body for Transcoded<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            let mut out = BytesMut::new();
            match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    let (framer, decoder, chunks) = (&mut this.framer, &mut this.decoder, &mut this.chunks);
                    let fed = framer.feed(&data, &mut |frame| decoder.frame(frame, chunks));
                    match fed {
                        Ok(()) => this.encode(&mut out),
                        Err(error) => this.fail(&error, &mut out),
                    }
                }
                Some(Err(e)) => {
                    let error = UpstreamError::new(
                        FailureClass::Unreachable,
                        502,
                        format!("the provider's stream broke off: {e}"),
                    );
                    this.fail(&error, &mut out);
                }
                None => match this.decoder.end(&mut this.chunks) {
                    Ok(()) => {
                        this.encode(&mut out);
                        this.encoder.done(&mut out);
                        this.ended = true;
                    }
                    Err(error) => this.fail(&error, &mut out),
                },
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(BodyFrame::data(out.freeze()))));
            }
        }
    }
}
