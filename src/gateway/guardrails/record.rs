//! The slots of a stream whose surface repeats the deltas' text whole in later events (the
//! Responses API's `*.done` events, parts, items and final response) keep a record of it
//! ([`Window::record`]): a repeat byte-identical to a slot's text is masked from the record,
//! without a scan.

use super::super::matcher::{Finding, Form, Matcher};
use super::super::surface::kind_of;
use super::super::window::{Released, Window};
use super::{Scanned, Slot};
use serde_json::Value;

/// Most memory a stream's slots keep for the texts its events repeat whole (their text and
/// masks); a slot whose record would pass it forgets it, and its repeats are scanned.
pub(super) const RECORD_CAP: usize = 1 << 20;

impl Scanned {
    /// The index of the slot `id`, made if new (keeping a record when its text is repeated).
    pub(super) fn slot_at(&mut self, id: u32) -> usize {
        match self.slots.iter().position(|s| s.id == id) {
            Some(at) => at,
            None => {
                let mut window = Window::default();
                window.form = self.surface.delta_form(kind_of(id));
                if self.surface.repeats_deltas() {
                    window.record();
                }
                self.slots.push(Slot {
                    id,
                    window,
                    template: Value::Null,
                });
                self.slots.len() - 1
            }
        }
    }

    /// Pushes `text` into the window of the slot at `at`; its record is forgotten when the
    /// stream's records would pass [`RECORD_CAP`].
    pub(super) fn push(&mut self, matcher: &Matcher, at: usize, text: &str, last: bool) -> Released {
        let window = &mut self.slots[at].window;
        let before = window.record_cost();
        let released = window.push(matcher, text, last);
        self.recorded += window.record_cost() - before;
        if self.recorded > self.record_cap {
            self.recorded -= window.record_cost();
            window.forget();
        }
        released
    }

    /// The masks of a whole text the stream repeats, from the record of the slot whose text it
    /// is; `None`: no slot's record is that text (it is scanned).
    pub(super) fn recorded_masks(&self, text: &str, form: Form) -> Option<&[Finding]> {
        self.slots.iter().find_map(|slot| slot.window.masks_of(text, form))
    }
}
