//! Our own HTTP/1.1 server connection, in place of hyper's (HTTP/2, and connections whose first
//! bytes are too few to tell, stay on hyper-util's builders): one loop per connection that
//! reads a head (`head`), hands the service the request with its body still on the socket
//! (`body`), and writes the response (`write`) frame by frame, straight to the socket. No task,
//! channel or write buffer of its own; the socket and read buffer (`wire`) are shared by the
//! loop and the request body. Why: see the README ("Where the instructions go").

mod body;
mod head;
#[cfg(test)]
mod tests;
mod wire;
pub(super) mod write;

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{ready, Poll};

use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use http::{Method, Response, Version};
use http_body::Body as _;

use super::registry::{Conn, ABORT, RUN};
use super::service::{is_event_stream, Guard};
use super::Served;
use crate::gateway::h1::maps;
use crate::gateway::h1::wire::{Decoded, Decoder};
use head::{Framing, HeadError};
use wire::{lock, Wire};
use write::Plan;

pub use body::RequestBody;
#[cfg(any(test, feature = "fuzzing"))]
pub use head::parse as parse_head;

/// The most of a request body the handler left unread that is read and dropped to keep the
/// connection; a longer rest closes it.
const DRAIN_LIMIT: usize = 256 << 10;

/// Serves HTTP/1.1 on `stream` until the client closes, a request ends the connection, or the
/// registry closes it (`GRACEFUL`: after the request in flight; `ABORT`: at once).
pub(super) async fn serve<S: Served>(stream: tokio::net::TcpStream, conn: Arc<Conn>, service: S) {
    let wire = Arc::new(Mutex::new(Wire::new(stream, conn.clone())));
    let guard = Guard::new(service, conn.clone());
    let mut run = pin!(connection(&wire, guard, &conn));
    poll_fn(|cx| {
        conn.waker.register(cx.waker());
        if conn.command() == ABORT {
            return Poll::Ready(());
        }
        run.as_mut().poll(cx)
    })
    .await;
    // A request body still held somewhere reads nothing more.
    lock(&wire).seq = u64::MAX;
}

/// The requests of one connection, in order.
async fn connection<S: Served>(wire: &Arc<Mutex<Wire>>, guard: Guard<S>, conn: &Conn) {
    let max_header_bytes = conn.common.settings.max_header_bytes;
    // What an incomplete head (or pipelined requests) may hold, as hyper's buffer did.
    let limit = max_header_bytes.saturating_mul(2).max(8 << 10);
    let mut out = Vec::new();
    let mut seq = 0u64;
    // The answer's future (about 4 KB) lives in a box kept from one request to the next: no
    // allocation per request. An event stream gives it up, so that a connection holding a
    // long stream holds only what the stream needs.
    let mut slot = None;
    loop {
        let head = match poll_fn(|cx| poll_head(wire, conn, limit, cx)).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(error) => {
                let (parts, body) = error.api_error(max_header_bytes).into_response().into_parts();
                let plan = write::plan(&parts, body.size_hint().exact(), Version::HTTP_11, false);
                let _ = respond(wire, &mut out, &parts, body, Version::HTTP_11, plan, false, limit).await;
                return close(wire).await;
            }
        };
        seq += 1;
        let (version, keep_alive) = (head.request.version(), head.keep_alive);
        let head_only = head.request.method() == Method::HEAD;
        let body = request_body(wire, seq, &head);
        let mut answer = guard.answer(head.request.map(|()| body), &mut slot, S::answer);
        let response = poll_fn(|cx| {
            if let Poll::Ready(Ok(response)) = Pin::new(&mut answer).poll(cx) {
                return Poll::Ready(Some(response));
            }
            ready!(lock(wire).poll_gone(cx, limit));
            Poll::Ready(None)
        })
        .await;
        let Some(response) = response else {
            return; // the client left before its answer
        };
        let (parts, body) = Response::into_parts(response);
        // Dropped now, not at the end of the iteration: a stream's box is freed while it runs.
        // (A head too large was answered without it: the box stayed in the slot.)
        match (is_event_stream(&parts.headers), answer.into_inner()) {
            (false, Some(boxed)) => slot = Some(boxed),
            (true, _) => slot = None,
            (false, None) => {}
        }
        let keep_alive = keep_alive && conn.command() == RUN;
        let plan = write::plan(&parts, body.size_hint().exact(), version, keep_alive);
        let sent = respond(wire, &mut out, &parts, body, version, plan, head_only, limit).await;
        maps::give(parts.headers);
        match sent {
            Ok(true) if plan.keep_alive && conn.command() == RUN => {}
            _ => return close(wire).await,
        }
        if !poll_fn(|cx| poll_drain(wire, cx)).await {
            return close(wire).await;
        }
    }
}

/// The next head, read until complete; `None`: the connection ends without one.
fn poll_head(
    wire: &Mutex<Wire>,
    conn: &Conn,
    limit: usize,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<Option<head::Head>, HeadError>> {
    let mut wire = lock(wire);
    loop {
        if !wire.buf.is_empty() {
            if let Some(head) = head::parse(&mut wire.buf, limit)? {
                return Poll::Ready(Ok(Some(head)));
            }
        } else if conn.command() != RUN {
            return Poll::Ready(Ok(None));
        }
        match ready!(wire.poll_fill(cx)) {
            Ok(0) | Err(_) => return Poll::Ready(Ok(None)),
            Ok(_) => {}
        }
    }
}

/// The request's body: taken whole when it is already in the buffer, else read as the handler
/// asks for it.
fn request_body(shared: &Arc<Mutex<Wire>>, seq: u64, head: &head::Head) -> Body {
    let mut wire = lock(shared);
    wire.seq = seq;
    wire.continue_owed = None;
    let n = match head.framing {
        Framing::Length(0) => return Body::empty(),
        Framing::Length(n) if n <= wire.buf.len() as u64 => {
            let n = n as usize;
            return Body::from(wire.buf.split_to(n).freeze());
        }
        Framing::Length(n) => Some(n),
        Framing::Chunked => None,
    };
    wire.body = n.map_or_else(Decoder::chunked, Decoder::length);
    if head.expect_continue && wire.buf.is_empty() {
        wire.continue_owed = Some(0);
    }
    Body::new(RequestBody::new(shared.clone(), seq, n))
}

/// After a response: reads and drops what the handler left of the request body (up to
/// [`DRAIN_LIMIT`]); whether the connection can carry another request.
fn poll_drain(wire: &Mutex<Wire>, cx: &mut std::task::Context<'_>) -> Poll<bool> {
    let mut wire = lock(wire);
    if wire.broken || (wire.continue_owed.is_some() && !wire.body.is_done()) {
        // The client waits for a 100 Continue it will not get, or the body was malformed.
        return Poll::Ready(false);
    }
    let mut drained = 0;
    loop {
        let wire = &mut *wire;
        match wire.body.decode(&mut wire.buf) {
            Ok(Decoded::Data(data)) => {
                drained += data.len();
                if drained > DRAIN_LIMIT {
                    return Poll::Ready(false);
                }
            }
            Ok(Decoded::End) => return Poll::Ready(true),
            Ok(Decoded::More) => match ready!(wire.poll_fill(cx)) {
                Ok(0) | Err(_) => return Poll::Ready(false),
                Ok(_) => {}
            },
            Err(_) => return Poll::Ready(false),
        }
    }
}

/// Closes the connection: our side first, then what the client still sends is read and
/// dropped (up to [`DRAIN_LIMIT`]) until it closes too, so that the answer is not lost to a
/// reset (closing a socket with unread bytes resets it).
async fn close(wire: &Mutex<Wire>) {
    let _ = poll_fn(|cx| lock(wire).poll_shutdown(cx)).await;
    let mut dropped = 0;
    poll_fn(|cx| {
        let mut wire = lock(wire);
        loop {
            dropped += wire.buf.len();
            wire.buf.clear();
            if dropped > DRAIN_LIMIT || wire.conn.command() != RUN {
                return Poll::Ready(());
            }
            match ready!(wire.poll_fill(cx)) {
                Ok(0) | Err(_) => return Poll::Ready(()),
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Writes a response: the head (with the first body frame when it is ready, in one write),
/// then each frame as it comes. `Ok(true)`: the body ended where its framing said.
#[allow(clippy::too_many_arguments)]
async fn respond<B>(
    wire: &Mutex<Wire>,
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    body: B,
    version: Version,
    plan: Plan,
    head_only: bool,
    limit: usize,
) -> io::Result<bool>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    out.clear();
    write::head(out, parts, version, plan);
    if head_only || plan.framing == write::Framing::None {
        drop(body);
        write_all(wire, &mut [IoSlice::new(out)]).await?;
        return Ok(true);
    }
    let mut body = body;
    let mut head_sent = false;
    let mut left = match plan.framing {
        write::Framing::Length(n) => n,
        _ => u64::MAX,
    };
    let mut first = Some(poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut body).poll_frame(cx))).await);
    loop {
        let frame = match first.take() {
            Some(Poll::Ready(frame)) => frame,
            Some(Poll::Pending) => {
                // A stream: its head goes out now.
                write_all(wire, &mut [IoSlice::new(out)]).await?;
                head_sent = true;
                continue;
            }
            None => {
                let frame = poll_fn(|cx| {
                    if let Poll::Ready(frame) = std::pin::Pin::new(&mut body).poll_frame(cx) {
                        return Poll::Ready(Some(frame));
                    }
                    ready!(lock(wire).poll_gone(cx, limit));
                    Poll::Ready(None)
                })
                .await;
                frame.ok_or(io::ErrorKind::ConnectionAborted)?
            }
        };
        let head: &[u8] = if head_sent { &[] } else { out };
        let data = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue, // trailers are not sent; empty frames say nothing
            },
            Some(Err(_)) => return Ok(false),
            None => {
                let end: &[u8] = match plan.framing {
                    write::Framing::Chunked => b"0\r\n\r\n",
                    _ => b"",
                };
                write_all(wire, &mut [IoSlice::new(head), IoSlice::new(end)]).await?;
                return Ok(matches!(left, 0 | u64::MAX));
            }
        };
        let mut line = [0u8; 18];
        let cut = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        match plan.framing {
            write::Framing::Chunked => {
                let size = write::chunk_size(data.len(), &mut line);
                let mut bufs = [
                    IoSlice::new(head),
                    IoSlice::new(size),
                    IoSlice::new(&data),
                    IoSlice::new(b"\r\n"),
                ];
                write_all(wire, &mut bufs).await?;
            }
            _ => write_all(wire, &mut [IoSlice::new(head), IoSlice::new(&data[..cut])]).await?,
        }
        head_sent = true;
        if left != u64::MAX {
            left -= cut as u64;
            if cut < data.len() {
                return Ok(false); // more than its Content-Length
            }
        }
    }
}

/// Writes every byte of `bufs`.
async fn write_all(wire: &Mutex<Wire>, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut bufs = bufs;
    IoSlice::advance_slices(&mut bufs, 0);
    poll_fn(|cx| {
        let mut wire = lock(wire);
        while !bufs.is_empty() {
            match ready!(wire.poll_write(cx, bufs))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => IoSlice::advance_slices(&mut bufs, n),
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}
