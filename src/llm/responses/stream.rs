//! Canonical chunks written as a Responses API event stream, in the order the official SDKs
//! check: `response.created`, `response.in_progress`; per output item
//! `response.output_item.added`, its parts and deltas (`response.content_part.added`,
//! `response.output_text.delta` ... `response.output_text.done`, `response.content_part.done`,
//! or `response.function_call_arguments.delta` ... `.done`), `response.output_item.done`;
//! then `response.completed` (or `response.incomplete` when the answer was cut short) with
//! the whole response and its usage. A failure after the start is an `error` event followed
//! by `response.failed`, never a completion. Every event has its `type` and an increasing
//! `sequence_number` from 0.
//!
//! Each delta is written as soon as it arrives. The protocol repeats the whole text in the
//! `.done` events and the whole output in `response.completed`, so the encoder keeps the
//! answer's text (bounded by the answer's length, never the upstream's framing).

use bytes::BytesMut;
use serde::Serialize;
use serde_json::json;

use super::response::{
    incomplete_reason, item_id, Echo, ItemStatus, OutputContent, OutputItem, ResponseObject, ResponsesUsage,
};
use crate::llm::chat::{ChatChunk, FinishReason, ToolCallDelta};
use crate::llm::openai::error_json;
use crate::llm::stream::{write_sse, StreamEncoder};
use crate::llm::UpstreamError;

/// Writes canonical chunks as Responses API events.
pub struct ResponsesStreamEncoder {
    id: String,
    model: String,
    echo: Echo,
    /// When the response was created, if the upstream does not say.
    created_at: i64,
    sequence: u64,
    started: bool,
    items: Vec<OutputItem>,
    /// The index in `items` of the item being written.
    open: Option<usize>,
    /// The index of the message part being written, in the open message.
    open_part: Option<usize>,
    /// The output index of each canonical tool call (by its `index`).
    calls: Vec<(u32, usize)>,
    finish: Option<FinishReason>,
    usage: Option<ResponsesUsage>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Text,
    Refusal,
}

/// An event about one item (`item_id`, `output_index`) or one of its parts.
#[derive(Serialize)]
struct ItemEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<&'a OutputContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
}

impl<'a> ItemEvent<'a> {
    fn new(kind: &'static str, sequence_number: u64, item_id: &'a str, output_index: usize) -> Self {
        ItemEvent {
            kind,
            sequence_number,
            item_id,
            output_index,
            content_index: None,
            delta: None,
            text: None,
            refusal: None,
            arguments: None,
            part: None,
            logprobs: None,
        }
    }
}

#[derive(Serialize)]
struct OutputItemEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    output_index: usize,
    item: &'a OutputItem,
}

#[derive(Serialize)]
struct LifecycleEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    response: &'a ResponseObject<'a>,
}

fn write<T: Serialize>(out: &mut BytesMut, kind: &str, event: &T) {
    if let Ok(text) = serde_json::to_string(event) {
        write_sse(out, Some(kind), &text);
    }
}

impl ResponsesStreamEncoder {
    /// An encoder for response `id` (`resp_...`) to a request for `model` (the alias), with
    /// the request's settings to echo; `created_at` when the upstream gives no time.
    pub fn new(id: String, model: String, echo: Echo, created_at: i64) -> Self {
        ResponsesStreamEncoder {
            id,
            model,
            echo,
            created_at,
            sequence: 0,
            started: false,
            items: Vec::new(),
            open: None,
            open_part: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    fn next(&mut self) -> u64 {
        let sequence = self.sequence;
        self.sequence += 1;
        sequence
    }

    fn lifecycle(&mut self, out: &mut BytesMut, kind: &'static str, object: impl FnOnce(&mut ResponseObject<'_>)) {
        let sequence_number = self.next();
        let mut response = ResponseObject::new(&self.id, &self.model, self.created_at, &self.echo);
        response.usage = self.usage.clone();
        if kind != "response.created" && kind != "response.in_progress" {
            response.output = &self.items;
        }
        object(&mut response);
        write(
            out,
            kind,
            &LifecycleEvent {
                kind,
                sequence_number,
                response: &response,
            },
        );
    }

    fn start(&mut self, out: &mut BytesMut, created: i64) {
        if self.started {
            return;
        }
        self.started = true;
        if created > 0 {
            self.created_at = created;
        }
        self.lifecycle(out, "response.created", |_| {});
        self.lifecycle(out, "response.in_progress", |_| {});
    }

    fn item_event(&mut self, out: &mut BytesMut, kind: &'static str, index: usize) {
        let sequence_number = self.next();
        write(
            out,
            kind,
            &OutputItemEvent {
                kind,
                sequence_number,
                output_index: index,
                item: &self.items[index],
            },
        );
    }

    /// Adds an item and announces it; it is now the one being written.
    fn open_item(&mut self, out: &mut BytesMut, item: OutputItem) -> usize {
        self.close(out);
        let index = self.items.len();
        self.items.push(item);
        self.open = Some(index);
        self.item_event(out, "response.output_item.added", index);
        index
    }

    /// Text or a refusal for the message being written (opened, with its part, if needed).
    fn text(&mut self, out: &mut BytesMut, kind: PartKind, delta: &str) {
        let index = match self.open {
            Some(index) if matches!(self.items[index], OutputItem::Message { .. }) => index,
            _ => {
                let id = item_id("msg", &self.id, self.items.len());
                self.open_item(out, OutputItem::message(id))
            }
        };
        let current = self.open_part.and_then(|part| match self.part(index, part) {
            Some(OutputContent::OutputText { .. }) if kind == PartKind::Text => Some(part),
            Some(OutputContent::Refusal { .. }) if kind == PartKind::Refusal => Some(part),
            _ => None,
        });
        let part = match current {
            Some(part) => part,
            None => self.open_part(out, index, kind),
        };
        let sequence_number = self.next();
        let OutputItem::Message { id, content, .. } = &mut self.items[index] else {
            return;
        };
        let mut event = ItemEvent::new("", sequence_number, id, index);
        event.content_index = Some(part);
        event.delta = Some(delta);
        match &mut content[part] {
            OutputContent::OutputText { text, .. } => {
                text.push_str(delta);
                event.kind = "response.output_text.delta";
                event.logprobs = Some([]);
            }
            OutputContent::Refusal { refusal } => {
                refusal.push_str(delta);
                event.kind = "response.refusal.delta";
            }
        }
        write(out, event.kind, &event);
    }

    fn part(&self, index: usize, part: usize) -> Option<&OutputContent> {
        match &self.items[index] {
            OutputItem::Message { content, .. } => content.get(part),
            OutputItem::FunctionCall { .. } => None,
        }
    }

    fn open_part(&mut self, out: &mut BytesMut, index: usize, kind: PartKind) -> usize {
        self.close_part(out);
        let sequence_number = self.next();
        let OutputItem::Message { id, content, .. } = &mut self.items[index] else {
            return 0;
        };
        content.push(match kind {
            PartKind::Text => OutputContent::text(String::new()),
            PartKind::Refusal => OutputContent::Refusal { refusal: String::new() },
        });
        let part = content.len() - 1;
        let mut event = ItemEvent::new("response.content_part.added", sequence_number, id, index);
        event.content_index = Some(part);
        event.part = content.last();
        write(out, event.kind, &event);
        self.open_part = Some(part);
        part
    }

    fn close_part(&mut self, out: &mut BytesMut) {
        let (Some(index), Some(part)) = (self.open, self.open_part.take()) else {
            return;
        };
        let (done, part_done) = (self.next(), self.next());
        let OutputItem::Message { id, content, .. } = &self.items[index] else {
            return;
        };
        let Some(whole) = content.get(part) else { return };
        let mut event = ItemEvent::new("", done, id, index);
        event.content_index = Some(part);
        match whole {
            OutputContent::OutputText { text, .. } => {
                event.kind = "response.output_text.done";
                event.text = Some(text);
                event.logprobs = Some([]);
            }
            OutputContent::Refusal { refusal } => {
                event.kind = "response.refusal.done";
                event.refusal = Some(refusal);
            }
        }
        write(out, event.kind, &event);
        let mut event = ItemEvent::new("response.content_part.done", part_done, id, index);
        event.content_index = Some(part);
        event.part = Some(whole);
        write(out, event.kind, &event);
    }

    /// Finishes the item being written: its closing events, then `output_item.done`. The item
    /// still open when the answer was cut short is `incomplete`.
    fn close(&mut self, out: &mut BytesMut) {
        let Some(index) = self.open else { return };
        self.close_part(out);
        if let OutputItem::FunctionCall { id, arguments, .. } = &self.items[index] {
            let (id, arguments) = (id.clone(), arguments.clone());
            let mut event = ItemEvent::new("response.function_call_arguments.done", self.next(), &id, index);
            event.arguments = Some(&arguments);
            write(out, event.kind, &event);
        }
        let status = match incomplete_reason(self.finish) {
            Some(_) => ItemStatus::Incomplete,
            None => ItemStatus::Completed,
        };
        self.items[index].set_status(status);
        self.item_event(out, "response.output_item.done", index);
        self.open = None;
    }

    fn tool_call(&mut self, out: &mut BytesMut, call: &ToolCallDelta) {
        let function = call.function.as_ref();
        let fragment = function.and_then(|f| f.arguments.as_deref()).unwrap_or_default();
        let index = match self.calls.iter().find(|(i, _)| *i == call.index) {
            Some((_, index)) => *index,
            None => {
                let index = self.items.len();
                let item = OutputItem::FunctionCall {
                    id: item_id("fc", &self.id, index),
                    status: ItemStatus::InProgress,
                    arguments: String::new(),
                    call_id: call.id.clone().unwrap_or_else(|| item_id("call", &self.id, index)),
                    name: function.and_then(|f| f.name.clone()).unwrap_or_default(),
                };
                self.open_item(out, item);
                self.calls.push((call.index, index));
                index
            }
        };
        if fragment.is_empty() {
            return;
        }
        // Canonical streams finish one call before the next starts; a fragment for a call
        // already closed still reaches the client (by its output index) and the final output.
        let sequence_number = self.next();
        if let OutputItem::FunctionCall { id, arguments, .. } = &mut self.items[index] {
            arguments.push_str(fragment);
            let mut event = ItemEvent::new("response.function_call_arguments.delta", sequence_number, id, index);
            event.delta = Some(fragment);
            write(out, event.kind, &event);
        }
    }
}

impl StreamEncoder for ResponsesStreamEncoder {
    fn chunk(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        self.start(out, chunk.created);
        if let Some(usage) = &chunk.usage {
            self.usage = Some(ResponsesUsage::from(usage));
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            let delta = &choice.delta;
            if let Some(text) = delta.content.as_deref().filter(|t| !t.is_empty()) {
                self.text(out, PartKind::Text, text);
            }
            if let Some(refusal) = delta.refusal.as_deref().filter(|t| !t.is_empty()) {
                self.text(out, PartKind::Refusal, refusal);
            }
            for call in delta.tool_calls.iter().flatten() {
                self.tool_call(out, call);
            }
            if let Some(finish) = choice.finish_reason {
                self.finish = Some(finish);
                self.close(out);
            }
        }
    }

    fn done(&mut self, out: &mut BytesMut) {
        self.start(out, 0);
        self.close(out);
        if self.items.is_empty() {
            // An empty answer is still one (empty) message, as a non-streamed one is.
            let index = self.open_item(out, OutputItem::message(item_id("msg", &self.id, 0)));
            self.open_part(out, index, PartKind::Text);
            self.close(out);
        }
        let finish = self.finish;
        let kind = match incomplete_reason(finish) {
            Some(_) => "response.incomplete",
            None => "response.completed",
        };
        self.lifecycle(out, kind, |response| response.finished(finish));
    }

    fn error(&mut self, error: &UpstreamError, out: &mut BytesMut) {
        self.start(out, 0);
        let envelope = error_json(error);
        let sequence_number = self.next();
        let event = json!({
            "type": "error",
            "sequence_number": sequence_number,
            "code": envelope["error"]["code"],
            "message": error.message,
            "param": error.param,
        });
        write(out, "error", &event);
        self.lifecycle(out, "response.failed", |response| response.failed(error));
    }
}
