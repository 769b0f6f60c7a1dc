//! Usage metrics by team and alias. Both label values come from the compiled configuration
//! (a team's `namespace/name`, an alias name), never from a request.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TeamAlias {
    team: String,
    alias: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Kind {
    input,
    output,
    cached_input,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TeamAliasTokens {
    team: String,
    alias: String,
    direction: Kind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TeamCode {
    team: String,
    code: &'static str,
}

type CostCounter = Counter<f64, AtomicU64>;

/// The tenancy families, registered in the gateway's registry.
pub struct TenancyMetrics {
    requests: Family<TeamAlias, Counter>,
    tokens: Family<TeamAliasTokens, Counter>,
    cost: Family<TeamAlias, CostCounter>,
    rejected: Family<TeamCode, Counter>,
    pub store_up: Gauge,
    seen: Mutex<HashSet<(String, String)>>,
}

/// Handles for one team and alias.
pub struct TeamAliasMetrics {
    pub requests: Counter,
    pub input: Counter,
    pub output: Counter,
    pub cached_input: Counter,
    pub cost: CostCounter,
}

impl TenancyMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = TenancyMetrics {
            requests: Family::default(),
            tokens: Family::default(),
            cost: Family::default(),
            rejected: Family::default(),
            store_up: Gauge::default(),
            seen: Mutex::default(),
        };
        registry.register(
            "team_requests",
            "Calls answered for a team, by team (namespace/name) and alias",
            metrics.requests.clone(),
        );
        registry.register(
            "team_tokens",
            "Tokens charged to a team, by team, alias and direction (cached_input is part of input)",
            metrics.tokens.clone(),
        );
        registry.register(
            "team_cost_usd",
            "Money charged to a team, US dollars, by team and alias",
            metrics.cost.clone(),
        );
        registry.register(
            "team_rejected_requests",
            "Requests of a known team refused by tenancy, by team and error code",
            metrics.rejected.clone(),
        );
        registry.register(
            "usage_store_up",
            "1 while the usage store answers (always 1 for the memory store), 0 while limits and credits are kept by this replica alone",
            metrics.store_up.clone(),
        );
        metrics.store_up.set(1);
        metrics
    }

    pub fn for_pair(&self, team: &str, alias: &str) -> Arc<TeamAliasMetrics> {
        self.lock().insert((team.to_string(), alias.to_string()));
        let pair = TeamAlias {
            team: team.to_string(),
            alias: alias.to_string(),
        };
        let tokens = |direction| {
            self.tokens.get_or_create_owned(&TeamAliasTokens {
                team: team.to_string(),
                alias: alias.to_string(),
                direction,
            })
        };
        Arc::new(TeamAliasMetrics {
            requests: self.requests.get_or_create_owned(&pair),
            input: tokens(Kind::input),
            output: tokens(Kind::output),
            cached_input: tokens(Kind::cached_input),
            cost: self.cost.get_or_create_owned(&pair),
        })
    }

    pub fn rejected(&self, team: &str, code: &'static str) {
        self.rejected
            .get_or_create(&TeamCode {
                team: team.to_string(),
                code,
            })
            .inc();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops the series of pairs no longer configured.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        let gone: Vec<(String, String)> = self.lock().iter().filter(|(t, a)| !keep(t, a)).cloned().collect();
        for (team, alias) in gone {
            let pair = TeamAlias {
                team: team.clone(),
                alias: alias.clone(),
            };
            self.requests.remove(&pair);
            self.cost.remove(&pair);
            for direction in [Kind::input, Kind::output, Kind::cached_input] {
                self.tokens.remove(&TeamAliasTokens {
                    team: team.clone(),
                    alias: alias.clone(),
                    direction,
                });
            }
            self.lock().remove(&(team, alias));
        }
    }
}
