//! The socket of one HTTP/1.1 client connection and its read buffer, shared by the connection
//! loop (heads, responses) and the request body being read (behind a mutex: both run on the
//! connection's task, so the lock is never contended).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::gateway::h1::wire::Decoder;
use crate::gateway::server::registry::Conn;
use crate::gateway::sockio;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

pub(super) struct Wire {
    stream: TcpStream,
    pub conn: Arc<Conn>,
    /// Bytes read and not yet parsed: the rest of a head, a body, pipelined requests.
    pub buf: BytesMut,
    /// The body of the request in flight (done when there is none).
    pub body: Decoder,
    /// Which request the body belongs to.
    pub seq: u64,
    /// `Some(n)`: a `100 Continue` is owed before the body is read, `n` bytes of it written.
    pub continue_owed: Option<usize>,
    /// The request body was malformed: the connection cannot carry another request.
    pub broken: bool,
}

pub(super) type Shared = Arc<Mutex<Wire>>;

pub(super) fn lock(wire: &Mutex<Wire>) -> MutexGuard<'_, Wire> {
    wire.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Wire {
    pub fn new(stream: TcpStream, conn: Arc<Conn>) -> Self {
        Wire {
            stream,
            conn,
            buf: BytesMut::new(),
            body: Decoder::length(0),
            seq: 0,
            continue_owed: None,
            broken: false,
        }
    }

    /// Reads what the socket has into the buffer: the bytes read (0: the client closed).
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let n = ready!(sockio::poll_fill(&self.stream, cx, &mut self.buf))?;
        if n > 0 {
            self.conn.on_read();
        }
        Poll::Ready(Ok(n))
    }

    /// Writes some of `bufs`, telling the registry whether the socket took them.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let polled = sockio::poll_write(&self.stream, cx, bufs);
        match &polled {
            Poll::Ready(Ok(_)) => self.conn.on_write(),
            Poll::Pending => self.conn.on_write_blocked(),
            Poll::Ready(Err(_)) => {}
        }
        polled
    }

    /// Sends the `100 Continue` owed, if any.
    pub fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(sent) = self.continue_owed {
            let rest = &CONTINUE[sent.min(CONTINUE.len())..];
            if rest.is_empty() {
                self.continue_owed = None;
                break;
            }
            match ready!(self.poll_write(cx, &[IoSlice::new(rest)]))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => self.continue_owed = Some(sent + n),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// While a response is awaited or written: whether the client has gone (closed its side
    /// or reset). Reads only once the request body is done, and keeps what it reads
    /// (pipelined requests) up to `limit` bytes.
    pub fn poll_gone(&mut self, cx: &mut Context<'_>, limit: usize) -> Poll<()> {
        if !self.body.is_done() || self.buf.len() >= limit {
            return Poll::Pending;
        }
        loop {
            match ready!(self.poll_fill(cx)) {
                Ok(0) | Err(_) => return Poll::Ready(()),
                Ok(_) if self.buf.len() >= limit => return Poll::Pending,
                Ok(_) => {}
            }
        }
    }

    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
