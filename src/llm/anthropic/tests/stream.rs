use bytes::BytesMut;

use super::*;
use crate::llm::anthropic::{
    chat_usage, classify_error, finish_reason, from_messages_response, to_messages_response, AnthropicStreamEncoder,
};
use crate::llm::chat::{ChunkChoice, Delta, FinishReason, FunctionCallDelta, ToolCallDelta, Usage};
use crate::llm::{Accumulator, FailureClass, StreamEncoder};

fn text_of(chunks: &[ChatChunk]) -> String {
    chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect()
}

#[test]
fn a_text_stream_comes_out_in_the_canonical_order() {
    let (chunks, end) = decode(STREAM_TEXT, usize::MAX);
    assert_eq!(end, Ok(()));
    assert_eq!(chunks[0].choices[0].delta.role.as_deref(), Some("assistant"));
    assert_eq!(chunks[0].id, "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(chunks[0].model, "claude-sonnet-4-5");
    assert_eq!(text_of(&chunks), "Hello!\nHow can I help?");
    let n = chunks.len();
    assert_eq!(chunks[n - 2].choices[0].finish_reason, Some(FinishReason::Stop));
    assert!(chunks[n - 1].choices.is_empty());
    assert_eq!(chunks[n - 1].usage, Some(Usage::new(25, 15, None)));
    let usages = chunks.iter().filter(|c| c.usage.is_some()).count();
    assert_eq!(usages, 1, "usage is emitted once, at the end");
}

#[test]
fn streamed_tool_calls_join_to_exactly_the_non_streamed_answer_however_the_bytes_are_cut() {
    let mut expected = from_messages_response(MESSAGE_TOOLS.as_bytes()).expect("message");
    for piece in [1, 2, 3, 7, 64, 1000, usize::MAX] {
        let (chunks, end) = decode(STREAM_TOOLS, piece);
        assert_eq!(end, Ok(()), "pieces of {piece}");
        let mut accumulator = Accumulator::new();
        chunks.iter().for_each(|c| accumulator.push(c));
        let joined = accumulator.finish();
        expected.created = joined.created;
        assert_eq!(joined, expected, "pieces of {piece}");
    }
    let calls = expected.choices[0].message.tool_calls.clone().expect("calls");
    assert_eq!(calls.len(), 3);
    assert_eq!(
        calls[0].function.arguments,
        r#"{"location": "San Francisco, CA", "unit": "fahrenheit"}"#
    );
    assert_eq!(calls[2].function.arguments, "{}", "a call without arguments has {{}}");
    assert_eq!(expected.choices[0].finish_reason, Some(FinishReason::ToolCalls));
}

#[test]
fn tool_call_deltas_follow_the_openai_shape() {
    let (chunks, _) = decode(STREAM_TOOLS, usize::MAX);
    let calls: Vec<&ToolCallDelta> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .flat_map(|c| c.delta.tool_calls.iter().flatten())
        .collect();
    // The first delta of a call has its id, type and name with empty arguments.
    let first = calls[0];
    assert_eq!(first.index, 0);
    assert_eq!(first.id.as_deref(), Some("toolu_01T1x1fJ34qAmk2tNTrN7Up6"));
    assert_eq!(first.kind.as_deref(), Some("function"));
    let function = first.function.as_ref().expect("function");
    assert_eq!(function.name.as_deref(), Some("get_weather"));
    assert_eq!(function.arguments.as_deref(), Some(""));
    // Later deltas only the index and a fragment; an empty fragment is not passed on.
    assert!(calls[1..].iter().filter(|c| c.id.is_none()).all(|c| c
        .function
        .as_ref()
        .and_then(|f| f.arguments.as_deref())
        != Some("")));
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.id.is_some())
            .map(|c| c.index)
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
}

#[test]
fn cached_input_is_counted_once_and_reported_as_cached() {
    let (chunks, _) = decode(STREAM_TOOLS, usize::MAX);
    let usage = chunks.last().and_then(|c| c.usage.clone()).expect("usage");
    assert_eq!(usage.prompt_tokens, 472 + 1024);
    assert_eq!(usage.cached_tokens(), 1024);
    assert_eq!(usage.completion_tokens, 89);
    assert_eq!(usage.total_tokens, 472 + 1024 + 89);
}

#[test]
fn thinking_becomes_reasoning_content_and_cumulative_counts_are_not_added_up() {
    let (chunks, end) = decode(STREAM_THINKING, 5);
    assert_eq!(end, Ok(()));
    let reasoning: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.rest.get("reasoning_content").and_then(|v| v.as_str()))
        .collect();
    assert_eq!(reasoning, "27 * 453 = 12231");
    assert_eq!(text_of(&chunks), "12,231");
    let finish: Vec<_> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.finish_reason)
        .collect();
    assert_eq!(finish, [FinishReason::Length]);
    // message_delta repeats the input counts (cumulative): they count once.
    let usage = chunks.last().and_then(|c| c.usage.clone()).expect("usage");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (240, 64));
    assert_eq!(usage.cached_tokens(), 0);
}

#[test]
fn an_error_event_ends_the_stream_with_its_class() {
    let (chunks, end) = decode(STREAM_OVERLOADED, 9);
    assert_eq!(text_of(&chunks), "Once upon");
    let error = end.expect_err("an error");
    assert_eq!(error.class, FailureClass::Overloaded);
    assert_eq!(error.status, 529, "an overloaded error stays a 5xx");
    assert_eq!(error.message, "Overloaded");
    assert!(chunks
        .iter()
        .all(|c| c.choices.iter().all(|c| c.finish_reason.is_none())));
}

#[test]
fn a_stream_cut_before_message_stop_is_an_error_never_a_clean_finish() {
    let cut = STREAM_TEXT.split("event: message_stop").next().expect("prefix");
    let (_, end) = decode(cut, usize::MAX);
    let error = end.expect_err("cut");
    assert!(error.message.contains("message_stop"), "{}", error.message);
    assert_eq!(error.status, 502);
}

#[test]
fn broken_streams_are_errors_not_panics() {
    for text in [
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n",
        "data: not json\n\n",
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":4,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n",
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n",
    ] {
        let (_, end) = decode(text, 3);
        assert_eq!(end.map_err(|e| e.status), Err(502), "{text}");
    }
}

#[test]
fn stop_reasons_map_to_finish_reasons() {
    for (stop, finish) in [
        ("end_turn", FinishReason::Stop),
        ("stop_sequence", FinishReason::Stop),
        ("pause_turn", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("model_context_window_exceeded", FinishReason::Length),
        ("tool_use", FinishReason::ToolCalls),
        ("refusal", FinishReason::ContentFilter),
    ] {
        assert_eq!(finish_reason(stop), finish, "{stop}");
    }
}

#[test]
fn usage_maps_cache_reads_and_writes_into_the_prompt() {
    let usage = chat_usage(&crate::llm::anthropic::types::Usage {
        input_tokens: 10,
        output_tokens: 5,
        cache_creation_input_tokens: Some(100),
        cache_read_input_tokens: Some(1000),
    });
    assert_eq!(usage, Usage::new(1110, 5, Some(1000)));
}

#[test]
fn errors_are_classified_from_the_envelope() {
    let error = classify_error(
        400,
        br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"},"request_id":"req_1"}"#,
    );
    assert_eq!(error.class, FailureClass::ContextWindowExceeded);
    assert_eq!(error.provider_type.as_deref(), Some("invalid_request_error"));
    let overloaded = classify_error(
        529,
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    );
    assert_eq!((overloaded.class, overloaded.status), (FailureClass::Overloaded, 529));
    let limited = classify_error(
        429,
        br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
    );
    assert_eq!(limited.class, FailureClass::RateLimited);
    let large = classify_error(413, br#"{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}"#);
    assert_eq!(large.class, FailureClass::ClientError);
    let html = classify_error(502, b"<html>Bad Gateway</html>");
    assert_eq!(
        (html.class, html.message.as_str()),
        (FailureClass::ServerError, "<html>Bad Gateway</html>")
    );
    let invalid = classify_error(
        400,
        br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#,
    );
    assert_eq!(invalid.class, FailureClass::ClientError);
}

fn tool_delta(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> ChunkChoice {
    ChunkChoice {
        delta: Delta {
            tool_calls: Some(vec![ToolCallDelta {
                index,
                id: id.map(str::to_string),
                kind: id.map(|_| "function".to_string()),
                function: Some(FunctionCallDelta {
                    name: name.map(str::to_string),
                    arguments: Some(arguments.to_string()),
                }),
            }]),
            ..Delta::default()
        },
        ..ChunkChoice::default()
    }
}

/// A canonical stream as an OpenAI provider's decoder gives it: role, text, two parallel
/// tool calls in fragments, the finish reason, usage with cached input.
fn canonical_stream() -> Vec<ChatChunk> {
    let chunk = |choice| ChatChunk::with_choice("chatcmpl-9", "gpt-4o", 7, choice);
    let text = |role: Option<&str>, text: &str| ChunkChoice {
        delta: Delta {
            role: role.map(str::to_string),
            content: Some(text.to_string()),
            ..Delta::default()
        },
        ..ChunkChoice::default()
    };
    let mut usage = Usage::new(120, 30, Some(100));
    usage.total_tokens = 150;
    vec![
        chunk(text(Some("assistant"), "")),
        chunk(text(None, "Checking.")),
        chunk(tool_delta(0, Some("call_a"), Some("get_weather"), "")),
        chunk(tool_delta(0, None, None, "{\"city\":")),
        chunk(tool_delta(0, None, None, "\"Paris\"}")),
        chunk(tool_delta(1, Some("call_b"), Some("get_time"), "{}")),
        chunk(ChunkChoice {
            finish_reason: Some(FinishReason::ToolCalls),
            ..ChunkChoice::default()
        }),
        ChatChunk::usage_only("chatcmpl-9", "gpt-4o", 7, usage),
    ]
}

fn encode(chunks: &[ChatChunk]) -> String {
    let mut encoder = AnthropicStreamEncoder::new("smart");
    let mut out = BytesMut::new();
    for chunk in chunks {
        encoder.chunk(chunk, &mut out);
    }
    encoder.done(&mut out);
    String::from_utf8(out.to_vec()).expect("utf-8")
}

#[test]
fn the_encoder_writes_anthropics_exact_event_sequence() {
    let text = encode(&canonical_stream());
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(
        events,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert!(text.starts_with("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_chatcmpl-9\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"smart\",\"content\":[],"), "{text}");
    assert!(text.contains(
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"call_a\",\"name\":\"get_weather\",\"input\":{}}}\n\n"
    ), "{text}");
    assert!(text.contains(
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}\n\n"
    ), "{text}");
    assert!(
        text.contains("\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null}"),
        "{text}"
    );
    assert!(text.contains("\"cache_read_input_tokens\":100"), "{text}");
    assert!(
        text.contains("\"input_tokens\":20"),
        "input without the cached part: {text}"
    );
    assert!(
        text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{text}"
    );
}

#[test]
fn encoding_then_decoding_gives_back_the_same_answer() {
    let chunks = canonical_stream();
    let mut original = Accumulator::new();
    chunks.iter().for_each(|c| original.push(c));
    let original = original.finish();

    let (decoded, end) = decode(&encode(&chunks), 11);
    assert_eq!(end, Ok(()));
    let mut again = Accumulator::new();
    decoded.iter().for_each(|c| again.push(c));
    let again = again.finish();
    assert_eq!(again.choices[0].message, original.choices[0].message);
    assert_eq!(again.choices[0].finish_reason, original.choices[0].finish_reason);
    assert_eq!(again.usage, Some(Usage::new(120, 30, Some(100))));
    assert_eq!(again.id, "msg_chatcmpl-9");
    assert_eq!(again.model, "smart");

    // And the non-streamed writer agrees with the stream.
    let message = to_messages_response(&original, "smart");
    let json = serde_json::to_value(&message).expect("json");
    assert_eq!(json["content"][1]["input"], serde_json::json!({"city": "Paris"}));
    assert_eq!(json["stop_reason"], "tool_use");
    assert_eq!(json["usage"]["input_tokens"], 20);
    assert_eq!(json["id"], "msg_chatcmpl-9");
}

#[test]
fn a_failed_stream_ends_with_an_error_event_and_no_message_stop() {
    let mut encoder = AnthropicStreamEncoder::new("smart");
    let mut out = BytesMut::new();
    for chunk in &canonical_stream()[..2] {
        encoder.chunk(chunk, &mut out);
    }
    let error = UpstreamError::new(FailureClass::Overloaded, 529, "Overloaded");
    encoder.error(&error, &mut out);
    let text = String::from_utf8(out.to_vec()).expect("utf-8");
    assert!(text.ends_with(
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
    ), "{text}");
    assert!(!text.contains("message_stop"));
}

#[test]
fn an_empty_stream_still_has_a_complete_message() {
    let text = encode(&[]);
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(events, ["message_start", "message_delta", "message_stop"]);
}

/// Mutates a byte string at random: flips, inserts, deletes.
fn mutate(rng: &mut fastrand::Rng, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..rng.usize(1..8) {
        let at = rng.usize(0..=out.len());
        match rng.u8(0..3) {
            0 if at < out.len() => out[at] = rng.u8(..),
            1 => out.insert(at, *b"{}[]\":,\\\n ".get(rng.usize(0..11)).unwrap_or(&b' ')),
            _ if at < out.len() => {
                out.remove(at);
            }
            _ => {}
        }
    }
    out
}

#[test]
fn mutated_streams_cut_anywhere_never_panic() {
    let mut rng = fastrand::Rng::with_seed(11);
    let fixtures = [STREAM_TEXT, STREAM_TOOLS, STREAM_THINKING, STREAM_OVERLOADED];
    for round in 0..3000 {
        let fixture = fixtures[round % fixtures.len()].as_bytes();
        let bytes = match round % 10 {
            0 => (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect(),
            _ => mutate(&mut rng, fixture),
        };
        let mut decoder = AnthropicStreamDecoder::new();
        let mut framer = SseFramer::new();
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(rng.usize(1..=rest.len()));
            rest = tail;
            if framer.feed(piece, &mut |frame| decoder.frame(frame, &mut out)).is_err() {
                break;
            }
        }
        let _ = decoder.end(&mut out);
        // Whatever came out is a valid canonical stream for the encoder.
        let mut encoder = AnthropicStreamEncoder::new("m");
        let mut encoded = BytesMut::new();
        out.iter().for_each(|c| encoder.chunk(c, &mut encoded));
        encoder.done(&mut encoded);
    }
}

#[test]
fn mutated_requests_are_refused_or_translated_never_a_panic() {
    let mut rng = fastrand::Rng::with_seed(5);
    let request = serde_json::json!({"model": "m", "max_tokens": 9, "system": [{"type": "text", "text": "s"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": {"type": "tool", "name": "f"},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "r"}]}]}]})
    .to_string();
    let options = crate::llm::TranslateOptions::strict("anthropic");
    for _ in 0..3000 {
        let body = mutate(&mut rng, request.as_bytes());
        if let Ok(chat) = crate::llm::anthropic::to_chat_request(&body) {
            let _ = crate::llm::anthropic::to_messages_request(&chat, "claude", &options);
        }
        let _ = crate::llm::anthropic::estimate_input_tokens(&body);
    }
}
