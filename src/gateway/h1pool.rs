//! Keep-alive HTTP/1.1 connections to a plain-HTTP upstream (vLLM, Ollama or any
//! OpenAI-compatible server reached without TLS), on hyper's connection API.
//!
//! hyper-util's pooled client, which HTTPS upstreams use (ALPN may choose HTTP/2 there),
//! spends about 6,600 instructions per request in its pool: SipHash lookups by scheme and
//! authority, checkout futures and an idle-eviction task. A plain-HTTP upstream, which always
//! speaks HTTP/1.1, needs a stack of idle connections taken and returned under a mutex.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::egress::{self, ConnectError, Policy};

/// An idle connection is closed after this long unused (when the next request takes or
/// returns a connection of the same upstream).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per upstream; more are closed when they come back.
const MAX_IDLE: usize = 1024;

pub type Sender = SendRequest<Full<Bytes>>;

/// Why a request to a plain-HTTP upstream failed before its response headers.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("no connection")]
    Connect(#[source] ConnectError),
    #[error("the HTTP/1.1 handshake failed")]
    Handshake(#[source] hyper::Error),
    #[error("the exchange failed")]
    Request(#[source] hyper::Error),
}

impl H1Error {
    /// Whether no connection could be made (as opposed to a failure on a connection).
    pub fn is_connect(&self) -> bool {
        matches!(self, H1Error::Connect(_) | H1Error::Handshake(_))
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

impl Idle {
    fn usable(&self) -> bool {
        !self.sender.is_closed() && self.since.elapsed() < IDLE_TIMEOUT
    }
}

/// The idle HTTP/1.1 connections of one upstream (plain, or HTTPS where ALPN chose
/// HTTP/1.1): taken and returned at the back under a mutex.
#[derive(Default)]
pub struct IdleStack {
    /// Oldest first.
    idle: Mutex<VecDeque<Idle>>,
}

impl IdleStack {
    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `request` on an idle connection: `Err` gives the request back when none could
    /// take it (a closing idle connection that could not take it is skipped).
    pub async fn send_idle(
        self: &Arc<Self>,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Result<Response<PooledBody>, hyper::Error>, Request<Full<Bytes>>> {
        while let Some(mut sender) = self.take() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(Ok(self.pooled(response, sender))),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Ok(Err(error.into_error())),
                },
            }
        }
        Err(request)
    }

    /// The most recently used idle connection that is still open and fresh.
    fn take(&self) -> Option<Sender> {
        let mut idle = self.idle();
        while let Some(entry) = idle.pop_back() {
            if entry.usable() {
                return Some(entry.sender);
            }
        }
        None
    }

    fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        // Connections idle too long (or closed by the upstream) are closed as traffic goes on,
        // oldest first.
        while idle.front().is_some_and(|oldest| !oldest.usable()) {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// A response on `sender`, whose body gives the connection back here when read to its end.
    pub fn pooled(self: &Arc<Self>, response: Response<Incoming>, sender: Sender) -> Response<PooledBody> {
        let back = Some((self.clone(), sender));
        response.map(|inner| PooledBody { inner, back })
    }
}

/// Runs an HTTP/1.1 client connection over `io` in its own task.
pub async fn handshake<T>(io: T) -> Result<Sender, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// The connections to one upstream `host:port`, each opened through the egress policy.
pub struct H1Pool {
    host: String,
    port: u16,
    connect_timeout: Duration,
    policy: Arc<Policy>,
    idle: Arc<IdleStack>,
}

impl H1Pool {
    pub fn new(host: String, port: u16, connect_timeout: Duration, policy: Arc<Policy>) -> Self {
        H1Pool {
            host,
            port,
            connect_timeout,
            policy,
            idle: Arc::default(),
        }
    }

    /// Sends `request` (origin-form URI, `Host` set) on an idle connection, or on a new one.
    /// A request that a closing idle connection could not take is sent again on another.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response<PooledBody>, H1Error> {
        let request = match self.idle.send_idle(request).await {
            Ok(sent) => return sent.map_err(H1Error::Request),
            Err(request) => request,
        };
        let stream = egress::connect(&self.policy, &self.host, self.port, self.connect_timeout)
            .await
            .map_err(H1Error::Connect)?;
        let mut sender = handshake(stream).await.map_err(H1Error::Handshake)?;
        let response = sender.send_request(request).await.map_err(H1Error::Request)?;
        Ok(self.idle.pooled(response, sender))
    }
}

/// An upstream response body. A body read to its end gives its connection back to the pool;
/// one dropped before its end takes the connection with it.
pub struct PooledBody {
    inner: Incoming,
    back: Option<(Arc<IdleStack>, Sender)>,
}

impl PooledBody {
    /// A body of a connection no pool of ours manages.
    pub fn unpooled(inner: Incoming) -> Self {
        PooledBody { inner, back: None }
    }

    fn give_back(&mut self) {
        if let Some((pool, sender)) = self.back.take() {
            pool.put(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // An empty body (a 204, `Content-Length: 0`) may never be polled.
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}
