//! Texts a Responses stream repeats whole (`*.done`, parts, items, the final response) are
//! masked from their slot's record when byte-identical to its deltas, and scanned otherwise:
//! what the client gets is the same as when every repeat is scanned, on generated streams
//! whose repeats are faithful, altered, missing, out of order or too long to keep.

use std::sync::Arc;

use axum::body::Body;
use bytes::BytesMut;
use serde_json::{json, Value};

use super::super::matcher::Form;
use super::super::stream_tests::cut;
use super::super::surface::surface;
use super::super::tests::guard;
use super::super::GuardMetrics;
use super::one_delta::tests::{output, text, RULES};
use super::Scanned;
use crate::gateway::metrics::Endpoint;

/// A Responses stream guard over `body` whose records hold at most `record_cap` bytes.
pub(super) fn scanned(body: &str, record_cap: usize) -> Scanned {
    let metrics = Arc::new(GuardMetrics::unregistered());
    let mut scanned = Scanned::new(
        Arc::new(guard(RULES)),
        surface(Endpoint::responses),
        Body::from(body.to_string()),
        metrics,
    );
    scanned.record_cap = record_cap;
    scanned
}

fn through(body: &str, record_cap: usize) -> String {
    output(scanned(body, record_cap))
}

/// A Responses stream of one to three output items (message text, a refusal, a function
/// call's arguments); each repeat of a text is, at random, the text, another text, or absent.
pub(super) fn generated(rng: &mut fastrand::Rng) -> String {
    let mut events = vec![json!({"type": "response.created", "response": {"id": "r", "output": []}})];
    let mut items = Vec::new();
    for index in 0..rng.usize(1..4) {
        let (stream, field, item) = match rng.usize(..4) {
            0 => ("response.refusal", "refusal", "refusal"),
            1 => ("response.function_call_arguments", "arguments", "function_call"),
            _ => ("response.output_text", "text", "output_text"),
        };
        let text = match item {
            "function_call" => json!({"q": text(rng), "n": [1, 2]}).to_string(),
            _ => text(rng),
        };
        let at = |kind: &str| json!({"type": kind, "item_id": "i", "output_index": index, "content_index": 0});
        for piece in cut(rng, &text) {
            let mut delta = at(&format!("{stream}.delta"));
            delta["delta"] = json!(piece);
            events.push(delta);
        }
        if rng.usize(..15) == 0 {
            // Text after the end of the slot.
            let mut late = at(&format!("{stream}.delta"));
            late["delta"] = json!(" and jane@example.org");
            events.push(late);
        }
        let repeat = |rng: &mut fastrand::Rng| match rng.usize(..10) {
            0 => format!("{text} mail eve@example.net"),
            1 => text.replacen(' ', "", 1),
            _ => text.clone(),
        };
        let mut done = at(&format!("{stream}.done"));
        done[field] = json!(repeat(rng));
        if rng.usize(..10) != 0 {
            events.push(done);
        }
        let item = match item {
            "function_call" => json!({"type": "function_call", "name": "f", "arguments": repeat(rng)}),
            "refusal" => json!({"type": "message", "content": [{"type": "refusal", "refusal": repeat(rng)}]}),
            _ => {
                let part = json!({"type": "output_text", "text": repeat(rng), "annotations": []});
                let mut part_done = at("response.content_part.done");
                part_done["part"] = part.clone();
                events.push(part_done);
                json!({"type": "message", "content": [part]})
            }
        };
        events.push(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
        items.push(item);
    }
    rng.shuffle(&mut items);
    events.push(json!({"type": "response.completed", "response": {"id": "r", "output": items}}));
    for (n, event) in events.iter_mut().enumerate() {
        event["sequence_number"] = json!(n);
    }
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or_default()))
        .collect()
}

#[test]
fn repeats_masked_from_records_are_what_scanning_them_gives() {
    let mut rng = fastrand::Rng::with_seed(41);
    for round in 0..400 {
        let body = generated(&mut rng);
        let scanning = through(&body, 0);
        assert_eq!(through(&body, super::RECORD_CAP), scanning, "{body}");
        // A cap some slots' records pass midway.
        let cap = rng.usize(1..400);
        assert_eq!(through(&body, cap), scanning, "cap {cap}: {body}");
        if round < 5 {
            assert!(!scanning.contains("bob@example.com"), "{scanning}");
        }
    }
}

/// Feeds `events` to a stream guard, one at a time.
fn fed(events: &[Value], record_cap: usize) -> (Scanned, String) {
    let mut scanned = scanned("", record_cap);
    let mut out = BytesMut::new();
    for event in events {
        let name = event["type"].as_str().expect("type");
        if scanned.event(name, &event.to_string(), &mut out).is_err() {
            break;
        }
    }
    (scanned, String::from_utf8(out.to_vec()).expect("utf-8"))
}

fn text_events(pieces: &[&str]) -> Vec<Value> {
    let at = |kind: &str| json!({"type": kind, "output_index": 0, "content_index": 0});
    let mut events: Vec<Value> = pieces
        .iter()
        .map(|piece| {
            let mut delta = at("response.output_text.delta");
            delta["delta"] = json!(piece);
            delta
        })
        .collect();
    let mut done = at("response.output_text.done");
    done["text"] = json!(pieces.concat());
    events.push(done);
    events
}

#[test]
fn a_repeat_equal_to_its_deltas_is_masked_from_the_record() {
    let text = "mail bob@example.com or call, ssn 123-45-6789 ok";
    let (scanned, out) = fed(
        &text_events(&["mail bob@exa", "mple.com or call, ssn 123-", "45-6789 ok"]),
        1 << 20,
    );
    let masks = scanned
        .recorded_masks(text, Form::Plain)
        .expect("the record is the text");
    assert_eq!(masks.len(), 2);
    assert!(
        scanned.recorded_masks(text, Form::Json).is_none(),
        "another form is scanned"
    );
    assert!(scanned.recorded_masks(&text.replace("ok", "OK"), Form::Plain).is_none());
    let done = out.lines().rfind(|l| l.starts_with("data: ")).expect("done");
    assert!(
        done.contains(r#""text":"mail [EMAIL] or call, ssn [US_SSN] ok""#),
        "{done}"
    );
}

#[test]
fn a_repeat_that_differs_from_its_deltas_is_scanned() {
    let mut events = text_events(&["clean ", "words"]);
    events[2]["text"] = json!("clean words to eve@example.net");
    let (_, out) = fed(&events, 1 << 20);
    assert!(out.contains(r#""text":"clean words to [EMAIL]""#), "{out}");
    // A repeat with a blocking keyword its deltas did not have ends the stream.
    events[2]["text"] = json!("clean words, falcon");
    let (scanned, out) = fed(&events, 1 << 20);
    assert!(scanned.done, "{out}");
    assert!(
        out.contains("content_policy_violation") && !out.contains("falcon"),
        "{out}"
    );
}

#[test]
fn records_are_bounded_and_past_the_bound_repeats_are_scanned() {
    let text = format!("{} bob@example.com", "word ".repeat(100));
    let pieces: Vec<&str> = vec![&text[..200], &text[200..]];
    let (scanned, out) = fed(&text_events(&pieces), 300);
    assert!(scanned.recorded <= 300, "{}", scanned.recorded);
    assert!(
        scanned.recorded_masks(&text, Form::Plain).is_none(),
        "forgotten past the cap"
    );
    assert!(
        out.contains(r#"word  [EMAIL]","type":"response.output_text.done""#) && !out.contains("bob@"),
        "{out}"
    );
}

#[test]
fn a_clean_repeat_goes_out_as_it_came() {
    let mut scanned = scanned("", 1 << 20);
    let mut out = BytesMut::new();
    let delta = r#"{"type":"response.output_text.delta","output_index":0,"content_index":0,"delta":"plain words"}"#;
    scanned
        .event("response.output_text.delta", delta, &mut out)
        .expect("delta");
    // Written as no serializer writes it: a rewrite would show.
    let done = r#"{"type": "response.output_text.done", "output_index": 0, "content_index": 0, "text": "plain words"}"#;
    out.clear();
    scanned
        .event("response.output_text.done", done, &mut out)
        .expect("done");
    let out = String::from_utf8(out.to_vec()).expect("utf-8");
    assert!(out.ends_with(&format!("data: {done}\n\n")), "{out}");
}
