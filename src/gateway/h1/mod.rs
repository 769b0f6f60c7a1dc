//! Our own HTTP/1.1 client connection to providers (plain HTTP, and HTTPS where ALPN chose
//! `http/1.1`), in place of hyper's: a connection is its socket and a read buffer, owned by
//! the request and then by the response body, with no task and no channel of its own.
//!
//! A request's head and body go out in one vectored write; the response head is read with
//! `httparse` into a buffer that grows only while the head is incomplete (64 KB at most);
//! the body is decoded from that buffer (`wire`) and handed on without a copy. A body read to
//! its end gives the connection back to its upstream's idle stack (`idle`); a body dropped
//! early or broken takes the connection with it. Why not hyper's: see the README ("Ten
//! thousand concurrent streams"): its client connection holds a task, a request channel and
//! two 8 KB buffers for its whole life.

mod body;
mod idle;
pub mod maps;
pub(crate) mod wire;

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderValue, Method, Request, Response};
use http_body::Body as _;
use http_body_util::Full;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::fixed::FixedHeaders;
use super::sockio::{self, READ_SIZE};
pub use body::{H1Body, H1BodyError};
pub use idle::IdleStack;
use wire::WireError;

/// The socket of a connection: plain TCP or TLS.
pub enum Io {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(tcp) => sockio::poll_write(tcp, cx, bufs),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An HTTP/1.1 connection between requests: the socket and the bytes read but not yet used
/// (none while it is idle).
pub struct Conn {
    io: Io,
    buf: BytesMut,
}

impl Conn {
    pub fn new(io: Io) -> Self {
        Conn {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Reads what the socket has (up to `READ_SIZE`) onto the end of the buffer; 0 at EOF.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if let Io::Tcp(tcp) = &self.io {
            return sockio::poll_fill(tcp, cx, &mut self.buf);
        }
        let mut stack = [MaybeUninit::<u8>::uninit(); READ_SIZE];
        let mut read = ReadBuf::uninit(&mut stack);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        self.buf.extend_from_slice(read.filled());
        Poll::Ready(Ok(read.filled().len()))
    }

    /// Whether an idle connection can take a request: the provider has neither closed it nor
    /// sent anything unasked (checked without waiting).
    fn is_open(&mut self) -> bool {
        let mut probe = [MaybeUninit::<u8>::uninit(); 64];
        let mut read = ReadBuf::uninit(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(Pin::new(&mut self.io).poll_read(&mut cx, &mut read), Poll::Pending)
    }
}

/// A request ready for the wire: its head serialized, its body in one piece.
pub struct Prepared {
    method: Method,
    head: Vec<u8>,
    body: Bytes,
}

impl Prepared {
    /// Serializes `request` in origin form, with `fixed` (the provider's headers, when the
    /// request does not carry them already) first; `host` is the `Host` it gets when it has
    /// none (else the URI's authority). The body's length is always its `Content-Length`.
    pub fn new(request: &Request<Full<Bytes>>, host: Option<&HeaderValue>, fixed: Option<&FixedHeaders>) -> Self {
        let body = whole(request.body().clone());
        Self::build(request.method(), request.uri(), request.headers(), body, host, fixed)
    }

    /// [`Prepared::new`] for a request not needed after: its body is taken, not cloned (a clone
    /// of a body the gateway rewrote is an allocation).
    pub fn owned(request: Request<Full<Bytes>>, host: Option<&HeaderValue>, fixed: Option<&FixedHeaders>) -> Self {
        let (parts, body) = request.into_parts();
        let prepared = Self::build(&parts.method, &parts.uri, &parts.headers, whole(body), host, fixed);
        maps::give(parts.headers);
        prepared
    }

    fn build(
        method: &Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: Bytes,
        host: Option<&HeaderValue>,
        fixed: Option<&FixedHeaders>,
    ) -> Self {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let lines = fixed.map_or(&[][..], FixedHeaders::lines);
        let mut head = Vec::with_capacity(64 + path.len() + lines.len() + headers.len() * 48);
        head.extend_from_slice(method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        head.extend_from_slice(lines);
        if !fixed.is_some_and(FixedHeaders::has_host) && !headers.contains_key(HOST) {
            let authority = uri.authority().map(|a| a.as_str().as_bytes());
            if let Some(host) = host.map(HeaderValue::as_bytes).or(authority) {
                line(&mut head, b"host", host);
            }
        }
        // The body is sent whole, so its framing is ours: a `Content-Length` or
        // `Transfer-Encoding` among the headers is not passed on.
        for (name, value) in headers {
            if name != CONTENT_LENGTH && name != TRANSFER_ENCODING {
                line(&mut head, name.as_str().as_bytes(), value.as_bytes());
            }
        }
        let expects_body = !matches!(*method, Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS);
        if !body.is_empty() || expects_body {
            line(
                &mut head,
                b"content-length",
                itoa::Buffer::new().format(body.len()).as_bytes(),
            );
        }
        head.extend_from_slice(b"\r\n");
        Prepared {
            method: method.clone(),
            head,
            body,
        }
    }
}

/// A body sent whole: its one frame.
fn whole(mut full: Full<Bytes>) -> Bytes {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut full).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

fn line(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Why an exchange on a connection failed before the response head.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("writing the request failed")]
    Write(#[source] io::Error),
    #[error("the provider closed the connection without answering")]
    NoAnswer,
    #[error("the connection failed before the provider answered")]
    Reset(#[source] io::Error),
    #[error("reading the response head failed")]
    Read(#[source] io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl ExchangeError {
    /// The request could not be written: on a connection that was idle, the provider closed
    /// it, and the request may go again on a new one. A request written and then answered by
    /// a close or a reset is not sent again (as with hyper's client): the provider may have
    /// acted on it, and the alias's retry policy decides (`unreachable`).
    pub fn unsent(&self) -> bool {
        matches!(self, ExchangeError::Write(_))
    }
}

/// Sends `request` on `conn` and reads the response head; the body that follows owns the
/// connection and gives it back to `idle` when read cleanly to its end.
pub async fn exchange(
    mut conn: Conn,
    request: &Prepared,
    idle: &Arc<IdleStack>,
) -> Result<Response<H1Body>, ExchangeError> {
    write_all(&mut conn.io, &request.head, &request.body)
        .await
        .map_err(ExchangeError::Write)?;
    let head = loop {
        if !conn.buf.is_empty() {
            if let Some(head) = wire::parse_head(&mut conn.buf, &request.method)? {
                break head;
            }
        }
        let had = !conn.buf.is_empty();
        match std::future::poll_fn(|cx| conn.poll_fill(cx)).await {
            Ok(0) if had => return Err(WireError::Truncated.into()),
            Ok(0) => return Err(ExchangeError::NoAnswer),
            Ok(_) => {}
            Err(error) if had => return Err(ExchangeError::Read(error)),
            Err(error) => return Err(ExchangeError::Reset(error)),
        }
    };
    let mut response = Response::new(());
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers;
    let back = head.reusable.then(|| idle.clone());
    Ok(response.map(|()| H1Body::new(conn, head.decoder, back)))
}

/// Writes `head` and `body` with as few (vectored) writes as the socket allows.
async fn write_all(io: &mut Io, mut head: &[u8], mut body: &[u8]) -> io::Result<()> {
    while !head.is_empty() || !body.is_empty() {
        let slices = [IoSlice::new(head), IoSlice::new(body)];
        let mut n = io.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        n -= from_head;
        body = &body[n..];
    }
    io.flush().await
}

#[cfg(test)]
mod tests;
