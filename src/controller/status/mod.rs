//! Status as a pure function of the object, its compiled route, its diagnostics, the gateway
//! replicas' reports and the time. Deterministic: the same world at a later time gives the
//! same status (a wait in progress changes status only at its deadline), so an unchanged world
//! writes nothing.

mod blocked;
mod programmed;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::gateways::GatewayView;
use crate::compiler::{ConditionKind, Diagnostic, ProviderEndpoint, Reason, Route};
use crate::crd::{
    condition_type, ConditionStatus, LLMProvider, LLMProviderStatus, ModelAlias, ModelAliasSpec, ModelAliasStatus,
    ProviderType,
};
use blocked::{blocked, blocked_conditions};
pub use blocked::{may_heal, stall_deadline};
use programmed::{alias_programmed, rollout, Served};

/// Longest condition message the API accepts.
const MAX_MESSAGE: usize = 32 * 1024;
/// Laggards named in a `Programmed=False` message; the rest are counted.
const MAX_LAGGARDS_NAMED: usize = 5;
/// How long an object waits for what it refers to before it is `Stalled`, by default.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(5 * 60);

/// Everything outside the object that its status depends on.
pub struct Env<'a> {
    pub now: &'a Time,
    /// How long an object waits for a missing provider, Secret, key or target alias.
    pub stall_after: Duration,
    /// The gateway replicas running now.
    pub gateways: &'a GatewayView,
}

/// A condition, keeping `lastTransitionTime` from `previous` when the status did not change.
pub fn condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: String,
    generation: i64,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status.as_str())
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status: status.as_str().to_string(),
        reason: reason.to_string(),
        message: truncate(message),
        observed_generation: Some(generation),
        last_transition_time,
    }
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE - 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

/// The errors of one condition kind: the first one's reason, and every message.
fn errors_of(diagnostics: &[Diagnostic], kind: ConditionKind) -> Option<(&'static str, String)> {
    let errors: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.is_error() && d.reason.condition() == kind)
        .collect();
    let first = errors.first()?;
    let messages: Vec<String> = errors.iter().map(|d| format!("{}: {}", d.field, d.message)).collect();
    Some((first.reason.as_str(), messages.join("; ")))
}

/// An object's warnings, as a suffix of a condition message (empty without warnings).
fn warnings_of(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .filter(|d| !d.is_error())
        .map(|d| format!("; warning: {}: {}", d.field, d.message))
        .collect()
}

fn all_errors(diagnostics: &[Diagnostic]) -> Option<(&'static str, String)> {
    errors_of(diagnostics, ConditionKind::Accepted).or_else(|| errors_of(diagnostics, ConditionKind::ResolvedRefs))
}

fn describe_route(route: &Route) -> String {
    let list = |targets: &[crate::compiler::RouteTarget]| {
        targets
            .iter()
            .map(|t| format!("{} {} ({}%)", t.provider, t.model, round(t.weight)))
            .collect::<Vec<String>>()
            .join(", ")
    };
    let mut text = list(&route.targets);
    for tier in route.extras.iter().flat_map(|e| &e.fallbacks) {
        let on: Vec<&str> = tier.on.iter().map(|c| c.as_str()).collect();
        text.push_str(&format!(
            "; on {} falling back to {}",
            on.join("/"),
            list(&tier.targets)
        ));
    }
    text
}

fn round(weight: f64) -> f64 {
    (weight * 100.0).round() / 100.0
}

/// `Accepted` and `ResolvedRefs`, from an object's errors of each kind.
fn accepted_and_refs(
    cond: &impl Fn(&str, ConditionStatus, &str, String) -> Condition,
    not_accepted: &Option<(&'static str, String)>,
    unresolved: &Option<(&'static str, String)>,
    accepted_message: String,
    resolved_message: &str,
    unchecked_message: &str,
) -> [Condition; 2] {
    let accepted = match not_accepted {
        Some((reason, message)) => cond(
            condition_type::ACCEPTED,
            ConditionStatus::False,
            reason,
            message.clone(),
        ),
        None => cond(
            condition_type::ACCEPTED,
            ConditionStatus::True,
            "Accepted",
            accepted_message,
        ),
    };
    let refs = match (unresolved, not_accepted) {
        (Some((reason, message)), _) => cond(
            condition_type::RESOLVED_REFS,
            ConditionStatus::False,
            reason,
            message.clone(),
        ),
        (None, Some(_)) => cond(
            condition_type::RESOLVED_REFS,
            ConditionStatus::Unknown,
            "NotAccepted",
            unchecked_message.to_string(),
        ),
        (None, None) => cond(
            condition_type::RESOLVED_REFS,
            ConditionStatus::True,
            "ResolvedRefs",
            resolved_message.to_string(),
        ),
    };
    [accepted, refs]
}

/// The status of a ModelAlias. `route` is its compiled route when it compiled cleanly and owns
/// its name; `diagnostics` are its own. `reference` is the resourceVersion from which a gateway
/// serves the route the object carries now (`status.resolved`), see `programmed`.
pub fn alias_status(
    alias: &ModelAlias,
    route: Option<&Route>,
    diagnostics: &[Diagnostic],
    env: &Env,
    reference: Option<u64>,
) -> ModelAliasStatus {
    let generation = alias.metadata.generation.unwrap_or(0);
    let previous = alias.status.clone().unwrap_or_default();
    let prev = previous.conditions.as_slice();
    let name = alias
        .spec
        .alias
        .clone()
        .or_else(|| alias.metadata.name.clone())
        .unwrap_or_default();
    let cond = |type_: &str, status, reason: &str, message: String| {
        condition(type_, status, reason, message, generation, prev, env.now)
    };

    let not_accepted = errors_of(diagnostics, ConditionKind::Accepted);
    let unresolved = errors_of(diagnostics, ConditionKind::ResolvedRefs);
    let failure = all_errors(diagnostics);
    let conflict = diagnostics.iter().any(|d| d.reason == Reason::AliasConflict);

    let resolved = match route {
        Some(route) if failure.is_none() => Some(route.to_resolved(generation)),
        _ if conflict => None,
        _ => previous.resolved.clone(),
    };

    let mut conditions = Vec::from(accepted_and_refs(
        &cond,
        &not_accepted,
        &unresolved,
        format!("alias '{name}' is valid and belongs to this ModelAlias"),
        "every target reaches a provider with its key",
        "targets are resolved once the spec is accepted",
    ));
    match (&failure, route) {
        (None, Some(route)) => {
            let (reason, message) = match &route.disabled {
                Some(why) => ("Disabled", format!("{why}; requests get 403 model_disabled")),
                None => (
                    "Serving",
                    format!("serving '{}' from {}", route.alias, describe_route(route)),
                ),
            };
            conditions.push(cond(condition_type::READY, ConditionStatus::True, reason, message));
            conditions.push(cond(
                condition_type::STALLED,
                ConditionStatus::False,
                reason,
                "nothing blocks this alias".to_string(),
            ));
        }
        (Some((reason, message)), _) => {
            let serving = match &resolved {
                Some(last) => format!(
                    "; the gateway keeps serving the last accepted route (generation {}) until this is fixed",
                    last.generation
                ),
                None => "; the alias is not served".to_string(),
            };
            let how = blocked(diagnostics, reason, generation, prev, env.now, env.stall_after);
            conditions.extend(blocked_conditions(
                &cond,
                how,
                reason,
                message,
                format!("{message}{serving}"),
            ));
        }
        (None, None) => {
            let message = "no route was compiled for this alias".to_string();
            conditions.push(cond(
                condition_type::READY,
                ConditionStatus::False,
                "NotServed",
                message.clone(),
            ));
            conditions.push(cond(
                condition_type::STALLED,
                ConditionStatus::True,
                "NotServed",
                message,
            ));
        }
    }
    conditions.push(alias_programmed(
        &previous,
        resolved.as_ref(),
        generation,
        alias,
        env,
        reference,
    ));
    ModelAliasStatus {
        observed_generation: Some(generation),
        conditions,
        resolved,
        target: target_of(&alias.spec),
        // Written by the usage reporter, kept by every status write.
        usage: previous.usage.clone(),
    }
}

/// What `kubectl get` shows as an alias's target.
fn target_of(spec: &ModelAliasSpec) -> Option<String> {
    match (&spec.target, &spec.targets) {
        (Some(target), _) => Some(target.clone()),
        (None, Some(legs)) => Some(
            legs.iter()
                .map(|leg| format!("{} {}%", leg.target, leg.weight))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (None, None) => None,
    }
}

/// The status of an LLMProvider. `endpoint` is its compiled endpoint when it is usable.
/// `reference` is the resourceVersion from which a gateway serves its current generation.
pub fn provider_status(
    provider: &LLMProvider,
    endpoint: Option<&ProviderEndpoint>,
    diagnostics: &[Diagnostic],
    env: &Env,
    reference: Option<u64>,
) -> LLMProviderStatus {
    let generation = provider.metadata.generation.unwrap_or(0);
    let previous = provider.status.clone().unwrap_or_default();
    let prev = previous.conditions.as_slice();
    let cond = |type_: &str, status, reason: &str, message: String| {
        condition(type_, status, reason, message, generation, prev, env.now)
    };
    let spec = &provider.spec;
    let not_accepted = errors_of(diagnostics, ConditionKind::Accepted);
    let unresolved = errors_of(diagnostics, ConditionKind::ResolvedRefs);
    let failure = all_errors(diagnostics);
    let endpoint_url = match (endpoint, spec.provider_type) {
        (Some(e), _) => e.base_url.clone(),
        (None, ProviderType::Mock) => "mock://local".to_string(),
        (None, _) => {
            crate::compiler::base_url(spec, &crate::compiler::ObjectKey::of(&provider.metadata)).unwrap_or_default()
        }
    };
    let mut conditions = Vec::from(accepted_and_refs(
        &cond,
        &not_accepted,
        &unresolved,
        "the spec is valid".to_string(),
        if spec.api_key.is_some() {
            "the API key is present"
        } else {
            "no API key is needed"
        },
        "the key is looked up once the spec is accepted",
    ));
    let programmed = match &failure {
        None => {
            conditions.push(cond(
                condition_type::READY,
                ConditionStatus::True,
                "Ready",
                format!("aliases can route to {endpoint_url}{}", warnings_of(diagnostics)),
            ));
            conditions.push(cond(
                condition_type::STALLED,
                ConditionStatus::False,
                "Ready",
                "nothing blocks this provider".to_string(),
            ));
            match programmed::already(prev, generation) {
                Some(done) => done.clone(),
                None => {
                    let namespace = provider.metadata.namespace.as_deref().unwrap_or("default");
                    let verdict = rollout(env, Served::Providers, namespace, generation, reference);
                    cond(
                        condition_type::PROGRAMMED,
                        verdict.status,
                        verdict.reason,
                        verdict.message,
                    )
                }
            }
        }
        Some((reason, message)) => {
            let how = blocked(diagnostics, reason, generation, prev, env.now, env.stall_after);
            conditions.extend(blocked_conditions(
                &cond,
                how,
                reason,
                message,
                format!("{message}; aliases routing here are not served"),
            ));
            cond(
                condition_type::PROGRAMMED,
                ConditionStatus::False,
                "NotReady",
                format!("generation {generation} cannot be served (see Ready)"),
            )
        }
    };
    conditions.push(programmed);
    LLMProviderStatus {
        observed_generation: Some(generation),
        conditions,
        endpoint: Some(endpoint_url),
        provider_type: Some(spec.provider_type.as_str().to_string()),
        key_present: spec
            .api_key
            .as_ref()
            .map(|_| !diagnostics.iter().any(|d| d.reason == Reason::KeyNotFound)),
    }
}

mod tenancy;
#[cfg(test)]
mod tests;

pub use tenancy::{group_status, team_status, TeamFigures};
