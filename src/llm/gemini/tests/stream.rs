use serde_json::json;

use super::decode;
use crate::llm::chat::FinishReason;
use crate::llm::gemini::from_generate_content;
use crate::llm::{Accumulator, FailureClass};

#[test]
fn a_text_stream_is_role_deltas_finish_and_usage_once_at_the_end() {
    let (chunks, end) = decode(include_bytes!("../fixtures/stream_text.sse"), 0);
    assert_eq!(end, Ok(()));
    let deltas: Vec<serde_json::Value> = chunks
        .iter()
        .map(|c| {
            json!({"choices": c.choices.iter().map(|c| json!({"delta": c.delta, "finish": c.finish_reason})).collect::<Vec<_>>(),
                "usage": c.usage})
        })
        .collect();
    assert_eq!(
        deltas,
        [
            json!({"choices": [{"delta": {"role": "assistant"}, "finish": null}], "usage": null}),
            json!({"choices": [{"delta": {"content": "AI learns"}, "finish": null}], "usage": null}),
            json!({"choices": [{"delta": {"content": " patterns from data and uses"}, "finish": null}], "usage": null}),
            json!({"choices": [{"delta": {"content": " them to make predictions."}, "finish": null}], "usage": null}),
            json!({"choices": [{"delta": {}, "finish": "stop"}], "usage": null}),
            json!({"choices": [], "usage": {"prompt_tokens": 2060, "completion_tokens": 53, "total_tokens": 2113,
                "prompt_tokens_details": {"cached_tokens": 2048}, "completion_tokens_details": {"reasoning_tokens": 41}}}),
        ]
    );
    assert!(chunks
        .iter()
        .all(|c| c.id == "chatcmpl-mGAsaOW2KYmG1dkPw5S5sQ4" && c.model == "gemini-2.5-flash"));
}

#[test]
fn a_stream_split_anywhere_decodes_the_same() {
    for fixture in [
        &include_bytes!("../fixtures/stream_text.sse")[..],
        &include_bytes!("../fixtures/stream_tools.sse")[..],
    ] {
        let (whole, _) = decode(fixture, 0);
        let strip = |chunks: Vec<crate::llm::chat::ChatChunk>| {
            chunks
                .into_iter()
                .map(|mut c| {
                    c.created = 0;
                    for choice in &mut c.choices {
                        for call in choice.delta.tool_calls.iter_mut().flatten() {
                            call.id = None;
                        }
                    }
                    c
                })
                .collect::<Vec<_>>()
        };
        let whole = strip(whole);
        for piece in [1, 2, 7, 64] {
            let (pieces, end) = decode(fixture, piece);
            assert_eq!(end, Ok(()));
            assert_eq!(strip(pieces), whole, "pieces of {piece} bytes");
        }
    }
}

#[test]
fn streamed_tool_calls_join_to_exactly_the_non_streamed_answer() {
    let (chunks, end) = decode(include_bytes!("../fixtures/stream_tools.sse"), 3);
    assert_eq!(end, Ok(()));
    let mut accumulator = Accumulator::new();
    for chunk in &chunks {
        accumulator.push(chunk);
    }
    let mut streamed = accumulator.finish();
    let mut whole =
        from_generate_content(include_bytes!("../fixtures/function_calls.json"), "gemini-2.5-flash").expect("reads");
    // Ids are made up per answer; everything else must be equal.
    for answer in [&mut streamed, &mut whole] {
        answer.created = 0;
        for call in answer.choices[0].message.tool_calls.iter_mut().flatten() {
            assert!(call.id.starts_with("call_"));
            call.id.clear();
        }
    }
    assert_eq!(streamed, whole);
    assert_eq!(streamed.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    // Each call arrives whole: one delta with its name and complete arguments.
    let deltas: Vec<_> = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .flat_map(|c| c.delta.tool_calls.iter().flatten())
        .map(|d| (d.index, d.function.as_ref().and_then(|f| f.arguments.clone())))
        .collect();
    assert_eq!(
        deltas,
        [
            (0, Some(r#"{"location":"Paris","unit":"celsius"}"#.to_string())),
            (1, Some(r#"{"location":"Tokyo"}"#.to_string())),
            (2, Some("{}".to_string())),
        ]
    );
}

#[test]
fn a_stream_cut_before_its_finish_reason_is_an_error() {
    let text = include_str!("../fixtures/stream_text.sse");
    let cut = &text[..text.rfind("data:").expect("events")];
    let (chunks, end) = decode(cut.as_bytes(), 5);
    assert!(chunks.iter().any(|c| c.has_content()));
    let error = end.expect_err("cut");
    assert_eq!(error.class, FailureClass::ServerError);
    assert!(chunks.iter().all(|c| c.usage.is_none()), "no usage on a cut stream");
}

#[test]
fn an_error_event_ends_the_stream_with_its_class() {
    let text = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"},\"index\": 0}]}\r\n\r\n",
        "data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded. Please try again later.\", \"status\": \"UNAVAILABLE\"}}\r\n\r\n",
    );
    let (chunks, end) = decode(text.as_bytes(), 0);
    assert!(chunks.iter().any(|c| c.has_content()));
    let error = end.expect_err("error event");
    assert_eq!((error.class, error.status), (FailureClass::Overloaded, 503));
    assert_eq!(error.message, "The model is overloaded. Please try again later.");
}

#[test]
fn a_blocked_prompt_in_a_stream_is_a_content_filter_finish() {
    let text = "data: {\"promptFeedback\": {\"blockReason\": \"PROHIBITED_CONTENT\"},\"usageMetadata\": {\"promptTokenCount\": 9,\"totalTokenCount\": 9}}\r\n\r\n";
    let (chunks, end) = decode(text.as_bytes(), 0);
    assert_eq!(end, Ok(()));
    let mut accumulator = Accumulator::new();
    chunks.iter().for_each(|c| accumulator.push(c));
    let answer = accumulator.finish();
    assert_eq!(answer.choices[0].finish_reason, Some(FinishReason::ContentFilter));
    assert!(answer.choices[0]
        .message
        .refusal
        .as_deref()
        .is_some_and(|r| r.contains("PROHIBITED_CONTENT")));
    assert_eq!(answer.usage.map(|u| u.prompt_tokens), Some(9));
}

/// A small deterministic generator (xorshift), so the mutations are the same on every run.
fn mutations(seed: u64) -> impl Iterator<Item = u64> {
    let mut state = seed;
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    })
}

#[test]
fn mutated_and_cut_streams_never_panic() {
    let fixtures = [
        &include_bytes!("../fixtures/stream_text.sse")[..],
        &include_bytes!("../fixtures/stream_tools.sse")[..],
        &include_bytes!("../fixtures/function_calls.json")[..],
    ];
    let mut random = mutations(0x9e37_79b9_7f4a_7c15);
    let mut next = move |below: usize| (random.next().unwrap_or(1) % below.max(1) as u64) as usize;
    for round in 0..3000 {
        let mut bytes = fixtures[round % fixtures.len()].to_vec();
        for _ in 0..1 + next(4) {
            if bytes.is_empty() {
                bytes.push(b'{');
            }
            let at = next(bytes.len());
            match next(3) {
                0 => bytes[at] = next(256) as u8,
                1 => bytes.truncate(at),
                _ => bytes.insert(at, b"{}[]\":,\r\n"[next(9)]),
            }
        }
        if round % 7 == 0 {
            // A candidate index far beyond any candidateCount must not allocate for it.
            bytes = String::from_utf8_lossy(&bytes)
                .replace("\"index\": 0", "\"index\": 4294967295")
                .into_bytes();
        }
        let _ = decode(&bytes, 1 + next(40));
        let _ = from_generate_content(&bytes, "m");
    }
}
