//! Guardrail scanning cost, in microseconds per KB of text: a chat request through the
//! request guard (parse, scan, mask, write) and a streamed answer through the response guard
//! (SSE parse, per-event JSON, windowed scan), with every builtin detector, a pattern and
//! keywords. `cargo bench --bench guardrails` (issue 12's target: ≤ 5 µs per KB).

use std::sync::Arc;
use std::time::{Duration, Instant};

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

fn measure(what: &str, bytes: usize, mut run: impl FnMut()) {
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
    for (name, content) in [("request, clean", &clean), ("request, 16 emails masked", &text)] {
        let body = Bytes::from(
            serde_json::json!({"model": "bench", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}]})
                .to_string(),
        );
        measure(name, body.len(), || {
            let out = runtime.block_on(check_request(
                Some(guard.as_ref()),
                Endpoint::chat_completions,
                &body,
                &metrics,
            ));
            assert!(out.is_ok());
        });
    }

    // The same text streamed in 24-byte deltas, one SSE event each.
    let mut sse = String::new();
    let mut at = 0;
    while at < text.len() {
        let mut end = (at + 24).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let chunk = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": &text[at..end]}, "finish_reason": null}]});
        sse.push_str(&format!("data: {chunk}\n\n"));
        at = end;
    }
    sse.push_str("data: [DONE]\n\n");
    let sse = Bytes::from(sse);
    measure("streamed answer, 24-byte deltas (per KB of text)", text.len(), || {
        let mut response = http::Response::new(axum::body::Body::from(sse.clone()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        let out = runtime.block_on(async {
            let scanned = guard_response(Some(&guard), Endpoint::chat_completions, response, &metrics).await;
            scanned.into_body().collect().await.map(|c| c.to_bytes().len())
        });
        assert!(out.is_ok());
    });
}
