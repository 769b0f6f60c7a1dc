//! A response body that owns its connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::wire::{Decoded, Decoder, WireError};
use super::{Conn, IdleStack};

/// Why a response body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum H1BodyError {
    #[error("reading the provider's response body failed")]
    Io(#[source] io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// The body of a response on one of our HTTP/1.1 connections. Read cleanly to its end, it
/// gives the connection back to `back` (a keep-alive response); dropped before, or broken,
/// it closes the connection.
pub struct H1Body {
    conn: Option<Conn>,
    decoder: Decoder,
    back: Option<Arc<IdleStack>>,
}

impl H1Body {
    pub(super) fn new(conn: Conn, decoder: Decoder, back: Option<Arc<IdleStack>>) -> Self {
        let mut body = H1Body {
            conn: Some(conn),
            decoder,
            back,
        };
        if body.decoder.is_done() {
            body.finish();
        }
        body
    }

    /// The body ended: its connection goes back to the idle stack if nothing was sent after
    /// it, and is closed otherwise.
    fn finish(&mut self) {
        if let (Some(conn), Some(back)) = (self.conn.take(), self.back.take()) {
            if conn.buf.is_empty() {
                back.put(conn);
            }
        }
    }

    fn fail(&mut self, error: H1BodyError) -> Poll<Option<Result<Frame<Bytes>, H1BodyError>>> {
        self.conn = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = H1BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, H1BodyError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.buf) {
                Ok(Decoded::Data(data)) => {
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => match ready!(conn.poll_fill(cx)) {
                    Ok(0) => {
                        this.back = None;
                        match this.decoder.eof() {
                            Ok(()) => this.conn = None,
                            Err(error) => return this.fail(error.into()),
                        }
                    }
                    Ok(_) => {}
                    Err(error) => return this.fail(H1BodyError::Io(error)),
                },
                Err(error) => return this.fail(error.into()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done() || self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
