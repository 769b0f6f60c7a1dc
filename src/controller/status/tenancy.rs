//! Status of AccessGroups and Teams, as pure functions like the others.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::{accepted_and_refs, all_errors, condition, errors_of};
use crate::compiler::tenancy::{format_usd, GroupAccess, TeamAccess};
use crate::compiler::{ConditionKind, Diagnostic};
use crate::crd::{condition_type, AccessGroup, AccessGroupStatus, ConditionStatus, Team, TeamStatus, Usage};

/// A team's usage in the current period, as the usage store reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TeamFigures {
    pub period: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_prompt_tokens: u64,
    /// Nano-dollars.
    pub cost: i64,
}

/// `Ready` and `Stalled` from an object's errors (or `ready` when it has none).
fn ready_and_stalled(
    cond: &impl Fn(&str, ConditionStatus, &str, String) -> Condition,
    failure: &Option<(&'static str, String)>,
    ready: (&str, String),
) -> [Condition; 2] {
    match failure {
        None => [
            cond(condition_type::READY, ConditionStatus::True, ready.0, ready.1),
            cond(
                condition_type::STALLED,
                ConditionStatus::False,
                ready.0,
                "nothing blocks this object".to_string(),
            ),
        ],
        Some((reason, message)) => [
            cond(condition_type::READY, ConditionStatus::False, reason, message.clone()),
            cond(condition_type::STALLED, ConditionStatus::True, reason, message.clone()),
        ],
    }
}

fn list(names: &[String]) -> String {
    match names.len() {
        0 => "none".to_string(),
        1..=10 => names.join(", "),
        n => format!("{} and {} more", names[..10].join(", "), n - 10),
    }
}

pub fn group_status(
    group: &AccessGroup,
    compiled: Option<&GroupAccess>,
    diagnostics: &[Diagnostic],
    now: &Time,
) -> AccessGroupStatus {
    let generation = group.metadata.generation.unwrap_or(0);
    let previous = group.status.clone().unwrap_or_default();
    let cond = |type_: &str, status, reason: &str, message: String| {
        condition(type_, status, reason, message, generation, &previous.conditions, now)
    };
    let aliases: Vec<String> = compiled.map(|g| g.aliases.clone()).unwrap_or_default();
    let [accepted, refs] = accepted_and_refs(
        &cond,
        &errors_of(diagnostics, ConditionKind::Accepted),
        &errors_of(diagnostics, ConditionKind::ResolvedRefs),
        "the spec is valid".to_string(),
        "every alias the group names exists",
        "aliases are looked up once the spec is accepted",
    );
    let [ready, stalled] = ready_and_stalled(
        &cond,
        &all_errors(diagnostics),
        (
            "Granting",
            format!("grants {} alias(es): {}", aliases.len(), list(&aliases)),
        ),
    );
    AccessGroupStatus {
        observed_generation: Some(generation),
        conditions: vec![accepted, refs, ready, stalled],
        aliases: Some(aliases),
    }
}

pub fn team_status(
    team: &Team,
    compiled: Option<&TeamAccess>,
    diagnostics: &[Diagnostic],
    figures: Option<&TeamFigures>,
    now: &Time,
) -> TeamStatus {
    let generation = team.metadata.generation.unwrap_or(0);
    let previous = team.status.clone().unwrap_or_default();
    let cond = |type_: &str, status, reason: &str, message: String| {
        condition(type_, status, reason, message, generation, &previous.conditions, now)
    };
    let aliases: Vec<String> = compiled.map(|t| t.aliases.clone()).unwrap_or_default();
    let keys = compiled.map_or(0, |t| t.keys);
    let [accepted, refs] = accepted_and_refs(
        &cond,
        &errors_of(diagnostics, ConditionKind::Accepted),
        &errors_of(diagnostics, ConditionKind::ResolvedRefs),
        "the spec is valid".to_string(),
        "every access group exists",
        "access groups are looked up once the spec is accepted",
    );
    let [ready, stalled] = ready_and_stalled(
        &cond,
        &all_errors(diagnostics),
        (
            "Serving",
            format!("{keys} key(s) may call {} alias(es): {}", aliases.len(), list(&aliases)),
        ),
    );
    let usage = figures
        .map(|f| Usage {
            period: Some(f.period.clone()),
            requests: f.requests,
            prompt_tokens: f.prompt_tokens,
            completion_tokens: f.completion_tokens,
            cached_prompt_tokens: f.cached_prompt_tokens,
            cost_usd: format_usd(f.cost),
        })
        .or(previous.usage.clone());
    let spent = figures.map(|f| f.cost);
    let credits_remaining = match (compiled.and_then(|t| t.credits), spent) {
        (Some(credits), Some(spent)) => Some(format_usd(credits.allocated - spent)),
        (Some(_), None) => previous.credits_remaining.clone(),
        (None, _) => None,
    };
    TeamStatus {
        observed_generation: Some(generation),
        conditions: vec![accepted, refs, ready, stalled],
        aliases: Some(aliases),
        keys: Some(keys),
        usage,
        credits_remaining,
    }
}
