//! What blocks an object, and for how long: a problem only an edit of the object can fix
//! stalls it at once; a reference to something that may still appear (a provider, a Secret, a
//! key, a target alias applied in a later sync wave or delivered by External Secrets) makes it
//! wait for a grace period first, and stalls it only if it is still missing then.
//!
//! kstatus (Flux, kubectl-style waits) and the Argo CD health scripts read this as: waiting →
//! `Reconciling=True` → in progress; stalled → `Stalled=True` → failed.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::condition_type;
use crate::compiler::{ConditionKind, Diagnostic, Reason};
use crate::crd::ConditionStatus;

/// Whether a problem can go away without an edit of the object that has it, because what it
/// refers to may still be created or fixed.
pub fn may_heal(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::ProviderNotFound
            | Reason::ProviderNotReady
            | Reason::TargetNotFound
            | Reason::TargetAliasInvalid
            | Reason::KeyNotFound
            | Reason::CaNotFound
            | Reason::InvalidCa
    )
}

/// How an object with errors is blocked.
#[derive(Clone, Debug, PartialEq)]
pub enum Blocked {
    /// Only an edit can help: stalled at once.
    Now,
    /// Waiting for what it refers to since `since`, until `deadline`.
    Waiting { since: Time, deadline: Timestamp },
    /// Waited from `since` and gave up; stalled since `stalled` (its `Stalled` condition's
    /// transition time).
    GaveUp { since: Time, stalled: Time },
}

/// How an object whose errors are `diagnostics` is blocked. `reason` is the one its `Ready`
/// condition reports. The wait starts when `Ready` turned False with this reason at this
/// generation (its `lastTransitionTime`, kept from `previous`), so an unchanged world computes
/// the same status again and writes nothing.
pub fn blocked(
    diagnostics: &[Diagnostic],
    reason: &str,
    generation: i64,
    previous: &[Condition],
    now: &Time,
    stall_after: Duration,
) -> Blocked {
    let errors = diagnostics.iter().filter(|d| d.is_error());
    let mut heals = false;
    for error in errors {
        if error.reason.condition() == ConditionKind::Accepted || !may_heal(error.reason) {
            return Blocked::Now;
        }
        heals = true;
    }
    if !heals {
        return Blocked::Now;
    }
    let since = previous
        .iter()
        .find(|c| {
            c.type_ == condition_type::READY
                && c.status == ConditionStatus::False.as_str()
                && c.reason == reason
                && c.observed_generation == Some(generation)
        })
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    let deadline = since.0.checked_add(stall_after).unwrap_or(Timestamp::MAX);
    if now.0 < deadline {
        return Blocked::Waiting { since, deadline };
    }
    let stalled = previous
        .iter()
        .find(|c| c.type_ == condition_type::STALLED && c.status == ConditionStatus::True.as_str())
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Blocked::GaveUp { since, stalled }
}

/// When an object that waits must be looked at again to be stalled: its `Reconciling`
/// condition's start plus the grace period.
pub fn stall_deadline(conditions: &[Condition], stall_after: Duration) -> Option<Timestamp> {
    conditions
        .iter()
        .find(|c| c.type_ == condition_type::RECONCILING && c.status == ConditionStatus::True.as_str())
        .and_then(|c| c.last_transition_time.0.checked_add(stall_after).ok())
}

/// `5m`, `1h 2m 3s`: how long, to the second.
pub fn how_long(from: &Time, to: &Time) -> String {
    let seconds = to.0.as_second().saturating_sub(from.0.as_second()).max(0);
    humantime::format_duration(Duration::from_secs(seconds.unsigned_abs())).to_string()
}

/// The message of `Reconciling` while an object waits.
pub fn waiting_message(message: &str, deadline: Timestamp) -> String {
    format!("{message}; waiting for it until {deadline}, then Stalled")
}

/// The message of `Stalled` after an object waited in vain.
pub fn gave_up_message(message: &str, since: &Time, stalled: &Time) -> String {
    format!(
        "{message} (unresolved for {}, since {})",
        how_long(since, stalled),
        since.0
    )
}

/// `Ready=False`, and `Reconciling` and `Stalled` as `how` says.
pub(super) fn blocked_conditions(
    cond: &impl Fn(&str, ConditionStatus, &str, String) -> Condition,
    how: Blocked,
    reason: &str,
    message: &str,
    ready_message: String,
) -> Vec<Condition> {
    let ready = cond(condition_type::READY, ConditionStatus::False, reason, ready_message);
    let since = |mut c: Condition, since: &Time| {
        c.last_transition_time = since.clone();
        c
    };
    match how {
        Blocked::Now => vec![
            ready,
            cond(
                condition_type::STALLED,
                ConditionStatus::True,
                reason,
                message.to_string(),
            ),
        ],
        Blocked::Waiting { since: start, deadline } => vec![
            since(ready, &start),
            since(
                cond(
                    condition_type::RECONCILING,
                    ConditionStatus::True,
                    reason,
                    waiting_message(message, deadline),
                ),
                &start,
            ),
            cond(
                condition_type::STALLED,
                ConditionStatus::False,
                "Waiting",
                format!("not stalled yet: waiting until {deadline} (see Reconciling)"),
            ),
        ],
        Blocked::GaveUp { since: start, stalled } => vec![
            since(ready, &start),
            cond(
                condition_type::STALLED,
                ConditionStatus::True,
                reason,
                gave_up_message(message, &start, &stalled),
            ),
        ],
    }
}
