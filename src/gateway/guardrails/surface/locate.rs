//! The one text delta of an event, located in its raw bytes ([`Surface::locate`]): the
//! cheapest fast path. Each function reads exactly the fields the surface's typed view
//! ([`Surface::one_delta`]) reads, with the same meaning, through a [`Compact`] reader that
//! checks every byte of the event; it is stricter (a duplicate or unusual field, whitespace,
//! an escaped key: `None`), and whatever it does not recognise with certainty goes to the
//! typed view, then the general path.
//!
//! [`Surface::locate`]: super::Surface::locate
//! [`Surface::one_delta`]: super::Surface::one_delta

use super::typed::OneDelta;
use super::{anthropic, responses, slot_id, REASONING, TEXT};
use crate::llm::compact::{once, Compact};

/// A text field: a string literal, or null (`Some(None)`); anything else is not certain.
fn text<'a>(json: &mut Compact<'a>) -> Option<Option<&'a str>> {
    if json.null() {
        return Some(None);
    }
    json.string().map(Some)
}

/// A field that must be null when present (a finish, log probabilities, tool calls).
fn null(json: &mut Compact<'_>, seen: &mut Option<()>) -> Option<()> {
    once(seen, ())?;
    json.null().then_some(())
}

/// An OpenAI chat chunk of one choice whose delta is `content` or `reasoning_content` alone
/// (`role` and unknown fields aside), which neither finishes nor has log probabilities.
pub fn chat<'a>(json: &mut Compact<'a>) -> Option<OneDelta<'a>> {
    let mut found = None;
    json.object(|json, key| match key {
        "choices" => {
            let mut choice = None;
            json.array(|json| once(&mut choice, chat_choice(json)?))?;
            once(&mut found, choice?)
        }
        _ => json.skip(),
    })?;
    json.done().then_some(found)?
}

fn chat_choice<'a>(json: &mut Compact<'a>) -> Option<OneDelta<'a>> {
    let (mut index, mut delta, mut ends, mut logprobs) = (None, None, None, None);
    json.object(|json, key| match key {
        "index" => once(&mut index, json.index()?),
        "delta" => once(&mut delta, chat_delta(json)?),
        "finish_reason" => null(json, &mut ends),
        "logprobs" => null(json, &mut logprobs),
        _ => json.skip(),
    })?;
    let (kind, text) = delta?;
    Some(OneDelta {
        slot: slot_id(index.flatten().unwrap_or(0).min(0x3F_FFFF), kind, 0),
        text,
        sequence: None,
    })
}

fn chat_delta<'a>(json: &mut Compact<'a>) -> Option<(u32, &'a str)> {
    let (mut content, mut reasoning, mut calls) = (None, None, None);
    json.object(|json, key| match key {
        "content" => once(&mut content, text(json)?),
        "reasoning_content" => once(&mut reasoning, text(json)?),
        "tool_calls" => null(json, &mut calls),
        _ => json.skip(),
    })?;
    match (content.flatten(), reasoning.flatten()) {
        (Some(text), None) => Some((TEXT, text)),
        (None, Some(text)) => Some((REASONING, text)),
        _ => None,
    }
}

/// The fields of an Anthropic delta with text, in the order of [`anthropic::DELTAS`].
const ANTHROPIC_FIELDS: [&str; 3] = ["text", "thinking", "partial_json"];

/// An Anthropic `content_block_delta` whose delta has its type's text field.
pub fn anthropic<'a>(json: &mut Compact<'a>) -> Option<OneDelta<'a>> {
    let (mut kind, mut index, mut delta) = (None, None, None);
    json.object(|json, key| match key {
        "type" => once(&mut kind, json.plain()?),
        "index" => once(&mut index, json.index()?),
        "delta" => once(&mut delta, anthropic_delta(json)?),
        _ => json.skip(),
    })?;
    if !json.done() || kind? != "content_block_delta" {
        return None;
    }
    let (kind, text) = delta?;
    Some(OneDelta {
        slot: slot_id(index.flatten().unwrap_or(0), kind, 0),
        text,
        sequence: None,
    })
}

fn anthropic_delta<'a>(json: &mut Compact<'a>) -> Option<(u32, &'a str)> {
    let mut kind = None;
    let mut fields: [Option<Option<&str>>; 3] = [None; 3];
    json.object(|json, key| match ANTHROPIC_FIELDS.iter().position(|f| *f == key) {
        Some(at) => once(&mut fields[at], text(json)?),
        None if key == "type" => once(&mut kind, json.plain()?),
        None => json.skip(),
    })?;
    let kind = kind?;
    let &(_, slot_kind, field) = anthropic::DELTAS.iter().find(|(name, ..)| *name == kind)?;
    let at = ANTHROPIC_FIELDS.iter().position(|f| *f == field)?;
    Some((slot_kind, fields[at]??))
}

/// A Responses `<stream>.delta` event of a text stream, with no log probabilities and no
/// part, item or response inside.
pub fn responses<'a>(json: &mut Compact<'a>) -> Option<OneDelta<'a>> {
    let (mut kind, mut delta, mut sequence, mut logprobs) = (None, None, None, None);
    let mut indexes: [Option<Option<u64>>; 3] = [None; 3];
    let mut whole: [Option<()>; 4] = [None; 4];
    json.object(|json, key| match key {
        "type" => once(&mut kind, json.plain()?),
        "delta" => once(&mut delta, text(json)?),
        "output_index" => once(&mut indexes[0], json.index()?),
        "content_index" => once(&mut indexes[1], json.index()?),
        "summary_index" => once(&mut indexes[2], json.index()?),
        "sequence_number" => once(&mut sequence, json.sequence_number()?),
        "logprobs" => {
            once(&mut logprobs, ())?;
            (json.null() || json.empty_array()).then_some(())
        }
        "part" => null(json, &mut whole[0]),
        "item" => null(json, &mut whole[1]),
        "output" => null(json, &mut whole[2]),
        "response" => null(json, &mut whole[3]),
        _ => json.skip(),
    })?;
    if !json.done() {
        return None;
    }
    let stream = kind?.strip_suffix(".delta")?;
    let &(_, slot_kind, lane, first) = responses::DELTAS.iter().find(|(s, ..)| *s == stream)?;
    let lane = match lane {
        "content_index" => indexes[1].flatten().unwrap_or(0).min(127),
        "summary_index" => indexes[2].flatten().unwrap_or(0).min(127),
        _ => 0,
    };
    Some(OneDelta {
        slot: slot_id(indexes[0].flatten().unwrap_or(0), slot_kind, first + lane),
        text: delta??,
        sequence,
    })
}
