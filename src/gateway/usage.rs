//! Passes a response body through untouched while timing it and reading `usage` from it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::Deserialize;

use super::metrics::RouteMetrics;

/// Largest non-streamed body copied aside to read its `usage`.
const MAX_JSON_COPY: usize = 4 << 20;

#[derive(Deserialize, Default, Debug, PartialEq, Eq, Clone, Copy)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<Usage>,
}

/// Reads `usage` from a JSON body or from the events of a server-sent event stream.
pub enum UsageScanner {
    Json(Vec<u8>),
    Sse(Box<sse_parse::SseParser>, Option<Usage>),
}

impl UsageScanner {
    pub fn for_content_type(content_type: Option<&str>) -> Self {
        if content_type.is_some_and(|c| c.starts_with("text/event-stream")) {
            UsageScanner::Sse(Box::new(sse_parse::SseParser::new()), None)
        } else {
            UsageScanner::Json(Vec::new())
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        match self {
            UsageScanner::Json(copy) => {
                if copy.len() + chunk.len() <= MAX_JSON_COPY {
                    copy.extend_from_slice(chunk);
                }
            }
            UsageScanner::Sse(parser, last) => {
                parser.feed(chunk);
                while let Some(event) = parser.next_event() {
                    if event.data.starts_with('{') && event.data.contains("\"usage\"") {
                        if let Ok(WithUsage { usage: Some(usage) }) = serde_json::from_str(&event.data) {
                            *last = Some(usage);
                        }
                    }
                }
            }
        }
    }

    pub fn finish(self) -> Option<Usage> {
        match self {
            UsageScanner::Json(copy) => serde_json::from_slice::<WithUsage>(&copy).ok().and_then(|w| w.usage),
            UsageScanner::Sse(_, last) => last,
        }
    }
}

/// The response body on its way to the client: every chunk is forwarded as soon as it
/// arrives; on the side it records time to first chunk, total duration, status and tokens.
pub struct Metered<S> {
    inner: S,
    metrics: Arc<RouteMetrics>,
    started: Instant,
    status: u16,
    streaming: bool,
    first_seen: bool,
    scanner: Option<UsageScanner>,
}

impl<S> Metered<S> {
    pub fn new(
        inner: S,
        metrics: Arc<RouteMetrics>,
        started: Instant,
        status: u16,
        content_type: Option<&str>,
    ) -> Self {
        let scanner = UsageScanner::for_content_type(content_type);
        let streaming = matches!(scanner, UsageScanner::Sse(..));
        Metered {
            inner,
            metrics,
            started,
            status,
            streaming,
            first_seen: false,
            scanner: Some(scanner),
        }
    }

    fn finish(&mut self) {
        let Some(scanner) = self.scanner.take() else { return };
        self.metrics.count(self.status);
        self.metrics.duration.observe(self.started.elapsed().as_secs_f64());
        if let Some(usage) = scanner.finish() {
            self.metrics.tokens_in.inc_by(usage.prompt_tokens);
            self.metrics.tokens_out.inc_by(usage.completion_tokens);
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(chunk) = frame.data_ref() {
                    if this.streaming && !this.first_seen {
                        this.first_seen = true;
                        this.metrics.first_chunk.observe(this.started.elapsed().as_secs_f64());
                    }
                    if let Some(scanner) = this.scanner.as_mut() {
                        scanner.feed(chunk);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<S> Drop for Metered<S> {
    /// A client that hangs up mid-stream still counts.
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_json_bodies_split_anywhere() {
        let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#;
        let mut scanner = UsageScanner::for_content_type(Some("application/json"));
        for piece in body.chunks(5) {
            scanner.feed(piece);
        }
        assert_eq!(
            scanner.finish(),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 7
            })
        );
    }

    #[test]
    fn usage_is_read_from_the_last_stream_event() {
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
        let mut scanner = UsageScanner::for_content_type(Some("text/event-stream; charset=utf-8"));
        for piece in stream.chunks(7) {
            scanner.feed(piece);
        }
        assert_eq!(
            scanner.finish(),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 1
            })
        );
    }
}
