//! The service hyper calls for each request on a connection: it marks the connection busy
//! until the response's last byte, answers oversized headers with an OpenAI-shaped error,
//! and carries the drain to requests and responses.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, Version};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::futures::OwnedNotified;
use tower::util::Oneshot;
use tower::ServiceExt;

use super::registry::Conn;
use super::Served;
use crate::gateway::error::ApiError;

/// Longest request target (path and query) accepted; the API's paths are short.
pub const MAX_URI_BYTES: usize = 8 << 10;

/// One connection's view of a service (the API, or the admin router).
pub(super) struct Guard<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> Guard<S> {
    pub fn new(inner: S, conn: Arc<Conn>) -> Self {
        Guard { inner, conn }
    }
}

impl<S: Served> Guard<S> {
    /// Answers `request` on an HTTP/1.1 connection with the service's unboxed answer
    /// ([`Served::answer`], passed as `make`), written in the box `slot` holds (over the
    /// finished answer there) or in a new one. The box is taken back with
    /// [`Answer::into_inner`]: the answer (about 5 KB) is neither allocated per request nor
    /// moved once more on its way into the box.
    pub fn answer<F>(
        &self,
        request: Request<Body>,
        slot: &mut Option<Pin<Box<F>>>,
        make: impl FnOnce(&S, Request<Body>) -> F,
    ) -> Answer<Pin<Box<F>>> {
        self.start(request, |request| match slot.take() {
            Some(mut boxed) => {
                boxed.set(make(&self.inner, request));
                boxed
            }
            None => Box::pin(make(&self.inner, request)),
        })
    }

    /// Marks the connection busy and calls `call` with `request`, or answers it at once when
    /// its head is too large.
    fn start<F>(&self, request: Request<Body>, call: impl FnOnce(Request<Body>) -> F) -> Answer<F> {
        let h1 = request.version() < Version::HTTP_2;
        self.conn.begin(!h1);
        let busy = Busy(self.conn.clone());
        match oversized(&request, self.conn.common.settings.max_header_bytes) {
            Some(error) => Answer {
                inner: None,
                ready: Some(error.into_response()),
                busy: Some(busy),
                h1,
            },
            None => Answer {
                inner: Some(call(request)),
                ready: None,
                busy: Some(busy),
                h1,
            },
        }
    }
}

impl<S: Served> hyper::service::Service<Request<Incoming>> for Guard<S> {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Answer<Oneshot<S, Request<Body>>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.start(request.map(Body::new), |request| self.inner.clone().oneshot(request))
    }
}

/// The request target and headers over their limits, as an OpenAI-shaped error.
fn oversized<B>(request: &Request<B>, max_header_bytes: usize) -> Option<ApiError> {
    let target = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(ApiError::uri_too_long(MAX_URI_BYTES));
    }
    // As HTTP/1.1 sends them: request line, then `name: value\r\n` per header.
    let mut size = target + 16;
    for (name, value) in request.headers() {
        size += name.as_str().len() + value.len() + 4;
    }
    (size > max_header_bytes).then(|| ApiError::headers_too_large(max_header_bytes))
}

/// Holds its connection busy: dropped when the response's body ends, or with the request.
struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}

pin_project_lite::pin_project! {
    /// A response on its way: when it arrives, its body is wrapped so the connection stays
    /// busy until the last byte, and while draining HTTP/1.1 responses close their connection.
    pub(super) struct Answer<F> {
        #[pin]
        inner: Option<F>,
        ready: Option<Response<Body>>,
        busy: Option<Busy>,
        h1: bool,
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Tracked>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let response = match this.ready.take() {
            Some(response) => response,
            None => match this.inner.as_mut().as_pin_mut().map(|inner| inner.poll(cx)) {
                Some(Poll::Ready(Ok(response))) => response,
                Some(Poll::Pending) => {
                    let finishing = this.busy.as_ref().is_some_and(|busy| busy.0.common.finishing());
                    if !finishing {
                        return Poll::Pending;
                    }
                    // The grace period is over and no response has come: say so, and drop
                    // the request (and its provider connection).
                    this.inner.set(None);
                    ApiError::shutting_down().into_response()
                }
                None => ApiError::shutting_down().into_response(),
            },
        };
        let (mut parts, body) = response.into_parts();
        let Some(busy) = this.busy.take() else {
            return Poll::Ready(Ok(Response::from_parts(parts, Tracked::plain(body))));
        };
        let common = &busy.0.common;
        if *this.h1 && common.draining() {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let body = match is_event_stream(&parts.headers) {
            true => Tracked::event_stream(body, busy),
            false => Tracked::new(body, busy),
        };
        Poll::Ready(Ok(Response::from_parts(parts, body)))
    }
}

impl<F: Unpin> Answer<F> {
    /// The service's future, once the answer has come: `None` if it was dropped (the
    /// shutdown's grace period ended first) or never made (the head was too large).
    pub fn into_inner(self) -> Option<F> {
        self.inner
    }
}

/// Whether a response's headers announce an event stream.
pub(super) fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// A response body that keeps its connection busy until it ends. An event stream still
/// running when the shutdown grace period ends gets a last `data: {"error": …}` event
/// instead of the rest (and no `[DONE]`).
pub struct Tracked {
    inner: Body,
    busy: Option<Busy>,
    stream: Option<Box<EventStream>>,
}

struct EventStream {
    /// Registered on the first poll; woken when the grace period ends.
    finish: Pin<Box<OwnedNotified>>,
    registered: bool,
    /// Where the bytes forwarded so far stop: between events, after a line, or mid-line.
    tail: Tail,
    ended: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tail {
    Event,
    Line,
    Partial,
}

impl Tail {
    fn after(data: &[u8]) -> Option<Tail> {
        let ends = |suffix: &[u8]| data.ends_with(suffix);
        match data.last()? {
            b'\n' | b'\r' if ends(b"\n\n") || ends(b"\r\r") || ends(b"\r\n\r\n") => Some(Tail::Event),
            b'\n' | b'\r' => Some(Tail::Line),
            _ => Some(Tail::Partial),
        }
    }
}

impl Tracked {
    fn plain(inner: Body) -> Self {
        Tracked {
            inner,
            busy: None,
            stream: None,
        }
    }

    fn new(inner: Body, busy: Busy) -> Self {
        Tracked {
            inner,
            busy: Some(busy),
            stream: None,
        }
    }

    fn event_stream(inner: Body, busy: Busy) -> Self {
        let finish = Box::pin(busy.0.common.finish.clone().notified_owned());
        Tracked {
            inner,
            busy: Some(busy),
            stream: Some(Box::new(EventStream {
                finish,
                registered: false,
                tail: Tail::Event,
                ended: false,
            })),
        }
    }

    /// The last event of a stream cut by the shutdown.
    fn error_event(&mut self, tail: Tail) -> Bytes {
        if let Some(busy) = &self.busy {
            busy.0.common.streams_cut.fetch_add(1, Relaxed);
        }
        let separator = match tail {
            Tail::Event => "",
            Tail::Line => "\n",
            // A partial line is lost either way; end it so the error event parses.
            Tail::Partial => "\n\n",
        };
        Bytes::from(format!(
            "{separator}data: {}\n\n",
            ApiError::stream_cut_by_shutdown().body()
        ))
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Some(stream) = this.stream.as_deref_mut() {
            if stream.ended {
                this.busy = None;
                return Poll::Ready(None);
            }
            // Polled once to register for the wake-up; after that the flag is enough.
            let finished = match stream.registered {
                false => {
                    stream.registered = true;
                    stream.finish.as_mut().poll(cx).is_ready()
                }
                true => false,
            };
            let finishing = finished || this.busy.as_ref().is_some_and(|b| b.0.common.finishing());
            if finishing {
                stream.ended = true;
                let tail = stream.tail;
                let event = this.error_event(tail);
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(stream), Some(data)) = (this.stream.as_deref_mut(), frame.data_ref()) {
                    stream.tail = Tail::after(data).unwrap_or(stream.tail);
                }
            }
            Poll::Ready(_) => this.busy = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.stream {
            Some(stream) if stream.ended => true,
            _ => self.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_event_starts_on_a_line_of_its_own() {
        assert!(Tail::after(b"data: {}\n\n") == Some(Tail::Event));
        assert!(Tail::after(b"data: {}\r\n\r\n") == Some(Tail::Event));
        assert!(Tail::after(b"data: {}\n") == Some(Tail::Line));
        assert!(Tail::after(b"data: {\"a\"") == Some(Tail::Partial));
        assert!(Tail::after(b"").is_none());
    }

    #[test]
    fn headers_over_the_limit_are_refused_with_json() {
        let request = |header: usize, path: usize| {
            Request::builder()
                .uri(format!("/{}", "a".repeat(path)))
                .header("x-big", "b".repeat(header))
                .body(())
                .expect("request")
        };
        assert!(oversized(&request(1000, 10), 4096).is_none());
        let error = oversized(&request(5000, 10), 4096).expect("too large");
        assert_eq!((error.status.as_u16(), error.code), (431, Some("headers_too_large")));
        let error = oversized(&request(10, MAX_URI_BYTES + 1), 1 << 20).expect("too long");
        assert_eq!((error.status.as_u16(), error.code), (414, Some("uri_too_long")));
    }
}
