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
use crate::llm::anthropic::types::UsageCounts as AnthropicCounts;

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

impl From<&crate::llm::chat::Usage> for Usage {
    /// The counts a translator decoded, as the meter and tenancy read them.
    fn from(usage: &crate::llm::chat::Usage) -> Self {
        Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            prompt_tokens_details: usage.prompt_tokens_details.as_ref().map(|d| PromptDetails {
                cached_tokens: d.cached_tokens,
            }),
        }
    }
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
    /// Anthropic's Messages API passed through (`/v1/messages`): a JSON message, or a stream
    /// whose counts are cumulative (`message_start`, then `message_delta`).
    Anthropic(Box<AnthropicScan>),
}

/// Anthropic usage being read from a passed-through answer.
pub struct AnthropicScan {
    /// The stream's parser; `None` for a JSON answer.
    sse: Option<sse_parse::SseParser>,
    json: JsonCopy,
    counts: AnthropicCounts,
}

/// Every input token once, cached or not; `None` when the answer reported no counts.
fn anthropic_usage(counts: AnthropicCounts) -> Option<Usage> {
    if counts == AnthropicCounts::default() {
        return None;
    }
    Some(Usage::from(&crate::llm::anthropic::chat_usage(&counts.usage())))
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

    /// A scanner for an Anthropic Messages answer of this content type.
    pub fn anthropic(content_type: Option<&str>) -> Self {
        let sse = content_type
            .is_some_and(|c| c.starts_with("text/event-stream"))
            .then(sse_parse::SseParser::new);
        UsageScanner::Anthropic(Box::new(AnthropicScan {
            sse,
            json: JsonCopy::default(),
            counts: AnthropicCounts::default(),
        }))
    }

    /// Whether this scanner reads a stream.
    pub fn is_stream(&self) -> bool {
        match self {
            UsageScanner::Sse(..) => true,
            UsageScanner::Anthropic(scan) => scan.sse.is_some(),
            UsageScanner::Json(_) | UsageScanner::Reported(_) => false,
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
            UsageScanner::Anthropic(scan) => match &mut scan.sse {
                None => scan.json.push(chunk),
                Some(parser) => {
                    parser.feed(chunk);
                    while let Some(event) = parser.next_event() {
                        if let Some(counts) = find_usage::<AnthropicCounts>(event.data.as_bytes()) {
                            scan.counts.merge(counts);
                        }
                    }
                }
            },
        }
    }

    pub fn finish(self) -> Option<Usage> {
        match self {
            UsageScanner::Json(copy) => usage_in_json(copy.bytes()),
            UsageScanner::Sse(_, last) => last,
            UsageScanner::Reported(usage) => *usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
            UsageScanner::Anthropic(scan) => match scan.sse {
                None => find_usage::<AnthropicCounts>(scan.json.bytes()).and_then(anthropic_usage),
                Some(_) => anthropic_usage(scan.counts),
            },
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
    find_usage::<Usage>(body)
}

/// The last `usage` object of a JSON body (see [`usage_in_json`]), read as `T`.
fn find_usage<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
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
        if let Ok(Some(usage)) = Option::<T>::deserialize(&mut value) {
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

    fn cached(prompt_tokens: u64, completion_tokens: u64, cached_tokens: u64) -> Option<Usage> {
        Some(Usage {
            prompt_tokens,
            completion_tokens,
            prompt_tokens_details: Some(PromptDetails {
                cached_tokens: Some(cached_tokens),
            }),
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

    #[test]
    fn anthropic_usage_counts_cached_input_once() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"tool_use","id":"t","name":"f","input":{"usage":{"input_tokens":999}}}],"stop_reason":"tool_use","usage":{"input_tokens":10,"cache_creation_input_tokens":20,"cache_read_input_tokens":300,"output_tokens":7}}"#;
        let mut scanner = UsageScanner::anthropic(Some("application/json"));
        assert!(!scanner.is_stream());
        for piece in body.chunks(9) {
            scanner.feed(&Bytes::copy_from_slice(piece));
        }
        let read = scanner.finish();
        assert_eq!(read, cached(330, 7, 300));
        assert_eq!(
            read.map(|u| u.cached_tokens()),
            Some(300),
            "cache reads reach tenancy pricing"
        );
        // count_tokens answers carry no usage: nothing is metered.
        let mut scanner = UsageScanner::anthropic(Some("application/json"));
        scanner.feed(&Bytes::from_static(br#"{"input_tokens":42}"#));
        assert_eq!(scanner.finish(), None);
    }

    #[test]
    fn anthropic_stream_counts_are_cumulative_not_added() {
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\\\"usage\\\": 5\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":16}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let mut scanner = UsageScanner::anthropic(Some("text/event-stream; charset=utf-8"));
        assert!(scanner.is_stream());
        for piece in stream.as_bytes().chunks(5) {
            scanner.feed(&Bytes::copy_from_slice(piece));
        }
        assert_eq!(scanner.finish(), cached(125, 16, 100));
    }
}
