//! A request body still arriving on its connection: decoded (length or chunked) from the
//! connection's buffer as the handler reads it, with the `100 Continue` sent on the first read.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::wire::{lock, Shared};
use crate::gateway::h1::wire::{Decoded, WireError};

/// Why a request body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the client closed the connection before the end of the body")]
    Truncated,
    #[error("the chunked body is malformed: {0}")]
    Chunk(&'static str),
    #[error("reading the request body failed")]
    Io(#[source] io::Error),
    #[error("the connection moved on to another request")]
    Stale,
}

impl From<WireError> for BodyError {
    fn from(error: WireError) -> Self {
        match error {
            WireError::Chunk(what) => BodyError::Chunk(what),
            _ => BodyError::Truncated,
        }
    }
}

/// The body of request `seq` on a connection.
pub struct RequestBody {
    wire: Shared,
    seq: u64,
    done: bool,
    /// What is left of a `Content-Length` body (`None`: chunked).
    remaining: Option<u64>,
}

impl RequestBody {
    pub(super) fn new(wire: Shared, seq: u64, remaining: Option<u64>) -> Self {
        RequestBody {
            wire,
            seq,
            done: false,
            remaining,
        }
    }

    fn fail(&mut self, error: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.done = true;
        Poll::Ready(Some(Err(error)))
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let shared = this.wire.clone();
        let mut wire = lock(&shared);
        if wire.seq != this.seq {
            return this.fail(BodyError::Stale);
        }
        if let Err(error) = ready!(wire.poll_continue(cx)) {
            wire.broken = true;
            return this.fail(BodyError::Io(error));
        }
        loop {
            let wire = &mut *wire;
            match wire.body.decode(&mut wire.buf) {
                Ok(Decoded::Data(data)) => {
                    this.remaining = wire.body.remaining();
                    this.done = wire.body.is_done();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::End) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => match ready!(wire.poll_fill(cx)) {
                    Ok(0) => {
                        wire.broken = true;
                        return this.fail(BodyError::Truncated);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        wire.broken = true;
                        return this.fail(BodyError::Io(error));
                    }
                },
                Err(error) => {
                    wire.broken = true;
                    return this.fail(error.into());
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
