//! Where the text is in each client API: the one thing the guardrails must know per surface.
//! Each inbound API plugs in with one [`Surface`] impl: OpenAI chat completions, completions
//! and embeddings ([`openai`]), Anthropic Messages and its token counting ([`anthropic`]), and
//! the OpenAI Responses API ([`responses`]).

mod anthropic;
mod locate;
mod openai;
mod responses;
pub mod shape;
pub mod typed;

use serde_json::Value;

use self::typed::OneDelta;
use crate::llm::compact::Compact;

pub use self::anthropic::{AnthropicMessages, ANTHROPIC_COUNT_TOKENS};
pub use self::openai::{OpenAiChat, OpenAiCompletions, OPENAI_EMBEDDINGS};
pub use self::responses::Responses;
pub use super::matcher::Form;
use crate::crd::MessageRole;
use crate::gateway::error::ApiError;
use crate::gateway::metrics::Endpoint;

/// The output-token fields of a request.
pub struct OutputFields {
    /// Fields that cap the output, any of which the client may set.
    pub read: &'static [&'static str],
    /// The field set when the client sets none.
    pub set: &'static str,
}

/// A client API's texts, as the guardrails see them. Every method works on the parsed JSON the
/// client sent or will receive, in that API's own shape.
pub trait Surface: Sync {
    /// Calls `each` with every text of a request that rules may scan, its role, and what it is
    /// ([`Form::Json`] for tool calls' arguments sent back as JSON source).
    fn request_texts(&self, body: &mut Value, each: &mut RequestTexts);

    /// The request fields that cap its output, when the API has them.
    fn output_fields(&self) -> Option<OutputFields>;

    /// Calls `each` with every text of a whole (non-streamed) answer: its text, reasoning and
    /// tool-call arguments, and what the text is ([`Form`]: JSON source for arguments as a
    /// string, signed for Anthropic thinking).
    fn answer_texts(&self, body: &mut Value, each: &mut WholeTexts);

    /// Calls `each` with the deltas of one streamed event: the slot (see [`slot_id`]) it
    /// belongs to, its text (`None` when the event has none), and whether the event ends the
    /// slot's group (a choice, content block or output item: every slot of it ends).
    fn event_texts(&self, data: &mut Value, each: &mut Deltas);

    /// Calls `each` with the texts of one streamed event that repeat, whole, text already
    /// streamed as deltas (the Responses API's `*.done` events and final response). They are
    /// masked or blocked as whole answers are.
    fn event_whole_texts(&self, _data: &mut Value, _each: &mut WholeTexts) {}

    /// Whether [`Surface::event_whole_texts`] repeats the deltas' text whole (the Responses
    /// API): each slot then keeps its text and masks, so a repeat is masked without a scan.
    fn repeats_deltas(&self) -> bool {
        false
    }

    /// An event carrying `text` for `slot`, shaped after `template` (the slot's first event
    /// with text): held text released where the stream's own events have no room for it.
    fn text_event(&self, slot: u32, text: String, template: &Value) -> Value;

    /// Empties what repeats an answer's or event's text token by token beside it (log
    /// probabilities), through which masked text would show; whether anything was removed.
    fn scrub(&self, _data: &mut Value) -> bool {
        false
    }

    /// The SSE event name of an event this gateway writes (`None`: unnamed).
    fn event_name<'v>(&self, _event: &'v Value) -> Option<&'v str> {
        None
    }

    /// Whether an event marks the stream's clean end (`data` raw, `event` parsed when JSON):
    /// held text is released before it.
    fn is_end(&self, data: &str, event: Option<&Value>) -> bool;

    /// The event that ends a stream in error: its name (`None`: unnamed) and data. OpenAI's
    /// clients raise on a `data:` event holding an `error` object.
    fn error_event(&self, error: &ApiError) -> (Option<&'static str>, Value) {
        (None, serde_json::from_str(&error.body()).unwrap_or(Value::Null))
    }

    /// The JSON key of a streamed event's delta of `kind` ([`TEXT`], [`REASONING`],
    /// [`ARGUMENTS`]; `"content"` for chat text): released text is spliced into the event's raw
    /// bytes after `"<key>":` when the delta's text appears there exactly once, instead of the
    /// event being written again from its parsed form.
    fn delta_key(&self, _kind: u32) -> Option<&'static str> {
        None
    }

    /// What the streamed text of slots of `kind` is: JSON source for tool calls' arguments
    /// ([`ARGUMENTS`]), else plain; a surface whose reasoning is signed says so.
    fn delta_form(&self, kind: u32) -> Form {
        match kind {
            ARGUMENTS => Form::Json,
            _ => Form::Plain,
        }
    }

    /// Whether events carry a `sequence_number` that must stay consecutive when the guard
    /// adds events (the Responses API).
    fn sequenced(&self) -> bool {
        false
    }

    /// The one text delta of a streamed event, read by a typed, borrowed view of only the
    /// fields [`Surface::event_texts`], [`Surface::event_whole_texts`], [`Surface::scrub`] and
    /// [`Surface::is_end`] read, when the event has exactly one text delta, does not end its
    /// slot or the stream, repeats no whole text and has nothing to scrub. `None`: the event
    /// takes the general path (a parsed [`Value`]). Both must find the same delta.
    fn one_delta<'a>(&self, _data: &'a str) -> Option<OneDelta<'a>> {
        None
    }

    /// Whether an event of this SSE name may be one [`Surface::one_delta`] reads (a hint to
    /// spare the fast path's readers a whole answer: the general path reads any event).
    fn may_be_delta(&self, _name: &str) -> bool {
        true
    }

    /// What [`Surface::one_delta`] finds, located in the event's bytes by the compact reader
    /// `json` when the event is compact JSON of the usual shape ([`locate`]); `None` when not
    /// certain (then [`Surface::one_delta`] decides). Events of a shape already read are
    /// located by [`shape::Shapes`] instead.
    fn locate<'a>(&self, _json: &mut Compact<'a>) -> Option<OneDelta<'a>> {
        None
    }
}

/// What [`Surface::event_texts`] calls: a slot, its delta's text, whether its group ends.
pub type Deltas<'a> = dyn FnMut(u32, Option<&mut String>, bool) + 'a;

/// What [`Surface::answer_texts`] calls: a text, and what it is.
pub type WholeTexts<'a> = dyn FnMut(&mut String, Form) + 'a;

/// What [`Surface::request_texts`] calls: a role, a text, and what it is.
pub type RequestTexts<'a> = dyn FnMut(MessageRole, &mut String, Form) + 'a;

/// The kind of a slot: answer text (and refusals).
pub const TEXT: u32 = 0;
/// The kind of a slot: reasoning (chat `reasoning_content`, Anthropic thinking, Responses
/// reasoning summaries and text).
pub const REASONING: u32 = 1;
/// The kind of a slot: a tool call's arguments, streamed as pieces of JSON source text.
pub const ARGUMENTS: u32 = 2;

/// A slot of a streamed answer: one stream of text with its own window. `group` is the
/// choice, content block or output item (an end ends all its slots), `lane` the tool call,
/// content part or summary part inside it (capped at 255).
pub fn slot_id(group: u64, kind: u32, lane: u64) -> u32 {
    let group = u32::try_from(group.min(0x3F_FFFF)).unwrap_or(0);
    let lane = u32::try_from(lane.min(0xFF)).unwrap_or(0);
    group << 10 | (kind & 3) << 8 | lane
}

/// The kind of a slot ([`TEXT`], [`REASONING`], [`ARGUMENTS`]).
pub fn kind_of(slot: u32) -> u32 {
    slot >> 8 & 3
}

/// The group of a slot.
pub fn group_of(slot: u32) -> u32 {
    slot >> 10
}

/// The lane of a slot.
pub fn lane_of(slot: u32) -> u32 {
    slot & 0xFF
}

/// The surface of a client API.
pub fn surface(endpoint: Endpoint) -> &'static dyn Surface {
    match endpoint {
        Endpoint::chat_completions => &OpenAiChat,
        Endpoint::completions => &OpenAiCompletions,
        Endpoint::embeddings => &OPENAI_EMBEDDINGS,
        Endpoint::messages => &AnthropicMessages,
        Endpoint::count_tokens => &ANTHROPIC_COUNT_TOKENS,
        Endpoint::responses => &Responses,
    }
}

/// An API whose requests have texts and whose answers have none (embeddings, token counts):
/// request rules only, no output cap.
pub struct RequestOnly(pub fn(&mut Value, &mut RequestTexts));

impl Surface for RequestOnly {
    fn request_texts(&self, body: &mut Value, each: &mut RequestTexts) {
        (self.0)(body, each);
    }

    fn output_fields(&self) -> Option<OutputFields> {
        None
    }

    fn answer_texts(&self, _body: &mut Value, _each: &mut WholeTexts) {}

    fn event_texts(&self, _data: &mut Value, _each: &mut Deltas) {}

    fn text_event(&self, _slot: u32, _text: String, template: &Value) -> Value {
        template.clone()
    }

    fn is_end(&self, _data: &str, _event: Option<&Value>) -> bool {
        false
    }
}

fn role_of(name: &str) -> Option<MessageRole> {
    Some(match name {
        "system" => MessageRole::System,
        "developer" => MessageRole::Developer,
        "user" => MessageRole::User,
        "assistant" => MessageRole::Assistant,
        "tool" | "function" => MessageRole::Tool,
        _ => return None,
    })
}

/// A string, or an array whose strings are texts (`prompt`, `input`).
fn strings(value: Option<&mut Value>, role: MessageRole, each: &mut RequestTexts) {
    match value {
        Some(Value::String(text)) => each(role, text, Form::Plain),
        Some(Value::Array(items)) => {
            for item in items {
                if let Value::String(text) = item {
                    each(role, text, Form::Plain);
                }
            }
        }
        _ => {}
    }
}

/// A string, or an array of parts whose `text_field` is text (when their `type` is one of
/// `kinds`, or they have none).
fn string_or_parts(value: Option<&mut Value>, kinds: &[&str], role: MessageRole, each: &mut RequestTexts) {
    match value {
        Some(Value::String(text)) => each(role, text, Form::Plain),
        Some(Value::Array(parts)) => {
            for part in parts {
                let kind = part.get("type").and_then(Value::as_str);
                if kind.is_some_and(|k| !kinds.contains(&k)) {
                    continue;
                }
                if let Some(Value::String(text)) = part.get_mut("text") {
                    each(role, text, Form::Plain);
                }
            }
        }
        _ => {}
    }
}

/// Sets `choices[].logprobs` to null (OpenAI chat and completions).
fn scrub_choices(data: &mut Value) -> bool {
    let mut scrubbed = false;
    if let Some(Value::Array(choices)) = data.get_mut("choices") {
        for choice in choices {
            if let Some(logprobs) = choice.get_mut("logprobs").filter(|l| !l.is_null()) {
                *logprobs = Value::Null;
                scrubbed = true;
            }
        }
    }
    scrubbed
}

/// Every string inside a JSON value (a tool call's arguments as an object).
fn leaves(value: &mut Value, role: MessageRole, each: &mut RequestTexts) {
    match value {
        Value::String(text) => each(role, text, Form::Plain),
        Value::Array(items) => items.iter_mut().for_each(|v| leaves(v, role, each)),
        Value::Object(fields) => fields.values_mut().for_each(|v| leaves(v, role, each)),
        _ => {}
    }
}

#[cfg(test)]
#[path = "../surface_tests.rs"]
mod tests;
