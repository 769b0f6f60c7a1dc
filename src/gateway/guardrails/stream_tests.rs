//! The response guard on the streams of Anthropic Messages and the Responses API: masked the
//! same however the text is cut into deltas and the bytes into reads, their whole-text events
//! masked alike, their shapes kept (event names, block order, consecutive sequence numbers),
//! and a block ends them with the API's own error event.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::tests::guard;
use super::*;

const RULES: &str = "{content: [{name: pii, builtin: [email, usSSN], \"on\": [response], action: mask}, {name: code, keywords: [falcon], \"on\": [response]}]}";

pub(super) fn sse(events: &[Value]) -> String {
    let mut text = String::new();
    for event in events {
        let name = event["type"].as_str().expect("type");
        text.push_str(&format!("event: {name}\ndata: {event}\n\n"));
    }
    text
}

fn anthropic(pieces: &[&str]) -> String {
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [], "stop_reason": null, "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ];
    for piece in pieces {
        events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}));
    events.push(json!({"type": "message_stop"}));
    sse(&events)
}

fn responses(pieces: &[&str]) -> String {
    let text = pieces.concat();
    let part = json!({"type": "output_text", "text": text, "annotations": []});
    let item = json!({"id": "msg_1", "type": "message", "role": "assistant", "status": "completed", "content": [part]});
    let at = |kind: &str| json!({"type": kind, "item_id": "msg_1", "output_index": 0, "content_index": 0});
    let mut events = vec![
        json!({"type": "response.created", "response": {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}}),
        json!({"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    ];
    for piece in pieces {
        let mut delta = at("response.output_text.delta");
        delta["delta"] = json!(piece);
        delta["logprobs"] = json!([]);
        events.push(delta);
    }
    let mut done = at("response.output_text.done");
    done["text"] = json!(text);
    events.push(done);
    let mut part_done = at("response.content_part.done");
    part_done["part"] = part;
    events.push(part_done);
    events.push(json!({"type": "response.output_item.done", "output_index": 0, "item": item}));
    events.push(json!({"type": "response.completed", "response": {"id": "resp_1", "object": "response", "status": "completed", "output": [item]}}));
    for (n, event) in events.iter_mut().enumerate() {
        event["sequence_number"] = json!(n);
    }
    sse(&events)
}

/// `body` through the response guard of `endpoint`, read by the guard in `reads` pieces; the
/// events the client gets, as (name, data).
pub(super) async fn through(g: &Arc<Guard>, endpoint: Endpoint, body: &str, reads: &[usize]) -> Vec<(String, Value)> {
    let bytes = body.as_bytes();
    let mut chunks = Vec::new();
    let mut at = 0;
    for &cut in reads.iter().chain([&bytes.len()]) {
        let cut = cut.clamp(at, bytes.len());
        chunks.push(Ok::<_, std::io::Error>(Bytes::copy_from_slice(&bytes[at..cut])));
        at = cut;
    }
    let mut response = http::Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    let metrics = Arc::new(GuardMetrics::unregistered());
    let out = guard_response(Some(g), endpoint, response, &metrics).await;
    let raw = out.into_body().collect().await.expect("body").to_bytes();
    let raw = String::from_utf8(raw.to_vec()).expect("utf-8");
    raw.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("message");
            let data = block.lines().find_map(|l| l.strip_prefix("data: ")).expect("data");
            (name.to_string(), serde_json::from_str(data).unwrap_or(Value::Null))
        })
        .collect()
}

/// `text` cut into deltas at random character boundaries.
pub(super) fn cut(rng: &mut fastrand::Rng, text: &str) -> Vec<String> {
    let mut cuts: Vec<usize> = (0..rng.usize(1..10)).map(|_| rng.usize(0..=text.len())).collect();
    cuts.iter_mut().for_each(|c| {
        while !text.is_char_boundary(*c) {
            *c -= 1;
        }
    });
    cuts.sort_unstable();
    let mut at = 0;
    let mut pieces = Vec::new();
    for c in cuts.into_iter().chain([text.len()]) {
        pieces.push(text[at..c].to_string());
        at = c;
    }
    pieces
}

fn whole(g: &Guard, text: &str) -> String {
    let mut text = text.to_string();
    let matcher = g.response.as_ref().expect("response rules");
    let blocked = matcher.apply(
        &mut text,
        None,
        super::matcher::Form::Plain,
        &mut Vec::new(),
        &mut Vec::new(),
    );
    assert_eq!(blocked, None);
    text
}

const SAMPLES: [&str; 3] = [
    "Reach jane.doe@example.com or 078-05-1120 — café ☕ then bob@corp.example.",
    "no match at all, just a long enough text to be held back and released in pieces",
    "a@b.co",
];

#[tokio::test]
async fn anthropic_streams_are_masked_alike_however_they_are_cut() {
    let g = Arc::new(guard(RULES));
    let mut rng = fastrand::Rng::with_seed(7);
    for text in SAMPLES {
        let expected = whole(&g, text);
        for _ in 0..60 {
            let pieces = cut(&mut rng, text);
            let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
            let body = anthropic(&pieces);
            let reads: Vec<usize> = (0..rng.usize(0..6)).map(|_| rng.usize(0..body.len())).collect();
            let events = through(&g, Endpoint::messages, &body, &reads).await;
            let kinds: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
            for (name, data) in &events {
                assert_eq!(data["type"], name.as_str(), "every event keeps its name");
            }
            let stop = kinds.iter().position(|k| *k == "content_block_stop").expect("stop");
            assert_eq!(kinds[..2], ["message_start", "content_block_start"]);
            assert!(kinds[2..stop].iter().all(|k| *k == "content_block_delta"), "{kinds:?}");
            assert_eq!(kinds[stop..], ["content_block_stop", "message_delta", "message_stop"]);
            let streamed: String = events.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect();
            assert_eq!(streamed, expected, "{pieces:?} read at {reads:?}");
        }
    }
}

#[tokio::test]
async fn responses_streams_are_masked_alike_and_stay_numbered() {
    let g = Arc::new(guard(RULES));
    let mut rng = fastrand::Rng::with_seed(11);
    for text in SAMPLES {
        let expected = whole(&g, text);
        for _ in 0..60 {
            let pieces = cut(&mut rng, text);
            let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
            let body = responses(&pieces);
            let reads: Vec<usize> = (0..rng.usize(0..6)).map(|_| rng.usize(0..body.len())).collect();
            let events = through(&g, Endpoint::responses, &body, &reads).await;
            for (n, (name, data)) in events.iter().enumerate() {
                assert_eq!(data["type"], name.as_str());
                assert_eq!(data["sequence_number"], n, "{pieces:?}: numbers stay consecutive");
            }
            let done = events
                .iter()
                .position(|(name, _)| name == "response.output_text.done")
                .expect("done");
            let streamed: String = events[..done]
                .iter()
                .filter(|(name, _)| name == "response.output_text.delta")
                .map(|(_, d)| d["delta"].as_str().expect("delta"))
                .collect();
            assert_eq!(streamed, expected, "{pieces:?} read at {reads:?}");
            let last = &events[events.len() - 1].1;
            assert_eq!(last["type"], "response.completed");
            assert_eq!(events[done].1["text"], expected.as_str());
            assert_eq!(events[done + 1].1["part"]["text"], expected.as_str());
            assert_eq!(events[done + 2].1["item"]["content"][0]["text"], expected.as_str());
            assert_eq!(last["response"]["output"][0]["content"][0]["text"], expected.as_str());
        }
    }
}

#[tokio::test]
async fn a_block_ends_each_stream_with_its_own_error_event() {
    let g = Arc::new(guard(RULES));
    let pieces = ["Quiet start. ", "The code name is fal", "con, and more", " text."];

    let events = through(&g, Endpoint::messages, &anthropic(&pieces), &[]).await;
    let (name, error) = events.last().expect("events");
    assert_eq!(name, "error");
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(error["error"]["message"].as_str().expect("m").contains("'code'"));
    assert!(!events.iter().any(|(name, _)| name == "message_stop"));
    let text = format!("{events:?}").to_lowercase();
    assert!(!text.contains("falcon") && !text.contains("fal\""), "{text}");

    let events = through(&g, Endpoint::responses, &responses(&pieces), &[]).await;
    let (name, error) = events.last().expect("events");
    assert_eq!(name, "error");
    assert_eq!(error["code"], "content_policy_violation");
    assert_eq!(error["sequence_number"], events.len() - 1);
    assert!(!events.iter().any(|(name, _)| name == "response.completed"));
    assert!(!format!("{events:?}").to_lowercase().contains("falcon"));
}

#[tokio::test]
async fn token_log_probabilities_never_show_what_the_guard_holds_or_masks() {
    let g = Arc::new(guard(RULES));
    let logprobs = json!([{"token": "jane@example.com", "logprob": -0.1, "bytes": [], "top_logprobs": []}]);
    let body =
        responses(&["mail jane@", "example.com now"]).replace("\"logprobs\":[]", &format!("\"logprobs\":{logprobs}"));
    assert!(body.contains("\"token\""));
    let events = through(&g, Endpoint::responses, &body, &[]).await;
    assert!(!format!("{events:?}").contains("jane"), "{events:?}");

    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "mail jane@example.com"}, "logprobs": {"content": logprobs}, "finish_reason": null}]});
    let body = format!("data: {chunk}\n\ndata: [DONE]\n\n");
    let events = through(&g, Endpoint::chat_completions, &body, &[]).await;
    let text: String = events
        .iter()
        .filter_map(|(_, e)| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "mail [EMAIL]");
    assert!(!format!("{events:?}").contains("jane"), "{events:?}");
}

#[test]
fn released_text_is_spliced_into_the_raw_event_only_when_unambiguous() {
    use super::response::splice;
    let chunk = r#"{"id":"c","choices":[{"index":0,"delta":{"content":"mail jane@"},"finish_reason":null}]}"#;
    assert_eq!(
        splice(chunk, "content", "mail jane@", "").as_deref(),
        Some(r#"{"id":"c","choices":[{"index":0,"delta":{"content":""},"finish_reason":null}]}"#)
    );
    // Quotes and escapes in the released text are written as JSON.
    let quoted = splice(chunk, "content", "mail jane@", "say \"hi\"\n").expect("spliced");
    let value: Value = serde_json::from_str(&quoted).expect("json");
    assert_eq!(value["choices"][0]["delta"]["content"], "say \"hi\"\n");
    // Written otherwise by the provider (escaped non-ASCII, spaces), twice, or faked inside
    // a key: the event is written again from its parsed form instead.
    assert_eq!(splice(r#"{"content":"caf\u00e9"}"#, "content", "café", "x"), None);
    assert_eq!(splice(r#"{"content": "a"}"#, "content", "a", "x"), None);
    assert_eq!(
        splice(r#"{"a":{"content":"a"},"b":{"content":"a"}}"#, "content", "a", "x"),
        None
    );
    assert_eq!(splice(r#"{"x\"content":"a"}"#, "content", "a", "x"), None);
}
