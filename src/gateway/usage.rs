//! Passes a response body through untouched while timing it and reading `usage` from it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};
use serde::Deserialize;

use super::metrics::{RouteMetrics, StatusClass};
use super::tenancy::Admission;
use crate::llm::anthropic::types::UsageCounts as AnthropicCounts;
use crate::llm::compact::{once, Compact};

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

/// The Responses API's names for the same counts (`usage.input_tokens`, `output_tokens`,
/// `input_tokens_details.cached_tokens`).
#[derive(Deserialize)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<PromptDetails>,
}

impl From<ResponsesUsage> for Usage {
    fn from(usage: ResponsesUsage) -> Self {
        Usage {
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            prompt_tokens_details: usage.input_tokens_details,
        }
    }
}

/// Which API's `usage` object a passed-through answer carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageShape {
    /// Chat completions, completions, embeddings: `prompt_tokens`, `completion_tokens`.
    Chat,
    /// The Responses API: `input_tokens`, `output_tokens`; in a stream, only in the final
    /// `response.completed` (`.incomplete`, `.failed`) event.
    Responses,
}

/// Reads `usage` from a JSON body or from the events of a server-sent event stream, or is told
/// it by a translator that already decoded it.
pub enum UsageScanner {
    Json(JsonCopy, UsageShape),
    Sse(Box<sse_parse::SseParser>, Option<Usage>, UsageShape),
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
    pub fn for_content_type(content_type: Option<&str>, shape: UsageShape) -> Self {
        if content_type.is_some_and(|c| c.starts_with("text/event-stream")) {
            UsageScanner::Sse(Box::new(sse_parse::SseParser::new()), None, shape)
        } else {
            UsageScanner::Json(JsonCopy::default(), shape)
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
            UsageScanner::Json(..) | UsageScanner::Reported(_) => false,
        }
    }

    pub fn feed(&mut self, chunk: &Bytes) {
        match self {
            UsageScanner::Json(copy, _) => copy.push(chunk),
            UsageScanner::Sse(parser, last, UsageShape::Chat) => {
                parser.feed(chunk);
                while let Some(event) = parser.next_event() {
                    if let Some(usage) = usage_in_json(event.data.as_bytes()) {
                        *last = Some(usage);
                    }
                }
            }
            UsageScanner::Sse(parser, last, UsageShape::Responses) => {
                parser.feed(chunk);
                while let Some(event) = parser.next_event() {
                    // Deltas never carry usage: only the final events (named, as OpenAI
                    // sends them, or unnamed) are searched.
                    let name = event.event.as_str();
                    if matches!(
                        name,
                        "response.completed" | "response.incomplete" | "response.failed" | "message"
                    ) {
                        if let Some(usage) = responses_usage_in_json(event.data.as_bytes()) {
                            *last = Some(usage);
                        }
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
            UsageScanner::Json(copy, UsageShape::Chat) => usage_in_json(copy.bytes()),
            UsageScanner::Json(copy, UsageShape::Responses) => responses_usage_in_json(copy.bytes()),
            UsageScanner::Sse(_, last, _) => last,
            UsageScanner::Reported(usage) => *usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
            UsageScanner::Anthropic(scan) => match scan.sse {
                None => find_usage::<AnthropicCounts>(scan.json.bytes()).and_then(anthropic_usage),
                Some(_) => anthropic_usage(scan.counts),
            },
        }
    }
}

const USAGE_KEY: &[u8] = b"\"usage\"";

/// Where the last `"usage"` in `body` starts. Found from its `u`, the rarer byte, by a
/// vectorised reverse byte search: the usage object ends most answers, and memchr's reverse
/// substring search (which has no vectorised prefilter) cost 500 instructions to reach it.
fn rfind_usage_key(body: &[u8]) -> Option<usize> {
    memchr::memrchr_iter(b'u', body)
        .filter_map(|u| u.checked_sub(1))
        .find(|&at| body[at..].starts_with(USAGE_KEY))
}

/// The `usage` object of an OpenAI-shaped JSON response, found without parsing the rest of
/// it: the last `"usage"` that is an object key (after `{` or `,`, before `:`) and holds an
/// object. Text inside JSON strings cannot match, because a quote in a string is escaped;
/// the only other objects in these responses (`message`, `logprobs`) have no `usage` key.
pub fn usage_in_json(body: &[u8]) -> Option<Usage> {
    find_usage::<Usage>(body)
}

/// The `usage` of a Responses API response object (or of the final event of its stream,
/// which holds one), found the same way.
pub fn responses_usage_in_json(body: &[u8]) -> Option<Usage> {
    find_usage::<ResponsesUsage>(body).map(Usage::from)
}

/// A `usage` object as one API names its counts.
trait UsageRead: serde::de::DeserializeOwned {
    /// Read by the compact reader from the start of `text`; `None` when it is not sure serde
    /// reads it the same way (whitespace, a `null` count, a repeated field, …).
    fn compact(_text: &str) -> Option<Self> {
        None
    }
}

impl UsageRead for Usage {
    fn compact(text: &str) -> Option<Self> {
        compact_counts(text, ["prompt_tokens", "completion_tokens", "prompt_tokens_details"])
    }
}

impl UsageRead for ResponsesUsage {
    fn compact(text: &str) -> Option<Self> {
        let usage = compact_counts(text, ["input_tokens", "output_tokens", "input_tokens_details"])?;
        Some(ResponsesUsage {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            input_tokens_details: usage.prompt_tokens_details,
        })
    }
}

impl UsageRead for AnthropicCounts {}

/// The counts named `names` (input, output, input details) of a compact `usage` object at the
/// start of `text`, as serde reads them into [`Usage`]: a fifth of serde's instructions.
fn compact_counts(text: &str, names: [&str; 3]) -> Option<Usage> {
    let mut json = Compact::new(text);
    let (mut input, mut output, mut details) = (None, None, None);
    json.object(|json, key| match key {
        _ if key == names[0] => once(&mut input, json.index()??),
        _ if key == names[1] => once(&mut output, json.index()??),
        _ if key == names[2] => {
            let read = match json.null() {
                true => None,
                false => {
                    let mut cached = None;
                    json.object(|json, key| match key {
                        "cached_tokens" => once(&mut cached, json.index()?),
                        _ => json.skip(),
                    })?;
                    Some(PromptDetails {
                        cached_tokens: cached.flatten(),
                    })
                }
            };
            once(&mut details, read)
        }
        _ => json.skip(),
    })?;
    Some(Usage {
        prompt_tokens: input.unwrap_or(0),
        completion_tokens: output.unwrap_or(0),
        prompt_tokens_details: details.flatten(),
    })
}

/// A usage object is a few counts: the compact reader is given at most this much of what
/// follows its key, so a body of many `"usage":` keys costs no more than one pass per key.
const MAX_COMPACT_USAGE: usize = 1 << 10;

/// The text the compact reader gets of a value at the start of `value`: its first
/// [`MAX_COMPACT_USAGE`] bytes, up to the last whole character (a cut object is `None`
/// there, and goes to serde).
fn compact_text(value: &[u8]) -> Option<&str> {
    let window = &value[..value.len().min(MAX_COMPACT_USAGE)];
    match std::str::from_utf8(window) {
        Ok(text) => Some(text),
        Err(error) => std::str::from_utf8(&window[..error.valid_up_to()]).ok(),
    }
}

/// The last `usage` object of a JSON body (see [`usage_in_json`]), read as `T`.
fn find_usage<T: UsageRead>(body: &[u8]) -> Option<T> {
    let mut end = body.len();
    while let Some(at) = rfind_usage_key(&body[..end]) {
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
        let value = &after[colon + 1..];
        if let Some(usage) = compact_text(value).and_then(T::compact) {
            return Some(usage);
        }
        let mut value = serde_json::Deserializer::from_slice(value);
        if let Ok(Some(usage)) = Option::<T>::deserialize(&mut value) {
            return Some(usage);
        }
    }
    None
}

/// The response body on its way to the client: every chunk is forwarded as soon as it
/// arrives; on the side it records time to first chunk, total duration, tokens, and the
/// outcome: the status class when the body ends, `aborted` (with a warning naming alias,
/// provider, cause and request id) when the provider fails mid-response, `client_gone` when
/// the client leaves first.
pub struct Metered<B: Body> {
    inner: B,
    metrics: Arc<RouteMetrics>,
    started: Instant,
    status: u16,
    request_id: HeaderValue,
    streaming: bool,
    first_seen: bool,
    scanner: Option<UsageScanner>,
    admission: Option<Admission>,
    cut: Option<Cut>,
}

/// Why a body that ended cleanly was in fact cut short, once it was.
pub type Cut = Arc<std::sync::OnceLock<String>>;

impl<B: Body> Metered<B> {
    pub fn new(
        inner: B,
        metrics: Arc<RouteMetrics>,
        started: Instant,
        status: u16,
        content_type: Option<&str>,
        shape: UsageShape,
        request_id: HeaderValue,
    ) -> Self {
        let scanner = UsageScanner::for_content_type(content_type, shape);
        let streaming = matches!(scanner, UsageScanner::Sse(..));
        Self::with_scanner(inner, metrics, started, status, scanner, streaming, request_id)
    }

    /// A meter whose usage comes from `scanner`; `streaming` says whether the first chunk's
    /// time is recorded.
    pub fn with_scanner(
        inner: B,
        metrics: Arc<RouteMetrics>,
        started: Instant,
        status: u16,
        scanner: UsageScanner,
        streaming: bool,
        request_id: HeaderValue,
    ) -> Self {
        Metered {
            inner,
            metrics,
            started,
            status,
            request_id,
            streaming,
            first_seen: false,
            scanner: Some(scanner),
            admission: None,
            cut: None,
        }
    }

    /// Settles the tenant's admission with this body's usage when it ends.
    pub fn admitted(mut self, admission: Option<Admission>) -> Self {
        self.admission = admission;
        self
    }

    /// For a body that ends cleanly even when the provider failed (a translated stream ends
    /// with an error event): `cut` holds the cause once it did, and the outcome is `aborted`.
    pub fn cut_by(mut self, cut: Cut) -> Self {
        self.cut = Some(cut);
        self
    }

    /// Warns that the provider failed after the response began.
    fn warn_cut(&self, cause: &dyn std::fmt::Display) {
        tracing::warn!(
            alias = %self.metrics.alias,
            provider = %self.metrics.provider,
            request_id = %self.request_id.to_str().unwrap_or("-"),
            cause = %cause,
            "the response was cut: the provider failed after it began"
        );
    }

    fn finish(&mut self, outcome: StatusClass) {
        if self.scanner.is_none() {
            return;
        }
        let cut = self.cut.as_ref().and_then(|cut| cut.get());
        let outcome = match cut {
            Some(cause) if outcome != StatusClass::ClientGone => {
                self.warn_cut(cause);
                StatusClass::Aborted
            }
            _ => outcome,
        };
        let Some(scanner) = self.scanner.take() else { return };
        self.metrics.count_class(outcome);
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
    B::Error: std::fmt::Display,
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
            Poll::Ready(Some(Err(cause))) => {
                if this.scanner.is_some() {
                    this.warn_cut(cause);
                }
                this.finish(StatusClass::Aborted);
            }
            Poll::Ready(None) => this.finish(StatusClass::of(this.status)),
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

impl<B: Body> Drop for Metered<B> {
    /// The server drops the body once it has sent the last byte (often without polling for
    /// the end, when the body says it is over), or when the client has gone.
    fn drop(&mut self) {
        if self.scanner.is_some() {
            if self.inner.is_end_stream() {
                self.finish(StatusClass::of(self.status));
            } else {
                tracing::debug!(
                    alias = %self.metrics.alias,
                    provider = %self.metrics.provider,
                    request_id = %self.request_id.to_str().unwrap_or("-"),
                    "the client left before the end of the response"
                );
                self.finish(StatusClass::ClientGone);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde reads from the start of `text`, as `find_usage` asks it.
    fn serde_read<T: UsageRead>(text: &str) -> Option<T> {
        Option::<T>::deserialize(&mut serde_json::Deserializer::from_str(text))
            .ok()
            .flatten()
    }

    /// Whatever the compact reader reads of a `usage` object, serde reads the same.
    #[test]
    fn the_compact_usage_reader_agrees_with_serde() {
        const KEYS: [&str; 9] = [
            "prompt_tokens",
            "completion_tokens",
            "prompt_tokens_details",
            "total_tokens",
            "input_tokens",
            "output_tokens",
            "input_tokens_details",
            "completion_tokens_details",
            "x",
        ];
        const VALUES: [&str; 16] = [
            "12",
            "0",
            "7",
            "null",
            "-1",
            "1.5",
            "\"3\"",
            "{\"cached_tokens\":5}",
            "{\"cached_tokens\":null}",
            "{}",
            "{\"audio_tokens\":1,\"cached_tokens\":2}",
            "18446744073709551616",
            "123456789012345678",
            "[]",
            "{\"cached_tokens\":1,\"cached_tokens\":2}",
            "1e2",
        ];
        let mut rng = fastrand::Rng::with_seed(11);
        let (mut read, mut agreed) = (0, 0);
        for _ in 0..100_000 {
            let mut text = String::from("{");
            for i in 0..rng.usize(..5) {
                if i > 0 {
                    text.push(',');
                }
                let (key, value) = (KEYS[rng.usize(..KEYS.len())], VALUES[rng.usize(..VALUES.len())]);
                text.push_str(&format!("\"{key}\":{value}"));
            }
            text.push_str(["}", "},\"model\":\"m\"}", "} ", " }"][rng.usize(..4)]);
            if let Some(usage) = Usage::compact(&text) {
                read += 1;
                assert_eq!(serde_read::<Usage>(&text), Some(usage), "{text}");
            }
            if let Some(usage) = ResponsesUsage::compact(&text) {
                read += 1;
                assert_eq!(
                    serde_read::<ResponsesUsage>(&text).map(Usage::from),
                    Some(Usage::from(usage)),
                    "{text}"
                );
            }
            agreed += usize::from(serde_read::<Usage>(&text).is_some());
        }
        assert!(
            read > 20_000 && agreed > read / 2,
            "{read} read, {agreed} read by serde"
        );
    }

    #[test]
    fn many_usage_keys_and_a_cut_character_still_find_the_object() {
        // The real object first, then 100,000 keys that hold no object, and text whose
        // characters straddle the compact reader's window.
        let mut body = br#"{"usage":{"prompt_tokens":3,"completion_tokens":4},"x":""#.to_vec();
        body.extend_from_slice("é".repeat(MAX_COMPACT_USAGE).as_bytes());
        body.extend_from_slice(b"\"");
        for _ in 0..100_000 {
            body.extend_from_slice(br#","usage":1"#);
        }
        body.push(b'}');
        let usage = usage_in_json(&body).expect("usage");
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (3, 4));
        assert_eq!(
            compact_text("éa".repeat(MAX_COMPACT_USAGE).as_bytes()).map(str::len),
            Some(MAX_COMPACT_USAGE - 1)
        );
    }

    #[test]
    fn usage_is_read_from_compact_and_spaced_answers() {
        let compact = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4}},"system_fingerprint":null}"#;
        let spaced = br#"{"id": "x", "usage": {"prompt_tokens": 12, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}}}"#;
        for body in [&compact[..], &spaced[..]] {
            let usage = usage_in_json(body).expect("usage");
            assert_eq!(
                (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens()),
                (12, 5, 4)
            );
        }
        assert!(Usage::compact(r#"{"prompt_tokens":12,"completion_tokens":5}"#).is_some());
    }

    #[test]
    fn a_body_that_ends_cleanly_after_the_provider_failed_counts_as_aborted() {
        use super::super::metrics::{Endpoint, Metrics};
        use http_body_util::BodyExt;
        let metrics = Metrics::new();
        let route = Arc::new(metrics.route("a", "ns/p", Endpoint::chat_completions));
        for failed in [false, true] {
            let cut = Cut::default();
            if failed {
                let _ = cut.set("the provider's stream broke off".to_string());
            }
            let body = Metered::with_scanner(
                http_body_util::Full::new(Bytes::from_static(b"data: {}\n\n")),
                route.clone(),
                Instant::now(),
                200,
                UsageScanner::Reported(ReportedUsage::default()),
                true,
                HeaderValue::from_static("req-1"),
            )
            .cut_by(cut);
            let collected = futures_util::FutureExt::now_or_never(body.collect());
            assert!(matches!(collected, Some(Ok(_))));
        }
        let text = metrics.encode();
        let count = |class: &str| {
            let prefix = format!("status_class=\"{class}\"}} ");
            text.lines()
                .find_map(|line| line.split_once(&prefix).map(|(_, n)| n.to_string()))
                .unwrap_or_default()
        };
        assert_eq!(
            (count("2xx"), count("aborted")),
            ("1".to_string(), "1".to_string()),
            "{text}"
        );
    }

    #[test]
    fn usage_is_read_from_json_bodies_split_anywhere() {
        let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#;
        let mut scanner = UsageScanner::for_content_type(Some("application/json"), UsageShape::Chat);
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
    fn the_usage_key_is_found_where_a_substring_search_finds_it() {
        // Bodies made of pieces of the key, so that near misses are common.
        let pieces: [&[u8]; 8] = [b"\"usage\"", b"\"", b"u", b"usage", b"\"u", b"sage\"", b"x", b"{,:"];
        let mut rng = fastrand::Rng::with_seed(16);
        for _ in 0..20_000 {
            let body: Vec<u8> = (0..rng.usize(0..12))
                .flat_map(|_| pieces[rng.usize(..pieces.len())].iter().copied())
                .collect();
            assert_eq!(
                rfind_usage_key(&body),
                memchr::memmem::rfind(&body, USAGE_KEY),
                "{}",
                String::from_utf8_lossy(&body)
            );
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
        let mut scanner = UsageScanner::for_content_type(Some("text/event-stream; charset=utf-8"), UsageShape::Chat);
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
    fn responses_usage_is_read_from_the_object_and_the_final_event_only() {
        let body = br#"{"id":"resp_1","object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"a \"usage\": {\"input_tokens\": 9}"}]}],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":12},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123},"user":null,"metadata":{}}"#;
        let mut scanner = UsageScanner::for_content_type(Some("application/json"), UsageShape::Responses);
        for piece in body.chunks(9) {
            scanner.feed(&Bytes::copy_from_slice(piece));
        }
        let read = scanner.finish().expect("usage");
        assert_eq!(
            (read.prompt_tokens, read.completion_tokens, read.cached_tokens()),
            (36, 87, 12)
        );

        let stream = concat!(
            "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"usage\":null}}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"hi\"}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"usage\":{\"input_tokens\":5,\"output_tokens\":2,\"total_tokens\":7}}}\n\n",
        );
        let mut scanner = UsageScanner::for_content_type(Some("text/event-stream"), UsageShape::Responses);
        for piece in stream.as_bytes().chunks(11) {
            scanner.feed(&Bytes::copy_from_slice(piece));
        }
        assert_eq!(scanner.finish(), usage(5, 2));
        // The chat shape does not read the Responses names (and the other way round).
        assert_eq!(
            usage_in_json(br#"{"usage":{"input_tokens":5,"output_tokens":2}}"#),
            usage(0, 0)
        );
        assert_eq!(
            responses_usage_in_json(br#"{"usage":{"prompt_tokens":5}}"#),
            usage(0, 0)
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
