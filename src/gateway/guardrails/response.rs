//! The response side: the answer's text, scanned as it passes. A streamed answer is read an
//! event at a time; each slot's (choice's) text goes through a [`Window`], so matched text is
//! masked before the client sees it, or the stream ends with an error event (no `[DONE]`). A
//! whole answer is read (bounded), scanned and written again only when something changed.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{header, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use super::matcher::Matcher;
use super::metrics::{Action, Side};
use super::splice::{splice_raw, Masked};
use super::surface::shape::Shapes;
use super::surface::{group_of, kind_of, surface, Surface};
use super::window::{Released, Window};
use super::{unreadable, violation, Guard, GuardMetrics};
use crate::crd::Direction;
use crate::gateway::error::ApiError;
use crate::gateway::metrics::Endpoint;
use crate::gateway::surfaces::{error_response, Envelope};
use crate::llm::stream::{write_sse, write_sse_bytes};

#[path = "one_delta.rs"]
mod one_delta;
#[path = "record.rs"]
mod record;
#[cfg(test)]
#[path = "record_tests.rs"]
mod record_tests;
#[cfg(test)]
#[path = "spliced_tests.rs"]
mod spliced_tests;
#[path = "sse_split.rs"]
mod sse_split;
#[path = "whole.rs"]
mod whole;
use sse_split::Splitter;
use whole::scan_whole;

/// Largest whole answer read for scanning.
const MAX_ANSWER: usize = 64 << 20;
use record::RECORD_CAP;

pub async fn wrap(
    guard: Arc<Guard>,
    endpoint: Endpoint,
    response: Response<Body>,
    metrics: Arc<GuardMetrics>,
) -> Response<Body> {
    let surface = surface(endpoint);
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let streamed = content_type.starts_with("text/event-stream");
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if streamed {
        let scanned = Scanned::new(guard, surface, body, metrics);
        return Response::from_parts(parts, Body::new(scanned));
    }
    let bytes = match Limited::new(body, MAX_ANSWER).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::warn!(alias = %guard.alias, error = %e, "the answer could not be read for the guardrails");
            let error = ApiError {
                status: http::StatusCode::BAD_GATEWAY,
                kind: "upstream_error",
                code: Some("upstream_error"),
                param: None,
                message: format!("The provider's answer for the model '{}' could not be read in full ({e}), so its guardrails could not check it. Retry the request.", guard.alias),
                headers: None,
            };
            return error_response(Envelope::of(endpoint), &error);
        }
    };
    match scan_whole(&guard, surface, &bytes, &metrics) {
        Ok(Some(rewritten)) => Response::from_parts(parts, Body::from(rewritten)),
        Ok(None) => Response::from_parts(parts, Body::from(bytes)),
        Err(error) => error_response(Envelope::of(endpoint), &error),
    }
}

/// A streamed answer under the response rules.
struct Scanned {
    inner: Body,
    splitter: Splitter,
    /// Each slot's window, and its first event with text (the model for events carrying
    /// released text).
    slots: Vec<Slot>,
    guard: Arc<Guard>,
    surface: &'static dyn Surface,
    metrics: Arc<GuardMetrics>,
    /// Rules whose masks were counted, as bits.
    counted: u64,
    /// Memory the slots' records hold, and the most they may ([`RECORD_CAP`]; less in tests).
    recorded: usize,
    record_cap: usize,
    /// The `sequence_number` of the next event written, when the surface numbers events.
    sequence: Option<u64>,
    done: bool,
    /// Whether events with one text delta take the typed fast path ([`one_delta`]): always,
    /// but in the tests that compare it with the general path.
    typed: bool,
    /// Whether the fast path first locates the delta in the event's bytes
    /// ([`Surface::locate`]): always, but in the tests that compare it with the typed view.
    located: bool,
    /// The shapes of the delta events located so far.
    shapes: Shapes,
    /// Whether an event whose only changes are masked whole texts and its number is written
    /// as its own bytes with those spliced in: always, but in the tests that compare it with
    /// the event written again from its value.
    spliced: bool,
}

struct Slot {
    id: u32,
    window: Window,
    template: Value,
}

impl Scanned {
    fn new(guard: Arc<Guard>, surface: &'static dyn Surface, body: Body, metrics: Arc<GuardMetrics>) -> Self {
        Scanned {
            inner: body,
            splitter: Splitter::default(),
            slots: Vec::new(),
            guard,
            surface,
            metrics,
            counted: 0,
            recorded: 0,
            record_cap: RECORD_CAP,
            sequence: None,
            done: false,
            typed: true,
            located: true,
            shapes: Shapes::default(),
            spliced: true,
        }
    }

    fn slot(&mut self, id: u32) -> &mut Slot {
        let at = self.slot_at(id);
        &mut self.slots[at]
    }

    /// Scans the events completed by `bytes`; `Err` ends the stream with an error event.
    fn feed(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), ()> {
        let mut splitter = std::mem::take(&mut self.splitter);
        let result = splitter.feed(bytes, &mut |name, data| self.event(name, data, out));
        self.splitter = splitter;
        result
    }

    fn event(&mut self, name: &str, data: &str, out: &mut BytesMut) -> Result<(), ()> {
        if let Some(done) = self.one_delta(name, data, out) {
            return done;
        }
        let parsed = match data.trim_start().starts_with('{') {
            true => match super::strict::from_str(data) {
                Ok(value) => Some(value),
                Err(error) => {
                    tracing::warn!(alias = %self.guard.alias, %error, "a streamed event the guardrails cannot read ended the stream");
                    self.fail(&unreadable(&self.guard.alias, "a streamed event"), out);
                    return Err(());
                }
            },
            false => None,
        };
        if self.surface.is_end(data, parsed.as_ref()) {
            self.flush(out)?;
        }
        let guard = self.guard.clone();
        let (Some(matcher), Some(mut value)) = (guard.response.as_ref(), parsed) else {
            write_event(out, name, data);
            return Ok(());
        };
        let mut deltas = Vec::new();
        self.surface.event_texts(&mut value, &mut |slot, text, ends| {
            deltas.push((slot, text.map(std::mem::take), ends));
        });
        let mut released = Vec::with_capacity(deltas.len());
        let mut before = Vec::new();
        let surface = self.surface;
        for (id, text, ends) in &deltas {
            let at = self.slot_at(*id);
            let slot = &mut self.slots[at];
            if text.is_some() && slot.template.is_null() {
                slot.template = value.clone();
            }
            let result = self.push(matcher, at, text.as_deref().unwrap_or_default(), *ends);
            let masked = self.slots[at].window.masked;
            self.count_masks(matcher, masked);
            match result {
                Released::Blocked(rule) => {
                    self.block(matcher, rule, out);
                    return Err(());
                }
                Released::Text(t) if text.is_some() => released.push(t),
                Released::Text(t) if !t.is_empty() => {
                    before.push(surface.text_event(*id, t, &self.slot(*id).template));
                }
                Released::Text(_) => {}
            }
            if *ends {
                self.end_group(matcher, *id, &mut before, out)?;
            }
        }
        // Texts the event repeats whole: masked as their deltas were when they are the text
        // of one slot, else scanned; masked, or the stream ends. Each masked one is noted
        // (by its address) to be spliced into the event's own bytes.
        let (mut blocked, mut masked, mut findings) = (None, Vec::new(), Vec::new());
        let mut spliced = Vec::new();
        self.surface.event_whole_texts(&mut value, &mut |text, form| {
            if blocked.is_some() {
                return;
            }
            let address = std::ptr::from_ref::<String>(text) as usize;
            let found = match self.recorded_masks(text, form) {
                Some([]) => return,
                Some(masks) => {
                    *text = matcher.mask(text, masks);
                    masked.extend(masks.iter().map(|f| f.rule));
                    masks
                }
                None => {
                    let before = masked.len();
                    blocked = matcher.apply(text, None, form, &mut findings, &mut masked);
                    if masked.len() == before {
                        return;
                    }
                    &findings
                }
            };
            let found = found.iter().map(|f| (f.start, f.end, matcher.placeholder(f)));
            spliced.push(Masked {
                address,
                found: found.collect(),
            });
        });
        if let Some(rule) = blocked {
            self.block(matcher, rule, out);
            return Err(());
        }
        let mut rewritten = !masked.is_empty();
        if rewritten {
            let bits = masked.iter().filter(|r| **r < 64).fold(0, |bits, r| bits | 1 << r);
            self.count_masks(matcher, bits);
        }
        // Token log probabilities would show held or masked text before it is checked.
        let scrubbed = self.surface.scrub(&mut value);
        rewritten |= scrubbed;
        for extra in before {
            self.write_value(out, extra);
        }
        let renumbered = self.renumber(&mut value);
        rewritten |= renumbered;
        // One delta and nothing else changed: its released text goes into the raw event.
        if let ([(id, Some(original), _)], [text], false) = (&deltas[..], &released[..], rewritten) {
            let key = surface.delta_key(kind_of(*id)).unwrap_or_default();
            if let Some(spliced) = splice(data, key, original, text).filter(|_| !key.is_empty()) {
                write_event(out, name, &spliced);
                return Ok(());
            }
        }
        // Deltas without text (a `*.done` ending its slot) leave the event as it came.
        let texts = deltas.iter().any(|(_, text, _)| text.is_some());
        if rewritten && !texts && !scrubbed && self.spliced {
            // Only whole texts masked and the number changed: the event's own bytes with
            // those replaced (a walk beside the value: a text cannot fake the number's key).
            let number = renumbered.then(|| value.get("sequence_number")).flatten();
            let digits = number.map(Value::to_string).unwrap_or_default();
            let raw: Vec<(usize, &[u8])> = number
                .map(|n| (std::ptr::from_ref(n) as usize, digits.as_bytes()))
                .into_iter()
                .collect();
            if let Some(bytes) = splice_raw(data.as_bytes(), &value, &spliced, &raw) {
                write_event_bytes(out, name, &bytes);
                return Ok(());
            }
        }
        let changed = rewritten || texts;
        let mut released = released.into_iter();
        self.surface.event_texts(&mut value, &mut |_, text, _| {
            if let (Some(text), Some(r)) = (text, released.next()) {
                *text = r;
            }
        });
        match changed {
            true => write_event(out, name, &value.to_string()),
            false => write_event(out, name, data),
        }
        Ok(())
    }

    /// Gives `event` the next sequence number, when the surface numbers its events (events
    /// the guard adds keep the numbers consecutive); whether it changed.
    fn renumber(&mut self, event: &mut Value) -> bool {
        if !self.surface.sequenced() {
            return false;
        }
        let Some(number) = event.get_mut("sequence_number") else {
            return false;
        };
        let next = *self.sequence.get_or_insert(number.as_u64().unwrap_or(0));
        self.sequence = Some(next + 1);
        if number.as_u64() == Some(next) {
            return false;
        }
        *number = Value::from(next);
        true
    }

    /// Writes an event the guard made, named as its surface names it.
    fn write_value(&mut self, out: &mut BytesMut, mut event: Value) {
        self.renumber(&mut event);
        write_sse(out, self.surface.event_name(&event), &event.to_string());
    }

    /// Counts each rule that masked something in this stream, once.
    fn count_masks(&mut self, matcher: &Matcher, masked: u64) {
        let new = masked & !self.counted;
        if new == 0 {
            return;
        }
        self.counted |= new;
        for (rule, info) in matcher.rules.iter().enumerate() {
            if rule < 64 && new & (1 << rule) != 0 {
                self.metrics
                    .count(&self.guard.alias, &info.name, Action::mask, Side::response);
            }
        }
    }

    /// Releases the held text of the other slots of `ended`'s group (a choice's tool calls and
    /// reasoning when it finishes), as events written before the one that ends it.
    fn end_group(
        &mut self,
        matcher: &Matcher,
        ended: u32,
        before: &mut Vec<Value>,
        out: &mut BytesMut,
    ) -> Result<(), ()> {
        for at in 0..self.slots.len() {
            let id = self.slots[at].id;
            if id != ended && group_of(id) == group_of(ended) {
                before.extend(self.release(matcher, at, out)?);
            }
        }
        Ok(())
    }

    /// Releases every slot's held text (the stream is ending).
    fn flush(&mut self, out: &mut BytesMut) -> Result<(), ()> {
        let guard = self.guard.clone();
        let Some(matcher) = guard.response.as_ref() else {
            return Ok(());
        };
        for at in 0..self.slots.len() {
            if let Some(event) = self.release(matcher, at, out)? {
                self.write_value(out, event);
            }
        }
        Ok(())
    }

    /// Ends the slot at `at`: the event carrying its held text, if any (`Err`: the stream
    /// ended in an error event).
    fn release(&mut self, matcher: &Matcher, at: usize, out: &mut BytesMut) -> Result<Option<Value>, ()> {
        if !self.slots[at].window.holds() {
            return Ok(None);
        }
        let result = self.push(matcher, at, "", true);
        let masked = self.slots[at].window.masked;
        self.count_masks(matcher, masked);
        match result {
            Released::Blocked(rule) => {
                self.block(matcher, rule, out);
                Err(())
            }
            Released::Text(text) if !text.is_empty() => {
                let slot = &self.slots[at];
                Ok(Some(self.surface.text_event(slot.id, text, &slot.template)))
            }
            Released::Text(_) => Ok(None),
        }
    }

    fn block(&mut self, matcher: &Matcher, rule: u16, out: &mut BytesMut) {
        let name = &matcher.rules[usize::from(rule)].name;
        self.metrics
            .count(&self.guard.alias, name, Action::block, Side::response);
        self.fail(&violation(&self.guard.alias, name, Direction::Response), out);
    }

    /// Ends the stream with `error` as its last event.
    fn fail(&mut self, error: &ApiError, out: &mut BytesMut) {
        let (event, mut data) = self.surface.error_event(error);
        self.renumber(&mut data);
        write_sse(out, event, &data.to_string());
        self.done = true;
    }
}

/// `data` with the JSON string `"<key>":<original>` replaced by `released`, when it appears
/// exactly once as written by `serde_json` (else `None`: the event is written again). Text a
/// model writes cannot fake it: inside a JSON string every quote is escaped, so an unescaped
/// `"<key>":` is the provider's own key.
///
/// The key is looked for, then the value compared where it follows: a finder of the whole
/// `"<key>":<value>` costs tens of instructions per byte of the value to build (45k for a
/// 1 KB delta), a comparison one.
pub(super) fn splice(data: &str, key: &str, original: &str, released: &str) -> Option<String> {
    let value = serde_json::to_string(original).ok()?;
    let name = format!("\"{key}\":");
    let mut found = memchr::memmem::find_iter(data.as_bytes(), name.as_bytes()).filter(|at| {
        data.as_bytes()
            .get(at + name.len()..)
            .is_some_and(|rest| rest.starts_with(value.as_bytes()))
    });
    let at = found.next()?;
    if found.next().is_some() || data[..at].ends_with('\\') {
        return None;
    }
    let value_at = at + name.len();
    let mut out = String::with_capacity(data.len() + released.len());
    out.push_str(&data[..value_at]);
    out.push_str(&serde_json::to_string(released).ok()?);
    out.push_str(&data[value_at + value.len()..]);
    Some(out)
}

/// Writes one server-sent event, with its name unless it is the default `message`.
fn write_event(out: &mut BytesMut, name: &str, data: &str) {
    write_sse(out, (name != "message").then_some(name), data);
}

/// [`write_event`] for data as bytes (JSON text the guard spliced).
fn write_event_bytes(out: &mut BytesMut, name: &str, data: &[u8]) {
    write_sse_bytes(out, (name != "message").then_some(name), data);
}

impl http_body::Body for Scanned {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    // About what comes in goes out: one allocation, not a doubling ladder
                    // copying a large frame's events again and again.
                    let mut out = BytesMut::with_capacity(data.len() + data.len() / 8);
                    let _ = this.feed(&data, &mut out);
                    if out.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    let mut out = BytesMut::new();
                    let mut splitter = std::mem::take(&mut this.splitter);
                    let _ = splitter.finish(&mut |name, data| this.event(name, data, &mut out));
                    if !this.done {
                        let _ = this.flush(&mut out);
                    }
                    this.done = true;
                    if out.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                }
            }
        }
    }
}
