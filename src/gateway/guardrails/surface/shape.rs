//! Events of a shape already read: a stream's delta events differ from one another only in
//! their text and a few values (a sequence number, an `obfuscation` padding), so once the
//! compact reader has located the delta of one event ([`Surface::locate`]), the next events
//! are compared with it byte for byte and only the values that may differ (its [`Hole`]s) are
//! read again, by the same reader's rules.
//!
//! Why an event that fits a shape is read the same as the compact reader would read it: the
//! shape is an event the reader accepted, and the holes are the values it did not look into
//! (strings and numbers it skipped, which it accepts whatever they hold), its text and its
//! sequence number. Everything else the reader looked at (keys, `type` values, indexes, nulls,
//! the nesting and the order of fields) is compared byte for byte; each hole is read with the
//! reader's own check of that value (a string's escapes, a number's form), and a value of one
//! token cannot change the structure around it. So the reader, given the new event, makes the
//! same decisions and finds the same slot, with the new text and number
//! (`shapes_read_what_the_reader_reads` checks it against the reader on mutated events).

use super::typed::OneDelta;
use super::Surface;
use crate::llm::compact::{Compact, Hole, HoleKind};

/// Shapes kept per stream (choices, reasoning beside text, Responses' several streams).
const KEPT: usize = 4;
/// The longest event kept as a shape: a stream holds at most `KEPT` times this.
const LONGEST: usize = 1024;

/// An event whose delta the compact reader located, and where later events may differ.
#[derive(Debug)]
pub struct Shape {
    event: Box<str>,
    /// Sorted by start, not overlapping.
    holes: Box<[Hole]>,
    slot: u32,
}

impl Shape {
    /// The shape of `data`, read by a [`Compact::recording`] reader that noted `holes` and
    /// found `delta` in it; `None` when the delta's text is not part of `data`.
    fn learn(data: &str, mut holes: Vec<Hole>, delta: &OneDelta<'_>) -> Option<Shape> {
        if data.len() > LONGEST {
            return None;
        }
        let start = (delta.text.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
        let end = start + delta.text.len();
        data.get(start..end)?;
        holes.push(Hole {
            start,
            end,
            kind: HoleKind::Text,
        });
        holes.sort_unstable_by_key(|h| h.start);
        let sequences = holes.iter().filter(|h| h.kind == HoleKind::Sequence).count();
        let disjoint = holes.windows(2).all(|w| w[0].end <= w[1].start);
        (disjoint && sequences == usize::from(delta.sequence.is_some())).then(|| Shape {
            event: data.into(),
            holes: holes.into_boxed_slice(),
            slot: delta.slot,
        })
    }

    /// The delta of `data` when it has this shape; `None` when it does not (the reader then
    /// decides).
    pub fn read<'a>(&self, data: &'a str) -> Option<OneDelta<'a>> {
        self.read_same(data).or_else(|| self.read_holes(data))
    }

    /// [`Shape::read`] when the skipped values are the shape's own: the bytes between its
    /// text and sequence number compared whole (two or three comparisons an event). Bytes
    /// equal to the shape's are read the same, the skipped values in them included.
    fn read_same<'a>(&self, data: &'a str) -> Option<OneDelta<'a>> {
        self.read_with::<true>(data)
    }

    /// [`Shape::read`] hole by hole: the bytes between holes compared, each hole read by the
    /// reader's rules for its value.
    fn read_holes<'a>(&self, data: &'a str) -> Option<OneDelta<'a>> {
        self.read_with::<false>(data)
    }

    /// Compares the bytes between holes and reads each hole; with `SAME`, the skipped values
    /// are compared as part of the bytes around them.
    fn read_with<'a, const SAME: bool>(&self, data: &'a str) -> Option<OneDelta<'a>> {
        let (event, bytes) = (self.event.as_bytes(), data.as_bytes());
        let (mut from, mut at) = (0, 0);
        let (mut text, mut sequence) = (None, None);
        for hole in self.holes.iter() {
            let skipped = matches!(hole.kind, HoleKind::String | HoleKind::Number);
            if SAME && skipped {
                continue;
            }
            let literal = event.get(from..hole.start)?;
            if bytes.get(at..at + literal.len())? != literal {
                return None;
            }
            let mut json = Compact::at(data, at + literal.len());
            match hole.kind {
                HoleKind::Text => text = Some(json.string()?),
                HoleKind::String => drop(json.string()?),
                HoleKind::Number => json.number()?,
                HoleKind::Sequence => sequence = Some(json.sequence_number()?),
            }
            (at, from) = (json.position(), hole.end);
        }
        (bytes.get(at..)? == event.get(from..)?).then_some(())?;
        Some(OneDelta {
            slot: self.slot,
            text: text?,
            sequence,
        })
    }
}

/// The shapes of one stream's delta events, most recently learnt last.
#[derive(Debug, Default)]
pub struct Shapes(Vec<Shape>);

impl Shapes {
    /// The delta of `data`: by a shape already read, else by `surface`'s compact reader (and
    /// its shape kept); `None` when the reader is not certain.
    pub fn locate<'a>(&mut self, surface: &dyn Surface, data: &'a str) -> Option<OneDelta<'a>> {
        if let Some(delta) = self.0.iter().find_map(|shape| shape.read(data)) {
            return Some(delta);
        }
        let mut json = Compact::recording(data);
        let delta = surface.locate(&mut json)?;
        if let Some(shape) = Shape::learn(data, json.holes(), &delta) {
            if self.0.len() == KEPT {
                self.0.remove(0);
            }
            self.0.push(shape);
        }
        Some(delta)
    }
}

/// The delta of `data` by `surface`'s compact reader alone (no shape).
#[cfg(test)]
pub fn locate<'a>(surface: &dyn Surface, data: &'a str) -> Option<OneDelta<'a>> {
    surface.locate(&mut Compact::new(data))
}

#[cfg(test)]
#[path = "shape_tests.rs"]
mod tests;
