//! The fast path of a streamed event: one text delta, read by its surface's typed, borrowed
//! view ([`Surface::one_delta`](super::super::surface::Surface::one_delta)), handed to its
//! slot's window, and the released text written in place of the delta's text in the event's
//! raw bytes. No parsed tree is built or dropped. Anything else takes the general path.

use std::borrow::Cow;

use bytes::BytesMut;

use super::super::window::Released;
use super::{write_event, Scanned};
use crate::llm::json_string;

impl Scanned {
    /// Scans `data` when it is an event with one text delta for a slot that already has its
    /// template; `None` when the general path must (the event is untouched, nothing written).
    pub(super) fn one_delta(&mut self, name: &str, data: &str, out: &mut BytesMut) -> Option<Result<(), ()>> {
        if !self.typed || !self.surface.may_be_delta(name) {
            return None;
        }
        let guard = self.guard.clone();
        let matcher = guard.response.as_ref()?;
        let surface = self.surface;
        let located = if self.located {
            self.shapes.locate(surface, data)
        } else {
            None
        };
        // A located event is one line: the compact reader allows no raw line break.
        let one_line = located.is_some();
        let delta = located.or_else(|| self.surface.one_delta(data))?;
        if self.surface.sequenced() {
            let number = delta.sequence?;
            if number != self.sequence.unwrap_or(number) {
                return None;
            }
        }
        let at = self
            .slots
            .iter()
            .position(|s| s.id == delta.slot && !s.template.is_null())?;
        let literal = delta.text;
        let text = decoded(literal)?;
        // The literal is a sub-slice of `data`: its offset is where the released text goes.
        let start = (literal.as_ptr() as usize).wrapping_sub(data.as_ptr() as usize);
        let (before, after) = (data.get(..start)?, data.get(start + literal.len()..)?);
        let result = self.push(matcher, at, &text, false);
        let masked = self.slots[at].window.masked;
        self.count_masks(matcher, masked);
        let released = match result {
            Released::Blocked(rule) => {
                self.block(matcher, rule, out);
                return Some(Err(()));
            }
            Released::Text(released) => released,
        };
        if let Some(number) = delta.sequence {
            self.sequence = Some(number + 1);
        }
        if released == text {
            write_event(out, name, data);
            return Some(Ok(()));
        }
        write_spliced(out, name, [before, after], &released, one_line);
        Some(Ok(()))
    }
}

/// Writes the event `before` + `released` as a JSON string + `after`; straight into `out`
/// when the event is one line (as providers write them), without building it first.
fn write_spliced(out: &mut BytesMut, name: &str, [before, after]: [&str; 2], released: &str, one_line: bool) {
    let line_break = |part: &str| memchr::memchr(b'\n', part.as_bytes()).is_some();
    if !one_line && (line_break(before) || line_break(after)) {
        let encoded = serde_json::to_string(released).unwrap_or_else(|_| String::from("\"\""));
        write_event(out, name, &[before, &encoded, after].concat());
        return;
    }
    if name != "message" {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(before.as_bytes());
    match released.is_empty() {
        true => out.extend_from_slice(b"\"\""),
        false => json_string::write(out, released),
    }
    out.extend_from_slice(after.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// The text of a JSON string literal, when the literal is written as `serde_json` writes it
/// (the general path's splice needs that too; otherwise it writes the event again).
fn decoded(literal: &str) -> Option<Cow<'_, str>> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    let text: String = serde_json::from_str(literal).ok()?;
    (serde_json::to_string(&text).ok()? == literal).then_some(Cow::Owned(text))
}

#[cfg(test)]
#[path = "one_delta_tests.rs"]
pub(super) mod tests;
