//! The access table prepared for serving: keys indexed, each team's grants with their
//! counters and metric handles. Swapped whole, like the routing table; the counters live in
//! the store and outlive swaps.

use std::sync::{Arc, OnceLock};

use rustc_hash::FxHashMap;

use super::admission::LimitValues;
use super::auth::KeyIndex;
use super::metrics::{TeamAliasMetrics, TenancyMetrics};
use super::store::memory::{AliasCounters, TeamCounters};
use super::store::UsageStore;
use crate::compiler::tenancy::{AccessTable, CreditPolicy};
use crate::crd::{Limits, Period};

#[derive(Default)]
pub struct LiveAccess {
    pub keys: KeyIndex,
    pub teams: Vec<Arc<LiveTeam>>,
    /// The compiled table, for the read API.
    pub table: AccessTable,
}

pub struct LiveTeam {
    /// `namespace/name`: the store's key and the metrics' `team` label.
    pub label: Arc<str>,
    pub name: String,
    pub credits: Option<CreditPolicy>,
    pub limits: Limits,
    /// By alias name. Fx rather than SipHash (one lookup per request): the keys are alias
    /// names from configuration, and a client can only look names up, never insert one, so
    /// there is no hash flooding to defend against.
    pub grants: FxHashMap<Arc<str>, Grant>,
    pub counters: Arc<TeamCounters>,
    /// The `x-ratelimit-limit-*` values of `limits`, made once.
    pub limit_values: LimitValues,
}

impl LiveTeam {
    pub fn period(&self) -> Period {
        self.credits.map_or(Period::Never, |c| c.period)
    }

    /// Whether any limit or credit applies (else nothing needs estimating).
    pub fn metered(&self) -> bool {
        self.credits.is_some()
            || self.limits.tokens_per_minute.is_some()
            || self.limits.requests_per_minute.is_some()
            || self.limits.max_parallel_requests.is_some()
    }
}

/// One alias a team may call.
pub struct Grant {
    pub alias: Arc<str>,
    pub counters: Arc<AliasCounters>,
    metrics: OnceLock<Arc<TeamAliasMetrics>>,
}

impl Grant {
    pub fn metrics(&self, all: &TenancyMetrics, team: &str) -> Arc<TeamAliasMetrics> {
        self.metrics.get_or_init(|| all.for_pair(team, &self.alias)).clone()
    }
}

/// Prepares a compiled access table; forgets the counters and series of what is gone.
pub fn prepare(table: AccessTable, store: &UsageStore, metrics: &TenancyMetrics) -> LiveAccess {
    let teams: Vec<Arc<LiveTeam>> = table
        .teams
        .iter()
        .map(|team| {
            let label: Arc<str> = Arc::from(team.key.to_string());
            let period = team.credits.map_or(Period::Never, |c| c.period);
            Arc::new(LiveTeam {
                counters: store.local.team(&label, period),
                label,
                name: team.key.name.clone(),
                credits: team.credits,
                limit_values: LimitValues::new(
                    team.limits.requests_per_minute.map(u64::from),
                    team.limits.tokens_per_minute,
                ),
                limits: team.limits.clone(),
                grants: team
                    .aliases
                    .iter()
                    .map(|alias| {
                        let alias: Arc<str> = Arc::from(alias.as_str());
                        let grant = Grant {
                            counters: store.local.alias(&alias),
                            alias: alias.clone(),
                            metrics: OnceLock::new(),
                        };
                        (alias, grant)
                    })
                    .collect(),
            })
        })
        .collect();
    let keep_pair = |team: &str, alias: &str| teams.iter().any(|t| &*t.label == team && t.grants.contains_key(alias));
    metrics.retain(keep_pair);
    store.local.retain(
        |team| teams.iter().any(|t| &*t.label == team),
        |alias| teams.iter().any(|t| t.grants.contains_key(alias)),
    );
    LiveAccess {
        keys: KeyIndex::new(&table.keys),
        teams,
        table,
    }
}
