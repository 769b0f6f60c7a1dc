//! Typed, borrowed views of the streamed events that carry one text delta and nothing else a
//! guard would change: the fast path of [`Surface::one_delta`](super::Surface::one_delta).
//! Only the fields the old path reads are read (every other field is skipped unparsed); the
//! delta's text stays a borrowed [`RawValue`] so its place in the raw event is known. A view
//! that does not fit (a field of another type, a duplicate key, a second choice) is no view:
//! the event takes the general path.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// The one text delta of a streamed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneDelta<'a> {
    /// Its slot (see [`slot_id`](super::slot_id)).
    pub slot: u32,
    /// The JSON string literal of its text, borrowed from the event.
    pub text: &'a str,
    /// The event's `sequence_number`, when the surface numbers events and the event has one.
    pub sequence: Option<u64>,
}

/// A field read only when present: `None` absent, `Some(None)` null.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The text of an optional text field: `Ok(None)` when absent or null, `Err` when it is not a
/// string (the general path decides).
pub fn text(field: Option<&RawValue>) -> Result<Option<&RawValue>, ()> {
    match field {
        Some(raw) if raw.get().starts_with('"') => Ok(Some(raw)),
        Some(_) => Err(()),
        None => Ok(None),
    }
}

/// Exactly one of `fields` holds text (the others absent or null).
pub fn only<'a>(fields: &[Option<&'a RawValue>]) -> Option<(usize, &'a RawValue)> {
    let mut found = None;
    for (at, field) in fields.iter().enumerate() {
        if let Some(raw) = text(*field).ok()? {
            if found.is_some() {
                return None;
            }
            found = Some((at, raw));
        }
    }
    found
}
