//! The fast path of a streamed event: one text delta, read by its surface's typed, borrowed
//! view ([`Surface::one_delta`](super::super::surface::Surface::one_delta)), handed to its
//! slot's window, and the released text written in place of the delta's text in the event's
//! raw bytes. No parsed tree is built or dropped. Anything else takes the general path.

use std::borrow::Cow;

use bytes::BytesMut;

use super::super::window::Released;
use super::{write_event, Scanned};

impl Scanned {
    /// Scans `data` when it is an event with one text delta for a slot that already has its
    /// template; `None` when the general path must (the event is untouched, nothing written).
    pub(super) fn one_delta(&mut self, name: &str, data: &str, out: &mut BytesMut) -> Option<Result<(), ()>> {
        if !self.typed {
            return None;
        }
        let guard = self.guard.clone();
        let matcher = guard.response.as_ref()?;
        let delta = self.surface.one_delta(data)?;
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
        let literal = delta.text.get();
        let text = decoded(literal)?;
        // The literal is a sub-slice of `data`: its offset is where the released text goes.
        let start = (literal.as_ptr() as usize).wrapping_sub(data.as_ptr() as usize);
        let (before, after) = (data.get(..start)?, data.get(start + literal.len()..)?);
        let slot = &mut self.slots[at];
        let result = slot.window.push(matcher, &text, false);
        let masked = slot.window.masked;
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
        let encoded = serde_json::to_string(&released).unwrap_or_else(|_| String::from("\"\""));
        let mut spliced = String::with_capacity(data.len() + encoded.len());
        spliced.push_str(before);
        spliced.push_str(&encoded);
        spliced.push_str(after);
        write_event(out, name, &spliced);
        Some(Ok(()))
    }
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
mod tests;
