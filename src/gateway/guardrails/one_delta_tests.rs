//! The typed fast path gives byte for byte the stream the general path gives, on generated
//! streams of each surface: masks and blocks across deltas, several choices and blocks,
//! escapes written as `serde_json` writes them and otherwise, log probabilities, tool calls,
//! finishing chunks, sequence numbers with gaps.

use std::sync::Arc;

use axum::body::Body;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::super::super::stream_tests::cut;
use super::super::super::surface::{surface, Surface};
use super::super::super::tests::guard;
use super::super::super::GuardMetrics;
use super::super::Scanned;
use crate::gateway::metrics::Endpoint;

/// A generated stream of a surface.
type Generator = fn(&mut fastrand::Rng) -> String;
/// An event of a surface with one text delta and a sequence number.
type Event = fn(&str, u64) -> Value;

pub(in super::super) const RULES: &str = "{content: [{name: pii, builtin: [email, usSSN], \"on\": [response], action: mask}, {name: code, keywords: [falcon], \"on\": [response]}]}";

/// Words of generated answers: emails and numbers to mask, a keyword that blocks (rarely),
/// and every kind of character JSON escapes.
const WORDS: [&str; 16] = [
    "the ",
    "answer ",
    "bob@example.com ",
    "123-45-6789 ",
    "\"quoted\" ",
    "line\nbreak ",
    "tab\t",
    "back\\slash ",
    "café ",
    "日本語 ",
    "😀 ",
    "</script> ",
    "\u{1}ctl ",
    "a.b@c.io ",
    "42 ",
    ". ",
];

pub(in super::super) fn text(rng: &mut fastrand::Rng) -> String {
    let mut text: String = (0..rng.usize(1..30)).map(|_| WORDS[rng.usize(..WORDS.len())]).collect();
    if rng.usize(..12) == 0 {
        text.push_str("falcon ");
    }
    text
}

/// An event's data: compact, as providers write it, or with `é` escaped (not as `serde_json`
/// would write it, so neither path splices).
fn data(rng: &mut fastrand::Rng, event: &Value) -> String {
    let data = event.to_string();
    match rng.usize(..8) {
        0 => data.replace('é', "\\u00e9"),
        _ => data,
    }
}

fn chat(rng: &mut fastrand::Rng) -> String {
    let chunk =
        |choice: Value| json!({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]});
    let choices = rng.usize(1..3);
    let mut events = Vec::new();
    for index in 0..choices {
        events.push(chunk(
            json!({"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}),
        ));
    }
    let mut pieces: Vec<(usize, String)> = Vec::new();
    for index in 0..choices {
        let text = text(rng);
        pieces.extend(cut(rng, &text).into_iter().map(|p| (index, p)));
    }
    rng.shuffle(&mut pieces);
    for (index, piece) in pieces {
        let key = ["content", "reasoning_content"][usize::from(rng.usize(..5) == 0)];
        let mut choice = json!({"index": index, "delta": {key: piece}, "finish_reason": null});
        match rng.usize(..12) {
            0 => choice["logprobs"] = json!({"content": [{"token": piece}]}),
            1 => choice["delta"]["tool_calls"] = json!([{"index": 0, "function": {"arguments": "{\"a\":1}"}}]),
            2 => choice["finish_reason"] = json!("length"),
            3 => choice["delta"]["content"] = Value::Null,
            _ => {}
        }
        events.push(chunk(choice));
    }
    for index in 0..choices {
        events.push(chunk(json!({"index": index, "delta": {}, "finish_reason": "stop"})));
    }
    let mut body: String = events.iter().map(|e| format!("data: {}\n\n", data(rng, e))).collect();
    body.push_str("data: [DONE]\n\n");
    body
}

fn anthropic(rng: &mut fastrand::Rng) -> String {
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": 3}}}),
    ];
    for index in 0..rng.usize(1..4) {
        let (block, delta, field) = match rng.usize(..3) {
            0 => ("thinking", "thinking_delta", "thinking"),
            _ => ("text", "text_delta", "text"),
        };
        events
            .push(json!({"type": "content_block_start", "index": index, "content_block": {"type": block, field: ""}}));
        let text = text(rng);
        for piece in cut(rng, &text) {
            let mut event =
                json!({"type": "content_block_delta", "index": index, "delta": {"type": delta, field: piece}});
            if rng.usize(..15) == 0 {
                event["delta"][field] = json!(7);
            }
            events.push(event);
        }
        if block == "thinking" {
            events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": "c2ln"}}));
        }
        events.push(json!({"type": "content_block_stop", "index": index}));
    }
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}));
    events.push(json!({"type": "message_stop"}));
    let name = |e: &Value| e["type"].as_str().unwrap_or_default().to_string();
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {}\n\n", name(e), data(rng, e)))
        .collect()
}

fn responses(rng: &mut fastrand::Rng) -> String {
    let text = text(rng);
    let part = json!({"type": "output_text", "text": text, "annotations": []});
    let at = |kind: &str| json!({"type": kind, "item_id": "msg_1", "output_index": 0, "content_index": 0});
    let mut events = vec![
        json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"id": "msg_1", "type": "message", "content": []}}),
    ];
    for piece in cut(rng, &text) {
        let mut delta = at("response.output_text.delta");
        delta["delta"] = json!(piece);
        delta["logprobs"] = match rng.usize(..10) {
            0 => json!([{"token": piece}]),
            _ => json!([]),
        };
        events.push(delta);
    }
    let mut done = at("response.output_text.done");
    done["text"] = json!(text);
    events.push(done);
    events.push(json!({"type": "response.completed", "response": {"id": "resp_1", "status": "completed", "output": [{"type": "message", "content": [part]}]}}));
    let mut number = 0;
    for event in &mut events {
        match rng.usize(..20) {
            0 => number += 2,
            1 => continue,
            _ => number += 1,
        }
        event["sequence_number"] = json!(number);
    }
    let name = |e: &Value| e["type"].as_str().unwrap_or_default().to_string();
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {}\n\n", name(e), data(rng, e)))
        .collect()
}

/// `body` through the stream guard of `endpoint`, with or without the typed fast path.
fn scanned(endpoint: Endpoint, body: &str, typed: bool) -> String {
    scanned_with(endpoint, body, typed, true)
}

/// `body` through the stream guard, its fast path with or without the byte-level locate.
fn scanned_with(endpoint: Endpoint, body: &str, typed: bool, located: bool) -> String {
    let g = Arc::new(guard(RULES));
    let surface: &'static dyn Surface = surface(endpoint);
    let metrics = Arc::new(GuardMetrics::unregistered());
    let mut scanned = Scanned::new(g, surface, Body::from(body.to_string()), metrics);
    scanned.typed = typed;
    scanned.located = located;
    output(scanned)
}

/// What a stream guard over a ready body writes.
pub(in super::super) fn output(scanned: Scanned) -> String {
    let out = scanned
        .collect()
        .now_or_never()
        .expect("ready")
        .expect("body")
        .to_bytes();
    String::from_utf8(out.to_vec()).expect("utf-8")
}

#[test]
fn the_fast_path_writes_what_the_general_path_writes() {
    let mut rng = fastrand::Rng::with_seed(31);
    let generators: [(Endpoint, Generator); 3] = [
        (Endpoint::chat_completions, chat),
        (Endpoint::messages, anthropic),
        (Endpoint::responses, responses),
    ];
    for (endpoint, generate) in generators {
        for _ in 0..400 {
            let body = generate(&mut rng);
            let general = scanned(endpoint, &body, false);
            assert_eq!(scanned(endpoint, &body, true), general, "{endpoint:?}: {body}");
            let typed = scanned_with(endpoint, &body, true, false);
            assert_eq!(typed, general, "{endpoint:?}, typed view alone: {body}");
            for data in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
                located_as_typed(endpoint, data);
            }
        }
    }
}

#[test]
fn an_event_with_one_text_delta_takes_the_fast_path() {
    let text = "mail bob@example.com, \"quoted\"\n";
    let events: [(Endpoint, Event); 3] = [
        (
            Endpoint::chat_completions,
            |text, _| json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}),
        ),
        (
            Endpoint::messages,
            |text, _| json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ),
        (
            Endpoint::responses,
            |text, n| json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": text, "logprobs": [], "sequence_number": n}),
        ),
    ];
    for (endpoint, event) in events {
        let g = Arc::new(guard(RULES));
        let metrics = Arc::new(GuardMetrics::unregistered());
        let mut scanned = Scanned::new(g, surface(endpoint), Body::empty(), metrics);
        let mut out = bytes::BytesMut::new();
        let first = event("first", 1).to_string();
        assert!(
            scanned.one_delta("message", &first, &mut out).is_none(),
            "{endpoint:?}: no template yet"
        );
        scanned.event("message", &first, &mut out).expect("scanned");
        let second = event(text, 2).to_string();
        assert_eq!(
            scanned.one_delta("message", &second, &mut out),
            Some(Ok(())),
            "{endpoint:?}"
        );
        let gap = event(text, 7).to_string();
        let fast = scanned.one_delta("message", &gap, &mut out);
        assert_eq!(
            fast.is_some(),
            endpoint != Endpoint::responses,
            "{endpoint:?}: renumbered"
        );
    }
}

/// Where the byte-level locate finds a delta, the typed view finds the same one.
fn located_as_typed(endpoint: Endpoint, data: &str) -> bool {
    let surface = surface(endpoint);
    let Some(located) = crate::gateway::guardrails::surface::shape::locate(surface, data) else {
        return false;
    };
    let typed = surface.one_delta(data);
    let typed = typed.map(|d| (d.slot, d.text, d.sequence));
    assert_eq!(
        Some((located.slot, located.text, located.sequence)),
        typed,
        "{endpoint:?}: {data}"
    );
    true
}

#[test]
fn the_locate_finds_what_the_typed_view_finds_or_leaves_it() {
    let chat = Endpoint::chat_completions;
    let found = [
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#,
        r#"{"choices":[{"finish_reason":null,"delta":{"content":"hi","role":"assistant"},"index":2}],"id":"c"}"#,
        r#"{"id":"\"content\":\"x\"","choices":[{"delta":{"content":"a \"content\":\"b\" \\"},"index":0,"logprobs":null}]}"#,
        r#"{"x":{"choices":[{"delta":{"content":"no"}}]},"choices":[{"delta":{"reasoning_content":"yes","content":null}}],"y":[{"a":[1,2.5,-3]},true,null]}"#,
        r#"{"choices":[{"delta":{"content":"caf\u00e9 \n"},"index":null}],"usage":null}"#,
    ];
    for data in found {
        assert!(located_as_typed(chat, data), "{data}");
    }
    let left = [
        r#"{"choices": [{"delta":{"content":"hi"}}]}"#,
        r#" {"choices":[{"delta":{"content":"hi"}}]}"#,
        r#"{"choices":[{"delta":{"content":"hi"}}]}{}"#,
        r#"{"choices":[{"delta":{"content":"hi"}},{"delta":{"content":"hi"}}]}"#,
        r#"{"choices":[{"delta":{"content":"hi"}}],"choices":[{"delta":{"content":"hi"}}]}"#,
        r#"{"choices":[{"delta":{"content":"hi","content":"ho"}}]}"#,
        r#"{"choices":[{"delta":{"content":"hi","reasoning_content":"ho"}}]}"#,
        r#"{"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"delta":{"content":"hi"},"logprobs":{"content":[]}}]}"#,
        r#"{"choices":[{"delta":{"content":"hi","tool_calls":[]}}]}"#,
        r#"{"choices":[{"delta":{"content":7}}]}"#,
        r#"{"choices":[{"delta":{"c\u006fntent":"hi"}}]}"#,
        r#"{"choices":[{"delta":{"content":"\ud83d\ude00"}}]}"#,
        r#"{"choices":[{"index":1.0,"delta":{"content":"hi"}}]}"#,
        r#"{"choices":[{"delta":{"content":"hi"}}],"n":1e400}"#,
        r#"{"choices":[{"delta":{"content":"hi"}}],"s":"\ud800"}"#,
        r#"{"choices":[{"delta":{"content":"hi"}}]"#,
        r#"{"choices":[{"delta":{"content":"hi"}}],}"#,
    ];
    for data in left {
        assert!(!located_as_typed(chat, data), "{data}");
    }
    let messages_api = Endpoint::messages;
    assert!(located_as_typed(
        messages_api,
        r#"{"delta":{"text":"hi","type":"text_delta","thinking":null},"index":1,"type":"content_block_delta"}"#
    ));
    for data in [
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"},"type":"x"}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","text":"hi"}}"#,
        r#"{"type":"content_block_start","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}}"#,
    ] {
        assert!(!located_as_typed(messages_api, data), "{data}");
    }
    let responses_api = Endpoint::responses;
    assert!(located_as_typed(
        responses_api,
        r#"{"sequence_number":4,"logprobs":[],"delta":"hi","content_index":1,"output_index":2,"item_id":"m","type":"response.output_text.delta","obfuscation":"ab"}"#
    ));
    for data in [
        r#"{"type":"response.output_text.delta","delta":"hi","logprobs":[{"token":"hi"}]}"#,
        r#"{"type":"response.output_text.delta","delta":"hi","sequence_number":null}"#,
        r#"{"type":"response.output_text.delta","delta":"hi","part":{}}"#,
        r#"{"type":"response.output_text.done","text":"hi"}"#,
        r#"{"type":"response.output_text.delta","delta":"hi","response":null,"response":null}"#,
    ] {
        assert!(!located_as_typed(responses_api, data), "{data}");
    }
}

#[test]
fn events_that_try_to_fool_the_locate_are_written_as_the_typed_view_writes_them() {
    let first = r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
    let events = [
        r#"{"id":"\"content\":\"bob@example.com\"","choices":[{"delta":{"content":"mail bob@example.com \"content\":\"x\""},"index":0}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"123-45-6789 then \\\" and more text to release"}}],"x":{"content":"123-45-6789"}}"#,
        r#"{"choices":[{"delta":{"content":" a.b@c.io"}}],"choices":[{"delta":{"content":"other"}}]}"#,
        r#"{"choices":[ {"delta":{"content":" spaced bob@example.com"}}]}"#,
    ];
    let mut body = format!("{first}\n\n");
    for event in events {
        body.push_str(&format!("data: {event}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    let chat = Endpoint::chat_completions;
    let typed = scanned_with(chat, &body, true, false);
    assert_eq!(scanned_with(chat, &body, true, true), typed);
    assert!(
        !typed.contains("bob@example.com ") && !typed.contains("123-45-6789 "),
        "{typed}"
    );
}
