//! The *call* stage: one adapter per provider API. Routing has picked a target; an adapter
//! builds the upstream request, authenticates it, sends it, and turns the answer (or the
//! failure, classified) back into what the client's API expects.
//!
//! Two paths:
//! - pass-through, when the client speaks the provider's own API (OpenAI to OpenAI, Anthropic
//!   to Anthropic): only `model` is rewritten and every other byte travels untouched, both
//!   ways ([`passthrough`]);
//! - translated, through the canonical form in [`crate::llm`] ([`translated`]): the client's
//!   request is read into it, written in the provider's API by the provider's [`Wire`], and the
//!   answer comes back the same way, a frame at a time for streams.

mod anthropic;
pub mod bedrock;
mod gemini;
mod openai;
pub mod passthrough;
mod sign;
pub mod translated;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};

pub use anthropic::AnthropicWire;
pub use gemini::GeminiWire;
pub use openai::OpenAiWire;
pub use sign::{RequestSigner, SignError};

use super::egress;
use super::error::ApiError;
use super::fixed::FixedHeaders;
use super::h1pool::PooledBody;
use super::headers as response_headers;
use super::live::LiveTarget;
use super::metrics::{Endpoint, RouteMetrics};
use super::mock::{self, MockRequest};
use super::tenancy::Admission;
use super::tls::ClientTlsError;
use super::upstream::{self, ClientPool, Limits, SendError, Timed, UpstreamClient, Watch};
use super::usage::{Metered, UsageScanner, UsageShape};
use crate::compiler::{ObjectKey, ProviderEndpoint, ProviderSettings, ResolvedTimeouts};
use crate::crd::ProviderType;
use crate::llm::chat::{ChatRequest, ChatResponse};
use crate::llm::embeddings::EmbeddingsRequest;
use crate::llm::{FailureClass, Framer, StreamDecoder, TranslateError, TranslateOptions, UpstreamError};
use crate::secret::SecretString;

/// A request in a provider's API, relative to its base URL.
#[derive(Debug)]
pub struct WireRequest {
    /// Path and query appended to the provider's base URL (`/v1/messages`).
    pub path: String,
    pub body: Bytes,
}

/// A provider request's JSON body.
pub fn json_body(value: &impl serde::Serialize) -> Result<Bytes, TranslateError> {
    // Room for a typical request up front: growing from empty took five reallocations.
    let mut body = Vec::with_capacity(1024);
    serde_json::to_writer(&mut body, value)
        .map(|()| Bytes::from(body))
        .map_err(|e| TranslateError::invalid(e.to_string()))
}

/// One provider API, as the translated path speaks it. Implementations are pure: they
/// translate, and the gateway does the I/O.
pub trait Wire: Send + Sync + 'static {
    /// The path of a request to `endpoint` that passes through untranslated (the client speaks
    /// the provider's own API there), for the upstream model `model`; `None` when requests to
    /// that endpoint must be translated.
    fn native_path(&self, endpoint: Endpoint, model: &str) -> Option<String>;

    /// Whether native paths depend on the model (Azure's deployment URLs); when they do not,
    /// they are parsed once per table.
    fn paths_per_model(&self) -> bool {
        false
    }

    /// The upstream request for a canonical chat request, for the upstream model `model`.
    /// `request.stream` says whether the client wants a stream.
    fn chat_request(
        &self,
        request: &ChatRequest,
        model: &str,
        options: &TranslateOptions,
    ) -> Result<WireRequest, TranslateError>;

    /// A non-streamed answer, read into the canonical form.
    fn chat_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, UpstreamError>;

    /// How a streamed answer's bytes are framed, and a decoder for its frames.
    fn chat_stream(&self, model: &str) -> (Box<dyn Framer>, Box<dyn StreamDecoder>);

    /// The upstream request for embeddings, when the provider offers them.
    fn embeddings_request(
        &self,
        _request: &EmbeddingsRequest,
        _model: &str,
        options: &TranslateOptions,
    ) -> Result<WireRequest, TranslateError> {
        Err(not_offered(options, "embeddings"))
    }

    /// An embeddings answer to `request`, as an OpenAI embeddings response body (base64 vectors
    /// when the client asked for them).
    fn embeddings_response(
        &self,
        _request: &EmbeddingsRequest,
        _body: &[u8],
        model: &str,
    ) -> Result<Bytes, UpstreamError> {
        Err(UpstreamError::bad_response(format!(
            "the provider has no embeddings API for '{model}'"
        )))
    }

    /// The upstream requests for embeddings: one, unless the provider embeds one text per
    /// call (Bedrock Titan), when they are sent one after another.
    fn embeddings_requests(
        &self,
        request: &EmbeddingsRequest,
        model: &str,
        options: &TranslateOptions,
    ) -> Result<Vec<WireRequest>, TranslateError> {
        Ok(vec![self.embeddings_request(request, model, options)?])
    }

    /// The answers to [`Wire::embeddings_requests`], in order, as one OpenAI embeddings body.
    fn embeddings_responses(
        &self,
        request: &EmbeddingsRequest,
        bodies: &[Bytes],
        model: &str,
    ) -> Result<Bytes, UpstreamError> {
        match bodies {
            [body] => self.embeddings_response(request, body, model),
            _ => Err(UpstreamError::bad_response(format!(
                "the provider answered {} embeddings calls where one was expected",
                bodies.len()
            ))),
        }
    }

    /// Classifies an error answer (status ≥ 400) from its status and body.
    fn classify(&self, status: u16, body: &[u8]) -> UpstreamError;

    /// Classifies an error answer with its headers too (Bedrock names the error in
    /// `x-amzn-ErrorType`).
    fn classify_response(&self, status: u16, _headers: &HeaderMap, body: &[u8]) -> UpstreamError {
        self.classify(status, body)
    }
}

/// A 400 for an endpoint the provider does not offer.
pub fn not_offered(options: &TranslateOptions, what: &str) -> TranslateError {
    TranslateError::invalid(format!(
        "The provider '{}' (type {}) does not offer {what}. Use a model whose provider does, or ask the platform team.",
        options.provider, options.provider_type
    ))
}

/// A provider ready for requests.
pub struct Upstream {
    /// `namespace/name`, used in logs, errors and metric labels.
    pub name: Arc<str>,
    pub kind: UpstreamKind,
}

pub enum UpstreamKind {
    Mock,
    Http(Box<HttpUpstream>),
}

/// A provider reached over HTTP.
pub struct HttpUpstream {
    pub client: UpstreamClient,
    /// Keeps the time limits of its requests (the client pool's).
    pub watch: Watch,
    /// Its API.
    pub wire: Box<dyn Wire>,
    /// The pass-through URIs, parsed once (absolute for hyper-util's client, origin-form for
    /// the plain-HTTP pool), by [`Endpoint::index`]; `None` where the endpoint is translated or
    /// its URI is built per request (Azure's deployment URLs).
    pub uris: Vec<Option<Uri>>,
    /// The base URL as the client needs it: absolute for hyper-util's client, only the path
    /// for the plain-HTTP pool.
    pub base: String,
    /// Headers of every request: the provider's own, `Content-Type`, `Host` for plain HTTP,
    /// and the static credential header (marked sensitive), prepared once (`fixed`).
    pub headers: FixedHeaders,
    /// Signs each request (Bedrock's SigV4), when the credential is not a static header.
    pub signer: Option<Arc<dyn RequestSigner>>,
    pub timeouts: ResolvedTimeouts,
    /// The key, to scrub from upstream error bodies.
    pub key: Option<SecretString>,
    pub options: TranslateOptions,
}

impl HttpUpstream {
    /// The URI of a path under the base URL.
    pub fn uri(&self, path: &str) -> Result<Uri, http::uri::InvalidUri> {
        // Joined by hand: `format!` cost twice the parse (callgrind, per translated request).
        let mut uri = String::with_capacity(self.base.len() + path.len());
        uri.push_str(&self.base);
        uri.push_str(path);
        Uri::try_from(uri)
    }

    /// The pass-through URI of `endpoint` for `model`, when requests to it pass through.
    pub fn native_uri(&self, endpoint: Endpoint, model: &str) -> Option<Uri> {
        if let Some(Some(uri)) = self.uris.get(endpoint.index()) {
            return Some(uri.clone());
        }
        if !self.wire.paths_per_model() {
            return None;
        }
        self.uri(&self.wire.native_path(endpoint, model)?).ok()
    }
}

/// Errors while preparing a provider; the previous table keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("cannot build an HTTP client for LLMProvider {provider}: {source}")]
    Client {
        provider: ObjectKey,
        #[source]
        source: Box<super::tls::ClientTlsError>,
    },
    #[error("LLMProvider {provider} has a base URL that cannot take an API path: {source}")]
    Url {
        provider: ObjectKey,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("LLMProvider {provider} cannot be set up: {message}")]
    Setup { provider: ObjectKey, message: String },
}

/// Prepares a compiled provider for requests.
pub fn prepare(endpoint: &ProviderEndpoint, clients: &ClientPool) -> Result<Upstream, PrepareError> {
    let name: Arc<str> = Arc::from(endpoint.key.to_string());
    let options = TranslateOptions {
        provider: endpoint.key.to_string(),
        provider_type: endpoint.provider_type.as_str(),
        drop_unsupported: endpoint.drop_unsupported_params,
        default_max_tokens: match endpoint.settings {
            ProviderSettings::Anthropic { default_max_tokens, .. } => u64::from(default_max_tokens),
            _ => u64::from(crate::compiler::ANTHROPIC_DEFAULT_MAX_TOKENS),
        },
    };
    let wire: Box<dyn Wire> = match endpoint.provider_type {
        ProviderType::Openai | ProviderType::OpenaiCompatible | ProviderType::AzureOpenai => {
            Box::new(OpenAiWire::new(endpoint))
        }
        ProviderType::Anthropic => Box::new(AnthropicWire),
        ProviderType::Gemini => Box::new(GeminiWire::new(endpoint)),
        ProviderType::Bedrock => Box::new(bedrock::BedrockWire),
        ProviderType::Mock => {
            return Ok(Upstream {
                name,
                kind: UpstreamKind::Mock,
            })
        }
    };

    let mut headers = HeaderMap::new();
    for (name, value) in &endpoint.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.insert(name, value);
        }
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // A request that has come through no other gateway; `send` raises the count of one that
    // has (`--max-hops`).
    headers.insert(egress::HOPS, egress::hops_value(1));
    if let Some((name, value)) = credential_header(endpoint) {
        headers.insert(name, value);
    }
    if let ProviderSettings::Anthropic { version, .. } = &endpoint.settings {
        if let Ok(value) = HeaderValue::from_str(version) {
            headers.insert(HeaderName::from_static("anthropic-version"), value);
        }
    }

    let base = endpoint.base_url.clone();
    let parsed = Uri::try_from(base.as_str()).map_err(|source| PrepareError::Url {
        provider: endpoint.key.clone(),
        source,
    })?;
    // Plain-HTTP upstreams always speak HTTP/1.1 (no h2c) through our own pool, with
    // origin-form URIs and `Host` set once here instead of on every request. Over TLS, ALPN
    // may choose HTTP/2, which carries the authority itself: the HTTPS pool keeps absolute
    // URIs and adds `Host` only on HTTP/1.1.
    let client_error = |source: ClientTlsError| PrepareError::Client {
        provider: endpoint.key.clone(),
        source: Box::new(source),
    };
    let (client, base) = match (parsed.scheme(), parsed.authority()) {
        (Some(scheme), Some(authority)) if scheme == &http::uri::Scheme::HTTP => {
            let (host, port) = (authority.host(), authority.port_u16());
            let value = port.map_or_else(|| host.to_string(), |port| format!("{host}:{port}"));
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(header::HOST, value);
            }
            let pool = clients.h1(host, port.unwrap_or(80), &endpoint.timeouts);
            let path = parsed.path().trim_end_matches('/').to_string();
            (UpstreamClient::H1(pool), path)
        }
        (Some(scheme), Some(_)) if scheme == &http::uri::Scheme::HTTPS => {
            let pool = clients
                .tls(&parsed, &endpoint.timeouts, endpoint.trusted_ca.as_ref())
                .map_err(client_error)?;
            (UpstreamClient::Tls(pool), base)
        }
        _ => (
            UpstreamClient::Pooled(Box::new(
                clients
                    .client(&endpoint.timeouts, endpoint.trusted_ca.as_ref())
                    .map_err(client_error)?,
            )),
            base,
        ),
    };
    let mut http = HttpUpstream {
        client,
        watch: clients.watch(),
        uris: Vec::new(),
        base,
        // A provider's header that a request may set itself (the client's headers each path
        // forwards, its id) is a default, not fixed.
        headers: FixedHeaders::new(
            headers,
            &[
                &passthrough::FORWARDED_REQUEST_HEADERS,
                &passthrough::ANTHROPIC_REQUEST_HEADERS,
                &translated::FORWARDED,
                &[super::request_id::X_REQUEST_ID],
            ],
        ),
        signer: bedrock::signer(endpoint),
        timeouts: endpoint.timeouts,
        key: endpoint.api_key.clone(),
        wire,
        options,
    };
    let mut uris = Vec::with_capacity(Endpoint::ALL.len());
    for kind in Endpoint::ALL {
        let path = match http.wire.paths_per_model() {
            true => None,
            false => http.wire.native_path(kind, ""),
        };
        let uri = match path {
            Some(path) => Some(http.uri(&path).map_err(|source| PrepareError::Url {
                provider: endpoint.key.clone(),
                source,
            })?),
            None => None,
        };
        uris.push(uri);
    }
    http.uris = uris;
    Ok(Upstream {
        name,
        kind: UpstreamKind::Http(Box::new(http)),
    })
}

/// The static header carrying a provider's key, marked sensitive so it never prints.
fn credential_header(endpoint: &ProviderEndpoint) -> Option<(HeaderName, HeaderValue)> {
    let key = endpoint.api_key.as_ref()?;
    let (name, text) = match endpoint.provider_type {
        ProviderType::Anthropic => (HeaderName::from_static("x-api-key"), key.expose().to_string()),
        ProviderType::Gemini => (HeaderName::from_static("x-goog-api-key"), key.expose().to_string()),
        ProviderType::AzureOpenai => (HeaderName::from_static("api-key"), key.expose().to_string()),
        ProviderType::Openai | ProviderType::OpenaiCompatible | ProviderType::Bedrock | ProviderType::Mock => {
            (header::AUTHORIZATION, format!("Bearer {}", key.expose()))
        }
    };
    let mut value = HeaderValue::from_str(&text).ok()?;
    value.set_sensitive(true);
    Some((name, value))
}

/// What the call stage needs to know about one request.
pub struct Call<'a> {
    pub endpoint: Endpoint,
    /// The client's body, exactly as received.
    pub body: &'a Bytes,
    /// Byte range of the `model` literal in `body`.
    pub model_span: (usize, usize),
    pub stream: bool,
    /// The client's headers.
    pub headers: &'a HeaderMap,
    /// The request's id (the client's `x-request-id`, or one the gateway made): sent
    /// upstream, logged on the request's warnings.
    pub request_id: &'a HeaderValue,
    /// The modelgate gateways the request already passed (its `modelgate-hops`).
    pub hops: u32,
    pub alias: &'a str,
    pub target: &'a LiveTarget,
    pub metrics: Arc<RouteMetrics>,
    pub started: Instant,
    /// The tenant's admission (reserved credits, a parallel-request slot), settled by the
    /// response's meter; dropped unsettled on a failure, which releases it.
    pub admission: std::sync::Mutex<Option<Admission>>,
}

impl Call<'_> {
    /// The request id, for logs.
    pub fn id(&self) -> &str {
        super::request_id::text(self.request_id)
    }

    /// The admission, for the one response that settles it.
    pub fn take_admission(&self) -> Option<Admission> {
        self.admission.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Why a call produced no answer to pass on.
pub enum Failed {
    /// The request cannot be served as asked (an endpoint the provider does not offer, a
    /// parameter it cannot honour): our own 4xx.
    Request(ApiError),
    /// The upstream could not be reached, or answered with an error.
    Upstream(Box<UpstreamFailure>),
}

/// An upstream failure, classified.
pub struct UpstreamFailure {
    pub error: UpstreamError,
    /// The upstream's own error body (any key scrubbed out) and content type, when the client
    /// speaks the provider's API: passed on as sent.
    pub raw: Option<(Bytes, Option<HeaderValue>)>,
    /// Upstream response headers the client should see (`Retry-After`, rate limits).
    pub headers: HeaderMap,
}

impl From<ApiError> for Failed {
    fn from(error: ApiError) -> Self {
        Failed::Request(error)
    }
}

/// Serves one request through `call.target`.
pub async fn call(call: &Call<'_>) -> Result<Response<Body>, Failed> {
    let upstream = &call.target.upstream;
    let http = match &upstream.kind {
        UpstreamKind::Mock => return mock_call(call),
        UpstreamKind::Http(http) => http,
    };
    match http.native_uri(call.endpoint, &call.target.model) {
        Some(uri) => passthrough::forward(call, http, uri).await,
        // Boxed: the translated path's state is a third larger than the pass-through's, and
        // kept inline it would be copied with every pass-through request's future too.
        None => Box::pin(translated::forward(call, http)).await,
    }
}

fn mock_call(call: &Call<'_>) -> Result<Response<Body>, Failed> {
    match call.endpoint {
        Endpoint::chat_completions | Endpoint::completions | Endpoint::embeddings => {
            let response = mock::respond(&MockRequest {
                endpoint: call.endpoint,
                alias: call.alias,
                provider: &call.target.upstream.name,
                model: &call.target.model,
                body: call.body,
                stream: call.stream,
            });
            call.metrics.upstream.observe(call.started.elapsed().as_secs_f64());
            let (parts, body) = response.into_parts();
            Ok(metered(parts.status, parts.headers, body, call))
        }
        Endpoint::messages | Endpoint::count_tokens | Endpoint::responses => translated::mock(call),
    }
}

/// Signs (when the provider needs it) and sends a request within the provider's time limits.
// Not an `async fn`, so that its future holds the request once (see `upstream::send`).
#[allow(clippy::manual_async_fn)] // on purpose, as said above
pub(super) fn send<'a, 'c>(
    call: &'a Call<'c>,
    http: &'a HttpUpstream,
    mut request: http::Request<Full<Bytes>>,
) -> impl Future<Output = Result<Response<Timed<PooledBody>>, Failed>> + use<'a, 'c> {
    async move {
        let provider = &call.target.upstream.name;
        // One clock read for the limits and the upstream latency metric, another when it answers.
        let sent = tokio::time::Instant::now();
        if call.hops > 0 {
            request
                .headers_mut()
                .insert(egress::HOPS, egress::hops_value(call.hops.saturating_add(1)));
        }
        // The fixed headers go as they are prepared, unless the request changes one (a raised
        // hop count) or must be signed with them: then they join its map.
        let fixed = if call.hops > 0 || http.signer.is_some() {
            http.headers.merge_into(request.headers_mut());
            None
        } else {
            Some(&http.headers)
        };
        if let Some(signer) = &http.signer {
            let authority = request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
                .or_else(|| request.uri().authority().map(|a| a.to_string()))
                .unwrap_or_default();
            if let Err(e) = signer.sign(&mut request, &authority).await {
                tracing::warn!(%provider, alias = %call.alias, request_id = %call.id(), error = %e, "cannot sign the upstream request");
                let error = UpstreamError::new(FailureClass::AuthFailed, 502, format!("The gateway cannot sign requests for the provider '{provider}': {e}. The platform team must fix the provider's credentials."));
                return Err(fail(call, error, HeaderMap::new(), None));
            }
        }
        let limits = Limits::starting(sent, &http.timeouts);
        let response = upstream::send(&http.client, &http.watch, request, fixed, limits)
            .await
            .map_err(|e| {
                tracing::warn!(%provider, alias = %call.alias, request_id = %call.id(), error = %describe(&e), "upstream request failed");
                // The API error a client would get says the status, code and message.
                let (class, api) = match e {
                    SendError::Timeout => (FailureClass::Timeout, ApiError::upstream_timeout(provider)),
                    SendError::Connect(_) => (FailureClass::Unreachable, ApiError::upstream_unreachable(provider)),
                    SendError::Tls(tls) => (
                        FailureClass::Unreachable,
                        ApiError::upstream_tls(provider, &super::tls::explain(&tls)),
                    ),
                    SendError::Blocked(blocked) => (
                        FailureClass::Unreachable,
                        ApiError::upstream_blocked(provider, &blocked.describe(false)),
                    ),
                    SendError::Failed(_) => (FailureClass::Unreachable, ApiError::upstream_failed(provider)),
                };
                let mut error = UpstreamError::new(class, api.status.as_u16(), api.message);
                error.code = api.code.map(str::to_string);
                fail(call, error, HeaderMap::new(), None)
            })?;
        call.metrics.upstream.observe(response.body().waited().as_secs_f64());
        Ok(response)
    }
}

/// Counts a failed call and wraps it.
fn fail(
    call: &Call<'_>,
    error: UpstreamError,
    headers: HeaderMap,
    raw: Option<(Bytes, Option<HeaderValue>)>,
) -> Failed {
    call.metrics.count(error.status);
    call.metrics.duration.observe(call.started.elapsed().as_secs_f64());
    Failed::Upstream(Box::new(UpstreamFailure { error, raw, headers }))
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

/// Upstream error bodies larger than this are cut.
const MAX_ERROR_BODY: usize = 64 << 10;

/// An upstream error answer, classified by the provider's wire. A rejected key becomes our own
/// message (the client cannot fix it, and providers echo parts of the key back); any other
/// body has the key scrubbed out. `keep_raw`: the client speaks the provider's API, so the
/// body is passed on as sent.
pub(super) async fn upstream_failure(
    call: &Call<'_>,
    http: &HttpUpstream,
    response: Response<Timed<PooledBody>>,
    keep_raw: bool,
) -> Failed {
    let provider = &call.target.upstream.name;
    let status = response.status();
    // The allow-list (`headers`): `Retry-After`, rate limits, request ids; the body's own
    // headers are set with the body the client gets.
    let mut headers = response_headers::to_client_for_new_body(response.headers());
    // A redirect (never followed) or a loop back into a gateway: our own words.
    if let Some(ours) = egress::unfollowed(status, response.headers(), provider) {
        let mut error = UpstreamError::new(FailureClass::ServerError, ours.status.as_u16(), ours.message);
        error.code = ours.code.map(str::to_string);
        return fail(call, error, headers, None);
    }
    let retry_after = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::llm::failure::parse_retry_after);
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        tracing::warn!(%provider, %status, request_id = %call.id(), "the provider rejected its API key");
        let ours = ApiError::upstream_rejected_key(status, provider);
        let mut error = UpstreamError::new(FailureClass::AuthFailed, status.as_u16(), ours.message);
        error.code = Some("upstream_auth_failed".to_string());
        return fail(call, error, headers, None);
    }
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let upstream_headers = response.headers().clone();
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
    // A body that is not a JSON object (a load balancer's HTML page, plain text, nothing)
    // reaches no client as it is: our own error, quoting the start of it.
    if !crate::gateway::error::is_json_object(&text) {
        let ours = ApiError::upstream_status(status, provider, &text);
        let mut error = UpstreamError::new(FailureClass::of_status(status.as_u16()), status.as_u16(), ours.message);
        error.code = ours.code.map(str::to_string);
        error.retry_after = retry_after;
        return fail(call, error, headers, None);
    }
    let mut error = http
        .wire
        .classify_response(status.as_u16(), &upstream_headers, text.as_bytes());
    error.retry_after = error.retry_after.or(retry_after);
    // A delay the provider gave only in its body (Google's RetryInfo) reaches the client as
    // `Retry-After` too, in whole seconds.
    if let (Some(delay), false) = (error.retry_after, headers.contains_key(header::RETRY_AFTER)) {
        let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(key) = &http.key {
        error.message = error.message.replace(key.expose(), "[redacted]");
    }
    let raw = keep_raw.then(|| (Bytes::from(text), content_type));
    fail(call, error, headers, raw)
}

/// A response whose body passes through [`Metered`] on its way to the client.
pub(super) fn metered<B>(status: StatusCode, mut headers: HeaderMap, body: B, call: &Call<'_>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<axum::BoxError> + std::fmt::Display,
{
    let admission = call.take_admission();
    if let Some(admission) = &admission {
        admission.decorate(&mut headers);
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body = match call.endpoint {
        Endpoint::messages | Endpoint::count_tokens => {
            let scanner = UsageScanner::anthropic(content_type);
            let streaming = scanner.is_stream();
            let (metrics, started) = (call.metrics.clone(), call.started);
            let (status, id) = (status.as_u16(), call.request_id.clone());
            Metered::with_scanner(body, metrics, started, status, scanner, streaming, id)
        }
        Endpoint::responses => Metered::new(
            body,
            call.metrics.clone(),
            call.started,
            status.as_u16(),
            content_type,
            UsageShape::Responses,
            call.request_id.clone(),
        ),
        _ => Metered::new(
            body,
            call.metrics.clone(),
            call.started,
            status.as_u16(),
            content_type,
            UsageShape::Chat,
            call.request_id.clone(),
        ),
    }
    .admitted(admission);
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
