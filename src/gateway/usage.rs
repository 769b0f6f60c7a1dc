//! Passes a response body through untouched while timing it and reading `usage` from it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::Deserialize;

use super::metrics::RouteMetrics;
use super::tenancy::Admission;

/// Largest non-streamed body copied aside to read its `usage`.
const MAX_JSON_COPY: usize = 4 << 20;

#[derive(Deserialize, Default, Debug, PartialEq, Eq, Clone, Copy)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    /// OpenAI's `prompt_tokens_details` (`cached_tokens`: prompt tokens from the prompt cache).
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize, Default, Debug, PartialEq, Eq, Clone, Copy)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

impl Usage {
    /// Prompt tokens served from the provider's prompt cache.
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0)
    }
}

/// Reads `usage` from a JSON body or from the events of a server-sent event stream, or is told
/// it by a translator that already decoded it.
pub enum UsageScanner {
    Json(JsonCopy),
    Sse(Box<sse_parse::SseParser>, Option<Usage>),
    /// Reported by the translated path as it decodes the provider's answer.
    Reported(ReportedUsage),
}

/// Usage a translator writes as it decodes a stream, and the meter reads at its end.
pub type ReportedUsage = Arc<std::sync::Mutex<Option<Usage>>>;

/// A non-streamed body kept aside: the common single-chunk body is kept by reference, never
/// copied.
#[derive(Default)]
pub struct JsonCopy {
    first: Option<Bytes>,
    joined: Vec<u8>,
}

impl JsonCopy {
    fn push(&mut self, chunk: &Bytes) {
        match &self.first {
            None if self.joined.is_empty() => self.first = Some(chunk.clone()),
            _ => {
                let first = self.first.take();
                let len = first.as_ref().map_or(0, Bytes::len) + self.joined.len() + chunk.len();
                if len <= MAX_JSON_COPY {
                    if let Some(first) = first {
                        self.joined.extend_from_slice(&first);
                    }
                    self.joined.extend_from_slice(chunk);
                }
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        self.first.as_deref().unwrap_or(&self.joined)
    }
}

impl UsageScanner {
    pub fn for_content_type(content_type: Option<&str>) -> Self {
        if content_type.is_some_and(|c| c.starts_with("text/event-stream")) {
            UsageScanner::Sse(Box::new(sse_parse::SseParser::new()), None)
        } else {
            UsageScanner::Json(JsonCopy::default())
        }
    }

    pub fn feed(&mut self, chunk: &Bytes) {
        match self {
            UsageScanner::Json(copy) => copy.push(chunk),
            UsageScanner::Sse(parser, last) => {
                parser.feed(chunk);
                while let Some(event) = parser.next_event() {
                    if let Some(usage) = usage_in_json(event.data.as_bytes()) {
                        *last = Some(usage);
                    }
                }
            }
            UsageScanner::Reported(_) => {}
        }
    }

    pub fn finish(self) -> Option<Usage> {
        match self {
            UsageScanner::Json(copy) => usage_in_json(copy.bytes()),
            UsageScanner::Sse(_, last) => last,
            UsageScanner::Reported(usage) => *usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }
}

const USAGE_KEY: &[u8] = b"\"usage\"";

/// Built once: constructing a searcher costs more than searching a typical response.
static USAGE_FINDER: std::sync::LazyLock<memchr::memmem::FinderRev<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::FinderRev::new(USAGE_KEY));

/// The `usage` object of an OpenAI-shaped JSON response, found without parsing the rest of
/// it: the last `"usage"` that is an object key (after `{` or `,`, before `:`) and holds an
/// object. Text inside JSON strings cannot match, because a quote in a string is escaped;
/// the only other objects in these responses (`message`, `logprobs`) have no `usage` key.
pub fn usage_in_json(body: &[u8]) -> Option<Usage> {
    let mut end = body.len();
    while let Some(at) = USAGE_FINDER.rfind(&body[..end]) {
        end = at;
        let before = body[..at].iter().rev().find(|b| !b.is_ascii_whitespace());
        if !matches!(before, Some(b'{' | b',')) {
            continue;
        }
        let after = &body[at + USAGE_KEY.len()..];
        let Some(colon) = after.iter().position(|b| !b.is_ascii_whitespace()) else {
            continue;
        };
        if after[colon] != b':' {
            continue;
        }
        let mut value = serde_json::Deserializer::from_slice(&after[colon + 1..]);
        if let Ok(Some(usage)) = Option::<Usage>::deserialize(&mut value) {
            return Some(usage);
        }
    }
    None
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
    admission: Option<Admission>,
}

impl<S> Metered<S> {
    pub fn new(
        inner: S,
        metrics: Arc<RouteMetrics>,
        started: Instant,
        status: u16,
        content_type: Option<&str>,
        admission: Option<Admission>,
    ) -> Self {
        let scanner = UsageScanner::for_content_type(content_type);
        let streaming = matches!(scanner, UsageScanner::Sse(..));
        Self::with_scanner(inner, metrics, started, status, scanner, streaming, admission)
    }

    /// A meter whose usage comes from `scanner`; `streaming` says whether the first chunk's
    /// time is recorded.
    pub fn with_scanner(
        inner: S,
        metrics: Arc<RouteMetrics>,
        started: Instant,
        status: u16,
        scanner: UsageScanner,
        streaming: bool,
        admission: Option<Admission>,
    ) -> Self {
        Metered {
            inner,
            metrics,
            started,
            status,
            streaming,
            first_seen: false,
            scanner: Some(scanner),
            admission,
        }
    }

    fn finish(&mut self) {
        let Some(scanner) = self.scanner.take() else { return };
        self.metrics.count(self.status);
        self.metrics.duration.observe(self.started.elapsed().as_secs_f64());
        let usage = scanner.finish();
        if let Some(usage) = usage {
            self.metrics.tokens_in.inc_by(usage.prompt_tokens);
            self.metrics.tokens_out.inc_by(usage.completion_tokens);
        }
        if let Some(admission) = self.admission.take() {
            admission.settle(usage);
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
            scanner.feed(&Bytes::copy_from_slice(piece));
        }
        assert_eq!(
            scanner.finish(),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 7,
                ..Usage::default()
            })
        );
    }

    fn usage(prompt_tokens: u64, completion_tokens: u64) -> Option<Usage> {
        Some(Usage {
            prompt_tokens,
            completion_tokens,
            ..Usage::default()
        })
    }

    #[test]
    fn only_a_usage_key_counts_never_text_that_mentions_it() {
        let cases: [(&str, Option<Usage>); 7] = [
            (
                r#"{"usage": {"prompt_tokens": 1, "completion_tokens": 2}}"#,
                usage(1, 2),
            ),
            (r#"{"id":"x","usage":null}"#, None),
            (r#"{"id":"x"}"#, None),
            // Quotes inside strings are escaped, so text can never look like the key.
            (
                r#"{"choices":[{"message":{"content":"say \"usage\": {\"prompt_tokens\": 9}"}}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
                usage(3, 4),
            ),
            (r#"{"choices":[{"message":{"content":"a \"usage"}}]}"#, None),
            (
                r#"{"choices":[{"message":{"tool_calls":[{"function":{"arguments":"{\"usage\":{\"prompt_tokens\":7}}"}}]}}]}"#,
                None,
            ),
            // Usage first, then a value ending in the word: the key is still found.
            (
                r#"{"usage":{"prompt_tokens":5,"completion_tokens":6},"note":"\"usage"}"#,
                usage(5, 6),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(usage_in_json(body.as_bytes()), expected, "{body}");
        }
    }

    #[test]
    fn a_body_in_several_chunks_is_joined_and_one_chunk_is_not_copied() {
        let mut copy = JsonCopy::default();
        let whole = Bytes::from_static(br#"{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#);
        copy.push(&whole);
        assert_eq!(copy.bytes().as_ptr(), whole.as_ptr(), "kept by reference");
        copy.push(&Bytes::from_static(b" "));
        assert_eq!(copy.bytes(), &[&whole[..], b" "].concat()[..]);
    }

    #[test]
    fn cached_prompt_tokens_are_read_from_prompt_tokens_details() {
        let body = br#"{"usage":{"prompt_tokens":2006,"completion_tokens":300,"prompt_tokens_details":{"cached_tokens":1920}}}"#;
        assert_eq!(usage_in_json(body).map(|u| u.cached_tokens()), Some(1920));
        let null = br#"{"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":null}}"#;
        assert_eq!(
            usage_in_json(null).map(|u| (u.prompt_tokens, u.cached_tokens())),
            Some((5, 0))
        );
    }

    #[test]
    fn usage_is_read_from_the_last_stream_event() {
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
        let mut scanner = UsageScanner::for_content_type(Some("text/event-stream; charset=utf-8"));
        for piece in stream.chunks(7) {
            scanner.feed(&Bytes::copy_from_slice(piece));
        }
        assert_eq!(
            scanner.finish(),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 1,
                ..Usage::default()
            })
        );
    }
}
