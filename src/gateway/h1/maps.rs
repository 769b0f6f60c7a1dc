//! Spare header maps, kept per thread: a request's three maps (the client's head, the
//! provider request's, the provider response's, which becomes the client's) come from here
//! and go back, cleared, when their head is written or read. A map from the spares is warm in
//! the cache and needs no allocation; a new map makes two, and its free two more.
//!
//! Bounded: at most [`KEEP`] spares a thread, and a map that grew past [`MAX_CAPACITY`]
//! entries (a client's head full of headers) is freed, not kept. A map's repeated values (its
//! `extra_values`, kept with their room by `clear`) come from a parsed head too, which holds at
//! most 100 headers: a spare is a few kilobytes at most, whatever a client or provider sends.

use std::cell::RefCell;

use http::HeaderMap;

/// Spare maps kept per thread (each a few kilobytes).
const KEEP: usize = 32;

/// The largest map kept (its capacity, in entries): a typical head holds under 16 headers.
const MAX_CAPACITY: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for at least `room` entries.
pub fn take(room: usize) -> HeaderMap {
    let spare = SPARE.try_with(|spare| spare.borrow_mut().pop()).ok().flatten();
    match spare {
        Some(mut map) => {
            map.reserve(room);
            map
        }
        None => HeaderMap::with_capacity(room),
    }
}

/// Keeps `map` as a spare (cleared), unless there are enough or it grew too large.
pub fn give(mut map: HeaderMap) {
    if map.capacity() > MAX_CAPACITY || map.capacity() == 0 {
        return;
    }
    map.clear();
    // On a thread being torn down the map is simply dropped.
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < KEEP {
            spare.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{ACCEPT, CONTENT_TYPE};
    use http::HeaderValue;

    fn spares() -> usize {
        SPARE.with(|spare| spare.borrow().len())
    }

    #[test]
    fn a_map_given_back_comes_back_empty_with_its_room() {
        let mut map = take(4);
        map.insert(ACCEPT, HeaderValue::from_static("*/*"));
        map.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let capacity = map.capacity();
        let before = spares();
        give(map);
        assert_eq!(spares(), before + 1);
        let again = take(2);
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(again.capacity(), capacity);
        assert_eq!(spares(), before);
    }

    #[test]
    fn large_maps_and_more_than_keep_spares_are_freed() {
        let mut large = take(0);
        for i in 0..200 {
            large.insert(
                http::HeaderName::from_bytes(format!("x-{i}").as_bytes()).expect("name"),
                HeaderValue::from_static("v"),
            );
        }
        let before = spares();
        give(large);
        assert_eq!(spares(), before, "a map that grew past MAX_CAPACITY is not kept");
        for _ in 0..KEEP + 10 {
            give(HeaderMap::with_capacity(8));
        }
        assert_eq!(spares(), KEEP);
        let room = take(40);
        assert!(room.capacity() >= 40);
    }
}
