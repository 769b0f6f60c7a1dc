//! Keep-alive HTTP/1.1 connections to a plain-HTTP upstream (vLLM, Ollama or any
//! OpenAI-compatible server reached without TLS), on our own light connection (`h1`).
//!
//! hyper-util's pooled client spends about 6,600 instructions per request in its pool
//! (SipHash lookups by scheme and authority, checkout futures, an idle-eviction task), and
//! hyper's connection a task, a request channel and two 8 KB buffers per connection: a
//! plain-HTTP upstream needs a stack of idle sockets taken and returned under a mutex.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use super::egress::{self, ConnectError, Policy};
use super::fixed::FixedHeaders;
use super::h1::{self, Conn, ExchangeError, H1Body, H1BodyError, IdleStack, Io, Prepared};

/// Why a request to a plain-HTTP upstream failed before its response headers.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("no connection")]
    Connect(#[source] ConnectError),
    #[error("the exchange failed")]
    Request(#[source] ExchangeError),
}

impl H1Error {
    /// Whether no connection could be made (as opposed to a failure on a connection).
    pub fn is_connect(&self) -> bool {
        matches!(self, H1Error::Connect(_))
    }
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
    /// A request that a closing idle connection could not take is sent again on a new one.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        fixed: Option<&FixedHeaders>,
    ) -> Result<Response<PooledBody>, H1Error> {
        let prepared = Prepared::owned(request, None, fixed);
        if let Some(sent) = self.idle.send_idle(&prepared).await {
            return sent.map(light).map_err(H1Error::Request);
        }
        let stream = egress::connect(&self.policy, &self.host, self.port, self.connect_timeout)
            .await
            .map_err(H1Error::Connect)?;
        h1::exchange(Conn::new(Io::Tcp(stream)), &prepared, &self.idle)
            .await
            .map(light)
            .map_err(H1Error::Request)
    }
}

/// A response on one of our HTTP/1.1 connections.
pub fn light(response: Response<H1Body>) -> Response<PooledBody> {
    response.map(PooledBody::Light)
}

/// An upstream response body: on our HTTP/1.1 connection (which goes back to its pool when
/// the body is read to its end), or hyper's (HTTP/2 upstreams, guardrail webhooks).
pub enum PooledBody {
    Light(H1Body),
    Hyper(Incoming),
}

impl PooledBody {
    /// A body of a connection hyper manages.
    pub fn unpooled(inner: Incoming) -> Self {
        PooledBody::Hyper(inner)
    }
}

/// Why reading a response body failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    #[error(transparent)]
    Light(#[from] H1BodyError),
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = ReadError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ReadError>>> {
        match self.get_mut() {
            PooledBody::Light(body) => Pin::new(body).poll_frame(cx).map_err(ReadError::from),
            PooledBody::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(ReadError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            PooledBody::Light(body) => body.is_end_stream(),
            PooledBody::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            PooledBody::Light(body) => body.size_hint(),
            PooledBody::Hyper(body) => body.size_hint(),
        }
    }
}
