//! Names shared by every status condition modelgate writes.

/// Condition types, as in `status.conditions[].type`.
pub mod condition_type {
    /// The spec is valid and its name is not claimed by an older object.
    pub const ACCEPTED: &str = "Accepted";
    /// Every reference (provider, alias, Secret) resolves.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// The gateway serves the object's current generation.
    pub const READY: &str = "Ready";
    /// Only an edit can make the object Ready (read by kstatus, Flux and Argo CD).
    pub const STALLED: &str = "Stalled";
}

/// The three values of a condition's `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    /// The string Kubernetes stores.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}
