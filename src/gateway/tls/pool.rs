//! The connections to one HTTPS upstream: one multiplexed HTTP/2 connection when ALPN chose
//! `h2`, a stack of keep-alive HTTP/1.1 connections when it chose `http/1.1`.
//!
//! hyper-util's pooled client cannot know that a host speaks HTTP/2 before a handshake ends,
//! so N concurrent first requests opened N TLS connections (and N again after an idle
//! timeout or a GOAWAY). Here the pool remembers what ALPN chose, and while it does not know,
//! or knows `h2` but has no open connection, one request connects and the others wait for
//! it: a cold burst makes one handshake. Waiters are never wedged: a failed connect is their
//! failure too, and a connect that is abandoned (its request cancelled) wakes them to try
//! again themselves. An upstream known to speak HTTP/1.1 gets one connection per concurrent
//! request, as before.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use crate::gateway::coarse;
use crate::gateway::egress::{self, ConnectError, Policy};
use crate::gateway::fixed::FixedHeaders;
use crate::gateway::h1::{self, maps, Conn, ExchangeError, IdleStack, Io, Prepared};
use crate::gateway::h1pool::{self, PooledBody};

/// An HTTP/2 connection unused for this long is closed (when the next request comes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

type H2Sender = http2::SendRequest<Full<Bytes>>;

/// Why a request to an HTTPS upstream failed before its response headers.
#[derive(Debug, thiserror::Error)]
pub enum TlsPoolError {
    #[error("no connection")]
    Connect(#[source] ConnectError),
    /// The TLS handshake failed (the rustls error is inside the `io::Error`).
    #[error("the TLS handshake failed")]
    Tls(#[source] std::io::Error),
    #[error("the HTTP handshake failed")]
    Handshake(#[source] hyper::Error),
    /// The connect another request made for this one failed.
    #[error(transparent)]
    Shared(Arc<TlsPoolError>),
    #[error("the exchange failed")]
    Request(#[source] hyper::Error),
    #[error("the exchange failed")]
    H1(#[source] ExchangeError),
}

impl TlsPoolError {
    /// Whether no connection could be made (as opposed to a failure on a connection).
    pub fn is_connect(&self) -> bool {
        match self {
            TlsPoolError::Shared(inner) => inner.is_connect(),
            TlsPoolError::Request(_) | TlsPoolError::H1(_) => false,
            _ => true,
        }
    }
}

/// What ALPN chose the last time.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Unknown,
    H2,
    H1,
}

/// How the connect that waiters wait for ended.
#[derive(Clone)]
enum Outcome {
    Pending,
    Done,
    Failed(Arc<TlsPoolError>),
}

struct H2Conn {
    sender: H2Sender,
    id: u64,
    /// When last used, on the coarse monotonic clock (`coarse`).
    used: Duration,
}

struct State {
    protocol: Protocol,
    h2: Option<H2Conn>,
    /// The connect in flight that others wait for.
    connecting: Option<watch::Receiver<Outcome>>,
    next_id: u64,
}

/// The connections to one upstream `host:port` over TLS, opened through the egress policy.
pub struct TlsPool {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    host_header: Option<HeaderValue>,
    connect_timeout: Duration,
    policy: Arc<Policy>,
    tls: TlsConnector,
    state: Mutex<State>,
    idle: Arc<IdleStack>,
}

/// What a request does next.
enum Step {
    H2(H2Sender, u64),
    Wait(watch::Receiver<Outcome>),
    /// Connect (on HTTP/1.1, after trying the idle connections), waking those waiting for
    /// it when it carries a sender.
    Connect(Option<watch::Sender<Outcome>>, Protocol),
}

impl TlsPool {
    /// `config` must offer ALPN `h2` and `http/1.1` (in that order) and carries the session
    /// cache shared with every pool of the same trust.
    pub fn new(
        uri: &Uri,
        server_name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
        policy: Arc<Policy>,
    ) -> Self {
        let host = uri.host().unwrap_or_default().to_string();
        TlsPool {
            port: uri.port_u16().unwrap_or(443),
            host_header: uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
            host,
            server_name,
            connect_timeout,
            policy,
            tls: TlsConnector::from(config),
            state: Mutex::new(State {
                protocol: Protocol::Unknown,
                h2: None,
                connecting: None,
                next_id: 0,
            }),
            idle: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `request` (absolute `https` URI) on the HTTP/2 connection, an idle HTTP/1.1 one,
    /// or a new connection. A request a closing connection could not take is sent again.
    /// `fixed`: the provider's headers, when the request does not carry them already.
    pub async fn send(
        &self,
        mut request: Request<Full<Bytes>>,
        mut fixed: Option<&FixedHeaders>,
    ) -> Result<Response<PooledBody>, TlsPoolError> {
        loop {
            match self.next_step() {
                Step::H2(mut sender, id) => {
                    if let Some(fixed) = fixed.take() {
                        fixed.merge_into(request.headers_mut());
                    }
                    if sender.ready().await.is_err() {
                        self.forget_h2(id);
                        continue;
                    }
                    match sender.try_send_request(request).await {
                        Ok(response) => return Ok(response.map(PooledBody::unpooled)),
                        Err(mut error) => match error.take_message() {
                            Some(unsent) => {
                                self.forget_h2(id);
                                request = unsent;
                            }
                            None => return Err(TlsPoolError::Request(error.into_error())),
                        },
                    }
                }
                Step::Wait(mut outcome) => {
                    if let Ok(Outcome::Failed(error)) = outcome
                        .wait_for(|o| !matches!(o, Outcome::Pending))
                        .await
                        .map(|o| o.clone())
                    {
                        return Err(TlsPoolError::Shared(error));
                    }
                }
                Step::Connect(notify, protocol) => {
                    let mut prepared = None;
                    if protocol == Protocol::H1 {
                        let h1 = Prepared::new(&request, self.host_header.as_ref(), fixed);
                        if let Some(sent) = self.idle.send_idle(&h1).await {
                            // Its header map goes back to the spares, as on the plain path;
                            // dropped, every request took a new one: two allocations, and two
                            // frees at its drop (callgrind: about 760 instructions a request).
                            maps::give(request.into_parts().0.headers);
                            return sent.map(h1pool::light).map_err(TlsPoolError::H1);
                        }
                        prepared = Some(h1);
                    }
                    let guard = Connecting { pool: self, notify };
                    // Boxed: the TLS and HTTP/2 handshakes' state is large, and kept inline it
                    // would be copied with every request's future (callgrind: +22,000
                    // instructions a request in `memcpy`, plain HTTP too).
                    return Box::pin(self.connect_and_send(guard, request, prepared, fixed)).await;
                }
            }
        }
    }

    fn next_step(&self) -> Step {
        let mut state = self.state();
        if let Some(h2) = &mut state.h2 {
            let now = coarse::monotonic();
            if !h2.sender.is_closed() && now.saturating_sub(h2.used) < IDLE_TIMEOUT {
                h2.used = now;
                return Step::H2(h2.sender.clone(), h2.id);
            }
            state.h2 = None;
        }
        if state.protocol == Protocol::H1 {
            return Step::Connect(None, Protocol::H1);
        }
        if let Some(outcome) = &state.connecting {
            return Step::Wait(outcome.clone());
        }
        let (notify, outcome) = watch::channel(Outcome::Pending);
        state.connecting = Some(outcome);
        Step::Connect(Some(notify), state.protocol)
    }

    fn forget_h2(&self, id: u64) {
        let mut state = self.state();
        if state.h2.as_ref().is_some_and(|h2| h2.id == id) {
            state.h2 = None;
        }
    }

    async fn connect_and_send(
        &self,
        guard: Connecting<'_>,
        mut request: Request<Full<Bytes>>,
        prepared: Option<Prepared>,
        fixed: Option<&FixedHeaders>,
    ) -> Result<Response<PooledBody>, TlsPoolError> {
        let stream = match self.connect().await {
            Ok(stream) => stream,
            Err(error) => return Err(guard.fail(error)),
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        if h2 {
            let (mut sender, connection) = match http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await {
                Ok(handshake) => handshake,
                Err(error) => return Err(guard.fail(TlsPoolError::Handshake(error))),
            };
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "upstream connection ended");
                }
            });
            {
                let mut state = self.state();
                state.protocol = Protocol::H2;
                state.next_id += 1;
                state.h2 = Some(H2Conn {
                    sender: sender.clone(),
                    id: state.next_id,
                    used: coarse::monotonic(),
                });
            }
            guard.done();
            if let Some(fixed) = fixed {
                fixed.merge_into(request.headers_mut());
            }
            return sender
                .send_request(request)
                .await
                .map(|response| response.map(PooledBody::unpooled))
                .map_err(TlsPoolError::Request);
        }
        self.state().protocol = Protocol::H1;
        guard.done();
        let prepared = prepared.unwrap_or_else(|| Prepared::new(&request, self.host_header.as_ref(), fixed));
        maps::give(request.into_parts().0.headers);
        h1::exchange(Conn::new(Io::Tls(Box::new(stream))), &prepared, &self.idle)
            .await
            .map(h1pool::light)
            .map_err(TlsPoolError::H1)
    }

    async fn connect(&self) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, TlsPoolError> {
        let tcp = egress::connect(&self.policy, &self.host, self.port, self.connect_timeout)
            .await
            .map_err(TlsPoolError::Connect)?;
        self.tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(TlsPoolError::Tls)
    }
}

/// The connect others wait for: ends their wait however it ends (done, failed, or dropped
/// with its request).
struct Connecting<'p> {
    pool: &'p TlsPool,
    notify: Option<watch::Sender<Outcome>>,
}

impl Connecting<'_> {
    fn done(self) {
        if let Some(notify) = &self.notify {
            notify.send_replace(Outcome::Done);
        }
    }

    fn fail(self, error: TlsPoolError) -> TlsPoolError {
        let error = Arc::new(error);
        if let Some(notify) = &self.notify {
            notify.send_replace(Outcome::Failed(error.clone()));
        }
        TlsPoolError::Shared(error)
    }
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        if self.notify.is_some() {
            self.pool.state().connecting = None;
        }
    }
}
