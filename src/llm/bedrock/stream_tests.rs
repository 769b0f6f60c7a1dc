use serde_json::json;

use super::*;
use crate::llm::bedrock::eventstream::{encode, EventStreamFramer};
use crate::llm::bedrock::response::chat_response;
use crate::llm::chat::ChatResponse;
use crate::llm::failure::FailureClass;
use crate::llm::stream::{Accumulator, Framer};

fn event(event_type: &str, payload: serde_json::Value) -> Vec<u8> {
    encode("event", (":event-type", event_type), payload.to_string().as_bytes())
}

/// A ConverseStream as the API reference lays it out: text, then a tool call whose input
/// arrives in fragments, then the stop reason and the usage. (`p` is the padding Bedrock adds.)
fn tool_stream() -> Vec<u8> {
    [
        event("messageStart", json!({"role": "assistant", "p": "abcdefgh"})),
        event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Let me "}, "p": "ab"})),
        event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "check."}})),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event("contentBlockStart", json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_abc", "name": "weather"}}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\",\"unit\":\"C\"}"}}})),
        event("contentBlockStop", json!({"contentBlockIndex": 1})),
        event("messageStop", json!({"stopReason": "tool_use"})),
        event("metadata", json!({"usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42, "cacheReadInputTokens": 8}, "metrics": {"latencyMs": 900}})),
    ]
    .concat()
}

/// The same answer, not streamed.
const TOOL_ANSWER: &str = r#"{"output":{"message":{"role":"assistant","content":[{"text":"Let me check."},
    {"toolUse":{"toolUseId":"tooluse_abc","name":"weather","input":{"city":"Paris","unit":"C"}}}]}},
    "stopReason":"tool_use","usage":{"inputTokens":30,"outputTokens":12,"totalTokens":42,"cacheReadInputTokens":8}}"#;

fn decode(bytes: &[u8], piece: usize) -> (Vec<ChatChunk>, Result<(), UpstreamError>) {
    let mut framer = EventStreamFramer::new();
    let mut decoder = ConverseStreamDecoder::new("m");
    let mut out = Vec::new();
    for chunk in bytes.chunks(piece.max(1)) {
        if let Err(e) = framer.feed(chunk, &mut |frame| decoder.frame(frame, &mut out)) {
            return (out, Err(e));
        }
    }
    let end = decoder.end(&mut out);
    (out, end)
}

fn joined(chunks: &[ChatChunk]) -> ChatResponse {
    let mut acc = Accumulator::new();
    for chunk in chunks {
        acc.push(chunk);
    }
    acc.finish()
}

#[test]
fn streamed_tool_calls_join_to_exactly_the_non_streamed_answer() {
    let bytes = tool_stream();
    let expected = chat_response(TOOL_ANSWER.as_bytes(), "m").expect("answer");
    for piece in [1, 7, 64, bytes.len()] {
        let (chunks, end) = decode(&bytes, piece);
        assert_eq!(end, Ok(()));
        let streamed = joined(&chunks);
        assert_eq!(
            streamed.choices[0].message, expected.choices[0].message,
            "pieces of {piece}"
        );
        assert_eq!(streamed.choices[0].finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(streamed.usage, expected.usage);
        // The canonical order: the role first, usage alone and last.
        assert_eq!(chunks[0].choices[0].delta.role.as_deref(), Some("assistant"));
        let last = chunks.last().expect("chunks");
        assert!(last.choices.is_empty() && last.usage.is_some());
        assert_eq!(chunks.iter().filter(|c| c.usage.is_some()).count(), 1, "usage once");
    }
}

#[test]
fn an_exception_mid_stream_is_a_classified_error() {
    for (kind, class) in [
        ("throttlingException", FailureClass::RateLimited),
        ("serviceUnavailableException", FailureClass::Overloaded),
        ("modelStreamErrorException", FailureClass::ServerError),
        ("validationException", FailureClass::ClientError),
        ("internalServerException", FailureClass::ServerError),
    ] {
        let bytes = [
            event("messageStart", json!({"role": "assistant"})),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
            ),
            encode("exception", (":exception-type", kind), br#"{"message":"it broke"}"#),
        ]
        .concat();
        let (chunks, end) = decode(&bytes, 5);
        let error = end.expect_err(kind);
        assert_eq!((error.class, error.message.as_str()), (class, "it broke"), "{kind}");
        assert_eq!(chunks.len(), 2, "what came before the exception is kept");
    }
}

#[test]
fn a_stream_cut_before_message_stop_or_metadata_is_an_error() {
    let start = [
        event("messageStart", json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        ),
    ]
    .concat();
    let (_, end) = decode(&start, 1000);
    assert!(end.expect_err("no messageStop").message.contains("messageStop"));
    let stopped = [start, event("messageStop", json!({"stopReason": "end_turn"}))].concat();
    let (_, end) = decode(&stopped, 1000);
    assert!(end.expect_err("no metadata").message.contains("metadata"));
    // Half a message at the end: the framer never completes it, so the stream is cut.
    let full = tool_stream();
    let (_, end) = decode(&full[..full.len() - 3], 1000);
    assert!(end.is_err());
}

#[test]
fn a_plain_answer_streams_text_and_its_stop_reason() {
    let bytes = [
        event("messageStart", json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event("messageStop", json!({"stopReason": "max_tokens"})),
        event(
            "metadata",
            json!({"usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}}),
        ),
    ]
    .concat();
    let (chunks, end) = decode(&bytes, 3);
    assert_eq!(end, Ok(()));
    let response = joined(&chunks);
    assert_eq!(response.choices[0].message.content.as_deref(), Some("Hello"));
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Length));
    let usage = response.usage.expect("usage");
    assert_eq!(
        (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens()),
        (3, 1, 0)
    );
}

/// What a fuzz target would check, deterministically: corrupted, truncated and random bytes
/// through the framer and decoder never panic (a corrupt message is an error, not a crash).
#[test]
fn corrupted_and_random_bytes_never_panic() {
    let good = tool_stream();
    for position in 0..good.len() {
        let mut bytes = good.clone();
        bytes[position] ^= 0x5a;
        let _ = decode(&bytes, 13);
        let _ = decode(&good[..position], 13);
    }
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..500 {
        let mut bytes: Vec<u8> = (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect();
        // Plausible preludes too: a small total length up front.
        if bytes.len() > 4 && rng.bool() {
            let total = u32::try_from(rng.usize(16..256)).expect("small");
            bytes[..4].copy_from_slice(&total.to_be_bytes());
        }
        let _ = decode(&bytes, rng.usize(1..64));
    }
}
