//! The HTTP clients that talk to providers, with the provider's `request` and `idle` timeouts
//! enforced until the last byte (`watch`: one sweeper over a coarse clock, not a timer per
//! request): hyper-util's pooled client for guardrail webhooks, our own pools for providers:
//! `tls::TlsPool` for HTTPS (HTTP/2 on hyper, or HTTP/1.1 on our own connection, by ALPN),
//! `h1pool` for plain HTTP (`h1`).

mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use super::egress::{find_blocked, Blocked, GuardedConnector, Policy};
use super::fixed::FixedHeaders;
use super::h1pool::{H1Pool, PooledBody, ReadError};
use super::tls::{self, ClientTlsError, TlsPool};
use crate::compiler::{ResolvedTimeouts, TrustedCa};
pub use watch::{Waiting, Watch};

/// A pooled client for provider requests.
pub type HttpClient = Client<HttpsConnector<GuardedConnector>, Full<Bytes>>;

/// How a provider is reached.
#[derive(Clone)]
pub enum UpstreamClient {
    /// Anything hyper-util's client handles (guardrail webhooks).
    Pooled(Box<HttpClient>),
    /// HTTPS to a provider.
    Tls(Arc<TlsPool>),
    /// Plain HTTP/1.1.
    H1(Arc<H1Pool>),
}

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a provider request failed before its response headers arrived.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the provider did not answer within its timeout")]
    Timeout,
    #[error("cannot connect")]
    Connect(#[source] Cause),
    /// The TLS handshake failed (most often: the certificate did not verify).
    #[error("TLS failed: {0}")]
    Tls(#[source] rustls::Error),
    #[error("refused by the egress policy: {0}")]
    Blocked(Box<Blocked>),
    #[error("the request failed")]
    Failed(#[source] Cause),
}

impl SendError {
    /// A connection failure, a failed TLS handshake, or the egress policy's refusal to connect.
    fn connect(cause: Cause) -> Self {
        if let Some(blocked) = find_blocked(cause.as_ref()) {
            return SendError::Blocked(Box::new(blocked.clone()));
        }
        match tls::find_tls_error(cause.as_ref()) {
            Some(error) => SendError::Tls(error.clone()),
            None => SendError::Connect(cause),
        }
    }
}

/// Why a response body stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the provider went silent for longer than its idle timeout")]
    Idle,
    #[error("the response took longer than the provider's request timeout")]
    Deadline,
    #[error("reading the response failed: {0}")]
    Read(#[source] ReadError),
}

/// What sets pooled clients apart: the connect timeout and the fingerprint of the trusted CA
/// (`None`: the system's roots).
type ClientKey = (Duration, Option<[u8; 32]>);

/// What sets HTTPS pools apart: the upstream's authority, the connect timeout and the trusted
/// CA's fingerprint.
type TlsKey = (String, Duration, Option<[u8; 32]>);

/// HTTP clients shared by providers with the same connection settings, so that pools survive
/// configuration reloads. HTTPS pools are shared by providers with the same authority,
/// connect timeout and trusted CA, and one TLS config (one session cache) by every pool that
/// trusts the same CA. These are held by the tables that use them: a pool or config no table
/// holds any more (a rotated CA, a removed provider) is closed, once the requests still on it
/// have finished. Every connection they open is checked by `policy`.
pub struct ClientPool {
    policy: Arc<Policy>,
    pooled: Mutex<HashMap<ClientKey, HttpClient>>,
    h1: Mutex<HashMap<(String, u16, Duration), Arc<H1Pool>>>,
    tls: Mutex<HashMap<TlsKey, Weak<TlsPool>>>,
    configs: Mutex<HashMap<Option<[u8; 32]>, Weak<rustls::ClientConfig>>>,
    watch: Watch,
}

impl ClientPool {
    pub fn new(policy: Arc<Policy>) -> Self {
        ClientPool {
            policy,
            pooled: Mutex::default(),
            h1: Mutex::default(),
            tls: Mutex::default(),
            configs: Mutex::default(),
            watch: Watch::new(),
        }
    }

    /// What keeps the time limits of the requests sent through this pool's clients.
    pub fn watch(&self) -> Watch {
        self.watch.clone()
    }

    /// The HTTPS pool for the upstream of `uri` (an `https` URL) that trusts `ca` (`None`: the
    /// system's roots).
    pub fn tls(
        &self,
        uri: &Uri,
        timeouts: &ResolvedTimeouts,
        ca: Option<&TrustedCa>,
    ) -> Result<Arc<TlsPool>, ClientTlsError> {
        let fingerprint = ca.map(|ca| ca.fingerprint);
        let authority = uri.authority().map_or("", |a| a.as_str()).to_ascii_lowercase();
        let key = (authority, timeouts.connect, fingerprint);
        let mut pools = self.tls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(pool) = pools.get(&key).and_then(Weak::upgrade) {
            return Ok(pool);
        }
        pools.retain(|_, pool| pool.strong_count() > 0);
        let config = {
            let mut configs = self.configs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match configs.get(&fingerprint).and_then(Weak::upgrade) {
                Some(config) => config,
                None => {
                    configs.retain(|_, config| config.strong_count() > 0);
                    let config = Arc::new(tls::pool_config(ca)?);
                    configs.insert(fingerprint, Arc::downgrade(&config));
                    config
                }
            }
        };
        let pool = Arc::new(TlsPool::new(
            uri,
            tls::server_name(uri)?,
            config,
            timeouts.connect,
            self.policy.clone(),
        ));
        pools.insert(key, Arc::downgrade(&pool));
        Ok(pool)
    }

    /// How many HTTPS pools and TLS configs are alive (held by a table or a request).
    pub fn tls_in_use(&self) -> (usize, usize) {
        let pools = self.tls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let configs = self.configs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (
            pools.values().filter(|p| p.strong_count() > 0).count(),
            configs.values().filter(|c| c.strong_count() > 0).count(),
        )
    }

    /// The plain-HTTP/1.1 pool for `host` (as in a URL) and `port`.
    pub fn h1(&self, host: &str, port: u16, timeouts: &ResolvedTimeouts) -> Arc<H1Pool> {
        let mut pools = self.h1.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pools
            .entry((host.to_string(), port, timeouts.connect))
            .or_insert_with(|| {
                Arc::new(H1Pool::new(
                    host.to_string(),
                    port,
                    timeouts.connect,
                    self.policy.clone(),
                ))
            })
            .clone()
    }

    /// The pooled client for providers with these timeouts that trust `ca` (`None`: the
    /// system's roots).
    pub fn client(&self, timeouts: &ResolvedTimeouts, ca: Option<&TrustedCa>) -> Result<HttpClient, ClientTlsError> {
        let key = (timeouts.connect, ca.map(|ca| ca.fingerprint));
        let mut clients = self.pooled.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let http = GuardedConnector::new(self.policy.clone(), timeouts.connect);
        let https = tls::connector(tls::client_config(ca)?, http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .pool_timer(TokioTimer::new())
            .build(https);
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// The time limits of one request: the whole exchange ends by `deadline`, and no wait for the
/// provider (for the response headers, or between two body frames) may exceed `idle`.
#[derive(Clone, Copy)]
pub struct Limits {
    /// When the request was sent.
    pub sent: Instant,
    pub deadline: Instant,
    pub idle: Duration,
    /// The shorter of the request and idle timeouts.
    shortest: Duration,
}

impl Limits {
    /// The limits of a request sent now.
    pub fn new(timeouts: &ResolvedTimeouts) -> Self {
        Self::starting(Instant::now(), timeouts)
    }

    /// The limits of a request sent at `sent`.
    pub fn starting(sent: Instant, timeouts: &ResolvedTimeouts) -> Self {
        Limits {
            sent,
            deadline: sent + timeouts.request,
            idle: timeouts.idle,
            shortest: timeouts.request.min(timeouts.idle),
        }
    }

    fn next_wake(&self) -> Instant {
        self.wake_after(Instant::now())
    }

    /// When to give up on a provider last heard from at `heard`.
    fn wake_after(&self, heard: Instant) -> Instant {
        (heard + self.idle).min(self.deadline)
    }
}

/// Sends a request and waits for the response headers within `limits` (kept by `watch`); the
/// body that follows stays under the same limits. `fixed`: the provider's headers, when the
/// request does not carry them already.
// Not an `async fn`: its future would hold the request and the limits twice, as arguments
// and as the body's own copies (the argument copy of rust-lang/rust#62958); the block below
// uses the ones it captured.
#[allow(clippy::manual_async_fn)] // on purpose, as said above
pub fn send<'a>(
    client: &'a UpstreamClient,
    watch: &'a Watch,
    mut request: Request<Full<Bytes>>,
    fixed: Option<&'a FixedHeaders>,
    limits: Limits,
) -> impl Future<Output = Result<Response<Timed<PooledBody>>, SendError>> + use<'a> {
    async move {
        let waiting = watch.until(limits.wake_after(limits.sent), limits.shortest);
        if let (UpstreamClient::Pooled(_), Some(fixed)) = (client, fixed) {
            fixed.merge_into(request.headers_mut());
        }
        let exchange = async {
            match client {
                UpstreamClient::Pooled(client) => match client.request(request).await {
                    Ok(response) => Ok(response.map(PooledBody::unpooled)),
                    Err(e) if e.is_connect() => Err(SendError::connect(e.into())),
                    Err(e) => Err(SendError::Failed(e.into())),
                },
                UpstreamClient::Tls(pool) => match pool.send(request, fixed).await {
                    Ok(response) => Ok(response),
                    Err(e) if e.is_connect() => Err(SendError::connect(e.into())),
                    Err(e) => Err(SendError::Failed(e.into())),
                },
                UpstreamClient::H1(pool) => match pool.send(request, fixed).await {
                    Ok(response) => Ok(response),
                    Err(e) if e.is_connect() => Err(SendError::connect(e.into())),
                    Err(e) => Err(SendError::Failed(e.into())),
                },
            }
        };
        let response = waiting.within(exchange).await.ok_or(SendError::Timeout)??;
        let answered = Instant::now();
        waiting.set(limits.wake_after(answered));
        Ok(response.map(|inner| Timed {
            inner,
            waiting,
            limits,
            answered,
        }))
    }
}

/// A response body under the request's time limits.
pub struct Timed<B> {
    inner: B,
    waiting: Waiting,
    limits: Limits,
    /// When the response headers arrived.
    answered: Instant,
}

impl<B> Timed<B> {
    /// How long the provider took to answer with its response headers.
    pub fn waited(&self) -> Duration {
        self.answered.saturating_duration_since(self.limits.sent)
    }
}

impl<B> Body for Timed<B>
where
    B: Body<Data = Bytes, Error = ReadError> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            // The idle limit runs from this frame, unless it was the last: a whole response
            // (most are one frame) then pays no clock read and no timer update.
            if frame.is_some() && !this.inner.is_end_stream() {
                this.waiting.set(this.limits.next_wake());
            }
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::Read)));
        }
        ready!(this.waiting.poll_expired(cx));
        let error = if Instant::now() >= this.limits.deadline {
            BodyError::Deadline
        } else {
            BodyError::Idle
        };
        Poll::Ready(Some(Err(error)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
