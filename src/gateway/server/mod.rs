//! The listener stage: serves a service on a socket (HTTP/1.1 with our own connection, HTTP/2
//! with hyper-util's), hardened against clients that are slow, silent or too many.
//!
//! - `accept`: the accept loop; the connection cap; backoff on accept errors.
//! - `registry`: every open connection's phase and deadline; closing the ones past their
//!   timeouts, and the longest-waiting ones first at the cap.
//! - `connection`: one connection, driven until it ends or is told to close; `sniff`: which
//!   protocol it speaks, from a peek at its first bytes; `h1`: our own HTTP/1.1 connection
//!   (HTTP/2 stays on hyper).
//! - `service`: per request: busy until the last byte, JSON errors for oversized headers,
//!   `Connection: close` while draining, the error event that ends a stream at shutdown.
//! - `common`: what a listener's connections share (settings, coarse clock, drain state);
//!   `fd`: the file-descriptor budget; `drain`: the shutdown sequence; `metrics`.

mod accept;
mod common;
mod connection;
pub mod drain;
pub mod fd;
mod h1;
pub mod metrics;
mod registry;
mod service;
mod sniff;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceExt;

pub use drain::{DrainReport, Shutdown};
#[cfg(any(test, feature = "fuzzing"))]
pub use h1::parse_head;
pub use metrics::{CloseReason, ConnectionMetrics, ListenerMetrics, ListenerName};
pub use service::{Tracked, MAX_URI_BYTES};

use common::Common;
use registry::Registry;

/// Default `--max-header-bytes`: request line and headers of one request.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 << 10;

/// How the listeners treat client connections (flags of `modelgate gateway`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// A request's line and headers must arrive within this, from the accept (or, on a
    /// keep-alive connection, from the first byte of the request).
    pub header_timeout: Duration,
    /// A request's body must arrive within this, from the end of its headers.
    pub body_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2: ping a connection this often; zero disables pings.
    pub http2_keepalive_interval: Duration,
    /// HTTP/2: close the connection when a ping is not answered within this.
    pub http2_keepalive_timeout: Duration,
    /// Client connections on the API port at most; `None`: from the file-descriptor limit.
    pub max_connections: Option<usize>,
    /// Request line plus headers, in bytes, answered with a JSON 431 above this.
    pub max_header_bytes: usize,
    pub shutdown: Shutdown,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            max_connections: None,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            shutdown: Shutdown::default(),
        }
    }
}

/// A service the listener can serve: the API, or the admin router.
pub trait Served:
    tower::Service<Request, Response = Response, Error = Infallible, Future: Send + 'static> + Clone + Send + 'static
{
    /// The answer to one request of an HTTP/1.1 connection. The connection keeps this future
    /// in a box it reuses from one request to the next, so a service whose answer need not be
    /// a named (boxed) type answers without an allocation per request, as the API does for its
    /// proxied endpoints. By default, the service's own future (HTTP/2 connections always use
    /// that one).
    fn answer(&self, request: Request) -> impl Future<Output = Result<Response, Infallible>> + Send + use<Self> {
        self.clone().oneshot(request)
    }
}

impl Served for axum::Router {}

/// What every connection of one listener needs.
pub(crate) struct Settings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
}

/// hyper-util's connection builder with our limits (HTTP/2, and the HTTP/1.1 connections
/// `sniff` cannot tell from their first bytes). hyper answers a head over its buffer (twice
/// `max_header_bytes`) itself, with an empty 431; the JSON 431 of `service` covers everything
/// below. (hyper-util's builder offers no `max_header_size`; the buffer limit
/// also bounds what a slow client's unfinished head can hold.)
fn builder(options: &ServerOptions) -> auto::Builder<TokioExecutor> {
    let ceiling = options.max_header_bytes.saturating_mul(2).max(8 << 10);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Header, idle and write deadlines are the registry's (no timer per request).
    builder.http1().header_read_timeout(None).max_buf_size(ceiling);
    let interval = Some(options.http2_keepalive_interval).filter(|i| !i.is_zero());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(interval)
        .keep_alive_timeout(options.http2_keepalive_timeout)
        .max_header_list_size(u32::try_from(ceiling).unwrap_or(u32::MAX));
    builder
}

/// A listener being served.
pub struct Server {
    addr: SocketAddr,
    registry: Arc<Registry>,
    accept: Option<JoinHandle<()>>,
    sweeper: JoinHandle<()>,
}

/// Serves `service` on `listener` with at most `cap` connections.
pub fn serve<S>(
    listener: TcpListener,
    service: S,
    options: &ServerOptions,
    cap: usize,
    metrics: ListenerMetrics,
) -> std::io::Result<Server>
where
    S: Served,
{
    let addr = listener.local_addr()?;
    let common = Arc::new(Common::new(Settings {
        header_timeout: options.header_timeout,
        idle_timeout: options.idle_timeout,
        max_header_bytes: options.max_header_bytes,
    }));
    let registry = Arc::new(Registry::new(common, cap, metrics));
    let accept = tokio::spawn(accept::accept(
        listener,
        registry.clone(),
        Arc::new(sniff::Builders::new(builder(options))),
        service,
    ));
    let sweeper = tokio::spawn(registry::sweep(registry.clone()));
    Ok(Server {
        addr,
        registry,
        accept: Some(accept),
        sweeper,
    })
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.registry.open()
    }

    /// Starts draining while still accepting: HTTP/1.1 responses close their connection
    /// (idle keep-alive connections stay open until their next response, or until accepting
    /// stops), HTTP/2 connections get a GOAWAY.
    pub fn begin_drain(&self) {
        self.registry.common.set_draining();
        self.registry.close_served();
    }

    /// Closes the listening socket (new connections are refused), asks every connection to
    /// finish what is in flight and close, and closes those without a request at once.
    pub async fn stop_accepting(&mut self) {
        self.registry.common.set_draining();
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        self.registry.close_all();
    }

    /// Resolves when no connection is open.
    pub async fn closed(&self) {
        self.registry.closed().await;
    }

    /// The grace period is over: event streams end with an error event, requests without a
    /// response get a 503. Returns the connections still open.
    pub fn finish(&self) -> usize {
        self.registry.common.set_finishing();
        self.registry.wake_all();
        self.registry.open()
    }

    /// Event streams ended by [`Server::finish`] so far.
    pub fn streams_cut(&self) -> usize {
        self.registry
            .common
            .streams_cut
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Closes every connection at once; returns how many were open.
    pub fn abort(&self) -> usize {
        self.registry.abort_all(CloseReason::shutdown)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        self.sweeper.abort();
        self.registry.abort_all(CloseReason::shutdown);
    }
}
