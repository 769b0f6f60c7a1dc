//! The resourceVersion each not-yet-`Programmed` object must reach in a gateway's table.
//!
//! For an alias, that is the first version of it the controller saw carrying the route it
//! published (normally the version its own status write created); for a provider, the first
//! version with its current generation. It must stay fixed while the controller writes the
//! object's `Programmed` condition (each write is a newer version): measured against the
//! object's current version instead, every `Programmed=False` write would move the goal the
//! gateways chase. Only objects still waiting for the gateways are remembered; after a restart
//! the version the controller first sees stands in (later than the real one, so `Programmed`
//! can come late, never early).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::metrics::Kind;
use crate::compiler::ObjectKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reference {
    /// Identifies what was published (a hash of the route; a provider's generation).
    published: u64,
    version: u64,
}

/// One entry per object that gateways do not all serve yet.
#[derive(Default)]
pub struct References(Mutex<HashMap<(Kind, ObjectKey), Reference>>);

impl References {
    fn entries(&self) -> MutexGuard<'_, HashMap<(Kind, ObjectKey), Reference>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The reference version of what an object publishes now (`published`), remembering
    /// `current` (the object's resourceVersion) when this is the first look at it.
    pub fn of(&self, kind: Kind, key: &ObjectKey, published: u64, current: u64) -> u64 {
        let mut entries = self.entries();
        let entry = entries.entry((kind, key.clone())).or_insert(Reference {
            published,
            version: current,
        });
        if entry.published != published {
            *entry = Reference {
                published,
                version: current,
            };
        }
        entry.version
    }

    /// Every gateway serves the object: nothing to remember.
    pub fn done(&self, kind: Kind, key: &ObjectKey) {
        let mut entries = self.entries();
        if !entries.is_empty() {
            entries.remove(&(kind, key.clone()));
            // After a burst (10,000 aliases waiting for the gateways) the table would keep its
            // room; a steady world holds nothing.
            if entries.is_empty() && entries.capacity() > 64 {
                *entries = HashMap::new();
            }
        }
    }

    /// The objects of `kind` still waiting for the gateways; forgets those `exists` says are gone.
    pub fn pending(&self, kind: Kind, exists: impl Fn(&ObjectKey) -> bool) -> Vec<ObjectKey> {
        let mut entries = self.entries();
        entries.retain(|(k, key), _| *k != kind || exists(key));
        entries
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, key)| key.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_version_seen_stands_until_something_else_is_published() {
        let references = References::default();
        let key = ObjectKey::new("ml", "chat");
        assert_eq!(references.of(Kind::ModelAlias, &key, 1, 100), 100);
        assert_eq!(
            references.of(Kind::ModelAlias, &key, 1, 105),
            100,
            "the controller's own Programmed writes do not move it"
        );
        assert_eq!(references.of(Kind::ModelAlias, &key, 2, 110), 110, "a new route");
        assert_eq!(references.of(Kind::LLMProvider, &key, 2, 7), 7, "kinds are apart");
        assert_eq!(references.pending(Kind::ModelAlias, |_| true), vec![key.clone()]);
        references.done(Kind::ModelAlias, &key);
        assert_eq!(references.of(Kind::ModelAlias, &key, 2, 120), 120);
        assert!(
            references.pending(Kind::ModelAlias, |_| false).is_empty(),
            "gone objects are forgotten"
        );
        assert_eq!(references.pending(Kind::LLMProvider, |_| true), vec![key]);
    }
}
