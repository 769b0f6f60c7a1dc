//! Where counters live: this process (`--usage-store memory`) or a Redis shared by every
//! replica (`--usage-store redis://HOST:PORT`), with this process's counters standing in
//! while Redis is unreachable.

pub mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

pub use self::redis::RedisStore;
use super::limits::{Ask, Verdict};
use crate::compiler::tenancy::Tokens;
use crate::crd::Period;
use memory::{AliasCounters, MemoryStore, TeamCounters, Totals};

/// What to do while the shared store is unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailureMode {
    /// Keep serving on this replica's own counters (limits then hold per replica).
    Open,
    /// Refuse metered requests with 503 `usage_store_unavailable`.
    Closed,
}

/// Where the counters are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    /// A `redis://` (or `rediss://`, `redis+unix://`) URL.
    Redis(String),
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "memory" => Ok(StoreKind::Memory),
            url if url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("redis+unix://") => {
                Ok(StoreKind::Redis(url.to_string()))
            }
            other => Err(format!(
                "'{other}' is not a usage store: use memory or redis://HOST:PORT"
            )),
        }
    }
}

/// A finished call, as the stores record it.
#[derive(Clone, Debug)]
pub struct Settlement {
    pub team: Arc<str>,
    pub alias: Arc<str>,
    pub period: Period,
    pub period_name: Arc<str>,
    /// When the call was admitted (seconds since the Unix epoch): the period it is charged
    /// to, in this process's counters as in the shared store's (`period_name`).
    pub admitted_at: i64,
    /// Seconds after which this period's usage may be forgotten (0: never).
    pub usage_ttl: i64,
    pub reserved_cost: i64,
    pub estimated_tokens: u64,
    pub tokens_per_minute: Option<u64>,
    /// False when the call was never answered: only its reservation is released.
    pub answered: bool,
    pub tokens: Tokens,
    pub cost: i64,
}

/// The usage store of one gateway.
pub struct UsageStore {
    pub local: MemoryStore,
    pub redis: Option<Arc<RedisStore>>,
    pub failure: FailureMode,
}

/// The shared store could not answer and `--usage-store-failure closed` asks to refuse.
#[derive(Debug)]
pub struct Unavailable;

impl UsageStore {
    pub fn memory() -> Self {
        UsageStore {
            local: MemoryStore::default(),
            redis: None,
            failure: FailureMode::Open,
        }
    }

    /// Decides a request. `Ok((verdict, true))` when the shared store decided it.
    pub async fn admit(
        &self,
        team: &str,
        counters: &TeamCounters,
        period: Period,
        period_name: &str,
        ask: &Ask,
    ) -> Result<(Verdict, bool), Unavailable> {
        if let Some(redis) = &self.redis {
            match redis.admit(team, period_name, ask).await {
                Some((verdict, spent)) => {
                    self.local.observe_spent(counters, spent);
                    return Ok((verdict, true));
                }
                None if self.failure == FailureMode::Closed => return Err(Unavailable),
                None => {}
            }
        }
        Ok((self.local.admit(counters, period, ask), false))
    }

    /// Records a finished (or abandoned) call.
    pub fn settle(&self, counters: &TeamCounters, alias: &AliasCounters, settlement: Settlement, remote: bool) {
        match (settlement.answered, remote) {
            (true, _) => self.local.settle(counters, alias, &settlement, !remote),
            (false, false) => self.local.release(counters, settlement.reserved_cost),
            (false, true) => {}
        }
        if let Some(redis) = &self.redis {
            redis.settle(settlement, remote);
        }
    }

    /// Totals of an alias: over every replica with Redis, else this process's.
    pub async fn alias_totals(&self, alias: &str) -> Totals {
        if let Some(totals) = match &self.redis {
            Some(redis) => redis.alias_totals(alias).await,
            None => None,
        } {
            return totals;
        }
        self.local.alias(alias).totals()
    }

    /// A team's usage this period (and its period's name): shared when Redis answers.
    pub async fn team_usage(&self, team: &str, counters: &TeamCounters, period: Period) -> (String, Totals) {
        let (name, local, spent) = self.local.team_usage(counters, period);
        if let Some(redis) = &self.redis {
            if let Some(totals) = redis.team_usage(team, &name).await {
                return (name, totals);
            }
        }
        (name, Totals { cost: spent, ..local })
    }
}

/// Short timeouts: a store that does not answer must never hold a request for long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
