//! Guardrail scanning cost, in microseconds per KB of text: a chat request through the
//! request guard (parse, scan, mask, write) and a streamed answer through the response guard
//! (SSE parse, per-event JSON, windowed scan), with every builtin detector, a pattern and
//! keywords. `cargo bench --bench guardrails` (issue 12's target: ≤ 5 µs per KB).
//!
//! `GUARDRAILS_BENCH_CASE=<n> GUARDRAILS_BENCH_RUNS=<r>` runs case `n` `r` times untimed and
//! exits: under `valgrind --tool=callgrind`, the instructions of two run counts give the
//! instructions per KB without the noise of a shared machine (bench/guardrails-callgrind.sh).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use bytes::Bytes;
use http_body_util::BodyExt;
use modelgate::crd::Guardrails;
use modelgate::gateway::egress::Policy;
use modelgate::gateway::guardrails::{check_request, guard_response, Guard, GuardMetrics};
use modelgate::gateway::metrics::Endpoint;
use modelgate::gateway::ClientPool;

const SPEC: &str = r#"{content: [
  {name: pii, builtin: [email, creditCard, usSSN, phone, ipAddress, iban], action: mask, "on": [both]},
  {name: secrets, builtin: [awsAccessKey, privateKey, openaiKey, githubToken], patterns: ["(?i)project\\s+falcon"], keywords: [bluebird, nightjar, "red team"], action: block, "on": [both]}
]}"#;

/// About `kb` KB of ordinary prose with numbers, versions and dates, and one email per KB.
fn prose(kb: usize) -> String {
    let sentence = "On 2024-05-17 release 2.4.1 of the service moved 1,250 requests/s from 10:30 to 11:45; \
                    see std::collections::HashMap and order #88231 for the details of the change. ";
    let mut text = String::new();
    while text.len() < kb * 1024 {
        text.push_str(sentence);
        if text.len() % 1024 < sentence.len() {
            text.push_str("Mail jane.doe@example.com about it. ");
        }
    }
    text
}

fn measure(what: &str, bytes: usize, run: &mut dyn FnMut()) {
    for _ in 0..20 {
        run();
    }
    let mut rounds = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < Duration::from_millis(300) {
            run();
            n += 1;
        }
        rounds.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(n) / (bytes as f64 / 1024.0));
    }
    rounds.sort_by(f64::total_cmp);
    println!(
        "{what}: {:.2} µs/KB (median of 7; min {:.2}, max {:.2})",
        rounds[3], rounds[0], rounds[6]
    );
}

/// Bytes of text per streamed delta: `GUARDRAILS_BENCH_DELTA`, default 24 (about 6 tokens;
/// 4 is one token a delta, as many providers stream).
fn delta_size() -> usize {
    std::env::var("GUARDRAILS_BENCH_DELTA")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(24)
}

/// `text` cut into deltas of [`delta_size`] bytes (on character boundaries).
fn deltas(text: &str) -> Vec<&str> {
    let size = delta_size();
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let mut end = (at + size).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        pieces.push(&text[at..end]);
        at = end;
    }
    pieces
}

fn chat_stream(text: &str) -> String {
    let mut sse = String::new();
    for piece in deltas(text) {
        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
        sse.push_str(&format!("data: {chunk}\n\n"));
    }
    sse + "data: [DONE]\n\n"
}

fn named(events: Vec<Value>) -> String {
    let mut sse = String::new();
    for event in events {
        sse.push_str(&format!(
            "event: {}\ndata: {event}\n\n",
            event["type"].as_str().unwrap_or_default()
        ));
    }
    sse
}

fn anthropic_stream(text: &str) -> String {
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [], "usage": {"input_tokens": 1, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ];
    for piece in deltas(text) {
        events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}));
    events.push(json!({"type": "message_stop"}));
    named(events)
}

/// A Responses stream, with the whole text repeated by the `done` events and the final
/// response as the API does (so about three times the text is scanned per KB streamed).
fn responses_stream(text: &str) -> String {
    let part = json!({"type": "output_text", "text": text, "annotations": []});
    let item = json!({"id": "msg_1", "type": "message", "role": "assistant", "status": "completed", "content": [part]});
    let at = json!({"item_id": "msg_1", "output_index": 0, "content_index": 0});
    let mut events =
        vec![json!({"type": "response.created", "response": {"id": "r", "object": "response", "output": []}})];
    for piece in deltas(text) {
        let mut delta = at.clone();
        delta["type"] = json!("response.output_text.delta");
        delta["delta"] = json!(piece);
        events.push(delta);
    }
    let mut done = at.clone();
    done["type"] = json!("response.output_text.done");
    done["text"] = json!(text);
    events.push(done);
    let mut part_done = at;
    part_done["type"] = json!("response.content_part.done");
    part_done["part"] = part;
    events.push(part_done);
    events.push(json!({"type": "response.output_item.done", "output_index": 0, "item": item}));
    events.push(json!({"type": "response.completed", "response": {"id": "r", "object": "response", "output": [item]}}));
    for (n, event) in events.iter_mut().enumerate() {
        event["sequence_number"] = json!(n);
    }
    named(events)
}

type Case<'a> = (String, usize, Box<dyn FnMut() + 'a>);

fn main() {
    let spec: Guardrails = serde_yaml_ng::from_str(SPEC).expect("spec");
    let clients = ClientPool::new(Arc::new(Policy::new(Vec::new(), false, Vec::new(), Vec::new())));
    let guard = Arc::new(
        Guard::compile("bench", &spec, &clients)
            .expect("compile")
            .expect("guard"),
    );
    let metrics = Arc::new(GuardMetrics::unregistered());
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let text = prose(16);
    let clean = text.replace("jane.doe@example.com", "Jane");

    let request = |content: &str| {
        Bytes::from(
            json!({"model": "bench", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}]})
                .to_string(),
        )
    };
    let check = |body: Bytes| {
        let (guard, metrics, runtime) = (&guard, &metrics, &runtime);
        move || {
            let out = runtime.block_on(check_request(
                Some(guard.as_ref()),
                Endpoint::chat_completions,
                &body,
                metrics,
            ));
            assert!(out.is_ok());
        }
    };
    let stream = |endpoint: Endpoint, sse: String| {
        let (guard, metrics, runtime) = (&guard, &metrics, &runtime);
        let sse = Bytes::from(sse);
        move || {
            let mut response = http::Response::new(axum::body::Body::from(sse.clone()));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/event-stream"),
            );
            let out = runtime.block_on(async {
                let scanned = guard_response(Some(guard), endpoint, response, metrics).await;
                scanned.into_body().collect().await.map(|c| c.to_bytes().len())
            });
            assert!(out.is_ok());
        }
    };
    let clean_body = request(&clean);
    let masked_body = request(&text);
    let size = delta_size();
    let mut cases: Vec<Case<'_>> = vec![
        (
            "request, clean".into(),
            clean_body.len(),
            Box::new(check(clean_body.clone())),
        ),
        (
            "request, 16 emails masked".into(),
            masked_body.len(),
            Box::new(check(masked_body.clone())),
        ),
        (
            format!("streamed chat answer, {size}-byte deltas (per KB of text)"),
            text.len(),
            Box::new(stream(Endpoint::chat_completions, chat_stream(&text))),
        ),
        (
            format!("streamed Anthropic answer, {size}-byte deltas (per KB of text)"),
            text.len(),
            Box::new(stream(Endpoint::messages, anthropic_stream(&text))),
        ),
        (
            format!("streamed Responses answer, {size}-byte deltas (per KB of text)"),
            text.len(),
            Box::new(stream(Endpoint::responses, responses_stream(&text))),
        ),
        (
            format!("streamed Responses answer, clean, {size}-byte deltas (per KB of text)"),
            clean.len(),
            Box::new(stream(Endpoint::responses, responses_stream(&clean))),
        ),
    ];
    let fixed = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok());
    if let (Some(case), Some(runs)) = (fixed("GUARDRAILS_BENCH_CASE"), fixed("GUARDRAILS_BENCH_RUNS")) {
        let (name, bytes, run) = &mut cases[case];
        for _ in 0..runs {
            run();
        }
        println!("{name}: {bytes} bytes, {runs} runs");
        return;
    }
    for (name, bytes, run) in &mut cases {
        measure(name, *bytes, run.as_mut());
    }
}
