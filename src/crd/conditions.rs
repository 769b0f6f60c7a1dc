//! Names shared by every status condition modelgate writes.

/// Condition types, as in `status.conditions[].type`.
pub mod condition_type {
    /// The spec is valid and its name is not claimed by an older object.
    pub const ACCEPTED: &str = "Accepted";
    /// Every reference (provider, alias, Secret) resolves.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// The controller accepted the object's current generation and published it for the gateways.
    pub const READY: &str = "Ready";
    /// Present (True) only while the object waits, for a grace period, for an object it refers
    /// to (read by kstatus, Flux and Argo CD as "in progress").
    pub const RECONCILING: &str = "Reconciling";
    /// Only an edit can make the object Ready, or what it waited for did not come within the
    /// grace period (read by kstatus, Flux and Argo CD as "failed").
    pub const STALLED: &str = "Stalled";
    /// Every running gateway replica serves the object's current generation: the honest
    /// "my change is live" signal (`kubectl wait --for=condition=Programmed`).
    pub const PROGRAMMED: &str = "Programmed";
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
