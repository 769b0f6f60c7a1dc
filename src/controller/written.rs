//! Statuses the controller wrote that its store has not shown yet.
//!
//! A status write returns before its watch event reaches the store, and during a burst the
//! same object is often queued again in between (by its own create event, or by the pass
//! that follows each compilation). That reconcile still sees the old status and would send
//! the same patch again: a server-side apply that changes nothing but costs the apiserver as
//! much as a real one, and a repeated Event. Remembering, per object, which version of it the
//! last write was based on and what it wrote lets that reconcile skip the write.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use super::metrics::Kind;
use crate::compiler::ObjectKey;

/// What was written over which version of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Write {
    resource_version: String,
    fingerprint: u64,
}

/// One entry per object written since its store last caught up.
#[derive(Default)]
pub struct Written(Mutex<HashMap<(Kind, ObjectKey), Write>>);

/// A hash of a status as it is sent, but for the conditions' `lastTransitionTime`: the
/// status of an object the store still shows without one, computed again a second later,
/// differs only there, and the one already written is as true.
pub fn fingerprint<S: Serialize>(status: &S) -> u64 {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(conditions) = value.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        for condition in conditions.iter_mut().filter_map(|c| c.as_object_mut()) {
            condition.remove("lastTransitionTime");
        }
    }
    let mut hasher = DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    hasher.finish()
}

impl Written {
    fn entries(&self) -> MutexGuard<'_, HashMap<(Kind, ObjectKey), Write>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this exact status was already written over this version of the object.
    pub fn already(&self, kind: Kind, key: &ObjectKey, resource_version: &str, fingerprint: u64) -> bool {
        self.entries()
            .get(&(kind, key.clone()))
            .is_some_and(|w| w.resource_version == resource_version && w.fingerprint == fingerprint)
    }

    /// Records a write based on `resource_version`.
    pub fn record(&self, kind: Kind, key: ObjectKey, resource_version: String, fingerprint: u64) {
        self.entries().insert(
            (kind, key),
            Write {
                resource_version,
                fingerprint,
            },
        );
    }

    /// The store shows the object as it should be: nothing is pending for it.
    pub fn forget(&self, kind: Kind, key: &ObjectKey) {
        let mut entries = self.entries();
        if !entries.is_empty() {
            entries.remove(&(kind, key.clone()));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_pending_only_for_the_same_version_and_status() {
        let written = Written::default();
        let key = ObjectKey::new("ml", "gpt");
        let ready = fingerprint(&serde_json::json!({"ready": true}));
        let not_ready = fingerprint(&serde_json::json!({"ready": false}));
        assert_ne!(ready, not_ready);
        let at = |time: &str| {
            fingerprint(&serde_json::json!({"conditions": [{"type": "Ready", "lastTransitionTime": time}]}))
        };
        assert_eq!(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:00:01Z"));
        assert_ne!(
            at("2026-01-01T00:00:00Z"),
            fingerprint(
                &serde_json::json!({"conditions": [{"type": "Stalled", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
            )
        );
        assert!(!written.already(Kind::ModelAlias, &key, "10", ready));
        written.record(Kind::ModelAlias, key.clone(), "10".into(), ready);
        assert!(written.already(Kind::ModelAlias, &key, "10", ready));
        assert!(
            !written.already(Kind::ModelAlias, &key, "10", not_ready),
            "another status is news"
        );
        assert!(
            !written.already(Kind::ModelAlias, &key, "11", ready),
            "a newer object is news"
        );
        assert!(!written.already(Kind::LLMProvider, &key, "10", ready));
        written.forget(Kind::ModelAlias, &key);
        assert!(!written.already(Kind::ModelAlias, &key, "10", ready));
        assert_eq!(written.len(), 0);
    }
}
