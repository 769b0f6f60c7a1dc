//! One client connection: our own HTTP/1.1 connection (`h1`), or hyper-util's HTTP/2 (or
//! detecting) connection over a socket that reports reads and stalled writes to the registry
//! (the protocol told by `sniff` from a peek at the first bytes), driven until it ends or is
//! told to close.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::registry::{Conn, Registry, ABORT, GRACEFUL, RUN};
use super::service::Guard;
use super::sniff::{Builders, PREFACE};
use super::Served;

/// The client socket, telling its connection's state what moves.
pub(super) struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.on_read();
        }
        polled
    }
}

impl Watched {
    fn wrote(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Ready(Ok(_)) => self.conn.on_write(),
            Poll::Pending => self.conn.on_write_blocked(),
            Poll::Ready(Err(_)) => {}
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Unregisters the connection however its task ends.
struct Registered {
    registry: Arc<Registry>,
    conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(&self.conn);
    }
}

/// Serves one accepted connection until it ends or is told to close.
pub(super) async fn serve<S>(
    stream: TcpStream,
    registry: Arc<Registry>,
    conn: Arc<Conn>,
    builders: Arc<Builders>,
    service: S,
) where
    S: Served,
{
    let registered = Registered {
        registry,
        conn: conn.clone(),
    };
    // The first bytes, left in the socket for hyper to read; until they come the connection
    // is FRESH, under the header timeout, and any command closes it.
    let mut first = [0u8; PREFACE.len()];
    let peeked = poll_fn(|cx| {
        conn.waker.register(cx.waker());
        if conn.command() != RUN {
            return Poll::Ready(None);
        }
        let mut buf = ReadBuf::new(&mut first);
        stream.poll_peek(cx, &mut buf).map(|peeked| Some(peeked.unwrap_or(0)))
    })
    .await;
    let Some(peeked) = peeked else {
        return;
    };
    if super::sniff::is_http1(&first[..peeked]) {
        return super::h1::serve(stream, conn, service).await;
    }
    let builder = builders.for_first_bytes(&first[..peeked]);
    let io = TokioIo::new(Watched {
        stream,
        conn: conn.clone(),
    });
    let mut connection = pin!(builder.serve_connection(io, Guard::new(service, conn.clone())));
    let mut graceful = false;
    let ended = poll_fn(|cx| {
        conn.waker.register(cx.waker());
        match conn.command() {
            ABORT => return Poll::Ready(None),
            GRACEFUL if !graceful => {
                graceful = true;
                connection.as_mut().graceful_shutdown();
            }
            _ => {}
        }
        connection.as_mut().poll(cx).map(Some)
    })
    .await;
    if let Some(Err(error)) = ended {
        tracing::debug!(listener = ?registered.registry.metrics().name(), %error, "client connection ended with an error");
    }
}
