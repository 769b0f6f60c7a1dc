//! The commit point. A try is committed when its first content reaches the client, not its
//! first byte: until then its frames are held, and a failure (an error event, a reset, a
//! missed first-token deadline) lets another try replace it without the client noticing.
//! After it, the answer is the client's: a failure ends the stream with an error event in the
//! client's API, and no clean finish.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::response::Parts;
use http::{header, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};

use super::detect::{Detector, Seen, Surface};
use super::targets::InFlight;
use crate::gateway::providers::{Failed, UpstreamFailure};
use crate::gateway::surfaces::anthropic_error_json;
use crate::gateway::tenancy::Handoff;
use crate::gateway::upstream::BodyError;
use crate::llm::openai::error_json;
use crate::llm::{FailureClass, UpstreamError};

/// A non-streamed answer larger than this is passed on before it ends (no retry after it).
const MAX_HELD: usize = 16 << 20;

/// A try that reached content: its head, the frames held so far, and the rest.
pub struct Committed {
    pub parts: Parts,
    pub held: Vec<Bytes>,
    pub rest: Body,
    /// Gives the request's admission to this try, whose meter then settles it.
    pub handoff: Option<Handoff>,
}

impl Committed {
    /// A response already complete in `held`, or not inspected at all.
    pub fn whole(response: Response<Body>) -> Self {
        let (parts, rest) = response.into_parts();
        Committed {
            parts,
            held: Vec::new(),
            rest,
            handoff: None,
        }
    }
}

impl Committed {
    fn held(parts: Parts, held: Vec<Bytes>, rest: Body) -> Self {
        Committed {
            parts,
            held,
            rest,
            handoff: None,
        }
    }
}

/// Reads a successful response until its first content (or its end, for a non-streamed one).
pub async fn until_content(response: Response<Body>, surface: Surface) -> Result<Committed, Failed> {
    let streamed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let (parts, mut rest) = response.into_parts();
    let mut detector = (surface.is_stream() && streamed).then(|| Detector::new(surface));
    let mut held = Vec::new();
    let mut size = 0;
    loop {
        let frame = match rest.frame().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                return Err(failure(broke_off(
                    &e,
                    "the provider's answer broke off before any content",
                )))
            }
            None => {
                return match &detector {
                    Some(detector) => match detector.end() {
                        Seen::Failed(error) => Err(failure(error)),
                        _ => Ok(Committed::held(parts, held, rest)),
                    },
                    None => Ok(Committed::held(parts, held, rest)),
                }
            }
        };
        let Ok(data) = frame.into_data() else { continue };
        size += data.len();
        let seen = match detector.as_mut() {
            Some(detector) => detector.feed(&data),
            None if size > MAX_HELD => Seen::Content,
            None => Seen::Nothing,
        };
        held.push(data);
        match seen {
            Seen::Nothing => {}
            Seen::Content => return Ok(Committed::held(parts, held, rest)),
            Seen::Failed(error) => return Err(failure(error)),
        }
    }
}

/// An upstream body that failed: silent past its idle or request timeout (`timeout`), or cut
/// (`unreachable`).
fn broke_off(error: &axum::Error, what: &str) -> UpstreamError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut timed_out = false;
    while let Some(cause) = source {
        if let Some(body) = cause.downcast_ref::<BodyError>() {
            timed_out = matches!(body, BodyError::Idle | BodyError::Deadline);
            break;
        }
        source = cause.source();
    }
    let (class, status, code) = match timed_out {
        true => (FailureClass::Timeout, 504, "upstream_timeout"),
        false => (FailureClass::Unreachable, 502, "upstream_unreachable"),
    };
    let mut error = UpstreamError::new(class, status, format!("{what}: {error}"));
    error.code = Some(code.to_string());
    error
}

/// A failure found by the commit point (the upstream answered 200 first).
pub fn failure(error: UpstreamError) -> Failed {
    Failed::Upstream(Box::new(UpstreamFailure {
        error,
        raw: None,
        headers: http::HeaderMap::new(),
    }))
}

/// An error event in the client's API.
pub fn error_event(surface: Surface, error: &UpstreamError) -> Bytes {
    let mut out = BytesMut::new();
    match surface {
        Surface::AnthropicSse => crate::llm::stream::write_sse(
            &mut out,
            Some("error"),
            &anthropic_error_json(error.status, &error.message).to_string(),
        ),
        Surface::ResponsesSse => {
            let code = error_json(error)["error"]["code"].clone();
            let event = serde_json::json!({"type": "error", "code": code, "message": error.message, "param": null});
            crate::llm::stream::write_sse(&mut out, Some("error"), &event.to_string());
        }
        Surface::OpenAiSse | Surface::Whole => {
            crate::llm::stream::write_sse(&mut out, None, &error_json(error).to_string())
        }
    }
    out.freeze()
}

/// The body a client receives from a committed try: the held frames, then the rest as it
/// comes. It keeps the try counted in flight, cuts the answer at the request's deadline, and
/// turns a stream that breaks off into an error event.
pub struct Delivered {
    held: VecDeque<Bytes>,
    rest: Body,
    surface: Surface,
    deadline: Option<Pin<Box<Sleep>>>,
    ended: bool,
    _in_flight: Option<InFlight>,
}

impl Delivered {
    pub fn new(committed_held: Vec<Bytes>, rest: Body, surface: Surface, in_flight: Option<InFlight>) -> Self {
        Delivered {
            held: committed_held.into(),
            rest,
            surface,
            deadline: None,
            ended: false,
            _in_flight: in_flight,
        }
    }

    /// Ends the answer at `deadline` (`timeouts.total`).
    pub fn until(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
        self
    }

    fn fail(&mut self, error: &UpstreamError) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.ended = true;
        Poll::Ready(Some(Ok(Frame::data(error_event(self.surface, error)))))
    }
}

impl http_body::Body for Delivered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(data) = this.held.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                let error = UpstreamError::new(
                    FailureClass::Timeout,
                    504,
                    "the answer did not finish within the alias's total timeout (timeouts.total)",
                );
                if this.surface.is_stream() {
                    return this.fail(&error);
                }
                this.ended = true;
                return Poll::Ready(Some(Err(axum::Error::new(error.message))));
            }
        }
        match Pin::new(&mut this.rest).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) if this.surface.is_stream() => {
                tracing::warn!(error = %e, "a stream broke off after content reached the client");
                let error = broke_off(&e, "the provider's stream broke off");
                this.fail(&error)
            }
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_empty() && (self.ended || self.rest.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let held: u64 = self.held.iter().map(|b| b.len() as u64).sum();
        if self.deadline.is_some() {
            return http_body::SizeHint::default();
        }
        let rest = self.rest.size_hint();
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(rest.lower() + held);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(chunks: Vec<Result<&'static str, std::io::Error>>) -> Response<Body> {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| c.map(|s: &'static str| Bytes::from_static(s.as_bytes()))),
        );
        let mut response = Response::new(Body::from_stream(stream));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        response
    }

    const ROLE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n";
    const HI: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";

    async fn read(body: Body) -> String {
        String::from_utf8(body.collect().await.expect("body").to_bytes().to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn a_reset_before_content_is_a_failure_and_after_it_an_error_event() {
        let reset = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let before = until_content(sse(vec![Ok(ROLE), Err(reset())]), Surface::OpenAiSse).await;
        assert!(matches!(before, Err(Failed::Upstream(f)) if f.error.class == FailureClass::Unreachable));

        let committed = until_content(sse(vec![Ok(ROLE), Ok(HI), Err(reset())]), Surface::OpenAiSse)
            .await
            .ok()
            .expect("committed at the first content");
        assert_eq!(committed.held.len(), 2, "the role chunk was held, not sent");
        let body = Body::new(Delivered::new(committed.held, committed.rest, Surface::OpenAiSse, None));
        let text = read(body).await;
        assert!(text.starts_with(&format!("{ROLE}{HI}data: {{\"error\":")), "{text}");
        assert!(!text.contains("[DONE]"));
    }

    #[tokio::test]
    async fn a_non_streamed_answer_is_committed_whole() {
        let body = "{\"choices\":[{\"message\":{\"content\":\"Hi\"}}]}";
        let committed = until_content(Response::new(Body::from(body)), Surface::Whole)
            .await
            .ok()
            .expect("whole");
        assert_eq!(committed.held.concat(), body.as_bytes());
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_deadline_cuts_a_committed_stream_with_an_error_event() {
        let endless = futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(HI.as_bytes())) })
            .chain(futures_util::stream::pending());
        use futures_util::StreamExt;
        let delivered = Delivered::new(Vec::new(), Body::from_stream(endless), Surface::AnthropicSse, None)
            .until(Some(Instant::now() + std::time::Duration::from_secs(5)));
        let text = read(Body::new(delivered)).await;
        assert!(text.starts_with(HI), "{text}");
        let event = text.strip_prefix(HI).expect("the content first");
        assert!(event.starts_with("event: error\ndata: {"), "{event}");
        assert!(
            event.contains("\"timeout_error\"") && event.contains("timeouts.total"),
            "{event}"
        );
    }
}
